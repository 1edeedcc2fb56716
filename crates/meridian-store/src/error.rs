//! The store's one error type. Every variant carries the context needed to act on it, and
//! `metric_label()` turns it into a Prometheus label.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::{CommandId, IntentId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create state dir {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to open or lock {}", path.display())]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "state dir {} is in use by another meridian process ({}); stop it or choose another state dir",
        dir.display(),
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Locked { dir: PathBuf, pid: Option<u32> },

    #[error("no meridian database at {}; pass the --state-dir of a controller that has run", path.display())]
    NoDatabase { path: PathBuf },

    #[error("failed to open database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database {} refused write-ahead logging (journal mode {mode}); put the state dir on a local filesystem", path.display())]
    WalUnavailable { path: PathBuf, mode: String },

    #[error(
        "database {} is empty (0 bytes): its contents were lost or it was truncated, and starting over it would silently drop every approval, revocation and audit record; restore it from a backup, or move it aside to start a new, empty state",
        path.display()
    )]
    Empty { path: PathBuf },

    #[error(
        "database {} is damaged ({detail}); stop using it: restore it from a backup, or move it aside (keep it for investigation) to start a new, empty state",
        path.display()
    )]
    Damaged { path: PathBuf, detail: String },

    #[error(
        "database {} cannot be written ({detail}); make the file, its -wal and -shm files and the state dir writable by this user: meridian records every decision before acting on it",
        path.display()
    )]
    ReadOnly { path: PathBuf, detail: String },

    #[error("{} is not a meridian database (it has tables but no schema version); choose an empty state dir", path.display())]
    ForeignDatabase { path: PathBuf },

    #[error(
        "database {} has schema version {found}, newer than version {supported} that this meridian knows; run a newer meridian",
        path.display()
    )]
    SchemaTooNew { path: PathBuf, found: i64, supported: i64 },

    #[error(
        "database {} is at schema version {found}, it has no audit chain yet (this meridian writes version {supported}); start this version's `meridian run` on the state dir once to upgrade it",
        path.display()
    )]
    SchemaTooOld { path: PathBuf, found: i64, supported: i64 },

    #[error("failed to migrate database {} to schema version {version}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database error while trying to {op}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("failed to encode {what} as json")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("stored {what} {key} is unreadable: {detail}")]
    Corrupt { what: &'static str, key: String, detail: String },

    #[error("{what} {value} does not fit in the database's signed 64-bit integers")]
    OutOfRange { what: &'static str, value: u64 },

    #[error("the state to commit for plan {plan} names plan {found}")]
    StatePlanMismatch { plan: String, found: String },

    #[error("audit record {seq} to commit for plan {plan} names plan {found}")]
    AuditPlanMismatch { plan: String, seq: u64, found: String },

    #[error("audit record {found} of plan {plan} would leave a gap: the log ends at {}, so the next is {expected}", expected - 1)]
    AuditGap { plan: String, expected: u64, found: u64 },

    #[error("audit record {found} of plan {plan} repeats or reorders the log: the next is {expected}")]
    AuditRepeat { plan: String, expected: u64, found: u64 },

    #[error("the state of plan {plan} says its last audit record is {state_seq}, but the log would end at {log_seq}")]
    StateAuditMismatch { plan: String, state_seq: u64, log_seq: u64 },

    #[error("intent {id} not found")]
    IntentNotFound { id: IntentId },

    #[error("intent {id} is already closed ({status})")]
    IntentClosed { id: IntentId, status: &'static str },

    #[error("command {id} not found for plan {plan}")]
    CommandNotFound { id: CommandId, plan: String },

    #[error("command {id} was already applied at {}", at.to_rfc3339())]
    CommandAlreadyApplied { id: CommandId, at: DateTime<Utc> },

    #[error("approval {name} not found")]
    ApprovalNotFound { name: String },

    #[error(
        "approval {name} was revoked by {by} at {}; a revoked approval is kept as it is, so grant a new one under another name",
        at.to_rfc3339()
    )]
    ApprovalRevoked { name: String, by: String, at: DateTime<Utc> },
}

impl StoreError {
    /// A short, stable label for metrics (`meridian_store_errors_total{error="..."}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::CreateDir { .. } => "create_dir",
            StoreError::LockFile { .. } => "lock_file",
            StoreError::Locked { .. } => "locked",
            StoreError::NoDatabase { .. } => "no_database",
            StoreError::Open { .. } => "open",
            StoreError::WalUnavailable { .. } => "wal_unavailable",
            StoreError::Empty { .. } => "empty",
            StoreError::Damaged { .. } => "damaged",
            StoreError::ReadOnly { .. } => "read_only",
            StoreError::ForeignDatabase { .. } => "foreign_database",
            StoreError::SchemaTooNew { .. } => "schema_too_new",
            StoreError::SchemaTooOld { .. } => "schema_too_old",
            StoreError::Migrate { .. } => "migrate",
            StoreError::Sqlite { .. } => "sqlite",
            StoreError::Encode { .. } => "encode",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::OutOfRange { .. } => "out_of_range",
            StoreError::StatePlanMismatch { .. } => "state_plan_mismatch",
            StoreError::AuditPlanMismatch { .. } => "audit_plan_mismatch",
            StoreError::AuditGap { .. } => "audit_gap",
            StoreError::AuditRepeat { .. } => "audit_repeat",
            StoreError::StateAuditMismatch { .. } => "state_audit_mismatch",
            StoreError::IntentNotFound { .. } => "intent_not_found",
            StoreError::IntentClosed { .. } => "intent_closed",
            StoreError::CommandNotFound { .. } => "command_not_found",
            StoreError::CommandAlreadyApplied { .. } => "command_already_applied",
            StoreError::ApprovalNotFound { .. } => "approval_not_found",
            StoreError::ApprovalRevoked { .. } => "approval_revoked",
        }
    }
}
