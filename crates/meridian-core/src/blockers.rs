//! What holds a rollout that cannot go on by itself, read from a state where time alone
//! changes nothing any more (the end of a `meridian plan` projection): the units held by a
//! cause no clock will lift (the roots: an approval not granted, health data that never
//! comes, a halted wave, a pause, a hold on drift, a window or freeze with no end in sight,
//! another plan that does not get as far as `dependsOn` asks),
//! and how many wait only on those (an earlier wave, a service enabled first, parallelism).
//!
//! Owns that classification, so the projection and any other reader say it the same way.

use serde::Serialize;

use crate::state::{PlanState, UnitPhase, WaitReason};

/// A unit held by something no clock lifts, and what would.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Root {
    /// `REGION/SERVICE`.
    pub unit: String,
    /// Why, in the words of `meridian status`.
    pub reason: String,
    /// What kind of hold: approval, health, halted, paused, aborted, drift, window, freeze,
    /// failed, plan (another plan's wave or completion, `dependsOn`).
    pub kind: &'static str,
    /// The flag it needs, when an approval is what holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Blockers {
    pub roots: Vec<Root>,
    /// Units that are not enabled and wait only on other units (of the roots, in the end).
    pub downstream: usize,
}

impl Blockers {
    /// The distinct flags the roots need, in the order first met.
    pub fn flags(&self) -> Vec<&str> {
        let mut flags: Vec<&str> = Vec::new();
        for flag in self.roots.iter().filter_map(|r| r.flag.as_deref()) {
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
        flags
    }
}

/// The kind of hold when `reason` holds a unit whatever time passes.
fn root_kind(reason: &WaitReason) -> Option<&'static str> {
    Some(match reason {
        WaitReason::Approval { .. } => "approval",
        WaitReason::Health { .. } => "health",
        WaitReason::WaveHalted { .. } => "halted",
        WaitReason::Paused { .. } => "paused",
        WaitReason::Aborted => "aborted",
        WaitReason::Drift { .. } => "drift",
        WaitReason::Window { opens_at: None } => "window",
        WaitReason::Frozen { until: None, .. } => "freeze",
        // Lifted by the other plan, not by this one: its own projection says what holds it.
        WaitReason::PlanDependency { .. } => "plan",
        _ => return None,
    })
}

/// The blockers of `state` (see the module doc). A failed or rolled-back unit is a root of
/// its own.
pub fn blockers(state: &PlanState) -> Blockers {
    let mut out = Blockers::default();
    for unit in state.units.iter().filter(|u| u.phase != UnitPhase::Enabled) {
        let label = format!("{}/{}", unit.region, unit.service);
        if matches!(unit.phase, UnitPhase::Failed | UnitPhase::RolledBack) {
            let reason = unit.waiting.as_ref().map_or_else(|| unit.phase.to_string(), ToString::to_string);
            out.roots.push(Root { unit: label, reason, kind: "failed", flag: None });
            continue;
        }
        match unit.waiting.as_ref().map(|w| (w, root_kind(w))) {
            Some((reason, Some(kind))) => out.roots.push(Root {
                unit: label,
                reason: reason.to_string(),
                kind,
                flag: match reason {
                    WaitReason::Approval { flag, .. } => Some(flag.clone()),
                    _ => None,
                },
            }),
            _ => out.downstream += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{SimOptions, simulate};
    use crate::validate::load;

    fn plan(text: &str) -> crate::Plan {
        let bundle = load(&[("p.yaml".to_string(), text.to_string())], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    const GATED: &str = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  \
                         services: [{name: signin}, {name: store}]\n  regions: [{name: a, approvals: [go]}, {name: \
                         b}]\n  waves:\n    - {name: one, regions: [a]}\n    - {name: two, regions: [b]}\n  steps: \
                         [100]\n";

    #[test]
    fn an_approval_nobody_grants_is_the_root_and_the_rest_wait_on_it() {
        let plan = plan(GATED);
        let t = simulate(&plan, &[], &SimOptions::new(chrono::DateTime::UNIX_EPOCH));
        assert!(t.finished_at.is_none());
        let b = blockers(&t.state);
        let units: Vec<&str> = b.roots.iter().map(|r| r.unit.as_str()).collect();
        assert_eq!(units, ["a/signin", "a/store"], "{b:?}");
        assert!(b.roots.iter().all(|r| r.flag.as_deref() == Some("go") && r.reason.contains("approval go")), "{b:?}");
        // b's two wait for wave one.
        assert_eq!(b.downstream, 2);
        assert_eq!(b.flags(), ["go"]);
    }

    #[test]
    fn a_finished_rollout_has_no_blockers() {
        let plan = plan(&GATED.replace(", approvals: [go]", ""));
        let t = simulate(&plan, &[], &SimOptions::new(chrono::DateTime::UNIX_EPOCH));
        assert!(t.finished_at.is_some());
        assert_eq!(blockers(&t.state), Blockers::default());
    }
}
