//! Which engine forge talks to, resolved as the docker CLI resolves it, in one place:
//! `--context NAME` over `DOCKER_HOST` over `DOCKER_CONTEXT` over the config's `currentContext`
//! (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json` without it), else the local socket.
//! A context is `$DOCKER_CONFIG/contexts/meta/<sha256 of its name>/meta.json`, its TLS material
//! under `contexts/tls/<same>/docker/{ca,cert,key}.pem`. The context named `default` is the
//! environment's (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).
//!
//! Pure: the environment and the filesystem come in through [`Env`], so the resolution is tested
//! on made-up config directories.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use crate::error::{Error, Result};

/// The socket the CLI uses when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Where the setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `--context NAME`.
    ContextFlag,
    /// The `DOCKER_HOST` variable.
    DockerHost,
    /// The `DOCKER_CONTEXT` variable.
    DockerContext,
    /// `currentContext` in the docker config (`docker context use NAME`).
    CurrentContext,
    /// Nothing set: the local socket.
    Default,
    /// `forge build --gpu-engine ENGINE`: the engine phases 4-7 run on.
    GpuEngineFlag,
}

impl Source {
    /// How the report says it.
    pub fn describe(&self, context: Option<&str>, config: &Path) -> String {
        let name = context.unwrap_or("default");
        match self {
            Source::ContextFlag => format!("context `{name}` from --context"),
            Source::DockerHost => "DOCKER_HOST".to_owned(),
            Source::DockerContext => format!("context `{name}` from DOCKER_CONTEXT"),
            Source::CurrentContext => format!(
                "context `{name}`, currentContext of {}",
                config.join("config.json").display()
            ),
            Source::Default => "the default socket (no DOCKER_HOST, no context)".to_owned(),
            Source::GpuEngineFlag => match context {
                Some(n) => format!("context `{n}` from --gpu-engine"),
                None => "--gpu-engine".to_owned(),
            },
        }
    }
}

/// The client certificate, key and CA of a TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `cert.pem`.
    pub cert: PathBuf,
    /// `key.pem`.
    pub key: PathBuf,
}

impl TlsFiles {
    fn under(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// The first file missing, if any.
    pub fn missing(&self) -> Option<&Path> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .find(|p| !p.is_file())
            .map(PathBuf::as_path)
    }
}

/// How bytes get to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Transport {
    /// A unix socket on this machine.
    Unix {
        /// The socket's path.
        path: String,
    },
    /// Plain HTTP over TCP (`tcp://host:port`): no authentication at all.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// HTTPS with a client certificate.
    Tls {
        /// `host:port`.
        addr: String,
        /// The certificates.
        files: TlsFiles,
    },
    /// `ssh [-l user] [-p port] host docker system dial-stdio`, HTTP over its stdin/stdout.
    Ssh {
        /// `user`, when the URL names one.
        user: Option<String>,
        /// The host (a name `~/.ssh/config` may map).
        host: String,
        /// The port, when the URL names one.
        port: Option<u16>,
        /// The engine's socket on the far side, when the URL has a path (`ssh://h/run/docker.sock`).
        socket: Option<String>,
    },
}

impl Transport {
    /// Parse a `DOCKER_HOST`-style URL; `tls` applies to `tcp://`.
    pub fn parse(host: &str, tls: Option<TlsFiles>) -> Result<Transport> {
        let bad = |why: &str| Error::Usage {
            message: format!("engine address `{host}`: {why}"),
            hint: Some(
                "use unix:///path/docker.sock, tcp://host:2376 (with DOCKER_TLS_VERIFY=1 and \
                 DOCKER_CERT_PATH for TLS) or ssh://[user@]host[:port]"
                    .into(),
            ),
        };
        let (scheme, rest) = host
            .split_once("://")
            .ok_or_else(|| bad("no scheme (unix://, tcp://, ssh://)"))?;
        match scheme {
            "unix" if !rest.is_empty() => Ok(Transport::Unix {
                path: rest.to_owned(),
            }),
            "unix" => Err(bad("no socket path")),
            "tcp" | "http" | "https" => {
                let addr = rest.trim_end_matches('/');
                if addr.is_empty() || addr.contains('/') {
                    return Err(bad("expected host:port"));
                }
                let addr = if addr
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    addr.to_owned()
                } else {
                    // the CLI's defaults: 2376 with TLS, 2375 without
                    format!("{addr}:{}", if tls.is_some() { 2376 } else { 2375 })
                };
                match tls {
                    Some(files) => Ok(Transport::Tls { addr, files }),
                    None if scheme == "https" => Err(bad(
                        "https:// needs client certificates (set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH)",
                    )),
                    None => Ok(Transport::Tcp { addr }),
                }
            }
            "ssh" => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], Some(&rest[i..])),
                    None => (rest, None),
                };
                let (user, hostport) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_owned()), h),
                    None => (None, authority),
                };
                let (host_name, port) = match hostport.rsplit_once(':') {
                    Some((h, p)) if !h.contains(']') || h.ends_with(']') => {
                        let port = p
                            .parse::<u16>()
                            .map_err(|_| bad(&format!("port `{p}` is not a number")))?;
                        (h, Some(port))
                    }
                    _ => (hostport, None),
                };
                let host_name = host_name.trim_start_matches('[').trim_end_matches(']');
                if host_name.is_empty() || host_name.starts_with('-') {
                    return Err(bad("no host name"));
                }
                if user
                    .as_deref()
                    .is_some_and(|u| u.is_empty() || u.starts_with('-'))
                {
                    return Err(bad("empty or bad user name"));
                }
                Ok(Transport::Ssh {
                    user,
                    host: host_name.to_owned(),
                    port,
                    socket: path.filter(|p| *p != "/").map(str::to_owned),
                })
            }
            other => Err(bad(&format!("forge does not speak `{other}://`"))),
        }
    }

    /// Short name: `unix`, `tcp`, `tcp+tls`, `ssh`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Unix { .. } => "unix",
            Transport::Tcp { .. } => "tcp",
            Transport::Tls { .. } => "tcp+tls",
            Transport::Ssh { .. } => "ssh",
        }
    }

    /// Whether the engine is on this machine (its files are this machine's files).
    pub fn local(&self) -> bool {
        matches!(self, Transport::Unix { .. })
    }

    /// One line: how forge reaches it.
    pub fn describe(&self) -> String {
        match self {
            Transport::Unix { path } => format!("unix socket {path}"),
            Transport::Tcp { addr } => {
                format!("tcp {addr}, plain HTTP (no TLS, no authentication)")
            }
            Transport::Tls { addr, .. } => format!("tcp+tls {addr}, client certificate"),
            Transport::Ssh {
                user,
                host,
                port,
                socket,
            } => format!(
                "ssh {}{host}{} running `docker{} system dial-stdio`",
                user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                socket
                    .as_deref()
                    .map(|s| format!(" --host unix://{s}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The engine forge will talk to, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The URL (`unix:///var/run/docker.sock`, `ssh://me@box`).
    pub host: String,
    /// The transport.
    pub transport: Transport,
    /// The context that gave it, if one did.
    pub context: Option<String>,
    /// Where the setting came from.
    pub source: Source,
    /// The docker config directory consulted.
    pub config_dir: PathBuf,
}

impl Endpoint {
    /// `ssh me@box:22 ... (context `box` from --context)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.transport.describe(),
            self.source
                .describe(self.context.as_deref(), &self.config_dir)
        )
    }
}

/// What the resolution reads: variables and the home directory.
pub struct Env<'a> {
    /// A variable's value (unset and empty are the same, as for the CLI).
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The home directory.
    pub home: Option<PathBuf>,
}

impl Env<'_> {
    fn get(&self, k: &str) -> Option<String> {
        (self.var)(k).filter(|v| !v.is_empty())
    }
}

/// The process's environment.
pub fn process_env() -> Env<'static> {
    Env {
        var: &|k| std::env::var(k).ok(),
        home: std::env::var_os("HOME").map(PathBuf::from),
    }
}

static CONTEXT_FLAG: OnceLock<Option<String>> = OnceLock::new();

/// Record `--context NAME` (once, from the command line, before any engine is reached).
pub fn set_context_flag(name: Option<String>) {
    let _ = CONTEXT_FLAG.set(name);
}

/// `--context`, if it was given.
pub fn context_flag() -> Option<String> {
    CONTEXT_FLAG.get().cloned().flatten()
}

/// The docker config directory: `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(env: &Env<'_>) -> PathBuf {
    env.get("DOCKER_CONFIG").map_or_else(
        || {
            env.home
                .clone()
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".docker")
        },
        PathBuf::from,
    )
}

/// The directory name of a context: the hex SHA256 of its name (what the CLI's store uses).
pub fn context_id(name: &str) -> String {
    use sha2::Digest;
    crate::atomic::hex(&sha2::Sha256::digest(name.as_bytes()))
}

/// Resolve as the docker CLI does; `flag` is `--context`.
pub fn resolve(flag: Option<&str>, env: &Env<'_>) -> Result<Endpoint> {
    let config = config_dir(env);
    let (name, source) = if let Some(n) = flag {
        (Some(n.to_owned()), Source::ContextFlag)
    } else if env.get("DOCKER_HOST").is_some() {
        (None, Source::DockerHost)
    } else if let Some(n) = env.get("DOCKER_CONTEXT") {
        (Some(n), Source::DockerContext)
    } else if let Some(n) = current_context(&config)? {
        (Some(n), Source::CurrentContext)
    } else {
        (None, Source::Default)
    };
    endpoint_of(name, source, config, env)
}

/// The endpoint of context `name` (the environment's for none or `default`).
fn endpoint_of(
    name: Option<String>,
    source: Source,
    config: PathBuf,
    env: &Env<'_>,
) -> Result<Endpoint> {
    match name.as_deref() {
        None | Some("default") => {
            let host = env
                .get("DOCKER_HOST")
                .unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
            let tls = env.get("DOCKER_TLS_VERIFY").map(|_| {
                TlsFiles::under(
                    &env.get("DOCKER_CERT_PATH")
                        .map_or_else(|| config.clone(), PathBuf::from),
                )
            });
            Ok(Endpoint {
                transport: Transport::parse(&host, tls)?,
                host,
                context: name,
                source,
                config_dir: config,
            })
        }
        Some(n) => {
            let (host, tls) = read_context(&config, n, &source)?;
            Ok(Endpoint {
                transport: Transport::parse(&host, tls)?,
                host,
                context: Some(n.to_owned()),
                source,
                config_dir: config,
            })
        }
    }
}

/// `--gpu-engine ENGINE`: an engine URL (`ssh://me@strix`, `tcp://strix:2376` with the TLS
/// variables as for DOCKER_HOST, `unix:///path/docker.sock`) or the name of a docker context.
pub fn resolve_named(spec: &str, env: &Env<'_>) -> Result<Endpoint> {
    let config = config_dir(env);
    if spec.contains("://") {
        let tls = env.get("DOCKER_TLS_VERIFY").map(|_| {
            TlsFiles::under(
                &env.get("DOCKER_CERT_PATH")
                    .map_or_else(|| config.clone(), PathBuf::from),
            )
        });
        return Ok(Endpoint {
            transport: Transport::parse(spec, tls)?,
            host: spec.to_owned(),
            context: None,
            source: Source::GpuEngineFlag,
            config_dir: config,
        });
    }
    if spec.is_empty() {
        return Err(Error::Usage {
            message: "--gpu-engine is empty".into(),
            hint: Some(
                "name a docker context (`docker context ls`) or an engine URL (ssh://me@strix)"
                    .into(),
            ),
        });
    }
    endpoint_of(Some(spec.to_owned()), Source::GpuEngineFlag, config, env)
}

/// `currentContext` of `config.json`, if set (a missing file is no context; a broken one an error).
fn current_context(config: &Path) -> Result<Option<String>> {
    let path = config.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Input {
        message: format!("{} is not JSON: {e}", path.display()),
        hint: Some("fix or remove it (`docker context use default` rewrites it)".into()),
    })?;
    Ok(v.get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned))
}

/// A context's engine URL and TLS files.
fn read_context(config: &Path, name: &str, source: &Source) -> Result<(String, Option<TlsFiles>)> {
    let id = context_id(name);
    let meta = config.join("contexts/meta").join(&id).join("meta.json");
    let origin = source.describe(Some(name), config);
    let text = std::fs::read_to_string(&meta).map_err(|e| Error::Usage {
        message: format!(
            "no docker context `{name}` ({origin}): cannot read {}: {e}",
            meta.display()
        ),
        hint: Some(format!(
            "`docker context ls` lists the contexts; make one with `docker context create {name} \
             --docker host=ssh://user@box`, or name another{}",
            if matches!(source, Source::CurrentContext) {
                " (`docker context use default` goes back to the local socket)"
            } else {
                ""
            }
        )),
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Input {
        message: format!("{} is not JSON: {e}", meta.display()),
        hint: Some(format!(
            "remake the context: `docker context rm {name}` and `docker context create`"
        )),
    })?;
    let ep = &v["Endpoints"]["docker"];
    let host = ep["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Input {
            message: format!(
                "docker context `{name}` has no docker endpoint host ({})",
                meta.display()
            ),
            hint: Some(format!(
                "`docker context update {name} --docker host=ssh://user@box`"
            )),
        })?
        .to_owned();
    let tls_dir = config.join("contexts/tls").join(&id).join("docker");
    let files = TlsFiles::under(&tls_dir);
    let any_tls = [&files.ca, &files.cert, &files.key]
        .iter()
        .any(|p| p.is_file());
    if ep["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(Error::Usage {
            message: format!(
                "docker context `{name}` skips TLS verification: forge does not talk to an engine it cannot verify"
            ),
            hint: Some(format!(
                "give the context the engine's CA: `docker context update {name} --docker host={host},ca=ca.pem,cert=cert.pem,key=key.pem`"
            )),
        });
    }
    Ok((host, any_tls.then_some(files)))
}

#[cfg(test)]
mod tests;
