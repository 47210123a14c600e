#!/usr/bin/env bash
# Fetch a vLLM sdist by its package-index file URL and check it against a pinned SHA256.
# `pip download` of a vLLM sdist fails on its metadata step; the index's simple page
# (`python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)'`/vllm/)
# lists each file with a `#sha256=` fragment, copied here. The `forge recipe` tests read them.
#
# usage: scripts/fetch-vllm-sdist.sh VERSION...   (no VERSION: every pinned one)
# 0.12.0 and 0.28.0/0.32.0 pin different refs; 0.34.0's rocm_base builds no PyTorch from source
# (prebuilt torch wheels), which `forge recipe` refuses with a hint.
# Cache: $FORGE_SDIST_DIR, default ~/.cache/forge/sdists (outside git). Prints each file's path.
set -euo pipefail

declare -A url sha
url[0.12.0]=https://files.pythonhosted.org/packages/3d/70/ce6104d49a8139d055fbe4db3ddbb4e670be2f5db2172e590623efb26537/vllm-0.12.0.tar.gz
sha[0.12.0]=dc2863be80260f378f1e72f9b82b4009610e434d05fdd7067383b231b89c4f4a
url[0.28.0]=https://files.pythonhosted.org/packages/22/39/096d88cfe34ee43a8b6e7c957d1ad6338fa5256474d6ff9a32008c6f8cd6/vllm-0.28.0.tar.gz
sha[0.28.0]=ac96dd0ec5be9c13f2aa4bfb50498c4727110406f6e4980b58a4097e4d18634a
url[0.32.0]=https://files.pythonhosted.org/packages/d5/df/5471312c76e335eaa2b8333e87ea39f0d37bfe24f10a582620e34ff12e33/vllm-0.32.0.tar.gz
sha[0.32.0]=d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad
url[0.34.0]=https://files.pythonhosted.org/packages/92/21/6e0b077dc4a0b28f5a8ce8bb352a38d7196650d681fd4faa87f8dc622eff/vllm-0.34.0.tar.gz
sha[0.34.0]=fcad848b246a9d8652b47e6425af92334dc02492f9802720f54e27b823cf0113

dir=${FORGE_SDIST_DIR:-$HOME/.cache/forge/sdists}
mkdir -p "$dir"
[ $# -gt 0 ] || set -- "${!url[@]}"
for v in "$@"; do
  if [ -z "${url[$v]:-}" ]; then
    echo "error: no pinned sdist for vLLM \`$v\`" >&2
    echo "hint: pinned: ${!url[*]}; add its URL and sha256 from the index's simple page" >&2
    exit 2
  fi
  file="$dir/vllm-$v.tar.gz"
  if ! echo "${sha[$v]}  $file" | sha256sum -c --quiet - >/dev/null 2>&1; then
    tmp="$file.part"
    curl -fsSL --retry 3 -o "$tmp" "${url[$v]}"
    if ! echo "${sha[$v]}  $tmp" | sha256sum -c --quiet - >/dev/null 2>&1; then
      rm -f "$tmp"
      echo "error: vllm-$v.tar.gz does not match its pinned sha256 \`${sha[$v]}\`" >&2
      exit 1
    fi
    mv "$tmp" "$file"
  fi
  echo "$file"
done
