//! A rollout on a virtual clock: the real engine, fed by a simulated fleet, jumping from
//! one `wake_at` to the next. This is what `meridian plan` prints, so the projection is
//! exactly what the controller would do given the same approvals and health.
//!
//! Owns the simulation loop and the per-unit timeline it yields; no I/O, no real clock.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::approval::ApprovalRecord;
use crate::audit::{AuditEvent, AuditRecord};
use crate::dependency::PlanProgress;
use crate::duration::Span;
use crate::engine::{FleetVerdict, Observations, decide_aligned};
use crate::health::HealthVerdict;
use crate::plan::Plan;
use crate::state::{PlanPhase, PlanState, UnitPhase, WaitReason, WavePhase};

/// How to run the simulation.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub start: DateTime<Utc>,
    /// Feed a healthy verdict for every check of every watched unit at every decision.
    /// Without it no health data arrives, so units with checks hold at their first step.
    pub assume_healthy: bool,
    /// Stop projecting this far after `start`.
    pub horizon: Span,
    /// Upper bound on decisions, a guard against a plan that never settles.
    pub max_decisions: usize,
    /// Regions whose health fails from a moment on (`meridian plan --fail`).
    pub failures: Vec<SimFailure>,
}

impl SimOptions {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimOptions {
            start,
            assume_healthy: false,
            horizon: Span::from_secs(90 * 86_400),
            max_decisions: 1_000_000,
            failures: Vec::new(),
        }
    }
}

/// A region whose every check reads unhealthy from `from` on, for every service under
/// watch there: what `failureLimit` and `onFailure`, then the failure budgets, make of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimFailure {
    pub region: String,
    pub from: DateTime<Utc>,
}

/// When one unit reached one traffic step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReached {
    pub percent: u32,
    pub at: DateTime<Utc>,
}

/// One unit's projected path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitTimeline {
    pub wave: String,
    pub region: String,
    pub service: String,
    pub steps: Vec<StepReached>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_at: Option<DateTime<Utc>>,
    pub final_phase: UnitPhase,
    /// What it still waits for when the projection ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_text: Option<String>,
}

/// One wave's projected path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveTimeline {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    pub final_phase: WavePhase,
}

/// The projection.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub plan: String,
    pub start: DateTime<Utc>,
    pub assume_healthy: bool,
    /// The failures simulated (`--fail`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<SimFailure>,
    /// When every wave completed, if within the horizon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The last moment simulated.
    pub ended_at: DateTime<Utc>,
    pub phase: PlanPhase,
    pub decisions: usize,
    pub waves: Vec<WaveTimeline>,
    pub units: Vec<UnitTimeline>,
    /// Every audit record the engine issued.
    pub audit: Vec<AuditRecord>,
    #[serde(skip)]
    pub state: PlanState,
}

/// Run `plan` from a fresh state.
pub fn simulate(plan: &Plan, approvals: &[ApprovalRecord], opts: &SimOptions) -> Timeline {
    let mut timelines = simulate_together(&[plan], approvals, opts);
    timelines.remove(0)
}

/// Run `plan` on from `state` (a live rollout's, `meridian plan --from-server`) at
/// `opts.start`: units enabled stay so, units mid-step go on from their `since` and bake
/// times, and the timeline keeps what the state says was enabled or completed before.
pub fn simulate_from(plan: &Plan, state: PlanState, approvals: &[ApprovalRecord], opts: &SimOptions) -> Timeline {
    let mut timelines = simulate_together_from(&[plan], vec![state], approvals, opts);
    timelines.remove(0)
}

/// One plan of a simulation.
struct SimRun<'p> {
    plan: &'p Plan,
    /// Where it started: what was enabled or completed before `opts.start`.
    initial: PlanState,
    state: PlanState,
    audit: Vec<AuditRecord>,
    decisions: usize,
    /// What the fleet reports at the current decision (kept to reuse its buffer).
    verdicts: Vec<FleetVerdict>,
    wake_at: Option<DateTime<Utc>>,
    /// The last decision was given an unhealthy verdict: a failing region is evaluated again
    /// every health interval.
    failing: bool,
    /// When it completed (nothing is decided for it afterwards).
    completed_at: Option<DateTime<Utc>>,
}

/// Run `plans` together from fresh states on one virtual clock (one timeline each, in the
/// same order), each seeing where the others stand, as the controller shows it them
/// (`dependsOn`, [`crate::dependency`]): at each moment every plan not yet complete is
/// decided, and, when one depends on another, decided again at once while a decision
/// completes a wave or a plan. A plan whose dependency is not among `plans` waits for it.
pub fn simulate_together(plans: &[&Plan], approvals: &[ApprovalRecord], opts: &SimOptions) -> Vec<Timeline> {
    simulate_together_from(plans, plans.iter().map(|p| PlanState::new(p)).collect(), approvals, opts)
}

/// [`simulate_together`] from given states (one per plan, in the same order; each aligned
/// with its plan first, as the controller does after an edit) rather than fresh ones.
pub fn simulate_together_from(
    plans: &[&Plan],
    states: Vec<PlanState>,
    approvals: &[ApprovalRecord],
    opts: &SimOptions,
) -> Vec<Timeline> {
    let mut runs: Vec<SimRun<'_>> = plans
        .iter()
        .zip(states)
        .map(|(plan, mut state)| {
            state.align(plan);
            (plan, state)
        })
        .map(|(plan, state)| SimRun {
            plan,
            initial: state.clone(),
            state,
            audit: Vec::new(),
            decisions: 0,
            verdicts: Vec::new(),
            wake_at: None,
            failing: false,
            completed_at: None,
        })
        .collect();
    let linked = plans.iter().any(|p| p.has_dependencies());
    let mut now = opts.start;
    let horizon = opts.start + opts.horizon.to_delta();
    let mut decisions = 0;
    'clock: loop {
        let mut rounds = if linked { runs.len() + 1 } else { 1 };
        while rounds > 0 {
            rounds -= 1;
            let before = linked.then(|| PlanProgress::of(runs.iter().map(|r| &r.state)));
            for k in 0..runs.len() {
                if runs[k].completed_at.is_some() {
                    continue;
                }
                if decisions >= opts.max_decisions {
                    break 'clock;
                }
                let other_plans = (linked && runs[k].plan.has_dependencies())
                    .then(|| PlanProgress::of(runs.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, r)| &r.state)));
                let run = &mut runs[k];
                fleet_verdicts(run.plan, &run.state, now, opts, &mut run.verdicts);
                let obs = Observations { approvals, other_plans: other_plans.as_ref(), ..Observations::default() };
                // Aligned: fresh from the plan, then each decision's own state.
                let state = std::mem::take(&mut run.state);
                let audit = std::mem::take(&mut run.audit);
                let decision = decide_aligned(run.plan, state, &obs, &run.verdicts, audit, now);
                decisions += 1;
                run.decisions += 1;
                run.state = decision.state;
                run.audit = decision.audit;
                run.wake_at = decision.wake_at;
                run.failing = run.verdicts.iter().any(|v| v.verdict == HealthVerdict::Unhealthy);
                if run.state.phase() == PlanPhase::Complete {
                    run.completed_at = Some(now);
                }
            }
            match before {
                Some(before) if PlanProgress::of(runs.iter().map(|r| &r.state)) != before => {}
                _ => break,
            }
        }
        let mut next: Option<DateTime<Utc>> = None;
        let mut sooner = |at: DateTime<Utc>| next = Some(next.map_or(at, |n| n.min(at)));
        for run in runs.iter().filter(|r| r.completed_at.is_none()) {
            run.wake_at.into_iter().for_each(&mut sooner);
            // A failure to come is a moment to decide at; a failing region is evaluated every
            // health interval, as the controller would, until its failure limit is reached.
            for f in opts.failures.iter().filter(|f| f.from > now && run.plan.region_index(&f.region).is_some()) {
                sooner(f.from);
            }
            if run.failing {
                sooner(now + run.plan.health.interval.to_delta());
            }
        }
        match next {
            Some(next) if next <= horizon => now = next,
            _ => break,
        }
    }
    runs.into_iter()
        .map(|run| {
            let ended_at = run.completed_at.unwrap_or(now);
            timeline(run.plan, &run.initial, run.state, run.audit, opts, ended_at, run.decisions)
        })
        .collect()
}

/// A verdict at `now` for every check of every unit under watch, by the engine's one rule
/// (`watch::under_watch`): what the controller would ask the fleet for. Unhealthy in a
/// region failing by now, healthy elsewhere with `assume_healthy`, else nothing (no data).
///
/// The verdicts go to the engine by index (`FleetVerdict`), as the samples the controller
/// gives it would say by name, into `out`'s buffer: a large rollout builds no strings for
/// them. A check's `relative` part has no verdict (no data) while fewer regions than its
/// `minBaselineRegions` are fully enabled besides the region, as in the controller, so a
/// plan whose first regions cannot have a baseline shows them holding.
fn fleet_verdicts(plan: &Plan, state: &PlanState, now: DateTime<Utc>, opts: &SimOptions, out: &mut Vec<FleetVerdict>) {
    out.clear();
    if !opts.assume_healthy && opts.failures.is_empty() {
        return;
    }
    let services = plan.services.len();
    // Per service, its baseline regions, worked out when a relative check first needs them.
    let mut baselines: Vec<Option<Vec<String>>> = vec![None; services];
    for (i, u) in state.units.iter().enumerate() {
        if !crate::watch::under_watch(plan, state, i) {
            continue;
        }
        let failing = opts.failures.iter().any(|f| f.region == u.region && f.from <= now);
        let verdict = match (failing, opts.assume_healthy) {
            (true, _) => HealthVerdict::Unhealthy,
            (false, true) => HealthVerdict::Healthy,
            (false, false) => continue,
        };
        for (c, check) in plan.health.checks.iter().enumerate() {
            let without_baseline = check.relative.as_ref().is_some_and(|rel| {
                let baseline = baselines[i % services]
                    .get_or_insert_with(|| crate::watch::baseline_regions(plan, state, i % services));
                baseline.iter().filter(|b| **b != u.region).count() < rel.min_baseline_regions
            });
            let verdict =
                if verdict == HealthVerdict::Healthy && without_baseline { HealthVerdict::NoData } else { verdict };
            out.push(FleetVerdict { unit: i, check: c, verdict });
        }
    }
}

fn timeline(
    plan: &Plan,
    initial: &PlanState,
    state: PlanState,
    audit: Vec<AuditRecord>,
    opts: &SimOptions,
    ended_at: DateTime<Utc>,
    decisions: usize,
) -> Timeline {
    let mut units: Vec<UnitTimeline> = state
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| UnitTimeline {
            wave: plan.waves[plan.regions[i / plan.services.len()].wave].name.clone(),
            region: u.region.clone(),
            service: u.service.clone(),
            steps: Vec::new(),
            // Enabled before the projection began: since then, as the state says.
            enabled_at: initial.units.get(i).filter(|u| u.phase == UnitPhase::Enabled).and_then(|u| u.since),
            final_phase: u.phase,
            waiting: u.waiting.clone(),
            waiting_text: match (&u.waiting, &u.stalled) {
                (Some(w), Some(s)) => Some(format!("{w}; {}", s.describe(ended_at))),
                (None, Some(s)) => Some(s.describe(ended_at)),
                (w, None) => w.as_ref().map(ToString::to_string),
            },
        })
        .collect();
    let mut waves: Vec<WaveTimeline> = state
        .waves
        .iter()
        .zip(&initial.waves)
        .map(|(w, before)| WaveTimeline {
            name: w.name.clone(),
            started_at: None,
            completed_at: if before.phase == WavePhase::Complete { before.since } else { None },
            final_phase: w.phase,
        })
        .collect();
    for record in &audit {
        match &record.event {
            AuditEvent::Unit { to, to_percent, from_percent, .. } => {
                let (Some(r), Some(s)) = (
                    record.region.as_deref().and_then(|r| plan.region_index(r)),
                    record.service.as_deref().and_then(|s| plan.service_index(s)),
                ) else {
                    continue;
                };
                let unit = &mut units[plan.unit_index(r, s)];
                if to_percent != from_percent && *to_percent > 0 {
                    unit.steps.push(StepReached { percent: *to_percent, at: record.at });
                }
                if *to == UnitPhase::Enabled {
                    unit.enabled_at = Some(record.at);
                }
            }
            AuditEvent::Wave { to, .. } => {
                let Some(w) = record.wave.as_deref().and_then(|w| plan.wave_index(w)) else { continue };
                match to {
                    WavePhase::Running if waves[w].started_at.is_none() => waves[w].started_at = Some(record.at),
                    WavePhase::Complete => waves[w].completed_at = Some(record.at),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let phase = state.phase();
    Timeline {
        plan: plan.name.clone(),
        start: opts.start,
        assume_healthy: opts.assume_healthy,
        failures: opts.failures.clone(),
        finished_at: (phase == PlanPhase::Complete).then_some(ended_at),
        ended_at,
        phase,
        decisions,
        waves,
        units,
        audit,
        state,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::health::HealthSample;
    use crate::validate::load;

    fn plan(budget: &str) -> Plan {
        let yaml = format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: signin}}]
  regions: [{{name: a}}, {{name: b}}, {{name: c}}]
  waves:
    - {{name: first, regions: [a, b]{budget}}}
    - {{name: second, regions: [c]}}
  steps: [10, 100]
  stepBake: 10m
  health:
    checks: [{{name: errors, prometheus: {{query: x}}, max: 0.01, failureLimit: 2}}]
"
        );
        let bundle = load(&[("p.yaml".into(), yaml)], None);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    /// The loop `simulate` replaced: the public `decide` (aligning every time) fed fresh
    /// samples built from `watch::health_requests`.
    fn simulate_plainly(plan: &Plan, opts: &SimOptions) -> (Vec<AuditRecord>, PlanState, usize) {
        let (mut state, mut now, mut audit, mut decisions) = (PlanState::new(plan), opts.start, Vec::new(), 0);
        let horizon = opts.start + opts.horizon.to_delta();
        loop {
            let mut samples = Vec::new();
            for request in crate::watch::health_requests(plan, &state, now) {
                for region in &request.regions {
                    let failing = opts.failures.iter().any(|f| f.region == *region && f.from <= now);
                    let verdict = if failing { HealthVerdict::Unhealthy } else { HealthVerdict::Healthy };
                    for check in &plan.health.checks {
                        samples.push(HealthSample {
                            region: region.clone(),
                            service: request.service.clone(),
                            check: check.name.clone(),
                            verdict,
                            value: None,
                            detail: None,
                            at: now,
                            baseline: None,
                        });
                    }
                }
            }
            let obs = Observations { health: &samples, ..Observations::default() };
            let decision = crate::engine::decide(plan, state, &obs, now);
            decisions += 1;
            state = decision.state;
            audit.extend(decision.audit);
            if state.phase() == PlanPhase::Complete {
                break;
            }
            let mut next = decision.wake_at;
            for f in opts.failures.iter().filter(|f| f.from > now) {
                next = Some(next.map_or(f.from, |n| n.min(f.from)));
            }
            if samples.iter().any(|s| s.verdict == HealthVerdict::Unhealthy) {
                let at = now + plan.health.interval.to_delta();
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            match next {
                Some(next) if next <= horizon => now = next,
                _ => break,
            }
        }
        (audit, state, decisions)
    }

    #[test]
    fn the_simulation_decides_as_the_plain_loop_over_decide_does() {
        let yaml = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: a}, {name: b, after: [a]}, {name: c, after: [a]}]
  regions:
    - {name: r0, timezone: Asia/Tokyo}
    - {name: r1}
    - {name: r2, timezone: America/New_York}
    - {name: r3}
    - {name: r4, timezone: Europe/Berlin}
    - {name: r5}
    - {name: r6, timezone: Asia/Tokyo}
    - {name: r7}
    - {name: r8}
  waves:
    - {name: canary, regions: [r0], bake: 30m}
    - {name: w1, regions: [r1, r2, r3, r4], maxParallel: 2, maxFailures: 1, bake: 1h}
    - {name: w2, regions: [r5, r6, r7, r8], maxParallel: 3}
  steps: [10, 50, 100]
  stepBake: 10m
  windows: [{days: [Mon, Tue, Wed, Thu, Fri], from: \"08:00\", to: \"18:00\"}]
  health:
    checks:
      - {name: errors, prometheus: {query: x}, max: 0.01, failureLimit: 2}
      - {name: latency, prometheus: {query: y}, max: 0.5}
";
        let bundle = load(&[("p.yaml".into(), yaml.into())], None);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        let plan = bundle.plans.into_iter().next().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 7, 0, 0).unwrap();
        let mut opts = SimOptions::new(start);
        opts.assume_healthy = true;
        opts.failures = vec![SimFailure { region: "r3".into(), from: start + chrono::TimeDelta::hours(5) }];

        let t = simulate(&plan, &[], &opts);
        let (audit, state, decisions) = simulate_plainly(&plan, &opts);
        assert_eq!(t.phase, PlanPhase::Complete, "the budget lets the plan finish without r3");
        assert!(t.units.iter().any(|u| u.region == "r3" && u.final_phase == UnitPhase::RolledBack));
        assert_eq!(t.decisions, decisions);
        assert_eq!(t.audit, audit);
        assert_eq!(t.state, state);
    }

    #[test]
    fn a_simulated_failure_fails_its_region_within_or_past_the_budget() {
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let mut opts = SimOptions::new(start);
        opts.assume_healthy = true;
        opts.failures = vec![SimFailure { region: "b".into(), from: start + chrono::TimeDelta::minutes(5) }];

        // Evaluated every interval once failing: two failing evaluations 30s apart.
        let t = simulate(&plan(", maxFailures: 1"), &[], &opts);
        assert_eq!(t.phase, PlanPhase::Complete);
        let b = t.units.iter().find(|u| u.region == "b").unwrap();
        assert_eq!(b.final_phase, UnitPhase::RolledBack);
        let failed_at = t
            .audit
            .iter()
            .find(|r| r.region.as_deref() == Some("b") && matches!(r.cause, crate::audit::Cause::HealthFailed { .. }))
            .unwrap()
            .at;
        assert_eq!(failed_at, start + chrono::TimeDelta::seconds(330));

        let t = simulate(&plan(""), &[], &opts);
        assert_eq!(t.phase, PlanPhase::Halted);
        assert!(t.units.iter().find(|u| u.region == "c").unwrap().steps.is_empty());
    }

    #[test]
    fn a_projection_from_a_mid_rollout_state_finishes_when_the_whole_simulation_does() {
        let yaml = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: a}, {name: b, after: [a]}]
  regions: [{name: r0}, {name: r1, timezone: Asia/Tokyo}, {name: r2}]
  waves:
    - {name: canary, regions: [r0], bake: 30m}
    - {name: rest, regions: [r1, r2], maxParallel: 1}
  steps: [10, 50, 100]
  stepBake: 10m
  windows: [{days: [Mon, Tue, Wed, Thu, Fri], from: \"08:00\", to: \"18:00\"}]
  health:
    checks: [{name: errors, prometheus: {query: x}, max: 0.01}]
";
        let bundle = load(&[("p.yaml".into(), yaml.into())], None);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        let plan = bundle.plans.into_iter().next().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 7, 0, 0).unwrap();
        let mut opts = SimOptions::new(start);
        opts.assume_healthy = true;
        let whole = simulate(&plan, &[], &opts);
        let finish = whole.finished_at.expect("the whole rollout finishes");

        // Cut mid-step in the canary, in its wave bake, and in the second wave: the
        // state there, projected on from the moment it was cut.
        for cut in [TimeDelta::minutes(65), TimeDelta::minutes(125), TimeDelta::minutes(200)] {
            let mut early = opts.clone();
            early.horizon = Span::from_delta(cut);
            let live = simulate(&plan, &[], &early);
            assert_eq!(live.finished_at, None);
            let mut from = opts.clone();
            from.start = start + cut;
            let projected = simulate_from(&plan, live.state.clone(), &[], &from);
            assert_eq!(projected.finished_at, Some(finish), "cut at {cut}");
            // The same moves, at the same times, with the same sequence numbers.
            let rest: Vec<&AuditRecord> = whole.audit.iter().filter(|r| r.at > from.start).collect();
            assert_eq!(projected.audit.iter().collect::<Vec<_>>(), rest, "cut at {cut}");
            assert_eq!(projected.state, whole.state);
            // What was enabled before the cut keeps its time and projects no steps.
            for (u, w) in projected.units.iter().zip(&whole.units) {
                if live.state.unit(&u.region, &u.service).is_some_and(|s| s.phase == UnitPhase::Enabled) {
                    assert!(u.steps.is_empty());
                    assert_eq!(u.enabled_at, w.enabled_at);
                }
            }
        }
    }
}
