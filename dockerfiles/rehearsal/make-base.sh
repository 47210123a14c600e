#!/bin/bash
# Turns a Debian trixie root (with Debian's real ROCm user-space libraries) into a stand-in for
# AMD's `rocm/dev-ubuntu-24.04:<ver>-complete` base image, for forge's rehearsal:
#   - /opt/rocm shaped as AMD's (.info/version, lib/ and share/amd_smi/ from Debian's packages)
#   - AMD's package names (rocm-smi-lib, amd-smi-lib) as small packages that depend on Debian's
#     real libraries, installed and also served from a local apt repository, so the Dockerfile's
#     `apt-get install rocm-smi-lib amd-smi-lib` resolves as it does on AMD's image
#   - a local wheelhouse in place of the package index (containers here cannot reach it)
#   - pkg-config and liblzma-dev (what AOTriton's source build needs) served by that apt
#     repository but not installed: the Dockerfile must install them, or the torch stand-in fails
#     as AOTriton's configure does
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
# AMD's base images carry hipcc there (vLLM's compile looks for it): the stand-in
install -m 755 "$top/src/hipcc" /opt/rocm/bin/hipcc

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
# pkg-config and liblzma-dev (installed by debootstrap) back into .debs for the local repository,
# then removed, so only the Dockerfile's `apt-get install` brings them
repack() {
  local pkg=$1 root
  root=$(mktemp -d)
  dpkg-query -L "$pkg" | while read -r f; do
    if [ -f "$f" ] || [ -L "$f" ]; then cp -a --parents "$f" "$root"; fi
  done
  mkdir -p "$root/DEBIAN"
  dpkg-query -s "$pkg" \
    | awk '/^[^ ]/ { skip = ($1 == "Status:" || $1 == "Conffiles:" || $1 == "Installed-Size:") } !skip' \
    > "$root/DEBIAN/control"
  dpkg-deb --root-owner-group -b "$root" "$top/apt/$pkg.deb" >/dev/null
  rm -rf "$root"
}
aotriton_deps=()
for p in pkg-config pkgconf pkgconf-bin libpkgconf3 liblzma-dev; do
  if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then aotriton_deps+=("$p"); fi
done
for p in "${aotriton_deps[@]}"; do repack "$p"; done
dpkg --purge "${aotriton_deps[@]}" >/dev/null
if command -v pkg-config >/dev/null || [ -e /usr/include/lzma.h ]; then
  echo "make-base: pkg-config or liblzma-dev still installed" >&2; exit 1
fi
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
# and the wheelhouse of the recipe's lock, which `forge build --rehearse` sends with the build
# context (.forge/wheelhouse/, bound at /forge by the Dockerfile's RUNs that install from the lock)
printf '[global]\nno-index = true\nfind-links = %s/wheelhouse /forge/wheelhouse\n' "$top" > /etc/pip.conf

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
  # as GitHub: a commit reachable from a ref may be fetched by its full name (`--depth 1`)
  git -C "$top/git/$name.git" config uploadpack.allowReachableSHA1InWant true
  rm -rf "$work"
}
later() {  # later NAME FILE: a second commit on `main`, so the first is no branch tip
  local tmp
  tmp=$(mktemp -d); git clone -q "$top/git/$1.git" "$tmp"
  echo "# a later commit, so the pinned one is not the tip" >> "$tmp/$2"
  git -C "$tmp" commit -q -am "later"; git -C "$tmp" push -q origin main; rm -rf "$tmp"
}
standin() { echo "$1 file://$top/git/$1.git $2" >> "$top/standins.txt"; }
# pytorch: an abbreviated commit that is no branch tip, as [base] pins `1c57644d` (a server will
# not hand it out by name: fetched with the whole history, then checked out)
repo pytorch pytorch
short=$(git -C "$top/git/pytorch.git" rev-parse --short=8 main)
later pytorch requirements.txt
standin pytorch "$short"
# the wheel-fails-3.1 variant (src/ops/rehearse.rs, FORGE_REHEARSAL_VARIANT): the same stand-in on a
# branch that pads the wheel with 64 MiB of incompressible data, far under 3.1's 2 GB but
# structurally the same wheel, for testing what a size failure stops
tmp=$(mktemp -d); git clone -q "$top/git/pytorch.git" "$tmp"
git -C "$tmp" checkout -q -b rehearsal/wheel-fails-3.1 "$short"
echo 64 > "$tmp/rehearsal-pad-mb.txt"; git -C "$tmp" add rehearsal-pad-mb.txt
git -C "$tmp" commit -q -m "pad the wheel"; git -C "$tmp" push -q origin rehearsal/wheel-fails-3.1; rm -rf "$tmp"
echo "pytorch@wheel-fails-3.1 file://$top/git/pytorch.git rehearsal/wheel-fails-3.1" >> "$top/standins.txt"
# triton: a full commit that is no branch tip, as forge's recipes pin it (fetched with --depth 1)
repo triton triton
full=$(git -C "$top/git/triton.git" rev-parse main)
later triton python/triton/__init__.py
standin triton "$full"
# torchvision, vllm, fastsafetensors: annotated tags; torchaudio: a lightweight tag
repo torchvision vision;  git -C "$top/git/torchvision.git" tag -a v0.23.0 -m v0.23.0 main; standin torchvision v0.23.0
repo torchaudio audio;    git -C "$top/git/torchaudio.git" tag v2.9.0 main;               standin torchaudio v2.9.0
repo vllm vllm;           git -C "$top/git/vllm.git" tag -a v0.12.0 -m v0.12.0 main;       standin vllm v0.12.0
# vllm@requirement-outside-lock: vLLM's real requirements with one moved outside the lock
# (`openai >= 1.99.1` -> `openai >= 99`): the stage that resolves must fail naming openai
tmp=$(mktemp -d); git clone -q "$top/git/vllm.git" "$tmp"
git -C "$tmp" checkout -q -b rehearsal/requirement-outside-lock v0.12.0
sed -i 's/^openai >= 1.99.1/openai >= 99/' "$tmp/requirements/common.txt"
grep -q '^openai >= 99' "$tmp/requirements/common.txt" || { echo "make-base: no openai line to move" >&2; exit 1; }
git -C "$tmp" commit -q -am "openai outside the lock"; git -C "$tmp" push -q origin rehearsal/requirement-outside-lock; rm -rf "$tmp"
echo "vllm@requirement-outside-lock file://$top/git/vllm.git rehearsal/requirement-outside-lock" >> "$top/standins.txt"
repo fastsafetensors fastsafetensors; git -C "$top/git/fastsafetensors.git" tag -a v0.1.0 -m v0.1.0 main
cat "$top/standins.txt"
