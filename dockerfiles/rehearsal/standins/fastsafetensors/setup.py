"""Stand-in for fastsafetensors, which vLLM's requirements/rocm.txt names by a git+https URL."""
from setuptools import setup

setup(name="fastsafetensors", version="0.1.0", packages=["fastsafetensors"])
