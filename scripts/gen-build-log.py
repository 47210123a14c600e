#!/usr/bin/env python3
"""Generate a build log shaped like a real PyTorch ROCm build under BuildKit.

usage: gen-build-log.py OUT SIZE_MB [--bad]

BuildKit `#N t ` prefixes, git clone noise, CMake configure output, LoadHIP's lines, the
configuration summary, then ninja compile lines (short and long command lines, compiler
warnings, one 10 MB line) until SIZE_MB is reached, then the wheel packaging. With --bad the
summary says `USE_DISTRIBUTED : OFF`. The last line is an OOM kill, so every scanner has to read
to the end to find it.
"""
import random
import sys

out, size_mb = sys.argv[1], int(sys.argv[2])
bad = "--bad" in sys.argv
target = size_mb * 1024 * 1024
rnd = random.Random(1151)

dirs = ["aten/src/ATen/native", "aten/src/ATen/native/hip", "torch/csrc/autograd",
        "torch/csrc/distributed/c10d", "torch/csrc/jit/passes", "c10/core", "caffe2/serialize",
        "aten/src/ATen/native/transformers/hip", "torch/csrc/api/src/nn/modules"]
names = ["Activation", "BinaryOps", "Conv", "ProcessGroupNCCL", "Backoff", "Reduce", "Sort",
         "attention", "graph_fuser", "TensorIterator", "Loss", "Normalization", "Indexing"]
flags = ("-DUSE_DISTRIBUTED -DUSE_C10D_GLOO -DUSE_C10D_NCCL -DUSE_RPC -DUSE_TENSORPIPE "
         "-D__HIP_PLATFORM_AMD__=1 -DUSE_ROCM -DTORCH_HIP_VERSION=701 -O3 -DNDEBUG -fPIC "
         "-I/src/pytorch/build/aten/src -I/src/pytorch/aten/src -I/opt/rocm/include "
         "--offload-arch=gfx1151 -fclang-abi-compat=17 -Wno-unused-result")

with open(out, "w", encoding="utf-8", newline="\n") as f:
    t = 0.0
    step = 14

    def w(line):
        global t
        t += 0.013
        f.write(f"#{step} {t:.1f} {line}\n")

    f.write(f"#{step} [torch-build 6/7] RUN --mount=type=cache,target=/root/.ccache python3 setup.py bdist_wheel\n")
    for i in range(200):
        w(f"Receiving objects: {i / 2:.0f}% ({i * 731}/146203), {i * 1.7:.2f} MiB | 24.1 MiB/s")
    w("Building wheel torch-2.9.1a0+gitd38164a")
    w("-- The CXX compiler identification is Clang 20.0.0")
    for i in range(400):
        w(f"-- Performing Test HAS_FLAG_{i} - Success")
    w("HIP VERSION: 7.1.52802-26aae437f6")
    w("TORCH_HIP_VERSION: 701")
    w("Building PyTorch for GPU arch: gfx1151")
    w("-- ******** Summary ********")
    w("--   USE_CUDA              : OFF")
    w("--   USE_ROCM              : ON")
    w("--     ROCM_VERSION        : 7.1.1")
    w("--   USE_NCCL              : ON")
    w(f"--   USE_DISTRIBUTED       : {'OFF' if bad else 'ON'}")
    if not bad:
        w("--     USE_GLOO              : ON")
    w("-- Configuring done (95.2s)")
    w("-- Build files have been written to: /src/pytorch/build")
    total = 7891
    n = 0
    long_done = False
    while f.tell() < target:
        n += 1
        d, nm = rnd.choice(dirs), rnd.choice(names)
        kind = "HIP" if "hip" in d else "CXX"
        w(f"[{min(n, total)}/{total}] Building {kind} object caffe2/CMakeFiles/torch_hip.dir/__/{d}/{nm}{n}.{kind.lower()}.o")
        r = rnd.random()
        if r < 0.15:
            w(f"/opt/rocm/llvm/bin/clang++ {flags} -c /src/pytorch/{d}/{nm}{n}.cpp -o {nm}{n}.o")
        elif r < 0.20:
            w(f"/src/pytorch/{d}/{nm}{n}.cpp:{rnd.randint(1, 900)}:{rnd.randint(1, 80)}: warning: unused variable 'tmp' [-Wunused-variable]")
            w("  int tmp = 0;")
            w("      ^")
        if not long_done and f.tell() > target // 2:
            w("x" * (10 * 1024 * 1024))
            long_done = True
    w("copying build/lib.linux-x86_64-cpython-312/torch/lib/libtorch_hip.so -> build/bdist")
    w("c++: fatal error: Killed signal terminated program cc1plus")
