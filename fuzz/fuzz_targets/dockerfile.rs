//! The Dockerfile reader and the checks `forge plan` makes of it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let df = forge::recipe::dockerfile::parse(&text);
    for name in ["PYTORCH_ROCM_ARCH", "USE_DISTRIBUTED", "ROCM_VERSION", "MAX_JOBS", "BASE"] {
        let _ = df.arg_problem(name);
    }
    let names: Vec<String> = df.stage_names().iter().map(|s| s.to_string()).collect();
    for n in &names {
        assert!(df.has_stage(n));
    }
    let _ = df.stages_without_env("PYTORCH_ROCM_ARCH");
    let _ = forge::recipe::dockerfile::var_uses(&text);
    let _ = forge::recipe::dockerfile::instructions(&text);
});
