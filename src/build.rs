//! `forge build`: drive the recipe's Docker build through the engine, write every line to
//! `artifacts/<run>/build.log` as it arrives, feed the monitor's rules in the same process, and
//! cancel the build the moment a fatal finding appears. Then take the wheels out of the wheel
//! stage through the engine, with their sizes and SHA256.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{BuildEnd, BuildEvent, BuildSpec, BuilderKind, Engine, Flow};
use crate::error::{Error, Result};
use crate::monitor::rules::{Expect, Finding, Monitor};
use crate::monitor::scan::LineFeeder;
use crate::monitor::tail::Observer;
use crate::plan::Plan;
use crate::recipe::Recipe;
use crate::report::{Check, Status};

/// `--builder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderChoice {
    /// BuildKit where the engine supports it, else classic.
    Auto,
    /// BuildKit (needed for the shipped Dockerfile's cache mounts).
    Buildkit,
    /// The engine's classic builder.
    Classic,
}

/// Label on everything a run creates.
pub const LABEL_RUN: &str = "forge.run";
/// Label with the pid of the forge process that created it.
pub const LABEL_PID: &str = "forge.pid";
/// Label on temporary things (`forge clean` removes them once their run is dead).
pub const LABEL_TEMP: &str = "forge.temp";

/// A wheel taken out of the build.
#[derive(Debug, Clone, Serialize)]
pub struct Wheel {
    /// Where it was written.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA256, hex.
    pub sha256: String,
}

/// What a build run produced.
#[derive(Debug, Serialize)]
pub struct BuildReport {
    /// Run id.
    pub run: String,
    /// Builder used.
    pub builder: BuilderKind,
    /// The live log.
    pub build_log: PathBuf,
    /// How the build ended (`succeeded`, `stopped`, `failed`, `interrupted`).
    pub end: &'static str,
    /// The fatal finding that stopped it.
    pub fatal: Option<Finding>,
    /// Milliseconds from the fatal line's arrival to the build request being dropped.
    pub cancel_ms: Option<f64>,
    /// The engine's error for a failed build.
    pub error: Option<String>,
    /// Last lines of the log for a failed build.
    pub log_tail: Vec<String>,
    /// Checks: phase 2 verdict, build result, wheels.
    pub checks: Vec<Check>,
    /// Wheels taken out.
    pub wheels: Vec<Wheel>,
    /// The exported image, when it was exported.
    pub export: Option<crate::export::Export>,
    /// Seconds the build took.
    pub seconds: f64,
}

impl BuildReport {
    /// Exit code: 0 built and checked, 1 a check failed or the build failed/stopped, 130 Ctrl-C.
    pub fn exit_code(&self) -> u8 {
        match self.end {
            "interrupted" => 130,
            _ if self.checks.iter().any(|c| c.status == Status::Fail) => 1,
            "succeeded" => 0,
            _ => 1,
        }
    }
}

impl BuildReport {
    /// The run's report as Markdown: one table row a check, ids as in the spec.
    pub fn markdown(&self, image: &str) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut md = format!(
            "# forge build {}\n\n- image: `{image}`\n- builder: {:?}\n- end: **{}** after {:.0} s\n- verdict: **{}**\n- build log: `{}`\n",
            self.run,
            self.builder,
            self.end,
            self.seconds,
            crate::report::verdict(&self.checks).name(),
            self.build_log.display()
        );
        if let Some(f) = &self.fatal {
            md.push_str(&format!(
                "\n## Stopped at log line {}\n\n```\n{}\n```\n\n{}\n\nFix: {}\n",
                f.line,
                f.text,
                f.message,
                f.hint.as_deref().unwrap_or("-")
            ));
        }
        if let Some(e) = &self.error {
            md.push_str(&format!(
                "\n## Build failed\n\n{}\n\n```\n{}\n```\n",
                cell(e),
                self.log_tail.join("\n")
            ));
        }
        md.push_str("\n## Checks\n\n| id | status | check | evidence |\n|---|---|---|---|\n");
        for c in &self.checks {
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
        if !self.wheels.is_empty() {
            md.push_str("\n## Wheels\n\n| file | bytes | sha256 |\n|---|---|---|\n");
            for w in &self.wheels {
                md.push_str(&format!(
                    "| `{}` | {} | `{}` |\n",
                    w.path.display(),
                    w.size,
                    w.sha256
                ));
            }
        }
        if let Some(e) = &self.export {
            md.push_str(&format!(
                "\n## Image archive\n\n`{}` ({} bytes), SHA256 `{}` in `{}`\n",
                e.archive.display(),
                e.gz_bytes,
                e.sha256,
                e.sha256_file.display()
            ));
        }
        md.push_str("\nSkipped checks are not passes; each says why it was skipped.\n");
        md
    }
}

/// A new run id: `<recipe name>-<UTC time>`.
pub fn new_run_id(name: &str) -> String {
    format!("{name}-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// The build context as a tar: the context directory (if any) plus the Dockerfile.
pub fn context_tar(context: Option<&Path>, dockerfile: &str, name: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if let Some(dir) = context {
        b.append_dir_all(".", dir)
            .map_err(|e| Error::io("pack the build context", dir, e))?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, dockerfile.as_bytes())
        .map_err(|e| Error::io("pack the Dockerfile", name, e))?;
    b.into_inner()
        .map_err(|e| Error::io("pack the build context", name, e))
}

/// Writes build events to the log as BuildKit's plain progress would show them, one flushed
/// line at a time, and feeds the same lines to the monitor.
struct LogSink<'a> {
    log: File,
    feeder: LineFeeder,
    carry: HashMap<u32, Vec<u8>>,
    started: Instant,
    fatal: Option<(Finding, Instant)>,
    observer: &'a mut dyn Observer,
    steps: BTreeMap<u32, String>,
    io_error: Option<std::io::Error>,
    /// The classic builder's last step image (` ---> <id>`), removed when the build does not finish.
    classic_leaf: Option<String>,
}

impl LogSink<'_> {
    fn emit(&mut self, line: &[u8]) {
        self.observer.output(line);
        if let Err(e) = self.log.write_all(line).and_then(|()| self.log.flush()) {
            self.io_error.get_or_insert(e);
        }
        let before = self.feeder.monitor.findings.len();
        if self.feeder.push(line) > 0
            && self.fatal.is_none()
            && let Some(f) = self.feeder.monitor.findings[before..]
                .iter()
                .find(|f| f.severity == crate::recipe::Severity::Fatal)
        {
            self.fatal = Some((f.clone(), Instant::now()));
        }
    }

    fn output(&mut self, id: u32, bytes: &[u8]) {
        if id == 0 {
            // classic builder: already lines of text
            for line in String::from_utf8_lossy(bytes).lines() {
                if let Some(img) = line.strip_prefix(" ---> ")
                    && img.len() >= 12
                    && img.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    self.classic_leaf = Some(img.to_owned());
                }
            }
            self.emit(bytes);
            return;
        }
        let mut buf = self.carry.remove(&id).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + i];
            let mut out =
                format!("#{id} {:.1} ", self.started.elapsed().as_secs_f64()).into_bytes();
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.push(b'\n');
            self.emit(&out);
            start += i + 1;
        }
        buf.drain(..start);
        if !buf.is_empty() {
            self.carry.insert(id, buf);
        }
    }

    fn flush_partials(&mut self) {
        let ids: Vec<u32> = self.carry.keys().copied().collect();
        for id in ids {
            self.output(id, b"\n");
        }
    }

    fn event(&mut self, ev: BuildEvent<'_>) -> Flow {
        match ev {
            BuildEvent::Step { id, name, cached } => {
                // The classic builder's `Step n/m : ...` lines arrive in its output stream too.
                let classic = name.starts_with("Step ");
                if id != 0 && self.steps.insert(id, name.to_owned()).is_none() {
                    if !classic {
                        self.emit(format!("#{id} {name}\n").as_bytes());
                    }
                    if cached {
                        self.emit(format!("#{id} CACHED\n").as_bytes());
                    } else if !name.starts_with("[internal]") {
                        self.observer.note(&format!("#{id} {name}"));
                    }
                }
            }
            BuildEvent::Output { id, bytes } => self.output(id, bytes),
            BuildEvent::StepError { id, error } => {
                self.emit(format!("#{id} ERROR: {error}\n").as_bytes());
            }
        }
        self.observer.update(&self.feeder.monitor);
        if self.fatal.is_some() {
            Flow::Cancel
        } else {
            Flow::Continue
        }
    }
}

/// The failed phase 2 checks of a build that did not finish. Before PyTorch's configure step
/// printed anything, "not printed" is no finding: only what the log did show counts.
fn phase2_failures(m: &Monitor) -> Vec<Check> {
    let configured = !m.flags.is_empty() || m.arch_list.is_some();
    m.checks()
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .filter(|c| configured || matches!(c.id.as_str(), "build.fatal" | "build.clipped" | "2.2"))
        .collect()
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(64 * 1024);
    let mut buf = Vec::new();
    use std::io::Seek;
    let _ = f.seek(std::io::SeekFrom::Start(from));
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Everything `forge build` needs.
pub struct BuildRun<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Its plan (artifact paths for this run).
    pub plan: &'a Plan,
    /// Run id.
    pub run: String,
    /// Builder choice.
    pub builder: BuilderChoice,
    /// Export the image after a good build.
    pub export: bool,
}

impl BuildRun<'_> {
    /// Drive the build; returns the report (also written to the run's `report.json`).
    pub fn execute(&self, engine: &dyn Engine, observer: &mut dyn Observer) -> Result<BuildReport> {
        let info = engine.info()?;
        let builder = match self.builder {
            BuilderChoice::Classic => BuilderKind::Classic,
            BuilderChoice::Buildkit if !info.buildkit => {
                return Err(Error::Engine {
                    message: format!("the engine at {} (API {}) cannot run BuildKit builds", info.host, info.api_version),
                    hint: Some("use `--builder classic` (the shipped Dockerfile's cache mounts need BuildKit)".into()),
                });
            }
            BuilderChoice::Buildkit => BuilderKind::BuildKit,
            BuilderChoice::Auto if info.buildkit => BuilderKind::BuildKit,
            BuilderChoice::Auto => BuilderKind::Classic,
        };
        let a = &self.plan.artifacts;
        std::fs::create_dir_all(&a.dir).map_err(|e| Error::io("create", &a.dir, e))?;
        let dockerfile_name = ".forge.Dockerfile";
        let tar = context_tar(
            self.recipe.context.as_deref(),
            &self.recipe.dockerfile.read()?,
            dockerfile_name,
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a.build_log)
            .map_err(|e| Error::io("create", &a.build_log, e))?;
        let labels = BTreeMap::from([
            (LABEL_RUN.to_owned(), self.run.clone()),
            (LABEL_PID.to_owned(), std::process::id().to_string()),
        ]);
        let spec = BuildSpec {
            context_tar: tar,
            dockerfile: dockerfile_name.to_owned(),
            target: self.plan.target_stage.clone(),
            tag: self.plan.image_tag.clone(),
            build_args: self.plan.build_args.clone(),
            labels: labels.clone(),
            builder,
        };
        observer.note(&format!(
            "building {} (stage {}) with {:?}; log: {}",
            spec.tag,
            spec.target,
            builder,
            a.build_log.display()
        ));
        let started = Instant::now();
        let mut sink = LogSink {
            log,
            feeder: LineFeeder::new(Monitor::new(Expect {
                archs: self.recipe.archs().to_vec(),
                rules: self.recipe.file.rules.clone(),
            })),
            carry: HashMap::new(),
            started,
            fatal: None,
            observer,
            steps: BTreeMap::new(),
            io_error: None,
            classic_leaf: None,
        };
        let built = engine.build(&spec, &mut |ev| sink.event(ev));
        // The engine's stream broke (connection cut, garbage): the classic builder's step images
        // are removed as for a failed build, and the error says where the log is.
        let end = match built {
            Ok(end) => end,
            Err(e) => {
                if let Some(leaf) = sink.classic_leaf.take() {
                    let _ = engine.remove_image(&leaf);
                }
                sink.flush_partials();
                return Err(match e {
                    Error::Engine { message, hint } => Error::Engine {
                        message: format!(
                            "{message} (the log so far is kept: {})",
                            a.build_log.display()
                        ),
                        hint: hint.or_else(|| {
                            Some("the connection to the engine broke or it answered garbage mid-build: check the engine (`docker info`), then run the build again".into())
                        }),
                    },
                    e => e,
                });
            }
        };
        let cancel_ms = sink
            .fatal
            .as_ref()
            .map(|(_, t)| t.elapsed().as_secs_f64() * 1000.0);
        sink.flush_partials();
        if !matches!(end, BuildEnd::Cancelled) {
            sink.feeder.finish();
        }
        // A classic build that did not finish leaves its step images: remove the chain (the
        // engine prunes untagged parents; images other builds still use stay).
        if !matches!(end, BuildEnd::Succeeded { .. })
            && let Some(leaf) = sink.classic_leaf.take()
        {
            // The cancelled step's container goes away asynchronously: retry for a while.
            let until = Instant::now() + std::time::Duration::from_secs(10);
            while engine.remove_image(&leaf).is_err() && Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        if let Some(e) = sink.io_error.take() {
            return Err(Error::io("write", &a.build_log, e));
        }
        let mut checks = Vec::new();
        let mut report = BuildReport {
            run: self.run.clone(),
            builder,
            build_log: a.build_log.clone(),
            end: "succeeded",
            fatal: sink.fatal.as_ref().map(|(f, _)| f.clone()),
            cancel_ms,
            error: None,
            log_tail: Vec::new(),
            checks: Vec::new(),
            wheels: Vec::new(),
            export: None,
            seconds: 0.0,
        };
        let monitor = &sink.feeder.monitor;
        match end {
            BuildEnd::Cancelled => {
                report.end = "stopped";
                let f = report.fatal.clone().expect("cancelled on a fatal finding");
                checks.extend(phase2_failures(monitor));
                checks.push(
                    Check::fail(
                        "build.result",
                        "the image builds",
                        format!("stopped at log line {}: {}", f.line, f.message),
                    )
                    .with_hint(f.hint.clone().unwrap_or_default()),
                );
            }
            BuildEnd::Interrupted => {
                report.end = "interrupted";
                checks.push(Check::skip(
                    "build.result",
                    "the image builds",
                    "interrupted by Ctrl-C; the build was cancelled",
                ));
            }
            BuildEnd::Failed { message } => {
                report.end = "failed";
                report.log_tail = last_lines(&a.build_log, 25);
                let tail = report.log_tail.join("\n");
                let known = crate::diagnose::diagnose(&format!("{tail}\n{message}"));
                let mut c = Check::fail(
                    "build.result",
                    "the image builds",
                    crate::diagnose::clip(&message, 400),
                );
                if let Some(d) = known.first() {
                    c = c.with_hint(format!(
                        "{} ({}): {}",
                        d.known.cause, d.known.id, d.known.fix
                    ));
                }
                checks.extend(phase2_failures(monitor));
                checks.push(c);
                report.error = Some(message);
            }
            BuildEnd::Succeeded { .. } => {
                let built = Check::pass(
                    "build.result",
                    "the image builds",
                    format!(
                        "{} built in {:.0} s",
                        spec.tag,
                        started.elapsed().as_secs_f64()
                    ),
                );
                let wheels = self.take_wheels(engine, &spec, &labels);
                checks.extend(self.phase2_checks(monitor));
                checks.push(built);
                match wheels {
                    Ok(wheels) => {
                        let n = wheels
                            .iter()
                            .filter(|w| w.path.extension().is_some_and(|e| e == "whl"))
                            .count();
                        checks.push(Check::when(
                            n > 0,
                            "build.wheels",
                            "wheels taken out of the wheel stage",
                            wheels
                                .iter()
                                .map(|w| {
                                    format!(
                                        "{} ({} bytes, sha256 {})",
                                        w.path.display(),
                                        w.size,
                                        w.sha256
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; "),
                        ));
                        checks.extend(self.wheel_checks(engine, &wheels, &spec.tag));
                        report.wheels = wheels;
                    }
                    Err(e) => checks.push(Check::fail(
                        "build.wheels",
                        "wheels taken out of the wheel stage",
                        e.to_string(),
                    )),
                }
                if self.export {
                    sink.observer.note(&format!(
                        "exporting {} to {}",
                        spec.tag,
                        a.archive.display()
                    ));
                    let threads =
                        std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
                    match crate::export::export(engine, &spec.tag, &a.archive, 6, threads) {
                        Ok(e) => {
                            checks.extend(crate::export::checks(
                                &e,
                                self.recipe.file.checks.archive_min_bytes,
                            ));
                            report.export = Some(e);
                        }
                        Err(e) => checks.push(Check::fail(
                            "export.archive",
                            "image exported as .tar.gz",
                            e.to_string(),
                        )),
                    }
                }
            }
        }
        report.checks = checks;
        report.seconds = started.elapsed().as_secs_f64();
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "verdict": crate::report::verdict(&report.checks),
            "checks": report.checks,
            "build": &report,
        }))
        .expect("report serializes");
        std::fs::write(&a.report_json, json).map_err(|e| Error::io("write", &a.report_json, e))?;
        let md = report.markdown(&self.plan.image_tag);
        std::fs::write(&a.report_md, md).map_err(|e| Error::io("write", &a.report_md, e))?;
        Ok(report)
    }

    /// Phase 3 on the torch wheel taken out, its libraries resolved inside the image just built.
    fn wheel_checks(&self, engine: &dyn Engine, wheels: &[Wheel], image: &str) -> Vec<Check> {
        let Some(torch) = wheels.iter().find(|w| {
            w.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("torch-") && n.ends_with(".whl"))
        }) else {
            return vec![Check::skip(
                "3.1",
                crate::check::catalog::title("3.1"),
                "the wheel stage holds no torch-*.whl",
            )];
        };
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let data = match crate::check::wheel::read_wheel(&torch.path, threads) {
            Ok(d) => d,
            Err(e) => {
                return vec![Check::fail(
                    "3.1",
                    crate::check::catalog::title("3.1"),
                    format!("cannot read {}: {e}", torch.path.display()),
                )];
            }
        };
        let opts = crate::check::wheel::WheelOptions {
            archs: self.recipe.archs().to_vec(),
            min_bytes: self.recipe.file.checks.wheel_min_bytes,
        };
        let mut root = crate::check::resolve::ImageRoot::open(engine, image).ok();
        let root = root
            .as_mut()
            .map(|r| r as &mut dyn crate::check::resolve::LibRoot);
        crate::check::wheel::checks(&data, &opts, root).0
    }

    /// Phase 2 from the live log; when the compile step was served from cache (no summary in
    /// the live log), from the `build.log` the Dockerfile keeps inside the wheel stage.
    fn phase2_checks(&self, live: &Monitor) -> Vec<Check> {
        let kept = self.plan.artifacts.wheels.join("build.log");
        if live.flags.contains_key("USE_DISTRIBUTED") || !kept.is_file() {
            return live.checks();
        }
        let expect = Expect {
            archs: self.recipe.archs().to_vec(),
            rules: self.recipe.file.rules.clone(),
        };
        match crate::monitor::scan::scan_file(&kept, expect) {
            Ok(m) => m
                .checks()
                .into_iter()
                .map(|mut c| {
                    c.evidence = format!(
                        "{} (from {}: the compile step was cached, so the live log has no summary)",
                        c.evidence,
                        kept.display()
                    );
                    c
                })
                .collect(),
            Err(_) => live.checks(),
        }
    }

    /// Build the wheel stage (cached by the main build), copy its root out, keep the files.
    fn take_wheels(
        &self,
        engine: &dyn Engine,
        main: &BuildSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Wheel>> {
        let mut temp_labels = labels.clone();
        temp_labels.insert(LABEL_TEMP.to_owned(), "1".to_owned());
        let tag = format!("forge-wheels:{}", self.run.to_lowercase());
        let spec = BuildSpec {
            target: self.plan.wheel_stage.clone(),
            tag: tag.clone(),
            labels: temp_labels.clone(),
            ..main.clone()
        };
        let mut lines = Vec::new();
        let end = engine.build(&spec, &mut |ev| {
            if let BuildEvent::Output { bytes, .. } = ev {
                lines.extend_from_slice(bytes);
            }
            Flow::Continue
        })?;
        if let BuildEnd::Failed { message } = end {
            return Err(Error::Engine {
                message: format!(
                    "building the wheel stage `{}` failed: {message}",
                    spec.target
                ),
                hint: None,
            });
        }
        let dir = &self.plan.artifacts.wheels;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let part = self.plan.artifacts.dir.join("wheels.tar.part");
        let result = engine
            .export_path(&tag, "/.", &temp_labels, &part)
            .and_then(|_| extract_wheels(&part, dir));
        let _ = std::fs::remove_file(&part);
        let removed = engine.remove_image(&tag);
        let wheels = result?;
        removed?;
        Ok(wheels)
    }
}

/// A tar entry path that stays inside the destination: relative, no `..`.
fn safe_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Extract the wheels (`*.whl`) and logs (`*.log`, `*.txt`) at the tar's top level into `dir`,
/// refusing unsafe paths and links; each is written to a `.part` name and renamed when complete.
pub fn extract_wheels(tar_path: &Path, dir: &Path) -> Result<Vec<Wheel>> {
    // A killed run's `.part` files are never taken for wheels: they are removed.
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".part") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let f = File::open(tar_path).map_err(|e| Error::io("open", tar_path, e))?;
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    let entries = ar
        .entries()
        .map_err(|e| Error::io("read tar", tar_path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read tar", tar_path, e))?;
        let path = entry
            .path()
            .map_err(|e| Error::io("read tar", tar_path, e))?
            .into_owned();
        if !safe_relative(&path) {
            return Err(Error::input(
                format!(
                    "the wheel stage's tar holds an unsafe path `{}`",
                    path.display()
                ),
                Some("absolute paths and `..` are refused"),
            ));
        }
        let rel: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let name = rel.to_string_lossy().into_owned();
        // Only the stage's top-level files: the engine adds /etc/hosts and the like.
        if rel.components().count() != 1 {
            continue;
        }
        let file_name = name;
        let wanted = [".whl", ".log", ".txt"]
            .iter()
            .any(|s| file_name.ends_with(s));
        if !wanted {
            continue;
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            if kind.is_symlink() || kind.is_hard_link() {
                return Err(Error::input(
                    format!("`{file_name}` in the wheel stage is a link: refused"),
                    Some("the wheel stage must hold regular files"),
                ));
            }
            continue;
        }
        let dest = dir.join(&file_name);
        if out.iter().any(|w: &Wheel| w.path == dest) {
            return Err(Error::input(
                format!("the wheel stage's tar holds `{file_name}` twice"),
                Some("the wheel stage must hold each file once"),
            ));
        }
        let part = dir.join(format!("{file_name}.part"));
        let expected = entry.size();
        let written = copy_entry(&mut entry, tar_path, &part).and_then(|(size, sha)| {
            // A tar cut short ends the entry early without an error: refused, never renamed.
            if size == expected {
                Ok((size, sha))
            } else {
                Err(Error::input(
                    format!(
                        "the wheel stage's tar ends inside `{file_name}` ({size} of {expected} bytes)"
                    ),
                    Some("the engine's stream was cut: run the build again"),
                ))
            }
        });
        let (size, sha256) = match written {
            Ok(w) => w,
            Err(e) => {
                // Never leave a half-written file behind, not even under its `.part` name.
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        std::fs::rename(&part, &dest).map_err(|e| Error::io("rename", &part, e))?;
        out.push(Wheel {
            path: dest,
            size,
            sha256,
        });
    }
    Ok(out)
}

/// Copy one tar entry to `part`, synced; its size and SHA256.
fn copy_entry(entry: &mut impl Read, tar_path: &Path, part: &Path) -> Result<(u64, String)> {
    let mut w = File::create(part).map_err(|e| Error::io("create", part, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read tar", tar_path, e)),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n])
            .map_err(|e| Error::io("write", part, e))?;
        size += n as u64;
    }
    w.sync_all().map_err(|e| Error::io("sync", part, e))?;
    Ok((size, hex(&h.finalize())))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long after a fatal line the build request was dropped (for the note).
pub fn describe_cancel(ms: Option<f64>) -> String {
    ms.map(|m| format!("{m:.1} ms after the line arrived"))
        .unwrap_or_default()
}

/// `forge clean`: remove temporary containers and images of runs whose forge process is gone.
pub fn clean(engine: &dyn Engine, all: bool) -> Result<Vec<crate::engine::Leftover>> {
    let mut removed = Vec::new();
    for l in engine.leftovers(LABEL_RUN)? {
        // Temporary things, and final images a later build of the same tag left untagged.
        let temp = l.labels.contains_key(LABEL_TEMP)
            || l.kind == "container"
            || (l.kind == "image" && l.tags.is_empty());
        let pid: Option<i32> = l.labels.get(LABEL_PID).and_then(|p| p.parse().ok());
        let dead = pid.is_none_or(|p| !crate::monitor::tail::alive(p));
        if temp && (all || dead) {
            engine.remove_leftover(&l)?;
            removed.push(l);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_tar_paths_are_refused() {
        assert!(safe_relative(Path::new("torch-2.9.whl")));
        assert!(safe_relative(Path::new("./a/b.whl")));
        assert!(!safe_relative(Path::new("../x.whl")));
        assert!(!safe_relative(Path::new("/etc/passwd")));
        assert!(!safe_relative(Path::new("a/../../x")));
    }

    fn tar_with(entries: &[(&str, &[u8], tar::EntryType, Option<&str>)]) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "forge-wheeltar-{}-{}.tar",
            std::process::id(),
            entries.len()
        ));
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        for (name, data, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // write the raw name so `..` survives (tar's safe setters refuse it)
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        p
    }

    #[test]
    fn extracts_wheels_with_checksums_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("forge-wheels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = tar_with(&[
            (
                "torch-2.9.1-cp312-linux_x86_64.whl",
                b"PK-not-really",
                tar::EntryType::Regular,
                None,
            ),
            ("build.log", b"log", tar::EntryType::Regular, None),
            ("etc/hosts", b"x", tar::EntryType::Regular, None),
        ]);
        let w = extract_wheels(&t, &dir).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].size, 13);
        assert_eq!(w[0].sha256, hex(&Sha256::digest(b"PK-not-really")));
        assert!(dir.join("torch-2.9.1-cp312-linux_x86_64.whl").is_file());
        assert!(!dir.join("hosts").exists());
        let t = tar_with(&[("../evil.whl", b"x", tar::EntryType::Regular, None)]);
        assert!(
            extract_wheels(&t, &dir)
                .unwrap_err()
                .to_string()
                .contains("unsafe path")
        );
        let t = tar_with(&[("a.whl", b"", tar::EntryType::Symlink, Some("/etc/passwd"))]);
        assert!(
            extract_wheels(&t, &dir)
                .unwrap_err()
                .to_string()
                .contains("link")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
