//! Plans that depend on plans (`dependsOn`): where the other plans stand, as the engine is
//! given it, and the one rule for when a dependency holds.
//!
//! ```text
//!   every plan's PlanState ──> PlanProgress (per plan: complete waves, complete, aborted)
//!                                    │ (an observation, like the approvals)
//!   plan.dependsOn + wave.dependsOn ─┴──> unmet() ──> None | WaitReason::PlanDependency
//! ```
//!
//! The rule: a dependency on a wave holds while that wave of the other plan is `complete`
//! (its regions enabled and its bake held, or completed with failed regions that its
//! `maxFailures` or an operator's promote accepted, or without aborted regions: the same
//! completion that lets the other plan's own next wave start) and the other plan is not
//! aborted. A dependency on a whole plan holds while the plan is complete
//! (`PlanState::phase`: every wave, and no region still to start or climb) and not aborted.
//! A plan that is not loaded, or not known yet, holds nothing.
//!
//! Only starts wait for a dependency: a unit that has started (has a step, traffic, or is
//! enabled) goes on when a dependency stops holding (the other plan aborted); units not yet
//! started wait again. Taking traffic away is left to an operator (`pause`, `abort`).
//!
//! Pure: builds nothing from the store; the shells (the controller, `meridian plan`) build
//! the progress from the states they hold and hand it to `decide`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::PlanDependency;
use crate::state::{PlanPhase, PlanState, WaitReason, WavePhase};

/// Where one plan stands, as plans depending on it read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Milestones {
    /// Its waves that are complete, in plan order.
    pub complete_waves: Vec<String>,
    /// The plan complete (`PlanState::phase`): every wave, and no region still to finish.
    pub complete: bool,
    /// Aborted plan-wide: nothing of it counts as complete any more.
    pub aborted: bool,
}

/// Where every other plan stands, by plan name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanProgress {
    pub plans: BTreeMap<String, Milestones>,
}

impl PlanProgress {
    /// The progress of these plans' states.
    pub fn of<'a>(states: impl IntoIterator<Item = &'a PlanState>) -> Self {
        let mut progress = PlanProgress::default();
        for state in states {
            progress.insert(state);
        }
        progress
    }

    /// Record (or replace) where `state`'s plan stands.
    pub fn insert(&mut self, state: &PlanState) {
        let complete_waves: Vec<String> =
            state.waves.iter().filter(|w| w.phase == WavePhase::Complete).map(|w| w.name.clone()).collect();
        // Complete as the plan's phase says: not while a region retried after its wave
        // completed still has to finish.
        let complete = !state.waves.is_empty() && state.phase() == PlanPhase::Complete;
        let milestones = Milestones { complete_waves, complete, aborted: state.aborted };
        match self.plans.get_mut(&state.plan) {
            Some(known) if *known == milestones => {}
            Some(known) => *known = milestones,
            None => {
                self.plans.insert(state.plan.clone(), milestones);
            }
        }
    }

    /// Does `dependency` hold? See the module doc.
    pub fn holds(&self, dependency: &PlanDependency) -> bool {
        let Some(m) = self.plans.get(&dependency.plan) else { return false };
        !m.aborted
            && match &dependency.wave {
                Some(wave) => m.complete_waves.iter().any(|w| w == wave),
                None => m.complete,
            }
    }

    /// The first of `dependencies` that does not hold, as what a unit waits for.
    pub fn unmet<'a>(&self, dependencies: impl IntoIterator<Item = &'a PlanDependency>) -> Option<WaitReason> {
        dependencies.into_iter().find(|d| !self.holds(d)).map(|d| WaitReason::PlanDependency {
            plan: d.plan.clone(),
            wave: d.wave.clone(),
            aborted: self.plans.get(&d.plan).is_some_and(|m| m.aborted),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::WaveState;

    fn mk_state(plan: &str, waves: &[(&str, WavePhase)], aborted: bool) -> PlanState {
        PlanState {
            plan: plan.into(),
            units: Vec::new(),
            waves: waves.iter().map(|(name, phase)| WaveState { phase: *phase, ..WaveState::new(name) }).collect(),
            paused: Default::default(),
            aborted_regions: Default::default(),
            aborted,
            audit_seq: 0,
            freezes: Vec::new(),
            full_promotions: Vec::new(),
            departing: Vec::new(),
        }
    }

    fn dep(plan: &str, wave: Option<&str>) -> PlanDependency {
        PlanDependency { plan: plan.into(), wave: wave.map(Into::into) }
    }

    #[test]
    fn a_wave_dependency_holds_once_that_wave_is_complete_and_a_plan_one_once_all_are() {
        use WavePhase::*;
        let cases = [
            // (waves of signin, aborted, depends on, holds)
            (vec![("canary", Running), ("rest", Pending)], false, Some("canary"), false),
            (vec![("canary", Baking), ("rest", Pending)], false, Some("canary"), false),
            (vec![("canary", Halted), ("rest", Pending)], false, Some("canary"), false),
            (vec![("canary", Complete), ("rest", Running)], false, Some("canary"), true),
            (vec![("canary", Complete), ("rest", Running)], false, None, false),
            (vec![("canary", Complete), ("rest", Complete)], false, None, true),
            // Aborted later: nothing of it counts any more.
            (vec![("canary", Complete), ("rest", Pending)], true, Some("canary"), false),
            (vec![("canary", Complete), ("rest", Complete)], true, None, false),
        ];
        for (waves, aborted, wave, holds) in cases {
            let progress = PlanProgress::of([&mk_state("signin", &waves, aborted)]);
            assert_eq!(progress.holds(&dep("signin", wave)), holds, "{waves:?} aborted={aborted} wave={wave:?}");
            let unmet = progress.unmet([&dep("signin", wave)]);
            assert_eq!(unmet.is_none(), holds);
            if let Some(WaitReason::PlanDependency { aborted: a, .. }) = unmet {
                assert_eq!(a, aborted);
            }
        }
    }

    #[test]
    fn an_unknown_plan_holds_nothing_and_the_reason_names_what_is_waited_for() {
        let progress = PlanProgress::default();
        let reason = progress.unmet([&dep("signin-restore", Some("canary"))]).unwrap();
        assert_eq!(reason.to_string(), "waits for plan signin-restore wave canary");
        let reason = progress.unmet([&dep("signin-restore", None)]).unwrap();
        assert_eq!(reason.to_string(), "waits for plan signin-restore to complete");
        let aborted = PlanProgress::of([&mk_state("signin-restore", &[("canary", WavePhase::Complete)], true)]);
        let reason = aborted.unmet([&dep("signin-restore", Some("canary"))]).unwrap();
        assert_eq!(reason.to_string(), "waits for plan signin-restore wave canary (that plan was aborted)");
        assert_eq!(PlanProgress::default().unmet(std::iter::empty()), None);
    }
}
