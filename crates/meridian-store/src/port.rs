//! The core's [`StateStore`] port on the embedded database file: the store `meridian run`
//! uses. The store's own records carry more (intent status, timestamps); this is the one
//! place they are mapped to the port's types.
//!
//! Group commit: a pass's decisions are written in one transaction (`commit_all`), and the
//! intent writes of actuations in flight at the same time (`mark_sending`, `complete`) are
//! gathered into one transaction by whichever caller gets the database first, so a burst of
//! thousands of actuations waits for the disk a few hundred times, not thousands. Every call
//! still returns only once its own write is durable.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::chain::ChainPage;
use meridian_core::error_chain;
use meridian_core::ports::store::{
    ControllerEvent, Intent, IntentOutcome, PlanDecision, QueuedCommand, StateStore, StoreFailure, StoreResult,
    StoredEvent,
};
use meridian_core::{Action, AuditRecord, Command, PlanState};

use crate::{CommandId, IntentId, IntentStatus, IntentWrite, NewDecision, Store, StoreError};

/// The database-backed store.
pub struct SqliteStore {
    store: Mutex<Store>,
    /// Intent writes waiting for the next group commit, each with the slot its caller reads
    /// the outcome from.
    queued: Mutex<Vec<(IntentWrite, Arc<Slot>)>>,
}

/// Where a queued intent write's outcome lands: the transaction's (outer), then the write's own.
type Slot = Mutex<Option<StoreResult<Result<crate::Intent, StoreError>>>>;

fn failure(e: &StoreError) -> StoreFailure {
    StoreFailure { message: error_chain(e) }
}

fn poisoned() -> StoreFailure {
    StoreFailure { message: "state store lock poisoned".into() }
}

impl SqliteStore {
    /// Open (creating if needed) and lock the state dir. A second controller on the same dir
    /// fails here with an error naming the holder's pid.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(SqliteStore { store: Mutex::new(Store::open(dir)?), queued: Mutex::new(Vec::new()) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> StoreResult<T> {
        let mut store = self.store.lock().map_err(|_| poisoned())?;
        f(&mut store).map_err(|e| failure(&e))
    }

    /// One intent write, group-committed: queued, then written by the first caller to get the
    /// database (this one, or one that was waiting already) together with every write queued
    /// by then. Returns once this write's transaction is committed.
    fn write_intent(&self, write: IntentWrite) -> StoreResult<Result<crate::Intent, StoreError>> {
        let slot: Arc<Slot> = Arc::new(Mutex::new(None));
        self.queued.lock().map_err(|_| poisoned())?.push((write, slot.clone()));
        let mut store = self.store.lock().map_err(|_| poisoned())?;
        if let Some(done) = slot.lock().map_err(|_| poisoned())?.take() {
            return done; // written by an earlier holder of the database
        }
        let batch = std::mem::take(&mut *self.queued.lock().map_err(|_| poisoned())?);
        let writes: Vec<IntentWrite> = batch.iter().map(|(w, _)| w.clone()).collect();
        let outcomes: Vec<StoreResult<Result<crate::Intent, StoreError>>> = match store.write_intents(&writes) {
            Ok(each) => each.into_iter().map(Ok).collect(),
            Err(e) => (0..writes.len()).map(|_| Err(failure(&e))).collect(),
        };
        // Answered before the database is let go: a caller whose write this batch held finds
        // its answer as soon as it gets the database.
        for ((_, waiting), outcome) in batch.into_iter().zip(outcomes) {
            if let Ok(mut s) = waiting.lock() {
                *s = Some(outcome);
            }
        }
        drop(store);
        // Ours was queued before we took the database, so this batch held it.
        slot.lock().map_err(|_| poisoned())?.take().unwrap_or_else(|| {
            Err(StoreFailure { message: "an intent write was left out of its group commit (a bug)".into() })
        })
    }
}

fn intent(i: crate::Intent) -> Intent {
    Intent {
        id: i.id.0,
        plan: i.plan,
        region: i.region,
        service: i.service,
        percent: i.percent,
        idempotency_key: i.idempotency_key,
    }
}

impl StateStore for SqliteStore {
    fn load_state(&self, plan: &str) -> StoreResult<Option<PlanState>> {
        self.with(|s| s.load_state(plan))
    }

    fn load_states(&self, plans: &[&str]) -> StoreResult<std::collections::BTreeMap<String, PlanState>> {
        self.with(|s| s.load_states(plans))
    }

    fn commit(
        &self,
        plan: &str,
        state: &PlanState,
        audit: &[AuditRecord],
        actions: &[Action],
        applied_commands: &[i64],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Intent>> {
        let ids: Vec<CommandId> = applied_commands.iter().map(|&i| CommandId(i)).collect();
        self.with(|s| s.commit_decision(plan, state, audit, actions, &ids, at))
            .map(|v| v.into_iter().map(intent).collect())
    }

    /// One transaction for the whole pass; if the database refuses it, each decision again in
    /// a transaction of its own, so that one refused decision (a bug it reports) does not hold
    /// back the others.
    fn commit_all(&self, decisions: &[PlanDecision], at: DateTime<Utc>) -> Vec<StoreResult<Vec<Intent>>> {
        let ids: Vec<Vec<CommandId>> =
            decisions.iter().map(|d| d.applied_commands.iter().map(|&i| CommandId(i)).collect()).collect();
        let new: Vec<NewDecision<'_>> = decisions
            .iter()
            .zip(&ids)
            .map(|(d, ids)| NewDecision {
                plan: &d.plan,
                state: &d.state,
                audit: &d.audit,
                actions: &d.actions,
                applied_commands: ids,
            })
            .collect();
        let port = |v: Vec<crate::Intent>| v.into_iter().map(intent).collect::<Vec<_>>();
        let Ok(mut store) = self.store.lock() else { return vec![Err(poisoned()); decisions.len()] };
        match store.commit_decisions(&new, at) {
            Ok(all) => all.into_iter().map(|v| Ok(port(v))).collect(),
            Err(_) if new.len() > 1 => new
                .iter()
                .map(|d| store.commit_decisions(std::slice::from_ref(d), at))
                .map(|r| r.map(|mut v| port(v.pop().unwrap_or_default())).map_err(|e| failure(&e)))
                .collect(),
            Err(e) => vec![Err(failure(&e))],
        }
    }

    fn open_intents(&self) -> StoreResult<Vec<Intent>> {
        self.with(|s| s.open_intents()).map(|v| v.into_iter().map(intent).collect())
    }

    fn unconfirmed(&self, plan: &str) -> StoreResult<Vec<meridian_core::UnitRef>> {
        self.with(|s| s.unconfirmed_units(plan))
            .map(|v| v.into_iter().map(|(region, service)| meridian_core::UnitRef { region, service }).collect())
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()> {
        self.mark_sending(id, at).map(|_| ())
    }

    /// Group-committed with the other actuations in flight. A closed intent is not an error
    /// here: a reconciler may hand over an intent that its worker closed a moment ago.
    fn mark_sending(&self, id: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        match self.write_intent(IntentWrite::Sent { id: IntentId(id), at })? {
            Ok(intent) => Ok(intent.status == IntentStatus::Open),
            Err(StoreError::IntentClosed { .. }) => Ok(false),
            Err(e) => Err(failure(&e)),
        }
    }

    /// Group-committed with the other actuations in flight.
    fn complete(&self, id: i64, outcome: IntentOutcome, at: DateTime<Utc>) -> StoreResult<()> {
        let outcome = match outcome {
            IntentOutcome::Done { observed } => crate::IntentOutcome::Done { observed_percent: observed },
            IntentOutcome::Failed { error } => crate::IntentOutcome::Failed { error },
        };
        self.write_intent(IntentWrite::Complete { id: IntentId(id), outcome, at })?.map(|_| ()).map_err(|e| failure(&e))
    }

    fn enqueue_command(&self, plan: &str, command: &Command) -> StoreResult<i64> {
        self.with(|s| s.enqueue_command(plan, command).map(|id| id.0))
    }

    fn pending_commands(&self, plan: &str) -> StoreResult<Vec<QueuedCommand>> {
        self.with(|s| s.pending_commands(plan))
            .map(|v| v.into_iter().map(|c| QueuedCommand { id: c.id.0, command: c.command }).collect())
    }

    fn approvals(&self) -> StoreResult<Vec<ApprovalRecord>> {
        self.with(|s| s.approvals())
    }

    fn put_approval(&self, approval: &ApprovalRecord, source: &str, by: &str, at: DateTime<Utc>) -> StoreResult<()> {
        self.with(|s| s.put_approval(approval, source, by, at).map(|_| ()))
    }

    fn revoke_approval(&self, name: &str, by: &str, reason: Option<&str>, at: DateTime<Utc>) -> StoreResult<bool> {
        self.with(|s| match s.revoke_approval(name, by, reason, at) {
            Err(StoreError::ApprovalNotFound { .. }) => Ok(false),
            other => other,
        })
    }

    fn source_approvals(&self) -> StoreResult<Vec<(String, String)>> {
        self.with(|s| s.source_approvals())
    }

    fn audit(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.with(|s| s.audit(plan, after, limit))
    }

    fn chain(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Result<ChainPage, String>> {
        if plan.is_some() {
            return Ok(Err("the standalone controller keeps one chain for all plans: leave out plan".into()));
        }
        self.with(|s| {
            let entries = s.chain_entries(after, limit)?;
            let unchained = if entries.len() < limit { s.unchained()? } else { Vec::new() };
            Ok(Ok(ChainPage { scope: "store".into(), entries, unchained }))
        })
    }

    fn record_event(&self, event: &ControllerEvent) -> StoreResult<()> {
        self.with(|s| s.record_event(event.at, &event.kind, &event.who, &event.detail).map(|_| ()))
    }

    fn history(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let page = self.with(|s| s.events(after, limit))?;
        Ok(page
            .into_iter()
            .map(|e| StoredEvent {
                id: e.id,
                event: ControllerEvent { at: e.at, kind: e.kind, who: e.who, detail: e.detail },
            })
            .collect())
    }

    fn events(&self, kind: &str) -> StoreResult<Vec<ControllerEvent>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.history(after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            out.extend(page.into_iter().map(|e| e.event).filter(|e| e.kind == kind));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_core::ports::store::{IntentOutcome, PlanDecision, StateStore};

    use super::SqliteStore;
    use crate::testutil::*;

    fn decision(plan: &str, seq: u64, region: &str) -> PlanDecision {
        PlanDecision {
            plan: plan.into(),
            state: state(plan, seq),
            audit: vec![rec(plan, seq)],
            actions: vec![set(region, "web", 1)],
            applied_commands: Vec::new(),
        }
    }

    #[test]
    fn a_refused_decision_does_not_hold_back_the_rest_of_the_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(tmp.path()).unwrap();
        let gap = decision("b", 2, "eu"); // b has no record 1
        let out = store.commit_all(&[decision("a", 1, "eu"), gap, decision("c", 1, "eu")], t(1));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().len(), 1);
        assert!(out[1].as_ref().unwrap_err().message.contains("gap"), "{:?}", out[1]);
        assert_eq!(out[2].as_ref().unwrap().len(), 1);
        assert_eq!(store.load_state("a").unwrap().map(|s| s.audit_seq), Some(1));
        assert_eq!(store.load_state("b").unwrap(), None);
        assert_eq!(store.open_intents().unwrap().len(), 2);
    }

    #[test]
    fn intent_writes_from_many_threads_are_each_durable_and_answered() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(tmp.path()).unwrap());
        let regions: Vec<String> = (0..256).map(|i| format!("r{i}")).collect();
        let decisions: Vec<PlanDecision> = vec![PlanDecision {
            plan: "p".into(),
            state: state("p", 0),
            audit: Vec::new(),
            actions: regions.iter().map(|r| set(r, "web", 1)).collect(),
            applied_commands: Vec::new(),
        }];
        let intents = store.commit_all(&decisions, t(1)).pop().unwrap().unwrap();
        // 16 threads of 16 intents each, so that writes queue up behind each other's commits.
        let threads: Vec<_> = intents
            .chunks(16)
            .map(|chunk| {
                let (store, ids) = (store.clone(), chunk.iter().map(|i| i.id).collect::<Vec<_>>());
                std::thread::spawn(move || {
                    for id in ids {
                        assert!(store.mark_sending(id, t(2)).unwrap(), "intent {id} is open");
                        store.complete(id, IntentOutcome::Done { observed: 1 }, t(3)).unwrap();
                        // Closed now: a second hand-over must not send it again.
                        assert!(!store.mark_sending(id, t(4)).unwrap(), "intent {id} is closed");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(store.open_intents().unwrap().is_empty());
        drop(store);
        let reopened = crate::Store::open(tmp.path()).unwrap();
        for intent in &intents {
            let stored = reopened.intent(crate::IntentId(intent.id)).unwrap().unwrap();
            assert_eq!((stored.attempts, stored.status.as_str()), (1, "done"), "intent {}", intent.id);
        }
        assert!(reopened.verify_chain(None).unwrap().is_ok());
    }
}
