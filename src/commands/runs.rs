//! `forge runs`: the runs under the artifacts directory, from their records.

use std::path::Path;

use crate::Ui;
use crate::error::Result;
use crate::pipeline::record;

/// List the runs.
pub fn run(ui: &Ui, artifacts: &Path) -> Result<u8> {
    let runs = record::list(artifacts)?;
    use crate::units::mb;
    let mut s = String::new();
    if runs.is_empty() {
        s.push_str(&format!("no runs under {}\n", artifacts.display()));
    }
    for r in &runs {
        s.push_str(&format!(
            "{}{}  {}  {}  {:?}  {}  phases {}/{} passed{}  wheels {}{}\n",
            if r.latest { "* " } else { "  " },
            r.run,
            r.recipe,
            r.started,
            r.state,
            r.verdict.name(),
            r.phases_passed,
            r.phases,
            r.stopped_at
                .as_deref()
                .map(|p| format!(", first not passed: {p}"))
                .unwrap_or_default(),
            mb(r.wheel_bytes),
            r.archive_bytes
                .map(|b| format!(", archive {}", mb(b)))
                .unwrap_or_default()
        ));
    }
    ui.result(&s);
    if ui.json {
        println!(
            "{}",
            serde_json::json!({"verdict": "pass", "checks": [], "runs": runs})
        );
    }
    Ok(0)
}
