//! Small builders for the store's tests.

use chrono::{DateTime, TimeZone, Utc};
use meridian_core::approval::ApprovalScopeSet;
use meridian_core::state::{PauseSet, UnitState};
use meridian_core::{
    Action, ApprovalRecord, AuditEvent, AuditRecord, Cause, Command, CommandKind, PlanState, UnitPhase,
};

use crate::Store;

pub(crate) fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::minutes(minutes)
}

pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    (tmp, store)
}

/// A one-unit plan state whose last audit record is `audit_seq`.
pub(crate) fn state(plan: &str, audit_seq: u64) -> PlanState {
    PlanState {
        plan: plan.into(),
        units: vec![UnitState {
            region: "eu".into(),
            service: "web".into(),
            phase: UnitPhase::Progressing,
            step: Some(0),
            percent: 1,
            since: Some(t(0)),
            bake_since: None,
            waiting: None,
            promoted: false,
            drift: None,
            actuated: true,
            failure: None,
            progress_at: None,
            stalled: None,
            checks: Vec::new(),
        }],
        waves: Vec::new(),
        paused: PauseSet::default(),
        aborted_regions: Default::default(),
        aborted: false,
        audit_seq,
        freezes: Vec::new(),
        full_promotions: Vec::new(),
        departing: Vec::new(),
    }
}

pub(crate) fn rec(plan: &str, seq: u64) -> AuditRecord {
    AuditRecord {
        seq,
        at: t(seq as i64),
        plan: plan.into(),
        wave: Some("canary".into()),
        region: Some("eu".into()),
        service: Some("web".into()),
        event: AuditEvent::Unit {
            from: UnitPhase::Blocked,
            to: UnitPhase::Progressing,
            step: Some(0),
            from_percent: 0,
            to_percent: 1,
        },
        cause: Cause::Started { approvals: vec!["ops-go-1".into()], flags: vec!["ops-go".into()] },
    }
}

pub(crate) fn set(region: &str, service: &str, percent: u32) -> Action {
    Action::SetTraffic { region: region.into(), service: service.into(), percent, from: 0 }
}

pub(crate) fn approval(name: &str, flag: &str) -> ApprovalRecord {
    ApprovalRecord {
        name: name.into(),
        flag: flag.into(),
        granted_by: "ministry".into(),
        reference: Some("letter 2026-0528-17".into()),
        granted_at: Some(t(0)),
        expires: Some(t(60 * 24)),
        scope: ApprovalScopeSet { plans: vec!["p".into()], ..Default::default() },
        revoked: None,
        signature: None,
    }
}

pub(crate) fn command(kind: CommandKind, at: DateTime<Utc>) -> Command {
    Command::plan_wide(kind, "alice", at)
}
