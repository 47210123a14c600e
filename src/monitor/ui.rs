//! How `forge watch` shows progress: an indicatif bar on a terminal, plain timestamped lines
//! otherwise (CI logs, pipes), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::rules::Monitor;
use super::tail::Observer;

/// Estimated time left from the ninja rate seen so far.
#[derive(Debug, Default)]
pub struct Eta {
    first: Option<(Instant, u64)>,
}

impl Eta {
    /// Seconds left, once two progress points have been seen.
    pub fn update(&mut self, done: u64, total: u64) -> Option<Duration> {
        let now = Instant::now();
        let (t0, d0) = *self.first.get_or_insert((now, done));
        if done < d0 {
            self.first = Some((now, done));
            return None;
        }
        let dt = now.duration_since(t0).as_secs_f64();
        let dd = (done - d0) as f64;
        (dd > 0.0 && dt > 0.5)
            .then(|| Duration::from_secs_f64((total.saturating_sub(done)) as f64 * dt / dd))
    }
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The display.
pub struct Display {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
    eta: Eta,
    last_plain: Option<(Instant, super::rules::Stage, u64)>,
    started: Instant,
}

impl Display {
    /// A display for stderr; `verbose` also shows the log's lines as they arrive.
    pub fn new(quiet: bool, verbose: bool) -> Display {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Display {
            bar,
            quiet,
            verbose: verbose && !quiet,
            eta: Eta::default(),
            last_plain: None,
            started: Instant::now(),
        }
    }

    /// Remove the bar before the final report.
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Display {
    fn update(&mut self, m: &Monitor) {
        if self.quiet {
            return;
        }
        let (done, total) = m.progress.map_or((0, 0), |p| (p.done, p.total));
        let eta = (total > 0).then(|| self.eta.update(done, total)).flatten();
        let mut msg = format!(
            "{} | {} lines, {} of log",
            m.phase,
            m.lines,
            crate::units::mb(m.bytes)
        );
        if total > 0 {
            msg.push_str(&format!(
                " | ninja {done}/{total} ({:.1}%)",
                done as f64 * 100.0 / total as f64
            ));
            if let Some(e) = eta {
                msg.push_str(&format!(" | ETA {}", hms(e)));
            }
        }
        if let Some(s) = &m.step {
            msg.push_str(&format!(" | {}", super::line::clip(s, 60)));
        }
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => {
                let now = Instant::now();
                let due = match self.last_plain {
                    None => true,
                    Some((t, phase, d)) => {
                        phase != m.phase
                            || now.duration_since(t) >= Duration::from_secs(30)
                            || (total > 0 && (done - d.min(done)) * 100 >= total * 5)
                    }
                };
                if due {
                    eprintln!("[{}] {msg}", hms(now.duration_since(self.started)));
                    self.last_plain = Some((now, m.phase, done));
                }
            }
        }
    }

    fn output(&mut self, bytes: &[u8]) {
        if !self.verbose {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches('\n');
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn note(&mut self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("[{}] {msg}", hms(self.started.elapsed())),
        }
    }
}
