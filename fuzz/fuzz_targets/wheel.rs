//! The wheel reader (zip, zip64, members decompressed with bounds, ELF and kpack members) and
//! every phase 3 check on what it read.
#![no_main]
use forge::check::wheel::{WheelOptions, checks, read_wheel};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let base = std::env::var_os("FORGE_FUZZ_TMP").map_or_else(
            || PathBuf::from(if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" }),
            PathBuf::from,
        );
        let d = base.join(format!("forge-fuzz-wheel-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("torch-2.9.0+rocm7.1.1-cp312-cp312-manylinux_2_28_x86_64.whl")
    })
}

fuzz_target!(|data: &[u8]| {
    let p = path();
    std::fs::write(p, data).unwrap();
    let opts = WheelOptions {
        archs: vec!["gfx1151".into()],
        min_bytes: 2_000_000_000,
    };
    if let Ok(d) = read_wheel(p, 1) {
        let _ = checks(&d, &opts, None);
    }
});
