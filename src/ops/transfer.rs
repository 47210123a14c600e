//! An image moved from one engine to another in one stream: the source engine's image tar
//! (`GET /images/{name}/get`, what `docker save` writes) fed into the other engine's
//! `POST /images/load` as it arrives, hashed on the way, with progress; nothing is written to
//! disk. Two threads, one bounded channel between them (16 pieces): the slower engine sets the
//! pace and memory stays flat whatever the image's size.
//!
//! The loaded image is judged by its id: the receiving engine computes it from the image config
//! it loaded, after checking every layer against the config's diff ids, so the same id is the
//! same image. A broken stream on either side aborts the upload (the reader's error goes into the
//! request body), so the receiver loads nothing; forge then checks that it holds no image of
//! that id under the tag, and removes one if it does.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::engine::{Engine, EngineInfo};
use crate::error::{Error, Result};

/// What a transfer did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transferred {
    /// The image as named (a tag or an id).
    pub image: String,
    /// Its id, the same on both engines.
    pub id: String,
    /// Bytes streamed (0 when the receiver already held the image).
    pub bytes: u64,
    /// SHA256 of the stream as it passed (empty when nothing was streamed).
    pub sha256: String,
    /// Wall seconds, export and load together.
    pub seconds: f64,
    /// The receiver held the image already: nothing was streamed.
    pub already: bool,
}

impl Transferred {
    /// One line: `3.1 GB in 41.0 s (75.6 MB/s), stream sha256 ab12..., same id sha256:...`.
    pub fn describe(&self) -> String {
        if self.already {
            return format!("already held by the receiving engine as {}", self.id);
        }
        format!(
            "{} in {:.1} s ({:.1} MB/s), stream SHA256 {}; loaded with the same id {}",
            crate::units::size(self.bytes),
            self.seconds,
            self.bytes as f64 / self.seconds.max(1e-3) / 1e6,
            self.sha256,
            self.id
        )
    }
}

/// A piece of the stream, or the reason it broke.
enum Piece {
    Data(Vec<u8>),
    Broken(String),
}

/// The receiving side of the channel as a reader (what `load_image` takes).
struct Pipe {
    rx: Receiver<Piece>,
    buf: Vec<u8>,
    pos: usize,
}

impl Pipe {
    fn new(rx: Receiver<Piece>) -> Pipe {
        Pipe {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Piece::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(Piece::Broken(why)) => return Err(std::io::Error::other(why)),
                // the sender is gone after a whole stream
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The engine in words, for messages: `build engine box (ID ABCD:...)`.
pub fn engine_words(role: &str, info: Option<&EngineInfo>) -> String {
    match info {
        Some(i) => format!(
            "{role} engine {} at {}{}",
            i.name.as_deref().unwrap_or("?"),
            i.host,
            i.id.as_deref()
                .map(|id| format!(" (engine ID {id})"))
                .unwrap_or_default()
        ),
        None => format!("{role} engine"),
    }
}

/// Move `image` from `from` into `to`; `progress` gets a line every few seconds.
pub fn transfer(
    from: &dyn Engine,
    to: &dyn Engine,
    image: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Transferred> {
    let started = Instant::now();
    let id = from.image_id(image)?.ok_or_else(|| Error::Engine {
        message: format!("the sending engine has no image `{image}`"),
        hint: Some("`docker images` on that engine lists what it has".into()),
    })?;
    if to.image_id(image)?.as_deref() == Some(id.as_str()) {
        return Ok(Transferred {
            image: image.to_owned(),
            id,
            bytes: 0,
            sha256: String::new(),
            seconds: started.elapsed().as_secs_f64(),
            already: true,
        });
    }
    let total = from.image_size(&id).unwrap_or(0);
    let (tx, rx) = sync_channel::<Piece>(16);
    let pipe = Pipe::new(rx);
    let mut hasher = sha2::Sha256::new();
    let (sent, loaded) = std::thread::scope(|s| {
        let loader = s.spawn(move || to.load_image(Box::new(pipe)));
        let sent = send(from, image, &tx, &mut hasher, total, started, progress);
        if let Err(e) = &sent {
            // the upload must break, not end: a short archive is never offered as whole
            let _ = tx.send(Piece::Broken(format!(
                "the sending engine's stream broke: {e}"
            )));
        }
        drop(tx);
        let loaded = loader.join().expect("the loader does not panic");
        (sent, loaded)
    });
    let judged = judge(to, image, &id, sent, loaded);
    if judged.is_err() {
        remove_partial(to, image, &id);
    }
    let bytes = judged?;
    Ok(Transferred {
        image: image.to_owned(),
        id,
        bytes,
        sha256: crate::atomic::hex(&hasher.finalize()),
        seconds: started.elapsed().as_secs_f64(),
        already: false,
    })
}

/// Stream the image into the channel, hashing it, with a progress line every 5 s.
fn send(
    from: &dyn Engine,
    image: &str,
    tx: &SyncSender<Piece>,
    hasher: &mut sha2::Sha256,
    total: u64,
    started: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<u64> {
    let mut n = 0u64;
    let mut said = Instant::now();
    from.export_image(image, &mut |piece| {
        hasher.update(piece);
        n += piece.len() as u64;
        tx.send(Piece::Data(piece.to_vec()))
            .map_err(|_| Error::Engine {
                message: "the receiving engine stopped reading the image".into(),
                hint: None,
            })?;
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-3) / 1e6;
            progress(&format!(
                "transfer: {}{} ({rate:.1} MB/s)",
                crate::units::size(n),
                if total > 0 {
                    format!(" of about {}", crate::units::size(total))
                } else {
                    String::new()
                }
            ));
        }
        Ok(())
    })
}

/// The transfer's outcome from both sides: the bytes sent, or why it failed.
fn judge(
    to: &dyn Engine,
    image: &str,
    id: &str,
    sent: Result<u64>,
    loaded: Result<Vec<String>>,
) -> Result<u64> {
    let hint = "nothing was loaded: check both engines (`docker info` against each) and run again";
    let bytes = match (sent, loaded) {
        (Ok(n), Ok(_)) => n,
        (Err(e @ Error::Interrupted { .. }), _) => return Err(e),
        // the receiver's failure is the cause when it stopped reading first
        (Err(_), Err(e)) | (Ok(_), Err(e)) => {
            return Err(Error::Engine {
                message: format!("the receiving engine did not load `{image}`: {e}"),
                hint: Some(hint.into()),
            });
        }
        (Err(e), Ok(_)) => {
            return Err(Error::Engine {
                message: format!("the sending engine's stream of `{image}` broke: {e}"),
                hint: Some(hint.into()),
            });
        }
    };
    match to.image_id(image)? {
        Some(got) if got == id => Ok(bytes),
        got => Err(Error::Engine {
            message: format!(
                "after the load the receiving engine's `{image}` is {}, not {id}",
                got.as_deref().unwrap_or("missing")
            ),
            hint: Some("the stream did not carry the image it was asked for: run again".into()),
        }),
    }
}

/// After a failed transfer: the receiver must not keep a wrong or partial image under the tag.
fn remove_partial(to: &dyn Engine, image: &str, id: &str) {
    if let Ok(Some(got)) = to.image_id(image)
        && got != id
        && image.contains(':')
        && !image.starts_with("sha256:")
    {
        // a tag now naming something else than what was sent: untag it (the engine keeps
        // an image another tag still names)
        let _ = to.remove_image(image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{Act, FakeEngine};

    const BASE: &str = "forge-test-base:trixie";

    fn engines() -> (FakeEngine, FakeEngine) {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine/good");
        (
            FakeEngine::new(&dir),
            FakeEngine::new(&dir).without_images(),
        )
    }

    #[test]
    fn an_image_moves_in_one_stream_with_its_id_and_once() {
        let (from, to) = engines();
        let id = from
            .image_id(BASE)
            .unwrap()
            .expect("the recording holds the base");
        let mut lines = Vec::new();
        let t = transfer(&from, &to, BASE, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(!t.already);
        assert_eq!(t.id, id);
        assert_eq!(to.image_id(BASE).unwrap().as_deref(), Some(id.as_str()));
        let mut whole = Vec::new();
        from.export_image(BASE, &mut |p| {
            whole.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(t.bytes, whole.len() as u64);
        assert_eq!(t.sha256, crate::atomic::hex(&sha2::Sha256::digest(&whole)));
        assert!(t.describe().contains(&id), "{}", t.describe());
        // the receiver holds it now: nothing streams again
        let again = transfer(&from, &to, BASE, &mut |_| {}).unwrap();
        assert!(again.already && again.bytes == 0, "{again:?}");
        assert_eq!(
            to.calls()
                .iter()
                .filter(|c| c.starts_with("load_image"))
                .count(),
            1
        );
    }

    #[test]
    fn a_sender_dying_mid_stream_loads_nothing() {
        let (from, to) = engines();
        let mut armed = true;
        from.script(move |p| {
            (armed && p.method == "export_image" && p.after == Some(2)).then(|| {
                armed = false;
                Act::Fail("connection reset by peer".into())
            })
        });
        let e = transfer(&from, &to, BASE, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sending engine") && e.contains("connection reset"),
            "{e}"
        );
        assert!(to.images().is_empty(), "nothing half-loaded");
    }

    #[test]
    fn a_receiver_refusing_the_load_is_said_as_the_receivers() {
        let (from, to) = engines();
        to.at_call(
            "load_image",
            None,
            1,
            Act::Fail("no space left on device".into()),
        );
        let e = transfer(&from, &to, BASE, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("receiving engine did not load") && e.contains("no space left"),
            "{e}"
        );
        assert!(to.images().is_empty());
    }

    #[test]
    fn ctrl_c_mid_stream_is_an_interruption_and_loads_nothing() {
        let (from, to) = engines();
        from.cancel_after_piece(1);
        let e = transfer(&from, &to, BASE, &mut |_| {}).unwrap_err();
        assert!(matches!(e, Error::Interrupted { .. }), "{e}");
        assert!(to.images().is_empty());
    }

    #[test]
    fn a_missing_image_is_said_before_anything_streams() {
        let (from, to) = engines();
        let e = transfer(&from, &to, "nosuch:tag", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuch:tag"), "{e}");
        assert!(!to.calls().iter().any(|c| c.starts_with("load_image")));
    }

    #[test]
    fn the_pipe_reads_the_pieces_in_order_and_breaks_with_the_reason() {
        let (tx, rx) = sync_channel(4);
        let mut p = Pipe::new(rx);
        tx.send(Piece::Data(b"abc".to_vec())).unwrap();
        tx.send(Piece::Data(Vec::new())).unwrap();
        tx.send(Piece::Data(b"de".to_vec())).unwrap();
        tx.send(Piece::Broken("engine gone".into())).unwrap();
        let mut out = [0u8; 2];
        let mut got = Vec::new();
        loop {
            match p.read(&mut out) {
                Ok(0) => panic!("a broken stream must not end cleanly"),
                Ok(n) => got.extend_from_slice(&out[..n]),
                Err(e) => {
                    assert!(e.to_string().contains("engine gone"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(got, b"abcde");
        let (tx, rx) = sync_channel(1);
        let mut p = Pipe::new(rx);
        tx.send(Piece::Data(b"x".to_vec())).unwrap();
        drop(tx);
        let mut all = Vec::new();
        p.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"x", "a whole stream ends cleanly");
    }
}
