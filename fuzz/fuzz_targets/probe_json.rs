//! What the image probe prints (JSON read back from the container) and the phase 4 checks on it.
#![no_main]
use forge::check::image::{Probe, checks, normalize, rocm_release};
use forge::recipe::{LoadOptions, Recipe};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn recipe() -> &'static Recipe {
    static R: OnceLock<Recipe> = OnceLock::new();
    R.get_or_init(|| Recipe::shipped("7.1.1", LoadOptions::default()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = serde_json::from_slice::<Probe>(data) else {
        return;
    };
    for (name, version) in &p.dpkg {
        let _ = normalize(name);
        let _ = rocm_release(version);
    }
    let _ = checks(recipe(), data.len() as u64 * 1_000_000, &p);
});
