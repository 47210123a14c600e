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

use crate::cancel::Cancel;
use crate::engine::{BuildEnd, BuildEvent, BuildSpec, BuilderKind, Engine, Flow};
use crate::error::{Error, Result};
use crate::monitor::rules::{Expect, Finding, Monitor};
use crate::monitor::scan::LineFeeder;
use crate::monitor::tail::Observer;
use crate::ops::plan::Plan;
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

/// A wheel taken out of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Wheel {
    /// Where it was written.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA256, hex.
    pub sha256: String,
}

pub use crate::engine::{LABEL_PID, LABEL_RECIPE, LABEL_RUN, LABEL_TEMP};

/// A new run id: `<recipe name>-<UTC time>`.
pub fn new_run_id(name: &str) -> String {
    format!("{name}-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// The build context as a tar: the context directory (if any), forge's small files (`extra`:
/// path in the context, bytes) and the Dockerfile. Big directories go in
/// [`crate::engine::BuildSpec::context_dirs`], streamed, never held here.
pub fn context_tar(
    context: Option<&Path>,
    dockerfile: &str,
    name: &str,
    extra: &[(String, Vec<u8>)],
) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if let Some(dir) = context {
        b.append_dir_all(".", dir)
            .map_err(|e| Error::io("pack the build context", dir, e))?;
    }
    for (path, bytes) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, bytes.as_slice())
            .map_err(|e| Error::io("pack forge's files", path, e))?;
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
    /// Steps served from the build cache.
    cached: std::collections::BTreeSet<u32>,
    /// BuildKit's engine-side (start, completion) of each finished step.
    done: BTreeMap<u32, (f64, f64)>,
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
        // An echo of a failure (BuildKit's `ERROR: ... did not complete successfully`, `failed
        // to solve`, `ninja: build stopped`) is the builder ending the step itself: the build
        // ends `failed` on its own, with the cause above it; forge stops a build only on a
        // finding that dooms it before the builder knows.
        if self.feeder.push(line) > 0
            && self.fatal.is_none()
            && let Some(f) = self.feeder.monitor.findings[before..].iter().find(|f| {
                f.severity == crate::recipe::Severity::Fatal
                    && crate::monitor::diagnose::by_id(&f.id).is_none_or(|k| !k.echo)
            })
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
                        self.cached.insert(id);
                        self.emit(format!("#{id} CACHED\n").as_bytes());
                    } else if !name.starts_with("[internal]") {
                        self.observer.note(&format!("#{id} {name}"));
                    }
                }
            }
            BuildEvent::Output { id, bytes } => self.output(id, bytes),
            BuildEvent::StepDone {
                id,
                started,
                completed,
            } => {
                self.done.insert(id, (started, completed));
            }
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

/// How a build ended, as the record and the report say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// The stage was built.
    Succeeded,
    /// Stopped by forge on a fatal finding.
    Stopped,
    /// The engine reported an error.
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// What one monitored build did, as the run record keeps it (`outputs.build`,
/// `outputs.image_build`) and the reports read it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BuildResult {
    /// Builder used.
    pub builder: BuilderKind,
    /// The stage built.
    pub target: String,
    /// Its tag.
    pub tag: String,
    /// The live log.
    pub build_log: PathBuf,
    /// How it ended.
    pub end: End,
    /// The fatal finding that stopped it.
    pub fatal: Option<Finding>,
    /// Milliseconds from the fatal line's arrival to the build request being dropped.
    pub cancel_ms: Option<f64>,
    /// The engine's error for a failed build.
    pub error: Option<String>,
    /// Last lines of the log for a failed build.
    pub log_tail: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
    /// Each Dockerfile stage's wall time, from BuildKit's own step times (empty for the classic
    /// builder, whose stream has none).
    #[serde(default)]
    pub stages: Vec<StageTime>,
}

/// One stage's wall time in a BuildKit build: from its first step's start to its last step's
/// completion, as the engine timed them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StageTime {
    /// The stage (`vllm-build`, `runtime`).
    pub stage: String,
    /// Wall seconds.
    pub seconds: f64,
    /// Its steps that finished.
    pub steps: u32,
    /// Of those, served from the build cache.
    pub cached: u32,
}

/// The stage of a BuildKit step name (`[vllm-build 3/7] RUN ...` -> `vllm-build`); `None` for
/// BuildKit's own steps (`[internal] load ...`, `exporting to image`) and stage-less ones.
fn stage_of(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('[')?.split(']').next()?;
    let (stage, step) = inner.rsplit_once(' ')?;
    let (n, m) = step.split_once('/')?;
    (n.bytes().all(|b| b.is_ascii_digit()) && m.bytes().all(|b| b.is_ascii_digit()))
        .then_some(stage)
        .filter(|s| !s.is_empty() && *s != "internal")
}

/// `vllm-build 512.3 s (7 steps, 2 cached), wheels 0.1 s (1 step)`.
pub fn stages_line(stages: &[StageTime]) -> String {
    stages
        .iter()
        .map(|s| {
            let steps = if s.steps == 1 { "step" } else { "steps" };
            let cached = if s.cached > 0 {
                format!(", {} cached", s.cached)
            } else {
                String::new()
            };
            format!(
                "{} {:.1} s ({} {steps}{cached})",
                s.stage, s.seconds, s.steps
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each stage's wall time, in the order the stages started.
fn stage_times(
    steps: &BTreeMap<u32, String>,
    cached: &std::collections::BTreeSet<u32>,
    done: &BTreeMap<u32, (f64, f64)>,
) -> Vec<StageTime> {
    let mut by: Vec<(String, f64, f64, u32, u32)> = Vec::new();
    for (id, (a, b)) in done {
        let Some(stage) = steps.get(id).and_then(|n| stage_of(n)) else {
            continue;
        };
        let hit = u32::from(cached.contains(id));
        match by.iter_mut().find(|s| s.0 == stage) {
            Some(s) => {
                s.1 = s.1.min(*a);
                s.2 = s.2.max(*b);
                s.3 += 1;
                s.4 += hit;
            }
            None => by.push((stage.to_owned(), *a, *b, 1, hit)),
        }
    }
    by.sort_by(|x, y| x.1.total_cmp(&y.1));
    by.into_iter()
        .map(|(stage, a, b, steps, cached)| StageTime {
            stage,
            seconds: ((b - a).max(0.0) * 10.0).round() / 10.0,
            steps,
            cached,
        })
        .collect()
}

/// One monitored build: its result and the monitor after the last line.
pub struct Driven {
    /// What the record keeps.
    pub result: BuildResult,
    /// The monitor after the last line.
    pub monitor: Monitor,
}

/// The builder `choice` resolves to on this engine.
pub fn resolve_builder(engine: &dyn Engine, choice: BuilderChoice) -> Result<BuilderKind> {
    let info = engine.info()?;
    Ok(match choice {
        BuilderChoice::Classic => BuilderKind::Classic,
        BuilderChoice::Buildkit if !info.buildkit => {
            return Err(Error::Engine {
                message: format!(
                    "the engine at {} (API {}) cannot run BuildKit builds",
                    info.host, info.api_version
                ),
                hint: Some(
                    "use `--builder classic` (the shipped Dockerfile's cache mounts need BuildKit)"
                        .into(),
                ),
            });
        }
        BuilderChoice::Buildkit => BuilderKind::BuildKit,
        BuilderChoice::Auto if info.buildkit => BuilderKind::BuildKit,
        BuilderChoice::Auto => BuilderKind::Classic,
    })
}

/// The request for building `target` as `tag` with `labels`, from the recipe's context.
pub fn spec(
    recipe: &Recipe,
    plan: &Plan,
    builder: BuilderKind,
    target: &str,
    tag: &str,
    labels: BTreeMap<String, String>,
) -> Result<BuildSpec> {
    let dockerfile_name = ".forge.Dockerfile";
    Ok(BuildSpec {
        context_tar: context_tar(
            recipe.context.as_deref(),
            &recipe.dockerfile.read()?,
            dockerfile_name,
            &forge_files(recipe)?,
        )?,
        context_dirs: recipe
            .wheelhouse
            .iter()
            .map(|d| {
                (
                    format!("{}/wheelhouse", crate::recipe::pylock::CONTEXT_DIR),
                    d.clone(),
                )
            })
            .collect(),
        dockerfile: dockerfile_name.to_owned(),
        target: target.to_owned(),
        tag: tag.to_owned(),
        build_args: plan.build_args.clone(),
        labels,
        builder,
    })
}

/// forge's files in every build context (`.forge/`): the lock check, and the recipe's lock.
pub fn forge_files(recipe: &Recipe) -> Result<Vec<(String, Vec<u8>)>> {
    let lock = recipe.lock.as_ref().map(|l| l.read()).transpose()?;
    Ok(crate::recipe::pylock::context_files(lock.as_deref()))
}

/// Run one build with every line appended to `log` and fed to the monitor; the build is
/// cancelled on the first fatal finding (and on SIGINT/SIGTERM, through the engine's token).
pub fn drive(
    engine: &dyn Engine,
    spec: &BuildSpec,
    log_path: &Path,
    expect: Expect,
    observer: &mut dyn Observer,
) -> Result<Driven> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| Error::io("create", log_path, e))?;
    observer.note(&format!(
        "building {} (stage {}) with {:?}; log: {}",
        spec.tag,
        spec.target,
        spec.builder,
        log_path.display()
    ));
    let started = Instant::now();
    let mut sink = LogSink {
        log,
        feeder: LineFeeder::new(Monitor::new(expect)),
        carry: HashMap::new(),
        started,
        fatal: None,
        observer,
        steps: BTreeMap::new(),
        cached: Default::default(),
        done: BTreeMap::new(),
        io_error: None,
        classic_leaf: None,
    };
    let built = engine.build(spec, &mut |ev| sink.event(ev));
    // The engine's stream broke (connection cut, garbage): the classic builder's step images
    // are removed as for a failed build, and the error says where the log is.
    let end = match built {
        Ok(end) => end,
        Err(e) => {
            if let Some(leaf) = sink.classic_leaf.take() {
                let _ = engine.remove_image(&leaf);
            }
            sink.flush_partials();
            return Err(stream_broke(e, log_path));
        }
    };
    let cancel_ms = sink
        .fatal
        .as_ref()
        .map(|(_, t)| t.elapsed().as_secs_f64() * 1000.0);
    sink.flush_partials();
    if !matches!(end, BuildEnd::Cancelled | BuildEnd::Interrupted) {
        sink.feeder.finish();
    }
    // A classic build that did not finish leaves its step images: remove the chain (the
    // engine prunes untagged parents; images other builds still use stay).
    if !matches!(end, BuildEnd::Succeeded { .. })
        && let Some(leaf) = sink.classic_leaf.take()
    {
        remove_step_images(engine, &leaf);
    }
    if let Some(e) = sink.io_error.take() {
        return Err(Error::io("write", log_path, e));
    }
    let (end, error) = match end {
        BuildEnd::Succeeded { .. } => (End::Succeeded, None),
        BuildEnd::Cancelled => (End::Stopped, None),
        BuildEnd::Failed { message } => (End::Failed, Some(message)),
        BuildEnd::Interrupted => (End::Interrupted, None),
    };
    let result = BuildResult {
        builder: spec.builder,
        target: spec.target.clone(),
        tag: spec.tag.clone(),
        build_log: log_path.to_owned(),
        end,
        fatal: sink.fatal.map(|(f, _)| f),
        cancel_ms,
        log_tail: if end == End::Failed {
            last_lines(log_path, 25)
        } else {
            Vec::new()
        },
        error,
        seconds: started.elapsed().as_secs_f64(),
        stages: stage_times(&sink.steps, &sink.cached, &sink.done),
    };
    Ok(Driven {
        result,
        monitor: sink.feeder.monitor,
    })
}

/// The engine's build stream broke: the error says the log is kept and what to check.
fn stream_broke(e: Error, log_path: &Path) -> Error {
    match e {
        Error::Engine { message, hint } => Error::Engine {
            message: format!("{message} (the log so far is kept: {})", log_path.display()),
            hint: hint.or_else(|| {
                Some(
                    "the connection to the engine broke or it answered garbage mid-build: check \
                     the engine (`docker info`), then run the build again"
                        .into(),
                )
            }),
        },
        e => e,
    }
}

/// A classic build's step images from `leaf` down removed; the cancelled step's container goes
/// away asynchronously, so this retries for up to 10 s.
fn remove_step_images(engine: &dyn Engine, leaf: &str) {
    let until = Instant::now() + std::time::Duration::from_secs(10);
    while engine.remove_image(leaf).is_err() && Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl Driven {
    /// The result check `id` ("the stage builds") and, for a build that did not finish, the
    /// phase 2 failures the log showed.
    pub fn checks(&self, id: &str) -> Vec<Check> {
        let title = crate::report::catalog::title(id);
        let mut checks = Vec::new();
        let r = &self.result;
        match r.end {
            End::Succeeded => checks.push(Check::pass(
                id,
                title,
                format!("{} (stage {}) built in {:.0} s", r.tag, r.target, r.seconds),
            )),
            End::Stopped => {
                checks.extend(phase2_failures(&self.monitor));
                let f = r.fatal.as_ref().expect("stopped on a fatal finding");
                checks.push(
                    Check::fail(
                        id,
                        title,
                        format!("stopped at log line {}: {}", f.line, f.message),
                    )
                    .with_hint(f.hint.clone().unwrap_or_default()),
                );
            }
            End::Failed => {
                let message = r.error.as_deref().unwrap_or_default();
                let tail = r.log_tail.join("\n");
                let known = crate::monitor::diagnose::diagnose(&format!("{tail}\n{message}"));
                let mut c = Check::fail(id, title, crate::monitor::diagnose::clip(message, 400));
                if let Some(d) = known.first() {
                    c = c.with_hint(format!(
                        "{} ({}): {}",
                        d.known.cause, d.known.id, d.known.fix
                    ));
                }
                checks.extend(phase2_failures(&self.monitor));
                checks.push(c);
            }
            End::Interrupted => {}
        }
        checks
    }
}

/// A tar entry path that stays inside the destination: relative, no `..`.
fn safe_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Extract the wheels (`*.whl`) and logs (`*.log`, `*.txt`) at the tar's top level into `dir`,
/// refusing unsafe paths and links; each is written to a `.part` name and renamed when complete.
pub fn extract_wheels(tar_path: &Path, dir: &Path, cancel: Cancel) -> Result<Vec<Wheel>> {
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
        cancel.check()?;
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
        let copied = copy_hashed(&mut entry, tar_path, &part, cancel).and_then(|(size, sha)| {
            // A tar cut short ends the entry early without an error: refused, never renamed.
            if size != expected {
                return Err(Error::input(
                    format!(
                        "the wheel stage's tar ends inside `{file_name}` ({size} of {expected} bytes)"
                    ),
                    Some("the engine's stream was cut: run the build again"),
                ));
            }
            std::fs::rename(&part, &dest).map_err(|e| Error::io("rename", &part, e))?;
            Ok((size, sha))
        });
        let (size, sha256) = match copied {
            Ok(r) => r,
            Err(e) => {
                // Nothing incomplete is left, not even under the `.part` name.
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        out.push(Wheel {
            path: dest,
            size,
            sha256,
        });
    }
    Ok(out)
}

/// Copy `from` to `part`, fsynced, checking `cancel` between pieces; returns (bytes, SHA256).
fn copy_hashed(
    from: &mut dyn Read,
    tar_path: &Path,
    part: &Path,
    cancel: Cancel,
) -> Result<(u64, String)> {
    let mut w = File::create(part).map_err(|e| Error::io("create", part, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        cancel.check()?;
        let n = match from.read(&mut buf) {
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

/// SHA256 of a file, hex, streaming.
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::atomic::sha256_file(path).map(|(_, h)| h)
}

/// Lower-case hex.
pub use crate::atomic::hex;

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
            || l.kind == crate::engine::LeftoverKind::Container
            || (l.kind == crate::engine::LeftoverKind::Image && l.tags.is_empty());
        let pid: Option<i32> = l.labels.get(LABEL_PID).and_then(|p| p.parse().ok());
        let dead = pid.is_none_or(|p| !crate::monitor::tail::alive(p));
        if temp && (all || dead) {
            engine.remove_leftover(&l)?;
            removed.push(l);
        }
    }
    Ok(removed)
}

/// What a cached compiling stage did not log: the `forge-jobs: STAGE MAX_JOBS=N (...)` lines the
/// Dockerfile's `forge-jobs` recorded in `forge-jobs-STAGE.txt` when the stage ran, appended to
/// `log` for every stage the log has no line for (a stage served from BuildKit's cache prints
/// nothing). Returns the lines appended.
pub fn log_recorded_jobs(log: &Path, wheels_dir: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(wheels_dir) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("forge-jobs-") && n.ends_with(".txt"))
            })
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    let mut added = Vec::new();
    for f in files {
        let recorded = std::fs::read_to_string(&f).map_err(|e| Error::io("read", &f, e))?;
        for line in recorded.lines().filter(|l| l.starts_with("forge-jobs: ")) {
            let stage = line["forge-jobs: ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if !text.contains(&format!("forge-jobs: {stage} MAX_JOBS=")) {
                added.push(format!(
                    "{line} [recorded when the stage ran; served from the cache in this build]"
                ));
            }
        }
    }
    if !added.is_empty() {
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .map_err(|e| Error::io("append to", log, e))?;
        for l in &added {
            writeln!(out, "{l}").map_err(|e| Error::io("append to", log, e))?;
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {

    #[test]
    fn stage_times_span_each_stages_steps_as_the_engine_timed_them() {
        use super::{stage_of, stage_times, stages_line};
        assert_eq!(
            stage_of("[vllm-build 3/7] RUN pip wheel ."),
            Some("vllm-build")
        );
        assert_eq!(
            stage_of("[base 1/2] FROM docker.io/library/x"),
            Some("base")
        );
        assert_eq!(stage_of("[internal] load build definition"), None);
        assert_eq!(stage_of("exporting to image"), None);
        assert_eq!(stage_of("[stage-1 x/2] RUN y"), None);
        let steps: std::collections::BTreeMap<u32, String> = [
            (1, "[internal] load .dockerignore"),
            (2, "[base 1/2] FROM debian"),
            (3, "[base 2/2] RUN apt-get install"),
            (4, "[vllm-build 1/2] COPY . /src"),
            (5, "[vllm-build 2/2] RUN pip wheel"),
            (6, "exporting to image"),
        ]
        .into_iter()
        .map(|(i, n)| (i, n.to_owned()))
        .collect();
        let cached = [2].into_iter().collect();
        // BuildKit's own times: base from 100.0 to 160.5, vllm-build from 160.5 to 700.25 (its
        // steps overlap nothing else), internal and export steps belong to no stage
        let done = [
            (1, (99.0, 99.5)),
            (2, (100.0, 100.0)),
            (3, (100.1, 160.5)),
            (4, (160.5, 161.0)),
            (5, (161.0, 700.25)),
            (6, (700.3, 702.0)),
        ]
        .into_iter()
        .collect();
        let st = stage_times(&steps, &cached, &done);
        assert_eq!(st.len(), 2, "{st:?}");
        assert_eq!((st[0].stage.as_str(), st[0].seconds), ("base", 60.5));
        assert_eq!((st[0].steps, st[0].cached), (2, 1));
        assert_eq!((st[1].stage.as_str(), st[1].seconds), ("vllm-build", 539.8));
        assert_eq!(
            stages_line(&st),
            "base 60.5 s (2 steps, 1 cached), vllm-build 539.8 s (2 steps)"
        );
        // the classic builder's stream has no step times: no stages, not made-up ones
        assert!(stage_times(&steps, &cached, &Default::default()).is_empty());
    }

    #[test]
    fn recorded_jobs_fill_in_for_cached_stages_only() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-jobs-log-")
            .tempdir()
            .unwrap();
        let d = tmp.path();
        let log = d.join("build.log");
        std::fs::write(
            &log,
            "#14 17.8 forge-jobs: build-triton MAX_JOBS=1 (auto: 2 CPUs)\n#11 CACHED\n",
        )
        .unwrap();
        std::fs::write(
            d.join("forge-jobs-build-torch.txt"),
            "forge-jobs: build-torch MAX_JOBS=2 (auto: 2 CPUs)\n",
        )
        .unwrap();
        std::fs::write(
            d.join("forge-jobs-build-triton.txt"),
            "forge-jobs: build-triton MAX_JOBS=1 (auto: 2 CPUs)\n",
        )
        .unwrap();
        let added = log_recorded_jobs(&log, d).unwrap();
        assert_eq!(added.len(), 1, "{added:?}");
        assert!(
            added[0].starts_with("forge-jobs: build-torch MAX_JOBS=2 (auto: 2 CPUs) [recorded")
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.ends_with("served from the cache in this build]\n"),
            "{text}"
        );
        // a second call adds nothing
        assert!(log_recorded_jobs(&log, d).unwrap().is_empty());
    }

    use super::*;
    use tempfile::NamedTempFile;

    #[test]
    fn unsafe_tar_paths_are_refused() {
        assert!(safe_relative(Path::new("torch-2.9.whl")));
        assert!(safe_relative(Path::new("./a/b.whl")));
        assert!(!safe_relative(Path::new("../x.whl")));
        assert!(!safe_relative(Path::new("/etc/passwd")));
        assert!(!safe_relative(Path::new("a/../../x")));
    }

    /// A tar of `entries`, in a temp file removed when the returned guard drops.
    fn tar_with(entries: &[(&str, &[u8], tar::EntryType, Option<&str>)]) -> NamedTempFile {
        let t = tempfile::Builder::new()
            .prefix("forge-wheeltar-")
            .suffix(".tar")
            .tempfile()
            .unwrap();
        let mut b = tar::Builder::new(t.reopen().unwrap());
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
        t
    }

    #[test]
    fn extracts_wheels_with_checksums_and_refuses_escapes() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-wheels-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
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
        let w = extract_wheels(t.path(), dir, Cancel::detached()).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].size, 13);
        assert_eq!(w[0].sha256, hex(&Sha256::digest(b"PK-not-really")));
        assert!(dir.join("torch-2.9.1-cp312-linux_x86_64.whl").is_file());
        assert!(!dir.join("hosts").exists());
        let t = tar_with(&[("../evil.whl", b"x", tar::EntryType::Regular, None)]);
        assert!(
            extract_wheels(t.path(), dir, Cancel::detached())
                .unwrap_err()
                .to_string()
                .contains("unsafe path")
        );
        let t = tar_with(&[("a.whl", b"", tar::EntryType::Symlink, Some("/etc/passwd"))]);
        assert!(
            extract_wheels(t.path(), dir, Cancel::detached())
                .unwrap_err()
                .to_string()
                .contains("link")
        );
    }
}
