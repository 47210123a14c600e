//! Phase 6: verdicts over what the server test observed (pure; [`crate::ops::serve`] starts the
//! server, follows its log and makes the requests).

use serde::Serialize;

use super::check;
use crate::report::{Check, Status};

/// One HTTP exchange: status, body and milliseconds, or why there was none.
pub type Http = Result<(u16, String, f64), String>;

/// A streamed completion.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Streamed {
    /// HTTP status (0: none).
    pub status: u16,
    /// `data:` events with text.
    pub chunks: usize,
    /// Milliseconds to the first text.
    pub first_token_ms: Option<f64>,
    /// Milliseconds to the end.
    pub total_ms: f64,
    /// The text, joined.
    pub text: String,
    /// `data: [DONE]` seen.
    pub done: bool,
    /// Why it failed (transport error, a bad event).
    pub error: Option<String>,
}

/// How the server ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stop {
    /// It had exited by itself before forge stopped it: its exit code.
    pub exited_by_itself: Option<i64>,
    /// Exit code after the stop.
    pub exit_code: Option<i64>,
    /// Seconds the stop took.
    pub seconds: f64,
    /// The stop's grace, seconds.
    pub grace: u64,
    /// Gone from the engine afterwards.
    pub removed: bool,
    /// Memory errors in the log (`double free` at shutdown).
    pub memory_errors: Vec<String>,
    /// The engine's error at the stop.
    pub error: Option<String>,
}

/// Everything the server test saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// The model asked for (and the name it may be served under).
    pub model: String,
    /// `--served-model-name`, when the arguments give one.
    pub served_name: Option<String>,
    /// Why no GPU was given (`--no-gpu`), if so.
    pub no_gpu: Option<String>,
    /// The container did not start: the engine's words.
    pub start_error: Option<String>,
    /// Seconds from the start to the ready line.
    pub ready_secs: Option<f64>,
    /// The ready line.
    pub ready_line: Option<String>,
    /// The limit for it.
    pub ready_limit: u64,
    /// The ready pattern.
    pub ready_pattern: String,
    /// Exit code and seconds, when it exited before it was ready.
    pub exited_early: Option<(i64, f64)>,
    /// The last log lines, at the first failure.
    pub log_tail: Vec<String>,
    /// `/health`.
    pub health: Option<Http>,
    /// `/v1/models`.
    pub models: Option<Http>,
    /// The id the completions used.
    pub served_id: Option<String>,
    /// `/v1/completions`.
    pub completion: Option<Http>,
    /// Streamed `/v1/completions`.
    pub stream: Option<Streamed>,
    /// `/v1/chat/completions`.
    pub chat: Option<Http>,
    /// The stop.
    pub stop: Option<Stop>,
}

/// The model ids a `/v1/models` body lists; `Err` when it is not that JSON.
pub fn model_ids(body: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            crate::monitor::diagnose::clip(body, 120)
        )
    })?;
    let data = v.get("data").and_then(|d| d.as_array()).ok_or_else(|| {
        format!(
            "no `data` list: {}",
            crate::monitor::diagnose::clip(body, 120)
        )
    })?;
    Ok(data
        .iter()
        .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_owned))
        .collect())
}

/// The text of a completion (`choices[0].text`) or chat (`choices[0].message.content`) body.
pub fn choice_text(body: &str, chat: bool) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            crate::monitor::diagnose::clip(body, 120)
        )
    })?;
    let c = v
        .pointer("/choices/0")
        .ok_or_else(|| format!("no choices: {}", crate::monitor::diagnose::clip(body, 160)))?;
    let t = if chat {
        c.pointer("/message/content")
    } else {
        c.get("text")
    };
    t.and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "no text in the choice: {}",
                crate::monitor::diagnose::clip(body, 160)
            )
        })
}

fn quote(s: &str) -> String {
    format!("{:?}", crate::monitor::diagnose::clip(s, 80))
}

/// The checks of the server test.
pub fn checks(o: &Observed) -> Vec<Check> {
    vec![
        started_check(o),
        ready_check(o),
        health_check(o),
        models_check(o),
        completion_check(o),
        stream_check(o),
        chat_check(o),
        stop_check(o),
    ]
}

/// "; log ends: ..." with the last log lines, or nothing when none were kept.
fn log_tail(o: &Observed) -> String {
    if o.log_tail.is_empty() {
        String::new()
    } else {
        format!("; log ends: {}", o.log_tail.join(" | "))
    }
}

/// 6.1: the container started and kept running (not an engine error, not an early exit).
fn started_check(o: &Observed) -> Check {
    if let Some(e) = &o.start_error {
        check(
            "6.1",
            Status::Fail,
            format!("the container did not start: {e}"),
        )
    } else if let Some((code, secs)) = o.exited_early {
        check(
            "6.1",
            Status::Fail,
            format!(
                "the server exited with code {code} after {secs:.1} s, before it was ready{}",
                log_tail(o)
            ),
        )
        .with_hint(
            "the whole log is kept in the run directory; `forge diagnose` names known failures",
        )
    } else {
        let gpu_note = o
            .no_gpu
            .as_ref()
            .map(|w| format!(" (no GPU given: {w})"))
            .unwrap_or_default();
        check(
            "6.1",
            Status::Pass,
            format!("the server container started and kept running{gpu_note}"),
        )
    }
}

/// 6.2: the ready line appeared within the limit.
fn ready_check(o: &Observed) -> Check {
    match (&o.ready_secs, &o.start_error, &o.exited_early) {
        (Some(t), _, _) => check(
            "6.2",
            Status::Pass,
            format!(
                "ready after {t:.1} s (limit {} s): {}",
                o.ready_limit,
                o.ready_line.as_deref().unwrap_or("")
            ),
        ),
        (None, Some(_), _) => check("6.2", Status::Skip, "the container did not start (6.1)"),
        (None, None, Some(_)) => check(
            "6.2",
            Status::Fail,
            format!("exited before `{}` appeared", o.ready_pattern),
        ),
        (None, None, None) => check(
            "6.2",
            Status::Fail,
            format!("no `{}` within {} s{}", o.ready_pattern, o.ready_limit, log_tail(o)),
        )
        .with_hint("raise `checks.server.startup-timeout-secs` for a big model or a slow disk; the log says where it stopped"),
    }
}

/// Why a request was not made: the server never became ready, or an earlier request failed.
fn not_asked(o: &Observed, id: &str) -> Check {
    if o.ready_secs.is_none() {
        check(id, Status::Skip, "the server never became ready (6.2)")
    } else {
        check(id, Status::Skip, "not asked: an earlier request failed")
    }
}

/// Check `id` of one HTTP exchange: skipped when not asked, failed without an answer, else what
/// `judge` makes of the status, body and milliseconds.
fn http(
    o: &Observed,
    id: &str,
    h: &Option<Http>,
    judge: impl FnOnce(u16, &str, f64) -> Check,
) -> Check {
    match h {
        None => not_asked(o, id),
        Some(Err(e)) => check(id, Status::Fail, e.clone()),
        Some(Ok((s, b, ms))) => judge(*s, b, *ms),
    }
}

/// 6.3: `/health` answers 200.
fn health_check(o: &Observed) -> Check {
    http(o, "6.3", &o.health, |s, _b, ms| {
        check(
            "6.3",
            if s == 200 { Status::Pass } else { Status::Fail },
            format!("HTTP {s} in {ms:.0} ms"),
        )
    })
}

/// 6.4: `/v1/models` lists the model (or its served name).
fn models_check(o: &Observed) -> Check {
    let wanted: Vec<&str> = std::iter::once(o.model.as_str())
        .chain(o.served_name.as_deref())
        .collect();
    http(o, "6.4", &o.models, |s, b, _| {
        if s != 200 {
            return check(
                "6.4",
                Status::Fail,
                format!("HTTP {s}: {}", crate::monitor::diagnose::clip(b, 160)),
            );
        }
        match model_ids(b) {
            Err(e) => check("6.4", Status::Fail, e),
            Ok(ids) => {
                let ok = ids.iter().any(|i| wanted.contains(&i.as_str()));
                check(
                    "6.4",
                    if ok { Status::Pass } else { Status::Fail },
                    format!("lists [{}]; wanted {}", ids.join(", "), wanted.join(" or ")),
                )
            }
        }
    })
}

/// 6.5: `/v1/completions` answers 200 with a non-empty text.
fn completion_check(o: &Observed) -> Check {
    http(o, "6.5", &o.completion, |s, b, ms| {
        if s != 200 {
            return check(
                "6.5",
                Status::Fail,
                format!("HTTP {s}: {}", crate::monitor::diagnose::clip(b, 200)),
            );
        }
        match choice_text(b, false) {
            Ok(t) if !t.is_empty() => check(
                "6.5",
                Status::Pass,
                format!(
                    "{} in {ms:.0} ms from {}",
                    quote(&t),
                    o.served_id.as_deref().unwrap_or("?")
                ),
            ),
            Ok(_) => check("6.5", Status::Fail, "the completion's text is empty"),
            Err(e) => check("6.5", Status::Fail, e),
        }
    })
}

/// serve.stream: the streamed completion answers 200 with text chunks and `[DONE]`.
fn stream_check(o: &Observed) -> Check {
    let Some(st) = &o.stream else {
        return not_asked(o, "serve.stream");
    };
    let ok = st.error.is_none() && st.status == 200 && st.chunks > 0 && st.done;
    let mut ev = format!(
        "HTTP {}, {} chunk(s){}, {:.0} ms in all, [DONE] {}",
        st.status,
        st.chunks,
        st.first_token_ms
            .map(|m| format!(", first token after {m:.0} ms"))
            .unwrap_or_default(),
        st.total_ms,
        if st.done { "seen" } else { "missing" }
    );
    if !st.text.is_empty() {
        ev.push_str(&format!(": {}", quote(&st.text)));
    }
    if let Some(e) = &st.error {
        ev = format!("{e}; {ev}");
    }
    check(
        "serve.stream",
        if ok { Status::Pass } else { Status::Fail },
        ev,
    )
}

/// serve.chat: `/v1/chat/completions` answers a non-empty message (a skip without a template).
fn chat_check(o: &Observed) -> Check {
    http(o, "serve.chat", &o.chat, |s, b, ms| match s {
        200 => match choice_text(b, true) {
            Ok(t) if !t.is_empty() => check(
                "serve.chat",
                Status::Pass,
                format!("{} in {ms:.0} ms", quote(&t)),
            ),
            Ok(_) => check("serve.chat", Status::Fail, "the message is empty"),
            Err(e) => check("serve.chat", Status::Fail, e),
        },
        400 if b.to_lowercase().contains("chat template") => check(
            "serve.chat",
            Status::Skip,
            format!(
                "the model has no chat template (HTTP 400: {})",
                crate::monitor::diagnose::clip(b, 160)
            ),
        ),
        _ => check(
            "serve.chat",
            Status::Fail,
            format!("HTTP {s}: {}", crate::monitor::diagnose::clip(b, 200)),
        ),
    })
}

/// 6.6: the server stopped cleanly on SIGTERM (no crash, no kill, no memory errors) and is gone.
fn stop_check(o: &Observed) -> Check {
    let Some(st) = &o.stop else {
        return check("6.6", Status::Fail, "the container was not stopped");
    };
    let mut bad = Vec::new();
    if let Some(c) = st.exited_by_itself.filter(|_| o.exited_early.is_none()) {
        bad.push(format!(
            "the server exited by itself (code {c}) before the stop: it crashed"
        ));
    }
    if st.exit_code == Some(137) && st.exited_by_itself.is_none() {
        bad.push(format!(
            "it ignored SIGTERM for {} s and was killed",
            st.grace
        ));
    }
    if !st.memory_errors.is_empty() {
        bad.push(format!(
            "memory errors in the log: {}",
            st.memory_errors.join(", ")
        ));
    }
    if !st.removed {
        bad.push("the container is still there".into());
    }
    if let Some(e) = &st.error {
        bad.push(e.clone());
    }
    let how = format!(
        "stopped in {:.1} s (exit code {}), removed: {}",
        st.seconds,
        st.exit_code.map_or("?".into(), |c| c.to_string()),
        st.removed
    );
    if bad.is_empty() {
        check("6.6", Status::Pass, how)
    } else {
        check("6.6", Status::Fail, format!("{}; {how}", bad.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Observed {
        Observed {
            model: "facebook/opt-125m".into(),
            ready_secs: Some(2.0),
            ready_line: Some("INFO: Uvicorn running on http://0.0.0.0:8000".into()),
            ready_limit: 120,
            ready_pattern: "Uvicorn running".into(),
            health: Some(Ok((200, String::new(), 3.0))),
            models: Some(Ok((200, r#"{"object":"list","data":[{"id":"facebook/opt-125m"}]}"#.into(), 4.0))),
            served_id: Some("facebook/opt-125m".into()),
            completion: Some(Ok((200, r#"{"choices":[{"text":" world"}]}"#.into(), 40.0))),
            stream: Some(Streamed { status: 200, chunks: 5, first_token_ms: Some(12.0), total_ms: 50.0, text: " world".into(), done: true, error: None }),
            chat: Some(Ok((400, r#"{"message":"As of transformers v4.44, default chat template is no longer allowed"}"#.into(), 3.0))),
            stop: Some(Stop { exit_code: Some(0), seconds: 1.0, grace: 30, removed: true, ..Default::default() }),
            ..Default::default()
        }
    }

    fn st(c: &[Check], id: &str) -> Status {
        c.iter().find(|c| c.id == id).unwrap().status
    }

    #[test]
    fn opt125m_without_chat_template_is_a_skip_not_a_failure() {
        let c = checks(&ready());
        for id in ["6.1", "6.2", "6.3", "6.4", "6.5", "serve.stream", "6.6"] {
            assert_eq!(st(&c, id), Status::Pass, "{id}: {c:?}");
        }
        let chat = c.iter().find(|c| c.id == "serve.chat").unwrap();
        assert_eq!(chat.status, Status::Skip);
        assert!(chat.evidence.contains("no chat template"));
    }

    #[test]
    fn bad_json_and_crash_after_ready_fail() {
        let mut o = ready();
        o.models = Some(Ok((200, "{\"data\": [".into(), 1.0)));
        let c = checks(&o);
        assert_eq!(st(&c, "6.4"), Status::Fail);
        let mut o = ready();
        o.health = Some(Err("connect to 127.0.0.1:1: Connection refused".into()));
        o.stop = Some(Stop {
            exited_by_itself: Some(134),
            exit_code: Some(134),
            removed: true,
            ..Default::default()
        });
        let c = checks(&o);
        assert_eq!(st(&c, "6.3"), Status::Fail);
        assert_eq!(st(&c, "6.6"), Status::Fail);
    }

    #[test]
    fn never_ready_fails_6_2_and_skips_the_requests() {
        let o = Observed {
            model: "m".into(),
            ready_limit: 5,
            ready_pattern: "Uvicorn running".into(),
            stop: Some(Stop {
                exit_code: Some(0),
                removed: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = checks(&o);
        assert_eq!(st(&c, "6.1"), Status::Pass);
        assert_eq!(st(&c, "6.2"), Status::Fail);
        assert_eq!(st(&c, "6.3"), Status::Skip);
        assert_eq!(st(&c, "6.6"), Status::Pass);
    }
}

pub use crate::report::catalog::{DEFAULT_PATH_IDS, default_path_source};

/// A server-test check renamed as its default-path run's (`6.2` -> `serve.default.ready`).
pub fn as_default_path(mut c: Check) -> Check {
    if let Some((_, d)) = DEFAULT_PATH_IDS.iter().find(|(s, _)| *s == c.id) {
        c.id = (*d).to_owned();
        c.title = crate::report::catalog::title(d).to_owned();
    }
    c
}

#[cfg(test)]
mod default_path_tests {
    use super::*;

    #[test]
    fn every_server_check_has_a_default_path_id_in_the_catalog() {
        for (src, dst) in DEFAULT_PATH_IDS {
            assert_eq!(crate::report::catalog::entry(src).phase, 6);
            assert_eq!(crate::report::catalog::entry(dst).phase, 6);
            assert_eq!(default_path_source(dst), Some(*src));
        }
        let c = as_default_path(check("6.2", Status::Fail, "not ready within 600 s"));
        assert_eq!(c.id, "serve.default.ready");
        assert_eq!(c.title, "default path: ready within its limit");
        assert_eq!(c.status, Status::Fail);
        let other = as_default_path(check("4.2", Status::Pass, "x"));
        assert_eq!(other.id, "4.2");
    }
}
