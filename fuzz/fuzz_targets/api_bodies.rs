//! The JSON bodies of the API's writes, read by the functions the handlers call: command
//! bodies (`{"wave": W}` / `{"region": R}`), freeze and unfreeze bodies
//! (`meridian_api::command_from_body`) and approval grants (`meridian_api::approval_from_body`).
//! Input: one byte choosing the write, the body after it.
//!
//! Never panics. A command the API accepts is one the controller accepts too (the core's
//! `scope_problem` finds nothing), of the kind asked for, with a non-empty freeze reason and
//! an `until` in the future, and it survives the JSON round trip of the store. An approval
//! the API accepts has the name, flag and grantedBy the controller requires, is not revoked,
//! and survives the same round trip.

#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use meridian_api::{Identity, Role, approval_from_body, command_from_body};
use meridian_core::command::scope_problem;
use meridian_core::state::RuntimeFreeze;
use meridian_core::{ApprovalRecord, Command, CommandKind, Plan, PlanState};

const PLAN: &str = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: fuzz
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions: [{name: us-east}, {name: jp, approvals: [jp-regulator]}, {name: kr}]
  waves:
    - {name: canary, regions: [us-east]}
    - {name: asia, regions: [jp, kr]}
"#;

const KINDS: [CommandKind; 7] = [
    CommandKind::Pause,
    CommandKind::Resume,
    CommandKind::Abort,
    CommandKind::Promote,
    CommandKind::Retry,
    CommandKind::Freeze,
    CommandKind::Unfreeze,
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_default()
}

fn plan() -> Plan {
    let bundle = meridian_core::validate::load(&[("plan.yaml".into(), PLAN.into())], None);
    bundle.plans.into_iter().next().unwrap_or_else(|| panic!("the target's plan is invalid: {:?}", bundle.report))
}

/// The plan's state with one run-time freeze in force, for `unfreeze {"name": ...}`.
fn state(plan: &Plan) -> PlanState {
    let mut state = PlanState::new(plan);
    state.freezes.push(RuntimeFreeze {
        name: "region-jp".into(),
        reason: "maintenance".into(),
        by: "ops".into(),
        at: now(),
        until: None,
        wave: None,
        region: Some("jp".into()),
    });
    state
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let plan = plan();
    let state = state(&plan);
    let Some(&kind) = KINDS.get(usize::from(choice) % (KINDS.len() + 1)) else {
        let identity =
            Identity { name: "alice".into(), role: Some(Role::Approver), flags: vec!["jp-regulator".into()] };
        match approval_from_body(body, &identity, now()) {
            Ok((record, _warnings)) => {
                assert!(!record.name.trim().is_empty() && !record.flag.trim().is_empty(), "{record:?}");
                assert!(!record.granted_by.trim().is_empty() && record.revoked.is_none(), "{record:?}");
                let json = serde_json::to_string(&record).unwrap_or_default();
                let back: ApprovalRecord = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
                assert_eq!(back, record, "{json}");
            }
            Err(e) => assert!(e.status.is_client_error() && !e.error.is_empty(), "{e:?}"),
        }
        return;
    };
    let with_state = choice & 0x80 == 0;
    match command_from_body(&plan, with_state.then_some(&state), kind, body, "ops", now()) {
        Ok(command) => {
            assert_eq!(command.kind, kind);
            assert_eq!(scope_problem(&plan, &command), None, "{command:?}");
            assert!(command.wave.is_none() || command.region.is_none(), "{command:?}");
            if let Some(freeze) = &command.freeze {
                assert!(!freeze.reason.trim().is_empty() && !freeze.name.trim().is_empty(), "{command:?}");
                assert!(freeze.until.is_none_or(|u| u > now()), "{command:?}");
            }
            assert_eq!(command.freeze.is_some(), kind == CommandKind::Freeze);
            let json = serde_json::to_string(&command).unwrap_or_default();
            let back: Command = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, command, "{json}");
        }
        Err(e) => assert!(e.status.is_client_error() && !e.error.is_empty(), "{e:?}"),
    }
});
