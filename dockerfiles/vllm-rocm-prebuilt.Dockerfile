# forge's prebuilt image: torch (and the ROCm it loads) taken as pinned wheels, AMD's TheRock
# wheels for gfx1151 first of all, and only vLLM compiled against them. The recipe's `[taken.*]`
# tables pin each wheel by version and SHA256; `forge build` passes them as TAKEN_WHEELS
# (`file=sha256 ...`) with the wheelhouse they sit in (WHEELHOUSE, a folder of the build context),
# and runs phase 3 on the taken torch wheel before this file is built at all.
#
# One ROCm release by construction: TheRock-style wheels carry their ROCm (rocm-sdk-core,
# rocm-sdk-libraries-<arch>), so the base image carries none (the base stage refuses one that
# does: a second ROCm beside the wheels' is the `double free or corruption` mix); `forge image`'s
# audit checks the result. Peers that build this way: kyuz0/amd-strix-halo-vllm-toolboxes (TheRock
# torch from https://rocm.nightlies.amd.com/v2-staging/gfx1151/, only vLLM and its kernels
# compiled), lemonade-sdk/vllm-rocm (torch from https://repo.amd.com/rocm/whl/gfx1151/, nothing
# compiled).
#
# Stages:
#   base --> vllm-build (taken wheels hash-checked and installed, pinned; the devel wheel
#                        expanded for its HIP compiler; vLLM compiled; every dependency as a
#                        wheel: the offline wheelhouse)
#        --> wheels (FROM scratch: the vLLM wheel, the taken wheels, build.log; `forge build`
#                    takes them out)
#   BASE_IMAGE --> runtime (installed from the wheelhouse with no index and no git; the image)

ARG BASE_IMAGE=ubuntu:24.04

############################################################################################
FROM ${BASE_IMAGE} AS base
ARG PYTORCH_ROCM_ARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:${PATH} \
    PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    HSA_NO_SCRATCH_RECLAIM=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# No system ROCm: the taken wheels bring theirs.
RUN if [ -e /opt/rocm/.info/version ] || ls /opt/rocm-*/.info/version >/dev/null 2>&1; then \
      echo "forge: the base image carries ROCm $(cat /opt/rocm*/.info/version 2>/dev/null | head -1); the taken wheels bring their own: use a base without /opt/rocm" >&2; exit 1; fi
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      git ca-certificates cmake ninja-build ccache patchelf gcc g++ libc6-dev \
      python3 python3-dev python3-venv python3-pip \
 && python3 -m venv /opt/venv \
 && pip install --upgrade pip \
 && pip install packaging 'cmake>=3.26.1,<4' ninja wheel 'setuptools>=77.0.3,<80' pybind11 Cython
# The helpers of dockerfiles/vllm-rocm.Dockerfile, the same text (forge-fetch, forge-pins,
# forge-jobs; that file says what each does).
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
# The taken wheels, hash-checked against the recipe's pins before anything is installed, then
# installed and pinned: every later pip step is checked against the pins, so pip never swaps the
# taken torch. The HIP compiler vLLM's compile needs: TheRock's rocm-sdk-devel, expanded by
# `rocm-sdk init` (the tool comes with the `rocm` selector), with /opt/rocm pointing at it in this
# stage only (torch's cmake and vLLM's setup.py look there, as on AMD's base images); the image
# (runtime) gets neither. amdsmi: where the recipe takes none, built from the taken ROCm's own
# `_rocm_sdk_core/share/amd_smi` (as vllm-rocm.Dockerfile builds it from /opt/rocm's: a pip amdsmi
# of another ROCm crashes at import, ROCm/TheRock#1059).
FROM base AS vllm-build
ARG WHEELHOUSE=wheelhouse
ARG TAKEN_WHEELS
ARG VLLM_REPO=https://github.com/vllm-project/vllm.git
ARG VLLM_REF=v0.12.0
ARG PYTORCH_ROCM_ARCH
ARG ROCM_VERSION
ARG MAX_JOBS=auto
ARG JOB_MEMORY_GB=8
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    VLLM_TARGET_DEVICE=rocm \
    CMAKE_ARGS="-DAMDGPU_TARGETS=${PYTORCH_ROCM_ARCH} -DHIP_ARCHITECTURES=${PYTORCH_ROCM_ARCH}" \
    CCACHE_DIR=/root/.ccache \
    ROCM_PATH=/opt/rocm \
    ROCM_HOME=/opt/rocm \
    HIP_PATH=/opt/rocm \
    HIP_DEVICE_LIB_PATH=/opt/rocm/lib/llvm/amdgcn/bitcode \
    PATH=/opt/venv/bin:/opt/rocm/bin:${PATH}
COPY ${WHEELHOUSE}/ /taken/
RUN test -n "${TAKEN_WHEELS}" \
 && mkdir -p /wheelhouse /dist \
 && for pair in ${TAKEN_WHEELS}; do echo "${pair#*=}  /taken/${pair%%=*}"; done > /dist/taken.sha256 \
 && sha256sum -c /dist/taken.sha256 \
 && pip install --find-links /taken $(for pair in ${TAKEN_WHEELS}; do echo "/taken/${pair%%=*}"; done) \
 && site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && if ! pip show amdsmi >/dev/null 2>&1 && [ -d "${site}/_rocm_sdk_core/share/amd_smi" ]; then \
      cp -rL "${site}/_rocm_sdk_core/share/amd_smi" /tmp/amd_smi \
      && pip wheel --no-deps --wheel-dir=/dist /tmp/amd_smi && pip install --no-deps /dist/amdsmi-*.whl; fi \
 && sdk="$(pip list --format=freeze | sed -n 's/^rocm-sdk-core==//Ip')" \
 && case "${sdk}" in "" ) echo "forge: no rocm-sdk-core wheel taken: torch's ROCm comes from no wheel" >&2;; \
      "${ROCM_VERSION}"|"${ROCM_VERSION}"[a-z.+-]*) echo "forge: the taken ROCm is ${sdk} (recipe: ${ROCM_VERSION})";; \
      *) echo "forge: the taken rocm-sdk-core is ${sdk}, the recipe says ROCm ${ROCM_VERSION}" >&2; exit 1;; esac \
 && if ! command -v rocm-sdk >/dev/null; then \
      echo "forge: no rocm-sdk tool: take TheRock's rocm selector (the sdist torch requires as rocm[libraries]) so rocm-sdk-devel can be expanded" >&2; exit 1; fi \
 && rocm-sdk init \
 && root="$(rocm-sdk path --root)" && [ -d "${root}" ] \
 && ln -sfn "${root}" /opt/rocm \
 && if ! hipcc --version; then \
      echo "forge: no HIP compiler at /opt/rocm/bin/hipcc after rocm-sdk init (/opt/rocm -> $(readlink /opt/rocm)): take rocm-sdk-devel at rocm-sdk-core's version" >&2; exit 1; fi \
 && forge-pins write /wheelhouse/pins.txt torch \
 && pip list --format=freeze | sort -f > /wheelhouse/taken-installed.txt
RUN forge-fetch vllm "${VLLM_REPO}" "${VLLM_REF}" /src/vllm \
 && cp /dist/source-vllm.txt /wheelhouse/
WORKDIR /src/vllm
# vLLM's requirements, constrained by the pins; then vLLM compiled under forge's monitor (`-v`:
# CMake and ninja's output in the build log), alone (SHARE 1), kept as /dist/build.log too.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c /wheelhouse/pins.txt -r requirements/rocm.txt \
 && forge-pins check /wheelhouse/pins.txt
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/root/.cache/pip \
    MAX_JOBS="$(forge-jobs vllm-build 1 "${MAX_JOBS}" "${JOB_MEMORY_GB}" /dist)" \
 && export MAX_JOBS CMAKE_BUILD_PARALLEL_LEVEL="${MAX_JOBS}" \
 && pip wheel -v --no-build-isolation --no-deps -c /wheelhouse/pins.txt --wheel-dir=/dist . 2>&1 | tee /dist/build.log \
 && forge-pins check /wheelhouse/pins.txt \
 && cp /dist/vllm-*.whl /dist/forge-jobs-*.txt /wheelhouse/
# Every dependency as a wheel, so the runtime stage installs with no index and no git.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel -c /wheelhouse/pins.txt --find-links /taken --find-links /dist --wheel-dir=/wheelhouse \
      -r requirements/rocm.txt uvloop python-multipart /taken/*.whl $(ls /taken/*.tar.gz /dist/amdsmi-*.whl 2>/dev/null) \
 && ls /wheelhouse

############################################################################################
# The vLLM wheel, the taken wheels and the build log: `forge build` takes them out of here.
FROM scratch AS wheels
COPY --from=vllm-build /dist/ /

############################################################################################
# The image, installed offline from the wheelhouse (a bind mount: the wheels never become a layer).
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG PYTORCH_ROCM_ARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:${PATH} \
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
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && python3 -m venv /opt/venv
COPY --from=base /usr/local/bin/forge-pins /usr/local/bin/forge-pins
RUN --mount=type=bind,from=vllm-build,source=/wheelhouse,target=/wheelhouse \
    pip install --no-index --find-links /wheelhouse $(ls /wheelhouse/*.whl | grep -v -e '/vllm-' -e '/rocm_sdk_devel-') \
 && pip install --no-index --no-deps /wheelhouse/vllm-*.whl \
 && forge-pins check /wheelhouse/pins.txt \
 && mkdir -p /app \
 && { pip check > /app/pip-check.txt 2>&1 || true; } \
 && { echo "rocm from the taken wheels: $(pip list --format=freeze | grep -iE '^(rocm|rocm-sdk-[a-z0-9-]*)==' | paste -sd' ')"; \
      echo "base-image ${BASE_IMAGE}"; \
      sort /wheelhouse/source-*.txt; \
      pip list --format=freeze | grep -iE '^(torch|triton|torchvision|torchaudio|vllm|amdsmi)==' | sort -f; \
    } > /app/versions.txt \
 && sort -u /wheelhouse/forge-jobs-*.txt > /app/build-jobs.txt \
 && cat /app/versions.txt
WORKDIR /app
CMD ["python3", "-m", "vllm.entrypoints.openai.api_server", "--help"]
