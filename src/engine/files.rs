//! Files out of images (through a created, never started container), image removal, and the
//! leftovers `forge clean` removes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    DownloadFromContainerOptions, ListContainersOptions, ListImagesOptions, RemoveContainerOptions,
    RemoveImageOptions,
};
use futures_util::StreamExt;
use serde::Serialize;

use super::engine_err;
use crate::cancel::Cancel;
use crate::error::{Error, Result};

/// What a leftover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeftoverKind {
    /// A container (created for copying files out, or a probe's).
    Container,
    /// An image (a build's temporary tag, or a dangling one).
    Image,
}

impl std::fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeftoverKind::Container => "container",
            LeftoverKind::Image => "image",
        })
    }
}

/// A container or image forge labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// A container or an image.
    pub kind: LeftoverKind,
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Image tags (empty: dangling, or a container).
    pub tags: Vec<String>,
}

/// Create (never start) a container of `image`, so files can be copied out of it.
pub async fn open_container(
    docker: &bollard::Docker,
    image: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String> {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        // Never started: a command is only needed because the engine insists on one.
        cmd: Some(vec!["/forge-never-runs".to_owned()]),
        labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
        ..Default::default()
    };
    docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map(|c| c.id)
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            } => Error::Engine {
                message: format!("no image `{image}`: {message}"),
                hint: Some(
                    "`docker images` lists the images the engine has; build it first or `docker load` it"
                        .into(),
                ),
            },
            e => engine_err(&format!("create a container of `{image}`"), e),
        })
}

/// Write the tar of `path` in container `id` to `dest`; `None` when the path does not exist.
pub async fn copy_out(
    docker: &bollard::Docker,
    id: &str,
    path: &str,
    dest: &Path,
    cancel: Cancel,
) -> Result<Option<u64>> {
    let mut stream = docker.download_from_container(
        id,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    let mut file: Option<std::fs::File> = None;
    let mut n = 0u64;
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            signal = cancel.wait() => {
                drop(file);
                let _ = std::fs::remove_file(dest);
                return Err(Error::Interrupted { signal });
            }
        };
        let Some(chunk) = chunk else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Ok(None);
            }
            Err(e) => return Err(engine_err(&format!("copy `{path}` out"), e)),
        };
        if file.is_none() {
            file = Some(std::fs::File::create(dest).map_err(|e| Error::io("create", dest, e))?);
        }
        let f = file.as_mut().expect("created above");
        f.write_all(&chunk)
            .map_err(|e| Error::io("write", dest, e))?;
        n += chunk.len() as u64;
    }
    match file {
        Some(f) => {
            f.sync_all().map_err(|e| Error::io("sync", dest, e))?;
            Ok(Some(n))
        }
        None => Ok(None),
    }
}

/// Remove a container, forced.
pub async fn remove_container(docker: &bollard::Docker, id: &str) -> Result<()> {
    docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| engine_err("remove container", e))
}

/// Remove an image by name or id.
pub async fn remove_image(docker: &bollard::Docker, image: &str) -> Result<()> {
    docker
        .remove_image(
            image,
            Some(RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| engine_err(&format!("remove image `{image}`"), e))
}

/// Containers (any state) and images with a label.
pub async fn leftovers(docker: &bollard::Docker, label: &str) -> Result<Vec<Leftover>> {
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    let mut out = Vec::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .map_err(|e| engine_err("list containers", e))?;
    for c in containers {
        out.push(Leftover {
            kind: LeftoverKind::Container,
            id: c.id.unwrap_or_default(),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            tags: Vec::new(),
        });
    }
    let images = docker
        .list_images(Some(ListImagesOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| engine_err("list images", e))?;
    for i in images {
        out.push(Leftover {
            kind: LeftoverKind::Image,
            id: i.id,
            labels: i.labels.into_iter().collect(),
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
        });
    }
    Ok(out)
}

/// Remove a leftover container or image.
pub async fn remove_leftover(docker: &bollard::Docker, l: &Leftover) -> Result<()> {
    match l.kind {
        LeftoverKind::Container => remove_container(docker, &l.id).await,
        LeftoverKind::Image => remove_image(docker, &l.id).await,
    }
}

/// Most output [`run_once`] keeps (stdout and stderr together).
pub const RUN_ONCE_OUTPUT_MAX: usize = 64 << 20;

/// Create, start and wait for a container running `cmd`; collect its output; remove it.
pub async fn run_once(
    docker: &bollard::Docker,
    image: &str,
    cmd: &[String],
    labels: &BTreeMap<String, String>,
    timeout: std::time::Duration,
    cancel: Cancel,
) -> Result<(i64, String, String)> {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd.to_vec()),
        labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
        network_disabled: Some(true),
        ..Default::default()
    };
    run_body(docker, body, timeout, cancel).await
}

/// [`run_once`] with the whole container body (mounts, devices, groups).
pub async fn run_body(
    docker: &bollard::Docker,
    body: ContainerCreateBody,
    timeout: std::time::Duration,
    cancel: Cancel,
) -> Result<(i64, String, String)> {
    let image = body.image.clone().unwrap_or_default();
    let cmd = body.cmd.clone().unwrap_or_default();
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(|e| engine_err(&format!("create a container of `{image}`"), e))?
        .id;
    let result = async {
        docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| engine_err(&format!("start `{}` in `{image}`", cmd.join(" ")), e))?;
        let mut wait =
            docker.wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
        let waited = tokio::select! {
            w = tokio::time::timeout(timeout, wait.next()) => w,
            signal = cancel.wait() => return Err(Error::Interrupted { signal }),
        };
        let code = match waited {
            Err(_) => {
                return Err(Error::Engine {
                    message: format!(
                        "`{}` in `{image}` did not finish within {timeout:?}",
                        cmd.join(" ")
                    ),
                    hint: None,
                });
            }
            Ok(Some(Ok(w))) => w.status_code,
            // A non-zero exit arrives as an error carrying the code.
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(engine_err("wait for the container", e)),
            Ok(None) => -1,
        };
        let mut logs = docker.logs(
            &id,
            Some(bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let (mut out, mut err): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
        while let Some(item) = logs.next().await {
            // Memory stays bounded whatever the container prints.
            if out.len() + err.len() > RUN_ONCE_OUTPUT_MAX {
                return Err(Error::Engine {
                    message: format!(
                        "`{}` in `{image}` printed more than {} MiB",
                        cmd.join(" "),
                        RUN_ONCE_OUTPUT_MAX >> 20
                    ),
                    hint: None,
                });
            }
            match item.map_err(|e| engine_err("read the container's output", e))? {
                bollard::container::LogOutput::StdOut { message } => {
                    out.extend_from_slice(&message)
                }
                bollard::container::LogOutput::StdErr { message } => {
                    err.extend_from_slice(&message)
                }
                _ => {}
            }
        }
        Ok((
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }
    .await;
    let _ = remove_container(docker, &id).await;
    result
}
