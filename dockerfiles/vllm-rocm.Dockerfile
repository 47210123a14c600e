# forge's image: PyTorch built from source for the recipe's GPU archs with USE_DISTRIBUTED=1, and
# every component vLLM's own ROCm images build (triton, torchvision, torchaudio, amdsmi) built
# against that torch, vLLM built against it, one ROCm release throughout, and a runtime stage
# installed offline from the wheels the build stages made. Every ARG below is passed by
# `forge build` from the recipe (`forge plan` lists them); the defaults are what vLLM v0.12.0's
# docker/Dockerfile.rocm_base builds.
#
# Followed, and cited below as [base] and [rocm]:
#   [base] vllm-project/vllm v0.12.0, docker/Dockerfile.rocm_base (PyTorch, triton, vision,
#          audio, amdsmi, flash-attention, aiter wheels)
#   [rocm] vllm-project/vllm v0.12.0, docker/Dockerfile.rocm (vLLM wheel, final image)
# Where forge differs from them it says why, next to the difference. docs/reference.md, "The Dockerfile",
# lists what forge's rehearsal proves here and what only a real build proves.
#
# Stages:
#   base --> build-amdsmi ----------------------------\
#        --> build-torch --> build-triton (compile) --> wheels (FROM scratch: all wheels, build.log,
#                        --> build-vision -----------/          sources; `forge build` takes them out)
#                        --> build-audio ------------/
#        --> jobs-vllm (vLLM's MAX_JOBS, decided) --/
#        --> vllm-build (vLLM wheel + every dependency as a wheel: the offline wheelhouse)
#   BASE_IMAGE --> runtime (installed from the wheelhouse with no index and no git; the image)
#
# Not built, on purpose: flash-attention and aiter. [base] builds them for gfx9 only
# (flash-attention strips every gfx1xxx from PYTORCH_ROCM_ARCH; aiter builds for gfx942;gfx950),
# and vLLM's ROCm platform picks them only on gfx9. On gfx11/gfx1151 vLLM's default attention is the
# Triton backend (TRITON_ATTN), which the triton built here serves. A recipe for gfx9 would add them.
#
# Needs BuildKit (cache and bind mounts); the engine's built-in Dockerfile frontend is enough (no
# `# syntax=` line: there may be no registry to pull a frontend from).

ARG BASE_IMAGE=rocm/dev-ubuntu-24.04:7.1.1-complete

############################################################################################
FROM ${BASE_IMAGE} AS base
ARG ROCM_VERSION
ARG PYTORCH_ROCM_ARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# [base] sets PATH, ROCM_PATH, LD_LIBRARY_PATH, PYTORCH_ROCM_ARCH and HSA_NO_SCRATCH_RECLAIM
# ("Required for RCCL in ROCm7.1") in its base stage. forge uses a venv instead of [base]'s
# deadsnakes Python 3.12 on Ubuntu 22.04: Ubuntu 24.04's python3 is 3.12 already, and a venv keeps
# pip from touching the distribution's Python.
ENV DEBIAN_FRONTEND=noninteractive \
    ROCM_PATH=/opt/rocm \
    HIP_PATH=/opt/rocm \
    PATH=/opt/venv/bin:/opt/rocm/llvm/bin:/opt/rocm/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/rocm/lib:/usr/local/lib \
    PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    HSA_NO_SCRATCH_RECLAIM=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# One ROCm version throughout: refuse a base image whose ROCm is not the recipe's (mixed ROCm
# libraries crash with `double free or corruption`).
RUN test -n "${ROCM_VERSION}" \
 && found="$(cat /opt/rocm/.info/version 2>/dev/null || echo none)" \
 && case "${found}" in "${ROCM_VERSION}"|"${ROCM_VERSION}"-*) ;; \
      *) echo "forge: base image has ROCm ${found}, recipe wants ${ROCM_VERSION}" >&2; exit 1 ;; esac
# [base] installs git, libjpeg-dev (torchvision's image codecs), libsox-dev and sox (torchaudio).
# pkg-config and liblzma-dev: AOTriton's source build needs them (`pkg_search_module(LZMA REQUIRED
# liblzma)`, ROCm/TheRock#1568; pytorch/pytorch#193181 adds liblzma-dev to PyTorch's ROCm CI images;
# vLLM's current Dockerfile.rocm_base installs both). torch 2.9's cmake/External/aotriton.cmake
# (AOTriton 0.11b) downloads a prebuilt AOTriton runtime only for the ROCm releases it lists, up to
# rocm7.0; for any other it prints `Cannot find AOTriton runtime for ROCM 7.1. Build runtime from
# source` and builds it (`aotriton_build_from_source(ON aotriton_runtime)`); ROCm/pytorch#2934 added
# 7.1/7.2 runtimes to release/2.9 only in 2026-01, after the pinned 1c57644d.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      git ca-certificates cmake ninja-build ccache patchelf pkg-config liblzma-dev \
      python3 python3-dev python3-venv python3-pip \
      libjpeg-dev libsox-dev sox \
      rocm-smi-lib amd-smi-lib \
 && python3 -m venv /opt/venv \
 && pip install --upgrade pip \
 && pip install packaging 'cmake>=3.26.1,<4' ninja wheel 'setuptools>=77.0.3,<80' pybind11 Cython
# ^ [base]: `pip install -U packaging 'cmake<4' ninja wheel 'setuptools<80' pybind11 Cython`; the
#   lower bounds are vLLM's requirements/rocm.txt (`setuptools>=77.0.3,<80.0.0`).
#
# Three helpers every stage uses (no heredocs: the engine's built-in frontend may predate them).
# forge-fetch NAME REPO REF DIR: REF may be a branch, a tag, or a full or abbreviated commit
#   ([base] pins abbreviated commits such as `1c57644d`, which a server will not hand out by
#   name: fetched with the whole history, which `forge plan` says; forge's recipes pin the full
#   40-hex commits, fetched with --depth 1). A tag is fetched as a tag, so setuptools-scm finds it
#   (vLLM's version comes from it); the commit a ref resolved to is recorded in
#   /dist/source-NAME.txt for /app/versions.txt.
# forge-pins write FILE PKG... / check FILE: record the versions pip installed and fail when a
#   later pip step changed one. It reads `pip list --format=freeze`: for a wheel installed from a
#   local file `pip freeze` prints `torch @ file:///...`, never `torch==...`.
# forge-jobs STAGE SHARE MAX_JOBS JOB_MEMORY_GB [OUT]: the compile jobs of STAGE, decided here, on the
#   engine's host, at build time (so neither BuildKit's cache key nor the recipe changes with the
#   machine): MAX_JOBS when the recipe pins it, else min(CPUs, memory / SHARE / JOB_MEMORY_GB), at
#   least 1. CPUs: nproc (the cpuset) and cgroup v2 cpu.max; memory: MemTotal or the cgroup's
#   memory.max (v2) or memory.limit_in_bytes (v1), whichever is lower. SHARE: how many compiling
#   stages BuildKit runs at once with this one (they split the memory). It prints
#   `forge-jobs: STAGE MAX_JOBS=N (why)` on stderr, for the build log and forge's monitor, and N on
#   stdout; the same line in OUT/forge-jobs-STAGE.txt, which the stage's output carries (a stage
#   served from the cache logs nothing: forge then appends the recorded line to the build log, and
#   the image keeps every stage's line in /app/build-jobs.txt).
RUN printf '%s\n' '#!/bin/bash' 'set -euo pipefail' \
      'name=$1; repo=$2; ref=$3; dir=$4' \
      'if [ -z "$repo" ] || [ -z "$ref" ]; then echo "forge-fetch: $name: empty repository or ref (set [$name] in the recipe)" >&2; exit 2; fi' \
      'git init -q "$dir"; cd "$dir"; git remote add origin "$repo"' \
      'if git ls-remote --exit-code --tags origin "refs/tags/$ref" >/dev/null; then' \
      '  git fetch -q --depth 1 origin "+refs/tags/$ref:refs/tags/$ref"; git checkout -q "refs/tags/$ref"' \
      'elif git fetch -q --depth 1 origin "$ref" 2>/dev/null; then' \
      '  git checkout -q FETCH_HEAD' \
      'else' \
      '  git fetch -q origin "+refs/heads/*:refs/remotes/origin/*" "+refs/tags/*:refs/tags/*"' \
      '  git checkout -q "$ref^{commit}"' \
      'fi' \
      'if [ -f .gitmodules ]; then git submodule update -q --init --recursive --depth 1 --jobs 4 || git submodule update -q --init --recursive --jobs 4; fi' \
      'mkdir -p /dist; echo "$name $repo $ref $(git rev-parse HEAD)" > "/dist/source-$name.txt"' \
      'echo "forge-fetch: $name $ref -> $(git rev-parse HEAD)"' \
      > /usr/local/bin/forge-fetch \
 && printf '%s\n' '#!/bin/bash' 'set -euo pipefail' \
      'cmd=$1; file=$2; shift 2' \
      'installed() { pip list --format=freeze | grep -iE "^($1)==" | sort -f; }' \
      'case "$cmd" in' \
      '  write) installed "$(IFS="|"; echo "$*")" > "$file"' \
      '    for p in "$@"; do grep -qiE "^$p==" "$file" || { echo "forge-pins: $p is not installed" >&2; exit 1; }; done' \
      '    echo "forge-pins: recorded $(paste -sd" " "$file")";;' \
      '  check) if ! diff -u "$file" <(installed "$(cut -d= -f1 "$file" | paste -sd"|")"); then' \
      '      echo "forge-pins: a pip step changed pinned packages (-: recorded in $file, +: installed now)" >&2; exit 1; fi' \
      '    echo "forge-pins: unchanged: $(paste -sd" " "$file")";;' \
      '  *) echo "usage: forge-pins write FILE PKG... | check FILE" >&2; exit 2;;' \
      'esac' \
      > /usr/local/bin/forge-pins \
 && printf '%s\n' '#!/bin/bash' 'set -euo pipefail' \
      'stage=$1; share=$2; want=${3:-auto}; per=${4:-8}; out=${5:-}' \
      'cpus=$(nproc)' \
      'if [ -r /sys/fs/cgroup/cpu.max ]; then read -r q p < /sys/fs/cgroup/cpu.max' \
      '  if [ "$q" != max ] && [ $(( (q + p - 1) / p )) -lt "$cpus" ]; then cpus=$(( (q + p - 1) / p )); fi; fi' \
      'mem=$(( $(sed -n "s/^MemTotal: *\([0-9]*\) kB/\1/p" /proc/meminfo) * 1024 )); src=MemTotal' \
      'lim=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo max)' \
      'case "$lim" in ""|*[!0-9]*) ;; *) if [ "$lim" -lt "$mem" ]; then mem=$lim; src="cgroup limit"; fi;; esac' \
      'case "$want" in' \
      '  ""|auto) jobs=$(( mem / share / (per * 1000000000) ))' \
      '    if [ "$jobs" -gt "$cpus" ]; then jobs=$cpus; fi' \
      '    if [ "$jobs" -lt 1 ]; then jobs=1; fi' \
      '    why="auto: $cpus CPUs, $(( mem / 1048576 )) MiB memory ($src), shared by $share stage(s), $per GB a job";;' \
      '  *[!0-9]*|0*) echo "forge-jobs: MAX_JOBS=$want is neither a positive number nor auto" >&2; exit 2;;' \
      '  *) jobs=$want; why="pinned by the recipe";;' \
      'esac' \
      'line="forge-jobs: $stage MAX_JOBS=$jobs ($why)"; echo "$line" >&2' \
      'if [ -n "$out" ]; then mkdir -p "$out"; echo "$line" > "$out/forge-jobs-$stage.txt"; fi' \
      'echo "$jobs"' \
      > /usr/local/bin/forge-jobs \
 && chmod +x /usr/local/bin/forge-fetch /usr/local/bin/forge-pins /usr/local/bin/forge-jobs

############################################################################################
# [base] build_amdsmi: amdsmi's Python package from this image's own ROCm (a pip amdsmi of another
# ROCm exports the same symbols as torch's librocm_smi64 and crashes at import: ROCm/TheRock#1059).
# `cp -rL`: ROCm's share/amd_smi may hold symbolic links (into /opt/rocm/lib, relative ones among
# them) that dangle once the tree is copied; -L copies what they point at. [base] builds in place.
FROM base AS build-amdsmi
RUN --mount=type=cache,target=/root/.cache/pip \
    cp -rL /opt/rocm/share/amd_smi /tmp/amd_smi \
 && pip wheel --no-deps --wheel-dir=/dist /tmp/amd_smi \
 && rm -rf /tmp/amd_smi

############################################################################################
# [base] build_pytorch.
FROM base AS build-torch
ARG PYTORCH_REPO=https://github.com/ROCm/pytorch.git
ARG PYTORCH_REF=1c57644d4cb3aff84642e1326d88681a656507ce
ARG PYTORCH_ROCM_ARCH
ARG ROCM_VERSION
ARG USE_DISTRIBUTED=1
ARG USE_ROCM=1
ARG USE_CUDA=0
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
# ARGs are not in RUN's environment unless exported: without this, LoadHIP.cmake fails with
# `Could not detect ROCm arch for GPUs on machine` (no GPU to enumerate inside `docker build`).
# PYTORCH_ROCM_ARCH is also all that AOTriton's build reads for its targets
# (cmake/External/aotriton.cmake passes `-DAOTRITON_TARGET_ARCH=${PYTORCH_ROCM_ARCH}`; there is
# no AOTRITON_GPU_TARGETS variable), so the one arch list reaches it.
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    USE_DISTRIBUTED=${USE_DISTRIBUTED} \
    USE_ROCM=${USE_ROCM} \
    USE_CUDA=${USE_CUDA} \
    USE_NCCL=1 \
    USE_RCCL=1 \
    BUILD_TEST=0 \
    CMAKE_PREFIX_PATH=/opt/venv \
    CCACHE_DIR=/root/.ccache \
    CMAKE_C_COMPILER_LAUNCHER=ccache \
    CMAKE_CXX_COMPILER_LAUNCHER=ccache
# ^ CMAKE_PREFIX_PATH: [base] passes `$(python3 -c 'import sys; print(sys.prefix)')`, the venv here.
RUN forge-fetch pytorch "${PYTORCH_REPO}" "${PYTORCH_REF}" /src/pytorch
WORKDIR /src/pytorch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -r requirements.txt
# The configure-and-build output is kept as /dist/build.log too (tee), so the wheels stage carries
# it beside the wheel (forge checks phase 2 on it when the compile came from the cache). The ninja
# build tree and ccache are cache mounts: a rebuild after a failure picks up where it stopped.
# The build tree's cache is keyed by what makes it valid: the ROCm release, the ref and the arch
# list (PyTorch does not reconfigure a configured tree, so a tree shared across recipes would
# build one recipe against another's ROCm), and locked (two builds never share one tree). The key
# is a directory of the cache mount chosen at run time, /src/pytorch/build a link to it: the
# engine's built-in frontend may predate variable expansion in `--mount` options (Dockerfile
# syntax 1.3, moby/buildkit#2089; Docker 20.10's is older), so `id=...-${ROCM_VERSION}` would not
# be expanded there. ccache and the pip cache need no key: ccache's entries are keyed by compiler
# and preprocessed source and it is safe for concurrent use; pip's cache is content-addressed.
# MAX_JOBS: forge-jobs (above), torch alone (SHARE 1: triton's compile waits for this stage; the
# amdsmi stage beside it compiles nothing). CMAKE_BUILD_PARALLEL_LEVEL caps AOTriton's source
# build too: aotriton.cmake builds it with ExternalProject_Add and no BUILD_COMMAND, i.e. a nested
# `cmake --build`, which ignores setup.py's MAX_JOBS and would otherwise run ninja's default
# (CPUs + 2) jobs. In noimage mode (the runtime only; the GPU images are downloaded) its jobs are
# host C++ and run as one step of torch's build.
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,id=forge-pytorch-build,target=/cache/pytorch-build,sharing=locked \
    --mount=type=cache,target=/root/.cache/pip \
    tree="/cache/pytorch-build/rocm-${ROCM_VERSION}_${PYTORCH_REF//\//_}_${PYTORCH_ROCM_ARCH//;/-}" \
 && mkdir -p "${tree}" && rm -rf build && ln -s "${tree}" build \
 && echo "forge: PyTorch build tree ${tree} (cache mount, keyed by ROCm release, ref and archs)" \
 && MAX_JOBS="$(forge-jobs build-torch 1 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /dist)" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && echo "forge: PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} USE_DISTRIBUTED=${USE_DISTRIBUTED} USE_ROCM=${USE_ROCM} MAX_JOBS=${MAX_JOBS}" \
 && python3 tools/amd_build/build_amd.py 2>&1 | tee /dist/build.log \
 && python3 setup.py bdist_wheel --dist-dir=/dist 2>&1 | tee -a /dist/build.log \
 && ls -l /dist/torch-*.whl

############################################################################################
# [base] build_triton: ROCm/triton at a pinned commit (triton 3.5.x for vLLM v0.12.0). A torch built
# with setup.py declares no triton dependency, and vLLM's default ROCm attention backend
# (TRITON_ATTN) and torch.compile need one of the right version.
#
# Parallelism: triton's setup.py runs `cmake --build -j MAX_JOBS` with `MAX_JOBS` defaulting to
# `2 * os.cpu_count()` (triton-lang/triton python/setup.py), 64 C++ jobs on a 32-thread Strix Halo.
# forge-jobs gives it its share. Its compile waits for build-torch (the bind mount of torch's
# build.log below is the edge), so torch's hours-long compile has the machine's memory to itself
# and triton compiles beside vision and audio (SHARE 3); a triton ref change alone still reuses
# the torch stage from the cache. The fetch does not wait. The stage comes after build-torch in
# this file: a mount's `from=` sees a stage as far as the file has defined it.
# ~/.triton holds what triton's setup.py downloads (LLVM, pybind11, each under a name with its
# version, so one cache serves every ref), locked so two builds never extract into it at once.
FROM base AS build-triton
ARG TRITON_REPO=https://github.com/ROCm/triton.git
ARG TRITON_REF=57c693b627fe058878ade4163a0a8df95d9fefa1
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
RUN forge-fetch triton "${TRITON_REPO}" "${TRITON_REF}" /src/triton
RUN --mount=type=cache,id=forge-triton-home,target=/root/.triton,sharing=locked \
    --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,from=build-torch,source=/dist/build.log,target=/tmp/forge-after-torch.log \
    MAX_JOBS="$(forge-jobs build-triton 3 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /dist)" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && cd /src/triton \
 && if [ ! -f setup.py ]; then cd python; fi \
 && python3 setup.py bdist_wheel --dist-dir=/dist \
 && if [ -d /src/triton/python/triton_kernels ]; then \
      pip wheel --no-deps --no-build-isolation --wheel-dir=/dist /src/triton/python/triton_kernels; fi

############################################################################################
# [base] builds torchvision and torchaudio from source against the torch it built: vLLM's
# requirements/rocm.txt pulls timm, which needs torchvision, and one from the index is a CUDA
# build (or pins another torch) whose C++ ops do not register against a ROCm torch.
FROM build-torch AS build-vision
ARG TORCHVISION_REPO=https://github.com/pytorch/vision.git
ARG TORCHVISION_REF=v0.23.0
ARG ROCM_VERSION
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install /dist/torch-*.whl \
 && forge-pins write /tmp/pins.txt torch
RUN forge-fetch torchvision "${TORCHVISION_REPO}" "${TORCHVISION_REF}" /src/vision \
 && mkdir -p /out && mv /dist/source-torchvision.txt /out/
# vision, audio and triton's compile run at once (SHARE 3). torch.utils.cpp_extension reads MAX_JOBS.
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/root/.cache/pip \
    MAX_JOBS="$(forge-jobs build-vision 3 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /out)" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && cd /src/vision \
 && python3 setup.py bdist_wheel --dist-dir=/out \
 && forge-pins check /tmp/pins.txt

FROM build-torch AS build-audio
ARG TORCHAUDIO_REPO=https://github.com/pytorch/audio.git
ARG TORCHAUDIO_REF=v2.9.0
ARG ROCM_VERSION
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install /dist/torch-*.whl \
 && forge-pins write /tmp/pins.txt torch
RUN forge-fetch torchaudio "${TORCHAUDIO_REPO}" "${TORCHAUDIO_REF}" /src/audio \
 && mkdir -p /out && mv /dist/source-torchaudio.txt /out/
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/root/.cache/pip \
    MAX_JOBS="$(forge-jobs build-audio 3 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /out)" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && cd /src/audio \
 && pip install -r requirements.txt \
 && forge-pins check /tmp/pins.txt \
 && python3 setup.py bdist_wheel --dist-dir=/out \
 && forge-pins check /tmp/pins.txt

############################################################################################
# vLLM's compile jobs, decided with the wheel stages (on the same engine host, in the same build):
# their forge-jobs-*.txt files come out with the wheels, so forge can show every stage's number in
# the build log even when BuildKit served the stage from its cache. vllm-build reads it back.
FROM base AS jobs-vllm
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
RUN forge-jobs vllm-build 1 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /dist

############################################################################################
# All wheels and the build log: `forge build` takes them out of here ([base]'s `debs` stage).
FROM scratch AS wheels
COPY --from=build-torch /dist/ /
COPY --from=build-triton /dist/ /
COPY --from=build-amdsmi /dist/ /
COPY --from=build-vision /out/ /
COPY --from=build-audio /out/ /
COPY --from=jobs-vllm /dist/ /

############################################################################################
# [rocm] build_vllm, plus the offline wheelhouse the runtime stage installs from.
FROM base AS vllm-build
ARG VLLM_REPO=https://github.com/vllm-project/vllm.git
ARG VLLM_REF=v0.12.0
ARG PYTORCH_ROCM_ARCH
# vLLM's CMake takes the archs from PYTORCH_ROCM_ARCH (cmake/utils.cmake, intersected with
# HIP_SUPPORTED_ARCHS, which has gfx1150/gfx1151 since vllm#25908). In a GPU-less build hip-config
# may still warn "GPU_TARGETS was not set" (vllm-project/vllm#22590); builders pass the archs to
# CMake as well (kyuz0/amd-strix-halo-vllm-toolboxes), through CMAKE_ARGS, which setup.py appends.
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    VLLM_TARGET_DEVICE=rocm \
    CMAKE_ARGS="-DAMDGPU_TARGETS=${PYTORCH_ROCM_ARCH} -DHIP_ARCHITECTURES=${PYTORCH_ROCM_ARCH}" \
    CCACHE_DIR=/root/.ccache
COPY --from=wheels / /wheels/
# The recipe's Python lock (`forge recipe lock`: every package from the index, pinned with its
# SHA256) and its check: `forge build` puts both in the build context under .forge/, bound at
# /forge by the RUNs below (a recipe without a lock sends the check alone, and this stage then
# resolves against the index, unlocked, and says so). A rehearsal sends the lock's files there
# too (.forge/wheelhouse/, where its base's pip looks): a bind mount, never a layer.
# The components built above, installed and pinned: every later pip step is checked against the
# pins, so pip can never swap torch (a swapped torch gives vLLM extensions built against another
# one: `undefined symbol: _ZN3c103hip19getCurrentHIPStreamEa`). kyuz0's toolboxes do the same.
# With a lock they go in without their dependencies: those come from the lock, hash-checked.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=.forge,target=/forge \
    mkdir -p /wheelhouse \
 && if [ -s /forge/lock.txt ]; then pip install --no-deps /wheels/*.whl; else pip install /wheels/*.whl; fi \
 && forge-pins write /wheelhouse/pins.txt torch triton torchvision torchaudio amdsmi
# A tag is fetched as a tag, so setuptools-scm gives vLLM's real version (`0.12.0+rocm711`, as
# [rocm]'s full clone does), not a `0.1.dev` guess from a bare commit.
RUN forge-fetch vllm "${VLLM_REPO}" "${VLLM_REF}" /src/vllm \
 && cp /dist/source-vllm.txt /wheels/source-*.txt /wheels/forge-jobs-*.txt /wheelhouse/
WORKDIR /src/vllm
# [rocm]: `pip install -r requirements/rocm.txt`, then the wheel without build isolation (vLLM's
# pyproject.toml requires `torch == 2.9.0`, which this torch's `2.9.0a0+git...` is not).
# With the recipe's lock: first every requirement of vLLM's is checked against the lock (a
# requirement the lock does not satisfy fails here, `forge-lock: NAME: vLLM requires ...`), then
# the lock is installed hash-checked and without resolving (`--require-hashes --no-deps`: exactly
# the lock's files), and `pip check` fails, naming it, on a package whose dependency the lock lacks.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=.forge,target=/forge \
    if [ -s /forge/lock.txt ]; then \
      python3 /forge/lock-check.py requirements/rocm.txt /forge/lock.txt torch triton torchvision torchaudio amdsmi vllm \
   && pip install --require-hashes --no-deps -r /forge/lock.txt \
   && pip check; \
    else \
      echo "forge-lock: the recipe has no lock: resolving vLLM's requirements against the index as it is today" \
   && pip install -c /wheelhouse/pins.txt -r requirements/rocm.txt; \
    fi \
 && forge-pins check /wheelhouse/pins.txt
# vLLM's setup.py reads MAX_JOBS (CMake's -j); it compiles alone (SHARE 1), with the number the
# jobs-vllm stage decided (/wheels/forge-jobs-vllm-build.txt). `-v`: pip shows the
# build's output (CMake, ninja's progress, the compiler's errors) in the build log, where the
# monitor reads it; without it pip prints it only when the build fails.
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/root/.cache/pip \
    MAX_JOBS="$(sed -n 's/^forge-jobs: vllm-build MAX_JOBS=\([0-9]*\) .*/\1/p' /wheels/forge-jobs-vllm-build.txt)" \
 && test -n "${MAX_JOBS}" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && pip wheel -v --no-build-isolation --no-deps -c /wheelhouse/pins.txt --wheel-dir=/wheelhouse . \
 && forge-pins check /wheelhouse/pins.txt
# Every dependency as a wheel, so the runtime stage installs with no index and no git:
# requirements/rocm.txt has a `git+https` dependency (fastsafetensors) that a stage without git
# cannot fetch, and the wheels built above have dependencies of their own (torch's sympy, amdsmi's
# PyYAML). uvloop and python-multipart are the spec's 4.3 packages (fastapi[standard] brings them
# today; naming them keeps them if that changes).
# With the lock: the lock's own files (hash-checked; an sdist in it is built into a wheel), the
# wheels built above, and the lock itself (the image keeps it as /app/python-lock.txt).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=.forge,target=/forge \
    if [ -s /forge/lock.txt ]; then \
      pip wheel --require-hashes --no-deps --wheel-dir=/wheelhouse -r /forge/lock.txt \
   && cp /wheels/*.whl /wheelhouse/ && cp /forge/lock.txt /wheelhouse/python-lock.txt; \
    else \
      pip wheel -c /wheelhouse/pins.txt --find-links /wheels --wheel-dir=/wheelhouse \
        -r requirements/rocm.txt uvloop python-multipart /wheels/*.whl; \
    fi \
 && ls /wheelhouse

############################################################################################
# [rocm] final, installed offline from the wheelhouse (a bind mount: the wheels never become a
# layer of the image).
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG ROCM_VERSION
ARG PYTORCH_ROCM_ARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# [base] and [rocm]'s run-time environment: HSA_NO_SCRATCH_RECLAIM ("Required for RCCL in
# ROCm7.1"), the RAY_EXPERIMENTAL_NOSET_* pair, TOKENIZERS_PARALLELISM, SAFETENSORS_FAST_GPU
# ("can improve safe tensor loading"), HIP_FORCE_DEV_KERNARG ("Performance environment variable").
# TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL: AOTriton marks its gfx11 kernels experimental; without
# it torch's flash/memory-efficient SDPA is off on gfx1151 (kyuz0's toolboxes set it).
# MIOPEN_FIND_MODE=FAST: MIOpen's default find mode benchmarks every convolution solver, which
# hangs on gfx1151 for vision models' stems (kyuz0/amd-strix-halo-vllm-toolboxes set FAST).
ENV DEBIAN_FRONTEND=noninteractive \
    ROCM_PATH=/opt/rocm \
    PATH=/opt/venv/bin:/opt/rocm/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/rocm/lib:/usr/local/lib \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    HSA_NO_SCRATCH_RECLAIM=1 \
    RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES=1 \
    RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES=1 \
    TOKENIZERS_PARALLELISM=false \
    SAFETENSORS_FAST_GPU=1 \
    HIP_FORCE_DEV_KERNARG=1 \
    TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL=1 \
    MIOPEN_FIND_MODE=FAST
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv libjpeg-dev libsox-dev rocm-smi-lib amd-smi-lib \
 && python3 -m venv /opt/venv
COPY --from=base /usr/local/bin/forge-pins /usr/local/bin/forge-pins
# vLLM itself with --no-deps: its metadata names fastsafetensors by a git URL, which pip would try
# to clone even with --no-index; the wheel built from that URL is in the wheelhouse. `pip check`
# output is kept in /app/pip-check.txt (forge's image audit reads it) without failing the build.
RUN --mount=type=bind,from=vllm-build,source=/wheelhouse,target=/wheelhouse \
    pip install --no-index --find-links /wheelhouse $(ls /wheelhouse/*.whl | grep -v '/vllm-') \
 && pip install --no-index --no-deps /wheelhouse/vllm-*.whl \
 && forge-pins check /wheelhouse/pins.txt \
 && mkdir -p /app \
 && { pip check > /app/pip-check.txt 2>&1 || true; } \
 && { if [ -f /wheelhouse/python-lock.txt ]; then cp /wheelhouse/python-lock.txt /app/python-lock.txt; fi; } \
 && pip freeze --all > /app/pip-freeze.txt \
 && (cd /wheelhouse && sha256sum *.whl) > /app/wheels.sha256 \
 && { echo "rocm ${ROCM_VERSION} (/opt/rocm/.info/version: $(cat /opt/rocm/.info/version))"; \
      echo "base-image ${BASE_IMAGE}"; \
      sort /wheelhouse/source-*.txt; \
      pip list --format=freeze | grep -iE '^(torch|triton|torchvision|torchaudio|vllm|amdsmi)==' | sort -f; \
    } > /app/versions.txt \
 && sort -u /wheelhouse/forge-jobs-*.txt > /app/build-jobs.txt \
 && cat /app/versions.txt
WORKDIR /app
CMD ["python3", "-m", "vllm.entrypoints.openai.api_server", "--help"]
