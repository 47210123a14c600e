//! Known failures: symptom -> cause -> fix, as data in one place.
//!
//! `forge diagnose` reads pasted text and names each known failure it finds; the build monitor
//! uses the build-time entries as its fatal compile patterns; the report quotes the fixes.
//! Sources: the spec's failure-mode table and the field notes' table.

use regex::{Regex, RegexSet};
use serde::Serialize;
use std::sync::OnceLock;

use crate::recipe::Severity;

/// One known failure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Known {
    /// Stable id (`distributed-missing`).
    pub id: &'static str,
    /// Regex matched against one line (case-insensitive unless it says otherwise).
    #[serde(skip)]
    pub pattern: &'static str,
    /// For the build monitor: how serious, if it appears in a build log (`None`: runtime only).
    #[serde(skip)]
    pub in_build: Option<Severity>,
    /// The symptom as users see it.
    pub symptom: &'static str,
    /// The cause.
    pub cause: &'static str,
    /// The fix.
    pub fix: &'static str,
    /// Where this knowledge comes from.
    pub source: &'static str,
}

const fn k(
    id: &'static str,
    pattern: &'static str,
    in_build: Option<Severity>,
    symptom: &'static str,
    cause: &'static str,
    fix: &'static str,
    source: &'static str,
) -> Known {
    Known {
        id,
        pattern,
        in_build,
        symptom,
        cause,
        fix,
        source,
    }
}

const FATAL: Option<Severity> = Some(Severity::Fatal);

/// The knowledge table.
pub const KNOWN: &[Known] = &[
    k(
        "distributed-missing",
        r"(?i)cannot import (?:name )?['\x22]?(?:PrefixStore|ProcessGroup|ReduceOp)\b|has no attribute ['\x22](?:PrefixStore|ProcessGroup)['\x22]|No module named ['\x22]?torch\._C\._distributed_c10d|distributed not available",
        None,
        "cannot import name 'PrefixStore' from 'torch.distributed'",
        "torch was built with USE_DISTRIBUTED=0",
        "rebuild PyTorch with USE_DISTRIBUTED=1 set explicitly (forge's recipes always set it)",
        "spec",
    ),
    k(
        "rsmi-undefined-symbol",
        r"(?i)undefined symbol:\s*rsmi_",
        None,
        "libtorch_hip.so: undefined symbol: rsmi_init",
        "libtorch_hip uses rocm_smi but has no DT_NEEDED on librocm_smi64 (or rocm-smi-lib is missing)",
        "install rocm-smi-lib; preload /opt/rocm/lib/librocm_smi64.so (LD_PRELOAD) or rebuild with the upstream fix",
        "spec; ROCm/pytorch#2901, pytorch/pytorch#158725, #175648",
    ),
    k(
        "rsmi-undefined-reference",
        r"undefined reference to [`'‘]rsmi_",
        FATAL,
        "undefined reference to `rsmi_init' while linking",
        "the link step does not add librocm_smi64 (rocm-smi-lib missing in the build image)",
        "install rocm-smi-lib in the build stage and make sure /opt/rocm/lib is on the linker path",
        "spec; ROCm/pytorch#2901",
    ),
    k(
        "uvloop-missing",
        r"(?i)No module named ['\x22]?uvloop",
        None,
        "No module named 'uvloop'",
        "the uvloop Python package is missing from the image",
        "pip install uvloop in the runtime stage",
        "spec",
    ),
    k(
        "multipart-missing",
        r#"(?i)No module named ['"]?(?:python_)?multipart|requires ["']?python-multipart["']? to be installed"#,
        None,
        "No module named 'multipart' / Form data requires \"python-multipart\"",
        "the python-multipart package is missing (FastAPI file uploads)",
        "pip install python-multipart in the runtime stage",
        "spec",
    ),
    k(
        "amdsmi-missing",
        r"(?i)No module named ['\x22]?amdsmi",
        None,
        "ROCm platform is not available because: No module named 'amdsmi'",
        "the amdsmi Python package is missing, so vLLM falls back to no platform",
        "pip install /opt/rocm/share/amd_smi (amdsmi built from the image's own ROCm); the spec's `apt install amd-smi-lib` alone is not enough: that package ships the library and the Python sources, the Python package must be installed from them",
        "spec; vllm#24576, TheRock#3054",
    ),
    k(
        "double-free",
        r"(?i)double free or corruption|free\(\): (?:double free detected|invalid (?:pointer|size|next size))|malloc\(\): (?:corrupted|memory corruption|unaligned|invalid|mismatching|unsorted|smallbin)|corrupted size vs\.? prev_size|corrupted double-linked list|munmap_chunk\(\): invalid pointer|realloc\(\): invalid",
        None,
        "double free or corruption (!prev) / free(): double free detected in tcache 2",
        "mixed ROCm library versions, or pip amdsmi and torch's librocm_smi64 exporting the same symbols",
        "one ROCm version everywhere; build amdsmi from the image's own /opt/rocm/share/amd_smi",
        "spec; ROCm/TheRock#1059, #2269",
    ),
    k(
        "smi-sigbus",
        r"(?i)(?:SIGBUS|Bus error).*(?:amd_smi|rocm_smi)|(?:amd_smi|rocm_smi).*(?:SIGBUS|Bus error)",
        None,
        "SIGBUS in libamd_smi / librocm_smi64",
        "symbol collision between libamd_smi and librocm_smi64",
        "one ROCm version everywhere; amdsmi built from the image's own ROCm",
        "ROCm/TheRock#3487",
    ),
    k(
        "smi-sigabrt",
        r"(?i)(?:SIGABRT|Aborted).*amd_smi|amd_smi.*(?:SIGABRT|Aborted)",
        None,
        "SIGABRT in libamd_smi.so while loading a model",
        "libamd_smi.so version mismatch with the rest of ROCm",
        "install amd-smi-lib from the same ROCm release as the base image",
        "spec",
    ),
    k(
        "hsa-segfault",
        r"(?i)(?:segfault|segmentation fault|SIGSEGV).*libhsa-runtime64|libhsa-runtime64.*(?:segfault|segmentation fault|SIGSEGV)",
        None,
        "segfault in libhsa-runtime64.so",
        "HSA initialization race, or an HSA runtime from another ROCm version",
        "one ROCm version everywhere; retry and report if intermittent",
        "spec",
    ),
    k(
        "cpu-only-wheel",
        r"(?i)FAIL: Wheel too small|CPU-only build|wheel size < ?500 ?MB",
        None,
        "Wheel size < 500MB",
        "a CPU-only build: USE_ROCM was off, so no HIP code was compiled",
        "build with USE_ROCM=1 (there is no USE_HIP switch: ROCm builds are HIP builds) and PYTORCH_ROCM_ARCH set",
        "spec",
    ),
    k(
        "platform-not-detected",
        r"(?i)Platform\.ROCM not detected|ROCm platform not detected|UnspecifiedPlatform|No platform detected|Failed to infer device type",
        None,
        "Platform.ROCM not detected / UnspecifiedPlatform",
        "vLLM could not load amdsmi or reach the GPU, so it has no platform",
        "install amdsmi from /opt/rocm/share/amd_smi, pass /dev/kfd and /dev/dri, add the video and render groups",
        "spec; vllm#24576",
    ),
    k(
        "amdsmi-no-gpu",
        r"(?i)AMDSMI_STATUS_FILE_ERROR|amdsmi found 0 GPU|No GPUs found",
        None,
        "AMDSMI_STATUS_FILE_ERROR, amdsmi finds 0 GPUs",
        "the user is not in the render/video groups, or the devices are not passed to the container",
        "docker run --device=/dev/kfd --device=/dev/dri --group-add video --group-add render",
        "lemonade-sdk/vllm-rocm#13",
    ),
    k(
        "supports-xccl",
        r"(?i)cannot import name ['\x22]?supports_xccl",
        None,
        "cannot import name 'supports_xccl' from 'vllm.utils'",
        "mixed vLLM files: an old-layout platforms/__init__.py beside the newer vllm/utils/ package",
        "install one consistent vLLM wheel; never patch single files",
        "vllm PR #19410, issue #26900",
    ),
    k(
        "no-code-object",
        r"hipErrorInvalidImage|hipErrorNoBinaryForGpu|(?i:invalid device function)",
        None,
        "hipErrorInvalidImage / invalid device function / hipErrorNoBinaryForGpu",
        "no code object for the GPU's arch in the libraries",
        "build with the right PYTORCH_ROCM_ARCH (gfx1151 for Strix Halo); `forge wheel --arch` checks the code objects",
        "lemonade-sdk/vllm-rocm docs (.kpack post-mortem)",
    ),
    k(
        "vllm-torch-abi",
        r"undefined symbol:\s*_ZN(?:3c10|2at|5torch)",
        None,
        "undefined symbol: _ZN3c103hip19getCurrentHIPStreamEa",
        "vLLM was built against another torch than the one shipped",
        "rebuild vLLM against the shipped torch (constrain pip so it cannot swap torch)",
        "lemonade-sdk/vllm-rocm#10",
    ),
    k(
        "arch-not-detected",
        r"Could not detect ROCm arch for GPUs on machine",
        FATAL,
        "Could not detect ROCm arch for GPUs on machine",
        "PYTORCH_ROCM_ARCH is not in the RUN environment, and there is no GPU to enumerate inside `docker build`",
        "export the ARG as ENV: `ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH}`",
        "pytorch cmake/public/LoadHIP.cmake",
    ),
    k(
        "arch-not-specified",
        r"No GPU arch specified for ROCm build",
        FATAL,
        "No GPU arch specified for ROCm build",
        "PYTORCH_ROCM_ARCH is empty",
        "set the recipe's `archs` (forge passes PYTORCH_ROCM_ARCH from it)",
        "pytorch cmake/public/LoadHIP.cmake",
    ),
    k(
        "compile-oom",
        r"Killed signal terminated program|unable to execute command: Killed|exit code: 137\s*$|returned a non-zero code: 137\s*$|Out of memory: Killed process",
        FATAL,
        "c++: fatal error: Killed signal terminated program cc1plus",
        "a compile job ran out of memory and the kernel killed it",
        "lower MAX_JOBS in the recipe (each ROCm compile job can take 8 GB or more)",
        "field notes; kyuz0/amd-strix-halo-vllm-toolboxes",
    ),
    k(
        "ninja-stopped",
        r"ninja: build stopped: subcommand failed",
        FATAL,
        "ninja: build stopped: subcommand failed.",
        "a compile or link step failed; the first `FAILED:` line above names it",
        "read the first `FAILED:` line and the error under it; `forge diagnose` on the log names known causes",
        "field notes",
    ),
    k(
        "libtorch-hip-link",
        r"FAILED: lib/libtorch_hip\.so",
        FATAL,
        "FAILED: lib/libtorch_hip.so",
        "linking libtorch_hip.so failed (missing ROCm library, relocation overflow or OOM)",
        "look at the lines after it: undefined references name the missing library; relocation errors need fewer archs in PYTORCH_ROCM_ARCH",
        "field notes",
    ),
    k(
        "compile-step-failed",
        r"^FAILED: \S",
        FATAL,
        "FAILED: caffe2/CMakeFiles/torch_hip.dir/...",
        "a compile or link step failed; the build stops once the running jobs finish",
        "read the compiler error under the `FAILED:` line; `forge diagnose` on the log names known causes",
        "ninja",
    ),
    k(
        "relocation-overflow",
        r"relocation R_X86_64_(?:PC32|32S?|PLT32) out of range|relocation truncated to fit",
        FATAL,
        "relocation R_X86_64_PC32 out of range",
        "AOTriton kernels for many archs push libtorch_hip over 2 GB",
        "build for only the archs you need (PYTORCH_ROCM_ARCH=gfx1151, the recipe's `archs`): AOTriton's targets come from it (cmake/External/aotriton.cmake reads no AOTRITON_GPU_TARGETS)",
        "field notes",
    ),
    k(
        "cmake-compat",
        r"Compatibility with CMake < 3\.5 has been removed",
        FATAL,
        "Compatibility with CMake < 3.5 has been removed from CMake",
        "CMake 4 reading ROCm 6.2's old config files",
        "pin cmake<4 in the build stage, or use ROCm 7.x",
        "field notes",
    ),
    k(
        "base-image-unreachable",
        r#"failed to do request: Head "https?://|pull access denied|failed to resolve source metadata|manifest for \S+ not found|lookup \S+ on \S+: no such host"#,
        None,
        "failed to resolve source metadata for docker.io/rocm/dev-ubuntu-24.04:7.1.1-complete",
        "the engine cannot fetch the base image: no registry access, a wrong name, or a tag that does not exist",
        "check `base-image` in the recipe; give the engine registry access, or `docker load` the image beforehand; to try the Dockerfile without it, `scripts/rehearsal-base.sh && forge build --rehearse`",
        "Docker Engine",
    ),
    k(
        "rocm-version-mismatch",
        r"forge: base image has ROCm \S+, recipe wants",
        FATAL,
        "forge: base image has ROCm 7.0.2, recipe wants 7.1.1",
        "the base image's ROCm is not the recipe's: mixed ROCm libraries crash with `double free or corruption`",
        "make `base-image` and `rocm` in the recipe name the same ROCm version",
        "forge's Dockerfile; ROCm/TheRock#1059",
    ),
    k(
        "disk-full",
        r"No space left on device",
        FATAL,
        "No space left on device",
        "the engine's disk filled up during the build",
        "free space under the engine's data root (docker builder prune) or move it to a bigger disk",
        "field notes",
    ),
];

/// One place a known failure was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The knowledge entry.
    #[serde(flatten)]
    pub known: Known,
    /// 1-based line of the first occurrence.
    pub line: usize,
    /// The line's text (trimmed, at most 300 characters).
    pub text: String,
    /// How many lines matched.
    pub count: usize,
}

struct Compiled {
    set: RegexSet,
    bytes: regex::bytes::RegexSet,
    each: Vec<Regex>,
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| Compiled {
        set: RegexSet::new(KNOWN.iter().map(|k| k.pattern)).expect("known patterns are valid"),
        bytes: regex::bytes::RegexSet::new(KNOWN.iter().map(|k| k.pattern))
            .expect("known patterns are valid"),
        each: KNOWN
            .iter()
            .map(|k| Regex::new(k.pattern).expect("valid"))
            .collect(),
    })
}

/// Indices into [`KNOWN`] of the entries that match `line`.
pub fn matches(line: &str) -> impl Iterator<Item = usize> {
    compiled().set.matches(line).into_iter()
}

/// Indices into [`KNOWN`] of the entries that match a line of bytes.
pub fn matches_bytes(line: &[u8]) -> impl Iterator<Item = usize> {
    compiled().bytes.matches(line).into_iter()
}

/// The compiled regex of entry `i`.
pub fn regex(i: usize) -> &'static Regex {
    &compiled().each[i]
}

/// The entry with this id.
pub fn by_id(id: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.id == id)
}

pub use crate::monitor::line::clip;

/// Every known failure in `text`, in order of first appearance. Lines that quote the Dockerfile
/// (BuildKit's `#9 [stage 3/3] RUN ...`, `Step 2/9 : RUN ...`, the command quoted in a step's
/// error line) are not output, and never match: the same rule as `forge scan`.
pub fn diagnose(text: &str) -> Vec<Diagnosis> {
    use crate::monitor::line::{LineKind, strip_prefix, unquote_command};
    let mut found: Vec<Diagnosis> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let (content, kind) = strip_prefix(raw.as_bytes());
        if kind != LineKind::Output {
            continue;
        }
        let content = unquote_command(content);
        let line = String::from_utf8_lossy(&content);
        for i in matches(&line) {
            let known = KNOWN[i];
            match found.iter_mut().find(|d| d.known.id == known.id) {
                Some(d) => d.count += 1,
                None => found.push(Diagnosis {
                    known,
                    line: n + 1,
                    text: clip(raw, 300),
                    count: 1,
                }),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<&'static str> {
        diagnose(text).iter().map(|d| d.known.id).collect()
    }

    #[test]
    fn every_pattern_matches_its_own_symptom() {
        for k in KNOWN {
            assert!(
                Regex::new(k.pattern).unwrap().is_match(k.symptom),
                "{}: symptom `{}` not matched by its own pattern",
                k.id,
                k.symptom
            );
        }
    }

    #[test]
    fn spec_table_from_whole_tracebacks() {
        let tb = "Traceback (most recent call last):\n  File \"<string>\", line 3, in <module>\n\
ImportError: cannot import name 'PrefixStore' from 'torch.distributed' (/opt/venv/lib/python3.12/site-packages/torch/distributed/__init__.py)\n";
        assert_eq!(ids(tb), ["distributed-missing"]);
        assert_eq!(
            ids(
                "OSError: /opt/venv/lib/python3.12/site-packages/torch/lib/libtorch_hip.so: undefined symbol: rsmi_init"
            ),
            ["rsmi-undefined-symbol"]
        );
        assert_eq!(
            ids("ModuleNotFoundError: No module named 'uvloop'"),
            ["uvloop-missing"]
        );
        assert_eq!(
            ids("ModuleNotFoundError: No module named 'amdsmi'"),
            ["amdsmi-missing"]
        );
        assert_eq!(
            ids("double free or corruption (!prev)\nAborted (core dumped)"),
            ["double-free"]
        );
        assert_eq!(ids("FAIL: Wheel too small"), ["cpu-only-wheel"]);
        assert_eq!(
            ids("RuntimeError: Platform.ROCM not detected"),
            ["platform-not-detected"]
        );
    }

    #[test]
    fn counts_repeats_and_keeps_first_line() {
        let d = diagnose("x\nNo space left on device\ny\nNo space left on device\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].count, 2);
    }

    /// Issue 12, item 3: BuildKit quotes the Dockerfile's `RUN` in the step header and in the
    /// step's error line; only the step's real output is a finding.
    #[test]
    fn quoted_dockerfile_lines_never_match_issue_12() {
        let log = "#9 [torch-build 3/3] RUN echo \"ModuleNotFoundError: No module named 'uvloop'\" > /dev/null && python3 -c 'import uvloop'\n\
#9 0.412 Traceback (most recent call last):\n\
#9 0.413 ModuleNotFoundError: No module named 'uvloop'\n\
#9 ERROR: process \"/bin/sh -c echo \\\"ModuleNotFoundError: No module named 'uvloop'\\\" > /dev/null && python3 -c 'import uvloop'\" did not complete successfully: exit code: 1\n\
Step 4/9 : RUN echo \"No module named 'amdsmi'\"\n\
The command '/bin/sh -c echo \"No module named amdsmi\"' returned a non-zero code: 1\n\
\x20> [torch-build 3/3] RUN echo \"No space left on device\":\n\
\x20 10 | >>> RUN echo \"No space left on device\"\n";
        let d = diagnose(log);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].known.id, "uvloop-missing");
        assert_eq!(d[0].line, 3, "the output line, not the quoted RUN");
        assert_eq!(d[0].count, 1);
        // Lines 9, 25 and 26 of `forge build --recipe tests/fixtures/docker/fail.toml`'s log on
        // Docker 20.10 (BuildKit's step header, the output, the step's error quoting the RUN).
        let real = "#7 [torch-build 2/2] RUN echo \"pytorch https://github.com/ROCm/pytorch.git release/2.9\" && sh /src/fake-configure.sh && echo \"Traceback (most recent call last):\" && echo \"ModuleNotFoundError: No module named 'uvloop'\" && exit 3\n\
#7 1.4 ModuleNotFoundError: No module named 'uvloop'\n\
#7 ERROR: executor failed running [/bin/sh -c echo \"pytorch ${PYTORCH_REPO} ${PYTORCH_REF}\" && sh /src/fake-configure.sh && echo \"Traceback (most recent call last):\" && echo \"ModuleNotFoundError: No module named 'uvloop'\" && exit 3]: exit code: 3\n";
        let d = diagnose(real);
        assert_eq!((d.len(), d[0].line, d[0].count), (1, 2, 1), "{d:?}");
    }

    /// Issue 12, item 4: glibc's current wording of the mixed-ROCm crash.
    #[test]
    fn glibc_heap_corruption_wordings_are_double_free_issue_12() {
        for line in [
            "free(): double free detected in tcache 2",
            "free(): invalid pointer",
            "free(): invalid size",
            "corrupted size vs. prev_size",
            "malloc(): unaligned tcache chunk detected",
            "malloc(): corrupted top size",
            "munmap_chunk(): invalid pointer",
            "double free or corruption (out)",
        ] {
            assert_eq!(
                ids(&format!(
                    "INFO 12-06 vllm serve\n{line}\nAborted (core dumped)\n"
                )),
                ["double-free"],
                "{line}"
            );
        }
    }

    #[test]
    fn unknown_text_names_nothing() {
        assert!(diagnose("all good\nBuilding wheel torch-2.9.1\n").is_empty());
    }
}
