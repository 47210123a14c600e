#!/usr/bin/env bash
# forge export against `docker save | gzip -6` and `docker save | pigz -6` (+ sha256sum), on the
# same image, in one run. usage: scripts/bench-export.sh [IMAGE]  (default forge-test-base:trixie)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-forge-test-base:trixie}
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "image: $image"
printf '%-44s %6s s\n' "docker save > /dev/null (engine only)" "$(t bash -c "docker save '$image' > /dev/null")"
printf '%-44s %6s s\n' "forge export (gzip -6, all cores, sha256)" "$(t target/release/forge export "$image" -o "$tmp/f.tar.gz")"
printf '%-44s %6s s\n' "docker save | gzip -6; sha256sum" "$(t bash -c "docker save '$image' | gzip -6 > '$tmp/g.tar.gz' && sha256sum '$tmp/g.tar.gz'")"
if command -v pigz >/dev/null; then
  printf '%-44s %6s s\n' "docker save | pigz -6; sha256sum" "$(t bash -c "docker save '$image' | pigz -6 > '$tmp/p.tar.gz' && sha256sum '$tmp/p.tar.gz'")"
fi
ls -l "$tmp" | awk 'NR>1 {printf "%-12s %12d bytes\n", $9, $5}'
