//! The recipe file's schema (serde) and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{APU_ARCHS, LoadOptions, MIN_ROCM_FOR_APU, parse_version, version_lt};
use crate::error::RecipeProblem;

/// `MAX_JOBS` when the recipe pins none: the Dockerfile's `forge-jobs` decides at build time, on
/// the engine's host, from its CPUs and memory and the recipe's memory per job.
pub const AUTO_JOBS: &str = "auto";

/// Build args that recipe fields set; `[build-args]` may not set them itself.
const FIELD_ARGS: &[(&str, &str)] = &[
    ("BASE_IMAGE", "base-image"),
    ("ROCM_VERSION", "rocm"),
    ("PYTORCH_REPO", "pytorch.repo"),
    ("PYTORCH_REF", "pytorch.ref"),
    ("VLLM_REPO", "vllm.repo"),
    ("VLLM_REF", "vllm.ref"),
    ("TRITON_REPO", "triton.repo"),
    ("TRITON_REF", "triton.ref"),
    ("TORCHVISION_REPO", "torchvision.repo"),
    ("TORCHVISION_REF", "torchvision.ref"),
    ("TORCHAUDIO_REPO", "torchaudio.repo"),
    ("TORCHAUDIO_REF", "torchaudio.ref"),
    ("JOB_MEMORY_GB", "preflight.min-memory-per-job-gb"),
    ("TAKEN_WHEELS", "taken"),
    ("WHEELHOUSE", "wheelhouse"),
];

/// torch's build flags: forge sets them for a built torch; a taken one has none.
const TORCH_FLAGS: &[&str] = &["USE_DISTRIBUTED", "USE_ROCM", "USE_CUDA"];

/// A recipe file, schema 1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecipeFile {
    /// Format version; must be 1.
    pub schema: Spanned<u32>,
    /// Short name of the release (`rocm-7.1.1-gfx1151`).
    pub name: String,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// The ROCm version used throughout the image (`7.1.1`).
    pub rocm: Spanned<String>,
    /// GPU archs to build for.
    #[serde(default = "default_archs")]
    pub archs: Spanned<Vec<String>>,
    /// The ROCm base image (same ROCm version as `rocm`).
    pub base_image: String,
    /// Dockerfile path, relative to the recipe's directory, or `forge:NAME` for a shipped one.
    pub dockerfile: Spanned<String>,
    /// Build context directory, relative to the recipe's directory.
    #[serde(default)]
    pub context: Option<String>,
    /// The image to produce.
    pub image: Image,
    /// Where PyTorch comes from (absent when `[taken.torch]` takes a prebuilt wheel).
    #[serde(default)]
    pub pytorch: Option<Source>,
    /// Where vLLM comes from.
    pub vllm: Source,
    /// Where triton comes from (`TRITON_REPO`/`TRITON_REF`; absent: the Dockerfile's default).
    #[serde(default)]
    pub triton: Option<Source>,
    /// Where torchvision comes from (`TORCHVISION_REPO`/`TORCHVISION_REF`).
    #[serde(default)]
    pub torchvision: Option<Source>,
    /// Where torchaudio comes from (`TORCHAUDIO_REPO`/`TORCHAUDIO_REF`).
    #[serde(default)]
    pub torchaudio: Option<Source>,
    /// Components taken as pinned wheels instead of built (`[taken.torch]`; src/recipe/taken.rs).
    #[serde(default)]
    pub taken: BTreeMap<String, Spanned<Taken>>,
    /// The folder holding the taken wheels, relative to the recipe's directory and inside the
    /// build context (default `wheelhouse`).
    #[serde(default)]
    pub wheelhouse: Option<String>,
    /// Extra build args (`USE_DISTRIBUTED`, `MAX_JOBS`, ...).
    #[serde(default)]
    pub build_args: BTreeMap<String, Spanned<ArgValue>>,
    /// What the checks expect.
    #[serde(default)]
    pub checks: Checks,
    /// What the build host needs.
    #[serde(default)]
    pub preflight: Preflight,
    /// Extra monitor rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The lock of the image's Python packages from the package index (`forge recipe lock`).
    #[serde(default)]
    pub lock: Option<LockSpec>,
}

/// `[lock]`: the hash-pinned lock of every package the image takes from the package index
/// (`forge recipe lock` writes it; the Dockerfile installs from it with `--require-hashes`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockSpec {
    /// The lock file, relative to the recipe's directory (`rocm-7.1.1.lock.txt`).
    pub file: String,
    /// Requirements locked beside vLLM's own: what the components the build compiles need from
    /// the index (torch's `sympy`, `networkx`, ...), which pip would otherwise resolve unlocked.
    #[serde(default)]
    pub add: Vec<String>,
    /// vLLM requirements named by a VCS URL (hash-checking refuses them), taken instead from a
    /// published release on the index: `NAME = { version = "X", reason = "..." }`.
    #[serde(default)]
    pub from_index: BTreeMap<String, FromIndex>,
}

/// A VCS requirement taken from a published release instead.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FromIndex {
    /// The release on the index (`0.3.2`).
    pub version: String,
    /// Why this release stands for vLLM's commit (recorded in the lock's header).
    pub reason: String,
}

fn default_archs() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["gfx1151".to_owned()])
}

/// The image section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Image {
    /// Tag of the final image.
    pub tag: String,
    /// Dockerfile stage of the final image.
    pub target: String,
    /// Dockerfile stage that holds just the built wheels.
    pub wheel_stage: String,
}

/// One taken wheel.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Taken {
    /// The pinned version, as in the wheel's name (`2.9.1+rocm7.10.0`).
    pub version: String,
    /// The wheel's file name in the wheelhouse.
    pub wheel: String,
    /// Its SHA256 (64 hex digits): the pin; the wheel is refused when it differs.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The index it comes from (`https://repo.amd.com/rocm/whl/gfx1151/`); absent: only the
    /// local wheelhouse has it.
    #[serde(default)]
    pub index: Option<String>,
}

/// A source repository and ref.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Source {
    /// Git URL.
    pub repo: String,
    /// Branch, tag or commit.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// What the checks expect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Checks {
    /// 3.1: the torch wheel must be larger than this.
    pub wheel_min_bytes: u64,
    /// 4.1: the image must be larger than this (uncompressed).
    pub image_min_bytes: u64,
    /// Deliverables: the compressed export must be larger than this.
    pub archive_min_bytes: u64,
    /// 4.2: Debian packages that must be installed in the image.
    pub system_packages: Vec<String>,
    /// 4.3: Python distributions that must be installed in the image.
    pub pip_packages: Vec<String>,
    /// 4.4/4.5: files that must exist in the image.
    pub files: Vec<String>,
    /// Phase 6: the server test.
    pub server: ServerCheck,
    /// Phases 5 and 7: the runtime probe.
    pub runtime: RuntimeCheck,
    /// Phase 6 again, after the server test, on vLLM's default path (torch.compile and graphs).
    pub server_default_path: DefaultPathCheck,
    /// Why an expectation differs from the spec's (`system-packages = "..."`): the plan and the
    /// report name each replaced spec expectation with this reason. Keys are the `[checks]` keys
    /// `wheel-min-bytes`, `image-min-bytes`, `archive-min-bytes`, `system-packages`,
    /// `pip-packages`, `files`.
    pub reasons: BTreeMap<String, String>,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            wheel_min_bytes: 2_000_000_000,
            image_min_bytes: 20_000_000_000,
            archive_min_bytes: 8_000_000_000,
            system_packages: vec!["rocm-smi-lib".into(), "amd-smi-lib".into()],
            pip_packages: ["uvloop", "python-multipart", "vllm", "amdsmi"]
                .map(String::from)
                .to_vec(),
            files: [
                "/opt/rocm/lib/libamdhip64.so",
                "/opt/rocm/lib/librocm_smi64.so",
                "/opt/rocm/lib/libamd_smi.so",
            ]
            .map(String::from)
            .to_vec(),
            server: ServerCheck::default(),
            runtime: RuntimeCheck::default(),
            server_default_path: DefaultPathCheck::default(),
            reasons: BTreeMap::new(),
        }
    }
}

/// The `[checks]` keys whose expectation the spec sets, and that `[checks.reasons]` may explain.
pub const SPEC_EXPECTATIONS: &[&str] = &[
    "wheel-min-bytes",
    "image-min-bytes",
    "archive-min-bytes",
    "system-packages",
    "pip-packages",
    "files",
];

/// A spec expectation the recipe replaced, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// The `[checks]` key (`system-packages`).
    pub key: String,
    /// The spec's expectation.
    pub spec: String,
    /// The recipe's.
    pub recipe: String,
    /// Why (`[checks.reasons]`), or that the recipe gives none.
    pub reason: String,
}

impl Checks {
    /// Every expectation that differs from the spec's, with the recipe's reason.
    pub fn replaced(&self) -> Vec<Replaced> {
        let spec = Checks::default();
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        let pairs = [
            (
                "wheel-min-bytes",
                spec.wheel_min_bytes.to_string(),
                self.wheel_min_bytes.to_string(),
            ),
            (
                "image-min-bytes",
                spec.image_min_bytes.to_string(),
                self.image_min_bytes.to_string(),
            ),
            (
                "archive-min-bytes",
                spec.archive_min_bytes.to_string(),
                self.archive_min_bytes.to_string(),
            ),
            (
                "system-packages",
                list(&spec.system_packages),
                list(&self.system_packages),
            ),
            (
                "pip-packages",
                list(&spec.pip_packages),
                list(&self.pip_packages),
            ),
            ("files", list(&spec.files), list(&self.files)),
        ];
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(key, spec, recipe)| Replaced {
                key: key.to_owned(),
                spec,
                recipe,
                reason: self
                    .reasons
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "the recipe gives no reason ([checks.reasons])".to_owned()),
            })
            .collect()
    }

    /// The replacement of the expectation under `key`, if the recipe replaced it.
    pub fn replacement(&self, key: &str) -> Option<Replaced> {
        self.replaced().into_iter().find(|r| r.key == key)
    }
}

/// Phase 6 on the path users run: the server test again, after the first one (two servers do
/// not fit one APU), without the arguments that leave vLLM's default path (`--enforce-eager`
/// skips torch.compile and graph capture, where gfx1151 freezes were reported: ROCm/TheRock#1937).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DefaultPathCheck {
    /// Run it (`false`: its checks are skipped, saying so).
    pub enabled: bool,
    /// Seconds to wait for the ready line: compiling and capturing graphs takes minutes
    /// (lemonade-sdk/vllm-rocm's server tier waits up to 600 s).
    pub startup_timeout_secs: u64,
    /// Server arguments dropped for this run (each with the value that follows it, if any, is
    /// not supported: flags only).
    pub drop_args: Vec<String>,
}

impl Default for DefaultPathCheck {
    fn default() -> Self {
        DefaultPathCheck {
            enabled: true,
            startup_timeout_secs: 600,
            drop_args: vec!["--enforce-eager".into()],
        }
    }
}

/// The phase 6 server test.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServerCheck {
    /// Model the server loads.
    pub model: String,
    /// Seconds to wait for `Uvicorn running`.
    pub startup_timeout_secs: u64,
    /// `--max-model-len`.
    pub max_model_len: u32,
    /// `--dtype`.
    pub dtype: String,
    /// Port inside the container.
    pub port: u16,
    /// More server arguments (`--gpu-memory-utilization 0.3`: vLLM's 0.9 default is too high
    /// on the APUs, where hipMemGetInfo misreports unified memory; `--enforce-eager`).
    pub args: Vec<String>,
    /// The server command, replacing `python3 -m vllm.entrypoints.openai.api_server` and the
    /// arguments forge derives (model, host, port, dtype, max-model-len); `args` still follow.
    pub command: Vec<String>,
    /// Bind mounts `host:container[:ro]` (a model directory, a Hugging Face cache); `~/` is the
    /// home directory. forge downloads no weights.
    pub mounts: Vec<String>,
    /// Environment of the server (`HF_HUB_OFFLINE = "1"`).
    pub env: BTreeMap<String, String>,
    /// The log line that says the server is up (the spec's 6.2).
    pub ready_pattern: String,
    /// Seconds each HTTP request may take.
    pub request_timeout_secs: u64,
    /// Seconds between SIGTERM and SIGKILL at the stop.
    pub stop_timeout_secs: u64,
    /// `/dev/shm` size in MiB (Docker's 64 MiB default is too small for vLLM's workers).
    pub shm_size_mb: u64,
    /// Prompt of the completions.
    pub prompt: String,
    /// `max_tokens` of the completions.
    pub max_tokens: u32,
}

impl Default for ServerCheck {
    fn default() -> Self {
        ServerCheck {
            model: "facebook/opt-125m".into(),
            startup_timeout_secs: 120,
            max_model_len: 512,
            dtype: "float16".into(),
            port: 8000,
            args: ["--gpu-memory-utilization", "0.3", "--enforce-eager"]
                .map(String::from)
                .to_vec(),
            command: Vec::new(),
            mounts: Vec::new(),
            env: BTreeMap::new(),
            ready_pattern: "Uvicorn running".into(),
            request_timeout_secs: 60,
            stop_timeout_secs: 30,
            shm_size_mb: 8192,
            prompt: "Hello".into(),
            max_tokens: 5,
        }
    }
}

/// The phases 5 and 7 runtime probe.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RuntimeCheck {
    /// Seconds each check's process may take.
    pub timeout_secs: u64,
    /// Python modules that must import too (`uvloop`, `multipart`), each in its own process.
    pub extra_imports: Vec<String>,
    /// Environment of the probe's container.
    pub env: BTreeMap<String, String>,
    /// Checks run at a time inside the container (0: up to 4, by the engine's CPUs).
    pub jobs: u32,
}

impl Default for RuntimeCheck {
    fn default() -> Self {
        RuntimeCheck {
            timeout_secs: 180,
            extra_imports: Vec::new(),
            env: BTreeMap::new(),
            jobs: 0,
        }
    }
}

/// What the build host needs (phase 1 additions).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Preflight {
    /// Free space under the engine's data root, in GB (10^9 bytes).
    pub min_free_disk_gb: u64,
    /// Memory per compile job, in GB (10^9 bytes).
    pub min_memory_per_job_gb: u64,
    /// Free space under the artifacts directory (the image archive, wheels, logs), in GB.
    pub min_free_artifacts_gb: u64,
}

impl Default for Preflight {
    fn default() -> Self {
        Preflight {
            min_free_disk_gb: 150,
            min_memory_per_job_gb: 8,
            min_free_artifacts_gb: 25,
        }
    }
}

/// Whether `a` is a GPU arch name (`gfx1151`, `gfx90a:xnack+`): what recipes and `--arch` accept.
pub fn is_arch_name(a: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^gfx[0-9a-f]{3,4}(:[a-z]+[+-])*$").expect("valid regex"))
        .is_match(a)
}

/// How serious a monitor finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Something may be lost or wrong; the build goes on.
    Warning,
    /// The build is doomed: stop it.
    Fatal,
}

/// A monitor rule a recipe adds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSpec {
    /// Id of the finding (`recipe.my-rule`).
    pub id: String,
    /// Regular expression matched against each log line (prefix stripped).
    pub pattern: Spanned<String>,
    /// fatal / warning / info.
    pub severity: Severity,
    /// What the finding says.
    pub message: String,
    /// What to do.
    #[serde(default)]
    pub hint: Option<String>,
}

/// A build arg value: TOML string, integer or boolean, passed to Docker as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgValue(pub String);

impl<'de> Deserialize<'de> for ArgValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ArgValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ArgValue, E> {
                Ok(ArgValue(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ArgValue, E> {
                Ok(ArgValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ArgValue, E> {
                Ok(ArgValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ArgValue, E> {
                Ok(ArgValue(if v { "1" } else { "0" }.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Normalise a CMake/env flag value: ON/1/TRUE/YES/Y are on; OFF/0/FALSE/NO/N/empty are off.
/// Anything else is not a flag value (`None`).
pub fn parse_flag(value: &str) -> Option<bool> {
    let v = value.trim().trim_matches('"');
    const ON: &[&str] = &["ON", "1", "TRUE", "YES", "Y"];
    const OFF: &[&str] = &["OFF", "0", "FALSE", "NO", "N", ""];
    if ON.iter().any(|o| v.eq_ignore_ascii_case(o)) {
        Some(true)
    } else if OFF.iter().any(|o| v.eq_ignore_ascii_case(o)) || v.ends_with("-NOTFOUND") {
        Some(false)
    } else {
        None
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML/serde error as a problem with a line and, for unknown keys, the nearest known key.
pub fn toml_problem(text: &str, e: &toml::de::Error) -> RecipeProblem {
    let line = e.span().map(|s| line_of(text, s.start));
    let message = e.message().trim().to_owned();
    let mut hint = None;
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = message
            .split("expected ")
            .nth(1)
            .unwrap_or("")
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let nearest = expected
            .iter()
            .map(|k| (edit_distance(unknown, k), *k))
            .min()
            .filter(|(d, _)| *d <= 3);
        hint = Some(match nearest {
            Some((_, k)) => format!("did you mean `{k}`?"),
            None => format!("known keys here: {}", expected.join(", ")),
        });
    } else if message.starts_with("missing field") {
        hint = Some("see docs/reference.md, section \"Recipe format\", for every key".into());
    }
    RecipeProblem {
        line,
        message,
        hint,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Validate everything but the build args; returns the ROCm version as numbers.
pub fn validate(
    f: &RecipeFile,
    text: &str,
    opts: LoadOptions,
    problems: &mut Vec<RecipeProblem>,
) -> Option<Vec<u32>> {
    let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));
    if *f.schema.get_ref() != 1 {
        problems.push(RecipeProblem {
            line: at(f.schema.span()),
            message: format!(
                "recipe schema {} is not supported; this forge reads schema 1",
                f.schema.get_ref()
            ),
            hint: Some("upgrade forge, or rewrite the recipe for schema 1".into()),
        });
    }
    let rocm = parse_version(f.rocm.get_ref());
    if rocm.is_none() {
        problems.push(RecipeProblem {
            line: at(f.rocm.span()),
            message: format!("`rocm = \"{}\"` is not a version", f.rocm.get_ref()),
            hint: Some("write it as on /opt/rocm/.info/version, like \"7.1.1\"".into()),
        });
    }
    validate_archs(f, rocm.as_ref(), opts, &at, problems);
    sources_and_names_given(f, problems);
    validate_checks(&f.checks, problems);
    for r in &f.rules {
        if let Err(e) = regex::Regex::new(r.pattern.get_ref()) {
            problems.push(RecipeProblem {
                line: at(r.pattern.span()),
                message: format!("rule `{}`: pattern is not a valid regex: {e}", r.id),
                hint: None,
            });
        }
    }
    rocm
}

/// The arch list: not empty, arch names, none an APU that the recipe's ROCm does not support
/// (unless `--allow-unsupported`).
fn validate_archs(
    f: &RecipeFile,
    rocm: Option<&Vec<u32>>,
    opts: LoadOptions,
    at: &dyn Fn(std::ops::Range<usize>) -> Option<usize>,
    problems: &mut Vec<RecipeProblem>,
) {
    let archs = f.archs.get_ref();
    let arch_line = if f.archs.span().is_empty() {
        None
    } else {
        at(f.archs.span())
    };
    if archs.is_empty() {
        problems.push(RecipeProblem {
            line: arch_line,
            message: "the arch list is empty: PyTorch would fail with `No GPU arch specified`"
                .into(),
            hint: Some("archs = [\"gfx1151\"] for Strix Halo".into()),
        });
    }
    for a in archs.iter().filter(|a| !is_arch_name(a)) {
        problems.push(RecipeProblem {
            line: arch_line,
            message: format!("`{a}` is not a GPU arch name"),
            hint: Some("arch names look like gfx1151, gfx1100, gfx90a:xnack+".into()),
        });
    }
    if let Some(v) = rocm
        && version_lt(v, &MIN_ROCM_FOR_APU)
        && !opts.allow_unsupported
    {
        for a in archs.iter().filter(|a| APU_ARCHS.contains(&a.as_str())) {
            problems.push(RecipeProblem {
                line: at(f.rocm.span()),
                message: format!(
                    "ROCm {} is not supported for {a}: vLLM needs ROCm 7.0.2 or newer for the \
                     Ryzen AI MAX / AI 300 APUs (vllm-project/vllm#31333); ROCm 6.2 builds fail \
                     at run time with `invalid device function`, segfaults and hangs",
                    f.rocm.get_ref()
                ),
                hint: Some(
                    "use `--rocm 7.1.1`, or pass `--allow-unsupported` to build it anyway".into(),
                ),
            });
        }
    }
}

/// The sources' repos and refs, and the image's names, not empty.
fn sources_and_names_given(f: &RecipeFile, problems: &mut Vec<RecipeProblem>) {
    let components = [
        ("pytorch", &f.pytorch),
        ("triton", &f.triton),
        ("torchvision", &f.torchvision),
        ("torchaudio", &f.torchaudio),
    ];
    for (name, src) in components {
        if let Some(src) = src {
            for (key, value) in [("repo", &src.repo), ("ref", &src.git_ref)] {
                if value.trim().is_empty() {
                    problems.push(RecipeProblem {
                        line: None,
                        message: format!("`{name}.{key}` is empty"),
                        hint: Some(if name == "pytorch" {
                            "give `pytorch.repo` and `pytorch.ref`, or take a prebuilt wheel with `[taken.torch]`".to_owned()
                        } else {
                            format!("give `{name}.{key}`, or leave `[{name}]` out for the Dockerfile's default")
                        }),
                    });
                }
            }
        }
    }
    for (what, value) in [
        ("image.tag", &f.image.tag),
        ("image.target", &f.image.target),
        ("image.wheel-stage", &f.image.wheel_stage),
        ("base-image", &f.base_image),
        ("vllm.repo", &f.vllm.repo),
        ("vllm.ref", &f.vllm.git_ref),
    ] {
        if value.trim().is_empty() {
            problems.push(RecipeProblem {
                line: None,
                message: format!("`{what}` is empty"),
                hint: None,
            });
        }
    }
}

/// The build args the Dockerfile receives, with forge's required flags enforced.
pub fn resolve_build_args(
    f: &RecipeFile,
    text: &str,
    problems: &mut Vec<RecipeProblem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let torch_taken = f.taken.keys().any(|k| k.eq_ignore_ascii_case("torch"));
    let name_re = regex::Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex");
    for (k, v) in &f.build_args {
        let line = Some(line_of(text, v.span().start));
        let value = v.get_ref().0.clone();
        let mut problem = |message: String, hint: &str| {
            problems.push(RecipeProblem {
                line,
                message,
                hint: Some(hint.to_owned()),
            })
        };
        if !name_re.is_match(k) {
            problem(
                format!("`{k}` is not a valid build arg name"),
                "names are letters, digits and `_`",
            );
            continue;
        }
        if let Some((_, field)) = FIELD_ARGS.iter().find(|(a, _)| a == k) {
            problem(
                format!("build arg `{k}` is set by the recipe's `{field}`"),
                &format!("set `{field}` instead"),
            );
            continue;
        }
        if torch_taken && TORCH_FLAGS.contains(&k.as_str()) {
            problem(
                format!(
                    "`{k}` is a flag of torch's build, and torch is taken as a wheel (`[taken.torch]`)"
                ),
                "remove it: phase 3 checks the taken wheel for distributed and HIP before the build",
            );
            continue;
        }
        judge_value(f, k, &value, &mut problem);
        out.insert(k.clone(), value);
    }
    derived(f, torch_taken, &mut out);
    out
}

/// A build arg's value judged against what it controls (flags, MAX_JOBS, PYTORCH_ROCM_ARCH vs
/// `archs`).
fn judge_value(f: &RecipeFile, k: &str, value: &str, problem: &mut dyn FnMut(String, &str)) {
    match (k, parse_flag(value)) {
        ("USE_DISTRIBUTED", Some(false)) => problem(
            format!(
                "`USE_DISTRIBUTED = \"{value}\"` builds torch without torch.distributed: vLLM \
                 then fails with `cannot import name 'PrefixStore'`"
            ),
            "set USE_DISTRIBUTED = \"1\" (or remove the line: forge sets it)",
        ),
        ("USE_ROCM", Some(false)) => problem(
            format!("`USE_ROCM = \"{value}\"` builds a CPU-only torch"),
            "set USE_ROCM = \"1\" (or remove the line: forge sets it)",
        ),
        ("USE_CUDA", Some(true)) => problem(
            format!("`USE_CUDA = \"{value}\"` contradicts a ROCm build"),
            "remove USE_CUDA (forge builds with USE_CUDA=0)",
        ),
        ("USE_DISTRIBUTED" | "USE_ROCM" | "USE_CUDA", None) => problem(
            format!("`{k} = \"{value}\"` is not a flag value"),
            "use \"1\" or \"0\"",
        ),
        ("MAX_JOBS", _) if value != AUTO_JOBS && value.parse::<u32>().map_or(true, |n| n == 0) => {
            problem(
                format!("`MAX_JOBS = \"{value}\"` is neither a positive number nor `auto`"),
                "remove the line (forge-jobs then decides on the machine that compiles) or pin \
                 a number: MAX_JOBS = \"4\" suits a 32-128 GB machine",
            )
        }
        ("PYTORCH_ROCM_ARCH", _) => {
            let given: std::collections::BTreeSet<&str> = value
                .split([';', ',', ' '])
                .filter(|s| !s.is_empty())
                .collect();
            let wanted: std::collections::BTreeSet<&str> =
                f.archs.get_ref().iter().map(String::as_str).collect();
            if given != wanted {
                problem(
                    format!(
                        "`PYTORCH_ROCM_ARCH = \"{value}\"` contradicts `archs = {:?}`",
                        f.archs.get_ref()
                    ),
                    "remove PYTORCH_ROCM_ARCH: forge derives it from `archs`",
                );
            }
        }
        _ => {}
    }
}

/// The args forge sets itself: the flags it insists on (unless torch is taken), the job count's
/// default, and those derived from the recipe's fields.
fn derived(f: &RecipeFile, torch_taken: bool, out: &mut BTreeMap<String, String>) {
    if !torch_taken {
        for (k, v) in [
            ("USE_DISTRIBUTED", "1"),
            ("USE_ROCM", "1"),
            ("USE_CUDA", "0"),
        ] {
            out.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    out.entry("MAX_JOBS".to_owned())
        .or_insert_with(|| AUTO_JOBS.to_owned());
    out.insert(
        "JOB_MEMORY_GB".into(),
        f.preflight.min_memory_per_job_gb.to_string(),
    );
    out.insert("PYTORCH_ROCM_ARCH".into(), f.archs.get_ref().join(";"));
    out.insert("BASE_IMAGE".into(), f.base_image.clone());
    out.insert("ROCM_VERSION".into(), f.rocm.get_ref().clone());
    out.insert("VLLM_REPO".into(), f.vllm.repo.clone());
    out.insert("VLLM_REF".into(), f.vllm.git_ref.clone());
    for (prefix, src) in [
        ("PYTORCH", &f.pytorch),
        ("TRITON", &f.triton),
        ("TORCHVISION", &f.torchvision),
        ("TORCHAUDIO", &f.torchaudio),
    ] {
        if let Some(src) = src {
            out.insert(format!("{prefix}_REPO"), src.repo.clone());
            out.insert(format!("{prefix}_REF"), src.git_ref.clone());
        }
    }
}

/// `[checks.runtime]` and `[checks.server]`: values that would fail later, or run as code.
fn validate_checks(c: &Checks, problems: &mut Vec<RecipeProblem>) {
    let mut problem = |message: String, hint: &str| {
        problems.push(RecipeProblem {
            line: None,
            message,
            hint: Some(hint.to_owned()),
        })
    };
    let module = regex::Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
        .expect("valid regex");
    for m in c
        .runtime
        .extra_imports
        .iter()
        .filter(|m| !module.is_match(m))
    {
        problem(
            format!("`checks.runtime.extra-imports`: `{m}` is not a Python module name"),
            "dotted names only, like \"uvloop\" or \"vllm.entrypoints.openai.api_server\"",
        );
    }
    for (what, v) in [
        ("checks.runtime.timeout-secs", c.runtime.timeout_secs),
        (
            "checks.server.startup-timeout-secs",
            c.server.startup_timeout_secs,
        ),
        (
            "checks.server.request-timeout-secs",
            c.server.request_timeout_secs,
        ),
    ] {
        if v == 0 {
            problem(
                format!("`{what} = 0` leaves no time"),
                "give a number of seconds",
            );
        }
    }
    for m in &c.server.mounts {
        let parts: Vec<&str> = m.split(':').collect();
        let ok = matches!(parts.len(), 2 | 3)
            && !parts[0].is_empty()
            && parts[1].starts_with('/')
            && parts.get(2).is_none_or(|o| matches!(*o, "ro" | "rw"));
        if !ok {
            problem(
                format!("`checks.server.mounts`: `{m}` is not `host:container[:ro]`"),
                "like \"~/.cache/huggingface:/root/.cache/huggingface:ro\"",
            );
        }
    }
    for k in c
        .reasons
        .keys()
        .filter(|k| !SPEC_EXPECTATIONS.contains(&k.as_str()))
    {
        problem(
            format!("`checks.reasons.{k}`: `{k}` is not an expectation of the spec"),
            &format!("keys: {}", SPEC_EXPECTATIONS.join(", ")),
        );
    }
    if c.server.ready_pattern.trim().is_empty() {
        problem(
            "`checks.server.ready-pattern` is empty".into(),
            "the spec's is \"Uvicorn running\"",
        );
    }
}
