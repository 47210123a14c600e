//! `forge clean`: temporary containers and images of dead runs.

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, all: bool) -> Result<u8> {
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    let removed = drive::clean(&engine, all)?;
    ui.say(&format!("removed {} leftover(s)", removed.len()));
    for l in &removed {
        ui.say(&format!(
            "  {} {} (run {})",
            l.kind,
            l.id,
            l.labels.get(drive::LABEL_RUN).map_or("?", String::as_str)
        ));
    }
    if ui.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "subject": "clean", "verdict": "pass", "checks": [], "removed": removed
            }))
            .unwrap_or_default()
        );
    }
    Ok(0)
}
