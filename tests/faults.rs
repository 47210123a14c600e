//! Fault injection (issue 11, item 3): the engine connection cut mid-stream, the engine
//! answering garbage, SIGKILL mid-extraction and mid-export, a log truncated and rewritten while
//! watched, a read-only artifacts directory, and memory bounds on hostile inputs (a 1 GiB log
//! line, a zip member whose declared size lies, a zip bomb, bundle headers claiming gigabytes).
//!
//! Each test injects the fault for real (a TCP proxy in front of the engine's socket that cuts
//! or replaces the answer to one kind of request, `kill -9`, a read-only tmpfs mount) and asserts
//! what forge promises: a clear error (`error:` and `hint:`) with exit 2, the build log kept,
//! nothing incomplete under a final name, no container of the run left.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod common;
use common::{engine, json, root, stderr};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial_engine() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    engine().then_some(guard)
}

/// A fresh `forge-faults-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("faults-{name}"))
}

fn forge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge"))
}

/// What the proxy does to the requests whose head contains its needle.
#[derive(Clone, Copy)]
enum Fault {
    /// Forward, then cut both sides once `bytes` of the answer went through and `ms` passed
    /// (`bytes: 0`: `ms` after the request, whatever the answer).
    Cut { bytes: usize, ms: u64 },
    /// Answer with these bytes instead of the engine, then close.
    Garbage(&'static [u8]),
}

/// A TCP proxy to the engine's unix socket (reached as `DOCKER_HOST=tcp://127.0.0.1:PORT`) that
/// injects `fault` into the requests whose head contains `needle`. Returns the port and the
/// number of faults injected so far.
fn faulty_proxy(needle: &'static str, fault: Fault) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let injected = Arc::new(AtomicUsize::new(0));
    let count = injected.clone();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                continue;
            };
            let faulty = Arc::new(AtomicBool::new(false));
            let since = Arc::new(Mutex::new(Instant::now()));
            let count = count.clone();
            // client -> engine: looks for the needle in each request head.
            {
                let (mut c, mut e) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (faulty, since, count) = (faulty.clone(), since.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let head = String::from_utf8_lossy(&buf[..n.min(2048)]).into_owned();
                        let is_request = ["GET ", "POST ", "HEAD ", "DELETE ", "PUT "]
                            .iter()
                            .any(|m| head.starts_with(m));
                        if is_request && head.lines().next().unwrap_or("").contains(needle) {
                            if let Fault::Garbage(g) = fault {
                                count.fetch_add(1, Ordering::SeqCst);
                                let _ = c.write_all(g);
                                let _ = c.flush();
                                // Let the client finish sending its body, then hang up.
                                c.set_read_timeout(Some(Duration::from_secs(2))).ok();
                                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                                let _ = c.shutdown(Shutdown::Both);
                                let _ = e.shutdown(Shutdown::Both);
                                return;
                            }
                            *since.lock().unwrap() = Instant::now();
                            faulty.store(true, Ordering::SeqCst);
                            // A quiet stream (a long build step) sends nothing to cut on:
                            // a timer cuts it.
                            if let Fault::Cut { bytes: 0, ms } = fault {
                                let (c2, e2) = (c.try_clone().unwrap(), e.try_clone().unwrap());
                                let count = count.clone();
                                std::thread::spawn(move || {
                                    std::thread::sleep(Duration::from_millis(ms));
                                    count.fetch_add(1, Ordering::SeqCst);
                                    let _ = c2.shutdown(Shutdown::Both);
                                    let _ = e2.shutdown(Shutdown::Both);
                                });
                            }
                        }
                        if e.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = e.shutdown(Shutdown::Write);
                });
            }
            // engine -> client: cuts a faulty request's answer.
            {
                let (mut c, mut e) = (client, engine);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 << 10];
                    let mut sent_faulty = 0usize;
                    loop {
                        let n = match e.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if faulty.load(Ordering::SeqCst)
                            && let Fault::Cut { bytes, ms } = fault
                            && bytes > 0
                        {
                            sent_faulty += n;
                            let waited =
                                since.lock().unwrap().elapsed() >= Duration::from_millis(ms);
                            if sent_faulty >= bytes && waited {
                                count.fetch_add(1, Ordering::SeqCst);
                                let _ = c.shutdown(Shutdown::Both);
                                let _ = e.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (port, injected)
}

/// A server that answers every connection with bytes that are not HTTP.
fn garbage_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                c.set_read_timeout(Some(Duration::from_millis(500))).ok();
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"\x00\xff\xfeSSH-2.0-OpenSSH_9.2\r\n\x1b[31mgarbage{{{\n");
                let _ = c.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

fn with_host(mut c: Command, port: u16) -> Output {
    c.env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .output()
        .unwrap()
}

/// Containers carrying `label=value`, from the engine itself.
fn containers_labelled(label: &str, value: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}={value}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line contains `needle` (a build step's, in the engine's containers).
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("forge") {
                out.push(cmd);
            }
        }
    }
    out
}

fn assert_clear_error(o: &Output) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code: {e}");
    assert!(e.contains("error:") && e.contains("hint:"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Files in `dir` (names).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// --- the engine connection cut mid-stream ------------------------------------------------------

#[test]
fn build_with_the_engine_connection_cut_mid_stream() {
    let Some(_g) = serial_engine() else { return };
    let tmp = tempdir("cut-build");
    let arts = tmp.path();
    // Cut the build's answer 4 s in: the summary is printed, the ten-minute "compile" runs.
    let (port, injected) = faulty_proxy("/build?", Fault::Cut { bytes: 0, ms: 8000 });
    let run = format!("cut-{}", std::process::id());
    let mut c = forge();
    c.args(["build", "--recipe"])
        .arg(root().join("tests/fixtures/docker/slow.toml"))
        .args(["--artifacts", arts.to_str().unwrap(), "--run-id", &run]);
    let t = Instant::now();
    let o = with_host(c, port);
    assert_eq!(injected.load(Ordering::SeqCst), 1, "the cut happened");
    assert!(t.elapsed() < Duration::from_secs(120), "no hang");
    assert_clear_error(&o);
    let log = arts.join(&run).join("build.log");
    let e = stderr(&o);
    assert!(
        e.contains("build.log"),
        "the error says where the log is: {e}"
    );
    let kept = std::fs::read_to_string(&log).expect("the build log is kept");
    assert!(
        kept.contains("USE_DISTRIBUTED"),
        "the lines before the cut are in it: {kept}"
    );
    // The engine cancels the build when the connection goes: its step process is gone.
    let until = Instant::now() + Duration::from_secs(30);
    while !processes_with("sleep 617").is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        processes_with("sleep 617").is_empty(),
        "the build step was left running"
    );
    assert!(
        containers_labelled("forge.run", &run).is_empty(),
        "a container was left"
    );
}

#[test]
fn export_with_the_engine_connection_cut_mid_stream() {
    let Some(_g) = serial_engine() else { return };
    let tmp = tempdir("cut-export");
    let dir = tmp.path();
    let (port, injected) = faulty_proxy(
        "/get",
        Fault::Cut {
            bytes: 8 << 20,
            ms: 0,
        },
    );
    let archive = dir.join("base.tar.gz");
    let mut c = forge();
    c.args([
        "export",
        "forge-test-base:trixie",
        "-o",
        archive.to_str().unwrap(),
    ]);
    let o = with_host(c, port);
    assert_eq!(injected.load(Ordering::SeqCst), 1, "the cut happened");
    assert_clear_error(&o);
    assert!(files_in(dir).is_empty(), "left: {:?}", files_in(dir));
}

#[test]
fn image_probe_with_the_engine_connection_cut_mid_stream() {
    let Some(_g) = serial_engine() else { return };
    let (port, injected) = faulty_proxy("/logs", Fault::Cut { bytes: 1, ms: 0 });
    let child = forge()
        .args(["image", "forge-test-base:trixie"])
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let o = child.wait_with_output().unwrap();
    assert_eq!(injected.load(Ordering::SeqCst), 1, "the cut happened");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("error:"), "{}", stderr(&o));
    assert!(
        containers_labelled("forge.pid", &pid).is_empty(),
        "the probe container was left"
    );
}

// --- the engine answering garbage --------------------------------------------------------------

#[test]
fn an_engine_that_speaks_garbage_is_a_clear_error() {
    let port = garbage_server();
    let mut c = forge();
    c.args(["preflight", "--json"]);
    let o = with_host(c, port);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let docker = common::check_of(&j, "host.docker");
    assert_eq!(docker["status"], "fail", "{docker}");
    for args in [
        vec![
            "build",
            "--recipe",
            "tests/fixtures/docker/good.toml",
            "--artifacts",
        ],
        vec!["export", "forge-test-base:trixie", "-o"],
        vec!["image", "forge-test-base:trixie"],
    ] {
        let tmp = tempdir("garbage-engine");
        let dir = tmp.path();
        let mut c = forge();
        c.current_dir(root()).args(&args);
        if args.last() != Some(&"forge-test-base:trixie") {
            c.arg(dir.join("out.tar.gz"));
        }
        let t = Instant::now();
        let o = with_host(c, port);
        assert!(t.elapsed() < Duration::from_secs(60), "{args:?} hung");
        assert_clear_error(&o);
        assert!(
            stderr(&o).contains("no Docker engine answers"),
            "{}",
            stderr(&o)
        );
        assert!(
            files_in(dir).is_empty(),
            "{args:?} left {:?}",
            files_in(dir)
        );
    }
}

const GARBAGE_JSON: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"stream\":\"Step 1/2 : FROM x\\n\"}\n\x00\xff{{{ not json at all }}}\n\n";

#[test]
fn build_with_the_engine_answering_garbage() {
    let Some(_g) = serial_engine() else { return };
    let tmp = tempdir("garbage-build");
    let arts = tmp.path();
    let (port, injected) = faulty_proxy("/build?", Fault::Garbage(GARBAGE_JSON));
    let run = format!("garbage-{}", std::process::id());
    let mut c = forge();
    c.args(["build", "--recipe"])
        .arg(root().join("tests/fixtures/docker/good.toml"))
        .args(["--artifacts", arts.to_str().unwrap(), "--run-id", &run]);
    let o = with_host(c, port);
    assert_eq!(injected.load(Ordering::SeqCst), 1, "the garbage was sent");
    assert_clear_error(&o);
    assert!(
        arts.join(&run).join("build.log").is_file(),
        "the build log is kept"
    );
    assert!(containers_labelled("forge.run", &run).is_empty());
}

#[test]
fn export_with_the_engine_answering_garbage() {
    let Some(_g) = serial_engine() else { return };
    // A well-formed HTTP answer whose body is not a tar; then one that is a tar cut short but
    // ends cleanly (what a dying engine behind a proxy can send).
    let tar_cut: &'static [u8] = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5000);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", &[b'{'; 5000][..])
            .unwrap();
        let t = b.into_inner().unwrap();
        let body = &t[..3000];
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        Box::leak(r.into_boxed_slice())
    };
    let junk: &'static [u8] = {
        let mut r =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nContent-Length: 4096\r\n\r\n"
                .to_vec();
        r.extend((0..4096u32).map(|i| (i * 7 + 13) as u8));
        Box::leak(r.into_boxed_slice())
    };
    for garbage in [junk, tar_cut] {
        let tmp = tempdir("garbage-export");
        let dir = tmp.path();
        let (port, injected) = faulty_proxy("/get", Fault::Garbage(garbage));
        let archive = dir.join("base.tar.gz");
        let mut c = forge();
        c.args([
            "export",
            "forge-test-base:trixie",
            "-o",
            archive.to_str().unwrap(),
        ]);
        let o = with_host(c, port);
        assert_eq!(injected.load(Ordering::SeqCst), 1);
        assert_clear_error(&o);
        assert!(
            stderr(&o).contains("not a whole image tar"),
            "{}",
            stderr(&o)
        );
        assert!(files_in(dir).is_empty(), "left {:?}", files_in(dir));
    }
}

#[test]
fn image_probe_with_the_engine_answering_garbage() {
    let Some(_g) = serial_engine() else { return };
    let garbage: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nContent-Length: 24\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x10{\"dpkg\": [1, 2,";
    let (port, injected) = faulty_proxy("/logs", Fault::Garbage(garbage));
    let child = forge()
        .args(["image", "forge-test-base:trixie"])
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let o = child.wait_with_output().unwrap();
    assert_eq!(injected.load(Ordering::SeqCst), 1);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Whether the stream's framing or the JSON inside it breaks first, it is a clear error.
    let e = stderr(&o);
    assert!(
        e.contains("not JSON") || e.contains("read the container's output"),
        "{e}"
    );
    assert!(
        containers_labelled("forge.pid", &pid).is_empty(),
        "the probe container was left"
    );
}

// --- SIGKILL mid-extraction and mid-export ------------------------------------------------------

/// Not a test by itself: the child process `killed_extraction_*` runs and kills.
#[test]
fn extraction_child() {
    let (Some(tar), Some(dir)) = (
        std::env::var_os("FORGE_FAULTS_TAR"),
        std::env::var_os("FORGE_FAULTS_DIR"),
    ) else {
        return;
    };
    forge::ops::drive::extract_wheels(
        Path::new(&tar),
        Path::new(&dir),
        forge::cancel::Cancel::detached(),
    )
    .unwrap();
    std::process::exit(0);
}

fn stage_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn killed_extraction_leaves_nothing_incomplete_under_a_final_name() {
    let tmp = tempdir("kill-extract");
    let dir = tmp.path();
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let small: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    let tar = stage_tar(&[
        ("a-1.0-py3-none-any.whl", small.clone()),
        ("torch-2.9.1-cp312-cp312-linux_x86_64.whl", big.clone()),
    ]);
    // The tar arrives through a FIFO: the child blocks mid-member when the writer stops, and is
    // killed there, as a forge killed while the engine streams the wheel stage would be.
    let fifo = dir.join("wheels.tar.part");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "extraction_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FORGE_FAULTS_TAR", &fifo)
        .env("FORGE_FAULTS_DIR", &wheels)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // The first wheel whole, half of the second.
    let half = 512 + 100_000 + 3 * 512 + 4_000_000;
    w.write_all(&tar[..half]).unwrap();
    w.flush().unwrap();
    let part = wheels.join("torch-2.9.1-cp312-cp312-linux_x86_64.whl.part");
    let until = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 1_000_000 {
        assert!(
            Instant::now() < until,
            "the child never wrote the .part: {:?}",
            files_in(&wheels)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(w);
    // Under final names only what is complete; the member being written only as `.part`.
    let left = files_in(&wheels);
    assert!(
        !left.contains(&"torch-2.9.1-cp312-cp312-linux_x86_64.whl".to_owned()),
        "{left:?}"
    );
    for f in &left {
        if !f.ends_with(".part") {
            assert_eq!(f, "a-1.0-py3-none-any.whl");
            assert_eq!(
                sha256_hex(&std::fs::read(wheels.join(f)).unwrap()),
                sha256_hex(&small)
            );
        }
    }
    // A stale `.part` of another member is there too; the next extraction removes both and
    // never lists a `.part` as a wheel.
    std::fs::write(wheels.join("other.whl.part"), b"stale").unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let tar_path = dir.join("whole.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let got =
        forge::ops::drive::extract_wheels(&tar_path, &wheels, forge::cancel::Cancel::detached())
            .unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|w| !w.path.to_string_lossy().ends_with(".part"))
    );
    assert_eq!(got[1].sha256, sha256_hex(&big));
    assert_eq!(
        files_in(&wheels),
        vec![
            "a-1.0-py3-none-any.whl",
            "torch-2.9.1-cp312-cp312-linux_x86_64.whl"
        ]
    );
    // A tar that breaks mid-member (the engine's stream cut short) leaves no `.part` either.
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &tar[..half]).unwrap();
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    assert!(
        forge::ops::drive::extract_wheels(&cut, &fresh, forge::cancel::Cancel::detached()).is_err()
    );
    assert_eq!(files_in(&fresh), vec!["a-1.0-py3-none-any.whl"]);
}

#[test]
fn killed_export_leaves_nothing_under_the_final_name() {
    let Some(_g) = serial_engine() else { return };
    let tmp = tempdir("kill-export");
    let dir = tmp.path();
    let archive = dir.join("base.tar.gz");
    let part = dir.join("base.tar.gz.part");
    let mut child = forge()
        .args([
            "export",
            "forge-test-base:trixie",
            "-o",
            archive.to_str().unwrap(),
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < until, "no .part appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = files_in(dir);
    assert_eq!(left, vec!["base.tar.gz.part"], "only the .part is left");
    // The next export to the same name replaces it and yields a whole, checksummed archive.
    let o = forge()
        .args([
            "export",
            "forge-test-base:trixie",
            "-o",
            archive.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        stderr(&o)
    );
    assert_eq!(files_in(dir), vec!["base.tar.gz", "base.tar.gz.sha256"]);
    let t = Command::new("gzip")
        .arg("-t")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(t.success(), "the archive is whole");
}

// --- the log truncated and rewritten while watched ----------------------------------------------

const SUMMARY_GOOD: &str = "-- The CXX compiler identification is Clang 20.0.0\nHIP VERSION: 7.1.52802-26aae437f6\nBuilding PyTorch for GPU arch: gfx1151\n-- ******** Summary ********\n--   USE_CUDA              : OFF\n--   USE_ROCM              : ON\n--   USE_DISTRIBUTED       : ON\n-- Configuring done (1.0s)\n";

fn truncated_and_rewritten_past_its_end(extra: &[&str]) {
    let tmp = tempdir("watch-rewrite");
    let dir = tmp.path();
    let log = dir.join("build.log");
    std::fs::write(&log, SUMMARY_GOOD.repeat(4)).unwrap();
    // The new content is larger than the old, and is written in one go right after the
    // truncation: between two looks the size only grew.
    let bad = format!(
        "{}{}",
        SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : OFF"),
        "[1/9] Building CXX object x.o\n".repeat(400)
    );
    std::fs::write(dir.join("bad"), &bad).unwrap();
    let script = dir.join("writer.sh");
    std::fs::write(
        &script,
        format!(
            "sleep 2\ncat {bad} > {log}\nsleep 3\n",
            bad = dir.join("bad").display(),
            log = log.display()
        ),
    )
    .unwrap();
    let mut writer = Command::new("setsid")
        .arg("sh")
        .arg(&script)
        .spawn()
        .unwrap();
    let o = forge()
        .args([
            "watch",
            log.to_str().unwrap(),
            "--pid",
            &writer.id().to_string(),
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    writer.wait().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "the fatal line of the new content: {}",
        stderr(&o)
    );
    let j = json(&o);
    assert_eq!(j["fatal"]["line"], 7, "counted from the new start: {j}");
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

#[test]
fn watch_sees_a_log_truncated_and_rewritten_past_its_old_end() {
    truncated_and_rewritten_past_its_end(&[]);
}

#[test]
fn watch_with_poll_sees_a_log_truncated_and_rewritten_past_its_old_end() {
    truncated_and_rewritten_past_its_end(&["--poll"]);
}

// --- a read-only artifacts directory ------------------------------------------------------------

/// A read-only tmpfs mounted on a fresh temp dir (we run as root); unmounted on drop, then the
/// temp dir is removed (`drop` runs before the field is dropped).
struct ReadOnly(TempDir);

impl ReadOnly {
    fn mount(name: &str) -> Option<ReadOnly> {
        let tmp = tempdir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(tmp.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set and mount failed"
            );
            eprintln!("!!!!!! SKIPPED: cannot mount a read-only tmpfs (not root?) !!!!!!");
            return None;
        }
        Some(ReadOnly(tmp))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

#[test]
fn read_only_artifacts_directory_is_a_clear_error() {
    let Some(_g) = serial_engine() else { return };
    let Some(ro) = ReadOnly::mount("ro-artifacts") else {
        return;
    };
    let run = format!("ro-{}", std::process::id());
    let o = forge()
        .args(["build", "--recipe"])
        .arg(root().join("tests/fixtures/docker/good.toml"))
        .args(["--artifacts", ro.path().to_str().unwrap(), "--run-id", &run])
        .output()
        .unwrap();
    assert_clear_error(&o);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("read-only"),
        "the hint says so: {}",
        stderr(&o)
    );
    assert!(containers_labelled("forge.run", &run).is_empty());
    let o = forge()
        .args(["export", "forge-test-base:trixie", "-o"])
        .arg(ro.path().join("base.tar.gz"))
        .output()
        .unwrap();
    assert_clear_error(&o);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(files_in(ro.path()).is_empty());
}

// --- memory bounds -----------------------------------------------------------------------------

/// Run forge, feeding `feed` to it from a thread; its exit code, peak RSS in MiB and stderr.
///
/// The peak is measured by a small Python parent: a child's `ru_maxrss` starts at its parent's
/// own peak (Linux keeps the high-water mark across `exec`), and the test process is big.
fn peak_rss(args: &[&str], feed: impl FnOnce() + Send + 'static) -> (Option<i32>, u64, String) {
    const PARENT: &str = "import resource, subprocess, sys\n\
        p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
        sys.stderr.buffer.write(p.stderr)\n\
        print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let child = Command::new("python3")
        .args(["-c", PARENT, env!("CARGO_BIN_EXE_forge")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = std::thread::spawn(feed);
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut it = out.split_whitespace();
    let code: i32 = it
        .next()
        .and_then(|c| c.parse().ok())
        .expect("python3 reports");
    let kib: u64 = it
        .next()
        .and_then(|c| c.parse().ok())
        .expect("python3 reports");
    (Some(code), kib / 1024, stderr(&o))
}

#[test]
fn a_one_gib_log_line_is_scanned_in_bounded_memory() {
    let tmp = tempdir("gib-line");
    let dir = tmp.path();
    let fifo = dir.join("build.log");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let f2 = fifo.clone();
    let (code, mib, err) = peak_rss(&["scan", fifo.to_str().unwrap(), "--json"], move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(&f2).unwrap();
        w.write_all(b"-- ******** Summary ********\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"\n--   USE_DISTRIBUTED       : OFF\n")
            .unwrap();
    });
    // The line after the giant one is still read: the fatal finding makes it exit 1.
    assert_eq!(code, Some(1), "{err}");
    assert!(mib < 64, "peak RSS {mib} MiB for a 1 GiB line");
    eprintln!("1 GiB line: peak RSS {mib} MiB");
}

/// A zip with one member whose deflated data expands to `real` bytes, its headers patched to
/// declare `declared` bytes.
fn lying_zip(path: &Path, real: u64, declared: u32, level: i64) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(level));
    z.start_file("torch-2.9.1.dist-info/WHEEL", opts).unwrap();
    z.write_all(b"Wheel-Version: 1.0\n").unwrap();
    z.start_file("torch/lib/libtorch_cpu.so", opts).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = real;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        z.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    z.finish().unwrap();
    if declared as u64 == real {
        return;
    }
    // Patch the uncompressed size in the member's local header and central directory entry.
    let mut b = std::fs::read(path).unwrap();
    let name = b"torch/lib/libtorch_cpu.so";
    let mut at = 0;
    while let Some(i) = b[at..].windows(name.len()).position(|w| w == name) {
        let i = at + i;
        if b[i - 30..i - 26] == *b"PK\x03\x04" {
            b[i - 8..i - 4].copy_from_slice(&declared.to_le_bytes());
        } else if b[i - 46..i - 42] == *b"PK\x01\x02" {
            b[i - 22..i - 18].copy_from_slice(&declared.to_le_bytes());
        }
        at = i + 1;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_member_whose_declared_size_lies_is_refused_in_bounded_memory() {
    let tmp = tempdir("lying-zip");
    let dir = tmp.path();
    let wheel = dir.join("torch-2.9.1-cp312-cp312-linux_x86_64.whl");
    // 1 GiB of zeros declared as 10 kB.
    lying_zip(&wheel, 1 << 30, 10_000, 1);
    let (code, mib, err) = peak_rss(&["wheel", wheel.to_str().unwrap()], || {});
    assert_eq!(code, Some(2), "{err}");
    // Refused by forge's bound or by the zip reader's own check, whichever sees it first.
    assert!(
        err.contains("more than its declared 10000 bytes")
            || err.contains("larger than its declared uncompressed size"),
        "{err}"
    );
    assert!(mib < 64, "peak RSS {mib} MiB");
    eprintln!("lying member: peak RSS {mib} MiB");
    // Honest headers, but 256 MiB from 250 kB (1030:1): refused as a bomb before decompressing.
    lying_zip(&wheel, 256 << 20, 256 << 20, 9);
    let (code, mib, err) = peak_rss(&["wheel", wheel.to_str().unwrap()], || {});
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("zip bomb"), "{err}");
    assert!(mib < 64, "peak RSS {mib} MiB");
}

fn so_with_fatbin(dir: &Path, name: &str, fatbin: &[u8]) -> Vec<u8> {
    let c = dir.join(format!("{name}.c"));
    let body: Vec<String> = fatbin.iter().map(|b| b.to_string()).collect();
    std::fs::write(
        &c,
        format!(
            "extern int hipMalloc(void **p, unsigned long n);\nint k(void){{ void *p; return hipMalloc(&p, 1); }}\n\
             __attribute__((section(\".hip_fatbin\"), used)) const unsigned char fb[{}] = {{{}}};\n",
            fatbin.len(),
            body.join(",")
        ),
    )
    .unwrap();
    let out = dir.join(name);
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&c)
        .args(["-Wl,--unresolved-symbols=ignore-all", "-Wl,--no-as-needed"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

#[test]
fn bundle_headers_claiming_gigabytes_are_read_in_bounded_memory() {
    let tmp = tempdir("giga-bundle");
    let dir = tmp.path();
    let triple = b"hipv4-amdgcn-amd-amdhsa--gfx1151";
    // An uncompressed bundle: 65536 entries claimed, each at an offset and size near 2^63.
    let mut plain = b"__CLANG_OFFLOAD_BUNDLE__".to_vec();
    plain.extend_from_slice(&65_536u64.to_le_bytes());
    plain.extend_from_slice(&(1u64 << 62).to_le_bytes());
    plain.extend_from_slice(&u64::MAX.to_le_bytes());
    plain.extend_from_slice(&(triple.len() as u64).to_le_bytes());
    plain.extend_from_slice(triple);
    // A CCOB v3 claiming 2^40 bytes in all and 2^40 uncompressed, its payload a few bytes.
    let inner = {
        let mut b = b"__CLANG_OFFLOAD_BUNDLE__".to_vec();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&56u64.to_le_bytes());
        b.extend_from_slice(&8u64.to_le_bytes());
        b.extend_from_slice(&(triple.len() as u64).to_le_bytes());
        b.extend_from_slice(triple);
        b
    };
    let payload = zstd::encode_all(&inner[..], 3).unwrap();
    let mut ccob = b"CCOB".to_vec();
    ccob.extend_from_slice(&3u16.to_le_bytes());
    ccob.extend_from_slice(&1u16.to_le_bytes());
    ccob.extend_from_slice(&(1u64 << 40).to_le_bytes());
    ccob.extend_from_slice(&(1u64 << 40).to_le_bytes());
    ccob.extend_from_slice(&0u64.to_le_bytes());
    ccob.extend_from_slice(&payload);
    let so = so_with_fatbin(dir, "libtorch_hip.so", &[ccob, vec![0; 64], plain].concat());
    let wheel = dir.join("torch-2.9.1-cp312-cp312-linux_x86_64.whl");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("torch-2.9.1.dist-info/WHEEL", opts).unwrap();
    z.write_all(b"Wheel-Version: 1.0\n").unwrap();
    z.start_file("torch/lib/libtorch_hip.so", opts).unwrap();
    z.write_all(&so).unwrap();
    z.finish().unwrap();
    let t = Instant::now();
    let (code, mib, err) = peak_rss(&["wheel", wheel.to_str().unwrap(), "-v"], || {});
    assert!(t.elapsed() < Duration::from_secs(30), "no hang");
    assert!(code == Some(1) || code == Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(mib < 64, "peak RSS {mib} MiB");
    eprintln!("giga bundle headers: peak RSS {mib} MiB");
}

/// Wait until `child`'s run in `dir` is held open (its run.json says a phase is running).
fn held(child: &mut std::process::Child, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.join("run.json")).is_ok_and(|s| s.contains("\"running\"")) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}: it ended",
            dir.display()
        );
        assert!(
            Instant::now() < deadline,
            "{}: never started",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two `forge build`s started at once on one artifacts directory: the second is refused at once
/// (exit 2) naming the first's pid and run, makes no run directory and leaves `latest` on the
/// first; once the first ends (here: SIGINT, exit 130) the lock is free again.
#[test]
fn a_second_build_on_the_same_artifacts_directory_is_refused() {
    let Some(_g) = serial_engine() else { return };
    let tmp = tempdir("lock");
    let arts = tmp.path();
    let recipe = root().join("tests/fixtures/docker/good.toml");
    let start = |run: &str, hold: bool| {
        let mut c = forge();
        c.args(["build", "--recipe"])
            .arg(&recipe)
            .arg("--artifacts")
            .arg(arts)
            .args(["--run-id", run, "--quiet"]);
        if hold {
            // held open in preflight, after run.json and `latest` are written
            c.env("__FORGE_TEST_HOLD", "preflight");
        }
        c
    };
    let mut first = start("first", true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    held(&mut first, &arts.join("first"));
    let t = Instant::now();
    let o = start("second", false).output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_clear_error(&o);
    let err = stderr(&o);
    assert!(err.contains("another forge build"), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("run first"),
        "{err}"
    );
    assert!(!arts.join("second").exists());
    assert_eq!(
        std::fs::read_link(arts.join("latest")).unwrap(),
        Path::new("first")
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    assert_eq!(first.wait().unwrap().code(), Some(130));
    // the lock went with the process: a run now gets past it (and is stopped the same way)
    let mut again = start("again", true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    held(&mut again, &arts.join("again"));
    // SAFETY: as above.
    unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    assert_eq!(again.wait().unwrap().code(), Some(143));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(arts.join("again/run.json")).unwrap()).unwrap();
    assert_eq!(rec["state"], "interrupted");
}
