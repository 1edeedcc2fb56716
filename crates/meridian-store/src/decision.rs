//! Plan states and the audit log: committing a decision, reading state and log back.
//!
//! A decision is written in one transaction: the new state, its audit records, an intent per
//! `SetTraffic` action, and the commands it applied. The checks below run inside that
//! transaction, so a refused decision writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use meridian_core::{Action, AuditRecord, PlanState};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{decode, encode, int, limit, sql, ts, uint};
use crate::{CommandId, Intent, Store, StoreError, chain, command, intent};

impl Store {
    /// The plan's last committed state, if a decision was ever committed for it.
    pub fn load_state(&self, plan: &str) -> Result<Option<PlanState>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT state FROM plan_states WHERE plan = ?1", params![plan], |r| r.get(0))
            .optional()
            .map_err(sql("read a plan state"))?;
        json.map(|j| decode(&j, "plan state", plan)).transpose()
    }

    /// The stored states of `plans`, by name (a plan with none is left out), read in one
    /// query: a start with 1,000 plans makes one round trip, not 1,000. Only the states asked
    /// for are decoded.
    pub fn load_states(&self, plans: &[&str]) -> Result<BTreeMap<String, PlanState>, StoreError> {
        let wanted: BTreeSet<&str> = plans.iter().copied().collect();
        let mut stmt = self.conn.prepare("SELECT plan, state FROM plan_states").map_err(sql("read plan states"))?;
        let mut rows = stmt.query([]).map_err(sql("read plan states"))?;
        let mut states = BTreeMap::new();
        while let Some(row) = rows.next().map_err(sql("read plan states"))? {
            let plan: String = row.get(0).map_err(sql("read plan states"))?;
            if !wanted.contains(plan.as_str()) {
                continue;
            }
            let json = row.get_ref(1).map_err(sql("read plan states"))?.as_str().map_err(|e| StoreError::Corrupt {
                what: "plan state",
                key: plan.clone(),
                detail: e.to_string(),
            })?;
            let state = decode(json, "plan state", &plan)?;
            states.insert(plan, state);
        }
        Ok(states)
    }

    /// Names of every plan with a stored state, sorted.
    pub fn plans(&self) -> Result<Vec<String>, StoreError> {
        plans(&self.conn)
    }

    /// The seq of the plan's last audit record (0 when it has none).
    pub fn last_audit_seq(&self, plan: &str) -> Result<u64, StoreError> {
        last_seq(&self.conn, plan)
    }

    /// Audit records in order, at most `limit` of them, each with `seq > after_seq`.
    ///
    /// With a plan: that plan's records in seq order, so `after_seq` pages through its log.
    /// Without: every plan's records in the order they were committed (`after_seq` still
    /// filters each plan's seq; page a single plan for a resumable cursor).
    pub fn audit(&self, plan: Option<&str>, after_seq: u64, limit_to: usize) -> Result<Vec<AuditRecord>, StoreError> {
        audit(&self.conn, plan, after_seq, limit_to)
    }

    /// Commit one decision for `plan` atomically and durably: the new `state`, its `audit`
    /// records (appended; they must continue the plan's log without a gap or repeat, and
    /// `state.audit_seq` must be the last one), an open intent for each `SetTraffic` action
    /// (superseding any open intent for the same unit), and `applied_commands` marked
    /// applied (each must be pending and belong to `plan`).
    ///
    /// Returns the new intents, in action order, for the shell to send. On any error nothing
    /// is written.
    pub fn commit_decision(
        &mut self,
        plan: &str,
        state: &PlanState,
        audit: &[AuditRecord],
        actions: &[Action],
        applied_commands: &[CommandId],
        at: DateTime<Utc>,
    ) -> Result<Vec<Intent>, StoreError> {
        let decision = NewDecision { plan, state, audit, actions, applied_commands };
        self.commit_decisions(std::slice::from_ref(&decision), at).map(|mut v| v.pop().unwrap_or_default())
    }

    /// Commit several decisions (of different plans, or one after another of the same plan)
    /// in ONE transaction, each checked as [`Store::commit_decision`] checks it: all of them
    /// are durable when this returns, with a single wait for the disk, or, on any error,
    /// none is written. Returns each decision's new intents, in order.
    pub fn commit_decisions(
        &mut self,
        decisions: &[NewDecision<'_>],
        at: DateTime<Utc>,
    ) -> Result<Vec<Vec<Intent>>, StoreError> {
        let store_id = &self.store_id;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("commit a decision"))?;
        let mut out = Vec::with_capacity(decisions.len());
        for decision in decisions {
            out.push(write_decision(&tx, store_id, decision, at)?);
        }
        tx.commit().map_err(sql("commit a decision"))?;
        Ok(out)
    }
}

/// One decision, as [`Store::commit_decisions`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct NewDecision<'a> {
    pub plan: &'a str,
    pub state: &'a PlanState,
    pub audit: &'a [AuditRecord],
    pub actions: &'a [Action],
    pub applied_commands: &'a [CommandId],
}

/// Write one decision inside the caller's transaction (see [`Store::commit_decision`]).
fn write_decision(
    tx: &Connection,
    store_id: &str,
    d: &NewDecision<'_>,
    at: DateTime<Utc>,
) -> Result<Vec<Intent>, StoreError> {
    let (plan, state) = (d.plan, d.state);
    if state.plan != plan {
        return Err(StoreError::StatePlanMismatch { plan: plan.to_string(), found: state.plan.clone() });
    }
    let mut last = last_seq(tx, plan)?;
    for record in d.audit {
        append_audit(tx, plan, last, record)?;
        last = record.seq;
    }
    if state.audit_seq != last {
        return Err(StoreError::StateAuditMismatch {
            plan: plan.to_string(),
            state_seq: state.audit_seq,
            log_seq: last,
        });
    }
    let (json, seq) = (encode(state, "plan state")?, int(last, "audit seq")?);
    tx.prepare_cached(
        "INSERT INTO plan_states (plan, state, audit_seq, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (plan) DO UPDATE SET state = excluded.state, audit_seq = excluded.audit_seq,
                                          updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| stmt.execute(params![plan, json, seq, ts(at)]))
    .map_err(sql("write a plan state"))?;

    let mut intents = Vec::with_capacity(d.actions.len());
    for action in d.actions {
        match action {
            Action::SetTraffic { region, service, percent, from } => {
                intents.push(intent::record(tx, store_id, plan, region, service, *percent, *from, at)?);
            }
        }
    }
    for &id in d.applied_commands {
        command::mark_applied(tx, plan, id, at)?;
    }
    Ok(intents)
}

fn last_seq(conn: &Connection, plan: &str) -> Result<u64, StoreError> {
    let seq: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_records WHERE plan = ?1", params![plan], |r| r.get(0))
        .map_err(sql("read the audit log"))?;
    uint(seq, "audit seq", plan)
}

fn append_audit(conn: &Connection, plan: &str, last: u64, record: &AuditRecord) -> Result<(), StoreError> {
    if record.plan != plan {
        return Err(StoreError::AuditPlanMismatch {
            plan: plan.to_string(),
            seq: record.seq,
            found: record.plan.clone(),
        });
    }
    let expected = last + 1;
    if record.seq > expected {
        return Err(StoreError::AuditGap { plan: plan.to_string(), expected, found: record.seq });
    }
    if record.seq < expected {
        return Err(StoreError::AuditRepeat { plan: plan.to_string(), expected, found: record.seq });
    }
    conn.execute(
        "INSERT INTO audit_records (plan, seq, at, record) VALUES (?1, ?2, ?3, ?4)",
        params![plan, int(record.seq, "audit seq")?, ts(record.at), encode(record, "audit record")?],
    )
    .map_err(sql("append an audit record"))?;
    chain::append(conn, chain::Kind::Audit, &chain::audit_ref(plan, record.seq))
}

/// Names of every plan with a stored state, sorted.
pub(crate) fn plans(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT plan FROM plan_states ORDER BY plan").map_err(sql("list plans"))?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(sql("list plans"))?;
    rows.collect::<Result<_, _>>().map_err(sql("list plans"))
}

/// [`Store::audit`], on any connection (the store's, or a read-only one).
/// Audit records in order, at most `limit` of them, each with `seq > after_seq`.
///
/// With a plan: that plan's records in seq order, so `after_seq` pages through its log.
/// Without: every plan's records in the order they were committed (`after_seq` still
/// filters each plan's seq; page a single plan for a resumable cursor).
pub(crate) fn audit(
    conn: &Connection,
    plan: Option<&str>,
    after_seq: u64,
    limit_to: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let after = int(after_seq, "audit seq")?;
    let n = limit(limit_to);
    let mut rows: Vec<(String, i64, String)> = Vec::new();
    let read = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    match plan {
        Some(plan) => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT plan, seq, record FROM audit_records WHERE plan = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql("read the audit log"))?;
            for row in stmt.query_map(params![plan, after, n], read).map_err(sql("read the audit log"))? {
                rows.push(row.map_err(sql("read the audit log"))?);
            }
        }
        None => {
            let mut stmt = conn
                .prepare_cached("SELECT plan, seq, record FROM audit_records WHERE seq > ?1 ORDER BY id LIMIT ?2")
                .map_err(sql("read the audit log"))?;
            for row in stmt.query_map(params![after, n], read).map_err(sql("read the audit log"))? {
                rows.push(row.map_err(sql("read the audit log"))?);
            }
        }
    }
    rows.into_iter()
        .map(|(plan, seq, json)| {
            let key = format!("{plan}#{seq}");
            let record: AuditRecord = decode(&json, "audit record", &key)?;
            if record.plan != plan || int(record.seq, "audit seq")? != seq {
                return Err(StoreError::Corrupt {
                    what: "audit record",
                    key,
                    detail: format!("its body says {}#{}", record.plan, record.seq),
                });
            }
            Ok(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use meridian_core::{AuditRecord, CommandKind, PlanState};

    use crate::testutil::*;
    use crate::*;

    #[test]
    fn a_decision_round_trips_state_log_and_intents() {
        let (_tmp, mut store) = temp_store();
        assert_eq!(store.load_state("p").unwrap(), None);
        let s = state("p", 2);
        let intents = store
            .commit_decision(
                "p",
                &s,
                &[rec("p", 1), rec("p", 2)],
                &[set("eu", "web", 10), set("us", "web", 1)],
                &[],
                t(5),
            )
            .unwrap();
        assert_eq!(store.load_state("p").unwrap(), Some(s));
        assert_eq!(store.plans().unwrap(), vec!["p".to_string()]);
        assert_eq!(store.audit(Some("p"), 0, 100).unwrap(), vec![rec("p", 1), rec("p", 2)]);
        assert_eq!(store.last_audit_seq("p").unwrap(), 2);
        assert_eq!(intents.len(), 2);
        assert_eq!((intents[0].region.as_str(), intents[0].percent, intents[0].from_percent), ("eu", 10, 0));
        assert_eq!(intents[0].created_at, t(5));
        assert_eq!(intents[0].status, IntentStatus::Open);
        assert_eq!(store.open_intents().unwrap(), intents);
    }

    #[test]
    fn load_states_reads_the_plans_asked_for_in_one_go_as_load_state_does() {
        let (_tmp, mut store) = temp_store();
        assert!(store.load_states(&["a"]).unwrap().is_empty());
        for (plan, seq) in [("a", 0), ("b", 0), ("c", 0)] {
            store.commit_decision(plan, &state(plan, seq), &[], &[], &[], t(1)).unwrap();
        }
        let states = store.load_states(&["a", "c", "never-stored"]).unwrap();
        assert_eq!(states.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "c"], "b was not asked for");
        for (plan, loaded) in &states {
            assert_eq!(Some(loaded), store.load_state(plan).unwrap().as_ref());
        }
        // A damaged row is an error naming its plan, like load_state's; one not asked for is not read.
        store.conn.execute("UPDATE plan_states SET state = '{\"plan\":' WHERE plan = 'b'", []).unwrap();
        assert_eq!(store.load_states(&["a", "c"]).unwrap().len(), 2);
        let error = store.load_states(&["a", "b"]).unwrap_err().to_string();
        assert!(error.contains("plan state") && error.contains("b"), "{error}");
    }

    #[test]
    fn a_decision_without_records_or_actions_still_saves_state() {
        let (_tmp, mut store) = temp_store();
        let mut s = state("p", 0);
        store.commit_decision("p", &s, &[], &[], &[], t(1)).unwrap();
        s.units[0].percent = 7; // e.g. a health verdict changed, nothing audited
        store.commit_decision("p", &s, &[], &[], &[], t(2)).unwrap();
        assert_eq!(store.load_state("p").unwrap(), Some(s));
    }

    #[test]
    fn audit_reads_page_by_seq_and_interleave_plans_in_commit_order() {
        let (_tmp, mut store) = temp_store();
        store.commit_decision("a", &state("a", 2), &[rec("a", 1), rec("a", 2)], &[], &[], t(1)).unwrap();
        store.commit_decision("b", &state("b", 1), &[rec("b", 1)], &[], &[], t(2)).unwrap();
        store.commit_decision("a", &state("a", 3), &[rec("a", 3)], &[], &[], t(3)).unwrap();
        let seqs = |v: Vec<AuditRecord>| v.into_iter().map(|r| (r.plan, r.seq)).collect::<Vec<_>>();
        assert_eq!(seqs(store.audit(Some("a"), 1, 10).unwrap()), vec![("a".into(), 2), ("a".into(), 3)]);
        assert_eq!(seqs(store.audit(Some("a"), 0, 1).unwrap()), vec![("a".into(), 1)]);
        assert_eq!(
            seqs(store.audit(None, 0, 10).unwrap()),
            vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1), ("a".into(), 3)]
        );
        assert!(store.audit(Some("zzz"), 0, 10).unwrap().is_empty());
    }

    /// Everything a refused decision would have written, for the atomicity checks.
    fn snapshot(store: &Store, plan: &str) -> (Option<PlanState>, Vec<AuditRecord>, Vec<Intent>, Vec<PendingCommand>) {
        (
            store.load_state(plan).unwrap(),
            store.audit(None, 0, usize::MAX).unwrap(),
            store.open_intents().unwrap(),
            store.pending_commands(plan).unwrap(),
        )
    }

    fn seeded() -> (tempfile::TempDir, Store, CommandId) {
        let (tmp, mut store) = temp_store();
        store.commit_decision("p", &state("p", 1), &[rec("p", 1)], &[set("eu", "web", 1)], &[], t(1)).unwrap();
        let cmd = store.enqueue_command("p", &command(CommandKind::Pause, t(2))).unwrap();
        (tmp, store, cmd)
    }

    #[test]
    fn a_gap_in_the_log_is_refused_and_nothing_is_written() {
        let (_tmp, mut store, cmd) = seeded();
        let before = snapshot(&store, "p");
        let err = store
            .commit_decision("p", &state("p", 3), &[rec("p", 3)], &[set("eu", "web", 10)], &[cmd], t(3))
            .unwrap_err();
        assert!(matches!(err, StoreError::AuditGap { expected: 2, found: 3, .. }), "got {err:?}");
        assert_eq!(err.metric_label(), "audit_gap");
        assert_eq!(snapshot(&store, "p"), before);
    }

    #[test]
    fn a_repeated_record_is_refused_and_nothing_is_written() {
        let (_tmp, mut store, cmd) = seeded();
        let before = snapshot(&store, "p");
        let err = store
            .commit_decision("p", &state("p", 2), &[rec("p", 2), rec("p", 2)], &[set("eu", "web", 10)], &[cmd], t(3))
            .unwrap_err();
        assert!(matches!(err, StoreError::AuditRepeat { expected: 3, found: 2, .. }), "got {err:?}");
        let err = store.commit_decision("p", &state("p", 1), &[rec("p", 1)], &[], &[], t(3)).unwrap_err();
        assert!(matches!(err, StoreError::AuditRepeat { expected: 2, found: 1, .. }), "got {err:?}");
        assert_eq!(snapshot(&store, "p"), before);
    }

    #[test]
    fn a_state_that_disagrees_with_the_log_is_refused() {
        let (_tmp, mut store, cmd) = seeded();
        let before = snapshot(&store, "p");
        let err = store
            .commit_decision("p", &state("p", 5), &[rec("p", 2)], &[set("eu", "web", 10)], &[cmd], t(3))
            .unwrap_err();
        assert!(matches!(err, StoreError::StateAuditMismatch { state_seq: 5, log_seq: 2, .. }), "got {err:?}");
        let err = store.commit_decision("p", &state("q", 1), &[], &[], &[], t(3)).unwrap_err();
        assert!(matches!(err, StoreError::StatePlanMismatch { .. }), "got {err:?}");
        let err = store.commit_decision("p", &state("p", 2), &[rec("q", 2)], &[], &[], t(3)).unwrap_err();
        assert!(matches!(err, StoreError::AuditPlanMismatch { .. }), "got {err:?}");
        assert_eq!(snapshot(&store, "p"), before);
    }

    #[test]
    fn a_failure_late_in_the_transaction_rolls_back_the_earlier_writes() {
        let (_tmp, mut store, cmd) = seeded();
        let before = snapshot(&store, "p");
        // State, log and intents are valid; the unknown command id is checked last.
        let err = store
            .commit_decision("p", &state("p", 2), &[rec("p", 2)], &[set("eu", "web", 10)], &[cmd, CommandId(999)], t(3))
            .unwrap_err();
        assert!(matches!(err, StoreError::CommandNotFound { .. }), "got {err:?}");
        assert_eq!(snapshot(&store, "p"), before);
        // And the same decision without the bad id goes through whole.
        store.commit_decision("p", &state("p", 2), &[rec("p", 2)], &[set("eu", "web", 10)], &[cmd], t(3)).unwrap();
        assert_eq!(store.last_audit_seq("p").unwrap(), 2);
        assert!(store.pending_commands("p").unwrap().is_empty());
    }

    #[test]
    fn decisions_of_a_pass_commit_together_or_not_at_all() {
        let (_tmp, mut store) = temp_store();
        let (a1, b1, a2) = (state("a", 1), state("b", 1), state("a", 2));
        let (ra, rb, ra2) = ([rec("a", 1)], [rec("b", 1)], [rec("a", 2)]);
        let (sa, sb, sa2) = ([set("eu", "web", 1)], [set("eu", "web", 10)], [set("eu", "web", 50)]);
        let d = |plan, state, audit, actions| NewDecision { plan, state, audit, actions, applied_commands: &[] };
        // Two plans, and a second decision of the first one after its first.
        let intents = store
            .commit_decisions(&[d("a", &a1, &ra, &sa), d("b", &b1, &rb, &sb), d("a", &a2, &ra2, &sa2)], t(1))
            .unwrap();
        assert_eq!(intents.iter().map(|v| v[0].percent).collect::<Vec<_>>(), vec![1, 10, 50]);
        assert_eq!(store.load_state("a").unwrap(), Some(a2.clone()));
        assert_eq!(store.load_state("b").unwrap(), Some(b1.clone()));
        assert_eq!(
            store.intent(intents[0][0].id).unwrap().unwrap().status,
            IntentStatus::Superseded { by: intents[2][0].id }
        );
        assert_eq!(store.open_intents().unwrap(), vec![intents[1][0].clone(), intents[2][0].clone()]);

        // One refused decision (a gap in b's log) and the whole pass writes nothing.
        let before = (snapshot(&store, "a"), snapshot(&store, "b"));
        let (a3, b3, ra3, rb3) = (state("a", 3), state("b", 3), [rec("a", 3)], [rec("b", 3)]);
        let err = store.commit_decisions(&[d("a", &a3, &ra3, &sa), d("b", &b3, &rb3, &sb)], t(2)).unwrap_err();
        assert!(matches!(err, StoreError::AuditGap { expected: 2, found: 3, .. }), "got {err:?}");
        assert_eq!((snapshot(&store, "a"), snapshot(&store, "b")), before);
    }

    #[test]
    fn the_log_is_append_only_even_to_raw_sql() {
        let (_tmp, mut store) = temp_store();
        store.commit_decision("p", &state("p", 1), &[rec("p", 1)], &[], &[], t(1)).unwrap();
        let err = store.conn.execute("DELETE FROM audit_records", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = store.conn.execute("UPDATE audit_records SET seq = 7", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}
