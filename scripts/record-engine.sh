#!/usr/bin/env bash
# Regenerates the engine recordings under tests/fixtures/engine/ that the scripted fake engine
# (src/engine/fake.rs) replays in the pipeline's tests (src/pipeline/tests.rs): real answers
# of this machine's Docker engine to `forge build` of the Docker fixtures, recorded by forge
# itself (__FORGE_TEST_RECORD_ENGINE, src/engine/recording.rs):
#
#   tests/fixtures/engine/good/  forge build --recipe tests/fixtures/docker/good.toml --run-id r
#   tests/fixtures/engine/bad/   forge build --recipe tests/fixtures/docker/bad.toml --run-id r
#   tests/fixtures/engine/runtime/  forge runtime forge-fixture-good:latest --no-gpu
#   tests/fixtures/engine/serve/    forge serve forge-fixture-good:latest --no-gpu
#                                (the probe's and the server's containers, containers.jsonl, for
#                                the GPU phases on the fake: this host has no GPU to record them
#                                inside a build)
#
# Each holds build-<target>.jsonl (the build's events as forge saw them, and its end with the
# image id), calls.jsonl (every other engine call with its answer) and copy-<n>.tar (the tars
# copy_out wrote). The image export's stream is not kept (the fake synthesises a small one).
# Needs the engine and forge-test-base:trixie (scripts/test-images.sh makes it). Rerun it when
# the fixtures, the phases' engine calls or the recording's format change, then rerun
# `cargo test --lib pipeline::tests`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
# A copy: a shared target directory's binary may be rebuilt from another checkout meanwhile.
forge=$(mktemp)
trap 'rm -f "$forge"' EXIT
cp "${CARGO_TARGET_DIR:-target}/debug/forge" "$forge"
chmod +x "$forge"
docker image inspect forge-test-base:trixie >/dev/null
for name in good bad; do
  out=tests/fixtures/engine/$name
  arts=$(mktemp -d)
  rm -rf "$out"
  set +e
  __FORGE_TEST_RECORD_ENGINE=$out "$forge" build --recipe "tests/fixtures/docker/$name.toml" \
    --artifacts "$arts" --run-id r --quiet
  code=$?
  set -e
  rm -rf "$arts"
  # 0: every check passed; 1: a check failed (the bad fixture's build is stopped).
  if [ "$code" -gt 1 ]; then
    echo "forge build of $name.toml exited $code: not a recording of a finished run" >&2
    exit 1
  fi
  if [ ! -s "$out/calls.jsonl" ]; then
    echo "$out/calls.jsonl is missing: this forge does not record (__FORGE_TEST_RECORD_ENGINE)" >&2
    exit 1
  fi
  echo "recorded $out (forge exited $code): $(du -sh "$out" | cut -f1)"
done
# The probe's and the server's containers on the image the good run tagged (exit 1: the image
# has no torch and no vLLM).
for cmd in runtime serve; do
  out=tests/fixtures/engine/$cmd
  arts=$(mktemp -d)
  rm -rf "$out"
  set +e
  __FORGE_TEST_RECORD_ENGINE=$out "$forge" "$cmd" forge-fixture-good:latest --no-gpu \
    --recipe tests/fixtures/docker/good.toml --artifacts "$arts" --run-id r --quiet >/dev/null
  code=$?
  set -e
  rm -rf "$arts"
  if [ "$code" -gt 1 ] || [ ! -s "$out/containers.jsonl" ]; then
    echo "forge $cmd exited $code, or $out/containers.jsonl is missing" >&2
    exit 1
  fi
  echo "recorded $out (forge exited $code): $(du -sh "$out" | cut -f1)"
done
# The final fixture image the good run tagged stays, as after any `forge build`.
