//! A small HTTP/1.1 client for the server test: one request a connection, JSON bodies, plain,
//! `Content-Length` and chunked responses, the body handed over as it arrives (for the streamed
//! completion's first-token latency). Every read waits at most 100 ms, so a deadline and the
//! cancel flag are honoured while a server is silent.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// Send one request to `host:port`; `on_body` sees each decoded piece of the body with the
/// milliseconds since the request was sent. Errors are words for the evidence.
#[allow(clippy::too_many_arguments)]
pub fn call(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
    cancel: &AtomicBool,
    on_body: &mut dyn FnMut(&[u8], f64),
) -> Result<Reply, String> {
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: */*\r\n"
    );
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.set_write_timeout(Some(timeout))
        .and_then(|()| s.write_all(req.as_bytes()))
        .map_err(|e| format!("send {method} {path}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;

    let mut raw = Vec::new();
    let mut head: Option<(u16, Option<usize>, bool, usize)> = None; // status, length, chunked, body start
    let mut body_out = Vec::new();
    let mut consumed = 0usize; // bytes of the raw body decoded so far
    let mut buf = [0u8; 16 * 1024];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no complete answer within {:.0} s{}",
                timeout.as_secs_f64(),
                if head.is_some() {
                    " (headers came, the body did not end)"
                } else {
                    ""
                }
            ));
        }
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("read the answer: {e}")),
        };
        let eof = n == 0;
        raw.extend_from_slice(&buf[..n]);
        if head.is_none() {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&raw[..end]).into_owned();
                let mut lines = text.lines();
                let status = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|c| c.parse::<u16>().ok())
                    .ok_or_else(|| {
                        format!(
                            "not an HTTP answer: {}",
                            crate::monitor::diagnose::clip(&text, 80)
                        )
                    })?;
                let mut len = None;
                let mut chunked = false;
                for l in lines {
                    if let Some((k, v)) = l.split_once(':') {
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                        if k == "content-length" {
                            len = v.parse().ok();
                        } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                            chunked = true;
                        }
                    }
                }
                head = Some((status, len, chunked, end + 4));
            } else if eof {
                return Err(if raw.is_empty() {
                    "the connection closed with no answer".into()
                } else {
                    "the connection closed inside the headers".into()
                });
            } else {
                continue;
            }
        }
        let (status, len, chunked, start) = head.expect("set above");
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let data = &raw[start..];
        let mut done = false;
        if chunked {
            loop {
                let rest = &data[consumed..];
                let Some(eol) = find(rest, b"\r\n") else {
                    break;
                };
                let size_text = String::from_utf8_lossy(&rest[..eol]);
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| format!("bad chunk size `{size_text}`"))?;
                if size == 0 {
                    done = true;
                    break;
                }
                if rest.len() < eol + 2 + size + 2 {
                    break;
                }
                let piece = &rest[eol + 2..eol + 2 + size];
                on_body(piece, ms);
                body_out.extend_from_slice(piece);
                consumed += eol + 2 + size + 2;
            }
        } else {
            let piece = &data[consumed..];
            if !piece.is_empty() {
                on_body(piece, ms);
                body_out.extend_from_slice(piece);
                consumed = data.len();
            }
            done = len.is_some_and(|l| consumed >= l);
        }
        if done || eof {
            if !done && (chunked || len.is_some_and(|l| consumed < l)) {
                return Err(format!(
                    "the connection closed after {} bytes of the body (HTTP {status})",
                    body_out.len()
                ));
            }
            return Ok(Reply {
                status,
                body: body_out,
                ms: t0.elapsed().as_secs_f64() * 1e3,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static [&'static [u8]], pause: Duration) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 4096];
            let _ = c.read(&mut b);
            for part in answer {
                c.write_all(part).unwrap();
                c.flush().unwrap();
                std::thread::sleep(pause);
            }
        });
        port
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
        let r = call(
            "127.0.0.1",
            port,
            "POST",
            "/x",
            Some(&serde_json::json!({"a": 1})),
            Duration::from_secs(5),
            &AtomicBool::new(false),
            &mut |p, ms| pieces.push((p.to_vec(), ms)),
        )
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
        let e = call(
            "127.0.0.1",
            port,
            "GET",
            "/",
            None,
            Duration::from_millis(500),
            &AtomicBool::new(false),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            e.contains("within") && t.elapsed() < Duration::from_millis(1200),
            "{e}"
        );
        let port = serve_once(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            Duration::ZERO,
        );
        let e = call(
            "127.0.0.1",
            port,
            "GET",
            "/",
            None,
            Duration::from_secs(5),
            &AtomicBool::new(false),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(e.contains("closed after 3 bytes"), "{e}");
    }
}
