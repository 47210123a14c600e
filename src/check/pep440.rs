//! The part of PEP 440 (versions, specifiers) and PEP 508 (requirements, markers) that
//! `pip check` needs to judge installed distributions against each other's `Requires-Dist`.
//!
//! Versions: epoch, release, pre (a/b/rc), post, dev, local, with PEP 440's normalisation and
//! ordering. Specifiers: `==`, `!=` (with `.*`), `<`, `<=`, `>`, `>=`, `~=`, `===`; a specifier
//! without a local label ignores the candidate's (`==2.9.0` matches `2.9.0+rocm7.1.1`);
//! `<V`/`>V` exclude V's pre/post releases as PEP 440 says. Markers: `extra == ...` makes a
//! requirement optional (pip check ignores it); other markers are evaluated for Linux x86_64 and
//! the given Python version where they are simple comparisons, and count as true otherwise.

use std::cmp::Ordering;

/// A parsed version (`1.0` == `1.0.0`).
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    /// The local label (`rocm7.1.1`), lowercased.
    pub local: Option<String>,
}

fn num_prefix(s: &str) -> (Option<u64>, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        (None, s)
    } else {
        (s[..end].parse().ok(), &s[end..])
    }
}

impl Version {
    /// Parse a PEP 440 version (normalising spellings: `1.0RC1`, `1.0-post2`, `v1.0`).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (public, local) = match s.split_once('+') {
            Some((p, l)) if !l.is_empty() => (p, Some(l.replace(['-', '_'], "."))),
            Some(_) => return None,
            None => (s, None),
        };
        let (epoch, rest) = match public.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, public),
        };
        let mut release = Vec::new();
        let mut rest = rest;
        loop {
            let (n, r) = num_prefix(rest);
            release.push(n?);
            match r.strip_prefix('.') {
                Some(r2) if r2.starts_with(|c: char| c.is_ascii_digit()) => rest = r2,
                _ => {
                    rest = r;
                    break;
                }
            }
        }
        let mut v = Version {
            epoch,
            release,
            pre: None,
            post: None,
            dev: None,
            local,
        };
        let sep = |r: &str| -> String { r.trim_start_matches(['.', '-', '_']).to_owned() };
        let mut r = sep(rest);
        for (words, kind) in [
            (&["alpha", "a"][..], 0u8),
            (&["beta", "b"][..], 1),
            (&["preview", "pre", "rc", "c"][..], 2),
        ] {
            if let Some(w) = words.iter().find(|w| r.starts_with(**w)) {
                let (n, after) = num_prefix(sep(&r[w.len()..]).as_str()).to_owned_pair();
                v.pre = Some((kind, n.unwrap_or(0)));
                r = sep(&after);
                break;
            }
        }
        if let Some(w) = ["post", "rev", "r"].iter().find(|w| r.starts_with(**w)) {
            let (n, after) = num_prefix(sep(&r[w.len()..]).as_str()).to_owned_pair();
            v.post = Some(n.unwrap_or(0));
            r = sep(&after);
        } else if rest.starts_with('-')
            && let (Some(n), after) = num_prefix(&r).to_owned_pair()
        {
            v.post = Some(n);
            r = sep(&after);
        }
        if let Some(after) = r.strip_prefix("dev") {
            let (n, after) = num_prefix(sep(after).as_str()).to_owned_pair();
            v.dev = Some(n.unwrap_or(0));
            r = after;
        }
        r.is_empty().then_some(v)
    }

    fn release_cmp(a: &[u64], b: &[u64]) -> Ordering {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| {
                a.get(i)
                    .copied()
                    .unwrap_or(0)
                    .cmp(&b.get(i).copied().unwrap_or(0))
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Order without the local label.
    fn public_cmp(&self, o: &Version) -> Ordering {
        // Sort keys as `packaging` builds them: dev-only releases sort before pre-releases.
        let pre_key = |v: &Version| -> (i8, u64) {
            match (v.pre, v.post, v.dev) {
                (None, None, Some(_)) => (-1, 0),
                (Some((k, n)), _, _) => (k as i8, n),
                _ => (3, 0),
            }
        };
        let post_key = |v: &Version| v.post.map_or(-1i128, i128::from);
        let dev_key = |v: &Version| v.dev.map_or(i128::MAX, i128::from);
        self.epoch
            .cmp(&o.epoch)
            .then_with(|| Self::release_cmp(&self.release, &o.release))
            .then_with(|| pre_key(self).cmp(&pre_key(o)))
            .then_with(|| post_key(self).cmp(&post_key(o)))
            .then_with(|| dev_key(self).cmp(&dev_key(o)))
    }

    /// Whether it is a pre- or dev release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    fn public(&self) -> Version {
        Version {
            local: None,
            ..self.clone()
        }
    }
}

trait OwnedPair {
    fn to_owned_pair(self) -> (Option<u64>, String);
}

impl OwnedPair for (Option<u64>, &str) {
    fn to_owned_pair(self) -> (Option<u64>, String) {
        (self.0, self.1.to_owned())
    }
}

impl PartialEq for Version {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Self) -> Ordering {
        self.public_cmp(o).then_with(|| self.local.cmp(&o.local))
    }
}

/// One clause of a specifier set (`>=2.9,<2.10` has two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    op: String,
    text: String,
}

/// A requirement: name, specifier clauses, marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The distribution's name, PEP 503-normalised.
    pub name: String,
    /// The specifier clauses (all must hold).
    pub clauses: Vec<Clause>,
    /// The specifier as written.
    pub spec: String,
    /// The marker as written (after `;`).
    pub marker: Option<String>,
}

impl Clause {
    /// Whether `v` satisfies this clause.
    pub fn contains(&self, v: &Version) -> bool {
        let t = self.text.trim();
        if self.op == "===" {
            return false;
        }
        if let Some(prefix) = t.strip_suffix(".*") {
            let Some(p) = Version::parse(prefix) else {
                return false;
            };
            let matches = v.epoch == p.epoch
                && p.release
                    .iter()
                    .enumerate()
                    .all(|(i, n)| v.release.get(i).copied().unwrap_or(0) == *n);
            return match self.op.as_str() {
                "==" => matches,
                "!=" => !matches,
                _ => false,
            };
        }
        let Some(s) = Version::parse(t) else {
            return false;
        };
        // A specifier without a local label ignores the candidate's.
        let cand = if s.local.is_none() {
            v.public()
        } else {
            v.clone()
        };
        match self.op.as_str() {
            "==" => cand == s,
            "!=" => cand != s,
            "<=" => cand.public_cmp(&s).is_le(),
            ">=" => cand.public_cmp(&s).is_ge(),
            "<" => {
                cand.public_cmp(&s).is_lt()
                    && !(!s.is_prerelease()
                        && cand.is_prerelease()
                        && Version::release_cmp(&cand.release, &s.release).is_eq())
            }
            ">" => {
                cand.public_cmp(&s).is_gt()
                    && !(s.post.is_none()
                        && cand.post.is_some()
                        && Version::release_cmp(&cand.release, &s.release).is_eq())
            }
            "~=" => {
                if s.release.len() < 2 {
                    return false;
                }
                let mut upper = s.release[..s.release.len() - 1].to_vec();
                let last = upper.len() - 1;
                upper[last] += 1;
                cand.public_cmp(&s).is_ge()
                    && Version::release_cmp(&cand.release, &upper).is_lt()
                    && cand.epoch == s.epoch
            }
            _ => false,
        }
    }
}

/// Parse a specifier set (`>=2.9.0,<2.10`, `==2.9.0`, empty = anything).
pub fn parse_spec(spec: &str) -> Option<Vec<Clause>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let op = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"]
            .into_iter()
            .find(|op| part.starts_with(op))?;
        out.push(Clause {
            op: op.to_owned(),
            text: part[op.len()..].trim().to_owned(),
        });
    }
    Some(out)
}

/// Whether `v` satisfies every clause.
pub fn satisfies(clauses: &[Clause], v: &Version) -> bool {
    clauses.iter().all(|c| c.contains(v))
}

/// Parse a `Requires-Dist` value (`torch==2.9.0; platform_system == "Linux"`,
/// `triton (>=3.0)`, `numpy[extra]>=1`).
pub fn parse_requirement(s: &str) -> Option<Requirement> {
    let (req, marker) = match s.split_once(';') {
        Some((r, m)) => (r.trim(), Some(m.trim().to_owned())),
        None => (s.trim(), None),
    };
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(req.len());
    if end == 0 {
        return None;
    }
    let name = super::image::normalize(&req[..end]);
    let mut rest = req[end..].trim();
    if rest.starts_with('[') {
        rest = rest[rest.find(']')? + 1..].trim();
    }
    if rest.starts_with('@') {
        // A direct URL reference: no version to compare.
        return Some(Requirement {
            name,
            clauses: Vec::new(),
            spec: rest.to_owned(),
            marker,
        });
    }
    let spec = rest
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim()
        .to_owned();
    Some(Requirement {
        name,
        clauses: parse_spec(&spec)?,
        spec,
        marker,
    })
}

/// Whether the requirement applies to a default install on Linux x86_64 with Python
/// `python` (`3.12`): `extra` markers never do; simple comparisons are evaluated; anything
/// else counts as applying.
pub fn marker_applies(marker: Option<&str>, python: &str) -> bool {
    let Some(m) = marker else { return true };
    if m.contains("extra") {
        return false;
    }
    // Each `and`-clause must hold; an `or` makes it count as applying.
    if m.contains(" or ") {
        return true;
    }
    m.split(" and ").all(|c| clause_holds(c.trim(), python))
}

fn clause_holds(c: &str, python: &str) -> bool {
    let c = c.trim_matches(|ch| ch == '(' || ch == ')' || ch == ' ');
    let ops = [
        "===", "==", "!=", "<=", ">=", "~=", "<", ">", " not in ", " in ",
    ];
    let Some((op, at)) = ops
        .iter()
        .filter_map(|op| c.find(op).map(|i| (*op, i)))
        .min_by_key(|x| x.1)
    else {
        return true;
    };
    let lhs = c[..at].trim().trim_matches(['"', '\'']);
    let rhs = c[at + op.len()..].trim().trim_matches(['"', '\'']);
    let env = |k: &str| -> Option<&str> {
        Some(match k {
            "platform_system" => "Linux",
            "sys_platform" => "linux",
            "os_name" => "posix",
            "platform_machine" => "x86_64",
            "implementation_name" => "cpython",
            "platform_python_implementation" => "CPython",
            "python_version" | "python_full_version" => python,
            _ => return None,
        })
    };
    let (val, lit, flipped) = match (env(lhs), env(rhs)) {
        (Some(v), None) => (v, rhs, false),
        (None, Some(v)) => (v, lhs, true),
        _ => return true,
    };
    if lhs.starts_with("python") || rhs.starts_with("python") {
        let (Some(a), Some(b)) = (Version::parse(val), Version::parse(lit)) else {
            return true;
        };
        let (a, b) = if flipped { (b, a) } else { (a, b) };
        return match op {
            "==" | "===" => a == b,
            "!=" => a != b,
            "<" => a < b,
            "<=" => a <= b,
            ">" => a > b,
            ">=" => a >= b,
            _ => true,
        };
    }
    match op.trim() {
        "==" | "===" => val == lit,
        "!=" => val != lit,
        "in" => lit.contains(val),
        "not in" => !lit.contains(val),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    fn sat(spec: &str, ver: &str) -> bool {
        satisfies(&parse_spec(spec).unwrap(), &v(ver))
    }

    #[test]
    fn versions_order_as_pep440_says() {
        let ordered = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev3",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1",
            "1.1",
            "2!0.1",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0").public());
        assert_eq!(v("1.0RC1"), v("1.0rc1"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("2.9.0+rocm7.1.1").local.as_deref(), Some("rocm7.1.1"));
        assert!(Version::parse("not a version").is_none());
        assert!(Version::parse("1.0+").is_none());
    }

    #[test]
    fn specifiers_match_like_pip() {
        assert!(sat("==2.9.0", "2.9.0+rocm7.1.1"));
        assert!(sat("==2.9.0", "2.9"));
        assert!(!sat("==2.9.0", "2.9.1"));
        assert!(!sat("==2.9.0+rocm7.0", "2.9.0+rocm7.1.1"));
        assert!(sat("==2.9.*", "2.9.1+git"));
        assert!(!sat("==2.9.*", "2.10.0"));
        assert!(sat("!=2.8.*", "2.9.0"));
        assert!(sat(">=2.9,<2.10", "2.9.5"));
        assert!(!sat(">=2.9,<2.10", "2.10.0"));
        assert!(!sat("<2.10", "2.10.0rc1"));
        assert!(sat("<2.10", "2.9.9"));
        assert!(!sat(">3.5", "3.5.0.post1"));
        assert!(sat("~=3.5", "3.9"));
        assert!(!sat("~=3.5.0", "3.6.0"));
        assert!(sat("~=3.5.0", "3.5.4"));
        assert!(sat("", "0.0.1"));
        assert!(parse_spec("=>1").is_none());
    }

    #[test]
    fn requirements_and_markers() {
        let r = parse_requirement("torch==2.9.0; platform_system == \"Linux\"").unwrap();
        assert_eq!(r.name, "torch");
        assert_eq!(r.spec, "==2.9.0");
        assert!(marker_applies(r.marker.as_deref(), "3.12"));
        let r = parse_requirement("Triton (>=3.0,<4)").unwrap();
        assert_eq!((r.name.as_str(), r.clauses.len()), ("triton", 2));
        let r = parse_requirement("pytest; extra == \"test\"").unwrap();
        assert!(!marker_applies(r.marker.as_deref(), "3.12"));
        assert!(!marker_applies(Some("sys_platform == \"darwin\""), "3.12"));
        assert!(!marker_applies(Some("python_version < \"3.10\""), "3.12"));
        assert!(marker_applies(
            Some("python_version >= \"3.10\" and platform_machine == \"x86_64\""),
            "3.12"
        ));
        let r = parse_requirement("numpy[extra]>=1.2").unwrap();
        assert_eq!((r.name.as_str(), r.spec.as_str()), ("numpy", ">=1.2"));
        assert!(parse_requirement(">=1").is_none());
    }
}
