#!/usr/bin/env bash
# Fuzz every parser of forge with cargo-fuzz (libFuzzer, nightly toolchain).
#
#   scripts/fuzz.sh --smoke              each target for 5 s (what CI runs)
#   scripts/fuzz.sh [SECS] [TARGET...]   the long run: SECS per target (default 600), one target
#                                        at a time, niced; all targets when none is named
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 3600   stop each target at 10^6 executions (or SECS)
#
# Needs the nightly toolchain (installed when missing) and nothing else: the targets are built
# by plain `cargo +nightly build` with the flags cargo-fuzz passes (SanitizerCoverage for
# libFuzzer, --cfg fuzzing, debug assertions), so CI need not install cargo-fuzz (17 min). Each target starts from the
# committed seeds (fuzz/seeds/<target>/) and grows a corpus in fuzz/corpus/<target>/ (not
# committed). A crash, a hang (> 10 s for one input) or a memory blow-up (> 1024 MB RSS, or one
# allocation > 512 MB) stops the target, leaves the input in fuzz/artifacts/<target>/ and makes
# the script exit 1. Logs: fuzz/logs/<target>.log; a table of executions and time at the end.
# FUZZ_SANITIZER=address builds with ASan (default none: forge is safe Rust, and the speed
# goes to executions). FUZZ_NO_BUILD=1 runs what was built last.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=600
smoke=0
targets=()
for a in "$@"; do
    case "$a" in
        --smoke) smoke=1; secs=5 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        [0-9]*) secs="$a" ;;
        *) targets+=("$a") ;;
    esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^forge-fuzz$')
fi
san="${FUZZ_SANITIZER:-none}"
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bindir="fuzz/target/$host/release"
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
    echo "fuzz: building ${#targets[@]} targets (sanitizer: $san)" >&2
    start=$(date +%s)
    # cargo-fuzz's flags (rust-fuzz/cargo-fuzz src/project.rs): coverage for libFuzzer, the
    # fuzzing cfg, and debug assertions on: an integer overflow is a crash, not a silent wrap.
    # --target keeps build scripts and proc macros uninstrumented.
    flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
    flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
    flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
    [ "$san" != none ] && flags+=" -Zsanitizer=$san"
    bins=()
    for t in "${targets[@]}"; do bins+=(--bin "$t"); done
    RUSTFLAGS="$flags" nice -n 10 cargo +nightly build --manifest-path fuzz/Cargo.toml --release \
        --target "$host" "${bins[@]}" >&2
    echo "fuzz: built in $(( $(date +%s) - start ))s" >&2
fi

mkdir -p fuzz/logs
status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/logs/$t.log"
    echo "fuzz: $t for ${secs}s" >&2
    start=$(date +%s)
    set +e
    nice -n 10 "$bindir/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
        -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=512 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    if [ "$rc" -ne 0 ]; then
        status=1
        verdict="FOUND ($(ls "fuzz/artifacts/$t" | head -3 | tr '\n' ' '))"
        grep -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -5 >&2
    else
        verdict="clean"
    fi
    summary+=("$(printf '%-13s %12s %6ss %8s/s %7s  %s' "$t" "${execs:-?}" "$took" "${rate:-?}" "$corpus" "$verdict")")
done
printf '%-13s %12s %7s %10s %7s  %s\n' target executions time rate corpus result
printf '%s\n' "${summary[@]}"
exit "$status"
