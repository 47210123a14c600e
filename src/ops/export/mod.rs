//! `forge export`: the engine's image stream -> gzip (blocks compressed on every core, written
//! as concatenated gzip members, which `gzip -d`, `docker load` and every gzip reader accept) ->
//! a `.part` file, SHA256 of the compressed bytes computed on the way, renamed only when
//! complete, then a `<hex>  <name>` checksum file (what `sha256sum -c` reads). One pass.
//! The same with zstd frames (`--format zst`), or cut into parts (`--split SIZE`, each a
//! `.part` until all are complete); Ctrl-C or any error removes every `.part`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::cancel::Cancel;
use crate::engine::Engine;
use crate::error::{Error, Result};

mod compress;
mod split;
pub mod tar;
mod verify;

pub use compress::{BLOCK, Sink, compress_parallel, gzip_parallel};
use split::SplitWriter;
pub use split::{join_command, parse_size, parts_check};
use tar::TarStream;
pub use verify::{Verification, checks, verify, verify_files};

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

pub use crate::atomic::{hex, part_path};

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
    let names = Names::of(archive)?;
    let started = Instant::now();
    // Where the parts are, for the cleanup on error (the split writer names them as it goes).
    let mut written_parts: Vec<PathBuf> = Vec::new();
    let result = write_and_rename(engine, image, &names, opts, cancel, tap, &mut written_parts);
    let (tar_bytes, gz_bytes, sha256, parts) = match result {
        Ok(r) => r,
        Err(e) => {
            // A half-written archive is never left under the final name, nor as a `.part`.
            let _ = std::fs::remove_file(&names.part);
            let _ = std::fs::remove_file(&names.sha_part);
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
            .map(|p| (p.sha256.clone(), file_name(&p.path)))
            .collect();
        crate::atomic::merge_sums(&names.dir, &entries)?;
    }
    let files: Vec<PathBuf> = if parts.is_empty() {
        vec![archive.to_owned()]
    } else {
        parts.iter().map(|p| p.path.clone()).collect()
    };
    let verified = verify_files(&files, opts.format, &names.sha256_file);
    Ok(Export {
        archive: archive.to_owned(),
        sha256_file: names.sha256_file,
        sha256,
        tar_bytes,
        gz_bytes,
        seconds: started.elapsed().as_secs_f64(),
        verified,
        format: opts.format.name().into(),
        parts,
    })
}

/// The files of one export: the archive's directory (made), its `.part`, the checksum file and
/// its `.part`.
struct Names {
    archive: PathBuf,
    dir: PathBuf,
    part: PathBuf,
    sha256_file: PathBuf,
    sha_part: PathBuf,
}

impl Names {
    fn of(archive: &Path) -> Result<Names> {
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
        let sha256_file = PathBuf::from(format!("{}.sha256", archive.display()));
        Ok(Names {
            archive: archive.to_owned(),
            part: part_path(archive),
            sha_part: part_path(&sha256_file),
            sha256_file,
            dir,
        })
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stream, compress and write under `.part` names, then rename every file to its final name.
/// Returns (tar bytes, archive bytes, archive SHA256, the parts when split).
fn write_and_rename(
    engine: &dyn Engine,
    image: &str,
    names: &Names,
    opts: Options,
    cancel: Cancel,
    tap: &mut dyn FnMut(&[u8]),
    written_parts: &mut Vec<PathBuf>,
) -> Result<(u64, u64, String, Vec<Part>)> {
    cancel.check()?;
    let mut target = match opts.split {
        None => Target::Whole(std::io::BufWriter::with_capacity(
            1 << 20,
            File::create(&names.part).map_err(|e| Error::io("create", &names.part, e))?,
        )),
        Some(limit) => Target::Split(SplitWriter::new(&names.archive, limit)),
    };
    let r = compress_parallel(
        &mut target,
        opts.format,
        opts.level,
        opts.threads,
        cancel,
        &mut |sink| stream_image(engine, image, cancel, tap, sink),
    );
    if let Target::Split(w) = &target {
        *written_parts = w.paths();
    }
    let (tar_bytes, archive_bytes, sha256) = r.map_err(|e| match e {
        Error::Io { action, source, .. } if action == "write" => {
            Error::io(action, &names.part, source)
        }
        e => e,
    })?;
    let parts = match target {
        Target::Whole(f) => {
            let f = f
                .into_inner()
                .map_err(|e| Error::io("write", &names.part, e.into_error()))?;
            f.sync_all()
                .map_err(|e| Error::io("sync", &names.part, e))?;
            Vec::new()
        }
        Target::Split(mut w) => {
            w.close_current()
                .map_err(|e| Error::io("write", &names.archive, e))?;
            w.take_parts()
        }
    };
    cancel.check()?;
    let line = format!("{sha256}  {}\n", file_name(&names.archive));
    std::fs::write(&names.sha_part, line).map_err(|e| Error::io("write", &names.sha_part, e))?;
    if parts.is_empty() {
        std::fs::rename(&names.part, &names.archive)
            .map_err(|e| Error::io("rename", &names.part, e))?;
    }
    for p in &parts {
        let tmp = part_path(&p.path);
        std::fs::rename(&tmp, &p.path).map_err(|e| Error::io("rename", &tmp, e))?;
    }
    std::fs::rename(&names.sha_part, &names.sha256_file)
        .map_err(|e| Error::io("rename", &names.sha_part, e))?;
    Ok((tar_bytes, archive_bytes, sha256, parts))
}

/// The engine's `docker save` stream of `image` through the tar reader (whole, mtimes 0) and
/// `tap`, into the compressor's `sink`; returns the bytes the engine sent.
fn stream_image(
    engine: &dyn Engine,
    image: &str,
    cancel: Cancel,
    tap: &mut dyn FnMut(&[u8]),
    sink: &mut Sink<'_>,
) -> Result<u64> {
    // Only a whole image tar becomes an archive: garbage, or a stream that ends early but
    // cleanly, is an error (and the `.part` is removed). Every header's mtime set to 0: one
    // image id gives one archive SHA256.
    let mut stream = TarStream::default();
    let not_tar = |why: String| Error::Engine {
        message: format!("the engine's stream of `{image}` is not a whole image tar: {why}"),
        hint: Some(
            "the engine or the connection to it failed mid-stream: run the export again".into(),
        ),
    };
    let n = engine.export_image(image, &mut |piece| {
        cancel.check()?;
        tap(piece);
        stream.push(piece, sink).map_err(|f| match f {
            tar::Fault::NotTar(why) => not_tar(why),
            tar::Fault::Sink(e) => e,
        })
    })?;
    stream.finish().map_err(not_tar)?;
    Ok(n)
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

/// An archive in `format` is one the engine of `version` can load, or a usage error saying why
/// not and what to do.
pub fn loadable_by(format: Format, version: &str) -> Result<()> {
    if format == Format::Zst && !engine_loads_zstd(version) {
        return Err(Error::usage(
            format!(
                "this engine (Docker {version}) cannot load zstd image archives: `docker load` reads zstd from Docker Engine {ZSTD_LOAD_SINCE_MAJOR}.0 on (moby/moby#41759)",
            ),
            Some(
                "use `--format gz` (the default), which every engine loads; export zstd on a host whose engine is 23.0 or newer, for receivers with such engines",
            ),
        ));
    }
    Ok(())
}

/// Whether an engine of `version` (`20.10.24+dfsg1`, `27.3.1`) loads zstd archives.
pub fn engine_loads_zstd(version: &str) -> bool {
    version
        .split(['.', '+', '-'])
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .is_some_and(|m| m >= ZSTD_LOAD_SINCE_MAJOR)
}

/// Where an export goes: `-o DIR` (an existing directory, or a path ending in `/`) puts the
/// archive in it under the image's name; `-o FILE` is the archive; none is
/// `artifacts/<image>.<ext>`. Returns (archive, whether `-o` named a directory).
pub fn destination(out: Option<&Path>, image: &str, format: Format) -> (PathBuf, bool) {
    let name = format!(
        "{}.{}",
        crate::ops::plan::tag_slug(image),
        format.extension()
    );
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
