//! `forge export`: the engine's image stream -> gzip (blocks compressed on every core, written
//! as concatenated gzip members, which `gzip -d`, `docker load` and every gzip reader accept) ->
//! a `.part` file, SHA256 of the compressed bytes computed on the way, renamed only when
//! complete, then a `<hex>  <name>` checksum file (what `sha256sum -c` reads). One pass.
//! The same with zstd frames (`--format zst`), or cut into parts (`--split SIZE`, each a
//! `.part` until all are complete); Ctrl-C or any error removes every `.part`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Uncompressed bytes per gzip member (one unit of parallel work).
pub const BLOCK: usize = 4 << 20;

/// What an export produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// The archive as read back from disk.
    #[serde(default)]
    pub verified: Verification,
    /// `gzip` or `zstd`.
    #[serde(default = "gzip_name")]
    pub format: String,
    /// The parts, in order, when the archive was split (`archive` itself is then not written).
    #[serde(default)]
    pub parts: Vec<Part>,
}

fn gzip_name() -> String {
    Format::Gz.name().to_owned()
}

/// One part of a split archive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA256, hex.
    pub sha256: String,
}

/// What reading the written archive back found: the judgement of a standalone export.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Verification {
    /// SHA256 of the file on disk, hex.
    pub sha256: String,
    /// The hex the checksum file records.
    pub recorded: Option<String>,
    /// Bytes the gzip stream decompressed to (the image tar).
    pub tar_bytes: u64,
    /// Entries in the tar index.
    pub tar_entries: u64,
    /// `manifest.json` (what `docker load` reads first) is in the tar.
    pub manifest: bool,
    /// `RepoTags` of the manifest.
    pub repo_tags: Vec<String>,
    /// Config and layer files the manifest names that the tar lacks.
    pub missing: Vec<String>,
    /// The first thing wrong with the gzip stream or the tar, if any.
    pub error: Option<String>,
}

/// A reader that hashes what passes through it.
struct Hashing<'h, R> {
    inner: R,
    hash: &'h mut Sha256,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// A reader that counts what passes through it.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Read `archive` back once: its SHA256 against `sha256_file`, the gzip stream to its end, the
/// tar index (every header), `manifest.json` and the files it names. One streaming pass, the
/// file's bytes hashed as they are decompressed.
pub fn verify(archive: &Path, sha256_file: &Path) -> Verification {
    verify_files(&[archive.to_owned()], Format::Gz, sha256_file)
}

/// [`verify`] for an archive in `format` made of `files` read in order (the parts of a split
/// archive, or the archive alone): the SHA256 is of their concatenation.
pub fn verify_files(files: &[PathBuf], format: Format, sha256_file: &Path) -> Verification {
    use std::io::Read;
    let mut v = Verification {
        recorded: std::fs::read_to_string(sha256_file)
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_owned)),
        ..Verification::default()
    };
    let mut joined: Box<dyn Read> = Box::new(std::io::empty());
    for path in files {
        match File::open(path) {
            Ok(f) => joined = Box::new(joined.chain(f)),
            Err(e) => {
                v.error = Some(format!("cannot open {}: {e}", path.display()));
                return v;
            }
        }
    }
    let mut hash = Sha256::new();
    let hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, joined),
        hash: &mut hash,
        n: 0,
    };
    let decoder: Box<dyn Read + '_> = match format {
        Format::Gz => Box::new(flate2::read::MultiGzDecoder::new(hashing)),
        Format::Zst => match zstd::stream::read::Decoder::new(hashing) {
            Ok(d) => Box::new(d),
            Err(e) => {
                v.error = Some(format!("cannot start a zstd decoder: {e}"));
                return v;
            }
        },
    };
    let mut tar_stream = Counting {
        inner: decoder,
        n: 0,
    };
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut manifest: Option<serde_json::Value> = None;
    let result = (|| -> std::io::Result<()> {
        let mut ar = tar::Archive::new(&mut tar_stream);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            v.tar_entries += 1;
            if path == "manifest.json" {
                let mut text = Vec::new();
                entry.by_ref().take(16 << 20).read_to_end(&mut text)?;
                manifest = serde_json::from_slice(&text).ok();
            }
            names.insert(path.trim_start_matches("./").to_owned());
        }
        // Past the tar's end-of-archive blocks: the gzip stream must still decode to its end.
        std::io::copy(&mut tar_stream, &mut std::io::sink())?;
        Ok(())
    })();
    if let Err(e) = result {
        v.error = Some(format!(
            "the {} stream or tar is broken: {e}",
            format.name()
        ));
    }
    v.tar_bytes = tar_stream.n;
    drop(tar_stream);
    v.sha256 = hex(&hash.finalize());
    v.manifest = names.contains("manifest.json");
    if let Some(m) = manifest
        .as_ref()
        .and_then(|m| m.as_array())
        .and_then(|a| a.first())
    {
        v.repo_tags = m["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let wanted = std::iter::once(&m["Config"])
            .chain(m["Layers"].as_array().into_iter().flatten())
            .filter_map(|x| x.as_str());
        v.missing = wanted
            .filter(|w| !names.contains(*w))
            .map(str::to_owned)
            .collect();
    } else if v.manifest && v.error.is_none() {
        v.error = Some("manifest.json is not a `docker save` manifest".to_owned());
    }
    v
}

pub use crate::atomic::{hex, part_path};

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
            s.spawn(move || {
                loop {
                    let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((i, block)) = job else { break };
                    if aborted() {
                        break;
                    }
                    let Some(r) = compress_block(&block, format, level, &aborted) else {
                        return;
                    };
                    if done_tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold the job receiver: when the last one ends, sends fail.
        drop(job_rx);
        drop(done_tx);
        // The writer: members in order, hashed as written.
        // The writer returns `Ok(None)` when it stopped on an abort.
        let writer = s.spawn(move || -> Result<Option<(u64, String)>> {
            let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut next = 0u64;
            let mut hash = Sha256::new();
            let mut written = 0u64;
            for (i, r) in done_rx {
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
        });
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

/// Sets the mtime of every header of a tar stream to 0 (checksums fixed), passing the entries'
/// data through untouched, block by block, whatever the pieces' sizes.
///
/// The engine writes some entries of `docker save` (the legacy layer directories, their
/// `VERSION` and `json`) with the time of the save, so one image gave a different archive at
/// each export; with every header's time at 0 one image gives one archive SHA256. `docker load`
/// does not read these times.
#[derive(Debug, Default)]
pub struct TarTimes {
    /// A header being gathered (< 512 bytes).
    header: Vec<u8>,
    /// Data bytes (padding included) still to pass through before the next header.
    data: u64,
}

impl TarTimes {
    /// Feed a piece of the stream; what is ready goes to `out`.
    pub fn feed(&mut self, mut piece: &[u8], out: &mut Sink<'_>) -> Result<()> {
        while !piece.is_empty() {
            if self.data > 0 {
                let n = usize::try_from(self.data)
                    .unwrap_or(usize::MAX)
                    .min(piece.len());
                out(&piece[..n])?;
                self.data -= n as u64;
                piece = &piece[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(piece.len());
            self.header.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            if self.header.len() == 512 {
                let mut h = std::mem::take(&mut self.header);
                self.data = normalize_header(&mut h);
                out(&h)?;
            }
        }
        Ok(())
    }

    /// The stream ended: pass through a partial block, if any.
    pub fn finish(&mut self, out: &mut Sink<'_>) -> Result<()> {
        let h = std::mem::take(&mut self.header);
        if h.is_empty() { Ok(()) } else { out(&h) }
    }
}

/// Zero a tar header's mtime and fix its checksum; returns the bytes of data (padded) after it.
fn normalize_header(h: &mut [u8]) -> u64 {
    if h.iter().all(|&b| b == 0) {
        return 0; // end-of-archive block
    }
    let size_field = &h[124..136];
    let size = if size_field[0] & 0x80 != 0 {
        // base-256
        size_field[1..]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b))
    } else {
        let s: String = size_field
            .iter()
            .take_while(|&&b| b != 0 && b != b' ')
            .map(|&b| b as char)
            .collect();
        u64::from_str_radix(s.trim(), 8).unwrap_or(0)
    };
    // Only a header whose checksum is right is touched: anything else passes as it came.
    let sum = |h: &[u8]| -> u64 {
        h.iter()
            .enumerate()
            .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
            .sum()
    };
    let stored: String = h[148..156]
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    if u64::from_str_radix(stored.trim(), 8).ok() == Some(sum(h)) {
        h[136..148].copy_from_slice(b"00000000000\0");
        let c = format!("{:06o}\0 ", sum(h));
        h[148..156].copy_from_slice(c.as_bytes());
    }
    size.div_ceil(512) * 512
}

/// Export `image` to `archive` (`.tar.gz`) and `archive.sha256`. Both are written under `.part`
/// names and renamed only when both are complete; on any error (full disk, engine gone,
/// SIGINT/SIGTERM through `cancel`) the `.part` files are removed and nothing is left under a
/// final name.
pub fn export(
    engine: &dyn Engine,
    image: &str,
    archive: &Path,
    level: u32,
    threads: usize,
    cancel: Cancel,
) -> Result<Export> {
    export_with(engine, image, archive, level, threads, cancel, &mut |_| {})
}

/// [`export`], with `tap` seeing every piece of the image tar as it streams by (the image
/// audit, [`crate::check::imagefs::ImageReader::feed`], reads the same bytes: compress, hash
/// and audit in one pass).
pub fn export_with(
    engine: &dyn Engine,
    image: &str,
    archive: &Path,
    level: u32,
    threads: usize,
    cancel: Cancel,
    tap: &mut dyn FnMut(&[u8]),
) -> Result<Export> {
    let opts = Options {
        level,
        threads,
        format: Format::Gz,
        split: None,
    };
    export_opts(engine, image, archive, opts, cancel, tap)
}

/// Where the compressed stream goes: one file, or parts of `limit` bytes.
enum Target {
    Whole(std::io::BufWriter<File>),
    Split(SplitWriter),
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Target::Whole(w) => w.write(buf),
            Target::Split(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Target::Whole(w) => w.flush(),
            Target::Split(w) => w.flush(),
        }
    }
}

/// [`export_with`] with `forge export`'s options: gzip or zstd, whole or split. The archive (or
/// its parts `<archive>.001`, ...) and `<archive>.sha256` (of the whole archive, which joining
/// the parts gives back); when split, `SHA256SUMS` beside the parts lists them. Every file is
/// written under a `.part` name and renamed only when all are complete; on any error (full
/// disk, engine gone, SIGINT/SIGTERM through `cancel`) every `.part` is removed and nothing is
/// left under a final name.
pub fn export_opts(
    engine: &dyn Engine,
    image: &str,
    archive: &Path,
    opts: Options,
    cancel: Cancel,
    tap: &mut dyn FnMut(&[u8]),
) -> Result<Export> {
    if archive.is_dir() {
        return Err(Error::usage(
            format!("`{}` is a directory", archive.display()),
            Some(
                "pass the archive's file name, e.g. `-o DIR/image.tar.gz`, or `-o DIR/` to write into DIR",
            ),
        ));
    }
    let dir = archive
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let part = part_path(archive);
    let sha256_file = PathBuf::from(format!("{}.sha256", archive.display()));
    let sha_part = part_path(&sha256_file);
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("archive")
        .to_owned();
    let started = Instant::now();
    // Where the parts are, for the cleanup on error (the split writer names them as it goes).
    let mut written_parts: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<(u64, u64, String, Vec<Part>)> {
        cancel.check()?;
        let mut target = match opts.split {
            None => Target::Whole(std::io::BufWriter::with_capacity(
                1 << 20,
                File::create(&part).map_err(|e| Error::io("create", &part, e))?,
            )),
            Some(limit) => Target::Split(SplitWriter {
                base: archive.to_owned(),
                limit,
                parts: Vec::new(),
                cur: None,
            }),
        };
        let r = compress_parallel(
            &mut target,
            opts.format,
            opts.level,
            opts.threads,
            cancel,
            &mut |sink| {
                // Every tar header's mtime set to 0: one image id gives one archive SHA256.
                let mut times = TarTimes::default();
                // Only a whole image tar becomes an archive: garbage, or a stream that ends
                // early but cleanly, is an error (and the `.part` is removed).
                let mut frames = crate::tarframe::TarFrames::default();
                let not_tar = |why: String| Error::Engine {
                    message: format!(
                        "the engine's stream of `{image}` is not a whole image tar: {why}"
                    ),
                    hint: Some(
                        "the engine or the connection to it failed mid-stream: run the export \
                         again"
                            .into(),
                    ),
                };
                let n = engine.export_image(image, &mut |piece| {
                    cancel.check()?;
                    frames.push(piece).map_err(not_tar)?;
                    tap(piece);
                    times.feed(piece, sink)
                })?;
                frames.finish().map_err(not_tar)?;
                times.finish(sink)?;
                Ok(n)
            },
        );
        if let Target::Split(w) = &target {
            written_parts = w.parts.iter().map(|(p, _, _)| p.clone()).collect();
        }
        let r = r.map_err(|e| match e {
            Error::Io { action, source, .. } if action == "write" => {
                Error::io(action, &part, source)
            }
            e => e,
        })?;
        let parts = match target {
            Target::Whole(f) => {
                let f = f
                    .into_inner()
                    .map_err(|e| Error::io("write", &part, e.into_error()))?;
                f.sync_all().map_err(|e| Error::io("sync", &part, e))?;
                Vec::new()
            }
            Target::Split(mut w) => {
                w.close_current()
                    .map_err(|e| Error::io("write", archive, e))?;
                w.take_parts()
            }
        };
        cancel.check()?;
        std::fs::write(&sha_part, format!("{}  {name}\n", r.2))
            .map_err(|e| Error::io("write", &sha_part, e))?;
        if parts.is_empty() {
            std::fs::rename(&part, archive).map_err(|e| Error::io("rename", &part, e))?;
        }
        for p in &parts {
            let tmp = part_path(&p.path);
            std::fs::rename(&tmp, &p.path).map_err(|e| Error::io("rename", &tmp, e))?;
        }
        std::fs::rename(&sha_part, &sha256_file).map_err(|e| Error::io("rename", &sha_part, e))?;
        Ok((r.0, r.1, r.2, parts))
    })();
    let (tar_bytes, gz_bytes, sha256, parts) = match result {
        Ok(r) => r,
        Err(e) => {
            // A half-written archive is never left under the final name, nor as a `.part`.
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&sha_part);
            for p in &written_parts {
                let _ = std::fs::remove_file(part_path(p));
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    if !parts.is_empty() {
        let entries: Vec<(String, String)> = parts
            .iter()
            .map(|p| {
                (
                    p.sha256.clone(),
                    p.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        crate::atomic::merge_sums(&dir, &entries)?;
    }
    let files: Vec<PathBuf> = if parts.is_empty() {
        vec![archive.to_owned()]
    } else {
        parts.iter().map(|p| p.path.clone()).collect()
    };
    let verified = verify_files(&files, opts.format, &sha256_file);
    Ok(Export {
        archive: archive.to_owned(),
        sha256_file,
        sha256,
        tar_bytes,
        gz_bytes,
        seconds: started.elapsed().as_secs_f64(),
        verified,
        format: opts.format.name().into(),
        parts,
    })
}

/// The checks of an export: the archive complete (the gzip stream decodes to its end, to the
/// tar the engine sent), its checksum file right, the archive loadable (its tar index lists
/// `manifest.json` and every file it names). `min_bytes` is the release's size threshold
/// (`export.size`): given by `forge build` and by `forge export --rocm/--recipe`, not otherwise.
pub fn checks(e: &Export, min_bytes: Option<u64>) -> Vec<crate::report::Check> {
    use crate::report::check_when;
    use crate::units::mb;
    let v = &e.verified;
    let complete = v.error.is_none() && v.tar_bytes == e.tar_bytes;
    let mut archive = check_when(
        complete,
        "export.archive",
        format!(
            "{} ({} from a {} image tar, {:.0}%; {:.1} s, {:.0} MB/s of tar); read back: {}",
            e.archive.display(),
            mb(e.gz_bytes),
            mb(e.tar_bytes),
            e.gz_bytes as f64 * 100.0 / e.tar_bytes.max(1) as f64,
            e.seconds,
            e.tar_bytes as f64 / 1e6 / e.seconds.max(1e-9),
            match &v.error {
                Some(err) => err.clone(),
                None if v.tar_bytes == e.tar_bytes => {
                    format!(
                        "the gzip stream decodes to its end, {} tar bytes as sent",
                        v.tar_bytes
                    )
                }
                None => format!(
                    "it decodes to {} tar bytes, the engine sent {}",
                    v.tar_bytes, e.tar_bytes
                ),
            }
        ),
    );
    if !complete {
        archive = archive.with_hint(
            "the archive on disk is not what was exported: check the disk (`df`, `dmesg`) and export again",
        );
    }
    let sum_ok = v.recorded.as_deref() == Some(v.sha256.as_str()) && v.sha256 == e.sha256;
    let mut sum = check_when(
        sum_ok,
        "export.sha256",
        if sum_ok {
            format!(
                "{}: {}  (matches the archive read back; `sha256sum -c` reads it)",
                e.sha256_file.display(),
                e.sha256
            )
        } else {
            format!(
                "{} records {}, the archive on disk hashes to {} (written as {})",
                e.sha256_file.display(),
                v.recorded.as_deref().unwrap_or("nothing"),
                v.sha256,
                e.sha256
            )
        },
    );
    if !sum_ok {
        sum = sum.with_hint("the archive changed after it was written: export again");
    }
    let loadable = v.error.is_none() && v.manifest && v.missing.is_empty();
    let mut load = check_when(
        loadable,
        "export.loadable",
        if loadable {
            format!(
                "{} tar entries; manifest.json names {} with its config and layers, all present",
                v.tar_entries,
                if v.repo_tags.is_empty() {
                    "no tag".to_owned()
                } else {
                    v.repo_tags.join(", ")
                }
            )
        } else if !v.manifest {
            format!(
                "{} tar entries, no manifest.json: `docker load` cannot read it",
                v.tar_entries
            )
        } else if !v.missing.is_empty() {
            format!(
                "manifest.json names files the tar lacks: {}",
                v.missing.join(", ")
            )
        } else {
            v.error.clone().unwrap_or_default()
        },
    );
    if !loadable {
        load = load.with_hint("export again; `docker load -i ARCHIVE` is the final word");
    }
    let mut out = vec![archive, sum, load];
    if let Some(min) = min_bytes {
        out.push(check_when(
            e.gz_bytes > min,
            "export.size",
            format!("{}, threshold {}", mb(e.gz_bytes), mb(min)),
        ));
    }
    out
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// gzip (`.tar.gz`): every engine loads it.
    Gz,
    /// zstd (`.tar.zst`): smaller and faster; Docker Engine 23.0+ loads it, 20.10 cannot.
    Zst,
}

impl Format {
    /// The archive's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Gz => "tar.gz",
            Format::Zst => "tar.zst",
        }
    }
    /// The name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Format::Gz => "gzip",
            Format::Zst => "zstd",
        }
    }
}

/// The first Docker Engine major version whose `docker load` reads zstd archives
/// (moby/moby#41759, released in 23.0; 20.10 reads gzip, bzip2 and xz only).
pub const ZSTD_LOAD_SINCE_MAJOR: u64 = 23;

/// Whether an engine of `version` (`20.10.24+dfsg1`, `27.3.1`) loads zstd archives.
pub fn engine_loads_zstd(version: &str) -> bool {
    version
        .split(['.', '+', '-'])
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .is_some_and(|m| m >= ZSTD_LOAD_SINCE_MAJOR)
}

/// `--split SIZE`: bytes, with an optional unit: k/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti
/// (powers of 1024), `B` allowed after it (`2G`, `1900MB`, `2GiB`).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 2G, 1900M, 2GiB)"))?;
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (k, M, G, T, Ki, Mi, Gi, Ti)"
            ));
        }
    };
    let bytes = (n * mult) as u64;
    if bytes < 1_000_000 {
        return Err(format!(
            "`{s}` is {bytes} bytes: parts under 1 MB would be thousands of files (e.g. 2G for GitHub releases' 2 GiB cap: `--split 2000M`)"
        ));
    }
    Ok(bytes)
}

/// Where an export goes: `-o DIR` (an existing directory, or a path ending in `/`) puts the
/// archive in it under the image's name; `-o FILE` is the archive; none is
/// `artifacts/<image>.<ext>`. Returns (archive, whether `-o` named a directory).
pub fn destination(out: Option<&Path>, image: &str, format: Format) -> (PathBuf, bool) {
    let name = format!("{}.{}", crate::plan::tag_slug(image), format.extension());
    match out {
        None => (Path::new("artifacts").join(name), false),
        Some(p) if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') => {
            (p.join(name), true)
        }
        Some(p) => (p.to_owned(), false),
    }
}

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Compression level (gzip 1-9; zstd uses the same number).
    pub level: u32,
    /// Compression threads.
    pub threads: usize,
    /// gzip or zstd.
    pub format: Format,
    /// Cut the archive into parts of this many bytes.
    pub split: Option<u64>,
}

/// Writes a stream as parts `<archive>.001`, `.002`, ... of `limit` bytes, each hashed, each
/// under a `.part` name until the export renames them.
struct SplitWriter {
    base: PathBuf,
    limit: u64,
    parts: Vec<(PathBuf, u64, Sha256)>,
    cur: Option<std::io::BufWriter<File>>,
}

impl SplitWriter {
    fn name(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("{}.{:03}", self.base.display(), i + 1))
    }
    fn close_current(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.cur.take() {
            let f = w
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            f.sync_all()?;
        }
        Ok(())
    }
    /// The parts written, each with its size and SHA256 (still under their `.part` names).
    fn take_parts(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(path, bytes, h)| Part {
                path,
                bytes,
                sha256: hex(&h.finalize()),
            })
            .collect()
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let full = self.parts.last().is_none_or(|(_, n, _)| *n >= self.limit);
        if self.cur.is_none() || full {
            self.close_current()?;
            let p = self.name(self.parts.len());
            let f = File::create(part_path(&p))?;
            self.cur = Some(std::io::BufWriter::with_capacity(1 << 20, f));
            self.parts.push((p, 0, Sha256::new()));
        }
        let (_, n, h) = self.parts.last_mut().expect("a part is open");
        let take = ((self.limit - *n) as usize).min(buf.len());
        let k = self.cur.as_mut().expect("open").write(&buf[..take])?;
        h.update(&buf[..k]);
        *n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.cur.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

/// The command that joins the parts of `e` and checks the result.
pub fn join_command(e: &Export) -> Option<String> {
    if e.parts.is_empty() {
        return None;
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let parts: Vec<String> = e.parts.iter().map(|p| name(&p.path)).collect();
    let whole = name(&e.archive);
    Some(format!(
        "cat {} > {whole} && sha256sum -c {whole}.sha256",
        parts.join(" ")
    ))
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

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn write_archive(dir: &Path, tar: &[u8]) -> (PathBuf, PathBuf) {
        let archive = dir.join("img.tar.gz");
        let mut out = Vec::new();
        let (_, _, sha) = gzip_parallel(&mut out, 6, 2, Cancel::detached(), &mut |sink| {
            sink(tar)?;
            Ok(tar.len() as u64)
        })
        .unwrap();
        std::fs::write(&archive, &out).unwrap();
        let sum = dir.join("img.tar.gz.sha256");
        std::fs::write(&sum, format!("{sha}  img.tar.gz\n")).unwrap();
        (archive, sum)
    }

    /// Issue 12, item 2: a standalone export is judged on the archive read back.
    #[test]
    fn verify_reads_the_archive_back_issue_12() {
        let dir = std::env::temp_dir().join(format!("forge-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = br#"[{"Config":"abc.json","RepoTags":["img:1"],"Layers":["l1/layer.tar"]}]"#;
        let big: Vec<u8> = (0..(BLOCK + 1000)).map(|i| (i % 251) as u8).collect();
        let good = tar_of(&[
            ("abc.json", b"{}"),
            ("l1/layer.tar", &big),
            ("manifest.json", manifest),
        ]);
        let (archive, sum) = write_archive(&dir, &good);
        let v = verify(&archive, &sum);
        assert_eq!(v.error, None);
        assert_eq!(v.tar_bytes, good.len() as u64);
        assert_eq!(v.tar_entries, 3);
        assert!(v.manifest && v.missing.is_empty());
        assert_eq!(v.repo_tags, ["img:1"]);
        assert_eq!(v.recorded.as_deref(), Some(v.sha256.as_str()));
        let e = Export {
            archive: archive.clone(),
            sha256_file: sum.clone(),
            sha256: v.sha256.clone(),
            tar_bytes: good.len() as u64,
            gz_bytes: 10,
            seconds: 1.0,
            verified: v,
            format: "gzip".into(),
            parts: Vec::new(),
        };
        let c = checks(&e, None);
        assert!(
            c.iter().all(|c| c.status == crate::report::Status::Pass),
            "{c:?}"
        );
        assert!(
            !c.iter().any(|c| c.id == "export.size"),
            "no threshold without a recipe"
        );
        assert_eq!(checks(&e, Some(1_000)).last().unwrap().id, "export.size");

        // Truncated: the gzip stream ends early, the checksum no longer matches.
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() - 100]).unwrap();
        let v = verify(&archive, &sum);
        assert!(v.error.is_some(), "{v:?}");
        assert_ne!(v.recorded.as_deref(), Some(v.sha256.as_str()));
        let e = Export { verified: v, ..e };
        let c = checks(&e, None);
        assert!(
            c.iter().all(|c| c.status == crate::report::Status::Fail),
            "{c:?}"
        );

        // Complete gzip, but no manifest: not loadable.
        let (archive, sum) = write_archive(&dir, &tar_of(&[("abc.json", b"{}")]));
        let v = verify(&archive, &sum);
        assert!(v.error.is_none() && !v.manifest);
        // A manifest naming a layer the tar lacks.
        let (archive, sum) = write_archive(
            &dir,
            &tar_of(&[("abc.json", b"{}"), ("manifest.json", manifest)]),
        );
        assert_eq!(verify(&archive, &sum).missing, ["l1/layer.tar"]);
        std::fs::remove_dir_all(&dir).ok();
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
    fn tar_times_are_zeroed_whatever_the_pieces_and_the_tar_still_reads() {
        let tar_at = |mtime: u64| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, data) in [
                ("a/VERSION", &b"1.0"[..]),
                ("a/layer.tar", &[7u8; 1300][..]),
            ] {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(mtime);
                b.append_data(&mut h, name, data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let norm = |t: &[u8], piece: usize| {
            let mut out = Vec::new();
            let mut times = TarTimes::default();
            for p in t.chunks(piece) {
                times
                    .feed(p, &mut |x: &[u8]| {
                        out.extend_from_slice(x);
                        Ok(())
                    })
                    .unwrap();
            }
            out
        };
        let (a, b) = (tar_at(1_700_000_000), tar_at(1_800_000_000));
        assert_ne!(a, b);
        assert_eq!(norm(&a, 7), norm(&b, 4096));
        assert_eq!(norm(&a, 7).len(), a.len());
        let n = norm(&a, 100);
        let mut ar = tar::Archive::new(&n[..]);
        let entries: Vec<(String, u64, usize)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mtime().unwrap(),
                    d.len(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![("a/VERSION".into(), 0, 3), ("a/layer.tar".into(), 0, 1300)]
        );
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
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1900MB"), Ok(1_900_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_size("40M"), Ok(40_000_000));
        assert!(parse_size("2X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("10k").unwrap_err().contains("under 1 MB"));
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
        assert!(!engine_loads_zstd("20.10.24+dfsg1"));
        assert!(engine_loads_zstd("23.0.0"));
        assert!(engine_loads_zstd("27.3.1"));
        assert!(!engine_loads_zstd("garbage"));
    }

    #[test]
    fn split_writer_cuts_at_the_limit_and_hashes_each_part() {
        let dir = std::env::temp_dir().join(format!("forge-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = SplitWriter {
            base: dir.join("a.tar.gz"),
            limit: 1_000_000,
            parts: Vec::new(),
            cur: None,
        };
        for chunk in data.chunks(333_333) {
            w.write_all(chunk).unwrap();
        }
        w.close_current().unwrap();
        let parts = w.take_parts();
        assert!(dir.join("a.tar.gz.001.part").is_file() && !dir.join("a.tar.gz.001").exists());
        for p in &parts {
            std::fs::rename(part_path(&p.path), &p.path).unwrap();
        }
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts.iter().map(|p| p.bytes).collect::<Vec<_>>(),
            vec![1_000_000, 1_000_000, 500_000]
        );
        let mut joined = Vec::new();
        for p in &parts {
            let b = std::fs::read(&p.path).unwrap();
            assert_eq!(p.sha256, hex(&Sha256::digest(&b)));
            joined.extend(b);
        }
        assert_eq!(joined, data);
        assert!(dir.join("a.tar.gz.001").is_file() && !dir.join("a.tar.gz.001.part").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
