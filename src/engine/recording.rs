//! A recording of what a real engine answered (`__FORGE_TEST_RECORD_ENGINE=DIR`), for the scripted fake
//! engine the pipeline's tests replay. [`Recording`] wraps an engine and passes every call
//! through, writing into DIR:
//!
//! - `build-<target>.jsonl` for each build: a [`Line::Build`] header, then every event in forge's
//!   own vocabulary ([`Line::Step`], [`Line::Output`], [`Line::StepError`]) as the sink saw it,
//!   then how it ended ([`Line::End`], with the image id).
//! - `calls.jsonl`: every other call in order, with its arguments and the engine's answer
//!   ([`Call`]): `info`, `image_id`, `image_size`, `open_container`, `copy_out` (the tar it
//!   wrote kept as `copy-<n>.tar`), `remove_container`, `remove_image`, `run_once` (code, stdout,
//!   stderr), and `export_image` with the byte count only (the stream itself, hundreds of MB, is
//!   not kept: the fake synthesises a small docker-save tar).
//! - `containers.jsonl`: the long-lived containers' calls ([`super::Containers`], phases 5-7, and
//!   `forge runtime`/`forge serve`) in order: `create_and_start` (the image; the id), `follow`
//!   (every piece of the log as the sink saw it, and how following ended: [`Followed`]),
//!   `published`, `state`, `stop`, `remove`, `exists`.
//!
//! Unset, nothing is wrapped: the engine is used directly.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Leftover;
use super::{
    BuildEnd, BuildEvent, BuildSpec, BuilderKind, ContainerSpec, Containers, Engine, EngineInfo,
    Flow, Follow, LogEnd, State as ContainerState, Stream,
};
use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// The variable naming the directory to record into.
pub const ENV: &str = "__FORGE_TEST_RECORD_ENGINE";

/// One line of a `build-<target>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// The request (first line).
    Build {
        /// The stage built.
        target: String,
        /// The tag asked for.
        tag: String,
        /// The builder.
        builder: BuilderKind,
    },
    /// [`BuildEvent::Step`].
    Step {
        /// Step number.
        id: u32,
        /// Its name.
        name: String,
        /// Served from cache.
        cached: bool,
    },
    /// [`BuildEvent::Output`]: `text` when the bytes are UTF-8, else `hex`.
    Output {
        /// Step number.
        id: u32,
        /// The bytes as text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The bytes in hex, when they are not UTF-8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    /// [`BuildEvent::StepDone`].
    StepDone {
        /// Step number.
        id: u32,
        /// Engine-side start, seconds since the epoch.
        started: f64,
        /// Engine-side completion.
        completed: f64,
    },
    /// [`BuildEvent::StepError`].
    StepError {
        /// Step number.
        id: u32,
        /// The engine's text.
        error: String,
    },
    /// How the build ended (last line).
    End(End),
}

impl Line {
    /// The line for one event.
    pub fn of(ev: &BuildEvent<'_>) -> Line {
        match *ev {
            BuildEvent::Step { id, name, cached } => Line::Step {
                id,
                name: name.to_owned(),
                cached,
            },
            BuildEvent::Output { id, bytes } => match std::str::from_utf8(bytes) {
                Ok(t) => Line::Output {
                    id,
                    text: Some(t.to_owned()),
                    hex: None,
                },
                Err(_) => Line::Output {
                    id,
                    text: None,
                    hex: Some(crate::atomic::hex(bytes)),
                },
            },
            BuildEvent::StepDone {
                id,
                started,
                completed,
            } => Line::StepDone {
                id,
                started,
                completed,
            },
            BuildEvent::StepError { id, error } => Line::StepError {
                id,
                error: error.to_owned(),
            },
        }
    }
}

/// [`BuildEnd`] as recorded, or the error the build call returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// [`BuildEnd::Succeeded`].
    Succeeded {
        /// The image id the engine gave.
        image_id: Option<String>,
    },
    /// [`BuildEnd::Failed`].
    Failed {
        /// The engine's message.
        message: String,
    },
    /// [`BuildEnd::Cancelled`]: the sink (forge's monitor) cancelled it after the last event.
    Cancelled,
    /// [`BuildEnd::Interrupted`].
    Interrupted,
    /// The call returned an error.
    Error {
        /// Its text.
        message: String,
    },
}

impl End {
    /// The recorded end of `r`.
    pub fn of(r: &Result<BuildEnd>) -> End {
        match r {
            Ok(BuildEnd::Succeeded { image_id }) => End::Succeeded {
                image_id: image_id.clone(),
            },
            Ok(BuildEnd::Failed { message }) => End::Failed {
                message: message.clone(),
            },
            Ok(BuildEnd::Cancelled) => End::Cancelled,
            Ok(BuildEnd::Interrupted) => End::Interrupted,
            Err(e) => End::Error {
                message: e.to_string(),
            },
        }
    }
}

/// One line of `calls.jsonl`: a call, its arguments, and the answer (`ok`) or the error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The method (`image_id`, `copy_out`, ...).
    pub call: String,
    /// The image asked about; for `copy_out` and `remove_container`, the image the container
    /// was opened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `copy_out`'s path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `run_once`'s command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `copy_out`: the tar it wrote, in the recording's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The answer (`null` for `None` or `()`).
    #[serde(default)]
    pub ok: serde_json::Value,
    /// The error, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `run_once`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOnce {
    /// Exit code.
    pub code: i64,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// One piece of a followed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// stdout or stderr.
    pub stream: Stream,
    /// The bytes as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes in hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Piece {
    /// The piece of `bytes`.
    pub fn of(stream: Stream, bytes: &[u8]) -> Piece {
        match std::str::from_utf8(bytes) {
            Ok(t) => Piece {
                stream,
                text: Some(t.to_owned()),
                hex: None,
            },
            Err(_) => Piece {
                stream,
                text: None,
                hex: Some(crate::atomic::hex(bytes)),
            },
        }
    }
}

/// `follow`'s answer: the pieces the sink saw, in order, and how following ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// The log's pieces.
    pub pieces: Vec<Piece>,
    /// How following ended.
    pub end: LogEnd,
}

struct State {
    calls: std::fs::File,
    containers: HashMap<String, String>,
    builds: HashMap<String, usize>,
    copies: usize,
}

/// An engine whose answers are written down as they pass (see the module's text).
pub struct Recording<'a> {
    inner: &'a dyn Engine,
    dir: PathBuf,
    state: Mutex<State>,
    boxes: Option<Boxes<'a>>,
}

/// The long-lived containers' part of a [`Recording`], into `containers.jsonl`.
pub struct Boxes<'a> {
    inner: &'a dyn Containers,
    path: PathBuf,
    out: Mutex<std::fs::File>,
    images: Mutex<HashMap<String, String>>,
}

impl<'a> Recording<'a> {
    /// Record `inner`'s answers into `dir`, which must not hold a recording already.
    pub fn new(inner: &'a dyn Engine, dir: &Path) -> Result<Recording<'a>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let calls = dir.join("calls.jsonl");
        if calls.exists() {
            return Err(Error::usage(
                format!("{ENV}: `{}` already holds a recording", dir.display()),
                Some("remove it, or point the variable at an empty directory"),
            ));
        }
        let boxes = match inner.containers() {
            None => None,
            Some(c) => {
                let path = dir.join("containers.jsonl");
                let out =
                    std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
                Some(Boxes {
                    inner: c,
                    path,
                    out: Mutex::new(out),
                    images: Mutex::new(HashMap::new()),
                })
            }
        };
        Ok(Recording {
            inner,
            boxes,
            dir: dir.to_owned(),
            state: Mutex::new(State {
                calls: std::fs::File::create(&calls).map_err(|e| Error::io("create", &calls, e))?,
                containers: HashMap::new(),
                builds: HashMap::new(),
                copies: 0,
            }),
        })
    }

    /// A recorder of `inner` when [`ENV`] is set (and not empty), else `None`. A test hook:
    /// debug builds only (`scripts/record-engine.sh` builds one), so a stray variable never makes
    /// a user's release build write its engine's answers to disk.
    pub fn from_env(inner: &'a dyn Engine) -> Result<Option<Recording<'a>>> {
        if !cfg!(debug_assertions) {
            return Ok(None);
        }
        match std::env::var_os(ENV) {
            Some(d) if !d.is_empty() => Recording::new(inner, Path::new(&d)).map(Some),
            _ => Ok(None),
        }
    }

    /// The containers' part, when the engine starts containers.
    pub fn boxes(&self) -> Option<&Boxes<'a>> {
        self.boxes.as_ref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note<T: Serialize, E: std::fmt::Display>(
        &self,
        mut call: Call,
        r: &std::result::Result<T, E>,
    ) -> Result<()> {
        match r {
            Ok(v) => call.ok = serde_json::to_value(v).expect("answers serialize"),
            Err(e) => call.error = Some(e.to_string()),
        }
        let mut line = serde_json::to_vec(&call).expect("calls serialize");
        line.push(b'\n');
        let path = self.dir.join("calls.jsonl");
        self.state()
            .calls
            .write_all(&line)
            .map_err(|e| Error::io("write", &path, e))
    }

    fn call(name: &str, image: Option<&str>) -> Call {
        Call {
            call: name.to_owned(),
            image: image.map(str::to_owned),
            ..Call::default()
        }
    }
}

fn write_line(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

impl Engine for Recording<'_> {
    fn containers(&self) -> Option<&dyn super::Containers> {
        self.boxes.as_ref().map(|b| b as &dyn Containers)
    }

    fn remote_host(&self) -> Option<String> {
        self.inner.remote_host()
    }

    fn info(&self) -> Result<EngineInfo> {
        let r = self.inner.info();
        self.note(Self::call("info", None), &r)?;
        r
    }

    fn build(
        &self,
        spec: &BuildSpec,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Result<BuildEnd> {
        let name = {
            let mut s = self.state();
            let n = s.builds.entry(spec.target.clone()).or_insert(0);
            *n += 1;
            match *n {
                1 => format!("build-{}.jsonl", spec.target),
                n => format!("build-{}-{n}.jsonl", spec.target),
            }
        };
        let path = self.dir.join(name);
        let file = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut failed = write_line(
            &mut out,
            &Line::Build {
                target: spec.target.clone(),
                tag: spec.tag.clone(),
                builder: spec.builder,
            },
        )
        .err();
        let r = self.inner.build(spec, &mut |ev| {
            if failed.is_none() {
                failed = write_line(&mut out, &Line::of(&ev)).err();
            }
            sink(ev)
        });
        let end = write_line(&mut out, &Line::End(End::of(&r))).and_then(|()| out.flush());
        if let Some(e) = failed.or(end.err()) {
            return Err(Error::io("write", &path, e));
        }
        r
    }

    fn open_container(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<String> {
        let r = self.inner.open_container(image, labels);
        if let Ok(id) = &r {
            self.state().containers.insert(id.clone(), image.to_owned());
        }
        self.note(Self::call("open_container", Some(image)), &r)?;
        r
    }

    fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<Option<u64>> {
        let r = self.inner.copy_out(id, path, dest);
        let (image, n) = {
            let mut s = self.state();
            s.copies += 1;
            (s.containers.get(id).cloned(), s.copies)
        };
        let mut call = Call {
            path: Some(path.to_owned()),
            ..Self::call("copy_out", image.as_deref())
        };
        if let Ok(Some(_)) = &r {
            let name = format!("copy-{n}.tar");
            let kept = self.dir.join(&name);
            std::fs::copy(dest, &kept).map_err(|e| Error::io("copy", &kept, e))?;
            call.file = Some(name);
        }
        self.note(call, &r)?;
        r
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        let r = self.inner.remove_container(id);
        let image = self.state().containers.remove(id);
        self.note(Self::call("remove_container", image.as_deref()), &r)?;
        r
    }

    fn export_image(&self, image: &str, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        let r = self.inner.export_image(image, sink);
        self.note(Self::call("export_image", Some(image)), &r)?;
        r
    }

    fn host_probe(
        &self,
        probe: &super::ProbeRun,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        self.inner.host_probe(probe, labels, timeout)
    }

    fn run_once(
        &self,
        image: &str,
        cmd: &[String],
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        let r = self.inner.run_once(image, cmd, labels, timeout);
        let answer = r.as_ref().map(|(code, stdout, stderr)| RunOnce {
            code: *code,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        });
        let call = Call {
            cmd: Some(cmd.to_vec()),
            ..Self::call("run_once", Some(image))
        };
        self.note(call, &answer)?;
        r
    }

    fn image_id(&self, image: &str) -> Result<Option<String>> {
        let r = self.inner.image_id(image);
        self.note(Self::call("image_id", Some(image)), &r)?;
        r
    }

    fn image_size(&self, image: &str) -> Result<u64> {
        let r = self.inner.image_size(image);
        self.note(Self::call("image_size", Some(image)), &r)?;
        r
    }

    fn remove_image(&self, image: &str) -> Result<()> {
        let r = self.inner.remove_image(image);
        self.note(Self::call("remove_image", Some(image)), &r)?;
        r
    }

    fn leftovers(&self, label: &str) -> Result<Vec<Leftover>> {
        let r = self.inner.leftovers(label);
        self.note(Self::call("leftovers", Some(label)), &r)?;
        r
    }

    fn remove_leftover(&self, l: &Leftover) -> Result<()> {
        let r = self.inner.remove_leftover(l);
        self.note(Self::call("remove_leftover", Some(&l.id)), &r)?;
        r
    }

    fn load_image(&self, reader: Box<dyn std::io::Read + Send>) -> Result<Vec<String>> {
        let r = self.inner.load_image(reader);
        self.note(Self::call("load_image", None), &r)?;
        r
    }
}

impl Boxes<'_> {
    fn note<T: Serialize, E: std::fmt::Display>(
        &self,
        call: &str,
        id: &str,
        r: &std::result::Result<T, E>,
    ) -> Result<()> {
        self.note_call(call, id, None, r)
    }

    fn note_call<T: Serialize, E: std::fmt::Display>(
        &self,
        call: &str,
        id: &str,
        cmd: Option<&[String]>,
        r: &std::result::Result<T, E>,
    ) -> Result<()> {
        let image = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        let mut c = Recording::call(call, image.as_deref());
        c.cmd = cmd.map(<[String]>::to_vec);
        match r {
            Ok(v) => c.ok = serde_json::to_value(v).expect("answers serialize"),
            Err(e) => c.error = Some(e.to_string()),
        }
        let mut line = serde_json::to_vec(&c).expect("calls serialize");
        line.push(b'\n');
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&line)
            .map_err(|e| Error::io("write", &self.path, e))
    }
}

impl Containers for Boxes<'_> {
    fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        let r = self.inner.create_and_start(spec);
        let id = r.as_ref().map_or("", String::as_str);
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), spec.image.clone());
        self.note_call("create_and_start", id, Some(&spec.cmd), &r)?;
        r
    }

    fn published(&self, id: &str, port: u16) -> Result<(String, u16)> {
        let r = self.inner.published(id, port);
        self.note("published", id, &r)?;
        r
    }

    fn relay_errors(&self, id: &str) -> Vec<String> {
        self.inner.relay_errors(id)
    }

    fn follow(
        &self,
        id: &str,
        deadline: Option<std::time::Instant>,
        cancel: Cancel,
        sink: &mut dyn FnMut(Stream, &[u8]) -> Follow,
    ) -> Result<LogEnd> {
        let mut pieces = Vec::new();
        let r = self.inner.follow(id, deadline, cancel, &mut |s, bytes| {
            pieces.push(Piece::of(s, bytes));
            sink(s, bytes)
        });
        let answer = r.as_ref().map(|end| Followed { pieces, end: *end });
        self.note("follow", id, &answer)?;
        r
    }

    fn state(&self, id: &str) -> Result<ContainerState> {
        let r = self.inner.state(id);
        self.note("state", id, &r)?;
        r
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<ContainerState> {
        let r = self.inner.stop(id, grace);
        self.note("stop", id, &r)?;
        r
    }

    fn remove(&self, id: &str) -> Result<()> {
        let r = self.inner.remove(id);
        self.note("remove", id, &r)?;
        r
    }

    fn exists(&self, id: &str) -> Result<bool> {
        let r = self.inner.exists(id);
        self.note("exists", id, &r)?;
        r
    }
}
