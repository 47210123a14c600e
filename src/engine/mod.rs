//! The Docker engine, behind forge's own small trait. The only module that imports bollard:
//! forge types in, forge types out.
//!
//! Connection follows the Docker CLI's conventions: `DOCKER_HOST` (unix socket or tcp), TLS via
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, and the API version negotiated with the engine
//! (Debian's engine here speaks 1.41).

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize)]
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
}

/// What forge needs from a container engine.
pub trait Engine {
    /// Version and system information.
    fn info(&self) -> Result<EngineInfo>;
}

/// The Docker engine through its API.
pub struct DockerEngine {
    rt: tokio::runtime::Runtime,
    docker: bollard::Docker,
    host: String,
}

/// Where `DOCKER_HOST` points (or the default socket).
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

fn unreachable(host: &str, why: impl std::fmt::Display) -> Error {
    Error::Engine {
        message: format!("no Docker engine answers at `{host}`: {why}"),
        hint: Some(
            "start the engine (`systemctl start docker`), or point DOCKER_HOST at one \
             (unix:///path/docker.sock, tcp://host:2376 with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)"
                .into(),
        ),
    }
}

impl DockerEngine {
    /// Connect as the Docker CLI would, negotiating the API version; fails within `timeout`
    /// when nothing answers.
    pub fn connect(timeout: Duration) -> Result<DockerEngine> {
        let host = docker_host();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start runtime", "tokio", e))?;
        let docker = bollard::Docker::connect_with_defaults()
            .map_err(|e| unreachable(&host, e))?
            .with_timeout(timeout);
        let docker = rt
            .block_on(async { tokio::time::timeout(timeout, docker.negotiate_version()).await })
            .map_err(|_| unreachable(&host, format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(&host, e))?;
        Ok(DockerEngine { rt, docker, host })
    }

    /// The async runtime, for callers that stream (builds, exports).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

impl Engine for DockerEngine {
    fn info(&self) -> Result<EngineInfo> {
        let (version, info) = self
            .rt
            .block_on(async { tokio::try_join!(self.docker.version(), self.docker.info()) })
            .map_err(|e| unreachable(&self.host, e))?;
        let api_version = version.api_version.clone().unwrap_or_default();
        let api = crate::recipe::parse_version(&api_version).unwrap_or_default();
        let os = version.os.clone().unwrap_or_default();
        Ok(EngineInfo {
            host: self.host.clone(),
            version: version.version.unwrap_or_default(),
            buildkit: os == "linux" && !crate::recipe::version_lt(&api, &[1, 39]),
            api_version,
            platform: format!("{}/{}", os, version.arch.unwrap_or_default()),
            root_dir: info.docker_root_dir,
            mem_total: info.mem_total.and_then(|m| u64::try_from(m).ok()),
            ncpu: info.ncpu.and_then(|m| u64::try_from(m).ok()),
            local: self.host.starts_with("unix://"),
        })
    }
}
