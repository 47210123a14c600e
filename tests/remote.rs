//! Remote engines for real (issue 22): the engine on this machine reached through a real sshd on
//! 127.0.0.1 (Debian's openssh-server, a key made here; the far side runs `docker system
//! dial-stdio`) and through TLS with client certificates made here (stunnel in front of the
//! engine's socket, verifying the client's certificate as `dockerd --tlsverify` does: the shared
//! engine cannot be restarted with a tcp listener, and a second dockerd would need its own
//! bridge and storage for what is only a TLS endpoint). Contexts are made by the real docker CLI.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn forge(args: &[&str], env: &[(&str, &str)]) -> Output {
    forge_cmd(args, env).output().expect("forge runs")
}

/// forge with `args`, none of the engine variables of this process, then `env`.
fn forge_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forge"));
    c.args(args).stdin(Stdio::null());
    for k in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(cmd: &str) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn wait_port(port: u16, what: &str, child: &mut Child) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited {st} before listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} does not listen on {port} after 10 s");
}

/// A throwaway sshd on 127.0.0.1 and a stunnel TLS front of the engine, each on a free port,
/// with their keys and certificates; both stopped on drop. Their files (keys, certificates,
/// configs, logs) are in `dir`, a temp dir that `_tmp` removes once they are stopped (`drop`
/// runs before the fields are dropped).
struct Remote {
    dir: PathBuf,
    ssh_port: u16,
    tls_port: u16,
    children: Vec<Child>,
    _tmp: TempDir,
}

impl Drop for Remote {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tools() -> bool {
    let have = |p: &str| Path::new(p).exists();
    let ok = have("/usr/sbin/sshd") && have("/usr/bin/stunnel4") && have("/usr/bin/ssh");
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and sshd, ssh or stunnel4 is missing (scripts/test.sh installs them)"
        );
        eprintln!("!!!!!! SKIPPED: no sshd/stunnel4 here: scripts/test.sh installs them !!!!!!");
    }
    ok
}

impl Remote {
    fn start(name: &str) -> Remote {
        let tmp = common::tempdir(&format!("remote-{name}"));
        let dir = tmp.path().to_path_buf();
        let d = dir.display().to_string();
        let mut r = Remote {
            dir,
            ssh_port: free_port(),
            tls_port: free_port(),
            children: Vec::new(),
            _tmp: tmp,
        };
        // sshd: its own host key, the test's key authorized for root, nothing else allowed
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {d}/host_key && ssh-keygen -q -t ed25519 -N '' -f {d}/id \
             && ssh-keygen -q -t ed25519 -N '' -f {d}/stranger && cp {d}/id.pub {d}/authorized_keys \
             && mkdir -p /run/sshd"
        ));
        std::fs::write(
            r.dir.join("sshd_config"),
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
                r.ssh_port
            ),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(r.dir.join("host_key.pub")).unwrap();
        std::fs::write(
            r.dir.join("known_hosts"),
            format!("[127.0.0.1]:{} {host_pub}", r.ssh_port),
        )
        .unwrap();
        for (config, key) in [("ssh_config", "id"), ("ssh_config_stranger", "stranger")] {
            std::fs::write(
                r.dir.join(config),
                format!(
                    "Host *\n  IdentityFile {d}/{key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n"
                ),
            )
            .unwrap();
        }
        let mut sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(r.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(r.dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd");
        wait_port(r.ssh_port, "sshd", &mut sshd);
        r.children.push(sshd);

        // a CA, the engine's certificate for 127.0.0.1, a client certificate
        sh(&format!(
            "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -days 1 -subj /CN=forge-test-ca \
             && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 \
             && printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext \
             && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 1 -extfile server.ext \
             && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out client.csr -subj /CN=client \
             && printf 'extendedKeyUsage=clientAuth\\n' > client.ext \
             && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 1 -extfile client.ext"
        ));
        std::fs::write(
            r.dir.join("stunnel.conf"),
            format!(
                "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{}\nconnect = /var/run/docker.sock\n\
                 cert = {d}/server-cert.pem\nkey = {d}/server-key.pem\nCAfile = {d}/ca.pem\n\
                 verifyChain = yes\nrequireCert = yes\n",
                r.tls_port
            ),
        )
        .unwrap();
        let mut stunnel = Command::new("/usr/bin/stunnel4")
            .arg(r.dir.join("stunnel.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(r.dir.join("stunnel.log")).unwrap())
            .spawn()
            .expect("start stunnel");
        wait_port(r.tls_port, "stunnel", &mut stunnel);
        r.children.push(stunnel);
        r
    }

    fn ssh_url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.ssh_port)
    }

    fn ssh_opts(&self, config: &str) -> String {
        format!("-F {}", self.dir.join(config).display())
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

fn host_docker(o: &Output) -> serde_json::Value {
    common::check_of(&common::json(o), "host.docker").clone()
}

#[test]
fn preflight_names_the_engine_through_ssh_tls_and_contexts() {
    if !common::engine() || !tools() {
        return;
    }
    let r = Remote::start("preflight");
    let ssh_opts = r.ssh_opts("ssh_config");
    let url = r.ssh_url();
    let ssh = [
        ("DOCKER_HOST", url.as_str()),
        ("FORGE_SSH_OPTS", ssh_opts.as_str()),
    ];
    let c = host_docker(&forge(&["preflight", "--json"], &ssh));
    assert_eq!(c["status"], "pass", "{c}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains(&format!(
            "ssh root@127.0.0.1:{} running `docker system dial-stdio`",
            r.ssh_port
        )) && ev.contains("(DOCKER_HOST)")
            && ev.contains("CPUs"),
        "{ev}"
    );
    // sshd saw the key accepted: this went through ssh, not the local socket
    let log = std::fs::read_to_string(r.dir.join("sshd.log")).unwrap();
    assert!(log.contains("Accepted publickey for root"), "{log}");

    let tls_host = format!("tcp://127.0.0.1:{}", r.tls_port);
    let certs = r.dir.display().to_string();
    let tls = [
        ("DOCKER_HOST", tls_host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.as_str()),
    ];
    let c = host_docker(&forge(&["preflight", "--json"], &tls));
    assert_eq!(c["status"], "pass", "{c}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains(&format!("tcp+tls 127.0.0.1:{}", r.tls_port)),
        "{ev}"
    );

    // without the client certificate the TLS front refuses: forge says so
    let c = host_docker(&forge(
        &["preflight", "--json"],
        &[("DOCKER_HOST", tls_host.as_str())],
    ));
    assert_eq!(c["status"], "fail", "{c}");

    // contexts made by the docker CLI itself, then chosen by --context, DOCKER_CONTEXT, `use`
    let config = r.path("docker-config");
    let docker = |args: &[&str]| {
        let o = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            common::stderr(&o)
        );
    };
    docker(&[
        "context",
        "create",
        "box",
        "--docker",
        &format!("host={url}"),
    ]);
    docker(&[
        "context",
        "create",
        "secure",
        "--docker",
        &format!(
            "host={tls_host},ca={},cert={},key={}",
            r.path("ca.pem"),
            r.path("cert.pem"),
            r.path("key.pem")
        ),
    ]);
    let base = [
        ("DOCKER_CONFIG", config.as_str()),
        ("FORGE_SSH_OPTS", ssh_opts.as_str()),
    ];
    let c = host_docker(&forge(&["--context", "box", "preflight", "--json"], &base));
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("context `box` from --context"),
        "{c}"
    );
    let with_ctx = [base[0], base[1], ("DOCKER_CONTEXT", "secure")];
    let c = host_docker(&forge(&["preflight", "--json"], &with_ctx));
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["evidence"].as_str().unwrap().contains("tcp+tls")
            && c["evidence"]
                .as_str()
                .unwrap()
                .contains("context `secure` from DOCKER_CONTEXT"),
        "{c}"
    );
    docker(&["context", "use", "box"]);
    let c = host_docker(&forge(&["preflight", "--json"], &base));
    assert!(
        c["evidence"].as_str().unwrap().contains("currentContext"),
        "{c}"
    );
    // DOCKER_HOST beats the current context, --context beats DOCKER_HOST
    let local = [
        base[0],
        base[1],
        ("DOCKER_HOST", "unix:///var/run/docker.sock"),
    ];
    let c = host_docker(&forge(&["preflight", "--json"], &local));
    assert!(
        c["evidence"].as_str().unwrap().contains("unix socket"),
        "{c}"
    );
    let c = host_docker(&forge(
        &["--context", "secure", "preflight", "--json"],
        &local,
    ));
    assert!(c["evidence"].as_str().unwrap().contains("tcp+tls"), "{c}");
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn export_through_ssh_equals_the_local_sockets() {
    if !common::engine() || !tools() {
        return;
    }
    let r = Remote::start("export");
    let tag = format!("forge-rm-tiny:remote-{}", std::process::id());
    common::tiny_image(&tag);
    let ssh_opts = r.ssh_opts("ssh_config");
    let url = r.ssh_url();
    let local = r.dir.join("local.tar.gz");
    let remote = r.dir.join("ssh.tar.gz");
    let o = forge(
        &[
            "export",
            &tag,
            "-o",
            local.to_str().unwrap(),
            "--threads",
            "2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = forge(
        &[
            "export",
            &tag,
            "-o",
            remote.to_str().unwrap(),
            "--threads",
            "2",
        ],
        &[
            ("DOCKER_HOST", url.as_str()),
            ("FORGE_SSH_OPTS", ssh_opts.as_str()),
        ],
    );
    common::remove_image(&tag);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        sha256(&local),
        sha256(&remote),
        "same image id, same archive"
    );
    assert!(std::fs::metadata(&remote).unwrap().len() > 100);
}

#[test]
fn bad_remote_engines_say_what_is_wrong() {
    if !common::engine() || !tools() {
        return;
    }
    let r = Remote::start("bad");
    let url = r.ssh_url();
    // a key sshd does not know
    let stranger = r.ssh_opts("ssh_config_stranger");
    let o = forge(
        &[
            "export",
            "forge-test-base:trixie",
            "-o",
            &r.path("x.tar.gz"),
        ],
        &[
            ("DOCKER_HOST", url.as_str()),
            ("FORGE_SSH_OPTS", stranger.as_str()),
        ],
    );
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("ssh-add"),
        "{err}"
    );
    assert!(!r.dir.join("x.tar.gz").exists(), "nothing written");

    // nothing listens there
    let closed = format!("ssh://root@127.0.0.1:{}", free_port());
    let good = r.ssh_opts("ssh_config");
    let j = common::json(&forge(
        &["preflight", "--json"],
        &[
            ("DOCKER_HOST", closed.as_str()),
            ("FORGE_SSH_OPTS", good.as_str()),
        ],
    ));
    let c = common::check_of(&j, "host.docker");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{c}"
    );
    assert!(c["hint"].as_str().unwrap().contains("sshd running"), "{c}");
    // the GPU host is that engine's host: not read here in its place
    for id in ["1.1", "1.2", "host.memory"] {
        let g = common::check_of(&j, id);
        assert_eq!(g["status"], "skip", "{g}");
        assert!(g["evidence"].as_str().unwrap().contains(&closed), "{g}");
    }

    // an unknown context
    let config = r.path("empty-config");
    let o = forge(
        &["--context", "nosuch", "image", "forge-test-base:trixie"],
        &[("DOCKER_CONFIG", config.as_str())],
    );
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no docker context `nosuch`") && err.contains("docker context ls"),
        "{err}"
    );
}

/// Issue 22's measure: `forge build` of the fixture recipe through `DOCKER_HOST=ssh://` builds
/// there, takes the wheel out, exports, and the archive's SHA256 equals the one `forge export`
/// makes of the same image id through the local socket. The GPU phases skip naming the engine's
/// host they looked at.
#[test]
fn build_through_ssh_exports_what_the_local_socket_exports() {
    if !common::engine() || !tools() {
        return;
    }
    let r = Remote::start("build");
    let ssh_opts = r.ssh_opts("ssh_config");
    let url = r.ssh_url();
    let arts = r.dir.join("arts");
    let recipe = common::root().join("tests/fixtures/docker/good.toml");
    let o = forge(
        &[
            "build",
            "--recipe",
            recipe.to_str().unwrap(),
            "--artifacts",
            arts.to_str().unwrap(),
            "--run-id",
            "remote-ssh",
            "--json",
        ],
        &[
            ("DOCKER_HOST", url.as_str()),
            ("FORGE_SSH_OPTS", ssh_opts.as_str()),
        ],
    );
    let j = common::json(&o);
    assert_eq!(j["build"]["end"], "succeeded", "{}", common::stderr(&o));
    assert!(
        !j["build"]["wheels"].as_array().unwrap().is_empty(),
        "the wheel came out through ssh: {j}"
    );
    let c = common::check_of(&j, "1.2");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("on the engine's host"),
        "{c}"
    );
    let archive = walk(&arts)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("the build exported an archive");
    let image = String::from_utf8(
        Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.Id}}",
                "forge-fixture-good:latest",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(image.trim().starts_with("sha256:"), "{image}");
    let local = r.dir.join("local.tar.gz");
    let o = forge(
        &[
            "export",
            "forge-fixture-good:latest",
            "-o",
            local.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(sha256(&archive), sha256(&local), "{}", archive.display());
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A second engine on this machine (scripts/second-engine.sh: its own data root, exec root,
/// socket, engine ID, mount and network namespaces), stopped and removed on drop.
struct SecondEngine {
    dir: PathBuf,
    url: String,
}

impl SecondEngine {
    /// None (the test skips) where it cannot start and CI is not set.
    fn start(name: &str) -> Option<SecondEngine> {
        // kept short: the engine's sockets live under it (108 bytes at most for a socket path)
        let dir = std::env::temp_dir().join(format!("forge-e2-{name}-{}", std::process::id()));
        let mut e = SecondEngine {
            url: String::new(),
            dir,
        };
        match e.run_script("start") {
            Ok(url) => {
                e.url = url;
                Some(e)
            }
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set and a second engine cannot start here: {why}"
                );
                eprintln!("!!!!!! SKIPPED: no second engine here: {why} !!!!!!");
                None
            }
        }
    }

    fn run_script(&self, verb: &str) -> Result<String, String> {
        let o = Command::new(common::root().join("scripts/second-engine.sh"))
            .arg(verb)
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    /// `docker ARGS` against this engine: stdout, trimmed.
    fn docker(&self, args: &[&str]) -> String {
        let o = Command::new("docker")
            .env("DOCKER_HOST", &self.url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success() || args.first() == Some(&"image"),
            "docker {args:?} on the second engine: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Kill the engine (and its containerd: the process group the script started) at once.
    fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("docker.pid")).unwrap();
        sh(&format!("kill -9 -- -{} || kill -9 {0}", pid.trim()));
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let _ = self.run_script("stop");
    }
}

fn docker_here(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Issue 22's second measure, on two real engines: `forge build --gpu-engine` builds on this
/// machine's engine, streams the image into a second dockerd (its own engine ID) and runs phase
/// 4 there; the record names both engines by ID; preflight's GPU checks name the GPU engine's
/// host.
#[test]
fn a_second_engine_gets_the_image_and_phase_4_runs_there() {
    if !common::engine() {
        return;
    }
    let Some(e2) = SecondEngine::start("build") else {
        return;
    };
    let tmp = common::tempdir("two-engines");
    let arts = tmp.path().join("arts");
    let recipe = common::root().join("tests/fixtures/docker/good.toml");
    let o = forge(
        &[
            "build",
            "--recipe",
            recipe.to_str().unwrap(),
            "--artifacts",
            arts.to_str().unwrap(),
            "--run-id",
            "two-engines",
            "--no-export",
            "--gpu-engine",
            &e2.url,
            "--json",
        ],
        &[],
    );
    let j = common::json(&o);
    let (id1, id2) = (
        docker_here(&["info", "--format", "{{.ID}}"]),
        e2.docker(&["info", "--format", "{{.ID}}"]),
    );
    assert_ne!(id1, id2, "two engines, two IDs");
    let t = common::check_of(&j, "image.transfer");
    let ev = t["evidence"].as_str().unwrap();
    assert_eq!(t["status"], "pass", "{t}\n{}", common::stderr(&o));
    assert!(
        ev.contains(&id1) && ev.contains(&id2) && ev.contains(&e2.url),
        "{ev}"
    );
    // the same image, by id, in both engines
    let image = docker_here(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "forge-fixture-good:latest",
    ]);
    assert!(image.starts_with("sha256:"), "{image}");
    assert_eq!(
        e2.docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "forge-fixture-good:latest"
        ]),
        image
    );
    // phase 4 ran there: the GPU engine started its probe containers from that image (its
    // event log answers a `--until` of the current second late: asked again for up to 10 s)
    let created = |events: &str| {
        events.lines().any(|l| {
            l == "container create forge-fixture-good:latest"
                || l == format!("container create {image}")
        })
    };
    let t = Instant::now();
    let events = loop {
        let until = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1)
        .to_string();
        let events = e2.docker(&[
            "events",
            "--since",
            "1",
            "--until",
            &until,
            "--format",
            "{{.Type}} {{.Action}} {{.From}}",
        ]);
        if created(&events) || t.elapsed() > Duration::from_secs(10) {
            break events;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        created(&events),
        "no container from the image was created on the GPU engine: {events:?}"
    );
    // the GPU phases skip naming the engine (and the host) they looked at
    for id in ["5.3", "6.1", "7.1"] {
        let c = common::check_of(&j, id);
        let ev = c["evidence"].as_str().unwrap();
        assert_eq!(c["status"], "skip", "{c}");
        assert!(ev.starts_with("GPU engine") && ev.contains(&e2.url), "{ev}");
    }
    let c = common::check_of(&j, "4.2");
    assert_ne!(c["status"], "skip", "{c}");
    // the record: both engines by ID; preflight's GPU facts from the GPU engine's host
    let run = common::read_json(&arts.join("two-engines/run.json"));
    let engines = run["outputs"]["image"]["engines"].as_array().unwrap();
    assert!(
        engines.iter().any(|e| e == &id1) && engines.iter().any(|e| e == &id2),
        "{engines:?}"
    );
    let gpu = common::check_of(&j, "1.2");
    let ev = gpu["evidence"].as_str().unwrap();
    assert!(
        ev.starts_with("GPU engine") && ev.contains(&e2.url) && ev.contains(&id2),
        "{ev}"
    );
    assert!(!ev.contains("here"), "{ev}");
    // an image the build engine does not have is bad input, before anything moves
    let o = forge(&["image", "nosuch:img", "--gpu-engine", &e2.url], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("no image `nosuch:img`"));
}

/// An engine that dies mid-transfer: the run says so and fails, and the engine, once started
/// again, holds nothing of the image (no half-loaded image under the tag).
#[test]
fn an_engine_killed_mid_transfer_is_left_holding_nothing() {
    if !common::engine() {
        return;
    }
    let Some(e2) = SecondEngine::start("kill") else {
        return;
    };
    let image = "forge-test-torch:trixie";
    let child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["image", image, "--gpu-engine", &e2.url, "--json"])
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the receiving engine unpacks a load under its data root's tmp/ as the bytes arrive
    let tmp = e2.dir.join("root/tmp");
    let t = Instant::now();
    let receiving = loop {
        let busy = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.file_name().to_string_lossy().starts_with("docker-import"));
        if busy || t.elapsed() > Duration::from_secs(60) {
            break busy;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        receiving,
        "the second engine never started receiving the image"
    );
    e2.kill();
    let o = child.wait_with_output().unwrap();
    let j = common::json(&o);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let c = common::check_of(&j, "image.transfer");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["evidence"].as_str().unwrap().contains(&e2.url), "{c}");
    // nothing checked on a GPU engine that does not hold the image
    assert_eq!(j["checks"].as_array().unwrap().len(), 1, "{j}");
    // started again on the same data root: nothing of the image
    e2.run_script("start").expect("the engine starts again");
    assert_eq!(e2.docker(&["image", "ls", "-q", image]), "");
    assert_eq!(
        e2.docker(&["ps", "-aq"]),
        "",
        "no container left on the GPU engine"
    );
    let id = docker_here(&["image", "inspect", "--format", "{{.Id}}", image]);
    assert_eq!(
        e2.docker(&["image", "ls", "-q", "--no-trunc"])
            .lines()
            .filter(|l| *l == id)
            .count(),
        0
    );
}

/// Phase 6 on a remote engine (issue 22): the server's port is not published on the engine's
/// host at all; forge reaches it through a relay in the container over its engine connection
/// (TLS with client certificates, then ssh), and every serving check passes against the test
/// double.
#[test]
fn serve_on_a_remote_engine_publishes_no_port() {
    if !common::engine() || !tools() {
        return;
    }
    let r = Remote::start("serve");
    let recipe = common::double_recipe(&r.dir, "good", 8);
    let (tls, ssh, opts) = (
        format!("tcp://127.0.0.1:{}", r.tls_port),
        r.ssh_url(),
        r.ssh_opts("ssh_config"),
    );
    let dir = r.dir.display().to_string();
    let ways: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "tls",
            vec![
                ("DOCKER_HOST", tls.as_str()),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", dir.as_str()),
            ],
        ),
        (
            "ssh",
            vec![
                ("DOCKER_HOST", ssh.as_str()),
                ("FORGE_SSH_OPTS", opts.as_str()),
            ],
        ),
    ];
    for (how, env) in &ways {
        let run = format!("remote-serve-{how}-{}", std::process::id());
        let mut child = forge_cmd(
            &[
                "serve",
                "forge-test-base:trixie",
                "--no-gpu",
                "--json",
                "--run-id",
                &run,
                "--recipe",
                recipe.to_str().unwrap(),
                "--artifacts",
                &dir,
            ],
            env,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // the server container's ports, as the engine lists them, while forge runs
        let mut seen = Vec::new();
        while child.try_wait().unwrap().is_none() {
            let ports = docker_here(&[
                "ps",
                "--filter",
                &format!("label=forge.run={run}"),
                "--format",
                "{{.Ports}}",
            ]);
            if !ports.is_empty() {
                seen.push(ports);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let o = child.wait_with_output().unwrap();
        let j = common::json(&o);
        for id in [
            "6.1",
            "6.2",
            "6.3",
            "6.4",
            "6.5",
            "serve.stream",
            "serve.chat",
            "6.6",
        ] {
            let c = common::check_of(&j, id);
            assert_eq!(
                c["status"],
                "pass",
                "{how}: {id}: {c}\n{}",
                common::stderr(&o)
            );
        }
        assert!(
            !seen.is_empty(),
            "{how}: the server container was never seen running"
        );
        assert!(
            seen.iter()
                .all(|p| p.contains("8000/tcp") && !p.contains("->")),
            "{how}: a port was published on the engine's host: {seen:?}"
        );
        assert_eq!(
            docker_here(&["ps", "-aq", "--filter", &format!("label=forge.run={run}")]),
            "",
            "{how}: the server's container was left behind"
        );
    }
    // a server that says it is ready but listens nowhere: the relay's own refused connect is
    // the evidence (after the 5 s of retries a refused connection gets)
    let text = std::fs::read_to_string(&recipe).unwrap();
    let liar = r.dir.join("liar.toml");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("command = ") {
                r#"command = ["sh", "-c", "echo Uvicorn running on http://0.0.0.0:8000; exec sleep 60"]"#.to_owned()
            } else if l.starts_with("args = ") {
                "args = []".to_owned()
            } else if l.starts_with("stop-timeout-secs") {
                "stop-timeout-secs = 1".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&liar, text).unwrap();
    let o = forge(
        &[
            "serve",
            "forge-test-base:trixie",
            "--no-gpu",
            "--json",
            "--recipe",
            liar.to_str().unwrap(),
            "--artifacts",
            &dir,
        ],
        &ways[0].1,
    );
    let j = common::json(&o);
    let c = common::check_of(&j, "6.3");
    let ev = c["evidence"].as_str().unwrap();
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        ev.contains("the relay in the container (python3) said") && ev.contains("refused"),
        "{ev}"
    );
}
