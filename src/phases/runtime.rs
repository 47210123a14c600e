//! Phases 5-7 (the GPU phases) inside `forge build`: the same code as `forge runtime` and
//! `forge serve` (`crate::ops::runtime::run_runtime`, `crate::ops::serve::run_serve`), run on the image the
//! run built when this host has an AMD GPU (`/dev/kfd`). Without one they are skipped with the
//! reason and the command to run on the GPU host, never passed: a build server usually has no
//! GPU, and the checks that could run without one are `forge runtime IMAGE`'s to run.

use crate::engine::GpuAccess;
use crate::error::Result;
use crate::pipeline::Ctx;
use crate::report::Check;
use crate::report::catalog::{self, CATALOG};

/// Skip every check of `phases`, saying why and what to run instead.
fn skipped(ctx: &Ctx<'_>, phases: &[u8], command: &str, why: &str) -> Vec<Check> {
    let image = ctx
        .outputs
        .image
        .as_ref()
        .map_or("IMAGE", |i| i.tag.as_str());
    let why = format!("{why}: run `{command} {image}` on the GPU host");
    CATALOG
        .iter()
        .filter(|e| phases.contains(&e.phase))
        .map(|e| Check::skip(e.id, catalog::title(e.id), why.clone()))
        .collect()
}

/// The image to test and the host's GPU, or the reason the GPU phases cannot run here.
fn target(ctx: &Ctx<'_>) -> std::result::Result<String, String> {
    let Some(image) = ctx.outputs.image.as_ref() else {
        return Err("no image was built by this run".into());
    };
    let gpu = match ctx.gpu_engine().containers() {
        Some(c) => c.engine_gpu(&ctx.dev, &ctx.run),
        None => GpuAccess::from_host(&ctx.dev),
    };
    // with a GPU engine, the reason names the engine (and so the host) it looked at
    gpu.map_err(|why| match ctx.gpu {
        Some(g) => format!(
            "{}: {why}",
            crate::ops::transfer::engine_words("GPU", g.info().ok().as_ref())
        ),
        None => why,
    })?;
    Ok(image.tag.clone())
}

/// The run's engine, as the starter of GPU containers.
fn containers<'a>(ctx: &Ctx<'a>) -> Result<&'a dyn crate::engine::Containers> {
    ctx.gpu_engine()
        .containers()
        .ok_or_else(|| crate::Error::Engine {
            message: "this engine cannot start containers with devices".into(),
            hint: Some("run `forge runtime IMAGE` and `forge serve IMAGE` against Docker".into()),
        })
}

/// Phases 5 and 7: one probe container with the GPU.
pub fn runtime(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let image = match target(ctx) {
        Ok(i) => i,
        Err(why) => return Ok(skipped(ctx, &[5, 7], "forge runtime", &why)),
    };
    let engine = containers(ctx)?;
    let opts = crate::ops::runtime::RuntimeOptions {
        gpu: crate::ops::runtime::GpuChoice::Auto,
        require_gpu: false,
        run: ctx.run.clone(),
        run_dir: Some(ctx.plan.artifacts.dir.clone()),
        dev: ctx.dev.clone(),
    };
    let observer = &mut *ctx.observer;
    let (checks, _) = crate::ops::runtime::run_runtime(
        engine,
        &image,
        ctx.recipe,
        &opts,
        ctx.cancel,
        &mut |l| observer.note(l),
    )?;
    Ok(checks)
}

/// Phase 6: the vLLM server.
pub fn serve(ctx: &mut Ctx<'_>) -> Result<Vec<Check>> {
    let image = match target(ctx) {
        Ok(i) => i,
        Err(why) => return Ok(skipped(ctx, &[6], "forge serve", &why)),
    };
    let engine = containers(ctx)?;
    let opts = crate::ops::serve::ServeOptions {
        no_gpu: false,
        require_gpu: false,
        run: ctx.run.clone(),
        run_dir: ctx.plan.artifacts.dir.clone(),
        dev: ctx.dev.clone(),
    };
    let observer = &mut *ctx.observer;
    let (mut checks, _) =
        crate::ops::serve::run_serve(engine, &image, ctx.recipe, &opts, ctx.cancel, &mut |l| {
            observer.note(l)
        })?;
    ctx.cancel.check()?;
    // Again on vLLM's default path (torch.compile and graphs: what users run), after the first
    // server is gone (two do not fit one APU), with its own time limit and check ids.
    let dp = &ctx.recipe.file.checks.server_default_path;
    if dp.enabled {
        let mut recipe = ctx.recipe.clone();
        let server = &mut recipe.file.checks.server;
        server.args.retain(|a| !dp.drop_args.contains(a));
        server.startup_timeout_secs = dp.startup_timeout_secs;
        let opts = crate::ops::serve::ServeOptions {
            run_dir: ctx.plan.artifacts.dir.join("serve-default-path"),
            ..opts
        };
        observer.note(&format!(
            "phase 6 again on vLLM's default path (without {})",
            dp.drop_args.join(" ")
        ));
        let (again, _) =
            crate::ops::serve::run_serve(engine, &image, &recipe, &opts, ctx.cancel, &mut |l| {
                observer.note(l)
            })?;
        ctx.cancel.check()?;
        checks.extend(again.into_iter().map(crate::check::serve::as_default_path));
    } else {
        checks.extend(crate::check::serve::DEFAULT_PATH_IDS.iter().map(|(_, id)| {
            Check::skip(
                id,
                catalog::title(id),
                "[checks.server-default-path] enabled = false in the recipe",
            )
        }));
    }
    Ok(checks)
}
