//! One cancel for the whole process (the pipeline's, and every command's that holds something to
//! clean up): a SIGINT/SIGTERM hook installed once at start feeds a
//! token every phase checks (build stream, wheel extraction, image probe, export).
//!
//! The handler only stores the signal number (async-signal-safe); a second signal while the
//! first is being handled ends the process at once with 128 + signal, as a shell user expects
//! from a second Ctrl-C. Long waits poll the token ([`wait`]) so a cancel is seen within
//! [`POLL`].

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static COOPERATIVE: AtomicBool = AtomicBool::new(false);

/// How often waits look at the token.
pub const POLL: Duration = Duration::from_millis(25);

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0 || !COOPERATIVE.load(Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Say that this command checks the token: until then a signal ends forge at once with
/// 128 + signal (the commands that hold nothing to clean up: `scan`, `diagnose`, `watch`).
pub fn cooperate() {
    COOPERATIVE.store(true, Ordering::SeqCst);
}

/// Install the hook for SIGINT and SIGTERM. Idempotent.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain handler that only touches an atomic (and `_exit`s).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// A cancel token: every phase and every long wait looks at it. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Cancel(&'static AtomicI32);

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
        Cancel(Box::leak(Box::new(AtomicI32::new(0))))
    }

    /// The signal that asked forge to stop, if any (`SIGINT` = 2, `SIGTERM` = 15).
    pub fn signal(self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(self) -> bool {
        self.signal().is_some()
    }

    /// Ask for a stop as if `sig` arrived.
    pub fn request(self, sig: i32) {
        self.0.store(sig, Ordering::SeqCst);
    }

    /// `Err(Interrupted)` once a stop was asked for: `cancel.check()?` at every safe point.
    pub fn check(self) -> crate::Result<()> {
        match self.signal() {
            Some(signal) => Err(crate::Error::Interrupted { signal }),
            None => Ok(()),
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
