//! `forge verify BUNDLE_DIR [--load]`: every checksum of a bundle recomputed, the manifest
//! checked against the files and thresholds; with `--load`, the image id after loading it;
//! with `--key PUBKEY`, the minisign signature of `SHA256SUMS`; with `--registry`, the recorded
//! push (pulled by digest and by tag, compared with the image id).

use super::prelude::*;
use crate::bundle;

/// Run it.
pub fn run(ui: &Ui, dir: &Path, load: bool, key: Option<&Path>, registry: bool) -> Result<u8> {
    let key = key.map(bundle::sign::load_public).transpose()?;
    let engine = if load || registry {
        Some(engine::DockerEngine::connect(Duration::from_secs(10))?)
    } else {
        None
    };
    let loader = engine.as_ref().filter(|_| load);
    let mut v = bundle::verify(dir, loader.map(|e| e as &dyn engine::Engine))?;
    v.checks.push(bundle::sign::verify_check(dir, key.as_ref()));
    if let (true, Some(e)) = (registry, engine.as_ref()) {
        v.checks.push(bundle::registry_check(&v.manifest, e));
    }
    let outcome = Outcome::new(format!("verify {}", dir.display()), v.checks)
        .with("run", &v.manifest.run)
        .with("image", &v.manifest.image)
        .with("archive", &v.manifest.archive)
        .with("registry", &v.manifest.registry);
    Ok(ui.emit(&outcome))
}
