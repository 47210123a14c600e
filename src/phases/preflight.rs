//! Phase 1 inside `forge build`: the host checks. A failed GPU check does not stop a build
//! (a build server has no GPU): it becomes a skip that names the phases left unverified.

use crate::check::host::{self, HostPaths};
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::report::catalog;
use crate::report::{Check, Status};

/// The phases a missing GPU leaves unverified.
pub const GPU_PHASES: &str = "runtime (phases 5 and 7) and serve (phase 6)";

/// Run phase 1; GPU failures become skips naming [`GPU_PHASES`].
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let info = ctx.engine.info();
    let mut checks = host::preflight_through(
        ctx.recipe,
        &info,
        &HostPaths::default(),
        ctx.engine,
        &ctx.run,
    );
    if let Some(gpu) = ctx.gpu {
        // The GPU host's facts are the GPU engine's host's, not the build engine's.
        let info = gpu.info();
        let words = crate::ops::transfer::engine_words("GPU", info.as_ref().ok());
        let on_gpu =
            host::preflight_through(ctx.recipe, &info, &HostPaths::default(), gpu, &ctx.run);
        for c in &mut checks {
            if !(catalog::entry(&c.id).needs_gpu || SERVING.contains(&c.id.as_str())) {
                continue;
            }
            if let Some(g) = on_gpu.iter().find(|g| g.id == c.id) {
                *c = g.clone();
                c.evidence = format!("{words}: {}", c.evidence);
            }
        }
    }
    Ok(gpu_failures_to_skips(ctx, checks))
}

/// The host checks about serving on the GPU host (not the build's).
const SERVING: &[&str] = &["host.kernel", "host.gtt"];

/// Failed GPU checks -> skips that say what that leaves unverified; records it in the context.
pub fn gpu_failures_to_skips(ctx: &mut Ctx<'_>, checks: Vec<Check>) -> Vec<Check> {
    checks
        .into_iter()
        .map(|mut c| {
            if c.status == Status::Fail && catalog::entry(&c.id).needs_gpu {
                // a remote engine's checks start "on the engine's host NAME:"
                let (at, host) = if c.evidence.starts_with("on the engine's host")
                    || c.evidence.starts_with("GPU engine")
                {
                    ("", "that host")
                } else {
                    (" here", "this host")
                };
                ctx.unverified = Some(format!(
                    "no usable AMD GPU{at} ({}): {GPU_PHASES} cannot be verified on {host}",
                    c.evidence
                ));
                c.status = Status::Skip;
                c.evidence = format!(
                    "{}; not needed to build: {GPU_PHASES} are left unverified on {host}",
                    c.evidence
                );
            }
            c
        })
        .collect()
}
