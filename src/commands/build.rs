//! `forge build`: the pipeline of phases (plan, preflight, build, wheel, image, runtime, serve,
//! export, report) with its run record; `--resume`, `--skip`, `--only`, `--no-export`,
//! `--strict`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Ui;
use crate::cancel::{self, Cancel};
use crate::cli::RecipeArgs;
use crate::engine::DockerEngine;
use crate::error::{Error, Result};
use crate::ops::drive::BuilderChoice;
use crate::phases;
use crate::pipeline::record::{self, PhaseStatus, RunRecord};
use crate::pipeline::{self as pl, Ctx, PhaseId, Selection, start};
use crate::report::Status;

/// `forge build`'s arguments.
pub struct Args {
    /// Which recipe.
    pub recipe: RecipeArgs,
    /// `--builder`.
    pub builder: BuilderChoice,
    /// `--artifacts`.
    pub artifacts: PathBuf,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// `--resume [RUN]`.
    pub resume: Option<String>,
    /// `--skip`.
    pub skip: Vec<PhaseId>,
    /// `--only`.
    pub only: Vec<PhaseId>,
    /// `--no-export`.
    pub no_export: bool,
    /// `--strict`.
    pub strict: bool,
    /// `--rehearse`.
    pub rehearse: bool,
    /// `--rehearsal-base`.
    pub rehearsal_base: Option<String>,
    /// `--gpu-engine ENGINE`: phases 4-7 on this engine, the image streamed into it.
    pub gpu_engine: Option<String>,
    /// `--sign-key FILE`: sign the bundle's SHA256SUMS once the report is written.
    pub sign_key: Option<PathBuf>,
}

/// Run `forge build`.
pub fn run(ui: &Ui, args: Args) -> Result<u8> {
    cancel::cooperate();
    // The key first: a wrong one is an error now, not after hours of building.
    let key = args
        .sign_key
        .as_deref()
        .map(crate::bundle::sign::SignKey::load)
        .transpose()?;
    let req = start::Request {
        rocm: args.recipe.rocm.as_deref(),
        recipe_file: args.recipe.recipe.as_deref(),
        allow_unsupported: args.recipe.allow_unsupported,
        phases: phases::for_recipe,
        artifacts: &args.artifacts,
        run_id: args.run_id.as_deref(),
        resume: args.resume.as_deref(),
        rehearse: args.rehearse.then_some(args.rehearsal_base.as_deref()),
    };
    let resolved = start::resolve(&req)?;
    let engine = DockerEngine::connect(Duration::from_secs(10))?;
    let gpu = super::gpu_engine(args.gpu_engine.as_deref())?;
    let recording = crate::engine::recording::Recording::from_env(&engine)?;
    let opened = start::open(&req, resolved, &engine)?;
    if let Some(s) = &opened.rehearsal {
        ui.say(s);
    }
    let start::Opened {
        recipe,
        plan,
        plan_checks,
        run,
        dir,
        record: mut rec,
        prior,
        lock: _lock,
        ..
    } = opened;
    let mut sel = Selection {
        skip: args.skip.clone(),
        only: args.only.clone(),
    };
    if args.no_export {
        sel.skip.push(PhaseId::Export);
    }
    let mut display = crate::monitor::ui::Display::new(ui.quiet, ui.verbose > 0);
    let mut ctx = Ctx {
        gpu: gpu.as_ref().map(|g| g as &dyn crate::engine::Engine),
        recipe: &recipe,
        plan: &plan,
        plan_checks,
        run: run.clone(),
        engine: recording.as_ref().map_or(&engine, |r| r),
        cancel: Cancel::process(),
        observer: &mut display,
        builder: args.builder,
        outputs: record::Outputs::default(),
        unverified: None,
        rehearsal: args.rehearse,
        dev: std::path::PathBuf::from("/dev"),
    };
    let result = pl::run(
        phases::for_recipe(&recipe),
        &mut ctx,
        &mut rec,
        &sel,
        prior.as_ref(),
        &dir,
    );
    display.clear();
    let a = &plan.artifacts;
    say_what_happened(ui, &rec, &dir, a);
    if let Err(e) = result {
        if let Error::Interrupted { signal } = e {
            ui.alert(&format!(
                "interrupted by {}: the run record says where; continue with `forge build --resume {run}{}`",
                cancel::name(signal),
                if args.artifacts == Path::new("artifacts") {
                    String::new()
                } else {
                    format!(" --artifacts {}", args.artifacts.display())
                }
            ));
            ui.emit(&phases::report::outcome(&rec, &plan.image_tag));
        }
        return Err(e);
    }
    // Signed last: SHA256SUMS (listing the manifest, which lists every file) is final now.
    ui.say(&crate::bundle::sign::after_sums(&dir, key.as_ref(), &run)?.line());
    let outcome = phases::report::outcome(&rec, &plan.image_tag);
    let code = ui.emit(&outcome);
    let skipped = rec.checks().iter().any(|c| c.status == Status::Skip)
        || rec.phases.iter().any(|p| p.status == PhaseStatus::Skip);
    Ok(if args.strict && skipped && code == 0 {
        ui.alert("--strict: skipped checks or phases count as failures");
        1
    } else {
        code
    })
}

/// One line a phase: what ran, what was reused, what did not run and why.
fn phase_lines(rec: &RunRecord) -> String {
    let mut s = String::from("phases:\n");
    for p in &rec.phases {
        let mut notes = Vec::new();
        if p.reused {
            notes.push("reused from the interrupted attempt".to_owned());
        } else if p.seconds >= 0.05 {
            notes.push(format!("{:.1} s", p.seconds));
        }
        let skipped = p.checks.iter().filter(|c| c.status == Status::Skip).count();
        if skipped > 0 && p.status != PhaseStatus::Skip {
            notes.push(format!("{skipped} check(s) skipped"));
        }
        if matches!(
            p.status,
            PhaseStatus::Skip | PhaseStatus::Interrupted | PhaseStatus::Error
        ) && let Some(r) = &p.reason
        {
            notes.push(crate::monitor::line::clip(r, 160));
        }
        let line = format!(
            "  {:<10} {:<5} {}",
            p.id.name(),
            p.status.name(),
            notes.join("; ")
        );
        s.push_str(line.trim_end());
        s.push('\n');
        let stages = match p.id {
            PhaseId::Build => rec.outputs.build.as_ref().map(|b| &b.stages[..]),
            PhaseId::Image => rec.outputs.image.as_ref().map(|i| &i.stages[..]),
            _ => None,
        };
        if let Some(st) = stages.filter(|st| !st.is_empty() && !p.reused) {
            s.push_str(&format!(
                "{:<19}stages: {}\n",
                "",
                crate::ops::drive::stages_line(st)
            ));
        }
    }
    s
}

/// The fatal finding, a failed build's tail, and where the files are (stderr; never silenced
/// for a failure).
fn say_what_happened(ui: &Ui, rec: &RunRecord, dir: &Path, a: &crate::ops::plan::Artifacts) {
    let mut s = String::new();
    let builds = [&rec.outputs.build, &rec.outputs.image_build];
    for b in builds.into_iter().flatten() {
        if let Some(f) = &b.fatal {
            s.push_str(&format!(
                "FATAL at log line {}: {}\n  {}\n",
                f.line, f.text, f.message
            ));
            if let Some(h) = &f.hint {
                s.push_str(&format!("  fix: {h}\n"));
            }
            if let Some(ms) = b.cancel_ms {
                s.push_str(&format!(
                    "  build cancelled {ms:.1} ms after the line arrived\n"
                ));
            }
        }
    }
    for b in builds.into_iter().flatten() {
        if let Some(err) = &b.error {
            s.push_str(&format!("build failed: {err}\nlast lines of the log:\n"));
            for l in &b.log_tail {
                s.push_str(&format!("  | {l}\n"));
            }
        }
    }
    for p in &rec.phases {
        if p.status == PhaseStatus::Error {
            s.push_str(&format!(
                "the {} phase could not run: {}\n",
                p.id.name(),
                p.reason.as_deref().unwrap_or("")
            ));
        }
    }
    if !s.is_empty() {
        ui.alert(&s);
    }
    ui.say(&phase_lines(rec));
    ui.say(&format!(
        "log: {}\nreport: {}\nrun record: {}",
        a.build_log.display(),
        a.report_json.display(),
        dir.join(record::FILE).display()
    ));
}
