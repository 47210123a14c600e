//! `forge export IMAGE`: the image as `.tar.gz` (or `.tar.zst`, whole or in parts) with its
//! SHA256; `-o DIR/` makes DIR a bundle (manifest.json, SHA256SUMS) that `forge verify` checks.

use super::prelude::*;
use crate::bundle;
use crate::recipe::Recipe;

/// `forge export`'s arguments.
pub struct Args {
    /// The image.
    pub image: String,
    /// `-o`: the archive, or a directory to write it into.
    pub out: Option<PathBuf>,
    /// gzip or zstd.
    pub format: export::Format,
    /// `--split SIZE`.
    pub split: Option<u64>,
    /// Compression level.
    pub level: u32,
    /// Compression threads.
    pub threads: Option<usize>,
    /// `--audit`.
    pub audit: bool,
    /// `--sign-key FILE`: sign the bundle's SHA256SUMS (with `-o DIR/`).
    pub sign_key: Option<PathBuf>,
}

/// Run it.
pub fn run(ui: &Ui, args: Args, recipe_args: RecipeArgs) -> Result<u8> {
    let recipe = load_recipe(&recipe_args)?;
    let image = &args.image;
    let (out, bundle_dir) = export::destination(args.out.as_deref(), image, args.format);
    // The key first: a wrong one is an error before the long export, not after.
    let key = match &args.sign_key {
        Some(_) if !bundle_dir => {
            return Err(Error::usage(
                "`--sign-key` signs a bundle's SHA256SUMS, and `-o` names no directory",
                Some("export into a bundle directory: `-o release/` (ending in `/`)"),
            ));
        }
        Some(p) => Some(bundle::sign::SignKey::load(p)?),
        None => None,
    };
    let threads = args.threads.unwrap_or_else(crate::units::threads);
    cancel::cooperate();
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    let info = engine::Engine::info(&engine)?;
    export::loadable_by(args.format, &info.version)?;
    ui.say(&format!("exporting {image} to {} ...", out.display()));
    // `--audit`: the same stream feeds the image audit (compress, hash and audit in one pass).
    let mut reader = args.audit.then(check::imagefs::ImageReader::new);
    let e = export::export_opts(
        &engine,
        image,
        &out,
        export::Options {
            level: args.level,
            threads,
            format: args.format,
            split: args.split,
        },
        cancel::Cancel::process(),
        &mut |piece| {
            if let Some(r) = reader.as_mut() {
                r.feed(piece);
            }
        },
    )?;
    // The release's size threshold only when a recipe was named: a standalone export is judged
    // on its archive (complete, checksum right, loadable).
    let named = recipe_args.rocm.is_some() || recipe_args.recipe.is_some();
    let mut checks = export::checks(&e, named.then_some(recipe.file.checks.archive_min_bytes));
    if let Some((check, join)) = export::parts_check(&e) {
        checks.push(check);
        ui.say(&format!("join the parts with: {join}"));
    }
    if let Some(r) = reader {
        // In a bundle, `--audit` writes the SBOM beside the archive (the manifest lists it).
        let sbom_dir = bundle_dir.then(|| out.parent().unwrap_or(Path::new(".")));
        checks.extend(audit(ui, &engine, r, &recipe, named, image, sbom_dir)?);
    }
    if bundle_dir {
        let dir = out.parent().unwrap_or(Path::new(".")).to_owned();
        let judged = named.then_some(&recipe);
        checks.extend(export_bundle(
            &engine, &info, &recipe, judged, image, &dir, &e, &checks,
        )?);
        let signed = bundle::sign::after_sums(
            &dir,
            key.as_ref(),
            &format!("export-{}", plan::tag_slug(image)),
        )?;
        ui.say(&signed.line());
    }
    let outcome = Outcome::new(format!("export {image}"), checks).with("export", &e);
    Ok(ui.emit(&outcome))
}

/// `--audit`: the image audit of the exported stream (GPU code, ROCm releases, vLLM vs torch);
/// with `sbom_dir`, its SBOM written there.
fn audit(
    ui: &Ui,
    engine: &engine::DockerEngine,
    reader: check::imagefs::ImageReader,
    recipe: &Recipe,
    named: bool,
    image: &str,
    sbom_dir: Option<&Path>,
) -> Result<Vec<Check>> {
    let (checks, audit) = check::audit::checks_and_audit(
        reader.finish(),
        recipe.archs(),
        recipe.rocm_version(),
        if named {
            check::audit::Purpose::Torch
        } else {
            check::audit::Purpose::Unstated
        },
    );
    if let (Some(audit), Some(dir)) = (audit, sbom_dir) {
        let subject = crate::ops::sbom::Subject {
            tag: image.to_owned(),
            id: engine::Engine::image_id(engine, image).ok().flatten(),
        };
        let p = dir.join(crate::ops::sbom::FILE);
        crate::atomic::write_atomically(&p, &crate::ops::sbom::to_vec(&audit, &subject))?;
        ui.say(&format!(
            "wrote the SBOM (CycloneDX 1.6) to {}",
            p.display()
        ));
    }
    Ok(checks)
}

/// `forge export -o DIR/`: make DIR a bundle (the deliverables checklist, manifest.json,
/// SHA256SUMS); returns the checklist. `judged`: the recipe named with `--recipe`/`--rocm`,
/// whose thresholds the sizes are judged against; without one the bundle names no recipe and
/// the sizes are not judged (issue 18).
#[allow(clippy::too_many_arguments)]
fn export_bundle(
    engine: &engine::DockerEngine,
    info: &engine::EngineInfo,
    recipe: &Recipe,
    judged: Option<&Recipe>,
    image: &str,
    dir: &Path,
    e: &export::Export,
    checks: &[Check],
) -> Result<Vec<Check>> {
    use render::run::{ImageView, RunView};
    let mut view = RunView {
        schema: render::run::SCHEMA,
        run: format!("export-{}", plan::tag_slug(image)),
        started_at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        seconds: e.seconds,
        recipe: judged.map(bundle::files::recipe_view),
        image: Some(ImageView {
            tag: image.to_owned(),
            id: engine::Engine::image_id(engine, image).ok().flatten(),
            bytes: engine::Engine::image_size(engine, image).ok(),
        }),
        forge_version: env!("CARGO_PKG_VERSION").into(),
        tools: [(
            "engine".to_owned(),
            format!("Docker {} (API {})", info.version, info.api_version),
        )]
        .into(),
        phases: render::run::phases_from_checks(checks),
        outputs: bundle::files::export_outputs(dir, e),
        conditions: bundle::files::conditions(recipe),
        ..RunView::default()
    };
    if judged.is_none() {
        view.conditions
            .insert("deliverable.sizes".into(), bundle::SIZES_UNJUDGED.into());
    }
    view.outputs = bundle::refresh_outputs(dir, &view.outputs)?;
    let archive = bundle::files::archive_info(dir, e);
    let list = bundle::checklist(dir, &view, Some(&archive));
    bundle::write(dir, &view, Some(archive))?;
    Ok(list)
}
