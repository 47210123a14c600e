# forge's image: PyTorch built from source for the recipe's GPU archs with USE_DISTRIBUTED=1,
# vLLM built against that torch, amdsmi built from the image's own ROCm, one ROCm version
# throughout. Every ARG below is passed by `forge build` from the recipe (`forge plan` lists them).
#
# Modelled on vLLM's docker/Dockerfile.rocm_base (PyTorch from ROCm/pytorch via
# tools/amd_build/build_amd.py + setup.py bdist_wheel, amdsmi wheel from /opt/rocm/share/amd_smi,
# component refs in /app/versions.txt). Needs BuildKit: the compile caches live on cache mounts so
# a rebuild after a failure does not start from zero.
#
# Stages: base -> torch-build -> wheels (just the wheels + build.log, for `forge` to take out)
#                             -> vllm-build -> runtime (the image forge checks and exports)

ARG BASE_IMAGE=rocm/dev-ubuntu-24.04:7.1.1-complete

############################################################################################
FROM ${BASE_IMAGE} AS base
ARG ROCM_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    ROCM_PATH=/opt/rocm \
    HIP_PATH=/opt/rocm \
    PATH=/opt/venv/bin:/opt/rocm/bin:/opt/rocm/llvm/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/rocm/lib \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# One ROCm version throughout: refuse a base image whose ROCm is not the recipe's (mixed ROCm
# libraries crash with `double free or corruption`).
RUN test -n "${ROCM_VERSION}" \
 && found="$(cat /opt/rocm/.info/version 2>/dev/null || echo none)" \
 && case "${found}" in "${ROCM_VERSION}"|"${ROCM_VERSION}"-*) ;; \
      *) echo "forge: base image has ROCm ${found}, recipe wants ${ROCM_VERSION}" >&2; exit 1 ;; esac
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      git ca-certificates cmake ninja-build ccache patchelf \
      python3 python3-dev python3-venv python3-pip \
      rocm-smi-lib amd-smi-lib \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip setuptools wheel packaging
# amdsmi's Python package from this image's own ROCm (a pip amdsmi of another ROCm exports
# the same symbols as torch's librocm_smi64 and crashes at import: ROCm/TheRock#1059).
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p /dist \
 && cp -r /opt/rocm/share/amd_smi /tmp/amd_smi \
 && pip wheel --no-deps --wheel-dir=/dist /tmp/amd_smi \
 && rm -rf /tmp/amd_smi

############################################################################################
FROM base AS torch-build
ARG PYTORCH_REPO
ARG PYTORCH_REF
ARG PYTORCH_ROCM_ARCH
ARG USE_DISTRIBUTED=1
ARG USE_ROCM=1
ARG USE_CUDA=0
ARG MAX_JOBS=4
ARG AOTRITON_GPU_TARGETS
# ARGs are not in RUN's environment unless exported: without this, LoadHIP.cmake fails with
# `Could not detect ROCm arch for GPUs on machine` (no GPU to enumerate inside `docker build`).
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    USE_DISTRIBUTED=${USE_DISTRIBUTED} \
    USE_ROCM=${USE_ROCM} \
    USE_CUDA=${USE_CUDA} \
    USE_NCCL=1 \
    USE_RCCL=1 \
    BUILD_TEST=0 \
    MAX_JOBS=${MAX_JOBS} \
    AOTRITON_GPU_TARGETS=${AOTRITON_GPU_TARGETS} \
    CCACHE_DIR=/root/.ccache \
    CMAKE_C_COMPILER_LAUNCHER=ccache \
    CMAKE_CXX_COMPILER_LAUNCHER=ccache
WORKDIR /src
# Any ref: branch, tag or commit.
RUN git init -q pytorch \
 && git -C pytorch fetch -q --depth 1 "${PYTORCH_REPO}" "${PYTORCH_REF}" \
 && git -C pytorch checkout -q FETCH_HEAD \
 && git -C pytorch submodule update -q --init --recursive --depth 1 --jobs 4 \
 && echo "pytorch ${PYTORCH_REPO} ${PYTORCH_REF} $(git -C pytorch rev-parse HEAD)" > /dist/versions.txt
WORKDIR /src/pytorch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -r requirements.txt
# The configure-and-build output is kept as /dist/build.log too (tee), so the wheels stage
# carries it beside the wheel. The ninja build tree and ccache are cache mounts: a rebuild
# after a failure picks up where it stopped.
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/src/pytorch/build \
    --mount=type=cache,target=/root/.cache/pip \
    echo "forge: PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} USE_DISTRIBUTED=${USE_DISTRIBUTED} USE_ROCM=${USE_ROCM} MAX_JOBS=${MAX_JOBS}" \
 && python3 tools/amd_build/build_amd.py 2>&1 | tee /dist/build.log \
 && python3 setup.py bdist_wheel --dist-dir=/dist 2>&1 | tee -a /dist/build.log \
 && ls -l /dist/torch-*.whl

############################################################################################
# Just the wheels (torch, amdsmi) and the build log: `forge build` takes them out of here.
FROM scratch AS wheels
COPY --from=torch-build /dist/ /

############################################################################################
FROM base AS vllm-build
ARG VLLM_REPO
ARG VLLM_REF
ARG PYTORCH_ROCM_ARCH
ARG MAX_JOBS=4
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH} \
    MAX_JOBS=${MAX_JOBS} \
    VLLM_TARGET_DEVICE=rocm \
    CCACHE_DIR=/root/.ccache
COPY --from=torch-build /dist/ /dist/
RUN pip install /dist/torch-*.whl \
 && pip freeze | grep -E '^torch==' > /dist/torch-constraint.txt
WORKDIR /src
RUN git init -q vllm \
 && git -C vllm fetch -q --depth 1 "${VLLM_REPO}" "${VLLM_REF}" \
 && git -C vllm checkout -q FETCH_HEAD \
 && echo "vllm ${VLLM_REPO} ${VLLM_REF} $(git -C vllm rev-parse HEAD)" >> /dist/versions.txt
WORKDIR /src/vllm
# vLLM against *this* torch: the constraint makes pip fail loudly instead of swapping torch
# (a swapped torch gives `undefined symbol: _ZN3c103hip19getCurrentHIPStreamEa`).
RUN --mount=type=cache,target=/root/.ccache \
    --mount=type=cache,target=/root/.cache/pip \
    pip install -c /dist/torch-constraint.txt -r requirements/rocm.txt \
 && pip install -c /dist/torch-constraint.txt "setuptools>=77" setuptools-scm cmake ninja packaging wheel jinja2 \
 && pip wheel --no-build-isolation --no-deps -c /dist/torch-constraint.txt --wheel-dir=/dist . \
 && pip freeze | grep -E '^torch==' | diff - /dist/torch-constraint.txt

############################################################################################
FROM ${BASE_IMAGE} AS runtime
ARG ROCM_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    ROCM_PATH=/opt/rocm \
    PATH=/opt/venv/bin:/opt/rocm/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/rocm/lib \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv rocm-smi-lib amd-smi-lib \
 && python3 -m venv /opt/venv
COPY --from=vllm-build /dist/ /tmp/dist/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install /tmp/dist/torch-*.whl /tmp/dist/amdsmi-*.whl \
 && pip install -c /tmp/dist/torch-constraint.txt /tmp/dist/vllm-*.whl uvloop python-multipart \
 && pip freeze | grep -E '^torch==' | diff - /tmp/dist/torch-constraint.txt \
 && mkdir -p /app \
 && { echo "rocm ${ROCM_VERSION} $(cat /opt/rocm/.info/version)"; cat /tmp/dist/versions.txt; \
      pip freeze | grep -E '^(torch|vllm|amdsmi)=='; } > /app/versions.txt \
 && rm -rf /tmp/dist
WORKDIR /app
CMD ["python3", "-m", "vllm.entrypoints.openai.api_server", "--help"]
