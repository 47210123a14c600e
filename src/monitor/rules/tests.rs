use super::*;

fn expect() -> Expect {
    Expect {
        archs: vec!["gfx1151".into()],
        rules: Vec::new(),
    }
}

/// Feed a whole log; returns the monitor after `finish`.
fn run(log: &str) -> Monitor {
    let mut m = Monitor::new(expect());
    m.feed(log.as_bytes());
    m.finish();
    m
}

fn fatal_line(m: &Monitor) -> Option<(String, u64)> {
    m.fatal().map(|f| (f.id.clone(), f.line))
}

fn status(m: &Monitor, id: &str) -> Status {
    m.checks().into_iter().find(|c| c.id == id).unwrap().status
}

/// A good configure of PyTorch for ROCm, as `setup.py` prints it (no BuildKit prefix).
const GOOD: &str = "\
Building wheel torch-2.9.1a0+gitd38164a
-- The CXX compiler identification is Clang 20.0.0
-- Found HIP: /opt/rocm (found version \"7.1.52802-26aae437f6\")

***** ROCm version from rocm_version.h ****

ROCM_VERSION_DEV: 7.1.1
HIP VERSION: 7.1.52802-26aae437f6
TORCH_HIP_VERSION: 701
Building PyTorch for GPU arch: gfx1151
-- ******** Summary ********
-- General:
--   CMake version         : 3.31.6
--   CMake command         : /usr/bin/cmake
--   C++ compiler          : /opt/rocm/llvm/bin/clang++
--   CXX flags             :  -ffunction-sections -fdata-sections -DUSE_PTHREADPOOL
--   Build type            : Release
--   USE_CUDA              : OFF
--   USE_ROCM              : ON
--     ROCM_VERSION        : 7.1.1
--     USE_FLASH_ATTENTION : ON
--   USE_NCCL              : ON
--     USE_SYSTEM_NCCL     : OFF
--   USE_DISTRIBUTED       : ON
--     USE_MPI               : OFF
--     USE_GLOO              : ON
--     USE_GLOO_WITH_OPENSSL : OFF
--     USE_TENSORPIPE        : ON
--   Public Dependencies  : caffe2::Threads
-- Configuring done (95.2s)
-- Generating done (3.1s)
-- Build files have been written to: /src/pytorch/build
[1/7891] Building CXX object c10/CMakeFiles/c10.dir/core/Allocator.cpp.o
[2/7891] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/__/torch/csrc/distributed/c10d/Backoff.cpp.o
[3/7891] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/__/torch/csrc/distributed/c10d/ProcessGroup.cpp.o
[4/7891] Building HIP object caffe2/CMakeFiles/torch_hip.dir/__/aten/src/ATen/native/hip/Activation.hip.o
";

#[test]
fn good_log_passes_every_check() {
    let m = run(GOOD);
    assert!(m.fatal().is_none(), "{:?}", m.findings);
    for c in m.checks() {
        assert_eq!(c.status, Status::Pass, "{} {}", c.id, c.evidence);
    }
    assert_eq!(m.flags["USE_DISTRIBUTED"].line, 24);
    assert_eq!(m.flags["USE_GLOO"].on, Some(true));
    assert_eq!(m.arch_list.as_ref().unwrap().0, ["gfx1151"]);
    assert_eq!(m.hip_version.as_ref().unwrap().0, "7.1.52802-26aae437f6");
    assert_eq!(m.progress.unwrap().done, 4);
    assert_eq!(m.progress.unwrap().total, 7891);
    assert_eq!(m.progress.unwrap().line, 36);
    assert_eq!(m.lines, 36);
    let hip = m
        .checks()
        .into_iter()
        .find(|c| c.id == "build.hip")
        .unwrap();
    assert!(hip.evidence.contains("no USE_HIP line"), "{}", hip.evidence);
    assert!(
        hip.evidence.contains("HIP VERSION: 7.1.52802"),
        "{}",
        hip.evidence
    );
}

fn buildkit(log: &str) -> String {
    log.lines()
        .enumerate()
        .map(|(i, l)| format!("#12 {}.{} {l}\n", 100 + i / 10, i % 10))
        .collect()
}

#[test]
fn buildkit_prefix_and_crlf_change_nothing() {
    let m = run(&buildkit(GOOD));
    assert!(m.fatal().is_none(), "{:?}", m.findings);
    assert_eq!(m.flags["USE_DISTRIBUTED"].line, 24);
    assert_eq!(m.progress.unwrap().done, 4);
    let crlf = GOOD.replace('\n', "\r\n");
    let m = run(&crlf);
    assert!(m.fatal().is_none());
    assert_eq!(m.flags["USE_DISTRIBUTED"].value, "ON");
}

#[test]
fn distributed_off_is_fatal_at_its_line_in_every_spelling() {
    for v in ["OFF", "0", "FALSE", "off", "No", ""] {
        let log = GOOD.replace(
            "--   USE_DISTRIBUTED       : ON",
            &format!("--   USE_DISTRIBUTED       : {v}"),
        );
        for text in [log.clone(), buildkit(&log)] {
            let m = run(&text);
            assert_eq!(fatal_line(&m), Some(("2.1".into(), 24)), "value {v:?}");
            assert_eq!(status(&m, "2.1"), Status::Fail);
            assert_eq!(status(&m, "2.2"), Status::Fail);
        }
    }
}

#[test]
fn fatal_is_raised_while_feeding_not_at_the_end() {
    let log = GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED : 0");
    let mut m = Monitor::new(expect());
    let upto: String = log.lines().take(24).map(|l| format!("{l}\n")).collect();
    m.feed(upto.as_bytes());
    assert_eq!(fatal_line(&m), Some(("2.1".into(), 24)));
}

#[test]
fn summary_without_distributed_line_is_fatal_when_it_ends() {
    let log: String = GOOD
        .lines()
        .filter(|l| !l.contains("USE_DISTRIBUTED") && !l.starts_with("--     USE_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut m = Monitor::new(expect());
    let end = log
        .lines()
        .position(|l| l.starts_with("-- Configuring done"))
        .unwrap();
    let head: String = log
        .lines()
        .take(end + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    m.feed(head.as_bytes());
    let f = m.fatal().expect("fatal at the end of the summary");
    assert_eq!(f.id, "2.1");
    assert_eq!(f.line, end as u64 + 1);
    assert!(f.message.contains("without a USE_DISTRIBUTED line"));
}

#[test]
fn summary_cut_by_end_of_log_is_fatal_at_finish() {
    let cut: String = GOOD.lines().take(20).map(|l| format!("{l}\n")).collect();
    let mut m = Monitor::new(expect());
    m.feed(cut.as_bytes());
    assert!(m.fatal().is_none());
    m.finish();
    assert_eq!(m.fatal().unwrap().id, "2.1");
}

#[test]
fn rocm_off_and_cuda_on_are_fatal() {
    let m = run(&GOOD.replace("USE_ROCM              : ON", "USE_ROCM              : OFF"));
    assert_eq!(fatal_line(&m), Some(("2.1".into(), 19)));
    assert_eq!(status(&m, "build.hip"), Status::Fail);
    let m = run(&GOOD.replace("USE_CUDA              : OFF", "USE_CUDA              : ON"));
    assert_eq!(fatal_line(&m), Some(("build.cuda".into(), 18)));
}

#[test]
fn arch_list_without_target_is_fatal_with_it_passes() {
    let m = run(&GOOD.replace("GPU arch: gfx1151", "GPU arch: gfx900;gfx906;gfx90a;gfx942"));
    let f = m.fatal().unwrap();
    assert_eq!((f.id.as_str(), f.line), ("build.arch", 10));
    assert!(f.message.contains("hipErrorInvalidImage"));
    let m = run(&GOOD.replace("GPU arch: gfx1151", "GPU arch: gfx1100;gfx1151;gfx1201"));
    assert!(m.fatal().is_none());
    // gfx11510 is not gfx1151
    let m = run(&GOOD.replace("GPU arch: gfx1151", "GPU arch: gfx11510"));
    assert_eq!(m.fatal().unwrap().id, "build.arch");
}

#[test]
fn arch_detection_failures_are_fatal() {
    for (line, id) in [
        (
            "CMake Error at cmake/public/LoadHIP.cmake:141 (message):\n  No GPU arch specified for ROCm build. Please use PYTORCH_ROCM_ARCH environment variable to specify GPU archs to build for.",
            "arch-not-specified",
        ),
        (
            "CMake Error at cmake/public/LoadHIP.cmake:130 (message):\n  Could not detect ROCm arch for GPUs on machine.  Result: ''",
            "arch-not-detected",
        ),
    ] {
        let log = GOOD.replace(
            "Building PyTorch for GPU arch: gfx1151\n",
            &format!("{line}\n"),
        );
        let m = run(&log);
        assert_eq!(m.fatal().unwrap().id, id);
        assert_eq!(m.fatal().unwrap().line, 11);
    }
}

#[test]
fn compile_failures_are_fatal_with_diagnosis() {
    let cases = [
        (
            "c++: fatal error: Killed signal terminated program cc1plus",
            "compile-oom",
        ),
        (
            "clang++: error: unable to execute command: Killed",
            "compile-oom",
        ),
        ("ninja: build stopped: subcommand failed.", "ninja-stopped"),
        ("FAILED: lib/libtorch_hip.so ", "libtorch-hip-link"),
        (
            "FAILED: caffe2/CMakeFiles/torch_hip.dir/__/aten/src/ATen/native/hip/Activation.hip.o ",
            "compile-step-failed",
        ),
        (
            "ld.lld: error: undefined reference to `rsmi_init'",
            "rsmi-undefined-reference",
        ),
        (
            "/usr/bin/ld: libaotriton_v2.a(x.o): relocation R_X86_64_PC32 out of range: 2386472144 is not in [-2147483648, 2147483647]",
            "relocation-overflow",
        ),
        (
            "  Compatibility with CMake < 3.5 has been removed from CMake.",
            "cmake-compat",
        ),
        ("OSError: [Errno 28] No space left on device", "disk-full"),
    ];
    for (line, id) in cases {
        let log = format!("{GOOD}{line}\n[5/7891] Building CXX object x.o\n");
        for text in [log.clone(), buildkit(&log)] {
            let m = run(&text);
            let f = m.fatal().unwrap_or_else(|| panic!("{id} not fatal"));
            assert_eq!((f.id.as_str(), f.line), (id, 37), "{line}");
            assert!(f.hint.is_some());
            assert_eq!(status(&m, "build.fatal"), Status::Fail);
        }
    }
    let m = run(
        "#14 ERROR: process \"/bin/bash -o pipefail -c python3 setup.py bdist_wheel\" did not complete successfully: exit code: 137\n",
    );
    assert_eq!(m.fatal().unwrap().id, "compile-oom");
}

#[test]
fn lines_quoting_the_dockerfile_never_match() {
    let log = "\
Step 7/12 : ENV USE_DISTRIBUTED=0 MAX_JOBS=4
 ---> Running in 1c2d3e4f
#9 [torch-build 4/7] RUN echo 'No space left on device' && USE_DISTRIBUTED=0 ninja: build stopped: subcommand failed
#9 DONE 0.1s
";
    let m = run(log);
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert!(m.step.as_deref().unwrap().starts_with("[torch-build 4/7]"));
}

#[test]
fn check_2_2_matches_off_lines_but_not_paths() {
    for line in [
        "-- Disabling distributed: USE_DISTRIBUTED=0",
        "export USE_DISTRIBUTED=0",
        "cmake -DUSE_DISTRIBUTED=OFF ..",
        "WARNING: torch.distributed is not available on this platform",
        "Building without distributed support",
        "USE_DISTRIBUTED=",
    ] {
        let m = run(&format!("{line}\n"));
        assert_eq!(status(&m, "2.2"), Status::Fail, "{line}");
    }
    for line in [
        "[2/7891] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/__/torch/csrc/distributed/c10d/Backoff.cpp.o",
        "copying torch/distributed/elastic/utils/distributed.py -> build/lib/torch/distributed/elastic",
        "-- USE_DISTRIBUTED=1 (distributed on)",
        "forge: PYTORCH_ROCM_ARCH=gfx1151 USE_DISTRIBUTED=1 USE_ROCM=1 MAX_JOBS=4",
        "--   USE_DISTRIBUTED       : ON",
    ] {
        let m = run(&format!("{line}\n"));
        assert_eq!(status(&m, "2.2"), Status::Pass, "{line}");
    }
}

#[test]
fn clipping_is_a_warning_and_fails_its_check() {
    let log = format!("{GOOD}#12 [output clipped, log limit 1MiB reached]\n");
    let m = run(&format!("{GOOD}[output clipped, log limit 1MiB reached]\n"));
    assert_eq!(m.clipped, Some(37));
    let m = run(&log);
    assert!(m.fatal().is_none());
    let f = m.findings.iter().find(|f| f.id == "build.clipped").unwrap();
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(m.clipped, Some(37));
    assert_eq!(status(&m, "build.clipped"), Status::Fail);
}

#[test]
fn invalid_utf8_is_tolerated() {
    let mut log = b"caf\xff\xfe garbage \xc3\n".to_vec();
    let good = GOOD.replace("USE_DISTRIBUTED       : ON", "USE_DISTRIBUTED : @");
    let at = good.find('@').unwrap();
    log.extend_from_slice(&good.as_bytes()[..at]);
    log.push(0xff);
    log.extend_from_slice(&good.as_bytes()[at + 1..]);
    let mut m = Monitor::new(expect());
    m.feed(&log);
    m.finish();
    // an invalid byte is not a flag value: recorded, not "on"
    assert_eq!(status(&m, "2.1"), Status::Fail);
}

#[test]
fn recipe_rules_apply() {
    let rule: RuleSpec = toml::from_str(
        "id = \"recipe.hipcc-warning\"\npattern = \"hipcc: warning: .*deprecated\"\nseverity = \"fatal\"\nmessage = \"deprecated hipcc\"\nhint = \"use amdclang++\"",
    )
    .unwrap();
    let mut m = Monitor::new(Expect {
        archs: vec!["gfx1151".into()],
        rules: vec![rule],
    });
    m.feed(format!("{GOOD}#3 1.0 hipcc: warning: option is deprecated\n").as_bytes());
    let f = m.fatal().unwrap();
    assert_eq!((f.id.as_str(), f.line), ("recipe.hipcc-warning", 37));
    assert_eq!(f.hint.as_deref(), Some("use amdclang++"));
}

#[test]
fn strip_prefix_shapes() {
    assert_eq!(
        strip_prefix(b"#12 103.4 -- x"),
        (&b"-- x"[..], LineKind::Output)
    );
    assert_eq!(
        strip_prefix(b"#12 [base 1/3] FROM x").1,
        LineKind::StepHeader
    );
    assert_eq!(strip_prefix(b"#12 DONE 0.3s").1, LineKind::Meta);
    assert_eq!(strip_prefix(b"#12 ERROR: x").0, b"ERROR: x");
    assert_eq!(
        strip_prefix(b"#include <x>"),
        (&b"#include <x>"[..], LineKind::Output)
    );
    assert_eq!(strip_prefix(b"Step 3/9 : RUN x").1, LineKind::StepHeader);
    assert_eq!(strip_prefix_str("#5 0.25 héllo"), "héllo");
}

/// Issue 12, items 1 and 3: quotes of the Dockerfile and the builder's own error lines.
#[test]
fn quotes_and_builder_errors_issue_12() {
    assert_eq!(
        strip_prefix(b" > [torch-build 3/3] RUN echo x:").1,
        LineKind::Quote
    );
    assert_eq!(strip_prefix(b"  10 | >>> RUN echo x").1, LineKind::Quote);
    assert_eq!(
        strip_prefix(b"#7 1.5    10 |     foo();").1,
        LineKind::Quote
    );
    assert_eq!(strip_prefix(b"#7 1.5 [10/20] Building").1, LineKind::Output);
    assert!(is_builder_error(b"#3 ERROR: failed to do request"));
    assert!(is_builder_error(b"ERROR: failed to solve: x"));
    assert!(is_builder_error(
        b"The command '/bin/sh -c make' returned a non-zero code: 2"
    ));
    assert!(!is_builder_error(b"#3 12.5 ERROR: a program's own output"));
    assert_eq!(
        &*unquote_command(
            b"ERROR: process \"/bin/sh -c echo \\\"No space left on device\\\"\" did not complete successfully: exit code: 1"
        ),
        "ERROR: process \"…\" did not complete successfully: exit code: 1".as_bytes()
    );
    // forge's Dockerfiles run RUN under `SHELL ["/bin/bash", "-o", "pipefail", "-c"]`: the quoted
    // command is elided there too (seen in the prebuilt rehearsal on Docker 20.10: a guard's own
    // `echo "forge: no HIP compiler ..."` in the quoted RUN matched its rule)
    assert_eq!(
        &*unquote_command(
            b"#9 ERROR: executor failed running [/bin/bash -o pipefail -c ln -s x /opt/rocm && if ! hipcc --version; then echo \"forge: no HIP compiler at /opt/rocm/bin/hipcc\"; fi]: exit code: 1"
        ),
        "#9 ERROR: executor failed running […]: exit code: 1".as_bytes()
    );
    assert_eq!(
        &*unquote_command(
            b"ERROR: process \"/bin/bash -o pipefail -c echo \\\"forge: no rocm-sdk tool\\\"\" did not complete successfully: exit code: 1"
        ),
        "ERROR: process \"…\" did not complete successfully: exit code: 1".as_bytes()
    );
    // A log that ends before configure: the summary checks skip, the builder's error fails.
    let m = run(
        "#2 [internal] load metadata for docker.io/x/y:z\n#2 ERROR: pull access denied for x/y, repository does not exist\n",
    );
    assert_eq!(status(&m, "2.1"), Status::Skip);
    assert_eq!(status(&m, "build.arch"), Status::Skip);
    assert_eq!(status(&m, "build.fatal"), Status::Fail);
    // Issue 26: BuildKit's own errors are fatal findings, with their cause.
    assert_eq!(m.fatal().unwrap().id, "base-image-unreachable");
    let why = m.not_configured().unwrap();
    assert!(
        why.contains("first error at line 2") && why.contains("base-image-unreachable"),
        "{why}"
    );
    // A log that reached the summary keeps the old verdicts.
    assert_eq!(run(GOOD).not_configured(), None);
}

/// Issue 26: one line of each failure shape, as public reports quote them (not corpus lines):
/// fatal at its line with its cause, the specific cause ranked above the generic class.
#[test]
fn failure_shapes_are_fatal_with_their_cause_issue_26() {
    let cases = [
        (
            "CMake Error at cmake/public/LoadHIP.cmake:33 (find_package): Could not find a package configuration file provided by \"hip\"",
            "cmake-missing-package",
        ),
        (
            "CMake Error at cmake/public/LoadHIP.cmake:33 (find_package):",
            "cmake-error",
        ),
        (
            "CMake Error: The source directory \"/src/x\" does not exist.",
            "cmake-error",
        ),
        (
            "-- disabling ROCM because NOT USE_ROCM is set",
            "rocm-disabled",
        ),
        (
            "fatal: reference is not a tree: 1c57644d4cb3aff84642e1326d88681a656507ce",
            "git-ref-missing",
        ),
        (
            "error: pathspec 'release/2.99' did not match any file(s) known to git",
            "git-ref-missing",
        ),
        (
            "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts",
            "pip-resolution",
        ),
        (
            "ERROR: Cannot install torch==2.9.0 and vllm because these package versions have conflicting dependencies.",
            "pip-resolution",
        ),
        (
            "clang++: error: unsupported HIP gpu architecture: gfx1151",
            "unsupported-gpu-arch",
        ),
        (
            "ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref abc::def: \"/requirements\": not found",
            "buildkit-context-missing",
        ),
        (
            "ERROR: failed to solve: process \"/bin/sh -c python3 setup.py bdist_wheel\" did not complete successfully: exit code: 1",
            "step-failed",
        ),
        (
            "/app/pytorch/aten/src/ATen/native/hip/Blas.cpp:12:10: fatal error: 'hipblaslt/hipblaslt.h' file not found",
            "compile-error",
        ),
        (
            "clang: error: unable to execute command: Segmentation fault (core dumped)",
            "compiler-error",
        ),
        (
            "ld.lld: error: undefined symbol: hipblasLtMatmul",
            "link-error",
        ),
        (
            "/usr/bin/ld: cannot find -lrocm_smi64: No such file or directory",
            "link-error",
        ),
        ("collect2: error: ld returned 1 exit status", "link-error"),
        (
            "g++: fatal error: Killed signal terminated program cc1plus",
            "compile-oom",
        ),
        ("make[2]: *** [Makefile:12: all] Error 2", "step-failed"),
        (
            "c++: internal compiler error: Killed (program cc1plus)",
            "compile-oom",
        ),
        (
            "  Can't find CUDA or HIP installation.",
            "torch-without-gpu",
        ),
        (
            "ModuleNotFoundError: No module named 'torch'",
            "torch-without-gpu",
        ),
        (
            "clang++: error: invalid offload arch combinations: 'gfx1151' and 'gfx1151:xnack+'",
            "unsupported-gpu-arch",
        ),
        (
            "error: RPC failed; curl 92 HTTP/2 stream 5 was not closed cleanly: CANCEL (err 8)",
            "fetch-failed",
        ),
        (
            "ERROR: Could not build wheels for vllm, which is required to install pyproject.toml-based projects",
            "pip-build-failed",
        ),
        ("E: Unable to locate package rocm-smi-lib", "apt-failed"),
    ];
    for (line, id) in cases {
        let log = format!("{GOOD}{line}\n");
        for text in [log.clone(), buildkit(&log)] {
            let m = run(&text);
            let f = m.fatal().unwrap_or_else(|| panic!("{line}: not fatal"));
            assert_eq!((f.id.as_str(), f.line), (id, 37), "{line}");
            assert!(f.hint.is_some());
            assert!(
                diagnose::diagnose(&text).iter().any(|d| d.known.id == id),
                "diagnose: {line}"
            );
        }
    }
}

/// Issue 26: the `FAILED:` finding quotes the first compiler error under it, with its file and
/// line; the error itself is the cause ranked first.
#[test]
fn failed_step_quotes_its_first_error_issue_26() {
    let log = format!(
        "{GOOD}[812/7944] Building HIPCC object caffe2/CMakeFiles/torch_hip.dir/x.hip.o\n\
FAILED: caffe2/CMakeFiles/torch_hip.dir/x.hip.o\n\
/opt/rocm/bin/hipcc -c x.hip -o x.hip.o\n\
In file included from /src/aten/src/ATen/native/hip/x.hip:3:\n\
/src/aten/src/ATen/native/hip/y.cuh:41:7: error: no member named 'foo' in namespace 'at'\n\
/src/aten/src/ATen/native/hip/y.cuh:52:7: error: no member named 'bar' in namespace 'at'\n\
2 errors generated when compiling for gfx1151.\n\
ninja: build stopped: subcommand failed.\n"
    );
    let m = run(&log);
    let failed = m
        .findings
        .iter()
        .find(|f| f.id == "compile-step-failed")
        .unwrap();
    assert!(
        failed
            .message
            .contains("first error, line 41: `/src/aten/src/ATen/native/hip/y.cuh:41:7: error: no member named 'foo'"),
        "{}",
        failed.message
    );
    let f = m.fatal().unwrap();
    assert_eq!((f.id.as_str(), f.line), ("compile-error", 41));
    assert!(
        f.message
            .contains("y.cuh:41:7: error: no member named 'foo'")
    );
    assert_eq!(status(&m, "build.fatal"), Status::Fail);
}

/// Issue 26: alarming-looking lines that are not failures.
#[test]
fn benign_lines_are_not_fatal_issue_26() {
    for line in [
        "-- Could NOT find MKL (missing: MKL_INCLUDE_DIR)",
        "-- Performing Test HAS_WERROR_FORMAT - Failed",
        "-- Looking for cheev_ - not found",
        "[1201/7944] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/__/torch/csrc/jit/frontend/error_report.cpp.o",
        "/src/torch/csrc/jit/frontend/error_report.cpp:12:3: warning: unused variable 'x' [-Wunused-variable]",
        "-- disabling CUDA because NOT USE_CUDA is set",
        "--   CXX flags : -Werror=return-type -Werror=format -Wno-error=pedantic",
        "test_error_handling (__main__.TestErrors) ... ok",
        "CMake Warning at cmake/Dependencies.cmake:95 (message):",
        "  Could not find a package configuration file provided by \"Gloo\"",
        "-- Target device: cuda",
        "ld: warning: creating DT_TEXTREL in a PIE",
        "ERROR: pip's dependency resolver does not currently take into account all the packages that are installed. This behaviour is the source of the following dependency conflicts.",
        "make[1]: *** [Makefile:9: docs] Error 1 (ignored)",
        "fatal: not a git repository (or any of the parent directories): .git",
        "fatal: No names found, cannot describe anything.",
        "/usr/bin/ld: warning: libamdhip64.so.6, needed by lib/libc10_hip.so, not found (try using -rpath or -rpath-link)",
        "CMake Deprecation Warning at third_party/kineto/libkineto/CMakeLists.txt:7 (cmake_minimum_required):",
    ] {
        let m = run(&format!("{GOOD}{line}\n"));
        assert!(m.fatal().is_none(), "{line}: {:?}", m.fatal());
        assert_eq!(status(&m, "build.fatal"), Status::Pass, "{line}");
    }
}
