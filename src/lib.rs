//! forge: build, check and release Docker images of PyTorch + vLLM for AMD ROCm GPUs.
//!
//! The pipeline: recipe -> plan -> preflight -> build (watched live) -> wheel -> image ->
//! runtime -> serve -> export -> report. `pipeline/` holds the phase unit, the run record
//! (`run.json`, written after each phase), resume and the one cancel token; `phases/` one module
//! a phase (orchestration only); `check/` the pure verdicts; `engine/` the only bollard user;
//! `commands/` one thin file a subcommand; `printer` the one writer of output; `report` the
//! checks, verdicts and the catalog every module reports through (the bottom layer); `render/`
//! the reports; `bundle/` the run directory and the release bundle; `monitor/` the log rules and
//! the known failures; `atomic` and `units` leaves. No module imports one that imports it back
//! (`scripts/module-deps.py`). `run` only dispatches.

pub mod atomic;
pub mod bundle;
pub mod cancel;
pub mod check;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod monitor;
pub mod ops;
pub mod phases;
pub mod pipeline;
pub mod printer;
pub mod recipe;
pub mod render;
pub mod report;
pub mod tool;
pub mod units;
pub mod upstream;

use cli::{Cli, Command};
pub use error::{Error, Result};
pub use printer::Ui;

/// Run one command; returns the exit code (0 pass, 1 a check failed).
pub fn run(cli: Cli) -> Result<u8> {
    let ui = Ui {
        json: cli.json,
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    engine::endpoint::set_context_flag(cli.context.clone());
    match cli.command {
        Command::Plan { recipe, artifacts } => commands::plan::run(&ui, recipe, artifacts),
        Command::Preflight { recipe, artifacts } => {
            commands::preflight::run(&ui, recipe, artifacts)
        }
        Command::Scan { log, recipe, arch } => commands::scan::run(&ui, log, recipe, arch),
        Command::Watch {
            log,
            pid,
            grace,
            poll,
            recipe,
            arch,
        } => commands::watch::run(&ui, log, pid, grace, poll, recipe, arch),
        Command::Build {
            recipe,
            builder,
            artifacts,
            run_id,
            no_export,
            resume,
            skip,
            only,
            strict,
            rehearse,
            rehearsal_base,
            gpu_engine,
            sign,
        } => commands::build::run(
            &ui,
            commands::build::Args {
                recipe,
                builder,
                artifacts,
                run_id,
                resume,
                skip,
                only,
                no_export,
                strict,
                rehearse,
                rehearsal_base,
                gpu_engine,
                sign_key: sign.sign_key,
            },
        ),
        Command::Runs { artifacts } => commands::runs::run(&ui, &artifacts),
        Command::Wheel {
            wheel,
            arch,
            lib_root,
            image,
            threads,
            recipe,
        } => commands::wheel::run(&ui, wheel, arch, lib_root, image, threads, recipe),
        Command::Export {
            image,
            out,
            format,
            split,
            level,
            threads,
            audit,
            recipe,
            sign,
        } => commands::export::run(
            &ui,
            commands::export::Args {
                image,
                out,
                format,
                split,
                level,
                threads,
                audit,
                sign_key: sign.sign_key,
            },
            recipe,
        ),
        Command::Verify {
            dir,
            load,
            key,
            registry,
        } => commands::verify::run(&ui, &dir, load, key.as_deref(), registry),
        Command::Push {
            dir,
            reference,
            allow_failed,
            sign,
        } => commands::push::run(
            &ui,
            &dir,
            &reference,
            allow_failed,
            sign.sign_key.as_deref(),
        ),
        Command::Report { run_dir, sign } => {
            commands::report::run(&ui, &run_dir, sign.sign_key.as_deref())
        }
        Command::Image {
            image,
            arch,
            recipe,
            sbom,
            gpu_engine,
        } => commands::image::run(
            &ui,
            commands::image::Args {
                image,
                arch,
                recipe,
                sbom,
                gpu_engine,
            },
        ),
        Command::Runtime {
            image,
            no_gpu,
            require_gpu,
            from_json,
            print_probe,
            artifacts,
            run_id,
            recipe,
        } => commands::runtime::run(
            &ui,
            commands::runtime::Args {
                image,
                no_gpu,
                require_gpu,
                from_json,
                print_probe,
                artifacts,
                run_id,
            },
            &commands::load_recipe(&recipe)?,
        ),
        Command::Serve {
            image,
            no_gpu,
            require_gpu,
            artifacts,
            run_id,
            recipe,
        } => commands::serve::run(
            &ui,
            commands::serve::Args {
                image,
                no_gpu,
                require_gpu,
                artifacts,
                run_id,
            },
            &commands::load_recipe(&recipe)?,
        ),
        Command::Clean { all } => commands::clean::run(&ui, all),
        Command::Recipe(cli::RecipeCommand::FromVllm(args)) => {
            commands::recipe::from_vllm(&ui, &args)
        }
        Command::Recipe(cli::RecipeCommand::Lock(args)) => commands::recipe::lock(&ui, &args),
        Command::Completions { shell } => commands::completions::run(&ui, shell),
        Command::Diagnose { file } => commands::diagnose::run(&ui, file),
    }
}
