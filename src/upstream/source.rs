//! Reading a vLLM source: a tree on disk or its sdist (`.tar.gz`, streamed entry by entry, never
//! extracted), for the two files `forge recipe` needs: `docker/Dockerfile.rocm_base` and the
//! version (`PKG-INFO`, or the sdist's top directory `vllm-X.Y.Z/`); `docker/Dockerfile.rocm` too,
//! where upstream sometimes writes a ref's full SHA.

use std::io::Read;
use std::path::{Component, Path};

use crate::error::{Error, Result};

/// Upstream's ROCm base Dockerfile, relative to the source root.
pub const ROCM_BASE: &str = "docker/Dockerfile.rocm_base";

/// Upstream's vLLM image Dockerfile, relative to the source root.
pub const ROCM: &str = "docker/Dockerfile.rocm";

/// What was read from a vLLM source.
#[derive(Debug, Clone)]
pub struct VllmSource {
    /// The path as given.
    pub origin: String,
    /// The text of [`ROCM_BASE`].
    pub rocm_base: String,
    /// The text of [`ROCM`], when present.
    pub rocm: Option<String>,
    /// The version (`0.12.0`), when the source says it.
    pub version: Option<String>,
}

const HINT_SOURCE: &str = "pass a vLLM source tree or its sdist (`vllm-X.Y.Z.tar.gz` from the \
     package index; `scripts/fetch-vllm-sdist.sh VERSION` fetches a pinned one)";

/// Read a source tree (a directory) or an sdist (a file).
pub fn read(path: &Path) -> Result<VllmSource> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::usage(
            format!("cannot read `{}`: {e}", path.display()),
            Some(HINT_SOURCE),
        )
    })?;
    if meta.is_dir() {
        read_tree(path)
    } else {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        read_sdist(file, &path.display().to_string())
    }
}

fn read_tree(dir: &Path) -> Result<VllmSource> {
    let df = dir.join(ROCM_BASE);
    let rocm_base = std::fs::read_to_string(&df).map_err(|e| {
        Error::usage(
            format!("`{}` has no `{ROCM_BASE}` ({e})", dir.display()),
            Some("pass the root of a vLLM checkout (the directory holding `docker/`) or its sdist"),
        )
    })?;
    let version = std::fs::read_to_string(dir.join("PKG-INFO"))
        .ok()
        .and_then(|t| pkg_info_version(&t));
    Ok(VllmSource {
        origin: dir.display().to_string(),
        rocm_base,
        rocm: std::fs::read_to_string(dir.join(ROCM)).ok(),
        version,
    })
}

/// Stream an sdist: stops once the three files are read.
pub fn read_sdist(reader: impl Read, origin: &str) -> Result<VllmSource> {
    let not_tgz = |e: std::io::Error| {
        Error::input(
            format!("`{origin}` is not a gzip-compressed tar ({e})"),
            Some("a vLLM sdist is `vllm-X.Y.Z.tar.gz`; a wheel or a plain tar will not do"),
        )
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let (mut rocm_base, mut rocm, mut pkg_info, mut top) = (None, None, None, None);
    for entry in archive.entries().map_err(not_tgz)? {
        let mut entry = entry.map_err(not_tgz)?;
        let path = entry.path().map_err(not_tgz)?.into_owned();
        let mut parts = path.components();
        let mut first = parts.next();
        if first == Some(Component::CurDir) {
            first = parts.next();
        }
        let Some(Component::Normal(first)) = first else {
            continue;
        };
        top.get_or_insert_with(|| first.to_string_lossy().into_owned());
        let rest = parts.as_path();
        let slot = if rest == Path::new(ROCM_BASE) {
            &mut rocm_base
        } else if rest == Path::new(ROCM) {
            &mut rocm
        } else if rest == Path::new("PKG-INFO") {
            &mut pkg_info
        } else {
            continue;
        };
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(not_tgz)?;
        *slot = Some(text);
        if rocm_base.is_some() && rocm.is_some() && pkg_info.is_some() {
            break;
        }
    }
    let Some(rocm_base) = rocm_base else {
        return Err(Error::input(
            format!("`{origin}` holds no `{ROCM_BASE}`"),
            Some(
                "vLLM sdists carry it from v0.6 on; pass the sdist of a vLLM release that \
                 builds for ROCm, or a source tree with `docker/Dockerfile.rocm_base`",
            ),
        ));
    };
    let version = pkg_info.as_deref().and_then(pkg_info_version).or_else(|| {
        top.as_deref()
            .and_then(|t| t.strip_prefix("vllm-"))
            .map(str::to_owned)
    });
    Ok(VllmSource {
        origin: origin.to_owned(),
        rocm_base,
        rocm,
        version,
    })
}

/// `Version: 0.12.0` from a PKG-INFO.
fn pkg_info_version(text: &str) -> Option<String> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdist(files: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, text) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn sdist_gives_the_dockerfile_and_the_version() {
        let bytes = sdist(&[
            ("vllm-0.12.0/setup.py", "x"),
            (
                "vllm-0.12.0/PKG-INFO",
                "Metadata-Version: 2.4\nName: vllm\nVersion: 0.12.0\n\nbody Version: 9\n",
            ),
            (
                "vllm-0.12.0/docker/Dockerfile.rocm_base",
                "ARG BASE_IMAGE=x\n",
            ),
        ]);
        let s = read_sdist(&bytes[..], "v.tar.gz").unwrap();
        assert_eq!(s.version.as_deref(), Some("0.12.0"));
        assert_eq!(s.rocm_base, "ARG BASE_IMAGE=x\n");
    }

    #[test]
    fn version_from_the_top_directory_without_pkg_info() {
        let bytes = sdist(&[("vllm-0.28.0/docker/Dockerfile.rocm_base", "ARG A=1\n")]);
        let s = read_sdist(&bytes[..], "v.tar.gz").unwrap();
        assert_eq!(s.version.as_deref(), Some("0.28.0"));
    }

    #[test]
    fn bad_input_is_named_with_a_hint() {
        let e = read_sdist(&sdist(&[("vllm-1/README.md", "x")])[..], "a.tar.gz").unwrap_err();
        assert!(
            e.to_string()
                .contains("holds no `docker/Dockerfile.rocm_base`"),
            "{e}"
        );
        assert!(e.hint().is_some());
        let e = read_sdist(&b"PK\x03\x04 not a tarball"[..], "a.whl").unwrap_err();
        assert!(
            e.to_string().contains("is not a gzip-compressed tar"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = read(Path::new("/nonexistent/vllm.tar.gz")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }
}
