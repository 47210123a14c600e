//! A run's report files and bundle: [`RunView`] from the run record, `run.json`
//! ([`from_record`]), the four renderings written side by side ([`write_reports`]), and the
//! finishing step every run ends with ([`finish`]): the deliverables checklist judged on the
//! files, the reports, then `manifest.json` and `SHA256SUMS`.

use std::path::{Path, PathBuf};

use super::ArchiveInfo;
use crate::error::{Error, Result};
use crate::ops::export::Export;
use crate::pipeline::PhaseId;
use crate::pipeline::record::{PhaseRecord, PhaseStatus as RecStatus, RunRecord, RunState};
use crate::recipe::Recipe;

use crate::render::run::{
    ImageView, NinjaPoint, OutputKind, OutputView, PhaseStatus, PhaseView, RecipeView, RunEnd,
    RunView, SCHEMA, StopKind, StopView, Thresholds, line_time, ninja_from_log, phases_from_checks,
    workarounds_in_dockerfile,
};
use crate::render::{html, junit, markdown};
use crate::report::Check;

/// The report files, relative to the run directory.
pub const REPORTS: &[&str] = &[
    "report.json",
    "report.md",
    "report.junit.xml",
    "report.html",
];

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// The recipe as the reports show it.
pub fn recipe_view(r: &Recipe) -> RecipeView {
    RecipeView {
        name: r.file.name.clone(),
        origin: r.origin.to_string(),
        rocm: r.rocm_version().to_owned(),
        archs: r.archs().to_vec(),
        thresholds: Thresholds {
            wheel_min_bytes: r.file.checks.wheel_min_bytes,
            image_min_bytes: r.file.checks.image_min_bytes,
            archive_min_bytes: r.file.checks.archive_min_bytes,
        },
    }
}

/// The archive of an export, as the manifest lists it (names relative to `dir`).
pub fn archive_info(dir: &Path, e: &Export) -> ArchiveInfo {
    ArchiveInfo {
        name: rel(dir, &e.archive),
        format: e.format.clone(),
        bytes: e.gz_bytes,
        sha256: e.sha256.clone(),
        tar_bytes: e.tar_bytes,
        parts: e.parts.iter().map(|p| rel(dir, &p.path)).collect(),
        join: crate::ops::export::join_command(e),
        loadable_by: super::loadable_by(&e.format).into(),
    }
}

/// The outputs of an export (archive or parts, and the checksum file).
pub fn export_outputs(dir: &Path, e: &Export) -> Vec<OutputView> {
    let mut out = Vec::new();
    if e.parts.is_empty() {
        out.push(OutputView {
            kind: OutputKind::Archive,
            path: rel(dir, &e.archive),
            bytes: e.gz_bytes,
            sha256: Some(e.sha256.clone()),
        });
    }
    for p in &e.parts {
        out.push(OutputView {
            kind: OutputKind::ArchivePart,
            path: rel(dir, &p.path),
            bytes: p.bytes,
            sha256: Some(p.sha256.clone()),
        });
    }
    out.push(OutputView {
        kind: OutputKind::Sha256,
        path: rel(dir, &e.sha256_file),
        bytes: 0,
        sha256: None,
    });
    // The SBOM the export's audit wrote beside the archive.
    let sbom = e
        .archive
        .parent()
        .unwrap_or(Path::new("."))
        .join(crate::ops::sbom::FILE);
    if sbom.is_file() {
        out.push(OutputView {
            kind: OutputKind::Sbom,
            path: rel(dir, &sbom),
            bytes: 0,
            sha256: None,
        });
    }
    // The recipe's Python lock the export wrote beside the archive.
    let lock = sbom.with_file_name(crate::recipe::pylock::BUNDLE_FILE);
    if lock.is_file() {
        out.push(OutputView {
            kind: OutputKind::File,
            path: rel(dir, &lock),
            bytes: 0,
            sha256: None,
        });
    }
    out
}

/// What the record does not hold and the reports show: the image's size as the engine reports
/// it, the tool versions (the engine's).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The built image's size in bytes.
    pub image_bytes: Option<u64>,
    /// Tool versions (`engine`: `Docker 20.10.24 (API 1.41)`).
    pub tools: std::collections::BTreeMap<String, String>,
}

/// Seconds from `from` to `to` (RFC 3339 times), when both parse.
fn secs_between(from: &str, to: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

/// The report phases a pipeline phase's span covers.
fn views_of(id: PhaseId) -> &'static [&'static str] {
    match id {
        PhaseId::Plan => &["plan"],
        PhaseId::Preflight => &["1"],
        PhaseId::Build => &["2"],
        PhaseId::Wheel => &["3"],
        PhaseId::Image => &["4"],
        PhaseId::Runtime => &["5", "7"],
        PhaseId::Serve => &["6"],
        PhaseId::Export => &["export"],
        PhaseId::Report => &["deliverables"],
    }
}

/// A path the record holds, relative to the run directory (`plan_dir` is the directory as the
/// record names it).
fn rel_to(plan_dir: &Path, p: &Path) -> String {
    p.strip_prefix(plan_dir)
        .or_else(|_| p.strip_prefix(std::path::absolute(plan_dir).unwrap_or_default()))
        .unwrap_or(p)
        .display()
        .to_string()
}

/// What the parts of [`from_record`] read: the record, its directory as it names it, and the
/// run's clock.
struct Source<'a> {
    /// The run record.
    rec: &'a RunRecord,
    /// The run directory as the record names it.
    plan_dir: PathBuf,
}

impl Source<'_> {
    /// Seconds from the run's start to `t` (RFC 3339), when it parses.
    fn since_start(&self, t: &str) -> Option<f64> {
        secs_between(&self.rec.started, t)
    }

    /// When pipeline phase `id` started, in seconds since the run's start.
    fn started_at(&self, id: PhaseId) -> Option<f64> {
        self.rec
            .phase(id)
            .and_then(|p| p.started.as_deref().and_then(|t| self.since_start(t)))
    }

    /// When pipeline phase `id` ended, in seconds since the run's start.
    fn ended_at(&self, id: PhaseId) -> Option<f64> {
        self.rec.phase(id).and_then(|p| {
            p.started
                .as_deref()
                .and_then(|t| self.since_start(t))
                .map(|t| t + p.seconds)
        })
    }
}

/// The run view of a run record (`run.json`): every phase's checks with its real timing, the
/// outputs (log, wheels, archive), ninja's progress from the build log, where and why the build
/// stopped. `dir` is the run directory as it is now (the record may name it differently);
/// `recipe` the run's recipe when it can be loaded (the workarounds, the conditions).
pub fn from_record(rec: &RunRecord, dir: &Path, recipe: Option<&Recipe>, facts: Facts) -> RunView {
    let src = Source {
        rec,
        plan_dir: rec.plan.artifacts.dir.clone(),
    };
    let in_dir = |p: &Path| dir.join(rel_to(&src.plan_dir, p));
    let build_log = in_dir(&rec.plan.artifacts.build_log);
    let checks = rec.checks();
    let (phases, seconds) = timed_phases(&src, &checks);
    let wheels_dir = in_dir(&rec.plan.artifacts.wheels);
    RunView {
        schema: SCHEMA,
        run: rec.run.clone(),
        started_at: Some(rec.started.clone()),
        seconds,
        end: Some(run_end(rec)),
        recipe: recipe.map(recipe_view).or_else(|| {
            Some(RecipeView {
                name: rec.recipe.name.clone(),
                origin: rec.recipe.origin.clone(),
                rocm: rec.plan.rocm.clone(),
                archs: rec.plan.archs.clone(),
                thresholds: Thresholds::default(),
            })
        }),
        image: Some(image_view(rec, facts.image_bytes)),
        forge_version: env!("CARGO_PKG_VERSION").into(),
        tools: record_tools(rec, facts.tools, &wheels_dir),
        phases,
        outputs: record_outputs(&src, dir, &build_log),
        ninja_progress: ninja_on_run_clock(&src, &build_log),
        stages: rec
            .outputs
            .build
            .iter()
            .flat_map(|b| b.stages.iter())
            .chain(rec.outputs.image.iter().flat_map(|i| i.stages.iter()))
            .cloned()
            .collect(),
        stop: stop_of(&src, &checks, seconds),
        workarounds: recipe
            .and_then(|r| {
                r.dockerfile
                    .read()
                    .ok()
                    .map(|t| workarounds_in_dockerfile(&t, &r.dockerfile.display()))
            })
            .unwrap_or_default(),
        build_log: build_log
            .strip_prefix(dir)
            .ok()
            .map(|p| p.display().to_string()),
        conditions: recipe.map(conditions).unwrap_or_default(),
    }
}

/// The report's phases from the record's checks, each with its pipeline phase's timing and
/// note; and the run's length in seconds (at least up to the last phase's end).
fn timed_phases(src: &Source, checks: &[Check]) -> (Vec<PhaseView>, f64) {
    let rec = src.rec;
    let mut phases = phases_from_checks(checks);
    let mut seconds: f64 = secs_between(&rec.started, &rec.updated).unwrap_or(0.0);
    for pr in &rec.phases {
        let start = pr.started.as_deref().and_then(|t| src.since_start(t));
        if let Some(t) = start {
            seconds = seconds.max(t + pr.seconds);
        }
        for v in views_of(pr.id) {
            let Some(p) = phases.iter_mut().find(|p| p.id == *v) else {
                continue;
            };
            if let Some(t) = start {
                p.started = Some(t);
                p.ended = Some(t + pr.seconds);
            }
            if let Some(note) = phase_note(pr, p.checks.is_empty()) {
                p.note = Some(note);
            }
            if p.checks.is_empty() && p.id != "deliverables" {
                p.status = Some(PhaseStatus::NotRun);
            }
        }
    }
    (phases, seconds)
}

/// The note a report phase gets from its pipeline phase's record (not reached, skipped and why,
/// reused, ran on past a failed check), if any; `no_checks` when the report phase has none.
fn phase_note(pr: &PhaseRecord, no_checks: bool) -> Option<String> {
    match pr.status {
        RecStatus::Pending => Some(format!(
            "not reached: the run ended before the {} phase",
            pr.id.name()
        )),
        RecStatus::Skip | RecStatus::Interrupted | RecStatus::Error | RecStatus::Running
            if no_checks =>
        {
            Some(format!(
                "{} phase {}: {}",
                pr.id.name(),
                pr.status.name(),
                pr.reason.as_deref().unwrap_or("no reason recorded")
            ))
        }
        _ if pr.reused => Some("reused: recorded outputs verified on resume".into()),
        // Issue 19: a phase that ran past a failed check says which and why.
        _ if !pr.went_past.is_empty() => {
            Some(format!("ran on although {}", pr.went_past.join("; ")))
        }
        _ => None,
    }
}

/// Ninja's progress read from the build log, its times moved onto the run's clock.
fn ninja_on_run_clock(src: &Source, build_log: &Path) -> Vec<NinjaPoint> {
    let mut ninja = ninja_from_log(build_log, 400);
    if let Some(t0) = src.started_at(PhaseId::Build) {
        // The log's own times count from the build's start; the timeline from the run's.
        for n in &mut ninja {
            n.t += t0;
        }
    }
    ninja
}

/// Where and why the run stopped: the build's fatal finding, the build's error, or the signal
/// that interrupted it; `None` when it did not stop. `seconds` is the run's length.
fn stop_of(src: &Source, checks: &[Check], seconds: f64) -> Option<StopView> {
    let rec = src.rec;
    let build = rec.outputs.build.as_ref();
    if let Some(f) = build.and_then(|b| b.fatal.as_ref()) {
        Some(StopView {
            kind: StopKind::Fatal,
            t: line_time(&f.text)
                .map(|t| t + src.started_at(PhaseId::Build).unwrap_or(0.0))
                .or_else(|| src.ended_at(PhaseId::Build)),
            line: Some(f.line),
            text: Some(f.text.clone()),
            reason: f.message.clone(),
            fix: f.hint.clone(),
        })
    } else if let Some((b, e)) = build.and_then(|b| b.error.as_ref().map(|e| (b, e))) {
        Some(StopView {
            kind: StopKind::Failed,
            t: src.ended_at(PhaseId::Build),
            line: None,
            text: Some(b.log_tail.join("\n")),
            reason: e.clone(),
            fix: checks
                .iter()
                .find(|c| c.id == "build.result")
                .and_then(|c| c.hint.clone()),
        })
    } else if rec.state == RunState::Interrupted {
        let at = rec
            .phases
            .iter()
            .find(|p| p.status == RecStatus::Interrupted);
        Some(StopView {
            kind: StopKind::Interrupted,
            t: at.and_then(|p| src.ended_at(p.id)).or(Some(seconds)),
            reason: format!(
                "{}: forge cancelled the run in the {} phase; `forge build --resume {}` continues it",
                at.and_then(|p| p.reason.clone())
                    .unwrap_or_else(|| "a signal".into()),
                at.map_or("?", |p| p.id.name()),
                rec.run
            ),
            ..StopView::default()
        })
    } else {
        None
    }
}

/// The run's outputs: the build log, the wheel stage's files, the export's archive (or parts),
/// its checksum, SBOM and lock; paths relative to the run directory.
fn record_outputs(src: &Source, dir: &Path, build_log: &Path) -> Vec<OutputView> {
    let rec = src.rec;
    let mut outputs = vec![OutputView {
        kind: OutputKind::Log,
        path: build_log.strip_prefix(dir).map_or_else(
            |_| rel_to(&src.plan_dir, build_log),
            |p| p.display().to_string(),
        ),
        bytes: 0,
        sha256: None,
    }];
    for w in &rec.outputs.wheels {
        // The wheel stage also yields build.log and the sources' commits: files, not wheels.
        let kind = match w.path.extension().and_then(|e| e.to_str()) {
            Some("whl") => OutputKind::Wheel,
            Some("log") => OutputKind::Log,
            _ => OutputKind::File,
        };
        outputs.push(OutputView {
            kind,
            path: rel_to(&src.plan_dir, &w.path),
            bytes: w.size,
            sha256: Some(w.sha256.clone()),
        });
    }
    if let Some(e) = &rec.outputs.archive {
        outputs.extend(export_outputs(&src.plan_dir, e));
    }
    outputs
}

/// The tool versions: the engine's (`tools`), the builder, and the sources' revisions the wheel
/// stage wrote to `versions.txt` in `wheels_dir`.
fn record_tools(
    rec: &RunRecord,
    mut tools: std::collections::BTreeMap<String, String>,
    wheels_dir: &Path,
) -> std::collections::BTreeMap<String, String> {
    if let Some(b) = &rec.outputs.build {
        tools.insert("builder".into(), b.builder.name().to_owned());
    }
    if let Ok(v) = std::fs::read_to_string(wheels_dir.join("versions.txt")) {
        for l in v.lines() {
            let mut it = l.split_whitespace();
            if let (Some(k), Some(_repo), Some(r)) = (it.next(), it.next(), it.next()) {
                let commit = it.next().map(|c| format!(" ({c})")).unwrap_or_default();
                tools.insert(k.to_owned(), format!("{r}{commit}"));
            }
        }
    }
    tools
}

/// The image: the built one's tag and id, or the plan's tag when none was built.
fn image_view(rec: &RunRecord, bytes: Option<u64>) -> ImageView {
    let tag = rec
        .outputs
        .image
        .as_ref()
        .map(|i| i.tag.clone())
        .unwrap_or_else(|| rec.plan.image_tag.clone());
    ImageView {
        tag,
        id: rec.outputs.image.as_ref().map(|i| i.id.clone()),
        bytes,
    }
}

/// How the run ended: interrupted, in error, still running, or as the build ended.
fn run_end(rec: &RunRecord) -> RunEnd {
    match rec.state {
        RunState::Interrupted => RunEnd::Interrupted,
        RunState::Error => RunEnd::Error,
        RunState::Running => RunEnd::Running,
        RunState::Finished => rec
            .outputs
            .build
            .as_ref()
            .map_or(RunEnd::Finished, |b| b.end.into()),
    }
}

/// Every catalog check's pass condition under `recipe`.
pub fn conditions(recipe: &Recipe) -> std::collections::BTreeMap<String, String> {
    crate::report::catalog::CATALOG
        .iter()
        .map(|e| {
            (
                e.id.to_owned(),
                crate::report::catalog::condition(e.id, recipe),
            )
        })
        .collect()
}

/// Write report.json, report.md, report.junit.xml and report.html into `dir`.
pub fn write_reports(dir: &Path, view: &RunView) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_vec_pretty(&view.to_report_json()).expect("report serializes");
    let files: [(&str, Vec<u8>); 4] = [
        ("report.json", json),
        (
            "report.md",
            (markdown::render(view) + &publication_md(dir)).into_bytes(),
        ),
        ("report.junit.xml", junit::render(view).into_bytes()),
        ("report.html", html::render(view).into_bytes()),
    ];
    let mut out = Vec::new();
    for (name, data) in files {
        let p = dir.join(name);
        let part = dir.join(format!("{name}.part"));
        std::fs::write(&part, data).map_err(|e| Error::io("write", &part, e))?;
        std::fs::rename(&part, &p).map_err(|e| Error::io("rename", &part, e))?;
        out.push(p);
    }
    Ok(out)
}

/// The release report's "Publication" section: the registry digest `forge push` recorded, the
/// SBOM file, the signature file (and how a receiver checks each).
pub fn publication_md(dir: &Path) -> String {
    let mut md = String::from("\n## Publication\n\n");
    match super::read_manifest(dir).ok().and_then(|m| m.registry) {
        Some(p) => md.push_str(&format!(
            "- Registry: `{}`, digest `{}` (pull `{}`; `forge verify --registry` checks it)\n",
            p.reference, p.digest, p.pinned
        )),
        None => md.push_str("- Registry: not pushed (`forge push BUNDLE_DIR REGISTRY/REPO:TAG`)\n"),
    }
    if dir.join(crate::ops::sbom::FILE).is_file() {
        md.push_str(&format!(
            "- SBOM: `{}` (CycloneDX 1.6: packages with purls, ROCm releases, GPU arches per library)\n",
            crate::ops::sbom::FILE
        ));
    } else {
        md.push_str("- SBOM: none in this bundle (`forge image IMAGE --sbom FILE` writes one)\n");
    }
    match super::sign::signing_key_id() {
        Some(id) => md.push_str(&format!(
            "- Signature: `{}` over `SHA256SUMS`, minisign key {id} (check: `minisign -Vm SHA256SUMS -p forge.pub`)\n",
            super::sign::SIG
        )),
        None => md.push_str("- Signature: not signed (`--sign-key FILE` signs `SHA256SUMS`)\n"),
    }
    md
}

/// Finish a run: judge the deliverables checklist on the files (it becomes the view's last
/// phase), write the four reports, then `manifest.json` and `SHA256SUMS` over everything.
/// Returns the checklist.
pub fn finish(dir: &Path, view: &mut RunView, archive: Option<&ArchiveInfo>) -> Result<Vec<Check>> {
    view.outputs = super::refresh_outputs(dir, &view.outputs)?;
    let list = super::checklist(dir, view, archive);
    finish_with(dir, view, archive, &list)?;
    Ok(list)
}

/// [`finish`] with the checklist already judged (`view.outputs` refreshed).
pub fn finish_with(
    dir: &Path,
    view: &mut RunView,
    archive: Option<&ArchiveInfo>,
    list: &[Check],
) -> Result<()> {
    match view.phases.iter_mut().find(|p| p.id == "deliverables") {
        Some(p) => {
            // Judged now: a note the record gave it (not reached, running) no longer holds.
            p.checks = list.to_vec();
            p.status = None;
            p.note = None;
        }
        None => view.phases.push(PhaseView {
            id: "deliverables".into(),
            name: "Deliverables checklist".into(),
            checks: list.to_vec(),
            ..PhaseView::default()
        }),
    }
    write_reports(dir, view)?;
    refresh_bundle(dir, view, archive)
}

/// Write `manifest.json` and `SHA256SUMS` for `view`'s outputs plus the report files.
pub fn refresh_bundle(dir: &Path, view: &RunView, archive: Option<&ArchiveInfo>) -> Result<()> {
    let mut with_reports = view.clone();
    with_reports
        .outputs
        .retain(|o| !REPORTS.contains(&o.path.as_str()));
    for r in REPORTS {
        with_reports.outputs.push(OutputView {
            kind: OutputKind::Report,
            path: (*r).into(),
            ..OutputView::default()
        });
    }
    with_reports.outputs = super::refresh_outputs(dir, &with_reports.outputs)?;
    super::write(dir, &with_reports, archive.cloned())?;
    Ok(())
}

/// Read a run directory's record: `report.json` (a [`RunView`]).
pub fn read_run(dir: &Path) -> Result<RunView> {
    let hint =
        Some("pass a run directory `forge build` wrote (artifacts/<run>/, with report.json)");
    if !dir.is_dir() {
        return Err(Error::usage(
            format!("`{}` is not a directory", dir.display()),
            hint,
        ));
    }
    let p = dir.join("report.json");
    let bytes = std::fs::read(&p).map_err(|e| {
        Error::usage(
            format!(
                "`{}` holds no run record: cannot read report.json: {e}",
                dir.display()
            ),
            hint,
        )
    })?;
    let v: RunView = serde_json::from_slice(&bytes).map_err(|e| {
        Error::usage(
            format!("`{}` is not a forge run record: {e}", p.display()),
            hint,
        )
    })?;
    if v.schema == 0 || v.phases.is_empty() {
        return Err(Error::usage(
            format!(
                "`{}` is not a forge run record (no `schema`, no `phases`): written by an older forge?",
                p.display()
            ),
            Some(
                "rebuild the run with this forge, or map its record onto report.json's schema (schemas/report.schema.json)",
            ),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::record::{ImageOut, Outputs, PhaseRecord, RecipeRef, Wheel};
    use crate::report::{Status, Verdict};

    fn phase(id: PhaseId, status: RecStatus, started: &str, seconds: f64) -> PhaseRecord {
        PhaseRecord {
            status,
            started: Some(started.into()),
            seconds,
            ..PhaseRecord::pending(id)
        }
    }

    /// Issue 14 on issue 9's record: the reports' phases carry run.json's timings, the stop is
    /// the build's fatal finding, the outputs are the record's, relative to the run directory.
    #[test]
    fn a_run_record_maps_onto_the_run_view() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-from-record-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        std::fs::write(
            dir.join("build.log"),
            "#9 12.5 [10/100] Building CXX object a.o\n#9 20.0 [50/100] Building CXX object b.o\n",
        )
        .unwrap();
        let mut build = phase(
            PhaseId::Build,
            RecStatus::Fail,
            "2026-01-01T00:00:10Z",
            30.0,
        );
        build.checks = vec![
            Check::fail("2.1", "USE_DISTRIBUTED", "off at line 40"),
            Check::fail("build.result", "the image builds", "stopped"),
        ];
        let recipe = Recipe::shipped("7.1.1", crate::recipe::LoadOptions::default()).unwrap();
        let (plan, _) = crate::ops::plan::resolve(&recipe, Path::new("artifacts"), "r1").unwrap();
        let mut rec = RunRecord {
            schema: crate::pipeline::record::SCHEMA,
            run: "r1".into(),
            recipe: RecipeRef {
                name: "x".into(),
                origin: "x.toml".into(),
                path: None,
                rocm: None,
                allow_unsupported: false,
                hash: "h".into(),
            },
            plan,
            started: "2026-01-01T00:00:00Z".into(),
            updated: "2026-01-01T00:00:41Z".into(),
            state: RunState::Finished,
            signal: None,
            verdict: Verdict::Fail,
            phases: vec![
                phase(
                    PhaseId::Preflight,
                    RecStatus::Pass,
                    "2026-01-01T00:00:01Z",
                    2.0,
                ),
                build,
                PhaseRecord {
                    reason: Some("needs the build phase, which failed".into()),
                    started: None,
                    ..phase(PhaseId::Image, RecStatus::Skip, "", 0.0)
                },
            ],
            outputs: Outputs {
                build: Some(crate::ops::drive::BuildResult {
                    builder: crate::engine::BuilderKind::BuildKit,
                    target: "torch-build".into(),
                    tag: "forge-wheels:r1".into(),
                    build_log: "artifacts/r1/build.log".into(),
                    end: crate::ops::drive::End::Stopped,
                    fatal: Some(crate::monitor::rules::Finding {
                        id: "2.1".into(),
                        severity: crate::recipe::Severity::Fatal,
                        line: 40,
                        text: "#9 20.0 USE_DISTRIBUTED : OFF".into(),
                        message: "distributed is off".into(),
                        hint: Some("set USE_DISTRIBUTED=1".into()),
                    }),
                    cancel_ms: None,
                    error: None,
                    log_tail: Vec::new(),
                    seconds: 30.0,
                    stages: Vec::new(),
                }),
                image_build: None,
                wheels: vec![Wheel {
                    path: "artifacts/r1/wheels/torch-2.9.1-cp313.whl".into(),
                    size: 3,
                    sha256: "ab".into(),
                }],
                image: Some(ImageOut {
                    tag: "forge/x:1".into(),
                    id: "sha256:1".into(),
                    engines: Vec::new(),
                    stages: Vec::new(),
                }),
                archive: None,
            },
            resumes: Vec::new(),
        };
        rec.phases[0].checks = vec![Check::skip("1.1", "GPU", "no GPU")];
        let v = from_record(&rec, dir, None, Facts::default());
        let p = |id: &str| v.phases.iter().find(|p| p.id == id).unwrap();
        assert_eq!((p("1").started, p("1").ended), (Some(1.0), Some(3.0)));
        assert_eq!((p("2").started, p("2").ended), (Some(10.0), Some(40.0)));
        assert_eq!(p("2").status(), PhaseStatus::Fail);
        assert_eq!(p("4").status(), PhaseStatus::NotRun);
        assert!(
            p("4")
                .note
                .as_deref()
                .unwrap()
                .contains("needs the build phase"),
            "{:?}",
            p("4").note
        );
        assert_eq!(v.seconds, 41.0);
        assert_eq!(v.end, Some(RunEnd::Stopped));
        let stop = v.stop.as_ref().unwrap();
        assert_eq!((stop.line, stop.t), (Some(40), Some(30.0)));
        assert_eq!(stop.fix.as_deref(), Some("set USE_DISTRIBUTED=1"));
        // ninja's times are the build's, moved onto the run's clock
        assert_eq!(v.ninja_progress.len(), 2);
        assert_eq!(
            (v.ninja_progress[0].t, v.ninja_progress[0].done),
            (22.5, 10)
        );
        let paths: Vec<&str> = v.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["build.log", "wheels/torch-2.9.1-cp313.whl"]);
        assert_eq!(v.image.as_ref().unwrap().id.as_deref(), Some("sha256:1"));
        assert_eq!(v.tools["builder"], "buildkit");
        assert_eq!(
            v.checks()
                .iter()
                .filter(|c| c.status == Status::Fail)
                .count(),
            2
        );
    }
}
