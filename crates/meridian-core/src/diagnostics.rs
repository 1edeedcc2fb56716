//! Located problems in user input: `file:line:column: error: message; hint`.
//!
//! Owns the diagnostic shape and its rendering. Every checker collects these instead of
//! stopping at the first problem; warnings stay apart from errors.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// Field path inside the document, e.g. `spec.waves[2].regions[0]`.
    pub path: String,
    /// Stable identifier of the check, e.g. `unknown-region`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {severity}: {}", self.file, self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Diagnostics of one run, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    pub fn extend(&mut self, other: Report) {
        self.diagnostics.extend(other.diagnostics);
    }

    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    /// Sort by file, position, then severity, and drop exact repeats.
    pub fn sort(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity, &a.message)
                .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
        });
        self.diagnostics.dedup();
    }

    /// Under `--strict`, warnings count as errors.
    pub fn make_strict(&mut self) {
        for d in &mut self.diagnostics {
            d.severity = Severity::Error;
        }
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean {c:?}?"))
}

/// The candidate `word` most likely misspells: one that differs only in case, else the
/// most similar above a threshold. Ties go to the alphabetically first, so the answer does
/// not depend on the candidates' order.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let score = if c.eq_ignore_ascii_case(word) { 2.0 } else { strsim::jaro_winkler(word, c) };
        if score <= 0.8 {
            continue;
        }
        best = match best {
            Some((s, b)) if s > score || (s == score && b <= c) => Some((s, b)),
            _ => Some((score, c)),
        };
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_whatever_the_order() {
        assert_eq!(did_you_mean("jpn", ["kr", "jp", "hk"]), Some("did you mean \"jp\"?".into()));
        assert_eq!(closest("ab", ["ac", "aa"]), closest("ab", ["aa", "ac"]));
        assert_eq!(closest("Asia/tokyo", ["Asia/Tokyo", "Asia/Tomsk"]), Some("Asia/Tokyo"));
        assert_eq!(closest("jp", ["jp"]), None);
        assert_eq!(closest("zzz", ["jp"]), None);
    }

    #[test]
    fn displays_file_line_column_message_and_hint() {
        let d = Diagnostic {
            severity: Severity::Warning,
            file: "p.yaml".into(),
            line: 3,
            column: 7,
            path: "spec".into(),
            code: "x",
            message: "something is off".into(),
            hint: Some("fix it".into()),
        };
        assert_eq!(d.to_string(), "p.yaml:3:7: warning: something is off; fix it");
    }
}
