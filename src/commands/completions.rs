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
    clap_complete::generate(shell, &mut cmd, "forge", &mut std::io::stdout());
    Ok(0)
}
