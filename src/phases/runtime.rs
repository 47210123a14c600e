//! Phases 5-7 (the GPU phases): their slots in the pipeline. `forge runtime` and `forge serve`
//! run them standalone (`crate::runtime::run_runtime`, `crate::serve::run_serve`); `forge build`
//! does not call them yet, so each check is a skip that names the command. To wire them,
//! replace the bodies of [`runtime`] and [`serve`] with those calls on `ctx.outputs.image`.

use crate::check::catalog::{self, CATALOG};
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::report::Check;

fn placeholder(ctx: &Ctx<'_>, phases: &[u8], command: &str) -> Vec<Check> {
    let image = ctx
        .outputs
        .image
        .as_ref()
        .map_or("IMAGE", |i| i.tag.as_str());
    let why = format!(
        "not run by `forge build` yet: run `{command} {image}` on the GPU host{}",
        if ctx.unverified.is_some() {
            " (this host has no usable AMD GPU, see preflight)"
        } else {
            ""
        }
    );
    CATALOG
        .iter()
        .filter(|e| phases.contains(&e.phase))
        .map(|e| Check::skip(e.id, catalog::title(e.id), why.clone()))
        .collect()
}

/// Phases 5 and 7: one probe container with the GPU.
pub fn runtime(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    Ok(placeholder(ctx, &[5, 7], "forge runtime"))
}

/// Phase 6: the vLLM server.
pub fn serve(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    Ok(placeholder(ctx, &[6], "forge serve"))
}
