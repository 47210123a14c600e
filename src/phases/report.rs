//! The report phase: the deliverables checklist (`deliverable.*`), then report.json, report.md,
//! report.junit.xml, report.html and the bundle (manifest.json, SHA256SUMS), rendered from the
//! run record ([`finish`]); the command's outcome and a plain Markdown account ([`markdown`]).

use std::path::Path;

use crate::error::Result;
use crate::pipeline::PhaseId;
use crate::pipeline::record::{PhaseStatus, RunRecord, RunState, write_atomically};
use crate::recipe::Recipe;
use crate::report::{Check, Outcome, Status, files, verdict};

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

/// One paragraph: the verdict and why.
pub fn explain(rec: &RunRecord) -> String {
    let checks = rec.checks();
    let n = |s| checks.iter().filter(|c| c.status == s).count();
    let v = verdict(&checks);
    let mut s = format!(
        "verdict **{}**: {} passed, {} failed, {} skipped.",
        v.name(),
        n(Status::Pass),
        n(Status::Fail),
        n(Status::Skip)
    );
    match rec.state {
        RunState::Interrupted => s.push_str(&format!(
            " The run was interrupted in the {} phase; `forge build --resume {}` continues it.",
            stopped_at(rec),
            rec.run
        )),
        RunState::Error => s.push_str(&format!(
            " forge could not go on in the {} phase; fix the cause and `forge build --resume {}`.",
            stopped_at(rec),
            rec.run
        )),
        _ => {}
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.as_str())
        .collect();
    if !failed.is_empty() {
        s.push_str(&format!(" Failed: {}.", failed.join(", ")));
    }
    let skipped: Vec<String> = rec
        .phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Skip)
        .map(|p| {
            format!(
                "{} ({})",
                p.id.name(),
                p.reason.as_deref().unwrap_or("skipped")
            )
        })
        .collect();
    if !skipped.is_empty() {
        s.push_str(&format!(" Not verified: {}.", skipped.join("; ")));
    }
    s.push_str(" Skipped checks are not passes; each says why it was skipped.");
    s
}

fn stopped_at(rec: &RunRecord) -> &'static str {
    rec.phases
        .iter()
        .find(|p| {
            matches!(
                p.status,
                PhaseStatus::Interrupted | PhaseStatus::Error | PhaseStatus::Running
            )
        })
        .map_or("?", |p| p.id.name())
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
    let list = crate::bundle::checklist(dir, &view, archive.as_ref());
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

/// The report as Markdown.
pub fn markdown(rec: &RunRecord, image: &str) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let b = build_json(rec);
    let mut md = format!(
        "# forge build {}\n\n{}\n\n- recipe: {} (`{}`, hash `{}`)\n- image: `{image}`\n- state: {:?}\n- started: {}, updated: {}\n",
        rec.run,
        explain(rec),
        rec.recipe.name,
        rec.recipe.origin,
        &rec.recipe.hash[..rec.recipe.hash.len().min(16)],
        rec.state,
        rec.started,
        rec.updated,
    );
    if let Some(log) = b["build_log"].as_str() {
        md.push_str(&format!("- build log: `{log}`\n"));
    }
    if let Some(img) = &rec.outputs.image {
        md.push_str(&format!("- image id: `{}`\n", img.id));
    }
    md.push_str("\n## Phases\n\n| phase | status | seconds | note |\n|---|---|---|---|\n");
    for p in &rec.phases {
        md.push_str(&format!(
            "| {} | {}{} | {:.1} | {} |\n",
            p.id.name(),
            p.status.name(),
            if p.reused { " (reused)" } else { "" },
            p.seconds,
            cell(p.reason.as_deref().unwrap_or(""))
        ));
    }
    let f = &b["fatal"];
    if f.is_object() {
        md.push_str(&format!(
            "\n## Stopped at log line {}\n\n```\n{}\n```\n\n{}\n\nFix: {}\n",
            f["line"],
            f["text"].as_str().unwrap_or(""),
            f["message"].as_str().unwrap_or(""),
            f["hint"].as_str().unwrap_or("-")
        ));
    }
    if let Some(e) = b["error"].as_str() {
        let tail: Vec<&str> = b["log_tail"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l.as_str()).collect())
            .unwrap_or_default();
        md.push_str(&format!(
            "\n## Build failed\n\n{}\n\n```\n{}\n```\n",
            cell(e),
            tail.join("\n")
        ));
    }
    md.push_str("\n## Checks\n\n| id | status | check | evidence |\n|---|---|---|---|\n");
    for c in rec.checks() {
        md.push_str(&format!(
            "| {} | {} | {} | {}{} |\n",
            c.id,
            c.status.label(),
            cell(&c.title),
            cell(&c.evidence),
            c.hint
                .as_deref()
                .filter(|_| c.status == Status::Fail)
                .map(|h| format!(" (fix: {})", cell(h)))
                .unwrap_or_default()
        ));
    }
    // The wheel stage also yields build.log and the sources' commits: files, not wheels (issue 12).
    let (wheels, others): (Vec<_>, Vec<_>) = rec
        .outputs
        .wheels
        .iter()
        .partition(|w| w.path.extension().is_some_and(|e| e == "whl"));
    for (title, list) in [
        ("Wheels", wheels),
        ("Other files from the wheel stage", others),
    ] {
        if list.is_empty() {
            continue;
        }
        md.push_str(&format!(
            "\n## {title}\n\n| file | bytes | sha256 |\n|---|---|---|\n"
        ));
        for w in list {
            md.push_str(&format!(
                "| `{}` | {} | `{}` |\n",
                w.path.display(),
                w.size,
                w.sha256
            ));
        }
    }
    if let Some(e) = &rec.outputs.archive {
        md.push_str(&format!(
            "\n## Image archive\n\n`{}` ({} bytes), SHA256 `{}` in `{}`\n",
            e.archive.display(),
            e.gz_bytes,
            e.sha256,
            e.sha256_file.display()
        ));
    }
    md
}

/// Write `report.json` and `report.md` atomically.
pub fn write(rec: &RunRecord, image: &str, json: &Path, md: &Path) -> Result<()> {
    let j = serde_json::to_vec_pretty(&outcome(rec, image).to_json()).expect("serializes");
    write_atomically(json, &j)?;
    write_atomically(md, markdown(rec, image).as_bytes())
}
