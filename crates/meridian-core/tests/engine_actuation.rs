//! A step is held for its bake from when the target confirmed the traffic, not from when the
//! move was decided; a unit whose actuation is unconfirmed takes no further step. (Found by
//! the crash test: a controller killed between deciding 10 % and sending it came back after
//! the bake had "elapsed" and went straight to 50 %.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::engine::{Confirmation, UnitRef};
use meridian_core::state::PlanState;
use meridian_core::validate::load;
use meridian_core::{Observations, Plan, WaitReason, decide};

/// A one-unit plan: steps 10, 50, 100 baked for a minute each, plus `extra` spec lines.
fn mk_plan_with(extra: &str) -> Plan {
    let yaml = format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: s}}]
  regions: [{{name: r}}]
  waves: [{{name: w, regions: [r]}}]
  steps: [10, 50, 100]
  stepBake: 1m
{extra}"
    );
    let bundle = load(&[("p.yaml".into(), yaml)], None);
    assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
    bundle.plans.into_iter().next().expect("valid plan")
}

fn mk_plan() -> Plan {
    mk_plan_with("")
}

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap() + TimeDelta::minutes(min)
}

fn unit() -> UnitRef {
    UnitRef { region: "r".into(), service: "s".into() }
}

#[test]
fn an_unconfirmed_step_never_advances_however_long_it_waits() {
    let plan = mk_plan();
    let d = decide(&plan, PlanState::new(&plan), &Observations::default(), t(0));
    assert_eq!(d.state.units[0].percent, 10);
    let pending = [unit()];
    let obs = Observations { unconfirmed: &pending, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, t(30));
    assert_eq!(d.state.units[0].percent, 10, "advanced before the target confirmed");
    assert_eq!(d.state.units[0].waiting, Some(WaitReason::Actuation { percent: 10 }));
    assert!(d.actions.is_empty());
}

#[test]
fn the_bake_counts_from_the_confirmation() {
    let plan = mk_plan();
    let d = decide(&plan, PlanState::new(&plan), &Observations::default(), t(0));
    // The target confirms 10 % only at t(5) (the controller was down meanwhile).
    let confirmed = [Confirmation { region: "r".into(), service: "s".into(), percent: 10, at: t(5) }];
    let obs = Observations { confirmations: &confirmed, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, t(5));
    assert_eq!(d.state.units[0].percent, 10, "a step confirmed at t(5) was not held for its bake");
    assert_eq!(d.state.units[0].waiting, Some(WaitReason::StepBake { until: t(6) }));
    assert_eq!(d.wake_at, Some(t(6)));
    let d = decide(&plan, d.state, &Observations::default(), t(6));
    assert_eq!(d.state.units[0].percent, 50);
}

#[test]
fn a_confirmation_of_another_percent_changes_nothing() {
    let plan = mk_plan();
    let d = decide(&plan, PlanState::new(&plan), &Observations::default(), t(0));
    let half = t(0) + TimeDelta::seconds(30);
    let stale = [Confirmation { region: "r".into(), service: "s".into(), percent: 0, at: half }];
    let obs = Observations { confirmations: &stale, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, half);
    assert_eq!(d.state.units[0].bake_since, Some(t(0)));
    let d = decide(&plan, d.state, &Observations::default(), t(1));
    assert_eq!(d.state.units[0].percent, 50);
}

fn mk_hold_plan() -> Plan {
    mk_plan_with("  actuator:\n    http: {url: 'http://127.0.0.1:1/{{region}}/{{service}}', onDrift: hold}\n")
}

fn reading(percent: u32) -> [meridian_core::TrafficReading; 1] {
    [meridian_core::TrafficReading { region: "r".into(), service: "s".into(), percent }]
}

#[test]
fn on_drift_hold_records_once_holds_the_unit_and_never_reapplies() {
    use meridian_core::{AuditEvent, Cause};
    let plan = mk_hold_plan();
    let d = decide(&plan, PlanState::new(&plan), &Observations::default(), t(0));
    // Someone set the target to 0 % behind Meridian's back.
    let drifted = reading(0);
    let obs = Observations { traffic: &drifted, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, t(0) + TimeDelta::seconds(30));
    assert!(d.actions.is_empty(), "hold must not re-apply: {:?}", d.actions);
    assert!(matches!(
        d.audit.as_slice(),
        [r] if r.event == AuditEvent::Drift { expected: 10, observed: 0 } && r.cause == Cause::DriftHeld
    ));
    // The same drift read again is not recorded again, and the unit does not advance past its bake.
    let d = decide(&plan, d.state, &obs, t(2));
    assert!(d.audit.is_empty() && d.actions.is_empty(), "{:?}", d.audit);
    assert_eq!(d.state.units[0].percent, 10);
    assert_eq!(d.state.units[0].waiting, Some(WaitReason::Drift { expected: 10, observed: 0 }));
    // Restored by hand: recorded, and the rollout goes on.
    let restored = reading(10);
    let obs = Observations { traffic: &restored, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, t(3));
    assert!(d.audit.iter().any(|r| r.cause == Cause::DriftResolved));
    assert_eq!(d.state.units[0].percent, 50, "a restored unit moves on");
}

#[test]
fn drift_by_default_is_reapplied() {
    let plan = mk_plan();
    let d = decide(&plan, PlanState::new(&plan), &Observations::default(), t(0));
    let drifted = reading(0);
    let obs = Observations { traffic: &drifted, ..Observations::default() };
    let d = decide(&plan, d.state, &obs, t(0) + TimeDelta::seconds(30));
    assert_eq!(
        d.actions,
        vec![meridian_core::Action::SetTraffic { region: "r".into(), service: "s".into(), percent: 10, from: 10 }]
    );
}
