//! `forge scan LOG` (phase 2 over a finished log).

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, log: PathBuf, recipe: RecipeArgs, arch: Vec<String>) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let m = monitor::scan::scan_file(&log, expectations(&recipe, &arch)?)?;
    ui.say(&render_findings(&m));
    let name = if log == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        log.display().to_string()
    };
    Ok(ui.emit(&monitor_outcome(format!("scan {name}"), &m)))
}
