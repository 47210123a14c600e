//! `forge serve IMAGE`: phases 6-7 on an image (the vLLM server, a request, memory safety).

use std::path::PathBuf;

use crate::Ui;
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::ops::serve::{ServeOptions, run_serve};
use crate::recipe::Recipe;

/// `forge serve`'s arguments.
#[derive(Debug, Clone)]
pub struct Args {
    /// The image.
    pub image: String,
    /// `--no-gpu`.
    pub no_gpu: bool,
    /// `--require-gpu`.
    pub require_gpu: bool,
    /// `--artifacts`.
    pub artifacts: PathBuf,
    /// `--run-id`.
    pub run_id: Option<String>,
}

/// `forge serve`: exit 0 all passed (or skipped), 1 a check failed; SIGINT and SIGTERM stop
/// the server, remove its container and end with [`Error::Interrupted`] (130, 143).
pub fn run(ui: &Ui, args: Args, recipe: &Recipe) -> Result<u8> {
    let run = args
        .run_id
        .unwrap_or_else(|| crate::ops::drive::new_run_id("serve"));
    crate::cancel::cooperate();
    let cancel = Cancel::process();
    let opts = ServeOptions {
        no_gpu: args.no_gpu,
        require_gpu: args.require_gpu,
        run: run.clone(),
        run_dir: args.artifacts.join(&run),
        dev: PathBuf::from("/dev"),
    };
    ui.say(&format!(
        "serve {} in {} ...",
        recipe.file.checks.server.model, args.image
    ));
    let result = super::with_containers(|engine| {
        run_serve(engine, &args.image, recipe, &opts, cancel, &mut |l| {
            ui.say(&format!("  {l}"));
        })
    });
    if let Err(Error::Interrupted { .. }) = &result {
        ui.say("interrupted: the server's container was stopped and removed");
    }
    let (checks, out) = result?;
    let mut s = format!("docker run line: {}\n", out.docker_run);
    if let Some(l) = &out.log {
        s.push_str(&format!("server log: {}\n", l.display()));
    }
    if out.gpu.is_none() {
        s.push_str(&format!(
            "no GPU was given to the server{}\n",
            if args.no_gpu { " (--no-gpu)" } else { "" }
        ));
    }
    for d in &out.diagnoses {
        s.push_str(&format!(
            "known failure in the log, line {}: {}\n  cause: {}\n  fix:   {}\n",
            d.line, d.known.symptom, d.known.cause, d.known.fix
        ));
    }
    ui.say(&s);
    let outcome = crate::report::Outcome::new(format!("serve {}", args.image), checks)
        .with("run", &run)
        .with("serve", &out);
    Ok(ui.emit(&outcome))
}
