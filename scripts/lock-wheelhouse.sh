#!/usr/bin/env bash
# The rehearsal's wheelhouse of a recipe's Python lock: every file the lock pins, for the
# rehearsal's interpreter (Debian trixie's CPython 3.13, x86_64), downloaded on the host with
# `pip download --require-hashes` (containers here cannot reach the package index). `forge build
# --rehearse` sends it with the build context (streamed) as .forge/wheelhouse/.
#   usage: scripts/lock-wheelhouse.sh [LOCK]   (default recipes/rocm-7.1.1.lock.txt)
# Cache: $FORGE_WHEELHOUSE_DIR (default ~/.cache/forge/wheelhouse)/<lock sha256, 16 hex>-cp313,
# the name forge computes (src/recipe/pylock.rs, wheelhouse_dir); made once, reused while the lock is the
# same (about 500 MB and 90 s for vLLM 0.12.0's lock). Prints the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=${1:-recipes/rocm-7.1.1.lock.txt}
root=${FORGE_WHEELHOUSE_DIR:-$HOME/.cache/forge/wheelhouse}
dir=$root/$(sha256sum "$lock" | cut -c1-16)-cp313
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
mkdir -p "$dir"
plat=()
for p in manylinux_2_40 manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 \
         manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
  plat+=(--platform "${p}_x86_64")
done
echo "lock-wheelhouse: $lock -> $dir (pip download, hash-checked, CPython 3.13 x86_64) ..." >&2
python3 -m pip download -q --require-hashes --no-deps -r "$lock" --dest "$dir" \
  --only-binary=:all: --python-version 3.13 --implementation cp --abi cp313 --abi abi3 --abi none \
  "${plat[@]}" --platform linux_x86_64 --platform any
touch "$dir/.complete"
echo "$dir"
