#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/<target>/ from the inputs the tests use:
the fixture recipes and Dockerfiles, the fake configure's log, shared objects built with `cc`
(with .hip_fatbin bundles in the real format), wheels of them, kpack archives, build-stream
messages in the engine's format (BuildKit status as base64 protobuf), the image probe's JSON.
Run from the repository root: python3 fuzz/make-seeds.py (needs cc and zstd)."""
import base64, io, json, os, shutil, struct, subprocess, sys, tarfile, tempfile, zipfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
shutil.rmtree(SEEDS, ignore_errors=True)

def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def read(p):
    with open(os.path.join(ROOT, p), "rb") as f:
        return f.read()

# --- recipes and Dockerfiles -------------------------------------------------------------
for d in ["recipes", "tests/fixtures/docker"]:
    for f in sorted(os.listdir(os.path.join(ROOT, d))):
        if f.endswith(".toml"):
            put("recipe", f, read(f"{d}/{f}"))
for d in ["dockerfiles", "tests/fixtures/docker"]:
    for f in sorted(os.listdir(os.path.join(ROOT, d))):
        if f.endswith("Dockerfile"):
            put("dockerfile", f, read(f"{d}/{f}"))

# --- build logs: the fake configure's output, plain and with BuildKit's prefix -------------
env = dict(os.environ, PYTORCH_ROCM_ARCH="gfx1100;gfx1151", USE_ROCM="ON", USE_DISTRIBUTED="OFF")
conf = subprocess.run(["sh", os.path.join(ROOT, "tests/fixtures/docker/fake-configure.sh")],
                      env=env, capture_output=True, check=True).stdout
put("log_scan", "configure-plain", b"\x05" + conf)
prefixed = b"".join(b"#12 %d.%d " % (100 + i, i % 10) + l + b"\n" for i, l in enumerate(conf.splitlines()))
put("log_scan", "configure-buildkit", b"\x11" + b"#12 [torch-build 6/7] RUN python setup.py bdist_wheel\n" + prefixed)
put("log_scan", "failures", b"\x2a" + b"""Step 2/9 : RUN echo USE_DISTRIBUTED=0
 ---> Running in 0123456789ab
c++: fatal error: Killed signal terminated program cc1plus
ninja: build stopped: subcommand failed.
ImportError: cannot import name 'PrefixStore' from 'torch.distributed'
[output clipped, log limit 2MiB reached]
free(): double free detected in tcache 2\r
-- Could not detect ROCm arch for GPUs on machine
[1234/5678] Building HIP object caffe2/foo.o
""")

# --- ELF shared objects with offload bundles ----------------------------------------------
GFX1151 = "hipv4-amdgcn-amd-amdhsa--gfx1151"
GFX1100 = "hipv4-amdgcn-amd-amdhsa--gfx1100"
HOST = "host-x86_64-unknown-linux-gnu-"

def bundle(triples, body=16):
    b = b"__CLANG_OFFLOAD_BUNDLE__" + struct.pack("<Q", len(triples))
    off = 32 + sum(24 + len(t) for t in triples)
    for t in triples:
        b += struct.pack("<QQQ", off, body, len(t)) + t.encode()
        off += body
    return b + b"\xab" * (off - len(b))

def ccob(inner, method="zstd", version=3):
    if method == "zstd":
        payload = subprocess.run(["zstd", "-q", "-c", "-3"], input=inner, capture_output=True, check=True).stdout
        m = 1
    else:
        payload = zlib.compress(inner)
        m = 0
    if version == 3:
        return b"CCOB" + struct.pack("<HHQQQ", 3, m, 32 + len(payload), len(inner), 0) + payload
    if version == 2:
        return b"CCOB" + struct.pack("<HHIII", 2, m, 24 + len(payload), len(inner), 0) + payload
    return b"CCOB" + struct.pack("<HHII", 1, m, len(inner), 0) + b"\0" * 4 + payload

fatbin = bundle([HOST, GFX1151]) + b"\0" * 16 + ccob(bundle([HOST, GFX1151, GFX1100]))
put("bundle", "plain-and-ccob-zstd", fatbin)
put("bundle", "ccob-zlib-v2", ccob(bundle([HOST, GFX1100]), "zlib", 2))
put("bundle", "ccob-zlib-v1", ccob(bundle([GFX1151]), "zlib", 1))

tmp = tempfile.mkdtemp(prefix="forge-seeds-")
def cc(out, src, args=()):
    c = os.path.join(tmp, out + ".c")
    with open(c, "w") as f:
        f.write(src)
    subprocess.run(["cc", "-shared", "-fPIC", "-Os", "-s", "-Wl,-z,max-page-size=4096", "-o",
                    os.path.join(tmp, out), c, *args], check=True)
    with open(os.path.join(tmp, out), "rb") as f:
        return f.read()

def c_array(name, data):
    return ('__attribute__((section(".hip_fatbin"), used)) const unsigned char %s[%d] = {%s};\n'
            % (name, len(data), ",".join(str(b) for b in data)))

amdhip = cc("libamdhip64.so.6", "int hipMalloc(void **p, unsigned long n){return 0;}\n", ["-Wl,-soname,libamdhip64.so.6"])
hsa = cc("libhsa-runtime64.so.1", "int hsa_init(void){return 0;}\n", ["-Wl,-soname,libhsa-runtime64.so.1"])
cpu = cc("libtorch_cpu.so", "void _ZN4c10d11PrefixStoreC1Ev(void){}\nvoid _ZN4c10d12ProcessGroupC2Ev(void){}\nint c10d_marker = 1;\n",
         ["-Wl,-soname,libtorch_cpu.so"])
hip = cc("libtorch_hip.so",
         "extern int hipMalloc(void **p, unsigned long n);\nextern int hsa_init(void);\n"
         "int torch_hip_entry(void){ void *p; return hipMalloc(&p, 1) + hsa_init(); }\n" + c_array("fatbin", fatbin),
         ["-Wl,-soname,libtorch_hip.so", "-Wl,-rpath,$ORIGIN", "-Wl,--no-as-needed", "-L", tmp,
          "-l:libamdhip64.so.6", "-l:libhsa-runtime64.so.1"])
kref = cc("libkpacked.so",
          'extern int hipMalloc(void **p, unsigned long n);\n'
          '__attribute__((section(".rocm_kpack_ref"), used)) const char kref[] = "torch/lib/torch.kpack";\n'
          "int k(void){ void *p; return hipMalloc(&p, 1); }\n",
          ["-Wl,--no-as-needed", "-L", tmp, "-l:libamdhip64.so.6"])
put("elf", "libtorch_hip.so", hip)
put("elf", "libtorch_cpu.so", cpu)
put("elf", "libkpacked.so", kref)

# --- kpack: KPAK, version, TOC offset, MessagePack TOC -------------------------------------
def mp(v):
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, int):
        return bytes([v]) if 0 <= v < 128 else b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)
toc = mp({"gfx_arches": ["gfx1151", "gfx1100"],
          "toc": {"libkpacked.so": {"gfx1151": {"offset": 16, "size": 8}, "gfx1201": {"offset": 24, "size": 8}}}})
kpack = b"KPAK" + struct.pack("<IQ", 1, 32) + b"\xcc" * 16 + toc
put("kpack", "torch.kpack", kpack)

# --- wheels --------------------------------------------------------------------------------
def wheel(members, zip64=False, compression=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        for n, d in members:
            i = zipfile.ZipInfo(n)
            i.compress_type = compression
            with z.open(i, "w", force_zip64=zip64) as f:
                f.write(d)
    return b.getvalue()
meta = ("torch-2.9.1+rocm7.1.1.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
put("wheel", "rocm-torch.whl", wheel([("torch/lib/libtorch_cpu.so", cpu), ("torch/lib/libtorch_hip.so", hip),
                                     ("torch/lib/libamdhip64.so.6", amdhip), ("torch/lib/libhsa-runtime64.so.1", hsa),
                                     ("torch/__init__.py", b"__version__ = '2.9.1'\n"), meta]))
put("wheel", "kpack-zip64.whl", wheel([("torch/lib/libtorch_cpu.so", cpu), ("torch/lib/libkpacked.so", kref),
                                      ("torch/lib/torch.kpack", kpack), meta], zip64=True))
put("wheel", "stored.whl", wheel([("torch/lib/libtorch_cpu.so", cpu), meta], compression=zipfile.ZIP_STORED))

# --- the wheel stage's tar -----------------------------------------------------------------
def tar(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, kind, link in entries:
            i = tarfile.TarInfo(name)
            i.type = kind
            if link:
                i.linkname = link
            i.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return b.getvalue()
put("wheel_tar", "stage.tar", tar([("./", b"", tarfile.DIRTYPE, None),
                                   ("torch-2.9.1-cp312-cp312-linux_x86_64.whl", b"PK\x05\x06" + b"\0" * 18, tarfile.REGTYPE, None),
                                   ("build.log", b"[1/3] ok\n", tarfile.REGTYPE, None),
                                   ("etc/hosts", b"127.0.0.1 x\n", tarfile.REGTYPE, None)]))
put("wheel_tar", "link.tar", tar([("x.whl", b"", tarfile.SYMTYPE, "/etc/passwd")]))
put("wheel_tar", "escape.tar", tar([("../x.whl", b"bad", tarfile.REGTYPE, None)]))

# --- build stream messages -----------------------------------------------------------------
def pb_key(field, wt):
    return varint(field << 3 | wt)
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def pb_bytes(field, data):
    data = data.encode() if isinstance(data, str) else data
    return pb_key(field, 2) + varint(len(data)) + data
def timestamp(s):
    return pb_key(1, 0) + varint(s)
vertex = pb_bytes(1, "sha256:" + "ab" * 32) + pb_bytes(3, "[torch-build 6/7] RUN sh /src/fake-configure.sh") + pb_bytes(5, timestamp(1700000000))
failed = pb_bytes(1, "sha256:" + "cd" * 32) + pb_bytes(3, "[torch-build 7/7] RUN false") + pb_bytes(5, timestamp(1700000001)) + pb_bytes(7, "process \"/bin/sh -c false\" did not complete successfully: exit code: 1")
log = pb_bytes(1, "sha256:" + "ab" * 32) + pb_bytes(2, timestamp(1700000002)) + pb_key(3, 0) + varint(1) + pb_bytes(4, conf[:200])
status = pb_bytes(1, vertex) + pb_bytes(3, log)
trace = lambda s: json.dumps({"id": "moby.buildkit.trace", "aux": base64.b64encode(s).decode()})
put("build_events", "buildkit", "\n".join([trace(status), trace(pb_bytes(1, failed)),
                                           json.dumps({"aux": {"ID": "sha256:" + "ef" * 32}})]) + "\n")
put("build_events", "classic", "\n".join(json.dumps({"stream": s}) for s in
                                         ["Step 1/3 : FROM debian\n", " ---> abc\n", conf.decode(), "Successfully built abc\n"])
    + "\n" + json.dumps({"errorDetail": {"message": "failed"}, "error": "failed"}) + "\n")

# --- the image probe's JSON ----------------------------------------------------------------
put("probe_json", "probe", json.dumps({
    "dpkg": {"rocm-smi-lib": "7.8.0.70101-43~24.04", "amd-smi-lib": "26.2.0.70101-43~24.04", "hip-runtime-amd": "7.1.52802.70002-1", "bash": "5.2.15-2+b2"},
    "dists": {"vllm": "0.12.0", "python_multipart": "0.0.20", "uvloop": "0.21.0", "amdsmi": "26.2.0"},
    "files": {"/opt/rocm/lib/libamdhip64.so": True, "/opt/rocm/lib/libamd_smi.so": False}}))
put("probe_json", "errors", json.dumps({"dpkg": {}, "dpkg_error": "[Errno 2] No such file", "dists": {}, "dists_error": "boom", "files": {}}))
# runtime_probe: a flags byte (bit 0 GPU absent, 1 --require-gpu, 2 extra imports, 3 chat),
# then the runtime probe's real output (tests/fixtures/runtime, from an H200) or a server body
_probe = open(os.path.join(ROOT, "tests/fixtures/runtime/h200-probe.out"), "rb").read()
put("runtime_probe", "h200-gpu", b"\x00" + _probe)
put("runtime_probe", "h200-absent-require", b"\x07" + _probe)
put("runtime_probe", "models", b'\x00{"object":"list","data":[{"id":"facebook/opt-125m","object":"model"}]}')
put("runtime_probe", "chat", b'\x08{"choices":[{"index":0,"message":{"role":"assistant","content":"Paris"}}]}')
put("runtime_probe", "completion", b'\x00{"choices":[{"index":0,"text":" the capital"}]}')
shutil.rmtree(tmp)
total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(SEEDS) for f in fs)
print(f"seeds: {total} bytes in {sum(len(fs) for _, _, fs in os.walk(SEEDS))} files")
