//! `forge build`: the pipeline of phases (plan, preflight, build, wheel, image, runtime, serve,
//! export, report) with its run record; `--resume`, `--skip`, `--only`, `--no-export`,
//! `--strict`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::Ui;
use crate::cancel::{self, Cancel};
use crate::cli::RecipeArgs;
use crate::engine::DockerEngine;
use crate::error::{Error, Result};
use crate::ops::drive::BuilderChoice;
use crate::phases;
use crate::pipeline::record::{
    self, PhaseRecord, PhaseStatus, RecipeRef, RunRecord, RunState, validate_run_id,
};
use crate::pipeline::{self as pl, Ctx, PhaseId, Selection};
use crate::recipe::{LoadOptions, Origin, Recipe};
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
    /// `--sign-key FILE`: sign the bundle's SHA256SUMS once the report is written.
    pub sign_key: Option<PathBuf>,
}

/// SHA256 over what decides the build: the resolved plan (build args, stages, tags, every
/// check with its threshold; not the artifact paths), the Dockerfile, the context.
fn recipe_hash(recipe: &Recipe, plan: &crate::ops::plan::Plan) -> Result<String> {
    let mut h = Sha256::new();
    let mut p = serde_json::to_value(plan).expect("serializes");
    p["artifacts"] = serde_json::Value::Null;
    // derived from the build args (and TAKEN_WHEELS' pins): left out, so a run started before
    // the plan listed components still resumes
    if let Some(m) = p.as_object_mut() {
        m.remove("components");
    }
    h.update(p.to_string().as_bytes());
    let df = recipe.dockerfile.read()?;
    h.update(df.as_bytes());
    h.update(crate::ops::drive::context_tar(
        recipe.context.as_deref(),
        &df,
        ".forge.Dockerfile",
        &crate::ops::drive::forge_files(recipe)?,
    )?);
    Ok(crate::ops::drive::hex(&h.finalize()))
}

/// The attempt to resume: its directory's record (`latest` followed).
fn prior(root: &Path, run: &str) -> Result<RunRecord> {
    let dir = root.join(run);
    if !dir.join(record::FILE).is_file() {
        return Err(Error::usage(
            format!("no run record at `{}`", dir.join(record::FILE).display()),
            Some("`forge runs --artifacts DIR` lists the runs that can be resumed"),
        ));
    }
    RunRecord::read(&dir)
}

fn recipe_of(args: &Args, prior: Option<&RunRecord>) -> Result<Recipe> {
    let r = &args.recipe;
    let opts = LoadOptions {
        allow_unsupported: r.allow_unsupported,
    };
    match prior {
        Some(p) if r.rocm.is_none() && r.recipe.is_none() => {
            let opts = LoadOptions {
                allow_unsupported: p.recipe.allow_unsupported || r.allow_unsupported,
            };
            match (&p.recipe.path, &p.recipe.rocm) {
                (Some(path), _) => Recipe::from_path(path, opts),
                (None, Some(v)) => Recipe::shipped(v, opts),
                (None, None) => Recipe::select(None, None, opts),
            }
        }
        _ => Recipe::select(r.rocm.as_deref(), r.recipe.as_deref(), opts),
    }
}

/// `--rehearse`: the recipe with stand-in sources on a rehearsal base image.
fn rehearse(ui: &Ui, engine: &DockerEngine, recipe: &mut Recipe, base: Option<&str>) -> Result<()> {
    let base = base.map_or_else(
        || crate::ops::rehearse::default_base_for(recipe),
        str::to_owned,
    );
    let standins = crate::ops::rehearse::read_standins(engine, &base)?;
    let before = recipe.build_args.clone();
    crate::ops::rehearse::apply(recipe, &base, &standins)?;
    crate::ops::rehearse::attach_wheelhouse(recipe)?;
    recipe.file.name = format!("{}-rehearsal", recipe.file.name);
    let mut s = format!(
        "rehearsal of {} on {base}: the shipped Dockerfile with stand-in sources\n",
        recipe.origin
    );
    for c in crate::ops::rehearse::changes(&before, &recipe.build_args) {
        s.push_str(&format!("  {c}\n"));
    }
    ui.say(&s);
    Ok(())
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
    if let Some(id) = &args.run_id {
        validate_run_id(id)?;
        if args.resume.is_some() {
            return Err(Error::usage(
                "`--run-id` and `--resume` both given",
                Some("`--resume RUN` names the run to continue"),
            ));
        }
    }
    let prior = match &args.resume {
        Some(run) if run == "latest" && !args.artifacts.join(run).exists() => {
            return Err(Error::usage(
                format!(
                    "nothing to resume: no run under `{}` (it has no `latest`)",
                    args.artifacts.display()
                ),
                Some(
                    "start one with `forge build`, or pass `--artifacts DIR` where your runs are (`forge runs --artifacts DIR` lists them)",
                ),
            ));
        }
        Some(run) => {
            let run = std::fs::read_link(args.artifacts.join(run))
                .ok()
                .and_then(|l| l.to_str().map(str::to_owned))
                .unwrap_or_else(|| run.clone());
            validate_run_id(&run)?;
            Some(prior(&args.artifacts, &run)?)
        }
        None => None,
    };
    let mut recipe = recipe_of(&args, prior.as_ref())?;
    let engine = DockerEngine::connect(Duration::from_secs(10))?;
    let recording = crate::engine::recording::Recording::from_env(&engine)?;
    if args.rehearse {
        rehearse(ui, &engine, &mut recipe, args.rehearsal_base.as_deref())?;
    }
    let run = match (&prior, &args.run_id) {
        (Some(p), _) => p.run.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => crate::ops::drive::new_run_id(&recipe.file.name),
    };
    let (plan, plan_checks) = crate::ops::plan::resolve(&recipe, &args.artifacts, &run)?;
    let dir = plan.artifacts.dir.clone();
    let _lock = record::lock(&args.artifacts, &run)?;
    if prior.is_none() && dir.join(record::FILE).exists() {
        return Err(Error::usage(
            format!(
                "run `{run}` already exists under `{}`",
                args.artifacts.display()
            ),
            Some(&format!(
                "continue it with `forge build --resume {run}`, or pick another `--run-id`"
            )),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut rec = new_record(&args, &recipe, &plan, &run, prior.as_ref())?;
    rec.write(&dir)?;
    record::set_latest(&args.artifacts, &run)?;
    let mut sel = Selection {
        skip: args.skip.clone(),
        only: args.only.clone(),
    };
    if args.no_export {
        sel.skip.push(PhaseId::Export);
    }
    let mut display = crate::monitor::ui::Display::new(ui.quiet, ui.verbose > 0);
    let mut ctx = Ctx {
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

/// The record a run starts with: every phase pending; a resumed run keeps its start and history.
fn new_record(
    args: &Args,
    recipe: &Recipe,
    plan: &crate::ops::plan::Plan,
    run: &str,
    prior: Option<&RunRecord>,
) -> Result<RunRecord> {
    let mut rec = RunRecord {
        schema: record::SCHEMA,
        run: run.to_owned(),
        recipe: RecipeRef {
            name: recipe.file.name.clone(),
            origin: recipe.origin.to_string(),
            path: match &recipe.origin {
                Origin::File(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
                Origin::Shipped { .. } => None,
            },
            rocm: match &recipe.origin {
                Origin::Shipped { .. } => Some(recipe.rocm_version().to_owned()),
                Origin::File(_) => None,
            },
            allow_unsupported: args.recipe.allow_unsupported,
            hash: recipe_hash(recipe, plan)?,
        },
        plan: plan.clone(),
        started: prior
            .as_ref()
            .map_or_else(record::now, |p| p.started.clone()),
        updated: record::now(),
        state: RunState::Running,
        signal: None,
        verdict: crate::report::Verdict::Incomplete,
        phases: phases::for_recipe(recipe)
            .iter()
            .map(|p| PhaseRecord::pending(p.id))
            .collect(),
        outputs: record::Outputs::default(),
        resumes: prior
            .as_ref()
            .map(|p| p.resumes.clone())
            .unwrap_or_default(),
    };
    if prior.is_some() {
        rec.resumes.push(format!("resumed at {}", record::now()));
    }
    Ok(rec)
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
