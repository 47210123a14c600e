//! `forge serve IMAGE`: phase 6. Starts the vLLM OpenAI server in a named, labelled container
//! (GPU devices and their groups, shared memory, the recipe's mounts and arguments, its port
//! published on the engine's host), follows its log through the engine's stream into the run
//! directory while watching for the ready line, then asks `/health`, `/v1/models`,
//! `/v1/completions` (plain and streamed) and `/v1/chat/completions`, and stops it. The
//! container is removed on every path: success, failure, timeout and Ctrl-C.
//!
//! [`run_serve`] is the phase's entry point for the pipeline; [`command`] is the CLI's.

pub mod http;

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cancel::Cancel;
use crate::check::serve::{Http, Observed, Stop, Streamed};
use crate::engine::{ContainerSpec, Containers, Follow, GpuAccess, Running};
use crate::error::{Error, Result};
use crate::recipe::{Origin, Recipe};
use crate::report::{Check, Status};

/// Options of the phase.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Start with no GPU (`--no-gpu`).
    pub no_gpu: bool,
    /// Skipped checks (no GPU) fail.
    pub require_gpu: bool,
    /// Run id (container name and labels).
    pub run: String,
    /// Where the server's log goes.
    pub run_dir: PathBuf,
    /// The host's device directory (`/dev`).
    pub dev: PathBuf,
}

/// What the phase produced besides its checks.
#[derive(Debug, Clone, Serialize)]
pub struct ServeOutput {
    /// The image.
    pub image: String,
    /// The `docker run` line that does what forge did.
    pub docker_run: String,
    /// Devices and groups given.
    pub gpu: Option<GpuAccess>,
    /// The server's whole log.
    pub log: Option<PathBuf>,
    /// Seconds from the start to ready.
    pub ready_secs: Option<f64>,
    /// Milliseconds to the first streamed token.
    pub first_token_ms: Option<f64>,
    /// Seconds the whole test took.
    pub seconds: f64,
    /// What was observed.
    pub observed: Observed,
    /// Known failures named in the log (when a check failed).
    pub diagnoses: Vec<crate::monitor::diagnose::Diagnosis>,
}

/// `~/x` -> `$HOME/x`; a relative host path is relative to the recipe file's directory.
fn host_path(p: &str, recipe: &Recipe) -> String {
    if let Some(rest) = p.strip_prefix("~/") {
        return std::env::var("HOME").map_or_else(|_| p.to_owned(), |h| format!("{h}/{rest}"));
    }
    if Path::new(p).is_absolute() {
        return p.to_owned();
    }
    let base = match &recipe.origin {
        Origin::File(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        Origin::Shipped { .. } => PathBuf::new(),
    };
    let abs = std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
    abs.display().to_string()
}

/// The server's command line.
pub fn server_cmd(recipe: &Recipe) -> Vec<String> {
    let s = &recipe.file.checks.server;
    let mut cmd: Vec<String> = if s.command.is_empty() {
        [
            "python3",
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            &s.model,
            "--host",
            "0.0.0.0",
            "--port",
            &s.port.to_string(),
            "--dtype",
            &s.dtype,
            "--max-model-len",
            &s.max_model_len.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    } else {
        s.command.clone()
    };
    cmd.extend(s.args.iter().cloned());
    cmd
}

/// The server container's spec.
pub fn server_spec(image: &str, recipe: &Recipe, gpu: &GpuAccess, run: &str) -> ContainerSpec {
    let s = &recipe.file.checks.server;
    let pid = std::process::id();
    ContainerSpec {
        image: image.to_owned(),
        name: format!("forge-serve-{}-{pid}", crate::ops::plan::tag_slug(run)),
        cmd: server_cmd(recipe),
        entrypoint: Some(vec![String::new()]),
        env: s.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels: {
            let mut l = crate::engine::temp_labels(run);
            l.insert("forge.phase".to_owned(), "serve".to_owned());
            l
        },
        gpu: gpu.clone(),
        shm_bytes: Some(s.shm_size_mb << 20),
        ports: vec![s.port],
        binds: s
            .mounts
            .iter()
            .map(|m| match m.split_once(':') {
                Some((h, rest)) => format!("{}:{rest}", host_path(h, recipe)),
                None => m.clone(),
            })
            .collect(),
        files: Vec::new(),
        no_network: false,
    }
}

/// The log as the follower sees it.
#[derive(Default)]
struct LogState {
    ready: Option<(f64, String)>,
    ended: bool,
    tail: VecDeque<String>,
    memory_errors: Vec<String>,
    partial: Vec<u8>,
    error: Option<String>,
}

impl LogState {
    /// More of the server's log: whole lines judged (the ready line, memory errors), the last
    /// 40 kept.
    fn take(&mut self, bytes: &[u8], ready_pattern: &str, started: Instant) {
        self.partial.extend_from_slice(bytes);
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if self.ready.is_none() && line.contains(ready_pattern) {
                self.ready = Some((started.elapsed().as_secs_f64(), line.clone()));
            }
            let low = line.to_lowercase();
            for m in [
                "double free",
                "corruption",
                "segfault",
                "segmentation fault",
            ] {
                if low.contains(m) && !self.memory_errors.iter().any(|x| x == m) {
                    self.memory_errors.push(m.to_owned());
                }
            }
            self.tail.push_back(line);
            if self.tail.len() > 40 {
                self.tail.pop_front();
            }
        }
    }
}

/// The server stopped: its state just before (had it exited by itself?), the stop's answer.
struct Stopped {
    before: Result<crate::engine::State>,
    after: Result<crate::engine::State>,
    at: Instant,
    grace: Duration,
}

impl Stopped {
    fn record(self, memory_errors: Vec<String>) -> Result<Stop> {
        let before = self.before?;
        let mut stop = Stop {
            exited_by_itself: (!before.running).then(|| before.exit_code.unwrap_or(-1)),
            seconds: self.at.elapsed().as_secs_f64(),
            grace: self.grace.as_secs(),
            memory_errors,
            ..Default::default()
        };
        match self.after {
            Ok(a) => stop.exit_code = a.exit_code,
            Err(e) => stop.error = Some(e.to_string()),
        }
        Ok(stop)
    }
}

/// Stop the server with `grace`. Did it exit by itself first? A refused or cut request may mean
/// it is exiting: its log stream ends when it has, so that is given up to 2 s before the engine
/// is asked.
fn stop_server(
    engine: &dyn Containers,
    id: &str,
    o: &Observed,
    (state, changed): (&Mutex<LogState>, &Condvar),
    grace: Duration,
    progress: &mut dyn FnMut(&str),
) -> Stopped {
    let transport_error = [&o.health, &o.models, &o.completion, &o.chat]
        .iter()
        .any(|h| matches!(h, Some(Err(_))))
        || o.stream.as_ref().is_some_and(|s| s.status == 0);
    if transport_error {
        let until = Instant::now() + Duration::from_secs(2);
        wait_until(state, changed, until, &|st| st.ended);
    }
    let before = engine.state(id);
    let at = Instant::now();
    progress("stopping the server");
    let after = engine.stop(id, grace);
    Stopped {
        before,
        after,
        at,
        grace,
    }
}

/// Follow the server's log into `log_file` and `state` until it ends or `stop` is requested.
fn follow_log(
    engine: &dyn Containers,
    id: &str,
    stop: Cancel,
    log_file: &mut std::fs::File,
    (state, changed): (&Mutex<LogState>, &Condvar),
    pattern: &str,
    started: Instant,
) {
    let r = engine.follow(id, None, stop, &mut |_, bytes| {
        let _ = log_file.write_all(bytes);
        state
            .lock()
            .expect("log state")
            .take(bytes, pattern, started);
        changed.notify_all();
        Follow::More
    });
    let mut st = state.lock().expect("log state");
    st.ended = true;
    if let Err(e) = r {
        st.error = Some(e.to_string());
    }
    changed.notify_all();
}

/// Wait (woken by the follower) until `done` or `deadline`; returns the ready line if seen.
fn wait_until(
    state: &Mutex<LogState>,
    changed: &Condvar,
    deadline: Instant,
    done: &dyn Fn(&LogState) -> bool,
) -> Option<(f64, String)> {
    let mut st = state.lock().expect("log state");
    while !done(&st) && Instant::now() < deadline {
        st = changed
            .wait_timeout(st, Duration::from_millis(100))
            .expect("log state")
            .0;
    }
    st.ready.clone()
}

/// Phase 6 where no GPU was found: nothing started, every check skipped with the reason (failed
/// under `--require-gpu`).
fn without_gpu(
    image: &str,
    recipe: &Recipe,
    opts: &ServeOptions,
    why: &str,
) -> (Vec<Check>, ServeOutput) {
    let ids = [
        "6.1",
        "6.2",
        "6.3",
        "6.4",
        "6.5",
        "serve.stream",
        "serve.chat",
        "6.6",
    ];
    let checks = ids
        .iter()
        .map(|id| {
            if opts.require_gpu {
                crate::report::check(
                    id,
                    Status::Fail,
                    format!("no GPU ({why}) and --require-gpu"),
                )
            } else {
                crate::report::check(
                    id,
                    Status::Skip,
                    format!("no GPU: {why}; `forge serve --no-gpu` starts the server without one"),
                )
            }
        })
        .collect();
    let spec = server_spec(image, recipe, &GpuAccess::default(), &opts.run);
    let out = ServeOutput {
        image: image.to_owned(),
        docker_run: spec.docker_run_line(None, &[]),
        gpu: None,
        log: None,
        ready_secs: None,
        first_token_ms: None,
        seconds: 0.0,
        observed: Observed::default(),
        diagnoses: Vec::new(),
    };
    (checks, out)
}

fn served_name(args: &[String]) -> Option<String> {
    let i = args.iter().position(|a| a == "--served-model-name")?;
    args.get(i + 1).cloned()
}

/// Phase 6 on `image`. Without a GPU (and without `no_gpu`) nothing is started and every check
/// is skipped with the reason (failed with `require_gpu`).
pub fn run_serve(
    engine: &dyn Containers,
    image: &str,
    recipe: &Recipe,
    opts: &ServeOptions,
    cancel: Cancel,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<Check>, ServeOutput)> {
    let s = &recipe.file.checks.server;
    let t0 = Instant::now();
    let (access, no_gpu) = if opts.no_gpu {
        (GpuAccess::default(), Some("--no-gpu".to_owned()))
    } else {
        match engine.engine_gpu(&opts.dev, &opts.run) {
            Ok(a) => (a, None),
            Err(why) => return Ok(without_gpu(image, recipe, opts, &why)),
        }
    };
    let spec = server_spec(image, recipe, &access, &opts.run);
    let mut o = Observed {
        model: s.model.clone(),
        served_name: served_name(&s.args),
        no_gpu,
        ready_limit: s.startup_timeout_secs,
        ready_pattern: s.ready_pattern.clone(),
        ..Default::default()
    };
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| Error::io("create", &opts.run_dir, e))?;
    let log_path = opts.run_dir.join("server.log");
    let mut log_file =
        std::fs::File::create(&log_path).map_err(|e| Error::io("create", &log_path, e))?;

    progress(&format!("starting {}", spec.cmd.join(" ")));
    let container = match Running::start(engine, &spec) {
        Ok(c) => c,
        // No such image: forge cannot run the test at all (exit 2), as `forge runtime`.
        Err(e @ Error::Engine { .. }) if e.to_string().contains("no image `") => return Err(e),
        Err(e) => {
            o.start_error = Some(e.to_string());
            o.stop = Some(Stop {
                removed: true,
                ..Default::default()
            });
            let checks = crate::check::serve::checks(&o);
            return Ok((
                checks,
                output(image, &spec, &access, Some(log_path), o, t0, Vec::new()),
            ));
        }
    };
    let result = watch_and_ask(
        engine,
        &container,
        s,
        &mut o,
        &mut log_file,
        cancel,
        progress,
    );
    // Removed whatever happened above (the guard removes it too if this is never reached).
    let removed = container.remove();
    if cancel.requested() {
        return Err(cancel.interrupted());
    }
    result?;
    if let Some(st) = o.stop.as_mut() {
        st.removed = removed?;
    }
    if o.log_tail.is_empty() && o.ready_secs.is_some() {
        o.log_tail = Vec::new();
    }
    let checks = crate::check::serve::checks(&o);
    let diagnoses = diagnose_on_failure(&checks, &log_path);
    Ok((
        checks,
        output(image, &spec, &access, Some(log_path), o, t0, diagnoses),
    ))
}

/// The known failures in the server's log, when a check failed.
fn diagnose_on_failure(checks: &[Check], log: &Path) -> Vec<crate::monitor::diagnose::Diagnosis> {
    if checks.iter().any(|c| c.status == Status::Fail) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        crate::monitor::diagnose::diagnose(&text)
    } else {
        Vec::new()
    }
}

/// With the server started: follow its log, wait for the ready line, ask it (health, models,
/// completion, chat, stream), stop it; what was seen goes into `o`. The server is stopped and
/// the follower joined whatever the requests gave.
fn watch_and_ask(
    engine: &dyn Containers,
    container: &Running<'_>,
    s: &crate::recipe::ServerCheck,
    o: &mut Observed,
    log_file: &mut std::fs::File,
    cancel: Cancel,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let state = Mutex::new(LogState::default());
    let changed = Condvar::new();
    // The follower's own token: triggered once the server is stopped (never by a signal).
    let stop_following = Cancel::detached();
    let pattern = s.ready_pattern.clone();
    let started = container.started;
    let grace = Duration::from_secs(s.stop_timeout_secs);
    let req_timeout = Duration::from_secs(s.request_timeout_secs);

    std::thread::scope(|scope| {
        let follower = scope.spawn(|| {
            follow_log(
                engine,
                &container.id,
                stop_following,
                log_file,
                (&state, &changed),
                &pattern,
                started,
            );
        });

        // Wait for the ready line, an exit, the limit or Ctrl-C.
        let deadline = started + Duration::from_secs(s.startup_timeout_secs);
        let ready = wait_until(&state, &changed, deadline, &|st| {
            cancel.requested() || st.ready.is_some() || st.ended
        });
        if let Some((t, l)) = ready {
            o.ready_secs = Some(t);
            o.ready_line = Some(l);
            progress(&format!("ready after {t:.1} s"));
        }
        let exited_before = |o: &mut Observed| -> Result<()> {
            let stt = engine.state(&container.id)?;
            if !stt.running {
                o.exited_early =
                    Some((stt.exit_code.unwrap_or(-1), started.elapsed().as_secs_f64()));
            }
            Ok(())
        };
        // Whatever this gives (an engine error, an interrupted request), the server is stopped
        // and the follower joined below before it is returned.
        let asked = if cancel.requested() {
            Ok(())
        } else if o.ready_secs.is_none() {
            o.log_tail = last_lines(&state, 5);
            exited_before(o)
        } else {
            requests(
                o,
                engine,
                &container.id,
                s.port,
                req_timeout,
                cancel,
                s,
                progress,
            )
        };
        let grace = if cancel.requested() {
            Duration::from_secs(2)
        } else {
            grace
        };
        let stopped = stop_server(
            engine,
            &container.id,
            o,
            (&state, &changed),
            grace,
            progress,
        );
        stop_following.request(libc::SIGTERM);
        let _ = follower.join();
        asked?;
        let memory_errors = state.lock().expect("log state").memory_errors.clone();
        o.stop = Some(stopped.record(memory_errors)?);
        Ok(())
    })
}

fn output(
    image: &str,
    spec: &ContainerSpec,
    access: &GpuAccess,
    log: Option<PathBuf>,
    o: Observed,
    t0: Instant,
    diagnoses: Vec<crate::monitor::diagnose::Diagnosis>,
) -> ServeOutput {
    let mut line_spec = spec.clone();
    line_spec.entrypoint = None;
    ServeOutput {
        image: image.to_owned(),
        docker_run: line_spec.docker_run_line(None, &[]),
        gpu: access.given().then(|| access.clone()),
        log,
        ready_secs: o.ready_secs,
        first_token_ms: o.stream.as_ref().and_then(|s| s.first_token_ms),
        seconds: t0.elapsed().as_secs_f64(),
        observed: o,
        diagnoses,
    }
}

fn last_lines(state: &Mutex<LogState>, n: usize) -> Vec<String> {
    let st = state.lock().expect("log state");
    let skip = st.tail.len().saturating_sub(n);
    st.tail
        .iter()
        .skip(skip)
        .map(|l| crate::monitor::diagnose::clip(l, 200))
        .collect()
}

fn http_of(r: http::Answer) -> Http {
    r.map(|r| (r.status, r.text(), r.ms))
}

#[allow(clippy::too_many_arguments)]
fn requests(
    o: &mut Observed,
    engine: &dyn Containers,
    id: &str,
    port: u16,
    timeout: Duration,
    cancel: Cancel,
    s: &crate::recipe::ServerCheck,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let (host, hport) = engine.published(id, port)?;
    // Through a relay (a remote engine), a closed connection is explained by what the relay of
    // that request said (its own refused connect included).
    let call = |method: &str, path: &str, body: Option<&serde_json::Value>| {
        let req = http::Request { method, path, body };
        let before = engine.relay_errors(id).len();
        let answer = http::call(&host, hport, req, timeout, cancel, &mut |_, _| {})?;
        Ok::<Http, Error>(http_of(answer).map_err(|e| {
            match engine
                .relay_errors(id)
                .get(before..)
                .and_then(<[String]>::last)
            {
                Some(why) => format!("{e} ({why})"),
                None => e,
            }
        }))
    };
    // The port is published as the server binds it: a refused connection right after the ready
    // line is retried for up to 5 s.
    let t = Instant::now();
    let health = loop {
        let h = call("GET", "/health", None)?;
        match &h {
            Err(e)
                if e.contains("refused")
                    && t.elapsed() < Duration::from_secs(5)
                    && !cancel.requested() =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => break h,
        }
    };
    progress(&format!("/health: {}", brief(&health)));
    o.health = Some(health);
    if cancel.requested() {
        return Ok(());
    }
    let models = call("GET", "/v1/models", None)?;
    progress(&format!("/v1/models: {}", brief(&models)));
    let ids = match &models {
        Ok((200, b, _)) => crate::check::serve::model_ids(b).unwrap_or_default(),
        _ => Vec::new(),
    };
    o.models = Some(models);
    let wanted = o.served_name.clone().unwrap_or_else(|| s.model.clone());
    let served = if ids.contains(&wanted) || ids.contains(&s.model) {
        if ids.contains(&wanted) {
            wanted
        } else {
            s.model.clone()
        }
    } else {
        ids.first().cloned().unwrap_or(wanted)
    };
    o.served_id = Some(served.clone());
    if cancel.requested() {
        return Ok(());
    }
    let body = serde_json::json!({"model": served, "prompt": s.prompt, "max_tokens": s.max_tokens, "temperature": 0});
    let completion = call("POST", "/v1/completions", Some(&body))?;
    progress(&format!("/v1/completions: {}", brief(&completion)));
    o.completion = Some(completion);
    if cancel.requested() {
        return Ok(());
    }
    let mut body_s = body.clone();
    body_s["stream"] = true.into();
    o.stream = Some(stream(&host, hport, &body_s, timeout, cancel)?);
    progress("/v1/completions (stream) done");
    if cancel.requested() {
        return Ok(());
    }
    let chat = serde_json::json!({"model": served, "messages": [{"role": "user", "content": s.prompt}], "max_tokens": s.max_tokens, "temperature": 0});
    let chat = call("POST", "/v1/chat/completions", Some(&chat))?;
    progress(&format!("/v1/chat/completions: {}", brief(&chat)));
    o.chat = Some(chat);
    Ok(())
}

fn brief(h: &Http) -> String {
    match h {
        Ok((s, _, ms)) => format!("HTTP {s} in {ms:.0} ms"),
        Err(e) => e.clone(),
    }
}

/// A streamed completion: server-sent `data:` events, text per event, `[DONE]` at the end.
fn stream(
    host: &str,
    port: u16,
    body: &serde_json::Value,
    timeout: Duration,
    cancel: Cancel,
) -> Result<Streamed> {
    let mut st = Streamed::default();
    let mut pending = String::new();
    let mut bad: Option<String> = None;
    let req = http::Request {
        method: "POST",
        path: "/v1/completions",
        body: Some(body),
    };
    let r = http::call(host, port, req, timeout, cancel, &mut |piece, ms| {
        pending.push_str(&String::from_utf8_lossy(piece));
        while let Some(end) = pending.find("\n\n").or_else(|| pending.find("\r\n\r\n")) {
            let event: String = pending.drain(..end).collect();
            pending = pending.trim_start_matches(['\r', '\n']).to_owned();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    st.done = true;
                    continue;
                }
                match crate::check::serve::choice_text(data, false) {
                    Ok(t) => {
                        if !t.is_empty() && st.first_token_ms.is_none() {
                            st.first_token_ms = Some(ms);
                        }
                        st.chunks += 1;
                        st.text.push_str(&t);
                    }
                    Err(e) => {
                        bad.get_or_insert(format!("a bad event: {e}"));
                    }
                }
            }
        }
    })?;
    match r {
        Ok(rep) => {
            st.status = rep.status;
            st.total_ms = rep.ms;
            if rep.status != 200 {
                bad.get_or_insert(format!(
                    "HTTP {}: {}",
                    rep.status,
                    crate::monitor::diagnose::clip(&rep.text(), 160)
                ));
            }
        }
        Err(e) => {
            bad.get_or_insert(e);
        }
    }
    st.error = bad;
    Ok(st)
}
