//! When traffic moves: steps, windows and calendar freezes, of the plan or of a region.
//!
//! Owns turning those values into typed ones (`Vec<u32>`, [`Window`], [`Freeze`]) with
//! located errors. It does not judge risks (`risks`) and does not know whose values they
//! are beyond the path and origin it is given.

use chrono::NaiveDate;

use super::PlanChecker;
use crate::diagnostics::closest;
use crate::freeze::{DailyRange, Freeze};
use crate::manifest::{FreezeSpec, WindowSpec};
use crate::plan::{DEFAULT_STEPS, Origin};
use crate::window::{DAY_NAMES, Window, parse_clock, parse_day};

impl<'d> PlanChecker<'d, '_> {
    pub(super) fn steps(&mut self, path: &str, raw: Option<&[u32]>) -> Vec<u32> {
        let Some(steps) = raw else { return DEFAULT_STEPS.to_vec() };
        if steps.is_empty() {
            self.error(
                path,
                "empty-steps",
                "steps is empty".into(),
                Some("list traffic percentages ending at 100, e.g. [1, 10, 50, 100], or leave steps out".into()),
            );
            return DEFAULT_STEPS.to_vec();
        }
        let before = self.errors;
        let mut last_flagged = false;
        for (i, &step) in steps.iter().enumerate() {
            let p = format!("{path}[{i}]");
            last_flagged = true;
            if step == 0 || step > 100 {
                let hint = if step == 0 {
                    "a unit at 0 % has no traffic; start at 1 or more"
                } else {
                    "steps are traffic percentages; the last one is 100"
                };
                self.error(
                    &p,
                    "step-out-of-range",
                    format!("step {step} is not a percentage from 1 to 100"),
                    Some(hint.into()),
                );
            } else if i > 0 && step <= steps[i - 1] {
                self.error(
                    &p,
                    "steps-not-increasing",
                    format!("step {step} does not rise above the step before it ({})", steps[i - 1]),
                    Some("steps must be strictly increasing, e.g. [1, 10, 50, 100]".into()),
                );
            } else {
                last_flagged = false;
            }
        }
        if let Some(&last) = steps.last()
            && last != 100
            && !last_flagged
        {
            self.error(
                &format!("{path}[{}]", steps.len() - 1),
                "steps-not-ending-at-100",
                format!("steps end at {last}, not 100"),
                Some("append 100: a rollout is done only at full traffic".into()),
            );
        }
        if self.errors > before { DEFAULT_STEPS.to_vec() } else { steps.to_vec() }
    }

    pub(super) fn windows(&mut self, path: &str, raw: &[WindowSpec]) -> Vec<Window> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let base = format!("{path}[{i}]");
            let mut days = [w.days.is_empty(); 7];
            for (j, day) in w.days.iter().enumerate() {
                match parse_day(day) {
                    Some(d) if days[d] => self.error(
                        &format!("{base}.days[{j}]"),
                        "duplicate-day",
                        format!("day {day:?} is listed twice in this window"),
                        Some("remove the repeat".into()),
                    ),
                    Some(d) => days[d] = true,
                    None => {
                        let hint = closest(day, DAY_NAMES)
                            .or_else(|| day.get(..3).and_then(|prefix| closest(prefix, DAY_NAMES)))
                            .map(|d| format!("did you mean {d:?}?"))
                            .unwrap_or_else(|| format!("use {}", DAY_NAMES.join(", ")));
                        self.error(
                            &format!("{base}.days[{j}]"),
                            "invalid-day",
                            format!("unknown day {day:?}"),
                            Some(hint),
                        )
                    }
                }
            }
            let mut clock = |field: &str, text: &str| match parse_clock(text) {
                Some(1440) if field == "from" => {
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-time",
                        "a window cannot open at 24:00".into(),
                        Some("use 00:00".into()),
                    );
                    None
                }
                Some(m) => Some(m),
                None => {
                    let hint = match text.split_once(':') {
                        Some((h, m)) if h.len() == 1 && m.len() == 2 => format!("write it as \"0{h}:{m}\""),
                        _ => "write local times as HH:MM from 00:00 to 24:00, e.g. 09:00 or 17:30".into(),
                    };
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-time",
                        format!("window {field} {text:?} is not a time of day"),
                        Some(hint),
                    );
                    None
                }
            };
            let (from, to) = (clock("from", &w.from), clock("to", &w.to));
            let (Some(from), Some(to)) = (from, to) else { continue };
            if from == to {
                self.error(
                    &base,
                    "empty-window",
                    format!("window from {} to {} is empty", w.from, w.to),
                    Some("a window open all day runs from 00:00 to 24:00".into()),
                );
                continue;
            }
            out.push(Window { days, from, to: if to == 1440 && from == 0 { 1440 } else { to % 1440 } });
        }
        out
    }

    /// Calendar freezes of the plan or of a region.
    pub(super) fn freezes(&mut self, path: &str, raw: &[FreezeSpec], origin: Origin) -> Vec<Freeze> {
        let mut out = Vec::new();
        for (i, f) in raw.iter().enumerate() {
            let base = format!("{path}[{i}]");
            let before = self.errors;
            if f.reason.trim().is_empty() {
                self.error(
                    &format!("{base}.reason"),
                    "empty-reason",
                    "freeze has no reason".into(),
                    Some("say why, e.g. reason: Golden Week; it is shown as the blocked reason".into()),
                );
            }
            let mut date = |field: &str, text: &str| match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    // The first 10 bytes, when they are whole characters (a date written with a
                    // time after it); never a slice through a character.
                    let day = text.get(..10).filter(|_| text.len() > 10);
                    let hint = match day {
                        Some(day) if NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok() => format!(
                            "a freeze covers whole local days: write {day}, and add daily: {{from: \"HH:MM\", to: \"HH:MM\"}} for hours"
                        ),
                        _ => "write dates as YYYY-MM-DD, e.g. 2026-04-29".into(),
                    };
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-date",
                        format!("freeze {field} {text:?} is not a date"),
                        Some(hint),
                    );
                    None
                }
            };
            let (from, to) = (date("from", &f.from), date("to", &f.to));
            if let (Some(from), Some(to)) = (from, to)
                && to < from
            {
                self.error(
                    &format!("{base}.to"),
                    "freeze-ends-before-start",
                    format!("freeze ends on {to}, before it starts on {from}"),
                    Some("to is the last frozen day, inclusive; it may equal from".into()),
                );
            }
            let daily = f.daily.as_ref().and_then(|d| {
                let mut clock = |field: &str, text: &str| match parse_clock(text) {
                    Some(1440) if field == "from" => {
                        self.error(
                            &format!("{base}.daily.from"),
                            "invalid-time",
                            "a daily freeze cannot start at 24:00".into(),
                            Some("use 00:00".into()),
                        );
                        None
                    }
                    Some(m) => Some(m),
                    None => {
                        self.error(
                            &format!("{base}.daily.{field}"),
                            "invalid-time",
                            format!("daily {field} {text:?} is not a time of day"),
                            Some("write local times as HH:MM from 00:00 to 24:00, e.g. 09:00".into()),
                        );
                        None
                    }
                };
                let (from, to) = (clock("from", &d.from)?, clock("to", &d.to)?);
                if from == to % 1440 && !(from == 0 && to == 1440) {
                    self.error(
                        &format!("{base}.daily"),
                        "empty-window",
                        format!("daily range from {} to {} is empty", d.from, d.to),
                        Some("leave daily out to freeze whole days".into()),
                    );
                    return None;
                }
                Some(DailyRange { from, to: if to == 1440 && from == 0 { 1440 } else { to % 1440 } })
            });
            if self.errors > before {
                continue;
            }
            let (Some(from), Some(to)) = (from, to) else { continue };
            out.push(Freeze { reason: f.reason.trim().to_string(), from, to, daily, origin });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::super::test_support::errors;

    /// A freeze date with a character of several bytes where a date ends (found by the
    /// `validate` fuzz target): an error with the plain hint, never a panic.
    #[test]
    fn a_freeze_date_cut_through_a_character_is_an_error_not_a_panic() {
        for to in ["2026-12-3\u{e9}T00:00:00Z", "2026-\u{fffd}-31T00:00:00Z", "2026-12-31T00:00:00Z"] {
            let yaml = format!(
                "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: p}}\nspec:\n  services: \
                 [{{name: signin}}]\n  regions: [{{name: jp}}]\n  waves: [{{name: all, regions: [jp]}}]\n  freezes:\n    \
                 - {{reason: Golden Week, from: 2026-12-01, to: \"{to}\"}}\n"
            );
            let bundle = load(&[("p.yaml".into(), yaml)], None);
            assert!(errors(&bundle).iter().any(|(path, _)| path == "spec.freezes[0].to"), "{to}: {:?}", bundle.report);
        }
    }
}
