//! `--split SIZE`: the archive cut into parts of a size, each hashed, each under a `.part`
//! name until the export renames them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Export, Part, hex, part_path};

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

/// Writes a stream as parts `<archive>.001`, `.002`, ... of `limit` bytes, each hashed, each
/// under a `.part` name until the export renames them.
pub(super) struct SplitWriter {
    base: PathBuf,
    limit: u64,
    parts: Vec<(PathBuf, u64, Sha256)>,
    cur: Option<std::io::BufWriter<File>>,
}

impl SplitWriter {
    /// Parts `<base>.001`, ... of `limit` bytes.
    pub(super) fn new(base: &Path, limit: u64) -> SplitWriter {
        SplitWriter {
            base: base.to_owned(),
            limit,
            parts: Vec::new(),
            cur: None,
        }
    }
    /// The parts' final names so far.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|(p, _, _)| p.clone()).collect()
    }
    fn name(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("{}.{:03}", self.base.display(), i + 1))
    }
    pub(super) fn close_current(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.cur.take() {
            let f = w
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?;
            f.sync_all()?;
        }
        Ok(())
    }
    /// The parts written, each with its size and SHA256 (still under their `.part` names).
    pub(super) fn take_parts(&mut self) -> Vec<Part> {
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

/// `export.parts` for a split archive, with the command that joins the parts.
pub fn parts_check(e: &Export) -> Option<(crate::report::Check, String)> {
    let join = join_command(e)?;
    let names: Vec<String> = e
        .parts
        .iter()
        .map(|p| p.path.display().to_string())
        .collect();
    let check = crate::report::Check::pass(
        "export.parts",
        "archive split into parts",
        format!(
            "{} parts: {}; SHA256SUMS lists them; join: {join}",
            e.parts.len(),
            names.join(", ")
        ),
    );
    Some((check, join))
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
    fn split_writer_cuts_at_the_limit_and_hashes_each_part() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-split-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
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
    }
}
