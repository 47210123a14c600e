#!/usr/bin/env python3
"""Benchmark for `forge wheel` (issue #5) on a real torch wheel, side by side in one run with:

  - the spec's own pipeline: unzip -p W torch/lib/libtorch_cpu.so > f; nm -D f | grep -c c10d;
    nm -D f | grep PrefixStore; nm -D f | grep ProcessGroup
  - just decompressing libtorch_cpu.so: unzip -p W torch/lib/libtorch_cpu.so > /dev/null

Targets: forge's whole check <= 0.5x the pipeline, <= 1.2x the decompression, peak RSS < 300 MB.
usage: scripts/bench-wheel.py [WHEEL]   (default: scripts/fetch-real-wheel.sh's download)
"""
import os
import subprocess
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
forge = os.path.join(root, "target", "release", "forge")
wheel = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
    [os.path.join(root, "scripts", "fetch-real-wheel.sh")], check=True, capture_output=True, text=True
).stdout.strip()
with open(wheel, "rb") as f:  # page cache
    while f.read(1 << 24):
        pass
tmp = tempfile.mkdtemp(prefix="forge-bench-wheel-")
so = os.path.join(tmp, "ltc.so")
pipeline = (
    f"unzip -p '{wheel}' torch/lib/libtorch_cpu.so > '{so}'; nm -D '{so}' | grep -c c10d; "
    f"nm -D '{so}' | grep PrefixStore; nm -D '{so}' | grep ProcessGroup"
)


def run(cmd, shell=False):
    """(seconds, peak RSS KiB of the whole command tree's largest process)."""
    full = ["/usr/bin/time", "-f", "%M"] + (["bash", "-c", cmd] if shell else cmd)
    t = time.perf_counter()
    p = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    return dt, int(p.stderr.strip().splitlines()[-1])


rows = [
    ("forge wheel (all checks, 2 threads)", [forge, "wheel", wheel, "--json"], False),
    ("forge wheel (all checks, 1 thread)", [forge, "wheel", wheel, "--json", "--threads", "1"], False),
    ("spec pipeline (unzip + 3x nm -D)", pipeline, True),
    ("unzip -p libtorch_cpu.so > /dev/null", f"unzip -p '{wheel}' torch/lib/libtorch_cpu.so > /dev/null", True),
]
res = {}
print(f"wheel: {wheel} ({os.path.getsize(wheel) / 1e6:.0f} MB), best of 3\n")
for name, cmd, shell in rows:
    best = min((run(cmd, shell) for _ in range(3)), key=lambda r: r[0])
    res[name] = best
    print(f"{name:40} {best[0]:6.2f} s   peak RSS {best[1] / 1024:7.1f} MiB")
f2 = res[rows[0][0]][0]
print(f"\nforge / spec pipeline: {f2 / res[rows[2][0]][0]:.2f}x (target <= 0.5)")
print(f"forge / unzip -p libtorch_cpu.so: {f2 / res[rows[3][0]][0]:.2f}x (target <= 1.2)")
print(f"forge peak RSS: {res[rows[0][0]][1] / 1024:.1f} MiB (target < 300)")
os.remove(so) if os.path.exists(so) else None
os.rmdir(tmp)
