//! Which units are under health watch: the one rule the engine counts failures by and every
//! shell asks health for (the controller's health poller, `meridian plan`'s simulator, the
//! tests' fake fleets). Nothing outside this module decides what is watched.
//!
//! A unit is watched while it serves traffic and is not yet done with: progressing or
//! paused at a step (whatever its wave's phase, so a region retried after its wave was
//! promoted past it is watched again), or enabled in a wave that has not completed (the
//! wave bake needs its fresh verdicts). An enabled unit of a complete wave is done with.
//!
//! The baseline of a check's `relative` part has its rule here too (`relative` says what is
//! done with it): the regions whose unit of the service is enabled at 100 %, in plan order,
//! whatever their wave. A region under judgement is left out of its own baseline by
//! `relative::baseline`, not here, so one request serves every region of it.
//!
//! Read-back (drift) has its rule here too: every unit Meridian has moved is read back, those
//! it took back to 0 included, and a reading counts only when it was taken after the unit's
//! last change and while no actuation of it was in flight.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::plan::Plan;
use crate::ports::EvalRequest;
use crate::state::{PlanState, UnitPhase, UnitState, WavePhase};

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

/// The regions fully enabled for service `s` (enabled at 100 %), in plan order: the baseline a
/// check's `relative` part compares the regions under watch with.
pub fn baseline_regions(plan: &Plan, state: &PlanState, s: usize) -> Vec<String> {
    (0..plan.regions.len())
        .filter_map(|r| state.units.get(plan.unit_index(r, s)))
        .filter(|u| u.phase == UnitPhase::Enabled && u.percent == 100)
        .map(|u| u.region.clone())
        .collect()
}

/// The health evaluations to run now: one request per (service, wave) with every watched
/// region of it, so one query per check per service covers them all. Empty for a plan
/// without checks.
pub fn health_requests(plan: &Plan, state: &PlanState, now: DateTime<Utc>) -> Vec<EvalRequest> {
    if plan.health.checks.is_empty() || plan.services.is_empty() {
        return Vec::new();
    }
    let relative = plan.health.checks.iter().any(|c| c.relative.is_some());
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
            baseline: if relative { baseline_regions(plan, state, s) } else { Vec::new() },
            now,
        })
        .collect()
}

/// A unit whose traffic is read back, and whether an edit removed it from the plan.
#[derive(Debug, Clone, Copy)]
pub struct Readback<'a> {
    pub unit: &'a UnitState,
    /// Left the plan and winding down (`PlanState::departing`).
    pub departing: bool,
}

impl Readback<'_> {
    /// Is a reading showing `percent` news for the engine? Only when it differs from what
    /// the unit is meant to serve, or while the unit holds a drift that it would clear, or
    /// for a unit that left the plan (a reading of 0 % lets it go): a reading that matches,
    /// with nothing held, changes no decision, so the shell need not wake the engine for it.
    pub fn matters(&self, percent: u32) -> bool {
        self.departing || percent != self.unit.percent || self.unit.drift.is_some()
    }
}

/// Units whose traffic is read back for drift: every unit Meridian has moved, those it took
/// back to 0 included (a region rolled back, or disabled for a lost approval, and switched on
/// behind its back is drift too), and units an edit removed until their 0 % is confirmed (a
/// wind-down that failed for good is sent again). Units never moved are left alone, so
/// adopting a service that is already live never switches it off.
pub fn readback_units(state: &PlanState) -> impl Iterator<Item = Readback<'_>> {
    let kept = state.units.iter().filter(|u| u.actuated || u.percent > 0);
    kept.map(|unit| Readback { unit, departing: false })
        .chain(state.departing.iter().map(|unit| Readback { unit, departing: true }))
}

/// The unit a read-back of (`region`, `service`) is about: the plan's, or one that left it.
pub fn read_unit<'a>(state: &'a PlanState, region: &str, service: &str) -> Option<&'a UnitState> {
    state.unit(region, service).or_else(|| state.departing.iter().find(|u| u.region == region && u.service == service))
}

/// Does a reading of `unit` taken at `read_at` count? Only when taken after the unit's last
/// change (an older one describes the traffic before it) and while no actuation of it was in
/// flight (`busy`: the target may be mid-change).
pub fn reading_counts(unit: &UnitState, read_at: DateTime<Utc>, busy: bool) -> bool {
    unit.since.is_none_or(|since| since < read_at) && !busy
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::validate::load;

    fn mk_state() -> (Plan, PlanState) {
        let text = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                    [{name: s}]\n  regions: [{name: a}, {name: b}, {name: c}]\n  waves: [{name: w, regions: [a, b, \
                    c]}]\n  steps: [50, 100]\n";
        let bundle = load(&[("p.yaml".to_string(), text.to_string())], None);
        let plan = bundle.plans.into_iter().next().unwrap();
        let state = PlanState::new(&plan);
        (plan, state)
    }

    #[test]
    fn a_reading_matters_when_it_differs_or_a_drift_is_held_or_its_unit_left_the_plan() {
        let (_, mut state) = mk_state();
        let u = &mut state.units[0];
        u.percent = 50;
        let read = |u: &UnitState, departing, percent| Readback { unit: u, departing }.matters(percent);
        assert!(!read(u, false, 50), "serves what it should: nothing to decide");
        assert!(read(u, false, 0), "drift");
        assert!(read(&state.units[1], true, 0), "a unit that left the plan, seen at 0 %: let it go");
        let u = &mut state.units[0];
        u.drift = Some(70);
        assert!(read(u, false, 50), "a held drift that a matching reading clears");
    }

    #[test]
    fn units_meridian_moved_are_read_back_those_taken_to_zero_and_those_that_left_included() {
        let (_, mut state) = mk_state();
        state.units[0].percent = 50; // serving
        state.units[1].actuated = true; // rolled back to 0 by Meridian
        let mut gone = state.units[2].clone();
        gone.region = "d".into();
        state.departing.push(gone);
        let read: Vec<(&str, bool)> = readback_units(&state).map(|r| (r.unit.region.as_str(), r.departing)).collect();
        assert_eq!(
            read,
            [("a", false), ("b", false), ("d", true)],
            "c was never moved: never read, never switched off"
        );
        assert_eq!(read_unit(&state, "d", "s").map(|u| u.region.as_str()), Some("d"));
        assert_eq!(read_unit(&state, "b", "s").map(|u| u.region.as_str()), Some("b"));
        assert!(read_unit(&state, "e", "s").is_none());
    }

    #[test]
    fn a_reading_counts_only_after_the_last_change_and_with_nothing_in_flight() {
        let (_, mut state) = mk_state();
        let t = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::hours(1);
        state.units[0].since = Some(t);
        assert!(!reading_counts(&state.units[0], t - TimeDelta::seconds(1), false), "older than the change");
        assert!(!reading_counts(&state.units[0], t, false), "as old as the change");
        assert!(reading_counts(&state.units[0], t + TimeDelta::seconds(1), false));
        assert!(!reading_counts(&state.units[0], t + TimeDelta::seconds(1), true), "an actuation in flight");
        assert!(reading_counts(&state.units[1], t, false), "a unit never changed");
    }
}
