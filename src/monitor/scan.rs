//! Splitting a byte stream into lines for the monitor, and one pass over a finished log.
//!
//! Memory is flat whatever the log: the file is read in fixed chunks, complete lines are fed
//! straight from the read buffer, and only a partial last line is carried over, capped at
//! [`MAX_LINE`] (a 10 MB line keeps its first 64 KiB for matching, the rest is counted, not kept).

use std::io::Read;
use std::path::Path;

use super::rules::{Expect, MAX_LINE, Monitor};
use crate::error::{Error, Result};

/// Feeds arbitrary byte pieces (reads, BuildKit log messages) to a [`Monitor`] as whole lines.
pub struct LineFeeder {
    /// The monitor fed.
    pub monitor: Monitor,
    carry: Vec<u8>,
    /// Bytes of the current partial line dropped past [`MAX_LINE`].
    dropped: u64,
}

impl LineFeeder {
    /// A feeder around a monitor.
    pub fn new(monitor: Monitor) -> LineFeeder {
        LineFeeder {
            monitor,
            carry: Vec::new(),
            dropped: 0,
        }
    }

    /// Feed a piece; returns how many findings it added.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let mut added = 0;
        let Some(last_nl) = memchr::memrchr(b'\n', data) else {
            self.keep(data);
            return 0;
        };
        let mut rest = &data[..=last_nl];
        if !self.carry.is_empty() || self.dropped > 0 {
            let first_nl = memchr::memchr(b'\n', rest).expect("has a newline");
            self.keep(&rest[..=first_nl]);
            let mut line = std::mem::take(&mut self.carry);
            // A clipped line lost its newline with the rest: put one back, and count the
            // dropped bytes (that newline among them) once.
            let added_newline = !line.ends_with(b"\n");
            if added_newline {
                line.push(b'\n');
            }
            self.monitor.bytes += self.dropped - u64::from(added_newline);
            self.dropped = 0;
            added += self.monitor.feed(&line);
            line.clear();
            self.carry = line;
            rest = &rest[first_nl + 1..];
        }
        if !rest.is_empty() {
            added += self.monitor.feed(rest);
        }
        self.keep(&data[last_nl + 1..]);
        added
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.carry.len());
        let take = part.len().min(room);
        self.carry.extend_from_slice(&part[..take]);
        self.dropped += (part.len() - take) as u64;
    }

    /// End of stream: feed the last partial line and close the summary.
    pub fn finish(&mut self) -> usize {
        let mut added = 0;
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.monitor.bytes += self.dropped;
            self.dropped = 0;
            added += self.monitor.feed(&line);
        }
        added + self.monitor.finish()
    }
}

/// Read size for scans.
pub const CHUNK: usize = 1 << 20;

/// Scan a finished log in one pass; `-` reads standard input (as `forge diagnose -` does).
pub fn scan_file(path: &Path, expect: Expect) -> Result<Monitor> {
    if path == Path::new("-") {
        return scan_reader(&mut std::io::stdin().lock(), Path::new("<stdin>"), expect);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open log", path, e))?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(Error::input(
            format!("`{}` is a directory, not a log", path.display()),
            Some("pass the build log file, e.g. artifacts/<run>/build.log"),
        ));
    }
    scan_reader(&mut f, path, expect)
}

/// Scan a log read from `r` (named `name` in errors) in one pass, in fixed chunks.
pub fn scan_reader(r: &mut dyn Read, name: &Path, expect: Expect) -> Result<Monitor> {
    let mut feeder = LineFeeder::new(Monitor::new(expect));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read log", name, e)),
        };
        feeder.push(&buf[..n]);
    }
    feeder.finish();
    Ok(feeder.monitor)
}
