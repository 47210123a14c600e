//! Offload bundles: uncompressed `__CLANG_OFFLOAD_BUNDLE__` and compressed `CCOB` v1-v3
//! (zstd, zlib), scanned in a `.hip_fatbin` section.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    if let Ok(bundles) = forge::check::offload::scan(&src, 0, src.len() as u64) {
        for b in &bundles {
            let _ = b.targets().count();
            assert!(b.offset < src.len() as u64);
        }
    }
});
