//! The engine record a plan keeps in its `.status.engine`: everything one commit must write at
//! once (the engine state, one intent per traffic change, the commands it applied, its audit
//! records until they are in their log), so one conditional write of one object is the
//! transaction the embedded store makes with SQL.
//!
//! Pure: how a commit, a sent or completed intent and a flushed audit log change the record,
//! and the fencing rule. The store around it only reads and writes objects.

use meridian_core::engine::{Action, UnitRef};
use meridian_core::ports::store::{Intent, IntentOutcome};
use meridian_core::{AuditRecord, PlanState};
use serde::{Deserialize, Serialize};

/// How many applied command names a record remembers (their objects are deleted once the
/// commit that applied them is written; the names guard against a delete that failed).
pub const APPLIED_COMMANDS_KEPT: usize = 256;

/// The durable record of one plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineRecord {
    /// Increases with every commit; a writer that finds another revision than the one it read
    /// lost a race and must not overwrite.
    pub revision: u64,
    /// The leader term (the Lease's transitions) of the last writer: a writer of an older
    /// term is refused (fencing).
    pub term: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PlanState>,
    /// The seq of the last audit record committed (gapless per plan).
    pub audit_seq: u64,
    /// Audit records committed but maybe not yet in the plan's audit log; trimmed once they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unflushed_audit: Vec<AuditRecord>,
    /// The newest intent per (region, service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<StoredIntent>,
    /// Names of the command objects applied, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_commands: Vec<String>,
}

/// An actuation as recorded before it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredIntent {
    /// The idempotency key sent with every attempt; unique, so it also names the intent.
    pub key: String,
    pub region: String,
    pub service: String,
    pub percent: u32,
    /// The term of the leader that decided it.
    pub term: u64,
    pub status: IntentStatus,
}

/// Where an intent stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum IntentStatus {
    Open,
    Sent,
    Done { observed: u32 },
    Failed { error: String },
}

impl StoredIntent {
    pub fn is_open(&self) -> bool {
        matches!(self.status, IntentStatus::Open | IntentStatus::Sent)
    }

    /// The port's view, with the id the store hands out for it.
    pub fn to_intent(&self, plan: &str) -> Intent {
        Intent {
            id: intent_id(&self.key),
            plan: plan.to_string(),
            region: self.region.clone(),
            service: self.service.clone(),
            percent: self.percent,
            idempotency_key: self.key.clone(),
        }
    }
}

/// A stable id for a unique name (an intent's key, a command object's name): the same in
/// every replica and after a restart, so no table of ids needs to be kept.
pub fn intent_id(name: &str) -> i64 {
    // FNV-1a, 63 bits: positive, and a collision needs 2^31 live names.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

/// Why a write of a record is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The record was written by a newer leader.
    Fenced { ours: u64, theirs: u64 },
    /// Another commit came first (the record's revision moved since it was read).
    Raced { read: u64, found: u64 },
    /// The audit records do not follow on from the last one.
    AuditGap { expected: u64, got: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Fenced { ours, theirs } => write!(
                f,
                "fenced: the record was written by leader term {theirs}, this replica leads term {ours}; it must \
                 not write any more"
            ),
            Refused::Raced { read, found } => write!(
                f,
                "another writer committed first (revision {found}, this replica read {read}); not overwriting it"
            ),
            Refused::AuditGap { expected, got } => write!(f, "audit gap: expected seq {expected}, got {got}"),
        }
    }
}

/// May a writer of `term` that read revision `read` write over `found`?
pub fn may_write(found: &EngineRecord, read: u64, term: u64) -> Result<(), Refused> {
    if found.term > term {
        return Err(Refused::Fenced { ours: term, theirs: found.term });
    }
    if found.revision != read {
        return Err(Refused::Raced { read, found: found.revision });
    }
    Ok(())
}

/// What a commit makes of `record`: the new state, its audit records appended, one open intent
/// per `SetTraffic` (replacing the unit's older one), the applied commands remembered. Returns
/// the new record and the intents created.
pub fn commit(
    record: &EngineRecord,
    plan: &str,
    state: &PlanState,
    audit: &[AuditRecord],
    actions: &[Action],
    applied_commands: &[String],
    term: u64,
) -> Result<(EngineRecord, Vec<Intent>), Refused> {
    if let Some((expected, got)) = meridian_core::audit::seq_gap(record.audit_seq, audit) {
        return Err(Refused::AuditGap { expected, got });
    }
    let mut next = record.clone();
    next.revision += 1;
    next.term = term;
    next.state = Some(state.clone());
    next.audit_seq += audit.len() as u64;
    next.unflushed_audit.extend(audit.iter().cloned());
    let mut created = Vec::new();
    for (k, Action::SetTraffic { region, service, percent, .. }) in actions.iter().enumerate() {
        let intent = StoredIntent {
            key: format!("{plan}/{region}/{service}/t{term}r{}a{k}", next.revision),
            region: region.clone(),
            service: service.clone(),
            percent: *percent,
            term,
            status: IntentStatus::Open,
        };
        next.intents.retain(|i| !(i.region == *region && i.service == *service));
        created.push(intent.to_intent(plan));
        next.intents.push(intent);
    }
    next.applied_commands.extend(applied_commands.iter().cloned());
    let excess = next.applied_commands.len().saturating_sub(APPLIED_COMMANDS_KEPT);
    next.applied_commands.drain(..excess);
    Ok((next, created))
}

/// The record with the intent `id` marked sent or completed; `None` when it holds no such open
/// intent (superseded, or completed already).
pub fn settle(record: &EngineRecord, id: i64, status: IntentStatus) -> Option<EngineRecord> {
    let mut next = record.clone();
    let intent = next.intents.iter_mut().find(|i| intent_id(&i.key) == id && i.is_open())?;
    intent.status = status;
    Some(next)
}

/// The port's outcome as a stored status.
pub fn outcome_status(outcome: IntentOutcome) -> IntentStatus {
    match outcome {
        IntentOutcome::Done { observed } => IntentStatus::Done { observed },
        IntentOutcome::Failed { error } => IntentStatus::Failed { error },
    }
}

/// Units whose newest intent is not done (open, or failed for good).
pub fn unconfirmed(record: &EngineRecord) -> Vec<UnitRef> {
    record
        .intents
        .iter()
        .filter(|i| !matches!(i.status, IntentStatus::Done { .. }))
        .map(|i| UnitRef { region: i.region.clone(), service: i.service.clone() })
        .collect()
}

/// The record without the audit records the log holds (seq <= `through`).
pub fn trimmed(record: &EngineRecord, through: u64) -> EngineRecord {
    let mut next = record.clone();
    next.unflushed_audit.retain(|r| r.seq > through);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::audit::{AuditEvent, Cause};

    fn state() -> PlanState {
        serde_json::from_str(r#"{"plan": "p", "waves": [], "units": []}"#).unwrap()
    }

    fn record(seq: u64) -> AuditRecord {
        AuditRecord {
            seq,
            at: chrono::DateTime::UNIX_EPOCH,
            plan: "p".into(),
            wave: None,
            region: None,
            service: None,
            event: AuditEvent::Drift { expected: 1, observed: 0 },
            cause: Cause::WaveStarted,
        }
    }

    fn set(region: &str, percent: u32) -> Action {
        Action::SetTraffic { region: region.into(), service: "s".into(), percent, from: 0 }
    }

    #[test]
    fn a_commit_appends_gapless_audit_and_supersedes_the_units_older_intent() {
        let (one, created) =
            commit(&EngineRecord::default(), "p", &state(), &[record(1)], &[set("a", 10)], &[], 3).unwrap();
        assert_eq!((one.revision, one.term, one.audit_seq), (1, 3, 1));
        assert_eq!(created[0].idempotency_key, "p/a/s/t3r1a0");
        assert_eq!(created[0].id, intent_id("p/a/s/t3r1a0"));
        let (two, _) = commit(&one, "p", &state(), &[record(2)], &[set("a", 50), set("b", 10)], &[], 3).unwrap();
        assert_eq!(
            two.intents.iter().map(|i| (i.region.as_str(), i.percent)).collect::<Vec<_>>(),
            [("a", 50), ("b", 10)]
        );
        assert_eq!(
            commit(&two, "p", &state(), &[record(4)], &[], &[], 3),
            Err(Refused::AuditGap { expected: 3, got: 4 })
        );
        assert_eq!(trimmed(&two, 1).unflushed_audit.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn settling_marks_only_open_intents_and_unconfirmed_lists_what_is_not_done() {
        let (r, created) =
            commit(&EngineRecord::default(), "p", &state(), &[], &[set("a", 10), set("b", 10)], &[], 0).unwrap();
        let sent = settle(&r, created[0].id, IntentStatus::Sent).unwrap();
        let done = settle(&sent, created[0].id, IntentStatus::Done { observed: 10 }).unwrap();
        assert_eq!(settle(&done, created[0].id, IntentStatus::Sent), None, "done is final");
        assert_eq!(unconfirmed(&done), [UnitRef { region: "b".into(), service: "s".into() }]);
    }

    #[test]
    fn an_older_term_or_a_moved_revision_may_not_write() {
        let found = EngineRecord { revision: 7, term: 2, ..EngineRecord::default() };
        assert_eq!(may_write(&found, 7, 2), Ok(()));
        assert_eq!(may_write(&found, 7, 3), Ok(()));
        assert_eq!(may_write(&found, 7, 1), Err(Refused::Fenced { ours: 1, theirs: 2 }));
        assert_eq!(may_write(&found, 6, 2), Err(Refused::Raced { read: 6, found: 7 }));
    }

    #[test]
    fn applied_command_names_are_bounded() {
        let names: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let (r, _) = commit(&EngineRecord::default(), "p", &state(), &[], &[], &names, 0).unwrap();
        assert_eq!(r.applied_commands.len(), APPLIED_COMMANDS_KEPT);
        assert_eq!(r.applied_commands.last().map(String::as_str), Some("c299"));
    }

    /// The record of a plan of 50 regions x 10 services with every unit stepping and one open
    /// intent each, plus a decision's worth of unflushed audit, stays far below the ~1 MiB the
    /// API server accepts for an object (the audit trail itself lives in its log segments).
    #[test]
    #[allow(clippy::print_stderr, reason = "the test says the size it measured")]
    fn a_fifty_by_ten_plan_in_full_flight_fits_in_one_object() {
        let services: Vec<String> = (0..10).map(|s| format!("{{name: service-{s}}}")).collect();
        let regions: Vec<String> = (0..50).map(|r| format!("{{name: region-{r:02}}}")).collect();
        let waves: Vec<String> = (0..5)
            .map(|w| {
                let names: Vec<String> = (0..10).map(|r| format!("region-{:02}", w * 10 + r)).collect();
                format!("    - {{name: wave-{w}, regions: [{}]}}", names.join(", "))
            })
            .collect();
        let yaml = format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: big}}\nspec:\n  services: [{}]\n  \
             regions: [{}]\n  waves:\n{}\n  steps: [1, 5, 25, 50, 100]\n",
            services.join(", "),
            regions.join(", "),
            waves.join("\n")
        );
        let bundle = meridian_core::validate::load(&[("big.yaml".to_string(), yaml)], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        let plan = bundle.plans.into_iter().next().unwrap();
        let mut state = PlanState::new(&plan);
        for unit in &mut state.units {
            unit.percent = 25;
        }
        let actions: Vec<Action> = state
            .units
            .iter()
            .map(|u| Action::SetTraffic { region: u.region.clone(), service: u.service.clone(), percent: 50, from: 25 })
            .collect();
        let audit: Vec<AuditRecord> = (1..=500).map(record).collect();
        let (next, _) = commit(&EngineRecord::default(), "big", &state, &audit, &actions, &[], 7).unwrap();
        let bytes = serde_json::to_vec(&next).unwrap().len();
        eprintln!("engine record of 500 units in flight with 500 unflushed audit records: {bytes} bytes");
        assert_eq!(next.intents.len(), 500);
        assert!(bytes < 512 * 1024, "{bytes} bytes");
    }
}
