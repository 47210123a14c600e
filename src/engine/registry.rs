//! Push and pull through the engine (`/images/{name}/push`, `/images/create`), with the
//! credentials the caller found (see `crate::ops::registry`): the engine talks to the registry.

use futures_util::StreamExt;

use super::{DockerEngine, engine_err};
use crate::error::{Error, Result};

/// Registry credentials in forge's own type.
#[derive(Clone, Default)]
pub struct RegistryAuth {
    /// The registry host (`127.0.0.1:5000`).
    pub server: String,
    /// User name.
    pub username: String,
    /// Password or token (never printed).
    pub secret: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}@{})", self.username, self.server)
    }
}

fn creds(a: Option<&RegistryAuth>) -> Option<bollard::auth::DockerCredentials> {
    a.map(|a| bollard::auth::DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.secret.clone()),
        serveraddress: Some(a.server.clone()),
        ..Default::default()
    })
}

/// The digest in a push's last status line (`TAG: digest: sha256:... size: N`).
pub fn digest_of_status(line: &str) -> Option<String> {
    let rest = line.split("digest: ").nth(1)?;
    let d = rest.split_whitespace().next()?;
    d.starts_with("sha256:").then(|| d.to_owned())
}

impl DockerEngine {
    /// Tag `image` as `repo:tag` and push it; the digest the registry gave.
    pub(super) fn push(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<String> {
        self.rt.block_on(async {
            let opts = bollard::query_parameters::TagImageOptionsBuilder::new()
                .repo(repo)
                .tag(tag)
                .build();
            self.docker
                .tag_image(image, Some(opts))
                .await
                .map_err(|e| engine_err(&format!("tag `{image}` as `{repo}:{tag}`"), e))?;
            let opts = bollard::query_parameters::PushImageOptionsBuilder::new()
                .tag(tag)
                .build();
            let mut s = self.docker.push_image(repo, Some(opts), creds(auth));
            let mut digest = None;
            while let Some(item) = tokio::select! {
                i = s.next() => i,
                signal = self.cancel.wait() => return Err(Error::Interrupted { signal }),
            } {
                let info = item.map_err(|e| push_err(repo, tag, &e.to_string()))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(push_err(repo, tag, &e));
                }
                if let Some(d) = info.status.as_deref().and_then(digest_of_status) {
                    digest = Some(d);
                }
            }
            digest.ok_or_else(|| {
                push_err(repo, tag, "the engine's push stream ended without a digest")
            })
        })
    }

    /// Pull `reference`; the image id it gives.
    pub(super) fn pull(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        self.rt.block_on(async {
            let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
                .from_image(reference)
                .build();
            let mut s = self.docker.create_image(Some(opts), None, creds(auth));
            while let Some(item) = s.next().await {
                let info = item.map_err(|e| pull_err(reference, &e.to_string()))?;
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(pull_err(reference, &e));
                }
            }
            let i = self
                .docker
                .inspect_image(reference)
                .await
                .map_err(|e| pull_err(reference, &e.to_string()))?;
            i.id.ok_or_else(|| pull_err(reference, "the pulled image has no id"))
        })
    }
}

fn push_err(repo: &str, tag: &str, why: &str) -> Error {
    let why = why.trim();
    let hint = if why.contains("unauthorized")
        || why.contains("authentication required")
        || why.contains("no basic auth credentials")
    {
        "log in with `docker login REGISTRY` (forge reads ~/.docker/config.json and its credential helpers)"
    } else if why.contains("connection refused") || why.contains("no such host") {
        "is the registry running and reachable from the Docker engine?"
    } else {
        "run `forge push` again: the layers the registry has are not sent twice"
    };
    Error::Engine {
        message: format!("push of `{repo}:{tag}` failed: {why}"),
        hint: Some(hint.into()),
    }
}

fn pull_err(reference: &str, why: &str) -> Error {
    Error::Engine {
        message: format!("pull of `{reference}` failed: {}", why.trim()),
        hint: Some(
            "check the reference and that the registry has it (and your login: `docker login`)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digest_is_read_from_the_last_status_line() {
        assert_eq!(
            super::digest_of_status("t1: digest: sha256:0123abcd size: 528").as_deref(),
            Some("sha256:0123abcd")
        );
        assert_eq!(super::digest_of_status("Pushed"), None);
    }
}
