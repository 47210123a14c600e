#!/usr/bin/env bash
# Everything the tests need on a fresh machine, then the tests.
# The README's test command; .ci/run calls it after fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in gcc unzip python3 xmllint chromium minisign docker-registry htpasswd sshd stunnel4; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# g++ and objdump build and check the C++ test library of `wheel.glibc` (build-essential has both).
command -v g++ >/dev/null 2>&1 && command -v objdump >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  # xmllint validates report.junit.xml against the JUnit XSD; chromium renders report.html
  # (about 100 MB and ~1 min to install: the HTML report is checked in a real browser).
  pkgs=("${need[@]/gcc/build-essential}")
  pkgs=("${pkgs[@]/xmllint/libxml2-utils}")
  # Issue 24: minisign (the standard verifier of the bundle's signature), docker-registry (the
  # distribution reference registry, run on 127.0.0.1 by the push tests), htpasswd (its bcrypt
  # basic-auth file).
  pkgs=("${pkgs[@]/htpasswd/apache2-utils}")
  # Issue 22: a real sshd on 127.0.0.1 (the ssh engine transport, `docker system dial-stdio`)
  # and stunnel4 (the TLS engine endpoint with client certificates) for tests/remote.rs.
  pkgs=("${pkgs[@]/sshd/openssh-server}")
  echo "installing: ${pkgs[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
# The SBOM is read back by CycloneDX's reference library (tests/fixtures/cyclonedx/check_sbom.py),
# in the python3 on PATH (a pyenv one here, so from the package index rather than apt). The JSON
# Schemas (the --json envelope, report.json, the SBOM's CycloneDX schema) need no Python: the
# tests validate them in-process with the `jsonschema` crate (a dev-dependency).
python3 -c 'import cyclonedx' >/dev/null 2>&1 || python3 -m pip install -q cyclonedx-python-lib

# The real vLLM sdists `forge recipe from-vllm` is tested on (pinned by SHA256; tests/upstream.rs).
scripts/fetch-vllm-sdist.sh >/dev/null
# `forge recipe lock` resolves with uv; the rehearsal installs the 7.1.1 recipe's lock from a
# wheelhouse made on the host once (about 500 MB, 90 s; cached under ~/.cache/forge/wheelhouse,
# named by the lock's hash, so it is made again only when the lock changes).
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install -q uv
  # `python3 -m pip` skips pyenv's rehash hook; without a shim, link pip's script onto the PATH
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  command -v uv >/dev/null 2>&1 ||
    ln -sf "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/uv" /usr/local/bin/uv
  uv --version
fi
scripts/lock-wheelhouse.sh recipes/rocm-7.1.1.lock.txt >/dev/null

# Docker tests need an engine; with CI set they fail rather than skip when none answers.
if ! docker info >/dev/null 2>&1; then
  echo "!!! no Docker engine answers: the Docker tests will skip (or fail under CI=true)" >&2
fi

# Unit and integration tests (doc tests: none). The last line sums up every test binary.
# A test that found no engine (or no input, such as an sdist) returns early (libtest has no
# skip): it writes its name to
# $FORGE_TEST_SKIPS, and the closing line counts it as skipped, not passed.
log=$(mktemp)
skips=$(mktemp)
set +e
FORGE_TEST_SKIPS="$skips" cargo test --locked --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ -s "$skips" ]; then
  echo "skipped at run time, for want of an engine or an input ($(wc -l <"$skips")):"
  sed 's/^/  /' "$skips"
fi
awk -v early="$(wc -l <"$skips")" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p - early, f, s + early }' "$log"
rm -f "$log" "$skips"
exit "$status"
