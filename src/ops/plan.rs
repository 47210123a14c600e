//! recipe -> fully resolved plan, without touching Docker: build args, Dockerfile and its stages,
//! image tag, every check that will run with its threshold, the artifact paths.
//!
//! Pure apart from reading the Dockerfile, so `forge plan` and its tests are free. The plan also
//! checks the Dockerfile against the recipe (every build arg declared and used, the stages exist,
//! `PYTORCH_ROCM_ARCH` exported to the RUN environment): those are its own checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::recipe::dockerfile::{self, JobStage, Stage};
use crate::recipe::{Jobs, Recipe};
use crate::report::catalog::{self, CATALOG};
use crate::report::{Check, Outcome};

/// A check the run will perform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedCheck {
    /// Check id.
    pub id: String,
    /// Phase number (8 = deliverables).
    pub phase: u8,
    /// Title.
    pub title: String,
    /// Pass condition with the recipe's threshold.
    pub pass_condition: String,
    /// Needs an AMD GPU (skipped with the reason where none is present).
    pub needs_gpu: bool,
    /// The forge command that runs it today (`not implemented yet` for phases 4-7 and the export).
    pub run_by: String,
}

/// Where a run's files go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifacts {
    /// The run's directory.
    pub dir: PathBuf,
    /// The live build log.
    pub build_log: PathBuf,
    /// Wheels taken out of the wheel stage.
    pub wheels: PathBuf,
    /// The exported image.
    pub archive: PathBuf,
    /// Its checksum file.
    pub sha256: PathBuf,
    /// The deliverables report, Markdown.
    pub report_md: PathBuf,
    /// The same, JSON.
    pub report_json: PathBuf,
}

/// Where one component of the stack comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanComponent {
    /// Its distribution name (`torch`, `vllm`, `rocm-sdk-core`).
    pub name: String,
    /// `built` (compiled from git by the Dockerfile) or `taken` (a pinned wheel installed).
    pub how: String,
    /// `repo@ref` for a built one; `wheel (version, sha256, from)` for a taken one.
    pub from: String,
}

/// The components, built and taken, in the order the Dockerfile meets them.
pub fn components(recipe: &Recipe) -> Vec<PlanComponent> {
    let args = &recipe.build_args;
    let mut out: Vec<PlanComponent> = crate::recipe::BUILT_FROM_GIT
        .iter()
        .filter(|(dist, _)| !recipe.taken.iter().any(|t| t.name == *dist))
        .map(|(dist, _)| {
            let prefix = match *dist {
                "torch" => "PYTORCH".to_owned(),
                d => d.to_ascii_uppercase(),
            };
            let from = match (
                args.get(&format!("{prefix}_REPO")),
                args.get(&format!("{prefix}_REF")),
            ) {
                (Some(r), Some(g)) => format!("{r}@{g}"),
                _ => "the Dockerfile's default source".to_owned(),
            };
            PlanComponent {
                name: (*dist).to_owned(),
                how: "built".into(),
                from,
            }
        })
        .collect();
    out.extend(recipe.taken.iter().map(|t| PlanComponent {
        name: t.name.clone(),
        how: "taken".into(),
        from: format!(
            "{} ({}, sha256 {}, from {})",
            t.path.display(),
            t.version,
            &t.sha256[..t.sha256.len().min(12)],
            t.from
        ),
    }));
    out
}

/// The resolved plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Where the recipe came from.
    pub recipe: String,
    /// Its name.
    pub name: String,
    /// ROCm version.
    pub rocm: String,
    /// Target archs.
    pub archs: Vec<String>,
    /// Base image.
    pub base_image: String,
    /// Dockerfile (path or embedded name).
    pub dockerfile: String,
    /// Build context, if any.
    pub context: Option<PathBuf>,
    /// The Dockerfile's stages.
    pub stages: Vec<Stage>,
    /// Stage built as the image.
    pub target_stage: String,
    /// Stage holding the wheels.
    pub wheel_stage: String,
    /// Image tag.
    pub image_tag: String,
    /// Build args, as passed.
    pub build_args: BTreeMap<String, String>,
    /// How many compile jobs the compiling stages run, and how that is decided.
    pub jobs: Jobs,
    /// The compiling stages that ask `forge-jobs`, with how many stages share the memory with them.
    #[serde(default)]
    pub job_stages: Vec<JobStage>,
    /// What the plan wants the reader to know that is no check (a ref that costs a full fetch).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where each component comes from: built from git, or taken as a pinned wheel.
    #[serde(default)]
    pub components: Vec<PlanComponent>,
    /// The spec's expectations the recipe replaced, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<crate::recipe::Replaced>,
    /// Every check the run performs.
    pub planned_checks: Vec<PlannedCheck>,
    /// Artifact paths.
    pub artifacts: Artifacts,
}

/// File-name-safe form of an image tag (`forge/vllm-rocm:7.1.1` -> `forge-vllm-rocm-7.1.1`).
pub fn tag_slug(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Artifact paths for a run.
pub fn artifacts(root: &Path, run: &str, tag: &str) -> Artifacts {
    let dir = root.join(run);
    let archive = dir.join(format!("{}.tar.gz", tag_slug(tag)));
    Artifacts {
        build_log: dir.join("build.log"),
        wheels: dir.join("wheels"),
        sha256: PathBuf::from(format!("{}.sha256", archive.display())),
        archive,
        report_md: dir.join("report.md"),
        report_json: dir.join("report.json"),
        dir,
    }
}

/// Resolve `recipe` into a plan and check its Dockerfile against it.
pub fn resolve(recipe: &Recipe, artifacts_root: &Path, run: &str) -> Result<(Plan, Vec<Check>)> {
    let text = recipe.dockerfile.read()?;
    let df = dockerfile::parse(&text);
    let f = &recipe.file;
    let checks = dockerfile_checks(recipe, &df);

    let planned_checks = CATALOG
        .iter()
        .filter(|e| e.id != "wheel.taken" || !recipe.taken.is_empty())
        .map(|e| PlannedCheck {
            id: e.id.to_owned(),
            phase: e.phase,
            title: e.title.to_owned(),
            pass_condition: catalog::condition(e.id, recipe),
            needs_gpu: e.needs_gpu,
            run_by: catalog::runner(e.id).to_owned(),
        })
        .collect();

    let plan = Plan {
        jobs: recipe.jobs(),
        job_stages: dockerfile::job_stages(&text),
        notes: ref_notes(&recipe.build_args),
        recipe: recipe.origin.to_string(),
        name: f.name.clone(),
        rocm: recipe.rocm_version().to_owned(),
        archs: recipe.archs().to_vec(),
        base_image: f.base_image.clone(),
        dockerfile: recipe.dockerfile.display(),
        context: recipe.context.clone(),
        stages: df.stages.clone(),
        target_stage: f.image.target.clone(),
        wheel_stage: f.image.wheel_stage.clone(),
        image_tag: f.image.tag.clone(),
        build_args: recipe.build_args.clone(),
        components: components(recipe),
        replaced: f.checks.replaced(),
        planned_checks,
        artifacts: artifacts(artifacts_root, run, &f.image.tag),
    };
    Ok((plan, checks))
}

/// The recipe against its Dockerfile: every build arg declared and used, the target and wheel
/// stages present, PYTORCH_ROCM_ARCH exported to RUN where declared.
fn dockerfile_checks(recipe: &Recipe, df: &dockerfile::Dockerfile) -> Vec<Check> {
    let f = &recipe.file;
    let mut checks = Vec::new();

    let problems: Vec<String> = recipe
        .build_args
        .keys()
        .filter_map(|k| df.arg_problem(k))
        .collect();
    checks.push(if problems.is_empty() {
        Check::pass(
            "plan.args",
            "every build arg declared and used",
            format!(
                "{} build args, all declared by ARG and used",
                recipe.build_args.len()
            ),
        )
    } else {
        Check::fail(
            "plan.args",
            "every build arg declared and used",
            problems.join("; "),
        )
        .with_hint("add the `ARG` to the stage that uses it, or drop the arg from the recipe")
    });

    let missing: Vec<&str> = [f.image.target.as_str(), f.image.wheel_stage.as_str()]
        .into_iter()
        .filter(|s| !df.has_stage(s))
        .collect();
    checks.push(if missing.is_empty() {
        Check::pass(
            "plan.stages",
            "target and wheel stages exist",
            format!("stages: {}", df.stage_names().join(", ")),
        )
    } else {
        Check::fail(
            "plan.stages",
            "target and wheel stages exist",
            format!(
                "no stage named {} (stages: {})",
                missing.join(", "),
                df.stage_names().join(", ")
            ),
        )
        .with_hint("set `image.target` and `image.wheel-stage` to stages of the Dockerfile")
    });

    let unexported: Vec<String> = df
        .stages_without_env("PYTORCH_ROCM_ARCH")
        .iter()
        .map(|s| {
            format!(
                "stage `{}` (line {})",
                s.name.as_deref().unwrap_or("?"),
                s.line
            )
        })
        .collect();
    checks.push(if unexported.is_empty() {
        Check::pass(
            "plan.arch-env",
            "PYTORCH_ROCM_ARCH exported to RUN",
            "every stage that declares it sets it with ENV",
        )
    } else {
        Check::fail(
            "plan.arch-env",
            "PYTORCH_ROCM_ARCH exported to RUN",
            format!("declared but not exported in {}", unexported.join(", ")),
        )
        .with_hint(
            "add `ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH}`: otherwise LoadHIP.cmake fails \
             with `Could not detect ROCm arch for GPUs on machine`",
        )
    });

    checks
}

/// Whether `r` reads as an abbreviated commit (4-39 hex digits): a git server hands out branches,
/// tags and full commits by name, not abbreviations, so `forge-fetch` fetches the whole history.
pub fn is_abbreviated_commit(r: &str) -> bool {
    (4..40).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A note for every `*_REF` build arg that costs a full-history fetch.
fn ref_notes(args: &BTreeMap<String, String>) -> Vec<String> {
    args.iter()
        .filter_map(|(k, v)| {
            let name = k.strip_suffix("_REF")?;
            is_abbreviated_commit(v).then(|| {
                format!(
                    "{name}_REF `{v}` is an abbreviated commit: a git server will not hand it out \
                     by name, so the build fetches {}'s whole history (pin the full 40-hex commit \
                     to fetch one commit)",
                    args.get(&format!("{name}_REPO"))
                        .map_or(name, String::as_str)
                )
            })
        })
        .collect()
}

impl Plan {
    /// The plan as a command outcome: its own checks, the plan as data.
    pub fn outcome(&self, checks: Vec<Check>) -> Outcome {
        let data = serde_json::to_value(self).expect("plan serializes");
        let mut o = Outcome::new(format!("plan {} ({})", self.name, self.recipe), checks);
        if let serde_json::Value::Object(m) = data {
            o.data = m;
        }
        o
    }

    /// Human rendering of the plan (the checks table follows it).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("recipe      {} ({})\n", self.name, self.recipe));
        s.push_str(&format!("rocm        {}\n", self.rocm));
        s.push_str(&format!("archs       {}\n", self.archs.join(";")));
        s.push_str(&format!("base image  {}\n", self.base_image));
        s.push_str(&format!("dockerfile  {}\n", self.dockerfile));
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|st| st.name.clone().unwrap_or_else(|| st.from.clone()))
            .collect();
        s.push_str(&format!("stages      {}\n", stages.join(" -> ")));
        s.push_str(&format!(
            "image       {} (stage {}; wheels from stage {})\n",
            self.image_tag, self.target_stage, self.wheel_stage
        ));
        if !self.components.is_empty() {
            s.push_str("components\n");
            for c in &self.components {
                s.push_str(&format!("  {:14} {:6} {}\n", c.name, c.how, c.from));
            }
        }
        for r in &self.replaced {
            s.push_str(&format!(
                "replaced    checks.{}: the spec's {} -> {}: {}\n",
                r.key, r.spec, r.recipe, r.reason
            ));
        }
        s.push_str("build args\n");
        for (k, v) in &self.build_args {
            s.push_str(&format!("  {k}={v}\n"));
        }
        s.push_str(&format!("jobs        {}\n", self.jobs.describe()));
        if !self.job_stages.is_empty() {
            let stages: Vec<String> = self
                .job_stages
                .iter()
                .map(|j| format!("{} (memory shared by {})", j.stage, j.share))
                .collect();
            s.push_str(&format!("            stages: {}\n", stages.join(", ")));
        }
        for n in &self.notes {
            s.push_str(&format!("note        {n}\n"));
        }
        s.push_str("checks\n");
        let mut last = "";
        for c in &self.planned_checks {
            if c.run_by != last {
                s.push_str(&format!("  run by {}:\n", c.run_by));
                last = &c.run_by;
            }
            s.push_str(&format!(
                "    {:17} {:48} {}{}\n",
                c.id,
                c.title,
                c.pass_condition,
                if c.needs_gpu { "  [GPU]" } else { "" }
            ));
        }
        let a = &self.artifacts;
        s.push_str("artifacts\n");
        for (what, p) in [
            ("build log", &a.build_log),
            ("wheels", &a.wheels),
            ("archive", &a.archive),
            ("sha256", &a.sha256),
            ("report", &a.report_md),
            ("report json", &a.report_json),
        ] {
            s.push_str(&format!("  {what:12} {}\n", p.display()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::LoadOptions;

    #[test]
    fn default_plan_builds_distributed_for_gfx1151() {
        let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
        let (plan, checks) = resolve(&r, Path::new("artifacts"), "<run>").unwrap();
        assert_eq!(plan.build_args["USE_DISTRIBUTED"], "1");
        assert!(
            plan.build_args["PYTORCH_ROCM_ARCH"]
                .split(';')
                .any(|a| a == "gfx1151")
        );
        assert!(
            checks
                .iter()
                .all(|c| c.status == crate::report::Status::Pass),
            "{checks:?}"
        );
        assert_eq!(
            plan.artifacts.sha256,
            Path::new("artifacts/<run>/forge-vllm-rocm-7.1.1-gfx1151.tar.gz.sha256")
        );
        assert!(
            plan.planned_checks
                .iter()
                .any(|c| c.id == "3.1" && c.pass_condition == "> 2.0 GB")
        );
    }

    #[test]
    fn jobs_follow_the_machine_unless_pinned() {
        let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
        let (plan, _) = resolve(&r, Path::new("artifacts"), "<run>").unwrap();
        // not pinned: the build arg is `auto`, the same on every machine (cache key, --resume)
        assert_eq!(plan.build_args["MAX_JOBS"], "auto");
        assert_eq!(plan.build_args["JOB_MEMORY_GB"], "8");
        assert_eq!(plan.jobs, Jobs::Auto { per_job_gb: 8 });
        assert!(
            plan.render_text()
                .contains("decided at build time on the engine's host")
        );
        // what forge-jobs decides: this 2-core / 24 GiB host, a 16-core box with 128 GB, the
        // same box where Linux sees 32 GB
        let gib = 1u64 << 30;
        assert_eq!(plan.jobs.expected(2, 24 * gib, 1), 2);
        assert_eq!(plan.jobs.expected(2, 24 * gib, 3), 1);
        assert_eq!(plan.jobs.expected(16, 128 * gib, 1), 16);
        assert_eq!(plan.jobs.expected(16, 128 * gib, 3), 5);
        assert_eq!(plan.jobs.expected(16, 32 * gib, 1), 4);
        assert_eq!(plan.jobs.expected(16, 32 * gib, 3), 1);
        // pinned: every stage runs the pin, whatever the machine
        let text = crate::recipe::SHIPPED[0]
            .2
            .replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nMAX_JOBS = \"7\"");
        let r = Recipe::parse(
            &text,
            crate::recipe::Origin::Shipped {
                file: "rocm-7.1.1.toml",
            },
            LoadOptions::default(),
        )
        .unwrap();
        let (plan, _) = resolve(&r, Path::new("artifacts"), "<run>").unwrap();
        assert_eq!(plan.build_args["MAX_JOBS"], "7");
        assert_eq!(plan.jobs, Jobs::Pinned { jobs: 7 });
        assert_eq!(plan.jobs.expected(2, 24 * gib, 3), 7);
    }

    #[test]
    fn an_abbreviated_ref_is_a_note_not_a_check() {
        let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
        let (plan, checks) = resolve(&r, Path::new("artifacts"), "<run>").unwrap();
        assert!(
            plan.notes.is_empty(),
            "shipped refs are full: {:?}",
            plan.notes
        );
        let text = crate::recipe::SHIPPED[0]
            .2
            .replace("1c57644d4cb3aff84642e1326d88681a656507ce", "1c57644d");
        let r = Recipe::parse(
            &text,
            crate::recipe::Origin::Shipped {
                file: "rocm-7.1.1.toml",
            },
            LoadOptions::default(),
        )
        .unwrap();
        let (short, short_checks) = resolve(&r, Path::new("artifacts"), "<run>").unwrap();
        assert_eq!(short.notes.len(), 1, "{:?}", short.notes);
        assert!(short.notes[0].starts_with("PYTORCH_REF `1c57644d` is an abbreviated commit"));
        assert!(
            short
                .render_text()
                .contains("note        PYTORCH_REF `1c57644d`")
        );
        assert_eq!(checks.len(), short_checks.len(), "a note, not a check");
        assert!(!is_abbreviated_commit("v0.12.0"));
        assert!(!is_abbreviated_commit(
            "1c57644d4cb3aff84642e1326d88681a656507ce"
        ));
    }

    #[test]
    fn plan_flags_a_dockerfile_that_lacks_an_arg() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-plan-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        std::fs::write(
            dir.join("Dockerfile"),
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS wheels\nARG PYTORCH_ROCM_ARCH\nRUN echo $PYTORCH_ROCM_ARCH\nFROM wheels AS runtime\n",
        )
        .unwrap();
        let text = crate::recipe::SHIPPED[0].2.replace(
            "dockerfile = \"../dockerfiles/vllm-rocm.Dockerfile\"",
            "dockerfile = \"Dockerfile\"",
        );
        std::fs::write(dir.join("r.toml"), text).unwrap();
        let r = Recipe::from_path(&dir.join("r.toml"), LoadOptions::default()).unwrap();
        let (_, checks) = resolve(&r, Path::new("artifacts"), "x").unwrap();
        let args = checks.iter().find(|c| c.id == "plan.args").unwrap();
        assert_eq!(args.status, crate::report::Status::Fail);
        assert!(
            args.evidence.contains("`USE_DISTRIBUTED` is not declared"),
            "{}",
            args.evidence
        );
        let env = checks.iter().find(|c| c.id == "plan.arch-env").unwrap();
        assert_eq!(env.status, crate::report::Status::Fail);
    }
}
