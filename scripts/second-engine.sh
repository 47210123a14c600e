#!/usr/bin/env bash
# A second Docker engine on this machine (issue 22: a build engine and a GPU engine in one run),
# with its own data root, exec root, socket and engine ID, in its own mount and network
# namespaces:
#
#   scripts/second-engine.sh start DIR    prints its URL (unix://DIR/docker.sock) once it answers
#   scripts/second-engine.sh stop DIR     stops it and removes DIR
#
# Its own network namespace is not optional: a second dockerd in the host's namespace manages
# the same `docker0` bridge and iptables chains as the first one (started with `--bridge none`
# it deleted the first engine's docker0 here). Its own mount namespace lets /etc/docker be a
# directory of its own, so it makes its own identity key (the engine ID forge records). It has
# no network beyond its own bridge: containers on it cannot reach the first engine's or the
# internet, which phase 4 does not need. Needs root, unshare (util-linux) and ip (iproute2).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")

case "$cmd" in
start)
  command -v dockerd >/dev/null || { echo "no dockerd on PATH" >&2; exit 1; }
  command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
  mkdir -p "$dir/etc" "$dir/root" "$dir/exec"
  # overlay2 as the first engine uses; no registry mirrors, no proxies: nothing to pull from
  echo '{"storage-driver": "overlay2"}' >"$dir/daemon.json"
  sock="$dir/docker.sock"
  setsid unshare -m -n sh -c "
    ip link set lo up
    mount --make-rprivate /
    mount --bind '$dir/etc' /etc/docker 2>/dev/null || { mkdir -p /etc/docker && mount --bind '$dir/etc' /etc/docker; }
    exec dockerd --config-file '$dir/daemon.json' --data-root '$dir/root' --exec-root '$dir/exec' \
      -H 'unix://$sock' --pidfile '$dir/docker.pid'" >"$dir/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 300); do
    if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
      echo "unix://$sock"
      exit 0
    fi
    sleep 0.1
  done
  echo "the second engine did not answer on $sock within 30 s; its log ($dir/dockerd.log):" >&2
  tail -n 20 "$dir/dockerd.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/docker.pid" ]; then
    pid=$(cat "$dir/docker.pid")
    # containers first (their shims outlive dockerd otherwise), then the engine
    DOCKER_HOST="unix://$dir/docker.sock" docker ps -aq 2>/dev/null |
      xargs -r env DOCKER_HOST="unix://$dir/docker.sock" docker rm -f >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # the engine's mounts lived in its own mount namespace: gone with it, so the tree can go
  rm -rf "$dir"
  ;;
*) usage ;;
esac
