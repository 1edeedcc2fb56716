//! Health verdicts and the pure assessor that turns a measured value into one.
//!
//! A verdict is one of four things and never more optimistic than the data: a missing,
//! stale, NaN or low-traffic value is `NoData`, a failed read is `Error`, and what those mean
//! is the plan's `noData` choice. Adapters fetch values; this module only judges them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::CheckLimits;
use crate::relative::Baseline;

/// The outcome of one evaluation of one check for one (region, service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthVerdict {
    Healthy,
    Unhealthy,
    /// No series, too few samples, NaN, or stale.
    NoData,
    /// The source could not be read (timeout, HTTP error, parse error, partial response).
    Error,
}

/// One evaluation, as fed to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSample {
    pub region: String,
    pub service: String,
    pub check: String,
    pub verdict: HealthVerdict,
    /// The measured value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// What went wrong, for `NoData` and `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the value was measured.
    pub at: DateTime<Utc>,
    /// For a check with a `relative` part: the fleet's value the region was compared with
    /// (`relative::baseline`), set whenever the region had a value to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// Judge a value against a check's limits. `samples` is the traffic guard's count, when
/// the check has one; `None` there means the guard's own query returned nothing.
pub fn assess(limits: &CheckLimits, value: Option<f64>, samples: Option<f64>) -> HealthVerdict {
    if let Some(min_samples) = limits.min_samples {
        match samples {
            Some(n) if n.is_finite() && n >= min_samples => {}
            _ => return HealthVerdict::NoData,
        }
    }
    let Some(value) = value.filter(|v| !v.is_nan()) else {
        return HealthVerdict::NoData;
    };
    let too_low = limits.min.is_some_and(|min| value < min);
    let too_high = limits.max.is_some_and(|max| value > max);
    if too_low || too_high { HealthVerdict::Unhealthy } else { HealthVerdict::Healthy }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::NoDataPolicy;

    fn limits(min: Option<f64>, max: Option<f64>, min_samples: Option<f64>) -> CheckLimits {
        CheckLimits { min, max, failure_limit: 1, no_data: NoDataPolicy::Hold, min_samples }
    }

    #[test]
    fn judges_values_against_bounds() {
        let l = limits(None, Some(0.01), None);
        assert_eq!(assess(&l, Some(0.0), None), HealthVerdict::Healthy);
        assert_eq!(assess(&l, Some(0.01), None), HealthVerdict::Healthy);
        assert_eq!(assess(&l, Some(0.02), None), HealthVerdict::Unhealthy);
        assert_eq!(assess(&l, Some(f64::INFINITY), None), HealthVerdict::Unhealthy);
        let l = limits(Some(0.99), None, None);
        assert_eq!(assess(&l, Some(0.5), None), HealthVerdict::Unhealthy);
    }

    #[test]
    fn missing_nan_and_low_traffic_are_never_healthy() {
        let l = limits(None, Some(0.01), Some(100.0));
        assert_eq!(assess(&l, None, Some(500.0)), HealthVerdict::NoData);
        assert_eq!(assess(&l, Some(f64::NAN), Some(500.0)), HealthVerdict::NoData);
        assert_eq!(assess(&l, Some(0.0), Some(99.0)), HealthVerdict::NoData);
        assert_eq!(assess(&l, Some(0.0), None), HealthVerdict::NoData);
        assert_eq!(assess(&l, Some(0.0), Some(f64::NAN)), HealthVerdict::NoData);
        assert_eq!(assess(&l, Some(0.0), Some(100.0)), HealthVerdict::Healthy);
    }
}
