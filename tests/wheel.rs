//! `forge wheel` on wheels built here from real ELF files (`cc -shared`), with `.hip_fatbin`
//! sections holding offload bundles in the real format, zipped as wheels (zip64 included), and
//! on corrupt inputs. Issue #5.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

mod common;
use common::{bundle, cc, check_of, engine};

/// A fresh `forge-wheel-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("wheel-{name}"))
}

/// A CCOB v3 zstd-compressed bundle.
fn ccob(inner: &[u8]) -> Vec<u8> {
    let payload = zstd::encode_all(inner, 3).unwrap();
    let mut b = b"CCOB".to_vec();
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(32 + payload.len() as u64).to_le_bytes());
    b.extend_from_slice(&(inner.len() as u64).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&payload);
    b
}

fn c_array(name: &str, bytes: &[u8]) -> String {
    let body: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    format!(
        "__attribute__((section(\".hip_fatbin\"), used, aligned(4096))) const unsigned char {name}[{}] = {{{}}};\n",
        bytes.len(),
        body.join(",")
    )
}

const GFX1151: &str = "hipv4-amdgcn-amd-amdhsa--gfx1151";
const GFX1100: &str = "hipv4-amdgcn-amd-amdhsa--gfx1100";
const HOST: &str = "host-x86_64-unknown-linux-gnu-";

struct Spec<'a> {
    distributed: bool,
    hip: bool,
    needs_smi: bool,
    fatbin: Vec<u8>,
    extra: Vec<(&'a str, Vec<u8>)>,
    zip64: bool,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            distributed: true,
            hip: true,
            needs_smi: true,
            fatbin: [
                bundle(&[HOST, GFX1151]),
                vec![0; 100],
                ccob(&bundle(&[HOST, GFX1151, GFX1100])),
            ]
            .concat(),
            extra: Vec::new(),
            zip64: false,
        }
    }
}

/// Build a torch-shaped wheel from real shared objects.
fn torch_wheel(dir: &Path, file: &str, spec: &Spec) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let cpu_syms = if spec.distributed {
        "void _ZN4c10d11PrefixStoreC1Ev(void){}\nvoid _ZN4c10d12ProcessGroupC2Ev(void){}\nint c10d_marker = 1;\n"
    } else {
        "void _ZN3c106TensorC1Ev(void){}\n"
    };
    cc(
        &lib,
        "libtorch_cpu.so",
        cpu_syms,
        &["-Wl,-soname,libtorch_cpu.so"],
    );
    members.push((
        "torch/lib/libtorch_cpu.so".into(),
        std::fs::read(lib.join("libtorch_cpu.so")).unwrap(),
    ));
    if spec.hip {
        cc(
            &lib,
            "libamdhip64.so.6",
            "int hipMalloc(void **p, unsigned long n){return 0;}\nvoid __hipRegisterFatBinary(void){}\n",
            &["-Wl,-soname,libamdhip64.so.6"],
        );
        cc(
            &lib,
            "libhsa-runtime64.so.1",
            "int hsa_init(void){return 0;}\n",
            &["-Wl,-soname,libhsa-runtime64.so.1"],
        );
        cc(
            &lib,
            "librocm_smi64.so",
            "int rsmi_init(unsigned long f){return 0;}\n",
            &["-Wl,-soname,librocm_smi64.so"],
        );
        let src = format!(
            "extern int hipMalloc(void **p, unsigned long n);\nextern int hsa_init(void);\nextern int rsmi_init(unsigned long);\n\
             int torch_hip_entry(void){{ void *p; return hipMalloc(&p, 1) + hsa_init() + rsmi_init(0); }}\n{}",
            c_array("fatbin", &spec.fatbin)
        );
        let mut args = vec![
            "-Wl,-soname,libtorch_hip.so",
            "-Wl,-rpath,$ORIGIN",
            "-Wl,--no-as-needed",
            "-L",
        ];
        let libdir = lib.to_str().unwrap().to_owned();
        args.push(&libdir);
        args.extend(["-l:libamdhip64.so.6", "-l:libhsa-runtime64.so.1"]);
        if spec.needs_smi {
            args.push("-l:librocm_smi64.so");
        }
        cc(&lib, "libtorch_hip.so", &src, &args);
        for f in [
            "libtorch_hip.so",
            "libamdhip64.so.6",
            "libhsa-runtime64.so.1",
            "librocm_smi64.so",
        ] {
            members.push((
                format!("torch/lib/{f}"),
                std::fs::read(lib.join(f)).unwrap(),
            ));
        }
    }
    members.push((
        "torch/__init__.py".into(),
        b"__version__ = '2.9.1'\n".to_vec(),
    ));
    members.push((
        "torch-2.9.1+rocm7.1.1.dist-info/WHEEL".into(),
        b"Wheel-Version: 1.0\n".to_vec(),
    ));
    for (n, d) in &spec.extra {
        members.push(((*n).to_owned(), d.clone()));
    }
    let path = dir.join(file);
    write_wheel(&path, &members, spec.zip64);
    path
}

const NAME: &str = "torch-2.9.1+rocm7.1.1-cp312-cp312-linux_x86_64.whl";

fn forge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .output()
        .unwrap()
}

fn wheel_json(path: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["wheel", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = forge(&args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let j = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    (o.status.code().unwrap(), j, err)
}

/// Where `--json`'s resolution says each loaded library was found.
fn loaded(j: &serde_json::Value) -> Vec<String> {
    j["resolution"]["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[1].as_str().unwrap().to_owned())
        .collect()
}

/// Zip `members` as a wheel at `path`.
fn write_wheel(path: &Path, members: &[(String, Vec<u8>)], zip64: bool) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(zip64);
    for (n, d) in members {
        z.start_file(n.as_str(), opts).unwrap();
        z.write_all(d).unwrap();
    }
    z.finish().unwrap();
}

fn status<'a>(j: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    check_of(j, id)
}

#[test]
fn good_rocm_wheel_passes_with_targets_exactly_as_bundled() {
    let tmp = tempdir("good");
    let d = tmp.path();
    let w = torch_wheel(d, NAME, &Spec::default());
    // 3.1's threshold set low: these test wheels are small.
    let recipe = d.join("r.toml");
    std::fs::write(
        &recipe,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/rocm-7.1.1.toml"),
        )
        .unwrap()
        .replace(
            "../dockerfiles/vllm-rocm.Dockerfile",
            "forge:vllm-rocm.Dockerfile",
        )
        .replace("wheel-min-bytes = 2_000_000_000", "wheel-min-bytes = 1000"),
    )
    .unwrap();
    let (code, j, err) = wheel_json(&w, &["--recipe", recipe.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["flavour"], "rocm");
    assert_eq!(j["wheel"]["local"], "rocm7.1.1");
    for id in [
        "3.1",
        "wheel.flavour",
        "3.2",
        "3.3",
        "3.4",
        "3.5",
        "3.6",
        "wheel.gpu-targets",
        "wheel.glibc",
    ] {
        assert_eq!(status(&j, id)["status"], "pass", "{id}: {}", status(&j, id));
    }
    let hip = j["elf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "torch/lib/libtorch_hip.so")
        .unwrap();
    assert_eq!(
        hip["gpu_targets"],
        serde_json::json!(["gfx1151", "gfx1100"])
    );
    assert_eq!(hip["bundles"], 2);
    assert!(
        hip["needed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "libamdhip64.so.6")
    );
    assert!(
        status(&j, "3.2")["evidence"]
            .as_str()
            .unwrap()
            .starts_with("3 defined"),
        "{}",
        status(&j, "3.2")
    );
    // With the default threshold the small wheel fails 3.1 and says why.
    let (code, j, _) = wheel_json(&w, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&j, "3.1")["status"], "fail");
    assert!(
        status(&j, "3.1")["evidence"]
            .as_str()
            .unwrap()
            .contains("CPU-only build per the spec's table")
    );
}

#[test]
fn missing_target_arch_fails_with_invalid_image() {
    let tmp = tempdir("arch");
    let d = tmp.path();
    let spec = Spec {
        fatbin: bundle(&[HOST, GFX1100]),
        ..Spec::default()
    };
    let w = torch_wheel(d, NAME, &spec);
    let (code, j, _) = wheel_json(&w, &[]);
    assert_eq!(code, 1);
    let g = status(&j, "wheel.gpu-targets");
    assert_eq!(g["status"], "fail");
    assert!(
        g["evidence"]
            .as_str()
            .unwrap()
            .contains("libtorch_hip.so has [gfx1100], not gfx1151"),
        "{g}"
    );
    assert!(g["hint"].as_str().unwrap().contains("hipErrorInvalidImage"));
    // asked for gfx1100 it passes
    let (_, j, _) = wheel_json(&w, &["--arch", "gfx1100"]);
    assert_eq!(status(&j, "wheel.gpu-targets")["status"], "pass");
}

#[test]
fn rsmi_without_librocm_smi64_is_the_known_bug() {
    let tmp = tempdir("rsmi");
    let d = tmp.path();
    let spec = Spec {
        needs_smi: false,
        ..Spec::default()
    };
    let w = torch_wheel(d, NAME, &spec);
    let (_, j, _) = wheel_json(&w, &[]);
    let c = status(&j, "3.6");
    assert_eq!(c["status"], "fail", "{c}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains("rsmi_init") && ev.contains("known upstream bug") && ev.contains("LD_PRELOAD"),
        "{ev}"
    );
    assert_eq!(status(&j, "3.5")["status"], "pass");
}

#[test]
fn cpu_only_wheel_without_distributed_fails_3_2_to_3_4() {
    let tmp = tempdir("cpu");
    let d = tmp.path();
    let spec = Spec {
        distributed: false,
        hip: false,
        ..Spec::default()
    };
    let w = torch_wheel(
        d,
        "torch-2.9.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        &spec,
    );
    let (code, j, _) = wheel_json(&w, &[]);
    assert_eq!(code, 1);
    assert_eq!(j["flavour"], "cpu");
    for id in ["3.2", "3.3", "3.4", "wheel.flavour"] {
        assert_eq!(status(&j, id)["status"], "fail", "{id}");
    }
    for id in ["3.5", "3.6", "wheel.gpu-targets"] {
        assert_eq!(status(&j, id)["status"], "skip", "{id}");
    }
    assert!(
        status(&j, "3.2")["hint"]
            .as_str()
            .unwrap()
            .contains("USE_DISTRIBUTED=1")
    );
}

#[test]
fn zip64_wheel_reads_the_same() {
    let tmp = tempdir("zip64");
    let d = tmp.path();
    // More than 65535 members: the archive needs zip64 end records, as multi-GB ROCm wheels do.
    let extra: Vec<(&str, Vec<u8>)> = Vec::new();
    let names: Vec<String> = (0..66_000)
        .map(|i| format!("torch/include/h{i}.h"))
        .collect();
    let extra: Vec<(&str, Vec<u8>)> = extra
        .into_iter()
        .chain(names.iter().map(|n| (n.as_str(), b"//\n".to_vec())))
        .collect();
    let w = torch_wheel(
        d,
        NAME,
        &Spec {
            zip64: true,
            extra,
            ..Spec::default()
        },
    );
    let raw = std::fs::read(&w).unwrap();
    assert!(
        raw.windows(4).any(|x| x == b"PK\x06\x06"),
        "the test wheel has a zip64 end record"
    );
    let (_, j, err) = wheel_json(&w, &["--arch", "gfx1151"]);
    assert_eq!(status(&j, "3.5")["status"], "pass", "{err}");
    assert_eq!(status(&j, "wheel.gpu-targets")["status"], "pass");
}

fn err_of(path: &Path) -> (i32, String) {
    let o = forge(&["wheel", path.to_str().unwrap()]);
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn corrupt_inputs_are_clear_errors() {
    let tmp = tempdir("corrupt");
    let d = tmp.path();
    let good = torch_wheel(d, NAME, &Spec::default());
    let bytes = std::fs::read(&good).unwrap();

    // truncated zip
    let t = d.join("cut").join(NAME);
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    let (code, e) = err_of(&t);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("is not a readable wheel"), "{e}");

    // not a zip at all
    let t = d.join("text").join(NAME);
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::write(&t, "hello, I am text\n").unwrap();
    let (code, e) = err_of(&t);
    assert_eq!(code, 2);
    assert!(e.contains("is not a readable wheel"), "{e}");

    // not a wheel name
    let t = d.join("archive.zip");
    std::fs::write(&t, &bytes).unwrap();
    let (code, e) = err_of(&t);
    assert_eq!(code, 2);
    assert!(e.contains("not a wheel file name"), "{e}");

    // a .so member that is not ELF, and a truncated ELF
    let elfbytes = {
        let lib = d.join("lib/libtorch_cpu.so");
        std::fs::read(lib).unwrap()
    };
    for (sub, member, data, want) in [
        (
            "notelf",
            "torch/lib/libfoo.so",
            b"INPUT(-lbar)\n".to_vec(),
            "not an ELF file",
        ),
        (
            "truncelf",
            "torch/lib/libfoo.so",
            elfbytes[..elfbytes.len() / 3].to_vec(),
            "truncated ELF",
        ),
    ] {
        let dd = d.join(sub);
        std::fs::create_dir_all(&dd).unwrap();
        let w = torch_wheel(
            &dd,
            NAME,
            &Spec {
                hip: false,
                extra: vec![(member, data)],
                ..Spec::default()
            },
        );
        let (code, e) = err_of(&w);
        assert_eq!(code, 2, "{sub}: {e}");
        assert!(e.contains(want) && e.contains("libfoo.so"), "{sub}: {e}");
    }

    // absurd ratio: 256 MB of zeros
    let dd = d.join("bomb");
    std::fs::create_dir_all(&dd).unwrap();
    let w = torch_wheel(
        &dd,
        NAME,
        &Spec {
            hip: false,
            extra: vec![("torch/lib/libzero.so", vec![0u8; 256 << 20])],
            ..Spec::default()
        },
    );
    let (code, e) = err_of(&w);
    assert_eq!(code, 2);
    assert!(e.contains("zip bomb"), "{e}");

    // declared size smaller than the real one
    let dd = d.join("liar");
    std::fs::create_dir_all(&dd).unwrap();
    let w = torch_wheel(
        &dd,
        NAME,
        &Spec {
            hip: false,
            ..Spec::default()
        },
    );
    let mut raw = std::fs::read(&w).unwrap();
    let real = elfbytes.len() as u32;
    let fake = real / 2;
    let mut patched = 0;
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let size_at = if sig == b"PK\x03\x04" { 22 } else { 24 };
        let name_at = if sig == b"PK\x03\x04" { 30 } else { 46 };
        let mut i = 0;
        while let Some(p) = raw[i..].windows(4).position(|w| w == sig) {
            let h = i + p;
            if raw[h + name_at..].starts_with(b"torch/lib/libtorch_cpu.so")
                && raw[h + size_at..h + size_at + 4] == real.to_le_bytes()
            {
                raw[h + size_at..h + size_at + 4].copy_from_slice(&fake.to_le_bytes());
                patched += 1;
            }
            i = h + 4;
        }
    }
    assert_eq!(patched, 2, "patched the local and central headers");
    std::fs::write(&w, &raw).unwrap();
    let (code, e) = err_of(&w);
    assert_eq!(code, 2);
    assert!(
        e.contains("more than its declared") || e.contains("declared"),
        "{e}"
    );

    // a zip without dist-info/WHEEL
    let t = d.join("nometa").join(NAME);
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(&t).unwrap());
    z.start_file(
        "torch/__init__.py",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    z.write_all(b"x").unwrap();
    z.finish().unwrap();
    let (code, e) = err_of(&t);
    assert_eq!(code, 2);
    assert!(e.contains("no *.dist-info/WHEEL"), "{e}");
}

#[test]
fn lib_root_resolves_libraries_outside_the_wheel() {
    let tmp = tempdir("libroot");
    let d = tmp.path();
    // libtorch_hip.so whose HIP libraries are not in the wheel: they live under a root.
    let w = torch_wheel(d, NAME, &Spec::default());
    let raw = std::fs::read(&w).unwrap();
    let mut ar = zip::ZipArchive::new(std::io::Cursor::new(raw)).unwrap();
    let out = d.join("slim").join(NAME);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
    for i in 0..ar.len() {
        let mut f = ar.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        if ["libamdhip64", "libhsa-runtime64", "librocm_smi64"]
            .iter()
            .any(|l| name.contains(l))
        {
            continue;
        }
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut buf).unwrap();
        z.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&buf).unwrap();
    }
    z.finish().unwrap();
    // Without a root the HIP symbols cannot be resolved: skipped, saying how to resolve them.
    let (_, j, _) = wheel_json(&out, &[]);
    let c = status(&j, "3.6");
    assert_eq!(c["status"], "skip", "{c}");
    assert!(
        c["evidence"].as_str().unwrap().contains("--lib-root"),
        "{c}"
    );
    // With a root holding them under /opt/rocm/lib (one through a symlink) they resolve.
    let root = d.join("root");
    let rocm = root.join("opt/rocm/lib");
    std::fs::create_dir_all(&rocm).unwrap();
    for f in ["libamdhip64.so.6", "libhsa-runtime64.so.1"] {
        std::fs::copy(d.join("lib").join(f), rocm.join(f)).unwrap();
    }
    std::fs::copy(
        d.join("lib/librocm_smi64.so"),
        rocm.join("librocm_smi64.so.7"),
    )
    .unwrap();
    std::os::unix::fs::symlink("librocm_smi64.so.7", rocm.join("librocm_smi64.so")).unwrap();
    let (_, j, _) = wheel_json(&out, &["--lib-root", root.to_str().unwrap()]);
    let c = status(&j, "3.6");
    assert_eq!(c["status"], "pass", "{c}");
    let loaded = loaded(&j);
    assert!(
        loaded
            .iter()
            .any(|l| l.ends_with("opt/rocm/lib/librocm_smi64.so.7")),
        "{loaded:?}"
    );
}

/// A wheel whose libtorch_hip.so needs Debian's real ROCm libraries (not in the wheel) and calls
/// `hipMalloc`, `hsa_init`, `rsmi_init`, and optionally a symbol no ROCm library has.
fn wheel_needing_debian_rocm(dir: &Path, bogus: Option<&str>) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    // Link-time stand-ins with the real sonames; the resolution looks at the image's real files.
    cc(
        &lib,
        "libamdhip64.so.5",
        "int hipMalloc(void **p, unsigned long n){return 0;}\n",
        &["-Wl,-soname,libamdhip64.so.5"],
    );
    cc(
        &lib,
        "libhsa-runtime64.so.1",
        "int hsa_init(void){return 0;}\n",
        &["-Wl,-soname,libhsa-runtime64.so.1"],
    );
    cc(
        &lib,
        "librocm_smi64.so.1",
        "int rsmi_init(unsigned long f){return 0;}\n",
        &["-Wl,-soname,librocm_smi64.so.1"],
    );
    let call_bogus = bogus
        .map(|b| format!("extern int {b}(void);\nint bogus_user(void){{ return {b}(); }}\n"))
        .unwrap_or_default();
    let src = format!(
        "extern int hipMalloc(void **p, unsigned long n);\nextern int hsa_init(void);\nextern int rsmi_init(unsigned long);\n\
         int torch_hip_entry(void){{ void *p; return hipMalloc(&p, 1) + hsa_init() + rsmi_init(0); }}\n{call_bogus}{}",
        c_array("fatbin", &bundle(&[HOST, GFX1151]))
    );
    let libdir = lib.to_str().unwrap().to_owned();
    cc(
        &lib,
        "libtorch_hip.so",
        &src,
        &[
            "-Wl,-soname,libtorch_hip.so",
            "-Wl,--no-as-needed",
            "-L",
            &libdir,
            "-l:libamdhip64.so.5",
            "-l:libhsa-runtime64.so.1",
            "-l:librocm_smi64.so.1",
        ],
    );
    cc(
        &lib,
        "libtorch_cpu.so",
        "void _ZN4c10d11PrefixStoreC1Ev(void){}\nvoid _ZN4c10d12ProcessGroupC2Ev(void){}\n",
        &[],
    );
    let path = dir.join(NAME);
    let mut members: Vec<(String, Vec<u8>)> = ["libtorch_hip.so", "libtorch_cpu.so"]
        .iter()
        .map(|f| {
            (
                format!("torch/lib/{f}"),
                std::fs::read(lib.join(f)).unwrap(),
            )
        })
        .collect();
    members.push((
        "torch-2.9.1+rocm7.1.1.dist-info/WHEEL".into(),
        b"Wheel-Version: 1.0\n".to_vec(),
    ));
    write_wheel(&path, &members, false);
    path
}

#[test]
fn image_resolves_against_real_debian_rocm_libraries() {
    if !engine() {
        return;
    }
    let tmp = tempdir("image");
    let d = tmp.path();
    let w = wheel_needing_debian_rocm(d, None);
    let (_, j, err) = wheel_json(&w, &["--image", "forge-test-rocm:trixie"]);
    let c = status(&j, "3.6");
    assert_eq!(c["status"], "pass", "{c} {err}");
    let loaded = loaded(&j);
    assert!(
        loaded
            .iter()
            .any(|l| l.starts_with("forge-test-rocm:trixie:") && l.contains("libamdhip64.so.5.7")),
        "symlink followed to the real file inside the image: {loaded:?}"
    );
    // a symbol none of the real libraries defines is unresolved, and named
    let tmp2 = tempdir("image-bogus");
    let d2 = tmp2.path();
    let w = wheel_needing_debian_rocm(d2, Some("hipNoSuchFunctionInRocm"));
    let (_, j, _) = wheel_json(&w, &["--image", "forge-test-rocm:trixie"]);
    let c = status(&j, "3.6");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("hipNoSuchFunctionInRocm"),
        "{c}"
    );
    // the copy container is gone
    let ps = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=forge.temp"])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "left a container: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}

#[test]
fn real_torch_wheel_from_the_index_has_the_known_verdicts() {
    let fetch = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-real-wheel.sh"))
        .output()
        .unwrap();
    if !fetch.status.success() {
        eprintln!(
            "!!!!!! SKIPPED: could not download a real torch wheel: {} !!!!!!",
            String::from_utf8_lossy(&fetch.stderr)
        );
        return;
    }
    let wheel = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(String::from_utf8_lossy(&fetch.stdout).trim());
    let (code, j, err) = wheel_json(&wheel, &[]);
    assert_eq!(code, 1, "{err}");
    // The index's linux x86_64 torch is a CUDA build: that is what forge must say.
    assert_eq!(j["flavour"], "cuda");
    assert_eq!(status(&j, "wheel.flavour")["status"], "fail");
    for id in ["3.2", "3.3", "3.4", "wheel.glibc"] {
        assert_eq!(status(&j, id)["status"], "pass", "{id}: {}", status(&j, id));
    }
    for id in ["3.5", "3.6", "wheel.gpu-targets"] {
        assert_eq!(status(&j, id)["status"], "skip", "{id}");
    }
    let cuda = j["elf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "torch/lib/libtorch_cuda.so")
        .unwrap();
    assert!(
        cuda["needed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("libcudart")),
        "{cuda}"
    );
}

/// A C++ library built by g++ that needs `GLIBCXX_3.4.21` (std::string of the C++11 ABI), in a
/// wheel tagged `platform`.
fn cxx11_wheel(dir: &Path, platform: &str) -> PathBuf {
    let src = dir.join("greet.cc");
    std::fs::write(
        &src,
        "#include <string>\n\
         extern \"C\" const char *forge_greet(const char *who) {\n\
         \x20   static std::string s;\n\
         \x20   s = std::string(\"hello \") + who;\n\
         \x20   return s.c_str();\n\
         }\n",
    )
    .unwrap();
    let so = dir.join("libgreet.so");
    let o = Command::new("g++")
        .args(["-shared", "-fPIC", "-O0", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .expect("g++ runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dump = Command::new("objdump").arg("-T").arg(&so).output().unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("GLIBCXX_3.4.21"),
        "the test library needs GLIBCXX_3.4.21:\n{dump}"
    );
    assert!(
        !dump.contains("GLIBC_2.18") && !dump.contains("GLIBC_2.3"),
        "the test library stays within GLIBC 2.17:\n{dump}"
    );
    let path = dir.join(format!("greet-1.0-cp312-cp312-{platform}.whl"));
    write_wheel(
        &path,
        &[
            (
                "greet-1.0.dist-info/WHEEL".to_owned(),
                b"Wheel-Version: 1.0\n".to_vec(),
            ),
            ("greet/libgreet.so".to_owned(), std::fs::read(&so).unwrap()),
        ],
        false,
    );
    path
}

/// Issue 12, item 5: manylinux2014 caps GLIBCXX at 3.4.19 (auditwheel's policy), so a wheel
/// that needs GLIBCXX_3.4.21 breaks it though its GLIBC is within 2.17; forge names the symbol,
/// the policy, and the tag the wheel does fit.
#[test]
fn glibcxx_beyond_manylinux2014_fails_wheel_glibc_issue_12() {
    let tmp = tempdir("manylinux");
    let d = tmp.path();
    let w = cxx11_wheel(d, "manylinux2014_x86_64");
    let (code, j, err) = wheel_json(&w, &[]);
    assert_eq!(code, 1, "{err}");
    let c = status(&j, "wheel.glibc");
    assert_eq!(c["status"], "fail", "{c}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains("libgreet.so needs GLIBCXX_3.4.21 from libstdc++.so.6, which breaks manylinux_2_17 (manylinux2014) (GLIBCXX stops at 3.4.19)"),
        "{ev}"
    );
    let hint = c["hint"].as_str().unwrap();
    assert!(hint.contains("manylinux_2_24_x86_64"), "{hint}");
    // The same library under the tag it fits passes; under linux_x86_64 there is no promise.
    let w = cxx11_wheel(d, "manylinux_2_24_x86_64");
    let (_, j, _) = wheel_json(&w, &[]);
    assert_eq!(
        status(&j, "wheel.glibc")["status"],
        "pass",
        "{}",
        status(&j, "wheel.glibc")
    );
    let w = cxx11_wheel(d, "linux_x86_64");
    let (_, j, _) = wheel_json(&w, &[]);
    let c = status(&j, "wheel.glibc");
    assert_eq!(c["status"], "pass");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("no manylinux promise"),
        "{c}"
    );
}

/// Issue 12, item 9: an image that does not exist is a clear error with a hint, as in `forge image`.
#[test]
fn wheel_with_a_missing_image_says_so_with_a_hint_issue_12() {
    if !engine() {
        return;
    }
    let tmp = tempdir("noimage");
    let d = tmp.path();
    let w = torch_wheel(d, NAME, &Spec::default());
    let o = forge(&[
        "wheel",
        w.to_str().unwrap(),
        "--image",
        "forge-no-such-image:nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no image `forge-no-such-image:nope`") && e.contains("hint: `docker images`"),
        "{e}"
    );
}
