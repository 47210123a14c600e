//! The tar of the wheel stage copied out of the engine: top-level wheels and logs extracted
//! through `.part` names, unsafe paths and links refused. Invariants: never a `.part` left,
//! every file returned exists under its final name with the size and SHA256 reported.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dirs() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let base = std::env::var_os("FORGE_FUZZ_TMP").map_or_else(
            || PathBuf::from(if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" }),
            PathBuf::from,
        );
        let d = base.join(format!("forge-fuzz-tar-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        (d.join("wheels.tar.part"), d.join("wheels"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (tar, out) = dirs();
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(tar, data).unwrap();
    // one token for the whole run (a detached token is leaked by design)
    static CANCEL: std::sync::OnceLock<forge::cancel::Cancel> = std::sync::OnceLock::new();
    let cancel = *CANCEL.get_or_init(forge::cancel::Cancel::detached);
    let r = forge::ops::drive::extract_wheels(tar, out, cancel);
    for e in std::fs::read_dir(out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "left {name}");
    }
    if let Ok(wheels) = r {
        for w in wheels {
            let bytes = std::fs::read(&w.path).unwrap();
            assert_eq!(bytes.len() as u64, w.size);
        }
    }
});
