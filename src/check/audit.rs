//! The image audit (`forge image --arch`, and `forge build`'s export): what the image's files
//! say, read from the export stream by [`super::imagefs`], without running the image.
//!
//! - `image.gpu-targets`: every ELF with GPU code (a `.hip_fatbin`, offload bundles, a kpack
//!   reference: however it reaches HIP) and every directory of code-object files (Tensile,
//!   MIOpen kernel databases, `.co`/`.hsaco`) judged against the arch; those that torch or vLLM
//!   load (DT_NEEDED closure of their modules, plus the code objects the math libraries open by
//!   name, plus the ROCm math libraries themselves in an image meant to carry torch) fail the
//!   check when they lack it, the others are listed as evidence; nothing known to load any of
//!   them is a skip (nothing to judge), never a pass.
//! - `image.rocm-versions`: one ROCm release across AMD's packages, pip ROCm wheels and
//!   `amdsmi`, `/opt/rocm*/.info/version`, library file names and `+rocmX` local tags; a
//!   distribution's own ROCm packages are one unit (its components' own versions, its HIP's
//!   release), and ROCm from any other source beside them is a mix.
//! - `image.vllm-symbols`: every `c10::`/`at::`/`torch::`/`caffe2::` symbol vLLM's extensions
//!   need is defined by the image's torch.
//! - `image.vllm-torch`: the torch vLLM declares (or the build's torch constraint) is the one
//!   installed; `image.pip-check`: torch, vLLM and torchvision's requirements on torch, triton,
//!   torchvision and torchaudio hold (pip check's semantics, from the metadata).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use super::gpucode;
pub use super::gpucode::runs_on;
use super::imagefs::{ElfFile, ImageFs, Node, is_vllm_ext};
use super::pep440;
use super::{check, check_when};
use crate::report::{Check, Status};

/// One library (ELF) or code-object directory with GPU code.
#[derive(Debug, Clone, Serialize)]
pub struct GpuUnit {
    /// `/usr/lib/x86_64-linux-gnu/librocblas.so.0.1`, or a directory for code-object files.
    pub path: String,
    /// `elf` or `code-objects`.
    pub kind: &'static str,
    /// Files (1 for an ELF).
    pub files: usize,
    /// The package that installed it (`deb librocblas0 5.5.1-7`, `pip torch 2.9.0`), or
    /// `unpackaged`.
    pub package: String,
    /// GPU targets found.
    pub targets: Vec<String>,
    /// Archs it has no code for.
    pub lacking: Vec<String>,
    /// Archs covered only through a generic target.
    pub generic: Vec<String>,
    /// Why torch or vLLM load it (`needed by torch/lib/libtorch_hip.so`), if they do.
    pub loaded_by: Option<String>,
}

/// One ROCm component with its release.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// What it is (`libamdhip64-5`, `/opt/rocm-7.1.1/.info/version`).
    pub name: String,
    /// The release it belongs to (`7.1.1`, or `5.7` where only major.minor is known).
    pub release: String,
    /// Where the release was read (`AMD apt package 7.8.0.70101-43~24.04`).
    pub source: String,
    /// The distribution whose own ROCm stack it is part of (`Debian GNU/Linux 13 (trixie)`):
    /// such components carry their own upstream versions and are judged as one unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
}

/// What the audit found, for `--json`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Audit {
    /// Image tar bytes read.
    pub tar_bytes: u64,
    /// Layers merged.
    pub layers: usize,
    /// Files of interest read.
    pub files_read: u64,
    /// Libraries and code-object directories with GPU code.
    pub gpu: Vec<GpuUnit>,
    /// ROCm components.
    pub rocm: Vec<Component>,
    /// vLLM extension symbols not defined by torch.
    pub vllm_missing: Vec<String>,
    /// Problems that did not stop the audit.
    pub notes: Vec<String>,
    /// Seconds from the stream's first byte to the verdicts (set by the caller).
    pub seconds: f64,
    /// Every installed package, for the SBOM (not in `--json`: thousands of lines).
    #[serde(skip)]
    pub inventory: Inventory,
}

/// Every package installed in the image: dpkg's and Python's.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// dpkg packages, `Status: install ok installed`, by name.
    pub debs: Vec<Deb>,
    /// Python distributions (`*.dist-info`, `*.egg-info`): name as written, version, site dir.
    pub python: Vec<(String, String, String)>,
}

/// One installed dpkg package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deb {
    /// `Package:`.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:` (`amd64`, `all`).
    pub arch: String,
    /// `Source:` (its name alone), or the package's own name.
    pub source: String,
}

/// The image's installed packages (dpkg status, Python metadata).
pub fn inventory(fs: &ImageFs) -> Inventory {
    let mut debs = Vec::new();
    if let Some(Node::Text(t)) = fs.nodes.get("var/lib/dpkg/status") {
        for stanza in t.split("\n\n") {
            let field = |k: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(k)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_owned())
                })
            };
            let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
            if let (true, Some(name)) = (installed, field("Package")) {
                debs.push(Deb {
                    source: field("Source")
                        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
                        .unwrap_or_else(|| name.clone()),
                    version: field("Version").unwrap_or_default(),
                    arch: field("Architecture").unwrap_or_default(),
                    name,
                });
            }
        }
    }
    debs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    let mut python: Vec<_> = dists(fs)
        .into_iter()
        .map(|d| (d.name, d.version, d.site))
        .collect();
    python.sort();
    python.dedup();
    Inventory { debs, python }
}

/// An installed Python distribution.
#[derive(Debug, Clone)]
struct Dist {
    name: String,
    version: String,
    requires: Vec<String>,
    site: String,
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Installed dpkg packages: name -> (version, source package).
fn dpkg(fs: &ImageFs) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let Some(Node::Text(t)) = fs.nodes.get("var/lib/dpkg/status") else {
        return out;
    };
    for stanza in t.split("\n\n") {
        let mut f: HashMap<&str, &str> = HashMap::new();
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                f.insert(k, v.trim());
            }
        }
        if let (Some(p), Some(s)) = (f.get("Package"), f.get("Status"))
            && s.ends_with(" installed")
        {
            let version = f.get("Version").copied().unwrap_or("").to_owned();
            let source = f
                .get("Source")
                .map(|s| s.split_whitespace().next().unwrap_or(s))
                .unwrap_or(p)
                .to_owned();
            out.insert((*p).to_owned(), (version, source));
        }
    }
    out
}

fn dists(fs: &ImageFs) -> Vec<Dist> {
    let mut out = Vec::new();
    for (p, t) in fs.texts() {
        let f = file_name(p);
        if f != "METADATA" && f != "PKG-INFO" {
            continue;
        }
        let dir = parent(p);
        if !(dir.ends_with(".dist-info") || dir.ends_with(".egg-info")) {
            continue;
        }
        let mut d = Dist {
            name: String::new(),
            version: String::new(),
            requires: Vec::new(),
            site: parent(dir).to_owned(),
        };
        for line in t.lines() {
            if let Some(v) = line.strip_prefix("Name:") {
                d.name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Version:") {
                d.version = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Requires-Dist:") {
                d.requires.push(v.trim().to_owned());
            }
        }
        if !d.name.is_empty() {
            out.push(d);
        }
    }
    out
}

/// Path (resolved, no leading `/`) -> the package that installed it.
fn owners(
    fs: &ImageFs,
    pkgs: &BTreeMap<String, (String, String)>,
    ds: &[Dist],
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (p, t) in fs.texts() {
        if let Some(list) = p.strip_prefix("var/lib/dpkg/info/")
            && let Some(pkg) = list.strip_suffix(".list")
        {
            let pkg = pkg.split(':').next().unwrap_or(pkg);
            let label = match pkgs.get(pkg) {
                Some((v, _)) => format!("deb {pkg} {v}"),
                None => format!("deb {pkg}"),
            };
            for line in t.lines() {
                if let Some(r) = fs.resolve(line) {
                    out.insert(r, label.clone());
                }
            }
        }
    }
    for d in ds {
        let record = fs.nodes.iter().find_map(|(p, n)| match n {
            Node::Text(t)
                if file_name(p) == "RECORD"
                    && parent(parent(p)) == d.site
                    && dist_dir_matches(file_name(parent(p)), &d.name) =>
            {
                Some(t)
            }
            _ => None,
        });
        if let Some(t) = record {
            for line in t.lines() {
                let rel = line.split(',').next().unwrap_or("");
                if let Some(r) = fs.resolve(&format!("{}/{rel}", d.site)) {
                    out.insert(r, format!("pip {} {}", d.name, d.version));
                }
            }
        }
    }
    out
}

fn dist_dir_matches(dir: &str, name: &str) -> bool {
    let stem = dir.split('-').next().unwrap_or(dir);
    super::image::normalize(stem) == super::image::normalize(name)
}

fn owner_of(owners: &HashMap<String, String>, path: &str) -> String {
    if let Some(o) = owners.get(path) {
        return o.clone();
    }
    // pip packages without a RECORD line for it: the top-level package under site-packages.
    for marker in ["site-packages/", "dist-packages/"] {
        if let Some(i) = path.find(marker) {
            let rest = &path[i + marker.len()..];
            return format!(
                "pip {} (no RECORD entry)",
                rest.split('/').next().unwrap_or(rest)
            );
        }
    }
    "unpackaged".to_owned()
}

fn gpu_units(fs: &ImageFs, archs: &[String], owners: &HashMap<String, String>) -> Vec<GpuUnit> {
    let elves = fs
        .elves()
        .filter(|(_, e)| e.has_gpu_code())
        .map(|(p, e)| gpucode::ElfCode {
            path: p,
            targets: e.targets(),
            kpack_ref: e.kpack_ref.as_deref(),
        });
    let objects = fs.nodes.iter().filter_map(|(p, n)| match n {
        Node::CodeObject(c) => Some((p, c)),
        _ => None,
    });
    gpucode::units(elves, objects, archs)
        .into_iter()
        .map(|u| GpuUnit {
            path: format!("/{}", u.path),
            kind: u.kind,
            files: u.files,
            package: owner_of(owners, &u.first),
            targets: u.targets,
            lacking: u.lacking,
            generic: u.generic,
            loaded_by: None,
        })
        .collect()
}

fn find_lib(
    fs: &ImageFs,
    name: &str,
    from: &str,
    e: &ElfFile,
    dirs: &[String],
    by_name: &BTreeMap<&str, Vec<&String>>,
) -> Option<(String, bool)> {
    let is_elf = |p: &str| fs.elf(p).map(|(r, _)| r);
    if name.contains('/') {
        return is_elf(name).map(|r| (r, true));
    }
    let origin = parent(from);
    for d in &e.runpath {
        let d = d
            .replace("${ORIGIN}", &format!("/{origin}"))
            .replace("$ORIGIN", &format!("/{origin}"));
        if let Some(r) = is_elf(&format!("{d}/{name}")) {
            return Some((r, true));
        }
    }
    for d in dirs {
        if let Some(r) = is_elf(&format!("{d}/{name}")) {
            return Some((r, true));
        }
    }
    by_name
        .get(name)?
        .iter()
        .find_map(|p| is_elf(p))
        .map(|r| (r, false))
}

fn in_package(path: &str, pkg: &str) -> bool {
    ["site-packages/", "dist-packages/"]
        .iter()
        .any(|m| path.contains(&format!("{m}{pkg}/")))
}

/// What torch and vLLM load: path -> why.
fn loaded_set(fs: &ImageFs) -> (BTreeMap<String, String>, Vec<String>) {
    let dirs = fs.search_dirs();
    let by_name = fs.by_name();
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::new();
    let mut unfound = BTreeSet::new();
    for (p, _) in fs.elves() {
        for pkg in ["torch", "vllm"] {
            if in_package(p, pkg) {
                why.insert(p.clone(), format!("{pkg}'s module"));
                queue.push_back(p.clone());
            }
        }
    }
    while let Some(p) = queue.pop_front() {
        let Some(Node::Elf(e)) = fs.nodes.get(&p) else {
            continue;
        };
        for n in &e.needed {
            match find_lib(fs, n, &p, e, &dirs, &by_name) {
                Some((r, _)) => {
                    if !why.contains_key(&r) {
                        why.insert(r.clone(), format!("needed by /{p}"));
                        queue.push_back(r);
                    }
                }
                None => {
                    unfound.insert(n.clone());
                }
            }
        }
    }
    (why, unfound.into_iter().collect())
}

/// The library that opens a code-object directory by name (rocBLAS its Tensile library, ...).
fn opener(dir: &str) -> Option<&'static str> {
    let l = dir.to_ascii_lowercase();
    [
        ("hipblaslt", "libhipblaslt"),
        ("rocblas", "librocblas"),
        ("miopen", "libMIOpen"),
        ("aotriton", "libaotriton"),
        ("rocfft", "librocfft"),
    ]
    .into_iter()
    .find(|(k, _)| l.contains(k))
    .map(|(_, lib)| lib)
}

/// The ROCm math libraries torch's HIP build links and loads (BLAS, FFT, random numbers,
/// sparse, solvers, convolutions, collectives), with the hip* wrappers over them: (file name
/// before `.so`, name). A torch image's kernels come from these, so lacking the arch in them
/// matters in any image meant to carry torch, whether or not its modules' DT_NEEDED reach them
/// (Debian's CPU torch does not; a ROCm torch installed later will).
const MATH_LIBS: &[(&str, &str)] = &[
    ("librocblas", "rocBLAS"),
    ("libhipblas", "hipBLAS"),
    ("libhipblaslt", "hipBLASLt"),
    ("librocrand", "rocRAND"),
    ("libhiprand", "hipRAND"),
    ("librocfft", "rocFFT"),
    ("libhipfft", "hipFFT"),
    ("librocsparse", "rocSPARSE"),
    ("libhipsparse", "hipSPARSE"),
    ("libhipsparselt", "hipSPARSELt"),
    ("librocsolver", "rocSOLVER"),
    ("libhipsolver", "hipSOLVER"),
    ("libMIOpen", "MIOpen"),
    ("librccl", "RCCL"),
];

/// The math library a file is (`librocblas.so.0.1` -> rocBLAS, `librocfft-device-0.so` ->
/// rocFFT), if it is one.
fn math_library(path: &str) -> Option<&'static str> {
    let stem = file_name(path).split(".so").next()?;
    MATH_LIBS
        .iter()
        .find(|(lib, _)| stem == *lib || stem.strip_prefix(lib).is_some_and(|r| r.starts_with('-')))
        .map(|(_, name)| *name)
}

/// What an audited image is meant to carry, as far as the command knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A torch image for the audited archs: a recipe or an arch was given (`forge build`,
    /// `forge image --arch`, `forge export --recipe`).
    Torch,
    /// Nothing was said (`forge image IMG`, `forge export IMG`): only a torch in the image
    /// makes its math libraries count.
    Unstated,
}

/// image.gpu-targets: every unit of GPU code carries the archs, judged by whether torch/vLLM
/// loads it.
fn gpu_check(
    units: &mut [GpuUnit],
    loaded: &BTreeMap<String, String>,
    archs: &[String],
    why_none: &str,
) -> Check {
    mark_loaders(units, loaded);
    if units.is_empty() {
        return check(
            "image.gpu-targets",
            Status::Skip,
            "no ELF with GPU code (no .hip_fatbin, offload bundle or kpack reference) and no code-object files in the image's library directories and Python packages",
        );
    }
    let want = archs.join(";");
    let judged = units.iter().filter(|u| u.loaded_by.is_some()).count();
    let lacking_loaded: Vec<&GpuUnit> = units
        .iter()
        .filter(|u| !u.lacking.is_empty() && u.loaded_by.is_some())
        .collect();
    let lacking_idle: Vec<&GpuUnit> = units
        .iter()
        .filter(|u| !u.lacking.is_empty() && u.loaded_by.is_none())
        .collect();
    let carrying = units.iter().filter(|u| u.lacking.is_empty()).count();
    let generic: Vec<String> = units
        .iter()
        .filter(|u| u.lacking.is_empty() && !u.generic.is_empty())
        .map(|u| {
            format!(
                "{} ({})",
                file_name(u.path.trim_end_matches('/')),
                u.generic.join(", ")
            )
        })
        .collect();
    let mut ev = format!(
        "{} with GPU code ({} ELF, {} code-object directories), {judged} of them loaded by torch/vLLM; {carrying} carry {want}",
        units.len(),
        units.iter().filter(|u| u.kind == "elf").count(),
        units.iter().filter(|u| u.kind != "elf").count(),
    );
    if !generic.is_empty() {
        ev.push_str(&format!(
            " (through generic targets: {})",
            generic.join(", ")
        ));
    }
    if judged == 0 {
        // Nothing to judge: a skip, never a pass (issue 18).
        ev.push_str(&format!(
            "; nothing in the image is known to load them ({why_none})"
        ));
    }
    if !lacking_loaded.is_empty() {
        ev.push_str(&format!(
            "; LACKING {want}, loaded by torch/vLLM: {}",
            group_by_package(&lacking_loaded)
        ));
    }
    if !lacking_idle.is_empty() {
        ev.push_str(&format!(
            "; lacking {want} but loaded by neither torch nor vLLM: {}",
            group_by_package(&lacking_idle)
        ));
    }
    if judged == 0 {
        return check("image.gpu-targets", Status::Skip, ev);
    }
    if lacking_loaded.is_empty() {
        return check("image.gpu-targets", Status::Pass, ev);
    }
    check("image.gpu-targets", Status::Fail, ev).with_hint(format!(
        "these would fail on their first kernel with `invalid device function` / hipErrorNoBinaryForGpu on {want}: rebuild them for {want} (PYTORCH_ROCM_ARCH, GPU_TARGETS), or install builds that carry it"
    ))
}

/// Set each unit's `loaded_by`: an ELF torch/vLLM loads, or a code-object directory whose
/// opening library it loads.
fn mark_loaders(units: &mut [GpuUnit], loaded: &BTreeMap<String, String>) {
    for u in units.iter_mut() {
        let key = u.path.trim_start_matches('/').to_owned();
        u.loaded_by = match u.kind {
            "elf" => loaded.get(&key).cloned(),
            _ => opener(&u.path).and_then(|lib| {
                loaded
                    .keys()
                    .find(|p| {
                        file_name(p).starts_with(&format!("{lib}.so"))
                            || file_name(p).starts_with(&format!("{lib}64.so"))
                    })
                    .map(|p| format!("opened by name by /{p}"))
            }),
        };
    }
}

/// A unit as evidence: its path (or directory and file count) and its targets.
fn show_unit(u: &GpuUnit) -> String {
    let what = if u.kind == "elf" {
        u.path.clone()
    } else {
        format!("{} ({} code-object files)", u.path, u.files)
    };
    let targets = if u.targets.is_empty() {
        "no readable target".to_owned()
    } else {
        u.targets.join(",")
    };
    format!("{what} [{targets}]")
}

/// Units as evidence, grouped by the package that owns them, each with what loads it.
fn group_by_package(list: &[&GpuUnit]) -> String {
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for u in list {
        let mut s = show_unit(u);
        if let Some(w) = &u.loaded_by {
            s.push_str(&format!(" ({w})"));
        }
        by.entry(u.package.as_str()).or_default().push(s);
    }
    by.iter()
        .map(|(p, l)| format!("{p}: {}", l.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Release from a version's leading `M.m(.p)`.
fn leading_release(v: &str, parts: usize) -> Option<String> {
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    let nums: Vec<&str> = v
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|s| !s.is_empty())
        .take(parts)
        .collect();
    // The digits must be separated by dots only.
    let prefix = nums.join(".");
    (nums.len() >= 2 && v.starts_with(&prefix)).then_some(prefix)
}

/// Debian/Ubuntu source packages of the ROCm stack whose upstream version is a ROCm release.
const DISTRO_HIP: &[&str] = &["rocm-hipamd", "hipcc", "hip"];

/// Debian/Ubuntu source packages of the ROCm stack: a distribution builds each at its own
/// upstream version against its one HIP (trixie: HIP 5.7.1, HSA 6.1.2, hsakmt 6.2.4).
const DISTRO_ROCM: &[&str] = &[
    "rocm-hipamd",
    "hip",
    "hipcc",
    "rocr-runtime",
    "roct-thunk-interface",
    "rocm-compilersupport",
    "rocm-device-libs",
    "rocminfo",
    "rocm-smi-lib",
    "amdsmi",
    "rocm-core",
    "rocm-cmake",
    "rocblas",
    "hipblas",
    "hipblas-common",
    "hipblaslt",
    "rocfft",
    "hipfft",
    "rocrand",
    "hiprand",
    "rocsparse",
    "hipsparse",
    "hipsparselt",
    "rocsolver",
    "hipsolver",
    "rocprim",
    "rocthrust",
    "hipcub",
    "rocalution",
    "rocwmma",
    "miopen",
    "rccl",
    "roctracer",
    "rocprofiler",
    "hipify",
];

/// The distribution the image is (`PRETTY_NAME` of its os-release).
fn distribution(fs: &ImageFs) -> String {
    ["usr/lib/os-release", "etc/os-release"]
        .iter()
        .find_map(|p| match fs.nodes.get(*p) {
            Some(Node::Text(t)) => t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim().trim_matches('"').to_owned())
            }),
            _ => None,
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "the distribution".to_owned())
}

/// ROCm release of a library file name: `libamdhip64.so.7.1.70101` -> 7.1,
/// `libhsa-runtime64.so.1.14.60204` -> 6.2.4.
pub fn release_of_file(name: &str) -> Option<String> {
    if let Some(v) = name.strip_prefix("libamdhip64.so.") {
        return leading_release(v, 2);
    }
    if let Some(v) = name.strip_prefix("libhsa-runtime64.so.1.") {
        let last = v.rsplit('.').next()?;
        if last.len() == 5 && last.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = last.parse().ok()?;
            return Some(format!("{}.{}.{}", n / 10000, n / 100 % 100, n % 100));
        }
    }
    None
}

/// The ROCm components of the image and the release each is of: packages, Python
/// distributions, `/opt/*/.info/version` files and library file names.
fn components(
    fs: &ImageFs,
    pkgs: &BTreeMap<String, (String, String)>,
    ds: &[Dist],
    owners: &HashMap<String, String>,
) -> Vec<Component> {
    let distro = distribution(fs);
    let (mut out, dated) = package_components(pkgs, &distro);
    out.extend(ds.iter().filter_map(dist_component));
    out.extend(info_components(fs));
    out.extend(soname_components(fs, owners, &dated));
    out
}

/// Components from dpkg packages (AMD's, or the distribution's own ROCm stack), and the
/// names of the packages so dated.
fn package_components<'a>(
    pkgs: &'a BTreeMap<String, (String, String)>,
    distro: &str,
) -> (Vec<Component>, BTreeSet<&'a str>) {
    let mut out = Vec::new();
    let mut dated: BTreeSet<&str> = BTreeSet::new();
    for (p, (v, src)) in pkgs {
        if let Some(r) = super::image::rocm_release(v) {
            dated.insert(p);
            out.push(Component {
                name: p.clone(),
                release: r,
                source: format!("AMD apt package {v}"),
                distribution: None,
            });
        } else if DISTRO_ROCM.contains(&src.as_str())
            && let Some(r) = leading_release(v, 3)
        {
            // A distribution's own ROCm component, at its own upstream version: judged with
            // the rest of that distribution's stack as one unit (see `rocm_check`).
            dated.insert(p);
            out.push(Component {
                name: p.clone(),
                release: r,
                source: format!("distribution package {v} (source {src})"),
                distribution: Some(distro.to_owned()),
            });
        }
    }
    (out, dated)
}

/// The component a Python distribution is, if any: ROCm's own wheels, amdsmi by the package
/// index's numbering, or a `+rocmX.Y.Z` build.
fn dist_component(d: &Dist) -> Option<Component> {
    let n = super::image::normalize(&d.name);
    if n == "rocm" || n.starts_with("rocm-sdk") {
        let r = leading_release(&d.version, 3)?;
        return Some(Component {
            name: d.name.clone(),
            release: r,
            source: format!("pip {} {} (/{})", d.name, d.version, d.site),
            distribution: None,
        });
    }
    if n == "amdsmi" {
        // The package index numbers amdsmi by ROCm release (7.0.2); ROCm's own copy
        // (pip-installed from /opt/rocm/share/amd_smi) carries amd-smi-lib's numbering
        // (24.x-26.x), which is no ROCm release.
        let r = leading_release(&d.version, 3)?;
        if r.split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(20) {
            return None;
        }
        return Some(Component {
            name: d.name.clone(),
            release: r,
            source: format!(
                "pip {} {} (the package index's ROCm numbering; /{})",
                d.name, d.version, d.site
            ),
            distribution: None,
        });
    }
    let local = d.version.split_once('+').map(|x| x.1)?;
    let rv = local.strip_prefix("rocm")?;
    let r = leading_release(rv, 3)?;
    Some(Component {
        name: d.name.clone(),
        release: r,
        source: format!("pip {} {} (built for ROCm {rv})", d.name, d.version),
        distribution: None,
    })
}

/// Components from `/opt/*/.info/version` files.
fn info_components(fs: &ImageFs) -> Vec<Component> {
    let mut out = Vec::new();
    for (p, t) in fs.texts() {
        if p.starts_with("opt/") && p.ends_with("/.info/version") {
            let v = t.trim();
            if let Some(r) = leading_release(v, 3) {
                out.push(Component {
                    name: format!("/{}", parent(parent(p))),
                    release: r,
                    source: format!("/{p}: {v}"),
                    distribution: None,
                });
            }
        }
    }
    out
}

/// Sonames: of unowned files, and of files a package owns that is not `dated` (a wheel that
/// bundles libamdhip64, a package of another name).
fn soname_components(
    fs: &ImageFs,
    owners: &HashMap<String, String>,
    dated: &BTreeSet<&str>,
) -> Vec<Component> {
    let mut out = Vec::new();
    for (p, n) in &fs.nodes {
        if !matches!(n, Node::Elf(_)) {
            continue;
        }
        let owner = owner_of(owners, p);
        let dated_owner = owner
            .strip_prefix("deb ")
            .and_then(|o| o.split_whitespace().next())
            .is_some_and(|o| dated.contains(o));
        if dated_owner {
            continue;
        }
        if let Some(r) = release_of_file(file_name(p)) {
            out.push(Component {
                name: file_name(p).to_owned(),
                release: r,
                source: format!("file name /{p} ({owner})"),
                distribution: None,
            });
        }
    }
    out
}

/// Two releases agree when they agree on every part both give (`7.1` and `7.1.1` do).
pub fn same_release(a: &str, b: &str) -> bool {
    a.split('.').zip(b.split('.')).all(|(x, y)| x == y)
}

fn rocm_check(comps: &[Component], want: &str) -> Check {
    if comps.is_empty() {
        return check(
            "image.rocm-versions",
            Status::Skip,
            "no ROCm component found (no AMD or distribution ROCm package, no pip ROCm wheel, no /opt/rocm*/.info/version, no libamdhip64/libhsa-runtime64 of a known release)",
        );
    }
    let (distro, others): (Vec<&Component>, Vec<&Component>) =
        comps.iter().partition(|c| c.distribution.is_some());
    if !distro.is_empty() {
        return distro_check(&distro, &others, want);
    }
    let mut releases: BTreeMap<&str, Vec<&Component>> = BTreeMap::new();
    for c in comps {
        releases.entry(c.release.as_str()).or_default().push(c);
    }
    let listed: Vec<String> = releases
        .iter()
        .map(|(r, cs)| {
            let shown: Vec<String> = cs
                .iter()
                .take(4)
                .map(|c| format!("{} from {}", c.name, c.source))
                .collect();
            format!(
                "ROCm {r}: {}{}",
                shown.join(", "),
                if cs.len() > 4 {
                    format!(" and {} more", cs.len() - 4)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    let off: Vec<&str> = releases
        .keys()
        .filter(|r| !same_release(r, want))
        .copied()
        .collect();
    let distinct: BTreeSet<&str> = releases.keys().copied().collect();
    let mut clash = false;
    for a in &distinct {
        for b in &distinct {
            if !same_release(a, b) {
                clash = true;
            }
        }
    }
    let ev = format!("{}; recipe wants {want}", listed.join("; "));
    let c = check_when(off.is_empty() && !clash, "image.rocm-versions", ev);
    if off.is_empty() && !clash {
        return c;
    }
    if !clash {
        return c.with_hint(format!(
            "the image's ROCm is {}, the recipe's is {want}: build on the recipe's base image, or use the recipe of the image's release",
            off.join(", ")
        ));
    }
    c.with_hint(format!(
        "one ROCm release everywhere ({want}): mixed ROCm libraries crash with `double free or corruption`; remove or rebuild the components of {}",
        off.join(", ")
    ))
}

/// ROCm releases and where they come from (`ROCm 7.0.2: amdsmi from pip ...`).
fn by_release(comps: &[&Component]) -> String {
    let mut releases: BTreeMap<&str, Vec<&Component>> = BTreeMap::new();
    for c in comps {
        releases.entry(c.release.as_str()).or_default().push(c);
    }
    releases
        .iter()
        .map(|(r, cs)| {
            let shown: Vec<String> = cs
                .iter()
                .map(|c| format!("{} from {}", c.name, c.source))
                .collect();
            format!("ROCm {r}: {}", shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A distribution's own ROCm stack, judged as one unit (issue 20): its components carry their
/// own upstream versions (Debian builds them against one HIP on purpose), its release is its
/// HIP's; any ROCm from another source beside it is a mix.
fn distro_check(distro: &[&Component], others: &[&Component], want: &str) -> Check {
    let name = distro[0]
        .distribution
        .as_deref()
        .unwrap_or("the distribution");
    // Every component version, by source package: `rocr-runtime 6.1.2 (libhsa-runtime64-1, ...)`.
    let mut by_src: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for c in distro {
        let src = c
            .source
            .rsplit_once("(source ")
            .map_or(c.name.as_str(), |(_, s)| s.trim_end_matches(')'))
            .to_owned();
        let e = by_src
            .entry(src)
            .or_insert_with(|| (c.release.clone(), Vec::new()));
        e.1.push(c.name.as_str());
    }
    let list: Vec<String> = by_src
        .iter()
        .map(|(src, (v, pkgs))| format!("{src} {v} ({})", pkgs.join(", ")))
        .collect();
    let hip = distro
        .iter()
        .find(|c| {
            DISTRO_HIP
                .iter()
                .any(|h| c.source.ends_with(&format!("(source {h})")))
        })
        .map(|c| c.release.clone());
    let unit = format!(
        "{name}'s own ROCm stack, judged as one unit (the distribution builds its components against one HIP): {}",
        list.join(", ")
    );
    if !others.is_empty() {
        return check(
            "image.rocm-versions",
            Status::Fail,
            format!(
                "a mix: {unit}; beside it, ROCm from another source: {}; recipe wants {want}",
                by_release(others)
            ),
        )
        .with_hint(format!(
            "a distribution's ROCm stack and ROCm from elsewhere (AMD's packages, ROCm wheels, pip's amdsmi) do not mix: mixed ROCm libraries crash with `double free or corruption`; keep one of the two ({name}'s, or one ROCm release {want} from AMD)"
        ));
    }
    let Some(hip) = hip else {
        return check(
            "image.rocm-versions",
            Status::Skip,
            format!(
                "{unit}; no HIP runtime among them, so the stack's ROCm release is not known and is not compared with the recipe's {want}"
            ),
        );
    };
    let ok = same_release(&hip, want);
    let c = check_when(
        ok,
        "image.rocm-versions",
        format!("{unit}; its release is its HIP's, {hip}; recipe wants {want}"),
    );
    if ok {
        c
    } else {
        c.with_hint(format!(
            "the image's ROCm is {name}'s HIP {hip}, the recipe's is {want}: build on the recipe's base image, or use the recipe of the image's release"
        ))
    }
}

/// Whether a mangled symbol is in c10::, at::, torch:: or caffe2::.
pub fn is_torch_symbol(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("_Z") else {
        return false;
    };
    // vtables, typeinfo and their names, guard variables: _ZTV/_ZTI/_ZTS/_ZGV then the name.
    let rest = ["TV", "TI", "TS", "GV", "TH", "TW"]
        .iter()
        .find_map(|p| rest.strip_prefix(p))
        .unwrap_or(rest);
    let rest = rest
        .strip_prefix('N')
        .map(|r| r.trim_start_matches(['K', 'V', 'r']))
        .unwrap_or(rest);
    // Length-prefixed names: `3c10` is exactly `c10`, never `c10d` (`4c10d`).
    ["3c10", "2at", "5torch", "6caffe2"]
        .iter()
        .any(|n| rest.starts_with(n))
}

fn vllm_symbols(fs: &ImageFs) -> (Check, Vec<String>) {
    let exts: Vec<(&String, &ElfFile)> = fs.elves().filter(|(p, _)| is_vllm_ext(p)).collect();
    if exts.is_empty() {
        return (
            check(
                "image.vllm-symbols",
                Status::Skip,
                "no vLLM extension module (site-packages/vllm/_C*.so, _rocm_C*.so, _moe_C*.so) in the image",
            ),
            Vec::new(),
        );
    }
    let mut torch_libs: Vec<(&String, &ElfFile)> = fs
        .elves()
        .filter(|(p, e)| in_package(p, "torch") && !e.defined.is_empty())
        .collect();
    if torch_libs.is_empty() {
        torch_libs = fs.elves().filter(|(_, e)| !e.defined.is_empty()).collect();
    }
    if torch_libs.is_empty() {
        return (
            check("image.vllm-symbols", Status::Fail, "vLLM's extensions are there but no torch library (libtorch*.so, libc10*.so) is in the image")
                .with_hint("install the torch vLLM was built against"),
            Vec::new(),
        );
    }
    let mut needed = 0usize;
    let mut missing: Vec<String> = Vec::new();
    for (p, e) in &exts {
        for s in e.undefined.iter().filter(|s| is_torch_symbol(s)) {
            needed += 1;
            let h = super::elf::name_hash(s.as_bytes());
            if !torch_libs.iter().any(|(_, t)| t.defined.contains(&h)) {
                missing.push(format!("{s} ({})", file_name(p)));
            }
        }
    }
    let names: Vec<&str> = exts.iter().map(|(p, _)| file_name(p)).collect();
    let libs: Vec<String> = torch_libs
        .iter()
        .take(6)
        .map(|(p, _)| format!("/{p}"))
        .collect();
    let ev = format!(
        "{needed} c10/at/torch/caffe2 symbols needed by {} ; defined by {}{}",
        names.join(", "),
        libs.join(", "),
        if torch_libs.len() > 6 { ", ..." } else { "" }
    );
    if missing.is_empty() {
        return (check("image.vllm-symbols", Status::Pass, ev), missing);
    }
    let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
    (
        check(
            "image.vllm-symbols",
            Status::Fail,
            format!("{ev}; {} undefined, first: {}", missing.len(), shown.join(", ")),
        )
        .with_hint("vLLM was built against another torch (`undefined symbol: _ZN3c10...` at import): rebuild vLLM against the torch in the image"),
        missing,
    )
}

fn python_of(d: &Dist) -> String {
    d.site
        .split('/')
        .find_map(|c| c.strip_prefix("python"))
        .filter(|v| v.contains('.'))
        .unwrap_or("3.12")
        .to_owned()
}

fn vllm_torch_check(fs: &ImageFs, ds: &[Dist]) -> Check {
    let find = |n: &str| ds.iter().find(|d| super::image::normalize(&d.name) == n);
    let Some(vllm) = find("vllm") else {
        return check(
            "image.vllm-torch",
            Status::Skip,
            "no vLLM distribution (vllm-*.dist-info) in the image",
        );
    };
    let Some(torch) = find("torch") else {
        return check(
            "image.vllm-torch",
            Status::Fail,
            format!("vllm {} is installed, torch is not", vllm.version),
        )
        .with_hint("install the torch vLLM was built against");
    };
    let py = python_of(vllm);
    let declared = vllm
        .requires
        .iter()
        .filter_map(|r| pep440::parse_requirement(r))
        .find(|r| r.name == "torch" && r.applies(&py));
    let (spec, from) = match declared {
        Some(r) => (
            r.spec.clone(),
            format!("vllm {} declares torch{}", vllm.version, r.spec),
        ),
        None => {
            let constraint = fs
                .texts()
                .find(|(p, _)| file_name(p) == "torch-constraint.txt")
                .and_then(|(p, t)| {
                    t.lines().find_map(|l| {
                        l.trim()
                            .strip_prefix("torch")
                            .map(|s| (s.trim().to_owned(), p.clone()))
                    })
                });
            match constraint {
                Some((s, p)) => (
                    s.clone(),
                    format!(
                        "vllm {} declares no torch; the build's constraint /{p} says torch{s}",
                        vllm.version
                    ),
                ),
                None => {
                    return check(
                        "image.vllm-torch",
                        Status::Skip,
                        format!(
                            "vllm {} declares no torch requirement and the image holds no torch-constraint.txt; torch {} installed",
                            vllm.version, torch.version
                        ),
                    );
                }
            }
        }
    };
    let Some(v) = pep440::version(&torch.version) else {
        return check(
            "image.vllm-torch",
            Status::Fail,
            format!(
                "{from}; torch's version `{}` is not a PEP 440 version",
                torch.version
            ),
        );
    };
    let Some(clauses) = pep440::parse_spec(&spec) else {
        return check(
            "image.vllm-torch",
            Status::Fail,
            format!("{from}: not a PEP 440 specifier"),
        );
    };
    let ok = pep440::satisfies(&clauses, &v);
    let c = check_when(
        ok,
        "image.vllm-torch",
        format!("{from}; torch {} installed", torch.version),
    );
    if ok {
        c
    } else {
        c.with_hint("vLLM was built for another torch: rebuild vLLM against the shipped torch (forge's Dockerfile pins it with a constraint file)")
    }
}

fn pip_check(ds: &[Dist]) -> Check {
    let by: BTreeMap<String, &Dist> = ds
        .iter()
        .map(|d| (super::image::normalize(&d.name), d))
        .collect();
    let watched = [
        "torch",
        "triton",
        "pytorch-triton-rocm",
        "torchvision",
        "torchaudio",
    ];
    let requirers = ["torch", "vllm", "torchvision", "torchaudio"];
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    for r in requirers {
        let Some(d) = by.get(r) else { continue };
        let py = python_of(d);
        for req in d
            .requires
            .iter()
            .filter_map(|s| pep440::parse_requirement(s))
        {
            if !watched.contains(&req.name.as_str()) || !req.applies(&py) {
                continue;
            }
            let what = format!("{} {} requires {}{}", d.name, d.version, req.name, req.spec);
            match by.get(&req.name) {
                None => problems.push(format!("{what}, which is not installed")),
                Some(dep) => {
                    let ok = pep440::version(&dep.version)
                        .is_some_and(|v| pep440::satisfies(&req.clauses, &v));
                    if ok {
                        fine.push(format!("{what}: {} {}", dep.name, dep.version));
                    } else {
                        problems.push(format!(
                            "{what}, but {} {} is installed",
                            dep.name, dep.version
                        ));
                    }
                }
            }
        }
    }
    let installed: Vec<String> = watched
        .iter()
        .filter_map(|n| by.get(*n).map(|d| format!("{} {}", d.name, d.version)))
        .collect();
    if problems.is_empty() && fine.is_empty() {
        return check(
            "image.pip-check",
            Status::Skip,
            format!(
                "no requirement of torch, vLLM, torchvision or torchaudio on torch/triton/torchvision/torchaudio in their metadata (installed: [{}])",
                installed.join(", ")
            ),
        );
    }
    let mut ev = problems.join("; ");
    if !fine.is_empty() {
        if !ev.is_empty() {
            ev.push_str("; ");
        }
        ev.push_str(&format!("satisfied: {}", fine.join("; ")));
    }
    let c = check_when(problems.is_empty(), "image.pip-check", ev);
    if problems.is_empty() {
        c
    } else {
        c.with_hint("install the versions torch and vLLM declare (pip swapped or missed one): `pip check` in the image says the same")
    }
}

/// Every audit check on an image's files.
///
/// `image.gpu-targets` judges what torch and vLLM load: their modules' DT_NEEDED closure, and
/// the ROCm math libraries when the image carries a torch or `purpose` says it is meant to.
pub fn checks(fs: &ImageFs, archs: &[String], rocm: &str, purpose: Purpose) -> (Vec<Check>, Audit) {
    let pkgs = dpkg(fs);
    let ds = dists(fs);
    let owners = owners(fs, &pkgs, &ds);
    let mut units = gpu_units(fs, archs, &owners);
    let (mut loaded, _unfound) = loaded_set(fs);
    let has = |pkg: &str| fs.elves().any(|(p, _)| in_package(p, pkg));
    let torch = has("torch");
    let why_none = match (torch || has("vllm"), purpose) {
        (true, _) => "no torch or vLLM module needs them, and none is a ROCm math library",
        (false, Purpose::Torch) => "no torch or vLLM in the image, and none is a ROCm math library",
        (false, Purpose::Unstated) => {
            "no torch or vLLM in the image, and no recipe or arch says it is meant to carry torch"
        }
    };
    if torch || purpose == Purpose::Torch {
        for (p, _) in fs.elves() {
            if let Some(name) = math_library(p) {
                loaded
                    .entry(p.clone())
                    .or_insert_with(|| format!("{name}, a ROCm math library torch loads"));
            }
        }
    }
    let mut out = vec![gpu_check(&mut units, &loaded, archs, why_none)];
    let comps = components(fs, &pkgs, &ds, &owners);
    out.push(rocm_check(&comps, rocm));
    let (c, missing) = vllm_symbols(fs);
    out.push(c);
    out.push(vllm_torch_check(fs, &ds));
    out.push(pip_check(&ds));
    let audit = Audit {
        tar_bytes: fs.tar_bytes,
        layers: fs.layers,
        files_read: fs.files_read,
        gpu: units,
        rocm: comps,
        vllm_missing: missing,
        notes: fs.notes.clone(),
        seconds: 0.0,
        inventory: inventory(fs),
    };
    (out, audit)
}

/// [`checks_or_fail`] with the audit, when the stream could be read (for the SBOM).
pub fn checks_and_audit(
    fs: std::io::Result<ImageFs>,
    archs: &[String],
    rocm: &str,
    purpose: Purpose,
) -> (Vec<Check>, Option<Audit>) {
    match fs {
        Ok(fs) => {
            let (c, a) = checks(&fs, archs, rocm, purpose);
            (c, Some(a))
        }
        Err(e) => (checks_or_fail(Err(e), archs, rocm, purpose), None),
    }
}

/// The audit checks from a finished [`super::imagefs::ImageReader`]; a stream it could not
/// read fails `image.gpu-targets` with the reason (the export itself may still be good).
pub fn checks_or_fail(
    fs: std::io::Result<ImageFs>,
    archs: &[String],
    rocm: &str,
    purpose: Purpose,
) -> Vec<Check> {
    match fs {
        Ok(fs) => checks(&fs, archs, rocm, purpose).0,
        Err(e) => vec![check(
            "image.gpu-targets",
            Status::Fail,
            format!("the image's export stream could not be read: {e}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::check::imagefs::{CodeObject, ElfFile, ImageFs, Node};
    use crate::check::offload::Bundle;

    fn elf(needed: &[&str], runpath: &[&str], targets: &[&str]) -> Node {
        let mut e = ElfFile {
            needed: needed.iter().map(|s| (*s).to_owned()).collect(),
            runpath: runpath.iter().map(|s| (*s).to_owned()).collect(),
            ..ElfFile::default()
        };
        if !targets.is_empty() {
            e.has_fatbin = true;
            e.bundles = vec![Bundle {
                offset: 0,
                compression: Some("zstd"),
                triples: targets
                    .iter()
                    .map(|t| format!("hipv4-amdgcn-amd-amdhsa--{t}"))
                    .collect(),
            }];
        }
        Node::Elf(Box::new(e))
    }

    fn fs(nodes: Vec<(&str, Node)>) -> ImageFs {
        ImageFs {
            nodes: nodes.into_iter().map(|(p, n)| (p.to_owned(), n)).collect(),
            ..ImageFs::default()
        }
    }

    fn by_id<'a>(c: &'a [Check], id: &str) -> &'a Check {
        c.iter().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn loaded_through_origin_runpath_and_symlinked_dirs_generic_and_tensile() {
        let site = "usr/lib/python3.12/site-packages";
        let image = fs(vec![
            (
                &format!("{site}/torch/lib/libtorch_hip.so"),
                elf(
                    &["librocblas.so.4", "libmagma.so"],
                    &["$ORIGIN/../../magma/lib"],
                    &["gfx11-generic"],
                ),
            ),
            (
                &format!("{site}/magma/lib/libmagma.so"),
                elf(&[], &[], &["gfx1100"]),
            ),
            ("opt", Node::Link("/x/opt".into())),
            (
                "x/opt/rocm-7.1.1/lib/librocblas.so.4.1",
                elf(&[], &[], &["gfx1151"]),
            ),
            (
                "x/opt/rocm-7.1.1/lib/librocblas.so.4",
                Node::Link("librocblas.so.4.1".into()),
            ),
            (
                "etc/ld.so.conf.d/rocm.conf",
                Node::Text("/opt/rocm-7.1.1/lib\n".into()),
            ),
            (
                "x/opt/rocm-7.1.1/lib/rocblas/library/TensileLibrary_gfx1100.dat",
                Node::CodeObject(CodeObject {
                    size: 1,
                    targets: vec!["gfx1100".into()],
                    how: "name",
                }),
            ),
            (
                "x/opt/rocm-7.1.1/lib/libunused.so",
                elf(&[], &[], &["gfx90a:xnack-"]),
            ),
            (
                "x/opt/rocm-7.1.1/.info/version",
                Node::Text("7.1.1-38\n".into()),
            ),
            (
                "x/opt/rocm-7.1.1/lib/libamdhip64.so.7.1.70101",
                elf(&[], &[], &[]),
            ),
        ]);
        let archs = vec!["gfx1151".to_owned()];
        let (c, a) = checks(&image, &archs, "7.1.1", Purpose::Unstated);
        let g = by_id(&c, "image.gpu-targets");
        assert_eq!(g.status, Status::Fail, "{}", g.evidence);
        // libmagma is found through $ORIGIN; the Tensile directory is opened by librocblas,
        // found through ld.so.conf.d and the /opt symlink; libunused is only listed.
        assert!(g.evidence.contains("magma/lib/libmagma.so [gfx1100] (needed by /usr/lib/python3.12/site-packages/torch/lib/libtorch_hip.so)"), "{}", g.evidence);
        assert!(g.evidence.contains("rocblas/library/ (1 code-object files) [gfx1100] (opened by name by /x/opt/rocm-7.1.1/lib/librocblas.so.4.1)"), "{}", g.evidence);
        assert!(g.evidence.contains("loaded by neither torch nor vLLM: unpackaged: /x/opt/rocm-7.1.1/lib/libunused.so [gfx90a:xnack-]"), "{}", g.evidence);
        assert!(
            g.evidence
                .contains("libtorch_hip.so (gfx1151 via gfx11-generic)"),
            "{}",
            g.evidence
        );
        assert!(
            a.gpu
                .iter()
                .any(|u| u.path.ends_with("librocblas.so.4.1") && u.lacking.is_empty())
        );
        // 7.1 (file name) and 7.1.1 (.info/version) agree.
        let r = by_id(&c, "image.rocm-versions");
        assert_eq!(r.status, Status::Pass, "{}", r.evidence);
        assert!(
            r.evidence
                .contains("ROCm 7.1: libamdhip64.so.7.1.70101 from file name"),
            "{}",
            r.evidence
        );
        let (c, _) = checks(&image, &archs, "7.0.2", Purpose::Unstated);
        assert_eq!(by_id(&c, "image.rocm-versions").status, Status::Fail);
        // Nothing about vLLM in this image: its checks say so and skip.
        assert_eq!(by_id(&c, "image.vllm-symbols").status, Status::Skip);
        assert_eq!(by_id(&c, "image.vllm-torch").status, Status::Skip);
    }

    /// Debian's ROCm math libraries (code for gfx9/10/11, none for gfx1151) beside a CPU torch
    /// whose modules need none of them.
    fn math_libs_without_gfx1151(torch: bool) -> ImageFs {
        let lib = "usr/lib/x86_64-linux-gnu";
        let mut nodes = vec![
            (
                format!("{lib}/librocblas.so.0.1"),
                elf(&[], &[], &["gfx1030", "gfx1100"]),
            ),
            (
                format!("{lib}/librocrand.so.1.1"),
                elf(&[], &[], &["gfx1030", "gfx1100"]),
            ),
            (
                format!("{lib}/rocblas/2.47.0/library/TensileLibrary_gfx1100.co"),
                Node::CodeObject(CodeObject {
                    size: 1,
                    targets: vec!["gfx1100".into()],
                    how: "name",
                }),
            ),
            (
                format!("{lib}/libunrelated.so"),
                elf(&[], &[], &["gfx1100"]),
            ),
        ];
        if torch {
            nodes.push((
                "usr/lib/python3/dist-packages/torch/lib/libtorch_cpu.so".into(),
                elf(&["libc.so.6"], &[], &[]),
            ));
        }
        ImageFs {
            nodes: nodes.into_iter().collect(),
            ..ImageFs::default()
        }
    }

    /// Issue 18: an image of ROCm math libraries none of which carry gfx1151, beside a torch,
    /// passed `image.gpu-targets` ("0 carry gfx1151") because torch's modules need none of
    /// them; torch loads them all the same (rocBLAS, rocRAND, ...), so it fails.
    #[test]
    fn issue_18_math_libraries_lacking_the_arch_fail_beside_torch() {
        let (c, a) = checks(
            &math_libs_without_gfx1151(true),
            &["gfx1151".to_owned()],
            "5.7",
            Purpose::Unstated,
        );
        let g = by_id(&c, "image.gpu-targets");
        assert_eq!(g.status, Status::Fail, "{}", g.evidence);
        assert!(g.evidence.contains("LACKING gfx1151, loaded by torch/vLLM: unpackaged: /usr/lib/x86_64-linux-gnu/librocblas.so.0.1 [gfx1030,gfx1100] (rocBLAS, a ROCm math library torch loads)"), "{}", g.evidence);
        assert!(g.evidence.contains("/usr/lib/x86_64-linux-gnu/rocblas/2.47.0/library/ (1 code-object files) [gfx1100] (opened by name by /usr/lib/x86_64-linux-gnu/librocblas.so.0.1)"), "{}", g.evidence);
        assert!(
            g.evidence
                .contains("librocrand.so.1.1 [gfx1030,gfx1100] (rocRAND,"),
            "{}",
            g.evidence
        );
        // A library that is not one of them is still only listed.
        assert!(g.evidence.contains("loaded by neither torch nor vLLM: unpackaged: /usr/lib/x86_64-linux-gnu/libunrelated.so"), "{}", g.evidence);
        assert!(
            a.gpu
                .iter()
                .any(|u| u.path.ends_with("librocrand.so.1.1") && u.loaded_by.is_some())
        );
        // The arch they carry: they pass.
        let (c, _) = checks(
            &math_libs_without_gfx1151(true),
            &["gfx1100".to_owned()],
            "5.7",
            Purpose::Unstated,
        );
        assert_eq!(by_id(&c, "image.gpu-targets").status, Status::Pass);
        // No torch in the image yet, but it is audited for an arch (meant to carry torch):
        // the math libraries count all the same.
        let (c, _) = checks(
            &math_libs_without_gfx1151(false),
            &["gfx1151".to_owned()],
            "5.7",
            Purpose::Torch,
        );
        let g = by_id(&c, "image.gpu-targets");
        assert_eq!(g.status, Status::Fail, "{}", g.evidence);
        // Neither a torch nor a purpose: nothing is known to load them, a skip that says why.
        let (c, _) = checks(
            &math_libs_without_gfx1151(false),
            &["gfx1151".to_owned()],
            "5.7",
            Purpose::Unstated,
        );
        let g = by_id(&c, "image.gpu-targets");
        assert_eq!(g.status, Status::Skip, "{}", g.evidence);
        assert!(
            g.evidence
                .contains("no recipe or arch says it is meant to carry torch"),
            "{}",
            g.evidence
        );
    }

    /// Issue 18: with nothing known to load the libraries (no torch, no vLLM, none of them a
    /// math library), `image.gpu-targets` has nothing to judge: a skip saying so, not a pass.
    #[test]
    fn issue_18_gpu_code_nothing_loads_is_a_skip_not_a_pass() {
        let (c, _) = checks(
            &fs(vec![(
                "usr/lib/libunrelated.so",
                elf(&[], &[], &["gfx1100"]),
            )]),
            &["gfx1151".to_owned()],
            "5.7",
            Purpose::Unstated,
        );
        let g = by_id(&c, "image.gpu-targets");
        assert_eq!(g.status, Status::Skip, "{}", g.evidence);
        assert!(
            g.evidence
                .contains("nothing in the image is known to load them"),
            "{}",
            g.evidence
        );
        assert!(
            g.evidence.contains("/usr/lib/libunrelated.so [gfx1100]"),
            "{}",
            g.evidence
        );
    }

    /// Debian trixie's own ROCm stack (HIP 5.7.1, HSA 6.1.2, hsakmt 6.2.4, rocBLAS 5.5.1), as
    /// forge-test-hipcc:trixie has it, and pip's `amdsmi` at `amdsmi` when given.
    fn debian_rocm(amdsmi: Option<&str>) -> ImageFs {
        let stanza = |p: &str, v: &str, src: &str| {
            format!("Package: {p}\nStatus: install ok installed\nSource: {src}\nVersion: {v}\n")
        };
        let status = [
            stanza("libamdhip64-5", "5.7.1-6+deb13u1", "rocm-hipamd"),
            stanza("hipcc", "5.7.1-6+deb13u1", "rocm-hipamd"),
            stanza("libhsa-runtime64-1", "6.1.2-3", "rocr-runtime"),
            stanza("libhsakmt1", "6.2.4+ds-1", "roct-thunk-interface"),
            stanza("librocblas0", "5.5.1+dfsg-7", "rocblas"),
            stanza("libc6", "2.41-12", "glibc"),
            stanza("rocksdb-tools", "9.10.0-1", "rocksdb"),
        ]
        .join("\n");
        let mut nodes = vec![
            ("var/lib/dpkg/status".to_owned(), Node::Text(status)),
            (
                "usr/lib/os-release".to_owned(),
                Node::Text("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n".into()),
            ),
        ];
        if let Some(v) = amdsmi {
            nodes.push((
                format!("usr/local/lib/python3.13/dist-packages/amdsmi-{v}.dist-info/METADATA"),
                Node::Text(format!(
                    "Metadata-Version: 2.1\nName: amdsmi\nVersion: {v}\n"
                )),
            ));
        }
        ImageFs {
            nodes: nodes.into_iter().collect(),
            ..ImageFs::default()
        }
    }

    /// Issue 20: a distribution's own ROCm stack is judged as one unit, named with its
    /// distribution release and every component version.
    #[test]
    fn issue_20_a_distributions_rocm_stack_is_one_unit_named_so() {
        let (c, a) = checks(&debian_rocm(None), &[], "5.7.1", Purpose::Unstated);
        let r = by_id(&c, "image.rocm-versions");
        assert_eq!(r.status, Status::Pass, "{}", r.evidence);
        for want in [
            "Debian GNU/Linux 13 (trixie)'s own ROCm stack, judged as one unit",
            "rocm-hipamd 5.7.1 (hipcc, libamdhip64-5)",
            "rocr-runtime 6.1.2 (libhsa-runtime64-1)",
            "roct-thunk-interface 6.2.4 (libhsakmt1)",
            "rocblas 5.5.1 (librocblas0)",
            "its release is its HIP's, 5.7.1",
        ] {
            assert!(r.evidence.contains(want), "{want}: {}", r.evidence);
        }
        assert!(!r.evidence.contains("rocksdb"), "{}", r.evidence);
        assert!(a.rocm.iter().all(|c| c.distribution.is_some()));
        // Against another release's recipe: the stack's HIP is what is compared.
        let (c, _) = checks(&debian_rocm(None), &[], "7.1.1", Purpose::Unstated);
        let r = by_id(&c, "image.rocm-versions");
        assert_eq!(r.status, Status::Fail, "{}", r.evidence);
        assert!(
            r.hint.as_deref().unwrap_or("").contains("HIP 5.7.1"),
            "{r:?}"
        );
    }

    /// Issue 20: pip's `amdsmi` of a ROCm release beside Debian's stack is a mix, naming both;
    /// ROCm's own copy of amdsmi (amd-smi-lib's numbering, 26.x) is no release.
    #[test]
    fn issue_20_pip_amdsmi_beside_a_distributions_rocm_is_a_mix() {
        let (c, _) = checks(&debian_rocm(Some("7.0.2")), &[], "5.7.1", Purpose::Unstated);
        let r = by_id(&c, "image.rocm-versions");
        assert_eq!(r.status, Status::Fail, "{}", r.evidence);
        assert!(
            r.evidence
                .starts_with("a mix: Debian GNU/Linux 13 (trixie)'s own ROCm stack"),
            "{}",
            r.evidence
        );
        assert!(r.evidence.contains("rocm-hipamd 5.7.1"), "{}", r.evidence);
        assert!(
            r.evidence.contains(
                "beside it, ROCm from another source: ROCm 7.0.2: amdsmi from pip amdsmi 7.0.2"
            ),
            "{}",
            r.evidence
        );
        let (c, _) = checks(
            &debian_rocm(Some("26.1.0")),
            &[],
            "5.7.1",
            Purpose::Unstated,
        );
        let r = by_id(&c, "image.rocm-versions");
        assert_eq!(r.status, Status::Pass, "{}", r.evidence);
    }

    #[test]
    fn an_image_without_gpu_code_or_rocm_skips_with_reasons() {
        let (c, _) = checks(
            &fs(vec![("usr/lib/libz.so.1", elf(&[], &[], &[]))]),
            &["gfx1151".to_owned()],
            "7.1.1",
            Purpose::Unstated,
        );
        for id in [
            "image.gpu-targets",
            "image.rocm-versions",
            "image.vllm-symbols",
            "image.pip-check",
        ] {
            let k = by_id(&c, id);
            assert_eq!(k.status, Status::Skip, "{id}");
            assert!(k.evidence.starts_with("no "), "{id}: {}", k.evidence);
        }
    }

    #[test]
    fn targets_features_and_generics() {
        assert_eq!(runs_on("gfx1151", "gfx1151"), Some("exact"));
        assert_eq!(runs_on("gfx11-generic", "gfx1151"), Some("gfx11-generic"));
        assert_eq!(runs_on("gfx11-generic", "gfx1200"), None);
        assert_eq!(runs_on("gfx90a", "gfx90a:xnack+"), Some("exact"));
        assert_eq!(runs_on("gfx90a:xnack-", "gfx90a:xnack+"), None);
        assert_eq!(
            runs_on("gfx90a:sramecc+:xnack-", "gfx90a:xnack-"),
            Some("exact")
        );
        assert_eq!(runs_on("gfx90a:xnack+", "gfx90a"), Some("exact"));
        assert_eq!(runs_on("gfx1100", "gfx1151"), None);
    }

    #[test]
    fn releases_from_names_and_versions() {
        assert_eq!(
            release_of_file("libamdhip64.so.5.7.31921").as_deref(),
            Some("5.7")
        );
        assert_eq!(
            release_of_file("libamdhip64.so.7.1.70101").as_deref(),
            Some("7.1")
        );
        assert_eq!(
            release_of_file("libhsa-runtime64.so.1.14.60204").as_deref(),
            Some("6.2.4")
        );
        assert_eq!(release_of_file("libhsa-runtime64.so.1.12.0"), None);
        assert_eq!(release_of_file("libamdhip64.so"), None);
        assert_eq!(
            leading_release("5.7.1-6+deb13u1", 2).as_deref(),
            Some("5.7")
        );
        assert_eq!(leading_release("7.1.1-38", 3).as_deref(), Some("7.1.1"));
        assert_eq!(
            leading_release("7.10.0a20251115", 3).as_deref(),
            Some("7.10.0")
        );
        assert!(
            same_release("7.1", "7.1.1")
                && !same_release("7.1.0", "7.1.1")
                && !same_release("5.7", "7.1.1")
        );
    }

    #[test]
    fn torch_symbols_by_namespace() {
        assert!(is_torch_symbol("_ZN3c103hip19getCurrentHIPStreamEa"));
        assert!(is_torch_symbol("_ZNK2at10TensorBase4sizeEl"));
        assert!(is_torch_symbol("_ZTVN5torch8autograd4NodeE"));
        assert!(is_torch_symbol("_ZN6caffe28TypeMeta"));
        assert!(!is_torch_symbol("_ZNSt6vectorIiE"));
        assert!(!is_torch_symbol("_ZN4c10d5Store"));
        assert!(!is_torch_symbol("_ZN4gloo5Store"));
        assert!(!is_torch_symbol("malloc"));
    }
}
