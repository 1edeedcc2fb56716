//! Leaf values every section shares: durations, object and list names, approval flags.
//!
//! Owns their rules and messages (with a suggestion for a malformed duration). It knows
//! nothing of the section a value sits in beyond the path it is given.

use std::collections::HashMap;

use super::PlanChecker;
use crate::diagnostics::Report;
use crate::duration::{Span, SpanError};
use crate::manifest::CountOrPercent;
use crate::plan::FailureBudget;
use crate::source::Document;

impl<'d> PlanChecker<'d, '_> {
    /// A `progressDeadline`: a duration, or `None` when absent or invalid (reported).
    pub(super) fn progress_deadline(&mut self, path: &str, text: Option<&str>) -> Option<Span> {
        let text = text?;
        let before = self.errors;
        let span = self.span(path, Some(text), Span::ZERO);
        (self.errors == before).then_some(span)
    }

    /// A `maxFailures` budget of `owner` (`wave "canary"`, `the plan`): a count of 0 or more,
    /// or a percent from 0% to 100%. `None` when absent or invalid (reported).
    pub(super) fn failure_budget(
        &mut self,
        path: &str,
        owner: &str,
        raw: Option<&CountOrPercent>,
    ) -> Option<FailureBudget> {
        const HINT: &str = "write a count of regions such as 2, or a percent of them such as \"25%\"";
        let negative = |c: &mut Self, shown: &str| {
            c.error(
                path,
                "negative-failure-budget",
                format!("maxFailures of {owner} is {shown}; it must be 0 or more"),
                Some(format!("0 tolerates no failed region; {HINT}")),
            );
            None
        };
        match raw? {
            CountOrPercent::Count(n) if *n < 0 => negative(self, &n.to_string()),
            CountOrPercent::Count(n) => Some(FailureBudget::Count(usize::try_from(*n).unwrap_or(usize::MAX))),
            CountOrPercent::Text(text) => {
                let t = text.trim();
                if t.starts_with('-') {
                    return negative(self, &format!("{text:?}"));
                }
                let (digits, percent) = match t.strip_suffix('%') {
                    Some(d) => (d.trim(), true),
                    None => (t, false),
                };
                match digits.parse::<u32>() {
                    Ok(p) if percent && p > 100 => {
                        self.error(
                            path,
                            "failure-budget-out-of-range",
                            format!("maxFailures of {owner} is {text:?}, more than 100%"),
                            Some("a percent of the regions is at most \"100%\"".into()),
                        );
                        None
                    }
                    Ok(p) if percent => Some(FailureBudget::Percent(p)),
                    Ok(n) => Some(FailureBudget::Count(n as usize)),
                    Err(_) => {
                        self.error(
                            path,
                            "invalid-failure-budget",
                            format!("maxFailures of {owner} is {text:?}, neither a count nor a percent"),
                            Some(HINT.into()),
                        );
                        None
                    }
                }
            }
        }
    }

    /// A duration field. Zero is never a useful value for any of them.
    pub(super) fn span(&mut self, path: &str, text: Option<&str>, default: Span) -> Span {
        let Some(text) = text else { return default };
        let field = field_of(path);
        const FORMAT: &str = "write durations like 90s, 5m or 1h30m";
        if text.trim_start().starts_with('-') {
            self.error(
                path,
                "negative-duration",
                format!("{field} {text:?} is negative"),
                Some("use a positive duration such as 5m".into()),
            );
            return default;
        }
        match text.parse::<Span>() {
            Ok(span) if span.is_zero() => {
                self.error(
                    path,
                    "zero-duration",
                    format!("{field} {text:?} must be longer than zero"),
                    Some("use a positive duration such as 5m".into()),
                );
                default
            }
            Ok(span) => span,
            Err(e) => {
                let message = match &e {
                    SpanError::Empty => format!("{field} is empty"),
                    SpanError::MissingUnit(..) => format!("{field} {text:?} has no unit"),
                    SpanError::UnknownUnit(_, unit) => format!("{field} {text:?} has unknown unit {unit:?}"),
                    SpanError::NotANumber(_) => format!("{field} {text:?} is not a duration"),
                    SpanError::Overflow(_) => format!("{field} {text:?} is too long"),
                };
                let hint = match (e, duration_suggestion(text)) {
                    (_, Some(better)) => format!("did you mean {better}?"),
                    (SpanError::MissingUnit(_, n), None) => format!("write {n}s, {n}m or {n}h"),
                    (SpanError::Overflow(_), None) => "use a duration of at most a few days".into(),
                    (SpanError::UnknownUnit(..), None) => format!("units are ms, s, m, h and d; {FORMAT}"),
                    _ => FORMAT.into(),
                };
                self.error(path, "invalid-duration", message, Some(hint));
                default
            }
        }
    }

    /// Names must be present and unique; returns name -> index of its first definition.
    pub(super) fn names<'n>(
        &mut self,
        what: &str,
        list: &str,
        names: impl Iterator<Item = &'n str>,
    ) -> HashMap<&'n str, usize> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = format!("{list}[{i}].name");
            if name.trim().is_empty() {
                self.error(
                    &path,
                    "empty-name",
                    format!("{what} name is empty"),
                    Some(format!("give the {what} a name")),
                );
            } else if let Some(first) = seen.get(name) {
                let first_line = self.line_of(&format!("{list}[{first}].name"));
                self.error(
                    &path,
                    "duplicate-name",
                    format!("duplicate {what} {name:?}"),
                    Some(format!("it is first defined on line {first_line}; rename or remove one of them")),
                );
            } else {
                seen.insert(name, i);
            }
        }
        seen
    }

    /// Approval flags named by a region or a wave.
    pub(super) fn flags(&mut self, path: &str, flags: &[String]) {
        for (j, flag) in flags.iter().enumerate() {
            if flag.trim().is_empty() {
                self.error(
                    &format!("{path}[{j}]"),
                    "empty-flag",
                    "approval flag is empty".into(),
                    Some("name the flag an Approval grants, e.g. jp-regulator".into()),
                );
            } else if flags[..j].contains(flag) {
                self.error(
                    &format!("{path}[{j}]"),
                    "duplicate-flag",
                    format!("approval flag {flag:?} is listed twice"),
                    Some("remove the repeat".into()),
                );
            }
        }
    }
}

/// A Kubernetes object name (a DNS subdomain, RFC 1123): at most 253 characters, labels
/// separated by '.', each 1 to 63 lowercase letters, digits and '-', starting and ending
/// with a letter or digit.
pub(crate) fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && label.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && label.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// Object names follow Kubernetes rules so the same file works as a custom resource.
pub(super) fn check_name(doc: &Document, what: &str, name: &str, report: &mut Report) {
    if is_object_name(name) {
        return;
    }
    let rule = "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
    let suggestion: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .collect();
    let suggestion = suggestion
        .split('.')
        .map(|label| label.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|label| !label.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    let suggestion = if is_object_name(&suggestion) { suggestion } else { String::new() };
    let hint = if suggestion.is_empty() || suggestion.len() > 253 {
        rule.to_string()
    } else {
        format!("{rule}, e.g. {suggestion:?}")
    };
    let message = if name.is_empty() {
        format!("{what} name is empty")
    } else {
        format!("{what} name {name:?} is not a valid object name")
    };
    report.push(doc.error("metadata.name", "invalid-name", message, Some(hint)));
}

/// What a malformed duration most likely means: `2 hours` -> `2h`, `1w` -> `7d`.
pub(super) fn duration_suggestion(text: &str) -> Option<String> {
    let mut out = String::new();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, factor) = match rest[..unit_len].to_ascii_lowercase().as_str() {
            "ms" | "msec" | "millis" | "milliseconds" => ("ms", 1),
            "s" | "sec" | "secs" | "second" | "seconds" => ("s", 1),
            "m" | "min" | "mins" | "minute" | "minutes" => ("m", 1),
            "h" | "hr" | "hrs" | "hour" | "hours" => ("h", 1),
            "d" | "day" | "days" => ("d", 1),
            "w" | "wk" | "week" | "weeks" => ("d", 7),
            _ => return None,
        };
        rest = &rest[unit_len..];
        out.push_str(&format!("{}{unit}", number.checked_mul(factor)?));
    }
    (out != text && out.parse::<Span>().is_ok_and(|s| !s.is_zero())).then_some(out)
}

/// The last field name of a path: `spec.waves[2].bake` -> `bake`.
pub(super) fn field_of(path: &str) -> &str {
    let end = path.rfind('[').filter(|&i| !path[i..].contains('.')).unwrap_or(path.len());
    let head = &path[..end];
    head.rsplit('.').next().unwrap_or(head)
}

#[cfg(test)]
mod tests {
    use super::is_object_name;

    #[test]
    fn object_names_are_dns_subdomains() {
        for good in
            ["a", "jp-regulator-2026-05", "a.b", "a-1.b-2.c", "0", &"a".repeat(63), &format!("{}.b", "a".repeat(63))]
        {
            assert!(is_object_name(good), "{good:?} should be valid");
        }
        for bad in ["", "a..b", ".a", "a.", "a.-b", "a-.b", "A", "a_b", "a b", &"a".repeat(64), &"a.".repeat(127)] {
            assert!(!is_object_name(bad), "{bad:?} should be invalid");
        }
    }
}
