//! The manylinux policies as auditwheel defines them, for `wheel.glibc`.
//!
//! A `manylinux_2_17` (`manylinux2014`) tag promises more than a GLIBC floor: every versioned
//! symbol a wheel's ELF files take from the system libraries (GLIBC, GLIBCXX, CXXABI, GCC, ...)
//! must be one the policy lists, and some symbols are forbidden outright. The data is
//! auditwheel's own policy file (`data/auditwheel/`, x86_64 only; source and licence there),
//! embedded. The libraries a policy lets a wheel link to are reported, not failed: torch's own
//! wheels link CUDA/ROCm libraries from other wheels (auditwheel's `--exclude`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;

use super::elf::ElfInfo;

/// auditwheel's `manylinux-policy.json`, x86_64 only.
const POLICY_JSON: &str = include_str!("../../data/auditwheel/manylinux-policy.x86_64.json");

/// The architectures forge carries policy data for.
pub const ARCHS: &[&str] = &["x86_64"];

/// Architecture suffixes a platform tag may end with.
const TAG_ARCHS: &[&str] = &[
    "x86_64",
    "i686",
    "aarch64",
    "ppc64le",
    "ppc64",
    "s390x",
    "armv7l",
    "riscv64",
    "loongarch64",
];

/// One policy of auditwheel's file.
#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    /// `manylinux_2_17`.
    pub name: String,
    /// `manylinux2014`.
    pub aliases: Vec<String>,
    /// Higher is stricter (older glibc).
    pub priority: u32,
    /// arch -> symbol version family (`GLIBCXX`) -> the versions allowed.
    pub symbol_versions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// The system libraries a wheel may need.
    pub lib_whitelist: Vec<String>,
    /// library -> symbols a wheel must not import from it.
    pub blacklist: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// `manylinux_2_17 (manylinux2014)`.
    pub fn display(&self) -> String {
        if self.aliases.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.aliases.join(", "))
        }
    }

    /// The highest version of a family the policy allows (`3.4.19` for GLIBCXX in 2014).
    pub fn cap(&self, arch: &str, family: &str) -> Option<&str> {
        let list = self.symbol_versions.get(arch)?.get(family)?;
        list.iter()
            .filter(|v| crate::recipe::parse_version(v).is_some())
            .max_by(|a, b| {
                let (a, b) = (
                    crate::recipe::parse_version(a).unwrap_or_default(),
                    crate::recipe::parse_version(b).unwrap_or_default(),
                );
                a.cmp(&b)
            })
            .map(String::as_str)
    }
}

/// Every policy, parsed once.
///
/// # Panics
/// When the embedded data does not parse: a build-time mistake caught by the tests.
pub fn policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| serde_json::from_str(POLICY_JSON).expect("embedded policy data parses"))
}

/// What one platform tag promises.
#[derive(Debug, Clone)]
pub enum TagPolicy {
    /// `linux_x86_64`, `any`, `musllinux_*`: no manylinux promise.
    NoPromise,
    /// A manylinux policy forge has data for.
    Known(&'static Policy, String),
    /// A manylinux tag on an architecture forge carries no data for.
    OtherArch(String),
    /// A manylinux tag newer than the data (`manylinux_2_99`): only its GLIBC floor is known.
    Unknown(String),
}

/// The architecture a platform tag ends with (`x86_64` of `manylinux2014_x86_64`).
pub fn tag_arch(tag: &str) -> Option<&'static str> {
    let first = tag.split('.').next().unwrap_or(tag);
    TAG_ARCHS
        .iter()
        .find(|a| first.ends_with(&format!("_{a}")))
        .copied()
}

/// The policy one platform tag (`manylinux2014_x86_64`) names.
pub fn for_tag(tag: &str) -> TagPolicy {
    if !tag.starts_with("manylinux") {
        return TagPolicy::NoPromise;
    }
    let Some((name, arch)) =
        tag_arch(tag).and_then(|a| tag.strip_suffix(&format!("_{a}")).map(|n| (n, a)))
    else {
        return TagPolicy::Unknown(tag.to_owned());
    };
    if !ARCHS.contains(&arch) {
        return TagPolicy::OtherArch(arch.to_owned());
    }
    match policies()
        .iter()
        .find(|p| p.name == name || p.aliases.iter().any(|a| a == name))
    {
        Some(p) => TagPolicy::Known(p, arch.to_owned()),
        None => TagPolicy::Unknown(name.to_owned()),
    }
}

/// One way an ELF member breaks a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The member (`torch/lib/libc10.so`).
    pub member: String,
    /// What it needs: `GLIBCXX_3.4.21 from libstdc++.so.6`.
    pub needs: String,
    /// Why that breaks the policy: `GLIBCXX stops at 3.4.19`.
    pub why: String,
}

/// Split `GLIBCXX_3.4.21` into (`GLIBCXX`, `3.4.21`), as auditwheel does (at the first `_`).
fn split_version(v: &str) -> Option<(&str, &str)> {
    v.split_once('_')
}

/// Every versioned symbol need and forbidden import of `elves` that `policy` does not allow.
pub fn violations<'a>(
    policy: &Policy,
    arch: &str,
    elves: impl IntoIterator<Item = (&'a String, &'a ElfInfo)>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let allowed = policy.symbol_versions.get(arch);
    for (member, info) in elves {
        let mut seen = BTreeSet::new();
        for (lib, v) in &info.version_needs {
            // Only what comes from the system counts: the policy's own libraries.
            if !policy.lib_whitelist.iter().any(|w| w == lib) {
                continue;
            }
            let Some((family, ver)) = split_version(v) else {
                continue;
            };
            let Some(list) = allowed.and_then(|a| a.get(family)) else {
                continue;
            };
            if !list.iter().any(|x| x == ver) && seen.insert(v.clone()) {
                let why = match policy.cap(arch, family) {
                    Some(cap) => format!("{family} stops at {cap}"),
                    None => format!("{family} symbols are not allowed at all"),
                };
                out.push(Violation {
                    member: member.clone(),
                    needs: format!("{v} from {lib}"),
                    why,
                });
            }
        }
        for (lib, forbidden) in &policy.blacklist {
            if !info.needed.iter().any(|n| n == lib) {
                continue;
            }
            for u in &info.undefined {
                if forbidden.contains(&u.name) {
                    out.push(Violation {
                        member: member.clone(),
                        needs: format!("`{}` from {lib}", u.name),
                        why: "a symbol the policy forbids".to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// Libraries the ELF files need that are neither in the policy's list nor in the wheel.
pub fn external_libraries<'a>(
    policy: &Policy,
    elves: impl IntoIterator<Item = (&'a String, &'a ElfInfo)> + Clone,
) -> Vec<String> {
    let inside: BTreeSet<&str> = elves
        .clone()
        .into_iter()
        .flat_map(|(p, i)| {
            std::iter::once(p.rsplit('/').next().unwrap_or(p)).chain(i.soname.as_deref())
        })
        .collect();
    let mut out = BTreeSet::new();
    for (_, info) in elves {
        for n in &info.needed {
            // The dynamic loader is glibc's own, on every manylinux system.
            if n.starts_with("ld-linux") {
                continue;
            }
            if !policy.lib_whitelist.iter().any(|w| w == n) && !inside.contains(n.as_str()) {
                out.insert(n.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// The strictest policy (highest priority) the ELF files satisfy, if any manylinux one.
pub fn best_policy<'a>(
    arch: &str,
    elves: impl IntoIterator<Item = (&'a String, &'a ElfInfo)> + Clone,
) -> Option<&'static Policy> {
    let mut ps: Vec<&'static Policy> = policies().iter().filter(|p| p.priority > 0).collect();
    ps.sort_by_key(|p| std::cmp::Reverse(p.priority));
    ps.into_iter()
        .find(|p| violations(p, arch, elves.clone()).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(needs: &[(&str, &str)]) -> ElfInfo {
        ElfInfo {
            needed: needs.iter().map(|(l, _)| (*l).to_owned()).collect(),
            version_needs: needs
                .iter()
                .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
                .collect(),
            ..ElfInfo::default()
        }
    }

    #[test]
    fn the_data_names_every_manylinux_policy_with_x86_64_versions() {
        let p = policies();
        assert!(p.len() >= 12, "{}", p.len());
        let TagPolicy::Known(m2014, arch) = for_tag("manylinux2014_x86_64") else {
            panic!("manylinux2014 unknown")
        };
        assert_eq!(m2014.name, "manylinux_2_17");
        assert_eq!(m2014.cap(&arch, "GLIBC"), Some("2.17"));
        assert_eq!(m2014.cap(&arch, "GLIBCXX"), Some("3.4.19"));
        assert_eq!(m2014.cap(&arch, "CXXABI"), Some("1.3.7"));
        assert!(matches!(
            for_tag("manylinux_2_28_x86_64"),
            TagPolicy::Known(p, _) if p.cap("x86_64", "GLIBCXX") == Some("3.4.24")
        ));
        assert!(matches!(for_tag("linux_x86_64"), TagPolicy::NoPromise));
        assert!(matches!(
            for_tag("manylinux_2_28_aarch64"),
            TagPolicy::OtherArch(_)
        ));
        assert!(matches!(
            for_tag("manylinux_2_99_x86_64"),
            TagPolicy::Unknown(_)
        ));
    }

    #[test]
    fn glibcxx_3_4_21_breaks_manylinux2014_and_names_the_cap() {
        let TagPolicy::Known(p, arch) = for_tag("manylinux2014_x86_64") else {
            panic!()
        };
        let e = elf(&[
            ("libstdc++.so.6", "GLIBCXX_3.4.21"),
            ("libstdc++.so.6", "CXXABI_1.3"),
            ("libc.so.6", "GLIBC_2.2.5"),
        ]);
        let name = "pkg/libgreet.so".to_owned();
        let v = violations(p, &arch, [(&name, &e)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].needs, "GLIBCXX_3.4.21 from libstdc++.so.6");
        assert_eq!(v[0].why, "GLIBCXX stops at 3.4.19");
        assert_eq!(
            best_policy(&arch, [(&name, &e)]).map(|p| p.name.as_str()),
            Some("manylinux_2_24")
        );
        // A version from a library of the wheel itself is no system need.
        let own = elf(&[("libc10.so", "GLIBCXX_3.4.30")]);
        assert!(violations(p, &arch, [(&name, &own)]).is_empty());
    }

    #[test]
    fn forbidden_symbols_and_outside_libraries_are_named() {
        let TagPolicy::Known(p, arch) = for_tag("manylinux2014_x86_64") else {
            panic!()
        };
        let mut e = elf(&[("libc.so.6", "GLIBC_2.2.5")]);
        e.needed.push("libcudart.so.12".into());
        e.needed.push("ld-linux-x86-64.so.2".into());
        e.undefined.push(crate::check::elf::Undefined {
            name: "__cxa_thread_atexit_impl".into(),
            weak: false,
        });
        let name = "a/libx.so".to_owned();
        let v = violations(p, &arch, [(&name, &e)]);
        assert_eq!(v.len(), 1);
        assert!(v[0].needs.contains("__cxa_thread_atexit_impl"), "{v:?}");
        assert_eq!(
            external_libraries(p, [(&name, &e)]),
            vec!["libcudart.so.12".to_owned()]
        );
    }
}
