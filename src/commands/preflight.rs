//! `forge preflight` (phase 1): the GPU host and the build host.

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, recipe: RecipeArgs, artifacts: PathBuf) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let (docker, engine) = match engine::DockerEngine::connect(Duration::from_secs(10)) {
        Ok(d) => {
            let info = engine::Engine::info(&d);
            (Some(d), info)
        }
        Err(e) => (None, Err(e)),
    };
    let paths = check::host::HostPaths {
        artifacts,
        ..check::host::HostPaths::default()
    };
    let checks = match &docker {
        Some(d) => check::host::preflight_through(
            &recipe,
            &engine,
            &paths,
            d,
            &format!("preflight-{}", std::process::id()),
        ),
        // not even a connection: a local engine's socket is missing (this machine's GPU is the
        // engine host's), or the engine is elsewhere or its setting unreadable (it is not)
        None => match engine::resolve_endpoint() {
            Ok(ep) if ep.transport.local() => check::host::preflight(&recipe, &engine, &paths),
            ep => {
                let at = ep.ok().map(|ep| ep.host);
                check::host::preflight_unreached(&recipe, &engine, &paths, at.as_deref())
            }
        },
    };
    let outcome = Outcome::new(
        format!("preflight for {} ({})", recipe.file.name, recipe.origin),
        checks,
    )
    .with("engine", engine.as_ref().ok());
    Ok(ui.emit(&outcome))
}
