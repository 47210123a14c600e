//! Reading the engine's host (issue 22): a short container whose userland is the host's own.
//!
//! There is no registry to pull a probe image from, and an image that happens to be on a remote
//! engine may have no shell. So forge imports its own image, `forge-probe:host-1`, from a tar it
//! writes (a few hundred bytes: empty directories and symbolic links, no file content): `/usr`
//! links to `/host/usr`, `/bin`, `/lib`, `/lib64`, `/sbin` to `usr/...`, `/opt` to `/host/opt`,
//! `/etc/ld.so.cache` and `/etc/alternatives` to the host's. The container bind-mounts the host's
//! `/usr`, `/etc`, `/opt`, `/dev` and the engine's data root read-only under `/host` (`/dev` and
//! the data root not recursively), so `/bin/sh`, `stat`, `df` and `rocminfo` are the host's
//! programs with the host's libraries, on a merged-/usr host (every distribution a Strix Halo
//! runs: Debian 12+, Ubuntu 22.04+, Fedora, Arch). `/proc/modules`, `/proc/meminfo`,
//! `/proc/sys/kernel/osrelease` and `/sys/module` are the kernel's, the same in any container.
//! No network; labelled as a run's temporary container and removed on every path.
//!
//! `rocminfo` needs the GPU: a second container gets `/dev/kfd` and `/dev/dri` and their groups
//! (by id), only when the first one found `/dev/kfd`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, Mount, MountBindOptions, MountType,
};

use super::{DockerEngine, engine_err};
use crate::error::Result;

/// The probe image's name (bump the tag when the layout changes).
pub const PROBE_IMAGE: &str = "forge-probe:host-1";

/// Where the engine's data root is mounted in the probe.
pub const DATA_MOUNT: &str = "/host/data";

/// The probe image's root filesystem: directories and links only.
pub fn probe_rootfs() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, std::io::empty())
            .expect("a tar in memory");
    };
    for d in ["host/", "dev/", "proc/", "sys/", "etc/", "tmp/"] {
        dir(d);
    }
    let mut link = |path: &str, target: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, path, target)
            .expect("a tar in memory");
    };
    for (path, target) in [
        ("usr", "host/usr"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("opt", "host/opt"),
        ("etc/ld.so.cache", "/host/etc/ld.so.cache"),
        ("etc/alternatives", "/host/etc/alternatives"),
    ] {
        link(path, target);
    }
    b.into_inner().expect("a tar in memory")
}

/// Lists the GPU's device nodes under the host's `/dev` (mounted at `/host/dev`): path, group id,
/// mode, type.
pub const NODES_SCRIPT: &str = "for n in /host/dev/kfd /host/dev/dri/renderD* /host/dev/dri/card*; \
     do [ -e \"$n\" ] && stat -c '%n %g %a %F' \"$n\"; done; true";

/// A device node on the engine's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    /// The host's path (`/dev/kfd`).
    pub path: String,
    /// The owning group's id.
    pub gid: u32,
    /// Permission bits, octal (`660`).
    pub mode: String,
}

/// [`NODES_SCRIPT`]'s lines.
pub fn parse_nodes(text: &str) -> Vec<DevNode> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let path = f.next()?.strip_prefix("/host")?.to_owned();
            let gid = f.next()?.parse().ok()?;
            let mode = f.next()?.to_owned();
            Some(DevNode { path, gid, mode })
        })
        .collect()
}

/// The devices and groups a GPU container on `host` gets from its `nodes`; `Err` says why none.
pub fn gpu_access_of(nodes: &[DevNode], host: &str) -> Result<super::GpuAccess, String> {
    let Some(kfd) = nodes.iter().find(|n| n.path == "/dev/kfd") else {
        return Err(format!(
            "no /dev/kfd on the engine's host {host} (no AMD GPU, or amdgpu not loaded)"
        ));
    };
    let mut groups = vec![kfd.gid];
    let mut devices = vec![kfd.path.clone()];
    let dri: Vec<&DevNode> = nodes
        .iter()
        .filter(|n| n.path.starts_with("/dev/dri/"))
        .collect();
    if !dri.is_empty() {
        devices.push("/dev/dri".to_owned());
        groups.extend(dri.iter().map(|n| n.gid));
    }
    let mut seen = std::collections::BTreeSet::new();
    groups.retain(|g| *g != 0 && seen.insert(*g));
    Ok(super::GpuAccess { devices, groups })
}

/// One probe run: the script, and the GPU devices and groups to give (empty: none).
#[derive(Debug, Clone, Default)]
pub struct ProbeRun {
    /// Run by the host's `/bin/sh -c`.
    pub script: String,
    /// Device paths on the engine's host.
    pub devices: Vec<String>,
    /// Groups (ids) to add.
    pub groups: Vec<u32>,
    /// The engine's data root, mounted at [`DATA_MOUNT`].
    pub data_root: Option<String>,
}

fn bind(source: &str, target: &str, recursive: bool) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(source.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: (!recursive).then(|| MountBindOptions {
            non_recursive: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl DockerEngine {
    async fn ensure_probe_image(&self) -> Result<()> {
        use futures_util::StreamExt;
        if self.docker.inspect_image(PROBE_IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = PROBE_IMAGE.split_once(':').expect("name:tag");
        let mut s = self.docker.create_image(
            Some(
                bollard::query_parameters::CreateImageOptionsBuilder::new()
                    .from_src("-")
                    .repo(repo)
                    .tag(tag)
                    .build(),
            ),
            Some(bollard::body_full(probe_rootfs().into())),
            None,
        );
        while let Some(item) = s.next().await {
            let info = item.map_err(|e| engine_err("import the probe image", e))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(engine_err("import the probe image", e));
            }
        }
        Ok(())
    }

    /// The GPU of the engine's host: this machine's `dev` when the engine is local, the nodes a
    /// probe container lists there otherwise. `Err` says why there is none, naming the host.
    pub fn gpu_of_engine_host(
        &self,
        dev: &std::path::Path,
        run: &str,
    ) -> std::result::Result<super::GpuAccess, String> {
        if self.endpoint.transport.local() {
            return super::GpuAccess::from_host(dev);
        }
        let host = self
            .rt
            .block_on(self.docker.info())
            .ok()
            .and_then(|i| i.name)
            .unwrap_or_else(|| self.endpoint.host.clone());
        let mut labels = super::temp_labels(run);
        labels.insert("forge.phase".to_owned(), "gpu-nodes".to_owned());
        let probe = ProbeRun {
            script: NODES_SCRIPT.to_owned(),
            ..ProbeRun::default()
        };
        match self.run_probe(&probe, &labels, Duration::from_secs(60)) {
            Ok((0, out, _)) => gpu_access_of(&parse_nodes(&out), &host),
            Ok((code, _, err)) => Err(format!(
                "the probe listing the GPU nodes on the engine's host {host} exited {code}: {}",
                err.lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
            )),
            Err(e) => Err(format!(
                "the probe listing the GPU nodes on the engine's host {host} did not run: {e}"
            )),
        }
    }

    /// Run `probe` on the engine's host; (exit code, stdout, stderr).
    pub fn run_probe(
        &self,
        probe: &ProbeRun,
        labels: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<(i64, String, String)> {
        let mut mounts = vec![
            bind("/usr", "/host/usr", true),
            bind("/etc", "/host/etc", true),
            bind("/opt", "/host/opt", true),
            bind("/dev", "/host/dev", false),
        ];
        mounts.extend(
            probe
                .data_root
                .as_deref()
                .map(|r| bind(r, DATA_MOUNT, false)),
        );
        let body = ContainerCreateBody {
            image: Some(PROBE_IMAGE.to_owned()),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), probe.script.clone()]),
            env: Some(vec![
                "PATH=/usr/local/bin:/usr/bin:/usr/sbin:/opt/rocm/bin".into(),
                "LC_ALL=C".into(),
            ]),
            labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: Some("none".into()),
                devices: Some(
                    probe
                        .devices
                        .iter()
                        .map(|d| DeviceMapping {
                            path_on_host: Some(d.clone()),
                            path_in_container: Some(d.clone()),
                            cgroup_permissions: Some("rwm".into()),
                        })
                        .collect(),
                ),
                group_add: Some(probe.groups.iter().map(u32::to_string).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.rt.block_on(async {
            self.ensure_probe_image().await?;
            super::files::run_body(&self.docker, body, timeout, self.cancel).await
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_image_is_links_and_directories_only() {
        let t = super::probe_rootfs();
        let mut a = tar::Archive::new(t.as_slice());
        let mut links = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().size().unwrap(), 0);
            if let Some(l) = e.link_name().unwrap() {
                links.push(format!(
                    "{} -> {}",
                    e.path().unwrap().display(),
                    l.display()
                ));
            }
        }
        assert!(links.contains(&"usr -> host/usr".to_owned()), "{links:?}");
        assert!(
            links.contains(&"lib64 -> usr/lib64".to_owned()),
            "{links:?}"
        );
        assert!(t.len() < 16 << 10);
    }
}
