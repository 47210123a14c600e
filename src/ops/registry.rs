//! Registry references and the credentials for them, found as the docker CLI finds them:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), its `credHelpers` for the
//! registry, else its `credsStore` (`docker-credential-NAME get`, the registry on stdin), else
//! its `auths` entry (`auth`: base64 of `user:password`). Secrets stay in memory: never printed,
//! never recorded.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::engine::RegistryAuth;
use crate::error::{Error, Result};

/// A parsed `REGISTRY/REPO[:TAG]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `127.0.0.1:5000` (`docker.io` when the first part names no host).
    pub registry: String,
    /// `127.0.0.1:5000/forge/vllm` (what the engine pushes).
    pub repo: String,
    /// `7.1.1-gfx1151` (`latest` when none).
    pub tag: String,
}

impl Reference {
    /// Parse `REGISTRY/REPO[:TAG]`; a digest is refused (forge pushes a tag, and records the
    /// digest the registry gives).
    pub fn parse(s: &str) -> Result<Reference> {
        let hint =
            Some("give `REGISTRY/REPOSITORY:TAG`, e.g. `127.0.0.1:5000/forge/vllm-rocm:7.1.1`");
        if s.is_empty() || s.contains('@') || s.chars().any(char::is_whitespace) {
            return Err(Error::usage(
                format!("`{s}` is no image reference to push to"),
                hint,
            ));
        }
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (s, "latest"),
        };
        let first = name.split('/').next().unwrap_or("");
        let has_host = name.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let registry = if has_host {
            first.to_owned()
        } else {
            "docker.io".to_owned()
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        let path = if has_host {
            &name[first.len() + 1..]
        } else {
            name
        };
        if path.is_empty() || !path.chars().all(valid) || tag.is_empty() {
            return Err(Error::usage(
                format!("`{s}` is no valid image reference"),
                hint,
            ));
        }
        Ok(Reference {
            registry,
            repo: name.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The docker CLI's config file.
pub fn config_path() -> PathBuf {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .unwrap_or_else(|| PathBuf::from(".docker"))
        .join("config.json")
}

/// The names `auths` may list `registry` under (the docker CLI's: as is, with a scheme).
fn keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        return vec!["https://index.docker.io/v1/".into(), "docker.io".into()];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ]
}

/// Credentials for `registry`, and where they came from (`None`: anonymous).
pub fn credentials(registry: &str) -> Result<Option<(RegistryAuth, String)>> {
    let path = config_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let cfg: Config = serde_json::from_str(&text).map_err(|e| {
        Error::input(
            format!("`{}` is not a docker config: {e}", path.display()),
            Some("fix it, or log in again with `docker login`"),
        )
    })?;
    let helper = keys(registry)
        .iter()
        .find_map(|k| cfg.cred_helpers.get(k))
        .or(cfg.creds_store.as_ref());
    if let Some(h) = helper {
        return helper_get(h, registry).map(|a| a.map(|a| (a, format!("docker-credential-{h}"))));
    }
    for k in keys(registry) {
        if let Some(auth) = cfg.auths.get(&k).and_then(|a| a.auth.as_deref()) {
            let bad = || {
                Error::input(
                    format!(
                        "the `auths` entry for `{k}` in `{}` is not base64 of `user:password`",
                        path.display()
                    ),
                    Some("log in again: `docker login REGISTRY`"),
                )
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = raw.split_once(':').ok_or_else(bad)?;
            return Ok(Some((
                RegistryAuth {
                    server: registry.to_owned(),
                    username: u.to_owned(),
                    secret: p.to_owned(),
                },
                format!("{} (auths)", path.display()),
            )));
        }
    }
    Ok(None)
}

/// `docker-credential-NAME get` with the registry on stdin; `None` when it has none.
fn helper_get(name: &str, registry: &str) -> Result<Option<RegistryAuth>> {
    let prog = format!("docker-credential-{name}");
    let out = duct::cmd!(&prog, "get")
        .stdin_bytes(registry.as_bytes().to_vec())
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .and_then(|h| {
            let out = h.wait_timeout(Duration::from_secs(30))?.cloned();
            let _ = h.kill();
            out.ok_or_else(|| std::io::Error::other("timed out after 30 s"))
        });
    let out = out.map_err(|e| {
        Error::input(
            format!("cannot run the credential helper `{prog}`: {e}"),
            Some("install it, or remove `credsStore`/`credHelpers` from the docker config"),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::input(
            format!("`{prog} get` failed: {}", text.trim()),
            Some("log in again: `docker login REGISTRY`"),
        ));
    }
    let a: HelperAnswer = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("`{prog} get` answered no credentials: {e}"), None))?;
    Ok(Some(RegistryAuth {
        server: registry.to_owned(),
        username: a.username,
        secret: a.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_docker_reads_them() {
        let r = Reference::parse("127.0.0.1:5000/forge/vllm:7.1.1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repo, "127.0.0.1:5000/forge/vllm");
        assert_eq!(r.tag, "7.1.1");
        assert_eq!(Reference::parse("localhost:5000/a").unwrap().tag, "latest");
        assert_eq!(
            Reference::parse("forge/vllm:1").unwrap().registry,
            "docker.io"
        );
        assert!(Reference::parse("a@sha256:00").is_err());
        assert!(Reference::parse("127.0.0.1:5000/Upper:1").is_err());
    }
}
