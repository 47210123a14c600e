//! The report phase: the deliverables checklist (`deliverable.*`), then report.json, report.md,
//! report.junit.xml, report.html and the bundle (manifest.json, SHA256SUMS), rendered from the
//! run record ([`run`], inside the pipeline); the command's outcome ([`outcome`]).

use std::path::Path;

use serde::Serialize;

use crate::bundle::files;
use crate::error::Result;
use crate::ops::drive::{BuildResult, End};
use crate::ops::export::Export;
use crate::pipeline::record::{ImageOut, PhaseStatus, RunRecord, RunState, Wheel};
use crate::pipeline::{Ctx, PhaseId};
use crate::report::{Check, Outcome};

/// The `build` object of `forge build --json`: the wheel stage's build (flattened, as the
/// record keeps it), the image build that did not succeed, and the outputs.
#[derive(Debug, Clone, Serialize)]
pub struct BuildJson<'a> {
    /// The wheel stage's build; its `end` says `interrupted` for an interrupted run.
    #[serde(flatten)]
    pub build: Option<BuildResult>,
    /// `interrupted` for an interrupted run that built nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
    /// The runtime stage's build, when it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_build: Option<&'a BuildResult>,
    /// Run id.
    pub run: &'a str,
    /// Files taken out of the wheel stage.
    pub wheels: &'a [Wheel],
    /// The built image.
    pub image: Option<&'a ImageOut>,
    /// The exported archive.
    pub export: Option<&'a Export>,
}

/// The `build` object of the JSON: the build's account plus the outputs.
pub fn build_json(rec: &RunRecord) -> BuildJson<'_> {
    let interrupted = rec.state == RunState::Interrupted;
    let mut build = rec.outputs.build.clone();
    if let Some(b) = build.as_mut().filter(|_| interrupted) {
        b.end = End::Interrupted;
    }
    BuildJson {
        end: (interrupted && build.is_none()).then_some(End::Interrupted),
        build,
        image_build: rec.outputs.image_build.as_ref(),
        run: &rec.run,
        wheels: &rec.outputs.wheels,
        image: rec.outputs.image.as_ref(),
        export: rec.outputs.archive.as_ref(),
    }
}

/// One phase of `forge build --json`'s `phases`.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseJson<'a> {
    /// Which phase.
    pub id: PhaseId,
    /// How it ended.
    pub status: PhaseStatus,
    /// Why it was skipped or rerun, or its error.
    pub reason: Option<&'a str>,
    /// Reused from an earlier attempt.
    pub reused: bool,
    /// Seconds it ran.
    pub seconds: f64,
}

/// The run as a command outcome: every check, the build, the phases.
pub fn outcome(rec: &RunRecord, image: &str) -> Outcome {
    let phases: Vec<PhaseJson<'_>> = rec
        .phases
        .iter()
        .map(|p| PhaseJson {
            id: p.id,
            status: p.status,
            reason: p.reason.as_deref(),
            reused: p.reused,
            seconds: p.seconds,
        })
        .collect();
    Outcome::new(format!("build {image} ({})", rec.run), rec.checks())
        .with("run", &rec.run)
        .with("state", rec.state)
        .with("build", build_json(rec))
        .with("phases", phases)
        .with("resumes", &rec.resumes)
}

/// The report phase, over the record once every other phase ended: the deliverables checklist
/// judged on the run directory's files, then the four reports (report.json, report.md,
/// report.junit.xml, report.html) and the bundle (manifest.json, SHA256SUMS), all rendered
/// from the record. Returns the checklist (the pipeline records it as the phase's checks when
/// the run finished).
pub fn run(ctx: &mut Ctx<'_>, rec: &mut RunRecord, dir: &Path) -> Result<Vec<Check>> {
    let facts = files::Facts {
        image_bytes: rec
            .outputs
            .image
            .as_ref()
            .and_then(|i| ctx.engine.image_size(&i.id).ok()),
        tools: ctx
            .engine
            .info()
            .map(|i| {
                [(
                    "engine".to_owned(),
                    format!("Docker {} (API {})", i.version, i.api_version),
                )]
                .into()
            })
            .unwrap_or_default(),
    };
    let mut view = files::from_record(rec, dir, Some(ctx.recipe), facts);
    view.outputs = crate::bundle::refresh_outputs(dir, &view.outputs)?;
    let archive = archive_of(rec);
    let mut list = crate::bundle::checklist(dir, &view, archive.as_ref());
    // A rehearsal (stand-in compiles, `-rehearsal` recipe and tag) is never a release.
    if ctx.rehearsal || ctx.recipe.file.name.ends_with("-rehearsal") {
        crate::ops::rehearse::soften(&mut list);
    }
    files::finish_with(dir, &mut view, archive.as_ref(), &list)?;
    Ok(list)
}

/// The run's archive as the manifest lists it.
pub fn archive_of(rec: &RunRecord) -> Option<crate::bundle::ArchiveInfo> {
    rec.outputs
        .archive
        .as_ref()
        .map(|e| files::archive_info(&rec.plan.artifacts.dir, e))
}
