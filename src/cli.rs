//! The command line: clap derive types only, no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// forge: build, check and release PyTorch + vLLM images for AMD ROCm GPUs (gfx1151 first).
///
/// Exit codes: 0 every check passed (or was skipped with its reason), 1 a check failed,
/// 2 forge itself could not run.
#[derive(Debug, Parser)]
#[command(
    name = "forge",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Examples:\n  forge plan --rocm 7.1.1             the plan, without touching Docker\n  forge build --rocm 7.1.1 --json      build, watch, check; the verdict as JSON on stdout\n  forge diagnose - < error.txt         name the known failure in pasted text\n  forge completions bash > /etc/bash_completion.d/forge"
)]
pub struct Cli {
    /// Print machine-readable JSON on stdout (humans still get stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The Docker context whose engine to use (as `docker --context`): over DOCKER_HOST,
    /// DOCKER_CONTEXT and `docker context use`.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Signing the bundle's `SHA256SUMS` (minisign).
#[derive(Debug, Clone, Default, Args)]
pub struct SignArgs {
    /// Sign the bundle's SHA256SUMS with this minisign secret key, into SHA256SUMS.minisig
    /// (`minisign -G -W` makes a password-less pair; an encrypted key takes its password from
    /// FORGE_SIGN_KEY_PASSWORD). Receivers check it with `minisign -Vm SHA256SUMS -p forge.pub`.
    #[arg(long, value_name = "FILE", env = "FORGE_SIGN_KEY")]
    pub sign_key: Option<PathBuf>,
}

/// Which recipe to use.
#[derive(Debug, Clone, Args)]
pub struct RecipeArgs {
    /// A shipped recipe by ROCm version (7.1.1, 7.0.2, 6.2.4); default 7.1.1.
    #[arg(long, value_name = "VERSION", conflicts_with = "recipe")]
    pub rocm: Option<String>,
    /// A recipe file of your own.
    #[arg(long, value_name = "PATH")]
    pub recipe: Option<PathBuf>,
    /// Accept a ROCm version vLLM does not support for the target arch.
    #[arg(long)]
    pub allow_unsupported: bool,
}

/// forge's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the fully resolved plan (build args, stages, checks, artifacts) without touching Docker.
    #[command(
        after_help = "Examples:\n  forge plan                           the default recipe (ROCm 7.1.1, gfx1151)\n  forge plan --recipe my.toml --json   your recipe, as JSON"
    )]
    Plan {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// Phase 1: check the GPU host and the build host (driver, devices, rocminfo, Docker, disk, memory).
    #[command(
        after_help = "Examples:\n  forge preflight\n  forge preflight --rocm 7.0.2 --artifacts /mnt/big/artifacts --json"
    )]
    Preflight {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Where runs write their files (its free space is checked too).
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// Name the known failures in a log or pasted error text (FILE, or - for stdin).
    #[command(
        after_help = "Examples:\n  forge diagnose artifacts/<run>/build.log\n  docker logs vllm 2>&1 | forge diagnose -"
    )]
    Diagnose {
        /// The file to read; `-` or nothing reads stdin.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Phase 2 over a finished build log: each flag with its line, every fatal and warning finding.
    #[command(
        after_help = "Examples:\n  forge scan artifacts/<run>/build.log\n  docker build --progress=plain . 2>&1 | forge scan - --arch gfx1151"
    )]
    Scan {
        /// The build log; `-` reads stdin.
        #[arg(value_name = "LOG")]
        log: PathBuf,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Target arch(s) to require instead of the recipe's (repeat or `;`-separate).
        #[arg(long, value_name = "GFX")]
        arch: Vec<String>,
    },
    /// Follow a log another process is writing; stop that process on the first fatal finding.
    #[command(
        after_help = "Examples:\n  docker build --progress=plain . > build.log 2>&1 &\n  forge watch build.log --pid $!\n  forge watch /mnt/nfs/build.log --poll"
    )]
    Watch {
        /// The build log (waited for if it does not exist yet).
        #[arg(value_name = "LOG")]
        log: PathBuf,
        /// The build's process: its process group gets SIGINT, SIGTERM, SIGKILL on a fatal
        /// finding; its exit ends the watch.
        #[arg(long, value_name = "PID")]
        pid: Option<i32>,
        /// Seconds between SIGINT, SIGTERM and SIGKILL.
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        grace: f64,
        /// Poll the log every 100 ms instead of using inotify (network filesystems, where
        /// another machine's writes raise no event here).
        #[arg(long)]
        poll: bool,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Target arch(s) to require instead of the recipe's (repeat or `;`-separate).
        #[arg(long, value_name = "GFX")]
        arch: Vec<String>,
    },
    /// The main job: build the recipe's image through the Docker engine, watch the log live,
    /// stop the build on a fatal finding, take the wheels out, write the run's report.
    #[command(
        after_help = "Examples:\n  forge build --rocm 7.1.1\n  forge build --recipe tests/fixtures/docker/good.toml --no-export --json"
    )]
    Build {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Which builder: BuildKit where the engine supports it (auto), or force one.
        #[arg(long, value_enum, default_value = "auto")]
        builder: crate::ops::drive::BuilderChoice,
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
        /// Run id (default: recipe name and UTC time): a letter or digit, then letters,
        /// digits, `.`, `_`, `-`.
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Do not export the image as .tar.gz after a good build (same as `--skip export`).
        #[arg(long)]
        no_export: bool,
        /// Continue a run (default: `latest`) from the first phase that did not pass, reusing
        /// what it recorded once verified.
        #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "latest")]
        resume: Option<String>,
        /// Do not run these phases (repeat or comma-separate).
        #[arg(long, value_enum, value_name = "PHASE", value_delimiter = ',')]
        skip: Vec<crate::pipeline::PhaseId>,
        /// Run only these phases (with `--resume`, the others' recorded outputs are used).
        #[arg(long, value_enum, value_name = "PHASE", value_delimiter = ',')]
        only: Vec<crate::pipeline::PhaseId>,
        /// Count skipped checks and phases as failures (exit 1), for CI.
        #[arg(long)]
        strict: bool,
        /// Rehearse: run the recipe's Dockerfile end to end in minutes, with stand-in sources for
        /// the long compiles (on a rehearsal base image; README: "The Dockerfile").
        #[arg(long)]
        rehearse: bool,
        /// The rehearsal base image (default `forge-rehearsal-rocm:<rocm>-s2`, made by
        /// `scripts/rehearsal-base.sh`).
        #[arg(long, value_name = "IMAGE", requires = "rehearse")]
        rehearsal_base: Option<String>,
        /// Build on the usual engine (`--context`, DOCKER_HOST, ...), then stream the image into
        /// this one and run phases 4-7 there: the engine on the GPU host, as a docker context
        /// name or an engine URL (ssh://me@strix, tcp://strix:2376 with DOCKER_TLS_VERIFY).
        #[arg(long, value_name = "ENGINE", env = "FORGE_GPU_ENGINE")]
        gpu_engine: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// List the runs under the artifacts directory: recipe, date, verdict, phases, sizes.
    Runs {
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// Remove temporary containers and images left by forge runs that are no longer running.
    #[command(
        after_help = "Examples:\n  forge clean\n  forge clean --all --json      also those of runs still running"
    )]
    Clean {
        /// Also those of runs still running.
        #[arg(long)]
        all: bool,
    },
    /// Phase 3: check a wheel (size, distributed symbols, HIP linkage and symbols, GPU code
    /// objects, glibc), reading it once, streaming.
    #[command(
        after_help = "Examples:\n  forge wheel artifacts/<run>/wheels/torch-*.whl\n  forge wheel torch.whl --arch gfx1151 --image forge/vllm-rocm:7.1.1-gfx1151"
    )]
    Wheel {
        /// The wheel file.
        #[arg(value_name = "WHEEL")]
        wheel: PathBuf,
        /// GPU arch(s) the code objects must cover (default: the recipe's).
        #[arg(long, value_name = "GFX")]
        arch: Vec<String>,
        /// A root filesystem to resolve libtorch_hip.so's libraries in.
        #[arg(long, value_name = "DIR", conflicts_with = "image")]
        lib_root: Option<PathBuf>,
        /// An image whose filesystem to resolve them in (read through the Docker engine).
        #[arg(long, value_name = "TAG")]
        image: Option<String>,
        /// Worker threads (default: the CPU count).
        #[arg(long, value_name = "N", value_parser = threads())]
        threads: Option<usize>,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Export an image as `.tar.gz` with a SHA256 file, in one pass, compressing on every core;
    /// then read the archive back (complete, checksum right, loadable). The release's size
    /// threshold applies only with `--rocm` or `--recipe`. `-o DIR/` makes DIR a bundle
    /// (manifest.json, SHA256SUMS) that `forge verify` checks.
    #[command(
        after_help = "Examples:\n  forge export forge/vllm-rocm:7.1.1-gfx1151 -o vllm.tar.gz\n  forge export forge/vllm-rocm:7.1.1-gfx1151 --rocm 7.1.1   with the release's size threshold\n  forge export forge/vllm-rocm:7.1.1-gfx1151 -o release/ --split 1900M   a bundle in parts"
    )]
    Export {
        /// The image (tag or id).
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The archive to write, or a directory (existing, or ending in `/`) to write the archive
        /// and a bundle's manifest.json and SHA256SUMS into (default: artifacts/<image>.tar.gz).
        #[arg(long, short, value_name = "PATH|DIR")]
        out: Option<PathBuf>,
        /// Archive format: gz (every engine loads it) or zst (Docker Engine 23.0+ loads it;
        /// refused when the engine here is older).
        #[arg(long, value_enum, default_value = "gz")]
        format: crate::ops::export::Format,
        /// Cut the archive into parts of SIZE (`2G`, `1900M`, `2GiB`) for hosts that cap file
        /// sizes (GitHub releases: 2 GiB); SHA256SUMS lists the parts, the report the command
        /// that joins them.
        #[arg(long, value_name = "SIZE", value_parser = crate::ops::export::parse_size)]
        split: Option<u64>,
        /// gzip level, 1 (fast) to 9 (small).
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
        level: u32,
        /// Compression threads (default: the CPU count).
        #[arg(long, value_name = "N", value_parser = threads())]
        threads: Option<usize>,
        /// Audit the image's files from the same stream (the `forge image` audit checks).
        #[arg(long)]
        audit: bool,
        #[command(flatten)]
        recipe: RecipeArgs,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Phases 5 and 7: run the shipped probe in a container of IMAGE (GPU devices and their
    /// groups passed when the host has them): torch, HIP, distributed, GPU compute, amdsmi,
    /// vLLM, memory safety, each check in its own process.
    Runtime {
        /// The image (tag or id).
        #[arg(value_name = "IMAGE", required_unless_present_any = ["from_json", "print_probe"])]
        image: Option<String>,
        /// Give the container no GPU even when the host has one.
        #[arg(long)]
        no_gpu: bool,
        /// A GPU check that cannot run (no GPU) fails instead of being skipped.
        #[arg(long)]
        require_gpu: bool,
        /// Judge the JSON of a probe run elsewhere (`python3 probe.py > out.txt` on a machine
        /// without Docker) instead of running one.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "print_probe"])]
        from_json: Option<PathBuf>,
        /// Print the probe script and exit.
        #[arg(long, conflicts_with = "image")]
        print_probe: bool,
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
        /// Run id (default: `runtime-` and UTC time).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Phase 6: start the vLLM OpenAI server of IMAGE with the recipe's model and arguments,
    /// follow its log, check /health, /v1/models, completions (plain, streamed, chat), stop it.
    Serve {
        /// The image (tag or id).
        #[arg(value_name = "IMAGE")]
        image: String,
        /// Start the server with no GPU devices (a CPU build of vLLM; the tests' double).
        #[arg(long)]
        no_gpu: bool,
        /// Without a GPU (and without --no-gpu) the checks fail instead of being skipped.
        #[arg(long)]
        require_gpu: bool,
        /// Where runs write their files (the server's log).
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
        /// Run id (default: `serve-` and UTC time).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Check a bundle: every checksum recomputed (files, parts, the whole archive), the manifest
    /// against the files and the thresholds; with `--load`, the image id after loading it.
    Verify {
        /// The bundle directory (a run's artifacts/<run>/, or what `forge export -o DIR` wrote).
        #[arg(value_name = "BUNDLE_DIR")]
        dir: PathBuf,
        /// Also load the archive into the Docker engine and compare the image id.
        #[arg(long)]
        load: bool,
        /// Check SHA256SUMS.minisig with this minisign public key (the sender's forge.pub).
        #[arg(long, value_name = "PUBKEY")]
        key: Option<PathBuf>,
        /// Pull the image `forge push` recorded, by digest and by tag, and compare the image id
        /// with the manifest's (a tag moved to another image fails).
        #[arg(long)]
        registry: bool,
    },
    /// Push a bundle's image to a registry through the engine, with the docker CLI's
    /// credentials (~/.docker/config.json: auths, credsStore, credHelpers); print the digest
    /// and record it in manifest.json. A run whose verdict is fail is refused unless
    /// `--allow-failed`.
    #[command(
        after_help = "Examples:\n  forge push artifacts/<run>/ registry.example.com/forge/vllm-rocm:7.1.1\n  forge verify artifacts/<run>/ --registry      pull by the recorded digest, compare"
    )]
    Push {
        /// The bundle directory (a run's artifacts/<run>/, or `forge export -o DIR/`).
        #[arg(value_name = "BUNDLE_DIR")]
        dir: PathBuf,
        /// Where to push: `REGISTRY/REPOSITORY[:TAG]`.
        #[arg(value_name = "REF")]
        reference: String,
        /// Push even though the run's verdict is fail.
        #[arg(long)]
        allow_failed: bool,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Render a run's reports from its record: report.md, report.json, report.junit.xml and
    /// report.html (and refresh the bundle's manifest.json and SHA256SUMS).
    Report {
        /// The run directory (artifacts/<run>/).
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
        // `--sign-key`: sign the rewritten SHA256SUMS again; without it a signature left from
        // before no longer matches and is removed (forge says so).
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Phase 4: check an image's size, system and Python packages, ROCm files and ROCm release,
    /// and audit its files from the export stream (GPU code objects, vLLM against torch).
    #[command(
        after_help = "Examples:\n  forge image forge/vllm-rocm:7.1.1-gfx1151\n  forge image my:image --recipe my.toml --json"
    )]
    Image {
        /// The image (tag or id).
        #[arg(value_name = "IMAGE")]
        image: String,
        /// GPU arch(s) the libraries torch and vLLM load must carry (default: the recipe's).
        #[arg(long, value_name = "GFX")]
        arch: Vec<String>,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Also write the image's SBOM (CycloneDX 1.6 JSON: every dpkg and Python package with
        /// its purl, ROCm releases, the GPU arches of every library with GPU code) to FILE.
        #[arg(long, value_name = "FILE")]
        sbom: Option<PathBuf>,
        /// Stream the image from the usual engine into this one first, then check it there (a
        /// docker context name or an engine URL, as `forge build --gpu-engine`).
        #[arg(long, value_name = "ENGINE", env = "FORGE_GPU_ENGINE")]
        gpu_engine: Option<String>,
    },
    /// Write a recipe from upstream's own pins (`forge recipe from-vllm SDIST_OR_TREE`), or
    /// its Python lock (`forge recipe lock`).
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(
        after_help = "Examples:\n  forge completions bash > /etc/bash_completion.d/forge\n  forge completions zsh > \"${fpath[1]}/_forge\"\n  forge completions fish > ~/.config/fish/completions/forge.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `forge recipe` verbs.
#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Read vLLM's `docker/Dockerfile.rocm_base` (a source tree, or its sdist streamed) and write
    /// a recipe that builds its components at its refs on the same ROCm release for `--arch`;
    /// the components that do not apply are listed with the reason.
    #[command(
        after_help = "Examples:\n  forge recipe from-vllm vllm-0.32.0.tar.gz --arch gfx1151 -o recipes/vllm-0.32.0-rocm-7.2.3.toml\n  forge recipe from-vllm ~/src/vllm --vllm-ref v0.12.0 --rocm 7.1.1 > my.toml"
    )]
    FromVllm(FromVllmArgs),
    /// Write the recipe's Python lock (its `[lock] file`): vLLM's own requirements/rocm.txt and
    /// common.txt, read from the sdist, less the components the build compiles, resolved with uv
    /// as of the sdist's date, every version pinned with its SHA256, for the image's interpreter
    /// (CPython 3.12) and checked to resolve the same for the rehearsal's (3.13).
    #[command(
        after_help = "Examples:\n  forge recipe lock --recipe recipes/rocm-7.1.1.toml --sdist ~/.cache/forge/sdists/vllm-0.12.0.tar.gz\n  forge recipe lock --recipe recipes/rocm-7.1.1.toml --check   exit 1 when the committed lock is not what resolves"
    )]
    Lock(LockArgs),
}

/// `forge recipe lock`.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The recipe file whose lock to write (its `[lock] file`, beside it).
    #[arg(long, value_name = "PATH")]
    pub recipe: PathBuf,
    /// The recipe's vLLM sdist (default: `vllm-VERSION.tar.gz` under $FORGE_SDIST_DIR or
    /// ~/.cache/forge/sdists, where `scripts/fetch-vllm-sdist.sh` puts it).
    #[arg(long, value_name = "SDIST")]
    pub sdist: Option<PathBuf>,
    /// Write nothing: exit 1, naming the packages, when the lock on disk pins other versions
    /// than a resolution now gives.
    #[arg(long)]
    pub check: bool,
}

/// `forge recipe from-vllm`.
#[derive(Debug, Clone, Args)]
pub struct FromVllmArgs {
    /// A vLLM sdist (`vllm-X.Y.Z.tar.gz`) or source tree.
    #[arg(value_name = "SDIST_OR_TREE")]
    pub source: PathBuf,
    /// Target arch(s), cut from upstream's list (repeat or `;`-separate).
    #[arg(long, value_name = "GFX", default_value = "gfx1151")]
    pub arch: Vec<String>,
    /// The ROCm release to pin, instead of the one upstream's base image tag names (`7.1`
    /// there is a moving tag; `--rocm 7.1.1` pins a release).
    #[arg(long, value_name = "VERSION")]
    pub rocm: Option<String>,
    /// vLLM's ref, for a source tree that does not say its version (an sdist does).
    #[arg(long, value_name = "REF")]
    pub vllm_ref: Option<String>,
    /// Write the recipe here (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `--threads`: a positive count (0 threads would do nothing).
fn threads() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096)
}

/// `docs/commands.md`: every command's `--help`, as clap renders it, so the reference cannot
/// drift from the CLI (a unit test compares the committed copy).
pub fn reference_markdown() -> String {
    use clap::CommandFactory;
    fn walk(cmd: &mut clap::Command, path: &str, out: &mut String) {
        let help = cmd.render_long_help().to_string();
        out.push_str(&format!(
            "## `{path}`\n\n```text\n{}\n```\n\n",
            help.trim_end()
        ));
        let subs: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in subs {
            let sub = cmd.find_subcommand_mut(&name).expect("listed above");
            walk(sub, &format!("{path} {name}"), out);
        }
    }
    let mut out = String::from(
        "# forge commands\n\nGenerated from the CLI's definition (`src/cli.rs`); a unit test fails when \
         this file differs, and `FORGE_BLESS=1 cargo test --lib cli::tests` writes it again. The \
         guide is [reference.md](reference.md).\n\n",
    );
    let mut cmd = Cli::command();
    cmd.build();
    walk(&mut cmd, "forge", &mut out);
    out
}

#[cfg(test)]
mod tests {
    /// The committed `docs/commands.md` is the one the CLI renders.
    #[test]
    fn the_command_reference_is_the_one_generated_from_the_cli() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md");
        let now = super::reference_markdown();
        if std::env::var_os("FORGE_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        assert!(
            std::fs::read_to_string(&path).unwrap_or_default() == now,
            "docs/commands.md is not the CLI's help\n\
             hint: regenerate it with `FORGE_BLESS=1 cargo test --lib cli::tests`, and commit it"
        );
        assert!(now.contains("## `forge build`") && now.contains("## `forge recipe from-vllm`"));
    }
}
