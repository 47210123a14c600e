//! The export phase: the image as `artifacts/<run>/<image>.tar.gz` with its `.sha256`, as
//! `forge export` writes it (same code), after the image passed phase 4.

use crate::error::{Error, Result};
use crate::pipeline::Ctx;
use crate::report::Check;

/// Run the export phase.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let img = ctx
        .outputs
        .image
        .clone()
        .ok_or_else(|| Error::input("the export phase ran without an image", None))?;
    // The tag must still name the image the run built.
    if ctx.engine.image_id(&img.tag)?.as_deref() != Some(img.id.as_str()) {
        return Err(Error::Engine {
            message: format!(
                "`{}` no longer points at the image this run built ({})",
                img.tag, img.id
            ),
            hint: Some("rerun the image phase: `forge build --resume`".into()),
        });
    }
    let a = &ctx.plan.artifacts;
    ctx.observer
        .note(&format!("exporting {} to {}", img.tag, a.archive.display()));
    ctx.outputs.archive = None;
    // The export's stream feeds the image audit too: compress, hash and audit in one pass.
    let mut audit = crate::check::imagefs::ImageReader::new();
    let e = crate::ops::export::export_with(
        ctx.engine,
        &img.tag,
        &a.archive,
        6,
        super::wheel::threads(),
        ctx.cancel,
        &mut |piece| audit.feed(piece),
    )?;
    let mut checks = crate::ops::export::checks(&e, Some(ctx.recipe.file.checks.archive_min_bytes));
    let (audit_checks, audit) = crate::check::audit::checks_and_audit(
        audit.finish(),
        ctx.recipe.archs(),
        ctx.recipe.rocm_version(),
        // `forge build` builds a torch image for the recipe's archs.
        crate::check::audit::Purpose::Torch,
    );
    checks.extend(audit_checks);
    // The SBOM from the same stream, beside the archive (the bundle lists it).
    if let Some(audit) = audit {
        let subject = crate::ops::sbom::Subject {
            tag: img.tag.clone(),
            id: Some(img.id.clone()),
        };
        let dir = a.archive.parent().unwrap_or(std::path::Path::new("."));
        crate::atomic::write_atomically(
            &dir.join(crate::ops::sbom::FILE),
            &crate::ops::sbom::to_vec(&audit, &subject),
        )?;
    }
    // The recipe's Python lock beside the image (the bundle lists it): what the image was
    // installed from, hash by hash.
    if let Some(lock) = &ctx.recipe.lock {
        let dir = a.archive.parent().unwrap_or(std::path::Path::new("."));
        crate::atomic::write_atomically(
            &dir.join(crate::recipe::pylock::BUNDLE_FILE),
            lock.read()?.as_bytes(),
        )?;
    }
    ctx.outputs.archive = Some(e);
    Ok(checks)
}

/// Resume: the archive is still there with its recorded SHA256.
pub fn verify(ctx: &Ctx<'_>) -> std::result::Result<(), String> {
    let Some(e) = &ctx.outputs.archive else {
        return Err("no archive was recorded".into());
    };
    match crate::ops::drive::sha256_file(&e.archive) {
        Ok(h) if h == e.sha256 && e.sha256_file.is_file() => Ok(()),
        Ok(h) if h == e.sha256 => Err(format!("{} is missing", e.sha256_file.display())),
        Ok(h) => Err(format!(
            "{} changed (SHA256 {h}, recorded {})",
            e.archive.display(),
            e.sha256
        )),
        Err(e) => Err(e.to_string()),
    }
}
