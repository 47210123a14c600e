//! Resolving a library's undefined symbols the way the dynamic loader would: its DT_NEEDED
//! libraries, breadth first, found through DT_RPATH / DT_RUNPATH (with `$ORIGIN`) and the default
//! directories, in the wheel itself or under a library root (a directory, or an image's
//! filesystem read through the engine).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::elf::{self, ElfInfo, name_hash};
use super::source::FileSource;

/// The loader's default directories (Debian/Ubuntu multiarch, ROCm), after RPATH/RUNPATH.
pub const DEFAULT_DIRS: &[&str] = &[
    "/opt/rocm/lib",
    "/opt/rocm/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
];

/// Where libraries outside the wheel are looked up.
pub trait LibRoot {
    /// Read the library at absolute path `path` of the root, if it exists.
    fn find(&mut self, path: &str) -> Option<Result<(String, ElfInfo), String>>;
    /// How to name the root in evidence.
    fn describe(&self) -> String;
}

/// A directory holding a root filesystem (`--lib-root DIR`).
pub struct DirRoot(pub PathBuf);

impl LibRoot for DirRoot {
    fn find(&mut self, path: &str) -> Option<Result<(String, ElfInfo), String>> {
        let p = self.0.join(path.trim_start_matches('/'));
        // Symlinks inside the root point into the root, not into this machine.
        let real = follow_in_root(&self.0, &p)?;
        let src = match FileSource::open(&real) {
            Ok(s) => s,
            Err(e) => return Some(Err(format!("{}: {e}", real.display()))),
        };
        Some(
            elf::read(&src, true)
                .map(|i| (real.display().to_string(), i))
                .map_err(|e| format!("{}: {e}", real.display())),
        )
    }
    fn describe(&self) -> String {
        format!("--lib-root {}", self.0.display())
    }
}

fn follow_in_root(root: &Path, p: &Path) -> Option<PathBuf> {
    let mut cur = p.to_path_buf();
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&cur).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(cur);
        }
        let target = std::fs::read_link(&cur).ok()?;
        cur = if target.is_absolute() {
            root.join(target.strip_prefix("/").ok()?)
        } else {
            cur.parent()?.join(target)
        };
    }
    None
}

/// The outcome of resolving one library.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resolution {
    /// Libraries loaded, in load order: (name, where it was found).
    pub loaded: Vec<(String, String)>,
    /// Libraries that were needed but not found.
    pub missing: Vec<String>,
    /// Undefined, non-weak symbols.
    pub undefined: usize,
    /// Of them, resolved.
    pub resolved: usize,
    /// Of them, not resolved (names).
    pub unresolved: Vec<String>,
}

/// Normalise a wheel-relative path (`torch/lib/../lib/x.so` -> `torch/lib/x.so`).
pub fn normalize(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Where a library lives: in the wheel (relative path) or on the root (absolute path).
#[derive(Debug, Clone)]
enum Home {
    Wheel(String),
    Root(String),
}

impl Home {
    fn dir(&self) -> String {
        let p = match self {
            Home::Wheel(p) | Home::Root(p) => p,
        };
        p.rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default()
    }
}

/// Resolve `lib` (a wheel member) against its needed libraries.
pub fn resolve(
    lib_path: &str,
    lib: &ElfInfo,
    wheel: &HashMap<String, ElfInfo>,
    mut root: Option<&mut dyn LibRoot>,
) -> Resolution {
    let mut res = Resolution::default();
    let mut scope: Vec<HashSet<u64>> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut root_cache: HashMap<String, Option<(String, ElfInfo)>> = HashMap::new();
    // (needed name, requester's home, requester's rpath, requester's runpath)
    let mut queue: VecDeque<(String, Home, Vec<String>, Vec<String>)> = lib
        .needed
        .iter()
        .map(|n| {
            (
                n.clone(),
                Home::Wheel(lib_path.to_owned()),
                lib.rpath.clone(),
                lib.runpath.clone(),
            )
        })
        .collect();
    while let Some((name, from, rpath, runpath)) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut dirs: Vec<String> = Vec::new();
        if runpath.is_empty() {
            dirs.extend(rpath.iter().cloned());
        }
        dirs.extend(runpath.iter().cloned());
        dirs.extend(DEFAULT_DIRS.iter().map(|s| (*s).to_owned()));
        let mut found: Option<(Home, ElfInfo)> = None;
        for d in dirs {
            let origin = from.dir();
            let d = d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin);
            match &from {
                Home::Wheel(_) if !d.starts_with('/') => {
                    if let Some(p) = normalize(&format!("{d}/{name}"))
                        && let Some(info) = wheel.get(&p)
                    {
                        found = Some((Home::Wheel(p), info.clone()));
                        break;
                    }
                }
                _ => {
                    let abs = if d.starts_with('/') {
                        format!("{d}/{name}")
                    } else {
                        continue;
                    };
                    let Some(r) = root.as_deref_mut() else {
                        continue;
                    };
                    let hit = root_cache
                        .entry(abs.clone())
                        .or_insert_with(|| r.find(&abs).and_then(Result::ok))
                        .clone();
                    if let Some((shown, info)) = hit {
                        found = Some((Home::Root(shown), info));
                        break;
                    }
                }
            }
        }
        match found {
            Some((home, info)) => {
                let shown = match &home {
                    Home::Wheel(p) => format!("wheel:{p}"),
                    Home::Root(p) => p.clone(),
                };
                res.loaded.push((name.clone(), shown));
                for n in &info.needed {
                    queue.push_back((
                        n.clone(),
                        home.clone(),
                        info.rpath.clone(),
                        info.runpath.clone(),
                    ));
                }
                scope.push(info.defined);
            }
            None => res.missing.push(name),
        }
    }
    for u in lib.undefined.iter().filter(|u| !u.weak) {
        res.undefined += 1;
        let h = name_hash(u.name.as_bytes());
        if scope.iter().any(|s| s.contains(&h)) {
            res.resolved += 1;
        } else {
            res.unresolved.push(u.name.clone());
        }
    }
    res
}

/// An image's filesystem read through the engine (`--image TAG`): one created, never started
/// container; each library copied out on demand (symlinks followed inside the image).
pub struct ImageRoot<'a> {
    engine: &'a dyn crate::engine::Engine,
    image: String,
    container: String,
    tmp: PathBuf,
    n: usize,
}

impl<'a> ImageRoot<'a> {
    /// Open `image` for reading.
    pub fn open(
        engine: &'a dyn crate::engine::Engine,
        image: &str,
    ) -> crate::Result<ImageRoot<'a>> {
        let labels = crate::engine::temp_labels(&format!("wheel-{}", std::process::id()));
        let container = engine.open_container(image, &labels)?;
        let tmp = std::env::temp_dir().join(format!("forge-image-libs-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| crate::Error::io("create", &tmp, e))?;
        Ok(ImageRoot {
            engine,
            image: image.to_owned(),
            container,
            tmp,
            n: 0,
        })
    }

    fn fetch(&mut self, path: &str) -> Result<Option<(String, PathBuf)>, String> {
        let mut cur = path.to_owned();
        for _ in 0..16 {
            self.n += 1;
            let tar_path = self.tmp.join(format!("{}.tar", self.n));
            let got = self
                .engine
                .copy_out(&self.container, &cur, &tar_path)
                .map_err(|e| e.to_string())?;
            if got.is_none() {
                return Ok(None);
            }
            let f = std::fs::File::open(&tar_path).map_err(|e| e.to_string())?;
            let mut ar = tar::Archive::new(f);
            let mut entries = ar.entries().map_err(|e| e.to_string())?;
            let Some(entry) = entries.next() else {
                return Ok(None);
            };
            let mut entry = entry.map_err(|e| e.to_string())?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .ok_or("symlink without target")?
                    .to_string_lossy()
                    .into_owned();
                cur = if target.starts_with('/') {
                    target
                } else {
                    let dir = cur.rsplit_once('/').map_or("", |(d, _)| d);
                    format!("{dir}/{target}")
                };
                continue;
            }
            if !kind.is_file() {
                return Ok(None);
            }
            let out = self.tmp.join(format!("{}.so", self.n));
            let mut w = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            std::io::copy(&mut entry, &mut w).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&tar_path);
            return Ok(Some((cur, out)));
        }
        Err(format!("{path}: too many symlinks"))
    }
}

impl LibRoot for ImageRoot<'_> {
    fn find(&mut self, path: &str) -> Option<Result<(String, ElfInfo), String>> {
        match self.fetch(path) {
            Ok(None) => None,
            Err(e) => Some(Err(e)),
            Ok(Some((real, file))) => {
                let r = FileSource::open(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|src| elf::read(&src, true).map_err(|e| e.to_string()))
                    .map(|i| (format!("{}:{real}", self.image), i));
                let _ = std::fs::remove_file(&file);
                Some(r)
            }
        }
    }
    fn describe(&self) -> String {
        format!("--image {}", self.image)
    }
}

impl Drop for ImageRoot<'_> {
    fn drop(&mut self) {
        let _ = self.engine.remove_container(&self.container);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_wheel_paths() {
        assert_eq!(
            normalize("torch/lib/../lib/x.so").as_deref(),
            Some("torch/lib/x.so")
        );
        assert_eq!(
            normalize("torch/lib/./x.so").as_deref(),
            Some("torch/lib/x.so")
        );
        assert_eq!(normalize("../x.so"), None);
        assert_eq!(normalize("/x.so"), None);
    }
}
