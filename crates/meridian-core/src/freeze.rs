//! Freeze periods: dates (with an optional daily time range) in a region's local time in
//! which no step may start, and run-time freezes declared by an operator. Is a moment
//! frozen, why, and when does the frozen period end.
//!
//! Owns freeze arithmetic only; the current time is always an argument. Local dates and
//! times go through the same conversion as windows (`window::local_to_utc`), so a freeze
//! ends at the right UTC instant across daylight-saving changes.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::plan::Origin;
use crate::state::RuntimeFreeze;
use crate::window::{clock, local_to_utc};

/// A validated calendar freeze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Freeze {
    pub reason: String,
    /// First local day.
    pub from: NaiveDate,
    /// Last local day (inclusive).
    pub to: NaiveDate,
    /// Only between these local times of each day; `None`: all day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailyRange>,
    /// Written in the plan (for every region) or in the region.
    pub origin: Origin,
}

/// Minutes after local midnight. `to` may be 1440, or at or before `from` to run past
/// midnight into the next day (that part belongs to the day it started on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyRange {
    pub from: u16,
    pub to: u16,
}

impl Serialize for DailyRange {
    /// As written: `{"from": "22:00", "to": "02:00"}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("DailyRange", 2)?;
        s.serialize_field("from", &clock(self.from))?;
        s.serialize_field("to", &clock(self.to))?;
        s.end()
    }
}

impl Freeze {
    /// When `now` is inside this freeze (read in `tz`), the end of that stretch.
    pub fn active_until(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(daily) = self.daily else {
            let start = local_to_utc(tz, self.from, 0)?;
            let end = local_to_utc(tz, self.to.checked_add_days(Days::new(1))?, 0)?;
            return (start <= now && now < end).then_some(end);
        };
        let today = now.with_timezone(&tz).date_naive();
        // The stretch may have begun today or, running past midnight, yesterday.
        [today.checked_sub_days(Days::new(1)), Some(today)].into_iter().flatten().find_map(|day| {
            if day < self.from || day > self.to {
                return None;
            }
            let start = local_to_utc(tz, day, daily.from)?;
            let end = if daily.to > daily.from {
                local_to_utc(tz, day, daily.to)?
            } else {
                local_to_utc(tz, day.checked_add_days(Days::new(1))?, daily.to)?
            };
            (start <= now && now < end).then_some(end)
        })
    }
}

impl std::fmt::Display for Freeze {
    /// `Golden Week 2026-04-29..2026-05-06`, `maintenance 2026-12-24 02:00-04:00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.reason, self.from)?;
        if self.to != self.from {
            write!(f, "..{}", self.to)?;
        }
        if let Some(d) = self.daily {
            write!(f, " {}-{}", clock(d.from), clock(d.to))?;
        }
        Ok(())
    }
}

/// What freezes a region at a moment: the reason to show, the run-time freeze's name if
/// that is what holds it, and when the whole frozen stretch ends (`None`: only when an
/// operator lifts a run-time freeze).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    pub reason: String,
    pub name: Option<String>,
    pub until: Option<DateTime<Utc>>,
}

/// One source of freezing, as an interval test: `Some(end)` when `at` is inside it, where
/// `end` is `None` for "until lifted".
pub(crate) trait FreezeSource {
    fn holds_at(&self, tz: Tz, at: DateTime<Utc>) -> Option<Option<DateTime<Utc>>>;
    fn reason(&self) -> &str;
    fn name(&self) -> Option<&str>;
}

impl FreezeSource for Freeze {
    fn holds_at(&self, tz: Tz, at: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
        self.active_until(tz, at).map(Some)
    }
    fn reason(&self) -> &str {
        &self.reason
    }
    fn name(&self) -> Option<&str> {
        None
    }
}

impl FreezeSource for RuntimeFreeze {
    fn holds_at(&self, _tz: Tz, at: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
        match self.until {
            None => Some(None),
            Some(until) => (at < until).then_some(Some(until)),
        }
    }
    fn reason(&self) -> &str {
        &self.reason
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Longest chain of back-to-back freezes followed; enough for a year of daily stretches.
const MAX_CHAIN: usize = 1000;

/// Is a region frozen at `now`, by any of `sources`? Overlapping and back-to-back freezes
/// are one stretch: `until` is when the last of them ends. The reason shown is the first
/// source (in the order given) that holds at `now`.
pub(crate) fn frozen_at(sources: &[&dyn FreezeSource], tz: Tz, now: DateTime<Utc>) -> Option<Frozen> {
    let first = sources.iter().find(|s| s.holds_at(tz, now).is_some())?;
    let mut until = now;
    for _ in 0..MAX_CHAIN {
        let mut next: Option<DateTime<Utc>> = None;
        for s in sources {
            match s.holds_at(tz, until) {
                Some(None) => {
                    return Some(Frozen {
                        reason: first.reason().to_string(),
                        name: first.name().map(str::to_string),
                        until: None,
                    });
                }
                Some(Some(end)) => next = Some(next.map_or(end, |n| n.max(end))),
                None => {}
            }
        }
        match next {
            Some(end) if end > until => until = end,
            _ => break,
        }
    }
    Some(Frozen { reason: first.reason().to_string(), name: first.name().map(str::to_string), until: Some(until) })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn freeze(from: NaiveDate, to: NaiveDate, daily: Option<(u16, u16)>) -> Freeze {
        Freeze {
            reason: "test".into(),
            from,
            to,
            daily: daily.map(|(from, to)| DailyRange { from, to }),
            origin: Origin::Plan,
        }
    }

    #[test]
    fn a_date_range_covers_whole_local_days() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let golden_week = freeze(date(2026, 4, 29), date(2026, 5, 6), None);
        // 2026-04-29 00:00 in Tokyo is 04-28 15:00 UTC; the freeze ends 05-07 00:00 Tokyo.
        assert_eq!(golden_week.active_until(tokyo, utc(2026, 4, 28, 14, 59)), None);
        assert_eq!(golden_week.active_until(tokyo, utc(2026, 4, 28, 15, 0)), Some(utc(2026, 5, 6, 15, 0)));
        assert_eq!(golden_week.active_until(tokyo, utc(2026, 5, 6, 15, 0)), None);
        // One day: from equals to.
        let one = freeze(date(2026, 6, 1), date(2026, 6, 1), None);
        assert_eq!(one.active_until(Tz::UTC, utc(2026, 6, 1, 23, 59)), Some(utc(2026, 6, 2, 0, 0)));
    }

    #[test]
    fn a_freeze_ending_after_a_daylight_saving_change_ends_at_local_midnight() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-06..03-08: starts at 05:00 UTC (EST), ends 03-09 00:00 EDT = 04:00 UTC.
        let f = freeze(date(2026, 3, 6), date(2026, 3, 8), None);
        assert_eq!(f.active_until(ny, utc(2026, 3, 6, 5, 0)), Some(utc(2026, 3, 9, 4, 0)));
        assert_eq!(f.active_until(ny, utc(2026, 3, 6, 4, 59)), None);
    }

    #[test]
    fn a_daily_range_holds_only_in_its_hours_and_may_run_past_midnight() {
        let f = freeze(date(2026, 6, 1), date(2026, 6, 2), Some((22 * 60, 2 * 60)));
        assert_eq!(f.active_until(Tz::UTC, utc(2026, 6, 1, 21, 59)), None);
        assert_eq!(f.active_until(Tz::UTC, utc(2026, 6, 1, 23, 0)), Some(utc(2026, 6, 2, 2, 0)));
        // The stretch that starts on the last day runs into the day after it.
        assert_eq!(f.active_until(Tz::UTC, utc(2026, 6, 3, 1, 0)), Some(utc(2026, 6, 3, 2, 0)));
        assert_eq!(f.active_until(Tz::UTC, utc(2026, 6, 3, 23, 0)), None);
        let business = freeze(date(2026, 6, 1), date(2026, 6, 1), Some((9 * 60, 1440)));
        assert_eq!(business.active_until(Tz::UTC, utc(2026, 6, 1, 12, 0)), Some(utc(2026, 6, 2, 0, 0)));
    }

    #[test]
    fn back_to_back_freezes_are_one_stretch() {
        let a = freeze(date(2026, 6, 1), date(2026, 6, 1), None);
        let b = Freeze { reason: "b".into(), ..freeze(date(2026, 6, 2), date(2026, 6, 3), None) };
        let c = freeze(date(2026, 6, 5), date(2026, 6, 5), None);
        let sources: [&dyn FreezeSource; 3] = [&a, &b, &c];
        let f = frozen_at(&sources, Tz::UTC, utc(2026, 6, 1, 12, 0)).unwrap();
        assert_eq!(f.until, Some(utc(2026, 6, 4, 0, 0)));
        assert_eq!(f.reason, "test");
        assert!(frozen_at(&sources, Tz::UTC, utc(2026, 6, 4, 12, 0)).is_none());
    }

    #[test]
    fn displays_dates_and_hours() {
        assert_eq!(freeze(date(2026, 4, 29), date(2026, 5, 6), None).to_string(), "test 2026-04-29..2026-05-06");
        assert_eq!(
            freeze(date(2026, 12, 24), date(2026, 12, 24), Some((120, 240))).to_string(),
            "test 2026-12-24 02:00-04:00"
        );
    }
}
