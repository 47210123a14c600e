//! The report phase: the deliverables checklist (`deliverable.*`), then report.json, report.md,
//! report.junit.xml, report.html and the bundle (manifest.json, SHA256SUMS), rendered from the
//! run record ([`finish`]); the command's outcome ([`outcome`]).

use std::path::Path;

use crate::bundle::files;
use crate::error::Result;
use crate::pipeline::PhaseId;
use crate::pipeline::record::{PhaseStatus, RunRecord, RunState};
use crate::recipe::Recipe;
use crate::report::{Check, Outcome, Status};

/// The `build` object of the JSON: the build's account plus the outputs.
pub fn build_json(rec: &RunRecord) -> serde_json::Value {
    let mut b = rec
        .outputs
        .build
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    b["run"] = rec.run.clone().into();
    b["wheels"] = serde_json::to_value(&rec.outputs.wheels).expect("serializes");
    b["image"] = serde_json::to_value(&rec.outputs.image).expect("serializes");
    b["export"] = serde_json::to_value(&rec.outputs.archive).expect("serializes");
    if rec.state == RunState::Interrupted {
        b["end"] = "interrupted".into();
    }
    b
}

/// The run as a command outcome: every check, the build, the phases.
pub fn outcome(rec: &RunRecord, image: &str) -> Outcome {
    let phases: Vec<serde_json::Value> = rec
        .phases
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id, "status": p.status, "reason": p.reason,
                "reused": p.reused, "seconds": p.seconds,
            })
        })
        .collect();
    Outcome::new(format!("build {image} ({})", rec.run), rec.checks())
        .with("run", &rec.run)
        .with("state", rec.state)
        .with("build", build_json(rec))
        .with("phases", phases)
        .with("resumes", &rec.resumes)
}

/// The report phase's work, once the pipeline has run: the deliverables checklist judged on the
/// run directory's files (recorded in `run.json` as the report phase's checks when the run
/// finished), then the four reports (report.json, report.md, report.junit.xml, report.html)
/// and the bundle (manifest.json, SHA256SUMS), all rendered from the record. Returns the
/// checklist.
pub fn finish(
    rec: &mut RunRecord,
    dir: &Path,
    recipe: Option<&Recipe>,
    facts: files::Facts,
) -> Result<Vec<Check>> {
    let mut view = files::from_record(rec, dir, recipe, facts);
    view.outputs = crate::bundle::refresh_outputs(dir, &view.outputs)?;
    let archive = archive_of(rec, dir);
    let mut list = crate::bundle::checklist(dir, &view, archive.as_ref());
    // A rehearsal (stand-in compiles, `-rehearsal` recipe and tag) is never a release.
    if recipe.is_some_and(|r| r.file.name.ends_with("-rehearsal")) {
        crate::rehearse::soften(&mut list);
    }
    if rec.state == RunState::Finished
        && let Some(p) = rec.phase_mut(PhaseId::Report)
    {
        p.checks = list.clone();
        p.status = if list.iter().any(|c| c.status == Status::Fail) {
            PhaseStatus::Fail
        } else if !list.is_empty() && list.iter().all(|c| c.status == Status::Skip) {
            PhaseStatus::Skip
        } else {
            PhaseStatus::Pass
        };
        rec.write(dir)?;
    }
    files::finish_with(dir, &mut view, archive.as_ref(), &list)?;
    Ok(list)
}

/// The run's archive as the manifest lists it.
pub fn archive_of(rec: &RunRecord, dir: &Path) -> Option<crate::bundle::ArchiveInfo> {
    let plan_dir = rec.plan["artifacts"]["dir"]
        .as_str()
        .map_or_else(|| dir.to_owned(), std::path::PathBuf::from);
    rec.outputs
        .archive
        .as_ref()
        .map(|e| files::archive_info(&plan_dir, e))
}
