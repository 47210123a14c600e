//! The pipeline: phases as units, the run record written after each phase, resume, and the
//! one cancel token.
//!
//! A [`Phase`] has an id, the phases whose outputs it needs (each must have produced them: a
//! phase that failed a check but made its output still feeds the next), the checks that gate it
//! (named by id: a failure that makes this phase meaningless, such as a wheel without
//! distributed or without code for the target arch; a size below the spec's threshold is not
//! one), and a run function returning its checks; its outputs go into [`Ctx::outputs`]. [`run`]
//! walks the list: it skips a phase whose inputs are missing or gated (saying which and why),
//! records which failed checks it went past (and why they do not gate it), writes `run.json`
//! atomically after every phase, and stops
//! with the record saying where on SIGINT/SIGTERM or an error. On `--resume` it reuses each
//! phase that passed before, once its recorded outputs are verified (image id still there,
//! wheel SHA256 unchanged, recipe hash the same), and reruns from the first one that did not.

pub mod record;
pub mod start;

pub use crate::cancel;

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::monitor::tail::Observer;
use crate::ops::drive::BuilderChoice;
use crate::ops::plan::Plan;
use crate::recipe::Recipe;
use crate::report::{Check, Status};
use cancel::Cancel;
use record::{Outputs, PhaseRecord, PhaseStatus, RunRecord, RunState};

/// The phases of `forge build`, in order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PhaseId {
    /// The recipe against its Dockerfile (`plan.*`).
    Plan,
    /// Phase 1: the host.
    Preflight,
    /// The wheel stage built under the monitor (phase 2), its wheels taken out.
    Build,
    /// Phase 3 on the torch wheel.
    Wheel,
    /// The runtime stage built, then phase 4 on it.
    Image,
    /// Phases 5 and 7 (one probe; GPU).
    Runtime,
    /// Phase 6 (GPU).
    Serve,
    /// The image as `.tar.gz` with its SHA256.
    Export,
    /// report.md and report.json from the record.
    Report,
}

impl PhaseId {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PhaseId::Plan => "plan",
            PhaseId::Preflight => "preflight",
            PhaseId::Build => "build",
            PhaseId::Wheel => "wheel",
            PhaseId::Image => "image",
            PhaseId::Runtime => "runtime",
            PhaseId::Serve => "serve",
            PhaseId::Export => "export",
            PhaseId::Report => "report",
        }
    }
}

/// A phase's run function: checks out, outputs into the context.
pub type RunFn = fn(&mut Ctx<'_>) -> Result<Vec<Check>>;

/// A phase that works over the record itself (the report): it runs after every other phase,
/// also when the run stopped early, and records its own checks when the run finished.
pub type RecordFn = fn(&mut Ctx<'_>, &mut RunRecord, &Path) -> Result<Vec<Check>>;

/// Whether recorded outputs still hold: `Err(why not)`.
pub type VerifyFn = fn(&Ctx<'_>) -> std::result::Result<(), String>;

/// One phase.
#[derive(Clone, Copy)]
pub struct Phase {
    /// Its id.
    pub id: PhaseId,
    /// Phases whose outputs it uses: each must have run and produced them
    /// ([`Outputs::holds`]); passing is not required.
    pub needs: &'static [PhaseId],
    /// Failures that make it meaningless: a failed gate in an earlier phase skips it.
    pub gates: &'static [Gate],
    /// Cheap and without outputs worth keeping: rerun on resume, never breaking the reuse of
    /// later phases.
    pub cheap: bool,
    /// Runs it.
    pub run: RunFn,
    /// Checks that its recorded outputs still hold (resume).
    pub verify: VerifyFn,
    /// Set for the report phase: its work, over the record, in place of `run`
    /// ([`RecordFn`]).
    pub over_record: Option<RecordFn>,
}

/// A failure that makes a later phase meaningless.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// Any failed check of that phase (the plan: a recipe that does not match its Dockerfile
    /// is not worth hours of compile).
    Phase(PhaseId),
    /// That check failed; the text says what the failure means for the gated phase.
    Check(&'static str, &'static str),
}

impl Gate {
    /// Why `phase` is skipped, if this gate failed in `rec`.
    fn closed(self, phases: &[PhaseRecord]) -> Option<String> {
        match self {
            Gate::Phase(g) => phases
                .iter()
                .find(|p| p.id == g)
                .filter(|p| p.status == PhaseStatus::Fail)
                .map(|_| format!("the {} phase failed", g.name())),
            Gate::Check(id, why) => phases
                .iter()
                .flat_map(|p| p.checks.iter().map(move |c| (p.id, c)))
                .find(|(_, c)| c.id == id && c.status == Status::Fail)
                .map(|(p, _)| format!("{id} failed in the {} phase: {why}", p.name())),
        }
    }

    /// Whether this gate is the check `id`.
    fn is(self, id: &str) -> bool {
        matches!(self, Gate::Check(g, _) if g == id)
    }
}

/// What the phases share.
pub struct Ctx<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Its plan, with this run's artifact paths.
    pub plan: &'a Plan,
    /// The plan's own checks.
    pub plan_checks: Vec<Check>,
    /// Run id.
    pub run: String,
    /// The engine (the build engine).
    pub engine: &'a dyn Engine,
    /// `--gpu-engine`: the engine phases 4-7 run on, the image streamed into it after the
    /// build; `None`: the build engine.
    pub gpu: Option<&'a dyn Engine>,
    /// The cancel token.
    pub cancel: Cancel,
    /// Progress.
    pub observer: &'a mut dyn Observer,
    /// `--builder`.
    pub builder: BuilderChoice,
    /// Outputs so far (recorded ones on resume).
    pub outputs: Outputs,
    /// Phases preflight found unverifiable here (no GPU), with the reason.
    pub unverified: Option<String>,
    /// A rehearsal (`--rehearse`): checks stand-ins cannot decide become skips that say so.
    pub rehearsal: bool,
    /// The host's device directory (`/dev`; the pipeline's tests give a stand-in with `kfd`).
    pub dev: std::path::PathBuf,
}

impl<'a> Ctx<'a> {
    /// The engine phases 4-7 run on: the GPU engine, else the build engine.
    pub fn gpu_engine(&self) -> &'a dyn Engine {
        self.gpu.unwrap_or(self.engine)
    }
}

/// Which phases to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--skip`.
    pub skip: Vec<PhaseId>,
    /// `--only` (empty: all).
    pub only: Vec<PhaseId>,
}

impl Selection {
    /// Why `id` is not selected, if it is not.
    pub fn excluded(&self, id: PhaseId) -> Option<String> {
        if id == PhaseId::Report || id == PhaseId::Plan {
            return None;
        }
        if self.skip.contains(&id) {
            return Some(format!("not run: `--skip {}`", id.name()));
        }
        if !self.only.is_empty() && !self.only.contains(&id) {
            let only: Vec<&str> = self.only.iter().map(|p| p.name()).collect();
            return Some(format!("not run: `--only {}`", only.join(",")));
        }
        None
    }
}

fn set(rec: &mut RunRecord, p: PhaseRecord) {
    match rec.phases.iter_mut().find(|x| x.id == p.id) {
        Some(x) => *x = p,
        None => rec.phases.push(p),
    }
}

/// Why `phase` cannot run, from the phases' records and the outputs so far.
fn blocked(phase: &Phase, phases: &[PhaseRecord], outputs: &Outputs) -> Option<String> {
    for n in phase.needs {
        match phases.iter().find(|p| p.id == *n) {
            Some(p)
                if (p.status.passed() || p.status == PhaseStatus::Fail) && outputs.holds(*n) => {}
            Some(p) => {
                return Some(format!(
                    "needs the {} phase's outputs, and it {}{}",
                    n.name(),
                    match p.status {
                        PhaseStatus::Fail => "failed",
                        PhaseStatus::Skip => "was skipped",
                        PhaseStatus::Pass | PhaseStatus::Incomplete => "produced none",
                        _ => "did not finish",
                    },
                    p.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
            None => {
                return Some(format!(
                    "needs the {} phase, which is not in this run",
                    n.name()
                ));
            }
        }
    }
    phase.gates.iter().find_map(|g| g.closed(phases))
}

/// The failed checks of earlier phases that `phase` goes on past, each with why it is not a gate.
fn went_past(phase: &Phase, phases: &[PhaseRecord]) -> Vec<String> {
    if phase.needs.is_empty() {
        return Vec::new();
    }
    phases
        .iter()
        // The phases before this one, in the run's order (a prebuilt recipe's wheel phase comes
        // before its build): the host's own failures (preflight) are the host's, and a failed
        // plan gates the build.
        .take_while(|p| p.id != phase.id)
        .filter(|p| !matches!(p.id, PhaseId::Plan | PhaseId::Preflight))
        .flat_map(|p| p.checks.iter().map(move |c| (p.id, c)))
        .filter(|(_, c)| c.status == Status::Fail && !phase.gates.iter().any(|g| g.is(&c.id)))
        .map(|(p, c)| {
            format!(
                "{} failed in the {} phase and does not gate the {} phase: {}",
                c.id,
                p.name(),
                phase.id.name(),
                not_a_gate(&c.id)
            )
        })
        .collect()
}

/// Why a failed check does not stop the phases after it (the run's verdict still fails).
fn not_a_gate(id: &str) -> &'static str {
    match id {
        "3.1" | "4.1" | "deliverable.sizes" => {
            "a size below the spec's threshold is not a broken build (a single-arch wheel bundles no ROCm math libraries), so the later phases still have something to judge"
        }
        _ => "the later phases can still judge what was built",
    }
}

/// `__FORGE_TEST_HOLD=PHASE`, for tests that interrupt a run in a chosen phase: once `run.json`
/// says PHASE is running, wait (up to 60 s) for a signal before running it, so a SIGINT or
/// SIGTERM sent then lands in that phase however short the phase is. Unset, it costs nothing.
/// A test hook: only a debug build (what `cargo test` runs) honours it, so a stray variable can
/// never hold a user's release build.
pub const HOLD_ENV: &str = "__FORGE_TEST_HOLD";

fn hold(id: PhaseId, cancel: Cancel) -> Result<()> {
    if !cfg!(debug_assertions) || std::env::var(HOLD_ENV).ok().as_deref() != Some(id.name()) {
        return Ok(());
    }
    let until = Instant::now() + std::time::Duration::from_secs(60);
    while Instant::now() < until {
        cancel.check()?;
        std::thread::sleep(cancel::POLL);
    }
    Ok(())
}

/// Run `phases` in order, recording each in `rec` and writing it to `dir/run.json` after each;
/// then the phases over the record (the report), whatever happened: over a finished run they
/// run as a phase (timed, their checks recorded); over an interrupted or failed one they only
/// render what the record holds, and stay pending in it. `prior` is the record of the attempt
/// being resumed. Returns `Err` for an interruption (the record says where) or an error forge
/// could not go past.
pub fn run(
    phases: &[Phase],
    ctx: &mut Ctx<'_>,
    rec: &mut RunRecord,
    sel: &Selection,
    prior: Option<&RunRecord>,
    dir: &Path,
) -> Result<()> {
    let result = run_phases(phases, ctx, rec, sel, prior, dir);
    for phase in phases {
        let Some(work) = phase.over_record else {
            continue;
        };
        if result.is_err() {
            // The run's error wins; the reports are rendered as far as they can be.
            let _ = work(ctx, rec, dir);
            continue;
        }
        let started = Instant::now();
        set(
            rec,
            PhaseRecord {
                started: Some(record::now()),
                status: PhaseStatus::Running,
                ..PhaseRecord::pending(phase.id)
            },
        );
        rec.write(dir)?;
        let done = work(ctx, rec, dir);
        let p = rec.phase_mut(phase.id).expect("set above");
        p.seconds = started.elapsed().as_secs_f64();
        match done {
            Ok(checks) => {
                p.status = PhaseStatus::of(&checks);
                p.checks = checks;
                rec.write(dir)?;
            }
            Err(e) => {
                p.status = PhaseStatus::Error;
                p.reason = Some(e.to_string());
                rec.state = RunState::Error;
                rec.write(dir)?;
                return Err(e);
            }
        }
    }
    result
}

/// The phases that run on their own (all but those over the record), in order.
fn run_phases(
    phases: &[Phase],
    ctx: &mut Ctx<'_>,
    rec: &mut RunRecord,
    sel: &Selection,
    prior: Option<&RunRecord>,
    dir: &Path,
) -> Result<()> {
    // On resume: reuse phases in order while they passed and verify; the first that does not
    // breaks the chain and everything after it runs again.
    let mut chain = prior.is_some();
    if let Some(p) = prior {
        if p.recipe.hash == rec.recipe.hash {
            ctx.outputs = p.outputs.clone();
            rec.outputs = p.outputs.clone();
        } else {
            chain = false;
            rec.resumes.push(
                "the recipe, its Dockerfile or its context changed since the interrupted attempt: every phase runs again".into(),
            );
        }
    }
    for phase in phases.iter().filter(|p| p.over_record.is_none()) {
        let why_rerun = if chain && !phase.cheap {
            match reuse(phase, ctx, rec, prior, dir)? {
                Reuse::Reused => continue,
                Reuse::Rerun(why) => {
                    chain = why.is_none() && chain_holds(phase, prior);
                    why
                }
            }
        } else {
            None
        };
        if skipped(phase, rec, sel, prior, chain) {
            continue;
        }
        run_one(phase, ctx, rec, why_rerun, dir)?;
    }
    rec.state = RunState::Finished;
    rec.write(dir)
}

/// What resuming made of a phase.
enum Reuse {
    /// It passed before and its recorded outputs verify: kept.
    Reused,
    /// It runs again, and why (none when it was skipped or absent before).
    Rerun(Option<String>),
}

/// On resume, while the chain of reused phases holds: reuse `phase` if it passed before and
/// its recorded outputs verify, else say why it runs again.
fn reuse(
    phase: &Phase,
    ctx: &mut Ctx<'_>,
    rec: &mut RunRecord,
    prior: Option<&RunRecord>,
    dir: &Path,
) -> Result<Reuse> {
    let before = prior.and_then(|p| p.phase(phase.id));
    let why = match before.map(|b| b.status) {
        Some(s) if s.passed() => match (phase.verify)(ctx) {
            Ok(()) => {
                let mut b = before.expect("matched").clone();
                b.reused = true;
                b.reason = Some("reused: recorded outputs verified".into());
                rec.resumes.push(format!(
                    "{}: reused (recorded outputs verified)",
                    phase.id.name()
                ));
                set(rec, b);
                rec.write(dir)?;
                return Ok(Reuse::Reused);
            }
            Err(why) => Some(format!("run again: {why}")),
        },
        Some(PhaseStatus::Skip) | None => None,
        Some(s) => Some(format!("run again: it ended `{}` before", s.name())),
    };
    if let Some(w) = &why {
        rec.resumes.push(format!("{}: {w}", phase.id.name()));
    }
    Ok(Reuse::Rerun(why))
}

/// Whether the chain of reused phases goes on past `phase`, which was not reused: only when it
/// was skipped before (a phase absent from the earlier record breaks it).
fn chain_holds(phase: &Phase, prior: Option<&RunRecord>) -> bool {
    prior
        .and_then(|p| p.phase(phase.id))
        .is_some_and(|b| b.status == PhaseStatus::Skip)
}

/// Record `phase` as skipped when it is not selected or its inputs are missing or gated (an
/// unselected phase keeps what an earlier attempt recorded for it, if it passed); returns
/// whether it was.
fn skipped(
    phase: &Phase,
    rec: &mut RunRecord,
    sel: &Selection,
    prior: Option<&RunRecord>,
    chain: bool,
) -> bool {
    let Some(reason) = sel
        .excluded(phase.id)
        .or_else(|| blocked(phase, &rec.phases, &rec.outputs))
    else {
        return false;
    };
    if sel.excluded(phase.id).is_some()
        && let Some(b) = prior.and_then(|p| p.phase(phase.id))
        && b.status.passed()
        && chain
    {
        set(rec, b.clone());
        return true;
    }
    set(
        rec,
        PhaseRecord {
            status: PhaseStatus::Skip,
            reason: Some(reason),
            ..PhaseRecord::pending(phase.id)
        },
    );
    true
}

/// Run `phase`: recorded as running, then with its checks, or as interrupted or in error
/// (returned); `run.json` written at each step.
fn run_one(
    phase: &Phase,
    ctx: &mut Ctx<'_>,
    rec: &mut RunRecord,
    why_rerun: Option<String>,
    dir: &Path,
) -> Result<()> {
    let started = Instant::now();
    set(
        rec,
        PhaseRecord {
            status: PhaseStatus::Running,
            reason: why_rerun,
            started: Some(record::now()),
            went_past: went_past(phase, &rec.phases),
            ..PhaseRecord::pending(phase.id)
        },
    );
    rec.write(dir)?;
    let result = hold(phase.id, ctx.cancel)
        .and_then(|()| ctx.cancel.check())
        .and_then(|()| (phase.run)(ctx));
    rec.outputs = ctx.outputs.clone();
    let p = rec.phase_mut(phase.id).expect("set above");
    p.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(mut checks) => {
            if ctx.rehearsal {
                crate::ops::rehearse::soften(&mut checks);
            }
            p.status = PhaseStatus::of(&checks);
            if p.status == PhaseStatus::Skip && p.reason.is_none() {
                p.reason = checks.first().map(|c| c.evidence.clone());
            }
            p.checks = checks;
            rec.write(dir)
        }
        Err(e) => {
            if let Error::Interrupted { signal } = e {
                p.status = PhaseStatus::Interrupted;
                p.reason = Some(format!("stopped by {}", cancel::name(signal)));
                rec.state = RunState::Interrupted;
                rec.signal = Some(signal);
            } else {
                p.status = PhaseStatus::Error;
                p.reason = Some(e.to_string());
                rec.state = RunState::Error;
            }
            rec.write(dir)?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
