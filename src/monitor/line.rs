//! Line utilities shared by the monitor's rules and the diagnosis table: BuildKit's prefix,
//! step headers, clipping. Depends on nothing else in forge, so `diagnose` and `monitor::rules`
//! both use it without importing each other's internals.

/// How a line relates to the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Output of a build step.
    Output,
    /// A builder's step header that quotes the Dockerfile (`#5 [base 2/4] RUN ...`,
    /// `Step 2/9 : RUN ...`): never matched by the rules.
    StepHeader,
    /// Builder bookkeeping (` ---> abc`, `#5 DONE 0.1s`).
    Meta,
    /// A line that quotes the Dockerfile or source code rather than output: BuildKit's error
    /// summary (` > [base 2/4] RUN ...:`, `  10 | >>> RUN ...`), a compiler's source excerpt
    /// (`   10 |     foo();`). Never matched by the rules.
    Quote,
}

/// ` > [stage 2/4] RUN ...` or `  10 | >>> RUN ...` (and a compiler's `  10 |   code`).
fn is_quote(line: &[u8]) -> bool {
    if line.starts_with(b" > [") {
        return true;
    }
    let spaces = line.iter().take_while(|b| **b == b' ').count();
    let rest = &line[spaces..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b" |") && {
        let after = &rest[digits + 2..];
        after.is_empty() || after[0] == b' '
    }
}

/// The line with a quoted shell command elided: BuildKit's `process "/bin/sh -c ..." did not
/// complete successfully` (`executor failed running [/bin/sh -c ...]` on Docker 20.10) and the
/// classic builder's `The command '/bin/sh -c ...' returned a
/// non-zero code` quote the Dockerfile's `RUN`, whose text must never match a rule, whatever its
/// shell (`SHELL ["/bin/bash", "-o", "pipefail", "-c"]` in forge's Dockerfiles).
pub fn unquote_command(content: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use memchr::memmem;
    for (open, close) in [
        (&b"process \""[..], &b"\" did not complete successfully"[..]),
        (&b"The command '"[..], &b"' returned a non-zero code"[..]),
        // BuildKit of Docker 20.10: `executor failed running [/bin/sh -c ...]: exit code: 3`.
        (&b"executor failed running ["[..], &b"]: exit code"[..]),
    ] {
        if let Some(start) = memmem::find(content, open)
            && let Some(end) = memmem::rfind(content, close)
            && end > start + open.len()
        {
            let mut out = Vec::with_capacity(content.len());
            out.extend_from_slice(&content[..start + open.len()]);
            out.extend_from_slice("…".as_bytes());
            out.extend_from_slice(&content[end..]);
            return std::borrow::Cow::Owned(out);
        }
    }
    std::borrow::Cow::Borrowed(content)
}

/// A builder's own error line: BuildKit's `#3 ERROR: ...` (no timestamp: not a program's
/// output), the CLI's `ERROR: failed to solve: ...` / `ERROR [base 1/4] ...`, the classic
/// builder's `The command '...' returned a non-zero code: 1`.
pub fn is_builder_error(raw: &[u8]) -> bool {
    let mut rest = raw;
    if let Some(r) = raw.strip_prefix(b"#") {
        let d = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if d > 0 && r.get(d) == Some(&b' ') {
            rest = &r[d + 1..];
        }
    }
    // pip's note about packages it did not resolve is printed after a good install.
    (rest.starts_with(b"ERROR:") && !rest.starts_with(b"ERROR: pip's dependency resolver"))
        || rest.starts_with(b"ERROR [")
        || (rest.starts_with(b"The command '")
            && memchr::memmem::find(rest, b"returned a non-zero code").is_some())
}

/// Strip BuildKit's `#N 12.3 ` prefix; tell step headers from output.
pub fn strip_prefix(line: &[u8]) -> (&[u8], LineKind) {
    if let Some(rest) = line.strip_prefix(b"#") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(digits) == Some(&b' ') {
            let rest = &rest[digits + 1..];
            if rest.first() == Some(&b'[') && !rest.starts_with(b"[output clipped") {
                return (rest, LineKind::StepHeader);
            }
            let t = rest
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.')
                .count();
            if t > 0 && rest.get(t) == Some(&b' ') && rest[..t].contains(&b'.') {
                let out = &rest[t + 1..];
                if is_quote(out) {
                    return (out, LineKind::Quote);
                }
                return (out, LineKind::Output);
            }
            if t > 0 && rest.len() == t {
                return (b"", LineKind::Output);
            }
            if rest.starts_with(b"DONE")
                || rest.starts_with(b"CACHED")
                || rest.starts_with(b"sha256:")
            {
                return (rest, LineKind::Meta);
            }
            return (rest, LineKind::Output);
        }
    }
    if line.starts_with(b"Step ") {
        let r = &line[5..];
        let d = r
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'/')
            .count();
        if d > 0 && r[d..].starts_with(b" : ") {
            return (line, LineKind::StepHeader);
        }
    }
    if line.starts_with(b" ---> ") || line.starts_with(b"Removing intermediate container") {
        return (line, LineKind::Meta);
    }
    let line = strip_time(line);
    if is_quote(line) {
        return (line, LineKind::Quote);
    }
    (line, LineKind::Output)
}

/// A log's own time stamp before the output: GitHub Actions' `2025-10-24T04:43:45.7792580Z `,
/// BuildKit's error summary's `10.08 ` (seconds into the step).
fn strip_time(line: &[u8]) -> &[u8] {
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let d = digits(line);
    if d == 4 && line.get(4) == Some(&b'-') {
        let end = line.iter().position(|&c| c == b' ').unwrap_or(line.len());
        let stamp = &line[..end];
        if end < line.len() && stamp.ends_with(b"Z") && stamp.contains(&b'T') && end <= 40 {
            return &line[end + 1..];
        }
        return line;
    }
    if d > 0 && line.get(d) == Some(&b'.') {
        let f = digits(&line[d + 1..]);
        if f > 0 && line.get(d + 1 + f) == Some(&b' ') {
            return &line[d + 2 + f..];
        }
    }
    line
}

/// [`strip_prefix`] for text: the line without BuildKit's prefix.
pub fn strip_prefix_str(line: &str) -> &str {
    let (c, _) = strip_prefix(line.as_bytes());
    // The prefix is ASCII, so the rest starts on a char boundary.
    &line[line.len() - c.len()..]
}

/// Shorten a line for evidence.
pub fn clip(s: &str, max: usize) -> String {
    let t = s.trim();
    if t.chars().count() <= max {
        t.to_owned()
    } else {
        let cut: String = t.chars().take(max).collect();
        format!("{cut}…")
    }
}
