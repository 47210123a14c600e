//! A container's port reached from forge's host without publishing it on the engine's host
//! (issue 22, phase 6 on a remote engine): a listener on 127.0.0.1 here, and for each connection
//! to it a relay process started in the container through the engine's API (`docker exec -i`),
//! which joins its stdin and stdout to `127.0.0.1:PORT` inside the container. The bytes travel
//! on the connection forge already has to the engine (ssh, or TLS with client certificates);
//! nothing listens on the engine host's network, and nothing needs a route from forge's host to
//! the engine host's published ports.
//!
//! The relay is a few lines of Python: a vLLM image has python3 (the server is Python). An image
//! without it cannot be reached this way: the connection closes at once and the relay's own
//! error is kept for the check's evidence ([`DockerEngine::forward_errors`]).
//!
//! Starting a relay costs a round trip or two to the engine (an ssh session for the exec, its
//! create and start, python's start): 0.3-0.6 s per request over ssh on one machine. So the
//! next connections' relays are started ahead (four), and each connects to the server only when
//! the first bytes of a request arrive: a request's time (the first-token latency of a stream
//! included) then holds the relay's in-container connect, not its start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::DockerEngine;
use crate::error::{Error, Result};

/// Relays kept started ahead: phase 6 asks five requests in a row, each a new connection.
const AHEAD: usize = 4;

/// What the relay runs: `python3 -c RELAY PORT`.
const RELAY: &str = r#"import socket, sys, threading
i = sys.stdin.buffer.raw
first = i.read(65536)
if not first:
    sys.exit(0)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(first)
def up():
    while True:
        d = i.read(65536)
        if not d:
            break
        s.sendall(d)
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=up, daemon=True).start()
o = sys.stdout.buffer
while True:
    d = s.recv(65536)
    if not d:
        break
    o.write(d)
    o.flush()
"#;

/// What the relays of one forward said on stderr, or why they did not start, newest last.
type Errors = Arc<Mutex<Vec<String>>>;

/// An open forward: the local port, the sender whose drop ends the listener, its relays' errors.
type Open = (u16, tokio::sync::watch::Sender<()>, Errors);

/// The open forwards of one engine, by (container, port).
#[derive(Default)]
pub(super) struct Forwards {
    open: Mutex<HashMap<(String, u16), Open>>,
}

impl DockerEngine {
    /// A port on 127.0.0.1 here that reaches container `id`'s port `port` through the engine.
    /// The same one when asked again; it closes when the container is removed.
    pub(super) fn forward(&self, id: &str, port: u16) -> Result<u16> {
        let mut open = self.forwards.open.lock().expect("forwards");
        if let Some((local, _, _)) = open.get(&(id.to_owned(), port)) {
            return Ok(*local);
        }
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .map_err(|e| Error::io("listen on", "127.0.0.1", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("listen on", "127.0.0.1", e))?
            .port();
        let (stop, mut stopped) = tokio::sync::watch::channel(());
        let errors = Errors::default();
        let (docker, container, said) = (self.docker.clone(), id.to_owned(), Arc::clone(&errors));
        self.rt.spawn(async move {
            let warm = || tokio::spawn(start_relay(docker.clone(), container.clone(), port));
            // the relays for the next connections, started ahead
            let mut ready: std::collections::VecDeque<_> = (0..AHEAD).map(|_| warm()).collect();
            loop {
                tokio::select! {
                    // the sender is dropped when the container is removed
                    _ = stopped.changed() => break,
                    a = listener.accept() => match a {
                        Ok((conn, _)) => {
                            let relay = ready.pop_front().unwrap_or_else(warm);
                            ready.push_back(warm());
                            tokio::spawn(pump(relay, conn, Arc::clone(&said)));
                        }
                        Err(_) => break,
                    },
                }
            }
            // an unused relay reads end-of-input once dropped, and exits without connecting
            for r in ready {
                r.abort();
            }
        });
        open.insert((id.to_owned(), port), (local, stop, errors));
        Ok(local)
    }

    /// Close the forwards of container `id`.
    pub(super) fn close_forwards(&self, id: &str) {
        self.forwards
            .open
            .lock()
            .expect("forwards")
            .retain(|(c, _), _| c != id);
    }

    /// What the relays to container `id` said on stderr or why they did not start, for
    /// evidence.
    pub fn forward_errors(&self, id: &str) -> Vec<String> {
        let open = self.forwards.open.lock().expect("forwards");
        open.iter()
            .filter(|((c, _), _)| c == id)
            .flat_map(|(_, (_, _, e))| e.lock().expect("errors").clone())
            .collect()
    }
}

/// A relay's exec, started and attached.
type Relay = (
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
                + Send,
        >,
    >,
    std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
);

/// Start a relay process in the container (it waits for its first input before connecting).
async fn start_relay(
    docker: bollard::Docker,
    id: String,
    port: u16,
) -> std::result::Result<Relay, String> {
    let cmd = vec![
        "python3".to_owned(),
        "-c".to_owned(),
        RELAY.to_owned(),
        port.to_string(),
    ];
    let exec = docker
        .create_exec(
            &id,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("the relay to port {port} could not be made: {e}"))?;
    match docker.start_exec(&exec.id, None).await {
        Ok(StartExecResults::Attached { output, input }) => Ok((output, input)),
        Ok(StartExecResults::Detached) => Err(format!("the relay to port {port} detached")),
        Err(e) => Err(format!("the relay to port {port} did not start: {e}")),
    }
}

/// One connection through its relay: bytes both ways until the server closes.
async fn pump(
    ready: tokio::task::JoinHandle<std::result::Result<Relay, String>>,
    conn: tokio::net::TcpStream,
    errors: Errors,
) {
    let note = |e: String| errors.lock().expect("errors").push(e);
    let (mut output, mut input) = match ready.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return note(e),
        Err(_) => return,
    };
    let (mut rd, mut wr) = conn.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rd, &mut input).await;
        let _ = input.shutdown().await;
    });
    let mut err = Vec::new();
    while let Some(Ok(piece)) = output.next().await {
        let passed = match piece {
            LogOutput::StdOut { message } => wr.write_all(&message).await.is_ok(),
            LogOutput::StdErr { message } => {
                err.extend_from_slice(&message);
                true
            }
            _ => true,
        };
        if !passed {
            break;
        }
    }
    // what the relay said is noted before the client sees the end, so it can read it
    let err = String::from_utf8_lossy(&err);
    if let Some(last) = err.lines().rfind(|l| !l.trim().is_empty()) {
        note(format!(
            "the relay in the container (python3) said: {}",
            last.trim()
        ));
    }
    let _ = wr.shutdown().await;
    up.abort();
}
