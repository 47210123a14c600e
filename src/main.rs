//! forge's entry point: parse the CLI, run, map the result to an exit code (0/1/2).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    forge::pipeline::cancel::install();
    let cli = forge::cli::Cli::parse();
    let json = cli.json;
    match forge::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", forge::error::Rendered(&e));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&e.to_json()).unwrap_or_default()
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}
