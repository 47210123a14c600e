//! Long-lived containers: the runtime probe and the server under test.
//!
//! A [`ContainerSpec`] says everything forge passes to the engine (devices, the groups that own
//! them by numeric id, shared memory, published ports, mounts, files copied in before the start,
//! name and labels). [`Containers::start`] creates, fills and starts it and hands back a
//! [`Running`] guard that removes the container when dropped, whatever happened in between
//! (cross-rs's `ChildContainer`): success, failure, timeout and Ctrl-C alike. Its log is followed
//! through the engine's stream, never polled.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, StopContainerOptions,
    UploadToContainerOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{DockerEngine, engine_err};
use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// A file copied into the container before it starts.
#[derive(Debug, Clone)]
pub struct FileIn {
    /// Absolute path inside the container.
    pub path: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Unix mode.
    pub mode: u32,
}

/// Everything forge passes to the engine for one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The image.
    pub image: String,
    /// Container name (`forge-serve-<run>`); unique on the engine.
    pub name: String,
    /// The command (replaces the image's CMD).
    pub cmd: Vec<String>,
    /// Replace the image's ENTRYPOINT with this (empty list: none); `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// GPU access (devices and groups); empty: none.
    pub gpu: GpuAccess,
    /// `/dev/shm` size in bytes (Docker's default is 64 MiB, too small for PyTorch workers).
    pub shm_bytes: Option<u64>,
    /// Container TCP ports to publish on the engine's host, each on a free port.
    pub ports: Vec<u16>,
    /// Bind mounts, `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Files copied in before the start.
    pub files: Vec<FileIn>,
    /// Give the container no network at all.
    pub no_network: bool,
}

/// The GPU devices passed to a container, and the groups that own them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuAccess {
    /// Device paths on the host (`/dev/kfd`, `/dev/dri`).
    pub devices: Vec<String>,
    /// Numeric ids of the groups owning those nodes (`--group-add` by id: a name like `render`
    /// fails in an image that has no such group).
    pub groups: Vec<u32>,
}

impl GpuAccess {
    /// The AMD GPU devices of the host under `dev` (normally `/dev`): `kfd` and `dri`, with the
    /// groups owning `kfd` and every node under `dri`. `Err` says why there is none.
    pub fn from_host(dev: &Path) -> std::result::Result<GpuAccess, String> {
        use std::os::unix::fs::MetadataExt;
        let kfd = dev.join("kfd");
        let Ok(meta) = std::fs::metadata(&kfd) else {
            return Err(format!(
                "no {} on this host (no AMD GPU, or amdgpu not loaded)",
                kfd.display()
            ));
        };
        let mut groups = vec![meta.gid()];
        let dri = dev.join("dri");
        let mut devices = vec![kfd.display().to_string()];
        if let Ok(rd) = std::fs::read_dir(&dri) {
            devices.push(dri.display().to_string());
            let mut nodes: Vec<_> = rd.flatten().collect();
            nodes.sort_by_key(std::fs::DirEntry::file_name);
            for n in nodes {
                if let Ok(m) = n.metadata() {
                    groups.push(m.gid());
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        groups.retain(|g| *g != 0 && seen.insert(*g));
        Ok(GpuAccess { devices, groups })
    }

    /// Whether any device is passed.
    pub fn given(&self) -> bool {
        !self.devices.is_empty()
    }
}

/// Quote one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl ContainerSpec {
    /// The `docker run` line that does what this spec does (files copied in aside), for a user to
    /// reproduce a check by hand. `cmd` and `env` replace the spec's own when given.
    pub fn docker_run_line(&self, cmd: Option<&[String]>, extra_env: &[String]) -> String {
        let mut w: Vec<String> = vec!["docker".into(), "run".into(), "--rm".into()];
        for d in &self.gpu.devices {
            w.push("--device".into());
            w.push(d.clone());
        }
        for g in &self.gpu.groups {
            w.push("--group-add".into());
            w.push(g.to_string());
        }
        if let Some(b) = self.shm_bytes {
            w.push("--shm-size".into());
            w.push(if b % (1 << 20) == 0 {
                format!("{}m", b >> 20)
            } else {
                b.to_string()
            });
        }
        for p in &self.ports {
            w.push("-p".into());
            w.push(format!("{p}:{p}"));
        }
        for b in &self.binds {
            w.push("-v".into());
            w.push(b.clone());
        }
        if self.no_network {
            w.push("--network".into());
            w.push("none".into());
        }
        for e in self.env.iter().chain(extra_env) {
            w.push("-e".into());
            w.push(e.clone());
        }
        if let Some(ep) = &self.entrypoint {
            w.push("--entrypoint".into());
            w.push(ep.first().cloned().unwrap_or_default());
        }
        w.push(self.image.clone());
        w.extend(cmd.unwrap_or(&self.cmd).iter().cloned());
        w.iter()
            .map(|s| shell_quote(s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One piece of a container's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// stdout.
    Out,
    /// stderr.
    Err,
}

/// What a log sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Keep following.
    More,
    /// Stop following (the container keeps running).
    Stop,
}

/// Why following a log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogEnd {
    /// The stream ended: the container exited.
    Exited,
    /// The sink asked to stop.
    Stopped,
    /// The deadline passed.
    Deadline,
    /// The cancel token was triggered (SIGINT or SIGTERM).
    Cancelled,
}

/// A container's state, as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Still running.
    pub running: bool,
    /// Exit code once exited.
    pub exit_code: Option<i64>,
    /// Killed by the kernel's OOM killer.
    pub oom_killed: bool,
    /// The engine's error, if any.
    pub error: Option<String>,
}

/// The engine's container operations forge needs beyond [`super::Engine`].
pub trait Containers: Sync {
    /// The GPU devices (and their groups) of the host the containers run on; `Err` says why
    /// there is none, naming that host. This machine's `dev` by default.
    fn engine_gpu(&self, dev: &Path, run: &str) -> std::result::Result<GpuAccess, String> {
        let _ = run;
        GpuAccess::from_host(dev)
    }
    /// Create `spec`'s container, copy its files in, start it. The container is removed again
    /// when any step fails.
    fn create_and_start(&self, spec: &ContainerSpec) -> Result<String>;
    /// Where forge reaches container port `port`: published on 127.0.0.1 of a local engine's
    /// host, or a relay through a remote engine (the port is not published there).
    fn published(&self, id: &str, port: u16) -> Result<(String, u16)>;
    /// What the relays behind [`Containers::published`] for container `id` said when they
    /// failed (remote engines), newest last; none for published ports.
    fn relay_errors(&self, id: &str) -> Vec<String> {
        let _ = id;
        Vec::new()
    }
    /// Follow the container's output from its start until it exits, `sink` says stop,
    /// `deadline` passes or `cancel` is triggered. Each piece is passed as it arrives.
    fn follow(
        &self,
        id: &str,
        deadline: Option<Instant>,
        cancel: Cancel,
        sink: &mut dyn FnMut(Stream, &[u8]) -> Follow,
    ) -> Result<LogEnd>;
    /// The container's state.
    fn state(&self, id: &str) -> Result<State>;
    /// Stop it: SIGTERM, then SIGKILL after `grace`. Returns its state afterwards.
    fn stop(&self, id: &str, grace: Duration) -> Result<State>;
    /// Remove it, forced (running or not); a container already gone is no error.
    fn remove(&self, id: &str) -> Result<()>;
    /// Whether a container of this id or name still exists.
    fn exists(&self, id: &str) -> Result<bool>;
}

/// A started container, removed when dropped (after a stop, if still running).
pub struct Running<'a> {
    engine: &'a dyn Containers,
    /// The container id.
    pub id: String,
    /// When it was started.
    pub started: Instant,
    removed: bool,
}

impl<'a> Running<'a> {
    /// Start `spec` and guard it.
    pub fn start(engine: &'a dyn Containers, spec: &ContainerSpec) -> Result<Running<'a>> {
        let id = engine.create_and_start(spec)?;
        Ok(Running {
            engine,
            id,
            started: Instant::now(),
            removed: false,
        })
    }

    /// The engine it runs on.
    pub fn engine(&self) -> &'a dyn Containers {
        self.engine
    }

    /// Remove it now, reporting an engine error (drop would swallow it). Returns whether the
    /// container is gone afterwards.
    pub fn remove(mut self) -> Result<bool> {
        self.removed = true;
        self.engine.remove(&self.id)?;
        Ok(!self.engine.exists(&self.id)?)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.engine.remove(&self.id);
        }
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A tar holding `files` (paths made relative to `/`).
fn tar_of(files: &[FileIn]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.data.len() as u64);
        h.set_mode(f.mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, f.path.trim_start_matches('/'), f.data.as_slice())
            .map_err(|e| Error::io("pack", &f.path, e))?;
    }
    b.into_inner().map_err(|e| Error::io("pack", "files", e))
}

impl DockerEngine {
    async fn create_and_start_async(&self, spec: &ContainerSpec) -> Result<String> {
        let docker = &self.docker;
        let body = create_body(spec, self.endpoint.transport.local());
        let id = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                } => Error::Engine {
                    message: format!("no image `{}`: {message}", spec.image),
                    hint: Some("`docker images` lists the images the engine has".into()),
                },
                e => engine_err(&format!("create a container of `{}`", spec.image), e),
            })?
            .id;
        let filled = async {
            if !spec.files.is_empty() {
                let tar = tar_of(&spec.files)?;
                docker
                    .upload_to_container(
                        &id,
                        Some(UploadToContainerOptions {
                            path: "/".into(),
                            ..Default::default()
                        }),
                        bollard::body_full(tar.into()),
                    )
                    .await
                    .map_err(|e| engine_err("copy files into the container", e))?;
            }
            docker
                .start_container(
                    &id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(|e| Error::Engine {
                    message: format!("start `{}` in `{}`: {e}", spec.cmd.join(" "), spec.image),
                    hint: Some(
                        "the command must exist in the image (python3 on its PATH); \
                         device and mount paths must exist on the engine's host"
                            .into(),
                    ),
                })
        }
        .await;
        if let Err(e) = filled {
            let _ = super::files::remove_container(docker, &id).await;
            return Err(e);
        }
        Ok(id)
    }
}

/// The engine's create body for `spec`: the GPU's devices and groups, ports published on
/// 127.0.0.1 for a local engine (none for a remote one: its ports are reached through a relay
/// in the container, `forward.rs`, never on the engine host's network), mounts, shared memory,
/// no network when asked.
fn create_body(spec: &ContainerSpec, local: bool) -> ContainerCreateBody {
    let devices = spec
        .gpu
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.clone()),
            path_in_container: Some(d.clone()),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect::<Vec<_>>();
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
        .ports
        .iter()
        .filter(|_| local)
        .map(|p| {
            (
                format!("{p}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )
        })
        .collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        exposed_ports: Some(spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
        network_disabled: spec.no_network.then_some(true),
        host_config: Some(HostConfig {
            devices: Some(devices),
            group_add: Some(spec.gpu.groups.iter().map(u32::to_string).collect()),
            shm_size: spec.shm_bytes.and_then(|b| i64::try_from(b).ok()),
            port_bindings: Some(port_bindings),
            binds: Some(spec.binds.clone()),
            network_mode: spec.no_network.then(|| "none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Containers for DockerEngine {
    fn engine_gpu(&self, dev: &Path, run: &str) -> std::result::Result<GpuAccess, String> {
        self.gpu_of_engine_host(dev, run)
    }

    fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        self.rt.block_on(self.create_and_start_async(spec))
    }

    fn published(&self, id: &str, port: u16) -> Result<(String, u16)> {
        if !self.endpoint.transport.local() {
            return Ok(("127.0.0.1".to_owned(), self.forward(id, port)?));
        }
        let c = self
            .rt
            .block_on(
                self.docker
                    .inspect_container(id, None::<InspectContainerOptions>),
            )
            .map_err(|e| engine_err("inspect the container", e))?;
        let bound = c
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(&format!("{port}/tcp")))
            .flatten()
            .and_then(|b| b.into_iter().next())
            .and_then(|b| b.host_port)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| Error::Engine {
                message: format!("port {port} of the container was not published"),
                hint: None,
            })?;
        Ok(("127.0.0.1".to_owned(), bound))
    }

    fn relay_errors(&self, id: &str) -> Vec<String> {
        self.forward_errors(id)
    }

    fn follow(
        &self,
        id: &str,
        deadline: Option<Instant>,
        cancel: Cancel,
        sink: &mut dyn FnMut(Stream, &[u8]) -> Follow,
    ) -> Result<LogEnd> {
        self.rt.block_on(async {
            let mut logs = self.docker.logs(
                id,
                Some(LogsOptions {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            );
            let deadline = deadline.map(tokio::time::Instant::from_std);
            loop {
                let item = tokio::select! {
                    item = logs.next() => item,
                    _ = cancel.wait() => return Ok(LogEnd::Cancelled),
                    () = sleep_until(deadline) => return Ok(LogEnd::Deadline),
                };
                let out = match item {
                    None => return Ok(LogEnd::Exited),
                    Some(Err(e)) if not_found(&e) => return Ok(LogEnd::Exited),
                    Some(Err(e)) => return Err(engine_err("follow the container's log", e)),
                    Some(Ok(out)) => out,
                };
                let (s, bytes) = match out {
                    bollard::container::LogOutput::StdErr { message } => (Stream::Err, message),
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => (Stream::Out, message),
                    bollard::container::LogOutput::StdIn { .. } => continue,
                };
                if sink(s, &bytes) == Follow::Stop {
                    return Ok(LogEnd::Stopped);
                }
            }
        })
    }

    fn state(&self, id: &str) -> Result<State> {
        let c = self
            .rt
            .block_on(
                self.docker
                    .inspect_container(id, None::<InspectContainerOptions>),
            )
            .map_err(|e| engine_err("inspect the container", e))?;
        let s = c.state.unwrap_or_default();
        let running = s.running.unwrap_or(false);
        Ok(State {
            running,
            exit_code: if running { None } else { s.exit_code },
            oom_killed: s.oom_killed.unwrap_or(false),
            error: s.error.filter(|e| !e.is_empty()),
        })
    }

    fn stop(&self, id: &str, grace: Duration) -> Result<State> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let stopped = self.rt.block_on(self.docker.stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(t),
                signal: None,
            }),
        ));
        match stopped {
            Ok(()) => {}
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(engine_err("stop the container", e)),
        }
        self.state(id)
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.close_forwards(id);
        match self
            .rt
            .block_on(super::files::remove_container(&self.docker, id))
        {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("No such container") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, id: &str) -> Result<bool> {
        match self.rt.block_on(
            self.docker
                .inspect_container(id, None::<InspectContainerOptions>),
        ) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(engine_err("inspect the container", e)),
        }
    }
}

/// Sleep until `deadline`; forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_line_quotes_and_lists_devices_by_gid() {
        let spec = ContainerSpec {
            image: "img:1".into(),
            cmd: vec!["python3".into(), "-c".into(), "print('it''s')".into()],
            gpu: GpuAccess {
                devices: vec!["/dev/kfd".into(), "/dev/dri".into()],
                groups: vec![44, 992],
            },
            shm_bytes: Some(8 << 30),
            ..Default::default()
        };
        assert_eq!(
            spec.docker_run_line(None, &["LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so".into()]),
            "docker run --rm --device /dev/kfd --device /dev/dri --group-add 44 --group-add 992 \
             --shm-size 8192m -e LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so img:1 python3 -c \
             'print('\\''it'\\'''\\''s'\\'')'"
        );
    }

    #[test]
    fn gpu_access_reads_the_nodes_groups() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::Builder::new()
            .prefix("forge-gpu-")
            .tempdir()
            .unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("dri")).unwrap();
        assert!(GpuAccess::from_host(d).unwrap_err().contains("no AMD GPU"));
        std::fs::write(d.join("kfd"), "").unwrap();
        std::fs::write(d.join("dri/renderD128"), "").unwrap();
        let gid = std::fs::metadata(d.join("kfd")).unwrap().gid();
        let g = GpuAccess::from_host(d).unwrap();
        assert_eq!(g.devices.len(), 2);
        // root-owned nodes (gid 0) add no group; others add theirs once
        assert_eq!(g.groups, if gid == 0 { vec![] } else { vec![gid] });
    }

    #[test]
    fn a_remote_engine_publishes_no_port_a_local_one_only_on_loopback() {
        let spec = ContainerSpec {
            image: "img:1".into(),
            ports: vec![8000],
            ..Default::default()
        };
        let bindings = |local| {
            let b = create_body(&spec, local);
            assert_eq!(
                b.exposed_ports,
                Some(vec!["8000/tcp".to_owned()]),
                "exposed either way"
            );
            b.host_config.unwrap().port_bindings.unwrap()
        };
        let local = bindings(true);
        let on = local["8000/tcp"].as_ref().unwrap();
        assert_eq!(on[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert!(bindings(false).is_empty());
    }
}
