//! `forge wheel WHEEL` (phase 3).

use super::prelude::*;

/// Run it.
pub fn run(
    ui: &Ui,
    wheel: PathBuf,
    arch: Vec<String>,
    lib_root: Option<PathBuf>,
    image: Option<String>,
    threads: Option<usize>,
    recipe: RecipeArgs,
) -> Result<u8> {
    let recipe = load_recipe(&recipe)?;
    let archs = recipe.archs_or(&arch)?;
    let opts = check::wheel::WheelOptions {
        archs,
        min_bytes: recipe.file.checks.wheel_min_bytes,
    };
    if let Some(r) = &lib_root
        && !r.is_dir()
    {
        return Err(Error::usage(
            format!("`--lib-root {}` is not a directory", r.display()),
            Some("pass the root of a filesystem that has ROCm (e.g. an unpacked image)"),
        ));
    }
    let threads = threads.unwrap_or_else(crate::units::threads);
    let data = check::wheel::read_wheel(&wheel, threads)?;
    let engine;
    let mut image_root;
    let mut dir_root;
    let root: Option<&mut dyn check::resolve::LibRoot> = if let Some(tag) = &image {
        engine = engine::DockerEngine::connect(Duration::from_secs(10))?;
        image_root = check::resolve::ImageRoot::open(&engine, tag)?;
        Some(&mut image_root)
    } else if let Some(dir) = &lib_root {
        dir_root = check::resolve::DirRoot(dir.clone());
        Some(&mut dir_root)
    } else {
        None
    };
    let (checks, resolution) = check::wheel::checks(&data, &opts, root);
    if ui.verbose > 0 {
        let mut s = format!("{} members, {} ELF:\n", data.members, data.elves.len());
        for e in check::wheel::elf_members(&data) {
            s.push_str(&format!(
                "  {}  needs [{}]{}{}\n",
                e.path,
                e.needed.join(", "),
                if e.gpu_targets.is_empty() {
                    String::new()
                } else {
                    format!("  gpu [{}]", e.gpu_targets.join(", "))
                },
                e.note.map(|n| format!("  ({n})")).unwrap_or_default()
            ));
        }
        ui.say(&s);
    }
    let outcome = Outcome::new(format!("wheel {}", wheel.display()), checks)
        .with("wheel", &data.name)
        .with("bytes", data.bytes)
        .with("members", data.members)
        .with("flavour", check::wheel::flavour(&data))
        .with("elf", check::wheel::elf_members(&data))
        .with("code_objects", &data.code_objects)
        .with("resolution", resolution);
    Ok(ui.emit(&outcome))
}
