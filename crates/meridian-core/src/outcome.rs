//! How a plan's rollout stands for whoever waits on it: is it done, is it clean, and if not,
//! which regions failed (where, why, and who accepted them) or were aborted.
//!
//! ```text
//!   plan, state ──> outcome() ──> Outcome { phase, waves, failed, aborted, summary }
//!                                    │  served by the API (plan list and detail)
//!                                    v
//!        meridian status --wait, run --exit-when-done, the dashboard: Outcome::end(scope)
//! ```
//!
//! Owns the one rule for "complete" versus "complete with every unit enabled", for failures
//! nobody accepted, and for the state a region is in (`region_state`, which the metrics
//! export). Pure: no I/O, no clock. It reads the state; it never decides anything about it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::HealthVerdict;
use crate::plan::Plan;
use crate::state::{AcceptedFailures, PlanPhase, PlanState, UnitPhase, UnitState, WaitReason, WavePhase};

/// A region's state from its units, the worst that holds first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegionState {
    /// Aborted (the region, its wave or the plan) and not every unit enabled.
    Aborted,
    /// A unit failed and kept its traffic (`onFailure: pause`).
    Failed,
    /// A unit failed and the region was set back to 0 % (`onFailure: rollback-region`).
    RolledBack,
    /// A unit is held at its traffic (an operator's pause, a failure elsewhere).
    Paused,
    /// Every unit is enabled.
    Enabled,
    /// A unit serves traffic or steps.
    Progressing,
    /// A unit may not start yet.
    Blocked,
    Pending,
}

impl RegionState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionState::Aborted => "aborted",
            RegionState::Failed => "failed",
            RegionState::RolledBack => "rolled-back",
            RegionState::Paused => "paused",
            RegionState::Enabled => "enabled",
            RegionState::Progressing => "progressing",
            RegionState::Blocked => "blocked",
            RegionState::Pending => "pending",
        }
    }
}

impl fmt::Display for RegionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of region `region` whose units are `units` (one region's slice of
/// `PlanState::units`). An aborted region is aborted, not failed: that is what the operator
/// asked for.
pub fn region_state(state: &PlanState, region: &str, units: &[UnitState]) -> RegionState {
    let any = |p: UnitPhase| units.iter().any(|u| u.phase == p);
    let all_enabled = units.iter().all(|u| u.phase == UnitPhase::Enabled);
    if (state.aborted || state.aborted_regions.contains(region)) && !all_enabled {
        RegionState::Aborted
    } else if any(UnitPhase::Failed) {
        RegionState::Failed
    } else if any(UnitPhase::RolledBack) {
        RegionState::RolledBack
    } else if any(UnitPhase::Paused) {
        RegionState::Paused
    } else if all_enabled {
        RegionState::Enabled
    } else if units.iter().any(|u| u.percent > 0 || matches!(u.phase, UnitPhase::Progressing | UnitPhase::Enabled)) {
        RegionState::Progressing
    } else if any(UnitPhase::Blocked) {
        RegionState::Blocked
    } else {
        RegionState::Pending
    }
}

/// How a plan's rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub plan: String,
    pub phase: PlanPhase,
    /// Units (region, service) of the plan, and how many are enabled.
    pub units: usize,
    pub enabled: usize,
    pub waves: Vec<WaveOutcome>,
    /// Regions that failed or were rolled back after a failure, in plan order.
    pub failed: Vec<FailedRegion>,
    /// Regions aborted before every unit was enabled, in plan order.
    pub aborted: Vec<AbortedRegion>,
    /// One line: `complete, 1 region rolled back: jp (accepted by alice)`.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveOutcome {
    pub name: String,
    pub phase: WavePhase,
    pub units: usize,
    pub enabled: usize,
    /// The failures a promote accepted when it completed the wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedFailures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedRegion {
    pub region: String,
    pub wave: String,
    /// `failed` (traffic kept) or `rolled-back`.
    pub state: RegionState,
    /// The service whose failure it was.
    pub service: String,
    /// Why it failed, in words (`check error-rate unhealthy (0.31 > max 0.05), ...`).
    pub cause: String,
    /// When it failed, where recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Who accepted it by promoting its halted wave; `None`: nobody yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    pub by: String,
    /// `None` for a wave completed before Meridian recorded acceptances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortedRegion {
    pub region: String,
    pub wave: String,
}

/// How a wait on a plan, or on one wave of it, ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Complete, and every unit in scope is enabled.
    Enabled,
    /// Complete, but not every unit is enabled: failures someone accepted, or aborted
    /// regions. The text says which.
    CompleteWithExceptions(String),
    /// It failed: aborted, halted, or (failing fast) a region failed and nobody accepted it.
    Failed(String),
}

/// `plan`'s outcome in `state`.
pub fn outcome(plan: &Plan, state: &PlanState) -> Outcome {
    let n = plan.services.len().max(1);
    let mut waves: Vec<WaveOutcome> = state
        .waves
        .iter()
        .map(|w| WaveOutcome {
            name: w.name.clone(),
            phase: w.phase,
            units: 0,
            enabled: 0,
            accepted: w.accepted.clone(),
        })
        .collect();
    let mut failed = Vec::new();
    let mut aborted = Vec::new();
    for (r, units) in state.units.chunks(n).enumerate() {
        let Some(region) = plan.regions.get(r) else { continue };
        let wave_name = plan.waves.get(region.wave).map(|w| w.name.clone()).unwrap_or_default();
        if let Some(w) = waves.get_mut(region.wave) {
            w.units += units.len();
            w.enabled += units.iter().filter(|u| u.phase == UnitPhase::Enabled).count();
        }
        match region_state(state, &region.name, units) {
            RegionState::Aborted => aborted.push(AbortedRegion { region: region.name.clone(), wave: wave_name }),
            s @ (RegionState::Failed | RegionState::RolledBack) => {
                let wave = state.waves.get(region.wave);
                failed.push(failed_region(plan, r, units, s, wave_name, wave));
            }
            _ => {}
        }
    }
    let enabled = state.units.iter().filter(|u| u.phase == UnitPhase::Enabled).count();
    let mut outcome = Outcome {
        plan: plan.name.clone(),
        phase: state.phase(),
        units: state.units.len(),
        enabled,
        waves,
        failed,
        aborted,
        summary: String::new(),
    };
    outcome.summary = match outcome.exceptions() {
        Some(exceptions) => format!("{}, {exceptions}", outcome.phase),
        None => outcome.phase.to_string(),
    };
    outcome
}

fn failed_region(
    plan: &Plan,
    r: usize,
    units: &[UnitState],
    state: RegionState,
    wave_name: String,
    wave: Option<&crate::state::WaveState>,
) -> FailedRegion {
    // The unit that failed: the one with its failure recorded, else (a state from before
    // failures were recorded) a failed one, or the one the others say failed.
    let culprit = units
        .iter()
        .find(|u| u.failure.is_some())
        .or_else(|| units.iter().find(|u| u.phase == UnitPhase::Failed))
        .or_else(|| {
            units.iter().find_map(|u| match &u.waiting {
                Some(WaitReason::RegionFailed { service }) => units.iter().find(|x| x.service == *service),
                _ => None,
            })
        })
        .or_else(|| units.iter().find(|u| u.phase == UnitPhase::RolledBack));
    let service = culprit.map(|u| u.service.clone()).unwrap_or_default();
    let failure = culprit.and_then(|u| u.failure.as_ref());
    let cause = match failure {
        Some(f) if let Some(deadline) = &f.progress_deadline => {
            format!("no progress within its progressDeadline {deadline}")
        }
        Some(f) => {
            let limits = plan.regions[r]
                .settings
                .checks
                .iter()
                .zip(&plan.health.checks)
                .find(|(_, c)| c.name == f.check)
                .map(|(l, _)| l);
            let (min, max) = limits.map_or((None, None), |l| (l.min, l.max));
            let against = match (f.value, min, max) {
                (Some(v), _, Some(max)) if v > max => format!(" ({} > max {})", number(v), number(max)),
                (Some(v), Some(min), _) if v < min => format!(" ({} < min {})", number(v), number(min)),
                // Within min/max: the comparison with the fleet failed it.
                (Some(v), _, _) if let Some(b) = &f.baseline => format!(" ({})", b.compare(v)),
                (Some(v), _, _) => format!(" (value {})", number(v)),
                (None, _, _) => String::new(),
            };
            let times = if f.failures == 1 {
                "1 failing evaluation".to_string()
            } else {
                format!("{} failing evaluations in a row", f.failures)
            };
            format!("check {} {}{against}, {times}", f.check, verdict_word(f.verdict))
        }
        None => "the failure's cause was not recorded".to_string(),
    };
    let at = failure.map(|f| f.at);
    let region = plan.regions[r].name.clone();
    let accepted = match wave.and_then(|w| w.accepted.as_ref()) {
        Some(a) if a.regions.contains(&region) && at.is_none_or(|t| t <= a.at) => {
            Some(Acceptance { by: a.by.clone(), at: Some(a.at) })
        }
        // Within its wave's failure budgets: the plan accepted it in advance.
        _ if let Some(c) = wave.and_then(|w| w.within_budget.iter().find(|c| c.region == region)) => {
            Some(Acceptance { by: BUDGET.into(), at: Some(c.at) })
        }
        Some(_) => None,
        // Completed by a promote before acceptances were recorded: someone accepted it.
        None if wave.is_some_and(|w| w.phase == WavePhase::Complete) && failure.is_none() => {
            Some(Acceptance { by: "an operator (not recorded)".into(), at: None })
        }
        None => None,
    };
    FailedRegion { region, wave: wave_name, state, service, cause, at, accepted }
}

/// Who accepted a failure its wave's `maxFailures` took.
pub const BUDGET: &str = "maxFailures";

fn verdict_word(v: HealthVerdict) -> &'static str {
    match v {
        HealthVerdict::Healthy => "healthy",
        HealthVerdict::Unhealthy => "unhealthy",
        HealthVerdict::NoData => "no data",
        HealthVerdict::Error => "error",
    }
}

/// `0.31`, `5`, `0.0001`: no trailing zeros.
fn number(v: f64) -> String {
    let text = format!("{v:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn regions(n: usize) -> &'static str {
    if n == 1 { "region" } else { "regions" }
}

impl FailedRegion {
    /// `region us-east (wave canary) rolled back: signin failed: check error-rate ...`.
    pub fn describe(&self) -> String {
        let state = match self.state {
            RegionState::RolledBack => "rolled back",
            other => other.as_str(),
        };
        format!("region {} (wave {}) {state}: {} failed: {}", self.region, self.wave, self.service, self.cause)
    }

    /// `jp (accepted by alice)` or `jp (not accepted)`.
    fn short(&self) -> String {
        match &self.accepted {
            Some(a) => format!("{} (accepted by {})", self.region, a.by),
            None => format!("{} (not accepted)", self.region),
        }
    }
}

impl Outcome {
    /// Every unit of the plan is enabled.
    pub fn all_enabled(&self) -> bool {
        self.enabled == self.units
    }

    /// Failed regions nobody accepted.
    pub fn unaccepted(&self) -> impl Iterator<Item = &FailedRegion> {
        self.failed.iter().filter(|f| f.accepted.is_none())
    }

    /// What keeps the plan from being clean, in words (`1 region rolled back: jp (accepted
    /// by alice); 1 region aborted: kr`), or `None` when nothing does.
    pub fn exceptions(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (state, words) in [(RegionState::RolledBack, "rolled back"), (RegionState::Failed, "failed")] {
            let these: Vec<String> = self.failed.iter().filter(|f| f.state == state).map(FailedRegion::short).collect();
            if !these.is_empty() {
                parts.push(format!("{} {} {words}: {}", these.len(), regions(these.len()), these.join(", ")));
            }
        }
        if !self.aborted.is_empty() {
            let names: Vec<&str> = self.aborted.iter().map(|a| a.region.as_str()).collect();
            parts.push(format!("{} {} aborted: {}", names.len(), regions(names.len()), names.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// How a wait on the plan (`wave: None`) or on one of its waves ends, if it has. With
    /// `fail_fast`, a failure nobody accepted ends it at once, even while other regions of
    /// the wave still run or wait; without, only once the wave halts. `Err` for a wave the
    /// plan does not have.
    pub fn end(&self, wave: Option<&str>, fail_fast: bool) -> Result<Option<End>, String> {
        let plan = &self.plan;
        let scope = match wave {
            Some(name) => Some(self.waves.iter().find(|w| w.name == name).ok_or_else(|| {
                let names: Vec<&str> = self.waves.iter().map(|w| w.name.as_str()).collect();
                format!("plan {plan} has no wave {name:?} (waves: {})", names.join(", "))
            })?),
            None => None,
        };
        let in_scope = |w: &str| scope.is_none_or(|s| s.name == w);
        let unaccepted: Vec<&FailedRegion> = self.unaccepted().filter(|f| in_scope(&f.wave)).collect();
        let failures = |lead: String| {
            let mut text = lead;
            for f in &unaccepted {
                text.push_str(&format!("\n  {}; nobody accepted it", f.describe()));
            }
            text
        };
        let (complete, halted, units, enabled) = match scope {
            Some(w) => (w.phase == WavePhase::Complete, w.phase == WavePhase::Halted, w.units, w.enabled),
            None => (self.phase == PlanPhase::Complete, self.phase == PlanPhase::Halted, self.units, self.enabled),
        };
        if !complete && self.phase == PlanPhase::Aborted {
            return Ok(Some(End::Failed(format!("plan {plan} was aborted"))));
        }
        if halted {
            let halted: Vec<&str> = self
                .waves
                .iter()
                .filter(|w| w.phase == WavePhase::Halted && in_scope(&w.name))
                .map(|w| w.name.as_str())
                .collect();
            return Ok(Some(End::Failed(failures(format!(
                "plan {plan} halted: wave {}; retry the failed regions or promote the wave to accept them",
                halted.join(", ")
            )))));
        }
        if !unaccepted.is_empty() && (fail_fast || complete) {
            let hint =
                if complete { "retry the region" } else { "retry the region, or promote its wave once it halts" };
            let lead = match wave {
                Some(w) => format!("wave {w} of plan {plan}: a region failed ({hint})"),
                None => format!("plan {plan}: a region failed ({hint})"),
            };
            return Ok(Some(End::Failed(failures(lead))));
        }
        if !complete {
            return Ok(None);
        }
        if enabled == units {
            return Ok(Some(End::Enabled));
        }
        let exceptions: Vec<String> = self
            .failed
            .iter()
            .filter(|f| in_scope(&f.wave))
            .map(|f| {
                let by = f.accepted.as_ref().map(|a| a.by.as_str()).unwrap_or_default();
                format!("{} (accepted by {by})", f.describe())
            })
            .chain(self.aborted.iter().filter(|a| in_scope(&a.wave)).map(|a| format!("region {} aborted", a.region)))
            .collect();
        let what = match wave {
            Some(w) => format!("wave {w} of plan {plan} is complete"),
            None => format!("plan {plan} is complete"),
        };
        Ok(Some(End::CompleteWithExceptions(format!(
            "{what} with {}/{units} units enabled:\n  {}",
            enabled,
            exceptions.join("\n  ")
        ))))
    }
}

/// How a wait on several plans at once ends: failed as soon as one of them fails, else once
/// every one is complete (`Enabled` only when all are clean). `None` while any still runs,
/// and without plans.
pub fn overall<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>, fail_fast: bool) -> Option<End> {
    let mut exceptions = Vec::new();
    let (mut any, mut open) = (false, false);
    for o in outcomes {
        any = true;
        match o.end(None, fail_fast) {
            Ok(Some(End::Failed(why))) => return Some(End::Failed(why)),
            Ok(Some(End::CompleteWithExceptions(why))) => exceptions.push(why),
            Ok(Some(End::Enabled)) => {}
            Ok(None) | Err(_) => open = true,
        }
    }
    if !any || open {
        return None;
    }
    Some(if exceptions.is_empty() { End::Enabled } else { End::CompleteWithExceptions(exceptions.join("\n")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::UnitFailure;

    fn mk_plan() -> Plan {
        let text = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                    [{name: signin}, {name: store}]\n  regions: [{name: us}, {name: jp}, {name: kr}]\n  waves:\n    - \
                    {name: canary, regions: [us]}\n    - {name: asia, regions: [jp, kr]}\n  steps: [10, 100]\n  health:\n    \
                    interval: 10s\n    checks:\n      - name: errors\n        prometheus: {query: x}\n        max: 0.05\n";
        let bundle = crate::validate::load(&[("p.yaml".into(), text.into())], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    fn enable(state: &mut PlanState, region: &str) {
        for u in state.units.iter_mut().filter(|u| u.region == region) {
            (u.phase, u.percent) = (UnitPhase::Enabled, 100);
        }
    }

    /// us enabled, canary complete; jp's signin failed on errors and jp was rolled back.
    fn jp_rolled_back() -> (Plan, PlanState) {
        let plan = mk_plan();
        let mut state = PlanState::new(&plan);
        enable(&mut state, "us");
        state.waves[0].phase = WavePhase::Complete;
        state.waves[1].phase = WavePhase::Running;
        for u in state.units.iter_mut().filter(|u| u.region == "jp") {
            u.phase = UnitPhase::RolledBack;
            u.waiting = Some(WaitReason::RegionFailed { service: "signin".into() });
        }
        state.units[2].failure = Some(Box::new(UnitFailure {
            at: t(10),
            check: "errors".into(),
            verdict: HealthVerdict::Unhealthy,
            value: Some(0.31),
            failures: 2,
            baseline: None,
            progress_deadline: None,
        }));
        (plan, state)
    }

    #[test]
    fn a_clean_completion_is_enabled() {
        let plan = mk_plan();
        let mut state = PlanState::new(&plan);
        for r in ["us", "jp", "kr"] {
            enable(&mut state, r);
        }
        state.waves.iter_mut().for_each(|w| w.phase = WavePhase::Complete);
        let o = outcome(&plan, &state);
        assert!(o.all_enabled());
        assert_eq!(o.summary, "complete");
        assert_eq!(o.end(None, true), Ok(Some(End::Enabled)));
        assert_eq!(o.end(Some("asia"), true), Ok(Some(End::Enabled)));
    }

    #[test]
    fn a_failure_is_reported_with_its_cause_and_ends_a_fail_fast_wait_at_once() {
        let (plan, state) = jp_rolled_back();
        let o = outcome(&plan, &state);
        assert_eq!(o.summary, "running, 1 region rolled back: jp (not accepted)");
        assert_eq!(o.failed.len(), 1);
        let jp = &o.failed[0];
        assert_eq!((jp.region.as_str(), jp.wave.as_str(), jp.service.as_str()), ("jp", "asia", "signin"));
        assert_eq!(jp.state, RegionState::RolledBack);
        assert_eq!(jp.cause, "check errors unhealthy (0.31 > max 0.05), 2 failing evaluations in a row");
        assert_eq!(jp.at, Some(t(10)));
        let Ok(Some(End::Failed(why))) = o.end(None, true) else { panic!("{:?}", o.end(None, true)) };
        assert!(
            why.starts_with("plan p: a region failed (retry the region, or promote its wave once it halts)"),
            "{why}"
        );
        assert!(
            why.contains(
                "region jp (wave asia) rolled back: signin failed: check errors unhealthy (0.31 > max 0.05), 2 \
                 failing evaluations in a row; nobody accepted it"
            ),
            "{why}"
        );
        // Without fail-fast the wait goes on until the wave halts.
        assert_eq!(o.end(None, false), Ok(None));
        // A wait on the canary wave is not concerned: it is complete and clean.
        assert_eq!(o.end(Some("canary"), true), Ok(Some(End::Enabled)));
        assert!(matches!(o.end(Some("asia"), true), Ok(Some(End::Failed(_)))));
        assert_eq!(o.end(Some("europe"), true), Err("plan p has no wave \"europe\" (waves: canary, asia)".into()));
    }

    #[test]
    fn a_halted_wave_fails_the_wait_naming_the_regions() {
        let (plan, mut state) = jp_rolled_back();
        enable(&mut state, "kr");
        state.waves[1].phase = WavePhase::Halted;
        let o = outcome(&plan, &state);
        assert_eq!(o.summary, "halted, 1 region rolled back: jp (not accepted)");
        let Ok(Some(End::Failed(why))) = o.end(None, false) else { panic!() };
        assert!(why.starts_with("plan p halted: wave asia; retry the failed regions or promote"), "{why}");
        assert!(why.contains("region jp (wave asia) rolled back: signin failed"), "{why}");
    }

    #[test]
    fn a_promoted_wave_is_complete_with_its_accepted_failures_and_who_accepted_them() {
        let (plan, mut state) = jp_rolled_back();
        enable(&mut state, "kr");
        state.waves[1].phase = WavePhase::Complete;
        state.waves[1].accepted = Some(AcceptedFailures { by: "alice".into(), at: t(20), regions: vec!["jp".into()] });
        let o = outcome(&plan, &state);
        assert!(!o.all_enabled());
        assert_eq!(o.summary, "complete, 1 region rolled back: jp (accepted by alice)");
        assert_eq!(o.failed[0].accepted, Some(Acceptance { by: "alice".into(), at: Some(t(20)) }));
        assert_eq!(o.unaccepted().count(), 0);
        assert_eq!(o.waves[1].enabled, 2);
        assert_eq!(o.waves[1].units, 4);
        let Ok(Some(End::CompleteWithExceptions(why))) = o.end(None, true) else { panic!("{:?}", o.end(None, true)) };
        assert!(why.starts_with("plan p is complete with 4/6 units enabled:"), "{why}");
        assert!(why.contains("region jp (wave asia) rolled back: signin failed: check errors unhealthy"), "{why}");
        assert!(why.ends_with("(accepted by alice)"), "{why}");
        assert!(matches!(o.end(Some("asia"), false), Ok(Some(End::CompleteWithExceptions(_)))));
        assert_eq!(o.end(Some("canary"), false), Ok(Some(End::Enabled)));

        // Retried after the promote and failed again: that failure is nobody's yet.
        state.units[2].failure.as_mut().unwrap().at = t(30);
        let o = outcome(&plan, &state);
        assert_eq!(o.summary, "complete, 1 region rolled back: jp (not accepted)");
        let Ok(Some(End::Failed(why))) = o.end(None, false) else { panic!() };
        assert!(why.starts_with("plan p: a region failed (retry the region)"), "{why}");
    }

    #[test]
    fn a_wave_promoted_before_acceptances_were_recorded_counts_as_accepted() {
        let (plan, mut state) = jp_rolled_back();
        enable(&mut state, "kr");
        state.waves[1].phase = WavePhase::Complete;
        state.units[2].failure = None;
        let o = outcome(&plan, &state);
        assert_eq!(o.failed[0].cause, "the failure's cause was not recorded");
        assert_eq!(o.summary, "complete, 1 region rolled back: jp (accepted by an operator (not recorded))");
        assert!(matches!(o.end(None, true), Ok(Some(End::CompleteWithExceptions(_)))));
    }

    #[test]
    fn aborted_regions_are_not_failures_and_an_aborted_plan_fails_the_wait() {
        let plan = mk_plan();
        let mut state = PlanState::new(&plan);
        enable(&mut state, "us");
        enable(&mut state, "jp");
        state.aborted_regions.insert("kr".into());
        state.units[4].phase = UnitPhase::RolledBack;
        state.waves.iter_mut().for_each(|w| w.phase = WavePhase::Complete);
        let o = outcome(&plan, &state);
        assert_eq!(o.summary, "complete, 1 region aborted: kr");
        assert!(o.failed.is_empty());
        assert_eq!(o.aborted, vec![AbortedRegion { region: "kr".into(), wave: "asia".into() }]);
        assert_eq!(region_state(&state, "kr", &state.units[4..6]), RegionState::Aborted);
        let Ok(Some(End::CompleteWithExceptions(why))) = o.end(None, true) else { panic!() };
        assert!(why.ends_with("region kr aborted"), "{why}");

        state.aborted = true;
        state.aborted_regions.clear();
        state.waves[1].phase = WavePhase::Running;
        let o = outcome(&plan, &state);
        assert_eq!(o.summary, "aborted, 1 region aborted: kr");
        assert_eq!(o.end(None, false), Ok(Some(End::Failed("plan p was aborted".into()))));
        assert_eq!(o.end(Some("canary"), false), Ok(Some(End::Enabled)), "the canary completed before the abort");
    }

    #[test]
    fn several_plans_fail_as_soon_as_one_fails_and_are_clean_only_when_all_are() {
        let (plan, running) = jp_rolled_back();
        let mut clean = running.clone();
        for r in ["jp", "kr"] {
            enable(&mut clean, r);
        }
        clean.waves.iter_mut().for_each(|w| w.phase = WavePhase::Complete);
        let mut accepted = running.clone();
        enable(&mut accepted, "kr");
        accepted.waves[1].phase = WavePhase::Complete;
        accepted.waves[1].accepted = Some(AcceptedFailures { by: "bob".into(), at: t(99), regions: vec!["jp".into()] });
        let [running, clean, accepted] = [running, clean, accepted].map(|s| outcome(&plan, &s));
        assert_eq!(overall([&clean, &clean], true), Some(End::Enabled));
        assert!(
            matches!(overall([&clean, &accepted], true), Some(End::CompleteWithExceptions(w)) if w.contains("bob"))
        );
        assert!(matches!(overall([&clean, &running], true), Some(End::Failed(_))));
        assert_eq!(overall([&clean, &running], false), None, "without fail-fast it waits for the halt");
        assert_eq!(overall([], true), None);
    }

    #[test]
    fn a_state_stored_before_acceptances_were_recorded_still_loads() {
        let stored = r#"{"plan": "p", "units": [{"region": "us", "service": "signin", "phase": "rolled-back",
            "percent": 0, "checks": []}], "waves": [{"name": "canary", "phase": "complete", "promoted": false}]}"#;
        let state: PlanState = serde_json::from_str(stored).unwrap();
        assert_eq!(state.waves[0].accepted, None);
        assert_eq!(state.waves[0].promoted_by, None);
        assert_eq!(state.units[0].failure, None);
    }

    #[test]
    fn region_states_worst_first() {
        let plan = mk_plan();
        let mut state = PlanState::new(&plan);
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Pending);
        state.units[0].phase = UnitPhase::Blocked;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Blocked);
        (state.units[0].phase, state.units[0].percent) = (UnitPhase::Enabled, 100);
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Progressing);
        state.units[1].phase = UnitPhase::Enabled;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Enabled);
        state.aborted = true;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Enabled, "enabled stays enabled");
        state.units[1].phase = UnitPhase::Failed;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Aborted);
        state.aborted = false;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::Failed);
        state.units[1].phase = UnitPhase::RolledBack;
        assert_eq!(region_state(&state, "us", &state.units[0..2]), RegionState::RolledBack);
    }
}
