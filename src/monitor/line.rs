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
                return (&rest[t + 1..], LineKind::Output);
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
    (line, LineKind::Output)
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
