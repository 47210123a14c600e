#!/usr/bin/env bash
# The image audit's cost, measured side by side in one run on a locally made image of a GB or
# more (default forge-test-audit:trixie, 4.9 GB, made by scripts/test-images.sh):
#   1. the engine's stream alone (`docker save > /dev/null`)
#   2. `forge export` alone (gzip on every core + SHA256)
#   3. `forge export --audit` (the same stream also read by the audit: one pass)
#   4. `forge image --arch` (the audit alone, from the engine's stream; plus the probe container)
# Prints wall time, MB/s of image tar and peak RSS of each, and the ratio 3/2 (target <= 1.15).
# Usage: scripts/bench-audit.sh [IMAGE] [ROUNDS]   (build first: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-forge-test-audit:trixie}
ROUNDS=${2:-1}
FORGE=${FORGE:-target/release/forge}
[ -x "$FORGE" ] || { echo "build first: cargo build --release" >&2; exit 2; }
out=$(mktemp -d /tmp/forge-bench-audit.XXXXXX)
trap 'rm -rf "$out"' EXIT
bytes=$(docker image inspect -f '{{.Size}}' "$IMAGE")

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$out/time" "$@" >"$out/stdout" 2>"$out/stderr" || true
  read -r secs rss <"$out/time"
  echo "$label $secs $rss"
}

results=()
for r in $(seq "$ROUNDS"); do
  results+=("$(measure save docker save -o /dev/null "$IMAGE")")
  results+=("$(measure export "$FORGE" export "$IMAGE" -o "$out/a.tar.gz" -q)")
  rm -f "$out"/a.tar.gz*
  results+=("$(measure export+audit "$FORGE" export "$IMAGE" -o "$out/a.tar.gz" --audit -q)")
  rm -f "$out"/a.tar.gz*
  results+=("$(measure image "$FORGE" image "$IMAGE" --json -q)")
  audit_secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["audit"]["seconds"])' "$out/stdout")
  tar_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["audit"]["tar_bytes"])' "$out/stdout")
  results+=("audit-in-image $audit_secs 0")
done

echo "image $IMAGE: $((bytes / 1000000)) MB (engine), tar $((tar_bytes / 1000000)) MB; $(nproc) CPUs"
printf '%-16s %8s %10s %12s\n' what seconds "MB/s" "peak RSS MB"
for line in "${results[@]}"; do
  read -r label secs rss <<<"$line"
  printf '%-16s %8.1f %10.0f %12.0f\n' "$label" "$secs" "$(echo "$tar_bytes / 1000000 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
done
python3 - "${results[@]}" <<'PY'
import sys, collections
t = collections.defaultdict(list)
for line in sys.argv[1:]:
    label, secs, _ = line.split()
    t[label].append(float(secs))
ratio = sum(t["export+audit"]) / sum(t["export"])
print(f"export+audit / export alone: {ratio:.3f} (target <= 1.15)")
PY
