"""Stand-in for torchvision's setup.py: built against the installed torch, as the real one is."""
import subprocess

import torch  # the real setup.py needs the torch it builds against
from setuptools import setup
from setuptools.dist import Distribution

sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout.strip()
version = open("version.txt").read().strip() + "+" + sha
print(f"Building wheel torchvision-{version} against torch {torch.__version__}", flush=True)
with open("torchvision/version.py", "w") as f:
    f.write(f"__version__ = '{version}'\n")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(
    name="torchvision",
    version=version,
    description="stand-in for torchvision in forge's rehearsal",
    packages=["torchvision"],
    install_requires=["torch"],
    distclass=BinaryDistribution,
)
