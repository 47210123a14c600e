//! `forge image IMAGE` (phase 4).

use super::prelude::*;

/// Run it.
pub fn run(ui: &Ui, image: String, recipe: RecipeArgs) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    let size = engine::Engine::image_size(&engine, &image)?;
    let probe = check::image::probe(&engine, &image, &recipe.file.checks.files)?;
    let checks = check::image::checks(&recipe, size, &probe);
    let outcome = Outcome::new(format!("image {image}"), checks)
        .with("size", size)
        .with("probe", &probe);
    Ok(ui.emit(&outcome))
}
