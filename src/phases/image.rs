//! The image phase: the runtime stage built (after the wheel passed phase 3; the compile is
//! served from the build cache), then phase 4 (`forge image`'s checks) on it. The image
//! carries no per-run label: its labels come from the recipe alone (OCI annotations, the base
//! image by id), so a fully cached rebuild gives the same image id, and the same archive.

use std::collections::BTreeMap;

use crate::check::image as phase4;
use crate::engine::LABEL_RECIPE;
use crate::error::{Error, Result};
use crate::ops::drive::{self, End};
use crate::pipeline::Ctx;
use crate::pipeline::record::ImageOut;
use crate::report::{Check, Status};

/// The final image's labels: from the recipe only (nothing per run, no time).
pub fn labels(ctx: &Ctx<'_>, base_id: Option<&str>) -> BTreeMap<String, String> {
    let f = &ctx.recipe.file;
    let oci = |k: &str| format!("org.opencontainers.image.{k}");
    let mut l = BTreeMap::from([
        (LABEL_RECIPE.to_owned(), f.name.clone()),
        (oci("title"), f.name.clone()),
        (
            oci("version"),
            format!(
                "rocm{}-{}",
                ctx.recipe.rocm_version(),
                ctx.recipe.archs().join("-")
            ),
        ),
        (oci("source"), ctx.recipe.torch_source()),
        (
            "forge.vllm.source".to_owned(),
            format!("{}@{}", f.vllm.repo, f.vllm.git_ref),
        ),
        (oci("base.name"), f.base_image.clone()),
    ]);
    if let Some(id) = base_id {
        // The engine's id of the base image (its config digest): a registry digest is not
        // known for locally built bases.
        l.insert(oci("base.digest"), id.to_owned());
    }
    l
}

/// Run the image phase.
pub fn run(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let builder = drive::resolve_builder(ctx.engine, ctx.builder)?;
    let base_id = ctx.engine.image_id(&ctx.plan.base_image).ok().flatten();
    let spec = drive::spec(
        ctx.recipe,
        ctx.plan,
        builder,
        &ctx.plan.target_stage,
        &ctx.plan.image_tag,
        labels(ctx, base_id.as_deref()),
    )?;
    let driven = drive::drive(
        ctx.engine,
        &spec,
        &ctx.plan.artifacts.build_log,
        super::build::expect(ctx),
        ctx.observer,
    )?;
    ctx.outputs.image = None;
    ctx.outputs.image_build = None;
    match driven.result.end {
        End::Interrupted => return Err(super::build::interrupted(ctx)),
        End::Stopped | End::Failed => {
            ctx.outputs.image_build = Some(driven.result.clone());
            return Ok(driven.checks("image.build"));
        }
        End::Succeeded => {}
    }
    let id = ctx
        .engine
        .image_id(&spec.tag)?
        .ok_or_else(|| Error::Engine {
            message: format!("the engine has no `{}` right after building it", spec.tag),
            hint: None,
        })?;
    let mut checks = driven.checks("image.build");
    if let Some(c) = checks.last_mut() {
        c.evidence = format!("{}; image id {id}", c.evidence);
    }
    ctx.outputs.image = Some(ImageOut {
        tag: spec.tag.clone(),
        id: id.clone(),
        engines: Vec::new(),
        stages: driven.result.stages.clone(),
    });
    ctx.cancel.check()?;
    if let Some(gpu) = ctx.gpu {
        let check = to_gpu_engine(ctx, gpu, &spec.tag)?;
        let moved = check.status == Status::Pass;
        checks.push(check);
        if !moved {
            return Ok(checks);
        }
        if let Some(i) = ctx.outputs.image.as_mut() {
            i.engines = [engine_id(ctx.engine), engine_id(gpu)]
                .into_iter()
                .flatten()
                .collect();
        }
    }
    let on = ctx.gpu_engine();
    let size = on.image_size(&id)?;
    let probe = phase4::probe(on, &id, &ctx.recipe.file.checks.files)?;
    checks.extend(phase4::checks(ctx.recipe, size, &probe));
    Ok(checks)
}

/// The engine's own ID, when it gives one.
fn engine_id(engine: &dyn crate::engine::Engine) -> Option<String> {
    engine.info().ok().and_then(|i| i.id)
}

/// `image.transfer`: the image streamed from the build engine into the GPU engine.
fn to_gpu_engine(ctx: &mut Ctx<'_>, gpu: &dyn crate::engine::Engine, tag: &str) -> Result<Check> {
    let observer = &mut *ctx.observer;
    transfer_check(ctx.engine, gpu, tag, &mut |l| observer.note(l))
}

/// Check `image.transfer`: `tag` streamed from the engine `from` into the engine `to` (nothing
/// moved when both are one engine reached two ways); progress lines go to `note`. A failed
/// stream is a failed check; only an interruption is an error.
pub fn transfer_check(
    from: &dyn crate::engine::Engine,
    to: &dyn crate::engine::Engine,
    tag: &str,
    note: &mut dyn FnMut(&str),
) -> Result<Check> {
    use crate::ops::transfer;
    let (from_info, to_info) = (from.info().ok(), to.info().ok());
    let words = format!(
        "from the {} into the {}",
        transfer::engine_words("build", from_info.as_ref()),
        transfer::engine_words("GPU", to_info.as_ref())
    );
    let title = crate::report::catalog::title("image.transfer");
    let id_of = |i: &Option<crate::engine::EngineInfo>| i.as_ref().and_then(|i| i.id.clone());
    if id_of(&from_info).is_some() && id_of(&from_info) == id_of(&to_info) {
        return Ok(Check::pass(
            "image.transfer",
            title,
            format!(
                "nothing to move: the GPU engine is the build engine (the same engine ID, reached two ways) {words}"
            ),
        ));
    }
    match transfer::transfer(from, to, tag, note) {
        Ok(t) => Ok(Check::pass(
            "image.transfer",
            title,
            format!("{}; {words}", t.describe()),
        )),
        Err(e @ Error::Interrupted { .. }) => Err(e),
        Err(e) => Ok(Check::fail(
            "image.transfer",
            title,
            format!("{e}; {words}"),
        )),
    }
}

/// Resume: the recorded image is still in the engine, under its tag, and in the GPU engine
/// when the run has one.
pub fn verify(ctx: &Ctx<'_>) -> std::result::Result<(), String> {
    let Some(img) = &ctx.outputs.image else {
        return Err("no image was recorded".into());
    };
    if let Some(gpu) = ctx.gpu {
        let id = engine_id(gpu);
        if id.as_ref().is_none_or(|id| !img.engines.contains(id)) {
            return Err(format!(
                "the GPU engine{} was not given the image in the earlier attempt (held by {})",
                id.map(|i| format!(" {i}")).unwrap_or_default(),
                if img.engines.is_empty() {
                    "no recorded engine".to_owned()
                } else {
                    img.engines.join(", ")
                }
            ));
        }
        match gpu.image_id(&img.tag) {
            Ok(Some(got)) if got == img.id => {}
            Ok(_) => {
                return Err(format!(
                    "image {} (`{}`) is gone from the GPU engine",
                    img.id, img.tag
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    match ctx.engine.image_id(&img.tag) {
        Ok(Some(id)) if id == img.id => Ok(()),
        Ok(Some(id)) => Err(format!(
            "`{}` now points at {id}, not the recorded {}",
            img.tag, img.id
        )),
        Ok(None) => Err(format!(
            "image {} (`{}`) is gone from the engine",
            img.id, img.tag
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether phase 4 passed in `checks`.
pub fn passed(checks: &[Check]) -> bool {
    !checks.iter().any(|c| c.status == Status::Fail)
}

/// The archs the image audit wants: `--arch` (repeat or `;`-separate), else the recipe's.
pub fn audit_archs(recipe: &crate::recipe::Recipe, arch: &[String]) -> Result<Vec<String>> {
    let archs = recipe.archs_or(arch)?;
    let re =
        regex::Regex::new(r"^gfx([0-9a-f]{3,4}|[0-9]+(-[0-9]+)?-generic)(:(xnack|sramecc)[+-])*$")
            .expect("valid regex");
    if let Some(bad) = archs.iter().find(|a| !re.is_match(a)) {
        return Err(Error::input(
            format!("`{bad}` is not a GPU arch"),
            Some("arch names look like gfx1151, gfx1100, gfx90a:xnack+"),
        ));
    }
    Ok(archs)
}

/// Stream `image` from the engine through the image audit (nothing written to disk).
pub fn audit_image(
    engine: &dyn crate::engine::Engine,
    image: &str,
    archs: &[String],
    rocm: &str,
    purpose: crate::check::audit::Purpose,
) -> Result<(Vec<Check>, crate::check::audit::Audit)> {
    let started = std::time::Instant::now();
    let mut reader = crate::check::imagefs::ImageReader::new();
    engine.export_image(image, &mut |piece| {
        reader.feed(piece);
        Ok(())
    })?;
    let fs = reader.finish().map_err(|e| Error::Engine {
        message: format!("cannot read `{image}`'s export stream: {e}"),
        hint: Some("the engine's /images/{name}/get stream should be a docker-save tar".into()),
    })?;
    let (checks, mut audit) = crate::check::audit::checks(&fs, archs, rocm, purpose);
    audit.seconds = started.elapsed().as_secs_f64();
    Ok((checks, audit))
}
