//! A reader for the Prometheus text exposition format (version 0.0.4), and which of its
//! samples a metric selector picks.
//!
//! Owns reading bodies only; the grammar of names and label sets it shares with selectors
//! is the core's (`meridian_core::metric_selector`), where validation checks a check's
//! `metric`. It is strict: a line it cannot read fails the whole body, because a body half
//! understood is no basis for a verdict.

use std::collections::BTreeMap;

use meridian_core::metric_selector::{MetricSelector, SelectorError, lex_labels, lex_name};

/// A body or selector that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TextFormatError {
    #[error("line {line} of the text-format body is malformed: {reason}")]
    Line { line: usize, reason: String },
    #[error("metric selector {selector:?} is malformed: {reason}")]
    Selector { selector: String, reason: String },
}

impl TextFormatError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            TextFormatError::Line { .. } => "text_format",
            TextFormatError::Selector { .. } => "selector",
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl TextSample {
    /// Does `selector` pick this sample: same name, and every label of the selector with
    /// exactly its value?
    pub fn matches(&self, selector: &MetricSelector) -> bool {
        self.name == selector.name && selector.labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

impl From<SelectorError> for TextFormatError {
    fn from(e: SelectorError) -> Self {
        TextFormatError::Selector { selector: e.selector, reason: e.reason }
    }
}

/// Every sample of a text-format body, in order.
pub fn parse(body: &str) -> Result<Vec<TextSample>, TextFormatError> {
    let mut samples = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(sample_line(line).map_err(|reason| TextFormatError::Line { line: i + 1, reason })?);
    }
    Ok(samples)
}

fn sample_line(line: &str) -> Result<TextSample, String> {
    let mut rest = line;
    let name = lex_name(&mut rest)?;
    let labels = if rest.starts_with('{') { lex_labels(&mut rest)? } else { BTreeMap::new() };
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = value.parse::<f64>().map_err(|_| format!("value {value:?} is not a number"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| format!("timestamp {t:?} is not an integer"))?),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(TextSample { name, labels, value, timestamp_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"
# HELP error_ratio Share of failed requests.
# TYPE error_ratio gauge
error_ratio{service="signin"} 0.002
error_ratio{service="store",note="a \"quoted\" \\ value\nwith, comma}"} NaN 1780315200123
up 1
requests_total{service="signin",} +Inf
"#;

    #[test]
    fn reads_names_labels_values_and_timestamps() {
        let samples = parse(BODY).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].labels.get("service").map(String::as_str), Some("signin"));
        assert_eq!(samples[0].value, 0.002);
        assert_eq!(samples[1].labels["note"], "a \"quoted\" \\ value\nwith, comma}");
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[1].timestamp_ms, Some(1_780_315_200_123));
        assert_eq!((samples[2].name.as_str(), samples[2].value), ("up", 1.0));
        assert_eq!(samples[3].value, f64::INFINITY);
    }

    #[test]
    fn selectors_match_by_name_and_exact_labels() {
        let samples = parse(BODY).unwrap();
        let sel = MetricSelector::parse(r#"error_ratio{service="signin"}"#).unwrap();
        assert_eq!(samples.iter().filter(|s| s.matches(&sel)).count(), 1);
        let sel = MetricSelector::parse("error_ratio").unwrap();
        assert_eq!(samples.iter().filter(|s| s.matches(&sel)).count(), 2);
    }

    #[test]
    fn one_bad_line_fails_the_body() {
        for (body, line) in
            [("ok 1\nbad\n", 2), ("x{a=\"1\" 2", 1), ("x 1 2 3", 1), ("x{a=\"1\",a=\"2\"} 1", 1), ("x abc", 1)]
        {
            match parse(body) {
                Err(TextFormatError::Line { line: l, .. }) => assert_eq!(l, line, "{body:?}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }
}
