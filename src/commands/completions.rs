//! `forge completions SHELL`: the shell completion script (clap_complete).

use super::prelude::*;
use crate::cli::Cli;

/// Run it.
pub fn run(ui: &Ui, shell: clap_complete::Shell) -> Result<u8> {
    if ui.json {
        return Err(Error::usage(
            "`forge completions` prints a shell script, not JSON",
            Some("drop `--json`: `forge completions bash > /etc/bash_completion.d/forge`"),
        ));
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "forge", &mut script);
    // A closed pipe (`forge completions bash | head`) is the reader's choice, not an error.
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("write", "<stdout>", e))
        }
        _ => Ok(0),
    }
}
