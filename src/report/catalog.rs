//! Every check forge knows, with its id, phase and title, in one table.
//!
//! Ids are the spec's numbers where the spec numbers the check (`1.3`, `3.5`), so a report maps
//! line by line onto `validation-suite.md`; checks forge adds have ids of their own
//! (`host.docker`, `wheel.gpu-targets`). Implementations look their titles up here.

use crate::recipe::{Checks, Recipe};

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Check id.
    pub id: &'static str,
    /// Phase (0 the plan, 1-7 the spec's, 8 the export, 9 the deliverables checklist).
    pub phase: u8,
    /// Short title.
    pub title: &'static str,
    /// Whether it needs an AMD GPU to run.
    pub needs_gpu: bool,
}

const fn e(id: &'static str, phase: u8, title: &'static str, needs_gpu: bool) -> Entry {
    Entry {
        id,
        phase,
        title,
        needs_gpu,
    }
}

/// All checks, in report order.
pub const CATALOG: &[Entry] = &[
    e("plan.args", 0, "every build arg declared and used", false),
    e("plan.stages", 0, "target and wheel stages exist", false),
    e(
        "lock.current",
        0,
        "the recipe's Python lock is what resolves",
        false,
    ),
    e(
        "plan.arch-env",
        0,
        "PYTORCH_ROCM_ARCH exported to RUN",
        false,
    ),
    e("1.1", 1, "amdgpu kernel module loaded", true),
    e("1.2", 1, "/dev/kfd and /dev/dri/renderD* read-write", true),
    e(
        "host.groups",
        1,
        "user in the video and render groups",
        true,
    ),
    e("1.3", 1, "rocminfo lists the target arch", true),
    e("1.4", 1, "host ROCm version", true),
    e("host.docker", 1, "Docker engine reachable", false),
    e(
        "host.disk",
        1,
        "free disk under the engine's data root",
        false,
    ),
    e(
        "host.disk-artifacts",
        1,
        "free disk under the artifacts directory",
        false,
    ),
    e("host.memory", 1, "memory per compile job", false),
    e("host.kernel", 1, "kernel for serving on the APU", true),
    e("host.gtt", 1, "GPU-mappable memory (GTT) for serving", true),
    e(
        "2.1",
        2,
        "USE_DISTRIBUTED and USE_ROCM on in the summary",
        false,
    ),
    e(
        "build.hip",
        2,
        "HIP proven (the spec's USE_HIP line)",
        false,
    ),
    e(
        "build.arch",
        2,
        "target arch in PyTorch's GPU arch list",
        false,
    ),
    e("build.cuda", 2, "USE_CUDA off", false),
    e("2.2", 2, "no line turns distributed off", false),
    e("build.fatal", 2, "no fatal compile error", false),
    e("build.clipped", 2, "log not clipped by BuildKit", false),
    e("build.result", 2, "the wheel stage builds", false),
    e(
        "build.wheels",
        2,
        "wheels taken out of the wheel stage",
        false,
    ),
    e(
        "wheel.taken",
        3,
        "taken wheels present with their pinned SHA256",
        false,
    ),
    e(
        "wheel.taken-requires",
        3,
        "torch's ROCm and Triton requirements are taken",
        false,
    ),
    e("3.1", 3, "wheel size", false),
    e("3.2", 3, "c10d symbols in libtorch_cpu.so", false),
    e("3.3", 3, "PrefixStore defined in libtorch_cpu.so", false),
    e("3.4", 3, "ProcessGroup defined in libtorch_cpu.so", false),
    e(
        "3.5",
        3,
        "libtorch_hip.so needs libamdhip64 and libhsa-runtime64",
        false,
    ),
    e("3.6", 3, "no unresolved rsmi/hip/hsa symbols", false),
    e(
        "wheel.flavour",
        3,
        "build flavour (ROCm / CUDA / CPU)",
        false,
    ),
    e(
        "wheel.gpu-targets",
        3,
        "GPU code objects for the target arch",
        false,
    ),
    e(
        "wheel.glibc",
        3,
        "system symbol versions within the manylinux tag",
        false,
    ),
    e("image.build", 4, "the image builds (runtime stage)", false),
    e(
        "image.transfer",
        4,
        "the image streamed into the GPU engine, same id",
        false,
    ),
    e("4.1", 4, "image size", false),
    e("4.2", 4, "system packages installed", false),
    e("4.3", 4, "Python packages installed", false),
    e("4.4", 4, "ROCm libraries present", false),
    e("4.5", 4, "libamd_smi.so present", false),
    e(
        "image.rocm-versions",
        4,
        "one ROCm release in all ROCm components",
        false,
    ),
    e(
        "image.gpu-targets",
        4,
        "GPU libraries torch and vLLM load carry the arch",
        false,
    ),
    e(
        "image.vllm-symbols",
        4,
        "vLLM's extensions' torch symbols defined",
        false,
    ),
    e(
        "image.vllm-torch",
        4,
        "vLLM's declared torch installed",
        false,
    ),
    e(
        "image.pip-check",
        4,
        "torch/triton/torchvision requirements hold",
        false,
    ),
    e("5.1", 5, "torch imports", true),
    e("5.2", 5, "torch sees the GPU through HIP", true),
    e(
        "5.3",
        5,
        "torch.distributed imports (the critical test)",
        true,
    ),
    e("5.4", 5, "GPU tensor compute", true),
    e("5.5", 5, "amdsmi enumerates the GPU", true),
    e("5.6", 5, "vLLM imports", true),
    e("5.7", 5, "vLLM detects the ROCm platform", true),
    e(
        "runtime.versions",
        5,
        "torch, HIP, CUDA and triton versions",
        false,
    ),
    e(
        "runtime.arch",
        5,
        "device 0's gcnArchName in the recipe's archs",
        true,
    ),
    e(
        "runtime.rsmi-preload",
        5,
        "no undefined rsmi_* symbol (or the LD_PRELOAD workaround)",
        false,
    ),
    e(
        "runtime.xccl",
        5,
        "vLLM's supports_xccl import paths agree",
        false,
    ),
    e(
        "runtime.import-order",
        5,
        "amdsmi and torch import in both orders",
        false,
    ),
    e("runtime.imports", 5, "the recipe's extra imports", false),
    e("6.1", 6, "server container starts", true),
    e("6.2", 6, "`Uvicorn running` within the timeout", true),
    e("6.3", 6, "/health returns 200", true),
    e("6.4", 6, "/v1/models lists the model", true),
    e("6.5", 6, "completion returns text", true),
    e("6.6", 6, "clean shutdown", true),
    e(
        "serve.stream",
        6,
        "streamed completion (first-token latency)",
        true,
    ),
    e("serve.chat", 6, "chat completion", true),
    e(
        "serve.default.start",
        6,
        "default path: server container starts",
        true,
    ),
    e(
        "serve.default.ready",
        6,
        "default path: ready within its limit",
        true,
    ),
    e(
        "serve.default.health",
        6,
        "default path: /health returns 200",
        true,
    ),
    e(
        "serve.default.models",
        6,
        "default path: /v1/models lists the model",
        true,
    ),
    e(
        "serve.default.completion",
        6,
        "default path: completion returns text",
        true,
    ),
    e(
        "serve.default.stream",
        6,
        "default path: streamed completion",
        true,
    ),
    e(
        "serve.default.chat",
        6,
        "default path: chat completion",
        true,
    ),
    e(
        "serve.default.stop",
        6,
        "default path: clean shutdown",
        true,
    ),
    e("7.1", 7, "no double free on exit", true),
    e("7.2", 7, "repeated import cycles", true),
    e("export.archive", 8, "image exported as .tar.gz", false),
    e("export.sha256", 8, "SHA256 checksum file", false),
    e(
        "export.loadable",
        8,
        "archive loadable (manifest and layers)",
        false,
    ),
    e("export.size", 8, "compressed archive size", false),
    e(
        "deliverable.archive",
        9,
        "image exported as .tar.gz / .tar.zst",
        false,
    ),
    e(
        "deliverable.sha256",
        9,
        "SHA256 checksum file (.sha256)",
        false,
    ),
    e(
        "deliverable.build-log",
        9,
        "build log shows USE_DISTRIBUTED: ON",
        false,
    ),
    e(
        "deliverable.gpu-phases",
        9,
        "test report shows phases 5-7 passed",
        true,
    ),
    e(
        "deliverable.sizes",
        9,
        "image > threshold uncompressed, archive > threshold compressed",
        false,
    ),
];

/// The catalog entry of `id`.
///
/// # Panics
/// When `id` is not in the catalog: a programming error caught by the tests.
pub fn entry(id: &str) -> &'static Entry {
    CATALOG
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("check `{id}` is not in the catalog"))
}

/// The title of check `id`.
pub fn title(id: &str) -> &'static str {
    entry(id).title
}

use crate::units::gb;

/// Which forge command runs check `id` today.
pub fn runner(id: &str) -> &'static str {
    match entry(id).phase {
        0 => "forge plan, forge build",
        1 => "forge preflight, forge build",
        2 => "forge build, forge scan, forge watch",
        3 => "forge wheel, forge build",
        4 => "forge image, forge build",
        5 | 7 => "forge runtime",
        6 => "forge serve",
        8 => "forge export, forge build",
        9 => "forge build, forge export -o DIR, forge report",
        _ => "not implemented yet",
    }
}

/// ` (replaces the spec's X: why)` where the recipe replaced the expectation under `key`.
pub fn replaced_note(c: &Checks, key: &str) -> String {
    c.replacement(key)
        .map(|r| format!(" (replaces the spec's {}: {})", r.spec, r.reason))
        .unwrap_or_default()
}

/// The pass condition of `id` under `recipe`, with its threshold.
pub fn condition(id: &str, r: &Recipe) -> String {
    let c = &r.file.checks;
    let arch = r.archs().join(";");
    match id {
        "1.1" => "`amdgpu` in /proc/modules".into(),
        "1.2" => "/dev/kfd and every /dev/dri/renderD* exist, read-write for this user".into(),
        "host.groups" => "user in `video` and `render` (or devices otherwise accessible)".into(),
        "1.3" => format!("rocminfo lists an agent named {arch}"),
        "1.4" => format!("/opt/rocm/.info/version starts with {}", r.rocm_version()),
        "host.docker" => "engine answers; API version and builder reported".into(),
        "host.disk" => format!(">= {} GB free", r.file.preflight.min_free_disk_gb),
        "host.disk-artifacts" => format!(
            ">= {} GB free under the artifacts directory (archive, wheels, logs)",
            r.file.preflight.min_free_artifacts_gb
        ),
        "host.memory" => match r.jobs() {
            crate::recipe::Jobs::Pinned { jobs } => format!(
                ">= {} GB per job x MAX_JOBS={jobs}",
                r.file.preflight.min_memory_per_job_gb
            ),
            crate::recipe::Jobs::Auto { per_job_gb } => format!(
                ">= {per_job_gb} GB (one job); MAX_JOBS follows the engine's CPUs and memory"
            ),
        },
        "host.kernel" => format!(
            "gfx1150/gfx1151: kernel >= {} (skip for other archs)",
            MIN_KERNEL_FOR_APU
                .map(|n| n.to_string())
                .join(".")
        ),
        "host.gtt" => format!(
            "gfx1150/gfx1151: GTT (ttm.pages_limit, amdgpu.gttsize) >= {}% of memory",
            MIN_GTT_SHARE_PERCENT
        ),
        "2.1" => "USE_DISTRIBUTED and USE_ROCM on (ON/1/TRUE)".into(),
        "build.hip" => "USE_ROCM on and LoadHIP's `HIP VERSION` line".into(),
        "build.arch" => format!("`Building PyTorch for GPU arch:` includes {arch}"),
        "build.cuda" => "USE_CUDA off in a ROCm build".into(),
        "2.2" => "no line turns distributed off or disables it".into(),
        "build.fatal" => "no OOM kill, ninja stop, link failure, disk full".into(),
        "build.clipped" => "no `[output clipped, log limit ...]`".into(),
        "3.1" => match c.replacement("wheel-min-bytes") {
            Some(r) => format!(
                "> {} (the recipe's; the spec's is {}: {})",
                gb(c.wheel_min_bytes),
                gb(Checks::default().wheel_min_bytes),
                r.reason
            ),
            None => format!("> {}", gb(c.wheel_min_bytes)),
        },
        "wheel.taken" => "every [taken.*] wheel in the wheelhouse, its SHA256 the recipe's pin, before anything is built".into(),
        "wheel.taken-requires" => "each Requires-Dist of the taken torch on rocm, rocm-sdk-* or triton is a [taken.*] at a version it allows (the index's `rocm` is not AMD's)".into(),
        "3.2" => "> 0 defined dynamic symbols containing c10d".into(),
        "3.3" | "3.4" => "defined (not merely referenced)".into(),
        "3.5" => "DT_NEEDED has libamdhip64 and libhsa-runtime64".into(),
        "3.6" => "every undefined rsmi*/hip*/hsa* symbol resolves via DT_NEEDED".into(),
        "wheel.flavour" => "ROCm (libtorch_hip.so present)".into(),
        "wheel.gpu-targets" => format!("every HIP ELF carries code for {arch}"),
        "wheel.glibc" => {
            "GLIBC, GLIBCXX, CXXABI, GCC versions and imports allowed by the tag's manylinux policy (auditwheel's data)".into()
        }
        "4.1" => format!(
            "> {}{}",
            gb(c.image_min_bytes),
            replaced_note(c, "image-min-bytes")
        ),
        "4.2" => format!(
            "installed: {}{}",
            c.system_packages.join(", "),
            replaced_note(c, "system-packages")
        ),
        "4.3" => format!(
            "installed: {}{}",
            c.pip_packages.join(", "),
            replaced_note(c, "pip-packages")
        ),
        "image.rocm-versions" => format!(
            "AMD and distribution packages, pip ROCm wheels, /opt/rocm*/.info/version, library file names: all ROCm {}",
            r.rocm_version()
        ),
        "image.gpu-targets" => format!(
            "every ELF with GPU code and code-object directory torch/vLLM load has code for {arch}"
        ),
        "image.vllm-symbols" => {
            "every undefined c10::/at::/torch::/caffe2:: symbol of vllm/_C*.so, _rocm_C*, _moe_C* defined by torch".into()
        }
        "image.vllm-torch" => "installed torch matches vLLM's Requires-Dist (PEP 440)".into(),
        "image.pip-check" => "torch, vLLM, torchvision's requirements on torch/triton/torchvision/torchaudio hold".into(),
        "4.4" | "4.5" => {
            let (smi, rest): (Vec<&String>, Vec<&String>) =
                c.files.iter().partition(|f| f.contains("amd_smi"));
            let list = if id == "4.5" { smi } else { rest };
            let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
            format!("exist: {}{}", names.join(", "), replaced_note(c, "files"))
        }
        "5.1" | "5.3" | "5.6" => "imports succeed".into(),
        "5.2" => "torch.cuda.is_available() and torch.version.hip".into(),
        "5.4" => "zeros(100,100)+1 sums to 10000 on the GPU".into(),
        "5.5" => ">= 1 processor handle".into(),
        "5.7" => "current_platform.is_rocm()".into(),
        "6.1" => format!("{} starts", c.server.model),
        "6.2" => format!("within {} s", c.server.startup_timeout_secs),
        "6.3" => "HTTP 200".into(),
        "6.4" => format!("lists {}", c.server.model),
        "6.5" => "JSON with generated text".into(),
        "6.6" => "container stops and is removed".into(),
        "runtime.versions" => "torch's version readable (HIP, CUDA, triton reported)".into(),
        "runtime.arch" => format!("gcnArchName of device 0 is one of {arch}"),
        "runtime.rsmi-preload" => {
            "no undefined rsmi_* symbol, or the imports succeed with librocm_smi64 preloaded".into()
        }
        "runtime.xccl" => "supports_xccl importable where vLLM's own code imports it from".into(),
        "runtime.import-order" => {
            "`import amdsmi; import torch` and the reverse exit cleanly".into()
        }
        "runtime.imports" => format!("import {}", c.runtime.extra_imports.join(", ")),
        "serve.stream" => "`stream: true` completion yields text chunks, then [DONE]".into(),
        "serve.chat" => "chat completion returns a message (400 for no chat template: skip)".into(),
        "serve.default.start"
        | "serve.default.health"
        | "serve.default.models"
        | "serve.default.completion"
        | "serve.default.stream"
        | "serve.default.chat"
        | "serve.default.stop" => format!(
            "as {} with the server's arguments less {}",
            default_path_source(id).unwrap_or("?"),
            c.server_default_path.drop_args.join(" ")
        ),
        "serve.default.ready" => format!(
            "within {} s, arguments less {}",
            c.server_default_path.startup_timeout_secs,
            c.server_default_path.drop_args.join(" ")
        ),
        "7.1" => "no `double free`, `corruption`, `segfault` in the output".into(),
        "7.2" => "3 cycles complete".into(),
        "plan.args" => "every recipe build arg has an `ARG` and is used".into(),
        "plan.stages" => format!(
            "stages `{}` and `{}` exist",
            r.file.image.target, r.file.image.wheel_stage
        ),
        "plan.arch-env" => "`ENV PYTORCH_ROCM_ARCH` in every stage that declares it".into(),
        "lock.current" => "`forge recipe lock` now pins the versions the lock file pins".into(),
        "build.result" => format!(
            "stage `{}` builds, no fatal finding",
            r.file.image.wheel_stage
        ),
        "build.wheels" => "at least one .whl, each with its SHA256".into(),
        "image.build" => format!("stage `{}` builds after phase 3", r.file.image.target),
        "image.transfer" => "`--gpu-engine`: the build engine's image stream loaded into the GPU engine, which gives it the same id (every layer checked against it)".into(),
        "export.archive" => "written to a temporary name, renamed when complete".into(),
        "export.sha256" => "`<hex>  <name>` (sha256sum -c reads it), matching the archive read back".into(),
        "export.loadable" => "the tar lists manifest.json and every config and layer it names".into(),
        "export.size" => format!("> {}", gb(c.archive_min_bytes)),
        "deliverable.archive" => "the archive (or all its parts) in the bundle".into(),
        "deliverable.sha256" => "`<archive>.sha256` holds the archive's SHA256".into(),
        "deliverable.build-log" => {
            "a USE_DISTRIBUTED summary line that is on, with its line number".into()
        }
        "deliverable.gpu-phases" => "every check of phases 5-7 passed".into(),
        "deliverable.sizes" => format!(
            "image > {}, archive > {}{}",
            gb(c.image_min_bytes),
            gb(c.archive_min_bytes),
            replaced_note(c, "archive-min-bytes")
        ),
        other => format!("see `{other}`"),
    }
}

/// The oldest kernel gfx1151 serving is run on by its peers: kyuz0/amd-strix-halo-toolboxes'
/// README ("Kernels older than 6.18.4 have a bug that causes stability issues on gfx1151 and
/// should be avoided"; also: linux-firmware-20251125 breaks ROCm on Strix Halo).
pub const MIN_KERNEL_FOR_APU: [u32; 3] = [6, 18, 4];

/// Share of the memory Linux sees that the GPU should be able to map (GTT) for serving on an
/// APU: peers raise TTM's limit (by default half of the memory) to nearly all of it (kyuz0's host
/// configuration: `amdgpu.gttsize=126976 ttm.pages_limit=32505856`, 124 of 128 GB; ROCm's "AMD
/// Strix Halo system optimization" page on GTT and `amd-ttm`).
pub const MIN_GTT_SHARE_PERCENT: u64 = 75;

/// The phase 6 checks and the ids they take when the server test runs again on vLLM's default
/// path (`[checks.server-default-path]`).
pub const DEFAULT_PATH_IDS: &[(&str, &str)] = &[
    ("6.1", "serve.default.start"),
    ("6.2", "serve.default.ready"),
    ("6.3", "serve.default.health"),
    ("6.4", "serve.default.models"),
    ("6.5", "serve.default.completion"),
    ("serve.stream", "serve.default.stream"),
    ("serve.chat", "serve.default.chat"),
    ("6.6", "serve.default.stop"),
];

/// The check a default-path id repeats (`serve.default.ready` -> `6.2`).
pub fn default_path_source(id: &str) -> Option<&'static str> {
    DEFAULT_PATH_IDS
        .iter()
        .find(|(_, d)| *d == id)
        .map(|(s, _)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_spec_check_is_there() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        for id in [
            "1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6",
            "4.1", "4.2", "4.3", "4.4", "4.5", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7",
            "6.1", "6.2", "6.3", "6.4", "6.5", "6.6", "7.1", "7.2",
        ] {
            assert!(CATALOG.iter().any(|e| e.id == id), "{id}");
        }
    }
}
