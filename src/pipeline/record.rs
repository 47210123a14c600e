//! The run record, `artifacts/<run>/run.json`: the recipe and its hash, the plan, each phase's
//! status, checks, timings and outputs. Written atomically (temp file, fsync, rename) after
//! every phase, so a crash, a Ctrl-C or a power cut loses nothing already done;
//! `artifacts/latest` points at the newest run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PhaseId;
use crate::error::{Error, Result};
use crate::ops::plan::Plan;
use crate::report::{Check, Verdict};

/// The record's format version. 2: the build results and the plan typed (`outputs.build`,
/// `outputs.image_build`, `plan`); 1 kept the image phase's failed build inside
/// `outputs.build.image_build` and is read by moving it out ([`RunRecord::read`]).
pub const SCHEMA: u32 = 2;

/// The record's file name inside the run directory.
pub const FILE: &str = "run.json";

pub use crate::report::PhaseStatus;

/// One phase in the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// Which phase.
    pub id: PhaseId,
    /// How it ended.
    pub status: PhaseStatus,
    /// Why it was skipped, why it was rerun on resume, or its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its outputs were recorded by an earlier attempt and verified, not produced again.
    #[serde(default)]
    pub reused: bool,
    /// When it started (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Seconds it ran.
    #[serde(default)]
    pub seconds: f64,
    /// Its checks.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Failed checks of earlier phases it went on past, each with why that failure does not
    /// gate it (the run's verdict still fails on them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub went_past: Vec<String>,
}

impl PhaseRecord {
    /// A phase not reached yet.
    pub fn pending(id: crate::pipeline::PhaseId) -> PhaseRecord {
        PhaseRecord {
            id,
            status: PhaseStatus::Pending,
            reason: None,
            reused: false,
            started: None,
            seconds: 0.0,
            checks: Vec::new(),
            went_past: Vec::new(),
        }
    }
}

pub use crate::ops::drive::{BuildResult, Wheel};

/// The image the run built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageOut {
    /// Its tag.
    pub tag: String,
    /// Its id (`sha256:...`).
    pub id: String,
    /// With `--gpu-engine`: the engines holding it, by their own IDs (the build engine, the GPU
    /// engine it was streamed into). Resume checks the GPU engine still does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<String>,
    /// Its build's stages and their wall times (BuildKit only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::ops::drive::StageTime>,
}

impl Outputs {
    /// Whether `phase` left the output the phases after it use: the build its wheels, the image
    /// its id, the export its archive; the others have none beyond having run.
    pub fn holds(&self, phase: PhaseId) -> bool {
        match phase {
            PhaseId::Build => !self.wheels.is_empty(),
            PhaseId::Image => self.image.is_some(),
            PhaseId::Export => self.archive.is_some(),
            _ => true,
        }
    }
}

/// What the phases produced, as the later phases and a resume use it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    /// The wheel stage's build: builder, end, fatal finding, log tail (phase `build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildResult>,
    /// The runtime stage's build, when it did not succeed (phase `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_build: Option<BuildResult>,
    /// Files taken out of the wheel stage (phase `build`).
    #[serde(default)]
    pub wheels: Vec<Wheel>,
    /// The built image (phase `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOut>,
    /// The exported archive (phase `export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::ops::export::Export>,
}

/// Where the recipe came from and what it hashed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipeRef {
    /// Its name.
    pub name: String,
    /// `recipes/rocm-7.1.1.toml (shipped)` or the file's path.
    pub origin: String,
    /// The file, for `--resume` without `--recipe` (absent for a shipped recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The shipped recipe's ROCm version (absent for a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocm: Option<String>,
    /// Whether `--allow-unsupported` was given.
    #[serde(default)]
    pub allow_unsupported: bool,
    /// SHA256 over the resolved plan (build args, stages, checks), the Dockerfile and the
    /// build context: a resume with another hash reruns everything.
    pub hash: String,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Phases are running.
    Running,
    /// Every phase ended (passed, failed or skipped).
    Finished,
    /// SIGINT or SIGTERM stopped it.
    Interrupted,
    /// forge could not go on (engine gone, disk full).
    Error,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Format version.
    pub schema: u32,
    /// Run id (the directory's name).
    pub run: String,
    /// The recipe.
    pub recipe: RecipeRef,
    /// The resolved plan.
    pub plan: Plan,
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    /// When the record was last written.
    pub updated: String,
    /// Where the run is.
    pub state: RunState,
    /// The signal that stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The verdict over every check so far.
    pub verdict: Verdict,
    /// Every phase, in order.
    pub phases: Vec<PhaseRecord>,
    /// What the phases produced.
    pub outputs: Outputs,
    /// How many times the run was resumed, and what each resume did.
    #[serde(default)]
    pub resumes: Vec<String>,
}

/// Now, UTC, RFC 3339 to the millisecond: the report's timeline places phases from these, and
/// a cached run's phases start within one second of each other (to the second, a phase that
/// began 0.8 s in was drawn at 0, before the one it followed).
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl RunRecord {
    /// Every check of every phase, in order.
    pub fn checks(&self) -> Vec<Check> {
        self.phases
            .iter()
            .flat_map(|p| p.checks.iter().cloned())
            .collect()
    }

    /// The phase `id`'s record.
    pub fn phase(&self, id: PhaseId) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.id == id)
    }

    /// The phase `id`'s record, mutable.
    pub fn phase_mut(&mut self, id: PhaseId) -> Option<&mut PhaseRecord> {
        self.phases.iter_mut().find(|p| p.id == id)
    }

    /// Write `dir/run.json` atomically: a temporary file, fsynced, renamed over the old one.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        self.updated = now();
        self.verdict = crate::report::verdict(&self.checks());
        let json = serde_json::to_vec_pretty(self).expect("the record serializes");
        write_atomically(&dir.join(FILE), &json)
    }

    /// Read `dir/run.json`. A record of format 1 (forge before the typed record) is read
    /// after moving its image build out of the build's blob, the one place its shape differs;
    /// a record of any other format, or one that does not fit the types, is refused, never
    /// guessed at.
    pub fn read(dir: &Path) -> Result<RunRecord> {
        let p = dir.join(FILE);
        let bytes = std::fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
        let not_a_record = |e: &dyn std::fmt::Display| {
            Error::input(
                format!("`{}` is not a forge run record: {e}", p.display()),
                Some("pass a run directory forge wrote (`forge runs` lists them)"),
            )
        };
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| not_a_record(&e))?;
        let schema = v.get("schema").and_then(serde_json::Value::as_u64);
        match schema {
            Some(s) if s == u64::from(SCHEMA) => {}
            Some(1) => upgrade_from_1(&mut v),
            Some(s) => {
                return Err(Error::input(
                    format!(
                        "`{}` is a run record of format {s}; this forge reads formats 1 and {SCHEMA}",
                        p.display()
                    ),
                    Some(if s > u64::from(SCHEMA) {
                        "a newer forge wrote it: use that forge, or start a new run with `forge build` (without `--resume`)"
                    } else {
                        "start a new run with `forge build` (without `--resume`)"
                    }),
                ));
            }
            None => return Err(not_a_record(&"it has no `schema` number")),
        }
        serde_json::from_value(v).map_err(|e| {
            Error::input(
                format!(
                    "`{}` is a run record of format {} that this forge cannot read: {e}",
                    p.display(),
                    schema.unwrap_or_default()
                ),
                Some(
                    "start a new run with `forge build` (without `--resume`); the run's own report.json and manifest.json stay readable by `forge report` and `forge verify`",
                ),
            )
        })
    }
}

/// Format 1 -> 2: the image phase's failed build lived inside the build phase's blob
/// (`outputs.build.image_build`); it is `outputs.image_build` now. Everything else in format 1
/// is the serialisation of the same types.
fn upgrade_from_1(v: &mut serde_json::Value) {
    let image_build = v
        .pointer_mut("/outputs/build")
        .and_then(serde_json::Value::as_object_mut)
        .and_then(|b| b.remove("image_build"));
    if let (Some(ib), Some(outputs)) = (
        image_build,
        v.get_mut("outputs")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        outputs.insert("image_build".into(), ib);
    }
    // Format 1's plans predate the job count that follows the machine: their recipes pinned
    // MAX_JOBS (a number in the build args), and their Dockerfile asked no stage for its count (`job_stages` defaults to none).
    if let Some(plan) = v.get_mut("plan").and_then(serde_json::Value::as_object_mut)
        && !plan.contains_key("jobs")
    {
        let pinned = plan
            .get("build_args")
            .and_then(|a| a.get("MAX_JOBS"))
            .and_then(serde_json::Value::as_str)
            .and_then(|n| n.parse::<u32>().ok());
        plan.insert(
            "jobs".into(),
            match pinned {
                Some(jobs) => serde_json::json!({"mode": "pinned", "jobs": jobs}),
                None => serde_json::json!({"mode": "auto", "per_job_gb": 8}),
            },
        );
        plan.entry("job_stages")
            .or_insert_with(|| serde_json::json!([]));
    }
    v["schema"] = SCHEMA.into();
}

pub use crate::atomic::write_atomically;

/// The artifacts directory held by one `forge build` at a time: an advisory `flock` on
/// `root/.forge.lock`, released when the process ends however it ends (even SIGKILL), so a
/// second run on the same directory is refused at once with the first one's pid and run, and
/// `latest` is only ever moved by the run that holds it.
#[derive(Debug)]
pub struct ArtifactsLock {
    _file: std::fs::File,
}

/// The lock file's name under the artifacts directory.
pub const LOCK: &str = ".forge.lock";

/// Take the lock on `root` for `run`, or say who holds it.
pub fn lock(root: &Path, run: &str) -> Result<ArtifactsLock> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    if root.exists() && !root.is_dir() {
        return Err(Error::usage(
            format!("`--artifacts {}` is not a directory", root.display()),
            Some("pass a directory (made if missing) for the runs' artifacts"),
        ));
    }
    std::fs::create_dir_all(root).map_err(|e| Error::io("create", root, e))?;
    let path = root.join(LOCK);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("lock", &path, err));
        }
        let mut who = String::new();
        let _ = f.read_to_string(&mut who);
        let who = who.trim();
        return Err(Error::usage(
            format!(
                "another forge build is using `{}`{}",
                root.display(),
                if who.is_empty() {
                    String::new()
                } else {
                    format!(" ({who})")
                }
            ),
            Some(
                "wait for it to end (or stop it with Ctrl-C), or give this build its own `--artifacts DIR`",
            ),
        ));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "pid {}, run {run}, since {}", std::process::id(), now());
    Ok(ArtifactsLock { _file: f })
}

/// Point `root/latest` at `run` (a relative symlink, replaced atomically).
pub fn set_latest(root: &Path, run: &str) -> Result<()> {
    let link = root.join("latest");
    let tmp = root.join(format!(".latest.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(run, &tmp).map_err(|e| Error::io("link", &tmp, e))?;
    std::fs::rename(&tmp, &link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("rename", &link, e)
    })
}

/// `--run-id`: a name for a directory under the artifacts and part of a temporary image tag:
/// a letter or digit first, then letters, digits, `.`, `_`, `-`; at most 100 characters.
pub fn validate_run_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id != "latest";
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("`--run-id {id:?}` is not a usable run id"),
            Some(
                "a run id names a directory under the artifacts: a letter or digit first, then \
                 letters, digits, `.`, `_`, `-` (no `/`, no `..`, not empty, not `latest`), at most 100",
            ),
        ))
    }
}

/// One line of `forge runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run: String,
    /// Recipe name.
    pub recipe: String,
    /// Started.
    pub started: String,
    /// Where the run is.
    pub state: RunState,
    /// Its verdict.
    pub verdict: Verdict,
    /// Phases that passed, of all.
    pub phases_passed: usize,
    /// Phases in the run.
    pub phases: usize,
    /// The first phase that did not pass, and how it ended.
    pub stopped_at: Option<String>,
    /// Bytes of wheels.
    pub wheel_bytes: u64,
    /// Bytes of the archive.
    pub archive_bytes: Option<u64>,
    /// Whether `latest` points here.
    pub latest: bool,
}

/// Every run under `root` that has a record, oldest first.
pub fn list(root: &Path) -> Result<Vec<RunSummary>> {
    let latest = std::fs::read_link(root.join("latest")).ok();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", root, e)),
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let p = entry.path();
        if entry.file_name() == "latest" || !p.join(FILE).is_file() {
            continue;
        }
        let Ok(r) = RunRecord::read(&p) else { continue };
        let passed = r.phases.iter().filter(|p| p.status.passed()).count();
        out.push(RunSummary {
            latest: latest.as_deref() == Some(Path::new(&r.run)),
            stopped_at: r
                .phases
                .iter()
                .find(|p| !p.status.passed())
                .map(|p| format!("{} ({})", p.id.name(), p.status.name())),
            wheel_bytes: r.outputs.wheels.iter().map(|w| w.size).sum(),
            archive_bytes: r.outputs.archive.as_ref().map(|a| a.gz_bytes),
            run: r.run,
            recipe: r.recipe.name,
            started: r.started,
            state: r.state,
            verdict: r.verdict,
            phases_passed: passed,
            phases: r.phases.len(),
        });
    }
    out.sort_by(|a, b| a.started.cmp(&b.started).then(a.run.cmp(&b.run)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_to_the_millisecond() {
        let t = now();
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
        let frac = t.rsplit_once('.').map(|(_, f)| f).unwrap_or_default();
        assert_eq!(frac.len(), 4, "{t}: three digits and Z");
    }

    #[test]
    fn run_ids_that_escape_or_break_tags_are_refused() {
        for bad in [
            "",
            "../../escape",
            "a/b",
            "..",
            ".hidden",
            "latest",
            "a b",
            "x\0y",
        ] {
            assert!(validate_run_id(bad).is_err(), "{bad:?}");
        }
        for good in ["good", "fixture-good-20261130-101010", "r1.2_3"] {
            assert!(validate_run_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn atomic_write_and_latest_link() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-record-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("r1")).unwrap();
        write_atomically(&dir.join("r1/x.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(dir.join("r1/x.json")).unwrap(), b"{}");
        assert!(!dir.join("r1/x.json.part").exists());
        set_latest(dir, "r1").unwrap();
        set_latest(dir, "r1").unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("latest")).unwrap(),
            Path::new("r1")
        );
    }
}
