//! `forge export`: the engine's image stream -> gzip (blocks compressed on every core, written
//! as concatenated gzip members, which `gzip -d`, `docker load` and every gzip reader accept) ->
//! a `.part` file, SHA256 of the compressed bytes computed on the way, renamed only when
//! complete, then a `<hex>  <name>` checksum file (what `sha256sum -c` reads). One pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Uncompressed bytes per gzip member (one unit of parallel work).
pub const BLOCK: usize = 4 << 20;

/// What an export produced.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    /// The archive.
    pub archive: PathBuf,
    /// Its checksum file.
    pub sha256_file: PathBuf,
    /// SHA256 of the archive, hex.
    pub sha256: String,
    /// Uncompressed image tar size.
    pub tar_bytes: u64,
    /// Archive size.
    pub gz_bytes: u64,
    /// Seconds.
    pub seconds: f64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A sink for pieces of the stream.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Compress `input` pieces to `out` with `threads` workers; returns (bytes in, bytes out, sha256).
/// `produce` is called once and feeds the pieces through the given function.
pub fn gzip_parallel(
    out: &mut (dyn Write + Send),
    level: u32,
    threads: usize,
    produce: &mut dyn FnMut(&mut Sink<'_>) -> Result<u64>,
) -> Result<(u64, u64, String)> {
    let threads = threads.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, std::io::Result<Vec<u8>>)>(threads * 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            s.spawn(move || {
                loop {
                    let job = job_rx.lock().expect("no poisoned lock").recv();
                    let Ok((i, block)) = job else { break };
                    let mut enc = flate2::write::GzEncoder::new(
                        Vec::with_capacity(block.len() / 2),
                        flate2::Compression::new(level),
                    );
                    let r = enc.write_all(&block).and_then(|()| enc.finish());
                    if done_tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // The writer: members in order, hashed as written.
        let writer = s.spawn(move || -> Result<(u64, String)> {
            let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut next = 0u64;
            let mut hash = Sha256::new();
            let mut written = 0u64;
            for (i, r) in done_rx {
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
            Ok((written, hex(&hash.finalize())))
        });
        let mut block = Vec::with_capacity(BLOCK);
        let mut index = 0u64;
        let tx = job_tx;
        let fed = produce(&mut |mut piece: &[u8]| {
            while !piece.is_empty() {
                let take = (BLOCK - block.len()).min(piece.len());
                block.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if block.len() == BLOCK {
                    let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK));
                    tx.send((index, full))
                        .map_err(|_| Error::input("a compressor stopped", None))?;
                    index += 1;
                }
            }
            Ok(())
        });
        let last = if fed.is_ok() && !block.is_empty() {
            tx.send((index, block))
                .map_err(|_| Error::input("a compressor stopped", None))
        } else {
            Ok(())
        };
        drop(tx);
        let written = writer.join().expect("writer thread does not panic");
        let fed = fed?;
        last?;
        let (written, sha) = written?;
        Ok((fed, written, sha))
    })
}

/// Write `path` through a `.part` file renamed when complete.
fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let part = PathBuf::from(format!("{}.part", path.display()));
    std::fs::write(&part, data).map_err(|e| Error::io("write", &part, e))?;
    std::fs::rename(&part, path).map_err(|e| Error::io("rename", &part, e))
}

/// Export `image` to `archive` (`.tar.gz`) and `archive.sha256`.
pub fn export(
    engine: &dyn Engine,
    image: &str,
    archive: &Path,
    level: u32,
    threads: usize,
) -> Result<Export> {
    if let Some(dir) = archive.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let part = PathBuf::from(format!("{}.part", archive.display()));
    let started = Instant::now();
    let result = (|| -> Result<(u64, u64, String)> {
        let mut f = std::io::BufWriter::with_capacity(
            1 << 20,
            File::create(&part).map_err(|e| Error::io("create", &part, e))?,
        );
        let r = gzip_parallel(&mut f, level, threads, &mut |sink| {
            // Only a whole image tar becomes an archive: garbage, or a stream that ends early
            // but cleanly, is an error (and the `.part` is removed).
            let mut frames = crate::tarframe::TarFrames::default();
            let not_tar = |why: String| Error::Engine {
                message: format!(
                    "the engine's stream of `{image}` is not a whole image tar: {why}"
                ),
                hint: Some(
                    "the engine or the connection to it failed mid-stream: run the export again"
                        .into(),
                ),
            };
            let n = engine.export_image(image, &mut |piece| {
                frames.push(piece).map_err(not_tar)?;
                sink(piece)
            })?;
            frames.finish().map_err(not_tar)?;
            Ok(n)
        })?;
        let f = f
            .into_inner()
            .map_err(|e| Error::io("write", &part, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io("sync", &part, e))?;
        Ok(r)
    })();
    let (tar_bytes, gz_bytes, sha256) = match result {
        Ok(r) => r,
        Err(e) => {
            // A half-written archive is never left under the final name, nor as a `.part`.
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, archive).map_err(|e| Error::io("rename", &part, e))?;
    let sha256_file = PathBuf::from(format!("{}.sha256", archive.display()));
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("archive.tar.gz");
    write_atomically(&sha256_file, format!("{sha256}  {name}\n").as_bytes())?;
    Ok(Export {
        archive: archive.to_owned(),
        sha256_file,
        sha256,
        tar_bytes,
        gz_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The deliverable checks of an export: archive, checksum, compressed size against `min_bytes`.
pub fn checks(e: &Export, min_bytes: u64) -> Vec<crate::report::Check> {
    use crate::check::{check, check_when};
    use crate::report::Status;
    let mb = |b: u64| b as f64 / 1e6;
    vec![
        check(
            "export.archive",
            Status::Pass,
            format!(
                "{} ({:.1} MB from a {:.1} MB image tar, {:.0}%; {:.1} s, {:.0} MB/s of tar)",
                e.archive.display(),
                mb(e.gz_bytes),
                mb(e.tar_bytes),
                e.gz_bytes as f64 * 100.0 / e.tar_bytes.max(1) as f64,
                e.seconds,
                mb(e.tar_bytes) / e.seconds.max(1e-9)
            ),
        ),
        check(
            "export.sha256",
            Status::Pass,
            format!(
                "{}: {}  (`sha256sum -c` reads it)",
                e.sha256_file.display(),
                e.sha256
            ),
        ),
        check_when(
            e.gz_bytes > min_bytes,
            "export.size",
            format!(
                "{:.1} MB, threshold {:.1} MB",
                mb(e.gz_bytes),
                mb(min_bytes)
            ),
        ),
    ]
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
        let (fed, written, sha) = gzip_parallel(&mut out, 6, 3, &mut |sink| {
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

    #[test]
    fn a_failing_stream_is_an_error() {
        let mut out = Vec::new();
        let r = gzip_parallel(&mut out, 6, 2, &mut |sink| {
            sink(&[1u8; 1000])?;
            Err(Error::input("engine went away", None))
        });
        assert!(r.unwrap_err().to_string().contains("engine went away"));
    }
}
