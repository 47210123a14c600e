//! The runtime probe's output (its `@forge-probe` JSON line, read back from the container) and
//! the phase 5 and 7 checks on it, with the GPU given or absent; the vLLM server's JSON bodies
//! (phase 6: `/v1/models`, completions, chat).
#![no_main]
use forge::check::runtime::{Gpu, Judge, parse};
use forge::check::serve::{choice_text, model_ids};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let archs = vec!["gfx1151".to_owned()];
    let extra = vec!["numpy".to_owned()];
    if let Some(Ok(p)) = parse(&text) {
        let judge = Judge {
            gpu: if flags & 1 == 0 {
                Gpu::Given
            } else {
                Gpu::Absent("no /dev/kfd".into())
            },
            require_gpu: flags & 2 != 0,
            archs: &archs,
            extra_imports: if flags & 4 != 0 { &extra } else { &[] },
        };
        let (checks, _) = judge.checks(&p);
        // every spec check of phases 5 and 7 is always reported, whatever the probe said
        for id in ["5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "7.1", "7.2"] {
            assert!(checks.iter().any(|c| c.id == id), "{id} missing");
        }
    }
    let _ = model_ids(&text);
    let _ = choice_text(&text, flags & 8 != 0);
});
