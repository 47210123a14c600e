//! Reading what forge needs from an ELF shared object without loading all of it: section
//! headers, `.dynsym` + its strings, `.dynamic`, `.gnu.version_r`, and the `.hip_fatbin` /
//! `.rocm_kpack_ref` sections. The pieces are read at their offsets from a [`ByteSource`] and
//! handed to the `object` crate's ELF parsers through a sparse [`ReadRef`].

use std::collections::HashSet;
use std::ops::Range;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{LittleEndian as LE, ReadRef};
use serde::Serialize;

use super::offload::{self, Bundle};
use super::source::ByteSource;

/// An undefined dynamic symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undefined {
    /// Its name.
    pub name: String,
    /// Weak (may stay unresolved).
    pub weak: bool,
}

/// What forge knows of one ELF file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ElfInfo {
    /// DT_NEEDED.
    pub needed: Vec<String>,
    /// DT_SONAME.
    pub soname: Option<String>,
    /// DT_RUNPATH entries.
    pub runpath: Vec<String>,
    /// DT_RPATH entries.
    pub rpath: Vec<String>,
    /// Undefined dynamic symbols.
    #[serde(skip)]
    pub undefined: Vec<Undefined>,
    /// Hashes of the defined dynamic symbols' names.
    #[serde(skip)]
    pub defined: HashSet<u64>,
    /// Defined dynamic symbols.
    pub defined_count: usize,
    /// Defined dynamic symbols whose name contains `c10d`.
    pub c10d: usize,
    /// A defined symbol naming `PrefixStore`, and how many there are.
    pub prefix_store: (usize, Option<String>),
    /// A defined symbol naming `ProcessGroup`, and how many there are.
    pub process_group: (usize, Option<String>),
    /// Version needs: (library, version), e.g. (`libc.so.6`, `GLIBC_2.28`).
    pub version_needs: Vec<(String, String)>,
    /// Offload bundles in `.hip_fatbin`.
    pub bundles: Vec<Bundle>,
    /// Whether a `.hip_fatbin` section exists.
    pub has_fatbin: bool,
    /// The kpack the code objects were moved to (`.rocm_kpack_ref`).
    pub kpack_ref: Option<String>,
}

impl ElfInfo {
    /// Needs the HIP runtime.
    pub fn hip_linked(&self) -> bool {
        self.needed.iter().any(|n| n.starts_with("libamdhip64"))
    }

    /// GPU targets of all its bundles, deduplicated, in order.
    pub fn gpu_targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.bundles.iter().flat_map(Bundle::targets) {
            if !out.iter().any(|x| x == t) {
                out.push(t.to_owned());
            }
        }
        out
    }
}

/// FNV-1a, for the defined-symbol sets (8 bytes a symbol instead of its name).
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The pieces of the file that were read, served to `object` as if it were the whole file.
struct Sparse {
    len: u64,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl Sparse {
    fn piece(&self, offset: u64) -> Option<&(u64, Vec<u8>)> {
        self.pieces
            .iter()
            .find(|(start, data)| offset >= *start && offset < start + data.len() as u64)
    }
}

impl<'a> ReadRef<'a> for &'a Sparse {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        if size == 0 {
            return Ok(&[]);
        }
        let (start, data) = self.piece(offset).ok_or(())?;
        let from = usize::try_from(offset - start).map_err(|_| ())?;
        let to = from
            .checked_add(usize::try_from(size).map_err(|_| ())?)
            .ok_or(())?;
        data.get(from..to).ok_or(())
    }

    fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
        let (start, data) = self.piece(range.start).ok_or(())?;
        let from = usize::try_from(range.start - start).map_err(|_| ())?;
        let to = usize::try_from(range.end.saturating_sub(*start))
            .unwrap_or(usize::MAX)
            .min(data.len());
        let hay = data.get(from..to).ok_or(())?;
        memchr::memchr(delimiter, hay).map(|i| &hay[..i]).ok_or(())
    }
}

/// Why an ELF could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not ELF at all.
    #[error("not an ELF file (starts with {0})")]
    NotElf(String),
    /// Shorter than its headers say.
    #[error("truncated ELF: {0}")]
    Truncated(String),
    /// A valid ELF forge does not read (32-bit, big-endian).
    #[error("unsupported ELF: {0}")]
    Unsupported(String),
    /// Inconsistent structures.
    #[error("malformed ELF: {0}")]
    Malformed(String),
}

fn read_piece(src: &dyn ByteSource, off: u64, size: u64, what: &str) -> Result<Vec<u8>, ElfError> {
    if size > 1 << 31 {
        return Err(ElfError::Malformed(format!("{what} claims {size} bytes")));
    }
    if off.checked_add(size).is_none_or(|end| end > src.len()) {
        return Err(ElfError::Truncated(format!(
            "{what} at {off}+{size} is past the end ({} bytes)",
            src.len()
        )));
    }
    let mut v = vec![0u8; size as usize];
    src.read_at(off, &mut v)
        .map_err(|e| ElfError::Truncated(format!("{what}: {e}")))?;
    Ok(v)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Read an ELF shared object. `keep_defined` keeps the defined symbols' name hashes (for
/// resolving another library's undefined symbols against this one).
pub fn read(src: &dyn ByteSource, keep_defined: bool) -> Result<ElfInfo, ElfError> {
    let head = header_bytes(src)?;
    let (sparse, fatbin) = sparse_image(src, head)?;
    let data = &sparse;
    let e = LE;
    let header = elf::FileHeader64::<LE>::parse(data).map_err(malformed("header"))?;
    let sections = header.sections(e, data).map_err(malformed("sections"))?;
    let mut info = ElfInfo::default();
    symbols_into(&mut info, &sections, data, keep_defined)?;
    dynamic_into(&mut info, &sections, data)?;
    verneed_into(&mut info, &sections, data)?;
    if let Some((_, sh)) = sections.section_by_name(e, b".rocm_kpack_ref") {
        let raw = sh.data(e, data).map_err(malformed(".rocm_kpack_ref"))?;
        let s = text(
            raw.split(|b| *b == 0)
                .find(|p| !p.is_empty())
                .unwrap_or(b""),
        );
        info.kpack_ref = Some(s);
    }
    if let Some((o, s)) = fatbin {
        info.has_fatbin = true;
        if o.checked_add(s).is_none_or(|end| end > src.len()) {
            return Err(ElfError::Truncated(format!(
                ".hip_fatbin at {o}+{s} is past the end"
            )));
        }
        info.bundles = offload::scan(src, o, s).map_err(ElfError::Malformed)?;
    }
    Ok(info)
}

/// The object crate's error on `what` as a malformed file.
fn malformed(what: &'static str) -> impl Fn(object::read::Error) -> ElfError {
    move |err| ElfError::Malformed(format!("{what}: {err}"))
}

/// The section table over the pieces read.
type Sections<'a> = object::read::elf::SectionTable<'a, elf::FileHeader64<LE>, &'a Sparse>;

/// The first 64 bytes, judged: ELF, 64-bit, little-endian.
fn header_bytes(src: &dyn ByteSource) -> Result<Vec<u8>, ElfError> {
    let head = {
        let n = src.len().min(64) as usize;
        let mut h = vec![0u8; n];
        src.read_at(0, &mut h)
            .map_err(|e| ElfError::Truncated(e.to_string()))?;
        h
    };
    if !head.starts_with(b"\x7fELF") {
        let shown: String = head
            .iter()
            .take(8)
            .map(|b| {
                if b.is_ascii_graphic() {
                    (*b as char).to_string()
                } else {
                    format!("\\x{b:02x}")
                }
            })
            .collect();
        return Err(ElfError::NotElf(format!("`{shown}`")));
    }
    if head.len() < 64 {
        return Err(ElfError::Truncated(format!(
            "{} bytes, shorter than an ELF header",
            head.len()
        )));
    }
    if head[4] != elf::ELFCLASS64.0 {
        return Err(ElfError::Unsupported("32-bit".into()));
    }
    if head[5] != elf::ELFDATA2LSB.0 {
        return Err(ElfError::Unsupported("big-endian".into()));
    }
    Ok(head)
}

/// Only the pieces the reader needs (headers, section names, dynamic symbols and strings,
/// `.dynamic`, version needs, the kpack reference), read once; and where `.hip_fatbin` is.
fn sparse_image(
    src: &dyn ByteSource,
    head: Vec<u8>,
) -> Result<(Sparse, Option<(u64, u64)>), ElfError> {
    let (fh, _) = object::pod::from_bytes::<elf::FileHeader64<LE>>(&head)
        .map_err(|_| ElfError::Malformed("header".into()))?;
    let e = LE;
    let shoff = fh.e_shoff.get(e);
    let shnum = u64::from(fh.e_shnum.get(e));
    let shentsize = u64::from(fh.e_shentsize.get(e));
    if shnum == 0 || shentsize != 64 {
        return Err(ElfError::Unsupported(format!(
            "no usable section headers ({shnum} of {shentsize} bytes)"
        )));
    }
    let sh_bytes = read_piece(src, shoff, shnum * 64, "section headers")?;
    let shdrs = object::pod::slice_from_all_bytes::<elf::SectionHeader64<LE>>(&sh_bytes)
        .map_err(|_| ElfError::Malformed("section headers".into()))?;
    let shstrndx = usize::from(fh.e_shstrndx.get(e).0);
    let shstr = shdrs
        .get(shstrndx)
        .ok_or_else(|| ElfError::Malformed(format!("e_shstrndx {shstrndx} out of range")))?;
    let range_of = |s: &elf::SectionHeader64<LE>| (s.sh_offset(e), s.sh_size(e));
    let mut wanted: Vec<(u64, u64, String)> = Vec::new();
    let (o, s) = range_of(shstr);
    wanted.push((o, s, "section names".into()));
    let shstr_bytes = read_piece(src, o, s, "section names")?;
    let name_of = |sh: &elf::SectionHeader64<LE>| -> &[u8] {
        let start = sh.sh_name(e) as usize;
        shstr_bytes
            .get(start..)
            .and_then(|b| memchr::memchr(0, b).map(|i| &b[..i]))
            .unwrap_or(b"")
    };
    let mut fatbin = None;
    for (i, sh) in shdrs.iter().enumerate() {
        let ty = sh.sh_type(e);
        let name = name_of(sh);
        let needed = matches!(
            ty,
            elf::SHT_DYNSYM | elf::SHT_DYNAMIC | elf::SHT_GNU_VERNEED
        ) || name == b".rocm_kpack_ref";
        if needed && ty != elf::SHT_NOBITS {
            let (o, s) = range_of(sh);
            wanted.push((o, s, text(name)));
            if ty != elf::SHT_NOBITS
                && matches!(
                    ty,
                    elf::SHT_DYNSYM | elf::SHT_DYNAMIC | elf::SHT_GNU_VERNEED
                )
            {
                let link = shdrs.get(sh.sh_link(e) as usize).ok_or_else(|| {
                    ElfError::Malformed(format!("section {i} links to a missing section"))
                })?;
                let (o, s) = range_of(link);
                wanted.push((o, s, text(name_of(link))));
            }
        }
        if name == b".hip_fatbin" && ty != elf::SHT_NOBITS {
            fatbin = Some(range_of(sh));
        }
    }
    let mut pieces = vec![(0, head.clone()), (shoff, sh_bytes.clone())];
    wanted.sort();
    wanted.dedup_by_key(|w| (w.0, w.1));
    for (o, s, what) in wanted {
        if s == 0
            || pieces
                .iter()
                // Offsets and sizes come from the file: an overflowing range is no piece's.
                .any(|(po, pd)| {
                    o >= *po
                        && o.checked_add(s)
                            .is_some_and(|end| end <= po + pd.len() as u64)
                })
        {
            continue;
        }
        pieces.push((o, read_piece(src, o, s, &what)?));
    }
    let sparse = Sparse {
        len: src.len(),
        pieces,
    };
    Ok((sparse, fatbin))
}

/// The dynamic symbols: undefined ones, defined ones counted (and hashed if kept), the
/// distributed markers (c10d, PrefixStore, ProcessGroup).
fn symbols_into<'a>(
    info: &mut ElfInfo,
    sections: &Sections<'a>,
    data: &'a Sparse,
    keep_defined: bool,
) -> Result<(), ElfError> {
    let e = LE;
    let dynsyms = sections
        .symbols(e, data, elf::SHT_DYNSYM)
        .map_err(malformed(".dynsym"))?;
    let strings = dynsyms.strings();
    for sym in dynsyms.iter().skip(1) {
        let name = sym.name(e, strings).map_err(malformed(".dynstr"))?;
        if name.is_empty() {
            continue;
        }
        if sym.st_shndx(e) == elf::SHN_UNDEF {
            info.undefined.push(Undefined {
                name: text(name),
                weak: sym.st_bind() == elf::STB_WEAK,
            });
            continue;
        }
        info.defined_count += 1;
        if keep_defined {
            info.defined.insert(name_hash(name));
        }
        if memchr::memmem::find(name, b"c10d").is_some() {
            info.c10d += 1;
        }
        for (needle, slot) in [
            (&b"PrefixStore"[..], &mut info.prefix_store),
            (&b"ProcessGroup"[..], &mut info.process_group),
        ] {
            if memchr::memmem::find(name, needle).is_some() {
                slot.0 += 1;
                if slot.1.is_none() {
                    slot.1 = Some(text(name));
                }
            }
        }
    }
    Ok(())
}

/// `.dynamic`: NEEDED, SONAME, RUNPATH, RPATH.
fn dynamic_into<'a>(
    info: &mut ElfInfo,
    sections: &Sections<'a>,
    data: &'a Sparse,
) -> Result<(), ElfError> {
    let e = LE;
    if let Some((dyns, link)) = sections.dynamic(e, data).map_err(malformed(".dynamic"))? {
        let strtab = sections
            .strings(e, data, link)
            .map_err(malformed(".dynamic strings"))?;
        for d in dyns {
            let tag = d.d_tag.get(e);
            if tag == elf::DT_NULL {
                break;
            }
            let val = d.d_val.get(e);
            let s = || {
                u32::try_from(val)
                    .ok()
                    .and_then(|v| strtab.get(v).ok())
                    .map(text)
                    .ok_or_else(|| {
                        ElfError::Malformed(format!("dynamic tag {tag:?} names a missing string"))
                    })
            };
            match tag {
                t if t == elf::DT_NEEDED => info.needed.push(s()?),
                t if t == elf::DT_SONAME => info.soname = Some(s()?),
                t if t == elf::DT_RUNPATH => {
                    info.runpath.extend(s()?.split(':').map(str::to_owned))
                }
                t if t == elf::DT_RPATH => info.rpath.extend(s()?.split(':').map(str::to_owned)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `.gnu.version_r`: the symbol versions needed, per library.
fn verneed_into<'a>(
    info: &mut ElfInfo,
    sections: &Sections<'a>,
    data: &'a Sparse,
) -> Result<(), ElfError> {
    let e = LE;
    if let Some((mut iter, link)) = sections
        .gnu_verneed(e, data)
        .map_err(malformed(".gnu.version_r"))?
    {
        let strtab = sections
            .strings(e, data, link)
            .map_err(malformed(".gnu.version_r strings"))?;
        while let Some((vn, aux)) = iter.next().map_err(malformed(".gnu.version_r"))? {
            let file = text(vn.file(e, strtab).map_err(malformed(".gnu.version_r"))?);
            for a in aux {
                let a = a.map_err(malformed(".gnu.version_r"))?;
                info.version_needs.push((
                    file.clone(),
                    text(a.name(e, strtab).map_err(malformed(".gnu.version_r"))?),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod fuzz_regressions {
    #[test]
    fn fuzz_crash_section_range_overflow_is_an_error_not_a_panic() {
        // Found by `scripts/fuzz.sh elf` (2397 executions): a section whose offset + size
        // overflows u64 panicked in the piece lookup.
        let crash = include_bytes!("../../tests/fixtures/fuzz/elf-section-overflow").to_vec();
        assert!(super::read(&crash, true).is_err());
    }
}
