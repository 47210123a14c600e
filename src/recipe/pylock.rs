//! The recipe's Python lock: every package the image takes from the package index, pinned by
//! version and SHA256, resolved from the recipe's vLLM release's own `requirements/rocm.txt`
//! (with its `-r common.txt`) as that release saw the index.
//!
//! `forge recipe lock` makes it with uv (`uv pip compile --generate-hashes`): a well-kept
//! resolver that resolves for an interpreter other than the host's (`--python-version`,
//! `--python-platform`), removes packages from the resolution itself (`--excludes`: the
//! components the build compiles, so neither torch from the index nor its CUDA dependencies
//! enter the lock) and resolves as of a date (`--exclude-newer`: the sdist's, so the lock holds
//! what the release shipped with, not what the index holds on the day of the build). pip-tools
//! has none of the last two, and pip cannot write a lock with hashes.
//!
//! The components the build compiles ([`COMPILED`]) are pinned by their source commit and
//! checked by the Dockerfile's `forge-pins`, not here. A requirement named by a VCS URL (v0.12.0:
//! `fastsafetensors @ git+https://...`) cannot be hash-checked: the recipe's
//! `[lock.from-index]` names the release on the index that stands for it, and why; the lock's
//! header records both.
//!
//! One lock serves the image (Ubuntu 24.04's CPython 3.12) and the rehearsal (Debian trixie's
//! CPython 3.13) when both resolve to the same versions: uv writes the hashes of every file of
//! each pinned version (every wheel tag and the sdist), so pip on either interpreter finds its
//! wheel's hash. `forge recipe lock` resolves for both and refuses to write a lock they disagree
//! on, naming the packages.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use pep508_rs::{Requirement, VerbatimUrl, VersionOrUrl};

use crate::error::{Error, Result};
use crate::recipe::LockSpec;

/// The components the build compiles from source (pinned by commit, checked by `forge-pins`),
/// left out of the lock and of its resolution.
pub const COMPILED: &[&str] = &[
    "torch",
    "triton",
    "torchvision",
    "torchaudio",
    "amdsmi",
    "vllm",
];

/// The interpreter a lock is resolved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// `3.12`.
    pub python: &'static str,
    /// uv's `--python-platform` (the manylinux level of the image's glibc).
    pub platform: &'static str,
    /// What runs it.
    pub what: &'static str,
}

/// The image's interpreter: `rocm/dev-ubuntu-24.04`'s python3 (glibc 2.39).
pub const IMAGE: Target = Target {
    python: "3.12",
    platform: "x86_64-manylinux_2_39",
    what: "the image (Ubuntu 24.04, glibc 2.39)",
};

/// The rehearsal's interpreter: Debian trixie's python3 (glibc 2.41; uv's newest level is 2.40).
pub const REHEARSAL: Target = Target {
    python: "3.13",
    platform: "x86_64-manylinux_2_40",
    what: "the rehearsal (Debian trixie, glibc 2.41)",
};

/// The lock's name in a release bundle (beside the image archive; the image keeps it as
/// `/app/python-lock.txt`).
pub const BUNDLE_FILE: &str = "python-lock.txt";

/// Where the Dockerfile finds forge's files in the build context (the lock, its check).
pub const CONTEXT_DIR: &str = ".forge";

/// The check the Dockerfile runs in the stage that resolves vLLM's requirements: every
/// requirement of vLLM's that applies must be satisfied by the lock's pin, or it fails naming
/// the package (`python3 lock-check.py REQUIREMENTS LOCK SKIP...`).
pub const CHECK_SCRIPT: &str = include_str!("../../dockerfiles/lock-check.py");

/// The files forge adds to a build context under [`CONTEXT_DIR`]: the check, and the lock when
/// the recipe has one (the Dockerfile resolves unlocked, and says so, without it).
pub fn context_files(lock: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        format!("{CONTEXT_DIR}/lock-check.py"),
        CHECK_SCRIPT.as_bytes().to_vec(),
    )];
    if let Some(text) = lock {
        out.push((format!("{CONTEXT_DIR}/lock.txt"), text.as_bytes().to_vec()));
    }
    out
}

/// The rehearsal's wheelhouse of `lock` (its files for the rehearsal's interpreter):
/// `$FORGE_WHEELHOUSE_DIR` (default `~/.cache/forge/wheelhouse`) `/<lock's SHA256, 16 hex>-cp313`,
/// made once on the host by `scripts/lock-wheelhouse.sh LOCK` (which computes the same name).
pub fn wheelhouse_dir(lock: &str) -> PathBuf {
    use sha2::Digest;
    let root = std::env::var_os("FORGE_WHEELHOUSE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/forge/wheelhouse")))
        .unwrap_or_else(|| PathBuf::from(".cache/forge/wheelhouse"));
    let hex = crate::atomic::hex(&sha2::Sha256::digest(lock.as_bytes()));
    root.join(format!(
        "{}-cp{}",
        &hex[..16],
        REHEARSAL.python.replace('.', "")
    ))
}

/// The file `scripts/lock-wheelhouse.sh` writes last, once every file of the lock is there.
pub const WHEELHOUSE_COMPLETE: &str = ".complete";

/// What `forge recipe lock` reads from a vLLM sdist.
#[derive(Debug, Clone)]
pub struct Sdist {
    /// vLLM's version (`0.12.0`).
    pub version: String,
    /// `requirements/NAME` -> text.
    pub requirements: BTreeMap<String, String>,
    /// The newest modification time of its members (seconds since the epoch): when the release
    /// was packed, the lock's `--exclude-newer`.
    pub packed_at: i64,
}

const SDIST_HINT: &str = "pass the recipe's vLLM sdist (`vllm-X.Y.Z.tar.gz`; \
     `scripts/fetch-vllm-sdist.sh X.Y.Z` fetches a pinned one into ~/.cache/forge/sdists)";

/// Stream a vLLM sdist (never extracted): its `requirements/*.txt`, version and packing time.
pub fn read_sdist(path: &Path) -> Result<Sdist> {
    let file = std::fs::File::open(path).map_err(|e| Error::Usage {
        message: format!("cannot read the vLLM sdist `{}`: {e}", path.display()),
        hint: Some(SDIST_HINT.into()),
    })?;
    let not_tgz = |e: std::io::Error| {
        Error::input(
            format!("`{}` is not a gzip-compressed tar ({e})", path.display()),
            Some(SDIST_HINT),
        )
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut requirements, mut packed_at, mut top) = (BTreeMap::new(), 0i64, None::<String>);
    for entry in archive.entries().map_err(not_tgz)? {
        let mut entry = entry.map_err(not_tgz)?;
        let mtime = entry.header().mtime().unwrap_or(0) as i64;
        packed_at = packed_at.max(mtime);
        let p = entry.path().map_err(not_tgz)?.into_owned();
        let mut parts = p.components();
        let mut first = parts.next();
        if first == Some(Component::CurDir) {
            first = parts.next();
        }
        let Some(Component::Normal(first)) = first else {
            continue;
        };
        top.get_or_insert_with(|| first.to_string_lossy().into_owned());
        let rest = parts.as_path();
        if rest.parent() == Some(Path::new("requirements"))
            && rest.extension().is_some_and(|e| e == "txt")
        {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(not_tgz)?;
            let name = rest.file_name().unwrap_or_default().to_string_lossy();
            requirements.insert(name.into_owned(), text);
        }
    }
    let version = top
        .as_deref()
        .and_then(|t| t.strip_prefix("vllm-"))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::input(
                format!(
                    "`{}` is not a vLLM sdist (no `vllm-X.Y.Z/` top)",
                    path.display()
                ),
                Some(SDIST_HINT),
            )
        })?;
    if !requirements.contains_key("rocm.txt") {
        return Err(Error::input(
            format!("`{}` holds no `requirements/rocm.txt`", path.display()),
            Some("vLLM sdists carry it from v0.7 on; pass the sdist of the recipe's vLLM release"),
        ));
    }
    Ok(Sdist {
        version,
        requirements,
        packed_at,
    })
}

/// The requirement lines of `file` with its `-r` includes expanded (comments and blank lines
/// dropped, as pip reads them: a `#` at the start or after whitespace begins a comment).
pub fn requirement_lines(files: &BTreeMap<String, String>, file: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    expand(files, file, &mut out, 0)?;
    Ok(out)
}

fn expand(
    files: &BTreeMap<String, String>,
    file: &str,
    out: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    let Some(text) = files.get(file) else {
        return Err(Error::input(
            format!("vLLM's requirements include `{file}`, which the sdist does not hold"),
            None,
        ));
    };
    if depth > 8 {
        return Err(Error::input(
            format!("vLLM's requirements include each other in a circle at `{file}`"),
            None,
        ));
    }
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(inc) = line
            .strip_prefix("-r ")
            .or_else(|| line.strip_prefix("--requirement "))
        {
            expand(files, inc.trim(), out, depth + 1)?;
        } else {
            out.push(line.to_owned());
        }
    }
    Ok(())
}

fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// The lock's input, made from vLLM's requirements and the recipe's `[lock]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The requirements file uv resolves.
    pub text: String,
    /// vLLM's requirements taken as they are (their count).
    pub direct: usize,
    /// vLLM's requirements left to the build (compiled components), by name.
    pub compiled: Vec<String>,
    /// VCS requirements replaced: (name, vLLM's URL, the release, the reason).
    pub from_index: Vec<(String, String, String, String)>,
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Build the lock's input from vLLM's requirement lines (see [`requirement_lines`]): the
/// compiled components dropped, every VCS requirement replaced by its `[lock.from-index]`
/// release (one without is an error naming it), the recipe's `add` appended.
pub fn input(lines: &[String], spec: &LockSpec) -> Result<Input> {
    let mut text = String::new();
    let (mut direct, mut compiled, mut from_index) = (0, Vec::new(), Vec::new());
    for line in lines {
        let req = Requirement::<VerbatimUrl>::from_str(line).map_err(|e| {
            Error::input(
                format!("vLLM's requirement `{line}` is not PEP 508 ({e})"),
                None,
            )
        })?;
        let name = normalize(req.name.as_ref());
        if COMPILED.contains(&name.as_str()) {
            compiled.push(name);
            continue;
        }
        if let Some(VersionOrUrl::Url(url)) = &req.version_or_url {
            let found = spec.from_index.iter().find(|(n, _)| normalize(n) == name);
            let Some((_, f)) = found else {
                return Err(Error::Usage {
                    message: format!(
                        "vLLM names `{}` by a URL (`{url}`), which a hash-checked install refuses",
                        req.name
                    ),
                    hint: Some(format!(
                        "name the release on the index that stands for it, and why, in the \
                         recipe: `[lock.from-index] {} = {{ version = \"X\", reason = \"...\" }}`",
                        req.name
                    )),
                });
            };
            let marker = line.split_once(';').map(|(_, m)| format!("; {}", m.trim()));
            text.push_str(&format!(
                "{}=={}{}\n",
                req.name,
                f.version,
                marker.unwrap_or_default()
            ));
            from_index.push((name, url.to_string(), f.version.clone(), f.reason.clone()));
            direct += 1;
            continue;
        }
        text.push_str(line);
        text.push('\n');
        direct += 1;
    }
    for n in spec.from_index.keys() {
        if !from_index.iter().any(|(f, ..)| *f == normalize(n)) {
            return Err(Error::Usage {
                message: format!(
                    "`[lock.from-index] {n}`: vLLM's requirements name no `{n}` by a URL"
                ),
                hint: Some("drop the entry: it replaces nothing".into()),
            });
        }
    }
    for a in &spec.add {
        text.push_str(a);
        text.push('\n');
    }
    Ok(Input {
        text,
        direct,
        compiled,
        from_index,
    })
}

/// The pins of a lock (`name==version` lines, names normalised), in name order.
pub fn pins(lock: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lock.lines() {
        let line = line.trim_end_matches('\\').trim();
        if line.starts_with('#') || line.starts_with("--") {
            continue;
        }
        let spec = line.split(';').next().unwrap_or("").trim();
        if let Some((n, v)) = spec.split_once("==")
            && !n.is_empty()
            && !n.contains(char::is_whitespace)
        {
            out.insert(normalize(n), v.trim().to_owned());
        }
    }
    out
}

/// The packages two pin sets disagree on: `name: a vs b` (`-` where one has none).
pub fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| {
            let show = |m: &BTreeMap<String, String>| m.get(n).map_or("-".to_owned(), Clone::clone);
            format!("{n}: {} vs {}", show(a), show(b))
        })
        .collect()
}

/// Options of one resolution.
#[derive(Debug, Clone)]
pub struct Resolve<'a> {
    /// The input ([`input`]).
    pub input: &'a Input,
    /// The interpreter.
    pub target: Target,
    /// `--exclude-newer` (RFC 3339).
    pub as_of: String,
    /// The command the header names to regenerate it.
    pub command: String,
}

/// Resolve with uv (`uv pip compile --generate-hashes`) in a scratch directory; returns uv's
/// requirements file (no header: [`header`] writes forge's).
pub fn resolve(r: &Resolve<'_>) -> Result<String> {
    let dir = scratch()?;
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))
    };
    // Stable names: uv's `# via` annotations name the input file.
    write("vllm-requirements.in", &r.input.text)?;
    write("compiled-by-the-build.txt", &(COMPILED.join("\n") + "\n"))?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut args: Vec<String> = [
        "pip",
        "compile",
        "vllm-requirements.in",
        "--generate-hashes",
        "--no-header",
        "--quiet",
        "--excludes",
        "compiled-by-the-build.txt",
        "--python-version",
        r.target.python,
        "--python-platform",
        r.target.platform,
        "--exclude-newer",
        &r.as_of,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // A release named in place of a VCS URL may be newer than vLLM's sdist (its pin is exact).
    for (name, ..) in &r.input.from_index {
        args.push("--exclude-newer-package".into());
        args.push(format!("{name}={now}"));
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = crate::tool::run_in(&dir, "uv", &arg_refs, Duration::from_secs(600));
    let _ = std::fs::remove_dir_all(&dir);
    match run {
        crate::tool::ToolRun::Exited {
            code: 0, stdout, ..
        } => Ok(stdout),
        crate::tool::ToolRun::Exited { stderr, .. } => Err(Error::Usage {
            message: format!(
                "uv could not resolve vLLM's requirements for CPython {} ({}): {}",
                r.target.python,
                r.target.platform,
                stderr.trim()
            ),
            hint: Some(
                "a requirement no release satisfies as of the sdist's date: pin another release \
                 in `[lock.from-index]` or `[lock] add`"
                    .into(),
            ),
        }),
        crate::tool::ToolRun::Missing => Err(Error::Usage {
            message: "`uv` is not installed: forge resolves the lock with it".into(),
            hint: Some("install it: `pip install uv` (or see docs.astral.sh/uv)".into()),
        }),
        crate::tool::ToolRun::TimedOut => Err(Error::Usage {
            message: "uv did not finish within 10 minutes".into(),
            hint: Some("check that the package index answers (`pip download pip`)".into()),
        }),
        crate::tool::ToolRun::Failed(e) => Err(Error::Usage {
            message: format!("cannot run uv: {e}"),
            hint: None,
        }),
    }
}

fn scratch() -> Result<PathBuf> {
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("forge-lock-{}-{t:x}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    Ok(dir)
}

/// What the lock's header says.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The recipe's name.
    pub recipe: &'a str,
    /// The command that regenerates it.
    pub command: &'a str,
    /// vLLM's version.
    pub vllm: &'a str,
    /// The sdist's SHA256.
    pub sdist_sha256: &'a str,
    /// `--exclude-newer`.
    pub as_of: &'a str,
    /// The input.
    pub input: &'a Input,
    /// The interpreters it was resolved for.
    pub targets: &'a [Target],
    /// Packages locked.
    pub packages: usize,
}

/// The lock's header: what it was made from and how to make it again.
pub fn header(h: &Header<'_>) -> String {
    let mut s = format!(
        "# The Python lock of recipe `{}`: every package its image takes from the package index,\n\
         # pinned by version and SHA256. Generated; do not edit. Regenerate: {}\n\
         # From vLLM {}'s requirements/rocm.txt (with common.txt), sdist sha256 {}:\n\
         # {} direct requirements, {} packages locked, resolved as of {} (the sdist's date).\n",
        h.recipe, h.command, h.vllm, h.sdist_sha256, h.input.direct, h.packages, h.as_of
    );
    let mut compiled = h.input.compiled.clone();
    compiled.sort();
    compiled.dedup();
    s.push_str(&format!(
        "# Not locked: {} (built from source by the Dockerfile, pinned by commit, checked by forge-pins).\n",
        COMPILED.join(", ")
    ));
    for (name, url, version, reason) in &h.input.from_index {
        s.push_str(&format!(
            "# From the index instead of a VCS URL: {name}=={version} for `{url}`: {reason}\n"
        ));
    }
    for t in h.targets {
        s.push_str(&format!(
            "# Resolved for CPython {} ({}): {}\n",
            t.python, t.platform, t.what
        ));
    }
    if h.targets.len() > 1 {
        s.push_str(
            "# Every interpreter above resolved to the same versions; the hashes cover every file \
             of each version, so this one lock serves them all.\n",
        );
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What [`lock`] made: the lock file's text and what it pins.
pub struct Locked {
    /// The lock file, header and hash-pinned requirements.
    pub text: String,
    /// Name -> version, the image's resolution.
    pub pins: BTreeMap<String, String>,
    /// What was resolved.
    pub input: Input,
    /// The index as of the sdist's packing time (RFC 3339).
    pub as_of: String,
    /// The sdist's SHA256.
    pub sdist_sha256: String,
    /// The vLLM release.
    pub vllm: String,
}

/// `forge recipe lock`'s operation: the requirements of the recipe's vLLM release (its sdist:
/// `sdist`, else `$FORGE_SDIST_DIR` or `~/.cache/forge/sdists/vllm-VERSION.tar.gz`) resolved
/// for the image's CPython and the rehearsal's, as of the sdist's packing time; the two must
/// agree. `command` is what the header says regenerates it.
pub fn lock(
    recipe: &crate::recipe::Recipe,
    spec: &LockSpec,
    sdist: Option<&Path>,
    command: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Locked> {
    let version = recipe
        .build_args
        .get("VLLM_REF")
        .map(|r| r.trim_start_matches('v').to_owned())
        .unwrap_or_default();
    let sdist = match sdist {
        Some(p) => p.to_owned(),
        None => std::env::var_os("FORGE_SDIST_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/forge/sdists")))
            .unwrap_or_default()
            .join(format!("vllm-{version}.tar.gz")),
    };
    let src = read_sdist(&sdist)?;
    if src.version != version {
        return Err(Error::usage(
            format!(
                "`{}` is vLLM {}, the recipe builds vLLM `{}`",
                sdist.display(),
                src.version,
                recipe
                    .build_args
                    .get("VLLM_REF")
                    .map_or("?", String::as_str)
            ),
            Some("pass the sdist of the recipe's vLLM release with `--sdist`"),
        ));
    }
    let lines = requirement_lines(&src.requirements, "rocm.txt")?;
    let input = input(&lines, spec)?;
    let as_of = rfc3339(src.packed_at);
    let mut resolved = Vec::new();
    for target in [IMAGE, REHEARSAL] {
        progress(&format!(
            "resolving vLLM {}'s requirements for CPython {} ({}) as of {as_of} ...",
            src.version, target.python, target.platform
        ));
        resolved.push(resolve(&Resolve {
            input: &input,
            target,
            as_of: as_of.clone(),
            command: command.to_owned(),
        })?);
    }
    let (image, rehearsal) = (pins(&resolved[0]), pins(&resolved[1]));
    let split = differences(&image, &rehearsal);
    if !split.is_empty() {
        return Err(Error::usage(
            format!(
                "the image's CPython {} and the rehearsal's {} resolve differently (image vs \
                 rehearsal): {}",
                IMAGE.python,
                REHEARSAL.python,
                split.join("; ")
            ),
            Some("pin the package in `[lock] add` to a release both interpreters have"),
        ));
    }
    let sha = crate::atomic::sha256_file(&sdist)?.1;
    let text = header(&Header {
        recipe: &recipe.file.name,
        command,
        vllm: &src.version,
        sdist_sha256: &sha,
        as_of: &as_of,
        input: &input,
        targets: &[IMAGE, REHEARSAL],
        packages: image.len(),
    }) + &resolved[0];
    Ok(Locked {
        text,
        pins: image,
        input,
        as_of,
        sdist_sha256: sha,
        vllm: src.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::FromIndex;

    fn spec(from_index: &[(&str, &str)], add: &[&str]) -> LockSpec {
        LockSpec {
            file: "x.lock.txt".into(),
            add: add.iter().map(|s| (*s).to_owned()).collect(),
            from_index: from_index
                .iter()
                .map(|(n, v)| {
                    (
                        (*n).to_owned(),
                        FromIndex {
                            version: (*v).to_owned(),
                            reason: "first release with ROCm wheels".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// vLLM v0.12.0's shapes: `-r common.txt`, a `#` comment glued to a specifier, a marker,
    /// an extra, a compiled component and a VCS URL.
    fn files() -> BTreeMap<String, String> {
        let mut f = BTreeMap::new();
        f.insert(
            "common.txt".into(),
            "regex # Replace re\nnumpy\nmodel-hosting-container-standards >= 0.1.9, < 1.0.0\n\
             six>=1.16.0; python_version > '3.11' # transitive\n"
                .into(),
        );
        f.insert(
            "rocm.txt".into(),
            "# Common dependencies\n-r common.txt\n\nray[cgraph]>=2.48.0 # Ray\ntorch==2.9.0\n\
             fastsafetensors @ git+https://github.com/foundation-model-stack/fastsafetensors.git@d6f998a03432b2452f8de2bb5cefb5af9795d459\n"
                .into(),
        );
        f
    }

    #[test]
    fn requirement_lines_expand_includes_and_drop_comments() {
        let l = requirement_lines(&files(), "rocm.txt").unwrap();
        assert_eq!(l[0], "regex");
        assert_eq!(l[2], "model-hosting-container-standards >= 0.1.9, < 1.0.0");
        assert_eq!(l[3], "six>=1.16.0; python_version > '3.11'");
        assert_eq!(l.len(), 7, "{l:?}");
        let mut f = files();
        f.remove("common.txt");
        let e = requirement_lines(&f, "rocm.txt").unwrap_err();
        assert!(e.to_string().contains("`common.txt`"), "{e}");
    }

    #[test]
    fn input_drops_compiled_replaces_vcs_and_adds() {
        let l = requirement_lines(&files(), "rocm.txt").unwrap();
        let i = input(
            &l,
            &spec(&[("fastsafetensors", "0.3.2")], &["sympy>=1.13.3"]),
        )
        .unwrap();
        assert_eq!(i.compiled, vec!["torch"]);
        assert_eq!(i.direct, 6);
        assert!(i.text.contains("\nfastsafetensors==0.3.2\n"), "{}", i.text);
        assert!(!i.text.contains("git+"), "{}", i.text);
        assert!(!i.text.contains("torch"), "{}", i.text);
        assert!(i.text.ends_with("sympy>=1.13.3\n"));
        assert!(i.from_index[0].1.contains("d6f998a0"));
    }

    #[test]
    fn a_vcs_requirement_without_a_release_is_refused_naming_it() {
        let l = requirement_lines(&files(), "rocm.txt").unwrap();
        let e = input(&l, &spec(&[], &[])).unwrap_err();
        assert!(e.to_string().contains("`fastsafetensors`"), "{e}");
        // an entry that replaces nothing is refused too
        let e = input(
            &l,
            &spec(&[("fastsafetensors", "0.3.2"), ("nope", "1")], &[]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn pins_read_a_hashed_lock_and_differences_name_packages() {
        let lock = "# header a==1\nnumpy==2.2.6 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    \
                    # via -r vllm-requirements.in\nPyYAML==6.0.3 ; python_version >= '3.8' \\\n    --hash=sha256:cc\n";
        let p = pins(lock);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p["pyyaml"], "6.0.3");
        let mut q = p.clone();
        q.insert("numpy".into(), "2.3.0".into());
        q.insert("scipy".into(), "1.16.3".into());
        assert_eq!(
            differences(&p, &q),
            vec!["numpy: 2.2.6 vs 2.3.0", "scipy: - vs 1.16.3"]
        );
        assert!(differences(&p, &p).is_empty());
    }

    #[test]
    fn the_shipped_lock_covers_vllm_0_12_0() {
        let lock = crate::recipe::SHIPPED_LOCKS[0].1;
        let p = pins(lock);
        // vLLM 0.12.0's ~60 direct requirements and their dependencies
        for name in [
            "ray", "openai", "pydantic", "fastapi", "timm", "numpy", "xgrammar",
        ] {
            assert!(p.contains_key(name), "{name} not locked");
        }
        assert_eq!(p["fastsafetensors"], "0.3.2");
        assert!(p.len() > 120, "{} packages", p.len());
        for c in COMPILED {
            assert!(!p.contains_key(*c), "{c} is built, never locked");
        }
        assert!(lock.contains("--hash=sha256:"));
    }
}
