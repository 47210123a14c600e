//! `forge report RUN_DIR`: render a run's four reports (report.md, report.json,
//! report.junit.xml, report.html) and refresh its bundle (manifest.json, SHA256SUMS) from its
//! record, `run.json`; a directory with only a report.json (no run.json) is rendered from that.

use super::prelude::*;
use crate::bundle;
use crate::bundle::files;
use crate::pipeline::record::RunRecord;
use crate::recipe::{LoadOptions, Recipe};
use crate::render::{markdown, run::RunView};

/// Run it.
pub fn run(ui: &Ui, run_dir: &Path, sign_key: Option<&Path>) -> Result<u8> {
    let key = sign_key.map(bundle::sign::SignKey::load).transpose()?;
    let was_signed = run_dir.join(bundle::sign::SIG).is_file();
    let view = if run_dir.join(crate::pipeline::record::FILE).is_file() {
        from_record(run_dir)?
    } else {
        from_report_json(run_dir)?
    };
    let mut s = String::new();
    for f in files::REPORTS {
        s.push_str(&format!("wrote {}\n", run_dir.join(f).display()));
    }
    s.push_str(&format!(
        "release: {}\nreadiness: {}\n",
        markdown::release_line(&view),
        view.readiness().line
    ));
    // Rewriting SHA256SUMS removed any signature over the old one: sign again, or say so.
    let signed = bundle::sign::after_sums(run_dir, key.as_ref(), &view.run)?;
    if key.is_some() || was_signed {
        let line = match signed {
            bundle::sign::Signed::Unsigned if was_signed => {
                bundle::sign::Signed::RemovedStale.line()
            }
            other => other.line(),
        };
        s.push_str(&line);
        s.push('\n');
    }
    ui.say(&s);
    let outcome = Outcome::new(format!("report {}", run_dir.display()), view.checks())
        .with("release", view.release_verdict())
        .with("readiness", view.readiness())
        .with(
            "files",
            files::REPORTS
                .iter()
                .map(|f| run_dir.join(f))
                .collect::<Vec<_>>(),
        );
    Ok(ui.emit(&outcome))
}

/// From `run.json`: the recipe reloaded from where the record says it came from (for the
/// workarounds and pass conditions), the image size and tool versions kept in the manifest.
fn from_record(dir: &Path) -> Result<RunView> {
    let rec = RunRecord::read(dir)?;
    let recipe = Recipe::select(
        rec.recipe.rocm.as_deref(),
        rec.recipe.path.as_deref(),
        LoadOptions {
            allow_unsupported: rec.recipe.allow_unsupported,
        },
    )
    .ok();
    let manifest = bundle::read_manifest(dir).ok();
    let facts = files::Facts {
        image_bytes: manifest
            .as_ref()
            .and_then(|m| m.image.as_ref())
            .and_then(|i| i.bytes),
        tools: manifest.map(|m| m.tools).unwrap_or_default(),
    };
    let mut view = files::from_record(&rec, dir, recipe.as_ref(), facts);
    let archive = crate::phases::report::archive_of(&rec);
    files::finish(dir, &mut view, archive.as_ref())?;
    Ok(view)
}

/// From `report.json` alone (a bundle without its run record).
fn from_report_json(dir: &Path) -> Result<RunView> {
    let mut view = files::read_run(dir)?;
    let archive = bundle::read_manifest(dir).ok().and_then(|m| m.archive);
    if view.checklist().is_empty() {
        files::finish(dir, &mut view, archive.as_ref())?;
    } else {
        files::write_reports(dir, &view)?;
        files::refresh_bundle(dir, &view, archive.as_ref())?;
    }
    Ok(view)
}
