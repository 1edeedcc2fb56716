//! A reader for the Prometheus text exposition format (version 0.0.4) and for the metric
//! selectors (`name` or `name{label="value",...}`) that pick one sample out of it.
//!
//! Owns parsing only. It is strict: a line it cannot read fails the whole body, because a
//! body half understood is no basis for a verdict.

use std::collections::BTreeMap;

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

/// Which samples a check reads: a metric name and labels that must all match exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, TextFormatError> {
        let fail = |reason: String| TextFormatError::Selector { selector: text.to_string(), reason };
        let mut cursor = Cursor { rest: text.trim() };
        let name = cursor.name().map_err(fail)?;
        let labels = if cursor.rest.starts_with('{') { cursor.labels().map_err(fail)? } else { BTreeMap::new() };
        if !cursor.rest.trim().is_empty() {
            return Err(fail(format!("unexpected {:?} after the selector", cursor.rest)));
        }
        Ok(Selector { name, labels })
    }

    pub fn matches(&self, sample: &TextSample) -> bool {
        sample.name == self.name && self.labels.iter().all(|(k, v)| sample.labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
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
    let mut cursor = Cursor { rest: line };
    let name = cursor.name()?;
    let labels = if cursor.rest.starts_with('{') { cursor.labels()? } else { BTreeMap::new() };
    let mut fields = cursor.rest.split_whitespace();
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

struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn name(&mut self) -> Result<String, String> {
        let end = self
            .rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
            .map_or(self.rest.len(), |(i, _)| i);
        if end == 0 {
            return Err(format!("expected a metric name at {:?}", self.rest));
        }
        let name = self.rest[..end].to_string();
        self.rest = &self.rest[end..];
        Ok(name)
    }

    /// `{a="x",b="y",}` with `\\`, `\"` and `\n` escapes in values.
    fn labels(&mut self) -> Result<BTreeMap<String, String>, String> {
        let mut labels = BTreeMap::new();
        self.rest = &self.rest[1..];
        loop {
            self.rest = self.rest.trim_start();
            if let Some(rest) = self.rest.strip_prefix('}') {
                self.rest = rest;
                return Ok(labels);
            }
            let key = self.name()?;
            self.rest = self.rest.trim_start();
            self.rest = self.rest.strip_prefix('=').ok_or_else(|| format!("expected = after label {key}"))?;
            self.rest = self.rest.trim_start();
            self.rest = self.rest.strip_prefix('"').ok_or_else(|| format!("expected a quoted value for {key}"))?;
            let mut value = String::new();
            let mut chars = self.rest.char_indices();
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
            self.rest = &self.rest[end + 1..];
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} appears twice"));
            }
            self.rest = self.rest.trim_start();
            if let Some(rest) = self.rest.strip_prefix(',') {
                self.rest = rest;
            } else if !self.rest.starts_with('}') {
                return Err(format!("expected , or }} after label {key}"));
            }
        }
    }
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
        let sel = Selector::parse(r#"error_ratio{service="signin"}"#).unwrap();
        assert_eq!(samples.iter().filter(|s| sel.matches(s)).count(), 1);
        let sel = Selector::parse("error_ratio").unwrap();
        assert_eq!(samples.iter().filter(|s| sel.matches(s)).count(), 2);
        assert_eq!(sel.to_string(), "error_ratio");
        assert!(Selector::parse("error_ratio{service=signin}").is_err());
        assert!(Selector::parse("1abc").is_err());
        assert!(Selector::parse("a b").is_err());
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
