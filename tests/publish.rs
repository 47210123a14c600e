//! Publishing a release (issue 24): the bundle's `SHA256SUMS` signed with minisign and checked
//! by the real `minisign` binary (Debian's, the standard verifier) and by `forge verify --key`;
//! `forge report` signing again or removing a stale signature.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

mod common;
use common::{check_of, engine, json, root, stderr};

static SERIAL: Mutex<()> = Mutex::new(());

fn forge(args: &[&str]) -> Output {
    forge_env(args, &[])
}

fn forge_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forge"));
    c.args(args)
        .env_remove("FORGE_SIGN_KEY")
        .env_remove("FORGE_SIGN_KEY_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("forge runs")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("forge-publish-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether `tool` is on PATH; under CI its absence is a failure (scripts/test.sh installs it).
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and `{tool}` is missing: scripts/test.sh installs it"
        );
        eprintln!("!!!!!! SKIPPED: `{tool}` is not installed; this check did not run !!!!!!");
    }
    ok
}

/// A password-less key pair made by the real minisign: (secret, public).
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sk = dir.join(format!("{name}.key"));
    let pk = dir.join(format!("{name}.pub"));
    let o = Command::new("minisign")
        .args(["-G", "-W", "-f", "-s"])
        .arg(&sk)
        .arg("-p")
        .arg(&pk)
        .output()
        .unwrap();
    assert!(o.status.success(), "minisign -G: {}", stderr(&o));
    (sk, pk)
}

fn minisign_verifies(dir: &Path, pk: &Path) -> (bool, String) {
    let o = Command::new("minisign")
        .current_dir(dir)
        .args(["-Vm", "SHA256SUMS", "-p"])
        .arg(pk)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)),
    )
}

fn recipe() -> String {
    root()
        .join("tests/fixtures/docker/good.toml")
        .display()
        .to_string()
}

/// A bundle `forge export -o DIR/` made of a one-file image, signed with `sk`.
fn signed_export(dir: &Path, image: &str, sk: &Path) -> Output {
    let out = format!("{}/", dir.display());
    let r = recipe();
    forge(&[
        "export",
        image,
        "-o",
        &out,
        "--recipe",
        &r,
        "--level",
        "1",
        "--sign-key",
        sk.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn minisign_and_forge_verify_accept_a_signed_bundle_and_reject_one_changed_byte() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("minisign") {
        return;
    }
    let t = tempdir("signed");
    let (sk, pk) = keypair(&t, "forge");
    let (_, other_pk) = keypair(&t, "other");
    let bundle = t.join("bundle");
    let image = format!("forge-test-publish-sign:{}", std::process::id());
    common::tiny_image(&image);
    let o = signed_export(&bundle, &image, &sk);
    common::remove_image(&image);
    assert!(o.status.code().is_some_and(|c| c < 2), "{}", stderr(&o));
    assert!(stderr(&o).contains("signed SHA256SUMS"), "{}", stderr(&o));
    // The key is never written into the bundle.
    let secret = std::fs::read_to_string(&sk).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    for f in std::fs::read_dir(&bundle).unwrap() {
        let f = f.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(secret_line),
            "{} holds the secret key",
            f.display()
        );
    }
    // The standard verifier alone accepts it.
    let (ok, out) = minisign_verifies(&bundle, &pk);
    assert!(ok, "minisign rejected a fresh bundle: {out}");
    let v = forge(&[
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        pk.to_str().unwrap(),
        "--json",
    ]);
    let j = json(&v);
    assert_eq!(check_of(&j, "verify.signature")["status"], "pass", "{j}");
    // Another key: a clear failure naming both key ids, with a hint.
    let v = forge(&[
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        other_pk.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v.status.code(), Some(1));
    let c = check_of(&json(&v), "verify.signature").clone();
    assert_eq!(c["status"], "fail");
    assert!(
        c["evidence"].as_str().unwrap().contains("was made by key"),
        "{c}"
    );
    assert!(c["hint"].is_string(), "{c}");
    // One byte of SHA256SUMS changed: both reject it.
    let sums = bundle.join("SHA256SUMS");
    let mut b = std::fs::read(&sums).unwrap();
    b[0] = if b[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(&sums, &b).unwrap();
    let (ok, out) = minisign_verifies(&bundle, &pk);
    assert!(!ok, "minisign accepted a changed SHA256SUMS: {out}");
    let v = forge(&[
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        pk.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v.status.code(), Some(1));
    assert_eq!(check_of(&json(&v), "verify.signature")["status"], "fail");
    std::fs::remove_dir_all(&t).ok();
}

#[test]
fn a_missing_or_wrong_signing_key_is_an_error_with_a_hint() {
    if !have("minisign") {
        return;
    }
    let t = tempdir("badkey");
    let (_, pk) = keypair(&t, "forge");
    let bundle = format!("{}/b/", t.display());
    for (key, says) in [
        (t.join("nope.key"), "cannot use"),
        (pk.clone(), "not a minisign secret key"),
    ] {
        let o = forge(&[
            "export",
            "forge-test-none:x",
            "-o",
            &bundle,
            "--sign-key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(says) && e.contains("hint:"), "{e}");
    }
    // An encrypted key without its password: said so, never prompted.
    let enc = t.join("enc.key");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'pw\\npw\\n' | minisign -G -f -s {} -p {}",
            enc.display(),
            t.join("enc.pub").display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = forge(&[
        "export",
        "forge-test-none:x",
        "-o",
        &bundle,
        "--sign-key",
        enc.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("FORGE_SIGN_KEY_PASSWORD"),
        "{}",
        stderr(&o)
    );
    let o = forge_env(
        &[
            "export",
            "forge-test-none:x",
            "-o",
            &bundle,
            "--sign-key",
            enc.to_str().unwrap(),
        ],
        &[("FORGE_SIGN_KEY_PASSWORD", "wrong")],
    );
    assert!(stderr(&o).contains("wrong password"), "{}", stderr(&o));
    // A public key that is not one.
    let v = forge(&[
        "verify",
        &bundle,
        "--key",
        t.join("nope.pub").to_str().unwrap(),
    ]);
    assert_eq!(v.status.code(), Some(2));
    assert!(stderr(&v).contains("hint:"), "{}", stderr(&v));
    std::fs::remove_dir_all(&t).ok();
}

#[test]
fn report_signs_again_with_the_key_or_removes_the_stale_signature_and_says_so() {
    if !have("minisign") {
        return;
    }
    let t = tempdir("report");
    let (sk, pk) = keypair(&t, "forge");
    let run = t.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let view = forge::render::run::RunView {
        schema: forge::render::run::SCHEMA,
        run: "publish-report".into(),
        phases: forge::render::run::phases_from_checks(&[forge::report::Check::pass(
            "4.1",
            "image audit",
            "fine",
        )]),
        ..Default::default()
    };
    std::fs::write(
        run.join("report.json"),
        serde_json::to_vec_pretty(&view.to_report_json()).unwrap(),
    )
    .unwrap();
    let r = run.to_str().unwrap();
    let o = forge(&["report", r, "--sign-key", sk.to_str().unwrap()]);
    assert!(o.status.code().is_some_and(|c| c < 2), "{}", stderr(&o));
    assert!(minisign_verifies(&run, &pk).0, "{}", stderr(&o));
    // Rewritten without the key: the old signature would not match, so it is gone, and said.
    let o = forge(&["report", r]);
    assert!(
        stderr(&o).contains("removed the stale SHA256SUMS.minisig"),
        "{}",
        stderr(&o)
    );
    assert!(!run.join("SHA256SUMS.minisig").exists());
    // With the key again: a signature that matches the new SHA256SUMS.
    let o = forge(&["report", r, "--sign-key", sk.to_str().unwrap()]);
    assert!(stderr(&o).contains("signed SHA256SUMS"), "{}", stderr(&o));
    assert!(minisign_verifies(&run, &pk).0);
    std::fs::remove_dir_all(&t).ok();
}

// ---- SBOM: CycloneDX 1.6 of a Debian image with ROCm libraries ----

#[test]
fn sbom_of_a_rocm_image_validates_and_lists_the_hip_libraries_with_their_arches() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("python3") {
        return;
    }
    let t = tempdir("sbom");
    let sbom = t.join("sbom.cdx.json");
    let o = forge(&[
        "image",
        "forge-test-hipcc:trixie",
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.code().is_some_and(|c| c < 2), "{}", stderr(&o));
    // The standard's schema, then the reference library (cyclonedx-python-lib) reads it back.
    let py = Command::new("python3")
        .arg(root().join("tests/fixtures/cyclonedx/check_sbom.py"))
        .arg(&sbom)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "the SBOM does not validate: {}",
        stderr(&py)
    );
    let j: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(j["spec"], "1.6");
    let comps = j["components"].as_array().unwrap();
    let by_name = |n: &str| {
        comps
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing: {j}"))
    };
    // dpkg packages with purls; the HIP runtime with its ROCm release.
    let hip = comps
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("libamdhip64"))
        .expect("libamdhip64 listed");
    assert!(
        hip["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/libamdhip64"),
        "{hip}"
    );
    assert!(hip["properties"]["forge:rocm-release"].is_string(), "{hip}");
    assert!(
        by_name("python3")["purl"]
            .as_str()
            .unwrap()
            .contains("?arch=amd64")
    );
    // The HIP math libraries with the arches their code objects carry, and their packages.
    let rocblas = by_name("librocblas0");
    assert!(
        rocblas["properties"]["forge:gpu-arches"]
            .as_str()
            .unwrap()
            .contains("gfx"),
        "{rocblas}"
    );
    let lib = comps
        .iter()
        .find(|c| c["type"] == "file" && c["name"].as_str().unwrap().starts_with("librocrand.so"))
        .expect("librocrand's library listed");
    assert!(
        lib["properties"]["forge:gpu-arches"]
            .as_str()
            .unwrap()
            .contains("gfx1010"),
        "{lib}"
    );
    assert!(
        lib["properties"]["forge:installed-by"]
            .as_str()
            .unwrap()
            .starts_with("deb librocrand1")
    );
    // Python distributions with purls.
    assert!(
        comps.iter().any(|c| c["purl"]
            .as_str()
            .is_some_and(|p| p.starts_with("pkg:pypi/"))),
        "{j}"
    );
    std::fs::remove_dir_all(&t).ok();
}
