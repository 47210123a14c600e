//! `report.html`: one self-contained page (inline CSS and SVG; no scripts, fonts or images from
//! anywhere) with the verdict and the deliverables checklist at the top, what to do next, the
//! build's timeline drawn (phases over time, ninja's progress over time, where the build was
//! stopped and why), then every phase's checks with their evidence.

use super::markdown::{join_command, next_steps, release_line, size};
use super::run::{PhaseStatus, PhaseView, RunView};
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

/// The timeline's geometry: the drawing's size, where the lanes and the chart sit, the time span.
struct Frame {
    /// The drawing's width.
    w: f64,
    /// The left margin (the lanes' labels).
    left: f64,
    /// The right margin.
    right: f64,
    /// One phase's lane height.
    lane: f64,
    /// The ninja chart's height.
    chart_h: f64,
    /// Where the first lane starts.
    top: f64,
    /// Where the ninja chart starts.
    chart_top: f64,
    /// The drawing's height.
    h: f64,
    /// The time the drawing ends at, in seconds (at least 1).
    end: f64,
}

impl Frame {
    /// The frame for `lanes` phase lanes over `end` seconds.
    fn new(lanes: usize, end: f64) -> Self {
        let end = end.max(1.0);
        let (w, left, right) = (1120.0_f64, 230.0_f64, 20.0_f64);
        let lane = 26.0;
        let chart_h = 130.0;
        let top = 24.0;
        let lanes_h = lane * lanes as f64;
        let chart_top = top + lanes_h + 34.0;
        let h = chart_top + chart_h + 40.0;
        Frame {
            w,
            left,
            right,
            lane,
            chart_h,
            top,
            chart_top,
            h,
            end,
        }
    }

    /// The x coordinate of time `t`.
    fn x(&self, t: f64) -> f64 {
        self.left + (t / self.end).clamp(0.0, 1.0) * (self.w - self.left - self.right)
    }

    /// The y coordinate of the ninja chart's bottom (0%).
    fn y0(&self) -> f64 {
        self.chart_top + self.chart_h
    }
}

/// The timeline as inline SVG: one lane a timed phase, ninja's progress under it, the stop.
pub fn timeline_svg(v: &RunView) -> String {
    let timed: Vec<&PhaseView> = v
        .phases
        .iter()
        .filter(|p| p.started.is_some() && p.ended.is_some())
        .collect();
    if timed.is_empty() && v.ninja_progress.is_empty() {
        return "<p class=\"meta\">No timings were recorded for this run.</p>".into();
    }
    let f = Frame::new(timed.len(), timeline_end(v, &timed));
    let (w, h) = (f.w, f.h);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"build timeline\">\n"
    );
    s.push_str(&time_axis(&f));
    s.push_str(&phase_lanes(&f, &timed));
    s.push_str(&ninja_chart(&f, v));
    s.push_str(&stop_marker(&f, v));
    s.push_str("</svg>");
    s
}

/// The time the timeline ends at: the run's length, or a later phase end, ninja line or stop.
fn timeline_end(v: &RunView, timed: &[&PhaseView]) -> f64 {
    let mut end = v.seconds;
    for p in timed {
        end = end.max(p.ended.unwrap_or(0.0));
    }
    for n in &v.ninja_progress {
        end = end.max(n.t);
    }
    if let Some(t) = v.stop.as_ref().and_then(|s| s.t) {
        end = end.max(t);
    }
    end
}

/// The time axis: nine grid lines with their time labels.
fn time_axis(f: &Frame) -> String {
    let mut s = String::new();
    for i in 0..=8 {
        let t = f.end * f64::from(i) / 8.0;
        let xx = f.x(t);
        s.push_str(&format!(
            "<line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eceff3\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#666\">{}</text>\n",
            f.top,
            f.chart_top + f.chart_h,
            f.chart_top + f.chart_h + 16.0,
            fmt_t(t)
        ));
    }
    s
}

/// "Phases over time": one labelled bar a timed phase, coloured by its status.
fn phase_lanes(f: &Frame, timed: &[&PhaseView]) -> String {
    let mut s =
        String::from("<text x=\"8\" y=\"16\" font-weight=\"600\">Phases over time</text>\n");
    for (i, p) in timed.iter().enumerate() {
        let y = f.top + f.lane * i as f64;
        let (a, b) = (p.started.unwrap_or(0.0), p.ended.unwrap_or(0.0));
        let color = match p.status() {
            PhaseStatus::Pass => "#1f8a4c",
            PhaseStatus::Fail => "#c0392b",
            PhaseStatus::NotRun => "#8a94a3",
            _ => "#b7791f",
        };
        let bw = (f.x(b) - f.x(a)).max(3.0);
        // The label inside a long bar (white), after a short one.
        let (lx, fill, anchor) = if bw > 160.0 {
            (f.x(b) - 6.0, "#fff", "end")
        } else {
            (f.x(b) + 6.0, "#444", "start")
        };
        s.push_str(&format!(
            "<text x=\"8\" y=\"{:.1}\">{}</text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" rx=\"3\" fill=\"{color}\"><title>{} {}: {} to {}</title></rect><text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"{fill}\" text-anchor=\"{anchor}\" font-weight=\"600\">{} ({} to {})</text>\n",
            y + 17.0,
            esc(&p.name),
            f.x(a),
            y + 4.0,
            f.lane - 8.0,
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
    s
}

/// "Ninja progress [n/N]": the chart's box and ninja's [n/N] over time, or why there is none.
fn ninja_chart(f: &Frame, v: &RunView) -> String {
    let (left, chart_top, chart_h, y0) = (f.left, f.chart_top, f.chart_h, f.y0());
    let mut s = format!(
        "<text x=\"8\" y=\"{:.1}\" font-weight=\"600\">Ninja progress [n/N]</text>\n",
        chart_top - 10.0
    );
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{chart_top}\" width=\"{:.1}\" height=\"{chart_h}\" fill=\"none\" stroke=\"#d8dde4\"/>\n",
        f.w - left - f.right
    ));
    let Some(last) = v.ninja_progress.last() else {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">no ninja progress in the log (the compile did not start, or it was cached)</text>\n",
            left + 10.0,
            chart_top + chart_h / 2.0
        ));
        return s;
    };
    let pts: Vec<String> = v
        .ninja_progress
        .iter()
        .map(|n| {
            let frac = n.done as f64 / n.total.max(1) as f64;
            format!("{:.1},{:.1}", f.x(n.t), y0 - frac * chart_h)
        })
        .collect();
    s.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"2\"/>\n",
        pts.join(" ")
    ));
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
    s
}

/// The stop: a dashed red line at the time the build stopped, with why (clipped); nothing
/// without a timed stop.
fn stop_marker(f: &Frame, v: &RunView) -> String {
    let Some(st) = &v.stop else {
        return String::new();
    };
    let Some(t) = st.t else {
        return String::new();
    };
    let xx = f.x(t);
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
    let anchor = if xx > f.w / 2.0 { "end" } else { "start" };
    let tx = if xx > f.w / 2.0 { xx - 6.0 } else { xx + 6.0 };
    format!(
        "<line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#c0392b\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/><text x=\"{tx:.1}\" y=\"{:.1}\" fill=\"#b42318\" font-weight=\"600\" text-anchor=\"{anchor}\">{}</text>\n",
        f.top,
        f.y0(),
        f.chart_top + f.chart_h - 10.0,
        esc(&clipped)
    )
}

/// The whole page.
pub fn render(v: &RunView) -> String {
    let mut h = head(v);
    h.push_str(&banner(v));
    h.push_str(&checklist_table(v));
    h.push_str(&next_list(v));
    h.push_str(&stop_box(v));
    h.push_str("<h2>Timeline</h2>\n");
    h.push_str(&timeline_svg(v));
    h.push('\n');
    h.push_str(&phases_table(v));
    for p in &v.phases {
        h.push_str(&phase_details(v, p));
    }
    h.push_str(&workarounds_table(v));
    h.push_str(&files_table(v));
    h.push_str("</main></body></html>\n");
    h
}

/// The page's head (title, inline CSS), the h1 and the meta line (image, recipe, times, forge).
fn head(v: &RunView) -> String {
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
    h
}

/// The banner: three cards, the verdict with its counts, the release line, the readiness.
fn banner(v: &RunView) -> String {
    let counts = v.counts();
    let verdict = v.verdict();
    let r = v.readiness();
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
    format!(
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
    )
}

/// "Deliverables checklist": one row an item with its status pill and evidence.
fn checklist_table(v: &RunView) -> String {
    let mut h = String::from(
        "<h2>Deliverables checklist</h2>\n<table><tr><th>Status</th><th>Item</th><th>Evidence</th></tr>\n",
    );
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
    h
}

/// "What to do next" as an ordered list, or nothing when there is nothing to do.
fn next_list(v: &RunView) -> String {
    let next = next_steps(v);
    let mut h = String::new();
    if !next.is_empty() {
        h.push_str("<h2>What to do next</h2>\n<ol class=\"next\">\n");
        for n in &next {
            h.push_str(&format!("<li>{}</li>\n", esc(n)));
        }
        h.push_str("</ol>\n");
    }
    h
}

/// "Where the build stopped": the kind, log line, time, text, reason and fix; nothing without
/// a stop.
fn stop_box(v: &RunView) -> String {
    let Some(s) = &v.stop else {
        return String::new();
    };
    let mut h = format!(
        "<h2>Where the build stopped</h2>\n<div class=\"stop\"><b>{}</b>",
        esc(s.kind.describe())
    );
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
    h
}

/// "Phases": one row a phase with its status pill and its counts.
fn phases_table(v: &RunView) -> String {
    let mut h = String::from(
        "<h2>Phases</h2>\n<table><tr><th>Phase</th><th>Status</th><th>Passed</th><th>Failed</th><th>Skipped</th></tr>\n",
    );
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
    h
}

/// One phase's `<details>` (open unless it passed or did not run): its note and checks' table.
fn phase_details(v: &RunView, p: &PhaseView) -> String {
    let st = p.status();
    let open = if matches!(
        st,
        PhaseStatus::Fail | PhaseStatus::Incomplete | PhaseStatus::Skip
    ) {
        " open"
    } else {
        ""
    };
    let mut h = format!(
        "<details{open}><summary>{} <span class=\"pill {}\">{}</span></summary>\n",
        esc(&p.name),
        phase_class(st),
        st.label()
    );
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
        return h;
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
    h
}

/// "Workarounds in force": a table of them, or the line saying there are none.
fn workarounds_table(v: &RunView) -> String {
    let mut h = String::from("<h2>Workarounds in force</h2>\n");
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
    h
}

/// "Files": the outputs' table, the join command of a split archive and how to verify; nothing
/// without outputs.
fn files_table(v: &RunView) -> String {
    if v.outputs.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<h2>Files</h2>\n<table><tr><th>File</th><th>Kind</th><th>Size</th><th>SHA256</th></tr>\n",
    );
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
    h
}

fn fix(c: &Check) -> String {
    match (&c.hint, c.status) {
        (Some(hint), Status::Fail) => format!("<span class=\"fix\">fix: {}</span>", esc(hint)),
        _ => String::new(),
    }
}
