//! Conversions between the domain's values and the database's columns.
//!
//! Times are RFC 3339 text with nanoseconds, so they round-trip exactly and sort as text;
//! domain records are JSON; unsigned counters are checked into SQLite's signed integers.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_ts(s: &str, what: &'static str, key: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Corrupt {
        what,
        key: key.to_string(),
        detail: format!("bad time {s:?}: {e}"),
    })
}

pub(crate) fn parse_opt_ts(
    s: Option<String>,
    what: &'static str,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.map(|s| parse_ts(&s, what, key)).transpose()
}

pub(crate) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

pub(crate) fn decode<T: DeserializeOwned>(json: &str, what: &'static str, key: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { what, key: key.to_string(), detail: e.to_string() })
}

pub(crate) fn int(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

pub(crate) fn uint(value: i64, what: &'static str, key: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what,
        key: key.to_string(),
        detail: format!("negative value {value}"),
    })
}

pub(crate) fn percent(value: i64, what: &'static str, key: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        what,
        key: key.to_string(),
        detail: format!("percent {value} out of range"),
    })
}

/// A SQL `LIMIT` from a caller's `usize` (anything beyond `i64::MAX` means "no limit").
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Maps a SQLite error to a `StoreError` naming what was being done.
pub(crate) fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}
