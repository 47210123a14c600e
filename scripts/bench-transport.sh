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
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-forge-test-torch:trixie}
forge=${FORGE:-target/release/forge}
[ -x "$forge" ] || cargo build --release --locked
docker image inspect "$image" >/dev/null 2>&1 || scripts/test-images.sh >/dev/null
command -v /usr/sbin/sshd >/dev/null || { echo "needs openssh-server (scripts/test.sh installs it)" >&2; exit 2; }

d=$(mktemp -d /tmp/forge-bench-transport.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() { [ -n "${sshd:-}" ] && kill "$sshd" 2>/dev/null; rm -rf "$d"; }
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
t "docker save > /dev/null, unix socket" sh -c "docker save '$image' > /dev/null"
t "docker save > /dev/null, docker CLI over ssh" env PATH="$d/bin:$PATH" sh -c "DOCKER_HOST='$url' docker save '$image' > /dev/null"
t "docker save | ssh host docker load" sh -c "docker save '$image' | ssh -F '$d/ssh_config' -p $port root@127.0.0.1 docker load"
