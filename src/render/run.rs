//! The run as the reports see it: a small model of a run's record ([`RunView`]) that every
//! rendering (Markdown, JSON, JUnit XML, HTML) and the bundle read.
//!
//! It is `Deserialize` with defaults everywhere, so any record that can be mapped onto it (today
//! `forge build`'s report.json, which is this model serialised; later the pipeline's run.json)
//! renders. Times are seconds since the run started; `started_at` anchors them to UTC.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{Check, Status, Verdict, verdict};

/// Format version of [`RunView`] as serialised (report.json's `schema`).
pub const SCHEMA: u32 = 1;

/// A run, as the reports and the bundle read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RunView {
    /// Format version ([`SCHEMA`]).
    #[schemars(extend("const" = 1))]
    pub schema: u32,
    /// Run id (`rocm-7.1.1-gfx1151-20251206-014800`).
    #[schemars(length(min = 1))]
    pub run: String,
    /// When the run started, RFC 3339 UTC.
    #[schemars(extend("format" = "date-time"))]
    pub started_at: Option<String>,
    /// Seconds the run took.
    #[schemars(range(min = 0))]
    pub seconds: f64,
    /// How the run ended.
    pub end: Option<RunEnd>,
    /// The recipe.
    pub recipe: Option<RecipeView>,
    /// The image built.
    pub image: Option<ImageView>,
    /// forge's version.
    pub forge_version: String,
    /// Versions of the tools involved (engine, builder, Python, ROCm, torch, vLLM, ...).
    pub tools: BTreeMap<String, String>,
    /// The phases in order, each with its checks.
    pub phases: Vec<PhaseView>,
    /// Files the run produced, paths relative to the run directory.
    pub outputs: Vec<OutputView>,
    /// Ninja's `[n/N]` over time (sampled).
    pub ninja_progress: Vec<NinjaPoint>,
    /// Each Dockerfile stage's wall time as BuildKit timed it: the wheel stage's build, then
    /// the image's (empty for the classic builder, whose stream has no step times).
    #[serde(default)]
    pub stages: Vec<crate::ops::drive::StageTime>,
    /// Why the build stopped, when it did not finish.
    pub stop: Option<StopView>,
    /// Workarounds in force in the image (environment overrides, preloads).
    pub workarounds: Vec<Workaround>,
    /// The build log, relative to the run directory.
    pub build_log: Option<String>,
    /// Each check's pass condition with the recipe's threshold (the spec's "Pass Condition").
    pub conditions: BTreeMap<String, String>,
}

/// How a run ended, as the reports say it: the build's end ([`crate::ops::drive::End`]) for a run
/// that finished, else where the run was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunEnd {
    /// The image was built.
    Succeeded,
    /// forge stopped the build on a fatal finding.
    Stopped,
    /// A build step failed.
    Failed,
    /// SIGINT or SIGTERM stopped the run.
    Interrupted,
    /// forge could not go on (engine gone, disk full).
    Error,
    /// The run is still going (or was killed).
    Running,
    /// Every phase ended, and no build ran.
    Finished,
}

impl RunEnd {
    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::Stopped => "stopped",
            RunEnd::Failed => "failed",
            RunEnd::Interrupted => "interrupted",
            RunEnd::Error => "error",
            RunEnd::Running => "running",
            RunEnd::Finished => "finished",
        }
    }
}

impl From<crate::ops::drive::End> for RunEnd {
    fn from(e: crate::ops::drive::End) -> RunEnd {
        match e {
            crate::ops::drive::End::Succeeded => RunEnd::Succeeded,
            crate::ops::drive::End::Stopped => RunEnd::Stopped,
            crate::ops::drive::End::Failed => RunEnd::Failed,
            crate::ops::drive::End::Interrupted => RunEnd::Interrupted,
        }
    }
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The recipe a run built.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RecipeView {
    /// Recipe name.
    pub name: String,
    /// Where it came from (path or `shipped:...`).
    pub origin: String,
    /// ROCm version.
    pub rocm: String,
    /// Target archs.
    #[schemars(inner(pattern("^gfx[0-9a-f]+")))]
    pub archs: Vec<String>,
    /// The deliverable thresholds.
    pub thresholds: Thresholds,
}

/// The recipe's size thresholds (bytes).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Thresholds {
    /// 3.1: the torch wheel.
    pub wheel_min_bytes: u64,
    /// 4.1: the image, uncompressed.
    pub image_min_bytes: u64,
    /// The compressed archive.
    pub archive_min_bytes: u64,
}

/// The image a run built.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ImageView {
    /// Tag.
    pub tag: String,
    /// Engine image id (`sha256:...`), when known.
    #[schemars(pattern("^sha256:[0-9a-f]{64}$"))]
    pub id: Option<String>,
    /// Size as the engine reports it, when known.
    pub bytes: Option<u64>,
}

/// One phase of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct PhaseView {
    /// `plan`, `1`..`7`, `export`, `deliverables`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Explicit status; derived from the checks when absent.
    pub status: Option<PhaseStatus>,
    /// Seconds since the run started.
    pub started: Option<f64>,
    /// Seconds since the run started.
    pub ended: Option<f64>,
    /// Its checks.
    pub checks: Vec<Check>,
    /// A note (why it did not run).
    pub note: Option<String>,
}

pub use crate::report::PhaseStatus;

impl PhaseView {
    /// Its status: the explicit one, else not run without checks, else from the checks
    /// ([`PhaseStatus::of`]).
    pub fn status(&self) -> PhaseStatus {
        match self.status {
            Some(s) => s,
            None if self.checks.is_empty() => PhaseStatus::NotRun,
            None => PhaseStatus::of(&self.checks),
        }
    }
}

/// What kind of file a run produced.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// The image archive, whole.
    Archive,
    /// One part of a split archive.
    ArchivePart,
    /// The archive's checksum file.
    Sha256,
    /// A wheel.
    Wheel,
    /// A log (the build log, the wheel stage's own).
    Log,
    /// Another file the wheel stage yields (the sources' commits).
    #[default]
    File,
    /// One of the reports.
    Report,
    /// The run record.
    Record,
    /// The image's software bill of materials (CycloneDX).
    Sbom,
}

impl OutputKind {
    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Archive => "archive",
            OutputKind::ArchivePart => "archive-part",
            OutputKind::Sha256 => "sha256",
            OutputKind::Wheel => "wheel",
            OutputKind::Log => "log",
            OutputKind::File => "file",
            OutputKind::Report => "report",
            OutputKind::Record => "record",
            OutputKind::Sbom => "sbom",
        }
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A file the run produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct OutputView {
    /// What it is.
    pub kind: OutputKind,
    /// Path relative to the run directory.
    #[schemars(length(min = 1))]
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// SHA256, hex.
    #[schemars(pattern("^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// One sample of ninja's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct NinjaPoint {
    /// Seconds since the run started.
    #[schemars(range(min = 0))]
    pub t: f64,
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
}

/// Why a run stopped.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StopKind {
    /// forge stopped the build on a fatal finding.
    #[default]
    Fatal,
    /// A build step failed.
    Failed,
    /// SIGINT or SIGTERM (Ctrl-C).
    Interrupted,
}

impl StopKind {
    /// In words, for the reports' headings.
    pub fn describe(self) -> &'static str {
        match self {
            StopKind::Fatal => "stopped by forge on a fatal finding",
            StopKind::Failed => "a build step failed",
            StopKind::Interrupted => "interrupted",
        }
    }
}

/// Where and why the build stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct StopView {
    /// Why it stopped.
    pub kind: StopKind,
    /// Seconds since the run started, when known.
    pub t: Option<f64>,
    /// Log line number.
    #[schemars(range(min = 1))]
    pub line: Option<u64>,
    /// The line.
    pub text: Option<String>,
    /// What it means.
    pub reason: String,
    /// What to do.
    pub fix: Option<String>,
}

/// A workaround in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Workaround {
    /// What is set (`ENV LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so`).
    pub what: String,
    /// Why, and what would make it unnecessary.
    pub why: String,
    /// Where it is set (`Dockerfile line 140`).
    pub source: String,
}

/// The canonical phases: id and name.
pub const PHASES: &[(&str, &str)] = &[
    ("plan", "Plan"),
    ("1", "Phase 1: host environment"),
    ("2", "Phase 2: build configuration"),
    ("3", "Phase 3: wheel"),
    ("4", "Phase 4: image"),
    ("5", "Phase 5: runtime imports (GPU)"),
    ("6", "Phase 6: server (GPU)"),
    ("7", "Phase 7: memory safety (GPU)"),
    ("export", "Export"),
    ("deliverables", "Deliverables checklist"),
];

/// The phase a check id belongs to.
pub fn phase_of(id: &str) -> &'static str {
    if let Some(e) = crate::report::catalog::CATALOG.iter().find(|e| e.id == id) {
        return match e.phase {
            0 => "plan",
            1 => "1",
            2 => "2",
            3 => "3",
            4 => "4",
            5 => "5",
            6 => "6",
            7 => "7",
            9 => "deliverables",
            _ => "export",
        };
    }
    match id.split('.').next().unwrap_or("") {
        "plan" => "plan",
        "host" => "1",
        "build" => "2",
        "wheel" => "3",
        "image" => "4",
        "runtime" => "5",
        "serve" => "6",
        "deliverable" => "deliverables",
        _ => "export",
    }
}

/// Group checks into the canonical phases (phases without checks are kept, as not run).
pub fn phases_from_checks(checks: &[Check]) -> Vec<PhaseView> {
    let mut phases: Vec<PhaseView> = PHASES
        .iter()
        .map(|(id, name)| PhaseView {
            id: (*id).to_owned(),
            name: (*name).to_owned(),
            ..PhaseView::default()
        })
        .collect();
    for c in checks {
        let p = phase_of(&c.id);
        if let Some(ph) = phases.iter_mut().find(|ph| ph.id == p) {
            ph.checks.push(c.clone());
        }
    }
    phases
}

/// Counts of checks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Skipped.
    pub skip: usize,
}

/// What the image is ready for, in the spec's terms.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Readiness {
    /// What it is ready for, at most.
    pub level: Level,
    /// Ready for.
    pub ready_for: Vec<&'static str>,
    /// Not ready for, each with the checks that stand in the way.
    pub not_ready_for: Vec<String>,
    /// One line.
    pub line: String,
}

/// The readiness levels, each including the one below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Training, serving and memory safety passed.
    Production,
    /// Training and serving passed.
    Serving,
    /// Training passed.
    Training,
    /// Not ready for anything yet.
    None,
}

impl Level {
    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Level::Production => "production",
            Level::Serving => "serving",
            Level::Training => "training",
            Level::None => "none",
        }
    }
}

const TRAINING: &[&str] = &["5.1", "5.2", "5.3", "5.4"];
const SERVING: &[&str] = &[
    "5.5", "5.6", "5.7", "6.1", "6.2", "6.3", "6.4", "6.5", "6.6",
];
const PRODUCTION: &[&str] = &["7.1", "7.2"];

impl RunView {
    /// Every check of every phase, in order.
    pub fn checks(&self) -> Vec<Check> {
        self.phases
            .iter()
            .flat_map(|p| p.checks.iter().cloned())
            .collect()
    }

    /// The run's verdict over all its checks.
    pub fn verdict(&self) -> Verdict {
        verdict(&self.checks())
    }

    /// Counts by status.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for k in self.phases.iter().flat_map(|p| &p.checks) {
            match k.status {
                Status::Pass => c.pass += 1,
                Status::Fail => c.fail += 1,
                Status::Skip => c.skip += 1,
            }
        }
        c
    }

    /// The check `id`, if the run has it.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.phases
            .iter()
            .flat_map(|p| &p.checks)
            .find(|c| c.id == id)
    }

    /// The deliverables checklist (the `deliverables` phase).
    pub fn checklist(&self) -> &[Check] {
        self.phases
            .iter()
            .find(|p| p.id == "deliverables")
            .map_or(&[], |p| &p.checks)
    }

    /// Whether the bundle is a valid release: every checklist item present and passed.
    pub fn release_verdict(&self) -> Verdict {
        let list = self.checklist();
        if list.is_empty() {
            Verdict::Incomplete
        } else {
            verdict(list)
        }
    }

    /// The production-readiness line: training when 5.1-5.4 pass; serving when 5.5-5.7 and
    /// phase 6 pass too; production when phase 7 passes as well.
    pub fn readiness(&self) -> Readiness {
        let state = |ids: &[&str]| -> (bool, Vec<String>) {
            let mut missing = Vec::new();
            for id in ids {
                match self.check(id).map(|c| c.status) {
                    Some(Status::Pass) => {}
                    Some(Status::Fail) => missing.push(format!("{id} failed")),
                    Some(Status::Skip) => missing.push(format!("{id} skipped")),
                    None => missing.push(format!("{id} not run")),
                }
            }
            (missing.is_empty(), missing)
        };
        let summarize = |m: &[String]| -> String {
            let failed: Vec<&str> = m
                .iter()
                .filter(|s| s.ends_with("failed"))
                .map(|s| s.split(' ').next().unwrap_or(""))
                .collect();
            if !failed.is_empty() {
                format!("{} failed", failed.join(", "))
            } else if m.iter().all(|s| s.ends_with("not run")) {
                format!("{} not run", range(m))
            } else {
                format!("{} not passed (skipped or not run)", range(m))
            }
        };
        let (t, tm) = state(TRAINING);
        let (s, sm) = state(SERVING);
        let (p, pm) = state(PRODUCTION);
        let mut ready_for = Vec::new();
        let mut not_ready_for = Vec::new();
        if t {
            ready_for.push("PyTorch training and fine-tuning (5.1-5.4 passed)");
        } else {
            not_ready_for.push(format!("training: {}", summarize(&tm)));
        }
        if t && s {
            ready_for.push("vLLM serving (5.5-5.7 and phase 6 passed)");
        } else {
            not_ready_for.push(format!(
                "serving: {}",
                summarize(&[tm.clone(), sm].concat())
            ));
        }
        if t && s && p {
            ready_for.push("production (phase 7 passed)");
        } else {
            not_ready_for.push(format!("production: {}", summarize(&[tm, pm].concat())));
        }
        let level = match (t, s, p) {
            (true, true, true) => Level::Production,
            (true, true, false) => Level::Serving,
            (true, false, _) => Level::Training,
            _ => Level::None,
        };
        let line = match level {
            Level::Production => {
                "ready for production: training, serving and memory safety passed".into()
            }
            Level::Serving => {
                "ready for training and serving; not for production (phase 7 has not passed)".into()
            }
            Level::Training => {
                "ready for training only; not for serving (5.5-5.7 and phase 6 have not passed)"
                    .into()
            }
            Level::None => format!(
                "not ready for anything yet: {}",
                not_ready_for.first().cloned().unwrap_or_default()
            ),
        };
        Readiness {
            level,
            ready_for,
            not_ready_for,
            line,
        }
    }

    /// The document of report.json: this model plus what is derived from it.
    pub fn to_report(&self) -> ReportJson<'_> {
        ReportJson {
            view: self,
            verdict: self.verdict(),
            checks: self.checks(),
            summary: self.counts(),
            release: self.release_verdict(),
            readiness: self.readiness(),
        }
    }

    /// report.json as a JSON value ([`RunView::to_report`]).
    pub fn to_report_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_report()).expect("report serializes")
    }
}

/// report.json: a run as forge's reports read it ([`RunView`]), plus what is derived from it
/// (`verdict`, `checks`, `summary`, `release`, `readiness`), so a machine needs no
/// recomputation. `schemas/report.schema.json` is generated from this type ([`report_schema`]).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(
    title = "forge run report (report.json)",
    description = "A run as forge's reports read it (the RunView model), plus what is derived from it: verdict, checks, summary, release, readiness. `forge report RUN_DIR` re-renders the Markdown, JUnit XML and HTML reports from this file. Times are seconds since the run started.",
    deny_unknown_fields
)]
pub struct ReportJson<'a> {
    /// The run.
    #[serde(flatten)]
    pub view: &'a RunView,
    /// The verdict over every check.
    pub verdict: Verdict,
    /// Every check of every phase, in order.
    pub checks: Vec<Check>,
    /// Checks by status.
    pub summary: Counts,
    /// The deliverables checklist's verdict: pass only when every item passed.
    pub release: Verdict,
    /// What the image is ready for.
    pub readiness: Readiness,
}

/// Where report.json's schema is kept, relative to the repository.
pub const REPORT_SCHEMA_PATH: &str = "schemas/report.schema.json";

/// report.json's JSON Schema (Draft 2020-12), generated from [`ReportJson`]: what
/// `schemas/report.schema.json` holds (a unit test keeps them equal).
pub fn report_schema() -> String {
    // The serialize contract: the schema of what forge writes (every field present, `null`
    // where absent), not of what `forge report` accepts when reading one back (defaults).
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<ReportJson<'static>>();
    schema.insert(
        "$id".into(),
        "https://github.com/forge/forge/schemas/report.schema.json".into(),
    );
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

/// `5.1, 5.3` -> a compact list.
fn range(m: &[String]) -> String {
    let ids: Vec<&str> = m
        .iter()
        .map(|s| s.split(' ').next().unwrap_or(""))
        .collect();
    match ids.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [first, .., last] => format!("{first}-{last}"),
    }
}

/// The elapsed seconds of a BuildKit plain-progress line (`#12 103.4 ...`), forge's log format.
pub fn line_time(line: &str) -> Option<f64> {
    let rest = line.strip_prefix('#')?;
    let (step, rest) = rest.split_once(' ')?;
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = rest.split(' ').next()?;
    if !t.contains('.') {
        return None;
    }
    t.parse().ok()
}

/// Ninja's `[n/N]` over time from a build log (forge's BuildKit format carries the time since
/// the build started), at most `max` points (evenly thinned, the last one kept).
pub fn ninja_from_log(path: &Path, max: usize) -> Vec<NinjaPoint> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut r = std::io::BufReader::new(f);
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let Some(t) = line_time(&line) else { continue };
        let content = crate::monitor::rules::strip_prefix_str(line.trim_end());
        let Some(inner) = content
            .strip_prefix('[')
            .and_then(|s| s.split_once(']'))
            .map(|(a, _)| a)
        else {
            continue;
        };
        if let Some((d, n)) = inner.split_once('/')
            && let (Ok(done), Ok(total)) = (d.parse::<u64>(), n.parse::<u64>())
        {
            out.push(NinjaPoint { t, done, total });
        }
    }
    thin(out, max)
}

fn thin(points: Vec<NinjaPoint>, max: usize) -> Vec<NinjaPoint> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let step = points.len() as f64 / (max - 1) as f64;
    let mut out: Vec<NinjaPoint> = (0..max - 1)
        .map(|i| points[(i as f64 * step) as usize])
        .collect();
    out.push(*points.last().expect("non-empty"));
    out
}

/// Workarounds a Dockerfile puts in force: `ENV` settings forge knows to be workarounds.
pub fn workarounds_in_dockerfile(text: &str, origin: &str) -> Vec<Workaround> {
    const KNOWN: &[(&str, &str)] = &[
        (
            "LD_PRELOAD",
            "preloads a library the binaries should have linked themselves; for librocm_smi64.so \
             it covers libtorch_hip.so's missing DT_NEEDED (`undefined symbol: rsmi_init`, \
             ROCm/pytorch#2901); a torch built with the upstream fix needs none",
        ),
        (
            "HSA_OVERRIDE_GFX_VERSION",
            "makes the ROCm runtime report another GPU arch, so code built for that arch runs; \
             a build that has code objects for the real arch (gfx1151) needs none",
        ),
        (
            "LD_LIBRARY_PATH",
            "adds library directories at run time; libraries found only this way hide missing \
             RUNPATHs",
        ),
        (
            "VLLM_USE_TRITON_FLASH_ATTN",
            "switches vLLM's attention backend, usually around a kernel that does not work on the \
             arch",
        ),
        (
            "HIP_VISIBLE_DEVICES",
            "hides GPUs from HIP inside the image",
        ),
    ];
    let mut out = Vec::new();
    let mut in_env = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let body = if let Some(rest) = line.strip_prefix("ENV ") {
            in_env = line.ends_with('\\');
            rest
        } else if in_env {
            in_env = line.ends_with('\\');
            line
        } else {
            continue;
        };
        for (var, why) in KNOWN {
            if let Some(pos) = body.find(&format!("{var}=")) {
                let value: String = body[pos..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('\\')
                    .to_owned();
                out.push(Workaround {
                    what: format!("ENV {value}"),
                    why: (*why).to_owned(),
                    source: format!("{origin} line {}", i + 1),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schema is the one the types give. `FORGE_BLESS=1 cargo test --lib
    /// render::run::tests::the_report_schema` writes it.
    #[test]
    fn the_report_schema_is_the_one_generated_from_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REPORT_SCHEMA_PATH);
        let now = report_schema();
        if std::env::var_os("FORGE_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "{REPORT_SCHEMA_PATH} is not the schema generated from render::run::ReportJson\n\
             hint: regenerate it with `FORGE_BLESS=1 cargo test --lib \
             render::run::tests::the_report_schema` and commit it"
        );
    }

    fn view(checks: &[(&str, Status)]) -> RunView {
        let checks: Vec<Check> = checks
            .iter()
            .map(|(id, s)| Check::new(id, "t", *s, "e"))
            .collect();
        RunView {
            phases: phases_from_checks(&checks),
            ..RunView::default()
        }
    }

    #[test]
    fn readiness_follows_the_spec_terms() {
        use Status::*;
        let mut all: Vec<(&str, Status)> = TRAINING
            .iter()
            .chain(SERVING)
            .chain(PRODUCTION)
            .map(|id| (*id, Pass))
            .collect();
        assert_eq!(view(&all).readiness().level, Level::Production);
        all.last_mut().unwrap().1 = Fail;
        let r = view(&all).readiness();
        assert_eq!(r.level, Level::Serving);
        assert!(r.not_ready_for[0].contains("7.2 failed"), "{r:?}");
        // 5.7 fails: training only, as in the spec's Dec 6 image.
        let mut t = all.clone();
        t.iter_mut().find(|(id, _)| *id == "5.7").unwrap().1 = Fail;
        let r = view(&t).readiness();
        assert_eq!(r.level, Level::Training);
        assert!(r.line.contains("training only"));
        // No GPU: everything skipped is ready for nothing, and says so.
        let skipped: Vec<(&str, Status)> = TRAINING.iter().map(|id| (*id, Skip)).collect();
        let r = view(&skipped).readiness();
        assert_eq!(r.level, Level::None);
        assert!(r.line.contains("5.1-5.4"), "{}", r.line);
    }

    #[test]
    fn phases_group_checks_and_derive_status() {
        use Status::*;
        let v = view(&[
            ("plan.args", Pass),
            ("2.1", Fail),
            ("build.result", Fail),
            ("3.1", Skip),
            ("export.archive", Pass),
            ("deliverable.archive", Pass),
        ]);
        let st = |id: &str| v.phases.iter().find(|p| p.id == id).unwrap().status();
        assert_eq!(st("plan"), PhaseStatus::Pass);
        assert_eq!(st("2"), PhaseStatus::Fail);
        assert_eq!(st("3"), PhaseStatus::Skip);
        assert_eq!(st("5"), PhaseStatus::NotRun);
        assert_eq!(st("export"), PhaseStatus::Pass);
        assert_eq!(v.release_verdict(), Verdict::Pass);
        assert_eq!(v.verdict(), Verdict::Fail);
    }

    #[test]
    fn ninja_progress_is_read_with_buildkit_times_and_thinned() {
        let log = tempfile::Builder::new()
            .prefix("forge-ninja-")
            .suffix(".log")
            .tempfile()
            .unwrap();
        let p = log.path();
        let mut s = String::from("#7 [torch-build 3/3] RUN make\n#7 0.5 -- USE_ROCM : ON\n");
        for i in 1..=1000 {
            s.push_str(&format!(
                "#7 {}.0 [{i}/1000] Building CXX object x{i}.o\n",
                i + 10
            ));
        }
        s.push_str("[5/9] no time prefix: ignored\n");
        std::fs::write(p, s).unwrap();
        let pts = ninja_from_log(p, 100);
        assert_eq!(pts.len(), 100);
        assert_eq!(pts[0].done, 1);
        assert_eq!(pts[0].t, 11.0);
        assert_eq!(
            *pts.last().unwrap(),
            NinjaPoint {
                t: 1010.0,
                done: 1000,
                total: 1000
            }
        );
        assert_eq!(line_time("#12 103.4 -- x"), Some(103.4));
        assert_eq!(line_time("#12 [stage 1/2] RUN"), None);
    }

    #[test]
    fn workarounds_are_found_in_env_lines() {
        let df = "FROM x\nENV A=1 \\\n    LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so \\\n    B=2\nRUN echo LD_PRELOAD=no\n";
        let w = workarounds_in_dockerfile(df, "Dockerfile");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].what, "ENV LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so");
        assert_eq!(w[0].source, "Dockerfile line 3");
        assert!(workarounds_in_dockerfile("FROM x\nENV PATH=/x\n", "D").is_empty());
    }

    #[test]
    fn a_partial_record_deserializes() {
        let v: RunView = serde_json::from_str(
            r#"{"run":"r1","phases":[{"id":"2","checks":[{"id":"2.1","title":"t","status":"fail","evidence":"USE_DISTRIBUTED: 0"}]}],"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(v.verdict(), Verdict::Fail);
        assert_eq!(v.phases[0].status(), PhaseStatus::Fail);
    }
}
