//! Following a log that another process writes: `forge watch`.
//!
//! Waits for the log to be created, follows appends with notify (the directory is watched, so
//! truncation, replacement and rotation are seen; a timed poll backs it up where notify cannot
//! work), feeds the monitor, and on the first fatal finding stops the writer's process group:
//! SIGINT, then SIGTERM, then SIGKILL, each after the grace period.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::Watcher;

use super::rules::{Expect, Finding, Monitor};
use super::scan::{CHUNK, LineFeeder};
use crate::error::{Error, Result};

/// How `forge watch` behaves.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The writer's process: stopped on a fatal finding; its exit ends the watch.
    pub pid: Option<i32>,
    /// Time given to each signal before the next, harder one.
    pub grace: Duration,
    /// Longest wait between two looks at the file (the fallback when no event comes).
    pub poll: Duration,
    /// Do not use notify at all: poll every `poll`.
    pub poll_only: bool,
}

/// Why the watch ended.
#[derive(Debug, Clone)]
pub enum WatchEnd {
    /// A fatal finding; the process was signalled (the signals sent are listed).
    Fatal {
        /// The finding.
        finding: Finding,
        /// Signals sent, in order (`SIGINT to group 1234`).
        signals: Vec<String>,
    },
    /// The watched process exited with no fatal finding.
    ProcessExited,
}

/// What a progress display is told after each look at the log.
pub trait Observer {
    /// The monitor after new data.
    fn update(&mut self, monitor: &Monitor);
    /// A message for the human (log appeared, truncated, ...).
    fn note(&mut self, msg: &str);
    /// Raw log output as it arrives (shown with `-v`).
    fn output(&mut self, _bytes: &[u8]) {}
}

/// Whether `pid` is alive (a zombie counts as exited).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

fn wait_exit(pid: i32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !alive(pid)
}

/// Stop `pid` and its process group: SIGINT, then SIGTERM, then SIGKILL, waiting `grace` after
/// each. Returns the signals sent. The whole group is signalled only when `pid` leads it (a
/// shell job, a `setsid` build): a process that merely sits in its caller's group (a script
/// without job control, a wrapper like `timeout`) gets the signals alone, so forge never takes
/// down the script that started it.
pub fn stop_process(pid: i32, grace: Duration) -> Vec<String> {
    // SAFETY: plain syscalls on integers.
    let pgid = unsafe { libc::getpgid(pid) };
    let mine = unsafe { libc::getpgrp() };
    let (target, what) = if pgid == pid && pgid != mine {
        (-pgid, format!("group {pgid}"))
    } else {
        (pid, format!("process {pid}"))
    };
    let mut sent = Vec::new();
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        if !alive(pid) {
            break;
        }
        // SAFETY: sending a signal to a pid or group.
        unsafe { libc::kill(target, sig) };
        sent.push(format!("{name} to {what}"));
        if wait_exit(pid, grace) {
            break;
        }
    }
    sent
}

struct Followed {
    file: File,
    ino: u64,
    dev: u64,
    offset: u64,
    /// The last bytes read (up to [`TAIL`]), to see a log truncated and rewritten past the
    /// old end between two looks: its size alone does not show it.
    tail: Vec<u8>,
}

const TAIL: usize = 64;

impl Followed {
    /// Whether the bytes before `offset` are no longer the ones read there.
    fn rewritten(&self) -> bool {
        use std::os::unix::fs::FileExt;
        if self.tail.is_empty() {
            return false;
        }
        let mut now = vec![0u8; self.tail.len()];
        let at = self.offset - self.tail.len() as u64;
        match self.file.read_exact_at(&mut now, at) {
            Ok(()) => now != self.tail,
            Err(_) => true,
        }
    }

    fn remember(&mut self, read: &[u8]) {
        if read.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&read[read.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(read);
            let extra = self.tail.len().saturating_sub(TAIL);
            self.tail.drain(..extra);
        }
    }
}

/// Follow `path` until a fatal finding or the end of `opts.pid`.
pub fn watch(
    path: &Path,
    expect: Expect,
    opts: &WatchOptions,
    observer: &mut dyn Observer,
) -> Result<(WatchEnd, Monitor)> {
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::input(
            format!(
                "cannot watch `{}`: directory `{}` does not exist",
                path.display(),
                dir.display()
            ),
            Some("create the directory, or pass the path the build writes its log to"),
        ));
    }
    let (_watcher, rx) = dir_watcher(&dir, opts, observer);

    let mut feeder = LineFeeder::new(Monitor::new(expect.clone()));
    let mut cur: Option<Followed> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut announced_wait = false;
    loop {
        // (Re)open: the log appeared, or was replaced or rotated under the same name.
        match std::fs::metadata(path) {
            Ok(meta) => {
                let replaced = cur
                    .as_ref()
                    .is_some_and(|c| c.ino != meta.ino() || c.dev != meta.dev());
                if replaced {
                    // Drain what the old file still had, then switch.
                    if let Some(c) = cur.as_mut()
                        && let Some(end) = drain(c, &mut feeder, &mut buf, path, observer)?
                    {
                        return Ok(stop(end, feeder, opts, observer));
                    }
                    observer.note(&format!(
                        "{} was replaced: following the new file from its start",
                        path.display()
                    ));
                    feeder = LineFeeder::new(Monitor::new(expect.clone()));
                    cur = None;
                }
                if cur.is_none() {
                    if announced_wait {
                        observer.note(&format!("{} appeared", path.display()));
                    }
                    cur = Some(Followed::open(path, &meta)?);
                }
                let c = cur.as_mut().expect("opened above");
                if c.restart_if_truncated(path, &meta, observer)? {
                    feeder = LineFeeder::new(Monitor::new(expect.clone()));
                }
                if let Some(finding) = drain(c, &mut feeder, &mut buf, path, observer)? {
                    return Ok(stop(finding, feeder, opts, observer));
                }
                observer.update(&feeder.monitor);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !announced_wait && cur.is_none() {
                    observer.note(&format!("waiting for {} to appear", path.display()));
                    announced_wait = true;
                }
            }
            Err(e) => {
                return Err(Error::input(
                    format!("cannot read `{}`: {e}", path.display()),
                    Some("check the log's permissions"),
                ));
            }
        }
        if let Some(pid) = opts.pid
            && !alive(pid)
        {
            // One last look: the writer may have written its last lines just before exiting.
            if let Some(c) = cur.as_mut()
                && let Some(finding) = drain(c, &mut feeder, &mut buf, path, observer)?
            {
                return Ok(stop(finding, feeder, opts, observer));
            }
            if cur.is_none() {
                return Err(Error::input(
                    format!(
                        "process {pid} exited and `{}` never appeared",
                        path.display()
                    ),
                    Some("check the log path the build writes to"),
                ));
            }
            return Ok(writer_exited(feeder, observer));
        }
        // Sleep until the directory changes or the poll interval passes; swallow the burst.
        let _ = rx.recv_timeout(opts.poll);
        while rx.try_recv().is_ok() {}
    }
}

/// The writer exited: the last partial line judged, a fatal finding among all the lines is the
/// end, else the process's exit.
fn writer_exited(mut feeder: LineFeeder, observer: &mut dyn Observer) -> (WatchEnd, Monitor) {
    feeder.finish();
    observer.update(&feeder.monitor);
    if let Some(f) = feeder.monitor.fatal().cloned() {
        return (
            WatchEnd::Fatal {
                finding: f,
                signals: Vec::new(),
            },
            feeder.monitor,
        );
    }
    (WatchEnd::ProcessExited, feeder.monitor)
}

/// A watcher of `dir` that sends on every change, or none (polling: `--poll`, or notify
/// unavailable, which is said).
fn dir_watcher(
    dir: &Path,
    opts: &WatchOptions,
    observer: &mut dyn Observer,
) -> (Option<notify::RecommendedWatcher>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let watcher = if opts.poll_only {
        Err(notify::Error::generic("--poll given"))
    } else {
        notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.send(());
        })
        .and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        })
    };
    match watcher {
        Ok(w) => (Some(w), rx),
        Err(e) => {
            observer.note(&format!(
                "notify unavailable ({e}); polling every {:?}",
                opts.poll
            ));
            (None, rx)
        }
    }
}

impl Followed {
    /// Open the log at `path` (whose metadata is `meta`) from its start.
    fn open(path: &Path, meta: &std::fs::Metadata) -> Result<Followed> {
        let file = File::open(path).map_err(|e| {
            Error::input(
                format!("cannot read `{}`: {e}", path.display()),
                Some("check the log's permissions"),
            )
        })?;
        Ok(Followed {
            file,
            ino: meta.ino(),
            dev: meta.dev(),
            offset: 0,
            tail: Vec::new(),
        })
    }

    /// Truncated (shorter than read so far) or rewritten past the old end: back to the start,
    /// said; returns whether it was (the monitor then starts afresh).
    fn restart_if_truncated(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        observer: &mut dyn Observer,
    ) -> Result<bool> {
        let shorter = meta.len() < self.offset;
        if !(shorter || self.rewritten()) {
            return Ok(false);
        }
        observer.note(&format!(
            "{} was truncated ({} -> {} bytes{}): following it from its start",
            path.display(),
            self.offset,
            meta.len(),
            if shorter {
                ""
            } else {
                ", rewritten past the old end"
            }
        ));
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", path, e))?;
        self.offset = 0;
        self.tail.clear();
        Ok(true)
    }
}

fn stop(
    finding: Finding,
    feeder: LineFeeder,
    opts: &WatchOptions,
    observer: &mut dyn Observer,
) -> (WatchEnd, Monitor) {
    observer.update(&feeder.monitor);
    let signals = opts
        .pid
        .map(|pid| stop_process(pid, opts.grace))
        .unwrap_or_default();
    (WatchEnd::Fatal { finding, signals }, feeder.monitor)
}

/// Read everything new; returns the first fatal finding it raised, if any.
fn drain(
    c: &mut Followed,
    feeder: &mut LineFeeder,
    buf: &mut [u8],
    path: &Path,
    observer: &mut dyn Observer,
) -> Result<Option<Finding>> {
    loop {
        let n = match c.file.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read log", path, e)),
        };
        if c.rewritten() {
            // Truncated and rewritten between the last look and this read: what was just read
            // is the middle of the new content. Start again from its beginning.
            observer.note(&format!(
                "{} was truncated and rewritten while being read: following it from its start",
                path.display()
            ));
            c.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("seek", path, e))?;
            c.offset = 0;
            c.tail.clear();
            *feeder = LineFeeder::new(feeder.monitor.fresh());
            continue;
        }
        c.offset += n as u64;
        c.remember(&buf[..n]);
        observer.output(&buf[..n]);
        let before = feeder.monitor.findings.len();
        if feeder.push(&buf[..n]) > 0
            && let Some(f) = feeder.monitor.findings[before..]
                .iter()
                .filter(|f| f.severity == crate::recipe::Severity::Fatal)
                .min_by_key(|f| (super::diagnose::rank(&f.id), f.line))
        {
            return Ok(Some(f.clone()));
        }
    }
}
