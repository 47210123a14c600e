#!/usr/bin/env bash
# What the ssh transport costs (issue 22), measured on THIS machine: the engine reached through
# its local socket and through a throwaway sshd on 127.0.0.1 (`docker system dial-stdio` on the
# far side). LOCALHOST FIGURES: they show the transport's own overhead (ssh's cipher, the relay
# through dial-stdio), nothing about a LAN's bandwidth or latency.
#
#   scripts/bench-transport.sh [IMAGE]      (default forge-test-torch:trixie; FORGE=path/to/forge)
#
# Rows: forge export (gzip level 1) through the socket and through ssh; the raw image stream
# (`docker save > /dev/null`) through both; `docker save | ssh host docker load`, the hand-carried
# transfer forge's two-engine stream is to be compared with (the engine already holds the layers,
# so the load side is the cheap one here).
#
# Then the image moved between two engines (a second dockerd on this machine, its own data root
# and engine ID: scripts/second-engine.sh), RUNS times each (default 3), the image removed from
# the second engine before each: forge's stream (`forge image IMAGE --gpu-engine ENGINE`, the
# `image.transfer` check's own seconds, export to loaded id) against `docker save | docker load`
# over the local sockets, and forge's stream over ssh against `docker save | ssh host docker load`,
# the hand-carried transfer the issue names. The far side's engine over ssh is the second one
# (`ssh://root@127.0.0.1:PORT/SOCKET`, the docker CLI's `--host` on the far side).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-forge-test-torch:trixie}
forge=${FORGE:-target/release/forge}
[ -x "$forge" ] || cargo build --release --locked
docker image inspect "$image" >/dev/null 2>&1 || scripts/test-images.sh >/dev/null
command -v /usr/sbin/sshd >/dev/null || { echo "needs openssh-server (scripts/test.sh installs it)" >&2; exit 2; }

d=$(mktemp -d /tmp/forge-bench-transport.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${sshd:-}" ] && kill "$sshd" 2>/dev/null
  [ -n "${engine2:-}" ] && scripts/second-engine.sh stop "$engine2"
  docker image rm forge-bench-copyout:latest >/dev/null 2>&1 || true
  rm -rf "$d"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$d/id"
cp "$d/id.pub" "$d/authorized_keys"
mkdir -p /run/sshd
cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
EOF
echo "[127.0.0.1]:$port $(cat "$d/host_key.pub")" >"$d/known_hosts"
printf 'Host *\n  IdentityFile %s/id\n  IdentitiesOnly yes\n  UserKnownHostsFile %s/known_hosts\n  StrictHostKeyChecking yes\n' "$d" "$d" >"$d/ssh_config"
/usr/sbin/sshd -D -f "$d/sshd_config" & sshd=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

export FORGE_SSH_OPTS="-F $d/ssh_config"
# the docker CLI's ssh helper takes no options: an `ssh` first on its PATH gives it the config
mkdir -p "$d/bin"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' "$d" >"$d/bin/ssh"
chmod +x "$d/bin/ssh"
url="ssh://root@127.0.0.1:$port"
bytes=$(docker image inspect --format '{{.Size}}' "$image")
threads=$(nproc)

t() { # label, command...: wall seconds, MB/s of the image's size
  local label=$1; shift
  local s e
  s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  python3 -c "import sys; w=$e-$s; print(f'{sys.argv[1]:<52} {w:7.2f} s  {$bytes/w/1e6:8.1f} MB/s')" "$label"
}

echo "image $image, $(python3 -c "print(f'{$bytes/1e6:.1f}')") MB; $threads threads; forge: $forge"
echo "LOCALHOST FIGURES (engine, sshd and client on one machine): transport overhead only, not a LAN"
t "forge export --level 1, unix socket" "$forge" export "$image" -o "$d/a.tar.gz" --level 1 --threads "$threads"
t "forge export --level 1, ssh (dial-stdio)" env DOCKER_HOST="$url" "$forge" export "$image" -o "$d/b.tar.gz" --level 1 --threads "$threads"
cmp -s "$d/a.tar.gz" "$d/b.tar.gz" && echo "  (the two archives are identical)" || echo "  !! the two archives differ"
rm -f "$d"/*.tar.gz
# The wheel copy-out (`GET /containers/{id}/archive` of the wheel stage, what `forge build` takes
# the wheels out with): the fixture recipe with its wheel stage made bulky (IMAGE's
# /usr/lib/x86_64-linux-gnu beside the wheel), `forge build --only build` once to fill the build
# cache, then timed through the socket and through ssh (the build itself is served from cache).
mkdir -p "$d/copyout"
cp tests/fixtures/docker/good.toml tests/fixtures/docker/fake-configure.sh tests/fixtures/docker/make-wheel.py "$d/copyout/"
sed -e "s|^FROM scratch AS wheels|FROM $image AS bulk\nFROM scratch AS wheels\nCOPY --from=bulk /usr/lib/x86_64-linux-gnu /bulk/|" \
  tests/fixtures/docker/good.Dockerfile >"$d/copyout/good.Dockerfile"
sed -i -e 's|^name = .*|name = "bench-copyout"|' -e 's|^tag = .*|tag = "forge-bench-copyout:latest"|' "$d/copyout/good.toml"
copyout() { "$forge" build --recipe "$d/copyout/good.toml" --only build --artifacts "$d/arts" --json >/dev/null 2>&1 || true; }
copyout_ssh() { DOCKER_HOST="$url" copyout; }
copyout
image_bytes=$bytes
bytes=$(docker run --rm "$image" du -sb /usr/lib/x86_64-linux-gnu | cut -f1)
echo "(copy-out rows: MB/s of the $(python3 -c "print(f'{$bytes/1e6:.1f}')") MB the wheel stage adds, not of the image)"
t "wheel copy-out (forge build --only build), unix socket" copyout
t "wheel copy-out (forge build --only build), ssh" copyout_ssh
bytes=$image_bytes
t "docker save > /dev/null, unix socket" sh -c "docker save '$image' > /dev/null"
t "docker save > /dev/null, docker CLI over ssh" env PATH="$d/bin:$PATH" sh -c "DOCKER_HOST='$url' docker save '$image' > /dev/null"
t "docker save | ssh host docker load" sh -c "docker save '$image' | ssh -F '$d/ssh_config' -p $port root@127.0.0.1 docker load"

# ---- between two engines ----
runs=${RUNS:-3}
engine2=$(mktemp -d /tmp/forge-bench-engine2.XXXXXX)
url2=$(scripts/second-engine.sh start "$engine2")
sock2=${url2#unix://}
d2() { DOCKER_HOST="$url2" docker "$@"; }
fresh() { d2 image rm -f "$image" >/dev/null 2>&1 || true; d2 image prune -f >/dev/null 2>&1 || true; }
forge_transfer() { # ENGINE: the image.transfer check's seconds
  # phase 4's verdict on the image is not the point here (exit 1 on a stand-in image): only
  # the transfer's check is read
  { "$forge" image "$image" --gpu-engine "$1" --json 2>/dev/null || true; } | python3 -c '
import json, re, sys
c = [c for c in json.load(sys.stdin)["checks"] if c["id"] == "image.transfer"][0]
m = re.search(r" in ([0-9.]+) s ", c["evidence"])
if c["status"] != "pass" or not m:
    sys.exit("image.transfer: " + c["status"] + ": " + c["evidence"])
print(m.group(1))'
}
row() { # label, then one wall time per run
  local label=$1; shift
  python3 -c "
import statistics, sys
w = [float(x) for x in sys.argv[2:]]
m = statistics.median(w)
print(f'{sys.argv[1]:<52} {m:7.2f} s  {$bytes/m/1e6:8.1f} MB/s  (runs: {\", \".join(f\"{x:.2f}\" for x in w)})')" "$label" "$@"
}
wall() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); python3 -c "print($e-$s)"; }
echo
echo "between two engines on this machine (the second: $url2, engine ID $(d2 info --format '{{.ID}}')); median of $runs"
for label in "docker save | docker load, unix sockets" "forge image --gpu-engine, unix sockets" \
             "docker save | ssh host docker load" "forge image --gpu-engine, ssh (dial-stdio)"; do
  times=()
  for _ in $(seq "$runs"); do
    fresh
    case "$label" in
      "docker save | docker load, unix sockets")
        times+=("$(wall sh -c "docker save '$image' | DOCKER_HOST='$url2' docker load")") ;;
      "forge image --gpu-engine, unix sockets")
        times+=("$(forge_transfer "$url2")") ;;
      "docker save | ssh host docker load")
        times+=("$(wall sh -c "docker save '$image' | ssh -F '$d/ssh_config' -p $port root@127.0.0.1 docker --host 'unix://$sock2' load")") ;;
      "forge image --gpu-engine, ssh (dial-stdio)")
        times+=("$(forge_transfer "$url$sock2")") ;;
    esac
    [ -n "$(d2 image ls -q "$image")" ] || { echo "!! $label: the second engine does not hold $image afterwards" >&2; exit 1; }
  done
  row "$label" "${times[@]}"
done
