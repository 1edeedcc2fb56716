//! Reading manifests from text: documents, their kinds, and where every field sits.
//!
//! Owns the first stage of parsing. Each YAML document is parsed twice: by `serde_yaml`
//! into the raw types, and by `yaml-rust2`'s event parser into a [`Locations`] map from
//! field path to line and column, so that later checks can point at the offending node.
//! It reads no files itself: callers hand it (name, text) pairs.
//!
//! serde stops at the first error in a document. To report more in one run, a document
//! that does not deserialize is retried with the offending field dropped (see
//! [`parse_file_recovering`]); what survives can still go through the semantic checks,
//! but it never becomes a usable manifest.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_path_to_error::Segment;
use serde_yaml::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostics::{Diagnostic, Report, Severity, closest, did_you_mean};
use crate::manifest::{API_VERSION, Approval, Region, RolloutPlan};

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Default for Pos {
    /// The start of a file: diagnostics never point at line or column 0.
    fn default() -> Self {
        Pos { line: 1, column: 1 }
    }
}

impl Pos {
    fn clamped(line: usize, column: usize) -> Self {
        Pos { line: line.max(1), column: column.max(1) }
    }
}

/// Field path to position for one document. Paths look like `spec.waves[2].regions[0]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Locations {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// Keys written a second time in the same mapping, with where the repeat is.
    repeated_keys: Vec<(String, Pos)>,
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

    /// The first key written twice in one mapping: its path and where the repeat is.
    pub fn repeated_key(&self) -> Option<(&str, Pos)> {
        self.repeated_keys.first().map(|(path, pos)| (path.as_str(), *pos))
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Deeper nodes are not located: no manifest nests this deep, and building ever longer
/// paths for hostile input would cost quadratic memory.
const MAX_LOCATED_DEPTH: usize = 64;

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
        let too_deep = self.stack.len() > MAX_LOCATED_DEPTH;
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = if too_deep { path.clone() } else { format!("{path}[{next}]") };
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if too_deep {
                    path.clone()
                } else if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    let k = if is_scalar { scalar.to_string() } else { "?".to_string() };
                    let full = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    if !too_deep {
                        match self.current.keys.entry(full) {
                            Entry::Occupied(e) => self.current.repeated_keys.push((e.key().clone(), pos)),
                            Entry::Vacant(e) => {
                                e.insert(pos);
                            }
                        }
                    }
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
        let pos = Pos::clamped(mark.line(), mark.col() + 1);
        match event {
            Event::DocumentStart => {
                self.current = Locations { start: pos, ..Locations::default() };
                self.stack.clear();
            }
            Event::DocumentEnd => self.docs.push(std::mem::take(&mut self.current)),
            Event::Scalar(value, style, ..) => {
                if let Some(path) = self.child_path(true, &value, pos) {
                    // An empty value (`key:` and nothing) is marked where the next token
                    // starts, often lines below; point at its key instead.
                    let pos = match (value.is_empty(), style, self.current.keys.get(&path)) {
                        (true, TScalarStyle::Plain, Some(key)) => *key,
                        _ => pos,
                    };
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

/// Locations of every document, and the syntax error that ended the stream early, if any.
/// Where every field of each document of `text` sits (for files that are not manifests, such
/// as the notification sinks file); a document cut short by a syntax error has what was read.
pub fn document_locations(text: &str) -> Vec<Locations> {
    collect_locations(text).0
}

fn collect_locations(text: &str) -> (Vec<Locations>, Option<(String, Pos)>) {
    let mut collector = LocationCollector::default();
    let mut parser = Parser::new_from_str(text);
    // A syntax error is normally reported by serde_yaml with its own location; keep what
    // was read, including the document the error cut short.
    let error = parser.load(&mut collector, true).err().map(|e| {
        let m = e.marker();
        (e.info().to_string(), Pos::clamped(m.line(), m.col() + 1))
    });
    if error.is_some() && !collector.stack.is_empty() {
        collector.docs.push(std::mem::take(&mut collector.current));
    }
    (collector.docs, error)
}

/// One parsed manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Plan(Box<RolloutPlan>),
    Approval(Box<Approval>),
    /// One region of a plan, in a document of its own.
    Region(Box<Region>),
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
            line: pos.line.max(1),
            column: pos.column.max(1),
            path: path.to_string(),
            code,
            message,
            hint,
        }
    }
}

/// A document that did not deserialize as written (or whose `kind` or `apiVersion` is wrong),
/// kept so that semantic checks can still run on the rest of it. Its problems are already
/// in the report; it must never be used as a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub document: Document,
    /// Field paths dropped to make it deserialize. Checks about these paths, their
    /// ancestors or their descendants would judge a plan the user did not write.
    pub dropped: Vec<String>,
}

impl Recovered {
    /// Is a diagnostic at `path` about something the recovery changed?
    pub fn touches(&self, path: &str) -> bool {
        self.dropped.iter().any(|d| is_within(path, d) || is_within(d, path))
    }
}

/// Is `path` the same as `ancestor` or below it?
fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Everything read from one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedFile {
    /// Manifests that parsed cleanly.
    pub documents: Vec<Document>,
    /// Manifests with schema problems, recovered for semantic checks only.
    pub recovered: Vec<Recovered>,
    pub report: Report,
}

const KINDS: [&str; 3] = ["RolloutPlan", "Region", "Approval"];

/// serde's problems with one document are retried at most this many times.
const MAX_SCHEMA_PROBLEMS: usize = 32;

/// The text of a file read as `bytes`, or, when it is not UTF-8 (the only encoding read),
/// one error for the whole file. The error sits at 1:1, since nothing in the file can be
/// checked; its message says where the first invalid byte is.
pub fn decode(file: &str, bytes: Vec<u8>) -> Result<String, Box<Diagnostic>> {
    let error = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let (bytes, at) = (error.as_bytes(), error.utf8_error().valid_up_to());
    let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    let what = match error.utf8_error().error_len() {
        Some(_) => format!("the first invalid byte, 0x{:02X}, is at line {line}, column {column}", bytes[at]),
        None => format!("it ends in the middle of a character at line {line}, column {column}"),
    };
    let hint = if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        "it starts with a UTF-16 byte-order mark; save it as UTF-8"
    } else {
        "save it as UTF-8 (from Latin-1, for example: iconv -f LATIN1 -t UTF-8)"
    };
    Err(Box::new(Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        code: "not-utf8",
        message: format!("the file is not valid UTF-8: {what} (byte offset {at}), so nothing in it was checked"),
        hint: Some(hint.into()),
    }))
}

/// Parse every document of one file. Documents that fail to parse become diagnostics;
/// the rest are returned. Empty documents are skipped.
pub fn parse_file(file: &str, text: &str) -> (Vec<Document>, Report) {
    let parsed = parse_file_recovering(file, text);
    (parsed.documents, parsed.report)
}

/// Like [`parse_file`], and also returns what could be recovered from documents with
/// schema problems, so that their semantic problems are reported in the same run.
pub fn parse_file_recovering(file: &str, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let (locations, stream_error) = collect_locations(text);
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let locs = locations.get(index).cloned().unwrap_or_default();
        let diag = |pos: Pos, path: &str, code: &'static str, message: String, hint: Option<String>| Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            path: path.to_string(),
            code,
            message,
            hint,
        };
        let value: Value = match serde::Deserialize::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let message = strip_location(&e.to_string());
                if let Some(rest) = message.split_once("duplicate entry with key ").map(|(_, rest)| rest) {
                    // The document was read whole; only building its value failed.
                    let (path, pos) =
                        locs.repeated_key().map_or((String::new(), locs.start), |(p, pos)| (p.into(), pos));
                    let first = locs.keys.get(&path).map(|p| p.line);
                    let key = rest.trim_matches('"');
                    out.report.push(diag(
                        pos,
                        &path,
                        "duplicate-key",
                        format!("key {key:?} is written twice in the same mapping"),
                        Some(match first {
                            Some(line) => format!("it is first written on line {line}; keep one of them"),
                            None => "keep one of them".into(),
                        }),
                    ));
                    let Some((message, pos)) = &stream_error else { continue };
                    // The document may also have been cut short by an error serde_yaml has
                    // not reported yet: report it, and do not read on from the middle of it.
                    let hint = syntax_hint(message, text, pos.line);
                    out.report.push(diag(*pos, "", "yaml-syntax", message.clone(), hint));
                    break;
                }
                let pos = e.location().map_or(locs.start, |l| Pos::clamped(l.line(), l.column()));
                let hint = syntax_hint(&message, text, pos.line);
                let limit = message.contains("recursion limit") || message.contains("repetition limit");
                out.report.push(diag(pos, "", "yaml-syntax", message, hint));
                if limit && stream_error.is_none() {
                    continue;
                }
                // serde_yaml cannot resume after a syntax error in a stream.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let Some(map) = value.as_mapping() else {
            out.report.push(diag(
                locs.value(""),
                "",
                "not-a-manifest",
                format!("document is {}, not a manifest", describe_value(&value)),
                Some("a manifest is a mapping with apiVersion, kind, metadata and spec".into()),
            ));
            continue;
        };
        let kind_value = map.get("kind");
        let kind = kind_value.and_then(Value::as_str).unwrap_or_default().to_string();
        let api = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut clean = true;
        let kind = if KINDS.contains(&kind.as_str()) {
            kind
        } else {
            let guess = closest(&kind, KINDS).map(str::to_string);
            let (message, path) = match kind_value {
                None => ("missing kind".to_string(), ""),
                Some(_) if kind.is_empty() => ("kind must be a string".to_string(), "kind"),
                Some(_) => (format!("unknown kind {kind:?}"), "kind"),
            };
            let hint = match &guess {
                Some(g) => Some(format!("did you mean {g:?}?")),
                None => Some("kind must be RolloutPlan, Region or Approval".into()),
            };
            out.report.push(diag(locs.value(path), path, "unknown-kind", message, hint));
            // A near miss is most likely that kind: check the rest as such.
            match guess {
                Some(g) => {
                    clean = false;
                    g
                }
                None => continue,
            }
        };
        if api != API_VERSION {
            let (message, path) = match map.get("apiVersion") {
                None => ("missing apiVersion".to_string(), ""),
                Some(v) if v.as_str().is_none() => ("apiVersion must be a string".to_string(), "apiVersion"),
                Some(_) => (format!("unsupported apiVersion {api:?}"), "apiVersion"),
            };
            out.report.push(diag(
                locs.value(path),
                path,
                "api-version",
                message,
                Some(format!("use apiVersion: {API_VERSION}")),
            ));
            clean = false;
        }
        // The two header fields were judged above; do not report them again.
        let mut value = value;
        if let Some(map) = value.as_mapping_mut() {
            map.insert("apiVersion".into(), API_VERSION.into());
            map.insert("kind".into(), kind.as_str().into());
        }
        let read = match kind.as_str() {
            "RolloutPlan" => deserialize_all::<RolloutPlan>(value).map(|p| Manifest::Plan(Box::new(p))),
            "Region" => deserialize_all::<Region>(value).map(|r| Manifest::Region(Box::new(r))),
            _ => deserialize_all::<Approval>(value).map(|a| Manifest::Approval(Box::new(a))),
        };
        for p in &read.problems {
            let pos = if p.at_key { locs.key(&p.path) } else { locs.value(&p.path) };
            out.report.push(diag(pos, &p.path, "schema", p.message.clone(), p.hint.clone()));
        }
        clean &= read.problems.is_empty() && read.dropped.is_empty();
        let Some(manifest) = read.value else { continue };
        let document = Document { file: file.to_string(), index, manifest, locations: locs };
        if clean {
            out.documents.push(document);
        } else if !read.invented {
            out.recovered.push(Recovered { document, dropped: read.dropped });
        }
    }
    out
}

/// What a YAML value is, in words.
fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A hint for libyaml's terser syntax errors.
fn syntax_hint(message: &str, text: &str, line: usize) -> Option<String> {
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    if message.contains("cannot start any token") && line_text.contains('\t') {
        return Some("indent with spaces: YAML does not allow tabs".into());
    }
    let hint = if message.contains("cannot start any token") {
        "quote values that start with @ or `"
    } else if message.contains("expected ',' or ']'") {
        "close the [ ... ] list, or quote items that contain , [ ] { } or :"
    } else if message.contains("expected ',' or '}'") {
        "close the { ... } mapping, or quote values that contain , [ ] { } or :"
    } else if message.contains("mapping values are not allowed") {
        "quote values that contain \": \", or check the indentation of this line"
    } else if message.contains("did not find expected key") || message.contains("did not find expected '-'") {
        "check the indentation of this line against the lines above it"
    } else if message.contains("unknown anchor") {
        "define the anchor (&name) before the alias (*name) that uses it"
    } else if message.contains("found unexpected end of stream") || message.contains("found unexpected document") {
        "close the quote or bracket opened above"
    } else if message.contains("recursion limit") {
        "a manifest does not nest this deep; check for runaway brackets"
    } else {
        return None;
    };
    Some(hint.into())
}

/// One schema problem serde found, in our words.
#[derive(Debug, Clone, PartialEq)]
struct SchemaProblem {
    path: String,
    /// Point at the key (unknown fields) rather than the value.
    at_key: bool,
    message: String,
    hint: Option<String>,
}

/// What [`deserialize_all`] made of a document.
struct Deserialized<T> {
    /// The manifest, if it could be read at all.
    value: Option<T>,
    problems: Vec<SchemaProblem>,
    /// Field paths dropped or replaced to read the rest.
    dropped: Vec<String>,
    /// A required field or a list had to be replaced by an invented (empty) value, so
    /// semantic checks on the result would report problems the user does not have.
    invented: bool,
}

impl<T> Deserialized<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Deserialized<U> {
        Deserialized {
            value: self.value.map(f),
            problems: self.problems,
            dropped: self.dropped,
            invented: self.invented,
        }
    }
}

/// Deserialize, and on each error drop the offending field and try again, so that every
/// schema problem of a document is reported at once.
///
/// An optional field that is wrong is dropped (it falls back to its default); a required
/// one is put back as an empty value of its type; a list with a wrong item is emptied,
/// because dropping one item would renumber its siblings.
fn deserialize_all<T: serde::de::DeserializeOwned>(mut value: Value) -> Deserialized<T> {
    let mut out = Deserialized { value: None, problems: Vec::new(), dropped: Vec::new(), invented: false };
    // (mapping path, field the user most likely meant) for each unknown field dropped.
    let mut meant: Vec<(String, String)> = Vec::new();
    // Stand-ins for dropped fields, used if they turn out to be required.
    let mut stand_ins: HashMap<String, Option<Value>> = HashMap::new();
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => {
                out.value = Some(v);
                return out;
            }
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let message = strip_location(&err.inner().to_string());
        let problem = explain(&segments, &message);
        if let Some(field) = problem.missing.clone() {
            let full = join(&problem.path, &field);
            let ours = out.dropped.contains(&full);
            // Misspelt, and already reported as an unknown field with a suggestion.
            let misspelt = meant.iter().any(|(p, f)| *p == problem.path && *f == field);
            if !ours && !misspelt {
                out.problems.push(problem.into_problem());
            }
            // Put an empty value in its place and read on.
            let stand_in = if ours { stand_ins.remove(&full).flatten() } else { required_stand_in(&field) };
            let Some(stand_in) = stand_in else { break };
            // An empty name or list changes what other fields refer to; an empty leaf (a
            // time, a query) only affects checks of itself, which are filtered out.
            let container = matches!(stand_in, Value::Sequence(_) | Value::Mapping(_));
            if !insert_at(&mut value, &segments, &field, stand_in) {
                break;
            }
            out.invented |= container || field == "name";
            if !ours {
                out.dropped.push(full);
            }
            continue;
        }
        if let Some(m) = &problem.meant {
            meant.push((parent(&problem.path).unwrap_or_default().to_string(), m.clone()));
        }
        let expected = problem.expected.clone();
        if !out.problems.iter().any(|p| p.path == problem.path && p.message == problem.message) {
            out.problems.push(problem.into_problem());
        }
        let Some(cut) = segments.iter().rposition(|s| matches!(s, Segment::Map { .. })) else { break };
        let entry = render_path(&segments[..=cut]);
        if out.dropped.contains(&entry) {
            break;
        }
        if cut + 1 == segments.len() {
            if !remove_at(&mut value, &segments[..=cut]) {
                break;
            }
            stand_ins.insert(entry.clone(), expected.as_deref().and_then(empty_of));
        } else {
            if !replace_at(&mut value, &segments[..=cut], Value::Sequence(Vec::new())) {
                break;
            }
            out.invented = true;
        }
        out.dropped.push(entry);
    }
    out
}

/// An empty value for a required field the user left out, by its name (see `manifest`).
fn required_stand_in(field: &str) -> Option<Value> {
    match field {
        "services" | "regions" | "waves" => Some(Value::Sequence(Vec::new())),
        "metadata" | "spec" => Some(Value::Mapping(serde_yaml::Mapping::new())),
        "min" => Some(Value::from(0)),
        "name" | "flag" | "grantedBy" | "from" | "to" | "query" | "url" | "at" | "by" | "plan" | "reason" | "key" => {
            Some(Value::String(String::new()))
        }
        _ => None,
    }
}

/// An empty value of the type serde expected, to stand in for a required field.
fn empty_of(expected: &str) -> Option<Value> {
    match expected {
        "a sequence" => Some(Value::Sequence(Vec::new())),
        "a string" | "a borrowed string" => Some(Value::String(String::new())),
        "a map" => Some(Value::Mapping(serde_yaml::Mapping::new())),
        e if e.starts_with("struct ") => Some(Value::Mapping(serde_yaml::Mapping::new())),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => Some(Value::from(0)),
        "f32" | "f64" => Some(Value::from(0.0)),
        "a boolean" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// The value `segments` lead to, looking through tags.
fn node_at<'v>(value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    let mut at = value;
    for s in segments {
        while let Value::Tagged(t) = at {
            at = &mut t.value;
        }
        at = match (s, at) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    while let Value::Tagged(t) = at {
        at = &mut t.value;
    }
    Some(at)
}

/// Remove the mapping entry `segments` leads to. `false` when there is none.
fn remove_at(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((Segment::Map { key }, up)) = segments.split_last() else { return false };
    match node_at(value, up) {
        Some(Value::Mapping(m)) => m.shift_remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Replace the value `segments` leads to. `false` when there is none.
fn replace_at(value: &mut Value, segments: &[Segment], with: Value) -> bool {
    match node_at(value, segments) {
        Some(v) => {
            *v = with;
            true
        }
        None => false,
    }
}

/// Add `field` to the mapping `segments` lead to (an empty `key:` counts as an empty
/// mapping). `false` when there is none.
fn insert_at(value: &mut Value, segments: &[Segment], field: &str, with: Value) -> bool {
    let node = node_at(value, segments);
    match node {
        Some(v @ Value::Null) => {
            let mut m = serde_yaml::Mapping::new();
            m.insert(field.into(), with);
            *v = Value::Mapping(m);
            true
        }
        Some(Value::Mapping(m)) => {
            m.insert(field.into(), with);
            true
        }
        _ => false,
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// serde's wording turned into ours.
struct Explained {
    path: String,
    at_key: bool,
    message: String,
    hint: Option<String>,
    /// For a missing field: its name.
    missing: Option<String>,
    /// For an unknown field: the field the user most likely meant.
    meant: Option<String>,
    /// For a value of the wrong type: serde's name for the type it wanted.
    expected: Option<String>,
}

impl Explained {
    fn into_problem(self) -> SchemaProblem {
        SchemaProblem { path: self.path, at_key: self.at_key, message: self.message, hint: self.hint }
    }
}

/// Names between backticks in serde's messages, skipping the first (the offending word).
fn backticked(rest: &str) -> Vec<&str> {
    rest.split('`').skip(2).step_by(2).filter(|s| !s.trim().is_empty()).collect()
}

fn explain(segments: &[Segment], message: &str) -> Explained {
    let path = render_path(segments);
    let field = match segments.last() {
        Some(Segment::Map { key }) => key.clone(),
        Some(Segment::Seq { index }) => {
            let owner = segments.iter().rev().find_map(|s| match s {
                Segment::Map { key } => Some(key.as_str()),
                _ => None,
            });
            format!("{}[{index}]", owner.unwrap_or("item"))
        }
        _ => "the document".to_string(),
    };
    let mut out = Explained {
        path,
        at_key: false,
        message: String::new(),
        hint: None,
        missing: None,
        meant: None,
        expected: None,
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default().to_string();
        let expected = backticked(rest);
        out.at_key = true;
        out.meant = closest(&name, expected.iter().copied()).map(str::to_string);
        out.hint = match (&out.meant, expected.is_empty()) {
            (Some(m), _) => Some(format!("did you mean {m:?}?")),
            (None, false) => Some(format!("fields allowed here: {}", expected.join(", "))),
            (None, true) => {
                let owner = parent(&out.path).map(|p| p.rsplit('.').next().unwrap_or(p)).unwrap_or("it");
                Some(format!("{owner} takes no settings; write {owner}: {{}}"))
            }
        };
        out.message = format!("unknown field {name:?}");
        return out;
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or_default().to_string();
        let expected = backticked(rest);
        out.hint = did_you_mean(&variant, expected.iter().copied())
            .or_else(|| Some(format!("use one of: {}", expected.join(", "))));
        out.message = format!("unknown {field} value {variant:?}");
        return out;
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default().to_string();
        out.message = if out.path.is_empty() {
            format!("missing required field {name:?}")
        } else {
            format!("missing required field {name:?} in {}", out.path)
        };
        out.hint = Some(format!("add the {name} field"));
        out.missing = Some(name);
        return out;
    }
    let typed = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "));
    if let Some((found, expected)) = typed.and_then(|t| t.split_once(", expected ")) {
        let shape = shape_of(segments);
        let choices = choices_of(&shape);
        let leaf = shape.rsplit('.').next().unwrap_or_default();
        let duration = matches!(leaf, "bake" | "stepBake" | "interval" | "timeout");
        let date = shape.contains("freezes[]") && !shape.contains("daily");
        let expected_words = match choices {
            Some(c) => format!("one of {c}"),
            None if shape == "spec.steps[]" => "a whole percentage from 1 to 100".to_string(),
            None if duration && expected == "a string" => "a duration with a unit".to_string(),
            None if date && matches!(leaf, "from" | "to") && expected == "a string" => "a date".to_string(),
            None if matches!(leaf, "from" | "to") && expected == "a string" => "a quoted time of day".to_string(),
            None => expected_in_words(expected),
        };
        out.message = format!("{field} must be {expected_words}, not {}", found_in_words(found));
        let number = found.split_once('`').map(|(_, n)| n.trim_end_matches('`'));
        let string = found.strip_prefix("string ").map(|s| s.trim_matches('"'));
        out.hint = match (choices, expected, number, string) {
            (Some(c), ..) => Some(format!("use one of: {c}")),
            (None, "a sequence", _, Some(s)) => Some(format!("write it as a list: [{s}]")),
            (None, _, Some(n), _) if duration => Some(format!("write {n}s, {n}m or {n}h")),
            (None, "a string", Some(n), _) => shape_hint(&shape).or_else(|| Some(format!("quote it: \"{n}\""))),
            _ => shape_hint(&shape),
        };
        out.expected = Some(expected.to_string());
        return out;
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.split('`').next().unwrap_or_default();
        out.message = format!("field {name:?} is written twice");
        out.hint = Some("keep one of them".into());
        return out;
    }
    out.message = message.to_string();
    out
}

/// serde's name for what it wanted, in words.
fn expected_in_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of at least 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a boolean" => "true or false",
        "unit" => "empty",
        other if other.starts_with("struct ") => "a mapping",
        other if other.contains("enum") => "a plain name",
        other => other,
    };
    words.to_string()
}

/// A path with its list indices blanked: `spec.waves[2].regions[0]` -> `spec.waves[].regions[]`.
fn shape_of(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { .. } => out.push_str("[]"),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// The allowed values of the enum-valued fields.
fn choices_of(shape: &str) -> Option<&'static str> {
    match shape {
        "spec.onFailure" | "spec.regions[].onFailure" => Some("rollback-region, pause"),
        "spec.onApprovalRevoked" => Some("hold, disable"),
        "spec.health.checks[].noData"
        | "spec.noData"
        | "spec.checks[].noData"
        | "spec.regions[].noData"
        | "spec.regions[].checks[].noData" => Some("hold, fail, ignore"),
        "spec.waves[].selector.matchExpressions[].operator" => Some("In, NotIn, Exists, DoesNotExist"),
        _ => None,
    }
}

/// serde's description of what it found, in words: `integer `5`` -> `5`.
fn found_in_words(found: &str) -> String {
    let inner = found.split_once('`').map(|(_, rest)| rest.trim_end_matches('`'));
    if found.starts_with("integer") || found.starts_with("floating point") {
        return format!("the number {}", inner.unwrap_or_default());
    }
    if let Some(rest) = found.strip_prefix("string ") {
        return format!("the string {rest}");
    }
    if let Some(rest) = found.strip_prefix("boolean ") {
        return rest.trim_matches('`').to_string();
    }
    match found {
        "map" => "a mapping".into(),
        "sequence" => "a list".into(),
        "unit value" => "empty".into(),
        other => other.to_string(),
    }
}

/// What to write instead, for fields people commonly get wrong.
fn shape_hint(shape: &str) -> Option<String> {
    let element = shape.strip_suffix("[]").unwrap_or(shape);
    let hint = match element {
        "spec.services" => {
            "write services as a list of mappings, e.g. [{name: signin}, {name: store, after: [signin]}]"
        }
        "spec.regions" => "write regions as a list of mappings, e.g. [{name: jp, timezone: Asia/Tokyo}]",
        "spec.waves" => "write waves as a list of mappings, e.g. [{name: canary, regions: [us-east], bake: 30m}]",
        "spec.windows" => {
            "write windows as a list of mappings, e.g. [{days: [Mon, Tue], from: \"09:00\", to: \"17:00\"}]"
        }
        "spec.health.checks" => {
            "write checks as a list of mappings, e.g. [{name: errors, prometheus: {query: ...}, max: 0.01}]"
        }
        "spec.steps" => "steps are traffic percentages from 1 to 100, e.g. [1, 10, 50, 100]",
        "spec.windows[].days" => "list days like [Mon, Tue, Wed]",
        "spec.freezes" | "spec.regions[].freezes" => {
            "write freezes as a list of mappings, e.g. [{reason: Golden Week, from: 2026-04-29, to: 2026-05-06}]"
        }
        "spec.freezes[].from"
        | "spec.freezes[].to"
        | "spec.regions[].freezes[].from"
        | "spec.regions[].freezes[].to" => "write dates as YYYY-MM-DD, e.g. 2026-04-29",
        "spec.waves[].selector" => "write a selector as a mapping, e.g. selector: {matchLabels: {continent: asia}}",
        "spec.labels" | "spec.regions[].labels" => "write labels as a mapping, e.g. labels: {continent: asia}",
        _ => {
            let field = element.rsplit('.').next().unwrap_or(element);
            match field {
                "bake" | "stepBake" | "interval" | "timeout" => "write durations with a unit, e.g. 90s, 5m or 1h30m",
                "from" | "to" => "write local times as quoted \"HH:MM\", e.g. \"09:00\"",
                "maxParallel" | "failureLimit" | "retries" => "write a whole number, e.g. 2",
                "timezone" => "use an IANA time zone name such as Europe/Berlin or Asia/Tokyo",
                "min" | "max" => "write a number, e.g. 0.01",
                "regions" | "after" | "approvals" | "services" | "plans" | "values" => {
                    "write a list of names, e.g. [a, b]"
                }
                "grantedAt" | "expires" | "at" => "write an RFC 3339 time, e.g. 2026-12-31T00:00:00Z",
                "metadata" => "write metadata as a mapping, e.g. metadata: {name: my-plan}",
                "spec" => "write spec as a mapping of fields",
                _ => return None,
            }
        }
    };
    Some(hint.into())
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
    fn reports_every_schema_problem_of_a_document_and_keeps_the_rest_checkable() {
        let text = PLAN
            .replace("      timezone: Asia/Tokyo", "      timezone: 5\n      colour: red")
            .replace("    - name: w1", "    - name: w1\n      maxParallel: two");
        let parsed = parse_file_recovering("p.yaml", &text);
        let lines: Vec<String> = parsed.report.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "p.yaml:10:17: error: timezone must be a string, not the number 5; \
                 use an IANA time zone name such as Europe/Berlin or Asia/Tokyo",
                "p.yaml:11:7: error: unknown field \"colour\"; fields allowed here: name, timezone, approvals, \
                 labels, steps, stepBake, progressDeadline, windows, noData, checks, onFailure, actuator, freezes",
                "p.yaml:14:20: error: maxParallel must be a whole number, not the string \"two\"; \
                 write a whole number, e.g. 2",
            ]
        );
        assert!(parsed.documents.is_empty());
        let recovered = &parsed.recovered[0];
        assert!(recovered.touches("spec.regions[0]"));
        assert!(recovered.touches("spec.regions[0].timezone"));
        assert!(!recovered.touches("spec.regions[1]"));
        assert!(!recovered.touches("spec.waves[0].regions[0]"));
    }

    #[test]
    fn a_document_whose_lists_had_to_be_emptied_is_not_checked_further() {
        let text = PLAN.replace("    - name: signin", "    - signin");
        let parsed = parse_file_recovering("p.yaml", &text);
        assert_eq!(parsed.report.diagnostics.len(), 1, "{:?}", parsed.report);
        assert!(parsed.documents.is_empty() && parsed.recovered.is_empty());
    }

    #[test]
    fn points_empty_values_at_their_key() {
        let (_, report) = parse_file("p.yaml", "apiVersion: meridian.dev/v1alpha1\nkind: Approval\nmetadata:\nspec:\n");
        let lines: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(lines[0], "p.yaml:3:1: error: missing required field \"name\" in metadata; add the name field");
        assert!(lines[1].starts_with("p.yaml:4:1: error: missing required field"), "{lines:?}");
    }

    #[test]
    fn reports_a_repeated_key_where_it_is_repeated() {
        let text = PLAN.replace("      regions: [jp]", "      regions: [jp]\n      regions: [jp]");
        let (docs, report) = parse_file("p.yaml", &text);
        assert!(docs.is_empty());
        assert_eq!(
            report.diagnostics[0].to_string(),
            "p.yaml:14:7: error: key \"regions\" is written twice in the same mapping; \
             it is first written on line 13; keep one of them"
        );
    }

    #[test]
    fn a_near_miss_kind_is_checked_as_that_kind() {
        let parsed = parse_file_recovering("p.yaml", &PLAN.replace("kind: RolloutPlan", "kind: RolloutPlans"));
        assert_eq!(parsed.report.diagnostics[0].code, "unknown-kind");
        assert!(matches!(parsed.recovered[0].document.manifest, Manifest::Plan(_)));
    }

    #[test]
    fn reports_syntax_errors_with_the_parser_location() {
        let (_, report) = parse_file("bad.yaml", "kind: [unclosed\n");
        assert_eq!(report.diagnostics.len(), 1);
        assert_eq!(report.diagnostics[0].code, "yaml-syntax");
        assert_eq!(report.diagnostics[0].file, "bad.yaml");
    }

    #[test]
    fn decodes_utf8_and_locates_the_first_invalid_byte_otherwise() {
        assert_eq!(decode("p.yaml", "name: café\n".as_bytes().to_vec()), Ok("name: café\n".to_string()));
        let d = decode("p.yaml", b"a: 1\nname: caf\xE9\n".to_vec()).unwrap_err();
        assert_eq!(
            d.to_string(),
            "p.yaml:1:1: error: the file is not valid UTF-8: the first invalid byte, 0xE9, is at line 2, column 10 \
             (byte offset 14), so nothing in it was checked; save it as UTF-8 (from Latin-1, for example: \
             iconv -f LATIN1 -t UTF-8)"
        );
        assert_eq!((d.severity, d.code), (Severity::Error, "not-utf8"));
        // Columns count characters, not bytes; a truncated character is named as such.
        let mut bytes = "é: x".as_bytes().to_vec();
        bytes.push(0xC3);
        let d = decode("p.yaml", bytes).unwrap_err();
        assert!(d.message.contains("it ends in the middle of a character at line 1, column 5 (byte offset 5)"), "{d}");
        let d = decode("p.yaml", vec![0xFF, 0xFE, b'a', 0]).unwrap_err();
        assert_eq!(d.hint.as_deref(), Some("it starts with a UTF-16 byte-order mark; save it as UTF-8"));
    }
}
