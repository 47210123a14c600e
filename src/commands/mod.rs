//! One file a subcommand: each maps its arguments onto the phase code and the printer
//! (`lib.rs` only dispatches).

pub mod build;
pub mod clean;
pub mod completions;
pub mod diagnose;
pub mod export;
pub mod image;
pub mod plan;
pub mod preflight;
pub mod push;
pub mod recipe;
pub mod report;
pub mod runs;
pub mod runtime;
pub mod scan;
pub mod serve;
pub mod verify;
pub mod watch;
pub mod wheel;

use std::io::Read;
use std::path::Path;

use crate::cli::RecipeArgs;
use crate::error::{Error, Result};
use crate::monitor;
use crate::recipe::{LoadOptions, Recipe};
use crate::report::Outcome;

/// What the command files share.
pub(crate) mod prelude {
    pub(crate) use std::io::Write;
    pub(crate) use std::path::{Path, PathBuf};
    pub(crate) use std::time::Duration;

    pub(crate) use super::{
        expectations, load_recipe, monitor_outcome, read_input, render_findings,
    };
    pub(crate) use crate::Ui;
    pub(crate) use crate::cli::RecipeArgs;
    pub(crate) use crate::error::{Error, Result};
    pub(crate) use crate::monitor::diagnose;
    pub(crate) use crate::ops::plan;
    pub(crate) use crate::ops::{drive, export};
    pub(crate) use crate::report::{Check, Outcome};
    pub(crate) use crate::{cancel, check, engine, monitor, render};
}

/// `--gpu-engine ENGINE` (a context name or an engine URL): the engine the image is checked on,
/// connected; none given, none.
pub fn gpu_engine(spec: Option<&str>) -> Result<Option<crate::engine::DockerEngine>> {
    let Some(spec) = spec else { return Ok(None) };
    let ep = crate::engine::endpoint::resolve_named(spec, &crate::engine::endpoint::process_env())?;
    crate::engine::DockerEngine::connect_to(ep, std::time::Duration::from_secs(10)).map(Some)
}

/// The recipe `--rocm`/`--recipe` pick.
pub fn load_recipe(args: &RecipeArgs) -> Result<Recipe> {
    Recipe::select(
        args.rocm.as_deref(),
        args.recipe.as_deref(),
        LoadOptions {
            allow_unsupported: args.allow_unsupported,
        },
    )
}

/// The monitor's expectations from the recipe, or `--arch` when given (validated).
pub fn expectations(recipe: &Recipe, arch: &[String]) -> Result<monitor::rules::Expect> {
    monitor::rules::Expect::with_archs(recipe, arch)
}

/// The scan/watch result as an outcome.
pub fn monitor_outcome(subject: String, m: &monitor::Monitor) -> Outcome {
    Outcome::new(subject, m.checks())
        .with("flags", &m.flags)
        .with("findings", &m.findings)
        .with(
            "arch_list",
            m.arch_list
                .as_ref()
                .map(|(l, line)| serde_json::json!({"archs": l, "line": line})),
        )
        .with("progress", m.progress)
        .with("lines", m.lines)
        .with("bytes", m.bytes)
}

pub fn render_findings(m: &monitor::Monitor) -> String {
    let mut s = String::new();
    for f in &m.findings {
        s.push_str(&format!(
            "{:7} line {}: {}\n        {}\n",
            format!("{:?}", f.severity).to_lowercase(),
            f.line,
            f.text,
            f.message
        ));
        if let Some(h) = &f.hint {
            s.push_str(&format!("        fix: {h}\n"));
        }
    }
    s
}

pub fn read_input(file: Option<&Path>) -> Result<(String, String)> {
    let mut bytes = Vec::new();
    let name = match file {
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", "<stdin>", e))?;
            "<stdin>".to_owned()
        }
        Some(p) if p == Path::new("-") => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", "<stdin>", e))?;
            "<stdin>".to_owned()
        }
        Some(p) => {
            bytes = std::fs::read(p).map_err(|e| Error::io("read", p, e))?;
            p.display().to_string()
        }
    };
    Ok((name, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `f` with the engine a container command talks to: the Docker engine (connected, 10 s), or
/// under `__FORGE_TEST_RECORD_ENGINE` the same engine with every call written down (the fake engine's
/// fixtures).
pub(crate) fn with_containers<R>(
    f: impl FnOnce(&dyn crate::engine::Containers) -> Result<R>,
) -> Result<R> {
    let docker = crate::engine::DockerEngine::connect(std::time::Duration::from_secs(10))?;
    let recording = crate::engine::recording::Recording::from_env(&docker)?;
    match &recording {
        Some(r) => f(r.boxes().expect("the Docker engine starts containers")),
        None => f(&docker),
    }
}
