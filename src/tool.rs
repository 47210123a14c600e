//! Host subprocesses (rocminfo, ...) through duct, always with a timeout, output kept.

use std::time::Duration;

/// How a tool run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRun {
    /// The program is not installed (not on PATH).
    Missing,
    /// It ran past the timeout and was killed.
    TimedOut,
    /// It could not be started for another reason.
    Failed(String),
    /// It exited.
    Exited {
        /// Exit code (-1 when killed by a signal).
        code: i32,
        /// Standard output, lossily decoded.
        stdout: String,
        /// Standard error, lossily decoded.
        stderr: String,
    },
}

/// Run `program args...` with a timeout, capturing both streams.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> ToolRun {
    run_expr(duct::cmd(program, args), timeout)
}

/// [`run`] in the working directory `dir`.
pub fn run_in(dir: &std::path::Path, program: &str, args: &[&str], timeout: Duration) -> ToolRun {
    run_expr(duct::cmd(program, args).dir(dir), timeout)
}

fn run_expr(expr: duct::Expression, timeout: Duration) -> ToolRun {
    let handle = match expr
        .stdout_capture()
        .stderr_capture()
        .stdin_null()
        .unchecked()
        .start()
    {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ToolRun::Missing,
        Err(e) => return ToolRun::Failed(e.to_string()),
    };
    match handle.wait_timeout(timeout) {
        Ok(Some(out)) => ToolRun::Exited {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(None) => {
            let _ = handle.kill();
            ToolRun::TimedOut
        }
        Err(e) => ToolRun::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_timeout_and_exit() {
        assert_eq!(
            run("forge-no-such-tool", &[], Duration::from_secs(1)),
            ToolRun::Missing
        );
        assert_eq!(
            run("sleep", &["5"], Duration::from_millis(200)),
            ToolRun::TimedOut
        );
        match run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(5),
        ) {
            ToolRun::Exited {
                code,
                stdout,
                stderr,
            } => {
                assert_eq!((code, stdout.trim(), stderr.trim()), (3, "out", "err"));
            }
            other => panic!("{other:?}"),
        }
    }
}
