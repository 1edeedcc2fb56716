//! Filling `{{placeholders}}` in queries and URLs with names from the plan, escaped for
//! where they land. Plan names are free text, so a quote in a service name must not end a
//! PromQL string early, and a slash in a region name must not add a path segment.

use meridian_core::plan::render_template;

/// Render a PromQL template. Values are escaped as the inside of a double-quoted PromQL
/// string, which is where placeholders belong (`service="{{service}}"`).
pub(crate) fn promql(template: &str, vars: &[(&str, &str)]) -> String {
    let escaped: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, promql_string(v))).collect();
    let refs: Vec<(&str, &str)> = escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    render_template(template, &refs)
}

/// Render a URL (or a text-format metric selector) template with values percent-encoded
/// outside RFC 3986's unreserved characters.
pub(crate) fn url(template: &str, vars: &[(&str, &str)]) -> String {
    let escaped: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, percent_encode(v))).collect();
    let refs: Vec<(&str, &str)> = escaped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    render_template(template, &refs)
}

/// Render a template with values as they are (for text, not for a query or a URL).
pub(crate) fn plain(template: &str, vars: &[(&str, &str)]) -> String {
    render_template(template, vars)
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
        assert_eq!(
            url(
                "http://h/{{region}}/{{service}}?w={{wave}}",
                &[("region", "eu/west"), ("service", "s 1"), ("wave", "w")]
            ),
            "http://h/eu%2Fwest/s%201?w=w"
        );
        assert_eq!(url("http://h/{{region}}", &[("region", "jp-1.a_b~")]), "http://h/jp-1.a_b~");
    }
}
