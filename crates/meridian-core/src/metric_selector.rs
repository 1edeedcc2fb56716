//! Metric selectors (`name` or `name{label="value",...}`): what an http check's `metric`
//! picks out of a Prometheus text-format body, and the lexer of names and label sets that
//! the text format shares with them.
//!
//! Owns that grammar, so that validation checks a selector with the same rules the health
//! adapter reads bodies with. It reads no bodies and matches no samples (the adapter does).

use std::collections::BTreeMap;
use std::fmt;

use crate::plan::{render_template, template_placeholders};

/// What a placeholder stands for while a template is checked.
const SAMPLE_NAME: &str = "x";

/// A selector that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric selector {selector:?} is malformed: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// Which samples a check reads: a metric name and labels that must all match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSelector {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl MetricSelector {
    pub fn parse(text: &str) -> Result<MetricSelector, SelectorError> {
        let fail = |reason: String| SelectorError { selector: text.to_string(), reason };
        let mut rest = text.trim();
        let name = lex_name(&mut rest).map_err(fail)?;
        let labels = if rest.starts_with('{') { lex_labels(&mut rest).map_err(fail)? } else { BTreeMap::new() };
        if !rest.trim().is_empty() {
            return Err(fail(format!("unexpected {rest:?} after the selector")));
        }
        Ok(MetricSelector { name, labels })
    }
}

impl fmt::Display for MetricSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
    }
}

/// A selector with `{{placeholders}}` (e.g. `error_ratio{service="{{service}}"}`) that is a
/// valid selector with every placeholder filled by a sample name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorTemplate {
    template: String,
}

impl SelectorTemplate {
    /// Check `template` with every placeholder filled by a sample name. Which placeholders
    /// are allowed, and whether each one closes, are checked by the caller.
    pub fn parse(template: &str) -> Result<SelectorTemplate, SelectorError> {
        let samples: Vec<(String, &str)> =
            template_placeholders(template).into_iter().map(|name| (name, SAMPLE_NAME)).collect();
        let vars: Vec<(&str, &str)> = samples.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        MetricSelector::parse(&render_template(template, &vars))?;
        Ok(SelectorTemplate { template: template.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The selector for these names, put in as given (placeholders inside a quoted label
    /// value may take any name; elsewhere a name must fit the grammar).
    pub fn render(&self, vars: &[(&str, &str)]) -> Result<MetricSelector, SelectorError> {
        MetricSelector::parse(&render_template(&self.template, vars))
    }
}

impl fmt::Display for SelectorTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

/// A metric or label name at the start of `rest`, which moves past it.
pub fn lex_name(rest: &mut &str) -> Result<String, String> {
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if end == 0 {
        return Err(format!("expected a metric name at {rest:?}"));
    }
    let name = rest[..end].to_string();
    *rest = &rest[end..];
    Ok(name)
}

/// A label set `{a="x",b="y",}` (with `\\`, `\"` and `\n` escapes in values) at the start
/// of `rest`, which must begin with `{`; `rest` moves past the closing `}`.
pub fn lex_labels(rest: &mut &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    *rest = rest.strip_prefix('{').ok_or_else(|| format!("expected {{ at {rest:?}"))?;
    loop {
        *rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            *rest = after;
            return Ok(labels);
        }
        let key = lex_name(rest)?;
        *rest = rest.trim_start();
        *rest = rest.strip_prefix('=').ok_or_else(|| format!("expected = after label {key}"))?;
        *rest = rest.trim_start();
        *rest = rest.strip_prefix('"').ok_or_else(|| format!("expected a quoted value for {key}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value for label {key}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {:?} in label {key}", other.map(|(_, c)| c))),
                },
                Some((_, c)) => value.push(c),
            }
        };
        *rest = &rest[end + 1..];
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("label {key} appears twice"));
        }
        *rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            *rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after label {key}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_print() {
        let sel = MetricSelector::parse(r#" error_ratio{service="signin", note="a \"q\""} "#).unwrap();
        assert_eq!(sel.name, "error_ratio");
        assert_eq!(sel.labels["note"], "a \"q\"");
        assert_eq!(sel.to_string(), r#"error_ratio{note="a \"q\"",service="signin"}"#);
        assert_eq!(MetricSelector::parse("up").unwrap().to_string(), "up");
        for bad in ["error_ratio{service=signin}", "1abc", "a b", "x{a=\"1\",a=\"2\"}", "x{a=\"1\"", ""] {
            assert!(MetricSelector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_are_checked_with_sample_names_and_rendered_with_real_ones() {
        let t = SelectorTemplate::parse(r#"latency_{{wave}}{service="{{service}}"}"#).unwrap();
        // Names are put in as given, so one with a quote breaks the selector, as it would be written.
        assert!(t.render(&[("wave", "asia"), ("service", "a \"b\"")]).is_err());
        let sel = t.render(&[("wave", "asia"), ("service", "store")]).unwrap();
        assert_eq!(sel.to_string(), r#"latency_asia{service="store"}"#);
        let e = SelectorTemplate::parse(r#"x{service={{service}}}"#).unwrap_err();
        assert_eq!(e.reason, "expected a quoted value for service");
        assert!(SelectorTemplate::parse("x{{region}}").is_ok());
    }
}
