//! `forge image IMAGE` (phase 4, and the image audit from the engine's export stream).

use super::prelude::*;
use crate::phases::image::{audit_archs, audit_image};

/// `forge image`'s arguments.
pub struct Args {
    /// The image (tag or id).
    pub image: String,
    /// `--arch`.
    pub arch: Vec<String>,
    /// Which recipe.
    pub recipe: RecipeArgs,
    /// `--sbom FILE`.
    pub sbom: Option<PathBuf>,
    /// `--gpu-engine ENGINE`: move the image there, then check it there.
    pub gpu_engine: Option<String>,
}

/// Run it. It holds a probe container, then the engine's export stream: SIGINT and SIGTERM
/// end both (the container removed) with [`Error::Interrupted`] (130, 143).
pub fn run(ui: &Ui, args: Args) -> Result<u8> {
    crate::cancel::cooperate();
    let Args {
        image,
        arch,
        recipe: recipe_args,
        sbom,
        gpu_engine,
    } = args;
    let recipe = load_recipe(&recipe_args)?;
    let archs = audit_archs(&recipe, &arch)?;
    // An arch or a recipe given: the image is meant to carry torch for those archs, and the
    // ROCm math libraries torch loads are judged whether or not a torch is there yet.
    let purpose = if arch.is_empty() && recipe_args.rocm.is_none() && recipe_args.recipe.is_none() {
        check::audit::Purpose::Unstated
    } else {
        check::audit::Purpose::Torch
    };
    let build = engine::DockerEngine::connect(Duration::from_secs(10))?;
    let gpu = super::gpu_engine(gpu_engine.as_deref())?;
    // a missing image is bad input (exit 2) with a GPU engine as without one
    engine::Engine::image_size(&build, &image)?;
    // With a GPU engine: the image is streamed there first, and checked there; a failed
    // stream is the outcome (nothing to check on the GPU engine).
    let mut moved = Vec::new();
    if let Some(gpu) = &gpu {
        let t = crate::phases::image::transfer_check(&build, gpu, &image, &mut |l| ui.say(l))?;
        let failed = t.status != crate::report::Status::Pass;
        moved.push(t);
        if failed {
            return Ok(ui.emit(&Outcome::new(format!("image {image}"), moved)));
        }
    }
    let engine = gpu.as_ref().unwrap_or(&build);
    let size = engine::Engine::image_size(engine, &image)?;
    let probe = check::image::probe(engine, &image, &recipe.file.checks.files)?;
    let mut checks = check::image::checks(&recipe, size, &probe);
    ui.say(&format!(
        "reading {image}'s files from the engine's export stream ..."
    ));
    // An image whose export stream the audit cannot read is a failed audit, not a lost phase 4.
    let (audit_checks, audit) =
        match audit_image(engine, &image, &archs, recipe.rocm_version(), purpose) {
            Ok((c, a)) => (c, Some(a)),
            Err(e @ Error::Interrupted { .. }) => return Err(e),
            Err(e) => (
                vec![Check::fail(
                    "image.gpu-targets",
                    crate::report::catalog::title("image.gpu-targets"),
                    format!("the image's files could not be read from its export stream: {e}"),
                )],
                None,
            ),
        };
    if let Some(path) = sbom.as_deref() {
        let Some(a) = &audit else {
            return Err(Error::input(
                format!("no SBOM written: `{image}`'s files could not be read"),
                Some("see the `image.gpu-targets` check: `forge image IMAGE --json`"),
            ));
        };
        let subject = crate::ops::sbom::Subject {
            tag: image.clone(),
            id: engine::Engine::image_id(engine, &image).ok().flatten(),
        };
        crate::atomic::write_atomically(path, &crate::ops::sbom::to_vec(a, &subject))?;
        ui.say(&format!(
            "wrote the SBOM (CycloneDX 1.6) to {}",
            path.display()
        ));
    }
    // The audit's ROCm check covers every packaging; it replaces the dpkg-only one.
    checks.retain(|c| !audit_checks.iter().any(|a| a.id == c.id));
    checks.extend(audit_checks);
    moved.extend(checks);
    let checks = moved;
    let outcome = Outcome::new(format!("image {image}"), checks)
        .with("size", size)
        .with("probe", &probe)
        .with("audit", &audit);
    Ok(ui.emit(&outcome))
}
