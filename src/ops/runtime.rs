//! `forge runtime IMAGE`: phases 5 and 7. The shipped probe is copied into one container of the
//! image (GPU devices and their groups passed when the host has them), its progress followed
//! through the engine's log stream, its JSON judged by [`crate::check::runtime`]. The container is
//! named and labelled and removed on every path (success, failure, timeout, Ctrl-C).
//!
//! [`run_runtime`] is the phase's entry point for the pipeline; [`command`] is the CLI's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cancel::Cancel;
use crate::check::runtime::{Gpu, Judge, PROBE_SCRIPT, Probe, Workaround};
use crate::engine::{
    ContainerSpec, Containers, FileIn, Follow, GpuAccess, LogEnd, Running, Stream,
};
use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::report::Check;

/// Where the probe goes inside the container.
pub const PROBE_PATH: &str = "/forge-probe/probe_runtime.py";

/// Whether to give the container the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuChoice {
    /// The host's `/dev/kfd` and `/dev/dri` when they exist.
    Auto,
    /// None (`--no-gpu`).
    None,
}

/// Options of the phase.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// GPU or not.
    pub gpu: GpuChoice,
    /// Skipped GPU checks fail.
    pub require_gpu: bool,
    /// Run id (container name and labels).
    pub run: String,
    /// Where to keep the probe's JSON and the commands (`None`: nowhere).
    pub run_dir: Option<PathBuf>,
    /// The host's device directory (`/dev`; tests point it elsewhere).
    pub dev: PathBuf,
}

/// What the phase produced besides its checks.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeOutput {
    /// The image.
    pub image: String,
    /// The devices and groups given, if any.
    pub gpu: Option<GpuAccess>,
    /// Why no GPU was given.
    pub no_gpu: Option<String>,
    /// The `docker run` line of the probe's container.
    pub container: String,
    /// Each check's own `docker run` line(s), to reproduce it by hand.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Workarounds the image needs (`LD_PRELOAD=...`).
    pub workarounds: Vec<Workaround>,
    /// Seconds, container start to its exit.
    pub seconds: f64,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The probe's document.
    pub probe: Probe,
}

/// Which probe runs each check used.
fn runs_of(id: &str) -> &'static [&'static str] {
    match id {
        "5.1" => &["5.1"],
        "runtime.versions" => &["versions"],
        "5.2" | "runtime.arch" => &["5.2"],
        "5.3" => &["5.3"],
        "runtime.rsmi-preload" => &["5.3", "5.3.preload"],
        "5.4" => &["5.4"],
        "5.5" => &["5.5"],
        "5.6" => &["5.6"],
        "5.7" => &["5.7"],
        "runtime.xccl" => &["xccl.old", "xccl.new"],
        "runtime.import-order" => &["order.amdsmi-torch", "order.torch-amdsmi"],
        "7.1" => &["7.1"],
        "7.2" => &["7.2"],
        _ => &[],
    }
}

/// The probe container's spec.
pub fn probe_spec(
    image: &str,
    recipe: &Recipe,
    gpu: &GpuAccess,
    gpu_given: bool,
    run: &str,
) -> ContainerSpec {
    let rt = &recipe.file.checks.runtime;
    let mut config = serde_json::json!({
        "gpu": gpu_given,
        "timeout": rt.timeout_secs,
        "extra_imports": rt.extra_imports,
    });
    if rt.jobs > 0 {
        config["jobs"] = rt.jobs.into();
    }
    let pid = std::process::id();
    let mut labels = crate::engine::temp_labels(run);
    labels.insert("forge.phase".to_owned(), "runtime".to_owned());
    ContainerSpec {
        image: image.to_owned(),
        name: format!("forge-runtime-{}-{pid}", crate::ops::plan::tag_slug(run)),
        cmd: vec!["python3".into(), PROBE_PATH.into(), config.to_string()],
        // the image's ENTRYPOINT (vllm-openai has one) would swallow the probe: as `--entrypoint ''`
        entrypoint: Some(vec![String::new()]),
        env: rt.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels,
        gpu: gpu.clone(),
        shm_bytes: Some(recipe.file.checks.server.shm_size_mb << 20),
        ports: Vec::new(),
        binds: Vec::new(),
        files: vec![FileIn {
            path: PROBE_PATH.into(),
            data: PROBE_SCRIPT.as_bytes().to_vec(),
            mode: 0o644,
        }],
        no_network: true,
    }
}

/// Judge a probe document (from a container, or from a run made elsewhere).
pub fn judge(
    probe: &Probe,
    recipe: &Recipe,
    gpu: Gpu,
    require_gpu: bool,
) -> (Vec<Check>, Vec<Workaround>) {
    Judge {
        gpu,
        require_gpu,
        archs: recipe.archs(),
        extra_imports: &recipe.file.checks.runtime.extra_imports,
    }
    .checks(probe)
}

/// Phases 5 and 7 on `image`. `progress` sees the probe's progress lines; `cancel` (SIGINT,
/// SIGTERM) stops the probe and removes its container, returning [`Error::Interrupted`].
pub fn run_runtime(
    engine: &dyn Containers,
    image: &str,
    recipe: &Recipe,
    opts: &RuntimeOptions,
    cancel: Cancel,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<Check>, RuntimeOutput)> {
    let (access, no_gpu) = match opts.gpu {
        GpuChoice::None => (GpuAccess::default(), Some("--no-gpu".to_owned())),
        GpuChoice::Auto => match engine.engine_gpu(&opts.dev, &opts.run) {
            Ok(a) => (a, None),
            Err(why) => (GpuAccess::default(), Some(why)),
        },
    };
    let spec = probe_spec(image, recipe, &access, no_gpu.is_none(), &opts.run);
    let rt = &recipe.file.checks.runtime;
    // Every run may take its full time; a few run at a time, never fewer than one.
    let limit = Duration::from_secs(rt.timeout_secs * 16 + 60);
    let container = Running::start(engine, &spec)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    let ended = engine.follow(
        &container.id,
        Some(container.started + limit),
        cancel,
        &mut |s, bytes| {
            match s {
                Stream::Out => out.extend_from_slice(bytes),
                Stream::Err => {
                    err.extend_from_slice(bytes);
                    for &b in bytes {
                        if b == b'\n' {
                            let l = String::from_utf8_lossy(&line);
                            if let Some(p) = l.strip_prefix("forge-probe: ") {
                                progress(p);
                            }
                            line.clear();
                        } else {
                            line.push(b);
                        }
                    }
                }
            }
            Follow::More
        },
    )?;
    let seconds = container.started.elapsed().as_secs_f64();
    match ended {
        LogEnd::Cancelled => {
            container.remove()?;
            return Err(cancel.interrupted());
        }
        LogEnd::Deadline => {
            container.remove()?;
            return Err(Error::Engine {
                message: format!(
                    "the probe did not finish within {} s in `{image}`; its container was removed",
                    limit.as_secs()
                ),
                hint: Some("raise `checks.runtime.timeout-secs` in the recipe".into()),
            });
        }
        LogEnd::Exited | LogEnd::Stopped => {}
    }
    let state = engine.state(&container.id)?;
    container.remove()?;
    let probe = probe_of(image, &out, &err, &state)?;
    let gpu = match &no_gpu {
        None => Gpu::Given,
        Some(why) => Gpu::Absent(why.clone()),
    };
    let (checks, workarounds) = judge(&probe, recipe, gpu, opts.require_gpu);
    let commands = commands(&spec, &probe, &checks);
    let mut output = RuntimeOutput {
        image: image.to_owned(),
        gpu: access.given().then_some(access.clone()),
        no_gpu,
        container: spec.docker_run_line(None, &[]),
        commands,
        workarounds,
        seconds,
        files: Vec::new(),
        probe,
    };
    if let Some(dir) = &opts.run_dir {
        output.files = write_files(dir, &output)?;
    }
    Ok((checks, output))
}

/// The probe's answer in its stdout, or an error that says how it ended (exit code, OOM, the
/// end of its stderr).
fn probe_of(
    image: &str,
    out: &[u8],
    err: &[u8],
    state: &crate::engine::State,
) -> Result<crate::check::runtime::Probe> {
    let (out, err) = (String::from_utf8_lossy(out), String::from_utf8_lossy(err));
    match crate::check::runtime::parse(&out) {
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(Error::Engine {
            message: format!("the probe's output is not its JSON ({e})"),
            hint: None,
        }),
        None => Err(Error::Engine {
            message: format!(
                "the probe gave no result in `{image}` (exit {}{}): {}",
                state.exit_code.map_or("?".into(), |c| c.to_string()),
                if state.oom_killed { ", OOM-killed" } else { "" },
                crate::monitor::diagnose::clip(err.trim(), 400)
            ),
            hint: Some("the image needs python3 (3.8 or newer) on its PATH".into()),
        }),
    }
}

/// Each check's `docker run` line(s): the same image, devices, groups and environment as the
/// probe's container, with the check's own code.
fn commands(
    spec: &ContainerSpec,
    probe: &Probe,
    checks: &[Check],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for c in checks {
        let keys: Vec<String> = if c.id == "runtime.imports" {
            probe
                .runs
                .keys()
                .filter(|k| k.starts_with("import:"))
                .cloned()
                .collect()
        } else {
            runs_of(&c.id).iter().map(|k| (*k).to_owned()).collect()
        };
        let lines: Vec<String> = keys
            .iter()
            .filter_map(|k| probe.runs.get(k))
            .map(|r| {
                let env: Vec<String> = r.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let mut s = spec.clone();
                s.entrypoint = None;
                s.docker_run_line(Some(&["python3".into(), "-c".into(), r.code.clone()]), &env)
            })
            .collect();
        if !lines.is_empty() {
            out.insert(c.id.clone(), lines);
        }
    }
    out
}

fn write_files(dir: &Path, o: &RuntimeOutput) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let json = dir.join("runtime-probe.json");
    let doc = serde_json::to_vec_pretty(&o.probe).expect("probe serializes");
    std::fs::write(&json, doc).map_err(|e| Error::io("write", &json, e))?;
    let sh = dir.join("runtime-commands.sh");
    let mut s = format!(
        "#!/bin/sh\n# forge runtime {}: each check's docker run line, to run by hand.\n# The probe's own container:\n#   {}\n",
        o.image,
        o.container.replace('\n', "\n#   ")
    );
    for (id, lines) in &o.commands {
        for l in lines {
            s.push_str(&format!("\n# {id}\n{l}\n"));
        }
    }
    std::fs::write(&sh, s).map_err(|e| Error::io("write", &sh, e))?;
    Ok(vec![json, sh])
}

/// The timing line under the table.
pub fn summary(o: &RuntimeOutput) -> String {
    let mut s = format!(
        "probe: {} runs in {:.1} s in one container ({})\n",
        o.probe.runs.len(),
        o.seconds,
        match (&o.gpu, &o.no_gpu) {
            (Some(g), _) => format!("GPU: {} with groups {:?}", g.devices.join(" "), g.groups),
            (None, Some(why)) => format!("no GPU given: {why}"),
            _ => "no GPU given".into(),
        }
    );
    for w in &o.workarounds {
        s.push_str(&format!("workaround in force: {} ({})\n", w.set, w.why));
    }
    for f in &o.files {
        s.push_str(&format!("kept: {}\n", f.display()));
    }
    s
}
