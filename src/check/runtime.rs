//! Phases 5 and 7: verdicts over what the runtime probe found (pure; the probe itself is
//! `probe_runtime.py`, shipped in the binary and run by [`crate::ops::runtime`]).
//!
//! A run that ended on a signal, or whose output names a memory error (`double free`,
//! `corruption`, `segfault`), fails its check even when its output looked right. GPU checks with
//! no GPU given are skipped with the reason and with what ran of them, unless `--require-gpu`
//! turns those skips into failures; a crash in the part that ran still fails them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::check;
use crate::report::{Check, Status};

/// The probe script, as shipped.
pub const PROBE_SCRIPT: &str = include_str!("probe_runtime.py");

/// One subprocess of the probe.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Run {
    /// Which run (`5.3`, `5.3.preload`, `order.torch-amdsmi`).
    pub key: String,
    /// The exact code passed to `python3 -c`.
    pub code: String,
    /// Environment added for this run (`LD_PRELOAD`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether the GPU part of the code ran.
    #[serde(default)]
    pub gpu: bool,
    /// Seconds it took.
    #[serde(default)]
    pub seconds: f64,
    /// Exit code (negative: killed by a signal).
    pub rc: Option<i64>,
    /// The signal that ended it (`SIGABRT`).
    pub signal: Option<String>,
    /// Killed at the probe's time limit.
    #[serde(default)]
    pub timed_out: bool,
    /// What the code printed as `@forge {...}` facts.
    #[serde(default)]
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// End of its other stdout.
    #[serde(default)]
    pub stdout_tail: String,
    /// End of its stderr.
    #[serde(default)]
    pub stderr_tail: String,
    /// Memory-error words found anywhere in its output.
    #[serde(default)]
    pub memory_errors: Vec<String>,
    /// The last exception line of its traceback.
    pub error: Option<String>,
    /// An undefined `rsmi_*` symbol it failed on.
    pub rsmi_symbol: Option<String>,
}

/// A line of vLLM's code that imports `supports_xccl`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Importer {
    /// File, relative to site-packages.
    pub file: String,
    /// Line.
    pub line: u64,
    /// The module it imports from.
    pub module: String,
}

/// The probe's JSON document.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Probe {
    /// Format version.
    pub probe: u32,
    /// What the probe was told about the GPU (`None`: nothing; it ran every part).
    pub gpu: Option<bool>,
    /// Python's version.
    #[serde(default)]
    pub python: String,
    /// Whether torch, amdsmi, vllm, triton are importable (found, not imported).
    #[serde(default)]
    pub installed: BTreeMap<String, bool>,
    /// Whether /dev/kfd existed where the probe ran (recorded, never used to decide).
    #[serde(default)]
    pub dev_kfd: bool,
    /// Every run, by key.
    #[serde(default)]
    pub runs: BTreeMap<String, Run>,
    /// librocm_smi64 files found in the image.
    #[serde(default)]
    pub rocm_smi_libs: Vec<String>,
    /// Where vLLM's code imports `supports_xccl` from.
    #[serde(default)]
    pub xccl_importers: Vec<Importer>,
    /// Seconds the whole probe took.
    #[serde(default)]
    pub seconds: f64,
}

/// Parse the probe's stdout: its last `@forge-probe ` line.
pub fn parse(stdout: &str) -> Option<std::result::Result<Probe, serde_json::Error>> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("@forge-probe "))
        .map(serde_json::from_str)
}

/// A workaround the image needs, found by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workaround {
    /// The check that found it.
    pub check: String,
    /// `LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so`.
    pub set: String,
    /// Why.
    pub why: String,
}

/// How the GPU was given to the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpu {
    /// The devices were passed (or the probe ran outside a container, on its own).
    Given,
    /// No devices: why.
    Absent(String),
}

/// What the verdicts depend on besides the probe.
#[derive(Debug, Clone)]
pub struct Judge<'a> {
    /// GPU given or not.
    pub gpu: Gpu,
    /// A skipped GPU check is a failure.
    pub require_gpu: bool,
    /// The recipe's archs (`gfx1151`).
    pub archs: &'a [String],
    /// The recipe's extra imports.
    pub extra_imports: &'a [String],
}

/// How one run ended.
#[derive(Debug, Clone)]
enum End<'a> {
    /// Not run.
    Missing,
    /// Crashed: a signal or a memory error in its output.
    Crashed(String),
    /// Killed at the time limit.
    TimedOut(f64),
    /// Exited non-zero: the error line.
    Failed(String),
    /// Exited 0.
    Ok(&'a Run),
}

fn end<'a>(p: &'a Probe, key: &str) -> End<'a> {
    let Some(r) = p.runs.get(key) else {
        return End::Missing;
    };
    if r.timed_out {
        return End::TimedOut(r.seconds);
    }
    let mut crash = Vec::new();
    if let Some(s) = &r.signal {
        crash.push(format!("killed by {s}"));
    } else if matches!(r.rc, Some(134 | 135 | 136 | 139)) {
        crash.push(format!(
            "exit {} (a signal's code)",
            r.rc.unwrap_or_default()
        ));
    }
    if !r.memory_errors.is_empty() {
        let line = r
            .stderr_tail
            .lines()
            .chain(r.stdout_tail.lines())
            .find(|l| {
                r.memory_errors
                    .iter()
                    .any(|m| l.to_lowercase().contains(&m.to_lowercase()))
            })
            .unwrap_or("");
        crash.push(format!(
            "memory error in the output: {} (`{}`)",
            r.memory_errors.join(", "),
            crate::monitor::diagnose::clip(line.trim(), 160)
        ));
    }
    if !crash.is_empty() {
        return End::Crashed(crash.join("; "));
    }
    if r.rc != Some(0) {
        let why = r.error.clone().unwrap_or_else(|| {
            let last = r.stderr_tail.lines().rev().find(|l| !l.trim().is_empty());
            format!(
                "exit {}{}",
                r.rc.map_or("?".into(), |c| c.to_string()),
                last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
            )
        });
        return End::Failed(crate::monitor::diagnose::clip(&why, 300));
    }
    End::Ok(r)
}

fn fact<'a>(r: &'a Run, k: &str) -> Option<&'a serde_json::Value> {
    r.facts.get(k).filter(|v| !v.is_null())
}

fn fact_str(r: &Run, k: &str) -> Option<String> {
    fact(r, k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
}

/// What a run's end says, in words.
fn said(e: &End<'_>) -> String {
    match e {
        End::Missing => "not run".into(),
        End::Crashed(c) => format!("crashed: {c}"),
        End::TimedOut(s) => format!("no end within {s:.0} s (killed)"),
        End::Failed(f) => f.clone(),
        End::Ok(_) => "ran cleanly".into(),
    }
}

fn hint_for(error: &str) -> Option<&'static str> {
    crate::monitor::diagnose::KNOWN
        .iter()
        .enumerate()
        .find(|(i, _)| crate::monitor::diagnose::regex(*i).is_match(error))
        .map(|(_, k)| k.fix)
}

fn failed(id: &str, e: &End<'_>, what: &str) -> Check {
    let c = check(id, Status::Fail, format!("{what}: {}", said(e)));
    match e {
        End::Failed(f) | End::Crashed(f) => match hint_for(f) {
            Some(h) => c.with_hint(h),
            None => c,
        },
        _ => c,
    }
}

impl Judge<'_> {
    /// A GPU check that could not run fully: skipped with the reason and what ran, a failure
    /// under `--require-gpu`, and a failure whatever the GPU when the part that ran crashed.
    fn no_gpu(&self, id: &str, part: Option<&End<'_>>, ran: &str) -> Check {
        let Gpu::Absent(why) = &self.gpu else {
            unreachable!("called only without a GPU")
        };
        if let Some(e @ End::Crashed(_)) = part {
            return failed(id, e, &format!("{ran} (no GPU given)"));
        }
        let part = part.map_or(String::new(), |e| {
            format!("; ran in part: {ran}: {}", said(e))
        });
        if self.require_gpu {
            check(
                id,
                Status::Fail,
                format!("no GPU given ({why}) and --require-gpu{part}"),
            )
            .with_hint("run on the GPU host: forge passes /dev/kfd and /dev/dri with their groups")
        } else {
            check(id, Status::Skip, format!("no GPU given: {why}{part}"))
        }
    }

    fn given(&self) -> bool {
        self.gpu == Gpu::Given
    }

    /// Every phase 5 and 7 check, and forge's own, from `p`, in the spec's order.
    pub fn checks(&self, p: &Probe) -> (Vec<Check>, Vec<Workaround>) {
        let mut out = Vec::new();
        let mut workarounds = Vec::new();
        self.c51(p, &mut out);
        self.versions_into(p, &mut out);
        self.gpu_query(p, &mut out);
        self.distributed(p, &mut out, &mut workarounds);
        self.c54(p, &mut out);
        self.c55(p, &mut out);
        self.c56(p, &mut out);
        self.c57(p, &mut out);
        self.xccl_order(p, &mut out);
        self.c71(p, &mut out);
        self.c72(p, &mut out);
        self.extra(p, &mut out);
        (out, workarounds)
    }

    /// 5.1: `import torch`.
    fn c51(&self, p: &Probe, out: &mut Vec<Check>) {
        out.push(match end(p, "5.1") {
            End::Ok(r) => check(
                "5.1",
                Status::Pass,
                format!(
                    "torch {} ({})",
                    fact_str(r, "torch").unwrap_or_default(),
                    fact_str(r, "file").unwrap_or_default()
                ),
            ),
            e => failed("5.1", &e, "`import torch`"),
        });
    }

    /// the versions.
    fn versions_into(&self, p: &Probe, out: &mut Vec<Check>) {
        out.push(self.versions(p));
    }

    /// 5.2 and runtime.arch: the GPU as torch sees it.
    fn gpu_query(&self, p: &Probe, out: &mut Vec<Check>) {
        let e52 = end(p, "5.2");
        if self.given() {
            out.push(match &e52 {
                End::Ok(r) => {
                    let avail = fact(r, "available").and_then(serde_json::Value::as_bool);
                    let hip = fact_str(r, "hip");
                    let cuda = fact_str(r, "cuda");
                    let name = fact_str(r, "name").unwrap_or_else(|| "no device".into());
                    match (avail, &hip) {
                        (Some(true), Some(h)) => {
                            check("5.2", Status::Pass, format!("HIP {h}; device 0: {name}"))
                        }
                        (Some(true), None) => check(
                            "5.2",
                            Status::Fail,
                            format!(
                                "HIP is absent: torch.version.hip is None; torch sees {name} through {}",
                                cuda.map_or("no HIP".into(), |c| format!(
                                    "CUDA {c} (a CUDA build of torch)"
                                ))
                            ),
                        )
                        .with_hint("install the ROCm build of torch (the recipe's wheel), not a CUDA or CPU one"),
                        _ => check(
                            "5.2",
                            Status::Fail,
                            format!(
                                "torch.cuda.is_available() is False (HIP {}, CUDA {})",
                                hip.as_deref().unwrap_or("absent"),
                                cuda.as_deref().unwrap_or("absent")
                            ),
                        )
                        .with_hint(if hip.is_some() {
                            "the devices are passed; check the host driver (`forge preflight`) and that the image's HIP matches the host's ROCm"
                        } else {
                            "this torch has no HIP: install the ROCm build of torch"
                        }),
                    }
                }
                e => failed("5.2", e, "torch's GPU detection"),
            });
            out.push(self.arch(&e52));
        } else {
            let hip = match &e52 {
                End::Ok(r) => format!(
                    " (torch.version.hip = {})",
                    fact_str(r, "hip").unwrap_or_else(|| "None: this torch has no HIP".into())
                ),
                _ => String::new(),
            };
            out.push(self.no_gpu("5.2", Some(&e52), &format!("torch's GPU query{hip}")));
            out.push(self.no_gpu("runtime.arch", None, ""));
        }
    }

    /// 5.3 and runtime.rsmi-preload: torch.distributed, and the rsmi workaround when it needs one.
    fn distributed(&self, p: &Probe, out: &mut Vec<Check>, workarounds: &mut Vec<Workaround>) {
        let e53 = end(p, "5.3");
        let rsmi = p.runs.get("5.3").and_then(|r| r.rsmi_symbol.clone());
        out.push(match &e53 {
            End::Ok(r) => check(
                "5.3",
                Status::Pass,
                format!(
                    "torch.distributed available; imported {}",
                    fact(r, "imports")
                        .and_then(|v| v.as_array())
                        .map(|a| a
                            .iter()
                            .filter_map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
            ),
            e => {
                let mut c = failed("5.3", e, "distributed imports");
                if rsmi.is_some() {
                    c = c.with_hint(
                        "librocm_smi64 is not linked where its symbols are used: see runtime.rsmi-preload",
                    );
                }
                c
            }
        });
        out.push(match &rsmi {
            None if matches!(e53, End::Ok(_)) => check(
                "runtime.rsmi-preload",
                Status::Pass,
                "not needed: the distributed imports met no undefined rsmi_* symbol",
            ),
            None => check(
                "runtime.rsmi-preload",
                Status::Skip,
                format!("5.3 failed on something else, not an rsmi_* symbol: {}", said(&e53)),
            ),
            Some(sym) => match (end(p, "5.3.preload"), p.runs.get("5.3.preload")) {
                (End::Ok(_), Some(r)) => {
                    let set = r
                        .env
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    workarounds.push(Workaround {
                        check: "runtime.rsmi-preload".into(),
                        set: set.clone(),
                        why: format!("torch.distributed fails on undefined `{sym}` without it"),
                    });
                    check(
                        "runtime.rsmi-preload",
                        Status::Pass,
                        format!(
                            "undefined `{sym}` without it; with `{set}` the distributed imports succeed (a workaround in force, not a fix)"
                        ),
                    )
                    .with_hint(format!("set {set} in the image's ENV, or rebuild torch with librocm_smi64 linked (ROCm/pytorch#2901)"))
                }
                (End::Missing, _) => check(
                    "runtime.rsmi-preload",
                    Status::Fail,
                    format!("undefined `{sym}`, and no librocm_smi64.so in the image to preload"),
                )
                .with_hint("install rocm-smi-lib from the image's ROCm release"),
                (e, r) => check(
                    "runtime.rsmi-preload",
                    Status::Fail,
                    format!(
                        "undefined `{sym}`; with LD_PRELOAD={} still: {}",
                        r.and_then(|r| r.env.get("LD_PRELOAD"))
                            .map_or("?", String::as_str),
                        said(&e)
                    ),
                ),
            },
        });
    }

    /// 5.4: a tensor computed on the GPU.
    fn c54(&self, p: &Probe, out: &mut Vec<Check>) {
        out.push(if self.given() {
            match end(p, "5.4") {
                End::Ok(r) => {
                    let sum = fact(r, "sum").and_then(serde_json::Value::as_f64);
                    let dev = fact_str(r, "device").unwrap_or_default();
                    let ok = sum == Some(10000.0) && dev != "cpu";
                    check(
                        "5.4",
                        if ok { Status::Pass } else { Status::Fail },
                        format!(
                            "zeros(100,100)+1 on {dev} sums to {}",
                            sum.unwrap_or(f64::NAN)
                        ),
                    )
                }
                e => failed("5.4", &e, "GPU tensor compute"),
            }
        } else {
            self.no_gpu("5.4", None, "")
        });
    }

    /// 5.5: amdsmi.
    fn c55(&self, p: &Probe, out: &mut Vec<Check>) {
        let e55 = end(p, "5.5");
        out.push(if self.given() {
            match &e55 {
                End::Ok(r) => {
                    let n = fact(r, "handles")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    check(
                        "5.5",
                        if n > 0 { Status::Pass } else { Status::Fail },
                        format!("amdsmi found {n} processor(s)"),
                    )
                }
                e => failed("5.5", e, "amdsmi"),
            }
        } else {
            self.no_gpu("5.5", Some(&e55), "`import amdsmi`")
        });
    }

    /// 5.6: `import vllm`.
    fn c56(&self, p: &Probe, out: &mut Vec<Check>) {
        out.push(match end(p, "5.6") {
            End::Ok(r) => check(
                "5.6",
                Status::Pass,
                format!("vLLM {}", fact_str(r, "version").unwrap_or_default()),
            ),
            e => failed("5.6", &e, "`import vllm`"),
        });
    }

    /// 5.7: vLLM's platform.
    fn c57(&self, p: &Probe, out: &mut Vec<Check>) {
        let e57 = end(p, "5.7");
        out.push(if self.given() {
            match &e57 {
                End::Ok(r) => {
                    let rocm = fact(r, "rocm").and_then(serde_json::Value::as_bool) == Some(true);
                    check(
                        "5.7",
                        if rocm { Status::Pass } else { Status::Fail },
                        format!(
                            "current_platform is {} (is_rocm() = {rocm})",
                            fact_str(r, "platform").unwrap_or_default()
                        ),
                    )
                    .with_hint("vLLM finds ROCm through amdsmi: see 5.5")
                }
                e => failed("5.7", e, "vLLM platform detection"),
            }
        } else {
            let plat = match &e57 {
                End::Ok(r) => format!(
                    "vllm.platforms imported, platform {}",
                    fact_str(r, "platform").unwrap_or_default()
                ),
                _ => "`from vllm.platforms import current_platform`".into(),
            };
            self.no_gpu("5.7", Some(&e57), &plat)
        });
    }

    /// forge's: the collectives backend and the import order.
    fn xccl_order(&self, p: &Probe, out: &mut Vec<Check>) {
        out.push(self.xccl(p));
        out.push(self.import_order(p));
    }

    /// 7.1: torch + amdsmi + a tensor, clean exit.
    fn c71(&self, p: &Probe, out: &mut Vec<Check>) {
        let e71 = end(p, "7.1");
        out.push(if self.given() {
            match &e71 {
                End::Ok(r) if fact(r, "cuda").is_some() => check(
                    "7.1",
                    Status::Pass,
                    format!(
                        "torch + amdsmi imported, a tensor on {}, clean exit, no memory error",
                        fact_str(r, "cuda").unwrap_or_default()
                    ),
                ),
                End::Ok(_) => check(
                    "7.1",
                    Status::Fail,
                    "the tensor was never placed on the GPU",
                ),
                e => failed("7.1", e, "torch + amdsmi + .cuda()"),
            }
        } else {
            self.no_gpu(
                "7.1",
                Some(&e71),
                "`import torch; import amdsmi` and the process's exit",
            )
        });
    }

    /// 7.2: import cycles.
    fn c72(&self, p: &Probe, out: &mut Vec<Check>) {
        let e72 = end(p, "7.2");
        out.push(if self.given() {
            match &e72 {
                End::Ok(r) => {
                    let n = fact(r, "cycle")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0);
                    check(
                        "7.2",
                        if n == 3 { Status::Pass } else { Status::Fail },
                        format!(
                            "{n} of 3 cycles completed on {}",
                            fact_str(r, "device").unwrap_or_default()
                        ),
                    )
                }
                e => failed("7.2", e, "import cycles"),
            }
        } else {
            self.no_gpu("7.2", Some(&e72), "3 cycles on the CPU")
        });
    }

    /// runtime.imports: the recipe's extra imports.
    fn extra(&self, p: &Probe, out: &mut Vec<Check>) {
        if !self.extra_imports.is_empty() {
            let mut bad = Vec::new();
            let mut good = Vec::new();
            for m in self.extra_imports {
                match end(p, &format!("import:{m}")) {
                    End::Ok(_) => good.push(m.clone()),
                    e => bad.push(format!("{m}: {}", said(&e))),
                }
            }
            out.push(check(
                "runtime.imports",
                if bad.is_empty() {
                    Status::Pass
                } else {
                    Status::Fail
                },
                format!(
                    "imported: [{}]; failed: [{}]",
                    good.join(", "),
                    bad.join("; ")
                ),
            ));
        }
    }

    fn versions(&self, p: &Probe) -> Check {
        match end(p, "versions") {
            End::Ok(r) => {
                let v = |k: &str| fact_str(r, k);
                let mut parts = vec![
                    format!("python {}", v("python").unwrap_or_default()),
                    format!("torch {}", v("torch").unwrap_or_default()),
                    format!("HIP {}", v("hip").unwrap_or_else(|| "none".into())),
                    format!("CUDA {}", v("cuda").unwrap_or_else(|| "none".into())),
                    format!(
                        "triton {}",
                        v("triton").unwrap_or_else(|| "not installed".into())
                    ),
                ];
                for d in ["vllm", "amdsmi", "transformers"] {
                    if let Some(x) = v(&format!("dist:{d}")) {
                        parts.push(format!("{d} {x}"));
                    }
                }
                check("runtime.versions", Status::Pass, parts.join(", "))
            }
            e => failed("runtime.versions", &e, "reading torch/HIP/triton versions"),
        }
    }

    fn arch(&self, e52: &End<'_>) -> Check {
        let End::Ok(r) = e52 else {
            return check(
                "runtime.arch",
                Status::Fail,
                format!("no device: 5.2 {}", said(e52)),
            );
        };
        let name = fact_str(r, "name").unwrap_or_else(|| "no device".into());
        match fact_str(r, "arch").filter(|a| !a.is_empty()) {
            None => check(
                "runtime.arch",
                Status::Fail,
                format!("device 0 ({name}) reports no gcnArchName: not an AMD GPU under HIP"),
            ),
            // CUDA builds of torch fill gcnArchName with the device's name (seen on an H200 with
            // torch 2.11+cu130): only a gfx name is an AMD arch.
            Some(arch) if !arch.starts_with("gfx") => check(
                "runtime.arch",
                Status::Fail,
                format!(
                    "device 0 ({name}) reports gcnArchName `{arch}`, not a gfx arch: not an AMD GPU under HIP"
                ),
            ),
            Some(arch) => {
                let base = arch.split(':').next().unwrap_or(&arch).to_owned();
                let ok = self
                    .archs
                    .iter()
                    .any(|a| a.split(':').next() == Some(base.as_str()));
                let c = check(
                    "runtime.arch",
                    if ok { Status::Pass } else { Status::Fail },
                    format!(
                        "device 0 ({name}) is {arch}; the recipe builds for {}",
                        self.archs.join(";")
                    ),
                );
                if ok {
                    c
                } else {
                    c.with_hint("a wrong arch passes 5.2 and fails at the first kernel (`invalid device function`): add it to the recipe's archs")
                }
            }
        }
    }

    fn xccl(&self, p: &Probe) -> Check {
        if !p.installed.get("vllm").copied().unwrap_or(false) {
            return check(
                "runtime.xccl",
                Status::Skip,
                "vllm is not installed (see 5.6)",
            );
        }
        let paths = [
            ("vllm.utils", "xccl.old"),
            ("vllm.utils.torch_utils", "xccl.new"),
        ];
        let ends: Vec<(&str, End<'_>)> = paths.iter().map(|(m, k)| (*m, end(p, k))).collect();
        if let Some((m, e)) = ends
            .iter()
            .find(|(_, e)| matches!(e, End::Crashed(_) | End::TimedOut(_)))
        {
            return failed(
                "runtime.xccl",
                e,
                &format!("`from {m} import supports_xccl`"),
            );
        }
        let found: Vec<&str> = ends
            .iter()
            .filter(|(_, e)| matches!(e, End::Ok(_)))
            .map(|(m, _)| *m)
            .collect();
        let broken: Vec<String> = p
            .xccl_importers
            .iter()
            .filter(|i| !found.contains(&i.module.as_str()))
            .map(|i| format!("{}:{} imports it from {}", i.file, i.line, i.module))
            .collect();
        let uses = p
            .xccl_importers
            .iter()
            .map(|i| format!("{}:{} from {}", i.file, i.line, i.module))
            .collect::<Vec<_>>();
        if found.is_empty() {
            return check(
                "runtime.xccl",
                Status::Fail,
                format!(
                    "supports_xccl is in neither vllm.utils nor vllm.utils.torch_utils{}",
                    if uses.is_empty() {
                        String::new()
                    } else {
                        format!("; vLLM's code wants it: {}", uses.join(", "))
                    }
                ),
            )
            .with_hint("install one consistent vLLM wheel; never patch single files (vllm#26900)");
        }
        if !broken.is_empty() {
            return check(
                "runtime.xccl",
                Status::Fail,
                format!(
                    "a mixed vLLM install: supports_xccl is in {}, but {}",
                    found.join(" and "),
                    broken.join("; ")
                ),
            )
            .with_hint("install one consistent vLLM wheel; never patch single files (vllm#26900)");
        }
        check(
            "runtime.xccl",
            Status::Pass,
            format!(
                "supports_xccl from {}; vLLM's own imports agree{}",
                found.join(" and "),
                if uses.is_empty() {
                    " (none found)".into()
                } else {
                    format!(": {}", uses.join(", "))
                }
            ),
        )
    }

    fn import_order(&self, p: &Probe) -> Check {
        if !p.installed.get("amdsmi").copied().unwrap_or(false) {
            return check(
                "runtime.import-order",
                Status::Skip,
                "amdsmi is not installed: nothing to import in two orders (see 5.5)",
            );
        }
        let runs = [
            (
                "`import amdsmi; import torch`",
                end(p, "order.amdsmi-torch"),
            ),
            (
                "`import torch; import amdsmi`",
                end(p, "order.torch-amdsmi"),
            ),
        ];
        let bad: Vec<String> = runs
            .iter()
            .filter(|(_, e)| !matches!(e, End::Ok(_)))
            .map(|(w, e)| format!("{w}: {}", said(e)))
            .collect();
        if bad.is_empty() {
            check(
                "runtime.import-order",
                Status::Pass,
                "both orders import and exit cleanly",
            )
        } else {
            check("runtime.import-order", Status::Fail, bad.join("; ")).with_hint(
                "one ROCm release everywhere; amdsmi built from the image's own /opt/rocm/share/amd_smi (ROCm/TheRock#1059)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, rc: i64, facts: serde_json::Value, err: &str) -> Run {
        Run {
            key: key.into(),
            rc: Some(rc),
            signal: (rc < 0).then(|| "SIGABRT".into()),
            facts: facts.as_object().cloned().unwrap_or_default(),
            stderr_tail: err.into(),
            error: err.lines().last().map(str::to_owned),
            ..Default::default()
        }
    }

    fn judge<'a>(gpu: Gpu, archs: &'a [String]) -> Judge<'a> {
        Judge {
            gpu,
            require_gpu: false,
            archs,
            extra_imports: &[],
        }
    }

    fn status(c: &[Check], id: &str) -> Status {
        c.iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id}"))
            .status
    }

    #[test]
    fn a_crash_fails_even_when_the_output_looked_right() {
        let mut p = Probe::default();
        let mut r = run(
            "7.1",
            0,
            serde_json::json!({"imports": true, "cuda": "cuda:0"}),
            "",
        );
        r.stdout_tail = "done".into();
        r.stderr_tail = "double free or corruption (!prev)".into();
        r.memory_errors = vec!["double free".into(), "corruption".into()];
        p.runs.insert("7.1".into(), r);
        let archs = vec!["gfx1151".to_owned()];
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        let c71 = c.iter().find(|c| c.id == "7.1").unwrap();
        assert_eq!(c71.status, Status::Fail);
        assert!(
            c71.evidence.contains("double free or corruption (!prev)"),
            "{}",
            c71.evidence
        );
        // without a GPU the part that ran crashed: still a failure, not a skip
        let (c, _) = judge(Gpu::Absent("no /dev/kfd".into()), &archs).checks(&p);
        assert_eq!(status(&c, "7.1"), Status::Fail);
        // a signal alone fails too
        p.runs.insert(
            "7.1".into(),
            run("7.1", -6, serde_json::json!({"cuda": "cuda:0"}), ""),
        );
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        let c71 = c.iter().find(|c| c.id == "7.1").unwrap();
        assert!(c71.status == Status::Fail && c71.evidence.contains("SIGABRT"));
    }

    #[test]
    fn rsmi_retry_names_the_workaround() {
        let mut p = Probe::default();
        let mut r = run(
            "5.3",
            1,
            serde_json::json!({}),
            "ImportError: /opt/x/libtorch_hip.so: undefined symbol: rsmi_init",
        );
        r.rsmi_symbol = Some("rsmi_init".into());
        p.runs.insert("5.3".into(), r);
        let mut retry = run(
            "5.3.preload",
            0,
            serde_json::json!({"imports": ["PrefixStore"]}),
            "",
        );
        retry
            .env
            .insert("LD_PRELOAD".into(), "/opt/rocm/lib/librocm_smi64.so".into());
        p.runs.insert("5.3.preload".into(), retry);
        let archs = vec!["gfx1151".to_owned()];
        let (c, w) = judge(Gpu::Given, &archs).checks(&p);
        assert_eq!(status(&c, "5.3"), Status::Fail);
        assert_eq!(status(&c, "runtime.rsmi-preload"), Status::Pass);
        assert_eq!(w[0].set, "LD_PRELOAD=/opt/rocm/lib/librocm_smi64.so");
        p.runs.remove("5.3.preload");
        let (c, w) = judge(Gpu::Given, &archs).checks(&p);
        assert_eq!(status(&c, "runtime.rsmi-preload"), Status::Fail);
        assert!(w.is_empty());
    }

    #[test]
    fn cuda_torch_fails_hip_and_arch_and_skips_without_gpu() {
        let mut p = Probe::default();
        p.runs.insert(
            "5.2".into(),
            run("5.2", 0, serde_json::json!({"available": true, "hip": null, "cuda": "12.4", "name": "NVIDIA H200", "arch": null}), ""),
        );
        let archs = vec!["gfx1151".to_owned()];
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        let c52 = c.iter().find(|c| c.id == "5.2").unwrap();
        assert!(
            c52.status == Status::Fail && c52.evidence.contains("HIP is absent"),
            "{c52:?}"
        );
        assert_eq!(status(&c, "runtime.arch"), Status::Fail);
        let mut j = judge(Gpu::Absent("no /dev/kfd on this host".into()), &archs);
        let (c, _) = j.checks(&p);
        assert_eq!(status(&c, "5.2"), Status::Skip);
        assert_eq!(status(&c, "5.4"), Status::Skip);
        j.require_gpu = true;
        let (c, _) = j.checks(&p);
        assert_eq!(status(&c, "5.2"), Status::Fail);
        assert_eq!(status(&c, "5.4"), Status::Fail);
        // a matching gcnArchName with features passes
        p.runs.insert(
            "5.2".into(),
            run("5.2", 0, serde_json::json!({"available": true, "hip": "7.1.52802", "name": "AMD Radeon 8060S", "arch": "gfx1151:sramecc-:xnack-"}), ""),
        );
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        assert_eq!(status(&c, "5.2"), Status::Pass);
        assert_eq!(status(&c, "runtime.arch"), Status::Pass);
    }

    #[test]
    fn mixed_vllm_names_the_old_import() {
        let mut p = Probe::default();
        p.installed.insert("vllm".into(), true);
        p.runs.insert(
            "xccl.old".into(),
            run(
                "xccl.old",
                1,
                serde_json::json!({}),
                "ImportError: cannot import name 'supports_xccl' from 'vllm.utils'",
            ),
        );
        p.runs.insert(
            "xccl.new".into(),
            run("xccl.new", 0, serde_json::json!({"found": true}), ""),
        );
        p.xccl_importers.push(Importer {
            file: "vllm/platforms/__init__.py".into(),
            line: 9,
            module: "vllm.utils".into(),
        });
        let archs = vec!["gfx1151".to_owned()];
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        let x = c.iter().find(|c| c.id == "runtime.xccl").unwrap();
        assert_eq!(x.status, Status::Fail);
        assert!(
            x.evidence.contains("vllm/platforms/__init__.py:9"),
            "{}",
            x.evidence
        );
        p.xccl_importers[0].module = "vllm.utils.torch_utils".into();
        let (c, _) = judge(Gpu::Given, &archs).checks(&p);
        assert_eq!(status(&c, "runtime.xccl"), Status::Pass);
    }

    /// The probe as it ran with plain python3 on an NVIDIA H200 with CUDA torch 2.11 (issue 10):
    /// 5.1, 5.3, 5.4, 7.2 pass; 5.2 fails saying HIP is absent; amdsmi and vLLM checks fail.
    #[test]
    fn real_h200_probe_output() {
        let text = include_str!("../../tests/fixtures/runtime/h200-probe.out");
        let p = parse(text).unwrap().unwrap();
        assert_eq!(p.gpu, None);
        let archs = vec!["gfx1151".to_owned()];
        let (c, w) = judge(Gpu::Given, &archs).checks(&p);
        for id in ["5.1", "5.3", "5.4", "7.2", "runtime.versions"] {
            assert_eq!(status(&c, id), Status::Pass, "{id}");
        }
        for id in ["5.2", "runtime.arch", "5.5", "5.6", "5.7", "7.1"] {
            assert_eq!(status(&c, id), Status::Fail, "{id}");
        }
        let c52 = c.iter().find(|c| c.id == "5.2").unwrap();
        assert!(c52.evidence.contains("HIP is absent") && c52.evidence.contains("CUDA 13.0"));
        let arch = c.iter().find(|c| c.id == "runtime.arch").unwrap();
        assert!(
            arch.evidence.contains("not a gfx arch"),
            "{}",
            arch.evidence
        );
        assert!(w.is_empty());
    }

    #[test]
    fn probe_output_is_found_after_other_lines() {
        let out = "noise\n@forge-probe {\"probe\": 1, \"gpu\": false, \"runs\": {}}\n";
        let p = parse(out).unwrap().unwrap();
        assert_eq!(p.gpu, Some(false));
        assert!(parse("nothing").is_none());
    }
}
