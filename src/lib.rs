//! forge: build, check and release Docker images of PyTorch + vLLM for AMD ROCm GPUs.
//!
//! The pipeline: recipe -> plan -> build (watched live) -> wheel -> image -> runtime -> export ->
//! report. Each stage is a module; `run` maps the CLI onto them.

pub mod check;
pub mod cli;
pub mod diagnose;
pub mod dockerfile;
pub mod engine;
pub mod error;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod tool;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use cli::{Cli, Command, RecipeArgs};
pub use error::{Error, Result};
use recipe::{LoadOptions, Recipe};
use report::{Check, Outcome};

/// How output is shown.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// JSON on stdout.
    pub json: bool,
    /// Verbosity (0 normal).
    pub verbose: u8,
    /// Only errors.
    pub quiet: bool,
}

impl Ui {
    /// Human text to stderr, unless quiet.
    pub fn say(&self, text: &str) {
        if !self.quiet {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = e.write_all(b"\n");
            }
        }
    }

    /// Print a command's outcome: the table on stderr, JSON on stdout with `--json`.
    pub fn emit(&self, outcome: &Outcome) -> u8 {
        self.say(&outcome.render_text());
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &outcome.to_json());
            let _ = out.write_all(b"\n");
        }
        outcome.exit_code()
    }
}

fn load_recipe(args: &RecipeArgs) -> Result<Recipe> {
    Recipe::select(
        args.rocm.as_deref(),
        args.recipe.as_deref(),
        LoadOptions {
            allow_unsupported: args.allow_unsupported,
        },
    )
}

/// Run one command; returns the exit code (0 pass, 1 a check failed).
pub fn run(cli: Cli) -> Result<u8> {
    let ui = Ui {
        json: cli.json,
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Plan { recipe, artifacts } => {
            let recipe = load_recipe(&recipe)?;
            let (plan, checks) = plan::resolve(&recipe, &artifacts, "<run>")?;
            ui.say(&plan.render_text());
            Ok(ui.emit(&plan.outcome(checks)))
        }
        Command::Preflight { recipe } => {
            let recipe = load_recipe(&recipe)?;
            let engine = engine::DockerEngine::connect(Duration::from_secs(10))
                .and_then(|e| engine::Engine::info(&e));
            let checks =
                check::host::preflight(&recipe, &engine, &check::host::HostPaths::default());
            let outcome = Outcome::new(
                format!("preflight for {} ({})", recipe.file.name, recipe.origin),
                checks,
            )
            .with("engine", engine.as_ref().ok());
            Ok(ui.emit(&outcome))
        }
        Command::Diagnose { file } => {
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
    }
}

fn read_input(file: Option<&Path>) -> Result<(String, String)> {
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
