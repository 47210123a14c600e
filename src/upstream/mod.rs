//! Upstream's pins: what vLLM's `docker/Dockerfile.rocm_base` builds (its ARG defaults), read
//! from a source tree or an sdist, and the forge recipe that builds the same for one arch list
//! (`forge recipe from-vllm`).
//!
//! Refs stay as upstream writes them; an abbreviated commit becomes a full SHA only where
//! [`FULL_SHAS`] names an offline source for it. Components upstream builds that do not apply to
//! the arch list, or that forge's Dockerfile deliberately leaves out, are kept with the reason.

mod render;
pub mod source;

use serde::Serialize;

pub use render::render;
pub use source::VllmSource;

use crate::error::{Error, Result};
use crate::recipe::dockerfile;
use crate::recipe::{APU_ARCHS, is_arch_name};

/// A value an `ARG` or `ENV` sets, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The variable.
    pub name: String,
    /// Its value, quotes removed.
    pub value: String,
    /// Upstream's comment after it (`release/2.12 as of 08/02`).
    pub note: Option<String>,
    /// 1-based line in the Dockerfile.
    pub line: usize,
}

/// Every literal `ARG`/`ENV` value in a Dockerfile, the first of each name (a value built from
/// other variables, `ENV X=${X}`, is skipped).
pub fn settings(text: &str) -> Vec<Setting> {
    let mut out: Vec<Setting> = Vec::new();
    for ins in dockerfile::instructions(text) {
        if ins.keyword != "ARG" && ins.keyword != "ENV" {
            continue;
        }
        let (tokens, note) = tokens(&ins.args);
        for t in tokens {
            let Some((name, value)) = t.split_once('=') else {
                continue;
            };
            let value = unquote(value);
            if value.contains('$') || out.iter().any(|s| s.name == name) {
                continue;
            }
            out.push(Setting {
                name: name.to_owned(),
                value: value.to_owned(),
                note: note.clone(),
                line: ins.line,
            });
        }
    }
    out
}

/// Whitespace-separated words outside quotes, and the `# comment` that ends the line.
fn tokens(args: &str) -> (Vec<&str>, Option<String>) {
    let mut words = Vec::new();
    let (mut start, mut quote) = (None, None);
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '#') if start.is_none() => {
                let note = args[i + 1..].trim();
                return (words, (!note.is_empty()).then(|| note.to_owned()));
            }
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    words.push(&args[s..i]);
                }
            }
            (None, c) => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        words.push(&args[s..]);
    }
    (words, None)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// A full commit SHA known offline for an abbreviated one upstream writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KnownSha {
    /// The repository (as upstream writes it).
    pub repo: &'static str,
    /// The full SHA.
    pub full: &'static str,
    /// Where it is written down.
    pub source: &'static str,
}

/// Full SHAs of abbreviated refs, each with its source (a ref not here stays abbreviated).
pub const FULL_SHAS: &[KnownSha] = &[
    KnownSha {
        repo: "https://github.com/ROCm/pytorch.git",
        full: "1c57644d4cb3aff84642e1326d88681a656507ce",
        source: "ROCm/ROCm#5695",
    },
    KnownSha {
        repo: "https://github.com/ROCm/triton.git",
        full: "57c693b627fe058878ade4163a0a8df95d9fefa1",
        source: "vllm-project/vllm#28553",
    },
];

/// A full SHA for an abbreviated ref, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FullSha {
    /// The full SHA.
    pub full: String,
    /// Where it is written down.
    pub source: String,
}

/// The full SHA of `repo`'s abbreviated `r`: from [`FULL_SHAS`], or from an ARG of upstream's
/// `docker/Dockerfile.rocm` whose name has `stem` (`TRITON`) and whose 40-digit value extends it.
fn full_sha(repo: &str, r: &str, stem: &str, src: &VllmSource) -> Option<FullSha> {
    if RefKind::of(r) != RefKind::AbbreviatedCommit {
        return None;
    }
    let same = |a: &str| a.trim_end_matches(".git") == repo.trim_end_matches(".git");
    if let Some(k) = FULL_SHAS
        .iter()
        .find(|k| same(k.repo) && k.full.starts_with(r))
    {
        return Some(FullSha {
            full: k.full.to_owned(),
            source: k.source.to_owned(),
        });
    }
    let rocm = src.rocm.as_deref()?;
    settings(rocm)
        .into_iter()
        .find(|s| {
            s.name.contains(stem)
                && RefKind::of(&s.value) == RefKind::FullCommit
                && s.value.starts_with(r)
        })
        .map(|s| FullSha {
            source: format!("upstream's `{}` line {}, {}", source::ROCM, s.line, s.name),
            full: s.value,
        })
}

/// How forge-fetch reaches a ref, and what that costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    /// 40 hex digits: one shallow fetch of that commit.
    FullCommit,
    /// 7-39 hex digits: the server cannot look it up, so every branch and tag is fetched with
    /// full history before the checkout (minutes and GBs for pytorch).
    AbbreviatedCommit,
    /// A tag or branch name: a shallow fetch.
    Name,
}

impl RefKind {
    /// What kind `r` is.
    pub fn of(r: &str) -> RefKind {
        let hex = !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match r.len() {
            40 if hex => RefKind::FullCommit,
            7..=39 if hex => RefKind::AbbreviatedCommit,
            _ => RefKind::Name,
        }
    }
}

/// Whether and how forge builds a component upstream builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "built")]
pub enum Fate {
    /// Built from the recipe section of this name.
    Built {
        /// The recipe's section (`pytorch`).
        section: &'static str,
    },
    /// Not built, and why.
    NotBuilt {
        /// Why.
        reason: String,
    },
}

/// One component upstream builds from a git ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// forge's name for it (`pytorch`, `flash-attention`).
    pub name: String,
    /// The repository.
    pub repo: String,
    /// The ref as upstream writes it.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The ARG upstream sets it with, its comment and line.
    pub arg: Setting,
    /// What the ref is.
    pub kind: RefKind,
    /// Its full SHA, where known offline.
    pub full_sha: Option<FullSha>,
    /// Whether forge builds it.
    pub fate: Fate,
}

impl Component {
    /// The ref the recipe pins: the full SHA where known, else upstream's.
    pub fn pinned_ref(&self) -> &str {
        self.full_sha.as_ref().map_or(&self.git_ref, |k| &k.full)
    }
}

struct Known {
    name: &'static str,
    ref_arg: &'static str,
    repo_arg: &'static str,
    repo: &'static str,
    section: Option<&'static str>,
}

const fn known(
    name: &'static str,
    ref_arg: &'static str,
    repo_arg: &'static str,
    repo: &'static str,
    section: Option<&'static str>,
) -> Known {
    Known {
        name,
        ref_arg,
        repo_arg,
        repo,
        section,
    }
}

/// The components `Dockerfile.rocm_base` builds, by their ARGs (the repo: the default when
/// upstream sets no `*_REPO`); the first four are the recipe's sections.
const KNOWN: &[Known] = &[
    known(
        "pytorch",
        "PYTORCH_BRANCH",
        "PYTORCH_REPO",
        "https://github.com/ROCm/pytorch.git",
        Some("pytorch"),
    ),
    known(
        "triton",
        "TRITON_BRANCH",
        "TRITON_REPO",
        "https://github.com/ROCm/triton.git",
        Some("triton"),
    ),
    known(
        "torchvision",
        "PYTORCH_VISION_BRANCH",
        "PYTORCH_VISION_REPO",
        "https://github.com/pytorch/vision.git",
        Some("torchvision"),
    ),
    known(
        "torchaudio",
        "PYTORCH_AUDIO_BRANCH",
        "PYTORCH_AUDIO_REPO",
        "https://github.com/pytorch/audio.git",
        Some("torchaudio"),
    ),
    known(
        "flash-attention",
        "FA_BRANCH",
        "FA_REPO",
        "https://github.com/Dao-AILab/flash-attention.git",
        None,
    ),
    known(
        "aiter",
        "AITER_BRANCH",
        "AITER_REPO",
        "https://github.com/ROCm/aiter.git",
        None,
    ),
    known(
        "mori",
        "MORI_BRANCH",
        "MORI_REPO",
        "https://github.com/ROCm/mori.git",
        None,
    ),
    known(
        "rocm-runtime",
        "ROCM_RUNTIME_COMMIT",
        "ROCM_SYSTEMS_REPO",
        "https://github.com/ROCm/rocm-systems.git",
        None,
    ),
    known(
        "rocprofiler-sdk",
        "ROCPROFILER_SDK_COMMIT",
        "ROCM_SYSTEMS_REPO",
        "https://github.com/ROCm/rocm-systems.git",
        None,
    ),
];

/// What the user asks of `forge recipe from-vllm`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Target archs (`;`/`,`-separated or repeated), validated here.
    pub archs: Vec<String>,
    /// The ROCm release to pin instead of the one upstream's base image names.
    pub rocm: Option<String>,
    /// vLLM's ref, when the source does not say its version.
    pub vllm_ref: Option<String>,
}

/// What upstream builds, and what forge will.
#[derive(Debug, Clone, Serialize)]
pub struct Pins {
    /// Where it was read.
    pub origin: String,
    /// vLLM's ref (`v0.12.0`).
    pub vllm_ref: String,
    /// Upstream's `BASE_IMAGE`.
    pub upstream_base: String,
    /// The ROCm release (from the base image's tag, or `--rocm`).
    pub rocm: String,
    /// forge's base image for that release.
    pub base_image: String,
    /// Upstream's `PYTHON_VERSION`.
    pub python: Option<String>,
    /// Upstream's `PYTORCH_ROCM_ARCH`.
    pub upstream_archs: Vec<String>,
    /// The recipe's archs.
    pub archs: Vec<String>,
    /// Every component upstream builds from a ref, in its order.
    pub components: Vec<Component>,
}

/// Read upstream's pins from a source and fit them to `opts`.
pub fn pins(src: &VllmSource, opts: &Options) -> Result<Pins> {
    let set = settings(&src.rocm_base);
    let get = |n: &str| set.iter().find(|s| s.name == n);
    let archs = user_archs(&opts.archs)?;
    if get("PYTORCH_BRANCH").is_none() {
        return Err(no_pytorch_source(src, get("TORCH_VERSION")));
    }
    let vllm_ref = match (&opts.vllm_ref, &src.version) {
        (Some(r), _) => r.clone(),
        (None, Some(v)) => format!("v{v}"),
        (None, None) => {
            return Err(Error::usage(
                format!("`{}` does not say its vLLM version", src.origin),
                Some("pass `--vllm-ref v0.12.0` (the tag or commit of this tree), or the sdist"),
            ));
        }
    };
    let upstream_base = get("BASE_IMAGE")
        .map(|s| s.value.clone())
        .unwrap_or_default();
    let rocm = match &opts.rocm {
        Some(r) => r.clone(),
        None => rocm_of_base(&upstream_base)?,
    };
    let aiter_archs = get("AITER_ROCM_ARCH").map(|s| s.value.clone());
    let components = set
        .iter()
        .filter_map(|s| component(s, src, &set, &archs, aiter_archs.as_deref(), &rocm))
        .collect();
    Ok(Pins {
        origin: src.origin.clone(),
        vllm_ref,
        base_image: format!("rocm/dev-ubuntu-24.04:{rocm}-complete"),
        upstream_base,
        rocm,
        python: get("PYTHON_VERSION").map(|s| s.value.clone()),
        upstream_archs: get("PYTORCH_ROCM_ARCH")
            .map(|s| split_archs(&s.value))
            .unwrap_or_default(),
        archs,
        components,
    })
}

fn split_archs(s: &str) -> Vec<String> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn user_archs(arch: &[String]) -> Result<Vec<String>> {
    let archs: Vec<String> = arch.iter().flat_map(|a| split_archs(a)).collect();
    if archs.is_empty() {
        return Err(Error::usage(
            "`--arch` names no arch",
            Some("pass a GPU arch such as `--arch gfx1151` (repeat or `;`-separate for several)"),
        ));
    }
    if let Some(bad) = archs.iter().find(|a| !is_arch_name(a)) {
        return Err(Error::usage(
            format!("`--arch {bad}` is not a GPU arch name"),
            Some("arch names look like gfx1151, gfx1100, gfx90a:xnack+"),
        ));
    }
    Ok(archs)
}

fn no_pytorch_source(src: &VllmSource, torch: Option<&Setting>) -> Error {
    let what = match torch {
        Some(t) => format!("installs prebuilt torch `{}` wheels", t.value),
        None => "sets no `PYTORCH_BRANCH`".to_owned(),
    };
    Error::input(
        format!(
            "`{}`'s `{}` builds no PyTorch from source: it {what}",
            src.origin,
            source::ROCM_BASE
        ),
        Some(
            "forge's Dockerfile builds PyTorch from a git ref; use a vLLM release whose \
             Dockerfile.rocm_base sets `PYTORCH_BRANCH` (0.32.0 is the newest that does, as of 0.34.0)",
        ),
    )
}

/// `rocm/dev-ubuntu-22.04:7.2.3-complete` -> `7.2.3`.
fn rocm_of_base(base: &str) -> Result<String> {
    let tag = base
        .strip_prefix("rocm/")
        .and_then(|b| b.rsplit_once(':'))
        .map(|(_, t)| t);
    let version: String = tag
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.');
    if version.is_empty() {
        return Err(Error::input(
            format!("upstream's base image `{base}` names no ROCm release"),
            Some("pass the release to build on with `--rocm 7.2.3`"),
        ));
    }
    Ok(version.to_owned())
}

fn component(
    s: &Setting,
    src: &VllmSource,
    set: &[Setting],
    archs: &[String],
    aiter_archs: Option<&str>,
    rocm: &str,
) -> Option<Component> {
    let k = KNOWN.iter().find(|k| k.ref_arg == s.name);
    let unknown = k.is_none() && (s.name.ends_with("_BRANCH") || s.name.ends_with("_COMMIT"));
    if k.is_none() && !unknown {
        return None;
    }
    let stem = |n: &str| {
        n.trim_end_matches("_BRANCH")
            .trim_end_matches("_COMMIT")
            .to_owned()
    };
    let repo_arg = k.map_or_else(
        || format!("{}_REPO", stem(&s.name)),
        |k| k.repo_arg.to_owned(),
    );
    let repo = set
        .iter()
        .find(|r| r.name == repo_arg)
        .map(|r| r.value.clone())
        .or_else(|| k.map(|k| k.repo.to_owned()))
        .unwrap_or_default();
    let name = k.map_or_else(
        || stem(&s.name).to_lowercase().replace('_', "-"),
        |k| k.name.to_owned(),
    );
    let fate = match k.and_then(|k| k.section) {
        Some(section) => Fate::Built { section },
        None => Fate::NotBuilt {
            reason: not_built_reason(&name, archs, aiter_archs, rocm),
        },
    };
    let full_sha = full_sha(&repo, &s.value, &stem(&s.name), src);
    Some(Component {
        name,
        repo,
        git_ref: s.value.clone(),
        arg: s.clone(),
        kind: RefKind::of(&s.value),
        full_sha,
        fate,
    })
}

fn not_built_reason(name: &str, archs: &[String], aiter_archs: Option<&str>, rocm: &str) -> String {
    let list = archs.join(";");
    let no_step = format!("forge's Dockerfile has no {name} step (it would apply to {list})");
    let one_release = "forge keeps every ROCm library from one release (the spec's \
        `ALL ROCm libs from same version`)";
    match name {
        "flash-attention" if archs.iter().all(|a| a.starts_with("gfx1")) => format!(
            "upstream builds it for gfx9 only (its GPU_ARCHS drops every gfx1xxx arch from \
             PYTORCH_ROCM_ARCH), so none of {list}"
        ),
        "aiter" => match aiter_archs {
            Some(a) if !split_archs(a).iter().any(|x| archs.contains(x)) => {
                format!("upstream builds it for `{a}` only (AITER_ROCM_ARCH), not {list}")
            }
            _ => no_step,
        },
        "mori" if archs.iter().all(|a| APU_ARCHS.contains(&a.as_str())) => format!(
            "MORI is ROCm's communication library for multi-GPU Instinct nodes (RDMA, \
             expert-parallel all-to-all); an APU ({list}) has no peer GPU or RDMA NIC"
        ),
        "rocm-runtime" => format!(
            "upstream replaces ROCm {rocm}'s libhsa-runtime64 and libamdhip64 with ROCr and CLR \
             built from rocm-systems at this newer commit; {one_release}"
        ),
        "rocprofiler-sdk" => format!(
            "upstream replaces ROCm {rocm}'s rocprofiler-sdk with one built from rocm-systems \
             at this commit (torch.profiler hangs); {one_release}"
        ),
        "flash-attention" | "mori" => no_step,
        _ => "forge does not know this component (an ARG ending in _BRANCH/_COMMIT)".to_owned(),
    }
}

#[cfg(test)]
mod tests;
