//! Filling `{{placeholders}}` in queries and URLs with names from the plan, escaped for
//! where they land. Plan names are free text, so a quote in a service name must not end a
//! PromQL string early, and a slash in a region name must not add a path segment.
//!
//! Public so that the fuzz targets (`fuzz/`) can reach it; the sources are its only callers.

use meridian_core::endpoint::{Url, UrlError, UrlTemplate};
use meridian_core::plan::{render_template, template_placeholders};

/// Render a PromQL template. Values are escaped as the inside of a double-quoted PromQL
/// string, which is where placeholders belong (`service="{{service}}"`).
pub fn promql(template: &str, vars: &[(&str, &str)]) -> String {
    let escaped: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, promql_string(v))).collect();
    let refs: Vec<(&str, &str)> = escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    render_template(template, &refs)
}

/// Render a checked URL template with values percent-encoded outside RFC 3986's unreserved
/// characters. A placeholder's value of `.` or `..` is refused: no escaping keeps a URL
/// parser from reading it as a dot segment (`%2E` is one too), which would drop a segment.
pub fn url(template: &UrlTemplate, vars: &[(&str, &str)]) -> Result<Url, UrlError> {
    let used = template_placeholders(template.as_str());
    if let Some((key, value)) = vars.iter().find(|(k, v)| matches!(*v, "." | "..") && used.iter().any(|u| u == k)) {
        return Err(UrlError::Unparsable {
            reason: format!("{key} {value:?} cannot be put in a url: it would be read as a relative path segment"),
        });
    }
    let escaped: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, percent_encode(v))).collect();
    let refs: Vec<(&str, &str)> = escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    template.render(&refs)
}

fn promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_for_the_destination() {
        assert_eq!(
            promql(r#"x{service="{{service}}",plan="{{plan}}"}"#, &[("service", r#"a"b\c"#), ("plan", "p")]),
            r#"x{service="a\"b\\c",plan="p"}"#
        );
        let t = |text: &str| UrlTemplate::parse(text).unwrap();
        assert_eq!(
            url(
                &t("http://h/{{region}}/{{service}}?w={{wave}}"),
                &[("region", "eu/west"), ("service", "s 1"), ("wave", "w")]
            )
            .unwrap()
            .as_str(),
            "http://h/eu%2Fwest/s%201?w=w"
        );
        assert_eq!(url(&t("http://h/{{region}}"), &[("region", "jp-1.a_b~")]).unwrap().as_str(), "http://h/jp-1.a_b~");
    }

    /// Found by the `health_template` fuzz target: a region named `..` made
    /// `http://h/m/{{region}}/x` read `http://h/m/x`, another endpoint.
    #[test]
    fn dot_segment_names_are_refused_not_resolved() {
        let t = UrlTemplate::parse("http://h/m/{{region}}/{{service}}/x").unwrap();
        for name in [".", ".."] {
            let e = url(&t, &[("region", name), ("service", "s")]).unwrap_err();
            assert!(e.to_string().contains(&format!("region {name:?} cannot be put in a url")), "{e}");
        }
        assert_eq!(url(&t, &[("region", "..."), ("service", ".a")]).unwrap().as_str(), "http://h/m/.../.a/x");
        // A name the template does not use is no obstacle.
        assert!(url(&t, &[("region", "jp"), ("service", "s"), ("wave", "..")]).is_ok());
    }
}
