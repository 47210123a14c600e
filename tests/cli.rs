//! CLI tests on the built binary: exit codes, stdout JSON, stderr messages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

mod common;
use common::{check_of, json, stderr};

fn forge(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

/// A fresh `forge-cli-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("cli-{name}"))
}

fn shipped_recipe_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/rocm-7.1.1.toml"))
        .unwrap()
}

#[test]
fn help_lists_only_working_commands() {
    let o = forge(&["--help"], None);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for cmd in ["plan", "preflight", "diagnose", "scan", "watch"] {
        assert!(
            text.contains(&format!("  {cmd} ")),
            "{cmd} missing from --help:\n{text}"
        );
    }
}

/// Issue 18: `forge image --help` said its first sentence twice (two doc comments, one each
/// side of the `#[command]`, which clap joins). No command's help repeats a sentence.
#[test]
fn issue_18_no_help_line_repeats_itself() {
    let o = forge(&["--help"], None);
    let top = String::from_utf8(o.stdout).unwrap();
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"image"), "{top}");
    for c in commands {
        let o = forge(&[c, "--help"], None);
        let help = String::from_utf8(o.stdout).unwrap();
        let about = help.lines().next().unwrap_or("");
        let sentences: Vec<&str> = about
            .split(". ")
            .map(|s| s.trim().trim_end_matches('.'))
            .collect();
        for (i, s) in sentences.iter().enumerate() {
            let head: String = s.chars().take(40).collect();
            assert!(
                !sentences[i + 1..].iter().any(|t| t.starts_with(&head)),
                "`forge {c} --help` repeats `{head}`: {about}"
            );
        }
    }
}

#[test]
fn plan_default_is_distributed_gfx1151_from_any_directory() {
    let tmp = tempdir("plan");
    let dir = tmp.path();
    let o = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["plan", "--rocm", "7.1.1", "--json"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["build_args"]["USE_DISTRIBUTED"], "1");
    let arch = j["build_args"]["PYTORCH_ROCM_ARCH"].as_str().unwrap();
    assert!(arch.split(';').any(|a| a == "gfx1151"), "{arch}");
    assert_eq!(j["target_stage"], "runtime");
    assert!(j["planned_checks"].as_array().unwrap().len() > 40);
    assert!(
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pass")
    );
}

#[test]
fn plan_624_is_refused_with_its_reason() {
    let o = forge(&["plan", "--rocm", "6.2.4"], None);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("recipes/rocm-6.2.4.toml:"), "{e}");
    assert!(e.contains("vLLM needs ROCm 7.0.2 or newer"), "{e}");
    assert!(e.contains("--allow-unsupported"), "{e}");
    let o = forge(
        &["plan", "--rocm", "6.2.4", "--allow-unsupported", "--json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["rocm"], "6.2.4");
}

#[test]
fn recipe_with_typo_or_distributed_off_is_refused_with_file_and_line() {
    let tmp = tempdir("typo");
    let dir = tmp.path();
    let text = shipped_recipe_text().replace(
        "../dockerfiles/vllm-rocm.Dockerfile",
        "forge:vllm-rocm.Dockerfile",
    );
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, text.replace("[pytorch]\nrepo", "[pytorch]\nrepoo")).unwrap();
    let line = text.lines().position(|l| l == "[pytorch]").unwrap() + 2;
    let o = forge(
        &["plan", "--recipe", typo.to_str().unwrap(), "--json"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("typo.toml:{line}: unknown field `repoo`")),
        "{e}"
    );
    assert!(e.contains("did you mean `repo`?"), "{e}");
    let j = json(&o);
    assert_eq!(j["verdict"], "error");
    assert_eq!(j["problems"][0]["line"], line);

    let off = dir.join("off.toml");
    std::fs::write(
        &off,
        text.replace("USE_DISTRIBUTED = \"1\"", "USE_DISTRIBUTED = \"0\""),
    )
    .unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("USE_DISTRIBUTED"))
        .unwrap()
        + 1;
    let o = forge(&["plan", "--recipe", off.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("off.toml:{line}: `USE_DISTRIBUTED = \"0\"`")),
        "{e}"
    );

    let o = forge(
        &["plan", "--recipe", dir.join("nope.toml").to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read recipe"), "{}", stderr(&o));
}

#[test]
fn preflight_without_gpu_fails_each_missing_piece_and_docker_passes() {
    let o = forge(&["preflight", "--json"], None);
    if !Path::new("/dev/kfd").exists() {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    }
    let j = json(&o);
    let checks = j["checks"].as_array().unwrap();
    let status = |id: &str| check_of(&j, id)["status"].as_str().unwrap().to_owned();
    if !Path::new("/dev/kfd").exists() {
        for id in ["1.1", "1.2", "1.3", "1.4"] {
            assert_eq!(status(id), "fail", "{id}");
        }
        for c in checks.iter().filter(|c| c["status"] == "fail") {
            assert!(c["hint"].is_string(), "failed check without hint: {c}");
        }
    }
    // common::engine() asks the engine forge asks (DOCKER_HOST included), and fails under CI
    // when none answers.
    if common::engine() {
        assert_eq!(status("host.docker"), "pass", "{}", stderr(&o));
        assert!(j["engine"]["api_version"].is_string());
    } else {
        assert_eq!(status("host.docker"), "fail", "{}", stderr(&o));
    }
}

#[test]
fn preflight_with_unreachable_engine_is_a_finding_not_a_crash() {
    let o = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["preflight", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let j = json(&o);
    let docker = check_of(&j, "host.docker").clone();
    assert_eq!(docker["status"], "fail");
    assert!(
        docker["evidence"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/docker.sock")
    );
    assert!(docker["hint"].as_str().unwrap().contains("DOCKER_HOST"));
    // a local engine's host is this machine: its GPU facts are read here all the same
    for id in ["1.1", "1.2", "host.memory"] {
        let c = check_of(&j, id);
        assert!(
            !c["evidence"].as_str().unwrap().starts_with("not read"),
            "{c}"
        );
    }
}

/// An engine elsewhere (or one whose setting cannot be read) that does not answer leaves the GPU
/// host unknown: phase 1's GPU-host checks and the compile's memory are skipped naming the
/// engine, never answered with this machine's own `/dev`, `/proc` and `/sys`.
#[test]
fn preflight_with_an_unreachable_remote_engine_reads_nothing_here() {
    let config = tempdir("unreached");
    for (how, env, named) in [
        (
            "tcp",
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
            "`tcp://127.0.0.1:1`",
        ),
        (
            "context",
            ("DOCKER_CONTEXT", "nosuch"),
            "setting could not be read",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_forge"))
            .args(["preflight", "--json"])
            .env_remove("DOCKER_HOST")
            .env("DOCKER_CONFIG", config.path())
            .env(env.0, env.1)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{how}: {}", stderr(&o));
        let j = json(&o);
        assert_eq!(check_of(&j, "host.docker")["status"], "fail", "{how}");
        for id in [
            "1.1",
            "1.2",
            "host.groups",
            "1.3",
            "1.4",
            "host.memory",
            "host.kernel",
            "host.gtt",
        ] {
            let c = check_of(&j, id);
            let ev = c["evidence"].as_str().unwrap();
            assert_eq!(c["status"], "skip", "{how}: {c}");
            assert!(
                ev.starts_with("not read") && ev.contains(named) && ev.contains("engine's host"),
                "{how}: {c}"
            );
        }
    }
}

/// Every symptom of the spec's failure-mode table, as a user would paste it.
const PASTES: &[(&str, &str)] = &[
    (
        "distributed-missing",
        "$ python3 -c 'from torch.distributed import PrefixStore'\nTraceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nImportError: cannot import name 'PrefixStore' from 'torch.distributed' (/usr/lib/python3/dist-packages/torch/distributed/__init__.py)\n$ ",
    ),
    (
        "rsmi-undefined-symbol",
        "Traceback (most recent call last):\n  File \"/opt/venv/lib/python3.12/site-packages/torch/__init__.py\", line 290, in _load_global_deps\n    ctypes.CDLL(global_deps_lib_path, mode=ctypes.RTLD_GLOBAL)\nOSError: /opt/venv/lib/python3.12/site-packages/torch/lib/libtorch_hip.so: undefined symbol: rsmi_init\n",
    ),
    (
        "uvloop-missing",
        "  File \"/opt/venv/lib/python3.12/site-packages/vllm/entrypoints/openai/api_server.py\", line 21, in <module>\n    import uvloop\nModuleNotFoundError: No module named 'uvloop'\n",
    ),
    (
        "amdsmi-missing",
        "INFO 12-06 01:48:12 [__init__.py:220] No platform detected, vLLM is running on UnspecifiedPlatform\nDEBUG 12-06 01:48:12 [__init__.py:70] ROCm platform is not available because: No module named 'amdsmi'\n",
    ),
    (
        "double-free",
        "INFO: Started server process [1]\ndouble free or corruption (!prev)\nAborted (core dumped)\n",
    ),
    ("cpu-only-wheel", "3.1 ... FAIL: Wheel too small\n"),
    (
        "platform-not-detected",
        "RuntimeError: Failed to infer device type\n",
    ),
];

#[test]
fn diagnose_names_every_spec_symptom_in_pasted_text() {
    for (id, paste) in PASTES {
        let o = forge(&["diagnose", "-", "--json"], Some(paste));
        assert_eq!(o.status.code(), Some(1), "{id}: {}", stderr(&o));
        let j = json(&o);
        let ids: Vec<&str> = j["diagnoses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(id), "{id} not named; got {ids:?}");
        assert_eq!(j["verdict"], "fail");
        let d = j["diagnoses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == *id)
            .unwrap();
        assert!(d["cause"].is_string() && d["fix"].is_string() && d["line"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn diagnose_file_names_line_and_unknown_input_says_so() {
    let tmp = tempdir("diag");
    let dir = tmp.path();
    let f = dir.join("err.txt");
    std::fs::write(
        &f,
        "line one\nline two\nOSError: libtorch_hip.so: undefined symbol: rsmi_init\n",
    )
    .unwrap();
    let o = forge(&["diagnose", f.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("line 3:"), "{e}");
    assert!(e.contains("librocm_smi64"), "{e}");

    let o = forge(&["diagnose", "--json"], Some("hello\nworld\n"));
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("no known failure found"));
    assert_eq!(json(&o)["recognised"], false);

    let o = forge(
        &["diagnose", dir.join("missing.log").to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"));
}

// ---------------------------------------------------------------- scan and watch (issue #3)

const SUMMARY_GOOD: &str = "\
#14 12.3 -- The CXX compiler identification is Clang 20.0.0
#14 40.1 HIP VERSION: 7.1.52802-26aae437f6
#14 40.1 TORCH_HIP_VERSION: 701
#14 40.2 Building PyTorch for GPU arch: gfx1151
#14 103.4 -- ******** Summary ********
#14 103.4 --   USE_CUDA              : OFF
#14 103.4 --   USE_ROCM              : ON
#14 103.4 --   USE_NCCL              : ON
#14 103.4 --   USE_DISTRIBUTED       : ON
#14 103.4 --     USE_GLOO              : ON
#14 103.5 -- Configuring done (95.2s)
";

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/bash\nset -e\n{body}")).unwrap();
    p
}

/// Start a writer script in its own process group (as a build would be).
fn start_writer(script: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    Command::new("bash")
        .arg(script)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn watch(log: &Path, pid: u32) -> std::process::Child {
    watch_with(log, pid, &[])
}

fn watch_with(log: &Path, pid: u32, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args([
            "watch",
            log.to_str().unwrap(),
            "--pid",
            &pid.to_string(),
            "--grace",
            "2",
            "--json",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lines of the good summary, written slowly by bash.
fn slow_lines(text: &str, log: &str, delay: &str) -> String {
    text.lines()
        .map(|l| format!("echo '{l}' >> {log}; sleep {delay}\n"))
        .collect()
}

#[test]
fn scan_names_flags_lines_and_findings() {
    let tmp = tempdir("scan");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let bad = SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : 0");
    std::fs::write(
        &log,
        format!("{bad}#14 200.1 [1/10] Building CXX object a.o\n"),
    )
    .unwrap();
    let o = forge(&["scan", log.to_str().unwrap(), "--json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["verdict"], "fail");
    assert_eq!(j["flags"]["USE_DISTRIBUTED"]["value"], "0");
    assert_eq!(j["flags"]["USE_DISTRIBUTED"]["line"], 9);
    assert_eq!(j["findings"][0]["id"], "2.1");
    assert_eq!(j["findings"][0]["severity"], "fatal");
    assert_eq!(j["progress"]["done"], 1);
    assert!(stderr(&o).contains("line 9"));

    std::fs::write(&log, SUMMARY_GOOD).unwrap();
    let o = forge(&["scan", log.to_str().unwrap(), "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["verdict"], "pass");
    // --arch overrides the recipe's arch list
    let o = forge(&["scan", log.to_str().unwrap(), "--arch", "gfx1100"], None);
    assert_eq!(o.status.code(), Some(1));

    let o = forge(&["scan", dir.join("none.log").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot open log"), "{}", stderr(&o));
}

#[test]
fn watch_stops_a_writer_whose_summary_turns_distributed_off() {
    let tmp = tempdir("watch-bad");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let bad = SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : OFF");
    let script = write_script(
        dir,
        "writer.sh",
        &format!(
            "{}date +%s.%N > {d}/bad-at\nwhile true; do echo '#14 300.0 [1/7891] Building CXX object x.o' >> {logs}; sleep 0.2; done\n",
            slow_lines(&bad, logs, "0.05"),
            d = dir.display()
        ),
    );
    let mut writer = start_writer(&script);
    let w = watch(&log, writer.id());
    let out = w.wait_with_output().unwrap();
    let stopped = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let status = writer.wait().unwrap();
    assert!(
        status.code().is_none(),
        "writer ended by a signal, not by itself: {status:?}"
    );
    let j = json(&out);
    assert_eq!(j["end"], "fatal");
    assert_eq!(j["fatal"]["id"], "2.1");
    assert_eq!(j["fatal"]["line"], 9);
    assert!(
        j["signals"][0]
            .as_str()
            .unwrap()
            .starts_with("SIGINT to group"),
        "{}",
        j["signals"]
    );
    let e = stderr(&out);
    assert!(
        e.contains("FATAL at line 9") && e.contains("fix:") && e.contains("log kept"),
        "{e}"
    );
    // Stopped promptly, not at the end of a stream that never ends (the benchmark measures
    // the real reaction time; this bound only proves fail-fast).
    if let Ok(t) = std::fs::read_to_string(dir.join("bad-at")) {
        let bad_at: f64 = t.trim().parse().unwrap();
        assert!(stopped - bad_at < 5.0, "took {:.2} s", stopped - bad_at);
    }
    assert!(log.exists(), "the log is kept");
}

#[test]
fn watch_follows_a_good_log_to_the_end_and_exits_0() {
    let tmp = tempdir("watch-good");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let script = write_script(
        dir,
        "writer.sh",
        &format!(
            "sleep 0.3\n{}for i in 1 2 3; do echo \"#14 300.$i [$i/3] Building CXX object x.o\" >> {logs}; sleep 0.05; done\n",
            slow_lines(SUMMARY_GOOD, logs, "0.02")
        ),
    );
    let mut writer = start_writer(&script);
    // forge starts before the log exists: it waits for it
    let out = watch(&log, writer.id()).wait_with_output().unwrap();
    writer.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["end"], "process-exited");
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["lines"], 14);
    assert_eq!(j["progress"]["done"], 3);
}

#[test]
fn watch_follows_a_truncated_and_rewritten_log() {
    let tmp = tempdir("watch-trunc");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let bad = SUMMARY_GOOD.replace(
        "USE_DISTRIBUTED       : ON",
        "USE_DISTRIBUTED       : FALSE",
    );
    let script = write_script(
        dir,
        "writer.sh",
        &format!(
            "{good}sleep 0.5\n: > {logs}\nsleep 0.3\n{bad}sleep 600\n",
            good = slow_lines(&SUMMARY_GOOD.repeat(3), logs, "0.01"),
            bad = slow_lines(&bad, logs, "0.02")
        ),
    );
    let mut writer = start_writer(&script);
    let out = watch(&log, writer.id()).wait_with_output().unwrap();
    writer.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(
        j["fatal"]["line"], 9,
        "line numbers restart with the rewritten log"
    );
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn watch_follows_a_replaced_log() {
    let tmp = tempdir("watch-mv");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let bad = SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : OFF");
    let script = write_script(
        dir,
        "writer.sh",
        &format!(
            "{good}sleep 0.4\nprintf '%s' \"$(cat <<'X'\n{bad}X\n)\" > {logs}.new\nmv {logs}.new {logs}\nsleep 600\n",
            good = slow_lines(SUMMARY_GOOD, logs, "0.01"),
        ),
    );
    let mut writer = start_writer(&script);
    let out = watch(&log, writer.id()).wait_with_output().unwrap();
    writer.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));
}

#[test]
fn watch_with_poll_follows_without_inotify() {
    // --poll: for logs on network filesystems, where another machine's writes raise no event.
    let tmp = tempdir("watch-poll");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let bad = SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : 0");
    let script = write_script(
        dir,
        "writer.sh",
        &format!("{}sleep 600\n", slow_lines(&bad, logs, "0.02")),
    );
    let mut writer = start_writer(&script);
    let out = watch_with(&log, writer.id(), &["--poll"])
        .wait_with_output()
        .unwrap();
    writer.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("polling every 100ms"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["fatal"]["line"], 9);
}

#[test]
fn watch_never_signals_the_group_of_the_script_that_started_it() {
    // A script without job control starts the build in the background (in the script's own
    // process group) and runs forge under `timeout` (a group of its own). Signalling the build's
    // group would hit everything else the script runs: only the build may be stopped.
    let tmp = tempdir("watch-group");
    let dir = tmp.path();
    let log = dir.join("build.log");
    let logs = log.to_str().unwrap();
    let bad = SUMMARY_GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED       : OFF");
    let d = dir.display();
    let bystander = format!(
        "python3 -c \"import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *a: (open('{d}/bystander-got-sigint', 'w').close(), sys.exit(0)))\nopen('{d}/bystander-ready', 'w').close()\ntime.sleep(60)\" &\nB=$!\nwhile [ ! -e {d}/bystander-ready ]; do sleep 0.05; done\n"
    );
    let writer = format!("({}sleep 600) &\nP=$!\n", slow_lines(&bad, logs, "0.01"));
    let script = write_script(
        dir,
        "script.sh",
        &format!(
            "{bystander}{writer}set +e\ntimeout 60 {forge} watch {logs} --pid $P --grace 1 > /dev/null 2>&1\necho \"forge=$?\" > {d}/after\nkill $P $B 2>/dev/null\nexit 0\n",
            forge = env!("CARGO_BIN_EXE_forge"),
        ),
    );
    let status = start_writer(&script).wait().unwrap();
    assert!(status.success(), "the script was killed: {status:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("after")).unwrap().trim(),
        "forge=1"
    );
    assert!(
        !dir.join("bystander-got-sigint").exists(),
        "forge signalled a process of its caller's group"
    );
}

#[test]
fn watch_errors_are_clear_exit_2() {
    let o = forge(&["watch", "/nonexistent-dir/build.log", "--pid", "1"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = forge(&["watch", "/tmp/x.log", "--pid", "999999999"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- issue 12: verdicts and edges

/// What forge's own log holds when the base image cannot be pulled (no registry access): the
/// engine's error on the metadata step, as `forge build` wrote it here for a recipe whose
/// `base-image` is `forge-no-such-base:none` (copied verbatim); configure never reached.
const PULL_FAILED: &str = "\
#1 [internal] load remote build context
#2 copy /context /
#3 [internal] load metadata for docker.io/library/forge-no-such-base:none
#3 ERROR: failed to do request: Head \"https://registry-1.docker.io/v2/library/forge-no-such-base/manifests/none\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host
";

/// Issue 12, item 1: a log that never reached configure is not blamed on USE_DISTRIBUTED.
#[test]
fn scan_of_a_log_that_never_reached_configure_names_its_first_error_issue_12() {
    let tmp = tempdir("noconf");
    let dir = tmp.path();
    let log = dir.join("build.log");
    std::fs::write(&log, PULL_FAILED).unwrap();
    let o = forge(&["scan", log.to_str().unwrap(), "--json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    for id in ["2.1", "build.hip", "build.arch", "build.cuda"] {
        let c = check_of(&j, id);
        assert_eq!(c["status"], "skip", "{id}: {c}");
        let ev = c["evidence"].as_str().unwrap();
        assert!(
            ev.contains("ends before PyTorch's configuration summary")
                && ev.contains("first error at line 4")
                && ev.contains("base-image-unreachable"),
            "{id}: {ev}"
        );
        assert!(c["hint"].is_null(), "{id}: a skip carries no fix: {c}");
    }
    let fatal = check_of(&j, "build.fatal");
    assert_eq!(fatal["status"], "fail", "{fatal}");
    assert!(
        fatal["evidence"]
            .as_str()
            .unwrap()
            .starts_with("line 4: #3 ERROR:"),
        "{fatal}"
    );
    assert!(
        fatal["hint"].as_str().unwrap().contains("base-image"),
        "{fatal}"
    );
    assert!(!stderr(&o).contains("USE_DISTRIBUTED=1"), "{}", stderr(&o));

    // An empty log says so, and nothing passes on it.
    std::fs::write(&log, "").unwrap();
    let o = forge(&["scan", log.to_str().unwrap(), "--json"], None);
    let j = json(&o);
    assert_eq!(j["verdict"], "incomplete", "{j}");
    for c in j["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "skip", "{c}");
        assert!(
            c["evidence"].as_str().unwrap().contains("the log is empty"),
            "{c}"
        );
    }
}

/// Issue 12, item 8: `forge scan -` reads stdin, as `forge diagnose -` does.
#[test]
fn scan_dash_reads_stdin_issue_12() {
    let o = forge(&["scan", "-", "--json"], Some(SUMMARY_GOOD));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["subject"], "scan <stdin>");
    assert_eq!(j["flags"]["USE_DISTRIBUTED"]["line"], 9);
}

/// Issue 12, item 7: `--arch` is validated as a recipe's `archs` is; `--threads 0` is refused.
#[test]
fn bad_arch_and_zero_threads_are_refused_issue_12() {
    let tmp = tempdir("badarch");
    let dir = tmp.path();
    let log = dir.join("build.log");
    std::fs::write(&log, SUMMARY_GOOD).unwrap();
    for args in [
        vec!["scan", log.to_str().unwrap(), "--arch", "banana"],
        vec!["scan", log.to_str().unwrap(), "--arch", "gfx1151;banana"],
        vec![
            "wheel",
            "/nonexistent/torch-2.9.1-cp312-cp312-linux_x86_64.whl",
            "--arch",
            "banana",
        ],
        vec!["watch", log.to_str().unwrap(), "--arch", "banana"],
    ] {
        let o = forge(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("`--arch banana` is not a GPU arch name")
                && e.contains("hint: arch names look like gfx1151"),
            "{args:?}: {e}"
        );
    }
    for args in [
        vec!["export", "forge-test-base:trixie", "--threads", "0"],
        vec!["wheel", "/nonexistent/x.whl", "--threads", "0"],
    ] {
        let o = forge(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
    }
}

/// Issue 12, items 3 and 4, through the CLI: BuildKit's quoting of the Dockerfile is not a
/// finding, glibc's tcache wording is the double free.
#[test]
fn diagnose_skips_quoted_run_lines_and_knows_tcache_double_free_issue_12() {
    let log = "\
#9 [runtime 3/3] RUN echo \"No module named 'uvloop'\" > /dev/null && vllm serve facebook/opt-125m
#9 1.204 INFO 12-06 01:48:12 [api_server.py:1742] vLLM API server version 0.12.0
#9 3.981 free(): double free detected in tcache 2
#9 ERROR: process \"/bin/sh -c echo \\\"No module named 'uvloop'\\\" > /dev/null && vllm serve facebook/opt-125m\" did not complete successfully: exit code: 134
";
    let o = forge(&["diagnose", "-", "--json"], Some(log));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let d = j["diagnoses"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{j}");
    assert_eq!(d[0]["id"], "double-free");
    assert_eq!(d[0]["line"], 3);
}

/// Issue 12, item 11: each command's help has examples; completions come from clap_complete.
#[test]
fn help_has_examples_and_completions_load_in_bash_issue_12() {
    for cmd in [
        "plan",
        "preflight",
        "diagnose",
        "scan",
        "watch",
        "build",
        "clean",
        "wheel",
        "export",
        "image",
        "completions",
    ] {
        let o = forge(&[cmd, "--help"], None);
        assert!(o.status.success(), "{cmd}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("Examples:\n  ") && text.contains(&format!("forge {cmd}")),
            "{cmd} --help has no example:\n{text}"
        );
    }
    let tmp = tempdir("completions");
    let dir = tmp.path();
    let o = forge(&["completions", "bash"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = dir.join("forge.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let b = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p forge && COMP_WORDS=(forge sc) COMP_CWORD=1 && _forge forge sc forge && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&b.stdout);
    assert!(
        b.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        out.contains("-F _forge forge") && out.contains("scan"),
        "{out}"
    );
    for shell in ["zsh", "fish"] {
        let o = forge(&["completions", shell], None);
        assert_eq!(o.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("export"),
            "{shell}"
        );
    }
    let o = forge(&["completions", "tcsh"], None);
    assert_eq!(o.status.code(), Some(2));
    // A reader that stops early gets no panic.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} completions bash | head -1 >/dev/null",
            env!("CARGO_BIN_EXE_forge")
        ))
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A wheel that is not torch: every torch check skips with its reason.
fn tiny_wheel(dir: &Path) -> PathBuf {
    let p = dir.join("tiny-1.0-py3-none-any.whl");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("tiny-1.0.dist-info/WHEEL", opts).unwrap();
    z.write_all(b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        .unwrap();
    z.start_file("tiny/__init__.py", opts).unwrap();
    z.write_all(b"").unwrap();
    z.finish().unwrap();
    p
}

/// Issue 12, item 10: every command's `--json` output, good and bad, against the one schema
/// (`src/report/envelope.schema.json`), validated by the `jsonschema` crate (Draft 2020-12).
#[test]
fn every_command_json_matches_the_envelope_schema_issue_12() {
    let tmp = tempdir("schema");
    let dir = tmp.path();
    let log = dir.join("build.log");
    std::fs::write(&log, SUMMARY_GOOD).unwrap();
    let bad_log = dir.join("bad.log");
    std::fs::write(&bad_log, PULL_FAILED).unwrap();
    let wheel = tiny_wheel(dir);
    let logs = log.to_str().unwrap();
    let mut runs: Vec<(String, Output)> = Vec::new();
    let run = |name: &str, args: &[&str], stdin: Option<&str>| {
        let mut a = args.to_vec();
        a.push("--json");
        (name.to_owned(), forge(&a, stdin))
    };
    runs.push(run("plan", &["plan"], None));
    runs.push(run("plan-error", &["plan", "--rocm", "6.2.4"], None));
    runs.push(run("preflight", &["preflight"], None));
    runs.push(run(
        "diagnose-found",
        &["diagnose", "-"],
        Some("free(): invalid pointer\n"),
    ));
    runs.push(run("diagnose-none", &["diagnose", "-"], Some("all good\n")));
    runs.push(run("scan-pass", &["scan", logs], None));
    runs.push(run("scan-fail", &["scan", bad_log.to_str().unwrap()], None));
    runs.push(run("scan-empty", &["scan", "-"], Some("")));
    runs.push(run("scan-error", &["scan", "/nonexistent.log"], None));
    runs.push(run("wheel", &["wheel", wheel.to_str().unwrap()], None));
    runs.push(run("wheel-error", &["wheel", "/nonexistent/x.whl"], None));
    runs.push(run("completions-error", &["completions", "bash"], None));
    runs.push(run(
        "image-error",
        &["image", "x", "--recipe", "/nonexistent.toml"],
        None,
    ));
    runs.push(run("build-error", &["build", "--rocm", "6.2.4"], None));
    runs.push(run(
        "watch-error",
        &["watch", logs, "--pid", "999999999"],
        None,
    ));
    {
        // watch: a finished log and a writer that exits at once.
        let mut child = Command::new("sleep").arg("0.5").spawn().unwrap();
        let pid = child.id().to_string();
        let o = forge(&["watch", logs, "--pid", &pid, "--json"], None);
        child.wait().unwrap();
        runs.push(("watch".into(), o));
    }
    if common::engine() {
        let arts = dir.join("arts");
        runs.push(run("clean", &["clean"], None));
        runs.push(run("image", &["image", "forge-test-base:trixie"], None));
        let tiny = format!("forge-test-tiny:cli-{}", std::process::id());
        common::tiny_image(&tiny);
        let out = arts.join("tiny.tar.gz");
        runs.push(run(
            "export",
            &["export", &tiny, "-o", out.to_str().unwrap()],
            None,
        ));
        runs.push(run(
            "export-release",
            &[
                "export",
                &tiny,
                "-o",
                out.to_str().unwrap(),
                "--rocm",
                "7.1.1",
            ],
            None,
        ));
        common::remove_image(&tiny);
        runs.push(run(
            "build-stopped",
            &[
                "build",
                "--recipe",
                common::root()
                    .join("tests/fixtures/docker/bad.toml")
                    .to_str()
                    .unwrap(),
                "--artifacts",
                arts.to_str().unwrap(),
                "--run-id",
                "schema-bad",
            ],
            None,
        ));
        // Pretty-printed, as every other command prints it.
        let clean = &runs.iter().find(|r| r.0 == "clean").unwrap().1;
        assert!(
            String::from_utf8_lossy(&clean.stdout).lines().count() > 3,
            "{}",
            String::from_utf8_lossy(&clean.stdout)
        );
    }
    // Validated in-process by the `jsonschema` crate (Draft 2020-12): never skipped.
    let schema = common::schema_validator("src/report/envelope.schema.json");
    let mut invalid = Vec::new();
    for (name, o) in &runs {
        let j = json(o);
        // The structure every consumer relies on, checked here as well as by the schema.
        let code = o.status.code().unwrap();
        let verdict = j["verdict"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {j}"));
        assert!(j["checks"].is_array(), "{name}: {j}");
        match code {
            0 => assert!(
                matches!(verdict, "pass" | "incomplete"),
                "{name}: {verdict}"
            ),
            1 => assert_eq!(verdict, "fail", "{name}"),
            2 => assert_eq!(verdict, "error", "{name}"),
            _ => panic!("{name}: exit {code}"),
        }
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.starts_with("{\n  \""),
            "{name}: not pretty-printed: {text}"
        );
        invalid.extend(
            common::schema_errors(&schema, &j)
                .into_iter()
                .map(|e| format!("{name}: {e}")),
        );
    }
    assert!(
        invalid.is_empty(),
        "outputs that do not match src/report/envelope.schema.json (of {}):\n{}",
        runs.len(),
        invalid.join("\n")
    );
    // The schema really constrains: a check without evidence is refused.
    let broken = serde_json::json!({
        "subject": "x",
        "verdict": "pass",
        "checks": [{"id": "2.1", "title": "t", "status": "fail"}]
    });
    let errors = common::schema_errors(&schema, &broken);
    assert!(
        errors.iter().any(|e| e.contains("evidence")),
        "the schema accepted a check with no evidence: {errors:?}"
    );
}

/// Issue 12, item 12: preflight checks free space under the artifacts directory too (the
/// archive goes there), with the recipe's `min-free-artifacts-gb`.
#[test]
fn preflight_checks_the_artifacts_disk_issue_12() {
    let tmp = tempdir("preflight-arts");
    let dir = tmp.path();
    let arts = dir.join("not-yet/artifacts");
    let recipe = dir.join("r.toml");
    std::fs::write(
        &recipe,
        shipped_recipe_text()
            .replace(
                "../dockerfiles/vllm-rocm.Dockerfile",
                "forge:vllm-rocm.Dockerfile",
            )
            .replace(
                "min-memory-per-job-gb = 8",
                "min-memory-per-job-gb = 8\nmin-free-artifacts-gb = 1000000",
            ),
    )
    .unwrap();
    let o = forge(
        &[
            "preflight",
            "--recipe",
            recipe.to_str().unwrap(),
            "--artifacts",
            arts.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let c = check_of(&j, "host.disk-artifacts");
    assert_eq!(c["status"], "fail", "{c}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains(arts.to_str().unwrap())
            && ev.contains("not created yet")
            && ev.contains(&format!("measured at {}", dir.display())),
        "{ev}"
    );
    assert!(c["hint"].as_str().unwrap().contains("--artifacts"), "{c}");
    // The engine's data root is still checked beside it.
    check_of(&j, "host.disk");
}

#[test]
fn every_shipped_recipe_plans_clean_against_the_shipped_dockerfile() {
    // issue #8: a recipe passing a build arg the Dockerfile dropped (AOTRITON_GPU_TARGETS) fails
    for rocm in ["7.1.1", "7.0.2", "6.2.4"] {
        let o = forge(
            &["plan", "--rocm", rocm, "--allow-unsupported", "--json"],
            None,
        );
        assert_eq!(o.status.code(), Some(0), "{rocm}: {}", stderr(&o));
        let j = json(&o);
        assert_eq!(j["verdict"], "pass", "{rocm}: {j}");
        for id in ["plan.args", "plan.stages", "plan.arch-env"] {
            let c = j["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id);
            assert_eq!(c.unwrap()["status"], "pass", "{rocm} {id}: {j}");
        }
    }
}

/// Issue 11: `--run-id ../../escape` wrote outside the artifacts, `""` into them, `a/b` failed
/// late with wrong verdicts. Each is refused before anything is written (exit 2, a hint).
#[test]
fn unusable_run_ids_are_refused_before_anything_is_written() {
    let tmp = tempdir("runid");
    // two levels down, so that `../../escape` would still land in the temp dir
    let dir = tmp.path().join("in/artifacts");
    for id in ["../../escape", "", "a/b", "..", "latest"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_forge"))
            .args(["build", "--artifacts"])
            .arg(&dir)
            .args(["--run-id", id])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{id:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("not a usable run id") && e.contains("hint:"),
            "{id:?}: {e}"
        );
    }
    assert!(!dir.exists(), "something was written");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "something was written beside the artifacts"
    );
}

/// `forge build --resume` where no run was ever made says so (not a complaint about the run id
/// `latest`), and exits 2 before touching the engine or the directory.
#[test]
fn resume_with_no_run_says_there_is_nothing_to_resume() {
    let tmp = tempdir("resume-none");
    let d = tmp.path();
    let arts = d.join("artifacts");
    let o = forge(
        &["build", "--resume", "--artifacts", arts.to_str().unwrap()],
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to resume"), "{err}");
    assert!(err.contains("hint:") && err.contains("forge runs"), "{err}");
    assert!(!arts.exists(), "it made {}", arts.display());
}

/// Issue 18 (the hook is signal-hook's now): a command that holds nothing to clean up (here
/// `forge scan -` waiting on its stdin) ends at once on SIGINT or SIGTERM with 128 + signal,
/// not killed by the signal.
#[test]
fn issue_18_a_signal_ends_a_command_holding_nothing_at_once_with_its_code() {
    for (sig, want) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_forge"))
            .args(["scan", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // the hook is installed first thing; scan then blocks reading its stdin
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sent = std::time::Instant::now();
        unsafe { libc::kill(child.id() as i32, sig) };
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(want), "signal {sig}: {st}");
        assert!(sent.elapsed().as_millis() < 500, "{:?}", sent.elapsed());
    }
}

/// Issue 26: a configure that fails on a `CMake Error` (lines from pytorch/pytorch#41886): `scan`
/// fails `build.fatal` with the specific cause and its fix, `diagnose` names it.
#[test]
fn scan_and_diagnose_name_a_cmake_error_issue_26() {
    let log = "\
rocrand VERSION: 2.10.1.0
CMake Error at /usr/share/cmake-3.18/Modules/CMakeFindDependencyMacro.cmake:47 (find_package):
  By not providing \"Findhip.cmake\" in CMAKE_MODULE_PATH this project has
  asked CMake to find a package configuration file provided by \"hip\", but
  CMake did not find one.

  Could not find a package configuration file provided by \"hip\" with any of
  the following names:
";
    let o = forge(&["scan", "-", "--json"], Some(log));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let fatal = check_of(&j, "build.fatal");
    assert_eq!(fatal["status"], "fail", "{fatal}");
    let ev = fatal["evidence"].as_str().unwrap();
    assert!(
        ev.starts_with("line 7:") && ev.contains("cmake-missing-package"),
        "{ev}"
    );
    assert!(
        fatal["hint"]
            .as_str()
            .unwrap()
            .contains("CMAKE_PREFIX_PATH"),
        "{fatal}"
    );
    let o = forge(&["diagnose", "-"], Some(log));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stderr(&o);
    assert!(
        out.contains("(cmake-missing-package)") && out.contains("(cmake-error)"),
        "{out}"
    );
}
