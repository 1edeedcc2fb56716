//! Recurring windows in a region's local time: is a moment inside one, and when does the
//! next one open. Correct across daylight-saving changes because every comparison is made
//! on local wall-clock time and converted to UTC through the region's time zone.
//!
//! Owns window arithmetic only; the current time is always an argument.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Days of the week in window order, Monday first.
pub const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A validated window: on the marked days, from `from` until `to` (minutes after local
/// midnight; `to` may be 1440, or at or before `from` to run past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub days: [bool; 7],
    pub from: u16,
    pub to: u16,
}

impl Window {
    /// Length in minutes; a window that ends at or before its start runs into the next day.
    fn length(&self) -> u32 {
        if self.to > self.from {
            u32::from(self.to - self.from)
        } else {
            1440 - u32::from(self.from) + u32::from(self.to)
        }
    }

    /// Is `now` inside this window, read in `tz`?
    pub fn contains(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&tz).naive_local();
        let minute = local.hour() * 60 + local.minute();
        let today = local.date();
        // The window may have opened today or, running past midnight, yesterday.
        for (date, offset) in [(today, 0u32), (today - Days::new(1), 1440)] {
            if !self.days[weekday_index(date)] {
                continue;
            }
            let since_open = (minute + offset).checked_sub(u32::from(self.from));
            if let Some(since_open) = since_open
                && since_open < self.length()
            {
                return true;
            }
        }
        false
    }

    /// The first moment at or after `now` at which this window is open, within 8 days.
    pub fn next_open(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.contains(tz, now) {
            return Some(now);
        }
        let today = now.with_timezone(&tz).date_naive();
        (0..8u64).find_map(|ahead| {
            let date = today.checked_add_days(Days::new(ahead))?;
            if !self.days[weekday_index(date)] {
                return None;
            }
            let open = local_to_utc(tz, date, self.from)?;
            (open > now).then_some(open)
        })
    }

    /// When the window that contains `now` closes, if it does contain it.
    pub fn closes_at(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.contains(tz, now) {
            return None;
        }
        let local = now.with_timezone(&tz).naive_local();
        let minute = local.hour() * 60 + local.minute();
        let opened_today = self.days[weekday_index(local.date())]
            && minute >= u32::from(self.from)
            && minute - u32::from(self.from) < self.length();
        let open_date = if opened_today { local.date() } else { local.date() - Days::new(1) };
        let close_minutes = u32::from(self.from) + self.length();
        let close_date = open_date.checked_add_days(Days::new(u64::from(close_minutes / 1440)))?;
        local_to_utc(tz, close_date, (close_minutes % 1440) as u16)
    }
}

impl std::fmt::Display for Window {
    /// `Mon-Thu 09:00-17:00`, `every day 22:00-02:00`, `Mon, Wed 09:00-24:00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}-{}", describe_days(&self.days), clock(self.from), clock(self.to))
    }
}

/// Minutes after midnight as `HH:MM` (1440 is `24:00`).
pub fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Marked days as runs: `every day`, `Mon-Fri`, `Mon, Wed, Fri-Sun`.
pub fn describe_days(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "every day".into();
    }
    let mut runs = Vec::new();
    let mut d = 0;
    while d < 7 {
        if !days[d] {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && days[d + 1] {
            d += 1;
        }
        runs.push(match d - start {
            0 => DAY_NAMES[start].to_string(),
            1 => format!("{}, {}", DAY_NAMES[start], DAY_NAMES[d]),
            _ => format!("{}-{}", DAY_NAMES[start], DAY_NAMES[d]),
        });
        d += 1;
    }
    runs.join(", ")
}

/// Any of `windows` open at `now`? No windows means always open.
pub fn any_open(windows: &[Window], tz: Tz, now: DateTime<Utc>) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(tz, now))
}

/// The earliest moment at or after `now` at which one of `windows` is open.
pub fn next_open(windows: &[Window], tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if windows.is_empty() {
        return Some(now);
    }
    windows.iter().filter_map(|w| w.next_open(tz, now)).min()
}

fn weekday_index(date: NaiveDate) -> usize {
    date.weekday().num_days_from_monday() as usize
}

/// Local wall-clock time to UTC. A time skipped by a DST jump resolves to the first valid
/// minute after it; a repeated time resolves to its first occurrence.
pub(crate) fn local_to_utc(tz: Tz, date: NaiveDate, minutes: u16) -> Option<DateTime<Utc>> {
    // A DST gap is at most a few hours; scan forward minute by minute through it.
    for minute in u32::from(minutes)..=u32::from(minutes) + 240 {
        let (day_offset, m) = (minute / 1440, minute % 1440);
        let day = date.checked_add_days(Days::new(u64::from(day_offset)))?;
        let time = NaiveTime::from_hms_opt(m / 60, m % 60, 0)?;
        if let Some(t) = tz.from_local_datetime(&day.and_time(time)).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// Parse `HH:MM` (00:00..24:00) into minutes after midnight.
pub fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Parse a day name (`Mon`, `monday`, ...) into its index, Monday = 0.
pub fn parse_day(text: &str) -> Option<usize> {
    let lower = text.trim().to_ascii_lowercase();
    const FULL: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    (0..7).find(|&i| lower == DAY_NAMES[i].to_ascii_lowercase() || lower == FULL[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn weekdays_9_to_17() -> Window {
        Window { days: [true, true, true, true, false, false, false], from: 540, to: 1020 }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn contains_uses_local_time() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let w = weekdays_9_to_17();
        // 2026-06-01 is a Monday. 00:30 UTC is 09:30 in Tokyo.
        assert!(w.contains(tokyo, utc(2026, 6, 1, 0, 30)));
        // 08:30 UTC is 17:30 in Tokyo: closed.
        assert!(!w.contains(tokyo, utc(2026, 6, 1, 8, 30)));
        // Friday is not a window day.
        assert!(!w.contains(tokyo, utc(2026, 6, 5, 1, 0)));
    }

    #[test]
    fn next_open_skips_to_the_next_window_day() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let w = weekdays_9_to_17();
        // Thursday 18:00 Tokyo -> next Monday 09:00 Tokyo (00:00 UTC).
        let thu_evening = utc(2026, 6, 4, 9, 0);
        assert_eq!(w.next_open(tokyo, thu_evening), Some(utc(2026, 6, 8, 0, 0)));
    }

    #[test]
    fn next_open_is_correct_across_daylight_saving_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let w = Window { days: [true; 7], from: 540, to: 1020 };
        // 2026-03-08: US clocks spring forward. Saturday 09:00 EST is 14:00 UTC,
        // Sunday 09:00 EDT is 13:00 UTC.
        assert_eq!(w.next_open(ny, utc(2026, 3, 7, 23, 0)), Some(utc(2026, 3, 8, 13, 0)));
        assert_eq!(w.next_open(ny, utc(2026, 3, 7, 0, 0)), Some(utc(2026, 3, 7, 14, 0)));
        // Autumn back: 2026-11-01 09:00 EST is 14:00 UTC.
        assert_eq!(w.next_open(ny, utc(2026, 10, 31, 23, 0)), Some(utc(2026, 11, 1, 14, 0)));
    }

    #[test]
    fn a_window_inside_a_dst_gap_opens_at_the_first_valid_minute() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 02:30 does not exist on 2026-03-08 in New York; 03:00 EDT (07:00 UTC) is next.
        let w = Window { days: [true; 7], from: 150, to: 240 };
        assert_eq!(w.next_open(ny, utc(2026, 3, 8, 5, 0)), Some(utc(2026, 3, 8, 7, 0)));
    }

    #[test]
    fn windows_past_midnight_belong_to_their_start_day() {
        let w = Window { days: [false, false, false, false, true, false, false], from: 1320, to: 120 };
        // Friday 23:00 and Saturday 01:00 inside; Saturday 23:00 outside.
        assert!(w.contains(Tz::UTC, utc(2026, 6, 5, 23, 0)));
        assert!(w.contains(Tz::UTC, utc(2026, 6, 6, 1, 0)));
        assert!(!w.contains(Tz::UTC, utc(2026, 6, 6, 23, 0)));
        assert_eq!(w.closes_at(Tz::UTC, utc(2026, 6, 6, 1, 0)), Some(utc(2026, 6, 6, 2, 0)));
    }

    #[test]
    fn describes_windows_in_words() {
        assert_eq!(weekdays_9_to_17().to_string(), "Mon-Thu 09:00-17:00");
        let w = Window { days: [true, false, true, false, true, true, true], from: 1320, to: 120 };
        assert_eq!(w.to_string(), "Mon, Wed, Fri-Sun 22:00-02:00");
        let w = Window { days: [true, true, false, false, false, false, false], from: 0, to: 1440 };
        assert_eq!(w.to_string(), "Mon, Tue 00:00-24:00");
        assert_eq!(describe_days(&[true; 7]), "every day");
    }

    #[test]
    fn parses_clocks_and_days() {
        assert_eq!(parse_clock("09:30"), Some(570));
        assert_eq!(parse_clock("24:00"), Some(1440));
        assert_eq!(parse_clock("24:01"), None);
        assert_eq!(parse_clock("9:30"), None);
        assert_eq!(parse_day("wednesday"), Some(2));
        assert_eq!(parse_day("Sun"), Some(6));
        assert_eq!(parse_day("Sonntag"), None);
    }
}
