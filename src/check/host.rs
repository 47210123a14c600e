//! Phase 1 (spec 1.1-1.4) and what the build needs from the host: the preflight.
//!
//! Every missing piece is a failed check with its hint, never a crash; a missing tool
//! (`rocminfo` absent) is a finding too. Parsers are pure and tested on real output shapes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{check, check_when};
use crate::engine::EngineInfo;
use crate::error::Error;
use crate::recipe::{Jobs, Recipe};
use crate::report::{Check, Status};
use crate::tool::{self, ToolRun};

/// Where the host's facts are read from (the real paths by default; tests point elsewhere).
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// What `lsmod` reads.
    pub proc_modules: PathBuf,
    /// Present when amdgpu is loaded or built in.
    pub sys_module: PathBuf,
    /// The compute device.
    pub kfd: PathBuf,
    /// The DRM device directory.
    pub dri: PathBuf,
    /// ROCm's version file.
    pub rocm_version: PathBuf,
    /// The group database.
    pub group_file: PathBuf,
    /// Memory facts.
    pub meminfo: PathBuf,
    /// Where runs write their files (`--artifacts`): the image archive goes there.
    pub artifacts: PathBuf,
    /// The running kernel's release (`6.18.9-200.fc43.x86_64`).
    pub osrelease: PathBuf,
    /// TTM's limit on the pages the GPU may map (GTT), in 4 KiB pages.
    pub ttm_pages_limit: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc_modules: "/proc/modules".into(),
            sys_module: "/sys/module/amdgpu".into(),
            kfd: "/dev/kfd".into(),
            dri: "/dev/dri".into(),
            rocm_version: "/opt/rocm/.info/version".into(),
            group_file: "/etc/group".into(),
            meminfo: "/proc/meminfo".into(),
            artifacts: "artifacts".into(),
            osrelease: "/proc/sys/kernel/osrelease".into(),
            ttm_pages_limit: "/sys/module/ttm/parameters/pages_limit".into(),
        }
    }
}

/// Module names from `lsmod` output or `/proc/modules`.
pub fn parse_modules(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| *m != "Module")
        .collect()
}

/// One agent of `rocminfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `Name:` (gfx1151 for a GPU, the CPU's model for a CPU).
    pub name: String,
    /// `Marketing Name:`.
    pub marketing_name: String,
    /// `Device Type:` (CPU, GPU).
    pub device_type: String,
    /// ISA names (`amdgcn-amd-amdhsa--gfx1151`).
    pub isas: Vec<String>,
}

/// Parse `rocminfo` output into agents.
pub fn parse_rocminfo(text: &str) -> Vec<Agent> {
    let mut agents = Vec::new();
    let mut cur: Option<Agent> = None;
    let mut in_isa = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Agent ") && t[6..].trim().chars().all(|c| c.is_ascii_digit()) {
            agents.extend(cur.take());
            cur = Some(Agent {
                name: String::new(),
                marketing_name: String::new(),
                device_type: String::new(),
                isas: Vec::new(),
            });
            in_isa = false;
            continue;
        }
        let Some(a) = cur.as_mut() else { continue };
        if t.starts_with("ISA Info:") {
            in_isa = true;
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "Name" if in_isa => a.isas.push(value),
            "Name" if a.name.is_empty() => a.name = value,
            "Marketing Name" if a.marketing_name.is_empty() => a.marketing_name = value,
            "Device Type" => a.device_type = value,
            _ => {}
        }
    }
    agents.extend(cur);
    agents
}

/// The gfx names of an agent: its name and its ISAs' (`amdgcn-amd-amdhsa--gfx1151` -> gfx1151).
pub fn agent_archs(a: &Agent) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once(a.name.as_str())
        .chain(a.isas.iter().map(|i| i.rsplit("--").next().unwrap_or(i)))
        .filter(|n| n.starts_with("gfx"))
        .map(|n| n.split(':').next().unwrap_or(n).to_owned())
        .collect();
    out.dedup();
    out
}

/// A value in kB from `/proc/meminfo`, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| {
            v.split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|kb| kb * 1024)
        })?
    })
}

fn rw_access(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) == 0 }
}

use crate::units::gb;

/// 1.1: amdgpu loaded.
pub fn check_amdgpu(paths: &HostPaths) -> Check {
    let modules = std::fs::read_to_string(&paths.proc_modules).unwrap_or_default();
    judge_amdgpu(
        &modules,
        paths
            .sys_module
            .exists()
            .then(|| paths.sys_module.display().to_string()),
    )
}

/// 1.1 from `/proc/modules`'s text and the `/sys/module/amdgpu` directory, when present.
pub fn judge_amdgpu(modules: &str, sys_module: Option<String>) -> Check {
    if parse_modules(modules).contains(&"amdgpu") {
        return check("1.1", Status::Pass, "amdgpu in /proc/modules");
    }
    if let Some(sys) = sys_module {
        return check("1.1", Status::Pass, format!("{sys} present (built in)"));
    }
    check("1.1", Status::Fail, "amdgpu is not loaded (not in /proc/modules, no /sys/module/amdgpu)")
        .with_hint("load the driver (`sudo modprobe amdgpu`); on Strix Halo a 6.11+ kernel or amdgpu-dkms is needed")
}

/// 1.2: /dev/kfd and /dev/dri/renderD* present and read-write.
pub fn check_devices(paths: &HostPaths) -> Check {
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for dev in std::iter::once(paths.kfd.clone()).chain(render_nodes(&paths.dri)) {
        if !dev.exists() {
            problems.push(format!("{} missing", dev.display()));
        } else if !rw_access(&dev) {
            problems.push(format!("{} not read-write for this user", dev.display()));
        } else {
            ok.push(dev.display().to_string());
        }
    }
    if render_nodes(&paths.dri).is_empty() {
        problems.push(format!("no {}/renderD* node", paths.dri.display()));
    }
    if problems.is_empty() {
        check(
            "1.2",
            Status::Pass,
            format!("read-write: {}", ok.join(", ")),
        )
    } else {
        check("1.2", Status::Fail, problems.join("; ")).with_hint(
            "no AMD GPU driver exposes devices here; on the GPU machine add yourself to the video and render groups",
        )
    }
}

fn render_nodes(dri: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dri)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("renderD"))
        })
        .collect();
    v.sort();
    v
}

/// Group names this process is in, from `getgroups` and the group file.
fn my_groups(group_file: &Path) -> Vec<String> {
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut gids = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(0)];
    // SAFETY: the buffer holds `n` entries.
    let got = unsafe { libc::getgroups(n, gids.as_mut_ptr()) };
    gids.truncate(usize::try_from(got).unwrap_or(0));
    gids.push(unsafe { libc::getegid() });
    let text = std::fs::read_to_string(group_file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid: libc::gid_t = f.nth(1)?.parse().ok()?;
            gids.contains(&gid).then(|| name.to_owned())
        })
        .collect()
}

/// host.groups: the user in video and render.
pub fn check_groups(paths: &HostPaths) -> Check {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return check(
            "host.groups",
            Status::Pass,
            "running as root: group membership not needed on the host (containers still need --group-add video --group-add render)",
        );
    }
    let groups = my_groups(&paths.group_file);
    let missing: Vec<&str> = ["video", "render"]
        .into_iter()
        .filter(|g| !groups.iter().any(|x| x == g))
        .collect();
    if missing.is_empty() {
        check("host.groups", Status::Pass, "in video and render")
    } else {
        check(
            "host.groups",
            Status::Fail,
            format!(
                "not in: {} (groups: {})",
                missing.join(", "),
                groups.join(", ")
            ),
        )
        .with_hint(format!(
            "sudo usermod -aG {} $USER, then log in again",
            missing.join(",")
        ))
    }
}

/// 1.3: rocminfo lists the recipe's arch.
pub fn check_rocminfo(recipe: &Recipe, timeout: Duration) -> Check {
    judge_rocminfo(recipe, tool::run("rocminfo", &[], timeout), timeout)
}

/// 1.3 from how `rocminfo` ran.
pub fn judge_rocminfo(recipe: &Recipe, run: ToolRun, timeout: Duration) -> Check {
    let want = recipe.archs();
    match run {
        ToolRun::Missing => check("1.3", Status::Fail, "`rocminfo` is not installed").with_hint(
            "install rocminfo (Debian/Ubuntu: `apt install rocminfo`, or ROCm's package)",
        ),
        ToolRun::TimedOut => check(
            "1.3",
            Status::Fail,
            format!("`rocminfo` did not finish within {timeout:?}"),
        )
        .with_hint("the HSA runtime may hang on a wedged GPU: check `dmesg` for amdgpu errors"),
        ToolRun::Failed(e) => check(
            "1.3",
            Status::Fail,
            format!("`rocminfo` could not start: {e}"),
        ),
        ToolRun::Exited {
            code,
            stdout,
            stderr,
        } => {
            let agents = parse_rocminfo(&stdout);
            let gpus: Vec<String> = agents
                .iter()
                .filter(|a| a.device_type == "GPU")
                .flat_map(agent_archs)
                .collect();
            let missing: Vec<&str> = want
                .iter()
                .filter(|a| !gpus.contains(a))
                .map(String::as_str)
                .collect();
            if code == 0 && missing.is_empty() {
                check(
                    "1.3",
                    Status::Pass,
                    format!("GPU agents: {}", gpus.join(", ")),
                )
            } else {
                let why = if code != 0 {
                    let msg = format!("{stderr}\n{stdout}");
                    let first = msg
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or("");
                    format!("`rocminfo` exited {code}: {first}")
                } else {
                    format!(
                        "GPU agents: [{}]; missing: {}",
                        gpus.join(", "),
                        missing.join(", ")
                    )
                };
                check("1.3", Status::Fail, why)
                    .with_hint("no GPU agent with the recipe's arch: is this the Strix Halo machine, with amdgpu loaded and /dev/kfd accessible?")
            }
        }
    }
}

/// 1.4: the host's ROCm version against the recipe's.
pub fn check_rocm_version(recipe: &Recipe, paths: &HostPaths) -> Check {
    judge_rocm_version(
        recipe,
        std::fs::read_to_string(&paths.rocm_version)
            .map_err(|e| format!("cannot read {}: {e}", paths.rocm_version.display())),
    )
}

/// 1.4 from the version file's text (or why it could not be read).
pub fn judge_rocm_version(recipe: &Recipe, text: std::result::Result<String, String>) -> Check {
    match text {
        Err(e) => check("1.4", Status::Fail, e).with_hint(format!(
            "install ROCm {} on the host (the kernel side must support the image's ROCm)",
            recipe.rocm_version()
        )),
        Ok(v) => {
            let v = v.trim();
            let want = recipe.rocm_version();
            let matches = v == want
                || v.starts_with(&format!("{want}-"))
                || v.starts_with(&format!("{want}."));
            check_when(matches, "1.4", format!("host ROCm {v}, recipe {want}")).with_hint(format!(
                "host and image ROCm differ: use `--rocm` matching the host, or install ROCm {want}"
            ))
        }
    }
}

/// host.docker: the engine answers.
pub fn check_docker(engine: &Result<EngineInfo, Error>) -> Check {
    match engine {
        Ok(i) => check(
            "host.docker",
            Status::Pass,
            format!(
                "engine {} (API {}, {}, {}) on {}, reached by {}",
                i.version,
                i.api_version,
                i.platform,
                if i.buildkit {
                    "BuildKit via the API"
                } else {
                    "classic builder only"
                },
                i.host_words(),
                i.via.as_deref().unwrap_or(&i.host),
            ),
        ),
        Err(e) => {
            let c = check("host.docker", Status::Fail, e.to_string());
            match e.hint() {
                Some(h) => c.with_hint(h),
                None => c,
            }
        }
    }
}

/// Free bytes on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid path and `s` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field types differ between libc targets
    Ok(u64::from(s.f_bavail) * u64::from(s.f_frsize))
}

/// host.disk: free space under the engine's data root.
pub fn check_disk(recipe: &Recipe, engine: &Result<EngineInfo, Error>) -> Check {
    let need = recipe.file.preflight.min_free_disk_gb * 1_000_000_000;
    let Ok(info) = engine else {
        return check(
            "host.disk",
            Status::Skip,
            "the engine did not answer, so its data root is unknown",
        );
    };
    let Some(root) = info.root_dir.as_deref().filter(|_| info.local) else {
        return check(
            "host.disk",
            Status::Skip,
            format!(
                "engine at {} is not local: its disk cannot be measured from here",
                info.host
            ),
        );
    };
    match free_bytes(Path::new(root)) {
        Ok(free) => check_when(free >= need, "host.disk", format!("{} free under {root}, need {}", gb(free), gb(need)))
            .with_hint("free space (`docker builder prune`, `docker image prune`) or move the engine's data root to a bigger disk"),
        Err(e) => check("host.disk", Status::Fail, format!("cannot measure {root}: {e}")),
    }
}

/// The directory itself, or its nearest existing ancestor (it is created by the first run).
fn existing_ancestor(dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| dir.to_owned(), |c| c.join(dir))
    };
    abs.ancestors()
        .find(|a| a.is_dir())
        .map_or_else(|| PathBuf::from("/"), Path::to_owned)
}

/// host.disk-artifacts: free space under the artifacts directory, where the image archive
/// (10 GB and more), the wheels and the logs go. When it shares a filesystem with the engine's
/// data root, both needs are counted against that one disk.
pub fn check_artifacts_disk(
    recipe: &Recipe,
    engine: &Result<EngineInfo, Error>,
    paths: &HostPaths,
) -> Check {
    use std::os::unix::fs::MetadataExt;
    let own = recipe.file.preflight.min_free_artifacts_gb * 1_000_000_000;
    let at = existing_ancestor(&paths.artifacts);
    let shown = if at == paths.artifacts || paths.artifacts.is_dir() {
        paths.artifacts.display().to_string()
    } else {
        format!(
            "{} (not created yet; measured at {})",
            paths.artifacts.display(),
            at.display()
        )
    };
    let root = engine
        .as_ref()
        .ok()
        .filter(|i| i.local)
        .and_then(|i| i.root_dir.clone());
    let same_disk =
        root.as_deref()
            .is_some_and(|r| match (std::fs::metadata(r), std::fs::metadata(&at)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev(),
                _ => false,
            });
    let need = if same_disk {
        own + recipe.file.preflight.min_free_disk_gb * 1_000_000_000
    } else {
        own
    };
    match free_bytes(&at) {
        Ok(free) => check_when(
            free >= need,
            "host.disk-artifacts",
            if same_disk {
                format!(
                    "{} free under {shown}, need {} ({} for the artifacts + {} for the engine's data root {}, the same filesystem)",
                    gb(free),
                    gb(need),
                    gb(own),
                    gb(need - own),
                    root.as_deref().unwrap_or("?")
                )
            } else {
                format!("{} free under {shown}, need {}", gb(free), gb(need))
            },
        )
        .with_hint(
            "free space there, or pass `--artifacts DIR` on a bigger disk (to preflight and build alike)",
        ),
        Err(e) => check(
            "host.disk-artifacts",
            Status::Fail,
            format!("cannot measure {}: {e}", at.display()),
        ),
    }
}

/// host.memory: memory per compile job. With `MAX_JOBS` pinned, the pin against the machine's
/// memory; otherwise (`forge-jobs` decides inside the build) the number each compiling stage is
/// expected to get from the engine's CPUs and memory (the engine's `info`: NCPU, MemTotal).
pub fn check_memory(
    recipe: &Recipe,
    engine: &Result<EngineInfo, Error>,
    paths: &HostPaths,
) -> Check {
    let per_job_need = recipe.file.preflight.min_memory_per_job_gb * 1_000_000_000;
    let remote = engine.as_ref().ok().filter(|i| !i.local);
    let (total, source) = match remote.and_then(|i| i.mem_total) {
        Some(m) => (Some(m), "the engine's machine"),
        None => (
            std::fs::read_to_string(&paths.meminfo)
                .ok()
                .and_then(|t| meminfo_bytes(&t, "MemTotal")),
            "this machine",
        ),
    };
    let Some(total) = total else {
        return check(
            "host.memory",
            Status::Fail,
            format!("cannot read {}", paths.meminfo.display()),
        );
    };
    let fit = (total / per_job_need.max(1)).max(1);
    match recipe.jobs() {
        Jobs::Pinned { jobs } => {
            let jobs = u64::from(jobs);
            let per_job = total / jobs;
            check_when(
                per_job >= per_job_need,
                "host.memory",
                format!(
                    "{} on {source} / MAX_JOBS={jobs} (pinned) = {} per job, need {}",
                    gb(total),
                    gb(per_job),
                    gb(per_job_need)
                ),
            )
            .with_hint(format!(
                "set MAX_JOBS = \"{fit}\" in the recipe's [build-args], or remove it so the build \
                 decides from the machine (OOM-killed compiles fail hours in)"
            ))
        }
        jobs @ Jobs::Auto { .. } => {
            let cpus = engine
                .as_ref()
                .ok()
                .and_then(|i| i.ncpu)
                .or_else(|| {
                    std::thread::available_parallelism()
                        .ok()
                        .map(|n| n.get() as u64)
                })
                .unwrap_or(1);
            let stages = recipe
                .dockerfile
                .read()
                .map(|t| crate::recipe::dockerfile::job_stages(&t))
                .unwrap_or_default();
            let expected: Vec<String> = if stages.is_empty() {
                vec![format!("MAX_JOBS={}", jobs.expected(cpus, total, 1))]
            } else {
                stages
                    .iter()
                    .map(|j| format!("{}={}", j.stage, jobs.expected(cpus, total, j.share)))
                    .collect()
            };
            check_when(
                total >= per_job_need,
                "host.memory",
                format!(
                    "MAX_JOBS decided in the build: {} and {cpus} CPUs on {source}, {} a job: \
                     expects {} (a cgroup memory limit on the build lowers it)",
                    gb(total),
                    gb(per_job_need),
                    expected.join(", ")
                ),
            )
            .with_hint(
                "less memory than one compile job needs: the build still runs one job, which may \
                 be OOM-killed; build on a machine with more memory (or more swap)",
            )
        }
    }
}

pub use crate::report::catalog::{MIN_GTT_SHARE_PERCENT, MIN_KERNEL_FOR_APU};

fn apu_archs(recipe: &Recipe) -> Vec<&str> {
    recipe
        .archs()
        .iter()
        .map(String::as_str)
        .filter(|a| crate::recipe::APU_ARCHS.contains(a))
        .collect()
}

/// `6.18.9-200.fc43.x86_64` -> [6, 18, 9].
pub fn kernel_version(release: &str) -> Option<Vec<u32>> {
    let head = release
        .trim()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let v: Vec<u32> = head.split('.').filter_map(|p| p.parse().ok()).collect();
    (v.len() >= 2).then_some(v)
}

/// host.kernel: the kernel the gfx1151 peers require for serving.
pub fn check_kernel(recipe: &Recipe, paths: &HostPaths) -> Check {
    judge_kernel(
        recipe,
        std::fs::read_to_string(&paths.osrelease)
            .map_err(|e| format!("cannot read {}: {e}", paths.osrelease.display())),
    )
}

/// host.kernel from the kernel's release (or why it could not be read).
pub fn judge_kernel(recipe: &Recipe, release: std::result::Result<String, String>) -> Check {
    let apu = apu_archs(recipe);
    if apu.is_empty() {
        return check(
            "host.kernel",
            Status::Skip,
            "the recipe targets no gfx1150/gfx1151 APU: no kernel minimum is known for its archs",
        );
    }
    let min = MIN_KERNEL_FOR_APU
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let release = match release {
        Ok(r) => r.trim().to_owned(),
        Err(e) => return check("host.kernel", Status::Fail, e),
    };
    let Some(v) = kernel_version(&release) else {
        return check(
            "host.kernel",
            Status::Fail,
            format!("cannot read a version in kernel release `{release}`"),
        );
    };
    check_when(
        !crate::recipe::version_lt(&v, &MIN_KERNEL_FOR_APU),
        "host.kernel",
        format!("kernel {release}, {} needs {min} or newer", apu.join(", ")),
    )
    .with_hint(format!(
        "serve on a kernel {min} or newer: older ones have a gfx1151 stability bug \
         (kyuz0/amd-strix-halo-toolboxes); avoid linux-firmware-20251125"
    ))
}

/// host.gtt: how much of the memory the GPU may map (TTM's page limit, and `amdgpu.gttsize`
/// when it is set lower).
pub fn check_gtt(recipe: &Recipe, paths: &HostPaths) -> Check {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    judge_gtt(
        recipe,
        &Gtt {
            sys_module: paths.sys_module.display().to_string(),
            loaded: paths.sys_module.exists(),
            meminfo: read(&paths.meminfo),
            ttm_pages_limit: read(&paths.ttm_pages_limit),
            gttsize: read(&paths.sys_module.join("parameters/gttsize")),
            sources: format!(
                "{} or {}",
                paths.ttm_pages_limit.display(),
                paths.meminfo.display()
            ),
        },
    )
}

/// What host.gtt reads.
pub struct Gtt {
    /// `/sys/module/amdgpu`, as shown.
    pub sys_module: String,
    /// Whether it exists.
    pub loaded: bool,
    /// `/proc/meminfo`.
    pub meminfo: Option<String>,
    /// `ttm.pages_limit`.
    pub ttm_pages_limit: Option<String>,
    /// `amdgpu.gttsize`.
    pub gttsize: Option<String>,
    /// Where the two limits come from, for the message.
    pub sources: String,
}

/// host.gtt from the texts read.
pub fn judge_gtt(recipe: &Recipe, g: &Gtt) -> Check {
    let apu = apu_archs(recipe);
    if apu.is_empty() {
        return check(
            "host.gtt",
            Status::Skip,
            "the recipe targets no gfx1150/gfx1151 APU: its GPU memory is not mapped system memory",
        );
    }
    if !g.loaded {
        return check(
            "host.gtt",
            Status::Skip,
            format!(
                "no {}: amdgpu is not loaded, so this is not the host that serves (1.1 says so)",
                g.sys_module
            ),
        );
    }
    let total = g
        .meminfo
        .as_deref()
        .and_then(|t| meminfo_bytes(t, "MemTotal"));
    let pages = g
        .ttm_pages_limit
        .as_deref()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let (Some(total), Some(pages)) = (total, pages) else {
        return check(
            "host.gtt",
            Status::Fail,
            format!("cannot read {}", g.sources),
        );
    };
    let ttm = pages * 4096;
    // amdgpu.gttsize in MiB; -1 (the default) leaves it to TTM
    let gttsize = g
        .gttsize
        .as_deref()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|m| *m > 0)
        .map(|m| m.unsigned_abs() << 20);
    let mappable = gttsize.map_or(ttm, |g| g.min(ttm));
    let want = total / 100 * MIN_GTT_SHARE_PERCENT;
    let keep = 4u64 << 30;
    let pages_fit = total.saturating_sub(keep) / 4096;
    check_when(
        mappable >= want,
        "host.gtt",
        format!(
            "the GPU may map {} of the {} Linux sees (ttm.pages_limit={pages}: {}; amdgpu.gttsize: {}), want {}% for serving on {}",
            gb(mappable),
            gb(total),
            gb(ttm),
            gttsize.map_or("default".to_owned(), gb),
            MIN_GTT_SHARE_PERCENT,
            apu.join(", ")
        ),
    )
    .with_hint(format!(
        "raise the limit on the kernel command line, e.g. `ttm.pages_limit={pages_fit} \
         amdgpu.gttsize={}` (all but 4 GiB; kyuz0/amd-strix-halo-toolboxes' host configuration, \
         ROCm's Strix Halo system optimization guide; `amd-ttm --set` does it at run time)",
        (pages_fit * 4096) >> 20
    ))
}

/// The whole preflight, the GPU host read on this machine (a local engine's host).
pub fn preflight(
    recipe: &Recipe,
    engine: &Result<EngineInfo, Error>,
    paths: &HostPaths,
) -> Vec<Check> {
    host_checks(recipe, engine, paths, None)
}

/// The whole preflight when the engine did not answer and is not (or may not be) on this
/// machine: the GPU host is the engine's host, so its GPU, groups, kernel and memory are not
/// known, and this machine's own would answer for the wrong host. `at`: the engine's URL, `None`
/// when its setting could not be read.
pub fn preflight_unreached(
    recipe: &Recipe,
    engine: &Result<EngineInfo, Error>,
    paths: &HostPaths,
    at: Option<&str>,
) -> Vec<Check> {
    let why = match at {
        Some(at) => format!("the engine at `{at}` did not answer"),
        None => "the engine's setting could not be read (host.docker says why)".to_owned(),
    };
    host_checks(recipe, engine, paths, Some(&why))
}

/// Phase 1's checks in their order; with `unread`, the engine host's checks are skipped saying
/// why instead of read here.
fn host_checks(
    recipe: &Recipe,
    engine: &Result<EngineInfo, Error>,
    paths: &HostPaths,
    unread: Option<&str>,
) -> Vec<Check> {
    let on_engine_host = |id: &str, read: &dyn Fn() -> Check| match unread {
        None => read(),
        Some(why) => check(
            id,
            Status::Skip,
            format!("not read: {why}; this is read on the engine's host, not on this machine"),
        ),
    };
    vec![
        on_engine_host("1.1", &|| check_amdgpu(paths)),
        on_engine_host("1.2", &|| check_devices(paths)),
        on_engine_host("host.groups", &|| check_groups(paths)),
        on_engine_host("1.3", &|| check_rocminfo(recipe, Duration::from_secs(30))),
        on_engine_host("1.4", &|| check_rocm_version(recipe, paths)),
        check_docker(engine),
        check_disk(recipe, engine),
        check_artifacts_disk(recipe, engine, paths),
        on_engine_host("host.memory", &|| check_memory(recipe, engine, paths)),
        on_engine_host("host.kernel", &|| check_kernel(recipe, paths)),
        on_engine_host("host.gtt", &|| check_gtt(recipe, paths)),
    ]
}

/// The whole preflight, reading the GPU host where the engine is: this machine's own files when
/// the engine's socket is local, a probe container on the engine's host otherwise (never this
/// machine's `/dev` for a remote engine). `run` labels the probe's containers.
pub fn preflight_through(
    recipe: &Recipe,
    info: &Result<EngineInfo, Error>,
    paths: &HostPaths,
    engine: &dyn crate::engine::Engine,
    run: &str,
) -> Vec<Check> {
    let Ok(i) = info
        .as_ref()
        .map_err(|_| ())
        .and_then(|i| if i.local { Err(()) } else { Ok(i) })
    else {
        return match (info, engine.remote_host()) {
            (Err(_), Some(at)) => preflight_unreached(recipe, info, paths, Some(&at)),
            _ => preflight(recipe, info, paths),
        };
    };
    let host = remote::read(engine, i, run);
    let mut v = remote::checks(recipe, i, &host);
    let disk = v.pop().expect("remote::checks ends with host.disk");
    v.push(check_docker(info));
    v.push(disk);
    v.push(check_artifacts_disk(recipe, info, paths));
    v.push(check_memory(recipe, info, paths));
    match &host {
        Ok(_) => v.extend(remote::serving_checks(recipe, &host)),
        Err(why) => v.extend(["host.kernel", "host.gtt"].map(|id| {
            check(
                id,
                Status::Skip,
                format!("the engine's host was not read: {why}"),
            )
        })),
    }
    v
}

pub mod remote;

#[cfg(test)]
pub(crate) mod tests;
