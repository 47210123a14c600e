//! `forge preflight` (phase 1): the GPU host and the build host.

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, recipe: RecipeArgs, artifacts: PathBuf) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))
        .and_then(|e| engine::Engine::info(&e));
    let paths = check::host::HostPaths {
        artifacts,
        ..check::host::HostPaths::default()
    };
    let checks = check::host::preflight(&recipe, &engine, &paths);
    let outcome = Outcome::new(
        format!("preflight for {} ({})", recipe.file.name, recipe.origin),
        checks,
    )
    .with("engine", engine.as_ref().ok());
    Ok(ui.emit(&outcome))
}
