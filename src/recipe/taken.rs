//! Components taken as wheels instead of built from git (`[taken.NAME]`): a prebuilt torch (AMD's
//! gfx1151 wheels), the ROCm wheels it loads, amdsmi. Each is pinned by version and SHA256 and
//! read from the recipe's wheelhouse (a folder inside the build context); `index` records where
//! it comes from, so the plan can say how to fetch it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::schema::Taken;
use super::schema::{RecipeFile, line_of};
use crate::error::RecipeProblem;

/// The components the shipped Dockerfile builds from git, by the wheel's distribution name and
/// the recipe section that gives their source.
pub const BUILT_FROM_GIT: &[(&str, &str)] = &[
    ("torch", "pytorch"),
    ("triton", "triton"),
    ("torchvision", "torchvision"),
    ("torchaudio", "torchaudio"),
    ("vllm", "vllm"),
];

/// The wheelhouse when the recipe names none: `wheelhouse/` beside the recipe.
pub const DEFAULT_WHEELHOUSE: &str = "wheelhouse";

/// A taken wheel with its name, resolved against the recipe's wheelhouse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TakenWheel {
    /// The component (`torch`, `rocm-sdk-core`, ...).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The wheel file.
    pub path: PathBuf,
    /// Its pinned SHA256.
    pub sha256: String,
    /// Where it comes from (an index URL, or `local wheelhouse`).
    pub from: String,
}

impl TakenWheel {
    /// The command that puts it into the wheelhouse, where an index is known.
    pub fn fetch_hint(&self) -> String {
        let dir = self
            .path
            .parent()
            .map_or_else(|| ".".into(), |p| p.display().to_string());
        if self.from.starts_with("http") {
            format!(
                "fetch it: `pip download --no-deps --index-url {} --dest {dir} '{}=={}'`, then \
                 `sha256sum` it against the recipe's pin",
                self.from, self.name, self.version
            )
        } else {
            format!(
                "put `{}` into {dir} (the recipe's wheelhouse)",
                self.path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("?")
            )
        }
    }
}

/// PEP 503-normalised distribution name, with `_` as in wheel file names compared equal.
fn norm(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// Validate `[taken.*]` against the rest of the recipe.
pub fn validate(f: &RecipeFile, text: &str, problems: &mut Vec<RecipeProblem>) {
    for (name, t) in &f.taken {
        let line = Some(line_of(text, t.span().start));
        validate_one(name, t.get_ref(), line, problems);
    }
    built_or_taken(f, problems);
    if !f.taken.is_empty() {
        replaced_with_reasons(f, problems);
    }
    compiler_and_context(f, problems);
}

/// One `[taken.NAME]` table: not vLLM, pinned by a SHA256, a version, a file name that is that
/// distribution at that version, an http(s) index.
fn validate_one(name: &str, t: &Taken, line: Option<usize>, problems: &mut Vec<RecipeProblem>) {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut problem = |message: String, hint: String| {
        problems.push(RecipeProblem {
            line,
            message,
            hint: Some(hint),
        })
    };
    if norm(name) == "vllm" {
        problem(
            "`[taken.vllm]`: vLLM is the component forge compiles; it cannot be taken".into(),
            "remove `[taken.vllm]` and give `[vllm]` repo and ref".into(),
        );
    }
    match t.sha256.as_deref() {
        None => problem(
            format!("`[taken.{name}]` has no `sha256`: a taken wheel is pinned by its hash"),
            format!(
                "add `sha256 = \"...\"` from `sha256sum {}` (or the `#sha256=` fragment of \
                 the index's link to it)",
                t.wheel
            ),
        ),
        Some(h) if !hex(h) => problem(
            format!("`[taken.{name}]`: `sha256 = \"{h}\"` is not 64 hex digits"),
            format!(
                "the output of `sha256sum {}`, without the file name",
                t.wheel
            ),
        ),
        Some(_) => {}
    }
    if t.version.trim().is_empty() {
        problem(
            format!("`[taken.{name}]`: `version` is empty"),
            "the version in the wheel's file name, like \"2.9.1+rocm7.10.0\"".into(),
        );
    }
    let parsed = file_name_parts(&t.wheel);
    match parsed.filter(|_| !t.wheel.contains('/')) {
        None => problem(
            format!(
                "`[taken.{name}]`: `wheel = \"{}\"` is not a wheel or sdist file name",
                t.wheel
            ),
            "name-version-python-abi-platform.whl (or name-version.tar.gz for an sdist), a \
             file in the wheelhouse (no folder)"
                .into(),
        ),
        Some((dist, version)) if norm(dist) != norm(name) || version != t.version => problem(
            format!(
                "`[taken.{name}]`: the file `{}` is {dist} {version}, not {name} {}",
                t.wheel, t.version
            ),
            "name the table after the distribution and pin the version its file name carries"
                .into(),
        ),
        Some(_) => {}
    }
    if let Some(i) = &t.index
        && !(i.starts_with("https://") || i.starts_with("http://"))
    {
        problem(
            format!("`[taken.{name}]`: `index = \"{i}\"` is not an http(s) URL"),
            "a PEP 503 index URL, or leave `index` out for a wheel only the wheelhouse has".into(),
        );
    }
}

/// (distribution, version) of a wheel's file name (name-version(-build)?-python-abi-platform.whl)
/// or, for a distribution its index publishes only so (TheRock's `rocm` selector, which brings
/// the `rocm-sdk` tool), an sdist's (name-version.tar.gz).
fn file_name_parts(file: &str) -> Option<(&str, &str)> {
    if let Some(stem) = file.strip_suffix(".tar.gz") {
        stem.rsplit_once('-')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
    } else {
        let parts: Vec<&str> = file.strip_suffix(".whl").unwrap_or("").split('-').collect();
        (5..=6).contains(&parts.len()).then(|| (parts[0], parts[1]))
    }
}

/// A component is built or taken, never both; torch and vLLM need a source either way.
fn built_or_taken(f: &RecipeFile, problems: &mut Vec<RecipeProblem>) {
    for (dist, section) in BUILT_FROM_GIT {
        let taken = f.taken.keys().any(|k| norm(k) == *dist);
        let given = match *section {
            "pytorch" => f.pytorch.is_some(),
            "triton" => f.triton.is_some(),
            "torchvision" => f.torchvision.is_some(),
            "torchaudio" => f.torchaudio.is_some(),
            _ => true,
        };
        if taken && given {
            problems.push(RecipeProblem {
                line: None,
                message: format!(
                    "{dist} is both built (`[{section}]`) and taken (`[taken.{dist}]`)"
                ),
                hint: Some(format!(
                    "keep one: `[{section}]` builds it from git, `[taken.{dist}]` installs the \
                     pinned wheel"
                )),
            });
        }
        if *section == "pytorch" && !taken && !given {
            problems.push(RecipeProblem {
                line: None,
                message: "no `[pytorch]` and no `[taken.torch]`: torch comes from nowhere".into(),
                hint: Some(
                    "give `[pytorch]` repo and ref to build it, or `[taken.torch]` (version, \
                     wheel, sha256) to take a prebuilt wheel"
                        .into(),
                ),
            });
        }
    }
}

/// With taken wheels, every replaced expectation says why.
fn replaced_with_reasons(f: &RecipeFile, problems: &mut Vec<RecipeProblem>) {
    for r in f
        .checks
        .replaced()
        .iter()
        .filter(|r| !f.checks.reasons.contains_key(&r.key))
    {
        problems.push(RecipeProblem {
            line: None,
            message: format!(
                "`checks.{}` replaces the spec's expectation ({}) without a reason",
                r.key, r.spec
            ),
            hint: Some(format!(
                "say why under `[checks.reasons]`: `{} = \"...\"` (the report names each \
                 replaced expectation with it)",
                r.key
            )),
        });
    }
}

/// A taken torch needs the devel wheel (the HIP compiler), and taken wheels a build context.
fn compiler_and_context(f: &RecipeFile, problems: &mut Vec<RecipeProblem>) {
    // vLLM compiles against a taken torch with a HIP compiler, and the prebuilt Dockerfile's base
    // carries no ROCm: the compiler comes from TheRock's devel wheel (`rocm-sdk init` expands it)
    let has = |dist: &str| f.taken.keys().any(|k| norm(k) == norm(dist));
    if has("torch") && !has("rocm-sdk-devel") {
        problems.push(RecipeProblem {
            line: None,
            message: "`[taken.torch]` without `[taken.rocm-sdk-devel]`: vLLM's compile needs a HIP \
                      compiler (hipcc, amdclang) and the ROCm headers, and the prebuilt image's \
                      base has no ROCm to bring them"
                .into(),
            hint: Some(
                "take TheRock's devel wheel from the index the torch wheel came from (`pip download \
                 --no-deps --index-url INDEX 'rocm-sdk-devel==VERSION'`, the version of \
                 rocm-sdk-core) and `rocm` (its sdist brings the tool whose `rocm-sdk init` expands \
                 it), each as a [taken.*] with its sha256"
                    .into(),
            ),
        });
    }
    if !f.taken.is_empty() && f.context.is_none() {
        problems.push(RecipeProblem {
            line: None,
            message: "taken wheels need a build context: the Dockerfile installs them from the \
                      wheelhouse inside it"
                .into(),
            hint: Some(
                "add `context = \".\"` (the recipe's directory) and keep the wheelhouse in it"
                    .into(),
            ),
        });
    }
}

/// The taken wheels, in name order, resolved against `wheelhouse`.
pub fn resolve(f: &RecipeFile, wheelhouse: &Path) -> Vec<TakenWheel> {
    f.taken
        .iter()
        .map(|(name, t)| {
            let t = t.get_ref();
            TakenWheel {
                name: name.clone(),
                version: t.version.clone(),
                path: wheelhouse.join(&t.wheel),
                sha256: t.sha256.clone().unwrap_or_default().to_ascii_lowercase(),
                from: t
                    .index
                    .clone()
                    .unwrap_or_else(|| "local wheelhouse".to_owned()),
            }
        })
        .collect()
}

/// The `TAKEN_WHEELS` build arg: `file=sha256` pairs, space-separated, that the Dockerfile checks
/// with `sha256sum -c` before installing them.
pub fn build_arg(wheels: &[TakenWheel]) -> String {
    wheels
        .iter()
        .map(|w| {
            format!(
                "{}={}",
                w.path.file_name().and_then(|n| n.to_str()).unwrap_or(""),
                w.sha256
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `name` is torch (`[taken.torch]`).
pub fn is_torch(name: &str) -> bool {
    norm(name) == "torch"
}
