//! The build-log monitor (line rules, configuration summary, ninja progress) and `forge diagnose`.
//! Differential: the log fed whole and fed in pieces cut where the first byte says must give the
//! same findings, flags, line and byte counts.
#![no_main]
use forge::monitor::rules::{Expect, Monitor};
use forge::monitor::scan::LineFeeder;
use libfuzzer_sys::fuzz_target;

fn fed(log: &[u8], cuts: impl Iterator<Item = usize>) -> Monitor {
    let expect = Expect {
        archs: vec!["gfx1151".into()],
        rules: Vec::new(),
    };
    let mut f = LineFeeder::new(Monitor::new(expect));
    let mut rest = log;
    for n in cuts {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        f.push(a);
        rest = b;
    }
    f.push(rest);
    f.finish();
    f.monitor
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, log)) = data.split_first() else {
        return;
    };
    let whole = fed(log, std::iter::empty());
    let mut k = seed as usize;
    let pieces = fed(
        log,
        std::iter::from_fn(move || {
            k = k.wrapping_mul(31).wrapping_add(7);
            Some(k % 23)
        }),
    );
    assert_eq!(whole.findings, pieces.findings);
    assert_eq!(whole.flags, pieces.flags);
    assert_eq!(whole.arch_list, pieces.arch_list);
    assert_eq!(whole.hip_version, pieces.hip_version);
    assert_eq!(whole.torch_hip_version, pieces.torch_hip_version);
    assert_eq!(whole.clipped, pieces.clipped);
    assert_eq!(whole.lines, pieces.lines);
    assert_eq!(whole.bytes, pieces.bytes);
    assert_eq!(whole.bytes, log.len() as u64);
    let _ = whole.checks();
    let _ = forge::monitor::diagnose::diagnose(&String::from_utf8_lossy(log));
});
