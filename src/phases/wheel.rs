//! Phase 3 inside `forge build`: `forge wheel`'s checks on the torch wheel taken out, with
//! libtorch_hip.so's libraries resolved inside the recipe's base image (where the build
//! stage's ROCm comes from). A wheel that fails a gating check here (not ROCm, no distributed,
//! no code for the arch: `phases::WHEEL_GATES`) is not put into an image; one that fails only
//! 3.1 (size) is, and the run's verdict still fails on 3.1.
//!
//! A prebuilt recipe (`[taken.torch]`) runs this phase first, on the taken wheel in the
//! wheelhouse, before anything is built: its taken wheels are checked against their pinned
//! SHA256 (`wheel.taken`), and libtorch_hip.so is resolved against the other taken wheels (the
//! ROCm it loads) on top of the base image. A failing gate stops the run there
//! (`phases::PREBUILT`).

use crate::check::resolve::{ImageRoot, LibRoot};
use crate::check::wheel::{self, WheelOptions};
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::recipe::TakenWheel;
use crate::report::Check;
use crate::report::catalog;

pub use crate::units::threads;

/// Run phase 3 on the torch wheel: the taken one (before anything is built) for a prebuilt
/// recipe, else the one the build took out.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    if ctx.recipe.taken_torch().is_some() {
        return run_taken(ctx);
    }
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

/// Each taken wheel present with its pinned SHA256: (the check, whether torch's own is good).
pub fn taken_check(taken: &[TakenWheel]) -> (Check, bool) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut hints = Vec::new();
    let mut torch_ok = true;
    for t in taken {
        let verdict = match crate::atomic::sha256_file(&t.path) {
            Ok((n, h)) if h == t.sha256 => Ok(format!(
                "{} {}: {} ({n} bytes, sha256 {} as pinned)",
                t.name,
                t.version,
                t.path.display(),
                &h[..12]
            )),
            Ok((_, h)) => Err((
                format!(
                    "{}: {} has sha256 {h}, the recipe pins {}",
                    t.name,
                    t.path.display(),
                    t.sha256
                ),
                "a different file under the pinned name: fetch the pinned one again, or pin \
                 this one's hash if it is the one you mean"
                    .to_owned(),
            )),
            Err(e) => Err((format!("{}: {e}", t.name), t.fetch_hint())),
        };
        match verdict {
            Ok(line) => good.push(line),
            Err((line, hint)) => {
                if t.name.eq_ignore_ascii_case("torch") {
                    torch_ok = false;
                }
                bad.push(line);
                hints.push(hint);
            }
        }
    }
    let title = catalog::title("wheel.taken");
    if bad.is_empty() {
        (Check::pass("wheel.taken", title, good.join("; ")), true)
    } else {
        (
            Check::fail("wheel.taken", title, bad.join("; ")).with_hint(hints.join("; ")),
            torch_ok,
        )
    }
}

/// Phase 3 on the taken torch wheel, before the build.
fn run_taken(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let taken = ctx.recipe.taken.clone();
    let torch = ctx
        .recipe
        .taken_torch()
        .expect("run_taken needs one")
        .clone();
    let (check, torch_ok) = taken_check(&taken);
    let mut out = vec![check];
    ctx.cancel.check()?;
    if !torch_ok {
        out.push(Check::skip(
            "3.1",
            catalog::title("3.1"),
            format!(
                "the taken torch wheel {} is missing or not the pinned one (wheel.taken)",
                torch.path.display()
            ),
        ));
        return Ok(out);
    }
    let data = match wheel::read_wheel(&torch.path, threads()) {
        Ok(d) => d,
        Err(e) => {
            out.push(Check::fail(
                "wheel.flavour",
                catalog::title("wheel.flavour"),
                format!("cannot read {}: {e}", torch.path.display()),
            ));
            return Ok(out);
        }
    };
    // the other taken wheels, installed into the same site-packages: where its ROCm comes from
    let mut companions = Vec::new();
    for t in taken
        .iter()
        .filter(|t| t.name != torch.name && t.path.is_file())
    {
        ctx.cancel.check()?;
        if let Ok(d) = wheel::read_wheel(&t.path, threads()) {
            companions.push(d);
        }
    }
    ctx.cancel.check()?;
    let opts = WheelOptions {
        archs: ctx.recipe.archs().to_vec(),
        min_bytes: ctx.recipe.file.checks.wheel_min_bytes,
    };
    let mut root = ImageRoot::open(ctx.engine, &ctx.plan.base_image).ok();
    let root = root.as_mut().map(|r| r as &mut dyn LibRoot);
    let mut checks = wheel::checks_with(&data, &opts, root, &companions).0;
    let why = crate::report::catalog::replaced_note(&ctx.recipe.file.checks, "wheel-min-bytes");
    for c in checks
        .iter_mut()
        .filter(|c| c.id == "3.1" && !why.is_empty())
    {
        c.evidence
            .push_str(&format!("; the recipe's threshold{why}"));
    }
    let names: Vec<String> = companions.iter().map(|c| c.name.name.clone()).collect();
    for c in checks.iter_mut().filter(|c| c.id == "3.6") {
        c.evidence.push_str(&format!(
            "; resolved in {} with the taken wheels beside it ({}), on {}",
            torch.path.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
            ctx.plan.base_image
        ));
    }
    out.extend(checks);
    ctx.cancel.check()?;
    Ok(out)
}

/// Resume: the taken wheels are still the pinned ones.
pub fn verify_taken(ctx: &Ctx<'_>) -> std::result::Result<(), String> {
    match taken_check(&ctx.recipe.taken) {
        (c, _) if c.status == crate::report::Status::Pass => Ok(()),
        (c, _) => Err(c.evidence),
    }
}
