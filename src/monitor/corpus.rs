//! Issue 26: the corpus of real build-log excerpts (`tests/fixtures/corpus/`), run through
//! `scan` (the monitor, fed in pieces as a live build would be) and `diagnose`, with its
//! precision and recall kept at 100%.

use serde::Deserialize;

use super::diagnose::{self, KNOWN};
use super::rules::{Expect, Monitor};
use super::scan::LineFeeder;
use crate::recipe::Severity;
use crate::report::Status;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    stage: String,
    /// The cause forge must rank first; absent: nothing fatal may be found.
    finding: Option<String>,
    cause: String,
    log: String,
}

const STAGES: &[&str] = &[
    "fetch",
    "resolve",
    "buildkit",
    "configure",
    "compile",
    "link",
    "package",
    "test",
];

fn load(text: &str) -> Vec<Case> {
    let c: Corpus = toml::from_str(text).expect("corpus parses");
    for case in &c.case {
        assert!(
            case.source.starts_with("https://github.com/"),
            "{}: source must be the report's URL",
            case.name
        );
        assert!(STAGES.contains(&case.stage.as_str()), "{}", case.name);
        assert!(!case.cause.is_empty() && !case.log.trim().is_empty());
    }
    c.case
}

/// The log fed in uneven pieces, as BuildKit's messages arrive.
fn scan(log: &str) -> Monitor {
    let mut f = LineFeeder::new(Monitor::new(Expect::default()));
    for piece in log.as_bytes().chunks(97) {
        f.push(piece);
    }
    f.finish();
    f.monitor
}

fn build_fatal(m: &Monitor) -> Status {
    m.checks()
        .into_iter()
        .find(|c| c.id == "build.fatal")
        .map(|c| c.status)
        .expect("build.fatal is always checked")
}

/// What went wrong with one case, if anything.
fn judge(case: &Case) -> (bool, Option<String>) {
    let m = scan(&case.log);
    let found = diagnose::diagnose(&case.log);
    let fatal = m.fatal();
    match &case.finding {
        Some(want) => {
            let flagged = fatal.is_some();
            let mut why = Vec::new();
            match fatal {
                Some(f) if &f.id == want => {
                    if f.hint.is_none() {
                        why.push("no fix".to_owned());
                    }
                    if want == "compile-error" && !f.message.contains(':') {
                        why.push(format!("the error is not quoted: {}", f.message));
                    }
                }
                Some(f) => why.push(format!("scan ranks `{}` first: {}", f.id, f.message)),
                None => why.push("scan: no fatal finding".to_owned()),
            }
            if build_fatal(&m) != Status::Fail {
                why.push("build.fatal does not fail".to_owned());
            }
            if !found.iter().any(|d| d.known.id == want) {
                let ids: Vec<&str> = found.iter().map(|d| d.known.id).collect();
                why.push(format!("diagnose names {ids:?}"));
            }
            (flagged, (!why.is_empty()).then(|| why.join("; ")))
        }
        None => {
            let fatal_diagnoses: Vec<&str> = found
                .iter()
                .filter(|d| d.known.in_build == Some(Severity::Fatal))
                .map(|d| d.known.id)
                .collect();
            let flagged = fatal.is_some() || !fatal_diagnoses.is_empty();
            let mut why = Vec::new();
            if let Some(f) = fatal {
                why.push(format!(
                    "scan: fatal `{}` at line {}: {}",
                    f.id, f.line, f.text
                ));
            }
            if !fatal_diagnoses.is_empty() {
                why.push(format!("diagnose names {fatal_diagnoses:?}"));
            }
            if build_fatal(&m) != Status::Pass {
                why.push("build.fatal fails".to_owned());
            }
            (flagged, (!why.is_empty()).then(|| why.join("; ")))
        }
    }
}

#[test]
fn corpus_precision_and_recall_are_100_percent_issue_26() {
    let failures = load(include_str!("../../tests/fixtures/corpus/failures.toml"));
    let benign = load(include_str!("../../tests/fixtures/corpus/benign.toml"));
    assert!(failures.len() >= 40, "{} failure excerpts", failures.len());
    assert!(benign.iter().all(|c| c.finding.is_none()));
    assert!(failures.iter().all(|c| {
        c.finding
            .as_deref()
            .is_some_and(|id| KNOWN.iter().any(|k| k.id == id))
    }));
    let (mut tp, mut fp, mut fn_) = (0u32, 0u32, 0u32);
    let mut wrong = Vec::new();
    for case in failures.iter().chain(&benign) {
        let (flagged, why) = judge(case);
        match (case.finding.is_some(), flagged) {
            (true, true) => tp += 1,
            (true, false) => fn_ += 1,
            (false, true) => fp += 1,
            (false, false) => {}
        }
        if let Some(why) = why {
            wrong.push(format!("{} ({}): {why}", case.name, case.source));
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp).max(1.0);
    let recall = f64::from(tp) / f64::from(tp + fn_).max(1.0);
    assert!(
        wrong.is_empty() && precision == 1.0 && recall == 1.0,
        "precision {:.1}%, recall {:.1}% over {} failures and {} benign excerpts\n{}",
        precision * 100.0,
        recall * 100.0,
        failures.len(),
        benign.len(),
        wrong.join("\n")
    );
}
