//! Files written whole or not at all, and their SHA256: the `.part` name a file is written
//! under, the atomic write (fsync, rename), streamed SHA256 and `SHA256SUMS`. A leaf: the
//! export, the run record and the bundle all write through it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// `SHA256SUMS`, in sha256sum's format.
pub const SUMS: &str = "SHA256SUMS";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The name a file is written under until it is complete: `path.part`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Write `path` through `path.tmp`: fsync, rename (a reader sees the old or the new file, whole).
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = part_path(path);
    let r = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// SHA256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex(&h.finalize())))
}

/// Parse `<hex>  <name>` lines (sha256sum's format, text or binary mode).
pub fn parse_sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (h, name) = l.split_once(' ')?;
            let name = name.trim_start_matches([' ', '*']);
            (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty())
                .then(|| (h.to_ascii_lowercase(), name.to_owned()))
        })
        .collect()
}

/// Add or replace `entries` in `dir/SHA256SUMS`, keeping the other lines.
pub fn merge_sums(dir: &Path, entries: &[(String, String)]) -> Result<()> {
    let path = dir.join(SUMS);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut all: Vec<(String, String)> = parse_sums(&old)
        .into_iter()
        .filter(|(_, n)| !entries.iter().any(|(_, e)| e == n))
        .collect();
    all.extend(entries.iter().cloned());
    let text: String = all.iter().map(|(h, n)| format!("{h}  {n}\n")).collect();
    write_atomically(&path, text.as_bytes())
}
