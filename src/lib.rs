//! forge: build, check and release Docker images of PyTorch + vLLM for AMD ROCm GPUs.
//!
//! The pipeline: recipe -> plan -> build (watched live) -> wheel -> image -> runtime -> export ->
//! report. Each stage is a module; `run` maps the CLI onto them.

pub mod build;
pub mod check;
pub mod cli;
pub mod diagnose;
pub mod dockerfile;
pub mod engine;
pub mod error;
pub mod export;
pub mod monitor;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod tarframe;
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
        Command::Scan { log, recipe, arch } => {
            let recipe = load_recipe(&recipe)?;
            let m = monitor::scan::scan_file(&log, expectations(&recipe, &arch))?;
            ui.say(&render_findings(&m));
            Ok(ui.emit(&monitor_outcome(format!("scan {}", log.display()), &m)))
        }
        Command::Watch {
            log,
            pid,
            grace,
            poll,
            recipe,
            arch,
        } => {
            let recipe = load_recipe(&recipe)?;
            if let Some(p) = pid
                && !monitor::tail::alive(p)
            {
                return Err(Error::usage(
                    format!("process {p} is not running"),
                    Some(
                        "pass the pid of the running build (`$!` after starting it in the background)",
                    ),
                ));
            }
            let opts = monitor::tail::WatchOptions {
                pid,
                grace: Duration::from_secs_f64(grace.max(0.0)),
                poll: Duration::from_millis(if poll { 100 } else { 250 }),
                poll_only: poll,
            };
            let mut display = monitor::ui::Display::new(ui.quiet, ui.verbose > 0);
            let result =
                monitor::tail::watch(&log, expectations(&recipe, &arch), &opts, &mut display);
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
        Command::Build {
            recipe,
            builder,
            artifacts,
            run_id,
            no_export,
        } => {
            let recipe = load_recipe(&recipe)?;
            let run = run_id.unwrap_or_else(|| build::new_run_id(&recipe.file.name));
            let (plan, plan_checks) = plan::resolve(&recipe, &artifacts, &run)?;
            if plan_checks.iter().any(|c| c.status == report::Status::Fail) {
                return Ok(ui.emit(&plan.outcome(plan_checks)));
            }
            let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
            let mut display = monitor::ui::Display::new(ui.quiet, ui.verbose > 0);
            let result = build::BuildRun {
                recipe: &recipe,
                plan: &plan,
                run,
                builder,
                export: !no_export,
            }
            .execute(&engine, &mut display);
            display.clear();
            let rep = result?;
            let mut s = String::new();
            if let Some(f) = &rep.fatal {
                s.push_str(&format!(
                    "FATAL at log line {}: {}\n  {}\n",
                    f.line, f.text, f.message
                ));
                if let Some(h) = &f.hint {
                    s.push_str(&format!("  fix: {h}\n"));
                }
                s.push_str(&format!(
                    "  build cancelled {}\n",
                    build::describe_cancel(rep.cancel_ms)
                ));
            }
            if let Some(e) = &rep.error {
                s.push_str(&format!("build failed: {e}\nlast lines of the log:\n"));
                for l in &rep.log_tail {
                    s.push_str(&format!("  | {l}\n"));
                }
            }
            s.push_str(&format!(
                "log: {}\nreport: {}\n",
                rep.build_log.display(),
                plan.artifacts.report_json.display()
            ));
            ui.say(&s);
            let mut checks = plan_checks;
            checks.extend(rep.checks.iter().cloned());
            let outcome = Outcome::new(format!("build {} ({})", plan.image_tag, rep.run), checks)
                .with("build", &rep);
            let code = ui.emit(&outcome);
            Ok(if rep.end == "interrupted" {
                130
            } else {
                code.max(rep.exit_code())
            })
        }
        Command::Wheel {
            wheel,
            arch,
            lib_root,
            image,
            threads,
            recipe,
        } => {
            let recipe = load_recipe(&recipe)?;
            let archs = expectations(&recipe, &arch).archs;
            let opts = check::wheel::WheelOptions {
                archs,
                min_bytes: recipe.file.checks.wheel_min_bytes,
            };
            if let Some(r) = &lib_root
                && !r.is_dir()
            {
                return Err(Error::usage(
                    format!("`--lib-root {}` is not a directory", r.display()),
                    Some("pass the root of a filesystem that has ROCm (e.g. an unpacked image)"),
                ));
            }
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            });
            let data = check::wheel::read_wheel(&wheel, threads)?;
            let engine;
            let mut image_root;
            let mut dir_root;
            let root: Option<&mut dyn check::resolve::LibRoot> = if let Some(tag) = &image {
                engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
                image_root = check::resolve::ImageRoot::open(&engine, tag)?;
                Some(&mut image_root)
            } else if let Some(dir) = &lib_root {
                dir_root = check::resolve::DirRoot(dir.clone());
                Some(&mut dir_root)
            } else {
                None
            };
            let (checks, resolution) = check::wheel::checks(&data, &opts, root);
            if ui.verbose > 0 {
                let mut s = format!("{} members, {} ELF:\n", data.members, data.elves.len());
                for e in check::wheel::elf_members(&data) {
                    s.push_str(&format!(
                        "  {}  needs [{}]{}{}\n",
                        e.path,
                        e.needed.join(", "),
                        if e.gpu_targets.is_empty() {
                            String::new()
                        } else {
                            format!("  gpu [{}]", e.gpu_targets.join(", "))
                        },
                        e.note.map(|n| format!("  ({n})")).unwrap_or_default()
                    ));
                }
                ui.say(&s);
            }
            let outcome = Outcome::new(format!("wheel {}", wheel.display()), checks)
                .with("wheel", &data.name)
                .with("bytes", data.bytes)
                .with("members", data.members)
                .with("flavour", check::wheel::flavour(&data))
                .with("elf", check::wheel::elf_members(&data))
                .with("resolution", resolution);
            Ok(ui.emit(&outcome))
        }
        Command::Export {
            image,
            out,
            level,
            threads,
            recipe,
        } => {
            let recipe = load_recipe(&recipe)?;
            let out = out.unwrap_or_else(|| {
                Path::new("artifacts").join(format!("{}.tar.gz", plan::tag_slug(&image)))
            });
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            });
            let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
            ui.say(&format!("exporting {image} to {} ...", out.display()));
            let e = export::export(&engine, &image, &out, level, threads)?;
            let checks = export::checks(&e, recipe.file.checks.archive_min_bytes);
            let outcome = Outcome::new(format!("export {image}"), checks).with("export", &e);
            Ok(ui.emit(&outcome))
        }
        Command::Image { image, recipe } => {
            let recipe = load_recipe(&recipe)?;
            let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
            let size = engine::Engine::image_size(&engine, &image)?;
            let probe = check::image::probe(&engine, &image, &recipe.file.checks.files)?;
            let checks = check::image::checks(&recipe, size, &probe);
            let outcome = Outcome::new(format!("image {image}"), checks)
                .with("size", size)
                .with("probe", &probe);
            Ok(ui.emit(&outcome))
        }
        Command::Clean { all } => {
            let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
            let removed = build::clean(&engine, all)?;
            ui.say(&format!("removed {} leftover(s)", removed.len()));
            for l in &removed {
                ui.say(&format!(
                    "  {} {} (run {})",
                    l.kind,
                    l.id,
                    l.labels.get(build::LABEL_RUN).map_or("?", String::as_str)
                ));
            }
            if ui.json {
                println!(
                    "{}",
                    serde_json::json!({"verdict": "pass", "checks": [], "removed": removed})
                );
            }
            Ok(0)
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

/// The monitor's expectations from the recipe, or `--arch` when given.
fn expectations(recipe: &Recipe, arch: &[String]) -> monitor::rules::Expect {
    let archs: Vec<String> = if arch.is_empty() {
        recipe.archs().to_vec()
    } else {
        arch.iter()
            .flat_map(|a| a.split([';', ',']))
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    monitor::rules::Expect {
        archs,
        rules: recipe.file.rules.clone(),
    }
}

/// The scan/watch result as an outcome.
fn monitor_outcome(subject: String, m: &monitor::Monitor) -> Outcome {
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

fn render_findings(m: &monitor::Monitor) -> String {
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
