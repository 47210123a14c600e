//! Phase 3 inside `forge build`: `forge wheel`'s checks on the torch wheel taken out, with
//! libtorch_hip.so's libraries resolved inside the recipe's base image (where the build
//! stage's ROCm comes from). A wheel that fails a gating check here (not ROCm, no distributed,
//! no code for the arch: `phases::WHEEL_GATES`) is not put into an image; one that fails only
//! 3.1 (size) is, and the run's verdict still fails on 3.1.

use crate::check::resolve::{ImageRoot, LibRoot};
use crate::check::wheel::{self, WheelOptions};
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::report::Check;
use crate::report::catalog;

pub use crate::units::threads;

/// Run phase 3 on the torch wheel.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let Some(torch) = ctx.outputs.wheels.iter().find(|w| {
        w.path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("torch-") && n.ends_with(".whl"))
    }) else {
        return Ok(vec![Check::skip(
            "3.1",
            catalog::title("3.1"),
            "the wheel stage holds no torch-*.whl",
        )]);
    };
    ctx.cancel.check()?;
    let data = match wheel::read_wheel(&torch.path, threads()) {
        Ok(d) => d,
        Err(e) => {
            // `wheel.flavour` gates the image: a wheel forge cannot read is not put into one.
            return Ok(vec![Check::fail(
                "wheel.flavour",
                catalog::title("wheel.flavour"),
                format!("cannot read {}: {e}", torch.path.display()),
            )]);
        }
    };
    ctx.cancel.check()?;
    let opts = WheelOptions {
        archs: ctx.recipe.archs().to_vec(),
        min_bytes: ctx.recipe.file.checks.wheel_min_bytes,
    };
    let mut root = ImageRoot::open(ctx.engine, &ctx.plan.base_image).ok();
    let root = root.as_mut().map(|r| r as &mut dyn LibRoot);
    let checks = wheel::checks(&data, &opts, root).0;
    ctx.cancel.check()?;
    Ok(checks)
}
