#!/usr/bin/env bash
# Build the local base images the Docker tests use (there is no registry to pull from):
#   forge-test-base:trixie   Debian trixie minbase + python3           (~40 s)
#   forge-test-torch:trixie  + python3-torch (CPU, distributed)        (~3 min)
#   forge-test-hipcc:trixie  + hipcc, g++, Debian's ROCm math libraries and CPU torch (a few min)
#   forge-test-audit:trixie  built on it from tests/fixtures/audit (real HIP code objects, vLLM
#                            stand-in, three ROCm releases, whiteouts; `forge image --arch`)
# Idempotent: an image that exists is kept. Needs root (debootstrap) and a Docker engine.
set -euo pipefail

mirror() {
  # the mirror this machine's apt uses, else Debian's
  local m
  m=$(grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

make_image() {
  local tag=$1 include=$2
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag: present"
    return
  fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  local dir
  dir=$(mktemp -d /tmp/forge-rootfs.XXXXXX)
  echo "$tag: debootstrap trixie ($include) from $(mirror) ..."
  debootstrap --variant=minbase --include="$include" trixie "$dir" "$(mirror)" >"$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; exit 1; }
  tar -C "$dir" -c . | docker import - "$tag" >/dev/null
  rm -rf "$dir" "$dir.log"
  echo "$tag: imported"
}

# `scripts/test-images.sh TAG PKG,PKG...` makes just that image (scripts/rehearsal-base.sh uses it)
if [ $# -eq 2 ]; then
  make_image "$1" "$2"
  exit 0
fi

# The five Debian images are independent: made at once (downloads overlap unpacking), each
# logging to its own file, shown only when it fails; the audit image builds on the hipcc one.
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
pids=()
logs=()
spawn() {
  local log
  log=$(mktemp /tmp/forge-image.XXXXXX.log)
  make_image "$@" >"$log" 2>&1 &
  pids+=("$!")
  logs+=("$log")
}
spawn forge-test-base:trixie python3
# Real ROCm user-space libraries from Debian (HIP, HSA runtime, ROCm SMI) for `forge wheel --image`
spawn forge-test-rocm:trixie libamdhip64-5,libhsa-runtime64-1,librocm-smi64-1
# A runtime-shaped image: python3, uvloop and python-multipart, and the ROCm libraries (`forge image`)
spawn forge-test-runtime:trixie python3,python3-uvloop,python3-multipart,libamdhip64-5,librocm-smi64-1
# Debian's real PyTorch (a CPU build with torch.distributed) for `forge runtime`'s probe
spawn forge-test-torch:trixie python3,python3-torch
# Debian's hipcc (HIP 5.7), its ROCm math libraries (code objects for gfx9/10/11, none for gfx1151)
# and its CPU torch, for the image audit
spawn forge-test-hipcc:trixie python3,hipcc,g++,binutils,librocblas0,librocrand1,librocfft0,python3-torch
failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    cat "${logs[$i]}"
  else
    failed=1
    cat "${logs[$i]}" >&2
  fi
  rm -f "${logs[$i]}"
done
[ "$failed" = 0 ] || { echo "scripts/test-images.sh: an image could not be made (above)" >&2; exit 1; }
if docker image inspect forge-test-audit:trixie >/dev/null 2>&1; then
  echo "forge-test-audit:trixie: present"
else
  echo "forge-test-audit:trixie: docker build tests/fixtures/audit ..."
  DOCKER_BUILDKIT=0 docker build -q -t forge-test-audit:trixie "$(dirname "$0")/../tests/fixtures/audit" >/dev/null
  echo "forge-test-audit:trixie: built"
fi
