//! `forge runtime IMAGE`: phase 5 on an image (the GPU runtime probe in a container), or
//! `--from-json` on a probe's output, `--print-probe` for the probe itself.

use std::path::PathBuf;

use crate::Ui;
use crate::cancel::Cancel;
use crate::check::runtime::{Gpu, PROBE_SCRIPT};
use crate::error::{Error, Result};
use crate::ops::runtime::{GpuChoice, RuntimeOptions, judge, run_runtime, summary};
use crate::recipe::Recipe;

/// `forge runtime`'s arguments.
#[derive(Debug, Clone)]
pub struct Args {
    /// The image.
    pub image: Option<String>,
    /// `--no-gpu`.
    pub no_gpu: bool,
    /// `--require-gpu`.
    pub require_gpu: bool,
    /// `--from-json`.
    pub from_json: Option<PathBuf>,
    /// `--print-probe`.
    pub print_probe: bool,
    /// `--artifacts`.
    pub artifacts: PathBuf,
    /// `--run-id`.
    pub run_id: Option<String>,
}

/// `forge runtime`: exit 0 all passed (or skipped), 1 a check failed; SIGINT and SIGTERM stop
/// the probe, remove its container and end with [`Error::Interrupted`] (130, 143).
pub fn run(ui: &Ui, args: Args, recipe: &Recipe) -> Result<u8> {
    use crate::report::Outcome;
    if args.print_probe {
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(PROBE_SCRIPT.as_bytes());
        return Ok(0);
    }
    if let Some(path) = &args.from_json {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let probe = crate::check::runtime::parse(&text)
            .or_else(|| Some(serde_json::from_str(text.trim())))
            .and_then(std::result::Result::ok)
            .ok_or_else(|| {
                Error::input(
                    format!("`{}` holds no probe output", path.display()),
                    Some("pass what `python3 probe_runtime.py` printed (its `@forge-probe {...}` line)"),
                )
            })?;
        // The probe ran on its own: it ran the GPU parts unless told there was no GPU.
        let gpu = if probe.gpu == Some(false) {
            Gpu::Absent("the probe was run with `\"gpu\": false`".into())
        } else {
            Gpu::Given
        };
        let (checks, workarounds) = judge(&probe, recipe, gpu, args.require_gpu);
        let outcome = Outcome::new(format!("runtime (probe output {})", path.display()), checks)
            .with("workarounds", &workarounds)
            .with("probe", &probe);
        return Ok(ui.emit(&outcome));
    }
    let image = args.image.expect("clap requires IMAGE here");
    let run = args
        .run_id
        .unwrap_or_else(|| crate::ops::drive::new_run_id("runtime"));
    crate::cancel::cooperate();
    let cancel = Cancel::process();
    let opts = RuntimeOptions {
        gpu: if args.no_gpu {
            GpuChoice::None
        } else {
            GpuChoice::Auto
        },
        require_gpu: args.require_gpu,
        run: run.clone(),
        run_dir: Some(args.artifacts.join(&run)),
        dev: PathBuf::from("/dev"),
    };
    ui.say(&format!("runtime probe in {image} ..."));
    let result = super::with_containers(|engine| {
        run_runtime(engine, &image, recipe, &opts, cancel, &mut |l| {
            if ui.verbose > 0 {
                ui.say(&format!("  {l}"));
            }
        })
    });
    if let Err(Error::Interrupted { .. }) = &result {
        ui.say("interrupted: the probe's container was removed");
    }
    let (checks, output) = result?;
    if ui.verbose > 0 {
        let mut s = String::from("each check's docker run line:\n");
        for c in &checks {
            for l in output.commands.get(&c.id).into_iter().flatten() {
                s.push_str(&format!("  {}: {l}\n", c.id));
            }
        }
        ui.say(&s);
    }
    ui.say(&summary(&output));
    let outcome = Outcome::new(format!("runtime {image}"), checks)
        .with("run", &run)
        .with("runtime", &output);
    Ok(ui.emit(&outcome))
}
