//! Which approvals in use expire soon: the rule behind the controller's expiry warnings
//! (`meridian_approval_expiring`, the `approval-expiring` event).
//!
//! An approval is in use when it is one of those that make a flag hold (`approval::Judged`)
//! for a unit that still depends on the flag: a unit with traffic needs its region's flags,
//! and its wave's until the wave completes; a unit still to start (pending, blocked,
//! progressing, paused) needs both too. Owns that rule only; it reads no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::approval::{ApprovalRecord, Judged, needs_wave_flags};
use crate::plan::Plan;
use crate::state::{PlanState, UnitPhase};

/// An approval in use that expires within the warning window.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiring<'a> {
    pub approval: &'a ApprovalRecord,
    pub expires: DateTime<Utc>,
    /// The flag it carries, and for which units ("jp/signin") of the plan.
    pub units: Vec<String>,
}

/// Approvals that units of `plan` depend on and that expire after `now` and at most `within`
/// from it, by name.
pub fn expiring<'a>(
    plan: &Plan,
    state: &PlanState,
    approvals: &'a [ApprovalRecord],
    now: DateTime<Utc>,
    within: TimeDelta,
) -> Vec<Expiring<'a>> {
    if state.aborted {
        return Vec::new();
    }
    let judged = Judged::new(approvals, &plan.approval_policies);
    let mut found: BTreeMap<&str, Expiring<'a>> = BTreeMap::new();
    let n = plan.services.len().max(1);
    for (i, u) in state.units.iter().enumerate() {
        let Some(region) = plan.regions.get(i / n) else { continue };
        let to_start =
            matches!(u.phase, UnitPhase::Pending | UnitPhase::Blocked | UnitPhase::Progressing | UnitPhase::Paused);
        if !to_start && u.percent == 0 {
            continue;
        }
        let wave_gated = state.waves.get(region.wave).is_some_and(|w| needs_wave_flags(w.phase, u.phase));
        let wave_flags =
            plan.waves.get(region.wave).filter(|_| wave_gated).map(|w| w.approvals.as_slice()).unwrap_or_default();
        for flag in region.approvals.iter().chain(wave_flags) {
            let Ok(held) = judged.holds(flag, &plan.name, &u.region, Some(&u.service), now) else { continue };
            for a in held {
                let Some(expires) = a.expires.filter(|e| *e > now && *e - now <= within) else { continue };
                found
                    .entry(a.name.as_str())
                    .or_insert_with(|| Expiring { approval: a, expires, units: Vec::new() })
                    .units
                    .push(format!("{}/{}", u.region, u.service));
            }
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::approval::ApprovalScopeSet;
    use crate::state::WavePhase;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + TimeDelta::hours(h)
    }

    fn plan() -> Plan {
        let text = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                    [{name: s}]\n  regions: [{name: us}, {name: jp, approvals: [jp-regulator]}]\n  waves: [{name: one, \
                    regions: [us], approvals: [ops-go]}, {name: two, regions: [jp]}]\n";
        crate::validate::load(&[("p.yaml".into(), text.into())], None).plans.remove(0)
    }

    fn approval(name: &str, flag: &str, expires: i64) -> ApprovalRecord {
        ApprovalRecord {
            name: name.into(),
            flag: flag.into(),
            granted_by: "ministry".into(),
            reference: None,
            granted_at: None,
            expires: Some(t(expires)),
            scope: ApprovalScopeSet::default(),
            revoked: None,
            signature: None,
        }
    }

    #[test]
    fn approvals_in_use_that_expire_within_the_window_are_listed() {
        let plan = plan();
        let mut state = PlanState::new(&plan);
        let approvals =
            [approval("jp-soon", "jp-regulator", 10), approval("ops-late", "ops-go", 48), approval("other", "x", 1)];
        let names = |state: &PlanState| {
            expiring(&plan, state, &approvals, t(0), TimeDelta::hours(24))
                .iter()
                .map(|e| e.approval.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&state), ["jp-soon"], "a pending unit depends on its flag; ops-late is outside the window");
        // Once jp is enabled and its wave complete without traffic left... an enabled unit
        // with traffic still needs its region's flag.
        for u in &mut state.units {
            (u.phase, u.percent) = (UnitPhase::Enabled, 100);
        }
        for w in &mut state.waves {
            w.phase = WavePhase::Complete;
        }
        assert_eq!(names(&state), ["jp-soon"]);
        assert!(expiring(&plan, &state, &approvals, t(11), TimeDelta::hours(24)).is_empty(), "expired: not expiring");
        // Wave one completed; a unit of it not enabled (never started, or retried) still needs
        // the wave's flag, so ops-late counts again; an enabled one does not.
        let week = |state: &PlanState| {
            expiring(&plan, state, &approvals, t(0), TimeDelta::hours(72))
                .iter()
                .map(|e| e.approval.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(week(&state), ["jp-soon"]);
        (state.units[0].phase, state.units[0].percent) = (UnitPhase::Blocked, 0);
        assert_eq!(week(&state), ["jp-soon", "ops-late"]);
    }
}
