//! The prebuilt path (issue 23): a recipe that takes torch as a pinned wheel runs phase 3 on
//! that wheel before anything is built, and stops there, before any compile, when the wheel has
//! no distributed, no HIP, or is not the pinned file. The wheels are built here from real shared
//! objects (`cc -shared`) in TheRock's layout: torch's libtorch_hip.so finds its HIP runtime in
//! the `rocm-sdk-core` wheel beside it (RUNPATH `$ORIGIN/../../_rocm_sdk_core/lib`), not in a
//! system /opt/rocm.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod common;
use common::{bundle, cc, engine};

const VERSION: &str = "2.9.1+rocm7.13.0a20260315";
const SDK: &str = "7.13.0a20260315";
const GFX1151: &str = "hipv4-amdgcn-amd-amdhsa--gfx1151";
const HOST: &str = "host-x86_64-unknown-linux-gnu-";

/// A fresh `forge-prebuilt-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("prebuilt-{name}"))
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::fs::read(path).unwrap());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// TheRock's ROCm as a wheel: the HIP and HSA runtimes under `_rocm_sdk_core/lib`.
fn sdk_wheel(dir: &Path) -> PathBuf {
    let lib = dir.join("sdk");
    std::fs::create_dir_all(&lib).unwrap();
    let hip = cc(
        &lib,
        "libamdhip64.so.7",
        "int hipMalloc(void **p, unsigned long n){return 0;}\n",
        &["-Wl,-soname,libamdhip64.so.7"],
    );
    let hsa = cc(
        &lib,
        "libhsa-runtime64.so.1",
        "int hsa_init(void){return 0;}\n",
        &["-Wl,-soname,libhsa-runtime64.so.1"],
    );
    let path = dir.join(format!("rocm_sdk_core-{SDK}-py3-none-linux_x86_64.whl"));
    common::write_zip(
        &path,
        &[
            ("_rocm_sdk_core/lib/libamdhip64.so.7".into(), hip),
            ("_rocm_sdk_core/lib/libhsa-runtime64.so.1".into(), hsa),
            ("_rocm_sdk_core/__init__.py".into(), Vec::new()),
            (
                format!("rocm_sdk_core-{SDK}.dist-info/WHEEL"),
                b"Wheel-Version: 1.0\n".to_vec(),
            ),
        ],
        false,
    );
    path
}

/// A torch wheel as TheRock lays it out; `distributed`: c10d in libtorch_cpu.so; `hip`: a
/// libtorch_hip.so that loads the SDK wheel's HIP runtime, with gfx1151 code.
fn torch_wheel(dir: &Path, distributed: bool, hip: bool) -> PathBuf {
    let lib = dir.join("torch-lib");
    std::fs::create_dir_all(&lib).unwrap();
    let cpu = if distributed {
        "void _ZN4c10d11PrefixStoreC1Ev(void){}\nvoid _ZN4c10d12ProcessGroupC2Ev(void){}\n"
    } else {
        "void _ZN3c106TensorC1Ev(void){}\n"
    };
    let mut members = vec![(
        "torch/lib/libtorch_cpu.so".to_owned(),
        cc(
            &lib,
            "libtorch_cpu.so",
            cpu,
            &["-Wl,-soname,libtorch_cpu.so"],
        ),
    )];
    if hip {
        // link against stand-ins of the SDK's sonames, then ship without them: the loader finds
        // the SDK wheel's copies through the RUNPATH
        let link = dir.join("link");
        std::fs::create_dir_all(&link).unwrap();
        cc(
            &link,
            "libamdhip64.so.7",
            "int hipMalloc(void **p, unsigned long n){return 0;}\n",
            &["-Wl,-soname,libamdhip64.so.7"],
        );
        cc(
            &link,
            "libhsa-runtime64.so.1",
            "int hsa_init(void){return 0;}\n",
            &["-Wl,-soname,libhsa-runtime64.so.1"],
        );
        let fatbin: Vec<String> = bundle(&[HOST, GFX1151]).iter().map(u8::to_string).collect();
        let src = format!(
            "extern int hipMalloc(void **p, unsigned long n);\nextern int hsa_init(void);\n\
             int torch_hip_entry(void){{ void *p; return hipMalloc(&p, 1) + hsa_init(); }}\n\
             __attribute__((section(\".hip_fatbin\"), used, aligned(4096))) const unsigned char fb[{}] = {{{}}};\n",
            fatbin.len(),
            fatbin.join(",")
        );
        let l = link.to_str().unwrap();
        members.push((
            "torch/lib/libtorch_hip.so".into(),
            cc(
                &lib,
                "libtorch_hip.so",
                &src,
                &[
                    "-Wl,-soname,libtorch_hip.so",
                    "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../../_rocm_sdk_core/lib",
                    "-Wl,--no-as-needed",
                    "-L",
                    l,
                    "-l:libamdhip64.so.7",
                    "-l:libhsa-runtime64.so.1",
                ],
            ),
        ));
    }
    members.push((
        "torch/__init__.py".into(),
        b"__version__ = '2.9.1'\n".to_vec(),
    ));
    members.push((
        format!("torch-{VERSION}.dist-info/WHEEL"),
        b"Wheel-Version: 1.0\n".to_vec(),
    ));
    // as TheRock's build_prod_wheels.py sets it: torch requires the `rocm` selector
    members.push((
        format!("torch-{VERSION}.dist-info/METADATA"),
        format!(
            "Metadata-Version: 2.1\nName: torch\nVersion: {VERSION}\nRequires-Dist: filelock\n\
             Requires-Dist: rocm[libraries]=={SDK}\nRequires-Dist: rocm[devel]=={SDK}; extra == \"devel\"\n"
        )
        .into_bytes(),
    ));
    let path = dir.join(format!("torch-{VERSION}-cp313-cp313-linux_x86_64.whl"));
    common::write_zip(&path, &members, false);
    path
}

/// TheRock's devel wheel (the compiler every prebuilt recipe takes; not read by phase 3) and the
/// `rocm` selector's sdist (what torch requires), in `dir`.
fn devel_and_selector(dir: &Path) {
    common::write_zip(
        &dir.join(format!("rocm_sdk_devel-{SDK}-py3-none-linux_x86_64.whl")),
        &[
            ("_rocm_sdk_devel/__init__.py".into(), Vec::new()),
            (
                format!("rocm_sdk_devel-{SDK}.dist-info/WHEEL"),
                b"Wheel-Version: 1.0\n".to_vec(),
            ),
        ],
        false,
    );
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join(format!("rocm-{SDK}.tar.gz"))).unwrap(),
        flate2::Compression::fast(),
    );
    let mut t = tar::Builder::new(gz);
    let info = format!("Metadata-Version: 2.1\nName: rocm\nVersion: {SDK}\n");
    let mut h = tar::Header::new_gnu();
    h.set_size(info.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, format!("rocm-{SDK}/PKG-INFO"), info.as_bytes())
        .unwrap();
    t.into_inner().unwrap().finish().unwrap();
}

/// A prebuilt recipe in `dir` taking `torch` and the SDK wheel from `dir/wheelhouse`, with the
/// devel wheel and the `rocm` sdist where the wheelhouse has them (before the SDK's table).
fn recipe(dir: &Path, torch: &Path, sdk: &Path, torch_pin: Option<&str>) -> PathBuf {
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let text = format!(
        r#"schema = 1
name = "forge-pb-prebuilt"
rocm = "7.13.0"
archs = ["gfx1151"]
base-image = "forge-test-base:trixie"
dockerfile = "forge:vllm-rocm-prebuilt.Dockerfile"
context = "."

[image]
tag = "forge-pb-prebuilt:test"
target = "runtime"
wheel-stage = "wheels"

[vllm]
repo = "file:///nonexistent/vllm.git"
ref = "v0.12.0"

[taken.torch]
version = "{VERSION}"
wheel = "{}"
sha256 = "{}"

{}[taken.rocm-sdk-core]
version = "{SDK}"
wheel = "{}"
sha256 = "{}"

[checks]
wheel-min-bytes = 1000

[checks.reasons]
wheel-min-bytes = "test wheels from cc are a few kB"
"#,
        name(torch),
        torch_pin.map_or_else(|| sha256(torch), str::to_owned),
        [
            (
                "rocm-sdk-devel",
                format!("rocm_sdk_devel-{SDK}-py3-none-linux_x86_64.whl")
            ),
            ("rocm", format!("rocm-{SDK}.tar.gz")),
        ]
        .iter()
        .map(|(t, f)| (t, f, sdk.with_file_name(f)))
        .filter(|(_, _, p)| p.is_file())
        .map(|(t, f, p)| format!(
            "[taken.{t}]\nversion = \"{SDK}\"\nwheel = \"{f}\"\nsha256 = \"{}\"\n\n",
            sha256(&p)
        ))
        .collect::<String>(),
        name(sdk),
        sha256(sdk)
    );
    let p = dir.join("prebuilt.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A prebuilt test directory with its wheelhouse; returns (the temp dir: the test's directory,
/// removed when dropped; torch wheel, sdk wheel).
fn setup(name: &str, distributed: bool, hip: bool) -> (TempDir, PathBuf, PathBuf) {
    let tmp = tempdir(name);
    let house = tmp.path().join("wheelhouse");
    std::fs::create_dir_all(&house).unwrap();
    let torch = torch_wheel(&house, distributed, hip);
    let sdk = sdk_wheel(&house);
    devel_and_selector(&house);
    // the compile products beside the wheels are no part of the wheelhouse
    for d in ["torch-lib", "link", "sdk"] {
        let _ = std::fs::remove_dir_all(house.join(d));
    }
    (tmp, torch, sdk)
}

fn build(dir: &Path, recipe: &Path, extra: &[&str]) -> (Output, serde_json::Value, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["build", "-q", "--no-export", "--run-id", "t", "--recipe"])
        .arg(recipe)
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .args(extra)
        .output()
        .unwrap();
    let took = t.elapsed();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("artifacts/t/run.json")).unwrap_or_else(|e| {
            panic!(
                "no run.json ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }),
    )
    .unwrap();
    (out, rec, took)
}

fn phase<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no phase {id}: {rec:#}"))
}

fn check<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["checks"].as_array().unwrap())
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {rec:#}"))
}

fn order(rec: &serde_json::Value) -> Vec<String> {
    rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The run stopped at phase 3: the build phase never ran (no build log), the reason names the
/// failed gate, and it took well under a minute.
fn stopped_at_phase_3(rec: &serde_json::Value, dir: &Path, took: Duration, gate: &str) {
    let b = phase(rec, "build");
    assert_eq!(b["status"], "skip", "{b:#}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{gate} failed in the wheel phase")),
        "{reason}"
    );
    assert!(
        !dir.join("artifacts/t/build.log").exists(),
        "nothing was built, so there is no build log"
    );
    assert_eq!(phase(rec, "image")["status"], "skip");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("forge build stopped at phase 3 on {gate} after {took:.1?}");
}

#[test]
fn a_taken_torch_without_distributed_stops_the_run_at_phase_3_before_any_compile() {
    if !engine() {
        return;
    }
    let (tmp, torch, sdk) = setup("nodist", false, true);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, None);
    let (out, rec, took) = build(dir, &r, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the wheel phase runs before the build
    let o = order(&rec);
    let pos = |id: &str| o.iter().position(|p| p == id).unwrap();
    assert!(pos("wheel") < pos("build"), "{o:?}");
    assert_eq!(check(&rec, "wheel.taken")["status"], "pass");
    assert_eq!(check(&rec, "3.2")["status"], "fail");
    assert_eq!(check(&rec, "3.3")["status"], "fail");
    assert_eq!(check(&rec, "3.5")["status"], "pass", "HIP is linked");
    stopped_at_phase_3(&rec, dir, took, "3.2");
}

#[test]
fn a_taken_torch_without_hip_stops_the_run_at_phase_3_before_any_compile() {
    if !engine() {
        return;
    }
    let (tmp, torch, sdk) = setup("nohip", true, false);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, None);
    let (out, rec, took) = build(dir, &r, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(check(&rec, "3.2")["status"], "pass", "distributed is there");
    assert_eq!(check(&rec, "wheel.flavour")["status"], "fail");
    assert!(
        check(&rec, "wheel.flavour")["evidence"]
            .as_str()
            .unwrap()
            .starts_with("CPU-only"),
    );
    stopped_at_phase_3(&rec, dir, took, "wheel.flavour");
}

#[test]
fn a_taken_wheel_that_is_not_the_pinned_file_stops_the_run_at_phase_3() {
    if !engine() {
        return;
    }
    let (tmp, torch, sdk) = setup("pin", true, true);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, Some(&"0".repeat(64)));
    let (out, rec, took) = build(dir, &r, &[]);
    assert_eq!(out.status.code(), Some(1));
    let c = check(&rec, "wheel.taken");
    assert_eq!(c["status"], "fail");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("the recipe pins 0000"),
        "{c:#}"
    );
    stopped_at_phase_3(&rec, dir, took, "wheel.taken");
}

#[test]
fn a_taken_torch_whose_rocm_selector_is_not_taken_stops_the_run_at_phase_3() {
    if !engine() {
        return;
    }
    // TheRock's torch requires `rocm[libraries]`; without `[taken.rocm]` pip would take PyPI's
    let (tmp, torch, sdk) = setup("selector", true, true);
    let dir = tmp.path();
    std::fs::remove_file(dir.join(format!("wheelhouse/rocm-{SDK}.tar.gz"))).unwrap();
    let r = recipe(dir, &torch, &sdk, None);
    let (out, rec, took) = build(dir, &r, &[]);
    assert_eq!(out.status.code(), Some(1));
    let c = check(&rec, "wheel.taken-requires");
    assert_eq!(c["status"], "fail", "{c:#}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains(&format!(
            "torch requires `rocm[libraries]=={SDK}` and no [taken.rocm] gives it"
        )),
        "{ev}"
    );
    assert!(!ev.contains("rocm[devel]"), "an extra's requirement: {ev}");
    stopped_at_phase_3(&rec, dir, took, "wheel.taken-requires");
}

#[test]
fn a_good_taken_torch_resolves_hip_against_the_taken_rocm_wheel() {
    if !engine() {
        return;
    }
    let (tmp, torch, sdk) = setup("good", true, true);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, None);
    let (out, rec, _) = build(dir, &r, &["--only", "wheel"]);
    // phase 3 passes; the run's verdict fails only on the deliverables (no image: `--only wheel`)
    assert_eq!(phase(&rec, "wheel")["status"], "pass", "{rec:#}");
    let failed: Vec<&str> = rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["checks"].as_array().unwrap())
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        failed.iter().all(|id| id.starts_with("deliverable.")),
        "{failed:?}; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(phase(&rec, "build")["status"], "skip");
    for id in [
        "wheel.taken",
        "wheel.taken-requires",
        "wheel.flavour",
        "3.1",
        "3.2",
        "3.3",
        "3.4",
        "3.5",
        "3.6",
        "wheel.gpu-targets",
    ] {
        assert_eq!(
            check(&rec, id)["status"],
            "pass",
            "{id}: {:#}",
            check(&rec, id)
        );
    }
    let req = check(&rec, "wheel.taken-requires")["evidence"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        req.contains(&format!("`rocm[libraries]=={SDK}`: taken rocm {SDK}")),
        "{req}"
    );
    let ev = check(&rec, "3.6")["evidence"].as_str().unwrap();
    assert!(
        ev.contains("with the taken wheels beside it (rocm_sdk_core)"),
        "{ev}"
    );
    assert!(
        check(&rec, "3.1")["evidence"]
            .as_str()
            .unwrap()
            .contains("test wheels from cc are a few kB"),
    );
    // without the SDK wheel beside it, the HIP runtime is nowhere: 3.6 cannot pass
    let r = recipe(dir, &torch, &sdk, None);
    let text = std::fs::read_to_string(&r).unwrap();
    let cut = text.find("[taken.rocm-sdk-core]").unwrap();
    let end = text.find("[checks]").unwrap();
    std::fs::write(&r, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    std::fs::remove_dir_all(dir.join("artifacts")).unwrap();
    let (_, rec, _) = build(dir, &r, &["--only", "wheel"]);
    let c = check(&rec, "3.6");
    assert_ne!(c["status"], "pass", "{c:#}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("not found: libamdhip64.so.7"),
        "{c:#}"
    );
}

/// An image as the prebuilt Dockerfile makes it (torch and ROCm as wheels in /opt/venv, no
/// system ROCm), or one that mixes in a system ROCm of another release (`/opt/rocm-7.1.1`).
fn wheel_rocm_image(tag: &str, system_rocm: bool) {
    let tmp = tempdir(&format!("image-{system_rocm}"));
    let d = tmp.path();
    let site = "/opt/venv/lib/python3.13/site-packages";
    let mut df = format!(
        "FROM forge-test-base:trixie\n\
         RUN mkdir -p {site}/rocm_sdk_core-{SDK}.dist-info {site}/torch-{VERSION}.dist-info \\\n \
         && printf 'Metadata-Version: 2.1\\nName: rocm-sdk-core\\nVersion: {SDK}\\n' > {site}/rocm_sdk_core-{SDK}.dist-info/METADATA \\\n \
         && printf 'Metadata-Version: 2.1\\nName: torch\\nVersion: {VERSION}\\n' > {site}/torch-{VERSION}.dist-info/METADATA\n"
    );
    if system_rocm {
        df.push_str(
            "RUN mkdir -p /opt/rocm-7.1.1/.info /opt/rocm-7.1.1/lib && echo 7.1.1-38 > /opt/rocm-7.1.1/.info/version \
             && ln -s /opt/rocm-7.1.1 /opt/rocm\n",
        );
    }
    std::fs::write(d.join("Dockerfile"), df).unwrap();
    let o = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(d)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_audit_fails_the_wheels_rocm_beside_a_system_rocm_of_another_release_naming_both() {
    if !engine() {
        return;
    }
    let (tmp, torch, sdk) = setup("audit", true, true);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, None);
    let audit = |tag: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_forge"))
            .args(["image", tag, "--json", "--recipe"])
            .arg(&r)
            .output()
            .unwrap();
        let j = common::json(&o);
        common::check_of(&j, "image.rocm-versions").clone()
    };
    // the wheels' ROCm alone: one release, the recipe's
    wheel_rocm_image("forge-pb-wheel-rocm:clean", false);
    let c = audit("forge-pb-wheel-rocm:clean");
    common::remove_image("forge-pb-wheel-rocm:clean");
    assert_eq!(c["status"], "pass", "{c:#}");
    // beside a system ROCm of another release: a mix, both named with where they come from
    wheel_rocm_image("forge-pb-wheel-rocm:mixed", true);
    let c = audit("forge-pb-wheel-rocm:mixed");
    common::remove_image("forge-pb-wheel-rocm:mixed");
    assert_eq!(c["status"], "fail", "{c:#}");
    let e = c["evidence"].as_str().unwrap();
    for want in [
        &format!("pip rocm-sdk-core {SDK}") as &str,
        "ROCm 7.1.1: /opt/rocm-7.1.1 from /opt/rocm-7.1.1/.info/version: 7.1.1-38",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn the_prebuilt_dockerfile_refuses_a_base_image_with_a_system_rocm() {
    if !engine() {
        return;
    }
    // phase 3 passes on a good taken torch; then the build of the shipped prebuilt Dockerfile,
    // through forge and the engine, on a base with /opt/rocm-7.1.1 (a second ROCm beside the
    // wheels'): refused by its first RUN, before anything is installed or compiled
    wheel_rocm_image("forge-pb-rocm-base:test", true);
    let (tmp, torch, sdk) = setup("refuse", true, true);
    let dir = tmp.path();
    let r = recipe(dir, &torch, &sdk, None);
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("forge-test-base:trixie", "forge-pb-rocm-base:test");
    std::fs::write(&r, text).unwrap();
    let (out, rec, _) = build(dir, &r, &[]);
    common::remove_image("forge-pb-rocm-base:test");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(phase(&rec, "wheel")["status"], "pass", "{rec:#}");
    assert_eq!(check(&rec, "build.result")["status"], "fail", "{rec:#}");
    let log = std::fs::read_to_string(dir.join("artifacts/t/build.log")).unwrap();
    assert!(
        log.contains(
            "forge: the base image carries ROCm 7.1.1-38; the taken wheels bring their own"
        ),
        "{log}"
    );
}

// ---- the prebuilt path rehearsed: `forge build --rehearse` of the prebuilt recipe's variant,
// on a base with no ROCm, with stand-in wheels from scripts/prebuilt-standins.py ----

static REHEARSAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static PREBUILT_BASE: std::sync::Once = std::sync::Once::new();

/// One prebuilt rehearsal at a time (they share the build cache), on its base made once.
fn rehearsal_engine() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = REHEARSAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() {
        return None;
    }
    PREBUILT_BASE.call_once(|| {
        let st = Command::new("bash")
            .arg(common::root().join("scripts/rehearsal-base.sh"))
            .arg("--prebuilt")
            .status()
            .expect("run scripts/rehearsal-base.sh --prebuilt");
        assert!(st.success(), "scripts/rehearsal-base.sh --prebuilt failed");
    });
    common::ci_make_room(25);
    Some(guard)
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .unwrap()
        .status
        .success()
}

fn rmi(tag: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}

/// The stand-ins (`flags`: `--no-distributed`, `--no-hip`) and the rehearsal of the recipe's
/// variant taking them; returns (the temp dir: the test's directory, removed when dropped; the
/// rehearsal's image tag, output, run record, time).
fn rehearse(name: &str, flags: &[&str]) -> (TempDir, String, Output, serde_json::Value, Duration) {
    let tmp = tempdir(&format!("rehearse-{name}"));
    let dir = tmp.path();
    let tag = format!("forge-pb-rehearsal-{name}:test");
    let rehearsal_tag = format!("{tag}-rehearsal");
    rmi(&rehearsal_tag);
    let o = Command::new("python3")
        .arg(common::root().join("scripts/prebuilt-standins.py"))
        .arg(dir)
        .args(["--tag", &tag])
        // wheels of their own, so every step runs (none served from the build cache) and the
        // live log shows it
        .args([
            "--build-id",
            &format!("{}-{:?}", std::process::id(), std::time::SystemTime::now()),
        ])
        .args(flags)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = dir.join("recipe.toml");
    let (out, rec, took) = build(dir, &r, &["--rehearse"]);
    (tmp, rehearsal_tag, out, rec, took)
}

#[test]
fn the_prebuilt_rehearsal_checks_the_given_torch_then_compiles_only_vllm_on_a_base_without_rocm() {
    let Some(_g) = rehearsal_engine() else { return };
    let (tmp, tag, out, rec, took) = rehearse("good", &[]);
    let dir = tmp.path();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let base = rec["plan"]["base_image"].as_str().unwrap();
    assert!(
        base.starts_with("forge-rehearsal-prebuilt:trixie-"),
        "{base}"
    );
    // phase 3 ran on the wheel it was given, before the build, and the build ran after it
    let o = order(&rec);
    let (w, b) = (
        o.iter().position(|p| p == "wheel").unwrap(),
        o.iter().position(|p| p == "build").unwrap(),
    );
    assert!(w < b, "{o:?}");
    for id in [
        "wheel.taken",
        "wheel.taken-requires",
        "wheel.flavour",
        "3.2",
        "3.3",
        "3.4",
        "3.5",
        "3.6",
    ] {
        assert_eq!(
            check(&rec, id)["status"],
            "pass",
            "{id}: {:#}",
            check(&rec, id)
        );
    }
    let ev = check(&rec, "3.6")["evidence"].as_str().unwrap();
    assert!(ev.contains("torch-2.9.1+rocm7.13.0a20260315-cp313"), "{ev}");
    assert!(
        ev.contains("with the taken wheels beside it (rocm_sdk_core"),
        "{ev}"
    );
    // the plan: vLLM built from its stand-in, every other component taken
    let comps = rec["plan"]["components"].as_array().unwrap();
    let built: Vec<&str> = comps
        .iter()
        .filter(|c| c["how"] == "built")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(built, ["vllm"], "{comps:#?}");
    for t in [
        "torch",
        "triton",
        "torchvision",
        "torchaudio",
        "rocm-sdk-core",
    ] {
        assert!(
            comps.iter().any(|c| c["name"] == t && c["how"] == "taken"),
            "{t}: {comps:#?}"
        );
    }
    // the build log: the taken wheels hash-checked, vLLM's stand-in compiled, no torch or
    // triton compile stage (the source Dockerfile's build-torch/build-triton/...)
    let log = std::fs::read_to_string(dir.join("artifacts/t/build.log")).unwrap();
    assert!(
        log.contains("torch-2.9.1+rocm7.13.0a20260315-cp313-cp313-linux_x86_64.whl: OK"),
        "sha256sum -c"
    );
    assert!(
        log.contains("forge-standin: vllm-build received MAX_JOBS="),
        "{log}"
    );
    // vLLM compiled with the devel wheel's compiler, reached through `rocm-sdk init` and /opt/rocm
    assert!(log.contains("rocm-sdk: devel tree expanded at"), "{log}");
    assert!(log.contains("HIP version: 7.13.0-standin"), "{log}");
    for stage in [
        "[build-torch",
        "[build-triton",
        "[build-vision",
        "[build-audio",
    ] {
        assert!(!log.contains(stage), "{stage} ran:\n{log}");
    }
    assert!(!log.contains("forge-standin: build-torch"), "{log}");
    // the image: no system ROCm; torch imports with its HIP runtime from the rocm-sdk-core wheel
    assert_eq!(check(&rec, "4.4")["status"], "pass");
    let o = Command::new("docker")
        .args(["run", "--rm", &tag, "sh", "-c"])
        .arg(
            "test ! -e /opt/rocm && ! pip show -q rocm-sdk-devel 2>/dev/null && rocm-sdk version && \
             python3 -c 'import torch, amdsmi, vllm; print(torch.version.hip); \
             print([l.split()[-1] for l in open(\"/proc/self/maps\") if \"libamdhip64\" in l][0])'",
        )
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        so.contains("7.13.0") && so.contains("_rocm_sdk_core/lib/libamdhip64.so.7"),
        "{so}"
    );
    eprintln!("prebuilt rehearsal: {took:.1?}");
    rmi(&tag);
}

/// A rehearsal given a bad torch stand-in stops at phase 3: exit 1, `id` failed, no build log,
/// no image, within a minute.
fn rehearsal_stops_at_phase_3(name: &str, flag: &str, id: &str) {
    let Some(_g) = rehearsal_engine() else { return };
    let (tmp, tag, out, rec, took) = rehearse(name, &[flag]);
    let dir = tmp.path();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(check(&rec, id)["status"], "fail", "{:#}", check(&rec, id));
    stopped_at_phase_3(&rec, dir, took, id);
    assert!(!image_exists(&tag), "{tag} was built");
}

#[test]
fn the_prebuilt_rehearsal_without_a_hip_compiler_fails_before_vllms_compile() {
    let Some(_g) = rehearsal_engine() else { return };
    // a devel wheel whose tree holds no hipcc: the real vLLM cannot compile, so the build stops
    // at the Dockerfile's guard, with the finding that names what to take
    let (tmp, tag, out, rec, _) = rehearse("nohipcc", &["--no-hipcc"]);
    let dir = tmp.path();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(check(&rec, "wheel.taken-requires")["status"], "pass");
    let fatal = &rec["outputs"]["build"]["fatal"];
    assert_eq!(fatal["id"], "taken-no-hip-compiler", "{fatal:#}; {err}");
    let log = std::fs::read_to_string(dir.join("artifacts/t/build.log")).unwrap();
    assert!(
        log.contains("forge: no HIP compiler at /opt/rocm/bin/hipcc"),
        "{log}"
    );
    assert!(!log.contains("forge-standin: vllm-build received"), "{log}");
    assert!(!image_exists(&tag), "{tag} was built");
}

#[test]
fn the_prebuilt_rehearsal_of_a_torch_without_distributed_stops_at_phase_3() {
    rehearsal_stops_at_phase_3("nodist", "--no-distributed", "3.2");
}

#[test]
fn the_prebuilt_rehearsal_of_a_torch_without_hip_stops_at_phase_3() {
    rehearsal_stops_at_phase_3("nohip", "--no-hip", "wheel.flavour");
}
