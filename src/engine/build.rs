//! Builds through the Engine API: BuildKit (with a session, needed for cache mounts) or the
//! classic builder. The stream is turned into forge's [`BuildEvent`]s; dropping it (on a fatal
//! finding or Ctrl-C) closes the request, which makes the engine cancel the build.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures_util::StreamExt;

use super::engine_err;
use crate::cancel::Cancel;
use crate::error::Result;

/// Which builder runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    /// BuildKit through the API with a session.
    BuildKit,
    /// The engine's classic builder.
    Classic,
}

impl BuilderKind {
    /// Its name, as serialised (`buildkit`, `classic`).
    pub fn name(self) -> &'static str {
        match self {
            BuilderKind::BuildKit => "buildkit",
            BuilderKind::Classic => "classic",
        }
    }
}

/// One build request.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The context as an uncompressed tar (the Dockerfile inside it).
    pub context_tar: Vec<u8>,
    /// Directories appended to the context as it is sent (path in the context, directory): read
    /// and sent a piece at a time, so a multi-GB one is never held in memory.
    pub context_dirs: Vec<(String, std::path::PathBuf)>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// Stage to build.
    pub target: String,
    /// Tag of the result.
    pub tag: String,
    /// Build args.
    pub build_args: BTreeMap<String, String>,
    /// Labels of the result.
    pub labels: BTreeMap<String, String>,
    /// Builder.
    pub builder: BuilderKind,
}

/// What the build says.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// A step started (BuildKit vertex or classic `Step n/m`).
    Step {
        /// Its number in this build (BuildKit: order of first appearance).
        id: u32,
        /// Its name (`[torch-build 6/7] RUN ...`).
        name: &'a str,
        /// Served from cache.
        cached: bool,
    },
    /// Output bytes of a step (any split: partial lines, several lines).
    Output {
        /// The step (0 for the classic builder's stream).
        id: u32,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// A step finished (BuildKit only: its vertex's engine-side start and completion times, in
    /// seconds since the Unix epoch).
    StepDone {
        /// The step.
        id: u32,
        /// When the engine started it.
        started: f64,
        /// When the engine completed it.
        completed: f64,
    },
    /// A step failed.
    StepError {
        /// The step.
        id: u32,
        /// BuildKit's error text.
        error: &'a str,
    },
}

/// What the sink wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Cancel the build now.
    Cancel,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEnd {
    /// The image was built.
    Succeeded {
        /// Its id, when the engine said.
        image_id: Option<String>,
    },
    /// The engine reported an error (a failing step, a bad Dockerfile).
    Failed {
        /// The engine's message.
        message: String,
    },
    /// The sink cancelled it.
    Cancelled,
    /// SIGINT or SIGTERM (the cancel token).
    Interrupted,
}

fn session_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("forge-{}-{t:x}", std::process::id())
}

/// Run the build; returns when it ends or is cancelled (the stream is dropped on return).
pub async fn run(
    docker: &bollard::Docker,
    spec: &BuildSpec,
    sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    cancel: Cancel,
) -> Result<BuildEnd> {
    let buildkit = spec.builder == BuilderKind::BuildKit;
    let options = BuildImageOptions {
        dockerfile: spec.dockerfile.clone(),
        t: Some(spec.tag.clone()),
        target: spec.target.clone(),
        rm: true,
        forcerm: true,
        buildargs: Some(
            spec.build_args
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        ),
        labels: Some(spec.labels.clone().into_iter().collect::<HashMap<_, _>>()),
        version: if buildkit {
            BuilderVersion::BuilderBuildKit
        } else {
            BuilderVersion::BuilderV1
        },
        session: buildkit.then(session_id),
        ..Default::default()
    };
    let body = if spec.context_dirs.is_empty() {
        bollard::body_full(spec.context_tar.clone().into())
    } else {
        bollard::body_try_stream(context_stream(spec))
    };
    let mut stream = docker.build_image(options, None, Some(body));
    let mut decoder = Decoder::default();
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = cancel.wait() => return Ok(BuildEnd::Interrupted),
        };
        let Some(item) = item else { break };
        let info: BuildInfo = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Ok(BuildEnd::Failed { message: error });
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Ok(BuildEnd::Failed { message });
            }
            Err(e) => return Err(engine_err("build stream", e)),
        };
        if let Some(end) = decoder.decode(&info, sink) {
            return Ok(end);
        }
    }
    Ok(BuildEnd::Succeeded {
        image_id: decoder.image_id,
    })
}

/// The size of one piece of a streamed context, and how many may wait to be sent.
const PIECE: usize = 1 << 20;
const PIECES_QUEUED: usize = 4;

/// Sends what it is given in [`PIECE`]-sized pieces down a bounded channel (blocking when the
/// engine reads slower than the disk).
struct PieceWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
}

impl std::io::Write for PieceWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::other("the engine stopped reading the build context"))
    }
}

/// The context as a stream: `context_tar`'s entries, then every file of `context_dirs`, packed
/// by a thread as the engine reads (memory: a few pieces, whatever the directories hold).
fn context_stream(
    spec: &BuildSpec,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(PIECES_QUEUED);
    let small = spec.context_tar.clone();
    let dirs = spec.context_dirs.clone();
    std::thread::spawn(move || {
        let err_tx = tx.clone();
        let run = move || -> std::io::Result<()> {
            let mut w = PieceWriter {
                buf: Vec::with_capacity(PIECE),
                tx,
            };
            // The small tar's entries without its end-of-archive blocks (two zero records).
            let end = small.len().saturating_sub(1024);
            std::io::Write::write_all(&mut w, &small[..end])?;
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(true);
            for (at, dir) in &dirs {
                b.append_dir_all(at, dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
                })?;
            }
            let mut w = b.into_inner()?;
            std::io::Write::flush(&mut w)
        };
        if let Err(e) = run() {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// What [`with_one_retry`] looks for: BuildKit's last step, after which the image exists.
const EXPORT_STEP: &str = "exporting to image";

/// Run `attempt`, and once more when its stream broke after the image was exported.
///
/// The engine's BuildKit stream sometimes ends short once the build is done (seen on Docker
/// 20.10: "bytes remaining on stream" right after `exporting to image`): the image is built but
/// its id was never received. Then the same build is asked for again, once: the engine's cache
/// answers at once with the same image, and the log says so. A stream that breaks before the
/// export (an engine gone mid-build) stays an error, and nothing is retried after a cancel.
pub fn with_one_retry(
    mut attempt: impl FnMut(&mut dyn FnMut(BuildEvent<'_>) -> Flow) -> Result<BuildEnd>,
    sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    cancel: Cancel,
) -> Result<BuildEnd> {
    let mut exported = false;
    let first = attempt(&mut |ev| {
        if let BuildEvent::Step { name, .. } = &ev
            && name.contains(EXPORT_STEP)
        {
            exported = true;
        }
        sink(ev)
    });
    match first {
        Err(crate::Error::Engine { message, .. })
            if exported && !cancel.requested() && message.starts_with("build stream") =>
        {
            let note = format!(
                "forge: the engine's build stream ended short after the image was exported ({message}); asking the engine again (its cache holds the image)\n"
            );
            if sink(BuildEvent::Output {
                id: 0,
                bytes: note.as_bytes(),
            }) == Flow::Cancel
            {
                return Ok(BuildEnd::Cancelled);
            }
            attempt(sink)
        }
        other => other,
    }
}

/// Turns the engine's build messages into [`BuildEvent`]s: BuildKit vertices numbered in order
/// of first appearance, each step announced once, the classic builder's `Step n/m` lines.
#[derive(Debug, Default)]
pub struct Decoder {
    vertices: HashMap<String, u32>,
    announced: HashMap<u32, bool>,
    completed: std::collections::HashSet<u32>,
    /// The image id, when the engine said.
    pub image_id: Option<String>,
}

impl Decoder {
    /// One message of the build stream (one JSON object of `/build`'s answer, BuildKit's
    /// status already decoded). `Some` when it ends the build (a failure, or the sink cancelled).
    pub fn decode(
        &mut self,
        info: &BuildInfo,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Option<BuildEnd> {
        if let Some(d) = &info.error_detail
            && let Some(m) = &d.message
        {
            return Some(BuildEnd::Failed { message: m.clone() });
        }
        let mut flow = Flow::Continue;
        match &info.aux {
            Some(BuildInfoAux::BuildKit(status)) => {
                for v in &status.vertexes {
                    let next = self.vertices.len() as u32 + 1;
                    let id = *self.vertices.entry(v.digest.clone()).or_insert(next);
                    if v.started.is_some() && !self.announced.get(&id).copied().unwrap_or(false) {
                        self.announced.insert(id, true);
                        if sink(BuildEvent::Step {
                            id,
                            name: &v.name,
                            cached: v.cached,
                        }) == Flow::Cancel
                        {
                            flow = Flow::Cancel;
                        }
                    }
                    if let (Some(a), Some(b)) = (&v.started, &v.completed)
                        && self.completed.insert(id)
                        && sink(BuildEvent::StepDone {
                            id,
                            started: a.seconds as f64 + f64::from(a.nanos) / 1e9,
                            completed: b.seconds as f64 + f64::from(b.nanos) / 1e9,
                        }) == Flow::Cancel
                    {
                        flow = Flow::Cancel;
                    }
                    if !v.error.is_empty()
                        && sink(BuildEvent::StepError {
                            id,
                            error: &v.error,
                        }) == Flow::Cancel
                    {
                        flow = Flow::Cancel;
                    }
                }
                for l in &status.logs {
                    let next = self.vertices.len() as u32 + 1;
                    let id = *self.vertices.entry(l.vertex.clone()).or_insert(next);
                    if sink(BuildEvent::Output { id, bytes: &l.msg }) == Flow::Cancel {
                        flow = Flow::Cancel;
                    }
                }
            }
            Some(BuildInfoAux::Default(img)) => self.image_id = img.id.clone(),
            None => {}
        }
        if let Some(text) = &info.stream {
            if let Some(rest) = text.strip_prefix("Step ") {
                let id = rest
                    .split('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                if sink(BuildEvent::Step {
                    id,
                    name: text.trim_end(),
                    cached: false,
                }) == Flow::Cancel
                {
                    flow = Flow::Cancel;
                }
            }
            if sink(BuildEvent::Output {
                id: 0,
                bytes: text.as_bytes(),
            }) == Flow::Cancel
            {
                flow = Flow::Cancel;
            }
        }
        (flow == Flow::Cancel).then_some(BuildEnd::Cancelled)
    }

    /// [`Decoder::decode`] of one raw JSON message as the engine sends it (what the fuzzer and
    /// recorded streams feed); an error when it is not a build message.
    pub fn decode_json(
        &mut self,
        json: &[u8],
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> std::result::Result<Option<BuildEnd>, String> {
        let info: BuildInfo = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        Ok(self.decode(&info, sink))
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    fn broken() -> crate::Error {
        crate::Error::Engine {
            message: "build stream: bytes remaining on stream".into(),
            hint: None,
        }
    }

    /// (calls made, result, output the sink saw)
    fn run(steps: &[&str], cancel: Cancel) -> (u32, Result<BuildEnd>, String) {
        let mut calls = 0;
        let mut seen = String::new();
        let r = with_one_retry(
            |sink| {
                calls += 1;
                if calls == 1 {
                    for (i, s) in steps.iter().enumerate() {
                        sink(BuildEvent::Step {
                            id: i as u32 + 1,
                            name: s,
                            cached: true,
                        });
                    }
                    Err(broken())
                } else {
                    Ok(BuildEnd::Succeeded {
                        image_id: Some("sha256:abc".into()),
                    })
                }
            },
            &mut |ev| {
                if let BuildEvent::Output { bytes, .. } = ev {
                    seen.push_str(&String::from_utf8_lossy(bytes));
                }
                Flow::Continue
            },
            cancel,
        );
        (calls, r, seen)
    }

    #[test]
    fn a_stream_broken_after_the_export_is_asked_again_once() {
        let (calls, r, seen) = run(
            &["[base 1/2] FROM x", "exporting to image"],
            Cancel::detached(),
        );
        assert_eq!(calls, 2);
        assert_eq!(
            r.unwrap(),
            BuildEnd::Succeeded {
                image_id: Some("sha256:abc".into())
            }
        );
        assert!(
            seen.contains("ended short after the image was exported"),
            "{seen}"
        );
    }

    #[test]
    fn a_stream_broken_before_the_export_or_after_a_cancel_is_an_error() {
        let (calls, r, _) = run(
            &["[base 1/2] FROM x", "[build 2/2] RUN make"],
            Cancel::detached(),
        );
        assert_eq!(calls, 1);
        assert!(r.is_err());
        let c = Cancel::detached();
        c.request(libc::SIGINT);
        let (calls, r, _) = run(&["exporting to image"], c);
        assert_eq!(calls, 1);
        assert!(r.is_err());
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    /// A context with a directory streamed after the small tar is one whole tar holding both,
    /// sent in pieces no larger than [`PIECE`] (a big directory is never held whole).
    #[test]
    fn a_streamed_context_is_one_tar_with_the_small_files_and_the_directory() {
        let tmp = tempfile::Builder::new()
            .prefix("forge-ctx-stream-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let big: Vec<u8> = (0..3 * PIECE + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("sub/big.whl"), &big).unwrap();
        let small = crate::ops::drive::context_tar(
            None,
            "FROM scratch\n",
            ".forge.Dockerfile",
            &[(".forge/lock.txt".into(), b"a==1\n".to_vec())],
        )
        .unwrap();
        let spec = BuildSpec {
            context_tar: small,
            context_dirs: vec![(".forge/wheelhouse".into(), dir.to_path_buf())],
            dockerfile: ".forge.Dockerfile".into(),
            target: String::new(),
            tag: String::new(),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            builder: BuilderKind::BuildKit,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pieces: Vec<bytes::Bytes> = rt.block_on(async {
            context_stream(&spec)
                .map(|p| p.unwrap())
                .collect::<Vec<_>>()
                .await
        });
        assert!(pieces.len() > 3, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= PIECE + 64 * 1024));
        let all: Vec<u8> = pieces.concat();
        let mut a = tar::Archive::new(all.as_slice());
        let mut seen = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            seen.insert(p, v);
        }
        assert_eq!(seen[".forge/lock.txt"], b"a==1\n");
        assert_eq!(seen[".forge.Dockerfile"], b"FROM scratch\n");
        assert_eq!(seen[".forge/wheelhouse/sub/big.whl"], big);
    }
}
