//! `report.junit.xml`: the run in the JUnit XML format of Apache Ant's JUnit task, which Jenkins,
//! GitLab and GitHub test reporters display. One `<testsuite>` a phase, one `<testcase>` a check;
//! a failed check carries `<failure>` (evidence and fix), a skipped one `<skipped>` with the
//! reason. `tests/fixtures/junit/junit-ant.xsd` describes the format; a test validates against it.

use super::run::RunView;
use crate::report::Status;

/// Escape text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(' '),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The Ant format's timestamp: `YYYY-MM-DDTHH:MM:SS`, no zone (UTC here).
fn timestamp(v: &RunView) -> String {
    v.started_at
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// The JUnit XML document.
pub fn render(v: &RunView) -> String {
    let ts = timestamp(v);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (i, p) in v.phases.iter().filter(|p| !p.checks.is_empty()).enumerate() {
        let n = |s| p.checks.iter().filter(|c| c.status == s).count();
        let time = match (p.started, p.ended) {
            (Some(a), Some(b)) if b >= a => b - a,
            _ => 0.0,
        };
        let pkg = format!("forge.phase.{}", p.id.replace(['.', ' '], "-"));
        x.push_str(&format!(
            "  <testsuite name=\"{}\" package=\"{}\" id=\"{i}\" timestamp=\"{ts}\" hostname=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{time:.3}\">\n",
            xml_escape(&p.name),
            xml_escape(&pkg),
            xml_escape(&host),
            p.checks.len(),
            n(Status::Fail),
            n(Status::Skip),
        ));
        x.push_str("    <properties>\n");
        let mut props: Vec<(&str, String)> = vec![("run", v.run.clone())];
        if let Some(img) = &v.image {
            props.push(("image", img.tag.clone()));
            if let Some(id) = &img.id {
                props.push(("image.id", id.clone()));
            }
        }
        if let Some(r) = &v.recipe {
            props.push(("recipe", r.name.clone()));
            props.push(("rocm", r.rocm.clone()));
        }
        props.push(("forge.version", v.forge_version.clone()));
        for (k, val) in props {
            x.push_str(&format!(
                "      <property name=\"{k}\" value=\"{}\"/>\n",
                xml_escape(&val)
            ));
        }
        x.push_str("    </properties>\n");
        for c in &p.checks {
            let name = format!("{} {}", c.id, c.title);
            let open = format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
                xml_escape(name.trim()),
                xml_escape(&pkg)
            );
            match c.status {
                Status::Pass => x.push_str(&format!("{open}/>\n")),
                Status::Skip => x.push_str(&format!(
                    "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_escape(&c.evidence)
                )),
                Status::Fail => {
                    let mut body = c.evidence.clone();
                    if let Some(h) = &c.hint {
                        body.push_str(&format!("\nfix: {h}"));
                    }
                    x.push_str(&format!(
                        "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                        xml_escape(&c.evidence),
                        xml_escape(&c.id),
                        xml_escape(&body)
                    ));
                }
            }
        }
        let out: Vec<String> = p
            .checks
            .iter()
            .map(|c| format!("{} {}: {}", c.status.label(), c.id, c.evidence))
            .collect();
        x.push_str(&format!(
            "    <system-out>{}</system-out>\n    <system-err></system-err>\n  </testsuite>\n",
            xml_escape(&out.join("\n"))
        ));
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            xml_escape("a<b & \"c\"\n\u{1}"),
            "a&lt;b &amp; &quot;c&quot;&#10;?"
        );
    }
}
