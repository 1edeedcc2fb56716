//! Turning what was read for one region into a verdict. Pure: no I/O, no clock.
//!
//! Owns the fail-closed order of judgement: a failed read is `Error`; a missing, stale or
//! NaN value (or traffic-guard count) is `NoData`; only then does
//! [`meridian_core::health::assess`] compare the value with the region's limits, and, for a
//! check with a `relative` part, [`meridian_core::relative`] compare it with the fleet's
//! baseline (the usable values of the baseline regions, read from the same query by the same
//! rules: [`usable_value`]). It must not fetch anything and must never produce `Healthy`
//! without `assess` saying so.

use chrono::{DateTime, TimeDelta, Utc};
use meridian_core::health::{HealthSample, HealthVerdict, assess};
use meridian_core::plan::CheckLimits;
use meridian_core::relative::{self, Baseline, RelativeLimit};

/// What a source read for one region of one query.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// One value, with the time it stands for.
    Value { value: f64, at: DateTime<Utc> },
    /// Nothing to judge (no series, null): `NoData`, with why.
    Missing(String),
    /// The read failed or was ambiguous: `Error`, with why.
    Failed(String),
}

/// Everything `judge` needs besides the readings.
#[derive(Debug, Clone, Copy)]
pub struct Judgement<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub check: &'a str,
    /// The region's limits (`settings.checks[i]`).
    pub limits: &'a CheckLimits,
    pub now: DateTime<Utc>,
    /// Oldest acceptable value; a timestamp this far ahead of `now` is an error (clock skew).
    pub max_age: TimeDelta,
    /// The check's `relative` part and the usable values of the baseline regions (from the
    /// same query), when it has one.
    pub fleet: Option<Fleet<'a>>,
}

/// What a region of a relative check is compared with.
#[derive(Debug, Clone, Copy)]
pub struct Fleet<'a> {
    pub relative: &'a RelativeLimit,
    /// (region, usable value) of the baseline regions, in the engine's order.
    pub values: &'a [(&'a str, f64)],
}

/// Judge one region's reading of a check and, when the check has a traffic guard, of its
/// sample count. `guard` is `None` only when the check has no guard query.
pub fn judge(j: &Judgement<'_>, reading: &Reading, guard: Option<&Reading>) -> HealthSample {
    let (value, at, samples) = match usable(j, reading, guard) {
        Ok(usable) => usable,
        Err(Unusable::Error(detail)) => return error_sample(j.region, j.service, j.check, detail, j.now),
        Err(Unusable::NoData(detail)) => return sample(j, HealthVerdict::NoData, None, Some(detail), j.now),
    };
    let absolute = assess(j.limits, Some(value), samples);
    let baseline: Option<Baseline> = j.fleet.map(|f| relative::baseline(f.relative, j.region, f.values));
    let verdict = match &baseline {
        Some(b) => relative::assess(absolute, value, b),
        None => absolute,
    };
    let detail = match (verdict, &baseline) {
        (HealthVerdict::Healthy, _) => None,
        (HealthVerdict::Unhealthy, Some(b)) if absolute == HealthVerdict::Healthy => Some(b.compare(value)),
        (HealthVerdict::Unhealthy, _) => Some(out_of_bounds(j.limits, value)),
        (HealthVerdict::NoData, Some(b)) if absolute == HealthVerdict::Healthy => {
            Some(format!("{}: the relative part has no verdict", b.compare(value)))
        }
        (HealthVerdict::NoData | HealthVerdict::Error, _) => Some("judged without data".into()),
    };
    // The value's own timestamp: the engine orders samples by it.
    HealthSample { baseline, ..sample(j, verdict, Some(value), detail, at) }
}

/// The value of a baseline region's reading, by the same rules a judged region's value must
/// pass (fresh, not NaN, over the traffic guard), and finite; `None` when it does not count.
/// `j` is the baseline region's own judgement (its region, limits, `fleet: None`).
pub fn usable_value(j: &Judgement<'_>, reading: &Reading, guard: Option<&Reading>) -> Option<f64> {
    usable(j, reading, guard).ok().map(|(value, _, _)| value).filter(|v| v.is_finite())
}

enum Unusable {
    Error(String),
    NoData(String),
}

/// A value to judge: the value, its timestamp and the traffic guard's count.
type Usable = (f64, DateTime<Utc>, Option<f64>);

/// The value to judge, or why there is nothing to judge.
fn usable(j: &Judgement<'_>, reading: &Reading, guard: Option<&Reading>) -> Result<Usable, Unusable> {
    let error = |detail: String| -> Result<Usable, Unusable> { Err(Unusable::Error(detail)) };
    let no_data = |detail: String| -> Result<Usable, Unusable> { Err(Unusable::NoData(detail)) };
    match (reading, guard) {
        (Reading::Failed(why), _) => return error(why.clone()),
        (_, Some(Reading::Failed(why))) => return error(format!("traffic guard: {why}")),
        _ => {}
    }
    let (value, at) = match reading {
        Reading::Missing(why) => return no_data(why.clone()),
        Reading::Value { value, at } => (*value, *at),
        Reading::Failed(_) => unreachable!("handled above"),
    };
    if let Err(problem) = fresh(j, at) {
        return match problem {
            Freshness::Stale(why) => no_data(why),
            Freshness::Ahead(why) => error(why),
        };
    }
    if value.is_nan() {
        return no_data("value is NaN (no traffic, or a division by zero)".into());
    }
    let samples = match (j.limits.min_samples, guard) {
        (None, _) => None,
        (Some(_), None) => return no_data("the check has minSamples but no traffic-guard query".into()),
        (Some(min), Some(guard)) => match guard {
            Reading::Missing(why) => return no_data(format!("traffic guard: {why}")),
            Reading::Failed(_) => unreachable!("handled above"),
            Reading::Value { value: n, at: guard_at } => {
                if let Err(problem) = fresh(j, *guard_at) {
                    return match problem {
                        Freshness::Stale(why) => no_data(format!("traffic guard: {why}")),
                        Freshness::Ahead(why) => error(format!("traffic guard: {why}")),
                    };
                }
                if !(n.is_finite() && *n >= min) {
                    return no_data(format!("traffic guard: {n} samples, fewer than minSamples {min}"));
                }
                Some(*n)
            }
        },
    };
    Ok((value, at, samples))
}

enum Freshness {
    Stale(String),
    Ahead(String),
}

fn fresh(j: &Judgement<'_>, at: DateTime<Utc>) -> Result<(), Freshness> {
    let age = j.now - at;
    if age > j.max_age {
        return Err(Freshness::Stale(format!(
            "value from {} is {}s old, older than the {}s staleness bound",
            at.to_rfc3339(),
            age.num_seconds(),
            j.max_age.num_seconds()
        )));
    }
    if -age > j.max_age {
        return Err(Freshness::Ahead(format!(
            "value timestamp {} is {}s ahead of now; check the clocks",
            at.to_rfc3339(),
            (-age).num_seconds()
        )));
    }
    Ok(())
}

fn out_of_bounds(limits: &CheckLimits, value: f64) -> String {
    match (limits.min, limits.max) {
        (Some(min), _) if value < min => format!("{value} is below min {min}"),
        (_, Some(max)) if value > max => format!("{value} is above max {max}"),
        _ => format!("{value} is out of bounds"),
    }
}

fn sample(
    j: &Judgement<'_>,
    verdict: HealthVerdict,
    value: Option<f64>,
    detail: Option<String>,
    at: DateTime<Utc>,
) -> HealthSample {
    HealthSample {
        region: j.region.to_string(),
        service: j.service.to_string(),
        check: j.check.to_string(),
        verdict,
        value,
        detail,
        at,
        baseline: None,
    }
}

/// An `Error` sample, stamped `now` so that the engine takes it as newer than what it holds.
pub(crate) fn error_sample(
    region: &str,
    service: &str,
    check: &str,
    detail: String,
    now: DateTime<Utc>,
) -> HealthSample {
    HealthSample {
        region: region.to_string(),
        service: service.to_string(),
        check: check.to_string(),
        verdict: HealthVerdict::Error,
        value: None,
        detail: Some(detail),
        at: now,
        baseline: None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use meridian_core::manifest::NoDataPolicy;

    use super::*;

    fn limits(max: f64, min_samples: Option<f64>) -> CheckLimits {
        CheckLimits { min: None, max: Some(max), failure_limit: 1, no_data: NoDataPolicy::Hold, min_samples }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn value(v: f64, secs_ago: i64) -> Reading {
        Reading::Value { value: v, at: now() - TimeDelta::seconds(secs_ago) }
    }

    fn run(limits: &CheckLimits, reading: Reading, guard: Option<Reading>) -> HealthSample {
        let j = Judgement {
            region: "jp",
            service: "store",
            check: "errors",
            limits,
            now: now(),
            max_age: TimeDelta::seconds(30),
            fleet: None,
        };
        judge(&j, &reading, guard.as_ref())
    }

    #[test]
    fn table() {
        use HealthVerdict::*;
        let plain = limits(0.01, None);
        let guarded = limits(0.01, Some(100.0));
        let missing = || Reading::Missing("no series".into());
        let failed = || Reading::Failed("boom".into());
        let cases: Vec<(&str, &CheckLimits, Reading, Option<Reading>, HealthVerdict)> = vec![
            ("healthy", &plain, value(0.001, 1), None, Healthy),
            ("unhealthy", &plain, value(0.5, 1), None, Unhealthy),
            ("infinite is unhealthy", &plain, value(f64::INFINITY, 1), None, Unhealthy),
            ("nan", &plain, value(f64::NAN, 1), None, NoData),
            ("missing", &plain, missing(), None, NoData),
            ("failed", &plain, failed(), None, Error),
            ("stale", &plain, value(0.0, 31), None, NoData),
            ("just fresh", &plain, value(0.0, 30), None, Healthy),
            ("ahead of now", &plain, value(0.0, -31), None, Error),
            ("guarded healthy", &guarded, value(0.0, 1), Some(value(100.0, 1)), Healthy),
            ("guarded unhealthy", &guarded, value(0.2, 1), Some(value(500.0, 1)), Unhealthy),
            ("low traffic", &guarded, value(0.0, 1), Some(value(99.0, 1)), NoData),
            ("low traffic hides unhealthy", &guarded, value(0.9, 1), Some(value(1.0, 1)), NoData),
            ("guard nan", &guarded, value(0.0, 1), Some(value(f64::NAN, 1)), NoData),
            ("guard missing", &guarded, value(0.0, 1), Some(missing()), NoData),
            ("guard stale", &guarded, value(0.0, 1), Some(value(500.0, 99)), NoData),
            ("guard failed", &guarded, value(0.0, 1), Some(failed()), Error),
            ("guard failed beats missing value", &guarded, missing(), Some(failed()), Error),
            ("guard without query", &guarded, value(0.0, 1), None, NoData),
        ];
        for (name, limits, reading, guard, want) in cases {
            let s = run(limits, reading, guard);
            assert_eq!(s.verdict, want, "{name}: {s:?}");
            assert_eq!(s.detail.is_none(), want == Healthy, "{name}: detail {s:?}");
            assert_eq!((s.region.as_str(), s.service.as_str(), s.check.as_str()), ("jp", "store", "errors"));
        }
    }

    #[test]
    fn a_baseline_value_counts_only_when_a_judged_one_would_be_read() {
        let l = limits(0.01, Some(100.0));
        let j = Judgement {
            region: "us-east",
            service: "store",
            check: "errors",
            limits: &l,
            now: now(),
            max_age: TimeDelta::seconds(30),
            fleet: None,
        };
        let guard = value(500.0, 1);
        assert_eq!(usable_value(&j, &value(0.5, 1), Some(&guard)), Some(0.5), "its own max does not matter");
        assert_eq!(usable_value(&j, &value(0.0, 31), Some(&guard)), None, "stale");
        assert_eq!(usable_value(&j, &value(f64::NAN, 1), Some(&guard)), None);
        assert_eq!(usable_value(&j, &value(f64::INFINITY, 1), Some(&guard)), None);
        assert_eq!(usable_value(&j, &value(0.0, 1), Some(&value(99.0, 1))), None, "low traffic");
        assert_eq!(usable_value(&j, &Reading::Failed("boom".into()), Some(&guard)), None);
    }

    #[test]
    fn judged_samples_carry_the_value_timestamp_and_failures_carry_now() {
        let l = limits(0.01, None);
        let s = run(&l, value(0.001, 5), None);
        assert_eq!(s.at, now() - TimeDelta::seconds(5));
        assert_eq!(s.value, Some(0.001));
        let s = run(&l, value(0.001, 500), None);
        assert_eq!((s.at, s.value), (now(), None));
        assert!(s.detail.unwrap().contains("older than the 30s staleness bound"));
        let s = run(&l, value(0.5, 0), None);
        assert_eq!(s.detail.as_deref(), Some("0.5 is above max 0.01"));
    }
}
