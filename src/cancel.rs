//! One cancel for the whole process (the pipeline's, and every command's that holds something to
//! clean up): a SIGINT/SIGTERM hook installed once at start feeds a token every phase checks
//! (build stream, wheel extraction, image probe, runtime and serve containers, HTTP requests,
//! export).
//!
//! The hook is signal-hook's: its handlers only store into atomics (async-signal-safe). Until a
//! command says it checks the token ([`cooperate`]) a signal ends forge at once with 128 +
//! signal; after that the first signal sets the token, and a second one ends the process at once
//! with 128 + signal, as a shell user expects from a second Ctrl-C. Long waits look at the token
//! ([`Cancel::wait`]) so a cancel is seen within [`POLL`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The signal that asked for a stop (0: none yet).
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// Set by the hook once a first signal arrived: the next one exits at once.
static SEEN: AtomicBool = AtomicBool::new(false);
/// True until the command checks the token: until then a signal exits at once.
static UNCOOPERATIVE: AtomicBool = AtomicBool::new(true);

/// How often waits look at the token.
pub const POLL: Duration = Duration::from_millis(25);

/// Say that this command checks the token: until then a signal ends forge at once with
/// 128 + signal (the commands that hold nothing to clean up: `scan`, `diagnose`, `watch`).
pub fn cooperate() {
    UNCOOPERATIVE.store(false, Ordering::SeqCst);
}

/// Install the hook for SIGINT and SIGTERM. Idempotent.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            let status = 128 + sig;
            // In this order (signal-hook runs a signal's actions in the order registered): exit
            // when the command does not cooperate or a signal came before, then record this one.
            let registered =
                signal_hook::flag::register_conditional_shutdown(sig, status, &UNCOOPERATIVE)
                    .and_then(|_| {
                        signal_hook::flag::register_conditional_shutdown(sig, status, &SEEN)
                    })
                    .and_then(|_| signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize))
                    .and_then(|_| signal_hook::flag::register(sig, &SEEN));
            // Only a forbidden signal fails to register; SIGINT and SIGTERM are not.
            registered.expect("SIGINT and SIGTERM can be hooked");
        }
    });
}

/// A cancel token: every phase and every long wait looks at it. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Cancel(&'static AtomicUsize);

impl Default for Cancel {
    fn default() -> Self {
        Cancel::process()
    }
}

impl Cancel {
    /// The process's token, fed by the SIGINT/SIGTERM hook ([`install`]).
    pub fn process() -> Cancel {
        Cancel(&SIGNAL)
    }

    /// A token of its own, never fed by a signal (tests, a scripted fake engine's Ctrl-C).
    pub fn detached() -> Cancel {
        Cancel(Box::leak(Box::new(AtomicUsize::new(0))))
    }

    /// The signal that asked forge to stop, if any (`SIGINT` = 2, `SIGTERM` = 15).
    pub fn signal(self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(self) -> bool {
        self.signal().is_some()
    }

    /// Ask for a stop as if `sig` arrived.
    pub fn request(self, sig: i32) {
        self.0
            .store(usize::try_from(sig).unwrap_or(0), Ordering::SeqCst);
    }

    /// `Err(Interrupted)` once a stop was asked for: `cancel.check()?` at every safe point.
    pub fn check(self) -> crate::Result<()> {
        match self.signal() {
            Some(signal) => Err(crate::Error::Interrupted { signal }),
            None => Ok(()),
        }
    }

    /// The error of a stop that was asked for ([`crate::Error::Interrupted`] with its signal),
    /// once a wait ended because of it.
    pub fn interrupted(self) -> crate::Error {
        crate::Error::Interrupted {
            signal: self.signal().unwrap_or(libc::SIGINT),
        }
    }

    /// Resolves once a stop is asked for (polls every [`POLL`]); for `select!` in async waits.
    pub async fn wait(self) -> i32 {
        loop {
            if let Some(s) = self.signal() {
                return s;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The exit status for a signal: 130 for SIGINT, 143 for SIGTERM.
pub use crate::error::signal_exit_code as exit_code;

/// The signal's name for messages.
pub use crate::error::signal_name as name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }

    #[test]
    fn a_detached_token_is_its_own() {
        let c = Cancel::detached();
        assert!(c.check().is_ok());
        c.request(libc::SIGTERM);
        assert!(matches!(
            c.check(),
            Err(crate::Error::Interrupted { signal: 15 })
        ));
        assert!(!Cancel::detached().requested());
    }
}
