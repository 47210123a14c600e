//! The compressor: pieces of a stream -> independent gzip members or zstd frames, made on
//! every core, written in order and hashed on the way.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use super::{Format, hex};
use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// Uncompressed bytes per gzip member (one unit of parallel work).
pub const BLOCK: usize = 4 << 20;

/// A sink for pieces of the stream.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Compress `input` pieces to `out` with `threads` workers; returns (bytes in, bytes out, sha256).
/// `produce` is called once and feeds the pieces through the given function.
///
/// The output depends only on the input and `level`: members are cut every [`BLOCK`] bytes
/// whatever the thread count, and each member's gzip header has mtime 0 and no name, so one
/// image gives one archive SHA256. Any stage failing ends all of them: a write error (full
/// disk) drops the writer's receiver, the workers' sends fail and they exit, their shared job
/// receiver is dropped with the last of them, and the producer's next send fails; the writer's
/// error is the one reported.
pub fn gzip_parallel(
    out: &mut (dyn Write + Send),
    level: u32,
    threads: usize,
    cancel: Cancel,
    produce: &mut dyn FnMut(&mut Sink<'_>) -> Result<u64>,
) -> Result<(u64, u64, String)> {
    compress_parallel(out, Format::Gz, level, threads, cancel, produce)
}

/// One block compressed as a self-contained member (a gzip member with mtime 0, a zstd frame),
/// in slices so that `aborted` is seen within one slice's compression; `None` when aborted.
fn compress_block(
    block: &[u8],
    format: Format,
    level: u32,
    aborted: &dyn Fn() -> bool,
) -> Option<std::io::Result<Vec<u8>>> {
    fn feed<W: Write>(
        enc: &mut W,
        block: &[u8],
        aborted: &dyn Fn() -> bool,
    ) -> Option<std::io::Result<()>> {
        for slice in block.chunks(256 << 10) {
            if aborted() {
                return None;
            }
            if let Err(e) = enc.write_all(slice) {
                return Some(Err(e));
            }
        }
        Some(Ok(()))
    }
    let buf = Vec::with_capacity(block.len() / 2);
    match format {
        Format::Gz => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(buf, flate2::Compression::new(level));
            Some(feed(&mut enc, block, aborted)?.and_then(|()| enc.finish()))
        }
        Format::Zst => {
            let mut enc = match zstd::stream::write::Encoder::new(buf, level as i32) {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            Some(feed(&mut enc, block, aborted)?.and_then(|()| enc.finish()))
        }
    }
}

/// A worker: blocks from the job queue compressed until the queue ends, the writer is gone or
/// the producer failed.
fn worker(
    jobs: &std::sync::Mutex<mpsc::Receiver<(u64, Vec<u8>)>>,
    done: &mpsc::SyncSender<(u64, std::io::Result<Vec<u8>>)>,
    format: Format,
    level: u32,
    aborted: &dyn Fn() -> bool,
) {
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((i, block)) = job else { break };
        if aborted() {
            break;
        }
        let Some(r) = compress_block(&block, format, level, aborted) else {
            return;
        };
        if done.send((i, r)).is_err() {
            break;
        }
    }
}

/// The writer: members written in their order, hashed as written; `Ok(None)` when it stopped
/// on the producer's failure. Returns (bytes written, SHA256).
fn write_in_order(
    done: mpsc::Receiver<(u64, std::io::Result<Vec<u8>>)>,
    out: &mut (dyn Write + Send),
    aborted: &dyn Fn() -> bool,
) -> Result<Option<(u64, String)>> {
    let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut next = 0u64;
    let mut hash = Sha256::new();
    let mut written = 0u64;
    for (i, r) in done {
        if aborted() {
            return Ok(None);
        }
        let member = r.map_err(|e| Error::io("compress", "<image stream>", e))?;
        pending.insert(i, member);
        while let Some(m) = pending.remove(&next) {
            hash.update(&m);
            out.write_all(&m)
                .map_err(|e| Error::io("write", "<archive>", e))?;
            written += m.len() as u64;
            next += 1;
        }
    }
    out.flush()
        .map_err(|e| Error::io("write", "<archive>", e))?;
    Ok(Some((written, hex(&hash.finalize()))))
}

/// [`gzip_parallel`] in `format`: members that concatenate into one valid stream (gzip members,
/// zstd frames), with the same ordering, determinism and cancel behaviour.
pub fn compress_parallel(
    out: &mut (dyn Write + Send),
    format: Format,
    level: u32,
    threads: usize,
    cancel: Cancel,
    produce: &mut dyn FnMut(&mut Sink<'_>) -> Result<u64>,
) -> Result<(u64, u64, String)> {
    let threads = threads.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
    let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, std::io::Result<Vec<u8>>)>(threads * 2);
    // Set when the producer failed (engine gone, SIGINT): queued blocks are dropped, not
    // compressed and written, so a cancel ends the export within one block's compression.
    let abort = std::sync::atomic::AtomicBool::new(false);
    let abort = &abort;
    let aborted = || abort.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (std::sync::Arc::clone(&job_rx), done_tx.clone());
            s.spawn(move || worker(&job_rx, &done_tx, format, level, &aborted));
        }
        // Only the workers hold the job receiver: when the last one ends, sends fail.
        drop(job_rx);
        drop(done_tx);
        // The writer: members in order, hashed as written.
        // The writer returns `Ok(None)` when it stopped on an abort.
        let writer = s.spawn(move || write_in_order(done_rx, out, &aborted));
        let mut block = Vec::with_capacity(BLOCK);
        let mut index = 0u64;
        let tx = job_tx;
        let stopped = || Error::input("the compressor stopped", None);
        let fed = produce(&mut |mut piece: &[u8]| {
            while !piece.is_empty() {
                let take = (BLOCK - block.len()).min(piece.len());
                block.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if block.len() == BLOCK {
                    let mut job = (
                        index,
                        std::mem::replace(&mut block, Vec::with_capacity(BLOCK)),
                    );
                    // A full queue is waited on with the cancel token in view.
                    loop {
                        match tx.try_send(job) {
                            Ok(()) => break,
                            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
                            Err(mpsc::TrySendError::Full(j)) => {
                                cancel.check()?;
                                job = j;
                                std::thread::sleep(std::time::Duration::from_millis(2));
                            }
                        }
                    }
                    index += 1;
                }
            }
            Ok(())
        });
        let last = if fed.is_ok() && !block.is_empty() {
            tx.send((index, block)).map_err(|_| stopped())
        } else {
            Ok(())
        };
        if fed.is_err() {
            abort.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        drop(tx);
        let written = writer.join().expect("writer thread does not panic");
        // The writer's error first: it is the cause when the producer saw a stopped compressor.
        let Some((written, sha)) = written? else {
            return Err(fed.expect_err("the writer stops early only on the producer's error"));
        };
        let fed = fed?;
        last?;
        Ok((fed, written, sha))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parallel_members_decompress_to_the_input_in_order() {
        let input: Vec<u8> = (0..(BLOCK * 3 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        let (fed, written, sha) = gzip_parallel(&mut out, 6, 3, Cancel::detached(), &mut |sink| {
            for piece in input.chunks(100_000) {
                sink(piece)?;
            }
            Ok(input.len() as u64)
        })
        .unwrap();
        assert_eq!(fed, input.len() as u64);
        assert_eq!(written, out.len() as u64);
        assert_eq!(sha, hex(&Sha256::digest(&out)));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
    }
    /// Writes `room` bytes, then fails as a full disk does.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Regression (issue 11): a full disk hung the export for ever (the producer blocked on a
    /// job queue nobody read once the writer had failed).
    #[test]
    fn a_full_disk_ends_every_stage_with_the_write_error() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = FullDisk { room: 100_000 };
            let noise: Vec<u8> = (0..1u32 << 20)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let r = gzip_parallel(&mut out, 1, 2, Cancel::detached(), &mut |sink| {
                // An endless stream: only the failure can end it.
                loop {
                    sink(&noise)?;
                }
            });
            let _ = tx.send(r);
        });
        // A hang detector, not a timing: 3.4 s of CPU, 18 s on a 2-core machine at load 11.
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the export ended instead of hanging");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("No space left"), "{e}");
    }

    #[test]
    fn the_archive_does_not_depend_on_the_thread_count() {
        let input: Vec<u8> = (0..(BLOCK * 2 + 999)).map(|i| (i % 13) as u8).collect();
        let run = |threads| {
            let mut out = Vec::new();
            gzip_parallel(&mut out, 6, threads, Cancel::detached(), &mut |sink| {
                sink(&input)?;
                Ok(input.len() as u64)
            })
            .unwrap();
            out
        };
        let one = run(1);
        assert_eq!(one, run(4));
        // gzip header: magic, method, flags 0, mtime 0 (bytes 4..8)
        assert_eq!(&one[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_failing_stream_is_an_error() {
        let mut out = Vec::new();
        let r = gzip_parallel(&mut out, 6, 2, Cancel::detached(), &mut |sink| {
            sink(&[1u8; 1000])?;
            Err(Error::input("engine went away", None))
        });
        assert!(r.unwrap_err().to_string().contains("engine went away"));
    }

    #[test]
    fn zstd_frames_concatenate_and_the_engine_gate_reads_versions() {
        let input: Vec<u8> = (0..(BLOCK * 2 + 999)).map(|i| (i % 13) as u8).collect();
        let mut out = Vec::new();
        compress_parallel(
            &mut out,
            Format::Zst,
            3,
            2,
            Cancel::detached(),
            &mut |sink| {
                sink(&input)?;
                Ok(input.len() as u64)
            },
        )
        .unwrap();
        assert_eq!(zstd::decode_all(&out[..]).unwrap(), input);
        assert!(!crate::ops::export::engine_loads_zstd("20.10.24+dfsg1"));
        assert!(crate::ops::export::engine_loads_zstd("23.0.0"));
        assert!(crate::ops::export::engine_loads_zstd("27.3.1"));
        assert!(!crate::ops::export::engine_loads_zstd("garbage"));
    }
}
