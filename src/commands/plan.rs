//! `forge plan`: the resolved plan, without touching Docker.

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, recipe: RecipeArgs, artifacts: PathBuf) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let (plan, checks) = plan::resolve(&recipe, &artifacts, "<run>")?;
    ui.say(&plan.render_text());
    Ok(ui.emit(&plan.outcome(checks)))
}
