"""Stand-in for ROCm/triton's python/triton_kernels (vLLM's Dockerfile.rocm_base builds it when
the directory exists; its gpt-oss MoE path imports it)."""
from setuptools import setup

setup(
    name="triton_kernels",
    version="1.0.0",
    description="stand-in for triton_kernels in forge's rehearsal",
    packages=["triton_kernels"],
)
