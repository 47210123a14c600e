//! PEP 440 (versions, specifiers) and PEP 508 (requirements, markers), as `pip check` needs
//! them to judge installed distributions against each other's `Requires-Dist`.
//!
//! The parsing and the semantics are `pep508_rs`'s (and, through it, `pep440_rs`'s): the same
//! code uv grew from, with PEP 440's normalisation and ordering, every specifier operator
//! (`==` with and without `.*`, `!=`, `<`, `<=`, `>`, `>=`, `~=`, `===`) and full markers
//! (`and`/`or` with their precedence, parentheses, `in`/`not in` either way round, `extra`).
//! A hand-written parser stood here until issue 18 found four bugs in it (an `or` always
//! applied, a reversed `in`, `===` never matched, parentheses dropped).
//!
//! What this module adds is the environment: a requirement applies to a default install
//! (no extras) on Linux x86_64 CPython with the Python version the distribution was installed
//! for; its full version is taken to be that version (`3.12` is `3.12.0`), and the kernel's
//! release and version are unknown (empty).

use std::str::FromStr;

use pep508_rs::pep440_rs::VersionSpecifiers;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree, VersionOrUrl};

pub use pep508_rs::pep440_rs::Version;

/// A specifier set (`>=2.9,<2.10`; empty: any version).
pub type Specifiers = VersionSpecifiers;

/// Parse a PEP 440 version (normalising spellings: `1.0RC1`, `1.0-post2`, `v1.0`).
pub fn version(s: &str) -> Option<Version> {
    Version::from_str(s.trim()).ok()
}

/// Parse a specifier set (`>=2.9.0,<2.10`, `==2.9.0`, empty = anything).
pub fn parse_spec(spec: &str) -> Option<Specifiers> {
    VersionSpecifiers::from_str(spec.trim()).ok()
}

/// Whether `v` satisfies every clause (a local label in `v` is ignored by a specifier that
/// has none: `==2.9.0` matches `2.9.0+rocm7.1.1`).
pub fn satisfies(spec: &Specifiers, v: &Version) -> bool {
    spec.contains(v)
}

/// A requirement: name, specifier set, marker.
#[derive(Debug, Clone)]
pub struct Requirement {
    /// The distribution's name, PEP 503-normalised.
    pub name: String,
    /// The specifier clauses (all must hold; none for a direct URL reference).
    pub clauses: Specifiers,
    /// The specifier as PEP 440 writes it (`>=3.0, <4`), or `@ URL`; empty when there is none.
    pub spec: String,
    /// The marker (after `;`); always true when there is none.
    marker: MarkerTree,
}

impl Requirement {
    /// Whether the requirement applies to a default install (no extras) on Linux x86_64
    /// CPython `python` (`3.12`).
    pub fn applies(&self, python: &str) -> bool {
        evaluate(&self.marker, python)
    }
}

/// Parse a `Requires-Dist` value (`torch==2.9.0; platform_system == "Linux"`,
/// `triton (>=3.0)`, `numpy[extra]>=1`, `pkg @ https://...`); `None` when it is not PEP 508.
pub fn parse_requirement(s: &str) -> Option<Requirement> {
    let r = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(s.trim()).ok()?;
    let (clauses, spec) = match &r.version_or_url {
        None => (VersionSpecifiers::empty(), String::new()),
        Some(VersionOrUrl::VersionSpecifier(v)) => (v.clone(), v.to_string()),
        // A direct URL reference: no version to compare.
        Some(VersionOrUrl::Url(u)) => (VersionSpecifiers::empty(), format!("@ {u}")),
    };
    Some(Requirement {
        name: r.name.to_string(),
        clauses,
        spec,
        marker: r.marker,
    })
}

/// Whether a marker (the text after a requirement's `;`) applies to a default install on
/// Linux x86_64 CPython `python` (`3.12`); `None` (no marker) always does, and so does a
/// marker that is not PEP 508 (pip would refuse the metadata, not skip the requirement).
pub fn marker_applies(marker: Option<&str>, python: &str) -> bool {
    match marker.map(MarkerTree::from_str) {
        None | Some(Err(_)) => true,
        Some(Ok(m)) => evaluate(&m, python),
    }
}

fn evaluate(marker: &MarkerTree, python: &str) -> bool {
    let env = environment(python);
    marker.evaluate_optional_environment(env.as_ref(), &[])
}

/// Linux x86_64 CPython `python`; `None` when `python` is not a version (then only the
/// `extra` markers are evaluated and the rest count as true).
fn environment(python: &str) -> Option<MarkerEnvironment> {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: python,
        os_name: "posix",
        platform_machine: "x86_64",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: python,
        python_version: python,
        sys_platform: "linux",
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        version(s).unwrap_or_else(|| panic!("{s}"))
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
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0RC1"), v("1.0rc1"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("2.9.0+rocm7.1.1").to_string(), "2.9.0+rocm7.1.1");
        assert_eq!(v("v1.0-post2").to_string(), "1.0.post2");
        assert!(version("not a version").is_none());
        assert!(version("1.0+").is_none());
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
        assert!(r.applies("3.12"));
        let r = parse_requirement("Triton (>=3.0,<4)").unwrap();
        assert_eq!((r.name.as_str(), r.clauses.len()), ("triton", 2));
        let r = parse_requirement("pytest; extra == \"test\"").unwrap();
        assert!(!r.applies("3.12"));
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

    /// Whether a marker applies on Linux x86_64 with Python 3.12.
    fn applies(marker: &str) -> bool {
        marker_applies(Some(marker), "3.12")
    }

    /// Issue 18: a marker with ` or ` applied whatever its sides said.
    #[test]
    fn issue_18_or_is_evaluated() {
        assert!(!applies(
            "sys_platform == \"darwin\" or sys_platform == \"win32\""
        ));
        assert!(applies(
            "sys_platform == \"darwin\" or sys_platform == \"linux\""
        ));
        assert!(!applies(
            "python_version < \"3.10\" or platform_machine == \"aarch64\""
        ));
        assert!(applies("extra == \"test\" or python_version >= \"3.9\""));
        assert!(!applies("extra == \"test\" or python_version < \"3.9\""));
    }

    /// Issue 18: `'lin' in sys_platform` (literal on the left) was read as
    /// `sys_platform in 'lin'`.
    #[test]
    fn issue_18_reversed_in_reads_the_right_way_round() {
        assert!(applies("'lin' in sys_platform"));
        assert!(!applies("'linux2' in sys_platform"));
        assert!(applies("'86' in platform_machine"));
        assert!(!applies("'lin' not in sys_platform"));
        // The usual way round still works.
        assert!(applies("sys_platform in 'linux darwin'"));
        assert!(!applies("sys_platform in 'win32 cygwin'"));
    }

    /// Issue 18: `===` (arbitrary equality) never matched.
    #[test]
    fn issue_18_arbitrary_equality_matches_the_same_string() {
        assert!(sat("===2.9.0", "2.9.0"));
        assert!(!sat("===2.9.0", "2.9.0+rocm7.1.1"));
        assert!(!sat("===2.9.0", "2.9.1"));
    }

    /// Issue 18: parentheses were dropped, so `A and (B or C)` was not grouped.
    #[test]
    fn issue_18_parentheses_group() {
        assert!(!applies(
            "python_version >= \"3.10\" and (sys_platform == \"win32\" or sys_platform == \"darwin\")"
        ));
        assert!(applies(
            "(sys_platform == \"win32\" or sys_platform == \"linux\") and python_version >= \"3.10\""
        ));
        assert!(!applies(
            "(sys_platform == \"linux\" or sys_platform == \"darwin\") and python_version < \"3.10\""
        ));
        // `and` binds tighter than `or`.
        assert!(applies(
            "sys_platform == \"linux\" or sys_platform == \"darwin\" and python_version < \"3.10\""
        ));
    }
}
