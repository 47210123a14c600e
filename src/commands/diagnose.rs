//! `forge diagnose`: name the known failures in a log or pasted text.

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, file: Option<PathBuf>) -> Result<u8> {
    let (name, text) = read_input(file.as_deref())?;
    let found = diagnose::diagnose(&text);
    let checks: Vec<Check> = found
        .iter()
        .map(|d| {
            Check::fail(
                &format!("diagnose.{}", d.known.id),
                d.known.symptom,
                format!("line {}: {}", d.line, d.text),
            )
            .with_hint(d.known.fix)
        })
        .collect();
    if found.is_empty() {
        ui.say(&format!(
            "{name}: no known failure found in {} lines\n  forge knows {} failures (`forge diagnose` reads the spec's and the field notes' tables); this text matches none of them",
            text.lines().count(),
            diagnose::KNOWN.len()
        ));
    } else if !ui.quiet {
        let mut s = format!("{name}: {} known failure(s)\n", found.len());
        for d in &found {
            s.push_str(&format!(
                "\nline {}: {}\n  known:  {} ({})\n  cause:  {}\n  fix:    {}\n  source: {}\n",
                d.line,
                d.text,
                d.known.symptom,
                d.known.id,
                d.known.cause,
                d.known.fix,
                d.known.source
            ));
            if d.count > 1 {
                s.push_str(&format!("  seen on {} lines\n", d.count));
            }
        }
        ui.say(&s);
    }
    let outcome = Outcome::new(format!("diagnose {name}"), checks)
        .with("diagnoses", &found)
        .with("recognised", !found.is_empty());
    if ui.json {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, &outcome.to_json());
        let _ = out.write_all(b"\n");
    }
    Ok(outcome.exit_code())
}
