//! forge's error type: what failed, what forge was doing, and a hint when there is a fix.
//!
//! Every error maps to exit code 2 ("forge could not run"); failed checks are not errors,
//! they are findings with exit code 1.

use std::fmt;
use std::path::PathBuf;

/// Result alias used across forge.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem found in a recipe, with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeProblem {
    /// 1-based line in the recipe file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// forge's error: everything that stops forge from running (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recipe could not be read or is invalid.
    #[error("{}", render_recipe(origin, problems))]
    Recipe {
        /// The file (or shipped recipe name) the problems are in.
        origin: String,
        /// Every problem found, in file order.
        problems: Vec<RecipeProblem>,
    },
    /// A file could not be read or written.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What forge was doing (`read`, `create`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The user asked for something that cannot be done as asked.
    #[error("{message}")]
    Usage {
        /// What was wrong.
        message: String,
        /// What to do instead.
        hint: Option<String>,
    },
    /// The Docker engine could not be reached or refused a request.
    #[error("docker engine: {message}")]
    Engine {
        /// What failed.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A SIGINT or SIGTERM asked forge to stop (exit 130 or 143).
    #[error("interrupted by {}", signal_name(*signal))]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// Input (a log, a wheel) is malformed.
    #[error("{message}")]
    Input {
        /// What is wrong with the input.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
}

fn render_recipe(origin: &str, problems: &[RecipeProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match p.line {
            Some(line) => out.push_str(&format!("{origin}:{line}: {}", p.message)),
            None => out.push_str(&format!("{origin}: {}", p.message)),
        }
        if let Some(h) = &p.hint {
            out.push_str(&format!("\n  hint: {h}"));
        }
    }
    out
}

impl Error {
    /// Shorthand for an I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a usage error with an optional hint.
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// Shorthand for an input error with an optional hint.
    pub fn input(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Input {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    /// The hint to print after the message, if any (recipe hints are inline).
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Usage { hint, .. } | Error::Engine { hint, .. } | Error::Input { hint, .. } => {
                hint.as_deref()
            }
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::ReadOnlyFilesystem => Some(
                    "that filesystem is mounted read-only: pass a writable place (`--artifacts DIR`, `-o PATH`)",
                ),
                std::io::ErrorKind::PermissionDenied => Some(
                    "forge may not write or read there: fix the permissions or pass another place",
                ),
                std::io::ErrorKind::StorageFull => {
                    Some("the disk is full: free space, or pass a place on a bigger disk")
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The exit status this error ends forge with: 130/143 for a signal, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted { signal } => signal_exit_code(*signal),
            _ => 2,
        }
    }
}

/// Wrapper so `main` can print an error and its hint uniformly.
pub struct Rendered<'a>(pub &'a Error);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.0)?;
        if let Some(h) = self.0.hint() {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// A signal's name for messages (`cancel` feeds [`Error::Interrupted`]; the name lives here so
/// that the error does not depend on the cancel).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The exit status for a signal: 128 + its number, as a shell reports it (130 SIGINT, 143 SIGTERM).
pub fn signal_exit_code(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(130)
}
