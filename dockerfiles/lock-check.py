"""forge's lock check, run by the Dockerfile in the stage that resolves vLLM's requirements
(forge adds it to the build context as .forge/lock-check.py, beside the recipe's lock):

    python3 lock-check.py REQUIREMENTS LOCK [SKIP...]

Every requirement of REQUIREMENTS (with its `-r` includes) whose marker applies here must be
satisfied by the version LOCK pins for it, or this fails naming the package; SKIP names the
components the build compiles (pinned by commit, not by the lock). A requirement named by a URL
must be in the lock (the lock's header records the release that stands for it). Needs
`packaging` (the base stage installs it)."""
import os
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def lines(path):
    for raw in open(path, encoding="utf-8"):
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        if line.startswith("-r ") or line.startswith("--requirement "):
            inc = line.split(None, 1)[1].strip()
            yield from lines(os.path.join(os.path.dirname(path), inc))
        else:
            yield line


def main(argv):
    if len(argv) < 3:
        print("usage: lock-check.py REQUIREMENTS LOCK [SKIP...]", file=sys.stderr)
        return 2
    reqs, lock = argv[1], argv[2]
    skip = {canonicalize_name(n) for n in argv[3:]}
    locked = {}
    for raw in open(lock, encoding="utf-8"):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", raw)
        if m:
            locked[canonicalize_name(m.group(1))] = m.group(2)
    bad, checked = [], 0
    for line in lines(reqs):
        r = Requirement(line)
        if r.marker is not None and not r.marker.evaluate():
            continue
        name = canonicalize_name(r.name)
        if name in skip:
            continue
        checked += 1
        if name not in locked:
            bad.append(f"{r.name}: vLLM requires `{line}`, and the lock has no {r.name}")
        elif r.url is None and not r.specifier.contains(locked[name], prereleases=True):
            bad.append(
                f"{r.name}: vLLM requires `{r.name}{r.specifier}`, and the lock has "
                f"{r.name}=={locked[name]}"
            )
    for b in bad:
        print(f"forge-lock: {b}", file=sys.stderr)
    if bad:
        names = ", ".join(b.split(":", 1)[0] for b in bad)
        print(
            f"forge-lock: vLLM's requirements and the lock disagree on {len(bad)} package(s): "
            f"{names}; regenerate the lock with `forge recipe lock --recipe RECIPE`",
            file=sys.stderr,
        )
        return 1
    print(f"forge-lock: all {checked} of vLLM's requirements that apply here are satisfied by "
          f"the lock ({len(locked)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
