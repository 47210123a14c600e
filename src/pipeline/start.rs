//! A run's start, before any phase: the attempt to resume (its record, `latest` followed),
//! the recipe (the resumed run's own unless another is named), the rehearsal's stand-ins, the
//! run id, the plan, the artifacts lock and the first record on disk with `latest` moved to
//! it. `forge build` calls [`open`], then [`super::run`] walks the phases.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::record::{
    self, ArtifactsLock, PhaseRecord, RecipeRef, RunRecord, RunState, validate_run_id,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ops::plan::Plan;
use crate::recipe::{LoadOptions, Origin, Recipe};
use crate::report::Check;

/// What a run is asked to be.
pub struct Request<'a> {
    /// `--rocm`: a shipped recipe.
    pub rocm: Option<&'a str>,
    /// `--recipe`: a recipe file.
    pub recipe_file: Option<&'a Path>,
    /// `--allow-unsupported`.
    pub allow_unsupported: bool,
    /// The phases of a recipe (`crate::phases::for_recipe`): the first record lists them.
    pub phases: fn(&Recipe) -> &'static [super::Phase],
    /// `--artifacts`.
    pub artifacts: &'a Path,
    /// `--run-id`.
    pub run_id: Option<&'a str>,
    /// `--resume [RUN]`.
    pub resume: Option<&'a str>,
    /// `--rehearse`, with `--rehearsal-base` if given.
    pub rehearse: Option<Option<&'a str>>,
}

/// A run opened: everything the phases need, the lock held for as long as this lives.
pub struct Opened {
    /// The recipe, rehearsal stand-ins applied.
    pub recipe: Recipe,
    /// The resolved plan.
    pub plan: Plan,
    /// The plan's own checks (the Plan phase reports them).
    pub plan_checks: Vec<Check>,
    /// The run id.
    pub run: String,
    /// The run's directory (made).
    pub dir: PathBuf,
    /// Its record, written once.
    pub record: RunRecord,
    /// The attempt resumed, if any.
    pub prior: Option<RunRecord>,
    /// What the rehearsal changed, to say (none without `--rehearse`).
    pub rehearsal: Option<String>,
    /// The artifacts directory's lock.
    pub lock: ArtifactsLock,
}

/// The first half of opening a run, before any engine is reached: the arguments judged, the
/// attempt to resume read, the recipe loaded. A wrong `--resume` or recipe is said at once,
/// engine or not.
pub struct Resolved {
    prior: Option<RunRecord>,
    recipe: Recipe,
}

/// Judge the arguments, read the run resumed, load the recipe.
pub fn resolve(req: &Request<'_>) -> Result<Resolved> {
    if let Some(id) = req.run_id {
        validate_run_id(id)?;
        if req.resume.is_some() {
            return Err(Error::usage(
                "`--run-id` and `--resume` both given",
                Some("`--resume RUN` names the run to continue"),
            ));
        }
    }
    let prior = req
        .resume
        .map(|run| resumed(req.artifacts, run))
        .transpose()?;
    let recipe = recipe_of(req, prior.as_ref())?;
    Ok(Resolved { prior, recipe })
}

/// Open a run resolved: the rehearsal's stand-ins (read from `engine`), the id and the plan;
/// take the lock; write the first record and move `latest`.
pub fn open(req: &Request<'_>, resolved: Resolved, engine: &dyn Engine) -> Result<Opened> {
    let Resolved { prior, mut recipe } = resolved;
    let rehearsal = req
        .rehearse
        .map(|base| rehearse(engine, &mut recipe, base))
        .transpose()?;
    let run = match (&prior, req.run_id) {
        (Some(p), _) => p.run.clone(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => crate::ops::drive::new_run_id(&recipe.file.name),
    };
    let (plan, plan_checks) = crate::ops::plan::resolve(&recipe, req.artifacts, &run)?;
    let dir = plan.artifacts.dir.clone();
    let lock = record::lock(req.artifacts, &run)?;
    if prior.is_none() && dir.join(record::FILE).exists() {
        return Err(Error::usage(
            format!(
                "run `{run}` already exists under `{}`",
                req.artifacts.display()
            ),
            Some(&format!(
                "continue it with `forge build --resume {run}`, or pick another `--run-id`"
            )),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut record = new_record(req, &recipe, &plan, &run, prior.as_ref())?;
    record.write(&dir)?;
    record::set_latest(req.artifacts, &run)?;
    Ok(Opened {
        recipe,
        plan,
        plan_checks,
        run,
        dir,
        record,
        prior,
        rehearsal,
        lock,
    })
}

/// `--resume RUN` (or `latest`): that run's record.
fn resumed(root: &Path, run: &str) -> Result<RunRecord> {
    if run == "latest" && !root.join(run).exists() {
        return Err(Error::usage(
            format!(
                "nothing to resume: no run under `{}` (it has no `latest`)",
                root.display()
            ),
            Some(
                "start one with `forge build`, or pass `--artifacts DIR` where your runs are (`forge runs --artifacts DIR` lists them)",
            ),
        ));
    }
    let run = std::fs::read_link(root.join(run))
        .ok()
        .and_then(|l| l.to_str().map(str::to_owned))
        .unwrap_or_else(|| run.to_owned());
    validate_run_id(&run)?;
    prior(root, &run)
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

/// The recipe named, else the resumed run's own.
fn recipe_of(r: &Request<'_>, prior: Option<&RunRecord>) -> Result<Recipe> {
    let opts = LoadOptions {
        allow_unsupported: r.allow_unsupported,
    };
    match prior {
        Some(p) if r.rocm.is_none() && r.recipe_file.is_none() => {
            let opts = LoadOptions {
                allow_unsupported: p.recipe.allow_unsupported || r.allow_unsupported,
            };
            match (&p.recipe.path, &p.recipe.rocm) {
                (Some(path), _) => Recipe::from_path(path, opts),
                (None, Some(v)) => Recipe::shipped(v, opts),
                (None, None) => Recipe::select(None, None, opts),
            }
        }
        _ => Recipe::select(r.rocm, r.recipe_file, opts),
    }
}

/// SHA256 over what decides the build: the resolved plan (build args, stages, tags, every
/// check with its threshold; not the artifact paths), the Dockerfile, the context.
fn recipe_hash(recipe: &Recipe, plan: &Plan) -> Result<String> {
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

/// `--rehearse`: the recipe with stand-in sources on a rehearsal base image; returns what
/// changed, to say.
fn rehearse(engine: &dyn Engine, recipe: &mut Recipe, base: Option<&str>) -> Result<String> {
    use crate::ops::rehearse as r;
    let base = base.map_or_else(|| r::default_base_for(recipe), str::to_owned);
    let standins = r::read_standins(engine, &base)?;
    let before = recipe.build_args.clone();
    r::apply(recipe, &base, &standins)?;
    r::attach_wheelhouse(recipe)?;
    recipe.file.name = format!("{}-rehearsal", recipe.file.name);
    let mut s = format!(
        "rehearsal of {} on {base}: the shipped Dockerfile with stand-in sources\n",
        recipe.origin
    );
    for c in r::changes(&before, &recipe.build_args) {
        s.push_str(&format!("  {c}\n"));
    }
    Ok(s)
}

/// The record a run starts with: every phase pending; a resumed run keeps its start and history.
fn new_record(
    args: &Request<'_>,
    recipe: &Recipe,
    plan: &Plan,
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
            allow_unsupported: args.allow_unsupported,
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
        phases: (args.phases)(recipe)
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
