//! Human durations as ops engineers write them: `90s`, `5m`, `1h30m`, `2d`, `500ms`.
//!
//! Owns parsing and printing only; it never reads a clock.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;

/// A non-negative span of time with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    millis: u64,
}

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("empty duration")]
    Empty,
    #[error("duration {0:?} is missing a unit after {1}")]
    MissingUnit(String, u64),
    #[error("unknown unit {1:?} in duration {0:?}; use ms, s, m, h or d")]
    UnknownUnit(String, String),
    #[error("duration {0:?} does not start with a number")]
    NotANumber(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl Span {
    pub const ZERO: Span = Span { millis: 0 };

    pub const fn from_millis(millis: u64) -> Self {
        Span { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Span { millis: secs * 1000 }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// The span as a chrono delta, saturating at chrono's maximum.
    pub fn to_delta(self) -> TimeDelta {
        TimeDelta::try_milliseconds(i64::try_from(self.millis).unwrap_or(i64::MAX)).unwrap_or(TimeDelta::MAX)
    }

    /// A span from a chrono delta; negative deltas become zero.
    pub fn from_delta(delta: TimeDelta) -> Self {
        Span::from_millis(u64::try_from(delta.num_milliseconds()).unwrap_or(0))
    }
}

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(SpanError::Empty);
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(SpanError::NotANumber(text.to_string()));
            }
            let number: u64 = rest[..digits].parse().map_err(|_| SpanError::Overflow(text.to_string()))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if unit_len == 0 {
                return Err(SpanError::MissingUnit(text.to_string(), number));
            }
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let factor: u64 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                other => return Err(SpanError::UnknownUnit(text.to_string(), other.to_string())),
            };
            total = number
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .filter(|v| *v <= i64::MAX as u64)
                .ok_or_else(|| SpanError::Overflow(text.to_string()))?;
        }
        Ok(Span::from_millis(total))
    }
}

impl fmt::Display for Span {
    /// Prints the shortest exact form: `1h30m`, `45s`, `1500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        if !self.millis.is_multiple_of(1000) {
            return write!(f, "{}ms", self.millis);
        }
        let mut secs = self.millis / 1000;
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{}", secs / size, unit)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!("90s".parse::<Span>().unwrap(), Span::from_secs(90));
        assert_eq!("1h30m".parse::<Span>().unwrap(), Span::from_secs(5400));
        assert_eq!("2d".parse::<Span>().unwrap(), Span::from_secs(172_800));
        assert_eq!("500ms".parse::<Span>().unwrap(), Span::from_millis(500));
        assert_eq!("0s".parse::<Span>().unwrap(), Span::ZERO);
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!("".parse::<Span>(), Err(SpanError::Empty));
        assert!(matches!("5".parse::<Span>(), Err(SpanError::MissingUnit(_, 5))));
        assert!(matches!("5w".parse::<Span>(), Err(SpanError::UnknownUnit(_, _))));
        assert!(matches!("m5".parse::<Span>(), Err(SpanError::NotANumber(_))));
        assert!(matches!("-5m".parse::<Span>(), Err(SpanError::NotANumber(_))));
        assert!(matches!("99999999999999999999d".parse::<Span>(), Err(SpanError::Overflow(_))));
    }

    #[test]
    fn prints_shortest_exact_form() {
        for text in ["1h30m", "45s", "1500ms", "0s", "1d2h3m4s"] {
            assert_eq!(text.parse::<Span>().unwrap().to_string(), text);
        }
        assert_eq!("90s".parse::<Span>().unwrap().to_string(), "1m30s");
    }
}
