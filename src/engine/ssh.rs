//! `ssh://` engines, reached as the docker CLI reaches them: every HTTP connection is one
//! `ssh [-l user] [-p port] -- host docker system dial-stdio` child, and HTTP goes over its
//! stdin and stdout (the far side's docker CLI relays it to its engine's socket).
//!
//! Why not bollard's `ssh` feature: it goes through the `openssh` crate, which starts a
//! ControlMaster session per connection, cannot take a port or ssh options from forge, and
//! reports a refused key as a bare mux error. Why not `ssh -L sock:/var/run/docker.sock`: it needs
//! the far side's socket path (rootless engines differ), `AllowStreamLocalForwarding`, and a
//! local socket file to clean up. `dial-stdio` needs only a docker CLI on the far side, which an
//! engine host has; it honours the user's `~/.ssh/config`, agent and known hosts, as `docker` does.
//!
//! Options: `BatchMode=yes` (a password prompt would hang a build; keys come from the agent or
//! the config) and a connect timeout; `FORGE_SSH_OPTS` adds options (`-F FILE`, `-i KEY`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::{Error, Result};

/// Extra ssh options (whitespace-separated), read here only.
pub const SSH_OPTS_VAR: &str = "FORGE_SSH_OPTS";

/// The destination of an ssh engine.
#[derive(Debug, Clone)]
pub struct Dest {
    /// `-l user`.
    pub user: Option<String>,
    /// The host.
    pub host: String,
    /// `-p port`.
    pub port: Option<u16>,
    /// The far side's engine socket, when not the default.
    pub socket: Option<String>,
}

impl Dest {
    /// ssh's arguments up to the remote command, then `docker [--host unix://S] <cmd...>`.
    pub fn args(&self, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
            .map(str::to_owned)
            .to_vec();
        if let Ok(extra) = std::env::var(SSH_OPTS_VAR) {
            a.extend(extra.split_whitespace().map(str::to_owned));
        }
        if let Some(u) = &self.user {
            a.extend(["-l".to_owned(), u.clone()]);
        }
        if let Some(p) = self.port {
            a.extend(["-p".to_owned(), p.to_string()]);
        }
        a.extend(["--".to_owned(), self.host.clone(), "docker".to_owned()]);
        if let Some(s) = &self.socket {
            a.extend(["--host".to_owned(), format!("unix://{s}")]);
        }
        a.extend(cmd.iter().map(|c| (*c).to_owned()));
        a
    }

    /// `user@host:port`, for messages.
    pub fn show(&self) -> String {
        format!(
            "{}{}{}",
            self.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.host,
            self.port.map(|p| format!(":{p}")).unwrap_or_default()
        )
    }

    /// `-p PORT user@host`: the destination as an `ssh` command line takes it, for hints.
    pub fn command_line(&self) -> String {
        let who = format!(
            "{}{}",
            self.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.host
        );
        match self.port {
            Some(p) => format!("-p {p} {who}"),
            None => who,
        }
    }
}

/// Opens one `dial-stdio` child per connection.
#[derive(Clone)]
struct Connector {
    args: Arc<Vec<String>>,
}

/// One connection: the child's stdout (read) and stdin (write). Dropping it kills the child.
struct Conn {
    io: TokioIo<tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>>,
    _child: tokio::process::Child,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let args = self.args.clone();
        Box::pin(async move {
            let mut child = tokio::process::Command::new("ssh")
                .args(args.iter())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                // what went wrong is asked again by `diagnose`, with its stderr kept
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(io::Error::other("ssh child without pipes"));
            };
            Ok(Conn {
                io: TokioIo::new(tokio::io::join(stdout, stdin)),
                _child: child,
            })
        })
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for Conn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// A bollard client whose connections are `dial-stdio` children of ssh.
pub fn connect(dest: &Dest) -> Result<bollard::Docker> {
    let connector = Connector {
        args: Arc::new(dest.args(&["system", "dial-stdio"])),
    };
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // an idle child is an idle ssh session: let it go soon
        .pool_idle_timeout(Duration::from_secs(20))
        .build(connector);
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        // the host part is never dialled: the connector is the ssh child
        Some("http://ssh-engine"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| Error::Engine {
        message: format!("ssh engine {}: {e}", dest.show()),
        hint: None,
    })
}

/// Why the ssh engine did not answer: `docker version` run through the same ssh, its stderr's
/// last line, with what to do about the usual causes.
pub fn diagnose(dest: &Dest, timeout: Duration) -> (String, String) {
    let args = dest.args(&["version", "--format", "{{.Server.Version}}"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let shown = format!(
        "ssh {}",
        argv.iter()
            .map(|a| super::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let why = match crate::tool::run("ssh", &argv, timeout) {
        crate::tool::ToolRun::Missing => "no `ssh` client on this machine".to_owned(),
        crate::tool::ToolRun::TimedOut => format!("`{shown}` did not finish within {timeout:?}"),
        crate::tool::ToolRun::Failed(e) => format!("`ssh` could not start: {e}"),
        crate::tool::ToolRun::Exited {
            code: 0, stdout, ..
        } => format!(
            "ssh and the far side's docker work (engine {}), but `docker system dial-stdio` did not",
            stdout.trim()
        ),
        crate::tool::ToolRun::Exited { code, stderr, .. } => {
            let last = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message")
                .to_owned();
            format!("`{shown}` exited {code}: {last}")
        }
    };
    let hint = if why.contains("Permission denied") {
        format!(
            "the key was refused: forge runs ssh in batch mode (no password prompt), so the key must \
             be in the agent (`ssh-add`) or named in ~/.ssh/config or {SSH_OPTS_VAR}=\"-i KEY\", and \
             its public half in {}'s ~/.ssh/authorized_keys",
            dest.user.as_deref().unwrap_or("the remote user")
        )
    } else if why.contains("Host key verification failed") {
        format!(
            "ssh does not know the host's key: connect once by hand (`ssh {}`) to accept it",
            dest.command_line()
        )
    } else if why.contains("docker: command not found") || why.contains("not found") {
        "the far side has no `docker` CLI on the PATH of a non-interactive ssh session: install \
         it there (Debian: docker.io or docker-cli)"
            .to_owned()
    } else if why.contains("permission denied")
        || why.contains("Cannot connect to the Docker daemon")
    {
        "the far side's docker cannot reach its engine as that user: start the engine there, or \
         add the user to the docker group"
            .to_owned()
    } else {
        format!(
            "check that `ssh {} docker version` works from this machine without a prompt \
             (host name, port, firewall, sshd running)",
            dest.command_line()
        )
    };
    (why, hint)
}
