#!/usr/bin/env bash
# The rehearsal's stand-in for AMD's ROCm base image, made here with no registry:
#   forge-rehearsal-rocm:<ROCM>-s3  (default 7.1.1; about 3 min the first time)
# = Debian trixie with Debian's real ROCm libraries (HIP 5.7, HSA, ROCm SMI, AMD SMI), build tools,
#   AMD's /opt/rocm layout and package names, a local wheelhouse for the package index, and the
#   stand-in sources as git repositories (dockerfiles/rehearsal/). `forge build --rehearse` runs
#   the shipped Dockerfile on it. Idempotent: rebuilt only when its inputs change.
# With --prebuilt: forge-rehearsal-prebuilt:trixie-s3 instead, the base of a prebuilt recipe's
#   rehearsal (issue 23): the same Debian root with no ROCm at all, the same wheelhouse, only
#   vLLM's stand-in source (dockerfiles/rehearsal/make-prebuilt-base.sh).
# Needs root (debootstrap), a Docker engine, and the package index on the host (pip download).
set -euo pipefail
cd "$(dirname "$0")/.."
prebuilt=
if [ "${1:-}" = --prebuilt ]; then prebuilt=1; shift; fi
rocm=${1:-7.1.1}
# -s3: the stand-ins' generation (src/ops/rehearse.rs, STANDINS_GENERATION): worktrees with other
# stand-ins keep their own base instead of rebuilding each other's
tag=forge-rehearsal-rocm:$rocm-s3
dockerfile=base.Dockerfile
if [ -n "$prebuilt" ]; then tag=forge-rehearsal-prebuilt:trixie-s3; dockerfile=prebuilt-base.Dockerfile; rocm=none; fi
debian=forge-rehearsal-debian:trixie-s2
# pkg-config and liblzma-dev: make-base.sh turns them back into .debs for its local apt repository
# and removes them (the Dockerfile must install them, as AOTriton's source build needs them)
pkgs=pkg-config,liblzma-dev,python3,python3-venv,python3-pip,python3-dev,git,ca-certificates,cmake,ninja-build,ccache,patchelf,gcc,libc6-dev,libjpeg-dev,libsox-dev,sox,libamdhip64-5,libhsa-runtime64-1,librocm-smi64-1,libamd-smi0,amd-smi
# what the wheelhouse holds: the Dockerfile's own pip installs, and the stand-ins' requirements
wheels=(pip 'setuptools>=77.0.3,<80' wheel packaging 'cmake>=3.26.1,<4' ninja pybind11 Cython
        typing-extensions filelock 'setuptools-scm>=8' uvloop python-multipart PyYAML clang)

inputs=$( { echo "$pkgs ${wheels[*]} $rocm vllm-0.12.0-requirements${prebuilt:+-standin}"; find dockerfiles/rehearsal -type f | sort | xargs sha256sum; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "forge.rehearsal.inputs" }}' "$tag" 2>/dev/null)" = "$inputs" ]; then
  echo "$tag: present"
  exit 0
fi

scripts/test-images.sh "$debian" "$pkgs"

ctx=$(mktemp -d /tmp/forge-rehearsal-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp -r dockerfiles/rehearsal/. "$ctx/"
# vLLM's stand-in carries vLLM 0.12.0's real requirements/common.txt and rocm.txt, from its sdist
# (pinned SHA256): the rehearsal resolves them through the recipe's lock. The prebuilt base keeps
# the stand-in's short requirements: the prebuilt Dockerfile installs no lock yet (issue 23 is
# open), and vLLM's real ones name fastsafetensors by a GitHub URL the rehearsal cannot reach.
if [ -z "$prebuilt" ]; then
  sdist=$(scripts/fetch-vllm-sdist.sh 0.12.0)
  tar -xzf "$sdist" -O vllm-0.12.0/requirements/common.txt > "$ctx/standins/vllm/requirements/common.txt"
  tar -xzf "$sdist" -O vllm-0.12.0/requirements/rocm.txt > "$ctx/standins/vllm/requirements/rocm.txt"
fi
cache=.cache/rehearsal-wheelhouse
mkdir -p "$cache"
echo "$tag: wheelhouse (pip download for CPython 3.13, manylinux x86_64) ..."
python3 -m pip download -q --dest "$cache" --only-binary=:all: --python-version 3.13 \
  --implementation cp --abi cp313 --abi abi3 --abi none \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any "${wheels[@]}"
cp -r "$cache" "$ctx/wheelhouse"
echo "$tag: building on $debian ..."
DOCKER_BUILDKIT=0 docker build -q -t "$tag" --label "forge.rehearsal.inputs=$inputs" \
  --build-arg "FROM_IMAGE=$debian" --build-arg "ROCM_VERSION=$rocm" \
  -f "$ctx/$dockerfile" "$ctx" >/dev/null
echo "$tag: built"
