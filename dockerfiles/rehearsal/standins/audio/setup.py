"""Stand-in for torchaudio's setup.py: built against the installed torch, as the real one is."""
import os
import subprocess
import sys

import torch  # the real setup.py needs the torch it builds against
from setuptools import setup
from setuptools.dist import Distribution


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

received_jobs("build-audio", "os.cpu_count()")

sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout.strip()
version = open("version.txt").read().strip() + "+" + sha
print(f"Building wheel torchaudio-{version} against torch {torch.__version__}", flush=True)
with open("torchaudio/version.py", "w") as f:
    f.write(f"__version__ = '{version}'\n")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(
    name="torchaudio",
    version=version,
    description="stand-in for torchaudio in forge's rehearsal",
    packages=["torchaudio"],
    install_requires=["torch"],
    distclass=BinaryDistribution,
)
