//! Health relative to the fleet: a check's `relative` part judges a region's value against a
//! baseline made of the regions already fully enabled for the same service, read from the
//! very same query result (no extra query). Pure: no I/O, no clock.
//!
//! ```text
//!   engine state ──> watch::baseline_regions (fully enabled for the service) ──> EvalRequest.baseline
//!   one query result, split by region ──> usable values of those regions (fresh, finite, guard met)
//!        │ baseline(): leave out the region under judgement, need minBaselineRegions, median | mean
//!        v
//!   Baseline { kind, regions, value, limit } ──> assess(): absolute verdict first, then the limit
//! ```
//!
//! The rules, decided here and nowhere else:
//! - **Which regions count.** Regions whose unit of the request's service is enabled at 100 %
//!   (any wave, the one being judged included), never the region under judgement itself, and
//!   of those only the ones whose value in the same query is usable (present, fresh, finite,
//!   and over the check's `minSamples` guard when it has one). The engine names the regions
//!   ([`crate::watch::baseline_regions`]); the health adapter reads their values.
//! - **Kinds.** `median` (the default: one bad baseline region does not move it; the mean of
//!   the two middle values for an even count) and `mean`.
//! - **Too few regions.** With fewer usable baseline regions than `minBaselineRegions`
//!   (default 2) the relative part has no verdict: a value the absolute `min`/`max` accept is
//!   `NoData`, and the check's `noData` policy decides. An absolute failure still fails.
//! - **The limit.** A region is unhealthy by ratio when its value is above
//!   `max(maxRatio × baseline, baseline + minDelta)`. `minDelta` (default 0) is the absolute
//!   tolerance that makes a zero (or tiny) baseline usable: against a baseline of 0 with
//!   `minDelta: 0.001`, an error ratio of 0.0005 passes and 0.002 fails; with `minDelta` 0,
//!   any positive value fails against a zero baseline. The values are assumed to be
//!   "higher is worse" (error ratios, latencies); for a negative baseline the ratio term is
//!   below the baseline, so `baseline + minDelta` decides.
//! - **Evidence.** Every verdict of a relative check carries its [`Baseline`] (kind, value,
//!   regions, limit), kept in the unit's check state, the failure and the audit record, so a
//!   reader sees "0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central)".

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::health::HealthVerdict;
use crate::manifest::BaselineKind;

/// Default `minBaselineRegions`.
pub const DEFAULT_MIN_BASELINE_REGIONS: usize = 2;

/// A check's `relative` part, validated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelativeLimit {
    /// At least 1, finite.
    pub max_ratio: f64,
    pub baseline: BaselineKind,
    /// At least 1.
    pub min_baseline_regions: usize,
    /// At least 0, finite.
    pub min_delta: f64,
}

impl RelativeLimit {
    /// The greatest healthy value against `baseline`: `max(maxRatio × baseline, baseline + minDelta)`.
    pub fn limit(&self, baseline: f64) -> f64 {
        (self.max_ratio * baseline).max(baseline + self.min_delta)
    }
}

/// The fleet's value one region was compared with, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub kind: BaselineKind,
    /// The baseline regions whose value counted, in the order the engine named them.
    pub regions: Vec<String>,
    /// The combined value; `None` when fewer than `min_regions` regions counted (the relative
    /// part has no verdict then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The check's `minBaselineRegions`.
    pub min_regions: usize,
    /// The greatest healthy value, `max(maxRatio × value, value + minDelta)`; `None` with
    /// `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

impl Baseline {
    /// "0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit 0.018".
    pub fn compare(&self, value: f64) -> String {
        format!("{} vs {self}", shown(value))
    }
}

/// A value in words without float noise (`0.008`, not `0.008000000000000002`).
fn shown(v: f64) -> String {
    let rounded = (v * 1e9).round() / 1e9;
    if rounded.is_finite() && (rounded != 0.0 || v == 0.0) { rounded.to_string() } else { v.to_string() }
}

impl fmt::Display for Baseline {
    /// `baseline 0.009 (median of us-east, eu-west), limit 0.018`, or, without a verdict,
    /// `no baseline (1 fully enabled region with data: us-east; minBaselineRegions 2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.value, self.limit) {
            (Some(value), limit) => {
                write!(f, "baseline {} ({} of {})", shown(value), self.kind.as_str(), self.regions.join(", "))?;
                match limit {
                    Some(limit) => write!(f, ", limit {}", shown(limit)),
                    None => Ok(()),
                }
            }
            (None, _) => {
                let n = self.regions.len();
                let regions = if n == 1 { "region" } else { "regions" };
                let which = if n == 0 { String::new() } else { format!(": {}", self.regions.join(", ")) };
                write!(
                    f,
                    "no baseline ({n} fully enabled {regions} with data{which}; minBaselineRegions {})",
                    self.min_regions
                )
            }
        }
    }
}

/// The baseline for the region `judged`, from the usable values of the baseline regions
/// (`fleet`, in the engine's order). The judged region, a repeated region (its first value
/// counts) and a non-finite value are left out.
pub fn baseline(relative: &RelativeLimit, judged: &str, fleet: &[(&str, f64)]) -> Baseline {
    let mut regions: Vec<String> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    for &(region, value) in fleet {
        if region == judged || !value.is_finite() || regions.iter().any(|r| r == region) {
            continue;
        }
        regions.push(region.to_string());
        values.push(value);
    }
    let min_regions = relative.min_baseline_regions.max(1);
    let value = (values.len() >= min_regions).then(|| combine(relative.baseline, &mut values));
    Baseline { kind: relative.baseline, regions, value, min_regions, limit: value.map(|v| relative.limit(v)) }
}

/// Combine at least one finite value.
fn combine(kind: BaselineKind, values: &mut [f64]) -> f64 {
    match kind {
        BaselineKind::Median => {
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            if values.len() % 2 == 1 {
                values[mid]
            } else {
                // Halved before adding so two huge values do not overflow.
                values[mid - 1] / 2.0 + values[mid] / 2.0
            }
        }
        // Each divided first, for the same reason.
        BaselineKind::Mean => values.iter().map(|v| v / values.len() as f64).sum(),
    }
}

/// The verdict of a relative check: the absolute verdict (`health::assess`) stands unless it
/// is `Healthy`; then the value must be within the baseline's limit, and without a baseline
/// (too few regions) there is no verdict (`NoData`).
pub fn assess(absolute: HealthVerdict, value: f64, baseline: &Baseline) -> HealthVerdict {
    if absolute != HealthVerdict::Healthy {
        return absolute;
    }
    match baseline.limit {
        None => HealthVerdict::NoData,
        Some(limit) if value > limit => HealthVerdict::Unhealthy,
        Some(_) => HealthVerdict::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthVerdict::*;

    fn rel(max_ratio: f64, kind: BaselineKind, min: usize, min_delta: f64) -> RelativeLimit {
        RelativeLimit { max_ratio, baseline: kind, min_baseline_regions: min, min_delta }
    }

    const FLEET: [(&str, f64); 4] = [("us-east", 0.009), ("eu-west", 0.007), ("eu-central", 0.012), ("jp", 0.031)];

    #[test]
    fn the_median_of_the_other_regions_and_its_words() {
        let r = rel(2.0, BaselineKind::Median, 2, 0.0);
        let b = baseline(&r, "jp", &FLEET);
        assert_eq!(b.regions, ["us-east", "eu-west", "eu-central"], "jp is not its own baseline");
        assert_eq!(b.value, Some(0.009));
        assert_eq!(b.limit, Some(0.018));
        assert_eq!(assess(Healthy, 0.031, &b), Unhealthy);
        assert_eq!(assess(Healthy, 0.018, &b), Healthy, "the limit itself is healthy");
        assert_eq!(b.compare(0.031), "0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit 0.018");
    }

    #[test]
    fn kinds_combine_as_documented() {
        let even = [("a", 1.0), ("b", 4.0), ("c", 2.0), ("d", 10.0)];
        assert_eq!(baseline(&rel(2.0, BaselineKind::Median, 1, 0.0), "x", &even).value, Some(3.0));
        assert_eq!(baseline(&rel(2.0, BaselineKind::Mean, 1, 0.0), "x", &even).value, Some(4.25));
        let huge = [("a", f64::MAX), ("b", f64::MAX)];
        assert_eq!(baseline(&rel(1.0, BaselineKind::Mean, 1, 0.0), "x", &huge).value, Some(f64::MAX));
        assert_eq!(baseline(&rel(1.0, BaselineKind::Median, 1, 0.0), "x", &huge).value, Some(f64::MAX));
    }

    #[test]
    fn too_few_regions_give_no_verdict_but_absolute_failures_stand() {
        let r = rel(2.0, BaselineKind::Median, 3, 0.0);
        let fleet = [("us-east", 0.009), ("jp", 0.5), ("eu-west", f64::NAN), ("us-east", 0.1)];
        let b = baseline(&r, "jp", &fleet);
        assert_eq!((b.value, b.limit), (None, None));
        assert_eq!(b.regions, ["us-east"], "NaN and a repeated region do not count");
        assert_eq!(assess(Healthy, 0.0, &b), NoData);
        assert_eq!(assess(Unhealthy, 0.0, &b), Unhealthy);
        assert_eq!(assess(NoData, 0.0, &b), NoData);
        assert_eq!(
            b.compare(0.5),
            "0.5 vs no baseline (1 fully enabled region with data: us-east; minBaselineRegions 3)"
        );
        let none = baseline(&r, "jp", &[]);
        assert_eq!(none.to_string(), "no baseline (0 fully enabled regions with data; minBaselineRegions 3)");
    }

    #[test]
    fn a_zero_baseline_is_compared_with_min_delta() {
        let zero = [("a", 0.0), ("b", 0.0)];
        let strict = baseline(&rel(2.0, BaselineKind::Median, 2, 0.0), "x", &zero);
        assert_eq!(assess(Healthy, 0.0, &strict), Healthy);
        assert_eq!(assess(Healthy, 0.0001, &strict), Unhealthy);
        let tolerant = baseline(&rel(2.0, BaselineKind::Median, 2, 0.001), "x", &zero);
        assert_eq!(tolerant.limit, Some(0.001));
        assert_eq!(assess(Healthy, 0.0005, &tolerant), Healthy);
        assert_eq!(assess(Healthy, 0.002, &tolerant), Unhealthy);
        let negative = baseline(&rel(2.0, BaselineKind::Median, 1, 0.5), "x", &[("a", -1.0)]);
        assert_eq!(negative.limit, Some(-0.5), "baseline + minDelta decides below zero");
    }
}
