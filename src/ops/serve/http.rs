//! The server test's HTTP client: hyper's HTTP/1.1 client connection (hyper is already compiled
//! for bollard), one request a connection, JSON bodies, the body handed over as it arrives (for
//! the streamed completion's first-token latency). hyper parses the answer (status line,
//! `Content-Length`, chunked encoding); this module only keeps the time and the evidence.
//!
//! A request ends within its timeout, and at once when the cancel token is triggered: the
//! server's answer, good or bad, is evidence ([`Answer`]); a stop asked by SIGINT or SIGTERM is
//! forge's [`Error::Interrupted`].

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The whole body (chunked encoding removed).
    pub body: Vec<u8>,
    /// Milliseconds from sending to the end of the body.
    pub ms: f64,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the server answered, or what went wrong with the exchange, in words for the evidence.
pub type Answer = std::result::Result<Reply, String>;

/// One request: method, path and JSON body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`.
    pub method: &'a str,
    /// `/v1/models`.
    pub path: &'a str,
    /// The JSON body, if any.
    pub body: Option<&'a serde_json::Value>,
}

/// An error and its causes, `a: b: c` (hyper's own message is short: "error reading a body from
/// connection"; its cause says what was wrong).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// Send `req` to `host:port`; `on_body` sees each piece of the body with the milliseconds since
/// the request was sent. `Ok(Err(words))` when the server could not be reached, gave no complete
/// answer within `timeout` or a malformed one; `Err` only when `cancel` asked forge to stop.
pub fn call(
    host: &str,
    port: u16,
    req: Request<'_>,
    timeout: Duration,
    cancel: Cancel,
    on_body: &mut dyn FnMut(&[u8], f64),
) -> Result<Answer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start runtime", "tokio", e))?;
    let headers_came = Cell::new(false);
    rt.block_on(async {
        tokio::select! {
            a = tokio::time::timeout(timeout, exchange(host, port, req, &headers_came, on_body)) => {
                Ok(a.unwrap_or_else(|_| Err(format!(
                    "no complete answer within {:.0} s{}",
                    timeout.as_secs_f64(),
                    if headers_came.get() { " (headers came, the body did not end)" } else { "" }
                ))))
            }
            _ = cancel.wait() => Err(cancel.interrupted()),
        }
    })
}

/// Connect, send, read the answer to its end.
async fn exchange(
    host: &str,
    port: u16,
    req: Request<'_>,
    headers_came: &Cell<bool>,
    on_body: &mut dyn FnMut(&[u8], f64),
) -> Answer {
    let (method, path) = (req.method, req.path);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {}", chain(&e)))?;
    // The connection is driven beside the request; it ends with the answer (or the runtime).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::ACCEPT, "*/*");
    if req.body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let payload = req.body.map(|b| b.to_string()).unwrap_or_default();
    let request = builder
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("{method} {path}: not a request: {e}"))?;
    let t0 = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method} {path}: {}", chain(&e)))?;
    headers_came.set(true);
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            format!(
                "the body broke off after {} bytes (HTTP {status}): {}",
                out.len(),
                chain(&e)
            )
        })?;
        if let Ok(data) = frame.into_data() {
            on_body(&data, t0.elapsed().as_secs_f64() * 1e3);
            out.extend_from_slice(&data);
        }
    }
    Ok(Reply {
        status,
        body: out,
        ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn serve_once(answer: &'static [&'static [u8]], pause: Duration) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 4096];
            let _ = c.read(&mut b);
            for part in answer {
                if c.write_all(part).and_then(|()| c.flush()).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        });
        port
    }

    const GET: Request<'static> = Request {
        method: "GET",
        path: "/",
        body: None,
    };

    fn get(port: u16, timeout: Duration) -> Answer {
        call(
            "127.0.0.1",
            port,
            GET,
            timeout,
            Cancel::detached(),
            &mut |_, _| {},
        )
        .expect("not interrupted")
    }

    #[test]
    fn chunked_body_arrives_in_pieces_with_times() {
        let port = serve_once(
            &[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"6\r\ndata: \r\n",
                b"3\r\nabc\r\n0\r\n\r\n",
            ],
            Duration::from_millis(150),
        );
        let mut pieces = Vec::new();
        let body = serde_json::json!({"a": 1});
        let req = Request {
            method: "POST",
            path: "/x",
            body: Some(&body),
        };
        let r = call(
            "127.0.0.1",
            port,
            req,
            Duration::from_secs(5),
            Cancel::detached(),
            &mut |p, ms| pieces.push((p.to_vec(), ms)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "data: abc");
        assert_eq!(pieces.len(), 2);
        assert!(pieces[1].1 > pieces[0].1 + 100.0, "{pieces:?}");
    }

    #[test]
    fn silent_server_times_out_and_closed_body_is_an_error() {
        let port = serve_once(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            Duration::from_millis(1500),
        );
        let t = Instant::now();
        let e = get(port, Duration::from_millis(500)).unwrap_err();
        assert!(
            e.contains("within")
                && e.contains("headers came")
                && t.elapsed() < Duration::from_millis(1200),
            "{e}"
        );
        let port = serve_once(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            Duration::ZERO,
        );
        let e = get(port, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("broke off after 3 bytes (HTTP 200)"), "{e}");
    }

    /// Issue 18: the hand-written client this module replaced panicked on a chunk size of
    /// 2^64 - 1 (an overflow in debug builds, a slice index out of range in release). hyper takes
    /// it as a size, delivers what came and names the short body; a size past 64 bits is named.
    #[test]
    fn issue_18_a_chunk_size_of_2_pow_64_minus_1_is_an_error_not_a_panic() {
        let port = serve_once(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n"],
            Duration::ZERO,
        );
        let e = get(port, Duration::from_secs(5)).unwrap_err();
        assert!(
            e.contains("the body broke off after 10 bytes (HTTP 200)"),
            "{e}"
        );
        assert!(
            e.contains("end of file before message length reached"),
            "{e}"
        );
        let port = serve_once(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n"],
            Duration::ZERO,
        );
        let e = get(port, Duration::from_secs(5)).unwrap_err();
        assert!(
            e.contains("after 0 bytes (HTTP 200)") && e.contains("chunk size"),
            "{e}"
        );
    }

    #[test]
    fn the_cancel_token_stops_a_silent_request_as_interrupted() {
        let port = serve_once(&[b"HTTP/1.1 200 OK\r\n"], Duration::from_secs(5));
        let cancel = Cancel::detached();
        let t = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cancel.request(libc::SIGTERM);
        });
        let r = call(
            "127.0.0.1",
            port,
            GET,
            Duration::from_secs(30),
            cancel,
            &mut |_, _| {},
        );
        assert!(
            matches!(
                r,
                Err(Error::Interrupted {
                    signal: libc::SIGTERM
                })
            ),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn a_refused_connection_says_so() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = get(port, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("refused"), "{e}");
    }
}
