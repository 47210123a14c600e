//! `report.md`: the run for a reader with nothing else open. The verdict, whether the bundle is
//! a valid release and what the image is ready for come first; then the deliverables checklist,
//! what to do next, where the build stopped, the spec's summary table and one table a phase
//! (the spec's "Test / Pass condition" tables with forge's status and evidence), the
//! workarounds in force and the files.

use super::run::{PhaseStatus, RunView};
use crate::report::Status;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub use crate::units::size;
use crate::units::size as mb;

/// The one-line command that joins a split archive and checks it, when the run has parts.
pub fn join_command(v: &RunView) -> Option<String> {
    let mut parts: Vec<&str> = v
        .outputs
        .iter()
        .filter(|o| o.kind == super::run::OutputKind::ArchivePart)
        .map(|o| o.path.as_str())
        .collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort_unstable();
    let whole = parts[0].rsplit_once('.').map_or(parts[0], |(w, _)| w);
    Some(format!(
        "cat {} > {whole} && sha256sum -c {whole}.sha256",
        parts.join(" ")
    ))
}

/// What the reader should do next: the fix of every failed check, then what skipped.
pub fn next_steps(v: &RunView) -> Vec<String> {
    // One line a distinct fix: checks failing for one cause share it.
    let mut fixes: Vec<(Vec<&str>, String)> = Vec::new();
    for c in v.phases.iter().flat_map(|p| &p.checks) {
        if c.status == Status::Fail {
            let fix = match &c.hint {
                Some(h) => h.clone(),
                None => format!("{}: {}", c.title, c.evidence),
            };
            match fixes.iter_mut().find(|(_, f)| *f == fix) {
                Some((ids, _)) => ids.push(&c.id),
                None => fixes.push((vec![&c.id], fix)),
            }
        }
    }
    let mut out: Vec<String> = fixes
        .into_iter()
        .map(|(ids, fix)| format!("{}: {fix}", ids.join(", ")))
        .collect();
    let skipped: Vec<&str> = v
        .phases
        .iter()
        .flat_map(|p| &p.checks)
        .filter(|c| c.status == Status::Skip)
        .map(|c| c.id.as_str())
        .collect();
    if !skipped.is_empty() {
        out.push(format!(
            "run the skipped checks where they can run ({}): a skip is not a pass",
            skipped.join(", ")
        ));
    }
    out
}

/// The release line: whether the bundle is a valid release, and why not.
pub fn release_line(v: &RunView) -> String {
    let list = v.checklist();
    if list.is_empty() {
        return "not judged: the run has no deliverables checklist".into();
    }
    let failed: Vec<&str> = list
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id.as_str())
        .collect();
    let skipped: Vec<&str> = list
        .iter()
        .filter(|c| c.status == Status::Skip)
        .map(|c| c.id.as_str())
        .collect();
    if !failed.is_empty() {
        format!("NOT a valid release: {} failed", failed.join(", "))
    } else if !skipped.is_empty() {
        format!(
            "NOT a valid release yet: the checklist is incomplete ({} not checked)",
            skipped.join(", ")
        )
    } else {
        "a valid release: every checklist item passed".into()
    }
}

/// The report as Markdown.
pub fn render(v: &RunView) -> String {
    let mut md = header(v);
    md.push_str(&verdict_section(v));
    md.push_str(&checklist_section(v));
    md.push_str(&next_section(v));
    md.push_str(&stop_section(v));
    md.push_str(&summary_section(v));
    md.push_str(&phase_sections(v));
    md.push_str(&workarounds_section(v));
    md.push_str(&files_section(v));
    md
}

/// The title and the run's facts: image, recipe, start and duration, the build's end, forge.
fn header(v: &RunView) -> String {
    let mut md = format!("# forge report: {}\n\n", v.run);
    if let Some(img) = &v.image {
        md.push_str(&format!("- image: `{}`", img.tag));
        if let Some(id) = &img.id {
            md.push_str(&format!(" ({id})"));
        }
        md.push('\n');
    }
    if let Some(r) = &v.recipe {
        md.push_str(&format!(
            "- recipe: {} ({}), ROCm {}, archs {}\n",
            r.name,
            r.origin,
            r.rocm,
            r.archs.join(";")
        ));
    }
    if let Some(t) = &v.started_at {
        md.push_str(&format!("- started: {t}, took {:.0} s\n", v.seconds));
    }
    if let Some(e) = &v.end {
        md.push_str(&format!("- build: **{e}**\n"));
    }
    md.push_str(&format!("- forge {}\n\n", v.forge_version));
    md
}

/// The verdict with its counts, the release line and the production readiness.
fn verdict_section(v: &RunView) -> String {
    let counts = v.counts();
    let mut md = format!(
        "**Verdict: {}**: {} passed, {} failed, {} skipped (a skip is never a pass).\n\n",
        v.verdict().name().to_uppercase(),
        counts.pass,
        counts.fail,
        counts.skip
    );
    md.push_str(&format!("**Release:** {}.\n\n", release_line(v)));
    let r = v.readiness();
    md.push_str(&format!("**Production readiness:** {}.\n", r.line));
    for x in &r.ready_for {
        md.push_str(&format!("- ready for: {x}\n"));
    }
    for x in &r.not_ready_for {
        md.push_str(&format!("- not ready for: {x}\n"));
    }
    md.push('\n');
    md
}

/// "Deliverables checklist": one ticked or unticked line an item.
fn checklist_section(v: &RunView) -> String {
    let mut md = String::from("## Deliverables checklist\n\n");
    if v.checklist().is_empty() {
        md.push_str("No checklist was judged for this run.\n\n");
    }
    for c in v.checklist() {
        let mark = match c.status {
            Status::Pass => "[x]",
            Status::Fail => "[ ] **FAIL**",
            Status::Skip => "[ ] **not checked**",
        };
        md.push_str(&format!(
            "- {mark} {} (`{}`): {}\n",
            c.title,
            c.id,
            cell(&c.evidence)
        ));
    }
    md.push('\n');
    md
}

/// "What to do next" as a numbered list, or nothing when there is nothing to do.
fn next_section(v: &RunView) -> String {
    let next = next_steps(v);
    let mut md = String::new();
    if !next.is_empty() {
        md.push_str("## What to do next\n\n");
        for (i, n) in next.iter().enumerate() {
            md.push_str(&format!("{}. {}\n", i + 1, cell(n)));
        }
        md.push('\n');
    }
    md
}

/// "Where the build stopped": the log line, its text, the reason and the fix (none: nothing).
fn stop_section(v: &RunView) -> String {
    let mut md = String::new();
    let Some(s) = &v.stop else {
        return md;
    };
    md.push_str(&format!(
        "## Where the build stopped ({})\n\n",
        s.kind.describe()
    ));
    if let Some(l) = s.line {
        md.push_str(&format!("At log line {l}"));
        if let Some(t) = s.t {
            md.push_str(&format!(", {t:.1} s into the build"));
        }
        md.push_str(":\n\n");
    }
    if let Some(t) = &s.text {
        md.push_str(&format!("```\n{t}\n```\n\n"));
    }
    md.push_str(&format!("{}\n\n", s.reason));
    if let Some(f) = &s.fix {
        md.push_str(&format!("Fix: {f}\n\n"));
    }
    md
}

/// "Summary": one row a phase with its counts and time, then BuildKit's stage times if any.
fn summary_section(v: &RunView) -> String {
    let mut md = String::from(
        "## Summary\n\n| Phase | Status | Passed | Failed | Skipped | Time |\n|---|---|---|---|---|---|\n",
    );
    for p in &v.phases {
        let n = |s| p.checks.iter().filter(|c| c.status == s).count();
        let time = match (p.started, p.ended) {
            (Some(a), Some(b)) => format!("{:.0} s", (b - a).max(0.0)),
            _ => "-".into(),
        };
        let status = p.status();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {time} |\n",
            p.name,
            status.label(),
            n(Status::Pass),
            n(Status::Fail),
            n(Status::Skip),
        ));
    }
    md.push('\n');
    if !v.stages.is_empty() {
        md.push_str("## Stages (BuildKit's step times)\n\n| Stage | Time | Steps | Cached |\n|---|---|---|---|\n");
        for s in &v.stages {
            md.push_str(&format!(
                "| {} | {:.1} s | {} | {} |\n",
                s.stage, s.seconds, s.steps, s.cached
            ));
        }
        md.push('\n');
    }
    md
}

/// One section a phase: its note and its checks' table (test, status, condition, evidence).
fn phase_sections(v: &RunView) -> String {
    let mut md = String::new();
    for p in &v.phases {
        md.push_str(&format!("## {}: {}\n\n", p.name, p.status().label()));
        if let Some(n) = &p.note {
            md.push_str(&format!("{n}\n\n"));
        }
        if p.checks.is_empty() {
            md.push_str(match p.status() {
                PhaseStatus::NotRun => "Not run in this run.\n\n",
                _ => "No checks.\n\n",
            });
            continue;
        }
        md.push_str(
            "| Test | Status | Check | Pass condition | Evidence |\n|---|---|---|---|---|\n",
        );
        for c in &p.checks {
            let hint = c
                .hint
                .as_deref()
                .filter(|_| c.status == Status::Fail)
                .map(|h| format!(" **Fix:** {}", cell(h)))
                .unwrap_or_default();
            md.push_str(&format!(
                "| {} | {} | {} | {} | {}{hint} |\n",
                c.id,
                c.status.label(),
                cell(&c.title),
                cell(v.conditions.get(&c.id).map_or("-", String::as_str)),
                cell(&c.evidence)
            ));
        }
        md.push('\n');
    }
    md
}

/// "Workarounds in force": a table of them, or the line saying there are none.
fn workarounds_section(v: &RunView) -> String {
    let mut md = String::from("## Workarounds in force\n\n");
    if v.workarounds.is_empty() {
        md.push_str("None: the image sets no preload or override forge knows as a workaround.\n\n");
    } else {
        md.push_str("| Setting | Why | Where |\n|---|---|---|\n");
        for w in &v.workarounds {
            md.push_str(&format!(
                "| `{}` | {} | {} |\n",
                cell(&w.what),
                cell(&w.why),
                cell(&w.source)
            ));
        }
        md.push('\n');
    }
    md
}

/// "Files": the outputs' table, the join command of a split archive and how to verify; nothing
/// without outputs.
fn files_section(v: &RunView) -> String {
    let mut md = String::new();
    if v.outputs.is_empty() {
        return md;
    }
    md.push_str("## Files\n\n| File | Kind | Size | SHA256 |\n|---|---|---|---|\n");
    for o in &v.outputs {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            o.path,
            o.kind,
            mb(o.bytes),
            o.sha256
                .as_deref()
                .map(|s| format!("`{s}`"))
                .unwrap_or_else(|| "-".into())
        ));
    }
    md.push('\n');
    if let Some(j) = join_command(v) {
        md.push_str(&format!(
            "The archive is split; join and check it with:\n\n```sh\n{j}\n```\n\n"
        ));
    }
    md.push_str("`forge verify <this directory>` rechecks every file against `manifest.json` and `SHA256SUMS`; `sha256sum -c SHA256SUMS` does the same without forge.\n");
    md
}
