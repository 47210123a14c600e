#!/usr/bin/env bash
# Download a real torch wheel (linux x86_64, from the package index) into .cache/wheels/ (never
# committed), for the real-wheel test and the wheel benchmark. It is a CUDA build, so the
# expected verdicts are known. Prints the wheel's path.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache/wheels
found=$(ls .cache/wheels/torch-*-manylinux_2_28_x86_64.whl 2>/dev/null | head -n1 || true)
if [ -z "$found" ]; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 torch -d .cache/wheels >&2
  found=$(ls .cache/wheels/torch-*-manylinux_2_28_x86_64.whl | head -n1)
fi
echo "$found"
