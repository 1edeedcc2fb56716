//! The health query template renderer (`meridian_health::template`): `{{placeholders}}`
//! filled with names from the plan, escaped for where they land. Input: a template and
//! three names, separated by NUL bytes.
//!
//! Never panics, for any template and any names. In PromQL a name stays inside its string:
//! read back as a double-quoted PromQL string, the rendering is the name. In a URL a name
//! stays inside its path segment (or query value): the URL has as many segments as the
//! template, and each percent-decodes back to the name.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::endpoint::UrlTemplate;
use meridian_health::template;

/// The inside of a PromQL double-quoted string, unescaped; `None` when an unescaped quote
/// would end the string early.
fn unquote(inside: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = inside.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                c @ ('\\' | '"') => out.push(c),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\0');
    let tmpl = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or("jp");
    let service = parts.next().unwrap_or("signin");
    let wave = parts.next().unwrap_or("asia");
    let vars = [("region", region), ("service", service), ("plan", "p"), ("wave", wave)];

    // Any template, as written in a plan (validation checks placeholders, not this).
    let _ = template::promql(tmpl, &vars);
    if let Ok(t) = UrlTemplate::parse(tmpl) {
        let _ = template::url(&t, &vars);
    }

    // Names inside a PromQL string.
    let rendered = template::promql(r#"up{service="{{service}}",wave="{{ wave }}"}"#, &vars);
    let inside = rendered.strip_prefix("up{service=\"").and_then(|r| r.strip_suffix("\"}"));
    let (s, w) = inside.and_then(|i| i.split_once("\",wave=\"")).unwrap_or_else(|| panic!("{rendered}"));
    assert_eq!(unquote(s).as_deref(), Some(service), "{rendered}");
    assert_eq!(unquote(w).as_deref(), Some(wave), "{rendered}");

    // Names inside a URL's path segments and query.
    let t = UrlTemplate::parse("http://h/m/{{region}}/{{service}}/x?wave={{wave}}").unwrap_or_else(|e| panic!("{e}"));
    match template::url(&t, &vars) {
        Ok(url) => {
            let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
            assert_eq!(segments.len(), 4, "{url}");
            assert_eq!(percent_decode(segments[1]), region.as_bytes(), "{url}");
            assert_eq!(percent_decode(segments[2]), service.as_bytes(), "{url}");
            let query = url.query().and_then(|q| q.strip_prefix("wave=")).unwrap_or_else(|| panic!("{url}"));
            assert_eq!(percent_decode(query), wave.as_bytes(), "{url}");
        }
        // A name the URL cannot hold as a segment ("." and "..") is refused, never resolved.
        Err(e) => assert!([region, service, wave].iter().any(|n| matches!(*n, "." | "..")), "{e}"),
    }
});
