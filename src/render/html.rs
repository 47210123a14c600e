//! `report.html`: one self-contained page (inline CSS and SVG; no scripts, fonts or images from
//! anywhere) with the verdict and the deliverables checklist at the top, what to do next, the
//! build's timeline drawn (phases over time, ninja's progress over time, where the build was
//! stopped and why), then every phase's checks with their evidence.

use super::markdown::{join_command, next_steps, release_line, size};
use super::run::{PhaseStatus, RunView};
use crate::report::{Check, Status, Verdict};

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px}
.meta{color:#555;margin:0 0 14px}.meta code{background:#eceff3;padding:1px 4px;border-radius:3px}
.banner{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0}
.card{background:#fff;border:1px solid #d8dde4;border-radius:6px;padding:10px 14px;flex:1 1 300px}
.card b{display:block;font-size:12px;text-transform:uppercase;color:#666;letter-spacing:.04em}
.card span{font-size:16px;font-weight:600}
.pass{color:#17753b}.fail{color:#b42318}.skip,.incomplete,.notrun{color:#9a6700}
.pill{display:inline-block;min-width:44px;text-align:center;border-radius:10px;padding:0 8px;font-size:12px;font-weight:700;color:#fff}
.pill.pass{background:#1f8a4c}.pill.fail{background:#c0392b}.pill.skip,.pill.incomplete{background:#b7791f}.pill.notrun{background:#8a94a3}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d8dde4}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid #eceff3}
th{background:#f0f2f5;font-size:12px;text-transform:uppercase;color:#555}
td.id{white-space:nowrap;font-family:ui-monospace,monospace}
td.ev{font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}
.fix{display:block;margin-top:3px;color:#7a1d12;font-family:system-ui,sans-serif}
ol.next li{margin:3px 0}
.stop{background:#fff4f2;border:1px solid #f1b5ab;border-radius:6px;padding:10px 14px}
.stop pre{white-space:pre-wrap;background:#fff;border:1px solid #f1d0ca;padding:6px;margin:6px 0}
details{background:#fff;border:1px solid #d8dde4;border-radius:6px;margin:8px 0}
summary{cursor:pointer;padding:8px 12px;font-weight:600}
details table{border:0;border-top:1px solid #d8dde4}
svg{background:#fff;border:1px solid #d8dde4;border-radius:6px}
svg text{font:12px system-ui,sans-serif}
code{font-family:ui-monospace,monospace}
"#;

fn class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Skip => "skip",
    }
}

fn phase_class(s: PhaseStatus) -> &'static str {
    match s {
        PhaseStatus::Pass => "pass",
        PhaseStatus::Fail | PhaseStatus::Error => "fail",
        PhaseStatus::Incomplete | PhaseStatus::Interrupted => "incomplete",
        PhaseStatus::Skip => "skip",
        PhaseStatus::NotRun | PhaseStatus::Pending | PhaseStatus::Running => "notrun",
    }
}

fn fmt_t(t: f64) -> String {
    if t >= 3600.0 {
        format!(
            "{}h{:02}m",
            (t / 3600.0) as u64,
            ((t % 3600.0) / 60.0) as u64
        )
    } else if t >= 60.0 {
        format!("{}m{:02}s", (t / 60.0) as u64, (t % 60.0) as u64)
    } else {
        format!("{t:.1}s")
    }
}

/// The timeline as inline SVG: one lane a timed phase, ninja's progress under it, the stop.
pub fn timeline_svg(v: &RunView) -> String {
    let timed: Vec<_> = v
        .phases
        .iter()
        .filter(|p| p.started.is_some() && p.ended.is_some())
        .collect();
    let mut end = v.seconds;
    for p in &timed {
        end = end.max(p.ended.unwrap_or(0.0));
    }
    for n in &v.ninja_progress {
        end = end.max(n.t);
    }
    if let Some(t) = v.stop.as_ref().and_then(|s| s.t) {
        end = end.max(t);
    }
    if timed.is_empty() && v.ninja_progress.is_empty() {
        return "<p class=\"meta\">No timings were recorded for this run.</p>".into();
    }
    let end = end.max(1.0);
    let (w, left, right) = (1120.0_f64, 230.0_f64, 20.0_f64);
    let lane = 26.0;
    let chart_h = 130.0;
    let top = 24.0;
    let lanes_h = lane * timed.len() as f64;
    let chart_top = top + lanes_h + 34.0;
    let h = chart_top + chart_h + 40.0;
    let x = |t: f64| left + (t / end).clamp(0.0, 1.0) * (w - left - right);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"build timeline\">\n"
    );
    // Time axis ticks.
    for i in 0..=8 {
        let t = end * f64::from(i) / 8.0;
        let xx = x(t);
        s.push_str(&format!(
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eceff3\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#666\">{}</text>\n",
            chart_top + chart_h,
            chart_top + chart_h + 16.0,
            fmt_t(t)
        ));
    }
    s.push_str("<text x=\"8\" y=\"16\" font-weight=\"600\">Phases over time</text>\n");
    for (i, p) in timed.iter().enumerate() {
        let y = top + lane * i as f64;
        let (a, b) = (p.started.unwrap_or(0.0), p.ended.unwrap_or(0.0));
        let color = match p.status() {
            PhaseStatus::Pass => "#1f8a4c",
            PhaseStatus::Fail => "#c0392b",
            PhaseStatus::NotRun => "#8a94a3",
            _ => "#b7791f",
        };
        let bw = (x(b) - x(a)).max(3.0);
        // The label inside a long bar (white), after a short one.
        let (lx, fill, anchor) = if bw > 160.0 {
            (x(b) - 6.0, "#fff", "end")
        } else {
            (x(b) + 6.0, "#444", "start")
        };
        s.push_str(&format!(
            "<text x=\"8\" y=\"{:.1}\">{}</text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" rx=\"3\" fill=\"{color}\"><title>{} {}: {} to {}</title></rect><text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"{fill}\" text-anchor=\"{anchor}\" font-weight=\"600\">{} ({} to {})</text>\n",
            y + 17.0,
            esc(&p.name),
            x(a),
            y + 4.0,
            lane - 8.0,
            esc(&p.name),
            p.status().label(),
            fmt_t(a),
            fmt_t(b),
            y + 17.0,
            p.status().label(),
            fmt_t(a),
            fmt_t(b),
        ));
    }
    // Ninja progress.
    s.push_str(&format!(
        "<text x=\"8\" y=\"{:.1}\" font-weight=\"600\">Ninja progress [n/N]</text>\n",
        chart_top - 10.0
    ));
    let y0 = chart_top + chart_h;
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{chart_top}\" width=\"{:.1}\" height=\"{chart_h}\" fill=\"none\" stroke=\"#d8dde4\"/>\n",
        w - left - right
    ));
    if v.ninja_progress.is_empty() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">no ninja progress in the log (the compile did not start, or it was cached)</text>\n",
            left + 10.0,
            chart_top + chart_h / 2.0
        ));
    } else {
        let pts: Vec<String> = v
            .ninja_progress
            .iter()
            .map(|n| {
                let frac = n.done as f64 / n.total.max(1) as f64;
                format!("{:.1},{:.1}", x(n.t), y0 - frac * chart_h)
            })
            .collect();
        s.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\"/>\n",
            pts.join(" ")
        ));
        let last = v.ninja_progress.last().expect("non-empty");
        s.push_str(&format!(
            "<text x=\"8\" y=\"{:.1}\" fill=\"#2563eb\">last: [{}/{}] {:.0}%</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">100%</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">0%</text>\n",
            chart_top + 20.0,
            last.done,
            last.total,
            last.done as f64 * 100.0 / last.total.max(1) as f64,
            left - 4.0,
            chart_top + 10.0,
            left - 4.0,
            y0
        ));
    }
    if let Some(st) = &v.stop
        && let Some(t) = st.t
    {
        let xx = x(t);
        let label = format!(
            "stopped at {}{}: {}",
            fmt_t(t),
            st.line
                .map(|l| format!(", log line {l}"))
                .unwrap_or_default(),
            st.reason
        );
        let clipped: String = if label.chars().count() > 110 {
            let cut: String = label.chars().take(108).collect();
            format!("{}…", cut.rsplit_once(' ').map_or(cut.as_str(), |(a, _)| a))
        } else {
            label
        };
        let anchor = if xx > w / 2.0 { "end" } else { "start" };
        let tx = if xx > w / 2.0 { xx - 6.0 } else { xx + 6.0 };
        s.push_str(&format!(
                "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{y0:.1}\" stroke=\"#c0392b\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/><text x=\"{tx:.1}\" y=\"{:.1}\" fill=\"#b42318\" font-weight=\"600\" text-anchor=\"{anchor}\">{}</text>\n",
                chart_top + chart_h - 10.0,
                esc(&clipped)
            ));
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub fn render(v: &RunView) -> String {
    let counts = v.counts();
    let verdict = v.verdict();
    let r = v.readiness();
    let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>forge report {}</title>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>{CSS}</style></head><body><main>\n",
        esc(&v.run)
    ));
    h.push_str(&format!(
        "<h1>forge report: {}</h1>\n<p class=\"meta\">",
        esc(&v.run)
    ));
    if let Some(img) = &v.image {
        h.push_str(&format!("image <code>{}</code>", esc(&img.tag)));
        if let Some(id) = &img.id {
            h.push_str(&format!(" <code>{}</code>", esc(id)));
        }
        h.push_str(" · ");
    }
    if let Some(rc) = &v.recipe {
        h.push_str(&format!(
            "recipe {} ({}), ROCm {}, {} · ",
            esc(&rc.name),
            esc(&rc.origin),
            esc(&rc.rocm),
            esc(&rc.archs.join(";"))
        ));
    }
    if let Some(t) = &v.started_at {
        h.push_str(&format!(
            "started {} · took {} · ",
            esc(t),
            fmt_t(v.seconds)
        ));
    }
    if let Some(e) = &v.end {
        h.push_str(&format!("build {} · ", esc(e.name())));
    }
    h.push_str(&format!("forge {}</p>\n", esc(&v.forge_version)));

    let vclass = match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Incomplete => "incomplete",
    };
    let rel = release_line(v);
    let rclass = if rel.starts_with("a valid") {
        "pass"
    } else {
        "fail"
    };
    h.push_str(&format!(
        "<div class=\"banner\"><div class=\"card\"><b>Verdict</b><span class=\"{vclass}\">{}</span><br>{} passed, {} failed, {} skipped (a skip is never a pass)</div>\
         <div class=\"card\"><b>Release</b><span class=\"{rclass}\">{}</span></div>\
         <div class=\"card\"><b>Production readiness</b><span>{}</span><br>{}</div></div>\n",
        verdict.name().to_uppercase(),
        counts.pass,
        counts.fail,
        counts.skip,
        esc(&rel),
        esc(r.level.name()),
        esc(&r.line),
    ));

    h.push_str("<h2>Deliverables checklist</h2>\n<table><tr><th>Status</th><th>Item</th><th>Evidence</th></tr>\n");
    if v.checklist().is_empty() {
        h.push_str("<tr><td colspan=\"3\">no checklist was judged for this run</td></tr>\n");
    }
    for c in v.checklist() {
        h.push_str(&format!(
            "<tr><td><span class=\"pill {}\">{}</span></td><td>{} <code>{}</code></td><td class=\"ev\">{}{}</td></tr>\n",
            class(c.status),
            c.status.label(),
            esc(&c.title),
            esc(&c.id),
            esc(&c.evidence),
            fix(c)
        ));
    }
    h.push_str("</table>\n");

    let next = next_steps(v);
    if !next.is_empty() {
        h.push_str("<h2>What to do next</h2>\n<ol class=\"next\">\n");
        for n in &next {
            h.push_str(&format!("<li>{}</li>\n", esc(n)));
        }
        h.push_str("</ol>\n");
    }

    if let Some(s) = &v.stop {
        h.push_str(&format!(
            "<h2>Where the build stopped</h2>\n<div class=\"stop\"><b>{}</b>",
            esc(s.kind.describe())
        ));
        if let Some(l) = s.line {
            h.push_str(&format!(" at log line {l}"));
        }
        if let Some(t) = s.t {
            h.push_str(&format!(", {} into the build", fmt_t(t)));
        }
        if let Some(t) = &s.text {
            h.push_str(&format!("<pre>{}</pre>", esc(t)));
        }
        h.push_str(&format!("<div>{}</div>", esc(&s.reason)));
        if let Some(f) = &s.fix {
            h.push_str(&format!("<div><b>Fix:</b> {}</div>", esc(f)));
        }
        h.push_str("</div>\n");
    }

    h.push_str("<h2>Timeline</h2>\n");
    h.push_str(&timeline_svg(v));
    h.push('\n');

    h.push_str("<h2>Phases</h2>\n<table><tr><th>Phase</th><th>Status</th><th>Passed</th><th>Failed</th><th>Skipped</th></tr>\n");
    for p in &v.phases {
        let n = |s| p.checks.iter().filter(|c| c.status == s).count();
        h.push_str(&format!(
            "<tr><td>{}</td><td><span class=\"pill {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&p.name),
            phase_class(p.status()),
            p.status().label(),
            n(Status::Pass),
            n(Status::Fail),
            n(Status::Skip)
        ));
    }
    h.push_str("</table>\n");

    for p in &v.phases {
        let st = p.status();
        let open = if matches!(
            st,
            PhaseStatus::Fail | PhaseStatus::Incomplete | PhaseStatus::Skip
        ) {
            " open"
        } else {
            ""
        };
        h.push_str(&format!(
            "<details{open}><summary>{} <span class=\"pill {}\">{}</span></summary>\n",
            esc(&p.name),
            phase_class(st),
            st.label()
        ));
        if let Some(n) = &p.note {
            h.push_str(&format!(
                "<p class=\"meta\" style=\"padding:0 12px\">{}</p>",
                esc(n)
            ));
        }
        if p.checks.is_empty() {
            h.push_str(
                "<p class=\"meta\" style=\"padding:0 12px\">not run in this run</p></details>\n",
            );
            continue;
        }
        h.push_str("<table><tr><th>Test</th><th>Check</th><th>Pass condition</th><th>Status</th><th>Evidence</th></tr>\n");
        for c in &p.checks {
            h.push_str(&format!(
                "<tr><td class=\"id\">{}</td><td>{}</td><td>{}</td><td><span class=\"pill {}\">{}</span></td><td class=\"ev\">{}{}</td></tr>\n",
                esc(&c.id),
                esc(&c.title),
                esc(v.conditions.get(&c.id).map_or("-", String::as_str)),
                class(c.status),
                c.status.label(),
                esc(&c.evidence),
                fix(c)
            ));
        }
        h.push_str("</table></details>\n");
    }

    h.push_str("<h2>Workarounds in force</h2>\n");
    if v.workarounds.is_empty() {
        h.push_str(
            "<p>None: the image sets no preload or override forge knows as a workaround.</p>\n",
        );
    } else {
        h.push_str("<table><tr><th>Setting</th><th>Why</th><th>Where</th></tr>\n");
        for w in &v.workarounds {
            h.push_str(&format!(
                "<tr><td class=\"ev\">{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&w.what),
                esc(&w.why),
                esc(&w.source)
            ));
        }
        h.push_str("</table>\n");
    }

    if !v.outputs.is_empty() {
        h.push_str("<h2>Files</h2>\n<table><tr><th>File</th><th>Kind</th><th>Size</th><th>SHA256</th></tr>\n");
        for o in &v.outputs {
            h.push_str(&format!(
                "<tr><td class=\"ev\">{}</td><td>{}</td><td>{}</td><td class=\"ev\">{}</td></tr>\n",
                esc(&o.path),
                esc(o.kind.name()),
                size(o.bytes),
                esc(o.sha256.as_deref().unwrap_or("-"))
            ));
        }
        h.push_str("</table>\n");
        if let Some(j) = join_command(v) {
            h.push_str(&format!(
                "<p>The archive is split; join and check it with: <code>{}</code></p>\n",
                esc(&j)
            ));
        }
        h.push_str("<p class=\"meta\"><code>forge verify &lt;this directory&gt;</code> rechecks every file against <code>manifest.json</code> and <code>SHA256SUMS</code>; <code>sha256sum -c SHA256SUMS</code> does the same without forge.</p>\n");
    }
    h.push_str("</main></body></html>\n");
    h
}

fn fix(c: &Check) -> String {
    match (&c.hint, c.status) {
        (Some(hint), Status::Fail) => format!("<span class=\"fix\">fix: {}</span>", esc(hint)),
        _ => String::new(),
    }
}
