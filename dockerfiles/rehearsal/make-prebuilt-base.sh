#!/bin/bash
# Turns the rehearsal's Debian trixie root into the base of the prebuilt path's rehearsal (issue
# 23): the stand-in for `ubuntu:24.04` that recipes/therock-gfx1151-prebuilt.toml names, where
# ROCm comes only from the taken wheels (scripts/prebuilt-standins.py makes stand-ins of them).
#   - no ROCm: Debian's ROCm packages that the shared Debian root carries are purged, and the
#     image is refused if any libamdhip64, libhsa-runtime64 or /opt/rocm remains (a HIP runtime
#     the loader could find here would hide a torch that does not resolve its own)
#   - a local wheelhouse in place of the package index (containers here cannot reach it)
#   - vLLM's and fastsafetensors' stand-in sources as git repositories (vLLM at an annotated tag),
#     vllm listed in /opt/forge-rehearsal/standins.txt (`name repo ref`; forge reads it): the
#     only component the prebuilt path compiles
set -euo pipefail
top=/opt/forge-rehearsal
dpkg --purge amd-smi libamd-smi-dev libamd-smi0 librocm-smi64-1 libamdhip64-5 libamd-comgr2 libhsa-runtime64-1 libhsakmt1 >/dev/null
apt-get autoremove -y --purge >/dev/null 2>&1 || true
left=$(find / -xdev \( -name 'libamdhip64.so*' -o -name 'libhsa-runtime64.so*' -o -name 'librocm_smi64.so*' \) 2>/dev/null | head -5)
if [ -n "$left" ] || [ -e /opt/rocm ] || ls -d /opt/rocm-* >/dev/null 2>&1; then
  echo "make-prebuilt-base: a ROCm remains: $left $(ls -d /opt/rocm* 2>/dev/null)" >&2; exit 1
fi

# the package index: a local wheelhouse
printf '[global]\nno-index = true\nfind-links = %s/wheelhouse\n' "$top" > /etc/pip.conf

export GIT_AUTHOR_NAME=forge GIT_AUTHOR_EMAIL=forge@localhost GIT_COMMITTER_NAME=forge GIT_COMMITTER_EMAIL=forge@localhost
mkdir -p "$top/git"
repo() {  # repo NAME: a bare repository with one commit on `main`, tagged (annotated) v-TAG
  local name=$1 tag=$2 work
  work=$(mktemp -d)
  cp -r "$top/src/$name/." "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" commit -q -m "$name stand-in"
  git clone -q --bare "$work" "$top/git/$name.git"
  git -C "$top/git/$name.git" tag -a "$tag" -m "$tag" main
  rm -rf "$work"
}
repo vllm v0.12.0
repo fastsafetensors v0.1.0
echo "vllm file://$top/git/vllm.git v0.12.0" > "$top/standins.txt"
cat "$top/standins.txt"
