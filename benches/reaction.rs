//! Reaction-time benchmark for `forge watch` (issue #3).
//!
//! For each of 20 runs: a `sleep 600` stands in for the build (own process group), `forge watch`
//! follows a log that is being appended to, then a fatal summary line is appended. Measured: from
//! the moment the line is written (flushed, file closed) to the moment `forge watch` has signalled
//! the process group and exited. Target: median < 100 ms, worst < 250 ms.
//!
//! Run: `cargo bench --bench reaction`

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let runs = 20;
    let dir = std::env::temp_dir().join(format!("forge-bench-reaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut times = Vec::new();
    for i in 0..runs {
        let log = dir.join(format!("build-{i}.log"));
        std::fs::write(
            &log,
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
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            writeln!(f, "#14 20.{n} -- Performing Test HAS_FLAG_{n} - Success").unwrap();
            drop(f);
            std::thread::sleep(Duration::from_millis(30));
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let t0 = Instant::now();
        f.write_all(b"#14 103.4 --   USE_DISTRIBUTED       : OFF\n")
            .unwrap();
        drop(f);
        let status = watch.wait().unwrap();
        let dt = t0.elapsed();
        let b = build.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(1),
            "forge watch must exit 1 on the fatal line"
        );
        assert!(b.code().is_none(), "the build was signalled");
        times.push(dt);
    }
    std::fs::remove_dir_all(&dir).ok();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "forge watch reaction time over {runs} runs: min {:.1} ms, median {:.1} ms, p90 {:.1} ms, worst {:.1} ms (target: median < 100, worst < 250)",
        ms(times[0]),
        ms(times[runs / 2]),
        ms(times[runs * 9 / 10]),
        ms(times[runs - 1])
    );
}
