//! What the controller needs from durable storage, as one narrow trait, so the decision loop
//! does not care which database keeps it. `meridian-store` implements it on one embedded
//! database file; the controller's `memory` module in memory for tests. Calls are blocking
//! (an async caller runs them on a blocking pool).
//!
//! The contract that makes progress crash-safe: `commit` writes the new state, the audit
//! records, the applied commands and one intent per traffic change in ONE transaction; an
//! intent is completed only after the target confirmed it. A crash therefore leaves either
//! the old decision (nothing to repair) or the new one with open intents, which startup
//! resolves by reading each target back. `commit_all` keeps that contract for a whole pass of
//! decisions: a store that can writes them in one transaction, with one wait for the disk.

use chrono::{DateTime, Utc};

use crate::approval::ApprovalRecord;
use crate::audit::AuditRecord;
use crate::chain::ChainPage;
use crate::command::Command;
use crate::engine::{Action, UnitRef};
use crate::state::PlanState;

/// An actuation the controller has decided on and must see confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub plan: String,
    pub region: String,
    pub service: String,
    pub percent: u32,
    /// Sent with every attempt, so a repeat is harmless.
    pub idempotency_key: String,
}

/// How an intent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentOutcome {
    /// The target confirmed (or read back) this percent.
    Done { observed: u32 },
    /// The target refused for good; the error says why.
    Failed { error: String },
}

/// A queued operator command.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedCommand {
    pub id: i64,
    pub command: Command,
}

/// A controller-level event that is not a plan transition: approvals granted or withdrawn,
/// configuration edits rejected, API requests denied.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub who: String,
    pub detail: serde_json::Value,
}

/// A controller event as stored, with its place in the history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Increasing; page with `history(after, ..)`.
    pub id: i64,
    #[serde(flatten)]
    pub event: ControllerEvent,
}

/// One plan's decision as the store commits it (`StateStore::commit_all`): what `commit`
/// takes, owned, so that a pass can hand its decisions to a blocking pool and get them back.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDecision {
    pub plan: String,
    pub state: PlanState,
    pub audit: Vec<AuditRecord>,
    pub actions: Vec<Action>,
    pub applied_commands: Vec<i64>,
}

/// A store failure; the loop retries and reports itself unready meanwhile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreFailure {
    pub message: String,
}

pub type StoreResult<T> = Result<T, StoreFailure>;

/// Durable state of the standalone controller.
pub trait StateStore: Send + Sync + 'static {
    fn load_state(&self, plan: &str) -> StoreResult<Option<PlanState>>;
    /// The stored states of `plans`, by name (a plan with none is left out): what a start
    /// loads. A store that can read them together (one query, not one per plan) should.
    fn load_states(&self, plans: &[&str]) -> StoreResult<std::collections::BTreeMap<String, PlanState>> {
        let mut states = std::collections::BTreeMap::new();
        for &plan in plans {
            if let Some(state) = self.load_state(plan)? {
                states.insert(plan.to_string(), state);
            }
        }
        Ok(states)
    }
    /// Atomically: the new state, its audit records, the commands it applied, and one intent
    /// per `SetTraffic` action (superseding older open intents of the same target), as of
    /// `at` (the controller's clock).
    fn commit(
        &self,
        plan: &str,
        state: &PlanState,
        audit: &[AuditRecord],
        actions: &[Action],
        applied_commands: &[i64],
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<Intent>>;
    /// Commit a pass's decisions, each as `commit` would, as of `at`: one result per decision,
    /// in order. A store that can (the database) writes them in one transaction, so a burst of
    /// decisions waits for the disk once; a decision it refuses must not hold back the others.
    /// The default commits them one after another.
    fn commit_all(&self, decisions: &[PlanDecision], at: DateTime<Utc>) -> Vec<StoreResult<Vec<Intent>>> {
        decisions
            .iter()
            .map(|d| self.commit(&d.plan, &d.state, &d.audit, &d.actions, &d.applied_commands, at))
            .collect()
    }
    fn open_intents(&self) -> StoreResult<Vec<Intent>>;
    /// Units of `plan` whose newest intent is not done (open, or failed for good).
    fn unconfirmed(&self, plan: &str) -> StoreResult<Vec<UnitRef>>;
    fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()>;
    /// `mark_sent`, saying whether the intent is still open: `false` (superseded by a newer
    /// one, or closed meanwhile) means it must not be sent. The default assumes it is.
    fn mark_sending(&self, id: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        self.mark_sent(id, at).map(|()| true)
    }
    fn complete(&self, id: i64, outcome: IntentOutcome, at: DateTime<Utc>) -> StoreResult<()>;

    fn enqueue_command(&self, plan: &str, command: &Command) -> StoreResult<i64>;
    fn pending_commands(&self, plan: &str) -> StoreResult<Vec<QueuedCommand>>;

    /// Every approval on record, revoked ones included.
    fn approvals(&self) -> StoreResult<Vec<ApprovalRecord>>;
    /// Record (or update) an approval; `source` is `api`, or the configuration source it
    /// came from (`file:PATH`, `kube:NAMESPACE/NAME`).
    fn put_approval(&self, approval: &ApprovalRecord, source: &str, by: &str, at: DateTime<Utc>) -> StoreResult<()>;
    fn revoke_approval(&self, name: &str, by: &str, reason: Option<&str>, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Unrevoked approvals whose last grant came from a configuration source (anything but
    /// `api`: `file:PATH`, `file` from before paths were kept, `kube:NAMESPACE/NAME`), as
    /// (name, source).
    fn source_approvals(&self) -> StoreResult<Vec<(String, String)>>;

    fn audit(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    /// The tamper-evident audit chain (`crate::chain`): entries with `n > after`, at most
    /// `limit`. A store keeps one chain for all its records, or one per plan; asking for the
    /// other shape is `Ok(Err(what to ask instead))`. Stores without a chain say so.
    fn chain(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Result<ChainPage, String>> {
        let _ = (plan, after, limit);
        Ok(Err("this state store keeps no audit chain".to_string()))
    }
    fn record_event(&self, event: &ControllerEvent) -> StoreResult<()>;
    /// Controller events of one kind, oldest first.
    fn events(&self, kind: &str) -> StoreResult<Vec<ControllerEvent>>;
    /// Every controller event with `id > after`, oldest first, at most `limit`: approvals
    /// granted, updated, revoked and expired, configuration applied or rejected, requests
    /// denied.
    fn history(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>>;
}
