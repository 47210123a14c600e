//! `forge verify BUNDLE_DIR [--load]`: every checksum of a bundle recomputed, the manifest
//! checked against the files and thresholds; with `--load`, the image id after loading it.

use super::prelude::*;
use crate::bundle;

/// Run it.
pub fn run(ui: &Ui, dir: &Path, load: bool) -> Result<u8> {
    let engine = if load {
        Some(engine::DockerEngine::connect(Duration::from_secs(10))?)
    } else {
        None
    };
    let v = bundle::verify(dir, engine.as_ref().map(|e| e as &dyn engine::Engine))?;
    let outcome = Outcome::new(format!("verify {}", dir.display()), v.checks)
        .with("run", &v.manifest.run)
        .with("image", &v.manifest.image)
        .with("archive", &v.manifest.archive);
    Ok(ui.emit(&outcome))
}
