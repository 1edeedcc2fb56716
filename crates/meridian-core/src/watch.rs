//! Which units are under health watch: the one rule the engine counts failures by and every
//! shell asks health for (the controller's health poller, `meridian plan`'s simulator, the
//! tests' fake fleets). Nothing outside this module decides what is watched.
//!
//! A unit is watched while it serves traffic and is not yet done with: progressing or
//! paused at a step (whatever its wave's phase, so a region retried after its wave was
//! promoted past it is watched again), or enabled in a wave that has not completed (the
//! wave bake needs its fresh verdicts). An enabled unit of a complete wave is done with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::plan::Plan;
use crate::ports::EvalRequest;
use crate::state::{PlanState, UnitPhase, WavePhase};

/// Is unit `i` (region-major, as in `PlanState::units`) under health watch?
pub fn under_watch(plan: &Plan, state: &PlanState, i: usize) -> bool {
    let Some(u) = state.units.get(i) else { return false };
    let wave = plan.regions.get(i / plan.services.len().max(1)).map(|r| r.wave);
    u.percent > 0
        && match u.phase {
            UnitPhase::Progressing | UnitPhase::Paused => true,
            UnitPhase::Enabled => wave.and_then(|w| state.waves.get(w)).is_some_and(|w| w.phase != WavePhase::Complete),
            _ => false,
        }
}

/// The health evaluations to run now: one request per (service, wave) with every watched
/// region of it, so one query per check per service covers them all. Empty for a plan
/// without checks.
pub fn health_requests(plan: &Plan, state: &PlanState, now: DateTime<Utc>) -> Vec<EvalRequest> {
    if plan.health.checks.is_empty() || plan.services.is_empty() {
        return Vec::new();
    }
    let mut by_key: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for (i, u) in state.units.iter().enumerate() {
        if under_watch(plan, state, i) {
            let (r, s) = (i / plan.services.len(), i % plan.services.len());
            by_key.entry((s, plan.regions[r].wave)).or_default().push(u.region.clone());
        }
    }
    by_key
        .into_iter()
        .map(|((s, w), regions)| EvalRequest {
            service: plan.services[s].name.clone(),
            wave: plan.waves[w].name.clone(),
            regions,
            now,
        })
        .collect()
}
