//! Property tests (issue 11): invariants that must hold for any input, not only chosen ones.
//!
//! - Scanning a log in any chunking gives the same findings, flags, line and byte counts as
//!   scanning it whole (the build feeds the monitor whatever pieces the engine sends).
//! - A wheel's verdict (every check, or the error) does not depend on the order of its members,
//!   their compression, or the number of threads reading them.
//!
//! The wheels are made of the real shared objects and kpack of the fuzz seeds
//! (`fuzz/seeds/`, written by `fuzz/make-seeds.py` with `cc`).

use std::io::Write;
use std::path::Path;

use forge::check::wheel::{WheelOptions, checks, read_wheel};
use forge::monitor::rules::{Expect, MAX_LINE, Monitor};
use forge::monitor::scan::LineFeeder;
use forge::recipe::{RuleSpec, Severity};
use proptest::prelude::*;

const LINES: &[&[u8]] = &[
    b"-- ******** Summary ********",
    b"--   USE_DISTRIBUTED       : OFF",
    b"--   USE_DISTRIBUTED       : ON",
    b"--   USE_ROCM              : ON",
    b"--   USE_CUDA : 1",
    b"--   BUILD_TYPE : Release",
    b"-- Configuring done (1.0s)",
    b"Building PyTorch for GPU arch: gfx1100;gfx1151",
    b"Building PyTorch for GPU arch: gfx90a",
    b"HIP VERSION: 7.1.52802-26aae437f6",
    b"TORCH_HIP_VERSION: 701",
    b"#12 103.4 --   USE_DISTRIBUTED       : 0",
    b"#12 103.5 -- ******** Summary ********",
    b"#5 [torch-build 6/7] RUN echo USE_DISTRIBUTED=0",
    b"Step 2/9 : RUN cmake -DUSE_DISTRIBUTED=OFF",
    b"[12/345] Building CXX object x.o",
    b"#12 99.0 [13/345] Building HIP object y.o",
    b"c++: fatal error: Killed signal terminated program cc1plus",
    b"ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 137",
    b"The command '/bin/sh -c make' returned a non-zero code: 137",
    b"ninja: build stopped: subcommand failed.",
    b"[output clipped, log limit 2MiB reached]",
    b"No space left on device",
    b"FAILED: lib/libtorch_hip.so",
    b"#9 12.0 FAILED: caffe2/x.o",
    b"distributed is disabled",
    b"hipcc: warning: this is deprecated",
    b"plain output \xff\xfe invalid utf-8",
    b"   ",
    b"",
];

/// One line of a generated log: a known line, random bytes, or a line longer than MAX_LINE.
#[derive(Debug, Clone)]
enum Line {
    Known(usize),
    Bytes(Vec<u8>),
    Long(usize, usize),
}

fn line() -> impl Strategy<Value = (Line, u8)> {
    let l = prop_oneof![
        30 => (0..LINES.len()).prop_map(Line::Known),
        8 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Line::Bytes),
        1 => ((0..LINES.len()), (0usize..200)).prop_map(|(i, extra)| Line::Long(i, extra)),
    ];
    // 0: `\n`, 1: `\r\n`, 2: `\r\n\n`
    (l, 0u8..3)
}

fn render(lines: &[(Line, u8)], last_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (l, end)) in lines.iter().enumerate() {
        match l {
            Line::Known(k) => out.extend_from_slice(LINES[*k]),
            Line::Bytes(b) => out.extend(b.iter().map(|c| if *c == b'\n' { b' ' } else { *c })),
            Line::Long(k, extra) => {
                out.extend_from_slice(LINES[*k]);
                out.extend(std::iter::repeat_n(b'x', MAX_LINE + extra - 100));
                out.extend_from_slice(b" USE_DISTRIBUTED : OFF");
            }
        }
        if i + 1 < lines.len() || last_newline {
            out.extend_from_slice(match end {
                0 => b"\n",
                1 => b"\r\n",
                _ => b"\r\n\n",
            });
        }
    }
    out
}

fn expect(user_rule: bool) -> Expect {
    Expect {
        archs: vec!["gfx1151".into()],
        rules: if user_rule {
            vec![RuleSpec {
                id: "recipe.deprecated".into(),
                pattern: serde_spanned::Spanned::new(0..0, "hipcc: warning: .*deprecated".into()),
                severity: Severity::Fatal,
                message: "deprecated".into(),
                hint: None,
            }]
        } else {
            Vec::new()
        },
    }
}

fn scan(log: &[u8], cuts: &[usize], user_rule: bool) -> Monitor {
    let mut f = LineFeeder::new(Monitor::new(expect(user_rule)));
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (log.len() + 1)).collect();
    points.sort_unstable();
    let mut at = 0;
    for p in points {
        f.push(&log[at..p]);
        at = p;
    }
    f.push(&log[at..]);
    f.finish();
    f.monitor
}

fn assert_same(a: &Monitor, b: &Monitor) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.findings, &b.findings);
    prop_assert_eq!(&a.flags, &b.flags);
    prop_assert_eq!(&a.arch_list, &b.arch_list);
    prop_assert_eq!(&a.hip_version, &b.hip_version);
    prop_assert_eq!(&a.torch_hip_version, &b.torch_hip_version);
    prop_assert_eq!(a.clipped, b.clipped);
    prop_assert_eq!(a.lines, b.lines);
    prop_assert_eq!(a.bytes, b.bytes);
    let checks = |m: &Monitor| serde_json::to_string(&m.checks()).unwrap();
    prop_assert_eq!(checks(a), checks(b));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn log_scan_does_not_depend_on_chunking(
        lines in proptest::collection::vec(line(), 0..40),
        last_newline in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
        user_rule in any::<bool>(),
    ) {
        let log = render(&lines, last_newline);
        let whole = scan(&log, &[], user_rule);
        prop_assert_eq!(whole.bytes, log.len() as u64);
        let pieces = scan(&log, &cuts, user_rule);
        assert_same(&whole, &pieces)?;
        // One byte at a time, the worst chunking there is.
        if log.len() < 2000 {
            let every: Vec<usize> = (0..log.len()).collect();
            assert_same(&whole, &scan(&log, &every, user_rule))?;
        }
    }
}

fn seed(p: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(p);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Members {
    all: Vec<(String, Vec<u8>)>,
}

fn members() -> &'static Members {
    static M: std::sync::OnceLock<Members> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let cpu = seed("elf/libtorch_cpu.so");
        let truncated = cpu[..200].to_vec();
        Members {
            all: vec![
                (
                    "torch-2.9.1+rocm7.1.1.dist-info/WHEEL".into(),
                    b"Wheel-Version: 1.0\n".to_vec(),
                ),
                ("torch/lib/libtorch_cpu.so".into(), cpu),
                (
                    "torch/lib/libtorch_hip.so".into(),
                    seed("elf/libtorch_hip.so"),
                ),
                ("torch/lib/libkpacked.so".into(), seed("elf/libkpacked.so")),
                ("torch/lib/torch.kpack".into(), seed("kpack/torch.kpack")),
                (
                    "torch/__init__.py".into(),
                    b"__version__ = '2.9.1'\n".to_vec(),
                ),
                (
                    "torch/bin/torch_shm_manager".into(),
                    b"#!/bin/sh\n".to_vec(),
                ),
                // The bad ones: each makes the wheel unreadable; with two, the same one must be
                // named whatever the order.
                (
                    "torch/lib/libbroken.so".into(),
                    b"this is not an ELF file".to_vec(),
                ),
                ("torch/lib/libtruncated.so".into(), truncated),
            ],
        }
    })
}

fn write_wheel(path: &Path, members: &[&(String, Vec<u8>)], stored: &[bool]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (i, (n, d)) in members.iter().enumerate() {
        let method = if stored[i % stored.len()] {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file(n.as_str(), opts).unwrap();
        z.write_all(d).unwrap();
    }
    z.finish().unwrap();
}

/// The verdict of a wheel: every check (id, status, evidence), or the error.
fn verdict(path: &Path, threads: usize) -> String {
    let opts = WheelOptions {
        archs: vec!["gfx1151".into()],
        min_bytes: 2_000_000_000,
    };
    match read_wheel(path, threads) {
        Ok(d) => {
            let (checks, _) = checks(&d, &opts, None);
            serde_json::to_string(&checks).unwrap()
        }
        Err(e) => format!("error: {e}").replace(&path.display().to_string(), "WHEEL"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn wheel_verdict_does_not_depend_on_member_order(
        chosen in proptest::collection::vec(any::<bool>(), 9),
        order in Just((0..9usize).collect::<Vec<_>>()).prop_shuffle(),
        stored in proptest::collection::vec(any::<bool>(), 1..4),
        threads in 1usize..5,
    ) {
        let all = &members().all;
        // The WHEEL and libtorch_cpu.so always; the rest as chosen.
        let keep = |i: usize| i < 2 || chosen[i];
        let mut canonical: Vec<&(String, Vec<u8>)> =
            (0..all.len()).filter(|i| keep(*i)).map(|i| &all[i]).collect();
        canonical.sort_by(|a, b| a.0.cmp(&b.0));
        let shuffled: Vec<&(String, Vec<u8>)> =
            order.iter().filter(|i| keep(**i)).map(|i| &all[*i]).collect();
        // a fresh dir each case, removed at its end (a failing case's too)
        let tmp = tempfile::Builder::new().prefix("forge-props-").tempdir().unwrap();
        let dir = tmp.path();
        let name = "torch-2.9.1+rocm7.1.1-cp312-cp312-linux_x86_64.whl";
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        write_wheel(&a.join(name), &canonical, &[false]);
        write_wheel(&b.join(name), &shuffled, &stored);
        let want = verdict(&a.join(name), 1);
        let got = verdict(&b.join(name), threads);
        // The file's size differs with the compression, and 3.1's evidence gives it.
        let mb = |s: &str| regex::Regex::new(r"\d+\.\d MB").unwrap().replace_all(s, "N MB").into_owned();
        prop_assert_eq!(mb(&want), mb(&got));
        if chosen[7] || chosen[8] {
            prop_assert!(want.starts_with("error: "), "a bad member must make it an error: {}", want);
        } else {
            prop_assert!(!want.starts_with("error: "), "{}", want);
        }
    }
}
