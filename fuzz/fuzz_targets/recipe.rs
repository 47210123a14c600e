//! The recipe loader (TOML, schema, validation, error positions) and the plan built from it.
#![no_main]
use forge::recipe::{LoadOptions, Origin, Recipe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for allow_unsupported in [false, true] {
        let origin = Origin::File("/nonexistent/forge-fuzz/recipe.toml".into());
        match Recipe::parse(text, origin, LoadOptions { allow_unsupported }) {
            Ok(r) => {
                let _ = r.archs();
                let _ = r.jobs();
                let _ = r.taken_torch();
                let _ = forge::ops::plan::resolve(&r, std::path::Path::new("/nonexistent"), "fuzz");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
