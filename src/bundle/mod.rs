//! The release bundle: a directory whose deliverables are listed in `manifest.json` (every
//! artifact with kind, size and SHA256, the image id, the recipe, forge's and the tools'
//! versions) and covered by `SHA256SUMS` (what `sha256sum -c` reads); the deliverables
//! checklist (`deliverable.*`), judged on the files; and `forge verify`, which recomputes every
//! checksum and checks the manifest against the files, the thresholds and, with `--load`, the
//! engine.

pub mod files;
pub mod sign;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::render::run::{ImageView, OutputKind, OutputView, RecipeView, RunEnd, RunView};
use crate::report::Check;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
use crate::atomic::write_atomically;
/// The checksum list's file name.
pub use crate::atomic::{SUMS, merge_sums, parse_sums, sha256_file};

/// `manifest.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// Format version (1).
    pub schema: u32,
    /// Always `forge-bundle`.
    pub kind: String,
    /// Run id (or `export-<image>` for a bundle `forge export` made).
    pub run: String,
    /// When the manifest was written, RFC 3339 UTC.
    pub created_at: String,
    /// forge's version.
    pub forge_version: String,
    /// The image: tag, id, size.
    pub image: Option<ImageView>,
    /// The recipe and its thresholds.
    pub recipe: Option<RecipeView>,
    /// Tool versions.
    pub tools: BTreeMap<String, String>,
    /// The image archive, when there is one.
    pub archive: Option<ArchiveInfo>,
    /// Every artifact, paths relative to the bundle directory.
    pub artifacts: Vec<OutputView>,
    /// Where `forge push` pushed the image, and the digest the registry gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<Pushed>,
}

/// A push of the bundle's image (`manifest.json`'s `registry`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Pushed {
    /// The tag pushed, `REGISTRY/REPO:TAG`.
    pub reference: String,
    /// The manifest digest the registry gave, `sha256:...`.
    pub digest: String,
    /// Pinned by digest, `REGISTRY/REPO@sha256:...` (what to pull).
    pub pinned: String,
    /// The image id pushed.
    pub image_id: String,
    /// When, RFC 3339 UTC.
    pub pushed_at: String,
}

/// The image archive in a bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveInfo {
    /// File name of the whole archive (present, or what joining the parts gives).
    pub name: String,
    /// `gzip` or `zstd`.
    pub format: String,
    /// Size of the whole archive.
    pub bytes: u64,
    /// SHA256 of the whole archive.
    pub sha256: String,
    /// Size of the uncompressed image tar.
    pub tar_bytes: u64,
    /// The parts, in order, when split.
    pub parts: Vec<String>,
    /// The command that joins the parts.
    pub join: Option<String>,
    /// Which engines can load it.
    pub loadable_by: String,
}

/// Which engines load an archive of this format.
pub fn loadable_by(format: &str) -> &'static str {
    match format {
        "zstd" => {
            "Docker Engine 23.0 and newer (`docker load` reads zstd since moby/moby#41759); 20.10 cannot"
        }
        _ => "every Docker engine (`docker load` reads gzip)",
    }
}

/// The outputs of `view` with sizes and hashes filled in from the files (hashes already known
/// for an unchanged size are kept; report files are always rehashed).
pub fn refresh_outputs(dir: &Path, outputs: &[OutputView]) -> Result<Vec<OutputView>> {
    let mut out = Vec::new();
    for o in outputs {
        let p = dir.join(&o.path);
        if !p.is_file() {
            continue;
        }
        let size = std::fs::metadata(&p)
            .map_err(|e| Error::io("stat", &p, e))?
            .len();
        let keep = o.sha256.is_some() && size == o.bytes && o.kind != OutputKind::Report;
        let (bytes, sha) = if keep {
            (size, o.sha256.clone().unwrap_or_default())
        } else {
            sha256_file(&p)?
        };
        out.push(OutputView {
            kind: o.kind,
            path: o.path.clone(),
            bytes,
            sha256: Some(sha),
        });
    }
    Ok(out)
}

/// Write `manifest.json` and `SHA256SUMS` for the bundle in `dir` described by `view` (its
/// outputs must be filled in, see [`refresh_outputs`]); `archive` describes the image archive.
pub fn write(dir: &Path, view: &RunView, archive: Option<ArchiveInfo>) -> Result<Manifest> {
    let m = Manifest {
        schema: 1,
        kind: "forge-bundle".into(),
        run: view.run.clone(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        forge_version: env!("CARGO_PKG_VERSION").into(),
        image: view.image.clone(),
        recipe: view.recipe.clone(),
        tools: view.tools.clone(),
        archive,
        // A push recorded before stays, while it is of the same image.
        registry: read_manifest(dir)
            .ok()
            .and_then(|m| m.registry)
            .filter(|p| {
                view.image.as_ref().and_then(|i| i.id.as_deref()) == Some(p.image_id.as_str())
            }),
        artifacts: view
            .outputs
            .iter()
            .filter(|o| o.path != MANIFEST && o.path != SUMS)
            .cloned()
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&m).expect("manifest serializes");
    // A signature over the old SHA256SUMS would no longer match: gone before anything changes
    // (the caller signs again when it holds the key, see `sign::after_sums`).
    sign::remove_stale(dir)?;
    write_atomically(&dir.join(MANIFEST), &json)?;
    let mut sums: Vec<(String, String)> = m
        .artifacts
        .iter()
        .filter_map(|a| a.sha256.clone().map(|s| (s, a.path.clone())))
        .collect();
    sums.push((crate::atomic::hex(&Sha256::digest(&json)), MANIFEST.into()));
    let text: String = sums.iter().map(|(h, n)| format!("{h}  {n}\n")).collect();
    write_atomically(&dir.join(SUMS), text.as_bytes())?;
    Ok(m)
}

/// Rewrite `manifest.json` as `m` and its line in `SHA256SUMS` (the other lines kept); a
/// signature over the old `SHA256SUMS` is removed first.
pub fn record_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(m).expect("manifest serializes");
    sign::remove_stale(dir)?;
    write_atomically(&dir.join(MANIFEST), &json)?;
    merge_sums(
        dir,
        &[(crate::atomic::hex(&Sha256::digest(&json)), MANIFEST.into())],
    )
}

fn check(id: &str, title: &str, ok: Option<bool>, evidence: impl Into<String>) -> Check {
    match ok {
        Some(true) => Check::pass(id, title, evidence),
        Some(false) => Check::fail(id, title, evidence),
        None => Check::skip(id, title, evidence),
    }
}

fn gb(b: u64) -> String {
    crate::render::markdown::size(b)
}

/// The deliverables checklist of the spec, judged on the files in `dir` and the run's checks:
/// the archive, its checksum file, the build-log line with `USE_DISTRIBUTED : ON`, phases 5-7,
/// and the sizes against the recipe's thresholds. A skip leaves the checklist incomplete.
pub fn checklist(dir: &Path, view: &RunView, archive: Option<&ArchiveInfo>) -> Vec<Check> {
    let mut out = Vec::new();
    // The archive.
    out.push(match archive {
        Some(a) => {
            let parts = if a.parts.is_empty() {
                String::new()
            } else {
                format!(", in {} parts ({})", a.parts.len(), a.parts.join(", "))
            };
            let present = if a.parts.is_empty() {
                dir.join(&a.name).is_file()
            } else {
                a.parts.iter().all(|p| dir.join(p).is_file())
            };
            check(
                "deliverable.archive",
                "image exported as .tar.gz / .tar.zst",
                Some(present),
                format!("{} ({}, {}{parts})", a.name, gb(a.bytes), a.format),
            )
        }
        None => {
            let built = view.end.is_none_or(|e| e == RunEnd::Succeeded);
            check(
                "deliverable.archive",
                "image exported as .tar.gz / .tar.zst",
                Some(false),
                if built {
                    "no image archive in the bundle (exported with --no-export?)"
                } else {
                    "no image archive in the bundle: the build did not finish, so there is no image"
                },
            )
            .with_hint(if built {
                "export it into the run directory: `forge export IMAGE -o <run dir>/`"
            } else {
                "fix the build first (see build.result), then build again"
            })
        }
    });
    // The checksum file.
    out.push(match archive {
        Some(a) => {
            let f = dir.join(format!("{}.sha256", a.name));
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let sums = parse_sums(&text);
                    let ok = sums.iter().any(|(h, n)| *h == a.sha256 && *n == a.name);
                    check(
                        "deliverable.sha256",
                        "SHA256 checksum file (.sha256)",
                        Some(ok),
                        if ok {
                            format!("{}.sha256: {}  {}", a.name, a.sha256, a.name)
                        } else {
                            format!(
                                "{}.sha256 does not hold `{}  {}`: {}",
                                a.name,
                                a.sha256,
                                a.name,
                                text.trim()
                            )
                        },
                    )
                }
                Err(e) => check(
                    "deliverable.sha256",
                    "SHA256 checksum file (.sha256)",
                    Some(false),
                    format!("cannot read {}: {e}", f.display()),
                ),
            }
        }
        None => check(
            "deliverable.sha256",
            "SHA256 checksum file (.sha256)",
            Some(false),
            "no archive, so no checksum file",
        ),
    });
    out.push(build_log_item(dir, view));
    out.push(gpu_phases_item(view));
    out.push(sizes_item(view, archive));
    out
}

/// Why the sizes are not judged in a bundle that names no recipe (`forge export -o DIR/`
/// without `--recipe`/`--rocm`: its help says the release's thresholds apply only with one).
pub const SIZES_UNJUDGED: &str = "not judged: the bundle names no recipe (exported without `--recipe` or `--rocm`), so the release's size thresholds do not apply";

/// The sizes against the recipe's thresholds; not judged without a recipe (issue 18).
fn sizes_item(view: &RunView, archive: Option<&ArchiveInfo>) -> Check {
    let img = view.image.as_ref().and_then(|i| i.bytes);
    let Some(t) = view.recipe.as_ref().map(|r| r.thresholds) else {
        let mut sizes = Vec::new();
        if let Some(b) = img {
            sizes.push(format!("image {}", gb(b)));
        }
        if let Some(a) = archive {
            sizes.push(format!("archive {}", gb(a.bytes)));
        }
        let sizes = if sizes.is_empty() {
            String::new()
        } else {
            format!(" ({})", sizes.join("; "))
        };
        return check(
            "deliverable.sizes",
            "image > threshold uncompressed, archive > threshold compressed",
            None,
            format!("{SIZES_UNJUDGED}{sizes}"),
        )
        .with_hint("export with `--recipe FILE` or `--rocm VERSION` to judge the sizes against the release's thresholds");
    };
    let mut size_ev = Vec::new();
    let mut ok = Some(true);
    match img {
        Some(b) => {
            size_ev.push(format!(
                "image {} (threshold {})",
                gb(b),
                gb(t.image_min_bytes)
            ));
            if b <= t.image_min_bytes {
                ok = Some(false);
            }
        }
        None => {
            size_ev.push("image size unknown".into());
            ok = None;
        }
    }
    match archive {
        Some(a) => {
            size_ev.push(format!(
                "archive {} (threshold {})",
                gb(a.bytes),
                gb(t.archive_min_bytes)
            ));
            if a.bytes <= t.archive_min_bytes {
                ok = Some(false);
            }
        }
        None => {
            size_ev.push("no archive".into());
            ok = Some(false);
        }
    }
    let measured_small = img.is_some_and(|b| b <= t.image_min_bytes)
        || archive.is_some_and(|a| a.bytes <= t.archive_min_bytes);
    let mut c = check(
        "deliverable.sizes",
        "image > threshold uncompressed, archive > threshold compressed",
        ok,
        size_ev.join("; "),
    );
    if measured_small {
        c = c.with_hint(
            "a complete ROCm PyTorch + vLLM image is over 20 GB (8 GB compressed): a smaller one \
             lacks parts (check phases 3 and 4); for a test image, lower the thresholds in the recipe's [checks]",
        );
    }
    c
}

fn build_log_item(dir: &Path, view: &RunView) -> Check {
    let title = "build log shows USE_DISTRIBUTED: ON";
    let id = "deliverable.build-log";
    let distributed = |c: &Check| c.id == "3.2";
    let checks = || view.phases.iter().flat_map(|p| p.checks.iter());
    if checks().any(|c| c.id == "wheel.taken") {
        // a prebuilt recipe: torch was taken as a wheel, so no log has torch's CMake summary
        let judged = checks()
            .find(|c| distributed(c))
            .map_or("not judged".to_owned(), |c| {
                format!("{}: {}", c.status.label(), c.evidence)
            });
        return check(
            id,
            title,
            None,
            format!(
                "torch was taken as a wheel (wheel.taken), not built: no build log holds its \
                 CMake summary; phase 3 judged distributed on the wheel itself (3.2 {judged})"
            ),
        );
    }
    let Some(log) = view.build_log.as_deref() else {
        return check(
            id,
            title,
            None,
            "no build log in this bundle (the image was exported, not built, by this run)",
        );
    };
    let live = dir.join(log);
    let kept = dir.join("wheels/build.log");
    let find = |p: &Path| {
        crate::monitor::scan::scan_file(p, crate::monitor::rules::Expect::default())
            .ok()
            .and_then(|m| m.flags.get("USE_DISTRIBUTED").cloned())
    };
    let (flag, from, note) = match find(&live) {
        Some(f) => (Some(f), live.clone(), ""),
        None => match find(&kept) {
            Some(f) => (
                Some(f),
                kept.clone(),
                " (the compile step was cached, so the live log has no summary: this is the log the wheel stage kept)",
            ),
            None => (None, live.clone(), ""),
        },
    };
    let rel = from
        .strip_prefix(dir)
        .unwrap_or(&from)
        .display()
        .to_string();
    match flag {
        Some(f) if f.on == Some(true) => check(
            id,
            title,
            Some(true),
            format!("{rel} line {}: `{}`{note}", f.line, log_line(&from, f.line)),
        ),
        Some(f) => check(
            id,
            title,
            Some(false),
            format!("{rel} line {}: `{}`{note}", f.line, log_line(&from, f.line)),
        )
        .with_hint("rebuild with USE_DISTRIBUTED=1 in the build environment"),
        None => check(
            id,
            title,
            Some(false),
            format!("no USE_DISTRIBUTED line in {log} nor in wheels/build.log"),
        )
        .with_hint("the build did not reach PyTorch's configure step, or its log was clipped"),
    }
}

/// Line `n` (1-based) of the log at `p`, its timestamp prefix stripped; empty if unreadable.
fn log_line(p: &Path, n: u64) -> String {
    std::fs::File::open(p)
        .ok()
        .and_then(|f| {
            use std::io::BufRead;
            std::io::BufReader::new(f)
                .lines()
                .nth(n.saturating_sub(1) as usize)
                .and_then(std::result::Result::ok)
        })
        .map(|l| {
            crate::monitor::rules::strip_prefix_str(&l)
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn gpu_phases_item(view: &RunView) -> Check {
    let title = "test report shows phases 5-7 passed";
    let id = "deliverable.gpu-phases";
    let gpu: Vec<&Check> = view
        .phases
        .iter()
        .filter(|p| matches!(p.id.as_str(), "5" | "6" | "7"))
        .flat_map(|p| &p.checks)
        .collect();
    let list = |s: crate::report::Status| -> Vec<&str> {
        gpu.iter()
            .filter(|c| c.status == s)
            .map(|c| c.id.as_str())
            .collect()
    };
    let (pass, fail, skip) = (
        list(crate::report::Status::Pass),
        list(crate::report::Status::Fail),
        list(crate::report::Status::Skip),
    );
    if gpu.is_empty() {
        return check(
            id,
            title,
            None,
            "phases 5-7 did not run in this run (they need an AMD GPU and `forge runtime`): the checklist is incomplete",
        );
    }
    if !fail.is_empty() {
        return check(
            id,
            title,
            Some(false),
            format!("failed: {}; passed: {}", fail.join(", "), pass.len()),
        );
    }
    if !skip.is_empty() {
        let why = gpu
            .iter()
            .find(|c| c.status == crate::report::Status::Skip)
            .map(|c| c.evidence.clone())
            .unwrap_or_default();
        return check(
            id,
            title,
            None,
            format!(
                "{} skipped ({why}); {} passed: the checklist is incomplete, not passed",
                skip.join(", "),
                pass.len()
            ),
        );
    }
    check(
        id,
        title,
        Some(true),
        format!("all {} checks of phases 5-7 passed", pass.len()),
    )
}

/// What `forge verify` found, plus the manifest it read.
pub struct Verified {
    /// The checks.
    pub checks: Vec<Check>,
    /// The manifest.
    pub manifest: Manifest,
}

/// Read `dir/manifest.json`; a directory without one (or with one that is not forge's) is not
/// a bundle: an error (exit 2).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let hint = Some(
        "pass a directory `forge build` or `forge export -o DIR` wrote (it holds manifest.json and SHA256SUMS)",
    );
    if !dir.is_dir() {
        return Err(Error::usage(
            format!("`{}` is not a directory", dir.display()),
            hint,
        ));
    }
    let p = dir.join(MANIFEST);
    let text = std::fs::read(&p).map_err(|e| {
        Error::usage(
            format!(
                "`{}` is not a forge bundle: cannot read {MANIFEST}: {e}",
                dir.display()
            ),
            hint,
        )
    })?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| {
        Error::usage(
            format!(
                "`{}` is not a forge bundle: {MANIFEST} is not forge's: {e}",
                p.display()
            ),
            hint,
        )
    })?;
    if m.kind != "forge-bundle" {
        return Err(Error::usage(
            format!(
                "`{}` is not a forge bundle: {MANIFEST} has kind `{}`",
                dir.display(),
                m.kind
            ),
            hint,
        ));
    }
    Ok(m)
}

/// A path from the manifest that stays inside the bundle.
fn inside(dir: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| dir.join(p))
}

/// Why a file of the bundle has no hash: not there, or there but unreadable (issue 18: a read
/// error is named as one, never taken for a checksum mismatch or a missing file).
#[derive(Debug, Clone)]
enum Unread {
    /// Not in the bundle (or a path that leaves it).
    Missing,
    /// There, but opening or reading it failed: the io error.
    Error(String),
}

impl Unread {
    /// `PATH is missing` / `PATH cannot be read: ERROR`.
    fn describe(&self, rel: &str) -> String {
        match self {
            Unread::Missing => format!("{rel} is missing"),
            Unread::Error(e) => format!("{rel} cannot be read: {e}"),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Unread::Missing => "the bundle is incomplete: copy the file again from its source",
            Unread::Error(_) => {
                "the file is there but reading it failed (a directory or a special file in its place, permissions, an I/O error): fix or copy it again, then verify again"
            }
        }
    }
}

/// Hash one file of the bundle, telling a missing file from an unreadable one.
fn hash_file(dir: &Path, rel: &str) -> std::result::Result<(u64, String), Unread> {
    let Some(p) = inside(dir, rel) else {
        return Err(Unread::Missing);
    };
    if std::fs::symlink_metadata(&p).is_err() {
        return Err(Unread::Missing);
    }
    sha256_file(&p).map_err(|e| match e {
        Error::Io { action, source, .. } => Unread::Error(format!("{action}: {source}")),
        e => Unread::Error(e.to_string()),
    })
}

/// Files hashed once however many lists name them.
struct Hashes<'a> {
    dir: &'a Path,
    done: BTreeMap<String, std::result::Result<(u64, String), Unread>>,
}

impl Hashes<'_> {
    fn get(&mut self, rel: &str) -> std::result::Result<(u64, String), Unread> {
        let dir = self.dir;
        self.done
            .entry(rel.to_owned())
            .or_insert_with(|| hash_file(dir, rel))
            .clone()
    }
}

/// `forge verify`: recompute every checksum (files, parts and the whole archive), check the
/// manifest against the files and thresholds, `SHA256SUMS` and the `.sha256` files against the
/// hashes; with `engine`, load the archive and compare the image id.
pub fn verify(dir: &Path, engine: Option<&dyn crate::engine::Engine>) -> Result<Verified> {
    let m = read_manifest(dir)?;
    let mut hashes = Hashes {
        dir,
        done: BTreeMap::new(),
    };
    let mut checks = verify_files(&m, &mut hashes);
    checks.push(verify_sums(dir, &m, &mut hashes));
    if let Some(a) = &m.archive {
        // The archive: its parts, its .sha256, the thresholds, the engine.
        let whole = if a.parts.is_empty() {
            hashes.get(&a.name).ok()
        } else {
            let (check, whole) = verify_parts(dir, a);
            checks.push(check);
            whole
        };
        let whole_sha = if a.parts.is_empty() {
            whole.as_ref().map(|(_, h)| h.clone())
        } else {
            // The parts check compared the joined hash with the manifest.
            checks
                .last()
                .filter(|c| c.status == crate::report::Status::Pass)
                .map(|_| a.sha256.clone())
        };
        checks.push(verify_archive_sha256(dir, a, whole_sha.as_ref()));
        checks.push(verify_thresholds(&m, a, whole.as_ref()));
        if let Some(engine) = engine {
            checks.push(load_check(dir, &m, a, engine));
        }
    } else {
        // A run that stopped before the export: its files are checked above, but there is no
        // image to size or load, so the bundle is no release (a skip, never a pass).
        checks.push(Check::skip(
            "verify.archive",
            "the bundle holds the image archive",
            "the manifest lists no image archive (the run stopped before the export): nothing to size or load; this bundle is no release",
        ));
    }
    Ok(Verified {
        checks,
        manifest: m,
    })
}

/// Every file the manifest lists against its size and SHA256.
fn verify_files(m: &Manifest, hashes: &mut Hashes<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    for a in &m.artifacts {
        let id = format!("verify.file:{}", a.path);
        let title = format!("{} matches the manifest", a.path);
        let c = match hashes.get(&a.path) {
            Err(why) => Check::fail(&id, &title, why.describe(&a.path)).with_hint(why.hint()),
            Ok((n, h)) if Some(&h) != a.sha256.as_ref() => Check::fail(
                &id,
                &title,
                format!(
                    "{}: sha256 {h}, the manifest says {}",
                    a.path,
                    a.sha256.as_deref().unwrap_or("nothing")
                ),
            )
            .with_hint(if n == a.bytes {
                "the file or the manifest was changed after forge wrote them: get the bundle again"
            } else {
                "the file is truncated or replaced: copy it again"
            }),
            Ok((n, _)) if n != a.bytes => Check::fail(
                &id,
                &title,
                format!("{}: {n} bytes, the manifest says {}", a.path, a.bytes),
            ),
            Ok((n, h)) => Check::pass(&id, &title, format!("{}: {n} bytes, sha256 {h}", a.path)),
        };
        checks.push(c);
    }
    checks
}

/// `SHA256SUMS` against the files; it must list every file of the manifest and the manifest.
fn verify_sums(dir: &Path, m: &Manifest, hashes: &mut Hashes<'_>) -> Check {
    let title = "SHA256SUMS matches every file";
    match std::fs::read_to_string(dir.join(SUMS)) {
        Err(e) => Check::fail(
            "verify.sha256sums",
            title,
            format!("cannot read {SUMS}: {e}"),
        ),
        Ok(text) => {
            let sums = parse_sums(&text);
            let mut bad = Vec::new();
            for (h, n) in &sums {
                match hashes.get(n) {
                    Err(why) => bad.push(why.describe(n)),
                    Ok((_, got)) if got != *h => {
                        bad.push(format!("{n}: sha256 {got}, {SUMS} says {h}"));
                    }
                    Ok(_) => {}
                }
            }
            for a in &m.artifacts {
                if !sums.iter().any(|(_, n)| *n == a.path) {
                    bad.push(format!("{} is not listed in {SUMS}", a.path));
                }
            }
            if !sums.iter().any(|(_, n)| n == MANIFEST) {
                bad.push(format!("{MANIFEST} is not listed in {SUMS}"));
            }
            if bad.is_empty() {
                Check::pass(
                    "verify.sha256sums",
                    title,
                    format!("{} entries, all match", sums.len()),
                )
            } else {
                Check::fail("verify.sha256sums", title, bad.join("; "))
            }
        }
    }
}

/// A split archive's parts, joined, against the manifest's size and SHA256; the joined size
/// when every part is there.
fn verify_parts(dir: &Path, a: &ArchiveInfo) -> (Check, Option<(u64, String)>) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut missing = Vec::new();
    let mut unreadable = Vec::new();
    for p in &a.parts {
        let Some(path) = inside(dir, p).filter(|p| std::fs::symlink_metadata(p).is_ok()) else {
            missing.push(p.clone());
            continue;
        };
        // A read error is named with its part, never hashed over as a short part (issue 18).
        let read = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let k = f.read(&mut buf)?;
                if k == 0 {
                    return Ok(());
                }
                h.update(&buf[..k]);
                n += k as u64;
            }
        })();
        if let Err(e) = read {
            unreadable.push(format!("{p} cannot be read: {e}"));
        }
    }
    let title = "the parts join to the archive";
    let check = if !missing.is_empty() || !unreadable.is_empty() {
        let mut ev = Vec::new();
        if !missing.is_empty() {
            ev.push(format!("missing part(s): {}", missing.join(", ")));
        }
        ev.extend(unreadable.iter().cloned());
        Check::fail("verify.parts", title, ev.join("; ")).with_hint(if missing.is_empty() {
            "a part is there but reading it failed: fix or copy it again, then verify again"
        } else {
            "copy every part: the archive cannot be joined without them"
        })
    } else {
        let got = crate::atomic::hex(&h.finalize());
        if got == a.sha256 && n == a.bytes {
            Check::pass(
                "verify.parts",
                title,
                format!(
                    "{} parts join to {} ({n} bytes, sha256 {got}): {}",
                    a.parts.len(),
                    a.name,
                    a.join.as_deref().unwrap_or("")
                ),
            )
        } else {
            Check::fail(
                "verify.parts",
                title,
                format!(
                    "joined parts: {n} bytes, sha256 {got}; the manifest says {} bytes, sha256 {}",
                    a.bytes, a.sha256
                ),
            )
        }
    };
    let whole = (missing.is_empty() && unreadable.is_empty()).then(|| (n, String::new()));
    (check, whole)
}

/// The archive's `.sha256` file against the archive's recomputed SHA256.
fn verify_archive_sha256(dir: &Path, a: &ArchiveInfo, whole_sha: Option<&String>) -> Check {
    let sfile = format!("{}.sha256", a.name);
    let title = format!("{sfile} matches the archive");
    match std::fs::read_to_string(dir.join(&sfile)) {
        Err(e) => Check::fail(
            "verify.archive-sha256",
            &title,
            format!("cannot read {sfile}: {e}"),
        ),
        Ok(text) => {
            let sums = parse_sums(&text);
            match (sums.iter().find(|(_, n)| *n == a.name), whole_sha) {
                (None, _) => Check::fail(
                    "verify.archive-sha256",
                    &title,
                    format!("{sfile} has no line for {}: {}", a.name, text.trim()),
                ),
                (Some((h, _)), Some(got)) if h == got => Check::pass(
                    "verify.archive-sha256",
                    &title,
                    format!(
                        "{sfile}: {h}, recomputed over the archive{}",
                        if a.parts.is_empty() {
                            ""
                        } else {
                            "'s joined parts"
                        }
                    ),
                ),
                (Some((h, _)), Some(got)) => Check::fail(
                    "verify.archive-sha256",
                    &title,
                    format!("{sfile} says {h}, the archive's sha256 is {got}"),
                )
                .with_hint("the checksum file or the archive was changed: get them again"),
                (Some(_), None) => Check::fail(
                    "verify.archive-sha256",
                    &title,
                    format!(
                        "{sfile} cannot be checked: the archive {} is missing or incomplete",
                        a.name
                    ),
                ),
            }
        }
    }
}

/// Thresholds, as the manifest records them, against the files' real sizes.
fn verify_thresholds(m: &Manifest, a: &ArchiveInfo, whole: Option<&(u64, String)>) -> Check {
    let Some(t) = m.recipe.as_ref().map(|r| r.thresholds) else {
        return Check::skip(
            "verify.thresholds",
            "sizes over the recipe's thresholds",
            "not judged: the manifest names no recipe (exported without `--recipe` or `--rocm`), so there are no thresholds",
        );
    };
    let real = whole.map(|(n, _)| if a.parts.is_empty() { *n } else { a.bytes });
    let mut ev = Vec::new();
    let mut ok = true;
    if let Some(n) = real {
        ev.push(format!(
            "archive {} (threshold {})",
            gb(n),
            gb(t.archive_min_bytes)
        ));
        ok &= n > t.archive_min_bytes;
    }
    if let Some(b) = m.image.as_ref().and_then(|i| i.bytes) {
        ev.push(format!(
            "image {} (threshold {})",
            gb(b),
            gb(t.image_min_bytes)
        ));
        ok &= b > t.image_min_bytes;
    }
    if ev.is_empty() {
        Check::skip(
            "verify.thresholds",
            "sizes over the recipe's thresholds",
            "the archive is missing: no size to compare",
        )
    } else {
        Check::when(
            ok,
            "verify.thresholds",
            "sizes over the recipe's thresholds",
            ev.join("; "),
        )
    }
}

/// Reads the parts of a split archive one after another.
struct Joined {
    files: std::collections::VecDeque<PathBuf>,
    cur: Option<std::fs::File>,
}

impl Read for Joined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.cur.is_none() {
                match self.files.pop_front() {
                    Some(p) => self.cur = Some(std::fs::File::open(p)?),
                    None => return Ok(0),
                }
            }
            let n = self.cur.as_mut().expect("open").read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.cur = None;
        }
    }
}

/// `verify.registry`: the recorded push pulled by digest gives the manifest's image id, and
/// the tag still names that image.
pub fn registry_check(m: &Manifest, engine: &dyn crate::engine::Engine) -> Check {
    let (id, title) = ("verify.registry", "the registry serves the bundle's image");
    let Some(p) = &m.registry else {
        return Check::skip(id, title, "the manifest records no push")
            .with_hint("push it first: `forge push BUNDLE_DIR REGISTRY/REPO:TAG`");
    };
    let want = m
        .image
        .as_ref()
        .and_then(|i| i.id.clone())
        .unwrap_or_default();
    let auth = crate::ops::registry::Reference::parse(&p.reference)
        .ok()
        .and_then(|r| {
            crate::ops::registry::credentials(&r.registry)
                .ok()
                .flatten()
        })
        .map(|(a, _)| a);
    let by_digest = engine.pull_image(&p.pinned, auth.as_ref());
    let by_tag = engine.pull_image(&p.reference, auth.as_ref());
    match (by_digest, by_tag) {
        (Err(e), _) => Check::fail(id, title, format!("{} cannot be pulled: {e}", p.pinned))
            .with_hint("the registry lost the image, or it is not reachable: push again"),
        (Ok(got), _) if got != want => Check::fail(
            id,
            title,
            format!("{} gives image {got}, the manifest says {want}", p.pinned),
        ),
        (Ok(_), Err(e)) => Check::fail(id, title, format!("{} cannot be pulled: {e}", p.reference)),
        (Ok(_), Ok(tag_id)) if tag_id != want => Check::fail(
            id,
            title,
            format!(
                "{} now names image {tag_id}, not the bundle's {want} (the tag moved); {} still gives the bundle's image",
                p.reference, p.pinned
            ),
        )
        .with_hint(format!("pull by digest, `{}`, or push the bundle again", p.pinned)),
        (Ok(_), Ok(_)) => Check::pass(
            id,
            title,
            format!("{} and {} both give image {want}", p.pinned, p.reference),
        ),
    }
}

fn load_check(
    dir: &Path,
    m: &Manifest,
    a: &ArchiveInfo,
    engine: &dyn crate::engine::Engine,
) -> Check {
    let id = "verify.load";
    let title = "the archive loads and gives the manifest's image id";
    let files: Vec<PathBuf> = if a.parts.is_empty() {
        vec![dir.join(&a.name)]
    } else {
        a.parts.iter().map(|p| dir.join(p)).collect()
    };
    if let Some(bad) = files.iter().find(|f| !f.is_file()) {
        let what = if std::fs::symlink_metadata(bad).is_ok() {
            "is not a file"
        } else {
            "is missing"
        };
        return Check::fail(id, title, format!("{} {what}", bad.display()));
    }
    let reader = Joined {
        files: files.into(),
        cur: None,
    };
    let started = std::time::Instant::now();
    let messages = match engine.load_image(Box::new(reader)) {
        Ok(m) => m,
        Err(e) => {
            let mut c = Check::fail(id, title, format!("the engine refused {}: {e}", a.name));
            if a.format == "zstd" {
                c = c.with_hint(format!(
                    "zstd archives load on {}; use the gzip archive (`forge export --format gz`) for older engines",
                    loadable_by("zstd")
                ));
            }
            return c;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let loaded = messages
        .iter()
        .find_map(|l| {
            l.strip_prefix("Loaded image ID: ")
                .or_else(|| l.strip_prefix("Loaded image: "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let Some(loaded) = loaded else {
        return Check::fail(
            id,
            title,
            format!(
                "the engine loaded {} but named no image: {}",
                a.name,
                messages.join(" | ")
            ),
        );
    };
    let got = if loaded.starts_with("sha256:") {
        Ok(loaded.clone())
    } else {
        engine.image_id(&loaded).and_then(|id| {
            id.ok_or_else(|| crate::Error::Engine {
                message: format!("the engine has no image `{loaded}`"),
                hint: Some("`docker images` lists the images the engine has".into()),
            })
        })
    };
    let want = m.image.as_ref().and_then(|i| i.id.clone());
    match (got, want) {
        (Err(e), _) => Check::fail(
            id,
            title,
            format!("loaded {loaded}, but cannot read its id: {e}"),
        ),
        (Ok(got), Some(want)) if got == want => Check::pass(
            id,
            title,
            format!("loaded {loaded} in {secs:.1} s: image id {got}, as the manifest says"),
        ),
        (Ok(got), Some(want)) => Check::fail(
            id,
            title,
            format!("loaded {loaded}: image id {got}, the manifest says {want}"),
        ),
        (Ok(got), None) => Check::fail(
            id,
            title,
            format!(
                "loaded {loaded} (image id {got}); the manifest records no image id to compare"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_parse_text_and_binary_mode_and_skip_junk() {
        let h = "a".repeat(64);
        let s = parse_sums(&format!(
            "{h}  x.tar.gz\n{h} *y.bin\nnot a line\n{}  short\n",
            "b".repeat(10)
        ));
        assert_eq!(s, vec![(h.clone(), "x.tar.gz".into()), (h, "y.bin".into())]);
    }

    #[test]
    fn manifest_paths_cannot_leave_the_bundle() {
        let d = Path::new("/b");
        assert!(inside(d, "a/b.whl").is_some());
        assert!(inside(d, "../etc/passwd").is_none());
        assert!(inside(d, "/etc/passwd").is_none());
    }
}
