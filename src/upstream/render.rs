//! The recipe text `forge recipe from-vllm` writes: schema 1, every choice explained in a
//! comment (the base image's mapping, the arch cut, each ref as upstream writes it and what it
//! costs to fetch, the components not built and why).

use super::{Component, Fate, Pins, RefKind};

/// A TOML string literal.
fn s(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}

fn list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|a| s(a)).collect();
    format!("[{}]", items.join(", "))
}

/// The recipe's name: what it pins (`vllm-0.32.0-rocm-7.2.3-gfx1151`).
pub fn recipe_name(p: &Pins) -> String {
    let vllm = p.vllm_ref.trim_start_matches('v');
    format!("vllm-{vllm}-rocm-{}-{}", p.rocm, p.archs.join("-"))
}

/// The recipe's text.
pub fn render(p: &Pins) -> String {
    let name = recipe_name(p);
    let mut out = header(p);
    out.push_str(&format!(
        "schema = 1\nname = {}\ndescription = {}\nrocm = {}\narchs = {}\nbase-image = {}\n\
         dockerfile = \"forge:vllm-rocm.Dockerfile\"\n\n[image]\ntag = {}\n\
         target = \"runtime\"\nwheel-stage = \"wheels\"\n",
        s(&name),
        s(&format!(
            "vLLM {} with upstream's pins on ROCm {} for {}",
            p.vllm_ref,
            p.rocm,
            p.archs.join(", ")
        )),
        s(&p.rocm),
        list(&p.archs),
        s(&p.base_image),
        s(&format!(
            "forge/vllm-rocm:{}",
            name.trim_start_matches("vllm-")
        )),
    ));
    for c in &p.components {
        if let Fate::Built { section } = c.fate {
            out.push_str(&format!(
                "\n{}[{section}]\nrepo = {}\nref = {}\n",
                ref_comment(c),
                s(&c.repo),
                s(c.pinned_ref())
            ));
        }
    }
    out.push_str(&format!(
        "\n# vLLM itself: its release tag (the sdist's version).\n[vllm]\nrepo = \
         \"https://github.com/vllm-project/vllm.git\"\nref = {}\n",
        s(&p.vllm_ref)
    ));
    out.push_str("\n[build-args]\nUSE_DISTRIBUTED = \"1\"\nUSE_ROCM = \"1\"\n");
    out
}

fn header(p: &Pins) -> String {
    let mut h = format!(
        "# forge recipe: vLLM {} on ROCm {} for {}, written by `forge recipe from-vllm` from the\n\
         # ARG defaults of `docker/Dockerfile.rocm_base` in {} (docs/reference.md: \"forge recipe\").\n#\n",
        p.vllm_ref,
        p.rocm,
        p.archs.join(", "),
        file_name(&p.origin)
    );
    let python = p.python.as_deref().unwrap_or("(unset)");
    h.push_str(&format!(
        "# Base image: upstream builds on `{}`\n\
         # with Python {python} from the deadsnakes PPA; forge's Dockerfile installs Ubuntu 24.04's\n\
         # own python3 (3.12), so the base is the same ROCm release's Ubuntu 24.04 image,\n\
         # `rocm/dev-ubuntu-24.04:<rocm>-complete`.\n",
        p.upstream_base
    ));
    if python != "3.12" {
        h.push_str(&format!(
            "# note: upstream's Python is {python}, not 24.04's 3.12: the wheels' ABI differs.\n"
        ));
    }
    if p.rocm.split('.').count() < 3 {
        h.push_str(&format!(
            "# note: ROCm `{}` is a tag that moves with each point release; `--rocm X.Y.Z` pins one.\n",
            p.rocm
        ));
    }
    h.push_str(&wrap(
        &format!(
            "Archs: upstream's PYTORCH_ROCM_ARCH is {}; cut to {}.",
            p.upstream_archs.join(";"),
            p.archs.join(";")
        ),
        "",
    ));
    for a in p.archs.iter().filter(|a| !p.upstream_archs.contains(a)) {
        h.push_str(&format!("# note: upstream does not build for {a}.\n"));
    }
    h.push_str(
        "# Refs: as upstream writes them. An abbreviated commit cannot be fetched by name: forge's\n\
         # Dockerfile then fetches every branch and tag with full history (minutes, GBs for\n\
         # pytorch); a full SHA or a tag is one shallow fetch.\n",
    );
    let skipped: Vec<&Component> = p
        .components
        .iter()
        .filter(|c| matches!(c.fate, Fate::NotBuilt { .. }))
        .collect();
    if !skipped.is_empty() {
        h.push_str("#\n# Not built (upstream builds them):\n");
        for c in skipped {
            if let Fate::NotBuilt { reason } = &c.fate {
                h.push_str(&wrap(
                    &format!(
                        "- {} `{}` ({}, {} line {}): {reason}.",
                        c.name, c.git_ref, c.repo, c.arg.name, c.arg.line
                    ),
                    "  ",
                ));
            }
        }
    }
    h.push('\n');
    h
}

fn ref_comment(c: &Component) -> String {
    let note = c
        .arg
        .note
        .as_deref()
        .map(|n| format!(" # {n}"))
        .unwrap_or_default();
    let mut out = format!(
        "# Upstream (line {}): {}=\"{}\"{note}\n",
        c.arg.line, c.arg.name, c.git_ref
    );
    match (&c.full_sha, c.kind) {
        (Some(k), _) => out.push_str(&wrap(
            &format!(
                "`{}` is `{}` ({}): one shallow fetch.",
                c.git_ref, k.full, k.source
            ),
            "",
        )),
        (None, RefKind::AbbreviatedCommit) => out.push_str(&wrap(
            &format!(
                "`{}` is an abbreviated commit: a full-history fetch of {} (no offline source \
                 gives its full SHA).",
                c.git_ref, c.repo
            ),
            "",
        )),
        _ => {}
    }
    out
}

/// `text` as `# ` comment lines of at most 100 columns, continuation lines indented by `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = "#".to_owned();
    for word in text.split(' ') {
        if line.len() + 1 + word.len() > 100 && line.len() > 2 + indent.len() {
            out.push_str(&line);
            out.push('\n');
            line = format!("#{indent}");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn file_name(origin: &str) -> &str {
    std::path::Path::new(origin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(origin)
}
