//! The command line: clap derive types only, no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// forge: build, check and release PyTorch + vLLM images for AMD ROCm GPUs (gfx1151 first).
///
/// Exit codes: 0 every check passed (or was skipped with its reason), 1 a check failed,
/// 2 forge itself could not run.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about, long_about = None, propagate_version = true)]
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
    /// The command.
    #[command(subcommand)]
    pub command: Command,
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
    Plan {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// Phase 1: check the GPU host and the build host (driver, devices, rocminfo, Docker, disk, memory).
    Preflight {
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Name the known failures in a log or pasted error text (FILE, or - for stdin).
    Diagnose {
        /// The file to read; `-` or nothing reads stdin.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Phase 2 over a finished build log: each flag with its line, every fatal and warning finding.
    Scan {
        /// The build log.
        #[arg(value_name = "LOG")]
        log: PathBuf,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Target arch(s) to require instead of the recipe's (repeat or `;`-separate).
        #[arg(long, value_name = "GFX")]
        arch: Vec<String>,
    },
    /// Follow a log another process is writing; stop that process on the first fatal finding.
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
    Build {
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Which builder: BuildKit where the engine supports it (auto), or force one.
        #[arg(long, value_enum, default_value = "auto")]
        builder: crate::build::BuilderChoice,
        /// Where runs write their files.
        #[arg(long, default_value = "artifacts", value_name = "DIR")]
        artifacts: PathBuf,
        /// Run id (default: recipe name and UTC time).
        #[arg(long, value_name = "ID")]
        run_id: Option<String>,
        /// Do not export the image as .tar.gz after a good build.
        #[arg(long)]
        no_export: bool,
    },
    /// Remove temporary containers and images left by forge runs that are no longer running.
    Clean {
        /// Also those of runs still running.
        #[arg(long)]
        all: bool,
    },
    /// Phase 3: check a wheel (size, distributed symbols, HIP linkage and symbols, GPU code
    /// objects, glibc), reading it once, streaming.
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
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Export an image as `.tar.gz` with a SHA256 file, in one pass, compressing on every core.
    /// `-o DIR` makes DIR a bundle (manifest.json, SHA256SUMS) that `forge verify` checks.
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
        format: crate::export::Format,
        /// Cut the archive into parts of SIZE (`2G`, `1900M`, `2GiB`) for hosts that cap file
        /// sizes (GitHub releases: 2 GiB); SHA256SUMS lists the parts, the report the command
        /// that joins them.
        #[arg(long, value_name = "SIZE", value_parser = crate::export::parse_size)]
        split: Option<u64>,
        /// gzip level, 1 (fast) to 9 (small).
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
        level: u32,
        /// Compression threads (default: the CPU count).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
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
    },
    /// Render a run's reports from its record: report.md, report.json, report.junit.xml and
    /// report.html (and refresh the bundle's manifest.json and SHA256SUMS).
    Report {
        /// The run directory (artifacts/<run>/).
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
    },
    /// Phase 4: check an image's size, system and Python packages, ROCm files and ROCm release.
    Image {
        /// The image (tag or id).
        #[arg(value_name = "IMAGE")]
        image: String,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
}
