//! The one writer of forge's output: results on stdout (the table, or JSON with `--json`),
//! progress and diagnostics on stderr; `-q` silences progress, never a failure.

use std::io::Write;

use crate::report::Outcome;

/// How output is shown.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// JSON on stdout.
    pub json: bool,
    /// Verbosity (0 normal).
    pub verbose: u8,
    /// Only errors.
    pub quiet: bool,
}

impl Ui {
    /// Human text to stderr, unless quiet.
    pub fn say(&self, text: &str) {
        if !self.quiet {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = e.write_all(b"\n");
            }
        }
    }

    /// A failure's finding, fix or error: stderr, even with `-q`.
    pub fn alert(&self, text: &str) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = e.write_all(b"\n");
        }
    }

    /// The command's result as text: stdout (with `--json` the JSON is the result instead).
    pub fn result(&self, text: &str) {
        if !self.json {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
        }
    }

    /// Print a command's outcome: the table on stderr, JSON on stdout with `--json`.
    pub fn emit(&self, outcome: &Outcome) -> u8 {
        self.say(&outcome.render_text());
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, &outcome.to_json());
            let _ = out.write_all(b"\n");
        }
        outcome.exit_code()
    }
}
