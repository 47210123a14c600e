//! Phase 1 on the engine's host when the engine is not on this machine: the facts are read by a
//! probe container there ([`crate::engine::ProbeRun`]), never from forge's own `/dev`, `/proc`,
//! `/sys` or `/opt`. Every GPU check names the host it looked at.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    Gtt, check, judge_amdgpu, judge_gtt, judge_kernel, judge_rocm_version, judge_rocminfo,
};
use crate::engine::{DATA_MOUNT, Engine, EngineInfo, GpuAccess, ProbeRun};
use crate::recipe::Recipe;
use crate::report::{Check, Status};
use crate::tool::ToolRun;
use crate::units::gb;

/// The facts script: sections headed `@@forge NAME`, each the output of one read.
pub const FACTS_SCRIPT: &str = r#"s() { echo "@@forge $1"; }
s modules; cat /proc/modules
s sys-amdgpu; [ -d /sys/module/amdgpu ] && echo present
s gttsize; cat /sys/module/amdgpu/parameters/gttsize 2>/dev/null
s ttm-pages-limit; cat /sys/module/ttm/parameters/pages_limit 2>/dev/null
s nodes; for n in /host/dev/kfd /host/dev/dri/renderD* /host/dev/dri/card*; do [ -e "$n" ] && stat -c '%n %g %a %F' "$n"; done
s rocm-version; cat /opt/rocm/.info/version 2>/dev/null
s meminfo; cat /proc/meminfo
s osrelease; cat /proc/sys/kernel/osrelease
s df; [ -d /host/data ] && df -Pk /host/data | tail -n 1
s end
"#;

/// `rocminfo`, with the GPU given; 127 when the host has none.
pub const ROCMINFO_SCRIPT: &str = "command -v rocminfo >/dev/null 2>&1 || exit 127; exec rocminfo";

pub use crate::engine::DevNode;

/// What the probe read on the engine's host.
#[derive(Debug, Clone)]
pub struct EngineHost {
    /// The host's name (the engine's `Name`).
    pub name: String,
    /// `/proc/modules`.
    pub modules: String,
    /// Whether `/sys/module/amdgpu` exists.
    pub sys_amdgpu: bool,
    /// `amdgpu.gttsize`.
    pub gttsize: Option<String>,
    /// `ttm.pages_limit`.
    pub ttm_pages_limit: Option<String>,
    /// `/dev/kfd`, `/dev/dri/renderD*`, `/dev/dri/card*`.
    pub nodes: Vec<DevNode>,
    /// `/opt/rocm/.info/version`.
    pub rocm_version: Option<String>,
    /// `/proc/meminfo`.
    pub meminfo: Option<String>,
    /// The kernel release.
    pub osrelease: Option<String>,
    /// Free bytes under the engine's data root.
    pub data_free: Option<u64>,
    /// How `rocminfo` ran there (with the GPU); `None` when there was no `/dev/kfd` to give it.
    pub rocminfo: Option<ToolRun>,
}

/// The sections of the facts script's output.
pub fn sections(text: &str) -> BTreeMap<&str, String> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    let mut cur: Option<&str> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@forge ") {
            cur = Some(name.trim());
            out.entry(name.trim()).or_default();
            continue;
        }
        if let Some(c) = cur {
            let s = out.entry(c).or_default();
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// Parse the facts script's output (`None` when it did not run to its end).
pub fn parse_facts(name: &str, text: &str) -> Option<EngineHost> {
    let s = sections(text);
    s.get("end")?;
    let some = |k: &str| s.get(k).filter(|v| !v.trim().is_empty()).cloned();
    let nodes = s
        .get("nodes")
        .map(|t| crate::engine::parse_nodes(t))
        .unwrap_or_default();
    let data_free = s.get("df").and_then(|t| {
        t.split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    });
    Some(EngineHost {
        name: name.to_owned(),
        modules: s.get("modules").cloned().unwrap_or_default(),
        sys_amdgpu: s.get("sys-amdgpu").is_some_and(|t| t.contains("present")),
        gttsize: some("gttsize"),
        ttm_pages_limit: some("ttm-pages-limit"),
        nodes,
        rocm_version: some("rocm-version"),
        meminfo: some("meminfo"),
        osrelease: some("osrelease"),
        data_free,
        rocminfo: None,
    })
}

impl EngineHost {
    fn kfd(&self) -> Option<&DevNode> {
        self.nodes.iter().find(|n| n.path == "/dev/kfd")
    }

    fn render(&self) -> Vec<&DevNode> {
        self.nodes
            .iter()
            .filter(|n| n.path.starts_with("/dev/dri/renderD"))
            .collect()
    }

    /// The devices and groups a GPU container on that host gets; `Err` says why none.
    pub fn gpu_access(&self) -> Result<GpuAccess, String> {
        crate::engine::gpu_access_of(&self.nodes, &self.name)
    }
}

/// Read the engine's host: the facts container, then `rocminfo` with the GPU when there is one.
pub fn read(
    engine: &dyn Engine,
    info: &EngineInfo,
    run: &str,
) -> std::result::Result<EngineHost, String> {
    let name = info.name.clone().unwrap_or_else(|| info.host.clone());
    let mut labels = crate::engine::temp_labels(run);
    labels.insert("forge.phase".to_owned(), "preflight".to_owned());
    let probe = ProbeRun {
        script: FACTS_SCRIPT.to_owned(),
        data_root: info.root_dir.clone(),
        ..ProbeRun::default()
    };
    let (code, out, err) = engine
        .host_probe(&probe, &labels, Duration::from_secs(60))
        .map_err(|e| format!("the probe container on {name} did not run: {e}"))?;
    let mut host = parse_facts(&name, &out).ok_or_else(|| {
        let last = err
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        format!(
            "the probe container on {name} exited {code} before its end: {last} (forge's probe \
             runs the host's own /usr/bin/sh: a host without a merged /usr cannot be read this way)"
        )
    })?;
    if let Ok(gpu) = host.gpu_access() {
        let probe = ProbeRun {
            script: ROCMINFO_SCRIPT.to_owned(),
            devices: gpu.devices,
            groups: gpu.groups,
            data_root: None,
        };
        host.rocminfo = Some(
            match engine.host_probe(&probe, &labels, Duration::from_secs(60)) {
                Ok((127, _, _)) => ToolRun::Missing,
                Ok((code, stdout, stderr)) => ToolRun::Exited {
                    code: i32::try_from(code).unwrap_or(-1),
                    stdout,
                    stderr,
                },
                Err(e) if e.to_string().contains("did not finish") => ToolRun::TimedOut,
                Err(e) => ToolRun::Failed(e.to_string()),
            },
        );
    }
    Ok(host)
}

fn on(host: &str, mut c: Check) -> Check {
    c.evidence = format!("on the engine's host {host}: {}", c.evidence);
    c
}

/// 1.1-1.4, host.groups, host.kernel, host.gtt and host.disk judged on the engine host's facts;
/// `Err` (the probe could not run) fails the GPU checks with why.
pub fn checks(
    recipe: &Recipe,
    info: &EngineInfo,
    host: &std::result::Result<EngineHost, String>,
) -> Vec<Check> {
    let h = match host {
        Ok(h) => h,
        Err(why) => {
            return ["1.1", "1.2", "host.groups", "1.3", "1.4"]
                .into_iter()
                .map(|id| {
                    check(id, Status::Fail, why.clone()).with_hint(
                        "forge reads a remote engine's host through a short container there: \
                         check that the engine can create containers with bind mounts",
                    )
                })
                .chain([check(
                    "host.disk",
                    Status::Skip,
                    format!("not measured: {why}"),
                )])
                .collect();
        }
    };
    let name = h.name.as_str();
    let (devices, groups) = (devices_check(h), groups_check(h));
    let rocminfo = match &h.rocminfo {
        Some(run) => judge_rocminfo(recipe, run.clone(), Duration::from_secs(60)),
        None => check("1.3", Status::Fail, "not run: no /dev/kfd to give rocminfo")
            .with_hint("no GPU agent can be listed on a host without the AMD GPU driver"),
    };
    let need = recipe.file.preflight.min_free_disk_gb * 1_000_000_000;
    let root = info.root_dir.as_deref().unwrap_or("the data root");
    let disk = match h.data_free {
        Some(free) => super::check_when(
            free >= need,
            "host.disk",
            format!("{} free under {root} on {name}, need {}", gb(free), gb(need)),
        )
        .with_hint("free space there (`docker builder prune`, `docker image prune`) or move the engine's data root to a bigger disk"),
        None => check(
            "host.disk",
            Status::Fail,
            format!("`df` of {root} ({DATA_MOUNT} in the probe) gave nothing on {name}"),
        ),
    };
    vec![
        on(
            name,
            judge_amdgpu(
                &h.modules,
                h.sys_amdgpu.then(|| "/sys/module/amdgpu".to_owned()),
            ),
        ),
        on(name, devices),
        on(name, groups),
        on(name, rocminfo),
        on(
            name,
            judge_rocm_version(
                recipe,
                h.rocm_version
                    .clone()
                    .ok_or_else(|| "no /opt/rocm/.info/version".to_owned()),
            ),
        ),
        disk,
    ]
}

/// 1.2 on the engine's host: /dev/kfd and the render nodes, with the groups containers get.
fn devices_check(h: &EngineHost) -> Check {
    match (h.kfd(), h.render()) {
        (Some(kfd), render) if !render.is_empty() => {
            let all: Vec<String> = std::iter::once(kfd)
                .chain(render)
                .map(|n| format!("{} (gid {}, mode {})", n.path, n.gid, n.mode))
                .collect();
            let groups = h.gpu_access().map(|g| g.groups).unwrap_or_default();
            check(
                "1.2",
                Status::Pass,
                format!(
                    "{}; containers get them with --group-add {}",
                    all.join(", "),
                    groups
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" --group-add ")
                ),
            )
        }
        (kfd, _) => check(
            "1.2",
            Status::Fail,
            format!(
                "{}no /dev/dri/renderD* node",
                if kfd.is_none() {
                    "/dev/kfd missing; "
                } else {
                    ""
                }
            ),
        )
        .with_hint("no AMD GPU driver exposes devices on that host: is it the GPU machine?"),
    }
}

/// host.groups: the nodes' groups given to containers by id.
fn groups_check(h: &EngineHost) -> Check {
    match h.gpu_access() {
        Ok(g) => check(
            "host.groups",
            Status::Pass,
            format!(
                "containers there are given the nodes' groups by id ({}): no login's groups needed",
                g.groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(why) => check("host.groups", Status::Skip, why),
    }
}

/// host.kernel and host.gtt on the engine host's facts.
pub fn serving_checks(
    recipe: &Recipe,
    host: &std::result::Result<EngineHost, String>,
) -> Vec<Check> {
    let Ok(h) = host else {
        return Vec::new();
    };
    vec![
        on(
            &h.name,
            judge_kernel(
                recipe,
                h.osrelease
                    .clone()
                    .ok_or_else(|| "no kernel release read".to_owned()),
            ),
        ),
        on(
            &h.name,
            judge_gtt(
                recipe,
                &Gtt {
                    sys_module: "/sys/module/amdgpu".to_owned(),
                    loaded: h.sys_amdgpu,
                    meminfo: h.meminfo.clone(),
                    ttm_pages_limit: h.ttm_pages_limit.clone(),
                    gttsize: h.gttsize.clone(),
                    sources: "ttm.pages_limit or /proc/meminfo".to_owned(),
                },
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the facts script printed in a probe container on this machine's engine (no GPU,
    /// a monolithic kernel without /proc/modules).
    const NO_GPU: &str = include_str!("../../../tests/fixtures/probe/facts-no-gpu.txt");

    fn recipe() -> Recipe {
        Recipe::shipped("7.1.1", Default::default()).unwrap()
    }

    fn info() -> EngineInfo {
        EngineInfo {
            host: "ssh://me@box".into(),
            root_dir: Some("/var/lib/docker".into()),
            name: Some("box".into()),
            ..Default::default()
        }
    }

    /// The same host as a Strix Halo box shows it: amdgpu loaded, the nodes with their groups.
    fn with_gpu() -> String {
        NO_GPU
            .replace(
                "@@forge modules\n",
                "@@forge modules\namdgpu 15495168 12 - Live 0x0000000000000000\n",
            )
            .replace("@@forge sys-amdgpu\n", "@@forge sys-amdgpu\npresent\n")
            .replace(
                "@@forge nodes\n",
                "@@forge nodes\n/host/dev/kfd 993 660 character special file\n\
                 /host/dev/dri/renderD128 992 660 character special file\n\
                 /host/dev/dri/card1 44 660 character special file\n",
            )
            .replace("@@forge rocm-version\n", "@@forge rocm-version\n7.1.1-38\n")
    }

    #[test]
    fn a_host_without_gpu_fails_the_gpu_checks_naming_it() {
        let h = parse_facts("box", NO_GPU).expect("the script ran to its end");
        assert!(h.nodes.is_empty() && !h.sys_amdgpu && h.rocm_version.is_none());
        assert_eq!(h.data_free, Some(40_497_524 * 1024));
        assert_eq!(
            h.osrelease.as_deref().map(str::trim),
            Some("6.18.44-fc-v1147")
        );
        let cs = checks(&recipe(), &info(), &Ok(h));
        let by = |id: &str| cs.iter().find(|c| c.id == id).unwrap();
        for id in ["1.1", "1.2", "1.3", "1.4"] {
            assert_eq!(by(id).status, Status::Fail, "{id}: {}", by(id).evidence);
            assert!(
                by(id).evidence.starts_with("on the engine's host box:"),
                "{}",
                by(id).evidence
            );
        }
        assert_eq!(by("host.groups").status, Status::Skip);
        assert!(
            by("host.disk")
                .evidence
                .contains("under /var/lib/docker on box")
        );
    }

    #[test]
    fn a_gpu_host_passes_with_its_group_ids() {
        let mut h = parse_facts("box", &with_gpu()).unwrap();
        assert_eq!(
            h.gpu_access().unwrap(),
            GpuAccess {
                devices: vec!["/dev/kfd".into(), "/dev/dri".into()],
                groups: vec![993, 992, 44],
            }
        );
        h.rocminfo = Some(ToolRun::Exited {
            code: 0,
            stdout: super::super::tests::ROCMINFO.to_owned(),
            stderr: String::new(),
        });
        let cs = checks(&recipe(), &info(), &Ok(h.clone()));
        let by = |id: &str| cs.iter().find(|c| c.id == id).unwrap();
        for id in ["1.1", "1.2", "host.groups", "1.3", "1.4"] {
            assert_eq!(by(id).status, Status::Pass, "{id}: {}", by(id).evidence);
        }
        assert!(
            by("1.2").evidence.contains("/dev/kfd (gid 993, mode 660)")
                && by("1.2")
                    .evidence
                    .contains("--group-add 993 --group-add 992 --group-add 44"),
            "{}",
            by("1.2").evidence
        );
        // rocminfo missing there is a finding, named on that host
        h.rocminfo = Some(ToolRun::Missing);
        let cs = checks(&recipe(), &info(), &Ok(h));
        let c = cs.iter().find(|c| c.id == "1.3").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.evidence.contains("box: `rocminfo` is not installed"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn a_probe_that_stopped_early_or_could_not_run_is_a_failure_not_a_pass() {
        let cut = &NO_GPU[..NO_GPU.find("@@forge end").unwrap()];
        assert!(parse_facts("box", cut).is_none());
        let cs = checks(
            &recipe(),
            &info(),
            &Err("the probe container on box did not run".into()),
        );
        assert!(
            cs.iter()
                .filter(|c| c.id.starts_with("1."))
                .all(|c| c.status == Status::Fail)
        );
        assert_eq!(cs.last().unwrap().id, "host.disk");
    }
}
