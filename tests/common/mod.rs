//! Helpers the integration tests share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use tempfile::TempDir;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory `forge-{name}-XXXXXX` under the system temp dir, removed with
/// everything in it when the returned guard drops: at the end of the test and also when the test
/// panics (unwinding drops it). Bind it to a name for as long as the path is used (`let tmp =
/// tempdir(..); let dir = tmp.path();`), never to `_`, which drops it at once.
pub fn tempdir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("forge-{name}-"))
        .tempdir()
        .expect("make a temp dir")
}

/// A command's stdout as JSON; panics with stderr shown when it is not.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// A JSON file, parsed; panics naming the file when it is not JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A Draft 2020-12 validator for the JSON Schema at `rel` (under the repository root:
/// `src/report/envelope.schema.json`, `schemas/report.schema.json`), built in-process by the
/// `jsonschema` crate, so a schema check never skips for want of a tool. The schema is first
/// checked against its own meta-schema.
pub fn schema_validator(rel: &str) -> jsonschema::Validator {
    let schema = read_json(&root().join(rel));
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!(
            "{rel} is not a valid JSON Schema: {e} (at `{}`)",
            e.instance_path()
        );
    }
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every error of `doc` against `v`, one line each (`at /json/pointer: message`); empty when valid.
pub fn schema_errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect()
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether the Docker engine answers; panics under CI when it does not (nothing is skipped
/// silently there). Builds the local test images once (`scripts/test-images.sh`).
pub fn engine() -> bool {
    static IMAGES: Once = Once::new();
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and no Docker engine answers"
        );
        eprintln!("!!!!!! SKIPPED: no Docker engine answers; the Docker tests did not run !!!!!!");
        record_skip();
        return false;
    }
    IMAGES.call_once(|| {
        let st = Command::new("bash")
            .arg(root().join("scripts/test-images.sh"))
            .status()
            .expect("run scripts/test-images.sh");
        assert!(st.success(), "scripts/test-images.sh failed");
    });
    true
}

/// `scripts/test.sh` sets this to a file: each test that returns early for want of an engine
/// appends its name there, and the suite's closing line counts it as skipped, not passed
/// (libtest has no skip of its own).
pub const SKIPS_ENV: &str = "FORGE_TEST_SKIPS";

fn record_skip() {
    use std::io::Write;
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{name}");
    }
}

/// The check `id` of a `--json` outcome; panics when it is missing.
pub fn check_of<'a>(j: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("check {id} missing: {j}"))
}

/// A one-file image imported into the engine as `tag` (no registry, no build): small enough to
/// export in well under a second in a debug build. Remove it with [`remove_image`].
pub fn tiny_image(tag: &str) {
    let tmp = tempdir("tiny");
    let dir = tmp.path();
    std::fs::write(dir.join("hello.txt"), "hello from forge's tests\n").unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c hello.txt | docker import - {tag} >/dev/null",
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "docker import {tag}");
}

/// Under CI only (a fresh, disposable machine), before a build of gigabytes: when the engine's
/// data root has less than `need_gb` free, drop dangling images and the build cache nothing uses
/// (`docker image prune`, `docker builder prune`, never `--all`). The suite's builds leave about
/// 25 GB of images and cache behind, and a CI machine's free disk varies (21.5 GB at the Docker
/// tests on one run); outside CI nothing is touched: a developer's cache may hold a real build.
pub fn ci_make_room(need_gb: u64) {
    if std::env::var_os("CI").is_none() {
        return;
    }
    let free = || -> Option<u64> {
        let root = Command::new("docker")
            .args(["info", "-f", "{{.DockerRootDir}}"])
            .output()
            .ok()?;
        let root = String::from_utf8_lossy(&root.stdout).trim().to_owned();
        let df = Command::new("df")
            .args(["-Pk", if root.is_empty() { "/" } else { &root }])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&df.stdout).into_owned();
        let kb: u64 = text
            .lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()?;
        Some(kb / 1_000_000)
    };
    let Some(before) = free() else { return };
    if before >= need_gb {
        return;
    }
    for args in [
        &["image", "prune", "-f"][..],
        &["builder", "prune", "-f"][..],
    ] {
        let _ = Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    eprintln!(
        "CI: {before} GB free under the engine's data root, under the {need_gb} GB this build wants: \
         pruned dangling images and unused build cache, now {} GB free",
        free().unwrap_or(0)
    );
}

/// Remove an image this test run made.
pub fn remove_image(tag: &str) {
    let _ = Command::new("docker")
        .args(["rmi", "-f", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A shared object compiled by the host's `cc` from `src` into `dir/out`; its bytes.
pub fn cc(dir: &std::path::Path, out: &str, src: &str, args: &[&str]) -> Vec<u8> {
    let c = dir.join(format!("{out}.c"));
    std::fs::write(&c, src).unwrap();
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-O0", "-o"])
        .arg(dir.join(out))
        .arg(&c)
        .args(args)
        .output()
        .expect("cc runs");
    assert!(
        o.status.success(),
        "cc {out}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(dir.join(out)).unwrap()
}

/// An uncompressed offload bundle in the clang-offload-bundler format (64-byte bodies).
pub fn bundle(triples: &[&str]) -> Vec<u8> {
    let mut b = b"__CLANG_OFFLOAD_BUNDLE__".to_vec();
    b.extend_from_slice(&(triples.len() as u64).to_le_bytes());
    let header: usize = 32 + triples.iter().map(|t| 24 + t.len()).sum::<usize>();
    let mut off = header as u64;
    for t in triples {
        b.extend_from_slice(&off.to_le_bytes());
        b.extend_from_slice(&64u64.to_le_bytes());
        b.extend_from_slice(&(t.len() as u64).to_le_bytes());
        b.extend_from_slice(t.as_bytes());
        off += 64;
    }
    b.resize(off as usize, 0xAB);
    b
}

/// A zip (a wheel, when `members` hold a `*.dist-info/WHEEL`) of `members`, deflated or stored.
pub fn write_zip(path: &std::path::Path, members: &[(String, Vec<u8>)], stored: bool) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let mut opts = zip::write::SimpleFileOptions::default();
    if stored {
        opts = opts.compression_method(zip::CompressionMethod::Stored);
    }
    for (name, data) in members {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

/// The double's recipe in `mode`, written beside a copy that mounts the double by absolute path.
pub fn double_recipe(dir: &std::path::Path, mode: &str, startup: u64) -> PathBuf {
    let src = root().join("tests/fixtures/serve/double.toml");
    let text = std::fs::read_to_string(&src)
        .unwrap()
        .replace("\"MODE\"", &format!("\"{mode}\""))
        .replace(
            "\"double:/double:ro\"",
            &format!(
                "\"{}:/double:ro\"",
                root().join("tests/fixtures/serve/double").display()
            ),
        )
        .replace(
            "startup-timeout-secs = 8",
            &format!("startup-timeout-secs = {startup}"),
        );
    let p = dir.join(format!("{mode}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}
