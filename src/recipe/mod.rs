//! Recipes: one TOML file describes one release (ROCm version, arch list, Dockerfile, sources,
//! build args and the checks' expectations).
//!
//! The format is versioned (`schema = 1`) and strict: unknown keys are rejected with the file,
//! line and a hint, and invalid combinations (no arch, `USE_DISTRIBUTED=0`, a build arg that
//! contradicts the arch list) are errors, never warnings. The shipped recipes are embedded in the
//! binary so `forge` works from any directory.

pub mod dockerfile;
pub mod pylock;
mod schema;
mod taken;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use schema::{
    ArgValue, Checks, DefaultPathCheck, FromIndex, Image, LockSpec, Preflight, RecipeFile,
    Replaced, RuleSpec, RuntimeCheck, SPEC_EXPECTATIONS, ServerCheck, Severity, Source,
    is_arch_name, parse_flag,
};
pub use taken::{BUILT_FROM_GIT, DEFAULT_WHEELHOUSE, Taken, TakenWheel};

use crate::error::{Error, RecipeProblem, Result};

/// The recipe used when neither `--rocm` nor `--recipe` is given.
pub const DEFAULT_ROCM: &str = "7.1.1";

/// Shipped recipes, embedded: (ROCm version, file name, text).
pub const SHIPPED: &[(&str, &str, &str)] = &[
    (
        "7.1.1",
        "rocm-7.1.1.toml",
        include_str!("../../recipes/rocm-7.1.1.toml"),
    ),
    (
        "7.0.2",
        "rocm-7.0.2.toml",
        include_str!("../../recipes/rocm-7.0.2.toml"),
    ),
    (
        "6.2.4",
        "rocm-6.2.4.toml",
        include_str!("../../recipes/rocm-6.2.4.toml"),
    ),
];

/// Shipped Dockerfiles, embedded: (file name, text).
pub const SHIPPED_DOCKERFILES: &[(&str, &str)] = &[
    (
        "vllm-rocm.Dockerfile",
        include_str!("../../dockerfiles/vllm-rocm.Dockerfile"),
    ),
    (
        "vllm-rocm-prebuilt.Dockerfile",
        include_str!("../../dockerfiles/vllm-rocm-prebuilt.Dockerfile"),
    ),
];

/// The oldest ROCm that vLLM supports on the gfx1150/gfx1151 APUs (vllm-project/vllm#31333).
pub const MIN_ROCM_FOR_APU: [u32; 3] = [7, 0, 2];

/// Archs that need [`MIN_ROCM_FOR_APU`].
pub const APU_ARCHS: &[&str] = &["gfx1150", "gfx1151"];

/// Where a recipe came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in the binary (`--rocm X`).
    Shipped {
        /// The file name under `recipes/`.
        file: &'static str,
    },
    /// Read from disk (`--recipe PATH`).
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Shipped { file } => write!(f, "recipes/{file}"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A Dockerfile as the recipe names it, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileRef {
    /// Embedded in the binary (the shipped recipes').
    Embedded {
        /// File name under `dockerfiles/`.
        name: &'static str,
        /// Its text.
        text: &'static str,
    },
    /// On disk, resolved against the recipe file's directory.
    File(PathBuf),
}

impl DockerfileRef {
    /// How the plan shows it.
    pub fn display(&self) -> String {
        match self {
            DockerfileRef::Embedded { name, .. } => format!("dockerfiles/{name} (embedded)"),
            DockerfileRef::File(p) => p.display().to_string(),
        }
    }

    /// The Dockerfile's text.
    pub fn read(&self) -> Result<String> {
        match self {
            DockerfileRef::Embedded { text, .. } => Ok((*text).to_owned()),
            DockerfileRef::File(p) => {
                std::fs::read_to_string(p).map_err(|e| Error::io("read Dockerfile", p, e))
            }
        }
    }
}

/// A parsed and validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Where it came from.
    pub origin: Origin,
    /// The parsed file.
    pub file: RecipeFile,
    /// The ROCm version as numbers.
    pub rocm: Vec<u32>,
    /// The build args as the Dockerfile receives them, all resolved (recipe fields included).
    pub build_args: BTreeMap<String, String>,
    /// The Dockerfile.
    pub dockerfile: DockerfileRef,
    /// Build context directory (None: only the Dockerfile is sent).
    pub context: Option<PathBuf>,
    /// The components taken as wheels (`[taken.*]`), resolved against the wheelhouse; empty for
    /// a recipe that builds everything.
    pub taken: Vec<TakenWheel>,
    /// The Python lock (`[lock] file`), when the recipe has one.
    pub lock: Option<LockRef>,
    /// A local wheelhouse of the lock's files, sent with the build context as
    /// `.forge/wheelhouse/` (the rehearsal's package index; never set for a real build).
    pub wheelhouse: Option<PathBuf>,
}

/// Shipped locks, embedded: (file name under `recipes/`, text).
pub const SHIPPED_LOCKS: &[(&str, &str)] = &[(
    "rocm-7.1.1.lock.txt",
    include_str!("../../recipes/rocm-7.1.1.lock.txt"),
)];

/// Where a recipe's Python lock is.
#[derive(Debug, Clone)]
pub enum LockRef {
    /// Embedded in the binary (a shipped recipe's).
    Embedded {
        /// File name under `recipes/`.
        name: &'static str,
        /// Its text.
        text: &'static str,
    },
    /// On disk, resolved against the recipe file's directory (it may not exist yet: `forge
    /// recipe lock` writes it).
    File(PathBuf),
}

impl LockRef {
    /// How the plan shows it.
    pub fn display(&self) -> String {
        match self {
            LockRef::Embedded { name, .. } => format!("recipes/{name} (embedded)"),
            LockRef::File(p) => p.display().to_string(),
        }
    }

    /// The lock's text.
    pub fn read(&self) -> Result<String> {
        match self {
            LockRef::Embedded { text, .. } => Ok((*text).to_owned()),
            LockRef::File(p) => std::fs::read_to_string(p).map_err(|e| Error::Usage {
                message: format!("cannot read the recipe's lock `{}`: {e}", p.display()),
                hint: Some(
                    "write it with `forge recipe lock --recipe RECIPE` (needs the vLLM sdist and \
                     `uv`), or drop the recipe's `[lock]` table"
                        .into(),
                ),
            }),
        }
    }
}

/// Options that change what is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Accept a ROCm version that vLLM does not support for the target arch.
    pub allow_unsupported: bool,
}

impl Recipe {
    /// The recipe picked by `--rocm`/`--recipe` (default: the shipped 7.1.1).
    pub fn select(rocm: Option<&str>, path: Option<&Path>, opts: LoadOptions) -> Result<Recipe> {
        match (rocm, path) {
            (Some(_), Some(_)) => Err(Error::usage(
                "`--rocm` and `--recipe` both given",
                Some("pick one: `--rocm X` for a shipped recipe, `--recipe PATH` for a file"),
            )),
            (_, Some(p)) => Recipe::from_path(p, opts),
            (r, None) => Recipe::shipped(r.unwrap_or(DEFAULT_ROCM), opts),
        }
    }

    /// A shipped recipe by ROCm version.
    pub fn shipped(version: &str, opts: LoadOptions) -> Result<Recipe> {
        let want = version.trim_start_matches("rocm-");
        let Some((_, file, text)) = SHIPPED.iter().find(|(v, _, _)| *v == want) else {
            let known: Vec<&str> = SHIPPED.iter().map(|(v, _, _)| *v).collect();
            return Err(Error::usage(
                format!("no shipped recipe for ROCm `{version}`"),
                Some(&format!(
                    "shipped: {}; or write your own and pass `--recipe PATH`",
                    known.join(", ")
                )),
            ));
        };
        Recipe::parse(text, Origin::Shipped { file }, opts)
    }

    /// A recipe file on disk.
    pub fn from_path(path: &Path, opts: LoadOptions) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read recipe", path, e))?;
        Recipe::parse(&text, Origin::File(path.to_owned()), opts)
    }

    /// Parse and validate recipe text.
    pub fn parse(text: &str, origin: Origin, opts: LoadOptions) -> Result<Recipe> {
        let fail = |problems: Vec<RecipeProblem>| Error::Recipe {
            origin: origin.to_string(),
            problems,
        };
        let file: RecipeFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => return Err(fail(vec![schema::toml_problem(text, &e)])),
        };
        let mut problems = Vec::new();
        let rocm = schema::validate(&file, text, opts, &mut problems);
        taken::validate(&file, text, &mut problems);
        let mut build_args = schema::resolve_build_args(&file, text, &mut problems);
        let dockerfile = resolve_dockerfile(&file, &origin, text, &mut problems);
        let context = file.context.as_ref().map(|c| relative_to(&origin, c));
        let mut taken = Vec::new();
        if !file.taken.is_empty()
            && let Some(ctx) = &context
        {
            let rel = file.wheelhouse.as_deref().unwrap_or(DEFAULT_WHEELHOUSE);
            let wheelhouse = relative_to(&origin, rel);
            match inside(ctx, &wheelhouse) {
                Some(in_ctx) => {
                    taken = taken::resolve(&file, &wheelhouse);
                    build_args.insert("TAKEN_WHEELS".into(), taken::build_arg(&taken));
                    build_args.insert("WHEELHOUSE".into(), in_ctx);
                }
                None => problems.push(RecipeProblem {
                    line: None,
                    message: format!(
                        "the wheelhouse `{}` is not inside the build context `{}`",
                        wheelhouse.display(),
                        ctx.display()
                    ),
                    hint: Some(
                        "the Dockerfile copies the taken wheels from the context: keep                          `wheelhouse` under `context`"
                            .into(),
                    ),
                }),
            }
        }
        let lock = resolve_lock(&file, &origin, text, &mut problems);
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line.unwrap_or(0));
            return Err(fail(problems));
        }
        Ok(Recipe {
            origin,
            file,
            rocm: rocm.unwrap_or_default(),
            build_args,
            dockerfile: dockerfile.expect("no problems means the Dockerfile resolved"),
            context,
            taken,
            lock,
            wheelhouse: None,
        })
    }

    /// The taken torch wheel (`[taken.torch]`), if torch is not built.
    pub fn taken_torch(&self) -> Option<&TakenWheel> {
        self.taken.iter().find(|t| taken::is_torch(&t.name))
    }

    /// Where torch comes from, in one line (`repo@ref`, or the taken wheel).
    pub fn torch_source(&self) -> String {
        match (&self.file.pytorch, self.taken_torch()) {
            (_, Some(t)) => format!("taken: {} {} ({})", t.name, t.version, t.from),
            (Some(s), None) => format!("{}@{}", s.repo, s.git_ref),
            (None, None) => "(none)".to_owned(),
        }
    }

    /// The target arch list.
    pub fn archs(&self) -> &[String] {
        self.file.archs.get_ref()
    }

    /// The arch list `--arch` gives (repeated or `;`/`,`-separated), validated as a recipe's
    /// `archs` is; the recipe's own when `--arch` is not given.
    pub fn archs_or(&self, arch: &[String]) -> Result<Vec<String>> {
        if arch.is_empty() {
            return Ok(self.archs().to_vec());
        }
        let archs: Vec<String> = arch
            .iter()
            .flat_map(|a| a.split([';', ',']))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if archs.is_empty() {
            return Err(Error::usage(
                "`--arch` names no arch",
                Some(
                    "pass a GPU arch such as `--arch gfx1151` (repeat or `;`-separate for several)",
                ),
            ));
        }
        if let Some(bad) = archs.iter().find(|a| !is_arch_name(a)) {
            return Err(Error::usage(
                format!("`--arch {bad}` is not a GPU arch name"),
                Some(
                    "arch names look like gfx1151, gfx1100, gfx90a:xnack+ (recipes accept the same)",
                ),
            ));
        }
        Ok(archs)
    }

    /// How many compile jobs the compiling stages run: the recipe's `MAX_JOBS` pin, or decided
    /// at build time on the engine's host.
    pub fn jobs(&self) -> Jobs {
        match self.build_args.get("MAX_JOBS").map(|v| v.parse::<u32>()) {
            Some(Ok(n)) if n > 0 => Jobs::Pinned { jobs: n },
            _ => Jobs::Auto {
                per_job_gb: self.file.preflight.min_memory_per_job_gb,
            },
        }
    }

    /// The ROCm version as written (`7.1.1`).
    pub fn rocm_version(&self) -> &str {
        self.file.rocm.get_ref()
    }
}

/// How many compile jobs each compiling stage of the Dockerfile runs (`MAX_JOBS`).
///
/// Unless the recipe pins it, the Dockerfile's `forge-jobs` helper decides inside the build, on
/// the engine's host: the build arg stays `auto`, so neither BuildKit's cache key nor the plan
/// (whose hash `--resume` compares) depends on the machine. [`Jobs::expected`] is the same rule,
/// for preflight to say what it expects from the engine's CPUs and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Jobs {
    /// `[build-args] MAX_JOBS = "N"`: every compiling stage runs N jobs, whatever the machine.
    Pinned {
        /// The pinned number.
        jobs: u32,
    },
    /// Decided at build time: min(CPUs, memory / stages sharing it / `per_job_gb`), at least 1.
    Auto {
        /// Memory a compile job may take, GB (`[preflight] min-memory-per-job-gb`).
        per_job_gb: u64,
    },
}

impl Jobs {
    /// What `forge-jobs` decides for a stage that shares `mem` bytes with `share - 1` others on a
    /// machine of `cpus` CPUs (the Dockerfile's shell code, in Rust).
    pub fn expected(&self, cpus: u64, mem: u64, share: u64) -> u64 {
        match *self {
            Jobs::Pinned { jobs } => u64::from(jobs),
            Jobs::Auto { per_job_gb } => {
                let by_memory = mem / share.max(1) / (per_job_gb.max(1) * 1_000_000_000);
                by_memory.min(cpus).max(1)
            }
        }
    }

    /// One line for the plan: how the number will be decided.
    pub fn describe(&self) -> String {
        match *self {
            Jobs::Pinned { jobs } => {
                format!("MAX_JOBS={jobs} in every compiling stage (pinned by the recipe)")
            }
            Jobs::Auto { per_job_gb } => format!(
                "decided at build time on the engine's host by forge-jobs: min(CPUs, memory / \
                 stages compiling at once / {per_job_gb} GB a job), at least 1; CPUs from nproc \
                 and cgroup cpu.max, memory from MemTotal or the cgroup's memory.max, whichever \
                 is lower (pin with [build-args] MAX_JOBS)"
            ),
        }
    }
}

/// `path` relative to `dir` when it lies inside it (lexically, `..` resolved), with `/`.
fn inside(dir: &Path, path: &Path) -> Option<String> {
    let norm = |p: &Path| {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut out = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                c => out.push(c),
            }
        }
        out
    };
    let rel = norm(path).strip_prefix(norm(dir)).ok()?.to_owned();
    let s = rel.to_string_lossy().replace('\\', "/");
    Some(if s.is_empty() { ".".to_owned() } else { s })
}

fn relative_to(origin: &Origin, rel: &str) -> PathBuf {
    match origin {
        Origin::File(p) => p.parent().unwrap_or(Path::new(".")).join(rel),
        Origin::Shipped { .. } => PathBuf::from(rel),
    }
}

fn resolve_lock(
    file: &RecipeFile,
    origin: &Origin,
    text: &str,
    problems: &mut Vec<RecipeProblem>,
) -> Option<LockRef> {
    let spec = file.lock.as_ref()?;
    let line = text.find("[lock]").map(|at| schema::line_of(text, at));
    let mut bad = |message: String, hint: &str| {
        problems.push(RecipeProblem {
            line,
            message,
            hint: Some(hint.into()),
        })
    };
    let name = Path::new(&spec.file).file_name().and_then(|n| n.to_str());
    if spec.file.is_empty() || name.is_none() {
        bad(
            format!("`[lock] file = \"{}\"` names no file", spec.file),
            "name the lock beside the recipe: `file = \"NAME.lock.txt\"`",
        );
        return None;
    }
    for a in &spec.add {
        if <pep508_rs::Requirement as std::str::FromStr>::from_str(a.trim()).is_err() {
            bad(
                format!("`[lock] add` entry `{a}` is not a PEP 508 requirement"),
                "write it as pip would read it: `sympy>=1.13.3`",
            );
        }
    }
    for (n, f) in &spec.from_index {
        if <pep508_rs::pep440_rs::Version as std::str::FromStr>::from_str(f.version.trim()).is_err()
        {
            bad(
                format!("`[lock.from-index] {n}`: `{}` is not a version", f.version),
                "the release's version on the index, as `0.3.2`",
            );
        }
        if f.reason.trim().is_empty() {
            bad(
                format!("`[lock.from-index] {n}` gives no reason"),
                "say why this release stands for vLLM's commit (`reason = \"...\"`): the lock records it",
            );
        }
    }
    match origin {
        Origin::Shipped { .. } => {
            let found = SHIPPED_LOCKS
                .iter()
                .find(|(n, _)| Some(*n) == name)
                .map(|(name, text)| LockRef::Embedded { name, text });
            if found.is_none() {
                bad(
                    format!("no shipped lock named `{}`", spec.file),
                    "a shipped recipe's lock is embedded: add it to SHIPPED_LOCKS",
                );
            }
            found
        }
        Origin::File(_) => Some(LockRef::File(relative_to(origin, &spec.file))),
    }
}

fn resolve_dockerfile(
    file: &RecipeFile,
    origin: &Origin,
    text: &str,
    problems: &mut Vec<RecipeProblem>,
) -> Option<DockerfileRef> {
    let rel = file.dockerfile.get_ref();
    let line = Some(schema::line_of(text, file.dockerfile.span().start));
    let embedded = |name: &str| {
        SHIPPED_DOCKERFILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(name, text)| DockerfileRef::Embedded { name, text })
    };
    let shipped_name = match (rel.strip_prefix("forge:"), origin) {
        (Some(n), _) => Some(n),
        (None, Origin::Shipped { .. }) => Path::new(rel).file_name().and_then(|n| n.to_str()),
        (None, Origin::File(_)) => None,
    };
    if let Some(name) = shipped_name {
        let found = embedded(name);
        if found.is_none() {
            let known: Vec<&str> = SHIPPED_DOCKERFILES.iter().map(|(n, _)| *n).collect();
            problems.push(RecipeProblem {
                line,
                message: format!("no shipped Dockerfile named `{name}`"),
                hint: Some(format!("shipped: {}", known.join(", "))),
            });
        }
        return found;
    }
    let path = relative_to(origin, rel);
    if path.is_file() {
        return Some(DockerfileRef::File(path));
    }
    problems.push(RecipeProblem {
        line,
        message: format!("Dockerfile `{}` does not exist", path.display()),
        hint: Some(
            "paths are relative to the recipe file's directory; \
             `forge:vllm-rocm.Dockerfile` names the shipped one"
                .into(),
        ),
    });
    None
}

/// Parse `7.1.1` / `7.0` into numbers.
pub fn parse_version(s: &str) -> Option<Vec<u32>> {
    let parts: Option<Vec<u32>> = s.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| (1..=4).contains(&p.len()))
}

/// Compare two versions, missing parts counting as 0.
pub fn version_lt(a: &[u32], b: &[u32]) -> bool {
    let n = a.len().max(b.len());
    let pad = |v: &[u32]| {
        (0..n)
            .map(|i| v.get(i).copied().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    pad(a) < pad(b)
}

#[cfg(test)]
mod tests;
