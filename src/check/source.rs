//! Random-access byte sources for the ELF reader: a member held in memory, or one spilled to an
//! unlinked temporary file while it was decompressed (so memory stays small whatever its size).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes that can be read at any offset.
pub trait ByteSource: Send + Sync {
    /// Total length.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from `offset`; an error if the source is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(eof)?);
        Ok(())
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")
}

/// A file read with `pread`.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Open a file on disk.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(eof());
        }
        self.file.read_exact_at(buf, offset)
    }
}

/// Members up to this size are held in memory; larger ones go to an unlinked temporary file.
pub const IN_MEMORY_MAX: u64 = 16 << 20;

/// How a spill ended.
pub enum Spilled {
    /// The whole stream, in memory or in a temporary file.
    Done(Box<dyn ByteSource>),
    /// The stream produced more than `limit` bytes.
    TooLong,
}

/// Copy a stream into a [`ByteSource`], refusing more than `limit` bytes (a member whose real
/// size exceeds its declared size is a zip bomb or a corrupt archive).
pub fn spill(mut r: impl Read, declared: u64, limit: u64) -> io::Result<Spilled> {
    let mut buf = vec![0u8; 1 << 20];
    if declared <= IN_MEMORY_MAX {
        let mut v = Vec::with_capacity(declared as usize);
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(Spilled::Done(Box::new(v)));
            }
            if v.len() as u64 + n as u64 > limit {
                return Ok(Spilled::TooLong);
            }
            v.extend_from_slice(&buf[..n]);
        }
    }
    let dir = std::env::temp_dir();
    let mut file = None;
    for i in 0..100u32 {
        let p = dir.join(format!(".forge-spill-{}-{i}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => {
                // Unlinked at once: nothing is left on disk whatever happens to forge.
                let _ = std::fs::remove_file(&p);
                file = Some(f);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    let mut file = file.ok_or_else(|| io::Error::other("no temporary file name free"))?;
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        if len > limit {
            return Ok(Spilled::TooLong);
        }
        file.write_all(&buf[..n])?;
    }
    Ok(Spilled::Done(Box::new(FileSource { file, len })))
}

/// A [`Read`] over a range of a source.
pub struct RangeReader<'a> {
    src: &'a dyn ByteSource,
    pos: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    /// Read `[start, end)` of `src`.
    pub fn new(src: &'a dyn ByteSource, start: u64, end: u64) -> Self {
        RangeReader {
            src,
            pos: start,
            end: end.min(src.len()),
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
