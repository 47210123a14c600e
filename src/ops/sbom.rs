//! The image's software bill of materials, CycloneDX 1.6 JSON (`sbom.cdx.json`), from what the
//! image audit read: every dpkg package (`pkg:deb/debian/NAME@VERSION?arch=ARCH`) and Python
//! distribution (`pkg:pypi/NAME@VERSION`) with its version and purl; the ROCm release of each
//! ROCm component; and every library (or code-object directory) with GPU code, with the GPU
//! arches it carries.
//!
//! forge's properties (CycloneDX `properties`, names in forge's `forge:` namespace):
//! - `forge:gpu-arches`: the GPU targets a library's code objects are built for, comma-separated
//!   as the offload bundles name them (`gfx1100,gfx1151`, `gfx11-generic`); on a GPU library
//!   component, and on the package that installed it (the union of its libraries');
//! - `forge:gpu-code`: `elf` (a library with `.hip_fatbin`/offload bundles) or `code-objects`
//!   (a directory of `.co`/`.hsaco`/`.kpack`/Tensile files), with `forge:path` and
//!   `forge:files`;
//! - `forge:rocm-release`: the ROCm release a component belongs to (`7.1.1`, or `6.4` where only
//!   major.minor is known), and `forge:rocm-release-source`, where forge read it;
//! - `forge:installed-by`: the package a GPU library came from (`deb librocblas0 6.4.3-1`,
//!   `pip torch 2.9.0`, `unpackaged`); `forge:python-site`: a distribution's site directory.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::check::audit::Audit;

/// The SBOM's file name in a bundle.
pub const FILE: &str = "sbom.cdx.json";

/// The image the SBOM describes.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// Its tag (or what the user named it by).
    pub tag: String,
    /// Its image id (`sha256:...`), when known.
    pub id: Option<String>,
}

/// purl's percent-encoding: everything but `A-Za-z0-9.-_~` (the purl spec's canonical form).
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A Python project name as PyPI's purl type wants it (PEP 503: lowercase, `-_.` runs -> `-`).
fn pypi_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`.
pub fn deb_purl(name: &str, version: &str, arch: &str) -> String {
    let mut p = format!("pkg:deb/debian/{}@{}", pct(name), pct(version));
    if !arch.is_empty() {
        p.push_str(&format!("?arch={}", pct(arch)));
    }
    p
}

/// `pkg:pypi/NAME@VERSION`.
pub fn pypi_purl(name: &str, version: &str) -> String {
    format!("pkg:pypi/{}@{}", pct(&pypi_name(name)), pct(version))
}

fn prop(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

/// A deterministic RFC 4122 (version 4 layout) serial number from the image and the time.
fn serial(subject: &Subject, now: &str) -> String {
    let h = Sha256::digest(format!("{}{:?}{now}", subject.tag, subject.id).as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::atomic::hex(&b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// The package label the audit gives a GPU library (`deb NAME VERSION`, `pip NAME VERSION`)
/// as the key its package component is found by.
fn owner_key(label: &str) -> Option<String> {
    let mut w = label.split_whitespace();
    match (w.next(), w.next()) {
        (Some("deb"), Some(n)) => Some(format!("deb:{n}")),
        (Some("pip"), Some(n)) => Some(format!("pypi:{}", pypi_name(n))),
        _ => None,
    }
}

/// The SBOM of an audited image, as CycloneDX 1.6 JSON.
pub fn cyclonedx(audit: &Audit, subject: &Subject) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // GPU arches per owning package (the union of its libraries').
    let mut arches_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for u in &audit.gpu {
        if let Some(k) = owner_key(&u.package) {
            arches_of
                .entry(k)
                .or_default()
                .extend(u.targets.iter().cloned());
        }
    }
    let rocm_of: BTreeMap<&str, &crate::check::audit::Component> =
        audit.rocm.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut used_rocm = BTreeSet::new();
    let mut components = Vec::new();
    for d in &audit.inventory.debs {
        let purl = deb_purl(&d.name, &d.version, &d.arch);
        let mut props = Vec::new();
        if let Some(a) = arches_of.get(&format!("deb:{}", d.name)) {
            props.push(prop("forge:gpu-arches", join(a)));
        }
        if let Some(c) = rocm_of.get(d.name.as_str()) {
            used_rocm.insert(c.name.as_str());
            props.push(prop("forge:rocm-release", &c.release));
            props.push(prop("forge:rocm-release-source", &c.source));
        }
        let mut c = json!({
            "type": "library", "bom-ref": purl, "name": d.name, "version": d.version,
            "purl": purl,
        });
        if d.source != d.name {
            props.push(prop("forge:deb-source", &d.source));
        }
        if !props.is_empty() {
            c["properties"] = Value::Array(props);
        }
        components.push(c);
    }
    let mut seen = BTreeSet::new();
    for (name, version, site) in &audit.inventory.python {
        let purl = pypi_purl(name, version);
        if !seen.insert(purl.clone()) {
            continue;
        }
        let mut props = vec![prop("forge:python-site", format!("/{site}"))];
        if let Some(a) = arches_of.get(&format!("pypi:{}", pypi_name(name))) {
            props.push(prop("forge:gpu-arches", join(a)));
        }
        if let Some(c) = rocm_of.get(name.as_str()) {
            used_rocm.insert(c.name.as_str());
            props.push(prop("forge:rocm-release", &c.release));
            props.push(prop("forge:rocm-release-source", &c.source));
        }
        components.push(json!({
            "type": "library", "bom-ref": purl, "name": name, "version": version,
            "purl": purl, "properties": props,
        }));
    }
    components.extend(rocm_rest(audit, &used_rocm));
    components.extend(gpu_units(audit));
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial(subject, &now),
        "version": 1,
        "metadata": metadata(subject, &now),
        "components": components,
    })
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(",")
}

fn metadata(subject: &Subject, now: &str) -> Value {
    let mut image = json!({
        "type": "container", "bom-ref": "image", "name": subject.tag,
    });
    if let Some(id) = &subject.id {
        image["version"] = json!(id);
        if let Some(h) = id.strip_prefix("sha256:") {
            image["hashes"] = json!([{"alg": "SHA-256", "content": h}]);
        }
    }
    json!({
        "timestamp": now,
        "tools": {"components": [{
            "type": "application", "name": "forge", "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": image,
    })
}

/// ROCm components that are no dpkg or Python package (an `/opt/rocm-X/.info/version`, a
/// tarball install): one component each, with its release.
fn rocm_rest(audit: &Audit, used: &BTreeSet<&str>) -> Vec<Value> {
    audit
        .rocm
        .iter()
        .filter(|c| !used.contains(c.name.as_str()))
        .map(|c| {
            json!({
                "type": "framework", "bom-ref": format!("rocm:{}", c.name), "name": c.name,
                "version": c.release,
                "properties": [
                    prop("forge:rocm-release", &c.release),
                    prop("forge:rocm-release-source", &c.source),
                ],
            })
        })
        .collect()
}

/// Every library and code-object directory with GPU code, with its arches.
fn gpu_units(audit: &Audit) -> Vec<Value> {
    audit
        .gpu
        .iter()
        .map(|u| {
            let name = u.path.rsplit('/').next().unwrap_or(&u.path);
            let mut props = vec![
                prop("forge:gpu-code", u.kind),
                prop("forge:path", &u.path),
                prop("forge:gpu-arches", u.targets.join(",")),
                prop("forge:installed-by", &u.package),
            ];
            if u.files > 1 {
                props.push(prop("forge:files", u.files.to_string()));
            }
            json!({
                "type": "file", "bom-ref": format!("file:{}", u.path), "name": name,
                "properties": props,
            })
        })
        .collect()
}

/// The SBOM as pretty JSON bytes.
pub fn to_vec(audit: &Audit, subject: &Subject) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(&cyclonedx(audit, subject)).expect("serializes");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_follow_the_spec() {
        assert_eq!(
            deb_purl("libamdhip64-6", "6.4.3+dfsg-1", "amd64"),
            "pkg:deb/debian/libamdhip64-6@6.4.3%2Bdfsg-1?arch=amd64"
        );
        assert_eq!(
            deb_purl("python3", "1:3.13.5-1", "amd64"),
            "pkg:deb/debian/python3@1%3A3.13.5-1?arch=amd64"
        );
        assert_eq!(
            pypi_purl("Typing_Extensions", "4.12.2"),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(
            pypi_purl("torch", "2.9.0+rocm7.1.1"),
            "pkg:pypi/torch@2.9.0%2Brocm7.1.1"
        );
    }

    #[test]
    fn a_gpu_library_and_its_package_carry_the_arches() {
        let audit = Audit {
            gpu: vec![crate::check::audit::GpuUnit {
                path: "/usr/lib/x86_64-linux-gnu/librocblas.so.4".into(),
                kind: "elf",
                files: 1,
                package: "deb librocblas4 6.4.3-1".into(),
                targets: vec!["gfx1100".into(), "gfx1151".into()],
                lacking: vec![],
                generic: vec![],
                loaded_by: None,
            }],
            inventory: crate::check::audit::Inventory {
                debs: vec![crate::check::audit::Deb {
                    name: "librocblas4".into(),
                    version: "6.4.3-1".into(),
                    arch: "amd64".into(),
                    source: "rocblas".into(),
                }],
                python: vec![],
            },
            ..Audit::default()
        };
        let v = cyclonedx(&audit, &Subject::default());
        let c = &v["components"];
        assert_eq!(
            c[0]["purl"],
            "pkg:deb/debian/librocblas4@6.4.3-1?arch=amd64"
        );
        assert!(c[0]["properties"].to_string().contains("gfx1100,gfx1151"));
        assert_eq!(c[1]["name"], "librocblas.so.4");
        assert!(c[1]["properties"].to_string().contains("forge:gpu-arches"));
    }
}
