//! The controller's face towards the API and the CLI: read the published snapshot, follow
//! audit records as they happen, and ask for changes (commands, approvals). Every request
//! that changes something is made durable in the store before it returns, then wakes the
//! decision loop at once.
//!
//! A trait, so the HTTP API can be tested against a fake and run against the real thing, and
//! depends on this port alone: not on the runtime, the file watcher or the database. A
//! Kubernetes controller implements it too.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::BoxFuture;
use super::store::StoredEvent;
use crate::approval::ApprovalRecord;
use crate::audit::AuditRecord;
use crate::command::Command;
use crate::snapshot::Snapshot;

/// Why a control request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no plan named {0:?}")]
    UnknownPlan(String),
    #[error("no approval named {0:?}")]
    UnknownApproval(String),
    #[error("{0}")]
    Invalid(String),
    #[error("an approval named {0:?} already exists")]
    Conflict(String),
    #[error("the state store failed: {0}")]
    Store(String),
    #[error("the controller is shutting down")]
    Stopped,
    /// This replica does not do that (a follower asked to grant); the message names who does.
    #[error("{0}")]
    Unavailable(String),
}

impl ControlError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControlError::UnknownPlan(_) => "unknown_plan",
            ControlError::UnknownApproval(_) => "unknown_approval",
            ControlError::Invalid(_) => "invalid",
            ControlError::Conflict(_) => "conflict",
            ControlError::Store(_) => "store",
            ControlError::Stopped => "stopped",
            ControlError::Unavailable(_) => "unavailable",
        }
    }
}

/// Liveness and readiness, for `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready (a failed task, recovery still running, ...).
    pub reasons: Vec<String>,
}

/// What a subscriber to the audit feed receives next.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A record just committed.
    Record(Box<AuditRecord>),
    /// This subscriber fell behind and this many records were skipped (re-read them with
    /// `ControlPlane::audit`).
    Lagged(u64),
    /// The feed ended: the controller is stopping.
    Closed,
}

/// A subscription to audit records as they are committed.
pub trait AuditFeed: Send {
    fn next(&mut self) -> BoxFuture<'_, FeedItem>;
}

/// What the API needs from a controller.
pub trait ControlPlane: Send + Sync + 'static {
    /// The latest published view.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Audit records as they are committed.
    fn subscribe(&self) -> Box<dyn AuditFeed>;
    /// The controller's clock: the time every handler judges by (expiry, status), injected
    /// so that tests can drive it.
    fn now(&self) -> DateTime<Utc>;
    /// Queue a command for `plan`; applied by the next decision, which runs at once.
    fn command(&self, plan: &str, command: Command) -> BoxFuture<'_, Result<(), ControlError>>;
    /// Record an approval (granted through the API); `by` is who entered it, for the history
    /// (a signed approval's `grantedBy` is covered by its signature and cannot say so).
    /// Refused (`Invalid`, and recorded as `approval-refused`) when a plan in force requires
    /// the flag's approvals signed and this one is not signed by one of its keys.
    fn grant(&self, approval: ApprovalRecord, by: &str) -> BoxFuture<'_, Result<(), ControlError>>;
    /// Every approval on record, read from the store: the truth, which a grant or revoke
    /// just answered is already part of (the published snapshot may lag behind it).
    fn approvals(&self) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, ControlError>>;
    /// Revoke an approval; it is kept, marked revoked, and never valid again.
    fn revoke(&self, name: &str, by: &str, reason: Option<String>) -> BoxFuture<'_, Result<(), ControlError>>;
    /// Audit records of one plan (or all) with `seq > after`, oldest first.
    fn audit(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>, ControlError>>;
    /// The controller's own history with `id > after`, oldest first, at most `limit`:
    /// approvals granted, updated, revoked and expired, configuration applied or rejected,
    /// requests denied. Plan transitions are in `audit`.
    fn history(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>, ControlError>>;
    /// A page of the tamper-evident audit chain (see `StateStore::chain`).
    fn chain(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<crate::chain::ChainPage, ControlError>> {
        let _ = (plan, after, limit);
        Box::pin(async { Err(ControlError::Invalid("this controller keeps no audit chain".into())) })
    }
    /// Audit that a request was denied (401/403).
    fn record_denial(&self, who: &str, what: &str, at: DateTime<Utc>);
    /// The metrics registry, rendered.
    fn metrics(&self) -> String;
    fn readiness(&self) -> Readiness;
}
