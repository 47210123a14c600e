//! `forge push BUNDLE_DIR REF [--allow-failed]`: the bundle's image pushed through the engine
//! with the docker CLI's credentials; the digest printed and recorded in `manifest.json` (then
//! `SHA256SUMS` refreshed, and signed again with `--sign-key`, or its stale signature removed).

use super::prelude::*;
use crate::bundle::{self, Pushed, sign};
use crate::ops::registry::{Reference, credentials};
use crate::report::Verdict;

/// Whether the bundle may be pushed: its run's verdict (report.json), else `forge verify`'s.
fn verdict_of(dir: &Path) -> Result<Verdict> {
    if let Ok(view) = bundle::files::read_run(dir) {
        return Ok(view.verdict());
    }
    Ok(crate::report::verdict(&bundle::verify(dir, None)?.checks))
}

/// Run it.
pub fn run(
    ui: &Ui,
    dir: &Path,
    reference: &str,
    allow_failed: bool,
    sign_key: Option<&Path>,
) -> Result<u8> {
    let r = Reference::parse(reference)?;
    let key = sign_key.map(sign::SignKey::load).transpose()?;
    let mut m = bundle::read_manifest(dir)?;
    let Some(image_id) = m.image.as_ref().and_then(|i| i.id.clone()) else {
        return Err(Error::input(
            format!(
                "`{}`'s manifest names no image id: nothing to push",
                dir.display()
            ),
            Some("push a bundle of a built image (`forge build`, `forge export -o DIR/`)"),
        ));
    };
    let verdict = verdict_of(dir)?;
    if verdict == Verdict::Fail && !allow_failed {
        return Err(Error::usage(
            format!("`{}` is a failed run: not pushed", dir.display()),
            Some("fix what failed (`forge report` lists it), or push anyway with `--allow-failed`"),
        ));
    }
    let auth = credentials(&r.registry)?;
    match &auth {
        Some((a, from)) => ui.say(&format!(
            "pushing as {} (credentials from {from})",
            a.username
        )),
        None => ui.say(&format!(
            "no credentials for {} in the docker config: pushing anonymously",
            r.registry
        )),
    }
    let engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
    let digest = engine::Engine::push_image(
        &engine,
        &image_id,
        &r.repo,
        &r.tag,
        auth.as_ref().map(|(a, _)| a),
    )?;
    let pushed = Pushed {
        reference: format!("{}:{}", r.repo, r.tag),
        pinned: format!("{}@{digest}", r.repo),
        digest: digest.clone(),
        image_id,
        pushed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    m.registry = Some(pushed.clone());
    bundle::record_manifest(dir, &m)?;
    // The release report names the push: rendered again (then manifest.json and SHA256SUMS).
    if let Ok(view) = bundle::files::read_run(dir) {
        bundle::files::write_reports(dir, &view)?;
        bundle::files::refresh_bundle(dir, &view, m.archive.as_ref())?;
    }
    let signed = sign::after_sums(dir, key.as_ref(), &m.run)?;
    ui.say(&format!(
        "pushed {} as {}\n{}",
        pushed.reference,
        pushed.pinned,
        signed.line()
    ));
    let checks = vec![Check::pass(
        "push.digest",
        "image pushed, digest recorded in manifest.json",
        format!("{} -> {}", pushed.reference, pushed.digest),
    )];
    let outcome = Outcome::new(format!("push {}", dir.display()), checks)
        .with("registry", &pushed)
        .with("run_verdict", verdict);
    Ok(ui.emit(&outcome))
}
