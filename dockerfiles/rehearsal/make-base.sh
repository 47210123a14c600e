#!/bin/bash
# Turns a Debian trixie root (with Debian's real ROCm user-space libraries) into a stand-in for
# AMD's `rocm/dev-ubuntu-24.04:<ver>-complete` base image, for forge's rehearsal:
#   - /opt/rocm shaped as AMD's (.info/version, lib/ and share/amd_smi/ from Debian's packages)
#   - AMD's package names (rocm-smi-lib, amd-smi-lib) as small packages that depend on Debian's
#     real libraries, installed and also served from a local apt repository, so the Dockerfile's
#     `apt-get install rocm-smi-lib amd-smi-lib` resolves as it does on AMD's image
#   - a local wheelhouse in place of the package index (containers here cannot reach it)
#   - the stand-in sources as git repositories, with refs of every kind forge-fetch handles,
#     listed in /opt/forge-rehearsal/standins.txt (`name repo ref`; forge reads it)
set -euo pipefail
rocm=$1
top=/opt/forge-rehearsal
IFS=. read -r maj min pat <<<"$rocm"
release=$((maj * 10000 + min * 100 + pat))
gnu=/usr/lib/x86_64-linux-gnu

# /opt/rocm as AMD lays it out
mkdir -p /opt/rocm/.info /opt/rocm/lib /opt/rocm/bin
echo "$rocm-rehearsal" > /opt/rocm/.info/version
ln -sf "$gnu/libamdhip64.so.5" /opt/rocm/lib/libamdhip64.so
ln -sf "$gnu/libhsa-runtime64.so.1" /opt/rocm/lib/libhsa-runtime64.so

# AMD's package names, depending on Debian's real libraries
mkdir -p "$top/apt"
mkdeb() {
  local name=$1 depends=$2 root
  root=$(mktemp -d)
  mkdir -p "$root/DEBIAN"
  shift 2
  "$@" "$root"
  cat > "$root/DEBIAN/control" <<CTL
Package: $name
Version: 7.8.0.$release-rehearsal
Architecture: amd64
Maintainer: forge rehearsal <forge@localhost>
Depends: $depends
Description: stand-in for AMD's $name (forge rehearsal)
 Provides AMD's /opt/rocm paths on top of Debian's real ROCm libraries.
CTL
  dpkg-deb --root-owner-group -b "$root" "$top/apt/${name}_7.8.0.${release}-rehearsal_amd64.deb" >/dev/null
  rm -rf "$root"
}
smi_files() { mkdir -p "$1/opt/rocm/lib"; ln -s "$gnu/librocm_smi64.so.1" "$1/opt/rocm/lib/librocm_smi64.so"; }
amdsmi_files() {
  mkdir -p "$1/opt/rocm/lib" "$1/opt/rocm/share"
  ln -s "$gnu/libamd_smi.so.0" "$1/opt/rocm/lib/libamd_smi.so"
  cp -r /usr/share/amd_smi "$1/opt/rocm/share/amd_smi"
}
mkdeb rocm-smi-lib librocm-smi64-1 smi_files
mkdeb amd-smi-lib "libamd-smi0, amd-smi" amdsmi_files
dpkg -i "$top"/apt/*.deb >/dev/null
( cd "$top/apt"
  for d in *.deb; do
    dpkg-deb -f "$d"
    echo "Filename: ./$d"
    echo "Size: $(stat -c %s "$d")"
    echo "SHA256: $(sha256sum "$d" | cut -d' ' -f1)"
    echo
  done > Packages )
cat > /etc/apt/sources.list.d/forge-rehearsal.sources <<SRC
Types: deb
URIs: file:$top/apt
Suites: ./
Trusted: yes
SRC

# the package index: a local wheelhouse
printf '[global]\nno-index = true\nfind-links = %s/wheelhouse\n' "$top" > /etc/pip.conf

# the stand-in sources as git repositories
export GIT_AUTHOR_NAME=forge GIT_AUTHOR_EMAIL=forge@localhost GIT_COMMITTER_NAME=forge GIT_COMMITTER_EMAIL=forge@localhost
mkdir -p "$top/git"
: > "$top/standins.txt"
repo() {  # repo NAME SRC-DIR: a bare repository with one commit on `main`
  local name=$1 work
  work=$(mktemp -d)
  cp -r "$top/src/$2/." "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  git -C "$work" commit -q -m "$name stand-in"
  git clone -q --bare "$work" "$top/git/$name.git"
  rm -rf "$work"
}
standin() { echo "$1 file://$top/git/$1.git $2" >> "$top/standins.txt"; }
# pytorch: a branch (fetched with --depth 1)
repo pytorch pytorch
git -C "$top/git/pytorch.git" branch release/2.9 main
standin pytorch release/2.9
# triton: an abbreviated commit that is no branch tip (fetched in full, then checked out)
repo triton triton
short=$(git -C "$top/git/triton.git" rev-parse --short=8 main)
tmp=$(mktemp -d); git clone -q "$top/git/triton.git" "$tmp"
echo "# a later commit, so the pinned one is not the tip" >> "$tmp/python/triton/__init__.py"
git -C "$tmp" commit -q -am "later"; git -C "$tmp" push -q origin main; rm -rf "$tmp"
standin triton "$short"
# torchvision, vllm, fastsafetensors: annotated tags; torchaudio: a lightweight tag
repo torchvision vision;  git -C "$top/git/torchvision.git" tag -a v0.23.0 -m v0.23.0 main; standin torchvision v0.23.0
repo torchaudio audio;    git -C "$top/git/torchaudio.git" tag v2.9.0 main;               standin torchaudio v2.9.0
repo vllm vllm;           git -C "$top/git/vllm.git" tag -a v0.12.0 -m v0.12.0 main;       standin vllm v0.12.0
repo fastsafetensors fastsafetensors; git -C "$top/git/fastsafetensors.git" tag -a v0.1.0 -m v0.1.0 main
cat "$top/standins.txt"
