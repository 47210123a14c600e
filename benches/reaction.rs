//! Reaction-time benchmark for `forge watch` (issue #3), per fatal class (issue 26).
//!
//! For each run: a `sleep 600` stands in for the build (own process group), `forge watch`
//! follows a log that is being appended to, then a fatal line is appended. Measured: from the
//! moment the line is written (flushed, file closed) to the moment `forge watch` has signalled
//! the process group and exited. The baseline is the summary flag (`USE_DISTRIBUTED : OFF`, 20
//! runs); each failure class of issue 26 (a `CMake Error`, a compiler error, a linker error, an
//! OOM kill, pip's resolver, a git ref, BuildKit's own error, ROCm turned off) gets 10 runs.
//! Target: median < 100 ms, worst < 250 ms, for every class.
//!
//! Run: `cargo bench --bench reaction`

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fatal lines, as a BuildKit build log shows them.
const CLASSES: &[(&str, &str)] = &[
    (
        "summary flag (baseline)",
        "#14 103.4 --   USE_DISTRIBUTED       : OFF",
    ),
    (
        "CMake Error",
        "#14 103.4 CMake Error at cmake/public/LoadHIP.cmake:33 (find_package):",
    ),
    (
        "compiler error",
        "#14 903.4 /src/aten/src/ATen/native/hip/TensorTopK.hip:285:7: error: use of undeclared identifier 'warp_bases'",
    ),
    (
        "linker error",
        "#14 2403.4 ld.lld: error: undefined symbol: hipblasLtMatmul",
    ),
    (
        "OOM kill",
        "#14 903.4 c++: fatal error: Killed signal terminated program cc1plus",
    ),
    (
        "pip resolver",
        "#9 12.3 ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/",
    ),
    (
        "git ref",
        "#6 3.2 fatal: reference is not a tree: 1c57644d4cb3aff84642e1326d88681a656507ce",
    ),
    (
        "BuildKit error",
        "ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref abc::def: \"/requirements\": not found",
    ),
    (
        "ROCm disabled",
        "#14 95.1 -- disabling ROCM because NOT USE_ROCM is set",
    ),
];

/// One run: the time from `line` written to `forge watch` done.
fn once(log: &Path, line: &str) -> Duration {
    std::fs::write(
        log,
        "#14 12.3 -- The CXX compiler identification is Clang 20.0.0\n",
    )
    .unwrap();
    let mut build = Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args([
            "watch",
            log.to_str().unwrap(),
            "--pid",
            &build.id().to_string(),
            "--grace",
            "1",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A slow stream of harmless lines first, as a configure step would print.
    for n in 0..10 {
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        writeln!(f, "#14 20.{n} -- Performing Test HAS_FLAG_{n} - Success").unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    let t0 = Instant::now();
    writeln!(f, "{line}").unwrap();
    drop(f);
    let status = watch.wait().unwrap();
    let dt = t0.elapsed();
    let b = build.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "forge watch must exit 1 on the fatal line `{line}`"
    );
    assert!(b.code().is_none(), "the build was signalled");
    dt
}

fn main() {
    let dir = std::env::temp_dir().join(format!("forge-bench-reaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "forge watch reaction time, fatal line appended -> build signalled and forge exited (target: median < 100 ms, worst < 250 ms)"
    );
    println!(
        "{:26} {:>4} {:>8} {:>8} {:>8} {:>8}",
        "class", "runs", "min", "median", "p90", "worst"
    );
    for (i, (class, line)) in CLASSES.iter().enumerate() {
        let runs = if i == 0 { 20 } else { 10 };
        let log = dir.join(format!("build-{i}.log"));
        let mut times: Vec<Duration> = (0..runs).map(|_| once(&log, line)).collect();
        times.sort();
        println!(
            "{class:26} {runs:>4} {:>5.1} ms {:>5.1} ms {:>5.1} ms {:>5.1} ms",
            ms(times[0]),
            ms(times[runs / 2]),
            ms(times[runs * 9 / 10]),
            ms(times[runs - 1])
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
