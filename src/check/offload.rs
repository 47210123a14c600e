//! GPU code objects: Clang offload bundles in a `.hip_fatbin` section, uncompressed
//! (`__CLANG_OFFLOAD_BUNDLE__`) or compressed (`CCOB`, zstd or zlib), and `.kpack` archives.
//!
//! Only bundle headers are read: an uncompressed bundle's entry table, or the first bytes of a
//! compressed bundle's payload (which start with the uncompressed entry table). The code objects
//! themselves are skipped, so a multi-GB fatbin costs a few reads.

use std::io::Read;

use memchr::memmem;
use serde::Serialize;

use super::source::{ByteSource, RangeReader};

/// The uncompressed bundle magic.
pub const MAGIC: &[u8] = b"__CLANG_OFFLOAD_BUNDLE__";
/// The compressed bundle magic.
pub const CCOB: &[u8] = b"CCOB";
/// The kpack archive magic.
pub const KPAK: &[u8] = b"KPAK";

const MAX_ENTRIES: u64 = 65_536;
/// Most triple bytes one bundle's table may hold (a real one: a few hundred).
const MAX_TABLE: usize = 1 << 20;
/// Most memory the bundles read from one section may take (a real torch: about 1 MiB), so a
/// section packed with minimal bundles, or compressed tables that expand, cannot blow memory up.
pub const MAX_KEPT: usize = 16 << 20;

/// One offload bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bundle {
    /// Offset in the section.
    pub offset: u64,
    /// `zstd` / `zlib` for a compressed bundle.
    pub compression: Option<&'static str>,
    /// Entry triples as the bundle holds them (`hipv4-amdgcn-amd-amdhsa--gfx1151`).
    pub triples: Vec<String>,
}

impl Bundle {
    /// The GPU targets (`gfx1151`, `gfx90a:sramecc+:xnack-`): the part after `--` of each
    /// amdgcn triple.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.triples
            .iter()
            .filter(|t| t.contains("amdgcn"))
            .filter_map(|t| t.split_once("--").map(|(_, target)| target))
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes(s.try_into().expect("2 bytes")))
}

/// Parse an uncompressed bundle's entry table from a reader positioned at its magic.
/// Returns the triples and the bundle's size (end of its last code object).
fn read_table(r: &mut dyn Read) -> Result<(Vec<String>, u64), String> {
    let mut head = [0u8; 32];
    r.read_exact(&mut head)
        .map_err(|e| format!("bundle header: {e}"))?;
    if &head[..24] != MAGIC {
        return Err("not an offload bundle".into());
    }
    let n = u64_at(&head, 24).expect("32 bytes");
    if n == 0 || n > MAX_ENTRIES {
        return Err(format!("implausible entry count {n}"));
    }
    let mut triples = Vec::new();
    let mut end = 0u64;
    let mut table = 0usize;
    for _ in 0..n {
        let mut e = [0u8; 24];
        r.read_exact(&mut e)
            .map_err(|e| format!("bundle entry: {e}"))?;
        let (off, size, tlen) = (
            u64_at(&e, 0).expect("24"),
            u64_at(&e, 8).expect("24"),
            u64_at(&e, 16).expect("24"),
        );
        if tlen == 0 || tlen > 4096 {
            return Err(format!("implausible triple length {tlen}"));
        }
        table += tlen as usize;
        if table > MAX_TABLE {
            return Err(format!("implausible table of more than {MAX_TABLE} bytes"));
        }
        let mut t = vec![0u8; tlen as usize];
        r.read_exact(&mut t)
            .map_err(|e| format!("bundle triple: {e}"))?;
        let t = String::from_utf8(t).map_err(|_| "triple is not text".to_owned())?;
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("triple is not printable".into());
        }
        end = end.max(off.saturating_add(size));
        triples.push(t);
    }
    Ok((triples, end))
}

/// Header of a compressed bundle: (header length, method name, total size if recorded).
fn ccob_header(h: &[u8]) -> Result<(u64, &'static str, Option<u64>), String> {
    let version = u16_at(h, 4).ok_or("short CCOB header")?;
    let method = match u16_at(h, 6).ok_or("short CCOB header")? {
        0 => "zlib",
        1 => "zstd",
        m => return Err(format!("unknown CCOB compression method {m}")),
    };
    match version {
        1 => Ok((20, method, None)),
        2 => Ok((
            24,
            method,
            Some(u64::from(u32_at(h, 8).ok_or("short CCOB header")?)),
        )),
        3 => Ok((32, method, Some(u64_at(h, 8).ok_or("short CCOB header")?))),
        v => Err(format!("unknown CCOB version {v}")),
    }
}

/// Every bundle in `[start, start + len)` of `src` (a `.hip_fatbin` section).
pub fn scan(src: &dyn ByteSource, start: u64, len: u64) -> Result<Vec<Bundle>, String> {
    let end = start.saturating_add(len).min(src.len());
    let plain = memmem::Finder::new(MAGIC);
    let compressed = memmem::Finder::new(CCOB);
    let mut out: Vec<Bundle> = Vec::new();
    let mut kept = 0usize;
    let mut keep = |b: Bundle, out: &mut Vec<Bundle>| -> Result<(), String> {
        kept += 64 + b.triples.iter().map(|t| t.len() + 32).sum::<usize>();
        if kept > MAX_KEPT {
            return Err(format!(
                "more than {} MiB of offload-bundle tables ({} bundles): refused as implausible",
                MAX_KEPT >> 20,
                out.len()
            ));
        }
        out.push(b);
        Ok(())
    };
    let mut pos = start;
    let window = 1u64 << 20;
    let mut buf = vec![0u8; window as usize];
    while pos < end && end - pos >= 4 {
        let n = (end - pos).min(window) as usize;
        src.read_at(pos, &mut buf[..n])
            .map_err(|e| format!("read fatbin: {e}"))?;
        let hay = &buf[..n];
        let hit = [plain.find(hay), compressed.find(hay)]
            .into_iter()
            .flatten()
            .min();
        let Some(i) = hit else {
            if n < window as usize {
                break;
            }
            pos += window - (MAGIC.len() as u64 - 1);
            continue;
        };
        let at = pos + i as u64;
        if hay[i..].starts_with(MAGIC) || (end - at >= 24 && starts_with_at(src, at, MAGIC)) {
            let mut r = RangeReader::new(src, at, end);
            match read_table(&mut r) {
                Ok((triples, size)) => {
                    keep(
                        Bundle {
                            offset: at - start,
                            compression: None,
                            triples,
                        },
                        &mut out,
                    )?;
                    // Sizes come from the file: saturate, never wrap (a wrapped position rescans
                    // forever).
                    pos = at.saturating_add(size.max(32));
                }
                Err(_) => pos = at + 1,
            }
        } else {
            let mut h = [0u8; 32];
            let hn = (end - at).min(32) as usize;
            src.read_at(at, &mut h[..hn])
                .map_err(|e| format!("read fatbin: {e}"))?;
            match ccob_header(&h[..hn]) {
                Ok((hlen, method, total)) => {
                    let body_end = total.map_or(end, |t| at.saturating_add(t).min(end));
                    let body = RangeReader::new(src, at + hlen, body_end);
                    let table = match method {
                        "zstd" => zstd::stream::read::Decoder::new(body)
                            .map_err(|e| format!("zstd: {e}"))
                            .and_then(|mut d| read_table(&mut d)),
                        _ => read_table(&mut flate2::read::ZlibDecoder::new(body)),
                    };
                    match table {
                        Ok((triples, _)) => {
                            keep(
                                Bundle {
                                    offset: at - start,
                                    compression: Some(method),
                                    triples,
                                },
                                &mut out,
                            )?;
                            pos = total.map_or(at + hlen, |t| at.saturating_add(t.max(hlen)));
                        }
                        Err(_) => pos = at + 1,
                    }
                }
                Err(_) => pos = at + 1,
            }
        }
    }
    Ok(out)
}

fn starts_with_at(src: &dyn ByteSource, at: u64, magic: &[u8]) -> bool {
    let mut b = vec![0u8; magic.len()];
    src.read_at(at, &mut b).is_ok() && b == magic
}

/// What a `.kpack` archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kpack {
    /// `gfx_arches` of its table of contents, plus every arch a TOC entry names.
    pub archs: Vec<String>,
    /// Binaries it carries kernels for.
    pub binaries: Vec<String>,
}

/// Parse a `.kpack` archive: `KPAK`, version, TOC offset, MessagePack TOC.
pub fn read_kpack(src: &dyn ByteSource) -> Result<Kpack, String> {
    let mut h = [0u8; 16];
    src.read_at(0, &mut h)
        .map_err(|_| "truncated kpack header".to_owned())?;
    if &h[..4] != KPAK {
        return Err("not a kpack archive (no KPAK magic)".into());
    }
    let toc = u64_at(&h, 8).expect("16 bytes");
    if toc < 16 || toc >= src.len() {
        return Err(format!("kpack TOC offset {toc} is outside the file"));
    }
    let mut r = RangeReader::new(src, toc, src.len());
    let v = rmpv::decode::read_value(&mut r).map_err(|e| format!("kpack TOC: {e}"))?;
    let get = |m: &rmpv::Value, k: &str| -> Option<rmpv::Value> {
        m.as_map()?
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    let mut archs: Vec<String> = get(&v, "gfx_arches")
        .and_then(|a| a.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let mut binaries = Vec::new();
    if let Some(toc) = get(&v, "toc").and_then(|t| t.as_map().cloned()) {
        for (bin, per_arch) in toc {
            if let Some(b) = bin.as_str() {
                binaries.push(b.to_owned());
            }
            for (arch, _) in per_arch.as_map().cloned().unwrap_or_default() {
                if let Some(a) = arch.as_str()
                    && !archs.iter().any(|x| x == a)
                {
                    archs.push(a.to_owned());
                }
            }
        }
    }
    Ok(Kpack { archs, binaries })
}

/// Generic targets and the processors they cover (LLVM AMDGPUUsage).
const GENERIC: &[(&str, &[&str])] = &[
    (
        "gfx9-generic",
        &["gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"],
    ),
    ("gfx9-4-generic", &["gfx940", "gfx941", "gfx942", "gfx950"]),
    (
        "gfx10-1-generic",
        &["gfx1010", "gfx1011", "gfx1012", "gfx1013"],
    ),
    (
        "gfx10-3-generic",
        &[
            "gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036",
        ],
    ),
    (
        "gfx11-generic",
        &[
            "gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152", "gfx1153",
        ],
    ),
    ("gfx12-generic", &["gfx1200", "gfx1201"]),
];

/// Whether code for `target` (`gfx1151`, `gfx1151:xnack-`, `gfx11-generic`) runs on `arch`.
/// Returns `Some("exact")`, `Some(generic name)`, or `None`.
pub fn covers<'t>(target: &'t str, arch: &str) -> Option<&'t str> {
    let processor = target.split(':').next().unwrap_or(target);
    if processor == arch {
        return Some("exact");
    }
    GENERIC
        .iter()
        .find(|(g, list)| *g == processor && list.contains(&arch))
        .map(|_| processor)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An uncompressed bundle as clang-offload-bundler writes it.
    pub fn bundle(triples: &[&str]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&(triples.len() as u64).to_le_bytes());
        let header_len: usize = 32 + triples.iter().map(|t| 24 + t.len()).sum::<usize>();
        let mut off = header_len as u64;
        let bodies: Vec<Vec<u8>> = triples
            .iter()
            .map(|t| format!("code object for {t}").into_bytes())
            .collect();
        for (t, body) in triples.iter().zip(&bodies) {
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&(body.len() as u64).to_le_bytes());
            b.extend_from_slice(&(t.len() as u64).to_le_bytes());
            b.extend_from_slice(t.as_bytes());
            off += body.len() as u64;
        }
        for body in bodies {
            b.extend_from_slice(&body);
        }
        b
    }

    /// A compressed bundle (CCOB v3 or v2, zstd or zlib).
    pub fn ccob(inner: &[u8], version: u16, method: u16) -> Vec<u8> {
        let payload = if method == 1 {
            zstd::encode_all(inner, 3).unwrap()
        } else {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, inner).unwrap();
            e.finish().unwrap()
        };
        let mut b = CCOB.to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&method.to_le_bytes());
        match version {
            1 => {
                b.extend_from_slice(&(inner.len() as u32).to_le_bytes());
                b.extend_from_slice(&0x1234_5678_u64.to_le_bytes());
                b.extend_from_slice(&payload);
                return b;
            }
            3 => {
                b.extend_from_slice(&(32 + payload.len() as u64).to_le_bytes());
                b.extend_from_slice(&(inner.len() as u64).to_le_bytes());
            }
            _ => {
                b.extend_from_slice(&(24 + payload.len() as u32).to_le_bytes());
                b.extend_from_slice(&(inner.len() as u32).to_le_bytes());
            }
        }
        b.extend_from_slice(&0x1234_5678_u64.to_le_bytes());
        b.extend_from_slice(&payload);
        b
    }

    const T1: &str = "hipv4-amdgcn-amd-amdhsa--gfx1151";
    const T2: &str = "hipv4-amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-";
    const HOST: &str = "host-x86_64-unknown-linux-gnu-";

    #[test]
    fn finds_plain_and_compressed_bundles_in_a_section() {
        let mut sec = vec![0u8; 100];
        sec.extend(bundle(&[HOST, T1, T2]));
        sec.resize(4096, 0);
        sec.extend(ccob(
            &bundle(&[HOST, "hipv4-amdgcn-amd-amdhsa--gfx1100"]),
            3,
            1,
        ));
        sec.resize(8192, 0);
        sec.extend(ccob(
            &bundle(&[HOST, "hipv4-amdgcn-amd-amdhsa--gfx1201"]),
            2,
            0,
        ));
        let src: Vec<u8> = sec;
        let found = scan(&src, 0, src.len() as u64).unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].offset, 100);
        assert_eq!(
            found[0].targets().collect::<Vec<_>>(),
            ["gfx1151", "gfx90a:sramecc+:xnack-"]
        );
        assert_eq!(found[1].compression, Some("zstd"));
        assert_eq!(found[1].targets().collect::<Vec<_>>(), ["gfx1100"]);
        assert_eq!(found[2].compression, Some("zlib"));
        assert_eq!(found[2].targets().collect::<Vec<_>>(), ["gfx1201"]);
    }

    #[test]
    fn ccob_v1_without_a_total_size_is_read() {
        let sec = ccob(&bundle(&[HOST, T1]), 1, 1);
        let found = scan(&sec, 0, sec.len() as u64).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].compression, Some("zstd"));
        assert_eq!(found[0].targets().collect::<Vec<_>>(), ["gfx1151"]);
    }

    #[test]
    fn garbage_that_looks_like_a_magic_is_ignored() {
        let mut sec = b"xxCCOByy".to_vec();
        sec.extend_from_slice(MAGIC);
        sec.extend_from_slice(&u64::MAX.to_le_bytes());
        sec.extend(vec![7u8; 64]);
        assert!(scan(&sec, 0, sec.len() as u64).unwrap().is_empty());
    }

    #[test]
    fn generic_targets_cover_their_family() {
        assert_eq!(covers("gfx1151", "gfx1151"), Some("exact"));
        assert_eq!(covers("gfx1151:xnack-", "gfx1151"), Some("exact"));
        assert_eq!(covers("gfx11-generic", "gfx1151"), Some("gfx11-generic"));
        assert_eq!(covers("gfx1100", "gfx1151"), None);
        assert_eq!(covers("gfx12-generic", "gfx1151"), None);
    }

    #[test]
    fn kpack_toc_lists_archs() {
        use rmpv::Value;
        let toc = Value::Map(vec![
            (Value::from("format_version"), Value::from(1)),
            (
                Value::from("gfx_arches"),
                Value::Array(vec![Value::from("gfx1150"), Value::from("gfx1151")]),
            ),
            (
                Value::from("toc"),
                Value::Map(vec![(
                    Value::from("torch/lib/libtorch_hip.so"),
                    Value::Map(vec![(Value::from("gfx1151"), Value::Map(vec![]))]),
                )]),
            ),
        ]);
        let mut b = KPAK.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&64u64.to_le_bytes());
        b.resize(64, 0);
        rmpv::encode::write_value(&mut b, &toc).unwrap();
        let k = read_kpack(&b).unwrap();
        assert_eq!(k.archs, ["gfx1150", "gfx1151"]);
        assert_eq!(k.binaries, ["torch/lib/libtorch_hip.so"]);
        assert!(read_kpack(&b"KPAX0000".to_vec()).is_err());
    }

    #[test]
    fn a_section_packed_with_bundles_is_refused_past_the_memory_bound() {
        // 17 bundles of 255 triples of 4 KiB (each table just under MAX_TABLE): past MAX_KEPT.
        let t = "a".repeat(4096);
        let triples: Vec<&str> = std::iter::repeat_n(t.as_str(), 255).collect();
        let one = bundle(&triples);
        let packed: Vec<u8> = one.repeat(17);
        let e = scan(&packed, 0, packed.len() as u64).unwrap_err();
        assert!(e.contains("refused as implausible"), "{e}");
        // Under the bound: read.
        let fewer: Vec<u8> = one.repeat(3);
        assert_eq!(scan(&fewer, 0, fewer.len() as u64).unwrap().len(), 3);
    }

    #[test]
    fn a_table_larger_than_a_mebibyte_is_refused() {
        let t = "a".repeat(4096);
        let triples: Vec<&str> = std::iter::repeat_n(t.as_str(), 300).collect();
        let b = bundle(&triples);
        assert!(scan(&b, 0, b.len() as u64).unwrap().is_empty());
        let b = bundle(&triples[..200]);
        assert_eq!(scan(&b, 0, b.len() as u64).unwrap().len(), 1);
    }

    #[test]
    fn fuzz_crash_offset_overflow_is_read_without_panic() {
        // Found by `scripts/fuzz.sh bundle` in seconds: an entry whose offset + size is near
        // 2^64 made `at + size` overflow (a panic; in release a wrapped position that rescans
        // the section for ever).
        let crash = include_bytes!("../../tests/fixtures/fuzz/bundle-offset-overflow").to_vec();
        let t = std::time::Instant::now();
        let found = scan(&crash, 0, crash.len() as u64).unwrap();
        assert!(found.len() <= 2, "{found:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
