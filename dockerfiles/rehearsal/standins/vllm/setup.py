"""Stand-in for vLLM v0.12.0's setup.py: the version from the git tag through setuptools-scm with
vLLM's `+rocm<ver>` suffix (VLLM_VERSION_OVERRIDE honoured), install_requires from
requirements/rocm.txt, and an extension `_C.abi3.so` linked against the installed torch's libc10
(built without build isolation, as the Dockerfile builds the real one)."""
import os
import shutil
import subprocess
import sys

import torch
from setuptools import setup
from setuptools.dist import Distribution
from setuptools_scm import get_version


def received_jobs(stage, default):
    """Print the MAX_JOBS this stage received (the build log shows it) and refuse what the real
    build would mishandle: unset (the real setup.py then runs DEFAULT jobs) or not a number."""
    value = os.environ.get("MAX_JOBS")
    print(f"forge-standin: {stage} received MAX_JOBS={value} "
          f"CMAKE_BUILD_PARALLEL_LEVEL={os.environ.get('CMAKE_BUILD_PARALLEL_LEVEL')}", flush=True)
    if value is None or not value.isdigit() or int(value) < 1:
        print(f"forge-standin: {stage}: MAX_JOBS must be a positive number in this RUN's environment "
              f"(unset, the real build runs {default} jobs)", flush=True)
        sys.exit(1)
    return int(value)

received_jobs("vllm-build", "os.cpu_count()")


def requirements(path):
    out = []
    for line in open(path):
        line = line.split("#")[0].strip() if not line.startswith("fastsafetensors @") else line.strip()
        if not line:
            continue
        if line.startswith("-r "):
            out += requirements(os.path.join(os.path.dirname(path), line[3:].strip()))
        else:
            out.append(line)
    return out


if os.getenv("VLLM_VERSION_OVERRIDE"):
    os.environ["SETUPTOOLS_SCM_PRETEND_VERSION"] = os.environ["VLLM_VERSION_OVERRIDE"]
    version = get_version(write_to="vllm/_version.py")
else:
    version = get_version(write_to="vllm/_version.py")
    # the real setup.py asks the HIP runtime (get_rocm_version()) and falls back to
    # torch.version.hip: on a system ROCm that is /opt/rocm's release; with ROCm taken as wheels
    # (the prebuilt path, no /opt/rocm) it is the taken torch's, and a torch without HIP has none
    if os.path.exists("/opt/rocm/.info/version"):
        rocm = open("/opt/rocm/.info/version").read().strip().split("-")[0]
    elif getattr(torch.version, "hip", None):
        rocm = torch.version.hip
    else:
        sys.exit("forge-standin: vllm-build: no ROCm: neither /opt/rocm nor torch.version.hip")
    version += ("." if "+" in version else "+") + "rocm" + rocm.replace(".", "")[:3]
print(f"vllm {version} for PYTORCH_ROCM_ARCH={os.environ.get('PYTORCH_ROCM_ARCH')} CMAKE_ARGS={os.environ.get('CMAKE_ARGS')}", flush=True)



def rocm_home():
    """Where the real build finds ROCm (torch.utils.cpp_extension's _find_rocm_home, which vLLM's
    setup.py and CMake use): ROCM_HOME or ROCM_PATH, else hipcc on PATH, else /opt/rocm."""
    home = os.environ.get("ROCM_HOME") or os.environ.get("ROCM_PATH")
    if not home:
        hipcc = shutil.which("hipcc")
        if hipcc:
            home = os.path.dirname(os.path.dirname(os.path.realpath(hipcc)))
        elif os.path.exists("/opt/rocm"):
            home = "/opt/rocm"
    return home


# vLLM's kernels are HIP code: the real build fails without a HIP compiler, so this one does too
home = rocm_home()
hipcc = os.path.join(home, "bin", "hipcc") if home else None
if not hipcc or not os.access(hipcc, os.X_OK):
    sys.exit(f"forge-standin: vllm-build: no HIP compiler: no executable hipcc under ROCM_HOME={home!r} "
             "(vLLM's kernels cannot compile)")
subprocess.run([hipcc, "--version"], check=True)
torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
src = "/tmp/vllm_C.c"
with open(src, "w") as f:
    f.write("int _ZN3c1019rehearsal_c10_probeEv(void);\nint vllm_rehearsal_C(void) { return _ZN3c1019rehearsal_c10_probeEv(); }\n")
arch = (os.environ.get("PYTORCH_ROCM_ARCH") or "gfx1151").split(";")[0]
subprocess.run([hipcc, f"--offload-arch={arch}", "-shared", "-fPIC", "-o", "vllm/_C.abi3.so", src,
                os.path.join(torch_lib, "libc10.so")], check=True)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(
    name="vllm",
    version=version,
    description="stand-in for vLLM in forge's rehearsal",
    packages=["vllm"],
    package_data={"vllm": ["*.so"]},
    install_requires=requirements("requirements/rocm.txt"),
    distclass=BinaryDistribution,
)
