//! The build phase: the wheel stage built under the monitor (phase 2 live, stopped on the first
//! fatal finding), then its top-level files taken out through the engine into
//! `artifacts/<run>/wheels/` with their SHA256. The runtime stage is built later, by the image
//! phase, only once the wheel passed phase 3.

use crate::engine::temp_labels;
use crate::error::{Error, Result};
use crate::monitor::rules::Expect;
use crate::ops::drive::{self, End};
use crate::pipeline::Ctx;
use crate::pipeline::record::Wheel;
use crate::report::{Check, Status};

/// The monitor's expectations from the recipe.
pub fn expect(ctx: &Ctx<'_>) -> Expect {
    Expect::of(ctx.recipe)
}

/// The error for a stop asked by a signal.
pub fn interrupted(ctx: &Ctx<'_>) -> Error {
    Error::Interrupted {
        signal: ctx.cancel.signal().unwrap_or(libc::SIGINT),
    }
}

/// Run the build phase.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let a = &ctx.plan.artifacts;
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io("create", &a.dir, e))?;
    let builder = drive::resolve_builder(ctx.engine, ctx.builder)?;
    let tag = format!("forge-wheels:{}", ctx.run.to_lowercase());
    let spec = drive::spec(
        ctx.recipe,
        ctx.plan,
        builder,
        &ctx.plan.wheel_stage,
        &tag,
        temp_labels(&ctx.run),
    )?;
    let driven = drive::drive(ctx.engine, &spec, &a.build_log, expect(ctx), ctx.observer)?;
    ctx.outputs.wheels.clear();
    ctx.outputs.build = Some(driven.result.clone());
    let mut checks = Vec::new();
    match driven.result.end {
        End::Interrupted => return Err(interrupted(ctx)),
        End::Stopped | End::Failed => return Ok(driven.checks("build.result")),
        End::Succeeded => {}
    }
    let wheels = take_wheels(ctx, &tag);
    if wheels.is_ok() {
        // the MAX_JOBS of compiling stages served from the cache, from what they recorded
        for line in drive::log_recorded_jobs(&a.build_log, &a.wheels).unwrap_or_default() {
            ctx.observer.note(&line);
        }
    }
    let removed = ctx.engine.remove_image(&tag);
    checks.extend(taken_torch_skips(ctx, phase2_checks(ctx, &driven.monitor)));
    checks.extend(driven.checks("build.result"));
    match wheels {
        Ok(wheels) => {
            removed?;
            let n = wheels
                .iter()
                .filter(|w| w.path.extension().is_some_and(|e| e == "whl"))
                .count();
            checks.push(Check::when(
                n > 0,
                "build.wheels",
                crate::report::catalog::title("build.wheels"),
                wheels
                    .iter()
                    .map(|w| {
                        format!(
                            "{} ({} bytes, sha256 {})",
                            w.path.display(),
                            w.size,
                            w.sha256
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
            ctx.outputs.wheels = wheels;
        }
        Err(e @ Error::Interrupted { .. }) => return Err(e),
        Err(e) => checks.push(Check::fail(
            "build.wheels",
            crate::report::catalog::title("build.wheels"),
            e.to_string(),
        )),
    }
    Ok(checks)
}

/// Copy the wheel stage's root out and keep its top-level wheels and logs.
fn take_wheels(ctx: &Ctx<'_>, tag: &str) -> Result<Vec<Wheel>> {
    let a = &ctx.plan.artifacts;
    std::fs::create_dir_all(&a.wheels).map_err(|e| Error::io("create", &a.wheels, e))?;
    let part = a.dir.join("wheels.tar.part");
    let result = ctx
        .engine
        .export_path(tag, "/.", &temp_labels(&ctx.run), &part)
        .and_then(|_| drive::extract_wheels(&part, &a.wheels, ctx.cancel));
    let _ = std::fs::remove_file(&part);
    result
}

/// Phase 2 from the live log; when the compile step was served from cache (no summary in the
/// live log), from the `build.log` the Dockerfile keeps inside the wheel stage.
fn phase2_checks(ctx: &Ctx<'_>, live: &crate::monitor::Monitor) -> Vec<Check> {
    let kept = ctx.plan.artifacts.wheels.join("build.log");
    if live.flags.contains_key("USE_DISTRIBUTED") || !kept.is_file() {
        return live.checks();
    }
    match crate::monitor::scan::scan_file(&kept, expect(ctx)) {
        Ok(m) => m
            .checks()
            .into_iter()
            .map(|mut c| {
                c.evidence = format!(
                    "{} (from {}: the compile step was cached, so the live log has no summary)",
                    c.evidence,
                    kept.display()
                );
                c
            })
            .collect(),
        Err(_) => live.checks(),
    }
}

/// The checks of torch's own build (its CMake summary) when torch is taken as a wheel: skips
/// that say why; the monitor's other checks (fatal compile errors, a clipped log) judge vLLM's
/// compile as they judge any.
pub const TORCH_BUILD_CHECKS: &[&str] = &["2.1", "build.hip", "build.arch", "build.cuda", "2.2"];

fn taken_torch_skips(ctx: &Ctx<'_>, mut checks: Vec<Check>) -> Vec<Check> {
    let Some(t) = ctx.recipe.taken_torch() else {
        return checks;
    };
    for c in checks
        .iter_mut()
        .filter(|c| TORCH_BUILD_CHECKS.contains(&c.id.as_str()))
    {
        c.status = Status::Skip;
        c.hint = None;
        c.evidence = format!(
            "torch is taken as a wheel ({} {}, from {}), not built: there is no torch CMake \
             summary to judge; phase 3 judged the wheel itself before the build (the wheel phase)",
            t.name, t.version, t.from
        );
    }
    checks
}

/// Resume: every recorded wheel is still there with its SHA256.
pub fn verify(ctx: &Ctx<'_>) -> std::result::Result<(), String> {
    if ctx.outputs.wheels.is_empty() {
        return Err("no wheel was recorded".into());
    }
    for w in &ctx.outputs.wheels {
        match drive::sha256_file(&w.path) {
            Ok(h) if h == w.sha256 => {}
            Ok(h) => {
                return Err(format!(
                    "{} changed (SHA256 {h}, recorded {})",
                    w.path.display(),
                    w.sha256
                ));
            }
            Err(e) => return Err(format!("{e}")),
        }
    }
    Ok(())
}

/// Whether a phase's checks failed (the build's verdict on its own).
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}
