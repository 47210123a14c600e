"""Stand-in for ROCm/triton's python/setup.py: a wheel named and versioned as the real one."""
import os
import subprocess
import sys

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

received_jobs("build-triton", "2 x os.cpu_count()")

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
