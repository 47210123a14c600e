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
    /// `gzip` or `zstd`.
    pub format: String,
    /// The parts, in order, when the archive was split (`archive` itself is then not written).
    pub parts: Vec<Part>,
}

/// One part of a split archive.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA256, hex.
    pub sha256: String,
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
    let gzip = move |block: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(block.len() / 2),
            flate2::Compression::new(level),
        );
        enc.write_all(block)?;
        enc.finish()
    };
    compress_parallel(out, &gzip, threads, produce)
}

/// One block in, one self-contained compressed member out (a gzip member, a zstd frame).
pub type Codec<'a> = dyn Fn(&[u8]) -> std::io::Result<Vec<u8>> + Sync + 'a;

/// [`gzip_parallel`] for any codec whose members concatenate into a valid stream.
pub fn compress_parallel(
    out: &mut (dyn Write + Send),
    codec: &Codec<'_>,
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
                    let r = codec(&block);
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
            engine.export_image(image, sink)
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
        format: "gzip".into(),
        parts: Vec::new(),
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
/// under a `.part` name until [`SplitWriter::finish`].
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
    fn temp(p: &Path) -> PathBuf {
        PathBuf::from(format!("{}.part", p.display()))
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
    fn finish(mut self) -> Result<Vec<Part>> {
        self.close_current()
            .map_err(|e| Error::io("write", &self.base, e))?;
        let mut out = Vec::new();
        for (p, n, h) in std::mem::take(&mut self.parts) {
            std::fs::rename(Self::temp(&p), &p).map_err(|e| Error::io("rename", &p, e))?;
            out.push(Part {
                path: p,
                bytes: n,
                sha256: hex(&h.finalize()),
            });
        }
        Ok(out)
    }
    fn abandon(mut self) {
        self.cur = None;
        for (p, _, _) in &self.parts {
            let _ = std::fs::remove_file(Self::temp(p));
        }
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
            let f = File::create(Self::temp(&p))?;
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

/// `forge export` with its options: gzip or zstd, whole or split. The archive (or its parts)
/// and `<archive>.sha256` (of the whole archive, which joining the parts gives back); when
/// split, `SHA256SUMS` beside the parts lists them.
pub fn export_with(
    engine: &dyn Engine,
    image: &str,
    archive: &Path,
    opts: Options,
) -> Result<Export> {
    if opts.format == Format::Gz && opts.split.is_none() {
        return export(engine, image, archive, opts.level, opts.threads);
    }
    let dir = archive
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let level = opts.level as i32;
    let zstd = move |block: &[u8]| zstd::bulk::compress(block, level);
    let gzip_level = opts.level;
    let gzip = move |block: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(block.len() / 2),
            flate2::Compression::new(gzip_level),
        );
        enc.write_all(block)?;
        enc.finish()
    };
    let codec: &Codec<'_> = match opts.format {
        Format::Gz => &gzip,
        Format::Zst => &zstd,
    };
    let started = Instant::now();
    let mut produce = |sink: &mut Sink<'_>| engine.export_image(image, sink);
    let (tar_bytes, bytes, sha256, parts) = if let Some(limit) = opts.split {
        let mut w = SplitWriter {
            base: archive.to_owned(),
            limit,
            parts: Vec::new(),
            cur: None,
        };
        match compress_parallel(&mut w, codec, opts.threads, &mut produce) {
            Ok((t, b, s)) => (t, b, s, w.finish()?),
            Err(e) => {
                w.abandon();
                return Err(e);
            }
        }
    } else {
        let part = PathBuf::from(format!("{}.part", archive.display()));
        let r = (|| -> Result<(u64, u64, String)> {
            let mut f = std::io::BufWriter::with_capacity(
                1 << 20,
                File::create(&part).map_err(|e| Error::io("create", &part, e))?,
            );
            let r = compress_parallel(&mut f, codec, opts.threads, &mut produce)?;
            let f = f
                .into_inner()
                .map_err(|e| Error::io("write", &part, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("sync", &part, e))?;
            Ok(r)
        })();
        match r {
            Ok((t, b, s)) => {
                std::fs::rename(&part, archive).map_err(|e| Error::io("rename", &part, e))?;
                (t, b, s, Vec::new())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        }
    };
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("archive")
        .to_owned();
    let sha256_file = PathBuf::from(format!("{}.sha256", archive.display()));
    write_atomically(&sha256_file, format!("{sha256}  {name}\n").as_bytes())?;
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
        crate::bundle::merge_sums(&dir, &entries)?;
    }
    Ok(Export {
        archive: archive.to_owned(),
        sha256_file,
        sha256,
        tar_bytes,
        gz_bytes: bytes,
        seconds: started.elapsed().as_secs_f64(),
        format: opts.format.name().into(),
        parts,
    })
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
        let codec = |b: &[u8]| zstd::bulk::compress(b, 3);
        compress_parallel(&mut out, &codec, 2, &mut |sink| {
            sink(&input)?;
            Ok(input.len() as u64)
        })
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
        let parts = w.finish().unwrap();
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
