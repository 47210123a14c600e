//! A run's report files and bundle: [`RunView`] from what `forge build` has today
//! ([`from_build`]), the four renderings written side by side ([`write_reports`]), and the
//! finishing step every run ends with ([`finish`]): the deliverables checklist judged on the
//! files, the reports, then `manifest.json` and `SHA256SUMS`.

use std::path::{Path, PathBuf};

use crate::build::BuildReport;
use crate::bundle::ArchiveInfo;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::recipe::Recipe;

use super::run::{
    ImageView, OutputView, PhaseStatus, PhaseView, RecipeView, RunView, SCHEMA, StopView,
    Thresholds, line_time, ninja_from_log, phases_from_checks, workarounds_in_dockerfile,
};
use super::{Check, html, junit, markdown};

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
        join: crate::export::join_command(e),
        loadable_by: crate::bundle::loadable_by(&e.format).into(),
    }
}

/// The outputs of an export (archive or parts, and the checksum file).
pub fn export_outputs(dir: &Path, e: &Export) -> Vec<OutputView> {
    let mut out = Vec::new();
    if e.parts.is_empty() {
        out.push(OutputView {
            kind: "archive".into(),
            path: rel(dir, &e.archive),
            bytes: e.gz_bytes,
            sha256: Some(e.sha256.clone()),
        });
    }
    for p in &e.parts {
        out.push(OutputView {
            kind: "archive-part".into(),
            path: rel(dir, &p.path),
            bytes: p.bytes,
            sha256: Some(p.sha256.clone()),
        });
    }
    out.push(OutputView {
        kind: "sha256".into(),
        path: rel(dir, &e.sha256_file),
        bytes: 0,
        sha256: None,
    });
    out
}

/// What the engine says about the built image: (id, size).
pub type ImageFacts = (Option<String>, Option<u64>);

/// The run view of a `forge build` (what it records today: its checks, wheels, export, log).
pub fn from_build(
    rep: &BuildReport,
    recipe: &Recipe,
    plan: &crate::plan::Plan,
    image: ImageFacts,
    tools: std::collections::BTreeMap<String, String>,
) -> RunView {
    let dir = &plan.artifacts.dir;
    let mut checks: Vec<Check> = crate::plan::resolve(recipe, Path::new("."), &rep.run)
        .map(|(_, c)| c)
        .unwrap_or_default();
    checks.extend(rep.checks.iter().cloned());
    let mut phases = phases_from_checks(&checks);
    let export_secs = rep.export.as_ref().map_or(0.0, |e| e.seconds);
    for p in &mut phases {
        match p.id.as_str() {
            "2" => {
                p.started = Some(0.0);
                p.ended = Some((rep.seconds - export_secs).max(0.0));
                p.note = Some("the build (and phase 3 on its wheel) ran in this span".into());
            }
            "export" if rep.export.is_some() => {
                p.started = Some((rep.seconds - export_secs).max(0.0));
                p.ended = Some(rep.seconds);
            }
            "1" if p.checks.is_empty() => {
                p.note = Some(
                    "`forge build` does not run phase 1: run `forge preflight` on the GPU host"
                        .into(),
                );
            }
            "4" if p.checks.is_empty() => {
                p.note = Some(format!(
                    "not part of `forge build` yet: run `forge image {}`",
                    plan.image_tag
                ));
            }
            "5" | "6" | "7" if p.checks.is_empty() => {
                p.note = Some(
                    "needs an AMD GPU (gfx1151) and forge's runtime phase; not run by this build"
                        .into(),
                );
            }
            _ => {}
        }
        if p.checks.is_empty() && p.id != "deliverables" {
            p.status = Some(PhaseStatus::NotRun);
        }
    }
    let stop = if let Some(f) = &rep.fatal {
        Some(StopView {
            kind: "stopped by forge on a fatal finding".into(),
            t: line_time(&f.text),
            line: Some(f.line),
            text: Some(f.text.clone()),
            reason: f.message.clone(),
            fix: f.hint.clone(),
        })
    } else if let Some(e) = &rep.error {
        Some(StopView {
            kind: "a build step failed".into(),
            t: rep.log_tail.iter().rev().find_map(|l| line_time(l)),
            line: None,
            text: Some(rep.log_tail.join("\n")),
            reason: e.clone(),
            fix: rep
                .checks
                .iter()
                .find(|c| c.id == "build.result")
                .and_then(|c| c.hint.clone()),
        })
    } else if rep.end == "interrupted" {
        Some(StopView {
            kind: "interrupted".into(),
            t: Some(rep.seconds),
            reason: "Ctrl-C: forge cancelled the build".into(),
            ..StopView::default()
        })
    } else {
        None
    };
    let mut outputs = vec![OutputView {
        kind: "log".into(),
        path: rel(dir, &rep.build_log),
        bytes: 0,
        sha256: None,
    }];
    for w in &rep.wheels {
        let kind = if w.path.extension().is_some_and(|e| e == "whl") {
            "wheel"
        } else {
            "log"
        };
        outputs.push(OutputView {
            kind: kind.into(),
            path: rel(dir, &w.path),
            bytes: w.size,
            sha256: Some(w.sha256.clone()),
        });
    }
    if let Some(e) = &rep.export {
        outputs.extend(export_outputs(dir, e));
    }
    let mut tools = tools;
    tools.insert("builder".into(), format!("{:?}", rep.builder));
    if let Ok(v) = std::fs::read_to_string(plan.artifacts.wheels.join("versions.txt")) {
        for l in v.lines() {
            let mut it = l.split_whitespace();
            if let (Some(k), Some(_repo), Some(r)) = (it.next(), it.next(), it.next()) {
                let commit = it.next().map(|c| format!(" ({c})")).unwrap_or_default();
                tools.insert(k.to_owned(), format!("{r}{commit}"));
            }
        }
    }
    RunView {
        schema: SCHEMA,
        run: rep.run.clone(),
        started_at: Some(
            (chrono::Utc::now() - chrono::Duration::milliseconds((rep.seconds * 1000.0) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        seconds: rep.seconds,
        end: Some(rep.end.to_owned()),
        recipe: Some(recipe_view(recipe)),
        image: Some(ImageView {
            tag: plan.image_tag.clone(),
            id: image.0,
            bytes: image.1,
        }),
        forge_version: env!("CARGO_PKG_VERSION").into(),
        tools,
        phases,
        outputs,
        ninja_progress: ninja_from_log(&rep.build_log, 400),
        stop,
        workarounds: recipe
            .dockerfile
            .read()
            .map(|t| workarounds_in_dockerfile(&t, &recipe.dockerfile.display()))
            .unwrap_or_default(),
        build_log: Some(rel(dir, &rep.build_log)),
        conditions: conditions(recipe),
    }
}

/// Every catalog check's pass condition under `recipe`.
pub fn conditions(recipe: &Recipe) -> std::collections::BTreeMap<String, String> {
    crate::check::catalog::CATALOG
        .iter()
        .map(|e| {
            (
                e.id.to_owned(),
                crate::check::catalog::condition(e.id, recipe),
            )
        })
        .collect()
}

/// Write report.json, report.md, report.junit.xml and report.html into `dir`.
pub fn write_reports(dir: &Path, view: &RunView) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_vec_pretty(&view.to_report_json()).expect("report serializes");
    let files: [(&str, Vec<u8>); 4] = [
        ("report.json", json),
        ("report.md", markdown::render(view).into_bytes()),
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

/// Finish a run: judge the deliverables checklist on the files (it becomes the view's last
/// phase), write the four reports, then `manifest.json` and `SHA256SUMS` over everything.
/// Returns the checklist.
pub fn finish(dir: &Path, view: &mut RunView, archive: Option<&ArchiveInfo>) -> Result<Vec<Check>> {
    view.outputs = crate::bundle::refresh_outputs(dir, &view.outputs)?;
    let list = crate::bundle::checklist(dir, view, archive);
    match view.phases.iter_mut().find(|p| p.id == "deliverables") {
        Some(p) => {
            p.checks = list.clone();
            p.status = None;
        }
        None => view.phases.push(PhaseView {
            id: "deliverables".into(),
            name: "Deliverables checklist".into(),
            checks: list.clone(),
            ..PhaseView::default()
        }),
    }
    write_reports(dir, view)?;
    refresh_bundle(dir, view, archive)?;
    Ok(list)
}

/// Write `manifest.json` and `SHA256SUMS` for `view`'s outputs plus the report files.
pub fn refresh_bundle(dir: &Path, view: &RunView, archive: Option<&ArchiveInfo>) -> Result<()> {
    let mut with_reports = view.clone();
    with_reports
        .outputs
        .retain(|o| !REPORTS.contains(&o.path.as_str()));
    for r in REPORTS {
        with_reports.outputs.push(OutputView {
            kind: "report".into(),
            path: (*r).into(),
            ..OutputView::default()
        });
    }
    with_reports.outputs = crate::bundle::refresh_outputs(dir, &with_reports.outputs)?;
    crate::bundle::write(dir, &with_reports, archive.cloned())?;
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
