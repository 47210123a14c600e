"""Stand-in for ROCm/triton's python/setup.py: a wheel named and versioned as the real one."""
import subprocess

from setuptools import setup
from setuptools.dist import Distribution

sha = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True).stdout.strip()


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(
    name="triton",
    version="3.5.0+git" + sha,
    description="stand-in for triton in forge's rehearsal",
    packages=["triton"],
    distclass=BinaryDistribution,
)
