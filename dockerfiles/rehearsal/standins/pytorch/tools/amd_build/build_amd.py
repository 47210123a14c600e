"""Stand-in for PyTorch's tools/amd_build/build_amd.py (hipify): prints what the real one prints."""
import os

for f in ("aten/src/ATen/cuda/CUDAContext.h", "c10/cuda/CUDAStream.cpp", "torch/csrc/cuda/Module.cpp"):
    print(f"{os.getcwd()}/{f} -> {os.getcwd()}/{f.replace('cuda', 'hip')} [ok]")
print("Successfully preprocessed all matching files.")
