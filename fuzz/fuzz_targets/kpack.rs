//! `.kpack` archives: KPAK header and MessagePack table of contents.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    let _ = forge::check::offload::read_kpack(&src);
});
