//! `{{placeholders}}` in queries, URLs and selectors, and URLs checked where they are
//! written (an absolute http or https URL, placeholders filled with a sample name).
//!
//! Owns the messages for these; which placeholders a field allows is its caller's.

use super::PlanChecker;
use crate::diagnostics::closest;
use crate::endpoint::{Url, UrlError, UrlTemplate, parse_http_url};
use crate::plan::template_placeholders;

impl<'d> PlanChecker<'d, '_> {
    /// Placeholders in a query or URL; `what` names it in messages. `true` when they are
    /// all allowed and closed.
    pub(super) fn template(&mut self, path: &str, what: &str, template: &str, allowed: &[&str]) -> bool {
        if template.trim().is_empty() {
            let hint = match what {
                "query" => "write a PromQL query".to_string(),
                "url" => "write the URL".to_string(),
                _ => format!("write the {what}"),
            };
            self.error(path, "empty-template", format!("{what} is empty"), Some(hint));
            return false;
        }
        let before = self.errors;
        let listed = allowed.iter().map(|a| format!("{{{{{a}}}}}")).collect::<Vec<_>>().join(", ");
        for name in template_placeholders(template) {
            if allowed.contains(&name.as_str()) {
                continue;
            }
            let hint = if name == "region" {
                format!("a {what} covers every region at once and is split by the region label; use only {listed}")
            } else if let Some(guess) = closest(&name, allowed.iter().copied()) {
                format!("did you mean {{{{{guess}}}}}?")
            } else {
                format!("placeholders allowed here: {listed}")
            };
            self.error(
                path,
                "unknown-placeholder",
                format!("unknown placeholder {{{{{name}}}}} in {what}"),
                Some(hint),
            );
        }
        // An opening {{ with no closing }} is sent to the server as written.
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            match rest[start + 2..].find("}}") {
                Some(end) => rest = &rest[start + 2 + end + 2..],
                None => {
                    self.error(
                        path,
                        "unclosed-placeholder",
                        format!("placeholder in {what} opens with {{{{ but never closes"),
                        Some("close it with }}, e.g. {{service}}".into()),
                    );
                    break;
                }
            }
        }
        self.errors == before
    }

    /// A templated URL whose placeholders were checked: with sample names filled in, it must
    /// be an absolute http(s) URL. `what` names it in messages; `example` shows a good one.
    pub(super) fn url_template(&mut self, path: &str, what: &str, text: &str, example: &str) -> Option<UrlTemplate> {
        match UrlTemplate::parse(text) {
            Ok(template) => Some(template),
            Err(e) => {
                self.url_error(path, what, text, e, example);
                None
            }
        }
    }

    /// A URL without placeholders (a Prometheus server): an absolute http(s) URL.
    pub(super) fn base_url(&mut self, path: &str, what: &str, text: &str, example: &str) -> Option<Url> {
        match parse_http_url(text) {
            Ok(url) => Some(url),
            Err(e) => {
                self.url_error(path, what, text, e, example);
                None
            }
        }
    }

    pub(super) fn url_error(&mut self, path: &str, what: &str, text: &str, e: UrlError, example: &str) {
        let (message, hint) = match e {
            UrlError::Scheme { scheme } => (
                format!("{what} {text:?} uses unsupported scheme {scheme:?}"),
                format!("meridian calls only http and https; use e.g. {example}"),
            ),
            UrlError::Unparsable { reason } => (
                format!("{what} {text:?} is not a valid url: {reason}"),
                format!("write an absolute http:// or https:// url, e.g. {example}"),
            ),
        };
        self.error(path, "invalid-url", message, Some(hint));
    }
}
