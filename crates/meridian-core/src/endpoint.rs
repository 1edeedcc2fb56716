//! The URLs a plan names: actuator endpoints, HTTP health check endpoints and Prometheus
//! servers, checked where the file is checked instead of at the first call.
//!
//! Owns what a usable URL is: absolute, `http` or `https`, and accepted by the same parser
//! (the `url` crate) the HTTP adapters send with. A [`UrlTemplate`] is checked with every
//! `{{placeholder}}` filled by a sample name, and rendered with real names later. It does
//! not decide which placeholders a field allows (that is `validate`'s) and it sends nothing.

use std::fmt;

pub use url::Url;

use crate::plan::{render_template, template_placeholders};

/// What a placeholder stands for while a template is checked: a name as plan, region and
/// service names are written (lowercase letters and digits), valid in a host and in a path.
const SAMPLE_NAME: &str = "x";
const NO_SCHEME: &str = "it has no scheme such as https://";

/// Why a URL cannot be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The text is not a URL at all.
    #[error("{reason}")]
    Unparsable { reason: String },
    /// A URL, but not one the HTTP adapters can call.
    #[error("scheme {scheme:?} is not supported; use http or https")]
    Scheme { scheme: String },
}

/// Parse an absolute `http` or `https` URL.
pub fn parse_http_url(text: &str) -> Result<Url, UrlError> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| UrlError::Unparsable { reason: describe(e) })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        // `prometheus:9090` parses with the scheme "prometheus": a host and port, no scheme.
        _ if !text.contains("://") => Err(UrlError::Unparsable { reason: NO_SCHEME.into() }),
        other => Err(UrlError::Scheme { scheme: other.to_string() }),
    }
}

/// The parser's reasons in the words of the rest of our messages.
fn describe(e: url::ParseError) -> String {
    match e {
        url::ParseError::RelativeUrlWithoutBase => NO_SCHEME.into(),
        url::ParseError::EmptyHost => "it has no host".into(),
        url::ParseError::InvalidPort => "its port is not a number from 0 to 65535".into(),
        url::ParseError::InvalidDomainCharacter => "its host contains a character no host name may have".into(),
        url::ParseError::InvalidIpv4Address => "its host is not a valid IPv4 address".into(),
        url::ParseError::InvalidIpv6Address => "its host is not a valid IPv6 address".into(),
        url::ParseError::IdnaError => "its host is not a valid domain name".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// A URL with `{{placeholders}}` (e.g. `https://control.{{region}}.example.net/{{service}}`)
/// that is an absolute http(s) URL whatever names fill them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlTemplate {
    template: String,
}

impl UrlTemplate {
    /// Check `template` with every placeholder filled by a sample name. Which placeholders a
    /// field allows, and whether each one closes, are checked by the caller.
    pub fn parse(template: &str) -> Result<UrlTemplate, UrlError> {
        let samples: Vec<(String, &str)> =
            template_placeholders(template).into_iter().map(|name| (name, SAMPLE_NAME)).collect();
        let vars: Vec<(&str, &str)> = samples.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        parse_http_url(&render_template(template, &vars))?;
        Ok(UrlTemplate { template: template.trim().to_string() })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The URL for these names. Values are put in as given: a caller whose names may hold
    /// characters that mean something in a URL escapes them first.
    pub fn render(&self, vars: &[(&str, &str)]) -> Result<Url, UrlError> {
        parse_http_url(&render_template(&self.template, vars))
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked_with_sample_names() {
        for ok in [
            "https://control.{{region}}.example.net/v1/{{plan}}/services/{{ service }}/traffic",
            "http://127.0.0.1:9/{{region}}",
            "https://{{region}}/",
            "http://h/{{unknown}}",
            " https://h/ ",
        ] {
            assert!(UrlTemplate::parse(ok).is_ok(), "{ok:?}");
        }
        let cases = [
            ("ftp://h/{{region}}", UrlError::Scheme { scheme: "ftp".into() }),
            ("file:///etc/passwd", UrlError::Scheme { scheme: "file".into() }),
            ("control/{{region}}", UrlError::Unparsable { reason: "it has no scheme such as https://".into() }),
            ("", UrlError::Unparsable { reason: "it has no scheme such as https://".into() }),
            ("http://h:99999/", UrlError::Unparsable { reason: "its port is not a number from 0 to 65535".into() }),
            (
                "https://control {{region}}/",
                UrlError::Unparsable { reason: "its host is not a valid domain name".into() },
            ),
            ("http://[::1/", UrlError::Unparsable { reason: "its host is not a valid IPv6 address".into() }),
        ];
        for (text, expected) in cases {
            assert_eq!(UrlTemplate::parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn renders_names_as_given() {
        let t = UrlTemplate::parse("https://control.{{region}}.example.net/{{service}}").unwrap();
        assert_eq!(
            t.render(&[("region", "jp"), ("service", "store")]).unwrap().as_str(),
            "https://control.jp.example.net/store"
        );
        assert_eq!(t.to_string(), "https://control.{{region}}.example.net/{{service}}");
    }

    #[test]
    fn base_urls_must_be_http() {
        assert_eq!(parse_http_url("http://prometheus:9090").unwrap().as_str(), "http://prometheus:9090/");
        let no_scheme = Err(UrlError::Unparsable { reason: NO_SCHEME.into() });
        assert_eq!(parse_http_url("prometheus:9090"), no_scheme);
        assert_eq!(parse_http_url("prometheus.example.net:9090"), no_scheme);
        assert!(matches!(parse_http_url("gopher://prometheus:9090"), Err(UrlError::Scheme { .. })));
        assert!(matches!(parse_http_url("htp//prometheus"), Err(UrlError::Unparsable { .. })));
    }
}
