//! `forge watch LOG`: follow a log another process writes; stop it on a fatal finding.

use super::prelude::*;

/// Run it.
pub fn run(
    ui: &Ui,
    log: PathBuf,
    pid: Option<i32>,
    grace: f64,
    poll: bool,
    recipe: RecipeArgs,
    arch: Vec<String>,
) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let expect = expectations(&recipe, &arch)?;
    if let Some(p) = pid
        && !monitor::tail::alive(p)
    {
        return Err(Error::usage(
            format!("process {p} is not running"),
            Some("pass the pid of the running build (`$!` after starting it in the background)"),
        ));
    }
    let opts = monitor::tail::WatchOptions {
        pid,
        grace: Duration::from_secs_f64(grace.max(0.0)),
        poll: Duration::from_millis(if poll { 100 } else { 250 }),
        poll_only: poll,
    };
    let mut display = monitor::ui::Display::new(ui.quiet, ui.verbose > 0);
    let result = monitor::tail::watch(&log, expect, &opts, &mut display);
    display.clear();
    let (end, m) = result?;
    let mut outcome = monitor_outcome(format!("watch {}", log.display()), &m);
    match &end {
        monitor::tail::WatchEnd::Fatal { finding, signals } => {
            let mut s = format!(
                "FATAL at line {}: {}\n  {}\n",
                finding.line, finding.text, finding.message
            );
            if let Some(h) = &finding.hint {
                s.push_str(&format!("  fix: {h}\n"));
            }
            if !signals.is_empty() {
                s.push_str(&format!(
                    "  stopped the build: {}\n",
                    signals.join(", then ")
                ));
            }
            s.push_str(&format!("  log kept: {}\n", log.display()));
            ui.say(&s);
            outcome = outcome
                .with("end", "fatal")
                .with("fatal", finding)
                .with("signals", signals);
        }
        monitor::tail::WatchEnd::ProcessExited => {
            outcome = outcome.with("end", "process-exited");
        }
    }
    let code = ui.emit(&outcome);
    // A fatal finding always fails the watch, even if the summary checks passed.
    // The exit code is about fatal findings (the writer was or was not stopped);
    // the checks in the output give the full phase 2 verdict, as `forge scan` would.
    let _ = code;
    Ok(u8::from(
        matches!(end, monitor::tail::WatchEnd::Fatal { .. }) || m.fatal().is_some(),
    ))
}
