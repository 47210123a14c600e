//! Phase 3: `forge wheel`. Reads a wheel once, streaming: the zip's central directory (zip64
//! included), then each ELF member decompressed once into memory or an unlinked temporary file
//! (never the whole wheel, never `unzip`/`nm`/`ldd`), members on separate cores, largest first.
//! Checks the spec's 3.1-3.6 plus the build flavour, the GPU code objects for the target arch,
//! and the GLIBC versions the ELF files need against the wheel's platform tag.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::elf::{self, ElfError, ElfInfo};
use super::gpucode::{self, CodeObject};
use super::offload;
use super::resolve::{self, LibRoot, Resolution};
use super::source::{Spilled, spill};
use super::{check, check_when};
use crate::error::{Error, Result};
use crate::report::{Check, Status};

/// What `forge wheel` checks against.
#[derive(Debug, Clone)]
pub struct WheelOptions {
    /// GPU archs the code objects must cover.
    pub archs: Vec<String>,
    /// 3.1's threshold.
    pub min_bytes: u64,
}

/// The wheel's identity, from its file name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WheelName {
    /// Distribution.
    pub name: String,
    /// Version (with local tag).
    pub version: String,
    /// The local version tag (`rocm7.1.1`, `cu128`), if any.
    pub local: Option<String>,
    /// Python tag.
    pub python: String,
    /// ABI tag.
    pub abi: String,
    /// Platform tag.
    pub platform: String,
}

/// Parse `{dist}-{version}(-{build})?-{py}-{abi}-{plat}.whl`.
pub fn parse_name(file: &str) -> Option<WheelName> {
    let stem = file.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(5..=6).contains(&parts.len()) {
        return None;
    }
    let n = parts.len();
    Some(WheelName {
        name: parts[0].to_owned(),
        version: parts[1].to_owned(),
        local: parts[1].split_once('+').map(|(_, l)| l.to_owned()),
        python: parts[n - 3].to_owned(),
        abi: parts[n - 2].to_owned(),
        platform: parts[n - 1].to_owned(),
    })
}

/// One ELF member as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ElfMember {
    /// Path in the wheel.
    pub path: String,
    /// Uncompressed size.
    pub size: u64,
    /// DT_NEEDED.
    pub needed: Vec<String>,
    /// DT_RUNPATH / DT_RPATH.
    pub runpath: Vec<String>,
    /// GPU targets of its code objects (from `.hip_fatbin`, or its kpack).
    pub gpu_targets: Vec<String>,
    /// Offload bundles found.
    pub bundles: usize,
    /// `.rocm_kpack_ref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpack_ref: Option<String>,
    /// Why it was not fully read (32-bit, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

enum Parsed {
    Elf(Box<ElfInfo>),
    CodeObject(CodeObject),
    Skipped(String),
}

/// A zip reader over a shared file: each worker has its own position, the central directory
/// is parsed once and shared.
#[derive(Clone)]
struct SharedFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start")
        })?;
        Ok(self.pos)
    }
}

/// Largest uncompressed size forge accepts for one member.
const MEMBER_MAX: u64 = 16 << 30;
/// Compression ratio above which a large member is refused as a zip bomb.
const RATIO_MAX: u64 = 1000;

fn is_candidate(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.ends_with(".so")
        || file.contains(".so.")
        || name.contains("/bin/")
        || gpucode::code_object_kind(name).is_some()
}

fn must_be_elf(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.ends_with(".so") || file.contains(".so.")
}

/// Everything read from the wheel.
pub struct WheelData {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its name's parts.
    pub name: WheelName,
    /// ELF members by path.
    pub elves: BTreeMap<String, (u64, ElfInfo)>,
    /// Members that are not analysable ELF (32-bit, ...): path -> why.
    pub notes: BTreeMap<String, String>,
    /// Standalone GPU code (`.co`, `.hsaco`, `.kpack`, Tensile `.dat`, MIOpen `.kdb`), read as
    /// the image audit reads it ([`gpucode`]): path -> its targets.
    pub code_objects: BTreeMap<String, CodeObject>,
    /// Number of members.
    pub members: usize,
    /// Its `Requires-Dist` lines (from the top-level `*.dist-info/METADATA`), as written.
    pub requires: Vec<String>,
}

fn bad_wheel(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::input(
        format!("`{}` is not a readable wheel: {why}", path.display()),
        Some(
            "pass a .whl file (a zip archive with a *.dist-info/WHEEL); a truncated download must be fetched again",
        ),
    )
}

/// One member to read: its index in the zip, its name, its declared and compressed sizes.
type Job = (usize, String, u64, u64);

/// What the central directory says: the members to read and where METADATA is.
struct Listing {
    /// ELF and kpack candidates.
    jobs: Vec<Job>,
    /// METADATA's index and declared size, if the wheel has one at the top level.
    metadata: Option<(usize, u64)>,
}

/// Read the wheel: central directory, then every ELF and kpack member, in parallel.
pub fn read_wheel(path: &Path, threads: usize) -> Result<WheelData> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = parse_name(file_name).ok_or_else(|| {
        Error::input(
            format!("`{}` is not a wheel file name", path.display()),
            Some("wheels are named {dist}-{version}-{python}-{abi}-{platform}.whl"),
        )
    })?;
    let file = File::open(path).map_err(|e| Error::io("open wheel", path, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let shared = SharedFile {
        file: Arc::new(file),
        pos: 0,
        len: bytes,
    };
    let mut archive = zip::ZipArchive::new(shared).map_err(|e| bad_wheel(path, e))?;
    let mut listing = list_members(&mut archive, path)?;
    let members = archive.len();
    let requires = read_requires(&mut archive, listing.metadata, path)?;
    // Largest first (they take longest), then by name: the order, and so which error is
    // reported when several members are bad, does not depend on the zip's member order.
    listing
        .jobs
        .sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.1.cmp(&b.1)));
    let results = read_members(&archive, &listing.jobs, threads, path);
    let mut data = WheelData {
        path: path.to_owned(),
        bytes,
        name,
        elves: BTreeMap::new(),
        notes: BTreeMap::new(),
        code_objects: BTreeMap::new(),
        members,
        requires,
    };
    for (_, member, size, r) in results {
        match r? {
            Parsed::Elf(info) => {
                data.elves.insert(member, (size, *info));
            }
            Parsed::CodeObject(c) => {
                data.code_objects.insert(member, c);
            }
            Parsed::Skipped(why) => {
                data.notes.insert(member, why);
            }
        }
    }
    Ok(data)
}

/// Walk the central directory: refuse duplicate names and zip bombs, require a
/// `*.dist-info/WHEEL`, and list the members to read.
fn list_members(archive: &mut zip::ZipArchive<SharedFile>, path: &Path) -> Result<Listing> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut has_wheel_meta = false;
    let mut metadata = None;
    let mut declared_total = 0u64;
    let mut names = std::collections::HashSet::new();
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(|e| bad_wheel(path, e))?;
        let member = f.name().map_err(|e| bad_wheel(path, e))?.into_owned();
        // Two members of one name: which one a reader takes depends on the reader.
        if !names.insert(member.clone()) {
            return Err(bad_wheel(path, format!("`{member}` is in it twice")));
        }
        let (size, csize) = (f.size(), f.compressed_size());
        if member.ends_with(".dist-info/WHEEL") {
            has_wheel_meta = true;
        }
        if member.ends_with(".dist-info/METADATA") && member.matches('/').count() == 1 {
            metadata = Some((i, size));
        }
        declared_total = declared_total.saturating_add(size);
        if size > MEMBER_MAX || (size > 64 << 20 && size / csize.max(1) > RATIO_MAX) {
            return Err(Error::input(
                format!(
                    "`{member}` in `{}` declares {size} bytes from {csize} compressed: refused as a zip bomb",
                    path.display()
                ),
                Some("this is not what a build produces; check where the wheel came from"),
            ));
        }
        if f.is_file() && is_candidate(&member) {
            jobs.push((i, member, size, csize));
        }
    }
    if !has_wheel_meta {
        return Err(bad_wheel(path, "no *.dist-info/WHEEL member"));
    }
    Ok(Listing { jobs, metadata })
}

/// The `Requires-Dist` values of the wheel's METADATA (none when it is absent or over 16 MiB).
fn read_requires(
    archive: &mut zip::ZipArchive<SharedFile>,
    metadata: Option<(usize, u64)>,
    path: &Path,
) -> Result<Vec<String>> {
    Ok(match metadata {
        Some((i, size)) if size <= 16 << 20 => {
            let mut text = String::new();
            archive
                .by_index(i)
                .map_err(|e| bad_wheel(path, e))?
                .read_to_string(&mut text)
                .map_err(|e| bad_wheel(path, format!("METADATA: {e}")))?;
            requires_dist(&text)
        }
        _ => Vec::new(),
    })
}

/// One member's outcome: its job's position, name, declared size and what reading it gave.
type Outcome = (usize, String, u64, std::result::Result<Parsed, Error>);

/// Read the jobs on up to `threads` workers, stopping after the first failure (in job order);
/// the outcomes come back in job order.
fn read_members(
    archive: &zip::ZipArchive<SharedFile>,
    jobs: &[Job],
    threads: usize,
    path: &Path,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    // The first job (in that order) that failed: later jobs are not started, earlier ones are
    // all finished, so the error reported is the same whatever the threads' timing.
    let failed_at = AtomicUsize::new(usize::MAX);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let workers = threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            let mut ar = archive.clone();
            let (next, results, failed_at) = (&next, &results, &failed_at);
            s.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k > failed_at.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some((i, member, size, _)) = jobs.get(k) else {
                        break;
                    };
                    let r = read_member(&mut ar, *i, member, *size, path);
                    if r.is_err() {
                        failed_at.fetch_min(k, Ordering::SeqCst);
                    }
                    results
                        .lock()
                        .expect("no poisoned lock")
                        .push((k, member.clone(), *size, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no poisoned lock");
    results.sort_by_key(|r| r.0);
    results
}

/// The `Requires-Dist` values of a METADATA text (its header block: the body is the long
/// description).
pub fn requires_dist(metadata: &str) -> Vec<String> {
    metadata
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn read_member(
    ar: &mut zip::ZipArchive<SharedFile>,
    i: usize,
    member: &str,
    declared: u64,
    wheel: &Path,
) -> std::result::Result<Parsed, Error> {
    let bad = |why: String| {
        Error::input(
            format!("`{member}` in `{}`: {why}", wheel.display()),
            Some("the wheel is corrupt or not what a build produces"),
        )
    };
    let mut f = ar.by_index(i).map_err(|e| bad(e.to_string()))?;
    // A standalone code object: its header (or its name) says its target; read as the image
    // audit reads it. A kpack is read whole below: a wheel's broken kpack is a broken wheel.
    if let Some(kind) = gpucode::code_object_kind(member).filter(|k| *k != "kpack") {
        return gpucode::read_code_object(&mut f, member, declared, kind)
            .map(Parsed::CodeObject)
            .map_err(|e| bad(format!("cannot decompress: {e}")));
    }
    let src = match spill(f, declared, declared) {
        Ok(Spilled::Done(s)) => s,
        Ok(Spilled::TooLong) => {
            return Err(bad(format!(
                "decompresses to more than its declared {declared} bytes: refused as a zip bomb"
            )));
        }
        Err(e) => return Err(bad(format!("cannot decompress: {e}"))),
    };
    if src.len() != declared {
        return Err(bad(format!(
            "declared {declared} bytes, holds {}",
            src.len()
        )));
    }
    if member.ends_with(".kpack") {
        return offload::read_kpack(src.as_ref())
            .map(|k| {
                Parsed::CodeObject(CodeObject {
                    size: declared,
                    targets: k.archs,
                    how: "kpack",
                })
            })
            .map_err(bad);
    }
    match elf::read(src.as_ref(), true) {
        Ok(info) => Ok(Parsed::Elf(Box::new(info))),
        Err(ElfError::Unsupported(why)) => Ok(Parsed::Skipped(why)),
        Err(ElfError::NotElf(_)) if !must_be_elf(member) => Ok(Parsed::Skipped("not ELF".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

use crate::units::mb;

/// What a wheel was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// torch with `libtorch_hip.so`.
    Rocm,
    /// torch with `libtorch_cuda.so` and no HIP library.
    Cuda,
    /// torch with neither.
    Cpu,
    /// Not a torch wheel (no `libtorch_cpu.so`).
    NotTorch,
}

/// The flavour of a torch wheel.
pub fn flavour(d: &WheelData) -> Flavour {
    let has = |p: &str| d.elves.contains_key(p);
    if has("torch/lib/libtorch_hip.so") {
        Flavour::Rocm
    } else if has("torch/lib/libtorch_cuda.so") {
        Flavour::Cuda
    } else if has("torch/lib/libtorch_cpu.so") {
        Flavour::Cpu
    } else {
        Flavour::NotTorch
    }
}

/// The highest `GLIBC_x` a manylinux platform tag allows (`manylinux_2_28_x86_64` -> 2.28).
pub fn platform_glibc(platform: &str) -> Option<Vec<u32>> {
    let legacy = [
        ("manylinux1", [2, 5]),
        ("manylinux2010", [2, 12]),
        ("manylinux2014", [2, 17]),
    ];
    for (tag, v) in legacy {
        if platform.starts_with(&format!("{tag}_")) {
            return Some(v.to_vec());
        }
    }
    let rest = platform.strip_prefix("manylinux_")?;
    let mut it = rest.split('_');
    Some(vec![it.next()?.parse().ok()?, it.next()?.parse().ok()?])
}

/// Highest version of each of GLIBC, GLIBCXX, CXXABI needed, and by which member.
pub fn max_versions(d: &WheelData) -> BTreeMap<&'static str, (Vec<u32>, String)> {
    let mut out: BTreeMap<&'static str, (Vec<u32>, String)> = BTreeMap::new();
    for (path, (_, info)) in &d.elves {
        for (_, v) in &info.version_needs {
            for prefix in ["GLIBCXX_", "GLIBC_", "CXXABI_"] {
                if let Some(num) = v.strip_prefix(prefix)
                    && let Some(parsed) = crate::recipe::parse_version(num)
                {
                    let key = prefix.trim_end_matches('_');
                    let key: &'static str = match key {
                        "GLIBC" => "GLIBC",
                        "GLIBCXX" => "GLIBCXX",
                        _ => "CXXABI",
                    };
                    let e = out.entry(key).or_insert((Vec::new(), String::new()));
                    if crate::recipe::version_lt(&e.0, &parsed) {
                        *e = (parsed, path.clone());
                    }
                    break;
                }
            }
        }
    }
    out
}

fn dotted(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// The ELF list for `--json`: each ELF's GPU targets with its kpack's folded in.
pub fn elf_members(d: &WheelData) -> Vec<ElfMember> {
    let units = gpucode::units(elf_code(d, |_| true), &d.code_objects, &[]);
    let mut out: Vec<ElfMember> = d
        .elves
        .iter()
        .zip(units.into_iter().filter(|u| u.kind == "elf"))
        .map(|((path, (size, info)), u)| ElfMember {
            path: path.clone(),
            size: *size,
            needed: info.needed.clone(),
            runpath: info.runpath.iter().chain(&info.rpath).cloned().collect(),
            gpu_targets: u.targets,
            bundles: info.bundles.len(),
            kpack_ref: info.kpack_ref.clone(),
            note: None,
        })
        .collect();
    for (path, why) in &d.notes {
        out.push(ElfMember {
            path: path.clone(),
            size: 0,
            needed: Vec::new(),
            runpath: Vec::new(),
            gpu_targets: Vec::new(),
            bundles: 0,
            kpack_ref: None,
            note: Some(why.clone()),
        });
    }
    out
}

/// The wheel's ELF members that `keep` selects, as the GPU-code inventory takes them.
fn elf_code<'a>(
    d: &'a WheelData,
    keep: impl Fn(&ElfInfo) -> bool + 'a,
) -> impl Iterator<Item = gpucode::ElfCode<'a>> + 'a {
    d.elves
        .iter()
        .filter(move |(_, (_, i))| keep(i))
        .map(|(p, (_, i))| gpucode::ElfCode {
            path: p,
            targets: i.gpu_targets(),
            kpack_ref: i.kpack_ref.as_deref(),
        })
}

/// 3.1's hint for a ROCm wheel below the threshold, from evidence: the spec's 2 GB counts a
/// wheel that bundles ROCm's math libraries for many arches. A `setup.py bdist_wheel` build for
/// one arch bundles no rocBLAS/hipBLASLt/MIOpen (they stay in the base image's /opt/rocm), and
/// even the official torch 2.10+rocm7.1 wheel, math libraries included, is about 1.1 GB per gfx11
/// arch once split by arch (gist 105d58437d903218c476594c2ba33cce; pytorch/pytorch#105278 and
/// #129165 on what the bulk is: GPU code per arch).
pub const SMALL_ROCM_WHEEL: &str = "a single-arch ROCm wheel built with setup.py bundles no ROCm math libraries and is expected below the spec's 2 GB (the official torch 2.10+rocm7.1 wheel is ~1.1 GB per gfx11 arch with them; pytorch/pytorch#105278, #129165): if wheel.flavour, 3.2-3.6 and wheel.gpu-targets pass, the wheel is sound and the run goes on with it; do not rebuild for size alone (lower `checks.wheel-min-bytes` in the recipe to record that choice)";

/// Run every phase 3 check on the wheel.
pub fn checks(
    d: &WheelData,
    opts: &WheelOptions,
    root: Option<&mut dyn LibRoot>,
) -> (Vec<Check>, Option<Resolution>) {
    checks_with(d, opts, root, &[])
}

/// [`checks`], with wheels installed beside it into the same site-packages (`companions`: the
/// ROCm wheels a TheRock torch loads its HIP runtime from, through RUNPATHs such as
/// `$ORIGIN/../../_rocm_sdk_core/lib`): 3.6 resolves libtorch_hip.so against their libraries as
/// the loader will once they are installed together.
pub fn checks_with(
    d: &WheelData,
    opts: &WheelOptions,
    root: Option<&mut dyn LibRoot>,
    companions: &[WheelData],
) -> (Vec<Check>, Option<Resolution>) {
    let mut out = Vec::new();
    let fl = flavour(d);
    out.push(size_check(d, opts, fl));
    out.push(flavour_check(d, fl));
    out.extend(symbol_checks(d, fl));
    let (hip, resolution) = hip_checks(d, fl, root, companions);
    out.extend(hip);
    out.push(gpu_check(d, opts));
    out.push(glibc_check(d));
    (out, resolution)
}

/// The Skip of a torch check on a wheel that is not torch.
fn not_torch(d: &WheelData, id: &str) -> Check {
    check(
        id,
        Status::Skip,
        format!(
            "no torch/lib/libtorch_cpu.so in `{}`: the torch checks do not apply",
            d.name.name
        ),
    )
}

/// 3.1: the wheel's size against the threshold.
fn size_check(d: &WheelData, opts: &WheelOptions, fl: Flavour) -> Check {
    if fl == Flavour::NotTorch {
        return not_torch(d, "3.1");
    }
    let size = d.bytes;
    let band = if size < 500_000_000 {
        "< 500 MB: a CPU-only build per the spec's table"
    } else if size < 2_000_000_000 {
        "500 MB - 2 GB: an incomplete ROCm build per the spec's table"
    } else {
        "> 2 GB: a full ROCm build per the spec's table"
    };
    let mut c = check_when(
        size > opts.min_bytes,
        "3.1",
        format!("{} ({band}); threshold {}", mb(size), mb(opts.min_bytes)),
    );
    if size <= opts.min_bytes {
        c = c.with_hint(match fl {
            Flavour::Cuda => {
                "this is a CUDA build (libtorch_cuda.so), not ROCm: build with USE_ROCM=1".to_owned()
            }
            Flavour::Rocm => SMALL_ROCM_WHEEL.to_owned(),
            _ => "build with USE_ROCM=1 and PYTORCH_ROCM_ARCH set; check `forge scan` on the build log"
                .to_owned(),
        });
    }
    c
}

/// wheel.flavour: ROCm, CUDA or CPU-only, from the torch libraries present.
fn flavour_check(d: &WheelData, fl: Flavour) -> Check {
    if fl == Flavour::NotTorch {
        return not_torch(d, "wheel.flavour");
    }
    let evidence = match fl {
        Flavour::Rocm => "ROCm: torch/lib/libtorch_hip.so present".to_owned(),
        Flavour::Cuda => "CUDA: torch/lib/libtorch_cuda.so present, no libtorch_hip.so".to_owned(),
        _ => "CPU-only: neither libtorch_hip.so nor libtorch_cuda.so".to_owned(),
    };
    let local = d
        .name
        .local
        .as_deref()
        .map(|l| format!("; local tag +{l}"))
        .unwrap_or_default();
    let c = check_when(
        fl == Flavour::Rocm,
        "wheel.flavour",
        format!("{evidence}; {} {}{local}", d.name.name, d.name.version),
    );
    if fl == Flavour::Rocm {
        c
    } else {
        c.with_hint("forge releases ROCm builds: build with USE_ROCM=1 on a ROCm base image")
    }
}

/// 3.2 - 3.4: libtorch_cpu.so defines the c10d, PrefixStore and ProcessGroup symbols.
fn symbol_checks(d: &WheelData, fl: Flavour) -> Vec<Check> {
    let Some((_, cpu)) = d.elves.get("torch/lib/libtorch_cpu.so") else {
        return ["3.2", "3.3", "3.4"]
            .into_iter()
            .map(|id| {
                if fl != Flavour::NotTorch {
                    check(id, Status::Fail, "torch/lib/libtorch_cpu.so is missing")
                } else {
                    not_torch(d, id)
                }
            })
            .collect();
    };
    let mut out = Vec::new();
    let dist = "build with USE_DISTRIBUTED=1: without it vLLM fails with `cannot import name 'PrefixStore'`";
    let c = check_when(
        cpu.c10d > 0,
        "3.2",
        format!(
            "{} defined dynamic symbols contain c10d (of {})",
            cpu.c10d, cpu.defined_count
        ),
    );
    out.push(if cpu.c10d > 0 { c } else { c.with_hint(dist) });
    for (id, (n, example), what) in [
        ("3.3", &cpu.prefix_store, "PrefixStore"),
        ("3.4", &cpu.process_group, "ProcessGroup"),
    ] {
        let ev = match example {
            Some(e) => format!("{n} defined symbols name {what}, e.g. {e}"),
            None => format!("no defined symbol names {what}"),
        };
        let c = check_when(*n > 0, id, ev);
        out.push(if *n > 0 { c } else { c.with_hint(dist) });
    }
    out
}

/// 3.5 - 3.6: libtorch_hip.so links the HIP runtime, and its symbols resolve (against the
/// wheel, its companions and `root`).
fn hip_checks(
    d: &WheelData,
    fl: Flavour,
    root: Option<&mut dyn LibRoot>,
    companions: &[WheelData],
) -> (Vec<Check>, Option<Resolution>) {
    let Some((_, hip)) = d.elves.get("torch/lib/libtorch_hip.so") else {
        let why = match fl {
            Flavour::Cuda => "no torch/lib/libtorch_hip.so: this is a CUDA build",
            Flavour::Cpu => "no torch/lib/libtorch_hip.so: this is a CPU-only build",
            _ => "not a torch wheel",
        };
        return (
            vec![
                check("3.5", Status::Skip, why),
                check("3.6", Status::Skip, why),
            ],
            None,
        );
    };
    let has = |p: &str| hip.needed.iter().any(|n| n.starts_with(p));
    let ok = has("libamdhip64") && has("libhsa-runtime64");
    let c = check_when(ok, "3.5", format!("DT_NEEDED: {}", hip.needed.join(", ")));
    let c35 = if ok {
        c
    } else {
        c.with_hint("libtorch_hip.so must link the HIP runtime: a broken ROCm build")
    };
    let mut wheel_elves: HashMap<String, ElfInfo> = HashMap::new();
    for c in companions {
        wheel_elves.extend(c.elves.iter().map(|(p, (_, i))| (p.clone(), i.clone())));
    }
    wheel_elves.extend(d.elves.iter().map(|(p, (_, i))| (p.clone(), i.clone())));
    let desc = root.as_ref().map(|r| r.describe());
    let res = resolve::resolve("torch/lib/libtorch_hip.so", hip, &wheel_elves, root);
    let c36 = check_36(hip, &res, desc.as_deref());
    (vec![c35, c36], Some(res))
}

fn is_rocm_symbol(name: &str) -> bool {
    name.contains("rsmi") || name.contains("hip") || name.contains("hsa")
}

fn check_36(hip: &ElfInfo, res: &Resolution, root: Option<&str>) -> Check {
    let rsmi_bug = hip.undefined.iter().any(|u| u.name.starts_with("rsmi_"))
        && !hip.needed.iter().any(|n| n.starts_with("librocm_smi64"));
    let bug = "libtorch_hip.so calls rsmi_* but does not need librocm_smi64.so: the known upstream bug \
               (ROCm/pytorch#2901, pytorch/pytorch#158725) that fails with `undefined symbol: rsmi_init` \
               unless LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so";
    let unresolved: Vec<&String> = res
        .unresolved
        .iter()
        .filter(|n| is_rocm_symbol(n))
        .collect();
    let mut ev = format!(
        "{} undefined non-weak symbols, {} resolved through {} loaded libraries",
        res.undefined,
        res.resolved,
        res.loaded.len()
    );
    if !res.missing.is_empty() {
        ev.push_str(&format!("; not found: {}", res.missing.join(", ")));
    }
    if !unresolved.is_empty() {
        let shown: Vec<&str> = unresolved.iter().take(12).map(|s| s.as_str()).collect();
        ev.push_str(&format!(
            "; unresolved rsmi/hip/hsa symbols ({}): {}{}",
            unresolved.len(),
            shown.join(", "),
            if unresolved.len() > 12 { ", ..." } else { "" }
        ));
    }
    if rsmi_bug {
        ev.push_str(&format!("; {bug}"));
    }
    let hint_missing = match root {
        Some(r) => format!("the libraries were not found in the wheel or under {r}"),
        None => "pass `--lib-root DIR` (a root filesystem with ROCm) or `--image TAG` to resolve against the image".to_owned(),
    };
    if unresolved.is_empty() {
        let c = check("3.6", Status::Pass, ev);
        return if rsmi_bug { c.with_hint(bug) } else { c };
    }
    if res.missing.is_empty() || rsmi_bug {
        let hint = if rsmi_bug {
            "install rocm-smi-lib and preload librocm_smi64.so, or rebuild torch with the upstream fix".to_owned()
        } else {
            "a needed library lacks these symbols: mixed ROCm versions?".to_owned()
        };
        return check("3.6", Status::Fail, ev).with_hint(hint);
    }
    check(
        "3.6",
        Status::Skip,
        format!("cannot resolve without the needed libraries ({hint_missing}): {ev}"),
    )
}

fn gpu_check(d: &WheelData, opts: &WheelOptions) -> Check {
    // Every ELF with GPU code, however it reaches HIP (directly, or through hipBLAS, rocBLAS,
    // ... as a library whose kernels sit in its own .hip_fatbin does), every HIP-linked one, and
    // every directory of standalone code objects: one inventory with the image audit's.
    let has_code = |i: &ElfInfo| i.has_fatbin || !i.bundles.is_empty() || i.kpack_ref.is_some();
    let linked_only: Vec<&String> = d
        .elves
        .iter()
        .filter(|(_, (_, i))| i.hip_linked() && !has_code(i))
        .map(|(p, _)| p)
        .collect();
    let units = gpucode::units(elf_code(d, has_code), &d.code_objects, &opts.archs);
    if units.is_empty() && linked_only.is_empty() {
        return check(
            "wheel.gpu-targets",
            Status::Skip,
            "no ELF with GPU code or HIP linkage in the wheel (no .hip_fatbin, no kpack reference, nothing needs libamdhip64) and no code-object files",
        );
    }
    let mut lacking: Vec<String> = Vec::new();
    let mut carrying = Vec::new();
    let mut without_code: Vec<String> = linked_only.iter().map(|p| (*p).clone()).collect();
    let mut via_generic = Vec::new();
    let elves = units.iter().filter(|u| u.kind == "elf").count() + linked_only.len();
    let (dirs, objects) = units
        .iter()
        .filter(|u| u.kind != "elf")
        .fold((0, 0), |(n, f), u| (n + 1, f + u.files));
    for u in &units {
        let name = if u.kind == "elf" {
            u.path.rsplit('/').next().unwrap_or(&u.path).to_owned()
        } else {
            format!("{} ({} code-object files)", u.path, u.files)
        };
        if u.targets.is_empty() {
            without_code.push(name);
            continue;
        }
        via_generic.extend(u.generic.iter().map(|g| format!("{name}: {g}")));
        if u.lacking.is_empty() {
            carrying.push(format!("{name} [{}]", u.targets.join(", ")));
        } else {
            lacking.push(format!(
                "{name} has [{}], not {}",
                u.targets.join(", "),
                u.lacking.join(", ")
            ));
        }
    }
    let mut ev = format!(
        "{elves} ELF with GPU code or HIP linkage, {objects} code-object files in {dirs} directories; code for {} in: {}",
        opts.archs.join(";"),
        if carrying.is_empty() {
            "none".to_owned()
        } else {
            carrying.join(", ")
        }
    );
    if !via_generic.is_empty() {
        ev.push_str(&format!("; {}", via_generic.join(", ")));
    }
    if !without_code.is_empty() {
        ev.push_str(&format!("; no device code in {}", without_code.join(", ")));
    }
    if !lacking.is_empty() {
        return check(
            "wheel.gpu-targets",
            Status::Fail,
            format!("{ev}; LACKING: {}", lacking.join("; ")),
        )
        .with_hint(format!(
            "this GPU code would fail on the first kernel with hipErrorInvalidImage on {}: rebuild with PYTORCH_ROCM_ARCH={}",
            opts.archs.join(";"),
            opts.archs.join(";")
        ));
    }
    if carrying.is_empty() {
        return check("wheel.gpu-targets", Status::Fail, format!("{ev}; no GPU code objects at all"))
            .with_hint("no .hip_fatbin bundles, code-object files or .kpack archives found: kernels would fail with hipErrorInvalidImage");
    }
    check("wheel.gpu-targets", Status::Pass, ev)
}

/// What the wheel's platform tag promises, and where the ELF files break it.
#[derive(Default)]
struct TagVerdict {
    /// The policies (or GLIBC floor) the tag promises.
    promised: Vec<String>,
    /// Each need beyond them.
    broken: Vec<String>,
    /// Remarks that change no status.
    notes: Vec<String>,
}

/// wheel.glibc: the symbol versions the ELF files need against the platform tag's promise.
fn glibc_check(d: &WheelData) -> Check {
    let maxes = max_versions(d);
    let listed: Vec<String> = maxes
        .iter()
        .map(|(k, (v, who))| {
            format!(
                "{k}_{} ({})",
                dotted(v),
                who.rsplit('/').next().unwrap_or(who)
            )
        })
        .collect();
    let ev = if listed.is_empty() {
        "no versioned symbol needs".to_owned()
    } else {
        listed.join(", ")
    };
    let mut verdict = policy_verdict(d);
    // Tags without policy data: the GLIBC floor the tag names.
    if verdict.promised.is_empty()
        && let Some(allowed) = platform_glibc(&d.name.platform)
    {
        verdict
            .promised
            .push(format!("GLIBC <= {}", dotted(&allowed)));
        if let Some((v, who)) = maxes.get("GLIBC")
            && crate::recipe::version_lt(&allowed, v)
        {
            verdict.broken.push(format!(
                "{} needs GLIBC_{}, beyond the tag's GLIBC {}",
                who.rsplit('/').next().unwrap_or(who),
                dotted(v),
                dotted(&allowed)
            ));
        }
    }
    let TagVerdict {
        promised,
        broken,
        notes,
    } = verdict;
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };
    if promised.is_empty() {
        return check(
            "wheel.glibc",
            Status::Pass,
            format!(
                "{ev}; the tag {} makes no manylinux promise, so this is the image's glibc floor{notes}",
                d.name.platform
            ),
        );
    }
    if broken.is_empty() {
        return check(
            "wheel.glibc",
            Status::Pass,
            format!(
                "{ev}; within the tag {} ({}){notes}",
                d.name.platform,
                promised.join("; ")
            ),
        );
    }
    glibc_fail(d, &ev, &broken, &notes)
}

/// The auditwheel policies each part of the platform tag names, checked against the ELF files
/// (a compound tag, `manylinux_2_17_x86_64.manylinux2014_x86_64`, promises each of its parts).
fn policy_verdict(d: &WheelData) -> TagVerdict {
    use super::manylinux::{self, TagPolicy};
    let elves = || d.elves.iter().map(|(p, (_, i))| (p, i));
    let mut v = TagVerdict::default();
    for tag in d.name.platform.split('.') {
        match manylinux::for_tag(tag) {
            TagPolicy::NoPromise => {}
            TagPolicy::Known(policy, arch) => {
                v.promised.push(policy.display());
                for x in manylinux::violations(policy, &arch, elves()) {
                    v.broken.push(format!(
                        "{} needs {}, which breaks {} ({})",
                        x.member.rsplit('/').next().unwrap_or(&x.member),
                        x.needs,
                        policy.display(),
                        x.why
                    ));
                }
                let outside = manylinux::external_libraries(policy, elves());
                if !outside.is_empty() {
                    v.notes.push(format!(
                        "links {} librar{} neither in {}'s list nor in the wheel ({}): auditwheel would bundle them or need `--exclude`",
                        outside.len(),
                        if outside.len() == 1 { "y" } else { "ies" },
                        policy.name,
                        outside.join(", ")
                    ));
                }
            }
            TagPolicy::OtherArch(arch) => v.notes.push(format!(
                "forge carries auditwheel's policies for {} only, not {arch}: checked GLIBC against the tag alone",
                manylinux::ARCHS.join(", ")
            )),
            TagPolicy::Unknown(name) => v.notes.push(format!(
                "`{name}` is not in forge's copy of auditwheel's policies: checked GLIBC against the tag alone"
            )),
        }
    }
    v
}

/// wheel.glibc's Fail: the first 8 broken needs, and the best policy the wheel fits.
fn glibc_fail(d: &WheelData, ev: &str, broken: &[String], notes: &str) -> Check {
    use super::manylinux;
    let elves = || d.elves.iter().map(|(p, (_, i))| (p, i));
    let shown: Vec<&str> = broken.iter().take(8).map(String::as_str).collect();
    let arch = manylinux::tag_arch(&d.name.platform).unwrap_or("x86_64");
    let fits = manylinux::best_policy(arch, elves());
    check(
        "wheel.glibc",
        Status::Fail,
        format!(
            "{ev}; {}{}{notes}",
            shown.join("; "),
            if broken.len() > 8 {
                format!("; and {} more", broken.len() - 8)
            } else {
                String::new()
            }
        ),
    )
    .with_hint(match fits {
        Some(p) => format!(
            "the wheel needs newer system libraries than its tag {} promises: it fits {} at best, so retag it `{}_{}`, or build on an older toolchain",
            d.name.platform,
            p.display(),
            p.name,
            arch
        ),
        None => format!(
            "the wheel needs newer system libraries than its tag {} promises and fits no manylinux policy: tag it `linux_x86_64`, or build on an older toolchain",
            d.name.platform
        ),
    })
}

#[cfg(test)]
mod tests;
