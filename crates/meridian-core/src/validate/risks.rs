//! Risky but legal choices, reported as warnings (errors under `--strict`): a wide first
//! wave, missing or shrinking bakes, no health checks, checks without a traffic guard,
//! steps that multiply traffic by more than 10.
//!
//! Owns these judgements only; it never makes a plan invalid on its own.

use super::PlanChecker;
use crate::duration::Span;
use crate::manifest::RolloutPlan;
use crate::plan::Wave;

impl<'d> PlanChecker<'d, '_> {
    /// Risky but legal choices: warnings, errors under `--strict`.
    pub(super) fn risks(&mut self, raw: &RolloutPlan, waves: &[Wave]) {
        if let Some(first) = waves.first()
            && first.regions.len() > 1
        {
            self.warn(
                "spec.waves[0].regions",
                "risk-wide-first-wave",
                format!("first wave {:?} has {} regions", first.name, first.regions.len()),
                Some("start with a single canary region, so a bad release reaches one region first".into()),
            );
        }
        // The longest bake so far, and the wave it belongs to.
        let mut longest: Option<(Span, &str)> = None;
        for (w, wave) in waves.iter().enumerate() {
            let last = w + 1 == waves.len();
            let written = raw.spec.waves.get(w).and_then(|rw| rw.bake.as_deref());
            // The last wave's bake guards nothing: no wave follows it.
            if written.is_none() && !last {
                self.warn(
                    &format!("spec.waves[{w}]"),
                    "risk-no-bake",
                    format!("wave {:?} has no bake", wave.name),
                    Some("add bake (e.g. 30m) so problems surface before the next wave starts".into()),
                );
            }
            if let Some((span, name)) = longest
                && written.is_some()
                && !wave.bake.is_zero()
                && wave.bake < span
            {
                self.warn(
                    &format!("spec.waves[{w}].bake"),
                    "risk-shrinking-bake",
                    format!("wave {:?} bakes {} but the earlier wave {name:?} bakes {span}", wave.name, wave.bake),
                    Some(format!("later, larger waves should bake at least as long; use {span} or more")),
                );
            }
            if longest.is_none_or(|(s, _)| wave.bake > s) {
                longest = Some((wave.bake, wave.name.as_str()));
            }
        }
        // Checks written but all in error are reported as such, not as missing.
        if raw.spec.health.as_ref().is_none_or(|h| h.checks.is_empty()) {
            self.warn(
                "spec",
                "risk-no-health",
                "plan has no health checks, so steps advance on time alone".into(),
                Some("add spec.health.checks".into()),
            );
        }
        // Every check with one source, whether its source resolved or not: an error in a URL
        // does not make the missing guard any less of a risk.
        let written = raw.spec.health.as_ref().map(|h| h.checks.as_slice()).unwrap_or_default();
        for (i, check) in written.iter().enumerate() {
            if check.prometheus.is_some() != check.http.is_some() && check.min_samples.is_none() {
                self.warn(
                    &format!("spec.health.checks[{i}]"),
                    "risk-no-traffic-guard",
                    format!("check {:?} has no traffic guard", check.name),
                    Some("add minSamples: {query: ..., min: ...} so a silent region is never read as healthy".into()),
                );
            }
        }
    }

    /// Steps as written (plan or region) that multiply traffic by more than 10.
    pub(super) fn step_risks(&mut self, path: &str, steps: &[u32]) {
        for i in 1..steps.len() {
            let (from, to) = (steps[i - 1], steps[i]);
            if u64::from(to) > u64::from(from) * 10 {
                self.warn(
                    &format!("{path}[{i}]"),
                    "risk-big-step",
                    format!("step {to} is {} times the step before it ({from})", ratio(from, to)),
                    Some(format!(
                        "add a step in between, e.g. {}, so no step multiplies traffic by more than 10",
                        (u64::from(from) * 10).min(99)
                    )),
                );
            }
        }
    }
}

/// `to / from`, with one decimal when it is not whole.
pub(super) fn ratio(from: u32, to: u32) -> String {
    if from == 0 {
        return "infinitely many".into();
    }
    if to.is_multiple_of(from) { (to / from).to_string() } else { format!("{:.1}", f64::from(to) / f64::from(from)) }
}
