//! The ELF reader: section headers, .dynsym, .dynamic, .gnu.version_r, .rocm_kpack_ref and the
//! offload bundles of .hip_fatbin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = data.to_vec();
    if let Ok(info) = forge::check::elf::read(&src, true) {
        let _ = info.gpu_targets();
        let _ = info.hip_linked();
    }
});
