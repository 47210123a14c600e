//! `forge build --rehearse`: run the shipped Dockerfile end to end in minutes, with stand-ins for
//! the hours of compile.
//!
//! A rehearsal base image (`scripts/rehearsal-base.sh` makes one here: Debian's real ROCm
//! libraries in AMD's `/opt/rocm` layout, AMD's package names, a local wheelhouse) carries small
//! stand-in source trees as git repositories and lists them in [`STANDINS`] (`name repo ref`). The
//! rehearsal is the recipe as it is, Dockerfile, build args, stages, checks, with three changes:
//! the base image is the rehearsal base, every component's repository and ref point at its
//! stand-in, and the image tag gets a `-rehearsal` suffix so it never passes for a release. Every
//! instruction of the Dockerfile then runs for real: apt, pip and its pins, git fetches of every
//! kind of ref, the configure summary the live monitor judges, the wheel stage, the offline
//! runtime install. What stand-ins cannot prove (sizes, GPU code) is reported as skipped with the
//! reason ([`soften`]), never as passed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::report::{Check, Status};

/// Where a rehearsal base lists its stand-ins.
pub const STANDINS: &str = "/opt/forge-rehearsal/standins.txt";

/// Checks whose verdict a stand-in cannot give: what a real compile needs of the build host
/// (disk, memory per job), sizes of a real build, GPU code objects, and the ROCm release (the
/// stand-in base carries Debian's ROCm libraries under AMD's names).
const STAND_IN_BLIND: &[&str] = &[
    "host.disk",
    "host.disk-artifacts",
    "host.memory",
    "3.1",
    "4.1",
    "export.size",
    "wheel.gpu-targets",
    "image.gpu-targets",
    "image.rocm-versions",
    "deliverable.archive",
    "deliverable.sha256",
    "deliverable.sizes",
    "deliverable.gpu-phases",
];

/// The stand-ins' generation, in the rehearsal base's tag (`scripts/rehearsal-base.sh` uses the
/// same): a worktree whose stand-ins differ keeps its own base instead of rebuilding the shared
/// one. s2: pytorch at an abbreviated commit, triton at a full one with `python/triton_kernels`,
/// stand-ins that print and require `MAX_JOBS`, pkg-config/liblzma-dev served but not installed.
/// s3: vLLM's stand-in with vLLM 0.12.0's real requirements (and a variant with one outside the
/// lock), pip looking in the lock's wheelhouse the build context brings.
pub const STANDINS_GENERATION: &str = "s3";

/// The variant whose vLLM requires `openai >= 99`, which the lock does not satisfy: the stage
/// that resolves vLLM's requirements must fail naming openai.
pub const REQUIREMENT_OUTSIDE_LOCK: &str = "requirement-outside-lock";

/// The rehearsal base for a recipe's ROCm release (made by `scripts/rehearsal-base.sh`).
pub fn default_base(rocm: &str) -> String {
    format!("forge-rehearsal-rocm:{rocm}-{STANDINS_GENERATION}")
}

/// The rehearsal base of a prebuilt recipe (`[taken.torch]`), whatever its ROCm release: Debian
/// with no ROCm at all, only vLLM's stand-in source (`scripts/rehearsal-base.sh --prebuilt`);
/// the taken wheels' stand-ins come from the recipe's own wheelhouse
/// (`scripts/prebuilt-standins.py`).
pub fn prebuilt_base() -> String {
    format!("forge-rehearsal-prebuilt:trixie-{STANDINS_GENERATION}")
}

/// The rehearsal base `recipe` gets when `--rehearsal-base` names none.
pub fn default_base_for(recipe: &Recipe) -> String {
    if recipe.taken_torch().is_some() {
        prebuilt_base()
    } else {
        default_base(recipe.file.rocm.get_ref())
    }
}

/// One stand-in component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standin {
    /// Component name (`pytorch`, `triton`, `torchvision`, `torchaudio`, `vllm`).
    pub name: String,
    /// Its git repository inside the rehearsal base (`file:///...`).
    pub repo: String,
    /// The ref to build (a branch, a tag or an abbreviated commit).
    pub git_ref: String,
}

/// The build-arg prefix of each component the Dockerfile fetches.
const COMPONENTS: &[(&str, &str)] = &[
    ("pytorch", "PYTORCH"),
    ("triton", "TRITON"),
    ("torchvision", "TORCHVISION"),
    ("torchaudio", "TORCHAUDIO"),
    ("vllm", "VLLM"),
];

/// Parse [`STANDINS`]: one `name repo ref` a line; blank lines and `#` comments ignored.
pub fn parse_standins(text: &str) -> Result<Vec<Standin>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, repo, git_ref] = f[..] else {
            return Err(Error::Input {
                message: format!("{STANDINS}:{}: want `name repo ref`, got `{line}`", i + 1),
                hint: Some("rebuild the rehearsal base: `scripts/rehearsal-base.sh`".into()),
            });
        };
        out.push(Standin {
            name: name.to_owned(),
            repo: repo.to_owned(),
            git_ref: git_ref.to_owned(),
        });
    }
    Ok(out)
}

/// Read the stand-ins of rehearsal base `base` (one short container, labelled and removed).
pub fn read_standins(engine: &dyn Engine, base: &str) -> Result<Vec<Standin>> {
    let labels = crate::engine::temp_labels(&format!("rehearse-{}", std::process::id()));
    let cmd = ["cat".to_owned(), STANDINS.to_owned()];
    let not_a_base = |why: String| Error::Usage {
        message: format!("`{base}` is not a rehearsal base image: {why}"),
        hint: Some(format!(
            "make it with `scripts/rehearsal-base.sh` (stand-in for AMD's base image, no registry \
             needed), or name another with `--rehearsal-base IMAGE`; {STANDINS} lists its \
             stand-in sources"
        )),
    };
    let (code, out, err) = engine
        .run_once(base, &cmd, &labels, Duration::from_secs(60))
        .map_err(|e| not_a_base(e.to_string()))?;
    if code != 0 {
        return Err(not_a_base(format!("`cat {STANDINS}` said: {}", err.trim())));
    }
    let standins = parse_standins(&out)?;
    if standins.is_empty() {
        return Err(not_a_base(format!("{STANDINS} is empty")));
    }
    Ok(standins)
}

/// The environment variable that selects a variant of the stand-ins (unset: none).
pub const VARIANT_ENV: &str = "FORGE_REHEARSAL_VARIANT";

/// The variant whose torch wheel fails 3.1 by size and passes every structural check: the
/// rehearsal base's `pytorch@wheel-fails-3.1` stand-in (a branch that pads the wheel with 64 MiB
/// of incompressible data), with 3.1 judged rather than skipped. Prepared for testing what a size
/// failure may stop (issue 19, deliverable 1); select it with `FORGE_REHEARSAL_VARIANT=wheel-fails-3.1`.
pub const WHEEL_FAILS_3_1: &str = "wheel-fails-3.1";

/// The variant `FORGE_REHEARSAL_VARIANT` names, if any.
pub fn variant_from_env() -> Option<String> {
    std::env::var(VARIANT_ENV).ok().filter(|v| !v.is_empty())
}

/// Checks a variant wants judged although a stand-in normally cannot decide them.
fn judged_by(variant: Option<&str>) -> &'static [&'static str] {
    match variant {
        Some(WHEEL_FAILS_3_1) => &["3.1"],
        _ => &[],
    }
}

/// Turn `recipe` into its rehearsal on `base`: base image, every component's repo and ref from
/// `standins`, and a `-rehearsal` image tag. Everything else stays the recipe's. The variant
/// named by [`VARIANT_ENV`], if any, picks its stand-ins (`name@variant` lines).
pub fn apply(recipe: &mut Recipe, base: &str, standins: &[Standin]) -> Result<()> {
    apply_variant(recipe, base, standins, variant_from_env().as_deref())
}

/// [`apply`] with the variant given.
pub fn apply_variant(
    recipe: &mut Recipe,
    base: &str,
    standins: &[Standin],
    variant: Option<&str>,
) -> Result<()> {
    if let Some(v) = variant
        && !standins.iter().any(|s| s.name.ends_with(&format!("@{v}")))
    {
        return Err(Error::Usage {
            message: format!("the rehearsal base `{base}` has no stand-in for variant `{v}`"),
            hint: Some(format!(
                "unset {VARIANT_ENV}, or rebuild the base with `scripts/rehearsal-base.sh`"
            )),
        });
    }
    // a component the recipe takes as a wheel is not built, so it has no stand-in source; a
    // prebuilt recipe (torch taken) compiles vLLM alone: its Dockerfile fetches nothing else
    let prebuilt = recipe.taken_torch().is_some();
    let taken: Vec<&str> = crate::recipe::BUILT_FROM_GIT
        .iter()
        .filter(|(dist, _)| recipe.taken.iter().any(|t| t.name == *dist))
        .map(|(_, section)| *section)
        .collect();
    let args = &mut recipe.build_args;
    for (name, prefix) in COMPONENTS
        .iter()
        .filter(|(n, _)| !taken.contains(n) && (!prebuilt || *n == "vllm"))
    {
        let variant_name = variant.map(|v| format!("{name}@{v}"));
        let found = variant_name
            .as_ref()
            .and_then(|n| standins.iter().find(|s| &s.name == n))
            .or_else(|| standins.iter().find(|s| s.name == *name));
        let Some(s) = found else {
            return Err(Error::Usage {
                message: format!("the rehearsal base `{base}` has no stand-in for {name}"),
                hint: Some("rebuild it with `scripts/rehearsal-base.sh`".into()),
            });
        };
        args.insert(format!("{prefix}_REPO"), s.repo.clone());
        args.insert(format!("{prefix}_REF"), s.git_ref.clone());
    }
    args.insert("BASE_IMAGE".into(), base.to_owned());
    recipe.file.base_image = base.to_owned();
    recipe.file.image.tag = rehearsal_tag(&recipe.file.image.tag);
    Ok(())
}

/// A recipe with a Python lock is rehearsed on the lock itself: the lock's files for the
/// rehearsal's interpreter, downloaded on the host by `scripts/lock-wheelhouse.sh` into a cache
/// directory named by the lock's hash, go with the build context as `.forge/wheelhouse/`
/// (streamed), where the rehearsal base's pip looks (`find-links`). Missing: an error saying
/// how to make it.
pub fn attach_wheelhouse(recipe: &mut Recipe) -> Result<()> {
    let Some(lock) = &recipe.lock else {
        return Ok(());
    };
    let dir = crate::recipe::pylock::wheelhouse_dir(&lock.read()?);
    if !dir
        .join(crate::recipe::pylock::WHEELHOUSE_COMPLETE)
        .is_file()
    {
        return Err(Error::Usage {
            message: format!(
                "the rehearsal installs the recipe's lock ({}) from a wheelhouse made on the \
                 host, and `{}` holds none",
                lock.display(),
                dir.display()
            ),
            hint: Some(format!(
                "make it once (pip download, hash-checked): `scripts/lock-wheelhouse.sh {}`",
                match lock {
                    crate::recipe::LockRef::Embedded { name, .. } => format!("recipes/{name}"),
                    crate::recipe::LockRef::File(p) => p.display().to_string(),
                }
            )),
        });
    }
    recipe.wheelhouse = Some(dir);
    Ok(())
}

/// `repo:tag` -> `repo:tag-rehearsal` (`repo` -> `repo:rehearsal`).
pub fn rehearsal_tag(tag: &str) -> String {
    let name = &tag[tag.rfind('/').map_or(0, |i| i + 1)..];
    if name.contains(':') {
        format!("{tag}-rehearsal")
    } else {
        format!("{tag}:rehearsal")
    }
}

/// The build args a rehearsal changed, for the report (`name: real -> stand-in`).
pub fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k}: {} -> {v}",
                before.get(k).map_or("(Dockerfile default)", String::as_str)
            )
        })
        .collect()
}

/// A rehearsal's stand-ins say nothing about sizes or GPU code: those checks become skips that
/// say so (a pass would be a lie, a failure noise). A variant may keep some judged (3.1 for
/// [`WHEEL_FAILS_3_1`]).
pub fn soften(checks: &mut [Check]) {
    soften_variant(checks, variant_from_env().as_deref());
}

/// [`soften`] with the variant given.
pub fn soften_variant(checks: &mut [Check], variant: Option<&str>) {
    let judged = judged_by(variant);
    for c in checks.iter_mut().filter(|c| {
        STAND_IN_BLIND.contains(&c.id.as_str())
            && !judged.contains(&c.id.as_str())
            && c.status != Status::Skip
    }) {
        c.evidence = format!(
            "rehearsal: a build of stand-ins decides nothing here and is never a release (a \
             real build decides it); the stand-in gave: {}",
            c.evidence
        );
        c.status = Status::Skip;
        c.hint = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standins_parse_and_reject_short_lines() {
        let s = parse_standins(
            "# comment\npytorch file:///g/pytorch.git release/2.9\n\ntriton file:///g/t.git c589f5d6\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].git_ref, "c589f5d6");
        let e = parse_standins("pytorch file:///g/pytorch.git\n").unwrap_err();
        assert!(e.to_string().contains(":1: want `name repo ref`"), "{e}");
    }

    #[test]
    fn rehearsal_tags_never_equal_the_release_tag() {
        assert_eq!(
            rehearsal_tag("forge/vllm-rocm:7.1.1-gfx1151"),
            "forge/vllm-rocm:7.1.1-gfx1151-rehearsal"
        );
        assert_eq!(
            rehearsal_tag("localhost:5000/x"),
            "localhost:5000/x:rehearsal"
        );
        assert_eq!(rehearsal_tag("plain"), "plain:rehearsal");
    }

    #[test]
    fn apply_points_every_component_at_its_standin_and_keeps_the_rest() {
        let mut r = Recipe::select(Some("7.1.1"), None, Default::default()).unwrap();
        let before = r.build_args.clone();
        let standins = parse_standins(
            "pytorch file:///g/p.git release/2.9\ntriton file:///g/t.git abc12345\n\
             torchvision file:///g/v.git v0.23.0\ntorchaudio file:///g/a.git v2.9.0\n\
             vllm file:///g/vllm.git v0.12.0\n",
        )
        .unwrap();
        apply(&mut r, "forge-rehearsal-rocm:7.1.1", &standins).unwrap();
        assert_eq!(r.build_args["TRITON_REF"], "abc12345");
        assert_eq!(r.build_args["VLLM_REPO"], "file:///g/vllm.git");
        assert_eq!(r.build_args["BASE_IMAGE"], "forge-rehearsal-rocm:7.1.1");
        assert_eq!(r.build_args["USE_DISTRIBUTED"], before["USE_DISTRIBUTED"]);
        assert_eq!(
            r.build_args["PYTORCH_ROCM_ARCH"],
            before["PYTORCH_ROCM_ARCH"]
        );
        assert!(r.file.image.tag.ends_with("-rehearsal"));
        let c = changes(&before, &r.build_args);
        assert_eq!(c.len(), 8, "{c:?}"); // tags equal to the real refs stay as they are
        // a base without one of the components is refused
        let mut r = Recipe::select(Some("7.1.1"), None, Default::default()).unwrap();
        let e = apply(&mut r, "b", &standins[..4]).unwrap_err();
        assert!(e.to_string().contains("no stand-in for vllm"), "{e}");
    }

    #[test]
    fn the_wheel_fails_3_1_variant_picks_its_standin_and_keeps_3_1_judged() {
        let standins = parse_standins(
            "pytorch file:///g/p.git 1a2b3c4d\npytorch@wheel-fails-3.1 file:///g/p.git rehearsal/wheel-fails-3.1\n\
             triton file:///g/t.git abc12345\ntorchvision file:///g/v.git v0.23.0\n\
             torchaudio file:///g/a.git v2.9.0\nvllm file:///g/vllm.git v0.12.0\n",
        )
        .unwrap();
        let mut r = Recipe::select(Some("7.1.1"), None, Default::default()).unwrap();
        apply_variant(&mut r, "b", &standins, None).unwrap();
        assert_eq!(r.build_args["PYTORCH_REF"], "1a2b3c4d");
        let mut r = Recipe::select(Some("7.1.1"), None, Default::default()).unwrap();
        apply_variant(&mut r, "b", &standins, Some(WHEEL_FAILS_3_1)).unwrap();
        assert_eq!(r.build_args["PYTORCH_REF"], "rehearsal/wheel-fails-3.1");
        assert_eq!(r.build_args["TRITON_REF"], "abc12345");
        let e = apply_variant(&mut r, "b", &standins, Some("nope")).unwrap_err();
        assert!(
            e.to_string().contains("no stand-in for variant `nope`"),
            "{e}"
        );
        let mut checks = vec![
            Check::fail("3.1", "wheel size", "0.1 GB"),
            Check::fail("4.1", "image size", "1 GB"),
        ];
        soften_variant(&mut checks, Some(WHEEL_FAILS_3_1));
        assert_eq!(checks[0].status, Status::Fail, "3.1 stays judged");
        assert_eq!(checks[1].status, Status::Skip);
    }

    #[test]
    fn a_prebuilt_recipe_rehearses_on_a_base_without_rocm_with_only_a_vllm_standin() {
        let text = std::fs::read_to_string("recipes/therock-gfx1151-prebuilt.toml")
            .unwrap()
            .lines()
            .flat_map(|l| {
                let mut v = vec![l.to_owned()];
                if l.starts_with("wheel = ") {
                    v.push(format!("sha256 = \"{}\"", "a".repeat(64)));
                }
                v
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut r = Recipe::parse(
            &text,
            crate::recipe::Origin::File("recipes/therock-gfx1151-prebuilt.toml".into()),
            Default::default(),
        )
        .unwrap();
        // its rehearsal base carries no ROCm; a source recipe's is its release's
        assert_eq!(default_base_for(&r), prebuilt_base());
        let source = Recipe::select(Some("7.1.1"), None, Default::default()).unwrap();
        assert_eq!(default_base_for(&source), default_base("7.1.1"));
        // the taken components get no stand-in (their build args are not the Dockerfile's), and
        // a prebuilt base that carries vLLM's alone is enough
        let standins = parse_standins("vllm file:///g/vllm.git v0.12.0\n").unwrap();
        apply_variant(&mut r, "b", &standins, None).unwrap();
        assert_eq!(r.build_args["VLLM_REPO"], "file:///g/vllm.git");
        for k in [
            "PYTORCH_REPO",
            "TRITON_REF",
            "TORCHVISION_REPO",
            "TORCHAUDIO_REF",
        ] {
            assert!(!r.build_args.contains_key(k), "{k}");
        }
    }

    #[test]
    fn soften_turns_blind_failures_into_reasoned_skips_and_keeps_others() {
        let mut checks = vec![
            Check::fail("3.1", "wheel size", "0.0 GB"),
            Check::fail("4.2", "system packages", "missing"),
            Check::pass("export.size", "archive size", "1 MB"),
        ];
        soften(&mut checks);
        assert_eq!(checks[0].status, Status::Skip);
        assert!(checks[0].evidence.starts_with("rehearsal:"));
        assert_eq!(checks[1].status, Status::Fail);
        assert_eq!(checks[2].status, Status::Skip);
    }
}
