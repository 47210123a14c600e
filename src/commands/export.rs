//! `forge export IMAGE`: the image as `.tar.gz` with its SHA256.

use super::prelude::*;

/// Run it.
pub fn run(
    ui: &Ui,
    image: String,
    out: Option<PathBuf>,
    level: u32,
    threads: Option<usize>,
    audit: bool,
    recipe_args: RecipeArgs,
) -> Result<u8> {
    let recipe = load_recipe(&recipe_args)?;
    let out = out.unwrap_or_else(|| {
        Path::new("artifacts").join(format!("{}.tar.gz", plan::tag_slug(&image)))
    });
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    cancel::cooperate();
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    ui.say(&format!("exporting {image} to {} ...", out.display()));
    // `--audit`: the same stream feeds the image audit (compress, hash and audit in one pass).
    let mut reader = audit.then(check::imagefs::ImageReader::new);
    let e = export::export_with(
        &engine,
        &image,
        &out,
        level,
        threads,
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
    if let Some(r) = reader {
        checks.extend(check::audit::checks_or_fail(
            r.finish(),
            recipe.archs(),
            recipe.rocm_version(),
        ));
    }
    let outcome = Outcome::new(format!("export {image}"), checks).with("export", &e);
    Ok(ui.emit(&outcome))
}
