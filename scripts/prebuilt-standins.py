#!/usr/bin/env python3
"""Stand-in wheels for the prebuilt path's rehearsal (issue 23), and the rehearsal variant of
recipes/therock-gfx1151-prebuilt.toml that takes them, hash-pinned.

    scripts/prebuilt-standins.py OUT [--no-distributed] [--no-hip] [--no-hipcc] [--tag TAG] [--build-id ID]
    forge build --recipe OUT/recipe.toml --rehearse

OUT/wheelhouse/ gets one wheel for every [taken.*] of the real recipe, in TheRock's layout and
with its real name and version (cp313: the rehearsal base is Debian trixie's Python 3.13):

- torch: real ELF compiled here with `cc`. torch/lib/libc10.so (the symbol vLLM's stand-in links
  against), libtorch_cpu.so (c10d's symbols: distributed; none with --no-distributed) and
  libtorch_hip.so (none with --no-hip) whose DT_NEEDED libamdhip64.so.7 and
  libhsa-runtime64.so.1 are found only through its RUNPATH `$ORIGIN/../../_rocm_sdk_core/lib`,
  in the rocm-sdk-core wheel, with a gfx1151 offload bundle. `import torch` calls
  `rocm_sdk.initialize_process` (TheRock's torch/_rocm_init.py does) and loads those libraries
  (ctypes), so an image without the `rocm` or the SDK wheel fails as the real one does.
  Requires-Dist: rocm[libraries] (pinned, as TheRock's build sets it), filelock,
  typing-extensions.
- rocm-sdk-core: the HIP, HSA and AMD SMI runtimes as real shared objects under
  `_rocm_sdk_core/lib`, and `_rocm_sdk_core/share/amd_smi` (a Python package the Dockerfile
  builds amdsmi from, as from TheRock's).
- rocm-sdk-libraries-gfx1151: a math library under `_rocm_sdk_libraries_gfx1151/lib`.
- rocm-sdk-devel: `_rocm_sdk_devel/` with its tree packed (`_devel.tar`): bin/hipcc (the
  rehearsal's stand-in, dockerfiles/rehearsal/standins/hipcc) appears only after `rocm-sdk init`,
  as TheRock's devel wheel expands only then.
- rocm: an sdist (as AMD's index publishes TheRock's selector) of `rocm_sdk` with the `rocm-sdk`
  tool (`init`, `path --root|--bin`, `version`) and `initialize_process`, extras `libraries`
  (rocm-sdk-core, rocm-sdk-libraries-*) and `devel`.
- torchvision, torchaudio (requiring this torch), triton: Python packages.

None of them is a working library. OUT/recipe.toml is the real recipe with the stand-ins' file
names, each wheel's SHA256, the wheelhouse in OUT, and the phase-4 paths for Python 3.13.
"""
import argparse
import base64
import hashlib
import os
import re
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "therock-gfx1151-prebuilt.toml")
PY = "cp313"
HOST = "host-x86_64-unknown-linux-gnu-"
GFX1151 = "hipv4-amdgcn-amd-amdhsa--gfx1151"


def cc(tmp, name, src, *args):
    c = os.path.join(tmp, name + ".c")
    with open(c, "w") as f:
        f.write(src)
    out = os.path.join(tmp, name)
    subprocess.run(["cc", "-shared", "-fPIC", "-O0", "-o", out, c, *args], check=True)
    with open(out, "rb") as f:
        return f.read()


def bundle(triples):
    """An uncompressed clang offload bundle (what phase 3 reads GPU targets from)."""
    b = bytearray(b"__CLANG_OFFLOAD_BUNDLE__")
    b += len(triples).to_bytes(8, "little")
    off = 32 + sum(24 + len(t) for t in triples)
    for t in triples:
        b += off.to_bytes(8, "little") + (64).to_bytes(8, "little") + len(t).to_bytes(8, "little")
        b += t.encode()
        off += 64
    b += b"\xab" * (off - len(b))
    return bytes(b)


def wheel(house, dist, version, tag, members, requires=()):
    """A wheel pip installs: the members, METADATA, WHEEL and RECORD."""
    norm = dist.replace("-", "_")
    info = f"{norm}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    meta += "Summary: stand-in for forge's prebuilt rehearsal (not a working library)\n"
    purelib = "true" if tag == "py3-none-any" else "false"
    files = list(members) + [
        (f"{info}/METADATA", meta.encode()),
        (f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: forge\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()),
    ]
    record = ""
    for name, data in files:
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={h},{len(data)}\n"
    record += f"{info}/RECORD,,\n"
    path = os.path.join(house, f"{norm}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files + [(f"{info}/RECORD", record.encode())]:
            zi = zipfile.ZipInfo(name, date_time=(2026, 3, 15, 0, 0, 0))
            zi.external_attr = (0o755 if name.endswith((".so", ".so.1", ".so.5", ".so.7")) else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return os.path.basename(path)


def tar_bytes(members, prefix=""):
    """A tar (gzip-compressed when `prefix` is set: an sdist) of (name, bytes, mode) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if prefix else "w") as t:
        for name, data, mode in members:
            ti = tarfile.TarInfo(prefix + name)
            ti.size, ti.mode, ti.mtime = len(data), mode, 1773532800
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


ROCM_SDK = """\"\"\"Stand-in for TheRock's rocm_sdk (forge's prebuilt rehearsal; not ROCm).\"\"\"
import ctypes, importlib.util, os, sys, tarfile

__version__ = "{version}"


def _dir(pkg):
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.origin:
        sys.exit(f"rocm-sdk: {{pkg}} is not installed (its wheel was not taken)")
    return os.path.dirname(spec.origin)


def initialize_process(preload_shortnames=(), check_version=None, **_):
    \"\"\"Preload the SDK's libraries, as TheRock's torch/_rocm_init.py asks.\"\"\"
    if check_version and check_version != __version__:
        raise RuntimeError(f"rocm_sdk {{__version__}} is not {{check_version}}")
    lib = os.path.join(_dir("_rocm_sdk_core"), "lib")
    for short in preload_shortnames:
        names = [n for n in os.listdir(lib) if n.startswith(f"lib{{short}}.so")]
        if not names:
            raise OSError(f"rocm_sdk: no lib{{short}}.so in {{lib}}")
        ctypes.CDLL(os.path.join(lib, names[0]), mode=ctypes.RTLD_GLOBAL)


def main():
    args = sys.argv[1:]
    if args[:1] == ["init"]:
        root = _dir("_rocm_sdk_devel")
        packed = os.path.join(root, "_devel.tar")
        if os.path.exists(packed):
            with tarfile.open(packed) as t:
                t.extractall(root)
            os.remove(packed)
        print(f"rocm-sdk: devel tree expanded at {{root}}")
    elif args[:1] == ["path"] and args[1:2] in (["--root"], ["--bin"]):
        root = _dir("_rocm_sdk_devel")
        print(root if args[1] == "--root" else os.path.join(root, "bin"))
    elif args[:1] == ["version"]:
        print(__version__)
    else:
        sys.exit("usage: rocm-sdk init | path --root | path --bin | version")
"""


def taken(recipe_text):
    """(name, version) of each [taken.*] table of the real recipe."""
    out, name = [], None
    for line in recipe_text.splitlines():
        m = re.match(r"\[taken\.([a-z0-9-]+)\]", line)
        if m:
            name = m.group(1)
        m = re.match(r'version = "([^"]+)"', line)
        if name and m:
            out.append((name, m.group(1)))
            name = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--no-distributed", action="store_true", help="torch without c10d")
    ap.add_argument("--no-hip", action="store_true", help="torch without libtorch_hip.so")
    ap.add_argument("--no-hipcc", action="store_true",
                    help="a devel wheel whose tree has no bin/hipcc (vLLM's compile has no compiler)")
    ap.add_argument("--tag", help="the image tag (default: the real recipe's)")
    ap.add_argument("--build-id", default="", help="recorded in torch/version.py: other wheel "
                    "hashes, so the engine's build cache cannot serve the steps that install them")
    a = ap.parse_args()
    with open(RECIPE) as f:
        text = f.read()
    versions = dict(taken(text))
    sdk = versions["rocm-sdk-core"]
    house = os.path.join(a.out, "wheelhouse")
    os.makedirs(house, exist_ok=True)
    for old in os.listdir(house):
        os.remove(os.path.join(house, old))
    names = {}
    with tempfile.TemporaryDirectory() as tmp:
        soname = lambda n: f"-Wl,-soname,{n}"
        hip = cc(tmp, "libamdhip64.so.7",
                 "int hipMalloc(void **p, unsigned long n){return 0;}\n"
                 "int hipRuntimeGetVersion(int *v){*v = 71300000; return 0;}\n", soname("libamdhip64.so.7"))
        hsa = cc(tmp, "libhsa-runtime64.so.1", "int hsa_init(void){return 0;}\n", soname("libhsa-runtime64.so.1"))
        smi = cc(tmp, "libamd_smi.so", "int amdsmi_init(unsigned long f){return 0;}\n", soname("libamd_smi.so"))
        amd_smi = [
            ("_rocm_sdk_core/share/amd_smi/setup.py",
             b'from setuptools import setup\nsetup(name="amdsmi", version="26.2.0", packages=["amdsmi"])\n'),
            ("_rocm_sdk_core/share/amd_smi/amdsmi/__init__.py",
             b'"""Stand-in amdsmi: loads the taken ROCm\'s libamd_smi.so, as TheRock\'s does."""\n'
             b"import ctypes, os, _rocm_sdk_core\n"
             b"_lib = ctypes.CDLL(os.path.join(os.path.dirname(_rocm_sdk_core.__file__), 'lib', 'libamd_smi.so'))\n"),
        ]
        names["rocm-sdk-core"] = wheel(house, "rocm-sdk-core", sdk, "py3-none-linux_x86_64", [
            ("_rocm_sdk_core/__init__.py", b""),
            ("_rocm_sdk_core/lib/libamdhip64.so.7", hip),
            ("_rocm_sdk_core/lib/libhsa-runtime64.so.1", hsa),
            ("_rocm_sdk_core/lib/libamd_smi.so", smi),
        ] + amd_smi)
        for name, version in versions.items():
            m = re.match(r"rocm-sdk-libraries-(gfx[0-9a-z]+)$", name)
            if m:
                pkg = "_" + name.replace("-", "_")
                blas = cc(tmp, "librocblas.so.5", "int rocblas_create_handle(void **h){return 0;}\n",
                          soname("librocblas.so.5"))
                names[name] = wheel(house, name, version, "py3-none-linux_x86_64", [
                    (f"{pkg}/__init__.py", b""), (f"{pkg}/lib/librocblas.so.5", blas)])
        if "rocm-sdk-devel" in versions:
            with open(os.path.join(ROOT, "dockerfiles", "rehearsal", "standins", "hipcc"), "rb") as f:
                hipcc = f.read().replace(b"${FORGE_STANDIN_HIP_VERSION:-0.0.0}", sdk.split("a")[0].encode())
            names["rocm-sdk-devel"] = wheel(house, "rocm-sdk-devel", versions["rocm-sdk-devel"],
                                            "py3-none-linux_x86_64", [
                ("_rocm_sdk_devel/__init__.py", b""),
                ("_rocm_sdk_devel/_devel.tar", tar_bytes(
                    [("include/hip/hip_runtime.h", b"/* stand-in */\n", 0o644)]
                    + ([] if a.no_hipcc else [("bin/hipcc", hipcc, 0o755)])))])
        if "rocm" in versions:
            v = versions["rocm"]
            libs_extra = [f"rocm-sdk-core=={sdk}"] + [
                f"{n}=={versions[n]}" for n in versions if n.startswith("rocm-sdk-libraries-")]
            setup_py = (
                "from setuptools import setup\n"
                f"setup(name='rocm', version='{v}', packages=['rocm_sdk'],\n"
                f"      extras_require={{'libraries': {libs_extra!r}, 'devel': ['rocm-sdk-devel=={v}']}},\n"
                "      entry_points={'console_scripts': ['rocm-sdk=rocm_sdk:main']})\n")
            pkg_info = f"Metadata-Version: 2.1\nName: rocm\nVersion: {v}\n"
            path = os.path.join(house, f"rocm-{v}.tar.gz")
            with open(path, "wb") as f:
                f.write(tar_bytes([
                    ("setup.py", setup_py.encode(), 0o644),
                    ("PKG-INFO", pkg_info.encode(), 0o644),
                    ("rocm_sdk/__init__.py", ROCM_SDK.format(version=v).encode(), 0o644),
                    ("rocm_sdk/__main__.py", b"from rocm_sdk import main\n\nmain()\n", 0o644),
                ], prefix=f"rocm-{v}/"))
            names["rocm"] = os.path.basename(path)
        tv = versions["torch"]
        c10 = cc(tmp, "libc10.so", "int _ZN3c1019rehearsal_c10_probeEv(void){return 0;}\n", soname("libc10.so"))
        cpu_src = ("void _ZN3c106TensorC1Ev(void){}\n" if a.no_distributed else
                   "void _ZN4c10d11PrefixStoreC1Ev(void){}\nvoid _ZN4c10d12ProcessGroupC2Ev(void){}\n")
        cpu = cc(tmp, "libtorch_cpu.so", cpu_src, soname("libtorch_cpu.so"))
        members = [("torch/lib/libc10.so", c10), ("torch/lib/libtorch_cpu.so", cpu)]
        libs = ["libc10.so", "libtorch_cpu.so"]
        if not a.no_hip:
            # linked against the SDK's sonames in tmp, shipped without them: only the RUNPATH into
            # the rocm-sdk-core wheel finds them
            fb = bundle([HOST, GFX1151])
            src = ("extern int hipMalloc(void **p, unsigned long n);\nextern int hsa_init(void);\n"
                   "int torch_hip_entry(void){ void *p; return hipMalloc(&p, 1) + hsa_init(); }\n"
                   "__attribute__((section(\".hip_fatbin\"), used, aligned(4096))) const unsigned char fb[%d] = {%s};\n"
                   % (len(fb), ",".join(str(b) for b in fb)))
            members.append(("torch/lib/libtorch_hip.so", cc(
                tmp, "libtorch_hip.so", src, soname("libtorch_hip.so"),
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../../_rocm_sdk_core/lib", "-Wl,--no-as-needed",
                "-L", tmp, "-l:libamdhip64.so.7", "-l:libhsa-runtime64.so.1")))
            libs.append("libtorch_hip.so")
        hip_version = None if a.no_hip else sdk.split("a")[0]
        members += [
            ("torch/version.py", f"__version__ = '{tv}'\nhip = {hip_version!r}\ncuda = None\n"
                                 f"git_version = {a.build_id!r}\n".encode()),
            ("torch/__init__.py", (
                '"""Stand-in torch for forge\'s prebuilt rehearsal: loads its libraries as torch does\n'
                '(libtorch_hip.so finds the HIP runtime in the rocm-sdk-core wheel), nothing more."""\n'
                "import ctypes as _ctypes, os as _os\n"
                "from . import version\n"
                "__version__ = version.__version__\n"
                "import rocm_sdk as _rocm_sdk  # TheRock's torch/_rocm_init.py\n"
                f"_rocm_sdk.initialize_process(preload_shortnames=['amdhip64'], check_version={sdk!r})\n"
                f"for _l in {libs!r}:\n"
                "    _ctypes.CDLL(_os.path.join(_os.path.dirname(__file__), 'lib', _l), mode=_ctypes.RTLD_GLOBAL)\n"
            ).encode()),
        ]
        names["torch"] = wheel(house, "torch", tv, f"{PY}-{PY}-linux_x86_64", members,
                               [f"rocm[libraries]=={versions.get('rocm', sdk)}", "filelock", "typing-extensions"])
        for name, pkg, req in [("torchvision", "torchvision", True), ("torchaudio", "torchaudio", True),
                               ("triton", "triton", False)]:
            if name in versions:
                v = versions[name]
                names[name] = wheel(house, name, v, f"{PY}-{PY}-linux_x86_64", [
                    (f"{pkg}/__init__.py", f"__version__ = '{v}'\n".encode())],
                    [f"torch=={tv}"] if req else [])
    missing = [n for n in versions if n not in names]
    if missing:
        sys.exit(f"prebuilt-standins: no stand-in for taken {', '.join(missing)}")

    # the rehearsal variant of the real recipe: the stand-ins' names, pinned, in OUT's wheelhouse
    out, current = [], None
    for line in text.splitlines():
        m = re.match(r"\[taken\.([a-z0-9-]+)\]", line)
        if m:
            current = m.group(1)
        if line.startswith("context = "):
            line = 'context = "."'
        elif line.startswith("wheelhouse = "):
            line = 'wheelhouse = "wheelhouse"'
        elif line.startswith("tag = ") and a.tag:
            line = f'tag = "{a.tag}"'
        elif line.startswith("wheel = ") and current:
            f = names[current]
            with open(os.path.join(house, f), "rb") as w:
                digest = hashlib.sha256(w.read()).hexdigest()
            out += [f'wheel = "{f}"', f'sha256 = "{digest}"']
            continue
        out.append(line.replace("python3.12", "python3.13"))
    head = ("# GENERATED by scripts/prebuilt-standins.py: the rehearsal variant of "
            "recipes/therock-gfx1151-prebuilt.toml,\n# stand-in wheels (torch: "
            f"distributed={'no' if a.no_distributed else 'yes'}, hip={'no' if a.no_hip else 'yes'}, "
            f"hipcc={'no' if a.no_hipcc else 'yes'}), "
            "never a release. Run with `forge build --rehearse`.\n")
    with open(os.path.join(a.out, "recipe.toml"), "w") as f:
        f.write(head + "\n".join(out) + "\n")
    for n in sorted(names.values()):
        print(f"prebuilt-standins: {house}/{n}")
    print(f"prebuilt-standins: {os.path.join(a.out, 'recipe.toml')}")


if __name__ == "__main__":
    main()
