//! The image's filesystem as the engine's image export stream carries it (`/images/{name}/get`,
//! what `docker save` writes: a tar of layer tars plus `manifest.json`), read once, streaming,
//! without running the image. Only what the audit needs is kept: ELF files in library directories
//! and Python site-packages (their DT_NEEDED, offload bundles, kpack refs; defined symbols of
//! torch's libraries, undefined symbols of vLLM's extensions), the code-object files math
//! libraries load at run time (`.co`, `.hsaco`, `.kpack`, Tensile `.dat`, MIOpen `.kdb`), symlinks
//! in those places, the dpkg database, Python distributions' metadata, `/opt/rocm*/.info/version`
//! and `/etc/ld.so.conf.d`. Layers are merged in the manifest's order with their whiteouts
//! (`.wh.NAME` deletes NAME below; `.wh..wh..opq` hides a directory's lower contents).
//!
//! [`ImageReader`] takes the stream in pieces (`feed`, or [`std::io::Write`]) so that an export
//! can hash, compress and audit the same bytes in one pass: the pieces go through a bounded
//! channel to one parsing thread, so memory stays bounded whatever the image's size. ELF members
//! up to 16 MiB are held in memory while read; larger ones go to an unlinked temporary file
//! (`$TMPDIR`), from which only the needed pieces are read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::elf::{self, ElfInfo};
pub use super::gpucode::{CodeObject, amdgpu_elf_target, archs_in_name};
use super::gpucode::{code_object_kind, read_code_object};
use super::offload::Bundle;
use super::source::{Spilled, spill};

/// What kind of file a kept entry is.
#[derive(Debug, Clone)]
pub enum Node {
    /// An ELF shared object (or executable) in a library directory.
    Elf(Box<ElfFile>),
    /// A code-object file (`.co`, `.hsaco`, `.kpack`, `.dat`, `.kdb`): its GPU targets.
    CodeObject(CodeObject),
    /// A symlink and its target as written.
    Link(String),
    /// A small text file kept whole (metadata, versions, dpkg).
    Text(String),
}

/// One ELF file's facts.
#[derive(Debug, Clone, Default)]
pub struct ElfFile {
    /// Size in bytes.
    pub size: u64,
    /// DT_NEEDED.
    pub needed: Vec<String>,
    /// DT_RUNPATH then DT_RPATH.
    pub runpath: Vec<String>,
    /// Offload bundles of `.hip_fatbin`.
    pub bundles: Vec<Bundle>,
    /// Whether it has a `.hip_fatbin` section.
    pub has_fatbin: bool,
    /// `.rocm_kpack_ref`.
    pub kpack_ref: Option<String>,
    /// Needs libamdhip64 directly.
    pub hip_linked: bool,
    /// Hashes of defined dynamic symbols (torch's libraries only).
    pub defined: HashSet<u64>,
    /// Undefined non-weak dynamic symbols (vLLM's extensions only).
    pub undefined: Vec<String>,
    /// Why it could not be read, when it could not.
    pub note: Option<String>,
}

impl ElfFile {
    /// Whether it carries GPU code (a `.hip_fatbin`, bundles, or a kpack reference).
    pub fn has_gpu_code(&self) -> bool {
        self.has_fatbin || !self.bundles.is_empty() || self.kpack_ref.is_some()
    }

    /// Its bundles' GPU targets, deduplicated.
    pub fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in self.bundles.iter().flat_map(Bundle::targets) {
            if !out.iter().any(|x| x == t) {
                out.push(t.to_owned());
            }
        }
        out
    }
}

/// What one layer holds.
#[derive(Debug, Default, Clone)]
struct Layer {
    nodes: BTreeMap<String, Node>,
    whiteouts: Vec<String>,
    opaque: Vec<String>,
    hardlinks: Vec<(String, String)>,
}

/// The merged image filesystem (only what was kept).
#[derive(Debug, Default)]
pub struct ImageFs {
    /// Path (no leading `/`) -> node.
    pub nodes: BTreeMap<String, Node>,
    /// Bytes of the image tar read.
    pub tar_bytes: u64,
    /// Layers merged.
    pub layers: usize,
    /// Files of interest seen (before whiteouts).
    pub files_read: u64,
    /// Problems that did not stop the read (an unreadable ELF, ...).
    pub notes: Vec<String>,
}

/// Largest text file kept (dpkg status, metadata).
const TEXT_MAX: u64 = 64 << 20;
fn clean(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether the path is in a library directory or Python's packages.
pub fn in_lib_dir(path: &str) -> bool {
    path.split('/')
        .rev()
        .skip(1)
        .any(|c| c.starts_with("lib") || c == "site-packages" || c == "dist-packages")
}

/// Whether the file name is a shared object's (`libx.so`, `libx.so.1.2`, `_C.abi3.so`).
pub fn is_so_name(name: &str) -> bool {
    name.ends_with(".so") || name.contains(".so.")
}

fn is_torch_lib(path: &str) -> bool {
    let f = file_name(path);
    (f.starts_with("libtorch") || f.starts_with("libc10") || f.starts_with("libshm"))
        && is_so_name(f)
}

/// Whether the path is one of vLLM's extension modules (`vllm/_C*.so`, `_rocm_C*`, `_moe_C*`).
pub fn is_vllm_ext(path: &str) -> bool {
    let f = file_name(path);
    path.contains("-packages/vllm/")
        && f.ends_with(".so")
        && (f.starts_with("_C") || f.starts_with("_rocm_C") || f.starts_with("_moe_C"))
}

/// What to keep of a file at `path`.
enum Want {
    Elf,
    CodeObject(&'static str),
    Text,
    DpkgList,
    Record,
    None,
}

fn want(path: &str) -> Want {
    let f = file_name(path);
    if path == "var/lib/dpkg/status"
        || (path.starts_with("etc/ld.so.conf") && !path.ends_with('/'))
        || (path.starts_with("opt/") && path.ends_with("/.info/version"))
        || f == "torch-constraint.txt"
        || path == "etc/os-release"
        || path == "usr/lib/os-release"
    {
        return Want::Text;
    }
    if path.starts_with("var/lib/dpkg/info/") && f.ends_with(".list") {
        return Want::DpkgList;
    }
    let meta_dir = path
        .rsplit('/')
        .nth(1)
        .is_some_and(|d| d.ends_with(".dist-info") || d.ends_with(".egg-info"));
    if meta_dir && (f == "METADATA" || f == "PKG-INFO") {
        return Want::Text;
    }
    if meta_dir && f == "RECORD" {
        return Want::Record;
    }
    if !in_lib_dir(path) && !path.starts_with("opt/") {
        return Want::None;
    }
    if let Some(k) = code_object_kind(path) {
        return Want::CodeObject(k);
    }
    if is_so_name(f) {
        return Want::Elf;
    }
    Want::None
}

/// Whether a symlink at `path` is worth keeping (library directories, `/opt`, top-level dirs).
fn want_link(path: &str) -> bool {
    !path.contains('/') || in_lib_dir(path) || path.starts_with("opt/") || path.starts_with("usr/")
}

/// Whether a line of a file list names something the audit may attribute.
fn interesting_listed(p: &str) -> bool {
    let f = file_name(p);
    is_so_name(f) || code_object_kind(p.trim_start_matches('/')).is_some()
}

fn read_text(r: &mut dyn Read, size: u64) -> io::Result<String> {
    let mut v = Vec::with_capacity(size.min(TEXT_MAX) as usize);
    r.take(TEXT_MAX).read_to_end(&mut v)?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// Python metadata: only the header part (before the first blank line) is kept.
fn metadata_headers(text: &str) -> String {
    match text.find("\n\n") {
        Some(i) => text[..i + 1].to_owned(),
        None => text.to_owned(),
    }
}

fn filter_lines(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for l in text.lines().filter(|l| keep(l)) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn read_elf(r: &mut dyn Read, path: &str, size: u64) -> io::Result<Node> {
    let torch = is_torch_lib(path);
    let vllm = is_vllm_ext(path);
    let src = match spill(r, size, size)? {
        Spilled::Done(s) => s,
        Spilled::TooLong => return Err(io::Error::other("longer than its tar header says")),
    };
    let mut f = ElfFile {
        size,
        ..ElfFile::default()
    };
    match elf::read(src.as_ref(), torch) {
        Ok(info) => fill(&mut f, info, vllm),
        Err(elf::ElfError::NotElf(_)) => return Ok(Node::Text(String::new())),
        Err(e) => f.note = Some(e.to_string()),
    }
    Ok(Node::Elf(Box::new(f)))
}

fn fill(f: &mut ElfFile, info: ElfInfo, vllm: bool) {
    f.hip_linked = info.hip_linked();
    f.needed = info.needed;
    f.runpath = info.runpath.into_iter().chain(info.rpath).collect();
    f.bundles = info.bundles;
    f.has_fatbin = info.has_fatbin;
    f.kpack_ref = info.kpack_ref;
    f.defined = info.defined;
    if vllm {
        f.undefined = info
            .undefined
            .into_iter()
            .filter(|u| !u.weak)
            .map(|u| u.name)
            .collect();
    }
}

/// Read one layer tar.
fn read_layer(r: &mut dyn Read, notes: &mut Vec<String>, seen: &mut u64) -> io::Result<Layer> {
    let mut layer = Layer::default();
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes();
        let path = clean(&String::from_utf8_lossy(&raw));
        let name = file_name(&path).to_owned();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            if hidden == ".wh..opq" {
                layer.opaque.push(dir.to_owned());
            } else if dir.is_empty() {
                layer.whiteouts.push(hidden.to_owned());
            } else {
                layer.whiteouts.push(format!("{dir}/{hidden}"));
            }
            continue;
        }
        let ty = entry.header().entry_type();
        if ty.is_symlink() {
            if want_link(&path)
                && let Some(t) = entry.link_name_bytes().map(|t| t.into_owned())
            {
                layer
                    .nodes
                    .insert(path, Node::Link(String::from_utf8_lossy(&t).into_owned()));
            }
            continue;
        }
        if ty.is_hard_link() {
            if let Some(t) = entry.link_name_bytes() {
                layer
                    .hardlinks
                    .push((path, clean(&String::from_utf8_lossy(&t))));
            }
            continue;
        }
        if !ty.is_file() {
            continue;
        }
        let size = entry.size();
        let node = match want(&path) {
            Want::None => continue,
            Want::Text => {
                let t = read_text(&mut entry, size)?;
                let meta = name == "METADATA" || name == "PKG-INFO";
                Node::Text(if meta { metadata_headers(&t) } else { t })
            }
            Want::DpkgList => Node::Text(filter_lines(&read_text(&mut entry, size)?, |l| {
                interesting_listed(l)
            })),
            Want::Record => Node::Text(filter_lines(&read_text(&mut entry, size)?, |l| {
                interesting_listed(l.split(',').next().unwrap_or(""))
            })),
            Want::Elf => {
                let mut magic = [0u8; 4];
                if size < 64 {
                    continue;
                }
                entry.read_exact(&mut magic)?;
                if &magic != b"\x7fELF" {
                    continue;
                }
                let mut r = io::Cursor::new(magic).chain(&mut entry);
                match read_elf(&mut r, &path, size) {
                    Ok(Node::Text(_)) => continue,
                    Ok(n) => n,
                    Err(e) => {
                        notes.push(format!("/{path}: {e}"));
                        continue;
                    }
                }
            }
            Want::CodeObject(kind) => {
                match read_code_object(&mut entry, &path, size, kind).map(Node::CodeObject) {
                    Ok(n) => n,
                    Err(e) => {
                        notes.push(format!("/{path}: {e}"));
                        continue;
                    }
                }
            }
        };
        *seen += 1;
        layer.nodes.insert(path, node);
    }
    Ok(layer)
}

fn remove_tree(nodes: &mut BTreeMap<String, Node>, path: &str, keep_self: bool) {
    if !keep_self {
        nodes.remove(path);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let doomed: Vec<String> = nodes
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        nodes.remove(&k);
    }
}

/// Merge layers bottom-up, whiteouts first.
fn merge(layers: Vec<Layer>) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    for mut l in layers {
        for d in &l.opaque {
            remove_tree(&mut nodes, d, true);
        }
        for w in &l.whiteouts {
            remove_tree(&mut nodes, w, false);
        }
        for (path, target) in std::mem::take(&mut l.hardlinks) {
            if let Some(n) = l.nodes.get(&target).or_else(|| nodes.get(&target)).cloned() {
                l.nodes.insert(path, n);
            }
        }
        nodes.append(&mut l.nodes);
    }
    nodes
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn is_tar_head(h: &[u8]) -> bool {
    h.len() >= 262 && &h[257..262] == b"ustar"
}

/// A tar whose first block is zeros: the end-of-archive marker, an empty tar. The engine writes
/// an empty layer (a step that changes no file, e.g. a `RUN` that only prints) as 1024 zero
/// bytes, which carry no `ustar` magic.
fn is_empty_tar(h: &[u8]) -> bool {
    h.len() == 512 && h.iter().all(|&b| b == 0)
}

/// Where a link entry of the image tar points, as a path of that tar: a symlink's target is
/// relative to the link's directory (`a/layer.tar -> ../b/layer.tar` is `b/layer.tar`), a hard
/// link's to the tar's root.
fn link_target(path: &str, target: &str, symlink: bool) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if symlink && !target.starts_with('/') {
        parts.extend(path.split('/'));
        parts.pop();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// What one pass over the image tar found.
#[derive(Default)]
struct Stream {
    /// Layer tars by path.
    layers: BTreeMap<String, Layer>,
    /// Their paths in stream order.
    order: Vec<String>,
    /// manifest.json's layer list, if the stream has one.
    manifest: Option<Vec<String>>,
    /// Link entries by name, to the path they point at.
    links: BTreeMap<String, String>,
}

/// Read a whole image tar (docker-save format) from `r`.
pub fn read_image(r: &mut dyn Read) -> io::Result<ImageFs> {
    let mut counted = Counting { r, n: 0 };
    let mut fs = ImageFs::default();
    let Stream {
        layers,
        order,
        manifest,
        links,
    } = read_stream(&mut counted, &mut fs)?;
    let order = manifest.unwrap_or(order);
    fs.layers = order.len();
    let stack = stack_layers(order, &links, layers)?;
    fs.nodes = merge(stack);
    fs.tar_bytes = counted.n;
    Ok(fs)
}

/// Read the image tar's entries: its links, manifest.json and layer tars (each layer read into
/// memory, its notes and file count into `fs`), then the rest of the stream.
fn read_stream(counted: &mut Counting, fs: &mut ImageFs) -> io::Result<Stream> {
    let mut s = Stream::default();
    let mut ar = tar::Archive::new(&mut *counted);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let ty = entry.header().entry_type();
        // Link entries by name (docker save writes a layer whose diff it already wrote, e.g. a
        // second empty layer, as a symlink `<id>/layer.tar -> ../<other id>/layer.tar`):
        // resolved once the stream is read, so the link may come before or after its target.
        if ty.is_symlink() || ty.is_hard_link() {
            if let Some(t) = entry.link_name_bytes() {
                let t = link_target(&path, &String::from_utf8_lossy(&t), ty.is_symlink());
                s.links.insert(path, t);
            }
            continue;
        }
        if !ty.is_file() {
            continue;
        }
        let size = entry.size();
        if path == "manifest.json" {
            s.manifest = Some(read_manifest(&mut entry, size)?);
            continue;
        }
        if let Some(layer) = read_layer_entry(&mut entry, size, &path, fs)? {
            s.order.push(path.clone());
            s.layers.insert(path, layer);
        }
    }
    // Read to the end (the tar's trailing blocks), so the byte count is the stream's.
    io::copy(counted, &mut io::sink())?;
    Ok(s)
}

/// The layer list of manifest.json's first image.
fn read_manifest(entry: &mut dyn Read, size: u64) -> io::Result<Vec<String>> {
    let t = read_text(entry, size)?;
    let m: Vec<ManifestEntry> = serde_json::from_str(&t)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("manifest.json: {e}")))?;
    Ok(m.into_iter().next().map(|m| m.layers).unwrap_or_default())
}

/// An entry of the image tar read as a layer, if it is one (a tar, gzipped or not, or an empty
/// tar).
fn read_layer_entry(
    entry: &mut dyn Read,
    size: u64,
    path: &str,
    fs: &mut ImageFs,
) -> io::Result<Option<Layer>> {
    if size < 512 {
        return Ok(None);
    }
    let mut head = vec![0u8; 512];
    entry.read_exact(&mut head)?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    if !gz && !is_tar_head(&head) && !is_empty_tar(&head) {
        return Ok(None);
    }
    let mut inner = io::Cursor::new(head).chain(entry);
    if gz {
        read_layer(
            &mut flate2::read::GzDecoder::new(&mut inner),
            &mut fs.notes,
            &mut fs.files_read,
        )
    } else {
        read_layer(&mut inner, &mut fs.notes, &mut fs.files_read)
    }
    .map(Some)
    .map_err(|e| io::Error::new(e.kind(), format!("layer {path}: {e}")))
}

/// The layers in the manifest's order, each name resolved through the stream's links.
fn stack_layers(
    order: Vec<String>,
    links: &BTreeMap<String, String>,
    mut layers: BTreeMap<String, Layer>,
) -> io::Result<Vec<Layer>> {
    // A name the manifest gives, through the stream's links, to the layer tar it stands for.
    let resolve = |p: &str| {
        let mut p = clean(p);
        for _ in 0..40 {
            match links.get(&p) {
                Some(t) if !layers.contains_key(&p) => p = t.clone(),
                _ => break,
            }
        }
        p
    };
    let order: Vec<(String, String)> = order.iter().map(|p| (clean(p), resolve(p))).collect();
    let mut stack = Vec::new();
    // The engine writes a layer once even when the manifest names it twice (two steps with the
    // same diff, e.g. two empty layers), or writes the second as a link to the first: each
    // mention applies the same layer again.
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in &order {
        *uses.entry(p.clone()).or_default() += 1;
    }
    for (named, p) in order {
        let left = uses.get_mut(&p).map_or(0, |n| {
            *n -= 1;
            *n
        });
        let layer = if left > 0 {
            layers.get(&p).cloned()
        } else {
            layers.remove(&p)
        };
        match layer {
            Some(l) => stack.push(l),
            None if named == p => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("manifest.json names layer {p}, which the stream does not hold"),
                ));
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "manifest.json names layer {named}, a link to {p}, which the stream \
                         does not hold"
                    ),
                ));
            }
        }
    }
    Ok(stack)
}

struct Counting<'a> {
    r: &'a mut dyn Read,
    n: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A [`Read`] over pieces arriving on a channel.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Takes the image tar in pieces (from an export) and reads it on its own thread.
pub struct ImageReader {
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<ImageFs>>>,
    fed: u64,
}

impl Default for ImageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageReader {
    /// Start the reading thread.
    pub fn new() -> ImageReader {
        // 32 pieces in flight (the engine's pieces are small; a 4 MiB block at most).
        let (tx, rx) = sync_channel::<Vec<u8>>(32);
        let worker = std::thread::spawn(move || {
            let mut r = ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            let out = read_image(&mut r);
            // Drain, so the feeder never blocks on a reader that gave up.
            while r.rx.recv().is_ok() {}
            out
        });
        ImageReader {
            tx: Some(tx),
            worker: Some(worker),
            fed: 0,
        }
    }

    /// Take the next piece of the image tar.
    pub fn feed(&mut self, piece: &[u8]) {
        if let Some(tx) = &self.tx {
            self.fed += piece.len() as u64;
            if tx.send(piece.to_vec()).is_err() {
                self.tx = None;
            }
        }
    }

    /// The stream ended: wait for the reader and return what it found.
    pub fn finish(mut self) -> io::Result<ImageFs> {
        self.tx = None;
        let w = self.worker.take().expect("finish once");
        w.join()
            .map_err(|_| io::Error::other("the image reader panicked"))?
    }
}

impl Write for ImageReader {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ImageReader {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl ImageFs {
    /// Follow symlinks in `path` (each component), inside the image. `None` when a loop or
    /// more than 40 links.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut todo: Vec<String> = clean(path)
            .split('/')
            .rev()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    parts.pop();
                    continue;
                }
                _ => {}
            }
            parts.push(c);
            let here = parts.join("/");
            if let Some(Node::Link(t)) = self.nodes.get(&here) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                parts.pop();
                if t.starts_with('/') {
                    parts.clear();
                }
                for c in t.split('/').rev().filter(|c| !c.is_empty()) {
                    todo.push(c.to_owned());
                }
            }
        }
        Some(parts.join("/"))
    }

    /// The ELF at `path` (symlinks followed).
    pub fn elf(&self, path: &str) -> Option<(String, &ElfFile)> {
        let p = self.resolve(path)?;
        match self.nodes.get(&p) {
            Some(Node::Elf(e)) => Some((p, e)),
            _ => None,
        }
    }

    /// Text files kept, by path.
    pub fn texts(&self) -> impl Iterator<Item = (&String, &String)> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::Text(t) => Some((p, t)),
            _ => None,
        })
    }

    /// ELF files kept.
    pub fn elves(&self) -> impl Iterator<Item = (&String, &ElfFile)> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::Elf(e) => Some((p, e.as_ref())),
            _ => None,
        })
    }

    /// Symlinks kept.
    pub fn links(&self) -> impl Iterator<Item = (&String, &String)> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::Link(t) => Some((p, t)),
            _ => None,
        })
    }

    /// Every path (files and links) with a given file name.
    pub fn by_name(&self) -> BTreeMap<&str, Vec<&String>> {
        let mut out: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for p in self.nodes.keys() {
            out.entry(file_name(p)).or_default().push(p);
        }
        out
    }

    /// Directories the dynamic loader searches by default, plus `/etc/ld.so.conf.d`'s.
    pub fn search_dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for (p, t) in self.texts() {
            if p.starts_with("etc/ld.so.conf") {
                for l in t.lines() {
                    let l = l.trim();
                    if l.starts_with('/') && seen.insert(l.to_owned()) {
                        dirs.push(clean(l));
                    }
                }
            }
        }
        for d in [
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "lib64",
            "usr/lib64",
            "lib",
            "usr/lib",
        ] {
            if seen.insert(format!("/{d}")) {
                dirs.push(d.to_owned());
            }
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        for (p, t) in links {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, p, t).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn image(layers: &[Vec<u8>]) -> Vec<u8> {
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("l{i}/layer.tar"))
            .collect();
        let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": [], "Layers": names}]);
        let mut files: Vec<(&str, &[u8])> = Vec::new();
        // Layers out of order in the stream: the manifest decides.
        for (n, l) in names.iter().zip(layers).rev() {
            files.push((n.as_str(), l.as_slice()));
        }
        let m = manifest.to_string();
        files.push(("manifest.json", m.as_bytes()));
        tar_of(&files, &[])
    }

    fn co(mach: u32, abi: u8, flags: u32) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[7] = 64;
        h[8] = abi;
        h[18..20].copy_from_slice(&224u16.to_le_bytes());
        h[48..52].copy_from_slice(&(mach | flags).to_le_bytes());
        h
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_files() {
        let b1 = crate::check::offload::tests::bundle(&["hipv4-amdgcn-amd-amdhsa--gfx1100"]);
        let l0 = tar_of(
            &[
                ("usr/lib/rocblas/library/TensileLibrary_gfx1100.dat", b"x"),
                ("usr/lib/rocblas/library/k_gfx1030.co", &b1),
                ("opt/x/lib/gone.hsaco", &co(0x4a, 2, 0)),
                ("opt/x/lib/sub/deep.hsaco", &co(0x4a, 2, 0)),
                ("var/lib/dpkg/status", b"Package: a\n"),
            ],
            &[("usr/lib/libz.so.1", "libz.so.1.3")],
        );
        let l1 = tar_of(
            &[
                (
                    "usr/lib/rocblas/library/.wh.TensileLibrary_gfx1100.dat",
                    b"",
                ),
                ("opt/x/lib/.wh..wh..opq", b""),
                ("opt/x/lib/new.hsaco", &co(0x3f, 2, (3 << 8) | (2 << 10))),
            ],
            &[],
        );
        let img = image(&[l0, l1]);
        let fs = read_image(&mut &img[..]).unwrap();
        assert_eq!(fs.layers, 2);
        assert_eq!(fs.tar_bytes, img.len() as u64);
        let keys: Vec<&str> = fs.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "opt/x/lib/new.hsaco",
                "usr/lib/libz.so.1",
                "usr/lib/rocblas/library/k_gfx1030.co",
                "var/lib/dpkg/status"
            ]
        );
        match &fs.nodes["opt/x/lib/new.hsaco"] {
            Node::CodeObject(c) => {
                assert_eq!(c.targets, ["gfx90a:sramecc-:xnack+"]);
                assert_eq!(c.how, "elf");
            }
            n => panic!("{n:?}"),
        }
        // The bundle's content wins over the name.
        match &fs.nodes["usr/lib/rocblas/library/k_gfx1030.co"] {
            Node::CodeObject(c) => assert_eq!(
                (c.targets.as_slice(), c.how),
                (&["gfx1100".to_owned()][..], "bundle")
            ),
            n => panic!("{n:?}"),
        }
    }

    #[test]
    fn a_layer_the_manifest_names_but_the_stream_lacks_is_an_error() {
        let manifest = serde_json::json!([{"Layers": ["a/layer.tar"]}]).to_string();
        let img = tar_of(&[("manifest.json", manifest.as_bytes())], &[]);
        let e = read_image(&mut &img[..]).unwrap_err();
        assert!(e.to_string().contains("a/layer.tar"), "{e}");
    }

    /// An image tar shaped like Docker 20.10's `docker save` of a BuildKit image: per layer a
    /// directory with `VERSION`, `json` and `layer.tar`; an empty layer (a `RUN` that writes no
    /// file) as 1024 zero bytes; a layer whose diff was already written as a symlink
    /// `<id>/layer.tar -> ../<other id>/layer.tar`, which may come before its target.
    fn save_stream(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, ty, data, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*ty);
            h.set_mode(if ty.is_dir() { 0o755 } else { 0o644 });
            if ty.is_symlink() || ty.is_hard_link() {
                h.set_size(0);
                b.append_link(&mut h, p, link).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, p, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn empty_and_symlinked_layer_tars_of_docker_save_are_read() {
        use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};
        let base = tar_of(
            &[("var/lib/dpkg/status", b"Package: a\n")],
            &[("usr/lib/libz.so.1", "libz.so.1.3")],
        );
        let copy = tar_of(&[("opt/x/lib/a.hsaco", &co(0x4a, 2, 0))], &[]);
        let empty = [0u8; 1024];
        let manifest = serde_json::json!([{
            "Config": "9d.json",
            "RepoTags": ["forge-fixture-good:latest"],
            "Layers": ["dc/layer.tar", "3f/layer.tar", "66/layer.tar", "65/layer.tar",
                       "0c/layer.tar", "e1/layer.tar"],
        }])
        .to_string();
        let img = save_stream(&[
            // A link ahead of the layer it points to.
            ("0c/", D, b"", ""),
            ("0c/VERSION", F, b"1.0", ""),
            ("0c/layer.tar", S, b"", "../66/layer.tar"),
            ("3f/", D, b"", ""),
            ("3f/VERSION", F, b"1.0", ""),
            ("3f/json", F, b"{}", ""),
            ("3f/layer.tar", F, &empty, ""),
            ("65/", D, b"", ""),
            ("65/json", F, b"{}", ""),
            ("65/layer.tar", S, b"", "../3f/layer.tar"),
            ("66/", D, b"", ""),
            ("66/layer.tar", F, &copy, ""),
            ("9d.json", F, b"{}", ""),
            ("dc/", D, b"", ""),
            ("dc/layer.tar", F, &base, ""),
            // A hard link names its target from the tar's root.
            ("e1/", D, b"", ""),
            ("e1/layer.tar", H, b"", "3f/layer.tar"),
            ("manifest.json", F, manifest.as_bytes(), ""),
            ("repositories", F, b"{}", ""),
        ]);
        let fs = read_image(&mut &img[..]).unwrap();
        assert_eq!(fs.layers, 6);
        assert_eq!(fs.tar_bytes, img.len() as u64);
        let keys: Vec<&str> = fs.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "opt/x/lib/a.hsaco",
                "usr/lib/libz.so.1",
                "var/lib/dpkg/status"
            ]
        );
        // The same through the reader, in pieces.
        let mut r = ImageReader::new();
        for piece in img.chunks(1000) {
            r.feed(piece);
        }
        assert_eq!(r.finish().unwrap().nodes.len(), 3);
        // A link to a layer the stream does not hold is still an error that names both.
        let manifest = serde_json::json!([{"Layers": ["a/layer.tar"]}]).to_string();
        let img = save_stream(&[
            ("a/layer.tar", S, b"", "../b/layer.tar"),
            ("manifest.json", F, manifest.as_bytes(), ""),
        ]);
        let e = read_image(&mut &img[..]).unwrap_err().to_string();
        assert!(
            e.contains("a/layer.tar") && e.contains("b/layer.tar"),
            "{e}"
        );
        assert_eq!(
            link_target("a/layer.tar", "../b/./layer.tar", true),
            "b/layer.tar"
        );
        assert_eq!(
            link_target("a/layer.tar", "/b/layer.tar", true),
            "b/layer.tar"
        );
    }

    #[test]
    fn the_reader_takes_pieces_of_any_size() {
        let l0 = tar_of(
            &[("etc/ld.so.conf.d/rocm.conf", b"/opt/rocm/lib\n")],
            &[("opt/rocm", "rocm-7.1.1")],
        );
        let img = image(&[l0]);
        let mut r = ImageReader::new();
        for piece in img.chunks(7) {
            r.write_all(piece).unwrap();
        }
        let fs = r.finish().unwrap();
        assert_eq!(fs.search_dirs()[0], "opt/rocm/lib");
        assert_eq!(
            fs.resolve("/opt/rocm/lib/x.so").unwrap(),
            "opt/rocm-7.1.1/lib/x.so"
        );
        // Not a tar at all: an error, not a hang.
        let mut r = ImageReader::new();
        r.feed(&[0x42u8; 10_000]);
        assert!(r.finish().is_err());
    }

    #[test]
    fn elf_code_object_targets_and_names() {
        assert_eq!(amdgpu_elf_target(&co(0x4a, 2, 0)).unwrap(), "gfx1151");
        assert_eq!(amdgpu_elf_target(&co(0x54, 3, 0)).unwrap(), "gfx11-generic");
        assert_eq!(
            amdgpu_elf_target(&co(0x3f, 2, (2 << 8) | (3 << 10))).unwrap(),
            "gfx90a:sramecc+:xnack-"
        );
        // Code object v3 (ABI 1): the feature bits mean something else; no suffix.
        assert_eq!(amdgpu_elf_target(&co(0x3f, 1, 0x100)).unwrap(), "gfx90a");
        assert_eq!(
            archs_in_name("TensileLibrary_Type_HH_Contraction_l_Ailk_Bljk_gfx90a-xnack-.dat"),
            ["gfx90a"]
        );
        assert_eq!(archs_in_name("gfx1100_40.kdb"), ["gfx1100"]);
        assert_eq!(archs_in_name("k_gfx11-generic.co"), ["gfx11-generic"]);
        assert_eq!(archs_in_name("k_gfx10-3-generic.co"), ["gfx10-3-generic"]);
        assert!(archs_in_name("nothing.dat").is_empty());
    }
}
