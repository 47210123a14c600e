//! The Docker engine, behind forge's own small trait. The only module that imports bollard:
//! forge types in, forge types out.
//!
//! Connection follows the Docker CLI's conventions ([`endpoint`]: `--context`, `DOCKER_HOST`,
//! `DOCKER_CONTEXT`, the config's current context), over a unix socket, tcp, tcp with TLS client
//! certificates, or ssh ([`ssh`]: `docker system dial-stdio` on the far side), and the API
//! version negotiated with the engine (Debian's engine here speaks 1.41).

mod build;
mod container;
pub mod endpoint;
#[cfg(test)]
pub mod fake;
mod files;
mod forward;
mod load;
mod probe;
pub mod recording;
mod registry;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::error::{Error, Result};

pub use build::{BuildEnd, BuildEvent, BuildSpec, BuilderKind, Decoder, Flow};
pub use container::{
    ContainerSpec, Containers, FileIn, Follow, GpuAccess, LogEnd, Running, State, Stream,
    shell_quote,
};
pub use endpoint::{Endpoint, Transport};
pub use files::{Leftover, LeftoverKind};
pub use probe::{DATA_MOUNT, DevNode, PROBE_IMAGE, ProbeRun, gpu_access_of, parse_nodes};
pub use registry::{RegistryAuth, digest_of_status};

/// Label on everything a run creates that is temporary, with the run's id.
pub const LABEL_RUN: &str = "forge.run";
/// Label with the pid of the forge process that created a temporary thing.
pub const LABEL_PID: &str = "forge.pid";
/// Label on temporary things (`forge clean` removes them once their run is dead).
pub const LABEL_TEMP: &str = "forge.temp";
/// Label on final images: the recipe's name (no per-run label, so a cached rebuild of one
/// recipe gives one image id).
pub const LABEL_RECIPE: &str = "forge.recipe";

/// Labels for a temporary thing of run `run`: run id, this process's pid, temp.
pub fn temp_labels(run: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_RUN.to_owned(), run.to_owned()),
        (LABEL_PID.to_owned(), std::process::id().to_string()),
        (LABEL_TEMP.to_owned(), "1".to_owned()),
    ])
}

/// What the engine says about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Where forge reached it (`unix:///var/run/docker.sock`).
    pub host: String,
    /// Engine version (`20.10.24+dfsg1`).
    pub version: String,
    /// API version negotiated.
    pub api_version: String,
    /// Engine OS/arch.
    pub platform: String,
    /// The engine's data root, when it reports one.
    pub root_dir: Option<String>,
    /// Total memory of the engine's machine, bytes.
    pub mem_total: Option<u64>,
    /// CPUs of the engine's machine.
    pub ncpu: Option<u64>,
    /// Whether the engine can run BuildKit builds through the API (API >= 1.39, Linux).
    pub buildkit: bool,
    /// Whether the engine is on this machine (unix socket).
    pub local: bool,
    /// How forge reached it (`ssh me@box:22 running ... (DOCKER_HOST)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The transport: `unix`, `tcp`, `tcp+tls`, `ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The engine's own ID (stable for one engine: which engine holds what).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The engine host's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The engine host's OS (`Debian GNU/Linux 13 (trixie)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The engine host's kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl EngineInfo {
    /// `box (Debian GNU/Linux 13, kernel 6.12, 16 CPUs, 64.0 GB)`: the engine's host in words.
    pub fn host_words(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.os.clone());
        parts.extend(self.kernel.as_ref().map(|k| format!("kernel {k}")));
        parts.extend(self.ncpu.map(|n| format!("{n} CPUs")));
        parts.extend(self.mem_total.map(crate::units::gb));
        format!(
            "{}{}",
            self.name.as_deref().unwrap_or("the engine's host"),
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        )
    }
}

/// What forge needs from a container engine.
pub trait Engine: Sync {
    /// Version and system information.
    fn info(&self) -> Result<EngineInfo>;
    /// Where the engine is when it is not on this machine (its URL), known even when it does not
    /// answer: the GPU host is the engine's host, so an engine that did not answer leaves it
    /// unknown rather than this machine. `None` for a local engine.
    fn remote_host(&self) -> Option<String> {
        None
    }
    /// Run a build; `sink` sees every event and may cancel it. Ctrl-C cancels it too.
    fn build(
        &self,
        spec: &BuildSpec,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Result<BuildEnd>;
    /// Write the tar of `path` inside `image`'s filesystem to `dest` (through a created, never
    /// started container labelled `labels`, removed afterwards). Returns the bytes written.
    fn export_path(
        &self,
        image: &str,
        path: &str,
        labels: &BTreeMap<String, String>,
        dest: &Path,
    ) -> Result<u64> {
        let id = self.open_container(image, labels)?;
        let copied = self.copy_out(&id, path, dest);
        let removed = self.remove_container(&id);
        let n = copied?.ok_or_else(|| Error::Engine {
            message: format!("`{path}` does not exist in `{image}`"),
            hint: None,
        })?;
        removed?;
        Ok(n)
    }
    /// Create, never start, a container of `image` labelled `labels`, to copy files out of.
    fn open_container(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<String>;
    /// Write the tar of `path` in container `id` to `dest`; `None` when the path does not exist.
    fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<Option<u64>>;
    /// Remove a container.
    fn remove_container(&self, id: &str) -> Result<()>;
    /// Stream `image` as the engine's image tar (what `docker save` writes) into `sink`, in
    /// pieces as they arrive. Returns the bytes streamed.
    fn export_image(&self, image: &str, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64>;
    /// Run `cmd` once in a new container of `image` (no devices, labelled), wait up to
    /// `timeout`, remove the container. Returns (exit code, stdout, stderr).
    fn run_once(
        &self,
        image: &str,
        cmd: &[String],
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)>;
    /// The id (`sha256:...`) of `image` (a tag or an id); `None` when the engine has no such image.
    fn image_id(&self, image: &str) -> Result<Option<String>>;
    /// The image's size in bytes, as the engine reports it.
    fn image_size(&self, image: &str) -> Result<u64>;
    /// Remove an image (forced, untagging it).
    fn remove_image(&self, image: &str) -> Result<()>;
    /// Containers and images carrying `label` (`key` or `key=value`).
    fn leftovers(&self, label: &str) -> Result<Vec<Leftover>>;
    /// Remove one leftover.
    fn remove_leftover(&self, l: &Leftover) -> Result<()>;
    /// Load an image archive (what `docker load` reads) from `reader`; returns the engine's
    /// messages (`Loaded image: ...`).
    fn load_image(&self, reader: Box<dyn std::io::Read + Send>) -> Result<Vec<String>>;
    /// Tag `image` as `repo:tag` and push it to its registry; the digest the registry gave.
    fn push_image(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<String> {
        let _ = (image, auth);
        Err(Error::Engine {
            message: format!("this engine cannot push `{repo}:{tag}`"),
            hint: Some("push with the Docker engine".into()),
        })
    }
    /// Pull `reference` (`repo@sha256:...` or `repo:tag`); the image id it gives.
    fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        let _ = auth;
        Err(Error::Engine {
            message: format!("this engine cannot pull `{reference}`"),
            hint: Some("pull with the Docker engine".into()),
        })
    }
    /// Run `probe` in a container whose userland is the engine host's own ([`probe`]): how
    /// forge reads the GPU host's facts when the engine is not on this machine.
    fn host_probe(
        &self,
        probe: &ProbeRun,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        let _ = (probe, labels, timeout);
        Err(Error::Engine {
            message: "this engine cannot run a probe on its host".into(),
            hint: None,
        })
    }
    /// Long-lived containers with devices, ports and logs (phases 5-7), where this engine can
    /// start them.
    fn containers(&self) -> Option<&dyn Containers> {
        None
    }
}

/// The Docker engine through its API.
pub struct DockerEngine {
    rt: tokio::runtime::Runtime,
    docker: bollard::Docker,
    endpoint: Endpoint,
    cancel: Cancel,
    /// Container ports reached through a relay in the container (remote engines).
    forwards: forward::Forwards,
}

/// The engine forge talks to: `--context`, `DOCKER_HOST`, `DOCKER_CONTEXT`, the current context.
pub fn resolve_endpoint() -> Result<Endpoint> {
    endpoint::resolve(
        endpoint::context_flag().as_deref(),
        &endpoint::process_env(),
    )
}

/// Where the engine is (its URL), or the default socket when the settings do not resolve.
pub fn docker_host() -> String {
    resolve_endpoint().map_or_else(|_| endpoint::DEFAULT_SOCKET.to_owned(), |e| e.host)
}

fn unreachable(ep: &Endpoint, why: impl std::fmt::Display) -> Error {
    let hint = match &ep.transport {
        Transport::Unix { .. } => {
            "start the engine (`systemctl start docker`), or name another: DOCKER_HOST \
             (unix:///path/docker.sock, tcp://host:2376 with DOCKER_TLS_VERIFY=1 and \
             DOCKER_CERT_PATH, ssh://user@host), `--context NAME` or `docker context use NAME`"
                .to_owned()
        }
        Transport::Tcp { addr } | Transport::Tls { addr, .. } => format!(
            "is an engine listening on {addr} (dockerd -H tcp://0.0.0.0:2376 --tlsverify ...), \
             and does no firewall stand between? With TLS the engine's certificate must be signed \
             by the CA in ca.pem for that host name or address"
        ),
        Transport::Ssh { .. } => "see above".to_owned(),
    };
    Error::Engine {
        message: format!(
            "no Docker engine answers at `{}` ({}): {why}",
            ep.host,
            ep.source.describe(ep.context.as_deref(), &ep.config_dir)
        ),
        hint: Some(hint),
    }
}

impl DockerEngine {
    /// Connect as the Docker CLI would, negotiating the API version; fails within `timeout`
    /// when nothing answers.
    pub fn connect(timeout: Duration) -> Result<DockerEngine> {
        Self::connect_to(resolve_endpoint()?, timeout)
    }

    /// Connect to `ep`.
    pub fn connect_to(ep: Endpoint, timeout: Duration) -> Result<DockerEngine> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start runtime", "tokio", e))?;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = match &ep.transport {
            Transport::Unix { .. } => bollard::Docker::connect_with_unix(&ep.host, 120, version),
            Transport::Tcp { addr } => {
                bollard::Docker::connect_with_http(&format!("tcp://{addr}"), 120, version)
            }
            Transport::Tls { addr, files } => {
                if let Some(missing) = files.missing() {
                    return Err(Error::Usage {
                        message: format!(
                            "TLS engine at {addr}: no {} (the client certificate, key and CA: \
                             ca.pem, cert.pem, key.pem)",
                            missing.display()
                        ),
                        hint: Some(
                            "point DOCKER_CERT_PATH at the directory holding them, or give the \
                             context its TLS files (`docker context update NAME --docker \
                             host=tcp://...,ca=...,cert=...,key=...`)"
                                .into(),
                        ),
                    });
                }
                bollard::Docker::connect_with_ssl(
                    addr,
                    &files.key,
                    &files.cert,
                    &files.ca,
                    120,
                    version,
                )
            }
            Transport::Ssh {
                user,
                host,
                port,
                socket,
            } => {
                let dest = ssh::Dest {
                    user: user.clone(),
                    host: host.clone(),
                    port: *port,
                    socket: socket.clone(),
                };
                let _guard = rt.enter();
                let docker = ssh::connect(&dest)?;
                let negotiated = rt.block_on(async {
                    tokio::time::timeout(timeout, docker.negotiate_version()).await
                });
                return match negotiated {
                    Ok(Ok(docker)) => Ok(DockerEngine {
                        rt,
                        docker: docker.with_timeout(Duration::from_secs(600)),
                        endpoint: ep,
                        cancel: Cancel::process(),
                        forwards: forward::Forwards::default(),
                    }),
                    _ => {
                        let (why, hint) = ssh::diagnose(&dest, timeout + Duration::from_secs(20));
                        let Error::Engine { message, .. } = unreachable(&ep, why) else {
                            unreachable!()
                        };
                        Err(Error::Engine {
                            message,
                            hint: Some(hint),
                        })
                    }
                };
            }
        }
        .map_err(|e| unreachable(&ep, e))?
        .with_timeout(timeout);
        let docker = rt
            .block_on(async { tokio::time::timeout(timeout, docker.negotiate_version()).await })
            .map_err(|_| unreachable(&ep, format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(&ep, e))?
            // Later requests: the timeout covers the response headers, not a streamed body.
            .with_timeout(Duration::from_secs(600));
        Ok(DockerEngine {
            rt,
            docker,
            endpoint: ep,
            cancel: Cancel::process(),
            forwards: forward::Forwards::default(),
        })
    }

    /// The endpoint reached.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Use `cancel` instead of the process's token.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The async runtime, for callers that stream (builds, exports).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Engine {
        message: format!("{what}: {e}"),
        hint: None,
    }
}

impl Engine for DockerEngine {
    fn containers(&self) -> Option<&dyn Containers> {
        Some(self)
    }

    fn remote_host(&self) -> Option<String> {
        (!self.endpoint().transport.local()).then(|| self.endpoint().host.clone())
    }

    fn build(
        &self,
        spec: &BuildSpec,
        sink: &mut dyn FnMut(BuildEvent<'_>) -> Flow,
    ) -> Result<BuildEnd> {
        build::with_one_retry(
            |s| {
                self.rt
                    .block_on(build::run(&self.docker, spec, s, self.cancel))
            },
            sink,
            self.cancel,
        )
    }

    fn open_container(&self, image: &str, labels: &BTreeMap<String, String>) -> Result<String> {
        self.rt
            .block_on(files::open_container(&self.docker, image, labels))
    }

    fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<Option<u64>> {
        self.rt
            .block_on(files::copy_out(&self.docker, id, path, dest, self.cancel))
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        self.rt.block_on(files::remove_container(&self.docker, id))
    }

    fn remove_image(&self, image: &str) -> Result<()> {
        self.rt.block_on(files::remove_image(&self.docker, image))
    }

    fn run_once(
        &self,
        image: &str,
        cmd: &[String],
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        self.rt.block_on(files::run_once(
            &self.docker,
            image,
            cmd,
            labels,
            timeout,
            self.cancel,
        ))
    }

    fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.rt.block_on(async {
            match self.docker.inspect_image(image).await {
                Ok(i) => Ok(i.id),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(engine_err(&format!("inspect `{image}`"), e)),
            }
        })
    }

    fn image_size(&self, image: &str) -> Result<u64> {
        self.rt.block_on(async {
            let i = self
                .docker
                .inspect_image(image)
                .await
                .map_err(|e| Error::Engine {
                    message: format!("no image `{image}`: {e}"),
                    hint: Some("`docker images` lists the images the engine has".into()),
                })?;
            Ok(i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
        })
    }

    fn export_image(&self, image: &str, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        use futures_util::StreamExt;
        self.rt.block_on(async {
            let mut stream = self.docker.export_image(image);
            let mut n = 0u64;
            loop {
                let chunk = tokio::select! {
                    c = stream.next() => c,
                    signal = self.cancel.wait() => return Err(Error::Interrupted { signal }),
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| match e {
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        message,
                    } => Error::Engine {
                        message: format!("no image `{image}`: {message}"),
                        hint: Some("`docker images` lists the images the engine has".into()),
                    },
                    e => Error::Engine {
                        message: format!("export `{image}`: {e}"),
                        hint: Some(
                            "the engine's stream broke (connection cut, engine restarted): \
                             check the engine (`docker info`) and run the export again"
                                .into(),
                        ),
                    },
                })?;
                n += chunk.len() as u64;
                sink(&chunk)?;
            }
            Ok(n)
        })
    }

    fn leftovers(&self, label: &str) -> Result<Vec<Leftover>> {
        self.rt.block_on(files::leftovers(&self.docker, label))
    }

    fn remove_leftover(&self, l: &Leftover) -> Result<()> {
        self.rt.block_on(files::remove_leftover(&self.docker, l))
    }

    fn push_image(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<String> {
        self.push(image, repo, tag, auth)
    }

    fn pull_image(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        self.pull(reference, auth)
    }

    fn load_image(&self, reader: Box<dyn std::io::Read + Send>) -> Result<Vec<String>> {
        self.rt.block_on(load::load_image(&self.docker, reader))
    }

    fn host_probe(
        &self,
        probe: &ProbeRun,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        self.run_probe(probe, labels, timeout)
    }

    fn info(&self) -> Result<EngineInfo> {
        let (version, info) = self
            .rt
            .block_on(async { tokio::try_join!(self.docker.version(), self.docker.info()) })
            .map_err(|e| unreachable(&self.endpoint, e))?;
        let api_version = version.api_version.clone().unwrap_or_default();
        let api = crate::recipe::parse_version(&api_version).unwrap_or_default();
        let os = version.os.clone().unwrap_or_default();
        let ep = &self.endpoint;
        Ok(EngineInfo {
            host: ep.host.clone(),
            version: version.version.unwrap_or_default(),
            buildkit: os == "linux" && !crate::recipe::version_lt(&api, &[1, 39]),
            api_version,
            platform: format!("{}/{}", os, version.arch.unwrap_or_default()),
            root_dir: info.docker_root_dir,
            mem_total: info.mem_total.and_then(|m| u64::try_from(m).ok()),
            ncpu: info.ncpu.and_then(|m| u64::try_from(m).ok()),
            local: ep.transport.local(),
            via: Some(ep.describe()),
            transport: Some(ep.transport.kind().to_owned()),
            id: info.id,
            name: info.name,
            os: info.operating_system,
            kernel: info.kernel_version,
        })
    }
}
