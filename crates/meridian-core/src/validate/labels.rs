//! Labels as Kubernetes accepts them: on regions, and in wave selectors.
//!
//! Owns the key and value rules only; what a selector matches is `waves`'.

use std::collections::BTreeMap;

use super::PlanChecker;

impl<'d> PlanChecker<'d, '_> {
    /// A region's labels, or a selector's `matchLabels`.
    pub(super) fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (key, value) in labels {
            self.label(&format!("{path}.{key}"), key, value);
        }
    }

    pub(super) fn label(&mut self, path: &str, key: &str, value: &str) {
        if let Some(problem) = label_key_problem(key) {
            self.error(path, "invalid-label", format!("label key {key:?} {problem}"), Some(LABEL_RULE.into()));
        }
        if let Some(problem) = label_value_problem(value) {
            self.error(
                path,
                "invalid-label",
                format!("value {value:?} of label {key:?} {problem}"),
                Some(LABEL_RULE.into()),
            );
        }
    }
}

pub(super) const LABEL_RULE: &str = "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 of them \
     (a key may have a DNS prefix and '/': example.com/tier)";

/// Why a label key is not one Kubernetes would accept, if it is not.
pub(super) fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
    {
        return Some("has an invalid prefix");
    }
    if name.is_empty() {
        return Some("is empty");
    }
    label_value_problem(name)
}

/// Why a label value is not one Kubernetes would accept, if it is not (empty is fine).
pub(super) fn label_value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some("is longer than 63 characters");
    }
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let inner = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !inner || !edge(value.bytes().next()) || !edge(value.bytes().last()) {
        return Some("is not valid");
    }
    None
}
