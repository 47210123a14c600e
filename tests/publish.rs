//! Publishing a release (issue 24): the bundle's `SHA256SUMS` signed with minisign and checked
//! by the real `minisign` binary (Debian's, the standard verifier) and by `forge verify --key`;
//! `forge report` signing again or removing a stale signature.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use tempfile::TempDir;

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

/// A fresh `forge-publish-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("publish-{name}"))
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
    let tmp = tempdir("signed");
    let t = tmp.path();
    let (sk, pk) = keypair(t, "forge");
    let (_, other_pk) = keypair(t, "other");
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
}

#[test]
fn a_missing_or_wrong_signing_key_is_an_error_with_a_hint() {
    if !have("minisign") {
        return;
    }
    let tmp = tempdir("badkey");
    let t = tmp.path();
    let (_, pk) = keypair(t, "forge");
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
}

#[test]
fn report_signs_again_with_the_key_or_removes_the_stale_signature_and_says_so() {
    if !have("minisign") {
        return;
    }
    let tmp = tempdir("report");
    let t = tmp.path();
    let (sk, pk) = keypair(t, "forge");
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
    // The release report names the signature file (and says there is no push or SBOM yet).
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("## Publication"), "{md}");
    assert!(
        md.contains("- Signature: `SHA256SUMS.minisig` over `SHA256SUMS`, minisign key"),
        "{md}"
    );
    assert!(
        md.contains("- Registry: not pushed") && md.contains("- SBOM: none"),
        "{md}"
    );
}

// ---- SBOM: CycloneDX 1.6 of a Debian image with ROCm libraries ----

/// The CycloneDX 1.6 JSON schema (Draft 7, vendored in tests/fixtures/cyclonedx/) with the two
/// schemas it references, spdx and jsf, registered under their `$id`s, so no reference is
/// fetched (the crate is built without its HTTP and file resolvers); formats (date-time,
/// iri-reference, idn-email, uri) are asserted, not only annotated.
fn cyclonedx_validator() -> jsonschema::Validator {
    let dir = root().join("tests/fixtures/cyclonedx");
    let referenced = ["spdx.schema.json", "jsf-0.82.schema.json"].map(|name| {
        let schema = common::read_json(&dir.join(name));
        let id = schema["$id"].as_str().expect("a $id").to_owned();
        (id, schema)
    });
    let registry = jsonschema::Registry::new()
        .extend(referenced)
        .and_then(|r| r.prepare())
        .expect("register the referenced schemas");
    jsonschema::draft7::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&common::read_json(&dir.join("bom-1.6.schema.json")))
        .expect("the CycloneDX schema compiles")
}

#[test]
fn sbom_of_a_rocm_image_validates_and_lists_the_hip_libraries_with_their_arches() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("python3") {
        return;
    }
    let tmp = tempdir("sbom");
    let t = tmp.path();
    let sbom = t.join("sbom.cdx.json");
    let o = forge(&[
        "image",
        "forge-test-hipcc:trixie",
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.code().is_some_and(|c| c < 2), "{}", stderr(&o));
    // The standard's schema (in-process, never skipped) ...
    let schema = cyclonedx_validator();
    let doc = common::read_json(&sbom);
    let errors = common::schema_errors(&schema, &doc);
    assert!(
        errors.is_empty(),
        "the SBOM does not match the CycloneDX 1.6 schema:\n{}",
        errors.join("\n")
    );
    let mut bad = doc;
    bad["components"][0]["type"] = "gadget".into();
    assert!(
        !schema.is_valid(&bad),
        "the CycloneDX schema accepted a component of type `gadget`"
    );
    // ... then the reference library (cyclonedx-python-lib) reads it back.
    let py = Command::new("python3")
        .arg(root().join("tests/fixtures/cyclonedx/check_sbom.py"))
        .arg(&sbom)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "cyclonedx-python-lib does not read the SBOM: {}",
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
}

// ---- Push: Debian's docker-registry (the distribution reference implementation) on 127.0.0.1 ----

/// A registry process on 127.0.0.1, killed on drop.
struct Registry {
    child: std::process::Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `docker-registry serve` with a config made here; with `user`, htpasswd basic auth
/// (bcrypt, as the registry requires).
fn registry(dir: &Path, user: Option<(&str, &str)>) -> Registry {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.join("data").display()
    );
    if let Some((u, p)) = user {
        let o = Command::new("htpasswd")
            .args(["-Bbn", u, p])
            .output()
            .unwrap();
        assert!(o.status.success());
        std::fs::write(dir.join("htpasswd"), &o.stdout).unwrap();
        cfg.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    std::fs::write(dir.join("config.yml"), cfg).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Registry { child, addr }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

fn image_id(r: &str) -> String {
    let o = docker(&["image", "inspect", "--format", "{{.Id}}", r]);
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A bundle whose manifest names `image` (what push reads), without exporting it.
fn manifest_bundle(dir: &Path, image: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let m = serde_json::json!({
        "schema": 1, "kind": "forge-bundle", "run": "publish-test",
        "image": {"tag": image, "id": image_id(image)},
    });
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    std::fs::write(dir.join("SHA256SUMS"), "").unwrap();
}

fn push(dir: &Path, reference: &str, docker_config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["push", dir.to_str().unwrap(), reference, "--json"];
    args.extend_from_slice(extra);
    forge_env(&args, &[("DOCKER_CONFIG", docker_config.to_str().unwrap())])
}

#[test]
fn push_records_the_digest_a_pull_by_it_gives_the_image_and_a_moved_tag_fails_verify() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("docker-registry") || !have("minisign") {
        return;
    }
    let tmp = tempdir("push");
    let t = tmp.path();
    let reg = registry(t, None);
    let (sk, pk) = keypair(t, "forge");
    let image = format!("forge-test-publish-push:{}", std::process::id());
    common::tiny_image(&image);
    let bundle = t.join("bundle");
    let o = signed_export(&bundle, &image, &sk);
    assert!(o.status.code().is_some_and(|c| c < 2), "{}", stderr(&o));
    let want = image_id(&image);
    let reference = format!("{}/forge/publish:t1", reg.addr);
    let empty_cfg = t.join("docker-config");
    std::fs::create_dir_all(&empty_cfg).unwrap();
    let o = push(
        &bundle,
        &reference,
        &empty_cfg,
        // The one-file image is under the recipe's size thresholds: a failed run, pushed
        // explicitly.
        &["--sign-key", sk.to_str().unwrap(), "--allow-failed"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    let digest = j["registry"]["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{j}");
    // Recorded in manifest.json, SHA256SUMS refreshed and signed again (minisign accepts it).
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["registry"]["digest"], digest.as_str());
    assert!(minisign_verifies(&bundle, &pk).0);
    // docker rmi, then a pull by the recorded digest gives the same image id.
    let pinned = m["registry"]["pinned"].as_str().unwrap().to_owned();
    common::remove_image(&image);
    common::remove_image(&reference);
    let o = docker(&["pull", &pinned]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(image_id(&pinned), want);
    let v = forge(&[
        "verify",
        bundle.to_str().unwrap(),
        "--registry",
        "--key",
        pk.to_str().unwrap(),
        "--json",
    ]);
    let jv = json(&v);
    assert_eq!(check_of(&jv, "verify.registry")["status"], "pass", "{jv}");
    assert_eq!(check_of(&jv, "verify.signature")["status"], "pass", "{jv}");
    // The tag moved to another image: verify against the registry fails, naming both.
    let other = format!("forge-test-publish-other:{}", std::process::id());
    common::tiny_image(&other);
    // (a different image: another file in it)
    let d = t.join("other");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("x"), "another image\n").unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -c x | docker import - {reference} >/dev/null && docker push -q {reference} >/dev/null", d.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let v = forge(&["verify", bundle.to_str().unwrap(), "--registry", "--json"]);
    assert_eq!(v.status.code(), Some(1));
    let c = check_of(&json(&v), "verify.registry").clone();
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["evidence"].as_str().unwrap().contains("the tag moved"),
        "{c}"
    );
    for r in [&pinned, &reference, &other] {
        common::remove_image(r);
    }
    drop(reg);
}

#[test]
fn push_with_basic_auth_reads_the_docker_config_and_refuses_bad_input() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("docker-registry") || !have("htpasswd") {
        return;
    }
    let tmp = tempdir("auth");
    let t = tmp.path();
    let reg = registry(t, Some(("forge", "s3cret")));
    let bundle = t.join("bundle");
    let image = format!("forge-test-publish-auth:{}", std::process::id());
    common::tiny_image(&image);
    manifest_bundle(&bundle, &image);
    let reference = format!("{}/forge/auth:t1", reg.addr);
    let cfg = |name: &str, body: serde_json::Value| {
        let d = t.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), body.to_string()).unwrap();
        d
    };
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // A failed run is refused without --allow-failed (this bundle has no archive: verify fails).
    let good = cfg(
        "good",
        serde_json::json!({"auths": {reg.addr.clone(): {"auth": b64("forge:s3cret")}}}),
    );
    let o = push(&bundle, &reference, &good, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--allow-failed"), "{}", stderr(&o));
    // Right password from `auths`.
    let o = push(&bundle, &reference, &good, &["--allow-failed"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("pushing as forge"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("s3cret") && !String::from_utf8_lossy(&o.stdout).contains("s3cret")
    );
    // A credential helper (`credsStore`), as the docker CLI calls it.
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-forgetest");
    std::fs::write(&helper, "#!/bin/sh\nread r\necho '{\"ServerURL\":\"'$r'\",\"Username\":\"forge\",\"Secret\":\"s3cret\"}'\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&helper)
        .status()
        .unwrap();
    let store = cfg("store", serde_json::json!({"credsStore": "forgetest"}));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = forge_env(
        &[
            "push",
            bundle.to_str().unwrap(),
            &reference,
            "--allow-failed",
        ],
        &[("DOCKER_CONFIG", store.to_str().unwrap()), ("PATH", &path)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("docker-credential-forgetest"),
        "{}",
        stderr(&o)
    );
    // Wrong password, no credentials: errors with a hint.
    let wrong = cfg(
        "wrong",
        serde_json::json!({"auths": {reg.addr.clone(): {"auth": b64("forge:nope")}}}),
    );
    for c in [&wrong, &t.join("none")] {
        let o = push(&bundle, &reference, c, &["--allow-failed"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("push of") && e.contains("hint:") && e.contains("docker login"),
            "{e}"
        );
    }
    // Bad input: a malformed reference; a registry that is not there.
    let o = push(&bundle, "127.0.0.1:1/Bad Ref", &good, &["--allow-failed"]);
    assert_eq!(o.status.code(), Some(2));
    let nowhere = format!("127.0.0.1:{}/forge/x:1", free_port());
    let o = push(&bundle, &nowhere, &good, &["--allow-failed"]);
    common::remove_image(&nowhere);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    common::remove_image(&image);
    common::remove_image(&reference);
    drop(reg);
}

#[test]
fn a_push_cut_midway_is_an_error_and_records_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !engine() || !have("docker-registry") {
        return;
    }
    let tmp = tempdir("cut");
    let t = tmp.path();
    let mut reg = registry(t, None);
    let bundle = t.join("bundle");
    // forge-test-base:trixie (~250 MB): long enough a push to cut.
    manifest_bundle(&bundle, "forge-test-base:trixie");
    let reference = format!("{}/forge/cut:t1", reg.addr);
    let cfg = t.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args([
            "push",
            bundle.to_str().unwrap(),
            &reference,
            "--allow-failed",
        ])
        .env("DOCKER_CONFIG", &cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cut it once the registry has started receiving the layer.
    for _ in 0..200 {
        if walk_has_upload(&t.join("data")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = reg.child.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("push of") && stderr(&o).contains("hint:"),
        "{}",
        stderr(&o)
    );
    let m = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(
        !m.contains("\"registry\""),
        "a cut push recorded a digest: {m}"
    );
    common::remove_image(&reference);
}

fn walk_has_upload(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        p.file_name().is_some_and(|n| n == "_uploads") || (p.is_dir() && walk_has_upload(&p))
    })
}
