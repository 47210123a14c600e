//! The pipeline's logic without Docker: the real phases ([`phases::BUILD`]) against the scripted
//! fake engine ([`crate::engine::fake`]) replaying what this project's Docker engine answered to
//! `forge build` of the Docker fixtures (`tests/fixtures/engine/`, `scripts/record-engine.sh`).
//! Ordering, skips, `--skip`/`--only`, cancel in every phase, resume; what needs the real
//! engine stays in `tests/docker.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::record::{self, Outputs, PhaseRecord, PhaseStatus, RecipeRef, RunRecord, RunState};
use super::{Ctx, PhaseId, Selection};
use crate::engine::fake::{Act, FakeEngine};
use crate::engine::{Engine, GpuAccess, LABEL_TEMP};
use crate::error::Error;
use crate::monitor::rules::Monitor;
use crate::monitor::tail::Observer;
use crate::ops::drive::BuilderChoice;
use crate::ops::plan::Plan;
use crate::phases;
use crate::recipe::{LoadOptions, Recipe};
use crate::report::{Status, Verdict};

const ORDER: [PhaseId; 9] = [
    PhaseId::Plan,
    PhaseId::Preflight,
    PhaseId::Build,
    PhaseId::Wheel,
    PhaseId::Image,
    PhaseId::Runtime,
    PhaseId::Serve,
    PhaseId::Export,
    PhaseId::Report,
];

const IMAGE_TAG: &str = "forge-fixture-good:latest";
const BASE: &str = "forge-test-base:trixie";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fake(name: &str) -> FakeEngine {
    FakeEngine::new(&root().join("tests/fixtures/engine").join(name))
}

fn recipe(name: &str) -> Recipe {
    let p = root().join(format!("tests/fixtures/docker/{name}.toml"));
    Recipe::from_path(&p, LoadOptions::default()).expect("the fixture recipe loads")
}

/// A fresh, empty artifacts root for one test, `forge-pipeline-{name}-XXXXXX` under the temp
/// dir, removed (also when the test panics) when the returned guard drops: keep it bound while
/// its path is used.
fn arts(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("forge-pipeline-{name}-"))
        .tempdir()
        .unwrap()
}

/// Why the GPU phases cannot run here; `None` on a host with an AMD GPU.
fn no_gpu() -> Option<String> {
    GpuAccess::from_host(Path::new("/dev")).err()
}

/// The selection every test starts from: on a host with a GPU the GPU phases would reach for
/// the real engine, so they are left out there (`--skip runtime,serve`).
fn base_sel() -> Selection {
    Selection {
        skip: if no_gpu().is_some() {
            Vec::new()
        } else {
            vec![PhaseId::Runtime, PhaseId::Serve]
        },
        only: Vec::new(),
    }
}

struct Quiet;

impl Observer for Quiet {
    fn update(&mut self, _: &Monitor) {}
    fn note(&mut self, _: &str) {}
}

/// `forge build`'s recipe hash (commands/build.rs): plan without paths, Dockerfile, context.
fn recipe_hash(recipe: &Recipe, plan: &Plan) -> String {
    let mut h = Sha256::new();
    let mut p = serde_json::to_value(plan).unwrap();
    p["artifacts"] = serde_json::Value::Null;
    if let Some(m) = p.as_object_mut() {
        m.remove("components");
    }
    h.update(p.to_string().as_bytes());
    let df = recipe.dockerfile.read().unwrap();
    h.update(df.as_bytes());
    h.update(
        crate::ops::drive::context_tar(
            recipe.context.as_deref(),
            &df,
            ".forge.Dockerfile",
            &crate::ops::drive::forge_files(recipe).unwrap(),
        )
        .unwrap(),
    );
    crate::ops::drive::hex(&h.finalize())
}

struct Done {
    rec: RunRecord,
    result: crate::Result<()>,
    plan: Plan,
}

impl Done {
    fn phase(&self, id: PhaseId) -> &PhaseRecord {
        self.rec
            .phase(id)
            .unwrap_or_else(|| panic!("no {id:?} in the record"))
    }

    fn status(&self, id: PhaseId) -> PhaseStatus {
        self.phase(id).status
    }

    fn reason(&self, id: PhaseId) -> &str {
        self.phase(id).reason.as_deref().unwrap_or("")
    }

    fn statuses(&self) -> Vec<(PhaseId, PhaseStatus)> {
        self.rec.phases.iter().map(|p| (p.id, p.status)).collect()
    }

    fn check(&self, id: &str) -> Status {
        self.rec
            .checks()
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id}: {:#?}", self.rec.phases))
            .status
    }
}

/// `v` without its `seconds` (a float does not survive the JSON round trip to the last bit).
fn timeless(mut v: serde_json::Value) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(m) => {
            m.remove("seconds");
            for x in m.values_mut() {
                *x = timeless(x.take());
            }
        }
        serde_json::Value::Array(a) => {
            for x in a.iter_mut() {
                *x = timeless(x.take());
            }
        }
        _ => {}
    }
    v
}

/// `forge build --run-id r` (or `--resume r` with `prior`) as commands/build.rs sets it up,
/// on the fake; the record on disk is checked to be the one returned.
fn build(
    fake: &FakeEngine,
    recipe: &Recipe,
    arts: &Path,
    sel: &Selection,
    prior: Option<&RunRecord>,
) -> Done {
    build_on(fake, fake, recipe, arts, sel, prior)
}

/// [`build`] through `engine` (the fake, or a wrapper of it), with the fake's cancel token.
fn build_on(
    engine: &dyn Engine,
    fake: &FakeEngine,
    recipe: &Recipe,
    arts: &Path,
    sel: &Selection,
    prior: Option<&RunRecord>,
) -> Done {
    build_with(
        phases::BUILD,
        (engine, None),
        fake,
        recipe,
        arts,
        sel,
        prior,
        Path::new("/dev"),
    )
}

/// [`build`] of a phase list of the test's own (the real phases with one replaced).
fn build_list(
    list: &[super::Phase],
    fake: &FakeEngine,
    recipe: &Recipe,
    arts: &Path,
    sel: &Selection,
) -> Done {
    build_with(
        list,
        (fake, None),
        fake,
        recipe,
        arts,
        sel,
        None,
        Path::new("/dev"),
    )
}

/// [`build_on`] on a host whose device directory is `dev` (a stand-in with `kfd`: a GPU host).
fn build_in(
    engine: &dyn Engine,
    fake: &FakeEngine,
    recipe: &Recipe,
    arts: &Path,
    sel: &Selection,
    prior: Option<&RunRecord>,
    dev: &Path,
) -> Done {
    build_with(
        phases::BUILD,
        (engine, None),
        fake,
        recipe,
        arts,
        sel,
        prior,
        dev,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_with(
    list: &[super::Phase],
    (engine, gpu): (&dyn Engine, Option<&dyn Engine>),
    fake: &FakeEngine,
    recipe: &Recipe,
    arts: &Path,
    sel: &Selection,
    prior: Option<&RunRecord>,
    dev: &Path,
) -> Done {
    let run = "r".to_owned();
    let (plan, plan_checks) = crate::ops::plan::resolve(recipe, arts, &run).unwrap();
    let dir = plan.artifacts.dir.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = RunRecord {
        schema: record::SCHEMA,
        run: run.clone(),
        recipe: RecipeRef {
            name: recipe.file.name.clone(),
            origin: recipe.origin.to_string(),
            path: None,
            rocm: None,
            allow_unsupported: false,
            hash: recipe_hash(recipe, &plan),
        },
        plan: plan.clone(),
        started: prior.map_or_else(record::now, |p| p.started.clone()),
        updated: record::now(),
        state: RunState::Running,
        signal: None,
        verdict: Verdict::Incomplete,
        phases: phases::BUILD
            .iter()
            .map(|p| PhaseRecord::pending(p.id))
            .collect(),
        outputs: Outputs::default(),
        resumes: prior.map(|p| p.resumes.clone()).unwrap_or_default(),
    };
    if prior.is_some() {
        rec.resumes.push(format!("resumed at {}", record::now()));
    }
    rec.write(&dir).unwrap();
    let mut quiet = Quiet;
    let mut ctx = Ctx {
        gpu,
        recipe,
        plan: &plan,
        plan_checks,
        run,
        engine,
        cancel: fake.cancel(),
        observer: &mut quiet,
        builder: BuilderChoice::Auto,
        outputs: Outputs::default(),
        unverified: None,
        rehearsal: false,
        dev: dev.to_owned(),
    };
    let result = super::run(list, &mut ctx, &mut rec, sel, prior, &dir);
    let disk = RunRecord::read(&dir).unwrap();
    assert_eq!(
        timeless(
            serde_json::to_value((&disk.phases, &disk.outputs, disk.state, disk.verdict)).unwrap()
        ),
        timeless(
            serde_json::to_value((&rec.phases, &rec.outputs, rec.state, rec.verdict)).unwrap()
        ),
        "run.json is the record as it ended"
    );
    Done { rec, result, plan }
}

/// Containers and temporary images the fake still holds.
fn leftovers(fake: &FakeEngine) -> Vec<String> {
    let mut out: Vec<String> = fake
        .containers()
        .iter()
        .map(|c| format!("container {}", c.id))
        .collect();
    out.extend(
        fake.leftovers(LABEL_TEMP)
            .unwrap()
            .iter()
            .map(|l| format!("{} {} {:?}", l.kind, l.id, l.tags)),
    );
    out
}

/// Files under `dir` whose name ends in `.part`.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parts(&p));
        } else if p.to_string_lossy().ends_with(".part") {
            out.push(p);
        }
    }
    out
}

/// What two runs produced, without their paths and timings.
fn outputs_of(d: &Done) -> serde_json::Value {
    let o = &d.rec.outputs;
    serde_json::json!({
        "wheels": o.wheels.iter().map(|w| (
            w.path.file_name().unwrap().to_string_lossy().into_owned(), w.size, w.sha256.clone()
        )).collect::<Vec<_>>(),
        "image": o.image,
        "archive": o.archive.as_ref().map(|a| (
            a.archive.file_name().unwrap().to_string_lossy().into_owned(),
            a.sha256.clone(), a.tar_bytes, a.gz_bytes, a.verified.error.clone(),
        )),
    })
}

fn count(calls: &[String], prefix: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(prefix)).count()
}

/// The uninterrupted run of the good recording every resume must end like.
/// The artifacts root comes with it: its paths are the record's.
fn reference(name: &str) -> (TempDir, Done) {
    let tmp = arts(&format!("{name}-reference"));
    let f = fake("good");
    let d = build(&f, &recipe("good"), tmp.path(), &base_sel(), None);
    d.result.as_ref().expect("the reference run finishes");
    (tmp, d)
}

/// An engine call, and the phases' statuses run.json held when it came.
type Snapshot = (String, Vec<(PhaseId, PhaseStatus)>);

#[test]
fn a_full_run_records_the_phases_in_order_and_writes_the_record_after_each() {
    let tmp = arts("order");
    let a = tmp.path();
    let f = fake("good");
    // At every engine call, what run.json said then.
    let seen: Arc<Mutex<Vec<Snapshot>>> = Arc::default();
    let (log, dir) = (seen.clone(), a.join("r"));
    f.script(move |p| {
        if p.after.is_none() {
            let r = RunRecord::read(&dir).expect("run.json exists from the start");
            let s = r.phases.iter().map(|p| (p.id, p.status)).collect();
            log.lock()
                .unwrap()
                .push((format!("{} {}", p.method, p.arg), s));
        }
        None
    });
    let d = build(&f, &recipe("good"), a, &base_sel(), None);
    d.result.as_ref().expect("the run finishes");
    assert_eq!(d.rec.state, RunState::Finished);
    let ids: Vec<PhaseId> = d.rec.phases.iter().map(|p| p.id).collect();
    assert_eq!(ids, ORDER);
    for id in [
        PhaseId::Plan,
        PhaseId::Build,
        PhaseId::Wheel,
        PhaseId::Image,
    ] {
        assert!(d.status(id).passed(), "{id:?}: {:#?}", d.phase(id));
    }
    assert!(
        d.status(PhaseId::Export).passed(),
        "{:#?}",
        d.phase(PhaseId::Export)
    );
    assert!(!matches!(
        d.status(PhaseId::Preflight),
        PhaseStatus::Pending | PhaseStatus::Running | PhaseStatus::Skip
    ));
    // Without /dev/kfd the GPU phases are skipped, saying why and what to run on a GPU host.
    match no_gpu() {
        Some(why) => {
            for (id, cmd) in [
                (PhaseId::Runtime, "forge runtime"),
                (PhaseId::Serve, "forge serve"),
            ] {
                assert_eq!(d.status(id), PhaseStatus::Skip);
                let r = d.reason(id);
                assert!(
                    r.contains(&why) && r.contains(&format!("{cmd} {IMAGE_TAG}")),
                    "{r}"
                );
                assert!(d.phase(id).checks.iter().all(|c| c.status == Status::Skip));
            }
            assert_eq!(
                d.check("1.2"),
                Status::Skip,
                "no /dev/kfd is not a failure of the build"
            );
        }
        None => assert!(d.reason(PhaseId::Runtime).contains("--skip runtime")),
    }
    // What the phases did: phase 2 passed (from the live log, or from the build.log kept in
    // the wheel stage when the recorded compile step was served from cache), the wheel taken
    // out with its SHA256, phase 4 on the image, the archive.
    for id in [
        "2.1",
        "build.result",
        "build.wheels",
        "image.build",
        "export.archive",
    ] {
        assert_eq!(d.check(id), Status::Pass, "{id}");
    }
    let w = &d.rec.outputs.wheels;
    let torch = w
        .iter()
        .find(|w| w.path.extension().is_some_and(|e| e == "whl"))
        .unwrap();
    assert_eq!(
        crate::ops::drive::sha256_file(&torch.path).unwrap(),
        torch.sha256
    );
    let built = f
        .recorded()
        .builds
        .iter()
        .find(|b| b.target == "runtime")
        .unwrap();
    let crate::engine::recording::End::Succeeded { image_id: Some(id) } = &built.end else {
        panic!("the recorded runtime build succeeded");
    };
    assert_eq!(d.rec.outputs.image.as_ref().unwrap().id, *id);
    let archive = d.rec.outputs.archive.as_ref().unwrap();
    assert_eq!(archive.archive, d.plan.artifacts.archive);
    assert_eq!(
        crate::ops::drive::sha256_file(&archive.archive).unwrap(),
        archive.sha256
    );
    // The engine was used in the phases' order, and the record was written before each phase
    // ran (it says `running`) and after each ended (the earlier ones have their status).
    let seen = seen.lock().unwrap().clone();
    let at = |call: &str| {
        seen.iter().position(|(c, _)| c == call).unwrap_or_else(|| {
            panic!(
                "no `{call}` in {:?}",
                seen.iter().map(|s| &s.0).collect::<Vec<_>>()
            )
        })
    };
    let order = [
        "build wheels",
        &format!("open_container {BASE}"),
        "build runtime",
        &format!("export_image {IMAGE_TAG}"),
    ];
    let positions: Vec<usize> = order.iter().map(|c| at(c)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let status_at =
        |call: &str, id: PhaseId| seen[at(call)].1.iter().find(|(p, _)| *p == id).unwrap().1;
    use PhaseStatus::{Pending, Running, Skip};
    assert!(status_at("build wheels", PhaseId::Plan).passed());
    assert_eq!(status_at("build wheels", PhaseId::Build), Running);
    assert_eq!(status_at("build wheels", PhaseId::Wheel), Pending);
    assert!(status_at(order[1], PhaseId::Build).passed());
    assert_eq!(status_at(order[1], PhaseId::Wheel), Running);
    assert!(status_at("build runtime", PhaseId::Wheel).passed());
    assert_eq!(status_at("build runtime", PhaseId::Image), Running);
    assert_eq!(status_at("build runtime", PhaseId::Export), Pending);
    assert!(status_at(order[3], PhaseId::Image).passed());
    assert_eq!(status_at(order[3], PhaseId::Export), Running);
    assert_eq!(status_at(order[3], PhaseId::Report), Pending);
    if no_gpu().is_some() {
        assert_eq!(status_at(order[3], PhaseId::Runtime), Skip);
        assert_eq!(status_at(order[3], PhaseId::Serve), Skip);
    }
    // Nothing temporary is left: the wheel stage's image went, every container too; the
    // image stays under its tag.
    assert_eq!(leftovers(&f), Vec::<String>::new());
    assert_eq!(f.image_id(IMAGE_TAG).unwrap().as_deref(), Some(id.as_str()));
}

#[test]
fn the_bad_recording_stops_the_build_and_skips_every_phase_that_needs_it() {
    let tmp = arts("bad");
    let a = tmp.path();
    let f = fake("bad");
    let d = build(&f, &recipe("bad"), a, &base_sel(), None);
    d.result
        .as_ref()
        .expect("a stopped build is a finished run");
    assert_eq!(d.rec.state, RunState::Finished);
    assert_eq!(d.rec.verdict, Verdict::Fail);
    assert_eq!(d.status(PhaseId::Build), PhaseStatus::Fail);
    assert_eq!(d.check("2.1"), Status::Fail);
    assert_eq!(d.check("build.result"), Status::Fail);
    let b = d.rec.outputs.build.as_ref().unwrap();
    assert_eq!(b.end, crate::ops::drive::End::Stopped);
    let fatal = b.fatal.as_ref().unwrap();
    assert_eq!(fatal.id, "2.1");
    // The fatal line is in the log forge wrote, at the line the finding names.
    let log = std::fs::read_to_string(&d.plan.artifacts.build_log).unwrap();
    let line = usize::try_from(fatal.line).unwrap();
    assert!(
        log.lines()
            .nth(line - 1)
            .unwrap()
            .contains("USE_DISTRIBUTED       : 0"),
        "{log}"
    );
    for id in [PhaseId::Wheel, PhaseId::Image, PhaseId::Export] {
        assert_eq!(d.status(id), PhaseStatus::Skip, "{id:?}");
        assert!(d.phase(id).checks.is_empty());
        let r = d.reason(id);
        assert!(
            r.contains("the build phase's outputs, and it failed"),
            "{id:?}: {r}"
        );
    }
    assert!(
        d.reason(PhaseId::Wheel)
            .starts_with("needs the build phase's outputs")
    );
    assert!(
        d.reason(PhaseId::Export)
            .starts_with("needs the image phase's outputs, and it was skipped")
    );
    if no_gpu().is_some() {
        assert!(
            d.reason(PhaseId::Runtime)
                .contains("the build phase's outputs, and it failed")
        );
    }
    assert!(d.rec.outputs.wheels.is_empty() && d.rec.outputs.image.is_none());
    // The engine built the wheel stage once, and nothing after it.
    let calls = f.calls();
    assert_eq!(count(&calls, "build "), 1, "{calls:?}");
    assert_eq!(count(&calls, "open_container"), 0, "{calls:?}");
    assert_eq!(count(&calls, "export_image"), 0, "{calls:?}");
    assert!(!d.plan.artifacts.archive.exists());
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[test]
fn skip_and_only_skip_phases_saying_why() {
    let good = recipe("good");
    let with = |skip: &[PhaseId], only: &[PhaseId]| {
        let mut sel = base_sel();
        sel.skip.extend_from_slice(skip);
        sel.only = only.to_vec();
        sel
    };
    // --skip image: what needs the image says so; the image was never built.
    let tmp = arts("skip-image");
    let a = tmp.path();
    let f = fake("good");
    let d = build(&f, &good, a, &with(&[PhaseId::Image], &[]), None);
    d.result.as_ref().unwrap();
    assert!(d.status(PhaseId::Build).passed());
    assert!(d.status(PhaseId::Wheel).passed());
    assert_eq!(d.status(PhaseId::Image), PhaseStatus::Skip);
    assert_eq!(d.reason(PhaseId::Image), "not run: `--skip image`");
    assert_eq!(
        d.reason(PhaseId::Export),
        "needs the image phase's outputs, and it was skipped (not run: `--skip image`)"
    );
    assert_eq!(count(&f.calls(), "build runtime"), 0);
    assert_eq!(count(&f.calls(), "export_image"), 0);

    // --only build,wheel: preflight, image and export are not run, plan and report always are.
    let tmp = arts("only-build-wheel");
    let a = tmp.path();
    let f = fake("good");
    let d = build(
        &f,
        &good,
        a,
        &with(&[], &[PhaseId::Build, PhaseId::Wheel]),
        None,
    );
    d.result.as_ref().unwrap();
    for id in [PhaseId::Preflight, PhaseId::Image, PhaseId::Export] {
        assert_eq!(d.status(id), PhaseStatus::Skip, "{id:?}");
        assert_eq!(d.reason(id), "not run: `--only build,wheel`", "{id:?}");
    }
    for id in [PhaseId::Plan, PhaseId::Build, PhaseId::Wheel] {
        assert!(d.status(id).passed(), "{id:?}: {:#?}", d.phase(id));
    }
    // The report phase ran inside the pipeline: its checklist says no release (no archive).
    assert_eq!(d.status(PhaseId::Report), PhaseStatus::Fail);
    assert!(
        d.phase(PhaseId::Report)
            .checks
            .iter()
            .any(|c| c.id == "deliverable.archive" && c.status == Status::Fail)
    );
    assert_eq!(
        count(&f.calls(), "info"),
        2,
        "only the build's and the report's: {:?}",
        f.calls()
    );
    assert_eq!(count(&f.calls(), "build runtime"), 0);

    // --only export on a fresh run: the phases it needs were not run, and it says so.
    let tmp = arts("only-export");
    let a = tmp.path();
    let f = fake("good");
    let d = build(&f, &good, a, &with(&[], &[PhaseId::Export]), None);
    d.result.as_ref().unwrap();
    assert_eq!(d.reason(PhaseId::Build), "not run: `--only export`");
    assert_eq!(
        d.reason(PhaseId::Export),
        "needs the image phase's outputs, and it was skipped (not run: `--only export`)"
    );
    assert_eq!(
        f.calls(),
        ["info"],
        "no engine call but the report's (the engine's version)"
    );

    // --skip export (`--no-export`): everything else ran; no archive, not even in part.
    let tmp = arts("skip-export");
    let a = tmp.path();
    let f = fake("good");
    let d = build(&f, &good, a, &with(&[PhaseId::Export], &[]), None);
    d.result.as_ref().unwrap();
    assert!(d.status(PhaseId::Image).passed());
    assert_eq!(d.reason(PhaseId::Export), "not run: `--skip export`");
    assert_eq!(count(&f.calls(), "export_image"), 0);
    assert!(!d.plan.artifacts.archive.exists() && d.rec.outputs.archive.is_none());
    assert!(parts(a).is_empty());
}

/// Cancel the good run where `arm` says, in `phase`; then resume it.
fn cancel_then_resume(name: &str, phase: PhaseId, arm: impl FnOnce(&FakeEngine)) {
    let (_reference_arts, reference) = reference(name);
    let tmp = arts(name);
    let a = tmp.path();
    let f = fake("good");
    arm(&f);
    let good = recipe("good");
    let d = build(&f, &good, a, &base_sel(), None);
    assert!(
        matches!(
            d.result,
            Err(Error::Interrupted {
                signal: libc::SIGINT
            })
        ),
        "{name}: {:?}",
        d.result
    );
    assert_eq!(d.rec.state, RunState::Interrupted);
    assert_eq!(d.rec.signal, Some(libc::SIGINT));
    // The record says which phase: that one interrupted, the earlier ones ended, the later
    // ones never started.
    let at = ORDER.iter().position(|p| *p == phase).unwrap();
    for (i, p) in d.rec.phases.iter().enumerate() {
        match i.cmp(&at) {
            std::cmp::Ordering::Less => assert!(
                !matches!(
                    p.status,
                    PhaseStatus::Pending | PhaseStatus::Running | PhaseStatus::Interrupted
                ),
                "{name}: {:?} {:?}",
                p.id,
                p.status
            ),
            std::cmp::Ordering::Equal => {
                assert_eq!(p.status, PhaseStatus::Interrupted, "{name}");
                let by = format!("stopped by {}", crate::cancel::name(libc::SIGINT));
                assert_eq!(p.reason.as_deref(), Some(by.as_str()));
            }
            std::cmp::Ordering::Greater => {
                assert_eq!(p.status, PhaseStatus::Pending, "{name}: {:?}", p.id)
            }
        }
    }
    assert_eq!(
        leftovers(&f),
        Vec::<String>::new(),
        "{name}: {:?}",
        f.calls()
    );
    let archive = &d.plan.artifacts.archive;
    assert!(
        !archive.exists() && !d.plan.artifacts.sha256.exists(),
        "{name}"
    );
    assert_eq!(parts(a), Vec::<PathBuf>::new(), "{name}");
    assert!(d.rec.outputs.archive.is_none());

    // Resume from that record with a fresh token: the same verdict and outputs as the
    // uninterrupted run, the phases before the interrupted one reused.
    f.clear_script();
    f.new_cancel();
    let before = f.calls().len();
    let r = build(&f, &good, a, &base_sel(), Some(&d.rec));
    r.result
        .as_ref()
        .unwrap_or_else(|e| panic!("{name}: the resume: {e}"));
    assert_eq!(r.rec.state, RunState::Finished);
    assert_eq!(r.rec.verdict, reference.rec.verdict, "{name}");
    assert_eq!(r.statuses(), reference.statuses(), "{name}");
    assert_eq!(outputs_of(&r), outputs_of(&reference), "{name}");
    let reran = format!("{}: run again: it ended `interrupted` before", phase.name());
    assert!(
        r.rec.resumes.contains(&reran),
        "{name}: {:?}",
        r.rec.resumes
    );
    assert_eq!(r.reason(phase), "run again: it ended `interrupted` before");
    assert!(!r.phase(phase).reused);
    let costly = [
        PhaseId::Build,
        PhaseId::Wheel,
        PhaseId::Image,
        PhaseId::Export,
    ];
    for id in costly.iter().filter(|p| **p < phase) {
        assert!(r.phase(*id).reused, "{name}: {id:?} is reused");
        assert_eq!(r.reason(*id), "reused: recorded outputs verified");
    }
    // What the resume asked of the engine: no build of a reused phase.
    let calls = f.calls()[before..].to_vec();
    assert_eq!(
        count(&calls, "build wheels"),
        usize::from(phase == PhaseId::Build),
        "{name}: {calls:?}"
    );
    assert_eq!(
        count(&calls, "build runtime"),
        usize::from(phase <= PhaseId::Image),
        "{name}: {calls:?}"
    );
    assert_eq!(count(&calls, "export_image"), 1, "{name}: {calls:?}");
    assert_eq!(leftovers(&f), Vec::<String>::new(), "{name}");
    assert!(archive.is_file() && parts(a).is_empty());
}

#[test]
fn cancel_in_the_build_phase_mid_build_then_resume() {
    cancel_then_resume("cancel-build", PhaseId::Build, |f| {
        f.cancel_after_event("wheels", 3)
    });
}

#[test]
fn cancel_in_the_build_phase_while_the_wheels_are_copied_out_then_resume() {
    cancel_then_resume("cancel-copy", PhaseId::Build, |f| {
        f.at_call("copy_out", Some("/."), 1, Act::Cancel)
    });
}

#[test]
fn cancel_in_the_wheel_phase_then_resume() {
    cancel_then_resume("cancel-wheel", PhaseId::Wheel, |f| {
        f.at_call("open_container", Some(BASE), 1, Act::Cancel)
    });
}

#[test]
fn cancel_in_the_image_phase_mid_build_then_resume() {
    cancel_then_resume("cancel-image", PhaseId::Image, |f| {
        f.cancel_after_event("runtime", 2)
    });
}

#[test]
fn cancel_in_the_image_phase_during_the_probe_then_resume() {
    cancel_then_resume("cancel-probe", PhaseId::Image, |f| {
        f.at_call("run_once", None, 1, Act::Cancel)
    });
}

#[test]
fn cancel_in_the_export_phase_then_resume() {
    cancel_then_resume("cancel-export", PhaseId::Export, |f| {
        f.cancel_after_piece(3)
    });
}

/// The good recording, with the probe's and the server's containers of real runs.
fn gpu_fake() -> FakeEngine {
    let dir = root().join("tests/fixtures/engine");
    fake("good")
        .with_containers_of(&dir.join("runtime"))
        .with_containers_of(&dir.join("serve"))
}

/// A stand-in device directory under `arts`: `kfd` and `dri/renderD128`, as on a GPU host.
fn gpu_host(arts: &Path) -> PathBuf {
    let dev = arts.join("dev");
    std::fs::create_dir_all(dev.join("dri")).unwrap();
    std::fs::write(dev.join("kfd"), "").unwrap();
    std::fs::write(dev.join("dri/renderD128"), "").unwrap();
    dev
}

/// Issue 18: SIGINT in the runtime phase of `forge build` (phase 5, "with a GPU": a stand-in
/// `/dev`, the probe's container replayed from a real run's recording) is recorded as
/// `interrupted` with the signal, exits 130 and leaves no container. Before, the runtime phase
/// watched a copy of the token and ended `error`, exit 2.
#[test]
fn issue_18_sigint_in_the_runtime_phase_records_interrupted_and_exits_130() {
    let tmp = arts("cancel-runtime");
    let a = tmp.path();
    let dev = gpu_host(a);
    let f = gpu_fake();
    f.cancel_after_log_piece(3);
    let d = build_in(
        &f,
        &f,
        &recipe("good"),
        a,
        &Selection::default(),
        None,
        &dev,
    );
    let e = d.result.as_ref().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Interrupted {
                signal: libc::SIGINT
            }
        ),
        "{e}"
    );
    assert_eq!(e.exit_code(), 130);
    assert_eq!(d.rec.state, RunState::Interrupted);
    assert_eq!(d.rec.signal, Some(libc::SIGINT));
    assert_eq!(d.status(PhaseId::Runtime), PhaseStatus::Interrupted);
    assert_eq!(d.reason(PhaseId::Runtime), "stopped by SIGINT (Ctrl-C)");
    for id in [PhaseId::Build, PhaseId::Wheel, PhaseId::Image] {
        assert!(d.status(id).passed(), "{id:?}: {:?}", d.status(id));
    }
    for id in [PhaseId::Serve, PhaseId::Export] {
        assert_eq!(d.status(id), PhaseStatus::Pending, "{id:?}");
    }
    // The probe's container was started, its log followed, and it is gone.
    let calls = f.calls();
    assert_eq!(
        count(&calls, "create_and_start forge-fixture-good:latest"),
        1,
        "{calls:?}"
    );
    assert_eq!(count(&calls, "remove fake-container-"), 1, "{calls:?}");
    assert_eq!(leftovers(&f), Vec::<String>::new(), "{calls:?}");
    let disk = RunRecord::read(&d.plan.artifacts.dir).unwrap();
    assert_eq!(
        (disk.state, disk.signal),
        (RunState::Interrupted, Some(libc::SIGINT))
    );
}

/// Issue 18: SIGTERM in the serve phase of `forge build` (phase 6 "with a GPU", the server's
/// container replayed from a real run) is recorded as `interrupted` by SIGTERM, exits 143, and
/// the server's container is stopped and removed.
#[test]
fn issue_18_sigterm_in_the_serve_phase_records_interrupted_and_exits_143() {
    let tmp = arts("cancel-serve");
    let a = tmp.path();
    let dev = gpu_host(a);
    let f = gpu_fake();
    // the second container of the run is the server's (the first is the probe's)
    f.at_call("create_and_start", None, 2, Act::Signal(libc::SIGTERM));
    let d = build_in(
        &f,
        &f,
        &recipe("good"),
        a,
        &Selection::default(),
        None,
        &dev,
    );
    let e = d.result.as_ref().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Interrupted {
                signal: libc::SIGTERM
            }
        ),
        "{e}"
    );
    assert_eq!(e.exit_code(), 143);
    assert_eq!(
        (d.rec.state, d.rec.signal),
        (RunState::Interrupted, Some(libc::SIGTERM))
    );
    assert_ne!(d.status(PhaseId::Runtime), PhaseStatus::Interrupted);
    assert_eq!(d.status(PhaseId::Serve), PhaseStatus::Interrupted);
    assert_eq!(d.reason(PhaseId::Serve), "stopped by SIGTERM");
    assert_eq!(d.status(PhaseId::Export), PhaseStatus::Pending);
    let calls = f.calls();
    assert_eq!(count(&calls, "create_and_start "), 2, "{calls:?}");
    assert_eq!(count(&calls, "stop fake-container-"), 1, "{calls:?}");
    assert_eq!(count(&calls, "remove fake-container-"), 2, "{calls:?}");
    assert_eq!(leftovers(&f), Vec::<String>::new(), "{calls:?}");
}

/// The GPU phases left to finish on the fake: the recorded probe's and server's checks, their
/// containers gone.
#[test]
fn the_gpu_phases_run_on_the_fake_with_a_gpu_and_remove_their_containers() {
    let tmp = arts("gpu-on-fake");
    let a = tmp.path();
    let dev = gpu_host(a);
    let f = gpu_fake();
    let sel = Selection {
        skip: vec![PhaseId::Export],
        only: Vec::new(),
    };
    let d = build_in(&f, &f, &recipe("good"), a, &sel, None, &dev);
    d.result.as_ref().expect("the run finishes");
    // the recording's image has neither torch nor vLLM: 5.1 and 6.1 say so
    assert_eq!(d.status(PhaseId::Runtime), PhaseStatus::Fail);
    assert_eq!(d.check("5.1"), Status::Fail);
    assert!(d.plan.artifacts.dir.join("runtime-probe.json").is_file());
    assert_eq!(d.status(PhaseId::Serve), PhaseStatus::Fail);
    assert_eq!(d.check("6.1"), Status::Fail);
    assert_eq!(d.check("6.6"), Status::Pass);
    assert_eq!(leftovers(&f), Vec::<String>::new(), "{:?}", f.calls());
}

/// With a GPU engine that has the GPU (the fake replaying real runtime and serve containers, a
/// stand-in `/dev`): the image is moved there and phases 5-7 start their containers there, none
/// on the build engine, and leave none behind.
#[test]
fn with_a_gpu_engine_the_gpu_phases_start_their_containers_there() {
    let tmp = arts("gpu-engine-with-gpu");
    let a = tmp.path();
    let dev = gpu_host(a);
    let build_engine = fake("good").with_engine_id("BUILD:ENGINE");
    let gpu = gpu_fake().without_images().with_engine_id("GPU:ENGINE");
    let sel = Selection {
        skip: vec![PhaseId::Export],
        only: Vec::new(),
    };
    let d = build_with(
        phases::BUILD,
        (&build_engine, Some(&gpu)),
        &build_engine,
        &recipe("good"),
        a,
        &sel,
        None,
        &dev,
    );
    d.result.as_ref().expect("the run finishes");
    assert_eq!(d.check("image.transfer"), Status::Pass);
    // the recording's image has neither torch nor vLLM: 5.1 and 6.1 say so, as on one engine
    assert_eq!(d.check("5.1"), Status::Fail);
    assert_eq!(d.check("6.1"), Status::Fail);
    assert_eq!(d.check("6.6"), Status::Pass);
    // the runtime probe, the server, the server on the default path
    assert_eq!(
        count(&gpu.calls(), "create_and_start "),
        3,
        "{:?}",
        gpu.calls()
    );
    assert_eq!(count(&build_engine.calls(), "create_and_start "), 0);
    assert_eq!(leftovers(&gpu), Vec::<String>::new(), "{:?}", gpu.calls());
}

#[test]
fn resume_reruns_what_changed_and_says_why() {
    let good = recipe("good");
    // The image is gone from the engine: build and wheel reused, the image built again.
    let tmp = arts("image-gone");
    let a = tmp.path();
    let f = fake("good");
    let full = build(&f, &good, a, &base_sel(), None);
    full.result.as_ref().unwrap();
    let img = full.rec.outputs.image.clone().unwrap();
    f.remove_image(IMAGE_TAG).unwrap();
    let before = f.calls().len();
    let r = build(&f, &good, a, &base_sel(), Some(&full.rec));
    r.result.as_ref().unwrap();
    let why = format!(
        "run again: image {} (`{IMAGE_TAG}`) is gone from the engine",
        img.id
    );
    assert_eq!(r.reason(PhaseId::Image), why);
    assert!(
        r.rec.resumes.contains(&format!("image: {why}")),
        "{:?}",
        r.rec.resumes
    );
    assert!(r.phase(PhaseId::Build).reused && r.phase(PhaseId::Wheel).reused);
    assert!(!r.phase(PhaseId::Image).reused && !r.phase(PhaseId::Export).reused);
    assert!(r.status(PhaseId::Image).passed());
    let calls = f.calls()[before..].to_vec();
    assert_eq!(
        (
            count(&calls, "build wheels"),
            count(&calls, "build runtime")
        ),
        (0, 1),
        "{calls:?}"
    );
    assert_eq!(f.image_id(IMAGE_TAG).unwrap(), Some(img.id.clone()));
    assert_eq!(outputs_of(&r), outputs_of(&full));

    // A wheel's bytes changed on disk: the build runs again, and everything after it.
    let tmp = arts("wheel-changed");
    let a = tmp.path();
    let f = fake("good");
    let full = build(&f, &good, a, &base_sel(), None);
    full.result.as_ref().unwrap();
    let w = full
        .rec
        .outputs
        .wheels
        .iter()
        .find(|w| w.path.extension().is_some_and(|e| e == "whl"))
        .unwrap();
    let mut bytes = std::fs::read(&w.path).unwrap();
    bytes.push(0);
    std::fs::write(&w.path, &bytes).unwrap();
    let changed = crate::ops::drive::sha256_file(&w.path).unwrap();
    let before = f.calls().len();
    let r = build(&f, &good, a, &base_sel(), Some(&full.rec));
    r.result.as_ref().unwrap();
    let why = format!(
        "run again: {} changed (SHA256 {changed}, recorded {})",
        w.path.display(),
        w.sha256
    );
    assert_eq!(r.reason(PhaseId::Build), why);
    assert!(
        r.rec.resumes.contains(&format!("build: {why}")),
        "{:?}",
        r.rec.resumes
    );
    for id in [
        PhaseId::Build,
        PhaseId::Wheel,
        PhaseId::Image,
        PhaseId::Export,
    ] {
        assert!(!r.phase(id).reused, "{id:?}");
        assert!(r.status(id).passed(), "{id:?}");
    }
    let calls = f.calls()[before..].to_vec();
    assert_eq!(
        (
            count(&calls, "build wheels"),
            count(&calls, "build runtime")
        ),
        (1, 1),
        "{calls:?}"
    );
    // the wheel taken out again is the engine's, not the changed one
    assert_eq!(crate::ops::drive::sha256_file(&w.path).unwrap(), w.sha256);
    assert_eq!(outputs_of(&r), outputs_of(&full));

    // The archive changed: only the export runs again.
    let e = r.rec.outputs.archive.clone().unwrap();
    std::fs::write(&e.archive, b"not the archive").unwrap();
    let before = f.calls().len();
    let again = build(&f, &good, a, &base_sel(), Some(&r.rec));
    again.result.as_ref().unwrap();
    assert!(
        again
            .reason(PhaseId::Export)
            .starts_with(&format!("run again: {} changed", e.archive.display()))
    );
    for id in [PhaseId::Build, PhaseId::Wheel, PhaseId::Image] {
        assert!(again.phase(id).reused, "{id:?}");
    }
    let calls = f.calls()[before..].to_vec();
    assert_eq!(
        (count(&calls, "build "), count(&calls, "export_image")),
        (0, 1),
        "{calls:?}"
    );
    assert_eq!(
        crate::ops::drive::sha256_file(&e.archive).unwrap(),
        e.sha256
    );

    // Another recipe hash: nothing is reused, and the record says why.
    let mut other = again.rec.clone();
    other.recipe.hash = "0".repeat(64);
    let r = build(&f, &good, a, &base_sel(), Some(&other));
    r.result.as_ref().unwrap();
    assert!(r.rec.phases.iter().all(|p| !p.reused));
    assert!(
        r.rec
            .resumes
            .iter()
            .any(|s| s.contains("every phase runs again")),
        "{:?}",
        r.rec.resumes
    );
}

#[test]
fn an_engine_error_stops_the_run_with_the_record_saying_where_then_resume() {
    let good = recipe("good");
    let tmp = arts("engine-error");
    let a = tmp.path();
    let f = fake("good");
    // The engine's stream breaks in the middle of the export.
    f.script({
        let mut armed = true;
        move |p| {
            if armed && p.method == "export_image" && p.after == Some(2) {
                armed = false;
                return Some(Act::Fail("connection reset by peer".into()));
            }
            None
        }
    });
    let d = build(&f, &good, a, &base_sel(), None);
    let e = d.result.as_ref().unwrap_err();
    assert!(matches!(e, Error::Engine { .. }), "{e:?}");
    assert_eq!(d.rec.state, RunState::Error);
    assert_eq!(d.status(PhaseId::Export), PhaseStatus::Error);
    assert!(
        d.reason(PhaseId::Export)
            .contains("connection reset by peer"),
        "{}",
        d.reason(PhaseId::Export)
    );
    assert_eq!(d.status(PhaseId::Report), PhaseStatus::Pending);
    assert!(!d.plan.artifacts.archive.exists() && parts(a).is_empty());
    // The image the run built is kept: the resume exports it without building anything.
    let before = f.calls().len();
    let r = build(&f, &good, a, &base_sel(), Some(&d.rec));
    r.result.as_ref().unwrap();
    assert_eq!(
        r.reason(PhaseId::Export),
        "run again: it ended `error` before"
    );
    assert!(r.status(PhaseId::Export).passed());
    assert_eq!(count(&f.calls()[before..], "build "), 0);
    // A build call that fails (the engine gone): an error in the build phase, nothing left.
    let tmp2 = arts("engine-error-build");
    let a2 = tmp2.path();
    let f = fake("good");
    f.at_call("build", Some("wheels"), 1, Act::Fail("engine gone".into()));
    let d = build(&f, &good, a2, &base_sel(), None);
    assert!(d.result.is_err());
    assert_eq!(d.status(PhaseId::Build), PhaseStatus::Error);
    assert!(d.reason(PhaseId::Build).contains("engine gone"));
    assert_eq!(d.status(PhaseId::Wheel), PhaseStatus::Pending);
    assert_eq!(leftovers(&f), Vec::<String>::new());
}

#[test]
fn the_recorder_writes_down_what_the_engine_answered() {
    use crate::engine::fake::Recorded;
    use crate::engine::recording::Recording;
    // The good run on the fake, recorded: the same builds and calls as the recording replayed.
    let tmp = arts("recorder");
    let a = tmp.path();
    let f = fake("good");
    let out = a.join("recording");
    let r = Recording::new(&f, &out).unwrap();
    assert!(
        Recording::new(&f, &out).is_err(),
        "an existing recording is not overwritten"
    );
    let good = recipe("good");
    let d = build_on(&r, &f, &good, a, &base_sel(), None);
    d.result.as_ref().unwrap();
    let (was, now) = (f.recorded(), Recorded::load(&out));
    let key = |b: &crate::engine::fake::RecordedBuild| {
        (
            b.target.clone(),
            b.tag.clone(),
            b.builder,
            b.events.clone(),
            b.end.clone(),
        )
    };
    assert_eq!(
        now.builds.iter().map(key).collect::<Vec<_>>(),
        was.builds.iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(now.calls.len(), was.calls.len());
    for (n, w) in now.calls.iter().zip(&was.calls) {
        assert_eq!(
            (&n.call, &n.image, &n.path, &n.cmd, &n.error),
            (&w.call, &w.image, &w.path, &w.cmd, &w.error)
        );
        match n.call.as_str() {
            // the fake's container ids, and its synthetic export stream's length
            "open_container" | "export_image" => {}
            _ => assert_eq!(n.ok, w.ok, "{}", n.call),
        }
        if let (Some(nf), Some(wf)) = (&n.file, &w.file) {
            assert_eq!(
                std::fs::read(out.join(nf)).unwrap(),
                std::fs::read(was.dir.join(wf)).unwrap()
            );
        }
        assert_eq!(n.file.is_some(), w.file.is_some());
    }
}

/// Issue 19: a wheel that fails only 3.1 (size) still goes into the image and the export; the
/// run's verdict fails on 3.1, and the phases after it say they went past it and why. The
/// fixture's wheel is no torch (its checks skip), so the wheel phase here answers as phase 3
/// does on a single-arch ROCm wheel below 2 GB: 3.1 fails, the structure passes.
#[test]
fn a_wheel_failing_only_its_size_still_goes_into_the_image_and_the_export() {
    use super::Phase;
    use crate::report::Check;
    let tmp = arts("size-only");
    let a = tmp.path();
    let f = fake("good");
    let list: Vec<Phase> = phases::BUILD
        .iter()
        .map(|p| Phase {
            run: if p.id == PhaseId::Wheel {
                |_| {
                    Ok(vec![
                        Check::fail("3.1", "wheel size", "1100.0 MB; threshold 2000.0 MB"),
                        Check::pass("wheel.flavour", "flavour", "ROCm"),
                        Check::pass("3.2", "c10d", "4210 symbols"),
                    ])
                }
            } else {
                p.run
            },
            ..*p
        })
        .collect();
    let d = build_list(&list, &f, &recipe("good"), a, &base_sel());
    d.result.as_ref().expect("the run finishes");
    assert_eq!(d.check("3.1"), Status::Fail);
    assert_eq!(d.status(PhaseId::Wheel), PhaseStatus::Fail);
    for id in [PhaseId::Image, PhaseId::Export] {
        assert!(d.status(id).passed(), "{id:?}: {:#?}", d.phase(id));
        let past = &d.phase(id).went_past;
        assert!(
            past.len() == 1
                && past[0].starts_with("3.1 failed in the wheel phase and does not gate"),
            "{id:?}: {past:?}"
        );
    }
    assert!(d.plan.artifacts.archive.exists());
    assert_eq!(d.rec.verdict, Verdict::Fail, "3.1 still fails the run");
    // The report says 3.1 failed and why that did not stop the run.
    let md = std::fs::read_to_string(d.plan.artifacts.dir.join("report.md")).unwrap();
    assert!(
        md.contains("ran on although 3.1 failed in the wheel phase and does not gate the image phase: a size below the spec's threshold is not a broken build"),
        "{md}"
    );
}

/// Issue 19: the gating checks by id: a wheel without distributed (3.2) or without code for
/// the arch keeps the image from being built; 3.1 and `wheel.glibc` do not.
#[test]
fn the_wheel_gates_are_named_checks() {
    use crate::report::Check;
    let image = phases::BUILD
        .iter()
        .find(|p| p.id == PhaseId::Image)
        .unwrap();
    let wheels = Outputs {
        wheels: vec![crate::ops::drive::Wheel {
            path: "torch-2.9.0-cp312-cp312-linux_x86_64.whl".into(),
            size: 1,
            sha256: "0".repeat(64),
        }],
        ..Outputs::default()
    };
    let with_failed = |id: &str| -> Vec<PhaseRecord> {
        [PhaseId::Plan, PhaseId::Build, PhaseId::Wheel]
            .into_iter()
            .map(|pid| {
                let checks = match pid {
                    PhaseId::Wheel => vec![Check::fail(id, "t", "e")],
                    _ => Vec::new(),
                };
                PhaseRecord {
                    status: if checks.is_empty() {
                        PhaseStatus::Pass
                    } else {
                        PhaseStatus::Fail
                    },
                    checks,
                    ..PhaseRecord::pending(pid)
                }
            })
            .collect()
    };
    for (id, why) in [
        ("3.2", "torch.distributed is missing"),
        ("3.3", "PrefixStore"),
        ("wheel.flavour", "not a ROCm build"),
        ("wheel.gpu-targets", "no code for the target arch"),
    ] {
        let r = super::blocked(image, &with_failed(id), &wheels)
            .unwrap_or_else(|| panic!("{id} gates"));
        assert!(
            r.starts_with(&format!("{id} failed in the wheel phase")) && r.contains(why),
            "{r}"
        );
    }
    for id in ["3.1", "wheel.glibc"] {
        let rec = with_failed(id);
        assert_eq!(
            super::blocked(image, &rec, &wheels),
            None,
            "{id} does not gate the image"
        );
        assert!(super::went_past(image, &rec)[0].starts_with(&format!(
            "{id} failed in the wheel phase and does not gate the image phase"
        )));
    }
    assert!(
        super::blocked(image, &with_failed("3.1"), &Outputs::default())
            .unwrap()
            .starts_with("needs the build phase's outputs, and it produced none")
    );
}

/// Issue 18: a run.json of format 1 (forge before the typed record: the image phase's failed
/// build inside the build's blob) is read, its image build moved out, not misread; a resume
/// from it reuses what it verifies and writes format 2; a format this forge does not know is
/// refused, saying what it is.
#[test]
fn a_record_of_format_1_is_read_and_resumed_and_an_unknown_format_refused() {
    let good = recipe("good");
    let tmp = arts("format-1");
    let a = tmp.path();
    let f = fake("good");
    let d = build(&f, &good, a, &base_sel(), None);
    d.result.as_ref().unwrap();
    let dir = d.plan.artifacts.dir.clone();
    let build_result = d.rec.outputs.build.clone().unwrap();
    // Format 1 as forge wrote it: `schema: 1`, an image build grafted into the build's blob.
    let mut v1 = serde_json::to_value(&d.rec).unwrap();
    v1["schema"] = 1.into();
    v1["outputs"]["build"]["image_build"] = serde_json::to_value(&build_result).unwrap();
    let write = |v: &serde_json::Value| {
        std::fs::write(
            dir.join(record::FILE),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    };
    write(&v1);
    let old = RunRecord::read(&dir).unwrap();
    assert_eq!(old.schema, record::SCHEMA);
    assert_eq!(old.outputs.build.as_ref(), Some(&build_result));
    assert_eq!(old.outputs.image_build.as_ref(), Some(&build_result));
    let mut expect = serde_json::to_value(&d.rec).unwrap();
    expect["outputs"]["image_build"] = serde_json::to_value(&build_result).unwrap();
    assert_eq!(serde_json::to_value(&old).unwrap(), expect);

    for (schema, says) in [(3, "format 3"), (0, "format 0")] {
        let mut v = v1.clone();
        v["schema"] = schema.into();
        write(&v);
        let e = RunRecord::read(&dir).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("run.json"), "{e}");
    }
    let mut v = v1.clone();
    v.as_object_mut().unwrap().remove("schema");
    write(&v);
    let e = RunRecord::read(&dir).unwrap_err().to_string();
    assert!(e.contains("no `schema`"), "{e}");
    // A format 1 record whose build is not a build result is refused, not half read.
    let mut v = v1.clone();
    v["outputs"]["build"]["end"] = "exploded".into();
    write(&v);
    let e = RunRecord::read(&dir).unwrap_err().to_string();
    assert!(e.contains("format 1") && e.contains("exploded"), "{e}");

    write(&v1);
    let old = RunRecord::read(&dir).unwrap();
    let r = build(&f, &good, a, &base_sel(), Some(&old));
    r.result.as_ref().unwrap();
    for id in [
        PhaseId::Build,
        PhaseId::Wheel,
        PhaseId::Image,
        PhaseId::Export,
    ] {
        assert!(r.phase(id).reused, "{id:?}: {:#?}", r.phase(id));
    }
    assert_eq!(RunRecord::read(&dir).unwrap().schema, record::SCHEMA);
}

/// The whole build on the fake `build` engine with `gpu` as the GPU engine, into `dir`,
/// resuming `prior` when given.
fn build_to_gpu(
    build: &FakeEngine,
    gpu: &FakeEngine,
    recipe: &Recipe,
    dir: &Path,
    prior: Option<&RunRecord>,
) -> Done {
    build_with(
        phases::BUILD,
        (build, Some(gpu)),
        build,
        recipe,
        dir,
        &base_sel(),
        prior,
        Path::new("/dev"),
    )
}

#[test]
fn a_gpu_engine_gets_the_image_streamed_and_phase_4_runs_there() {
    let fake = fake("good").with_engine_id("BUILD:ENGINE");
    let gpu = FakeEngine::new(&root().join("tests/fixtures/engine/good"))
        .without_images()
        .with_engine_id("GPU:ENGINE");
    let recipe = recipe("good");
    let tmp = arts("gpu-engine");
    let d = build_to_gpu(&fake, &gpu, &recipe, tmp.path(), None);
    d.result.as_ref().unwrap();
    let image = d.rec.phase(PhaseId::Image).unwrap();
    let t = image
        .checks
        .iter()
        .find(|c| c.id == "image.transfer")
        .expect("the transfer is a check");
    assert_eq!(t.status, Status::Pass, "{}", t.evidence);
    assert!(
        t.evidence.contains("GPU:ENGINE") && t.evidence.contains("BUILD:ENGINE"),
        "{}",
        t.evidence
    );
    let id = fake.image_id(IMAGE_TAG).unwrap().unwrap();
    assert_eq!(gpu.image_id(IMAGE_TAG).unwrap(), Some(id.clone()));
    let out = d.rec.outputs.image.as_ref().unwrap();
    assert_eq!(out.engines, ["BUILD:ENGINE", "GPU:ENGINE"]);
    // phase 4 asked the GPU engine, not the build engine
    assert!(
        gpu.calls().iter().any(|c| c.starts_with("run_once")),
        "{:?}",
        gpu.calls()
    );
    assert!(!fake.calls().iter().any(|c| c.starts_with("run_once")));
    assert!(
        image.checks.iter().any(|c| c.id == "4.1"),
        "phase 4 ran after the transfer"
    );

    // resume against a GPU engine that lost the image: the image phase runs again and moves it
    gpu.remove_image(IMAGE_TAG).unwrap();
    let again = build_to_gpu(&fake, &gpu, &recipe, tmp.path(), Some(&d.rec));
    again.result.as_ref().unwrap();
    assert!(
        again
            .rec
            .resumes
            .iter()
            .any(|r| r.starts_with("image: run again") && r.contains("gone from the GPU engine")),
        "{:?}",
        again.rec.resumes
    );
    assert_eq!(gpu.image_id(IMAGE_TAG).unwrap(), Some(id));

    // a GPU engine refusing the load fails image.transfer; phase 4 is not run anywhere
    let gpu2 = FakeEngine::new(&root().join("tests/fixtures/engine/good"))
        .without_images()
        .with_engine_id("GPU2");
    gpu2.at_call(
        "load_image",
        None,
        1,
        Act::Fail("no space left on device".into()),
    );
    let tmp2 = arts("gpu-engine-full");
    let d = build_to_gpu(&fake, &gpu2, &recipe, tmp2.path(), None);
    d.result.as_ref().unwrap();
    let image = d.rec.phase(PhaseId::Image).unwrap();
    assert_eq!(image.status, PhaseStatus::Fail);
    let t = image
        .checks
        .iter()
        .find(|c| c.id == "image.transfer")
        .unwrap();
    assert!(t.evidence.contains("no space left"), "{}", t.evidence);
    assert!(!image.checks.iter().any(|c| c.id == "4.1"));
    assert!(gpu2.images().is_empty());
}
