//! The core's [`StateStore`] port on the embedded database file: the store `meridian run`
//! uses. The store's own records carry more (intent status, timestamps); this is the one
//! place they are mapped to the port's types.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::chain::ChainPage;
use meridian_core::error_chain;
use meridian_core::ports::store::{
    ControllerEvent, Intent, IntentOutcome, QueuedCommand, StateStore, StoreFailure, StoreResult, StoredEvent,
};
use meridian_core::{Action, AuditRecord, Command, PlanState};

use crate::{CommandId, IntentId, Store, StoreError};

/// The database-backed store.
pub struct SqliteStore {
    store: Mutex<Store>,
}

impl SqliteStore {
    /// Open (creating if needed) and lock the state dir. A second controller on the same dir
    /// fails here with an error naming the holder's pid.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(SqliteStore { store: Mutex::new(Store::open(dir)?) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> StoreResult<T> {
        let mut store = self.store.lock().map_err(|_| StoreFailure { message: "state store lock poisoned".into() })?;
        f(&mut store).map_err(|e| StoreFailure { message: error_chain(&e) })
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

    fn open_intents(&self) -> StoreResult<Vec<Intent>> {
        self.with(|s| s.open_intents()).map(|v| v.into_iter().map(intent).collect())
    }

    fn unconfirmed(&self, plan: &str) -> StoreResult<Vec<meridian_core::UnitRef>> {
        self.with(|s| s.unconfirmed_units(plan))
            .map(|v| v.into_iter().map(|(region, service)| meridian_core::UnitRef { region, service }).collect())
    }

    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()> {
        self.with(|s| s.mark_intent_sent(IntentId(id), at).map(|_| ()))
    }

    fn complete(&self, id: i64, outcome: IntentOutcome, at: DateTime<Utc>) -> StoreResult<()> {
        let outcome = match outcome {
            IntentOutcome::Done { observed } => crate::IntentOutcome::Done { observed_percent: observed },
            IntentOutcome::Failed { error } => crate::IntentOutcome::Failed { error },
        };
        self.with(|s| s.complete_intent(IntentId(id), outcome, at).map(|_| ()))
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
