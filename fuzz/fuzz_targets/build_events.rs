//! The engine's build stream: one JSON message a line (BuildKit's status as base64 protobuf in
//! `aux`, the classic builder's `stream`), decoded to forge's build events and fed to the monitor
//! the way `forge build` does.
#![no_main]
use forge::engine::{BuildEvent, Decoder, Flow};
use forge::monitor::rules::{Expect, Monitor};
use forge::monitor::scan::LineFeeder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::default();
    let mut feeder = LineFeeder::new(Monitor::new(Expect::default()));
    let mut steps = 0usize;
    for line in data.split(|b| *b == b'\n') {
        let r = d.decode_json(line, &mut |ev| {
            match ev {
                BuildEvent::Output { bytes, .. } => {
                    feeder.push(bytes);
                }
                BuildEvent::Step { name, .. } => steps += name.len().min(1),
                BuildEvent::StepError { error, .. } => steps += error.len().min(1),
                // engine-side times of any value (NaN, negative, reversed) must not panic
                BuildEvent::StepDone {
                    started, completed, ..
                } => steps += usize::from(completed >= started),
            }
            Flow::Continue
        });
        if let Ok(Some(_end)) = r {
            break;
        }
    }
    feeder.finish();
});
