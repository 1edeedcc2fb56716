//! Reading manifests from text: documents, their kinds, and where every field sits.
//!
//! Owns the first stage of parsing. Each YAML document is parsed twice: by `serde_yaml`
//! into the raw types, and by `yaml-rust2`'s event parser into a [`Locations`] map from
//! field path to line and column, so that later checks can point at the offending node.
//! It reads no files itself: callers hand it (name, text) pairs.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostics::{Diagnostic, Report, Severity, did_you_mean};
use crate::manifest::{API_VERSION, Approval, RolloutPlan};

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Field path to position for one document. Paths look like `spec.waves[2].regions[0]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Locations {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    start: Pos,
}

impl Locations {
    /// Where the value at `path` starts; falls back to the nearest enclosing node.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return self.start,
            }
        }
    }

    /// Where the key of the field at `path` is written (its value's position otherwise).
    pub fn key(&self, path: &str) -> Pos {
        self.keys.get(path).copied().unwrap_or_else(|| self.value(path))
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct LocationCollector {
    docs: Vec<Locations>,
    current: Locations,
    stack: Vec<Frame>,
}

impl LocationCollector {
    /// The path of the node starting now, or `None` when the event is a mapping key.
    fn child_path(&mut self, is_scalar: bool, scalar: &str, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() { k } else { format!("{path}.{k}") }),
                None => {
                    let k = if is_scalar { scalar.to_string() } else { "?".to_string() };
                    let full = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    self.current.keys.entry(full).or_insert(pos);
                    // A block mapping is marked at its first value; point it at its first key.
                    if let Some(map_pos) = self.current.values.get_mut(path.as_str())
                        && (pos.line, pos.column) < (map_pos.line, map_pos.column)
                    {
                        *map_pos = pos;
                    }
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for LocationCollector {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Pos { line: mark.line(), column: mark.col() + 1 };
        match event {
            Event::DocumentStart => {
                self.current = Locations { start: pos, ..Locations::default() };
                self.stack.clear();
            }
            Event::DocumentEnd => self.docs.push(std::mem::take(&mut self.current)),
            Event::Scalar(value, ..) => {
                if let Some(path) = self.child_path(true, &value, pos) {
                    self.current.values.entry(path).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.child_path(false, "", pos) {
                    self.current.values.entry(path).or_insert(pos);
                }
            }
            Event::SequenceStart(..) => {
                let path = self.child_path(false, "", pos).unwrap_or_else(|| "?".into());
                self.current.values.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.child_path(false, "", pos).unwrap_or_else(|| "?".into());
                self.current.values.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

fn collect_locations(text: &str) -> Vec<Locations> {
    let mut collector = LocationCollector::default();
    let mut parser = Parser::new_from_str(text);
    // A syntax error is reported by serde_yaml with its own location; keep what was read.
    let _ = parser.load(&mut collector, true);
    collector.docs
}

/// One parsed manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Plan(Box<RolloutPlan>),
    Approval(Box<Approval>),
}

/// A manifest with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    /// 0-based index of the document inside its file.
    pub index: usize,
    pub manifest: Manifest,
    pub locations: Locations,
}

impl Document {
    pub fn error(&self, path: &str, code: &'static str, message: String, hint: Option<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, path, code, message, hint)
    }

    pub fn warning(&self, path: &str, code: &'static str, message: String, hint: Option<String>) -> Diagnostic {
        self.diagnostic(Severity::Warning, path, code, message, hint)
    }

    pub fn diagnostic(
        &self,
        severity: Severity,
        path: &str,
        code: &'static str,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let pos = self.locations.value(path);
        Diagnostic {
            severity,
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            code,
            message,
            hint,
        }
    }
}

const KINDS: [&str; 2] = ["RolloutPlan", "Approval"];

/// Parse every document of one file. Documents that fail to parse become diagnostics;
/// the rest are returned. Empty documents are skipped.
pub fn parse_file(file: &str, text: &str) -> (Vec<Document>, Report) {
    let mut report = Report::default();
    let mut documents = Vec::new();
    let locations = collect_locations(text);
    let located = |index: usize, path: &str| -> Pos {
        locations.get(index).map(|l| l.value(path)).unwrap_or(Pos { line: 1, column: 1 })
    };
    let diag = |pos: Pos, path: &str, code: &'static str, message: String, hint: Option<String>| Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        path: path.to_string(),
        code,
        message,
        hint,
    };
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: serde_yaml::Value = match serde::Deserialize::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| Pos { line: l.line(), column: l.column() })
                    .unwrap_or(Pos { line: 1, column: 1 });
                let message = strip_location(&e.to_string());
                report.push(diag(pos, "", "yaml-syntax", message, None));
                // serde_yaml cannot resume after a syntax error in a stream.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let Some(map) = value.as_mapping() else {
            report.push(diag(
                located(index, ""),
                "",
                "not-a-manifest",
                "document is not a mapping".into(),
                Some("a manifest starts with apiVersion, kind, metadata and spec".into()),
            ));
            continue;
        };
        let kind = map.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
        let api = map.get("apiVersion").and_then(|k| k.as_str()).unwrap_or_default().to_string();
        if api != API_VERSION {
            let (message, path) = if api.is_empty() {
                ("missing apiVersion".to_string(), "")
            } else {
                (format!("unsupported apiVersion {api:?}"), "apiVersion")
            };
            report.push(diag(
                located(index, path),
                path,
                "api-version",
                message,
                Some(format!("use apiVersion: {API_VERSION}")),
            ));
            continue;
        }
        let manifest = match kind.as_str() {
            "RolloutPlan" => from_value::<RolloutPlan>(value).map(|p| Manifest::Plan(Box::new(p))),
            "Approval" => from_value::<Approval>(value).map(|a| Manifest::Approval(Box::new(a))),
            _ => {
                let hint = did_you_mean(&kind, KINDS).or_else(|| Some("kind must be RolloutPlan or Approval".into()));
                let message =
                    if kind.is_empty() { "missing kind".to_string() } else { format!("unknown kind {kind:?}") };
                report.push(diag(located(index, "kind"), "kind", "unknown-kind", message, hint));
                continue;
            }
        };
        match manifest {
            Ok(manifest) => documents.push(Document {
                file: file.to_string(),
                index,
                manifest,
                locations: locations.get(index).cloned().unwrap_or_default(),
            }),
            Err((path, message, hint)) => {
                let pos = locations.get(index).map(|l| l.key(&path)).unwrap_or(Pos { line: 1, column: 1 });
                report.push(diag(pos, &path, "schema", message, hint));
            }
        }
    }
    (documents, report)
}

/// Deserialize with the field path of the first error, a message and a hint.
fn from_value<T: serde::de::DeserializeOwned>(value: serde_yaml::Value) -> Result<T, (String, String, Option<String>)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = strip_location(&e.inner().to_string());
        explain(path, inner)
    })
}

/// Turn serde's wording into ours, with a hint where we can give one.
fn explain(path: String, message: String) -> (String, String, Option<String>) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split('`')
            .skip(1)
            .filter(|s| !s.trim().is_empty() && !s.contains(',') && !s.contains("expected"))
            .collect();
        let hint = did_you_mean(&field, expected.iter().copied())
            .or_else(|| (!expected.is_empty()).then(|| format!("allowed here: {}", expected.join(", "))));
        return (path, format!("unknown field {field:?}"), hint);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split('`')
            .skip(1)
            .filter(|s| !s.trim().is_empty() && !s.contains(',') && !s.contains("expected"))
            .collect();
        let hint = did_you_mean(&variant, expected.iter().copied())
            .or_else(|| Some(format!("use one of: {}", expected.join(", "))));
        return (path, format!("unknown value {variant:?}"), hint);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return (path, format!("missing required field {field:?}"), None);
    }
    if message.starts_with("invalid type") {
        return (path, message, None);
    }
    (path, message, None)
}

/// serde_yaml appends " at line L column C"; we print the location ourselves.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: p
spec:
  services:
    - name: signin
  regions:
    - name: jp
      timezone: Asia/Tokyo
  waves:
    - name: w1
      regions: [jp]
";

    #[test]
    fn maps_field_paths_to_positions() {
        let (docs, report) = parse_file("p.yaml", PLAN);
        assert!(report.diagnostics.is_empty(), "{report:?}");
        let loc = &docs[0].locations;
        assert_eq!(loc.value("spec.regions[0].timezone"), Pos { line: 10, column: 17 });
        assert_eq!(loc.key("spec.regions[0].timezone"), Pos { line: 10, column: 7 });
        assert_eq!(loc.value("spec.waves[0].regions[0]"), Pos { line: 13, column: 17 });
        // Unknown paths fall back to the nearest enclosing node.
        assert_eq!(loc.value("spec.waves[0].bake"), Pos { line: 12, column: 7 });
    }

    #[test]
    fn reports_unknown_fields_with_their_location_and_a_hint() {
        let text = PLAN.replace("      timezone: Asia/Tokyo", "      timezon: Asia/Tokyo");
        let (docs, report) = parse_file("p.yaml", &text);
        assert!(docs.is_empty());
        let d = &report.diagnostics[0];
        assert_eq!(d.to_string(), "p.yaml:10:7: error: unknown field \"timezon\"; did you mean \"timezone\"?");
    }

    #[test]
    fn reads_several_documents_and_skips_empty_ones() {
        let text = format!("---\n{PLAN}---\n# nothing\n---\n{PLAN}");
        let (docs, report) = parse_file("p.yaml", &text);
        assert!(report.diagnostics.is_empty(), "{report:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].locations.value("spec.waves[0].regions[0]").line, 30);
    }

    #[test]
    fn reports_syntax_errors_with_the_parser_location() {
        let (_, report) = parse_file("bad.yaml", "kind: [unclosed\n");
        assert_eq!(report.diagnostics.len(), 1);
        assert_eq!(report.diagnostics[0].code, "yaml-syntax");
        assert_eq!(report.diagnostics[0].file, "bad.yaml");
    }
}
