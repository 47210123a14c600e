//! `forge export IMAGE`: the image as `.tar.gz` with its SHA256.

use super::prelude::*;

/// Run it.
pub fn run(
    ui: &Ui,
    image: String,
    out: Option<PathBuf>,
    level: u32,
    threads: Option<usize>,
    recipe: RecipeArgs,
) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let out = out.unwrap_or_else(|| {
        Path::new("artifacts").join(format!("{}.tar.gz", plan::tag_slug(&image)))
    });
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    cancel::cooperate();
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    ui.say(&format!("exporting {image} to {} ...", out.display()));
    let e = export::export(
        &engine,
        &image,
        &out,
        level,
        threads,
        cancel::Cancel::process(),
    )?;
    let checks = export::checks(&e, recipe.file.checks.archive_min_bytes);
    let outcome = Outcome::new(format!("export {image}"), checks).with("export", &e);
    Ok(ui.emit(&outcome))
}
