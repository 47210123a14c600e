//! The result model every check produces, and its renderings.
//!
//! Checks never print: they return [`Check`]s, gathered into an [`Outcome`]. The outcome is
//! rendered for humans on stderr ([`Outcome::render_text`]) and for machines on stdout
//! ([`Outcome::to_json`]). A skipped check is never a pass, and it always says why it was skipped.

use serde::{Deserialize, Serialize};

pub mod catalog;

/// A check from the catalog, by id, with its catalog title.
pub fn check(id: &str, status: Status, evidence: impl Into<String>) -> Check {
    Check::new(id, catalog::title(id), status, evidence)
}

/// Pass or fail by condition, title from the catalog.
pub fn check_when(ok: bool, id: &str, evidence: impl Into<String>) -> Check {
    check(id, if ok { Status::Pass } else { Status::Fail }, evidence)
}

/// The JSON Schema of every command's `--json` output (the envelope: `verdict`, `checks`, and
/// `error`/`hint` when forge could not run), as shipped in `src/report/envelope.schema.json`:
/// generated from [`Envelope`] ([`envelope_schema`]; a unit test keeps them equal).
pub const ENVELOPE_SCHEMA: &str = include_str!("envelope.schema.json");

/// Where the envelope's schema is kept, relative to the repository.
pub const ENVELOPE_SCHEMA_PATH: &str = "src/report/envelope.schema.json";

/// The verdict of a command's `--json` output: the checks' verdict, or why forge stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JsonVerdict {
    /// Every check passed.
    Pass,
    /// A check failed (exit 1).
    Fail,
    /// Nothing failed but checks were skipped, or none ran (exit 0, not a pass).
    Incomplete,
    /// forge could not run (exit 2), with `error` and usually `hint`.
    Error,
    /// SIGINT or SIGTERM stopped forge (exit 130 or 143), with `error`.
    Interrupted,
}

impl From<Verdict> for JsonVerdict {
    fn from(v: Verdict) -> JsonVerdict {
        match v {
            Verdict::Pass => JsonVerdict::Pass,
            Verdict::Fail => JsonVerdict::Fail,
            Verdict::Incomplete => JsonVerdict::Incomplete,
        }
    }
}

/// One problem of a bad recipe, in the `--json` error.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProblemJson {
    /// Its line in the recipe.
    #[schemars(range(min = 1))]
    pub line: Option<usize>,
    /// What is wrong.
    #[schemars(length(min = 1))]
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

/// What every forge command prints on stdout with `--json`: a verdict, the checks behind it,
/// and the command's own fields beside them; `error`/`hint` when forge could not run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(
    title = "forge --json output",
    description = "What every forge command prints on stdout with --json: a verdict, the checks behind it, and the command's own fields beside them. verdict: pass (every check passed), fail (a check failed: exit 1), incomplete (nothing failed but checks were skipped, or none ran: exit 0, not a pass), error (forge could not run: exit 2, with `error` and usually `hint`), interrupted (a signal stopped forge: exit 130 or 143, with `error`).",
    transform = envelope_rules
)]
pub struct Envelope {
    /// What was checked (`scan build.log`, `export IMAGE`); absent on errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub subject: Option<String>,
    /// The verdict.
    pub verdict: JsonVerdict,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// verdict error: what stopped forge.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub error: Option<String>,
    /// verdict error: what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub hint: Option<String>,
    /// verdict error on a bad recipe: the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// verdict error on a bad recipe: every problem with its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<ProblemJson>>,
    /// The command's own fields.
    #[serde(flatten)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The envelope's rules across fields, which a type does not say: an error has `error` and no
/// checks, anything else a `subject`; a fail has a failed check, a pass only passed ones, an
/// incomplete none failed.
fn envelope_rules(schema: &mut schemars::Schema) {
    let status_is = |s: serde_json::Value| serde_json::json!({ "properties": { "checks": { "items": { "properties": { "status": s } } } } });
    schema.insert(
        "allOf".into(),
        serde_json::json!([
            {
                "if": { "properties": { "verdict": { "enum": ["error", "interrupted"] } } },
                "then": { "required": ["error"], "properties": { "checks": { "maxItems": 0 } } },
                "else": { "required": ["subject"] }
            },
            {
                "if": { "properties": { "verdict": { "const": "fail" } } },
                "then": { "properties": { "checks": { "contains": { "properties": { "status": { "const": "fail" } } } } } }
            },
            {
                "if": { "properties": { "verdict": { "const": "pass" } } },
                "then": status_is(serde_json::json!({ "const": "pass" }))
            },
            {
                "if": { "properties": { "verdict": { "const": "incomplete" } } },
                "then": status_is(serde_json::json!({ "enum": ["pass", "skip"] }))
            }
        ]),
    );
}

/// The envelope's JSON Schema (Draft 2020-12), generated from [`Envelope`]: what
/// `src/report/envelope.schema.json` holds.
pub fn envelope_schema() -> String {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Envelope>();
    schema.insert(
        "$id".into(),
        "https://forge.invalid/envelope.schema.json".into(),
    );
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

/// The status of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The pass condition held.
    Pass,
    /// The pass condition did not hold.
    Fail,
    /// The check could not run here; `evidence` says why.
    Skip,
}

impl Status {
    /// Upper-case label for text output.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// How a phase stands: the run record's phases (`run.json`) and the reports' phases alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseStatus {
    /// Not reached yet.
    Pending,
    /// Started, not ended (a record left like this was killed).
    Running,
    /// Ran, every check passed (or it has none).
    Pass,
    /// Ran, none failed, some skipped.
    Incomplete,
    /// Ran, a check failed.
    Fail,
    /// Did not run, or every check skipped; the reason says why.
    Skip,
    /// A report's phase with no checks: the run did not get there, or forge does not run it.
    NotRun,
    /// Stopped by SIGINT/SIGTERM.
    Interrupted,
    /// forge could not run it; the reason holds the error.
    Error,
}

impl PhaseStatus {
    /// The status of a phase that ran and gave `checks`: the one derivation, for the record and
    /// the reports. A failed check fails it; if every check skipped, it is skipped; if some
    /// did, it is incomplete; else (no checks included) it passed.
    pub fn of(checks: &[Check]) -> PhaseStatus {
        let any = |s| checks.iter().any(|c| c.status == s);
        if any(Status::Fail) {
            PhaseStatus::Fail
        } else if !checks.is_empty() && !any(Status::Pass) {
            PhaseStatus::Skip
        } else if any(Status::Skip) {
            PhaseStatus::Incomplete
        } else {
            PhaseStatus::Pass
        }
    }

    /// Ran and nothing failed: its outputs can be used, and reused on resume.
    pub fn passed(self) -> bool {
        matches!(self, PhaseStatus::Pass | PhaseStatus::Incomplete)
    }

    /// Its name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "pending",
            PhaseStatus::Running => "running",
            PhaseStatus::Pass => "pass",
            PhaseStatus::Incomplete => "incomplete",
            PhaseStatus::Fail => "fail",
            PhaseStatus::Skip => "skip",
            PhaseStatus::NotRun => "not-run",
            PhaseStatus::Interrupted => "interrupted",
            PhaseStatus::Error => "error",
        }
    }

    /// Upper-case label for tables.
    pub fn label(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "PENDING",
            PhaseStatus::Running => "RUNNING",
            PhaseStatus::Pass => "PASS",
            PhaseStatus::Incomplete => "INCOMPLETE",
            PhaseStatus::Fail => "FAIL",
            PhaseStatus::Skip => "SKIP",
            PhaseStatus::NotRun => "NOT RUN",
            PhaseStatus::Interrupted => "INTERRUPTED",
            PhaseStatus::Error => "ERROR",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend(
        "if" = { "properties": { "status": { "const": "skip" } } },
        "then" = { "properties": { "evidence": { "minLength": 1 } } }
    )
)]
pub struct Check {
    /// The spec's number (`1.3`) or forge's own id (`host.docker`).
    #[schemars(length(min = 1))]
    pub id: String,
    /// Short human title.
    pub title: String,
    /// pass / fail / skip.
    pub status: Status,
    /// What was seen: the value, the line, the reason for a skip.
    pub evidence: String,
    /// What to do when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A check with the given status.
    pub fn new(id: &str, title: &str, status: Status, evidence: impl Into<String>) -> Self {
        Check {
            id: id.to_owned(),
            title: title.to_owned(),
            status,
            evidence: evidence.into(),
            hint: None,
        }
    }
    /// A passed check.
    pub fn pass(id: &str, title: &str, evidence: impl Into<String>) -> Self {
        Self::new(id, title, Status::Pass, evidence)
    }
    /// A failed check.
    pub fn fail(id: &str, title: &str, evidence: impl Into<String>) -> Self {
        Self::new(id, title, Status::Fail, evidence)
    }
    /// A skipped check; `reason` says why.
    pub fn skip(id: &str, title: &str, reason: impl Into<String>) -> Self {
        Self::new(id, title, Status::Skip, reason)
    }
    /// Attach a hint (kept only for failed checks by the renderers).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Pass or fail on a condition.
    pub fn when(ok: bool, id: &str, title: &str, evidence: impl Into<String>) -> Self {
        if ok {
            Self::pass(id, title, evidence)
        } else {
            Self::fail(id, title, evidence)
        }
    }
}

/// The verdict over a set of checks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check ran and passed.
    Pass,
    /// At least one check failed.
    Fail,
    /// Nothing failed, but some checks were skipped: not a pass.
    Incomplete,
}

impl Verdict {
    /// Lower-case name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// The verdict of a list of checks.
pub fn verdict(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.status == Status::Fail) {
        Verdict::Fail
    } else if checks.iter().any(|c| c.status == Status::Skip) || checks.is_empty() {
        Verdict::Incomplete
    } else {
        Verdict::Pass
    }
}

/// A command's result: its checks plus command-specific data for `--json`.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was checked (`preflight`, `scan build.log`, ...).
    pub subject: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Extra JSON fields merged into the top-level object.
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Outcome {
    /// A new outcome for `subject`.
    pub fn new(subject: impl Into<String>, checks: Vec<Check>) -> Self {
        Outcome {
            subject: subject.into(),
            checks,
            data: serde_json::Map::new(),
        }
    }

    /// Add a top-level JSON field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.data.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    /// The verdict of the checks.
    pub fn verdict(&self) -> Verdict {
        verdict(&self.checks)
    }

    /// Exit code: 1 when a check failed, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.verdict() == Verdict::Fail)
    }

    /// The `--json` document ([`Envelope`]): `subject`, `verdict`, `checks`, then the
    /// command's own fields.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(Envelope {
            subject: Some(self.subject.clone()),
            verdict: self.verdict().into(),
            checks: self.checks.clone(),
            error: None,
            hint: None,
            recipe: None,
            problems: None,
            data: self.data.clone(),
        })
        .expect("the envelope serializes")
    }

    /// The human table: one line a check, hints under failures, a summary line.
    pub fn render_text(&self) -> String {
        let id_w = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let title_w = self
            .checks
            .iter()
            .map(|c| c.title.chars().count())
            .max()
            .unwrap_or(5)
            .min(40);
        let mut out = format!("{}\n", self.subject);
        for c in &self.checks {
            out.push_str(&format!(
                "  {}  {:id_w$}  {:title_w$}  {}\n",
                c.status.label(),
                c.id,
                c.title,
                c.evidence
            ));
            if let (Status::Fail, Some(h)) = (c.status, &c.hint) {
                out.push_str(&format!("        {:id_w$}  hint: {h}\n", ""));
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{} passed, {} failed, {} skipped: {}\n",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
            match self.verdict() {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Incomplete => "incomplete (skipped checks are not passes)",
            }
        ));
        out
    }
}

// The envelope of an error lives with the envelope (error.rs stays below report: no circle).
impl crate::error::Error {
    /// Machine-readable form for `--json` error output ([`crate::report::Envelope`]).
    pub fn to_json(&self) -> serde_json::Value {
        use crate::error::Error;
        let (recipe, problems) = match self {
            Error::Recipe { origin, problems } => (
                Some(origin.clone()),
                Some(
                    problems
                        .iter()
                        .map(|p| ProblemJson {
                            line: p.line,
                            message: p.message.clone(),
                            hint: p.hint.clone(),
                        })
                        .collect(),
                ),
            ),
            _ => (None, None),
        };
        serde_json::to_value(Envelope {
            subject: None,
            verdict: if matches!(self, Error::Interrupted { .. }) {
                JsonVerdict::Interrupted
            } else {
                JsonVerdict::Error
            },
            checks: Vec::new(),
            error: Some(self.to_string()),
            hint: self.hint().map(str::to_owned),
            recipe,
            problems,
            data: serde_json::Map::new(),
        })
        .expect("the envelope serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_fail_beats_skip_and_skip_is_not_pass() {
        let p = Check::pass("1.1", "a", "ok");
        let s = Check::skip("5.1", "b", "no GPU");
        let f = Check::fail("3.1", "c", "small");
        assert_eq!(verdict(std::slice::from_ref(&p)), Verdict::Pass);
        assert_eq!(verdict(&[p.clone(), s.clone()]), Verdict::Incomplete);
        assert_eq!(verdict(&[p, s, f]), Verdict::Fail);
        assert_eq!(verdict(&[]), Verdict::Incomplete);
    }

    /// The committed schema is the one the types give. `FORGE_BLESS=1 cargo test --lib
    /// report::tests::the_envelope_schema` writes it.
    #[test]
    fn the_envelope_schema_is_the_one_generated_from_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(ENVELOPE_SCHEMA_PATH);
        let now = envelope_schema();
        if std::env::var_os("FORGE_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        assert!(
            std::fs::read_to_string(&path).unwrap_or_default() == now && ENVELOPE_SCHEMA == now,
            "{ENVELOPE_SCHEMA_PATH} is not the schema generated from report::Envelope\n\
             hint: regenerate it with `FORGE_BLESS=1 cargo test --lib \
             report::tests::the_envelope_schema`, commit it, and build again"
        );
        let s: serde_json::Value = serde_json::from_str(&now).unwrap();
        let names = |def: &str| -> Vec<String> {
            s["$defs"][def]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["const"].as_str().unwrap().to_owned())
                .collect()
        };
        let verdicts = names("JsonVerdict");
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Incomplete] {
            assert!(verdicts.iter().any(|x| x == v.name()), "{verdicts:?}");
        }
        assert_eq!(names("Status"), ["pass", "fail", "skip"]);
    }

    #[test]
    fn json_carries_verdict_checks_and_data() {
        let o = Outcome::new("x", vec![Check::fail("2.1", "t", "USE_DISTRIBUTED: OFF")])
            .with("extra", 5);
        let j = o.to_json();
        assert_eq!(j["verdict"], "fail");
        assert_eq!(j["checks"][0]["id"], "2.1");
        assert_eq!(j["checks"][0]["status"], "fail");
        assert_eq!(j["extra"], 5);
        assert_eq!(o.exit_code(), 1);
    }
}
