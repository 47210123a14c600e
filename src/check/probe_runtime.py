#!/usr/bin/env python3
"""forge's runtime probe: phases 5 and 7 of the validation suite, plus forge's own checks.

Shipped inside forge (`forge runtime --print-probe` writes it out) and copied into the container
under test. Plain Python 3, standard library only; it also runs with no container at all:

    python3 probe_runtime.py ['{"gpu": true, "timeout": 180, "extra_imports": ["uvloop"]}']

Each check runs in its own `python3 -c` subprocess, so a crash in one hides no other. The probe
records facts, not verdicts: for every run its exact code and environment, exit code or signal,
timing, the facts the code printed (`@forge {...}` lines, kept even when the run crashed later)
and the tails of its output. forge judges them (src/check/runtime.rs). The last line of stdout is
`@forge-probe ` followed by the JSON document.

`gpu`: true = the container was given the GPU devices (run everything); false = none were given
(GPU parts are left out, the rest runs); absent = run everything and decide from what is found.
"""

import concurrent.futures
import glob
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

PROBE_VERSION = 1
TAIL = 4000
MEMORY_ERRORS = re.compile(
    r"double free|free\(\): invalid|corruption|segfault|Segmentation fault|"
    r"Aborted \(core dumped\)|Fatal Python error",
    re.I,
)
RSMI = re.compile(r"undefined symbol: (rsmi_\w+)")
ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Exit)|AssertionError|RuntimeError)\b.*$", re.M)

HEADER = (
    "import json\n"
    "def R(**k): print('@forge', json.dumps(k, default=str), flush=True)\n"
    "GPU = {gpu}\n"
)

# Each check's code, exactly as it runs (after HEADER). Facts are printed as they are learnt, so
# a crash later in the run keeps what came before.
CODE = {
    "5.1": """\
import torch
assert torch.__version__, 'torch import failed'
R(torch=torch.__version__, file=torch.__file__)
""",
    "versions": """\
import sys, importlib.metadata as md
R(python=sys.version.split()[0])
import torch
R(torch=torch.__version__, hip=torch.version.hip, cuda=torch.version.cuda,
  debug=torch.version.debug, git=getattr(torch.version, 'git_version', None))
for d in ('triton', 'pytorch-triton-rocm', 'vllm', 'amdsmi', 'transformers'):
    try:
        R(**{'dist:' + d: md.version(d)})
    except md.PackageNotFoundError:
        pass
try:
    import triton
    R(triton=triton.__version__)
except ModuleNotFoundError:
    R(triton=None)
""",
    "5.2": """\
import torch
R(available=torch.cuda.is_available(), hip=torch.version.hip, cuda=torch.version.cuda)
if torch.cuda.is_available():
    R(count=torch.cuda.device_count())
    p = torch.cuda.get_device_properties(0)
    R(name=p.name, arch=getattr(p, 'gcnArchName', None), memory=p.total_memory)
""",
    "5.3": """\
import torch.distributed
R(available=torch.distributed.is_available())
assert torch.distributed.is_available(), 'distributed not available'
from torch.distributed import PrefixStore, ProcessGroup, ReduceOp
from torch._C._distributed_c10d import ProcessGroup as PG
R(imports=['PrefixStore', 'ProcessGroup', 'ReduceOp', '_distributed_c10d.ProcessGroup'])
""",
    "5.4": """\
import torch
x = torch.zeros(100, 100).cuda()
y = x + 1
R(device=str(x.device), sum=y.sum().item())
assert y.sum().item() == 10000, 'GPU compute failed'
""",
    "5.5": """\
import amdsmi
R(imported=True, file=amdsmi.__file__)
if GPU:
    amdsmi.amdsmi_init()
    handles = amdsmi.amdsmi_get_processor_handles()
    R(handles=len(handles))
    amdsmi.amdsmi_shut_down()
    R(shut_down=True)
""",
    "5.6": """\
import vllm
from vllm import LLM, SamplingParams
R(version=vllm.__version__, file=vllm.__file__)
""",
    "5.7": """\
from vllm.platforms import current_platform
R(platform=type(current_platform).__name__, device=getattr(current_platform, 'device_name', None))
R(rocm=current_platform.is_rocm())
""",
    "xccl.old": """\
from vllm.utils import supports_xccl
R(found=True)
""",
    "xccl.new": """\
from vllm.utils.torch_utils import supports_xccl
R(found=True)
""",
    "order.amdsmi-torch": """\
import amdsmi
R(amdsmi=True)
import torch
R(torch=True)
""",
    "order.torch-amdsmi": """\
import torch
R(torch=True)
import amdsmi
R(amdsmi=True)
""",
    "7.1": """\
import torch
import amdsmi
R(imports=True)
if GPU:
    x = torch.zeros(1).cuda()
    R(cuda=str(x.device))
print('done')
""",
    "7.2": """\
for i in range(3):
    import importlib
    import torch
    x = torch.zeros(100).cuda() if GPU else torch.zeros(100)
    R(cycle=i + 1, device=str(x.device))
    del x
    print(f'Cycle {i+1} OK')
""",
}

# Runs that need the GPU to be complete; without one they run in part (GPU = False) or not at all.
GPU_PART = {"5.2", "5.5", "5.7", "7.1", "7.2"}
GPU_ONLY = {"5.4"}


def tail(s):
    return s if len(s) <= TAIL else "..." + s[-TAIL:]


def run(key, code, gpu, timeout, env_extra=None):
    full = HEADER.format(gpu=gpu) + code
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONUNBUFFERED"] = "1"
    rec = {"key": key, "code": full, "env": env_extra or {}, "gpu": gpu}
    sys.stderr.write(f"forge-probe: {key} ...\n")
    sys.stderr.flush()
    t0 = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-c", full],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
    rec["seconds"] = round(time.monotonic() - t0, 3)
    out = out.decode("utf-8", "replace")
    err = err.decode("utf-8", "replace")
    rc = p.returncode
    rec["rc"] = rc
    rec["signal"] = signal.Signals(-rc).name if rc is not None and rc < 0 else None
    rec["timed_out"] = timed_out
    facts = {}
    plain = []
    for line in out.splitlines():
        if line.startswith("@forge "):
            try:
                facts.update(json.loads(line[7:]))
            except ValueError:
                plain.append(line)
        else:
            plain.append(line)
    rec["facts"] = facts
    rec["stdout_tail"] = tail("\n".join(plain))
    rec["stderr_tail"] = tail(err)
    rec["memory_errors"] = sorted({m.group(0) for m in MEMORY_ERRORS.finditer(out + "\n" + err)})
    errors = ERROR_LINE.findall(err)
    rec["error"] = errors[-1].strip() if errors else None
    rsmi = RSMI.search(err)
    rec["rsmi_symbol"] = rsmi.group(1) if rsmi else None
    sys.stderr.write(
        f"forge-probe: {key} rc={rc}{' ' + rec['signal'] if rec['signal'] else ''}"
        f"{' timed out' if timed_out else ''} {rec['seconds']:.1f}s\n"
    )
    sys.stderr.flush()
    return rec


def installed(mod):
    try:
        return importlib.util.find_spec(mod) is not None
    except Exception:
        return False


def rocm_smi_libs():
    """librocm_smi64 candidates: ROCm's usual places, the loader cache, torch's own lib dir."""
    found = []
    pats = ["/opt/rocm*/lib/librocm_smi64.so*", "/opt/rocm*/lib64/librocm_smi64.so*",
            "/usr/lib/*/librocm_smi64.so*", "/usr/lib64/librocm_smi64.so*"]
    spec = None
    try:
        spec = importlib.util.find_spec("torch")
    except Exception:
        pass
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            pats.append(os.path.join(loc, "lib", "librocm_smi64.so*"))
    for pat in pats:
        for p in sorted(glob.glob(pat)):
            if os.path.isfile(p) and p not in found:
                found.append(p)
    # the plain .so first (what the spec preloads), then versioned names
    found.sort(key=lambda p: (not p.endswith(".so"), len(p)))
    return found


def xccl_importers():
    """Lines of vLLM's own code that import supports_xccl, and from where."""
    try:
        spec = importlib.util.find_spec("vllm")
    except Exception:
        return []
    if not spec or not spec.submodule_search_locations:
        return []
    pat = re.compile(r"from\s+(vllm\.[\w.]+)\s+import\s+(\([^)]*\)|[^\n]*)")
    out = []
    for base in spec.submodule_search_locations:
        for root, _dirs, files in os.walk(base):
            for f in files:
                if not f.endswith(".py"):
                    continue
                path = os.path.join(root, f)
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                except OSError:
                    continue
                if "supports_xccl" not in text:
                    continue
                for m in pat.finditer(text):
                    if re.search(r"\bsupports_xccl\b", m.group(2)):
                        line = text.count("\n", 0, m.start()) + 1
                        rel = os.path.relpath(path, os.path.dirname(base))
                        out.append({"file": rel, "line": line, "module": m.group(1)})
    return out


def main():
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    gpu_cfg = cfg.get("gpu")
    timeout = float(cfg.get("timeout", 180))
    t0 = time.monotonic()
    doc = {
        "probe": PROBE_VERSION,
        "gpu": gpu_cfg,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "installed": {m: installed(m) for m in ("torch", "amdsmi", "vllm", "triton")},
        "dev_kfd": os.path.exists("/dev/kfd"),
        "runs": {},
    }
    full_gpu = gpu_cfg is not False
    runs = doc["runs"]
    order = ["5.1", "versions", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7",
             "xccl.old", "xccl.new", "order.amdsmi-torch", "order.torch-amdsmi", "7.1", "7.2"]
    todo = []
    for key in order:
        if key in GPU_ONLY and not full_gpu:
            continue
        if key.startswith("xccl.") and not doc["installed"]["vllm"]:
            continue
        if key.startswith("order.") and not doc["installed"]["amdsmi"]:
            continue
        gpu = full_gpu if key in GPU_PART or key in GPU_ONLY else False
        todo.append((key, CODE[key], gpu))
    for mod in cfg.get("extra_imports", []):
        code = f"import {mod}\nR(file=getattr({mod}, '__file__', None))\n"
        todo.append(("import:" + mod, code, False))
    # Separate processes, a few at a time: each pays the import of torch on its own.
    jobs = max(1, int(cfg.get("jobs", min(4, os.cpu_count() or 1))))
    doc["jobs"] = jobs
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        done = [pool.submit(run, key, code, gpu, timeout) for key, code, gpu in todo]
        for (key, _code, _gpu), fut in zip(todo, done):
            runs[key] = fut.result()
    # The spec's image needed LD_PRELOAD of librocm_smi64 for torch.distributed: when 5.3 fails
    # on an undefined rsmi_* symbol, run it again with the image's library preloaded.
    libs = rocm_smi_libs()
    doc["rocm_smi_libs"] = libs
    if runs["5.3"].get("rsmi_symbol"):
        if libs:
            runs["5.3.preload"] = run("5.3.preload", CODE["5.3"], False, timeout, {"LD_PRELOAD": libs[0]})
    if doc["installed"]["vllm"]:
        doc["xccl_importers"] = xccl_importers()
    doc["seconds"] = round(time.monotonic() - t0, 3)
    sys.stdout.write("@forge-probe " + json.dumps(doc) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
