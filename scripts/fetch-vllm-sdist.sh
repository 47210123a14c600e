#!/usr/bin/env bash
# Fetch a vLLM sdist through the link on the package index's simple page, checked against a
# pinned SHA256.
# `pip download` of a vLLM sdist fails on its metadata step; the index's simple page
# (`python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)'`/vllm/)
# lists each file with a `#sha256=` fragment, copied here. The `forge recipe` tests read them.
#
# usage: scripts/fetch-vllm-sdist.sh VERSION...   (no VERSION: every pinned one)
# 0.12.0 and 0.28.0/0.32.0 pin different refs; 0.34.0's rocm_base builds no PyTorch from source
# (prebuilt torch wheels), which `forge recipe` refuses with a hint.
# Cache: $FORGE_SDIST_DIR, default ~/.cache/forge/sdists (outside git). Prints each file's path.
set -euo pipefail

declare -A sha
sha[0.12.0]=dc2863be80260f378f1e72f9b82b4009610e434d05fdd7067383b231b89c4f4a
sha[0.28.0]=ac96dd0ec5be9c13f2aa4bfb50498c4727110406f6e4980b58a4097e4d18634a
sha[0.32.0]=d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad
sha[0.34.0]=fcad848b246a9d8652b47e6425af92334dc02492f9802720f54e27b823cf0113

dir=${FORGE_SDIST_DIR:-$HOME/.cache/forge/sdists}
mkdir -p "$dir"
[ $# -gt 0 ] || set -- "${!sha[@]}"

# The index pip uses here (PIP_INDEX_URL or pip's config, else pip's default), and the file's
# link on its simple page: the link may be relative and carries `#sha256=`, dropped here.
index=${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')}
link_of() {
  curl -fsSL --retry 3 "${index%/}/vllm/" | python3 -c '
import re, sys, urllib.parse
name, base = sys.argv[1], sys.argv[2]
for href in re.findall(r"href=\"([^\"]+)\"", sys.stdin.read()):
    url = href.split("#")[0]
    if url.rsplit("/", 1)[-1] == name:
        print(urllib.parse.urljoin(base, url))
        break
' "$1" "${index%/}/vllm/"
}

for v in "$@"; do
  if [ -z "${sha[$v]:-}" ]; then
    echo "error: no pinned sdist for vLLM \`$v\`" >&2
    echo "hint: pinned: ${!sha[*]}; add its sha256 from the index's simple page" >&2
    exit 2
  fi
  file="$dir/vllm-$v.tar.gz"
  if ! echo "${sha[$v]}  $file" | sha256sum -c --quiet - >/dev/null 2>&1; then
    tmp="$file.part"
    link=$(link_of "vllm-$v.tar.gz")
    [ -n "$link" ] || { echo "error: the index's simple page lists no vllm-$v.tar.gz" >&2; exit 1; }
    curl -fsSL --retry 3 -o "$tmp" "$link"
    if ! echo "${sha[$v]}  $tmp" | sha256sum -c --quiet - >/dev/null 2>&1; then
      rm -f "$tmp"
      echo "error: vllm-$v.tar.gz does not match its pinned sha256 \`${sha[$v]}\`" >&2
      exit 1
    fi
    mv "$tmp" "$file"
  fi
  echo "$file"
done
