//! One GPU-code inventory for wheels and images (issue 25): what GPU code a file carries, read the
//! same way wherever it sits. ELF libraries carry theirs in `.hip_fatbin` offload bundles
//! ([`super::elf`], [`super::offload`]) or point at a kpack (`.rocm_kpack_ref`); beside them,
//! standalone code objects (`.co`, `.hsaco`: an AMDGPU ELF or an offload bundle), kpack archives,
//! and Tensile `.dat` / MIOpen `.kdb` files named by arch. [`units`] groups them the way both the
//! wheel check (`wheel.gpu-targets`) and the image audit (`image.gpu-targets`) judge them: one
//! unit per ELF with its kpack's targets folded in, one per directory of code-object files.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::Serialize;

use super::offload::{self, Bundle};
use super::source::{Spilled, spill};

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// A code-object file.
#[derive(Debug, Clone, Serialize)]
pub struct CodeObject {
    /// Size in bytes.
    pub size: u64,
    /// GPU targets read from it (AMDGPU ELF header, offload bundle, kpack TOC) or, for
    /// `.dat`/`.kdb` files, from its name.
    pub targets: Vec<String>,
    /// How the targets were read: `elf`, `bundle`, `kpack`, `name`.
    pub how: &'static str,
}

/// How much of a code-object file is read for its header.
const CO_HEAD: u64 = 256 << 10;

/// Which kind of code-object file a path names: `co` (`.co`, `.hsaco`: an AMDGPU ELF or an
/// offload bundle), `kpack`, or `name` (Tensile `.dat`, MIOpen `.kdb`: targets from the name).
pub fn code_object_kind(path: &str) -> Option<&'static str> {
    let f = file_name(path);
    let lower = path.to_ascii_lowercase();
    if f.ends_with(".co") || f.ends_with(".hsaco") {
        Some("co")
    } else if f.ends_with(".kpack") {
        Some("kpack")
    } else if (f.ends_with(".dat")
        && (lower.contains("tensile") || lower.contains("/library/") || f.contains("gfx"))
        && (lower.contains("rocblas") || lower.contains("hipblaslt") || lower.contains("tensile")))
        || (f.ends_with(".kdb") && lower.contains("miopen"))
    {
        Some("name")
    } else {
        None
    }
}

/// `gfxNNNN` names in a file name (`TensileLibrary_lazy_gfx1100.dat` -> gfx1100).
pub fn archs_in_name(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = name.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr::memmem::find(&b[i..], b"gfx") {
        let start = i + k;
        let mut end = start + 3;
        while end < b.len() && b[end].is_ascii_alphanumeric() {
            end += 1;
        }
        // gfx9-generic / gfx11-generic
        if name[end..].starts_with("-generic") {
            end += "-generic".len();
        } else if let Some(rest) = name[end..].strip_prefix('-')
            && rest.len() > 9
            && rest.as_bytes()[0].is_ascii_digit()
            && rest[1..].starts_with("-generic")
        {
            end += 1 + 1 + "-generic".len();
        }
        let t = &name[start..end];
        if t.len() > 3 && t.as_bytes()[3].is_ascii_digit() && !out.iter().any(|x| x == t) {
            out.push(t.to_owned());
        }
        i = end;
    }
    out
}

/// EF_AMDGPU_MACH values (LLVM's AMDGPUUsage, `ELF.h`) to processor names.
fn amdgpu_mach(m: u32) -> Option<&'static str> {
    Some(match m {
        0x020 => "gfx600",
        0x021 => "gfx601",
        0x022 => "gfx700",
        0x023 => "gfx701",
        0x024 => "gfx702",
        0x025 => "gfx703",
        0x026 => "gfx704",
        0x028 => "gfx801",
        0x029 => "gfx802",
        0x02a => "gfx803",
        0x02b => "gfx810",
        0x02c => "gfx900",
        0x02d => "gfx902",
        0x02e => "gfx904",
        0x02f => "gfx906",
        0x030 => "gfx908",
        0x031 => "gfx909",
        0x032 => "gfx90c",
        0x033 => "gfx1010",
        0x034 => "gfx1011",
        0x035 => "gfx1012",
        0x036 => "gfx1030",
        0x037 => "gfx1031",
        0x038 => "gfx1032",
        0x039 => "gfx1033",
        0x03a => "gfx602",
        0x03b => "gfx705",
        0x03c => "gfx805",
        0x03d => "gfx1035",
        0x03e => "gfx1034",
        0x03f => "gfx90a",
        0x040 => "gfx940",
        0x041 => "gfx1100",
        0x042 => "gfx1013",
        0x043 => "gfx1150",
        0x044 => "gfx1103",
        0x045 => "gfx1036",
        0x046 => "gfx1101",
        0x047 => "gfx1102",
        0x048 => "gfx1200",
        0x04a => "gfx1151",
        0x04b => "gfx941",
        0x04c => "gfx942",
        0x04e => "gfx1201",
        0x04f => "gfx950",
        0x051 => "gfx9-generic",
        0x052 => "gfx10-1-generic",
        0x053 => "gfx10-3-generic",
        0x054 => "gfx11-generic",
        0x055 => "gfx1152",
        0x058 => "gfx1153",
        0x059 => "gfx12-generic",
        0x05f => "gfx9-4-generic",
        _ => return None,
    })
}

/// The target of an AMDGPU code object from its ELF header (`gfx90a:sramecc+:xnack-`).
pub fn amdgpu_elf_target(head: &[u8]) -> Option<String> {
    if head.len() < 64 || !head.starts_with(b"\x7fELF") || head[4] != 2 {
        return None;
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if machine != 224 {
        return None;
    }
    let abi_version = head[8];
    let flags = u32::from_le_bytes(head[48..52].try_into().ok()?);
    let mut t = amdgpu_mach(flags & 0xff)?.to_owned();
    // Code object v4+ (ABI version >= 2): xnack bits 8-9, sramecc bits 10-11;
    // 1 = any (no suffix), 2 = off, 3 = on.
    if abi_version >= 2 {
        for (name, shift) in [("sramecc", 10), ("xnack", 8)] {
            match (flags >> shift) & 3 {
                2 => t.push_str(&format!(":{name}-")),
                3 => t.push_str(&format!(":{name}+")),
                _ => {}
            }
        }
    }
    Some(t)
}

/// Read a code-object file of `kind` (from [`code_object_kind`]) for its GPU targets.
pub fn read_code_object(
    r: &mut dyn Read,
    path: &str,
    size: u64,
    kind: &str,
) -> io::Result<CodeObject> {
    let name_targets = || archs_in_name(file_name(path));
    if kind == "name" {
        return Ok(CodeObject {
            size,
            targets: name_targets(),
            how: "name",
        });
    }
    if kind == "kpack" {
        let src = match spill(r, size, size)? {
            Spilled::Done(s) => s,
            Spilled::TooLong => return Err(io::Error::other("longer than its tar header says")),
        };
        return Ok(match offload::read_kpack(src.as_ref()) {
            Ok(k) => CodeObject {
                size,
                targets: k.archs,
                how: "kpack",
            },
            Err(_) => CodeObject {
                size,
                targets: name_targets(),
                how: "name",
            },
        });
    }
    let mut head = Vec::new();
    r.take(CO_HEAD).read_to_end(&mut head)?;
    if let Some(t) = amdgpu_elf_target(&head) {
        return Ok(CodeObject {
            size,
            targets: vec![t],
            how: "elf",
        });
    }
    let found = offload::scan(&head, 0, head.len() as u64).unwrap_or_default();
    let mut targets: Vec<String> = Vec::new();
    for t in found.iter().flat_map(Bundle::targets) {
        if !targets.iter().any(|x| x == t) {
            targets.push(t.to_owned());
        }
    }
    if !targets.is_empty() {
        return Ok(CodeObject {
            size,
            targets,
            how: "bundle",
        });
    }
    Ok(CodeObject {
        size,
        targets: name_targets(),
        how: "name",
    })
}

/// Whether code for `target` runs on `arch`, features read right: a target without a feature
/// suffix is "any"; `xnack-` code does not run where the arch asks for `xnack+` and vice versa.
/// Returns `Some("exact")`, `Some(generic)` or `None`.
pub fn runs_on<'t>(target: &'t str, arch: &str) -> Option<&'t str> {
    let mut want = arch.split(':');
    let proc_ = want.next().unwrap_or(arch);
    let how = offload::covers(target, proc_)?;
    let feats: Vec<&str> = target.split(':').skip(1).collect();
    for w in want {
        let (name, on) = (w.trim_end_matches(['+', '-']), w.ends_with('+'));
        if let Some(f) = feats
            .iter()
            .find(|f| f.trim_end_matches(['+', '-']) == name)
            && f.ends_with('+') != on
        {
            return None;
        }
    }
    Some(how)
}

/// One judged piece of GPU code: an ELF library, or a directory of code-object files.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The ELF's path, or the directory's (ending in `/`).
    pub path: String,
    /// `elf` or `code-objects`.
    pub kind: &'static str,
    /// Files in the unit (1 for an ELF).
    pub files: usize,
    /// The first file (for owner lookups).
    pub first: String,
    /// GPU targets, deduplicated (a directory's sorted).
    pub targets: Vec<String>,
    /// Wanted archs it has no code for.
    pub lacking: Vec<String>,
    /// Wanted archs it runs on only through generic code (`gfx1151 via gfx11-generic`).
    pub generic: Vec<String>,
}

/// An ELF as [`units`] sees it: its path, the targets of its own bundles, its kpack reference.
pub struct ElfCode<'a> {
    /// Path.
    pub path: &'a str,
    /// Targets of its offload bundles.
    pub targets: Vec<String>,
    /// Its `.rocm_kpack_ref`.
    pub kpack_ref: Option<&'a str>,
}

/// Which wanted archs `targets` lacks, and which it reaches only through generic code.
pub fn judge(targets: &[String], archs: &[String]) -> (Vec<String>, Vec<String>) {
    let mut lacking = Vec::new();
    let mut generic = Vec::new();
    for a in archs {
        match targets.iter().find_map(|t| runs_on(t, a)) {
            Some("exact") => {}
            Some(g) => generic.push(format!("{a} via {g}")),
            None => lacking.push(a.clone()),
        }
    }
    (lacking, generic)
}

/// The units of GPU code among `elves` and the code-object files `objects` (path -> what it
/// holds): each ELF with the targets of the kpacks its reference names (all kpacks when it names
/// none found), and each directory of non-kpack code-object files as one unit.
pub fn units<'a>(
    elves: impl IntoIterator<Item = ElfCode<'a>>,
    objects: impl IntoIterator<Item = (&'a String, &'a CodeObject)>,
    archs: &[String],
) -> Vec<Unit> {
    let objects: Vec<(&String, &CodeObject)> = objects.into_iter().collect();
    let is_kpack = |p: &str, c: &CodeObject| c.how == "kpack" || p.ends_with(".kpack");
    let kpacks: Vec<(&String, &Vec<String>)> = objects
        .iter()
        .filter(|(p, c)| is_kpack(p, c))
        .map(|&(p, c)| (p, &c.targets))
        .collect();
    let mut out = Vec::new();
    for e in elves {
        let mut targets = e.targets;
        if let Some(r) = e.kpack_ref {
            let named: Vec<_> = kpacks
                .iter()
                .filter(|(k, _)| r.contains(file_name(k)))
                .collect();
            let pool: Vec<_> = if named.is_empty() {
                kpacks.iter().collect()
            } else {
                named
            };
            for (_, ts) in pool {
                for t in ts.iter() {
                    if !targets.contains(t) {
                        targets.push(t.clone());
                    }
                }
            }
        }
        let (lacking, generic) = judge(&targets, archs);
        out.push(Unit {
            path: e.path.to_owned(),
            kind: "elf",
            files: 1,
            first: e.path.to_owned(),
            targets,
            lacking,
            generic,
        });
    }
    let mut dirs: BTreeMap<&str, (usize, Vec<String>, &String)> = BTreeMap::new();
    for &(p, c) in &objects {
        if is_kpack(p, c) {
            continue;
        }
        let e = dirs.entry(parent(p)).or_insert((0, Vec::new(), p));
        e.0 += 1;
        for t in &c.targets {
            if !e.1.contains(t) {
                e.1.push(t.clone());
            }
        }
    }
    for (d, (files, mut targets, first)) in dirs {
        targets.sort();
        let (lacking, generic) = judge(&targets, archs);
        out.push(Unit {
            path: format!("{d}/"),
            kind: "code-objects",
            files,
            first: first.clone(),
            targets,
            lacking,
            generic,
        });
    }
    out
}
