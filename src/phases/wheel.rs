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

use crate::check::image::normalize;
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
    out.push(requires_check(&data, &taken));
    // the other taken wheels, installed into the same site-packages: where its ROCm comes from
    // (not the devel wheel: the compile stage's compiler, never in the image; not an sdist)
    let mut companions = Vec::new();
    for t in taken.iter().filter(|t| {
        t.name != torch.name
            && !t.name.eq_ignore_ascii_case("rocm-sdk-devel")
            && t.path.extension().is_some_and(|e| e == "whl")
            && t.path.is_file()
    }) {
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

/// Whether a distribution must come from the recipe's `[taken.*]` when the taken torch requires
/// it: AMD's ROCm wheels (`rocm`, the selector with the `rocm-sdk` tool; `rocm-sdk-*`) and
/// Triton. The package index cannot stand in for them: PyPI's `rocm` is another project's, its
/// `triton` a CUDA build; a pip step that fetched them would mix them with the taken stack.
fn from_taken_only(name: &str) -> bool {
    let n = normalize(name);
    n == "rocm" || n.starts_with("rocm-sdk") || n == "triton" || n.starts_with("pytorch-triton")
}

/// `wheel.taken-requires`: every `Requires-Dist` of the taken torch on a distribution that must
/// come from the taken set ([`from_taken_only`]) is taken, at a version the requirement allows.
/// TheRock's torch requires `rocm[libraries]==<its ROCm>` (ROCm/TheRock's build_prod_wheels.py
/// sets it): without `[taken.rocm]` pip would resolve it against the index.
pub fn requires_check(torch: &wheel::WheelData, taken: &[TakenWheel]) -> Check {
    use crate::check::pep440;
    let title = catalog::title("wheel.taken-requires");
    // the markers' Python: the wheel's tag (`cp312` -> 3.12), else any
    let python = torch
        .name
        .python
        .strip_prefix("cp")
        .filter(|d| d.len() >= 2 && d.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(String::new, |d| format!("{}.{}", &d[..1], &d[1..]));
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for text in &torch.requires {
        let Some(r) = pep440::parse_requirement(text) else {
            continue;
        };
        if !from_taken_only(&r.name) || !r.applies(&python) {
            continue;
        }
        match taken.iter().find(|t| normalize(&t.name) == normalize(&r.name)) {
            None => bad.push(format!(
                "torch requires `{text}` and no [taken.{}] gives it: pip would take `{}` from the                  index, which is not AMD's ROCm stack",
                r.name, r.name
            )),
            Some(t) => match pep440::version(&t.version) {
                Some(v) if pep440::satisfies(&r.clauses, &v) => {
                    good.push(format!("`{text}`: taken {} {}", t.name, t.version))
                }
                _ => bad.push(format!(
                    "torch requires `{text}`, the recipe takes {} {}",
                    t.name, t.version
                )),
            },
        }
    }
    if !bad.is_empty() {
        return Check::fail("wheel.taken-requires", title, bad.join("; ")).with_hint(
            "take what the torch wheel requires, from the index it came from, at the version it              names (`pip download --no-deps --index-url INDEX 'NAME==VERSION'`), and add a              [taken.NAME] with its sha256",
        );
    }
    let evidence = if good.is_empty() {
        "the taken torch requires no rocm, rocm-sdk-* or triton distribution (its ROCm is bundled          or the system's)"
            .to_owned()
    } else {
        good.join("; ")
    };
    Check::pass("wheel.taken-requires", title, evidence)
}

/// Resume: the taken wheels are still the pinned ones.
pub fn verify_taken(ctx: &Ctx<'_>) -> std::result::Result<(), String> {
    match taken_check(&ctx.recipe.taken) {
        (c, _) if c.status == crate::report::Status::Pass => Ok(()),
        (c, _) => Err(c.evidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn torch(requires: &[&str]) -> wheel::WheelData {
        let file = "torch-2.9.1+rocm7.13.0a20260315-cp312-cp312-linux_x86_64.whl";
        wheel::WheelData {
            path: file.into(),
            bytes: 1,
            name: wheel::parse_name(file).unwrap(),
            elves: Default::default(),
            notes: Default::default(),
            code_objects: Default::default(),
            members: 1,
            requires: requires.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn taken(pairs: &[(&str, &str)]) -> Vec<TakenWheel> {
        pairs
            .iter()
            .map(|(n, v)| TakenWheel {
                name: n.to_string(),
                version: v.to_string(),
                path: format!("{n}.whl").into(),
                sha256: String::new(),
                from: "local wheelhouse".into(),
            })
            .collect()
    }

    const THEROCK: &[&str] = &[
        "filelock",
        "rocm[libraries]==7.13.0a20260315",
        "triton==3.5.1+rocm7.13.0a20260315; platform_system == \"Linux\"",
        "rocm[devel]==7.13.0a20260315; extra == \"devel\"",
    ];

    #[test]
    fn therocks_torch_needs_the_rocm_selector_and_its_triton_taken() {
        let c = requires_check(
            &torch(THEROCK),
            &taken(&[
                ("torch", "2.9.1+rocm7.13.0a20260315"),
                ("rocm-sdk-core", "7.13.0a20260315"),
            ]),
        );
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.evidence.contains("no [taken.rocm] gives it"), "{c:?}");
        assert!(c.evidence.contains("no [taken.triton]"), "{c:?}");
        // an extra's requirement is not a default install's
        assert!(!c.evidence.contains("rocm[devel]"), "{c:?}");
    }

    #[test]
    fn a_taken_version_the_requirement_excludes_is_named() {
        let c = requires_check(
            &torch(THEROCK),
            &taken(&[
                ("rocm", "7.12.0a20260101"),
                ("triton", "3.5.1+rocm7.13.0a20260315"),
            ]),
        );
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(
            c.evidence.contains(
                "requires `rocm[libraries]==7.13.0a20260315`, the recipe takes rocm 7.12.0a20260101"
            ),
            "{c:?}"
        );
    }

    #[test]
    fn everything_taken_at_the_pinned_versions_passes() {
        let c = requires_check(
            &torch(THEROCK),
            &taken(&[
                ("rocm", "7.13.0a20260315"),
                ("triton", "3.5.1+rocm7.13.0a20260315"),
            ]),
        );
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(c.evidence.contains("taken rocm 7.13.0a20260315"), "{c:?}");
        let none = requires_check(&torch(&["filelock", "sympy>=1.13"]), &[]);
        assert_eq!(none.status, Status::Pass, "{none:?}");
        assert!(none.evidence.contains("requires no rocm"), "{none:?}");
    }
}
