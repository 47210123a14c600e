//! `forge recipe from-vllm SDIST_OR_TREE`: a recipe from upstream's own pins.

use super::prelude::*;
use crate::cli::FromVllmArgs;
use crate::recipe::{LoadOptions, Origin, Recipe};
use crate::upstream::{self, Fate};

/// Run it: the recipe on stdout or in `-o FILE`, what was decided on stderr.
pub fn from_vllm(ui: &Ui, args: &FromVllmArgs) -> Result<u8> {
    let src = upstream::source::read(&args.source)?;
    let pins = upstream::pins(
        &src,
        &upstream::Options {
            archs: args.arch.clone(),
            rocm: args.rocm.clone(),
            vllm_ref: args.vllm_ref.clone(),
        },
    )?;
    let text = upstream::render(&pins);
    ui.say(&summary(&pins));
    // The written recipe must load with the strict parser and plan against forge's Dockerfile:
    // the plan's checks (every build arg declared and used, the stages) are this command's.
    let origin = Origin::File(args.out.clone().unwrap_or_else(|| "<stdout>".into()));
    let recipe = Recipe::parse(
        &text,
        origin,
        LoadOptions {
            allow_unsupported: true,
        },
    )?;
    let (_, checks) = plan::resolve(&recipe, Path::new("artifacts"), "<run>")?;
    match &args.out {
        Some(path) => {
            crate::atomic::write_atomically(path, text.as_bytes())?;
            ui.say(&format!("wrote {}", path.display()));
        }
        None => ui.result(&text),
    }
    let outcome = Outcome::new(format!("recipe from-vllm {}", src.origin), checks)
        .with("pins", &pins)
        .with("recipe", &text)
        .with("out", &args.out);
    if ui.json {
        return Ok(ui.emit(&outcome));
    }
    ui.say(&outcome.render_text());
    Ok(outcome.exit_code())
}

fn summary(p: &upstream::Pins) -> String {
    let mut s = format!(
        "vLLM {} on ROCm {} (upstream's base `{}` -> `{}`), archs {}\n",
        p.vllm_ref,
        p.rocm,
        p.upstream_base,
        p.base_image,
        p.archs.join(";")
    );
    for c in &p.components {
        let (mark, why) = match &c.fate {
            Fate::Built { .. } => ("built", String::new()),
            Fate::NotBuilt { reason } => ("not built", format!(": {reason}")),
        };
        let cost = match (&c.full_sha, c.kind) {
            (Some(k), _) => format!(" (full SHA {} from {})", k.full, k.source),
            (None, upstream::RefKind::AbbreviatedCommit) if why.is_empty() => {
                " (abbreviated commit: a full-history fetch)".to_owned()
            }
            _ => String::new(),
        };
        s.push_str(&format!(
            "  {mark:9} {:16} {}{cost}{why}\n",
            c.name, c.git_ref
        ));
    }
    s
}

/// `forge recipe lock`: the recipe's Python lock, written beside it (or, `--check`, compared).
pub fn lock(ui: &Ui, args: &crate::cli::LockArgs) -> Result<u8> {
    use crate::recipe::pylock;
    let recipe = Recipe::from_path(&args.recipe, LoadOptions::default())?;
    let (Some(spec), Some(crate::recipe::LockRef::File(out))) =
        (recipe.file.lock.as_ref(), recipe.lock.as_ref())
    else {
        return Err(Error::usage(
            format!("recipe `{}` has no `[lock]`", args.recipe.display()),
            Some(
                "add `[lock]` with `file = \"NAME.lock.txt\"` (docs/reference.md, \"The Python lock\")",
            ),
        ));
    };
    let command = format!("forge recipe lock --recipe {}", args.recipe.display());
    let locked = pylock::lock(&recipe, spec, args.sdist.as_deref(), &command, &mut |l| {
        ui.say(l)
    })?;
    let pylock::Locked {
        text,
        pins: image,
        input,
        as_of,
        sdist_sha256: sha,
        vllm,
    } = locked;
    let subject = format!("recipe lock {}", out.display());
    let checks = if args.check {
        let on_disk = std::fs::read_to_string(out).unwrap_or_default();
        let diff = pylock::differences(&pylock::pins(&on_disk), &image);
        vec![if diff.is_empty() {
            Check::pass(
                "lock.current",
                crate::report::catalog::title("lock.current"),
                format!("{} packages, as {} pins them", image.len(), out.display()),
            )
        } else {
            Check::fail(
                "lock.current",
                crate::report::catalog::title("lock.current"),
                format!("{} (lock file vs now): {}", out.display(), diff.join("; ")),
            )
            .with_hint(format!("regenerate it: `{command}`"))
        }]
    } else {
        crate::atomic::write_atomically(out, text.as_bytes())?;
        ui.say(&format!(
            "wrote {}: {} packages ({} direct requirements of vLLM {}), hash-pinned",
            out.display(),
            image.len(),
            input.direct,
            vllm
        ));
        Vec::new()
    };
    let outcome = Outcome::new(subject, checks)
        .with("lock", out)
        .with("packages", image.len())
        .with("direct", input.direct)
        .with("as_of", &as_of)
        .with("sdist_sha256", &sha);
    if ui.json {
        return Ok(ui.emit(&outcome));
    }
    if args.check {
        ui.say(&outcome.render_text());
    }
    Ok(outcome.exit_code())
}
