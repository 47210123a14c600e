//! `forge verify BUNDLE_DIR [--load]`: every checksum of a bundle recomputed, the manifest
//! checked against the files and thresholds; with `--load`, the image id after loading it;
//! with `--key PUBKEY`, the minisign signature of `SHA256SUMS`.

use super::prelude::*;
use crate::bundle;

/// Run it.
pub fn run(ui: &Ui, dir: &Path, load: bool, key: Option<&Path>) -> Result<u8> {
    let key = key.map(bundle::sign::load_public).transpose()?;
    let engine = if load {
        Some(engine::DockerEngine::connect(Duration::from_secs(10))?)
    } else {
        None
    };
    let mut v = bundle::verify(dir, engine.as_ref().map(|e| e as &dyn engine::Engine))?;
    v.checks.push(bundle::sign::verify_check(dir, key.as_ref()));
    let outcome = Outcome::new(format!("verify {}", dir.display()), v.checks)
        .with("run", &v.manifest.run)
        .with("image", &v.manifest.image)
        .with("archive", &v.manifest.archive);
    Ok(ui.emit(&outcome))
}
