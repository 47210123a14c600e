//! Phases 5-7 (the GPU phases): their slots in the pipeline. `forge runtime` and `forge serve`
//! land with the issue10-runtime branch; until then each check is a skip that says so. To wire
//! them, replace the bodies of [`runtime`] and [`serve`] with calls into that code
//! (`ctx.outputs.image` is the image to run).

use crate::check::catalog::{self, CATALOG};
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::report::Check;

fn placeholder(ctx: &Ctx<'_>, phases: &[u8]) -> Vec<Check> {
    let why = match &ctx.unverified {
        Some(_) => {
            "not implemented in this build; and no usable AMD GPU here (see preflight)".to_owned()
        }
        None => "not implemented in this build (the runtime probe lands with `forge runtime`)"
            .to_owned(),
    };
    CATALOG
        .iter()
        .filter(|e| phases.contains(&e.phase))
        .map(|e| Check::skip(e.id, catalog::title(e.id), why.clone()))
        .collect()
}

/// Phases 5 and 7: one probe container with the GPU.
pub fn runtime(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    Ok(placeholder(ctx, &[5, 7]))
}

/// Phase 6: the vLLM server.
pub fn serve(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    Ok(placeholder(ctx, &[6]))
}
