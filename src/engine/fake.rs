//! A scripted fake engine for the pipeline's tests: [`FakeEngine`] replays a recording of a real
//! engine's answers (`tests/fixtures/engine/`, made by `scripts/record-engine.sh` through
//! [`super::recording`]), so the pipeline's logic (ordering, skips, resume, cancel) is tested
//! without Docker. Nothing of the Docker API is imitated: the fake speaks forge's [`Engine`]
//! trait, with the answers the real engine gave.
//!
//! It keeps state like an engine: the images it "built" (with their tags and labels) and the
//! containers open, so a test can assert that nothing is left. A build replays the recorded
//! events into the sink, honouring [`Flow::Cancel`] (-> [`BuildEnd::Cancelled`]) and the cancel
//! token between events (-> [`BuildEnd::Interrupted`]), and ends as recorded. The image export
//! streams a small docker-save tar synthesised for the image (the recording keeps only the
//! real stream's length). The long-lived containers of phases 5-7 ([`super::Containers`]) are
//! replayed from `containers.jsonl` ([`FakeEngine::with_containers_of`]): a container of a
//! recorded image and program starts, its log is replayed piece by piece honouring the token
//! given to `follow`, its state is answered as recorded, and it is held until removed. Hooks
//! ([`FakeEngine::script`]) see every call, every build event, every export piece and every log
//! piece, and may trigger the cancel token there or make the call fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::recording::{Call, End, Line};
use super::{BuildEnd, BuildEvent, BuildSpec, Engine, EngineInfo, Flow, Leftover};
use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// One recorded build.
#[derive(Debug, Clone)]
pub struct RecordedBuild {
    /// The stage.
    pub target: String,
    /// The tag it was built as.
    pub tag: String,
    /// The builder.
    pub builder: super::BuilderKind,
    /// Its events (no header, no end).
    pub events: Vec<Line>,
    /// How it ended.
    pub end: End,
}

/// A recording, read from its directory.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The directory (copy_out's tars are there).
    pub dir: PathBuf,
    /// The builds, in the order of their files' names.
    pub builds: Vec<RecordedBuild>,
    /// Every other call, in order.
    pub calls: Vec<Call>,
    /// The long-lived containers' calls (`containers.jsonl`), in order; none when not recorded.
    pub containers: Vec<Call>,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the recording {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("{}:{}: not a recorded line: {e}", path.display(), i + 1)
            })
        })
        .collect()
}

impl Recorded {
    /// Read the recording in `dir` (panics on a broken one: a test fixture).
    pub fn load(dir: &Path) -> Recorded {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("no recording at {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("build-") && n.ends_with(".jsonl"))
            })
            .collect();
        names.sort();
        let builds = names
            .iter()
            .map(|p| {
                let mut lines: Vec<Line> = read_lines(p);
                let (
                    Some(Line::Build {
                        target,
                        tag,
                        builder,
                    }),
                    Some(Line::End(end)),
                ) = (lines.first().cloned(), lines.last().cloned())
                else {
                    panic!("{}: a build's header or end is missing", p.display());
                };
                lines.pop();
                lines.remove(0);
                RecordedBuild {
                    target,
                    tag,
                    builder,
                    events: lines,
                    end,
                }
            })
            .collect();
        let boxes = dir.join("containers.jsonl");
        Recorded {
            dir: dir.to_owned(),
            builds,
            calls: read_lines(&dir.join("calls.jsonl")),
            containers: if boxes.exists() {
                read_lines(&boxes)
            } else {
                Vec::new()
            },
        }
    }

    /// The id the recorded engine gave `image` (a tag it built, or one it answered for).
    pub fn id_of(&self, image: &str) -> Option<String> {
        if image.starts_with("sha256:") {
            return Some(image.to_owned());
        }
        for b in &self.builds {
            if let (true, End::Succeeded { image_id: Some(id) }) = (b.tag == image, &b.end) {
                return Some(id.clone());
            }
        }
        self.calls
            .iter()
            .filter(|c| c.call == "image_id" && c.image.as_deref() == Some(image))
            .find_map(|c| c.ok.as_str().map(str::to_owned))
    }

    /// The first recorded call `call` that `pred` accepts.
    fn find(&self, call: &str, pred: impl Fn(&Call) -> bool) -> Option<&Call> {
        self.calls.iter().find(|c| c.call == call && pred(c))
    }
}

/// An image the fake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its id.
    pub id: String,
    /// Its tags.
    pub tags: BTreeSet<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A container the fake holds (created, never started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// The id of its image.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Where a hook is called.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// The method (`build`, `copy_out`, `export_image`, ...).
    pub method: &'static str,
    /// Its argument: the target for `build`, the path for `copy_out`, the container for
    /// `remove_container` and the long-lived containers' calls but `create_and_start`, the
    /// image for the others (`""` for `info`).
    pub arg: &'a str,
    /// `None` at the call (before it is answered); `Some(n)` once the nth event of a build,
    /// the nth piece of an export or of a container's log, was delivered.
    pub after: Option<usize>,
}

/// What a hook makes happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Trigger the cancel token (as SIGINT would).
    Cancel,
    /// Trigger the cancel token as this signal would (`libc::SIGTERM`).
    Signal(i32),
    /// Make the call fail with this engine error.
    Fail(String),
}

type Hook = Box<dyn FnMut(&Point<'_>) -> Option<Act> + Send>;

#[derive(Default)]
struct State {
    images: Vec<Image>,
    containers: Vec<Container>,
    next: usize,
    calls: Vec<String>,
    /// Started containers: id -> where their recorded session starts in `Recorded::containers`.
    sessions: BTreeMap<String, usize>,
    tars: BTreeMap<String, Vec<u8>>,
}

impl State {
    fn resolve(&self, image: &str) -> Option<&Image> {
        self.images
            .iter()
            .find(|i| i.id == image || i.tags.contains(image))
            .or_else(|| {
                // a short id, as `docker` accepts
                let short = image.strip_prefix("sha256:").unwrap_or(image);
                (short.len() >= 12 && short.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| {
                        self.images
                            .iter()
                            .find(|i| i.id.trim_start_matches("sha256:").starts_with(short))
                    })
                    .flatten()
            })
    }
}

/// The fake engine (see the module's text).
pub struct FakeEngine {
    rec: Recorded,
    cancel: Mutex<Cancel>,
    state: Mutex<State>,
    hooks: Mutex<Vec<Hook>>,
    /// The engine ID `info` gives instead of the recorded one (a second engine).
    engine_id: Option<String>,
}

fn no_image(image: &str) -> Error {
    Error::Engine {
        message: format!("no image `{image}`: No such image: {image} (fake engine)"),
        hint: None,
    }
}

fn unrecorded(what: String) -> Error {
    Error::Engine {
        message: format!(
            "the fake engine has no recorded answer for {what}: the pipeline called the engine \
             otherwise than in the recorded run (scripts/record-engine.sh records it again)"
        ),
        hint: None,
    }
}

/// The synthetic id of an image a recording built without saying its id.
fn synthetic_id(what: &str) -> String {
    format!(
        "sha256:{}",
        crate::atomic::hex(&Sha256::digest(what.as_bytes()))
    )
}

impl FakeEngine {
    /// A fake replaying the recording in `dir`, with a cancel token of its own. It holds the
    /// images the recorded run found in the engine (those it asked about without building them).
    pub fn new(dir: &Path) -> FakeEngine {
        let rec = Recorded::load(dir);
        let built: BTreeSet<&str> = rec.builds.iter().map(|b| b.tag.as_str()).collect();
        let mut state = State::default();
        for c in &rec.calls {
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            let asks = matches!(
                c.call.as_str(),
                "image_id" | "image_size" | "open_container" | "run_once"
            );
            if !asks || c.error.is_some() || built.contains(image) || state.resolve(image).is_some()
            {
                continue;
            }
            if c.call == "image_id" && c.ok.is_null() {
                continue;
            }
            let id = rec.id_of(image).unwrap_or_else(|| synthetic_id(image));
            let tags = if image.starts_with("sha256:") {
                BTreeSet::new()
            } else {
                BTreeSet::from([image.to_owned()])
            };
            match state.images.iter_mut().find(|i| i.id == id) {
                Some(i) => i.tags.extend(tags),
                None => state.images.push(Image {
                    id,
                    tags,
                    labels: BTreeMap::new(),
                }),
            }
        }
        FakeEngine {
            rec,
            cancel: Mutex::new(Cancel::detached()),
            state: Mutex::new(state),
            hooks: Mutex::new(Vec::new()),
            engine_id: None,
        }
    }

    /// The same recording answering as another engine: `info` gives this engine ID.
    pub fn with_engine_id(mut self, id: &str) -> FakeEngine {
        self.engine_id = Some(id.to_owned());
        self
    }

    /// The long-lived containers' calls of the recording in `dir` replayed too (one made by
    /// `__FORGE_TEST_RECORD_ENGINE=DIR forge runtime IMAGE` or `forge serve IMAGE`: a host without a
    /// GPU records phases 5-7 there, not inside `forge build`).
    pub fn with_containers_of(mut self, dir: &Path) -> FakeEngine {
        self.rec.containers.extend(Recorded::load(dir).containers);
        self
    }

    /// The recording replayed.
    pub fn recorded(&self) -> &Recorded {
        &self.rec
    }

    /// The cancel token the fake honours and its hooks trigger (give the same to the pipeline).
    pub fn cancel(&self) -> Cancel {
        *self.cancel.lock().unwrap()
    }

    /// A fresh token (after a cancelled run, for the resume), returned.
    pub fn new_cancel(&self) -> Cancel {
        let c = Cancel::detached();
        *self.cancel.lock().unwrap() = c;
        c
    }

    /// Add a hook: it sees every [`Point`] and may act there.
    pub fn script(&self, hook: impl FnMut(&Point<'_>) -> Option<Act> + Send + 'static) {
        self.hooks.lock().unwrap().push(Box::new(hook));
    }

    /// Remove every hook.
    pub fn clear_script(&self) {
        self.hooks.lock().unwrap().clear();
    }

    /// Act once, at the `nth` call (from 1) of `method` whose argument is `arg` (any, if `None`).
    pub fn at_call(&self, method: &'static str, arg: Option<&str>, nth: usize, act: Act) {
        let arg = arg.map(str::to_owned);
        let mut seen = 0;
        let mut act = Some(act);
        self.script(move |p| {
            if p.method != method || p.after.is_some() || arg.as_deref().is_some_and(|a| a != p.arg)
            {
                return None;
            }
            seen += 1;
            if seen == nth { act.take() } else { None }
        });
    }

    /// Trigger the cancel token once the `n`th event (from 1) of the build of `target` was
    /// delivered to the sink.
    pub fn cancel_after_event(&self, target: &str, n: usize) {
        let target = target.to_owned();
        let mut armed = true;
        self.script(move |p| {
            if armed && p.method == "build" && p.arg == target && p.after == Some(n) {
                armed = false;
                return Some(Act::Cancel);
            }
            None
        });
    }

    /// Trigger the cancel token once the `n`th piece (from 1) of an image export was delivered.
    pub fn cancel_after_piece(&self, n: usize) {
        let mut armed = true;
        self.script(move |p| {
            if armed && p.method == "export_image" && p.after == Some(n) {
                armed = false;
                return Some(Act::Cancel);
            }
            None
        });
    }

    /// Trigger the cancel token once the `n`th piece (from 1) of a container's log was delivered.
    pub fn cancel_after_log_piece(&self, n: usize) {
        let mut armed = true;
        self.script(move |p| {
            if armed && p.method == "follow" && p.after == Some(n) {
                armed = false;
                return Some(Act::Cancel);
            }
            None
        });
    }

    /// The calls made so far, one line each (`build wheels`, `copy_out /.`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The same engine holding no images (a second engine an image is moved into).
    pub fn without_images(self) -> FakeEngine {
        self.state.lock().unwrap().images.clear();
        self
    }

    /// The images held now.
    pub fn images(&self) -> Vec<Image> {
        self.state.lock().unwrap().images.clone()
    }

    /// The containers open now.
    pub fn containers(&self) -> Vec<Container> {
        self.state.lock().unwrap().containers.clone()
    }

    /// Run the hooks at `p` (and log the call when it is one).
    fn point(&self, method: &'static str, arg: &str, after: Option<usize>) -> Result<()> {
        if after.is_none() {
            self.state
                .lock()
                .unwrap()
                .calls
                .push(format!("{method} {arg}").trim_end().to_owned());
        }
        let p = Point { method, arg, after };
        let acts: Vec<Act> = self
            .hooks
            .lock()
            .unwrap()
            .iter_mut()
            .filter_map(|h| h(&p))
            .collect();
        for a in acts {
            match a {
                Act::Cancel => self.cancel().request(libc::SIGINT),
                Act::Signal(sig) => self.cancel().request(sig),
                Act::Fail(message) => {
                    return Err(Error::Engine {
                        message,
                        hint: None,
                    });
                }
            }
        }
        Ok(())
    }

    fn interrupted(&self) -> Result<()> {
        self.cancel().check()
    }

    fn id_of(&self, image: &str) -> Result<String> {
        self.state
            .lock()
            .unwrap()
            .resolve(image)
            .map(|i| i.id.clone())
            .ok_or_else(|| no_image(image))
    }

    fn answer(c: &Call) -> Result<&serde_json::Value> {
        match &c.error {
            Some(e) => Err(Error::Engine {
                message: format!("{e} (as recorded)"),
                hint: None,
            }),
            None => Ok(&c.ok),
        }
    }

    fn add_image(&self, id: &str, tag: &str, labels: &BTreeMap<String, String>) {
        let mut s = self.state.lock().unwrap();
        // The tag moves to the new image; the old one stays, untagged.
        for i in &mut s.images {
            i.tags.remove(tag);
        }
        match s.images.iter_mut().find(|i| i.id == id) {
            Some(i) => {
                i.tags.insert(tag.to_owned());
            }
            None => s.images.push(Image {
                id: id.to_owned(),
                tags: BTreeSet::from([tag.to_owned()]),
                labels: labels.clone(),
            }),
        }
    }

    fn replay(
        &self,
        spec: &BuildSpec,
        b: &RecordedBuild,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Result<BuildEnd> {
        let mut n = 0;
        for line in &b.events {
            if self.cancel().requested() {
                return Ok(BuildEnd::Interrupted);
            }
            let bytes;
            let ev = match line {
                Line::Step { id, name, cached } => BuildEvent::Step {
                    id: *id,
                    name,
                    cached: *cached,
                },
                Line::Output { id, text, hex } => {
                    bytes = match (text, hex) {
                        (Some(t), _) => t.as_bytes().to_vec(),
                        (None, Some(h)) => unhex(h),
                        (None, None) => Vec::new(),
                    };
                    BuildEvent::Output {
                        id: *id,
                        bytes: &bytes,
                    }
                }
                Line::StepDone {
                    id,
                    started,
                    completed,
                } => BuildEvent::StepDone {
                    id: *id,
                    started: *started,
                    completed: *completed,
                },
                Line::StepError { id, error } => BuildEvent::StepError { id: *id, error },
                Line::Build { .. } | Line::End(_) => continue,
            };
            n += 1;
            if sink(ev) == Flow::Cancel {
                return Ok(BuildEnd::Cancelled);
            }
            self.point("build", &spec.target, Some(n))?;
        }
        if self.cancel().requested() {
            return Ok(BuildEnd::Interrupted);
        }
        match &b.end {
            End::Succeeded { image_id } => {
                let id = image_id
                    .clone()
                    .or_else(|| self.rec.id_of(&b.tag))
                    .unwrap_or_else(|| synthetic_id(&format!("{} {}", b.target, b.tag)));
                self.add_image(&id, &spec.tag, &spec.labels);
                Ok(BuildEnd::Succeeded { image_id: Some(id) })
            }
            End::Failed { message } => Ok(BuildEnd::Failed {
                message: message.clone(),
            }),
            End::Cancelled => Err(Error::Engine {
                message: format!(
                    "the recorded build of `{}` was cancelled by forge after its last event \
                     ({n}); this replay's sink did not cancel it",
                    b.target
                ),
                hint: None,
            }),
            End::Interrupted => Ok(BuildEnd::Interrupted),
            End::Error { message } => Err(Error::Engine {
                message: message.clone(),
                hint: None,
            }),
        }
    }
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("recorded hex"))
        .collect()
}

/// Bytes per piece of the synthetic export stream.
pub const PIECE: usize = 64 << 10;

/// Bytes of incompressible filler in the synthetic image (its `.tar.gz` passes the fixtures'
/// `archive-min-bytes`, 1 MB).
pub const FILLER: usize = 1_250_000;

fn tar_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).expect("in memory");
}

/// A small docker-save tar of image `id` tagged `tags`: `manifest.json`, the config, one
/// layer tar (a text file naming the image and some incompressible filler), deterministic.
pub fn image_tar(id: &str, tags: &[String]) -> Vec<u8> {
    let mut x = Sha256::digest(id.as_bytes())
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15u64, |a, b| {
            a.rotate_left(8) ^ u64::from(*b)
        })
        | 1;
    let filler: Vec<u8> = (0..FILLER)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut layer = tar::Builder::new(Vec::new());
    tar_entry(
        &mut layer,
        "etc/forge-fake-image",
        format!("{id}\n").as_bytes(),
    );
    tar_entry(&mut layer, "opt/filler.bin", &filler);
    let layer = layer.into_inner().expect("in memory");
    let layer_hex = crate::atomic::hex(&Sha256::digest(&layer));
    let config_hex = id.trim_start_matches("sha256:");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    });
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": tags,
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]);
    let mut out = tar::Builder::new(Vec::new());
    tar_entry(&mut out, &format!("{layer_hex}/VERSION"), b"1.0");
    tar_entry(
        &mut out,
        &format!("{layer_hex}/json"),
        format!("{{\"id\":\"{layer_hex}\"}}").as_bytes(),
    );
    tar_entry(&mut out, &format!("{layer_hex}/layer.tar"), &layer);
    tar_entry(
        &mut out,
        &format!("{config_hex}.json"),
        config.to_string().as_bytes(),
    );
    tar_entry(&mut out, "manifest.json", manifest.to_string().as_bytes());
    out.into_inner().expect("in memory")
}

/// The image id and tags of a docker-save archive: its manifest's config and repo tags, each
/// layer it lists present.
fn loaded_image(tar: &[u8]) -> std::result::Result<(String, Vec<String>), String> {
    let mut files = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = e.path().map_err(|e| e.to_string())?.display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).map_err(|e| e.to_string())?;
        files.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        files
            .get("manifest.json")
            .ok_or("open manifest.json: no such file or directory")?,
    )
    .map_err(|e| e.to_string())?;
    let m = &manifest[0];
    let config = m["Config"].as_str().ok_or("no Config in the manifest")?;
    for l in m["Layers"].as_array().into_iter().flatten() {
        let l = l.as_str().unwrap_or_default();
        if !files.contains_key(l) {
            return Err(format!("layer {l} is missing"));
        }
    }
    let tags = m["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    Ok((format!("sha256:{}", config.trim_end_matches(".json")), tags))
}

impl Engine for FakeEngine {
    fn containers(&self) -> Option<&dyn super::Containers> {
        Some(self)
    }

    fn info(&self) -> Result<EngineInfo> {
        self.point("info", "", None)?;
        let c = self
            .rec
            .find("info", |_| true)
            .ok_or_else(|| unrecorded("info".into()))?;
        let mut info: EngineInfo = serde_json::from_value(Self::answer(c)?.clone())
            .map_err(|e| unrecorded(format!("info ({e})")))?;
        if let Some(id) = &self.engine_id {
            info.id = Some(id.clone());
        }
        Ok(info)
    }

    fn build(
        &self,
        spec: &BuildSpec,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Result<BuildEnd> {
        self.point("build", &spec.target, None)?;
        let b = self
            .rec
            .builds
            .iter()
            .find(|b| b.target == spec.target)
            .ok_or_else(|| unrecorded(format!("a build of `{}`", spec.target)))?;
        if b.builder != spec.builder {
            return Err(unrecorded(format!(
                "a {:?} build of `{}` (recorded with {:?})",
                spec.builder, spec.target, b.builder
            )));
        }
        self.replay(spec, b, sink)
    }

    fn open_container(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<String> {
        self.point("open_container", image, None)?;
        let image = self.id_of(image)?;
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("fake-container-{}", s.next);
        s.containers.push(Container {
            id: id.clone(),
            image,
            labels: labels.clone(),
        });
        Ok(id)
    }

    fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<Option<u64>> {
        self.point("copy_out", path, None)?;
        let image = {
            let s = self.state.lock().unwrap();
            s.containers
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.image.clone())
                .ok_or_else(|| Error::Engine {
                    message: format!("copy `{path}` out: no container `{id}` (fake engine)"),
                    hint: None,
                })?
        };
        if let Err(e) = self.interrupted() {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
        let c = self
            .rec
            .find("copy_out", |c| {
                c.path.as_deref() == Some(path)
                    && c.image
                        .as_deref()
                        .and_then(|i| self.rec.id_of(i))
                        .as_deref()
                        == Some(image.as_str())
            })
            .ok_or_else(|| unrecorded(format!("copy_out of `{path}` from {image}")))?;
        Self::answer(c)?;
        match &c.file {
            None => Ok(None),
            Some(f) => {
                let from = self.rec.dir.join(f);
                std::fs::copy(&from, dest)
                    .map(Some)
                    .map_err(|e| Error::io("copy", &from, e))
            }
        }
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        self.point("remove_container", id, None)?;
        let mut s = self.state.lock().unwrap();
        let before = s.containers.len();
        s.containers.retain(|c| c.id != id);
        if s.containers.len() == before {
            return Err(Error::Engine {
                message: format!("remove container: no container `{id}` (fake engine)"),
                hint: None,
            });
        }
        Ok(())
    }

    fn export_image(&self, image: &str, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        self.point("export_image", image, None)?;
        let tar = {
            let mut s = self.state.lock().unwrap();
            let img = s.resolve(image).cloned().ok_or_else(|| no_image(image))?;
            let tags: Vec<String> = if img.tags.contains(image) {
                vec![image.to_owned()]
            } else {
                img.tags.iter().cloned().collect()
            };
            s.tars
                .entry(format!("{} {}", img.id, tags.join(",")))
                .or_insert_with(|| image_tar(&img.id, &tags))
                .clone()
        };
        let mut n = 0u64;
        for (i, piece) in tar.chunks(PIECE).enumerate() {
            self.interrupted()?;
            sink(piece)?;
            n += piece.len() as u64;
            self.point("export_image", image, Some(i + 1))?;
        }
        Ok(n)
    }

    fn run_once(
        &self,
        image: &str,
        cmd: &[String],
        _labels: &BTreeMap<String, String>,
        _timeout: Duration,
    ) -> Result<(i64, String, String)> {
        self.point("run_once", image, None)?;
        let id = self.id_of(image)?;
        self.interrupted()?;
        let c = self
            .rec
            .find("run_once", |c| {
                c.cmd.as_deref() == Some(cmd)
                    && c.image
                        .as_deref()
                        .and_then(|i| self.rec.id_of(i))
                        .as_deref()
                        == Some(id.as_str())
            })
            .ok_or_else(|| unrecorded(format!("run_once of `{}` in {id}", cmd.join(" "))))?;
        let r: super::recording::RunOnce = serde_json::from_value(Self::answer(c)?.clone())
            .map_err(|e| unrecorded(format!("run_once ({e})")))?;
        Ok((r.code, r.stdout, r.stderr))
    }

    fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.point("image_id", image, None)?;
        Ok(self
            .state
            .lock()
            .unwrap()
            .resolve(image)
            .map(|i| i.id.clone()))
    }

    fn image_size(&self, image: &str) -> Result<u64> {
        self.point("image_size", image, None)?;
        let id = self.id_of(image)?;
        let c = self
            .rec
            .find("image_size", |c| {
                c.image
                    .as_deref()
                    .and_then(|i| self.rec.id_of(i))
                    .as_deref()
                    == Some(id.as_str())
            })
            .ok_or_else(|| unrecorded(format!("image_size of {id}")))?;
        Self::answer(c)?
            .as_u64()
            .ok_or_else(|| unrecorded(format!("image_size of {id} (not a number)")))
    }

    fn remove_image(&self, image: &str) -> Result<()> {
        self.point("remove_image", image, None)?;
        let mut s = self.state.lock().unwrap();
        let id = s
            .resolve(image)
            .map(|i| i.id.clone())
            .ok_or_else(|| Error::Engine {
                message: format!("remove image `{image}`: No such image (fake engine)"),
                hint: None,
            })?;
        let i = s.images.iter_mut().find(|i| i.id == id).expect("resolved");
        // `docker rmi -f TAG` untags; the image goes with its last tag, or when named by id.
        if i.tags.remove(image) && !i.tags.is_empty() {
            return Ok(());
        }
        s.images.retain(|i| i.id != id);
        Ok(())
    }

    fn leftovers(&self, label: &str) -> Result<Vec<Leftover>> {
        self.point("leftovers", label, None)?;
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (label, None),
        };
        let has = |l: &BTreeMap<String, String>| {
            l.get(key)
                .is_some_and(|v| value.is_none_or(|want| v == want))
        };
        let s = self.state.lock().unwrap();
        let mut out: Vec<Leftover> = s
            .containers
            .iter()
            .filter(|c| has(&c.labels))
            .map(|c| Leftover {
                kind: super::LeftoverKind::Container,
                id: c.id.clone(),
                labels: c.labels.clone(),
                tags: Vec::new(),
            })
            .collect();
        out.extend(
            s.images
                .iter()
                .filter(|i| has(&i.labels))
                .map(|i| Leftover {
                    kind: super::LeftoverKind::Image,
                    id: i.id.clone(),
                    labels: i.labels.clone(),
                    tags: i.tags.iter().cloned().collect(),
                }),
        );
        Ok(out)
    }

    fn remove_leftover(&self, l: &Leftover) -> Result<()> {
        match l.kind {
            super::LeftoverKind::Container => self.remove_container(&l.id),
            super::LeftoverKind::Image => self.remove_image(&l.id),
        }
    }

    /// Reads the whole archive first (as the engine does), then registers the image of its
    /// manifest: a broken or short archive loads nothing.
    fn load_image(&self, mut reader: Box<dyn std::io::Read + Send>) -> Result<Vec<String>> {
        self.point("load_image", "", None)?;
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map_err(|e| Error::Engine {
            message: format!("load: {e}"),
            hint: None,
        })?;
        let (id, tags) = loaded_image(&all).map_err(|e| Error::Engine {
            message: format!("load: {e}"),
            hint: None,
        })?;
        let mut s = self.state.lock().unwrap();
        for i in &mut s.images {
            i.tags.retain(|t| !tags.contains(t));
        }
        match s.images.iter_mut().find(|i| i.id == id) {
            Some(i) => i.tags.extend(tags.iter().cloned()),
            None => s.images.push(Image {
                id: id.clone(),
                tags: tags.iter().cloned().collect(),
                labels: BTreeMap::new(),
            }),
        }
        Ok(tags
            .iter()
            .map(|t| format!("Loaded image: {t}"))
            .chain(tags.is_empty().then(|| format!("Loaded image ID: {id}")))
            .collect())
    }

    /// A digest derived from the image id and the reference (no registry behind it).
    fn push_image(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
        _auth: Option<&super::RegistryAuth>,
    ) -> Result<String> {
        use sha2::Digest;
        self.point("push_image", image, None)?;
        let id = self
            .state
            .lock()
            .unwrap()
            .resolve(image)
            .map(|i| i.id.clone())
            .ok_or_else(|| Error::Engine {
                message: format!("no image `{image}` to push"),
                hint: None,
            })?;
        let h = sha2::Sha256::digest(format!("{id} {repo}:{tag}").as_bytes());
        Ok(format!("sha256:{}", crate::atomic::hex(&h)))
    }
}

impl FakeEngine {
    /// The recorded answer to `call` in the session of container `id`.
    fn session_answer(&self, call: &str, id: &str) -> Result<&Call> {
        let start = self
            .state
            .lock()
            .unwrap()
            .sessions
            .get(id)
            .copied()
            .ok_or_else(|| Error::Engine {
                message: format!("{call}: no container `{id}` (fake engine)"),
                hint: None,
            })?;
        self.rec.containers[start + 1..]
            .iter()
            .take_while(|c| c.call != "create_and_start")
            .find(|c| c.call == call)
            .ok_or_else(|| unrecorded(format!("`{call}` of container `{id}`")))
    }
}

/// Whether two commands run the same program: their first two words (`python3` and the probe's
/// script, or `-m`); the probe's last word, its configuration, says whether a GPU was given,
/// and a recording made on a host without one is replayed as if one were.
fn same_program(a: &[String], b: &[String]) -> bool {
    a.len() >= 2 && b.len() >= 2 && a[..2] == b[..2]
}

/// A recorded answer as `T`.
fn answer_as<T: serde::de::DeserializeOwned>(c: &Call) -> Result<T> {
    serde_json::from_value(FakeEngine::answer(c)?.clone())
        .map_err(|e| unrecorded(format!("{} ({e})", c.call)))
}

impl super::Containers for FakeEngine {
    fn create_and_start(&self, spec: &super::ContainerSpec) -> Result<String> {
        self.point("create_and_start", &spec.image, None)?;
        let image = self.id_of(&spec.image)?;
        let start = self
            .rec
            .containers
            .iter()
            .position(|c| {
                c.call == "create_and_start"
                    && c.image.as_deref() == Some(spec.image.as_str())
                    && c.cmd
                        .as_deref()
                        .is_some_and(|cmd| same_program(cmd, &spec.cmd))
            })
            .ok_or_else(|| unrecorded(format!("a container of `{}`", spec.image)))?;
        Self::answer(&self.rec.containers[start])?;
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("fake-container-{}", s.next);
        s.containers.push(Container {
            id: id.clone(),
            image,
            labels: spec.labels.clone(),
        });
        s.sessions.insert(id.clone(), start);
        Ok(id)
    }

    fn published(&self, id: &str, _port: u16) -> Result<(String, u16)> {
        self.point("published", id, None)?;
        answer_as(self.session_answer("published", id)?)
    }

    fn follow(
        &self,
        id: &str,
        _deadline: Option<std::time::Instant>,
        cancel: Cancel,
        sink: &mut dyn FnMut(super::Stream, &[u8]) -> super::Follow,
    ) -> Result<super::LogEnd> {
        self.point("follow", id, None)?;
        let followed: super::recording::Followed = answer_as(self.session_answer("follow", id)?)?;
        for (i, p) in followed.pieces.iter().enumerate() {
            if cancel.requested() {
                return Ok(super::LogEnd::Cancelled);
            }
            let bytes = match (&p.text, &p.hex) {
                (Some(t), _) => t.as_bytes().to_vec(),
                (None, Some(h)) => unhex(h),
                (None, None) => Vec::new(),
            };
            if sink(p.stream, &bytes) == super::Follow::Stop {
                return Ok(super::LogEnd::Stopped);
            }
            self.point("follow", id, Some(i + 1))?;
        }
        if cancel.requested() {
            return Ok(super::LogEnd::Cancelled);
        }
        Ok(followed.end)
    }

    fn state(&self, id: &str) -> Result<super::State> {
        self.point("state", id, None)?;
        answer_as(self.session_answer("state", id)?)
    }

    fn stop(&self, id: &str, _grace: Duration) -> Result<super::State> {
        self.point("stop", id, None)?;
        answer_as(self.session_answer("stop", id)?)
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.point("remove", id, None)?;
        let mut s = self.state.lock().unwrap();
        s.containers.retain(|c| c.id != id);
        Ok(())
    }

    fn exists(&self, id: &str) -> Result<bool> {
        self.point("exists", id, None)?;
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .iter()
            .any(|c| c.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> FakeEngine {
        FakeEngine::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine/good"))
    }

    #[test]
    fn the_synthetic_export_is_an_image_forge_reads() {
        let tar = image_tar("sha256:abc", &["x:latest".into()]);
        let mut r = crate::check::imagefs::ImageReader::new();
        r.feed(&tar);
        let fs = r.finish().expect("a docker-save tar forge reads");
        assert_eq!((fs.layers, fs.tar_bytes), (1, tar.len() as u64));
        assert_eq!(tar, image_tar("sha256:abc", &["x:latest".into()]));
        assert_ne!(tar, image_tar("sha256:abd", &["x:latest".into()]));
    }

    #[test]
    fn it_holds_what_the_recorded_run_found_and_answers_as_recorded() {
        let f = good();
        let base = f.image_id("forge-test-base:trixie").unwrap().unwrap();
        assert!(base.starts_with("sha256:"));
        assert_eq!(f.image_id("forge-fixture-good:latest").unwrap(), None);
        assert!(f.info().unwrap().buildkit);
        // a container of the base opens and goes
        let c = f.open_container(&base, &BTreeMap::new()).unwrap();
        assert_eq!(f.containers().len(), 1);
        f.remove_container(&c).unwrap();
        assert!(f.containers().is_empty());
        assert!(f.remove_container(&c).is_err());
        assert!(f.open_container("nope:latest", &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_build_replays_honours_the_sink_and_the_token_and_tags_its_image() {
        let f = good();
        let spec = |target: &str, tag: &str| BuildSpec {
            context_tar: Vec::new(),
            context_dirs: Vec::new(),
            dockerfile: "Dockerfile".into(),
            target: target.into(),
            tag: tag.into(),
            build_args: BTreeMap::new(),
            labels: BTreeMap::from([("forge.temp".into(), "1".into())]),
            builder: super::super::BuilderKind::BuildKit,
        };
        let total = f
            .recorded()
            .builds
            .iter()
            .find(|b| b.target == "wheels")
            .unwrap()
            .events
            .len();
        let mut seen = 0;
        let end = f.build(&spec("wheels", "w:1"), &mut |_| {
            seen += 1;
            Flow::Continue
        });
        assert!(
            matches!(end, Ok(BuildEnd::Succeeded { image_id: Some(_) })),
            "{end:?}"
        );
        assert_eq!(seen, total);
        assert_eq!(f.leftovers("forge.temp").unwrap().len(), 1);
        f.remove_image("w:1").unwrap();
        assert!(f.leftovers("forge.temp").unwrap().is_empty());
        // the sink cancels at its third event: nothing more is delivered, nothing is built
        let mut seen = 0;
        let end = f.build(&spec("wheels", "w:2"), &mut |_| {
            seen += 1;
            if seen == 3 {
                Flow::Cancel
            } else {
                Flow::Continue
            }
        });
        assert_eq!(end.unwrap(), BuildEnd::Cancelled);
        assert_eq!(seen, 3);
        assert_eq!(f.image_id("w:2").unwrap(), None);
        // the token, triggered after event 2: interrupted before event 3
        f.cancel_after_event("wheels", 2);
        let mut seen = 0;
        let end = f.build(&spec("wheels", "w:3"), &mut |_| {
            seen += 1;
            Flow::Continue
        });
        assert_eq!(end.unwrap(), BuildEnd::Interrupted);
        assert_eq!(seen, 2);
        assert_eq!(f.image_id("w:3").unwrap(), None);
        // a failing call
        f.new_cancel();
        f.at_call(
            "build",
            Some("wheels"),
            1,
            Act::Fail("connection reset".into()),
        );
        let e = f
            .build(&spec("wheels", "w:4"), &mut |_| Flow::Continue)
            .unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        // an unrecorded target is an error, not an invented answer
        assert!(
            f.build(&spec("nope", "n:1"), &mut |_| Flow::Continue)
                .is_err()
        );
    }
}
