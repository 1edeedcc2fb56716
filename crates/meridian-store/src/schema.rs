//! The database schema and its migrations.
//!
//! Versions are rows of `schema_migrations`; each migration runs with its row in one
//! transaction, so a crash mid-migration leaves the previous version intact. A database
//! whose version is newer than this code's is refused before anything is written: an old
//! binary must never write into a layout it does not understand. Migrations are append-only:
//! never edit a released one, add the next.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::StoreError;
use crate::codec::ts;

/// Rust that a migration runs after its SQL.
type DataStep = fn(&Connection) -> Result<(), StoreError>;

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
    /// Runs after `sql`, in the same transaction: data that SQL alone cannot compute.
    then: Option<DataStep>,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "initial schema", sql: V1, then: None },
    Migration { version: 2, description: "tamper-evident audit chain", sql: V2, then: Some(crate::chain::backfill) },
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 2;

const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per plan: the engine's PlanState as JSON; audit_seq mirrors state.auditSeq.
CREATE TABLE plan_states (
    plan       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    audit_seq  INTEGER NOT NULL CHECK (audit_seq >= 0),
    updated_at TEXT NOT NULL
) STRICT;

-- Append-only; seq is gapless per plan (checked on commit); id is the global append order.
CREATE TABLE audit_records (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    plan   TEXT NOT NULL,
    seq    INTEGER NOT NULL CHECK (seq >= 1),
    at     TEXT NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (plan, seq)
) STRICT;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

-- Actuations: recorded before they are sent, closed after.
CREATE TABLE intents (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    plan             TEXT NOT NULL,
    region           TEXT NOT NULL,
    service          TEXT NOT NULL,
    percent          INTEGER NOT NULL CHECK (percent >= 0),
    from_percent     INTEGER NOT NULL CHECK (from_percent >= 0),
    idempotency_key  TEXT NOT NULL UNIQUE,
    created_at       TEXT NOT NULL,
    sent_at          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL CHECK (status IN ('open', 'done', 'failed', 'superseded')),
    closed_at        TEXT,
    observed_percent INTEGER,
    error            TEXT,
    superseded_by    INTEGER REFERENCES intents (id)
) STRICT;
-- At most one open intent per unit: a newer one supersedes the older in the same transaction.
CREATE UNIQUE INDEX intents_one_open_per_unit ON intents (plan, region, service) WHERE status = 'open';
CREATE INDEX intents_by_unit ON intents (plan, region, service, id);

-- The current form of each approval, revoked ones included; never deleted.
CREATE TABLE approvals (
    name       TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Every grant, change and revocation, with who, when and the record as it became.
CREATE TABLE approval_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name   TEXT NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('granted', 'updated', 'revoked')),
    by     TEXT NOT NULL,
    source TEXT NOT NULL,
    at     TEXT NOT NULL,
    reason TEXT,
    record TEXT NOT NULL
) STRICT;
CREATE TRIGGER approval_events_no_update BEFORE UPDATE ON approval_events
BEGIN SELECT RAISE(ABORT, 'approval events are append-only'); END;
CREATE TRIGGER approval_events_no_delete BEFORE DELETE ON approval_events
BEGIN SELECT RAISE(ABORT, 'approval events are append-only'); END;

-- Controller-level happenings that are not plan transitions (config applied or rejected,
-- access denied...): who, when, what.
CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    kind   TEXT NOT NULL,
    who    TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Operator commands waiting for the decision that applies them.
CREATE TABLE commands (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    plan        TEXT NOT NULL,
    command     TEXT NOT NULL,
    enqueued_at TEXT NOT NULL,
    applied_at  TEXT
) STRICT;
CREATE INDEX commands_pending ON commands (plan, id) WHERE applied_at IS NULL;
"#;

const V2: &str = r#"
-- The audit chain: one entry per record kept for the record (see chain.rs), each hashing the
-- one before it. n is gapless from 1.
CREATE TABLE chain (
    n         INTEGER PRIMARY KEY CHECK (n >= 1),
    kind      TEXT NOT NULL,
    reference TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (kind, reference)
) STRICT;
CREATE TRIGGER chain_no_update BEFORE UPDATE ON chain
BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END;
CREATE TRIGGER chain_no_delete BEFORE DELETE ON chain
BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END;
"#;

/// Bring the database up to `SCHEMA_VERSION`, or refuse it.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| crate::classify(path, source);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_err)?;
    let has_table: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(open_err)?;
    if !has_table {
        let other_tables: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;
        if other_tables > 0 {
            return Err(StoreError::ForeignDatabase { path: path.to_path_buf() });
        }
        tx.execute_batch(
            "CREATE TABLE schema_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  TEXT NOT NULL
            ) STRICT;",
        )
        .map_err(open_err)?;
    }
    let current: i64 =
        tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(open_err)?;
    if current > SCHEMA_VERSION {
        // Dropping `tx` rolls back; nothing was written.
        return Err(StoreError::SchemaTooNew { path: path.to_path_buf(), found: current, supported: SCHEMA_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let migrate_err = |source| StoreError::Migrate { path: path.to_path_buf(), version: m.version, source };
        tx.execute_batch(m.sql).map_err(migrate_err)?;
        if let Some(then) = m.then {
            then(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.description, ts(DateTime::<Utc>::from(std::time::SystemTime::now()))],
        )
        .map_err(migrate_err)?;
    }
    tx.commit().map_err(open_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
