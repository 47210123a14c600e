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
    /// The literal core the monitor's prefilter searches for (regex syntax, literals only);
    /// `None`: the pattern itself (without a leading `^`).
    #[serde(skip)]
    pub core: Option<&'static str>,
    /// Only inside a `CMake Error` block: the lines under `CMake Error at ...` refine it, the
    /// same lines under `CMake Warning` are harmless.
    #[serde(skip)]
    pub after_cmake_error: bool,
    /// The finding quotes the line (a compiler error with its file and line, a CMake error
    /// with its file).
    #[serde(skip)]
    pub quote: bool,
    /// Output of a failed build step (a compiler or linker error): it names the error of the
    /// `FAILED:` step above it.
    #[serde(skip)]
    pub in_step: bool,
    /// An echo of a failure reported above it (`ninja: build stopped`, BuildKit's `failed to
    /// solve`, pip's `subprocess-exited-with-error`): `diagnose` names it only when it knows
    /// nothing better.
    #[serde(skip)]
    pub echo: bool,
}

impl Known {
    const fn core(mut self, core: &'static str) -> Known {
        self.core = Some(core);
        self
    }
    const fn after_cmake_error(mut self) -> Known {
        self.after_cmake_error = true;
        self
    }
    const fn quote(mut self) -> Known {
        self.quote = true;
        self
    }
    const fn in_step(mut self) -> Known {
        self.in_step = true;
        self
    }
    const fn echo(mut self) -> Known {
        self.echo = true;
        self
    }
    /// The prefilter core.
    pub fn prefilter(&self) -> &'static str {
        self.core
            .unwrap_or_else(|| self.pattern.trim_start_matches('^'))
    }
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
        core: None,
        after_cmake_error: false,
        quote: false,
        in_step: false,
        echo: false,
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
    )
    .core(r"undefined reference")
    .in_step(),
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
        r"Killed signal terminated program|unable to execute command: Killed|exit code: 137\s*$|returned a non-zero code: 137\s*$|non-zero exit status 137\b|Out of memory: Killed process|catastrophic error: out of memory|virtual memory exhausted|LLVM ERROR: out of memory|internal compiler error: Killed|^\s*Killed\s*$",
        FATAL,
        "c++: fatal error: Killed signal terminated program cc1plus",
        "a compile job ran out of memory and the kernel killed it",
        "lower MAX_JOBS in the recipe (each ROCm compile job can take 8 GB or more)",
        "field notes; kyuz0/amd-strix-halo-vllm-toolboxes",
    )
    .core(r"Killed|exit code: 137|non-zero code: 137|exit status 137|Out of memory|out of memory|memory exhausted")
    .in_step(),
    k(
        "relocation-overflow",
        r"relocation R_X86_64_(?:PC32|32S?|PLT32) out of range|relocation truncated to fit",
        FATAL,
        "relocation R_X86_64_PC32 out of range",
        "AOTriton kernels for many archs push libtorch_hip over 2 GB",
        "build for only the archs you need (PYTORCH_ROCM_ARCH=gfx1151, the recipe's `archs`): AOTriton's targets come from it (cmake/External/aotriton.cmake reads no AOTRITON_GPU_TARGETS)",
        "field notes",
    )
    .in_step(),
    k(
        "cmake-compat",
        r"Compatibility with CMake < 3\.5 has been removed",
        FATAL,
        "Compatibility with CMake < 3.5 has been removed from CMake",
        "CMake 4 reading ROCm 6.2's old config files",
        "pin cmake<4 in the build stage, or use ROCm 7.x",
        "field notes",
    )
    .quote(),
    k(
        "base-image-unreachable",
        r#"failed to do request: Head "https?://|pull access denied|failed to resolve source metadata|manifest for \S+ not found|lookup \S+ on \S+: no such host"#,
        FATAL,
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
        "taken-no-hip-compiler",
        r"forge: no HIP compiler at |forge: no rocm-sdk tool",
        FATAL,
        "forge: no HIP compiler at /opt/rocm/bin/hipcc after rocm-sdk init (/opt/rocm -> /opt/venv/lib/python3.12/site-packages/_rocm_sdk_devel): take rocm-sdk-devel at rocm-sdk-core's version",
        "a prebuilt recipe's taken wheels bring no HIP compiler: vLLM's kernels cannot compile (the base has no ROCm, by design)",
        "add `[taken.rocm-sdk-devel]` and `[taken.rocm]` (the selector with the `rocm-sdk` tool) from the torch wheel's index, at rocm-sdk-core's version, each with its sha256",
        "forge's prebuilt Dockerfile; ROCm/TheRock docs/packaging/python_packaging.md",
    ),
    k(
        "disk-full",
        r"No space left on device",
        FATAL,
        "No space left on device",
        "the engine's disk filled up during the build",
        "free space under the engine's data root (docker builder prune) or move it to a bigger disk",
        "field notes",
    ),    k(
        "rocm-disabled",
        r"disabling ROCM because|Building without ROCm support|ROCM_PATH environment variable is not set and /opt/rocm does not exist|-- Target device: cpu\s*$",
        FATAL,
        "disabling ROCM because NOT USE_ROCM is set",
        "the build turned ROCm off (ROCm not found, or USE_ROCM=0): it goes on as a CPU-only build, the wheel has no HIP code",
        "build on a ROCm `-complete` base image with /opt/rocm present, export ROCM_PATH=/opt/rocm and USE_ROCM=1 in the RUN environment; for PyTorch run `python3 tools/amd_build/build_amd.py` before setup.py",
        "pytorch CMakeLists.txt; NixOS/nixpkgs#469677; pytorch/pytorch#115725",
    )
    .core(r"disabling ROCM because|Building without ROCm|ROCM_PATH environment variable is not set|Target device: cpu"),
    k(
        "torch-without-gpu",
        r"Can't find CUDA or HIP installation|CUDA_HOME environment variable is not set|No module named ['\x22]?torch['\x22]?\s*$",
        FATAL,
        "CMake Error at CMakeLists.txt:NN (message): Can't find CUDA or HIP installation.",
        "the Python that builds the extension (vLLM, flash-attention, aiter) has no ROCm torch: torch is missing, or pip's build isolation or a requirements file put a CPU or CUDA torch in its place",
        "install the ROCm torch first and build with `pip install --no-build-isolation`, with torch constrained so pip cannot swap it (vLLM: `python3 use_existing_torch.py`)",
        "vLLM CMakeLists.txt; torch.utils.cpp_extension",
    )
    .core(r"Can't find CUDA or HIP installation|CUDA_HOME environment variable is not set|No module named")
    .quote(),
    k(
        "unsupported-gpu-arch",
        r"(?i:unsupported (?:HIP|CUDA) gpu architecture|invalid offload arch)|invalid target ID '|Unknown GPU architecture|error: directive requires gfx|unknown target CPU 'gfx",
        FATAL,
        "clang++: error: unsupported HIP gpu architecture: gfx1151",
        "the compiler does not know a GPU arch in the target list: its LLVM is older than the arch (gfx1151 needs ROCm 6.4 or newer), or a target is malformed, or HIP code is compiled as CUDA",
        "use a ROCm whose clang knows every arch (ROCm 7.x for gfx1150/gfx1151), or drop the arch from PYTORCH_ROCM_ARCH (the recipe's `archs`); pass HIP targets as --offload-arch with `-x hip`",
        "leejet/stable-diffusion.cpp#464; ROCm/rocThrust#150; ROCm/MIVisionX#1165; ROCm/TheRock#154",
    )
    .core(r"error: |GPU architecture")
    .quote()
    .in_step(),
    k(
        "rocm-device-lib-missing",
        r"cannot find ROCm device library",
        FATAL,
        "clang: error: cannot find ROCm device library; provide its path via '--rocm-path'",
        "clang cannot find the ROCm device libraries (amdgcn bitcode): ROCm is incomplete or not at the path clang looks in",
        "install the ROCm device libraries (the `-complete` base image has them) and set ROCM_PATH / HIP_DEVICE_LIB_PATH to them",
        "ROCm/TheRock PR #988",
    )
    .core(r"error: ")
    .quote()
    .in_step(),
    k(
        "cuda-header-in-rocm-build",
        r"'cuda(?:_runtime|_runtime_api|_fp16|_bf16)?\.h' file not found|cuda(?:_runtime)?\.h: No such file or directory",
        FATAL,
        "fatal error: 'cuda.h' file not found",
        "CUDA sources compiled in a ROCm build: the sources were not hipified, or USE_ROCM was not defined",
        "run `python3 tools/amd_build/build_amd.py` before setup.py, and make sure USE_ROCM=1 reaches the build",
        "pytorch/pytorch#42430; rocm-arch/python-pytorch-rocm#5",
    )
    .core(r"error: ")
    .quote()
    .in_step(),
    k(
        "hip-offload-arch-flags",
        r"no such file or directory: '\[WARNING\] offload-arch failed",
        FATAL,
        "clang++: error: no such file or directory: '[WARNING] offload-arch failed with return code 1[stderr] -D__HIP_PLATFORM_AMD__=1'",
        "offload-arch found no GPU inside `docker build` and its warning text leaked into the compiler flags",
        "set the target archs explicitly (PYTORCH_ROCM_ARCH, CMAKE_ARGS=-DAMDGPU_TARGETS=gfx1151 -DGPU_TARGETS=gfx1151) so nothing probes the GPU at build time",
        "vllm-project/vllm#35642",
    )
    .core(r"error: ")
    .quote()
    .in_step(),
    k(
        "cmake-missing-package",
        r#"(?:^\s*|\((?i:find_package|find_dependency|include)\):\s*)(?:Could not find a package configuration file provided by "[^"]+"|Could not find a configuration file for package "[^"]+"|Could NOT find \S+|include could not find requested file:)"#,
        FATAL,
        "Could not find a package configuration file provided by \"hip\" with any of the following names",
        "a required CMake package was not found (under `CMake Error`): its development files are missing, or its prefix is not on CMAKE_PREFIX_PATH",
        "install the package's development files (ROCm's on the `-complete` base image) and add its prefix to CMAKE_PREFIX_PATH (`/opt/rocm;/opt/rocm/lib/cmake`) or set <Pkg>_DIR",
        "pytorch/pytorch#41886; rocm-arch/python-pytorch-rocm#3; AMDResearch/intelliperf#165",
    )
    .core(r"Could not find a |Could NOT find|could not find requested")
    .after_cmake_error()
    .quote(),
    k(
        "buildkit-context-missing",
        r"failed to compute cache key|failed to calculate checksum of ref",
        FATAL,
        "ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref ...: \"/x\": not found",
        "a COPY/ADD source is not in the build context (wrong context directory, a path that does not exist, or excluded by .dockerignore)",
        "build from the directory the Dockerfile expects as its context (`docker build -f docker/Dockerfile.rocm .` from the repo root) and check .dockerignore",
        "vllm-project/vllm#31035; moby/buildkit#1939",
    )
    .quote(),
    k(
        "git-ref-missing",
        r"fatal: reference is not a tree|fatal: couldn't find remote ref|error: pathspec '[^']*' did not match any file|fatal: not a tree object|fatal: bad object|not our ref|fatal: invalid reference",
        FATAL,
        "fatal: reference is not a tree: 0ed6b9f1fe6084e25fb78689e5c7ec9b6dbb190c",
        "the pinned commit, branch or tag is not in the fetched history (a typo, a force-pushed or unpublished commit, or a shallow clone of another branch)",
        "check the ref exists upstream (`git ls-remote <repo> <ref>`); fetch the exact commit (`git fetch --depth 1 origin <sha>`) instead of a shallow clone of a branch",
        "git; markjaquith/WordPress-Skeleton#40",
    )
    .core(r"fatal: |error: ")
    .quote(),
    k(
        "fetch-failed",
        r"fatal: unable to access '|fatal: repository '[^']*' not found|fatal: Could not read from remote repository|fatal: unable to connect|fatal: early EOF|curl: \(\d+\) |Could not resolve host: |error: RPC failed;|fatal: the remote end hung up unexpectedly",
        FATAL,
        "fatal: unable to access 'https://github.com/ROCm/triton.git/': Could not resolve host: github.com",
        "a git or HTTP fetch failed: no network from the build, a proxy, a wrong URL or a private repository",
        "give the build network access (or vendor the sources into the context); check the repository URL in the recipe",
        "git; curl",
    )
    .core(r"fatal: |curl: \(|Could not resolve host|error: ")
    .quote(),
    k(
        "apt-failed",
        r"^\s*E: (?:Unable to locate package|Package '[^']+' has no installation candidate|Failed to fetch|Version '[^']+' for '[^']+' was not found|Unable to correct problems|Sub-process /usr/bin/dpkg returned an error)",
        FATAL,
        "E: Unable to locate package rocm-smi-lib",
        "apt could not install a package: a name or version that is not in the configured repositories (the ROCm apt repository missing, or for another release), or a failed download",
        "check the name and version for this Ubuntu and ROCm release (`apt-cache policy <pkg>`); use the ROCm `-complete` base image or add repo.radeon.com's repository for its ROCm version",
        "apt",
    )
    .core(r"E: Unable to|E: Package '|E: Failed to fetch|E: Version '|E: Sub-process")
    .quote(),
    k(
        "pip-resolution",
        r"ResolutionImpossible|No matching distribution found for|Could not find a version that satisfies the requirement|have conflicting dependencies",
        FATAL,
        "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/",
        "pip could not find or reconcile the pinned packages: a version that is not on the index for this Python and platform, a wrong index URL, or pins that conflict",
        "check the index URL matches the ROCm version (download.pytorch.org/whl/rocmX.Y), the Python version the wheels are built for, and align the pins (`pip install --dry-run` shows the conflict); constrain torch so pip cannot swap it",
        "pypa/pip#13834; vllm-project/vllm#42358; vllm-project/vllm#6622",
    )
    .core(r"ResolutionImpossible|No matching distribution|Could not find a |conflicting dependencies")
    .quote(),
    k(
        "link-error",
        r"undefined reference to [`'‘]|(?:^|/|\s)(?:ld|ld\.lld|ld\.gold|ld\.bfd|lld-link|lld|collect2)(?:\.exe)?: (?:fatal )?error\b|\bld returned \d+ exit status|(?:^|/|\s)ld(?:\.lld|\.gold|\.bfd)?: cannot find -l",
        FATAL,
        "ld.lld: error: undefined symbol: at::native::transform_bias_rescale_qkv_cuda(...)",
        "the link failed: a symbol no linked library defines (a missing or mismatched ROCm library, or objects built from other sources)",
        "the symbol names the library: install it (the same ROCm version as the rest) or rebuild the objects that need it from clean",
        "ROCm/TheRock#1256; ROCm/TheRock#2064; ROCm/pytorch#415",
    )
    .core(r"undefined reference|error: |ld returned|cannot find -l")
    .quote()
    .in_step(),
    k(
        "compile-error",
        r"^\s*(?:\[[\w.+-]+\] )?\S+?:\d+:(?:\d+:)? (?:fatal )?error: |^\s*\S+\(\d+\): (?:catastrophic )?error",
        FATAL,
        "/src/aten/src/ATen/native/hip/TensorTopK.hip:285:7: error: use of undeclared identifier 'warp_bases'",
        "a source file failed to compile (the finding quotes the compiler's first error with its file and line)",
        "fix the source or the toolchain it needs: an undeclared HIP name usually means sources and ROCm versions that do not match (pin the ref the ROCm release was tested with)",
        "compiler (gcc/clang) diagnostics; ROCm/TheRock#4311",
    )
    .core(r"error: ")
    .quote()
    .in_step(),
    k(
        "compiler-error",
        r"^\s*(?:\S*/)?(?:clang|clang\+\+|c\+\+|g\+\+|gcc|cc|hipcc|amdclang|amdclang\+\+|nvcc|x86_64-linux-gnu-g\+\+|x86_64-linux-gnu-gcc)(?:-\d+(?:\.\d+)*)?(?:\.exe)?: (?:fatal )?error: ",
        FATAL,
        "clang++: error: no such file or directory: 'x'",
        "the compiler driver stopped on its command line (a flag, file or target it rejects)",
        "read the flag or file it names: a flag from the environment (CFLAGS, CMAKE_ARGS) or a toolchain that is not the one the build expects",
        "compiler (gcc/clang) diagnostics",
    )
    .core(r"error: ")
    .quote()
    .in_step(),
    k(
        "hip-compile-failed",
        r"^\s*CMake Error at \S*\.(?:hip|cu|cpp)\.o(?:bj)?(?:\.\w+)?\.cmake:\d+",
        FATAL,
        "CMake Error at torch_hip_generated_gelu_op.hip.o.cmake:200 (message): Error generating file",
        "a HIP (or CUDA) source failed to compile (FindHIP's per-file step; the compiler's error is just above)",
        "read the `error:` above this line; `forge scan` quotes the first one with its file and line",
        "rocm-arch/python-pytorch-rocm#34; ROCm/TheRock#1926",
    )
    .core(r"CMake ")
    .quote()
    .in_step(),
    k(
        "cmake-error",
        r"^\s*CMake (?:Deprecation )?Error\b|^\s*-- Configuring incomplete, errors occurred|^\s*\*\*\* CMake configuration failed",
        FATAL,
        "CMake Error at cmake/public/LoadHIP.cmake:33 (find_package):",
        "CMake configuration failed: the build stops at the end of configure (the lines under `CMake Error` say why)",
        "read the message under `CMake Error at <file>:<line>`: usually a missing package (install it, add its prefix to CMAKE_PREFIX_PATH) or a wrong option",
        "CMake",
    )
    .core(r"CMake |Configuring incomplete")
    .quote(),
    k(
        "pip-build-failed",
        r"subprocess-exited-with-error|Failed to build installable wheels|ERROR: Failed building wheel for|Could not build wheels for|error: metadata-generation-failed|Error compiling objects for extension|^\s*error: command '[^']+' failed with exit (?:code|status) \d+",
        FATAL,
        "error: subprocess-exited-with-error",
        "a Python package's build (setup.py, CMake or a compiler under it) failed; its own error is above",
        "read the first error above this line; `forge scan` names it when it knows it",
        "pip; setuptools",
    )
    .core(r"ERROR: |exited-with-error|metadata-generation-failed|Error compiling objects|error: ")
    .quote()
    .echo(),
    k(
        "step-failed",
        r"failed to solve: |executor failed running|did not complete successfully: exit code: \d+|returned a non-zero code: \d+|returned non-zero exit status [1-9]\d*|^\s*g?make(?:\[\d+\])?: \*\*\* .*(?:Error \d+|Waiting for unfinished jobs\.*|No rule to make target.*)\s*$",
        FATAL,
        "ERROR: failed to solve: process \"/bin/sh -c ...\" did not complete successfully: exit code: 1",
        "a build step failed (BuildKit's, make's or a script's summary of it); the step's own error is above",
        "read the step's last error lines above this one; `forge scan` names known causes",
        "BuildKit; make; Python subprocess",
    )
    .core(r"failed to solve: |executor failed running|did not complete successfully|returned a non-zero code|returned non-zero exit status|make: \*\*\* |\]: \*\*\* ")
    .quote()
    .echo(),
    k(
        "libtorch-hip-link",
        r"FAILED: lib/libtorch_hip\.so",
        FATAL,
        "FAILED: lib/libtorch_hip.so",
        "linking libtorch_hip.so failed (missing ROCm library, relocation overflow or OOM)",
        "look at the lines after it: undefined references name the missing library; relocation errors need fewer archs in PYTORCH_ROCM_ARCH",
        "field notes",
    )
    .core(r"FAILED: ")
    .quote(),
    k(
        "compile-step-failed",
        r"^FAILED: \S",
        FATAL,
        "FAILED: caffe2/CMakeFiles/torch_hip.dir/...",
        "a compile or link step failed; the build stops once the running jobs finish",
        "read the compiler error under the `FAILED:` line; `forge diagnose` on the log names known causes",
        "ninja",
    )
    .core(r"FAILED: ")
    .quote(),
    k(
        "ninja-stopped",
        r"ninja: build stopped: subcommand failed",
        FATAL,
        "ninja: build stopped: subcommand failed.",
        "a compile or link step failed; the first `FAILED:` line above names it",
        "read the first `FAILED:` line and the error under it; `forge diagnose` on the log names known causes",
        "field notes",
    )
    .echo(),
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

/// How far under a `CMake Error at ...` line its message may run (CMake prints the message
/// indented under it, then a call stack).
const CMAKE_BLOCK_LINES: u64 = 40;

/// Whether the lines being read are under a `CMake Error` (their `Could not find ...` refines
/// it) or under a `CMake Warning` (the same words, harmless).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CmakeBlock {
    error_at: Option<u64>,
}

impl CmakeBlock {
    /// Note line `no` (its content without the builder's prefix).
    pub fn observe(&mut self, content: &[u8], no: u64) {
        let t = content.trim_ascii_start();
        if t.starts_with(b"CMake Error") || t.starts_with(b"CMake Deprecation Error") {
            self.error_at = Some(no);
        } else if t.starts_with(b"CMake Warning") || t.starts_with(b"CMake Deprecation Warning") {
            self.error_at = None;
        }
    }

    /// Whether entry `k` may match at line `no`.
    pub fn allows(&self, k: &Known, no: u64) -> bool {
        !k.after_cmake_error
            || self
                .error_at
                .is_some_and(|at| no >= at && no - at <= CMAKE_BLOCK_LINES)
    }
}

/// Rank of a finding id: the more specific the cause, the lower. The summary checks and the
/// recipe's own rules come first, then [`KNOWN`] in table order (specific causes before the
/// generic classes: `CMake Error`, `error:`, `FAILED:`).
pub fn rank(id: &str) -> usize {
    KNOWN.iter().position(|k| k.id == id).map_or(0, |i| i + 1)
}

/// Every known failure in `text`, in order of first appearance. Lines that quote the Dockerfile
/// (BuildKit's `#9 [stage 3/3] RUN ...`, `Step 2/9 : RUN ...`, the command quoted in a step's
/// error line) are not output, and never match: the same rule as `forge scan`.
pub fn diagnose(text: &str) -> Vec<Diagnosis> {
    use crate::monitor::line::{LineKind, strip_prefix, unquote_command};
    let mut found: Vec<Diagnosis> = Vec::new();
    let mut cmake = CmakeBlock::default();
    for (n, raw) in text.lines().enumerate() {
        let (content, kind) = strip_prefix(raw.as_bytes());
        if kind != LineKind::Output {
            continue;
        }
        cmake.observe(content, n as u64 + 1);
        let content = unquote_command(content);
        let line = String::from_utf8_lossy(&content);
        for i in matches(&line) {
            let known = KNOWN[i];
            if !cmake.allows(&known, n as u64 + 1) {
                continue;
            }
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
    if found.iter().any(|d| !d.known.echo) {
        found.retain(|d| !d.known.echo);
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
        // The step's failure (issue 26) is an echo of the uvloop error: not named beside it.
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
