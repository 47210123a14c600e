#!/usr/bin/env python3
"""Benchmarks for the build monitor (issue #3), side by side with their baselines.

usage: scripts/bench-monitor.py [SIZE_MB]     (default 1024)

1. scan throughput: `forge scan` on a generated SIZE_MB log shaped like a real PyTorch ROCm
   build (scripts/gen-build-log.py), against `grep -c -E '<the same fatal patterns>'` on the
   same file, both from the page cache, best of 3 runs each.
2. memory: peak RSS of `forge scan` on a 64 MB log and on the SIZE_MB one (which holds a 10 MB
   line): it must not grow with the log.
3. reaction time of `forge watch`: `cargo bench --bench reaction`.
"""
import os
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
size = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
bench = os.path.join(root, "target", "bench")
os.makedirs(bench, exist_ok=True)
forge = os.path.join(root, "target", "release", "forge")
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)

PATTERNS = "|".join([
    "Killed signal terminated program", "unable to execute command: Killed", "exit code: 137",
    "ninja: build stopped: subcommand failed", "FAILED: ", "undefined reference to .rsmi_",
    "relocation R_X86_64_PC32 out of range", "No space left on device",
    "Could not detect ROCm arch", "No GPU arch specified", "Compatibility with CMake < 3.5",
    "USE_DISTRIBUTED *: *(OFF|0|FALSE)",
])


def log_of(mb):
    path = os.path.join(bench, f"build-{mb}m.log")
    if not os.path.exists(path):
        print(f"generating {path} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(root, "scripts", "gen-build-log.py"), path, str(mb)], check=True)
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    return path


def run(cmd):
    """Wall time and the child's peak RSS (KiB) of one run."""
    if os.path.exists("/usr/bin/time"):  # GNU time: the child's own peak RSS
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        dt = time.perf_counter() - t
        return dt, int(p.stderr.strip().splitlines()[-1]), p.returncode
    # posix_spawn (vfork): the child's peak RSS is its own, not a copy of this Python's.
    devnull = os.open(os.devnull, os.O_WRONLY)
    t = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, usage = os.wait4(pid, 0)
    os.close(devnull)
    dt = time.perf_counter() - t
    return dt, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


big = log_of(size)
nbytes = os.path.getsize(big)
print(f"\n== scan throughput: {nbytes / 1e6:.0f} MB log, best of 3 ==")
rows = []
for name, cmd in [
    ("forge scan", [forge, "scan", big, "--json"]),
    ("grep -c -E (baseline)", ["grep", "-c", "-E", PATTERNS, big]),
]:
    best = min(run(cmd)[0] for _ in range(3))
    rows.append((name, best))
    print(f"{name:24} {best:6.2f} s  {nbytes / best / 1e6:7.0f} MB/s")
print(f"forge / grep time: {rows[0][1] / rows[1][1]:.2f}x")

print("\n== memory: peak RSS of forge scan ==")
for mb in sorted({64, size}):
    dt, rss, code = run([forge, "scan", log_of(mb), "--json"])
    print(f"{mb:5} MB log: {rss / 1024:6.1f} MiB peak RSS ({dt:.2f} s, exit {code})")

print("\n== reaction time of forge watch ==", flush=True)
subprocess.run(["cargo", "bench", "--quiet", "--bench", "reaction"], cwd=root, check=True)
