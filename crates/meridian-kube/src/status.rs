//! What the controller reports on a `RolloutPlan`: `kubectl get rolloutplans` columns and the
//! standard conditions (`Accepted`, `Progressing`, `Blocked`, `Degraded`, `Complete`), following
//! the Kubernetes API conventions: each condition's `lastTransitionTime` moves only when its
//! status does, and `observedGeneration` says which spec it describes.
//!
//! Pure: computed from (plan, state, generation, the previous status, now); the status writer
//! writes only when the result differs from what is there.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use meridian_core::outcome::outcome;
use meridian_core::plan::Plan;
use meridian_core::state::{PlanPhase, PlanState, UnitPhase, WavePhase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status subresource of a `RolloutPlan`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlanStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `pending`, `running`, `paused`, `halted`, `complete` or `aborted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The first wave that is not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<String>,
    /// Units (region, service) enabled, as `enabled/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_units: Option<String>,
    /// What the first waiting unit or wave waits for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The outcome in one line ("complete, 1 region rolled back: jp (accepted by alice)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `Accepted`, `Progressing`, `Blocked`, `Degraded`, `Complete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The controller's own durable record of the rollout (engine state, open actuations,
    /// applied commands, audit records not yet moved to their log), written only by the
    /// leader with optimistic concurrency. Not for editing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub engine: Option<serde_json::Value>,
}

/// An object the API server keeps as it is (`x-kubernetes-preserve-unknown-fields`).
fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The status of `plan` in `state`, for the spec at `generation`. `rejected` holds the located
/// errors of an edit that did not validate (the previous spec stays in force: `Accepted` is
/// False with them). Conditions keep their `lastTransitionTime` from `previous` while their
/// status is unchanged.
pub fn plan_status(
    plan: &Plan,
    state: &PlanState,
    generation: Option<i64>,
    rejected: Option<&[String]>,
    previous: Option<&RolloutPlanStatus>,
    now: DateTime<Utc>,
) -> RolloutPlanStatus {
    let o = outcome(plan, state);
    let phase = state.phase();
    let current_wave = state.waves.iter().find(|w| w.phase != WavePhase::Complete).map(|w| w.name.clone());
    let blocked = state
        .units
        .iter()
        .filter(|u| matches!(u.phase, UnitPhase::Blocked | UnitPhase::Pending))
        .find_map(|u| u.waiting.as_ref().map(|w| format!("{}/{}: {w}", u.region, u.service)))
        .or_else(|| state.waves.iter().find_map(|w| w.waiting.as_ref().map(|why| format!("wave {}: {why}", w.name))));
    let degraded = !o.failed.is_empty();
    let wanted = [
        match rejected {
            None => ("Accepted", true, "Valid", "the spec validates and is in force".to_string()),
            Some(errors) => {
                ("Accepted", false, "Invalid", format!("the previous spec stays in force: {}", errors.join("; ")))
            }
        },
        ("Progressing", phase == PlanPhase::Running, phase_reason(phase), o.summary.clone()),
        match &blocked {
            Some(why) => ("Blocked", true, "Waiting", why.clone()),
            None => ("Blocked", false, "NotWaiting", "nothing waits".to_string()),
        },
        if degraded {
            ("Degraded", true, "RegionFailed", o.summary.clone())
        } else {
            ("Degraded", false, "Healthy", "no region failed".to_string())
        },
        match phase {
            PlanPhase::Complete if o.all_enabled() => ("Complete", true, "AllEnabled", o.summary.clone()),
            PlanPhase::Complete => ("Complete", true, "CompleteWithExceptions", o.summary.clone()),
            _ => ("Complete", false, phase_reason(phase), o.summary.clone()),
        },
    ];
    let conditions = wanted
        .into_iter()
        .map(|(kind, holds, reason, message)| {
            let status = if holds { "True" } else { "False" };
            let before = previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == kind));
            let since = match before {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(k8s_time(now)),
            };
            Condition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect();
    RolloutPlanStatus {
        observed_generation: generation,
        phase: Some(phase.to_string()),
        current_wave,
        enabled_units: Some(format!("{}/{}", o.enabled, o.units)),
        blocked,
        summary: Some(o.summary),
        conditions,
        // The store's to write, never the reporter's (a merge patch leaves it as it is).
        engine: None,
    }
}

/// The status of a plan that is not run because a plan of its name in another namespace runs
/// (`--all-namespaces`): `Accepted` False, reason `DuplicateName`, naming both namespaces.
pub fn refused_status(
    refused: &crate::scope::RefusedPlan,
    generation: Option<i64>,
    previous: Option<&RolloutPlanStatus>,
    now: DateTime<Utc>,
) -> RolloutPlanStatus {
    let before = previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == "Accepted"));
    let since = match before {
        Some(c) if c.status == "False" && c.reason == "DuplicateName" => c.last_transition_time.clone(),
        _ => Time(k8s_time(now)),
    };
    RolloutPlanStatus {
        observed_generation: generation,
        conditions: vec![Condition {
            type_: "Accepted".to_string(),
            status: "False".to_string(),
            reason: "DuplicateName".to_string(),
            message: refused.message(),
            observed_generation: generation,
            last_transition_time: since,
        }],
        ..RolloutPlanStatus::default()
    }
}

/// A chrono time as the API's timestamp (millisecond precision is all a condition needs).
fn k8s_time(at: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn phase_reason(phase: PlanPhase) -> &'static str {
    match phase {
        PlanPhase::Pending => "Pending",
        PlanPhase::Running => "Running",
        PlanPhase::Paused => "Paused",
        PlanPhase::Halted => "Halted",
        PlanPhase::Complete => "Complete",
        PlanPhase::Aborted => "Aborted",
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn mk_plan() -> Plan {
        let text = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                    [{name: s}]\n  regions: [{name: a}, {name: jp, approvals: [jp-regulator]}]\n  waves: [{name: one, \
                    regions: [a]}, {name: two, regions: [jp]}]\n  steps: [50, 100]\n";
        let bundle = meridian_core::validate::load(&[("p.yaml".to_string(), text.to_string())], None);
        bundle.plans.into_iter().next().unwrap()
    }

    fn condition<'a>(s: &'a RolloutPlanStatus, kind: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_running_plan_reports_its_phase_wave_counts_and_conditions() {
        let plan = mk_plan();
        let t0 = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let mut state = PlanState::new(&plan);
        state.waves[0].phase = WavePhase::Running;
        (state.units[0].phase, state.units[0].percent) = (UnitPhase::Progressing, 50);
        let s = plan_status(&plan, &state, Some(3), None, None, t0);
        assert_eq!(s.phase.as_deref(), Some("running"));
        assert_eq!(s.current_wave.as_deref(), Some("one"));
        assert_eq!(s.enabled_units.as_deref(), Some("0/2"));
        assert_eq!(s.observed_generation, Some(3));
        let kinds: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(kinds, ["Accepted", "Progressing", "Blocked", "Degraded", "Complete"]);
        assert_eq!(condition(&s, "Accepted").status, "True");
        assert_eq!(condition(&s, "Progressing").status, "True");
        assert_eq!(condition(&s, "Complete").status, "False");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn a_transition_time_moves_only_when_its_status_does() {
        let plan = mk_plan();
        let t0 = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let mut state = PlanState::new(&plan);
        state.waves[0].phase = WavePhase::Running;
        let first = plan_status(&plan, &state, Some(1), None, None, t0);
        // Later, nothing changed: the same times.
        let again = plan_status(&plan, &state, Some(1), None, Some(&first), t0 + TimeDelta::minutes(5));
        assert_eq!(again, first, "an unchanged status is not rewritten");
        // An edit is rejected: Accepted turns False now; the others keep their times.
        let errors = vec!["p.yaml:9:3: error: unknown region \"zz\"".to_string()];
        let later = t0 + TimeDelta::minutes(10);
        let rejected = plan_status(&plan, &state, Some(2), Some(&errors), Some(&first), later);
        let accepted = condition(&rejected, "Accepted");
        assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "Invalid"));
        assert!(accepted.message.contains("unknown region \"zz\""), "{}", accepted.message);
        assert_eq!(accepted.last_transition_time, Time(k8s_time(later)));
        assert_eq!(condition(&rejected, "Progressing").last_transition_time, Time(k8s_time(t0)));
    }
}
