//! The rules engine: fed complete lines (bytes, any encoding), yields findings.
//!
//! It reads PyTorch's configuration summary (`cmake/Summary.cmake`: `--   USE_DISTRIBUTED : ON`),
//! LoadHIP's arch and HIP version lines, BuildKit's clipping notice, ninja's `[n/N]` progress and
//! the fatal compile patterns of the diagnosis table, with or without BuildKit's `#N 12.3 ` prefix,
//! CRLF and invalid UTF-8 tolerated. Fatal findings are raised **at the line** that proves the
//! build doomed, so a watcher can stop the build within a second of that line.
//!
//! Speed: a chunk of lines is searched once with a prefilter regex built from every pattern's
//! literal core; only the lines it hits (a handful per thousand) get the precise per-line rules.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexSet};
use serde::Serialize;

use crate::monitor::diagnose::{self, KNOWN};
use crate::recipe::{RuleSpec, Severity, parse_flag};
use crate::report::check_when;
use crate::report::{Check, Status};

/// Lines longer than this are matched on their first `MAX_LINE` bytes only (memory stays flat).
pub const MAX_LINE: usize = 64 * 1024;

/// One thing the monitor saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Finding {
    /// Rule id: a check id (`2.1`, `build.arch`, `2.2`) or a diagnosis id (`compile-oom`).
    pub id: String,
    /// fatal / warning / info.
    pub severity: Severity,
    /// 1-based line number in the log.
    pub line: u64,
    /// The line (prefix kept, clipped to 300 characters).
    pub text: String,
    /// What it means.
    pub message: String,
    /// What to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A summary value as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The value as printed (`OFF`, `0`, ``).
    pub value: String,
    /// Normalised: on, off, or not a flag value.
    pub on: Option<bool>,
    /// Where it was seen.
    pub line: u64,
}

/// Ninja progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// Where it was seen.
    pub line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Summary {
    NotSeen,
    In { start: u64 },
    Ended { start: u64, end: u64 },
}

/// What the recipe expects of the build log.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Archs that must be in PyTorch's GPU arch list.
    pub archs: Vec<String>,
    /// Extra rules.
    pub rules: Vec<RuleSpec>,
}

impl Expect {
    /// What `recipe` expects: its archs and its extra rules.
    pub fn of(recipe: &crate::recipe::Recipe) -> Expect {
        Expect {
            archs: recipe.archs().to_vec(),
            rules: recipe.file.rules.clone(),
        }
    }

    /// The same with `--arch` in place of the recipe's archs when given (validated).
    pub fn with_archs(recipe: &crate::recipe::Recipe, arch: &[String]) -> crate::Result<Expect> {
        Ok(Expect {
            archs: recipe.archs_or(arch)?,
            ..Expect::of(recipe)
        })
    }
}

struct UserRules {
    set: RegexSet,
    specs: Vec<RuleSpec>,
}

/// Where the build is, as its log shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Nothing recognised yet.
    Starting,
    /// CMake configuring (PyTorch's summary comes here).
    Configure,
    /// ninja compiling (`[n/N]`).
    Compile,
    /// The wheel being packed.
    Package,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Starting => "starting",
            Stage::Configure => "configure",
            Stage::Compile => "compile",
            Stage::Package => "package",
        })
    }
}

/// The monitor's state over one log.
pub struct Monitor {
    expect: Expect,
    user: Option<UserRules>,
    /// Summary values (`USE_DISTRIBUTED`, ...) and USE_* lines seen anywhere.
    pub flags: BTreeMap<String, Flag>,
    summary: Summary,
    /// `Building PyTorch for GPU arch:` list and its line.
    pub arch_list: Option<(Vec<String>, u64)>,
    /// LoadHIP's `HIP VERSION` and its line.
    pub hip_version: Option<(String, u64)>,
    /// `TORCH_HIP_VERSION` and its line.
    pub torch_hip_version: Option<(String, u64)>,
    /// Line of BuildKit's clipping notice.
    pub clipped: Option<u64>,
    /// Latest ninja progress.
    pub progress: Option<Progress>,
    /// Where the build is (`configure`, `compile`, ...).
    pub phase: Stage,
    /// Current Dockerfile step (`[torch-build 6/7] RUN ...`).
    pub step: Option<String>,
    /// Every finding so far.
    pub findings: Vec<Finding>,
    /// The builder's first error line (`#3 ERROR: ...`) and its number.
    pub first_error: Option<(u64, String)>,
    /// Lines seen.
    pub lines: u64,
    /// Bytes seen.
    pub bytes: u64,
    cmake: diagnose::CmakeBlock,
    /// The last `FAILED:` step's finding (index) and line, until its first error is quoted.
    failed_step: Option<(usize, u64)>,
}

/// How far under a `FAILED:` line its compiler error may come (ninja prints the step's whole
/// output after it; a long command line is one line).
const STEP_OUTPUT_LINES: u64 = 2000;

pub use super::line::{
    LineKind, is_builder_error, strip_prefix, strip_prefix_str, unquote_command,
};

struct Patterns {
    prefilter: Regex,
    flag: Regex,
    arch: Regex,
    hip: Regex,
    torch_hip: Regex,
    distributed_off: Regex,
    ninja: Regex,
    build_known: Vec<usize>,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let build_known: Vec<usize> = KNOWN
            .iter()
            .enumerate()
            .filter(|(_, k)| k.in_build.is_some())
            .map(|(i, _)| i)
            .collect();
        // Every alternative starts with a distinctive literal, so the regex engine can skip
        // through a chunk with a vectorised multi-literal search: lines that start with `#`
        // (BuildKit) or `[` (ninja) must not be candidates by themselves.
        let mut alts: Vec<String> = vec![
            r"Step \d+/\d+ :".into(),
            r"USE_[A-Z0-9_]+[ \t]*[:=]".into(),
            r"\*\*\*\*\*\*\*\* Summary".into(),
            r"Building PyTorch for GPU arch".into(),
            r"HIP VERSION: ".into(),
            r"hip VERSION: ".into(),
            r"TORCH_HIP_VERSION: ".into(),
            r"output clipped".into(),
            r"istributed[^/_.a-z]".into(),
            r"-- The CXX compiler".into(),
            r"-- Configuring done".into(),
            r"-- Build files have".into(),
            r"running bdist_wheel".into(),
            r"creating '".into(),
            r"ERROR[: \[]".into(),
            r"returned a non-zero code".into(),
        ];
        // The cores share their literals (`error: ` serves every compiler, linker and git
        // error): one alternative a literal keeps the prefilter a small multi-literal search.
        for &i in &build_known {
            let core = KNOWN[i].prefilter();
            if KNOWN[i].core.is_some() {
                for lit in core.split('|') {
                    if !alts.iter().any(|a| a == lit) {
                        alts.push(lit.to_owned());
                    }
                }
            } else {
                alts.push(format!("(?:{core})"));
            }
        }
        Patterns {
            // Multi-line: a pattern's `$` (`exit code: 137\s*$`) is the end of its line, not
            // the end of whatever chunk the line arrived in.
            prefilter: Regex::new(&format!("(?m){}", alts.join("|"))).expect("prefilter is valid"),
            flag: Regex::new(r"^--\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$").expect("valid"),
            arch: Regex::new(r"Building PyTorch for GPU arch:\s*(.*?)\s*$").expect("valid"),
            hip: Regex::new(r"(?:^|\s|-- )(?:HIP|hip) VERSION:\s*(\S+)").expect("valid"),
            torch_hip: Regex::new(r"TORCH_HIP_VERSION:\s*(\d+)").expect("valid"),
            distributed_off: Regex::new(
                r"(?ix)
                USE_DISTRIBUTED \s* [:=] \s* (?:off|0|false|no|n)? \s* $      # `: OFF`, `=0`, empty
              | USE_DISTRIBUTED \s* [:=] \s* (?:off|0|false|no) \b
              | \b(?:disabl\w*|turn\w*\s+off|without|skip\w*)\s+(?:the\s+|torch\.)?distributed\b
              | \bdistributed\b [^/\n]{0,48}? \b(?:disabled|is\s+off|turned\s+off|not\s+(?:available|supported|enabled|built))\b
            ",
            )
            .expect("valid"),
            ninja: Regex::new(r"^\[(\d+)/(\d+)\] ").expect("valid"),
            build_known,
        }
    })
}

fn text_of(raw: &[u8]) -> String {
    diagnose::clip(&String::from_utf8_lossy(raw), 300)
}

impl Monitor {
    /// A monitor for a recipe's expectations.
    pub fn new(expect: Expect) -> Monitor {
        let user = (!expect.rules.is_empty()).then(|| UserRules {
            set: RegexSet::new(expect.rules.iter().map(|r| r.pattern.get_ref().as_str()))
                .expect("recipe rules were validated"),
            specs: expect.rules.clone(),
        });
        Monitor {
            expect,
            user,
            flags: BTreeMap::new(),
            summary: Summary::NotSeen,
            arch_list: None,
            hip_version: None,
            torch_hip_version: None,
            clipped: None,
            progress: None,
            phase: Stage::Starting,
            step: None,
            findings: Vec::new(),
            first_error: None,
            lines: 0,
            bytes: 0,
            cmake: diagnose::CmakeBlock::default(),
            failed_step: None,
        }
    }

    /// A new monitor with the same expectations (for a log that starts over).
    pub fn fresh(&self) -> Monitor {
        Monitor::new(self.expect.clone())
    }

    /// The fatal finding that names the cause best, if any: the most specific (a known cause
    /// above its generic class, [`diagnose::rank`]), the earliest of equals.
    pub fn fatal(&self) -> Option<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Fatal)
            .min_by_key(|f| (diagnose::rank(&f.id), f.line))
    }

    fn needs_every_line(&self) -> bool {
        matches!(self.summary, Summary::In { .. }) || self.user.is_some()
    }

    /// Feed a chunk of complete lines (each ending in `\n`; the last may lack it at end of log).
    /// Returns the number of findings it added.
    pub fn feed(&mut self, chunk: &[u8]) -> usize {
        let before = self.findings.len();
        let p = patterns();
        self.bytes += chunk.len() as u64;
        let mut pos = 0;
        while pos < chunk.len() {
            let line_start = if self.needs_every_line() {
                pos
            } else {
                match p.prefilter.find_at(chunk, pos) {
                    None => {
                        self.lines += count_lines(&chunk[pos..]);
                        break;
                    }
                    Some(m) => {
                        let ls = memchr::memrchr(b'\n', &chunk[pos..m.start()])
                            .map_or(pos, |i| pos + i + 1);
                        self.lines += memchr::memchr_iter(b'\n', &chunk[pos..ls]).count() as u64;
                        ls
                    }
                }
            };
            let end =
                memchr::memchr(b'\n', &chunk[line_start..]).map_or(chunk.len(), |i| line_start + i);
            self.lines += 1;
            let line = &chunk[line_start..end];
            self.line(&line[..line.len().min(MAX_LINE)]);
            pos = end + 1;
        }
        self.track_progress(chunk);
        self.findings.len() - before
    }

    /// The last ninja `[n/N]` line of the chunk: progress and the compile phase.
    fn track_progress(&mut self, chunk: &[u8]) {
        let p = patterns();
        let mut end = chunk.len();
        let mut lines_back = 0u64;
        for _ in 0..64 {
            if end == 0 {
                break;
            }
            let body_end = if chunk[end - 1] == b'\n' {
                end - 1
            } else {
                end
            };
            let start = memchr::memrchr(b'\n', &chunk[..body_end]).map_or(0, |i| i + 1);
            let (content, kind) = strip_prefix(&chunk[start..body_end]);
            if kind == LineKind::Output
                && let Some(c) = p.ninja.captures(content)
            {
                let num = |i| {
                    std::str::from_utf8(&c[i])
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let line = self.lines - lines_back;
                self.progress = Some(Progress {
                    done: num(1),
                    total: num(2),
                    line,
                });
                if self.phase != Stage::Package {
                    self.phase = Stage::Compile;
                }
                return;
            }
            if chunk[end - 1] == b'\n' || end == chunk.len() {
                lines_back += 1;
            }
            end = start;
        }
    }

    fn push(
        &mut self,
        id: &str,
        severity: Severity,
        raw: &[u8],
        message: String,
        hint: Option<String>,
    ) {
        self.findings.push(Finding {
            id: id.to_owned(),
            severity,
            line: self.lines,
            text: text_of(raw),
            message,
            hint,
        });
    }

    /// Process one line (no newline). `self.lines` is already its number.
    fn line(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (content, kind) = strip_prefix(raw);
        if kind == LineKind::StepHeader {
            self.step = Some(text_of(content));
            return;
        }
        if matches!(kind, LineKind::Meta | LineKind::Quote) {
            return;
        }
        let p = patterns();
        let no = self.lines;
        if self.first_error.is_none() && is_builder_error(raw) {
            self.first_error = Some((no, text_of(raw)));
        }
        let unquoted = unquote_command(content);
        let content: &[u8] = &unquoted;

        if let Summary::In { start } = self.summary
            && (!content.starts_with(b"--")
                || content.starts_with(b"-- Configuring done")
                || content.starts_with(b"-- Generating done"))
        {
            self.summary = Summary::Ended { start, end: no };
            self.end_of_summary(raw);
        }
        if memchr::memmem::find(content, b"******** Summary").is_some() {
            self.summary = Summary::In { start: no };
            self.phase = Stage::Configure;
        }
        if content.starts_with(b"-- The CXX compiler") || content.starts_with(b"-- The C compiler")
        {
            self.phase = Stage::Configure;
        }
        if content.starts_with(b"running bdist_wheel") || content.starts_with(b"creating '") {
            self.phase = Stage::Package;
        }

        if let Some(c) = p.flag.captures(content) {
            let key = String::from_utf8_lossy(&c[1]).into_owned();
            if matches!(self.summary, Summary::In { .. }) || key.starts_with("USE_") {
                let value = String::from_utf8_lossy(&c[2]).into_owned();
                self.flag(key, value, raw);
            }
        }
        if let Some(c) = p.arch.captures(content) {
            self.arch_line(&c[1], raw);
        }
        if let Some(c) = p.hip.captures(content) {
            self.hip_version = Some((String::from_utf8_lossy(&c[1]).into_owned(), no));
        }
        if self.torch_hip_version.is_none()
            && let Some(c) = p.torch_hip.captures(content)
        {
            self.torch_hip_version = Some((String::from_utf8_lossy(&c[1]).into_owned(), no));
        }
        if memchr::memmem::find(content, b"output clipped").is_some() {
            if self.clipped.is_none() {
                self.push(
                    "build.clipped",
                    Severity::Warning,
                    raw,
                    "BuildKit clipped this step's log: later lines, fatal ones included, may be lost".into(),
                    Some("set BUILDKIT_STEP_LOG_MAX_SIZE=-1 and BUILDKIT_STEP_LOG_MAX_SPEED=-1 in buildkitd's environment".into()),
                );
            }
            self.clipped.get_or_insert(no);
        }
        if !p.ninja.is_match(content) && p.distributed_off.is_match(content) {
            self.push(
                "2.2",
                Severity::Warning,
                raw,
                "a line turns distributed off or disables it".into(),
                Some("make sure USE_DISTRIBUTED=1 reaches the build (env, not only ARG)".into()),
            );
        }
        self.cmake.observe(content, no);
        let cmake = self.cmake;
        let matched = diagnose::matches_bytes(content)
            .find(|&i| p.build_known.contains(&i) && cmake.allows(&KNOWN[i], no));
        if let Some(i) = matched {
            self.known_finding(&KNOWN[i], raw, content);
        }
        if let Some(u) = &self.user {
            let hits: Vec<usize> = u.set.matches(content).into_iter().collect();
            for i in hits {
                let r = self.user.as_ref().expect("checked").specs[i].clone();
                self.push(&r.id, r.severity, raw, r.message.clone(), r.hint.clone());
            }
        }
    }

    /// LoadHIP's `Building PyTorch for GPU arch:` list: fatal without a target arch.
    fn arch_line(&mut self, list: &[u8], raw: &[u8]) {
        let no = self.lines;
        let list: Vec<String> = String::from_utf8_lossy(list)
            .split([';', ',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let missing: Vec<&str> = self
            .expect
            .archs
            .iter()
            .filter(|a| !list.contains(a))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "PyTorch builds for [{}], without {}: every kernel would fail with hipErrorInvalidImage on that GPU",
                list.join(";"),
                missing.join(", ")
            );
            self.push(
                "build.arch",
                Severity::Fatal,
                raw,
                msg,
                Some("pass PYTORCH_ROCM_ARCH from the recipe's `archs` and export it with ENV in the Dockerfile".into()),
            );
        }
        self.arch_list = Some((list, no));
    }

    /// A finding for known failure `k` at this line; a step's compiler or linker error is also
    /// quoted in the `FAILED:` finding above it.
    fn known_finding(&mut self, k: &diagnose::Known, raw: &[u8], content: &[u8]) {
        let no = self.lines;
        let quoted = diagnose::clip(&String::from_utf8_lossy(content), 240);
        let message = if k.quote {
            format!("{}: `{quoted}` ({})", k.cause, k.id)
        } else {
            format!("{} ({})", k.cause, k.id)
        };
        let sev = k.in_build.unwrap_or(Severity::Warning);
        if k.in_step
            && let Some((i, at)) = self.failed_step.take()
            && no - at <= STEP_OUTPUT_LINES
        {
            self.findings[i]
                .message
                .push_str(&format!("; first error, line {no}: `{quoted}`"));
        }
        if matches!(k.id, "compile-step-failed" | "libtorch-hip-link") {
            self.failed_step = Some((self.findings.len(), no));
        }
        self.push(k.id, sev, raw, message, Some(k.fix.to_owned()));
    }

    fn flag(&mut self, key: String, value: String, raw: &[u8]) {
        let on = parse_flag(&value);
        let no = self.lines;
        let fatal = match (key.as_str(), on) {
            ("USE_DISTRIBUTED", Some(false)) => Some((
                "2.1",
                format!(
                    "USE_DISTRIBUTED is `{value}`: torch.distributed will be missing and vLLM fails with `cannot import name 'PrefixStore'`"
                ),
                "set USE_DISTRIBUTED=1 in the build environment (forge's recipes pass it as ARG and ENV)",
            )),
            ("USE_ROCM", Some(false)) => Some((
                "2.1",
                format!("USE_ROCM is `{value}`: this is a CPU-only build (wheel < 500 MB)"),
                "set USE_ROCM=1 and build on a ROCm base image",
            )),
            ("USE_CUDA", Some(true)) => Some((
                "build.cuda",
                format!("USE_CUDA is `{value}` in a ROCm build"),
                "set USE_CUDA=0",
            )),
            _ => None,
        };
        if let Some((id, msg, hint)) = fatal {
            self.push(id, Severity::Fatal, raw, msg, Some(hint.to_owned()));
        }
        self.flags.entry(key).or_insert(Flag {
            value,
            on,
            line: no,
        });
    }

    fn end_of_summary(&mut self, raw: &[u8]) {
        if !self.flags.contains_key("USE_DISTRIBUTED") {
            let Summary::Ended { start, .. } = self.summary else {
                return;
            };
            self.push(
                "2.1",
                Severity::Fatal,
                raw,
                format!("the configuration summary (from line {start}) ended without a USE_DISTRIBUTED line: distributed is not being built"),
                Some("set USE_DISTRIBUTED=1 in the build environment".into()),
            );
        }
    }

    /// End of log: close an open summary.
    pub fn finish(&mut self) -> usize {
        let before = self.findings.len();
        if let Summary::In { start } = self.summary {
            self.summary = Summary::Ended {
                start,
                end: self.lines,
            };
            self.end_of_summary(b"<end of log>");
        }
        self.findings.len() - before
    }

    fn flag_evidence(&self, key: &str) -> String {
        match self.flags.get(key) {
            Some(f) => format!(
                "{key}: {} (line {})",
                if f.value.is_empty() {
                    "<empty>"
                } else {
                    &f.value
                },
                f.line
            ),
            None => format!("{key}: not printed"),
        }
    }

    fn is_on(&self, key: &str) -> bool {
        self.flags.get(key).and_then(|f| f.on) == Some(true)
    }

    /// Why the summary checks cannot be judged: the log is empty, or it ends before PyTorch's
    /// configuration summary (then with its first error line and that line's diagnosis).
    /// `None` once configure printed anything the checks read.
    pub fn not_configured(&self) -> Option<String> {
        if self.bytes == 0 {
            return Some("the log is empty (0 bytes): nothing to check".to_owned());
        }
        if !matches!(self.summary, Summary::NotSeen)
            || self.flags.contains_key("USE_DISTRIBUTED")
            || self.flags.contains_key("USE_ROCM")
            || self.arch_list.is_some()
        {
            return None;
        }
        let mut why = format!(
            "the log ends before PyTorch's configuration summary ({} lines, no `******** Summary` line)",
            self.lines
        );
        match self.first_error_diagnosis() {
            Some((line, text, Some(k))) => why.push_str(&format!(
                "; first error at line {line}: {text} ({}: {})",
                k.id, k.cause
            )),
            Some((line, text, None)) => {
                why.push_str(&format!("; first error at line {line}: {text}"));
            }
            None => match self.fatal() {
                Some(f) => why.push_str(&format!(
                    "; fatal at line {}: {} ({})",
                    f.line, f.text, f.id
                )),
                None => why.push_str("; no builder error in it: the build may still be running"),
            },
        }
        Some(why)
    }

    /// The builder's first error line, with the known failure it matches, if any.
    pub fn first_error_diagnosis(&self) -> Option<(u64, &str, Option<&'static diagnose::Known>)> {
        let (line, text) = self.first_error.as_ref()?;
        let body = unquote_command(strip_prefix(text.as_bytes()).0);
        let known = diagnose::matches_bytes(&body).next().map(|i| &KNOWN[i]);
        Some((*line, text.as_str(), known))
    }

    /// The phase 2 verdict as checks.
    pub fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let not_configured = self.not_configured();
        if let Some(why) = &not_configured {
            for id in ["2.1", "build.hip", "build.arch", "build.cuda"] {
                out.push(crate::report::check(id, Status::Skip, why.clone()));
            }
        } else {
            self.summary_checks(&mut out);
        }
        if self.bytes == 0 {
            for id in ["2.2", "build.fatal", "build.clipped"] {
                out.push(crate::report::check(
                    id,
                    Status::Skip,
                    "the log is empty (0 bytes): nothing to check",
                ));
            }
            return out;
        }
        self.output_checks(&mut out);
        out
    }

    fn summary_checks(&self, out: &mut Vec<Check>) {
        let dist = self.is_on("USE_DISTRIBUTED");
        let rocm = self.is_on("USE_ROCM");
        let mut c21 = check_when(
            dist && rocm,
            "2.1",
            format!(
                "{}; {}",
                self.flag_evidence("USE_DISTRIBUTED"),
                self.flag_evidence("USE_ROCM")
            ),
        );
        if !(dist && rocm) {
            c21 = c21.with_hint(
                "rebuild with USE_DISTRIBUTED=1 and USE_ROCM=1 in the build environment",
            );
        }
        out.push(c21);

        let mut hip = vec![self.flag_evidence("USE_ROCM")];
        if let Some((v, l)) = &self.hip_version {
            hip.push(format!("HIP VERSION: {v} (line {l})"));
        }
        if let Some((v, l)) = &self.torch_hip_version {
            hip.push(format!("TORCH_HIP_VERSION: {v} (line {l})"));
        }
        out.push(check_when(
            rocm,
            "build.hip",
            format!(
                "PyTorch prints no USE_HIP line (the spec's 2.1 asks for one); HIP is proven by {}",
                hip.join(", ")
            ),
        ));

        out.push(match &self.arch_list {
            Some((list, line)) => {
                let ok = self.expect.archs.iter().all(|a| list.contains(a));
                check_when(
                    ok,
                    "build.arch",
                    format!(
                        "GPU arch: {} (line {line}); want {}",
                        list.join(";"),
                        self.expect.archs.join(";")
                    ),
                )
            }
            None => check_when(
                false,
                "build.arch",
                "no `Building PyTorch for GPU arch:` line in the log",
            )
            .with_hint("PYTORCH_ROCM_ARCH must reach LoadHIP.cmake"),
        });

        out.push(match self.flags.get("USE_CUDA") {
            Some(f) => check_when(
                f.on != Some(true),
                "build.cuda",
                self.flag_evidence("USE_CUDA"),
            ),
            None => crate::report::check("build.cuda", Status::Skip, "USE_CUDA not printed"),
        });
    }

    fn output_checks(&self, out: &mut Vec<Check>) {
        let lines_of = |pred: &dyn Fn(&Finding) -> bool| -> Vec<&Finding> {
            self.findings.iter().filter(|f| pred(f)).collect()
        };
        let off = lines_of(&|f| f.id == "2.2");
        out.push(if off.is_empty() {
            check_when(true, "2.2", format!("no such line in {} lines", self.lines))
        } else {
            check_when(
                false,
                "2.2",
                format!(
                    "{} line(s), first at line {}: {}",
                    off.len(),
                    off[0].line,
                    off[0].text
                ),
            )
        });

        let fatal = lines_of(&|f| {
            f.severity == Severity::Fatal
                && !matches!(f.id.as_str(), "2.1" | "build.arch" | "build.cuda")
        });
        let cause = fatal.iter().min_by_key(|f| (diagnose::rank(&f.id), f.line));
        out.push(match cause {
            None => match self.first_error_diagnosis() {
                None => check_when(true, "build.fatal", "none"),
                // The builder's own error: the build failed there, whatever the rules knew.
                Some((line, text, known)) => {
                    let c = check_when(
                        false,
                        "build.fatal",
                        match known {
                            Some(k) => format!("line {line}: {text} ({}: {})", k.id, k.cause),
                            None => format!("line {line}: {text} (the builder's error)"),
                        },
                    );
                    c.with_hint(known.map_or(
                        "read the error line; `forge diagnose LOG` names known causes",
                        |k| k.fix,
                    ))
                }
            },
            Some(f) => {
                let c = check_when(
                    false,
                    "build.fatal",
                    format!("line {}: {} ({})", f.line, f.text, f.message),
                );
                match &f.hint {
                    Some(h) => c.with_hint(h.clone()),
                    None => c,
                }
            }
        });

        out.push(match self.clipped {
            None => check_when(true, "build.clipped", "not clipped"),
            Some(l) => check_when(false, "build.clipped", format!("clipped at line {l}: later lines may be lost"))
                .with_hint("set BUILDKIT_STEP_LOG_MAX_SIZE=-1 and BUILDKIT_STEP_LOG_MAX_SPEED=-1 on the daemon"),
        });
    }
}

fn count_lines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

#[cfg(test)]
mod tests;
