//! Meridian's embedded state for the standalone controller (`meridian run`): one SQLite
//! database file in a state dir, holding every plan's state, the audit log, actuation
//! intents, approvals, operator commands and controller events.
//!
//! ```text
//!  API / file watcher        decision loop                       actuators
//!  ──────────────────        ─────────────                       ─────────
//!  put_approval              load_state, approvals,              open_intents
//!  revoke_approval           pending_commands                    mark_intent_sent
//!  enqueue_command              │ engine::decide (pure)          complete_intent
//!        │                      v                                      │
//!        │                   commit_decision (ONE transaction)         │
//!        v                      v                                      v
//!  ┌─────────────── <state-dir>/meridian.db (WAL, synchronous=FULL) ───────────────┐
//!  │ approvals, approval_events │ commands │ plan_states │ audit_records │ intents │
//!  │ events (controller-level: config applied or rejected, access denied)          │
//!  └───────────────────────────────────────────────────────────────────────────────┘
//!  <state-dir>/meridian.lock: flock'd, with its pid, by the one process that has it open
//! ```
//!
//! What the store guarantees:
//! - a decision (new state, its audit records, its actuation intents, the commands it
//!   applied) is committed whole or not at all, and is durable once `commit_decision`
//!   returns (`synchronous=FULL`);
//! - the audit log, the approval events and the controller events are append-only (triggers refuse updates and
//!   deletes), and each plan's audit seq is gapless: a gap or a repeat is refused as the bug
//!   it is, never dropped;
//! - a plan's stored state always agrees with its log (`state.audit_seq` is the last seq);
//! - one process per state dir; a second one is refused at once, naming the holder's pid;
//! - a schema newer than this code is refused, never used.
//!
//! What it must not do: decide anything, read plans, or talk to targets. It is synchronous
//! and blocking (an async caller uses `spawn_blocking`); `Store` is `Send`, not `Sync`.
//!
//! Time is always an argument (`at`); only bookkeeping (when a migration ran, the store id)
//! reads the clock.

mod approval;
mod codec;
mod command;
mod decision;
mod error;
mod event;
mod intent;
mod lock;
mod port;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub use approval::{ApprovalChange, ApprovalEvent, ApprovalEventKind};
pub use command::{CommandId, PendingCommand};
pub use error::StoreError;
pub use event::EventRecord;
pub use intent::{Intent, IntentId, IntentOutcome, IntentStatus};
pub use meridian_core::approval::{FILE_REMOVED_BY, FILE_REMOVED_REASON, revoked_by_file_removal};
pub use port::SqliteStore;
pub use schema::SCHEMA_VERSION;

use crate::codec::sql;
use crate::lock::StateDirLock;

/// The database file's name inside the state dir.
pub const DB_FILE: &str = "meridian.db";

/// The open state dir. Dropping it closes the database, then releases the lock.
#[derive(Debug)]
pub struct Store {
    // Field order is drop order: the database closes before the lock is released.
    conn: Connection,
    store_id: String,
    dir: PathBuf,
    db_path: PathBuf,
    _lock: StateDirLock,
}

impl Store {
    /// Open (creating if needed) the state dir and its database, taking the dir's lock.
    ///
    /// Fails with `StoreError::Locked` if another process (or another `Store` in this one)
    /// has the dir open, and with `StoreError::SchemaTooNew` if a newer meridian wrote it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { dir: dir.to_path_buf(), source })?;
        let lock = StateDirLock::acquire(dir)?;
        let db_path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open { path: db_path.clone(), source };
        let mut conn = Connection::open(&db_path).map_err(open_err)?;
        // We hold the dir lock, so nobody else writes; the timeout only covers a reader
        // (such as a backup) that briefly holds SQLite's own locks.
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable { path: db_path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        schema::migrate(&mut conn, &db_path)?;
        let store_id = ensure_store_id(&mut conn).map_err(open_err)?;
        Ok(Store { conn, store_id, dir: dir.to_path_buf(), db_path, _lock: lock })
    }

    /// The state dir this store holds.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// A random-enough id minted when the database was created; part of every idempotency
    /// key, so a fresh state dir never reuses a key a target has already seen.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(sql("read the schema version"))
    }

    fn write_tx(&mut self, op: &'static str) -> Result<rusqlite::Transaction<'_>, StoreError> {
        self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(op))
    }
}

fn ensure_store_id(conn: &mut Connection) -> rusqlite::Result<String> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<String> =
        tx.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| r.get(0)).optional()?;
    let id = match existing {
        Some(id) => id,
        None => {
            let id = mint_store_id();
            tx.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?1)", params![id])?;
            id
        }
    };
    tx.commit()?;
    Ok(id)
}

/// Unique per database, not secret: the creation time in nanoseconds and the pid.
fn mint_store_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos as u64, std::process::id())
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn open_creates_the_dir_the_database_and_the_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/state");
        let store = Store::open(&dir).unwrap();
        assert!(dir.join(DB_FILE).is_file());
        assert!(dir.join(lock::LOCK_FILE).is_file());
        assert_eq!(store.dir(), dir);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let pid: u32 = std::fs::read_to_string(dir.join(lock::LOCK_FILE)).unwrap().trim().parse().unwrap();
        assert_eq!(pid, std::process::id());
    }

    #[test]
    fn wal_and_full_sync_are_in_force() {
        let (_tmp, store) = temp_store();
        let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused_naming_dir_and_pid() {
        let (tmp, store) = temp_store();
        let err = Store::open(tmp.path()).unwrap_err();
        match &err {
            StoreError::Locked { dir, pid } => {
                assert_eq!(dir, tmp.path());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(err.metric_label(), "locked");
        let msg = err.to_string();
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(store);
        Store::open(tmp.path()).expect("the lock is released on drop");
    }

    #[test]
    fn reopen_after_drop_keeps_everything_and_the_store_id() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let id = store.store_id().to_string();
        let s = state("p", 2);
        store.commit_decision("p", &s, &[rec("p", 1), rec("p", 2)], &[set("eu", "web", 10)], &[], t(1)).unwrap();
        drop(store);
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.store_id(), id);
        assert_eq!(store.load_state("p").unwrap(), Some(s));
        assert_eq!(store.audit(Some("p"), 0, 10).unwrap().len(), 2);
        assert_eq!(store.open_intents().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let raw = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        raw.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01T00:00:00Z')", [])
            .unwrap();
        drop(raw);
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found: 99, supported: SCHEMA_VERSION, .. }), "got {err:?}");
        assert!(err.to_string().contains("newer"), "{err}");
        let raw = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        let max: i64 = raw.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(max, 99);
    }

    #[test]
    fn a_database_that_is_not_meridians_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        raw.execute_batch("CREATE TABLE customers (id INTEGER)").unwrap();
        drop(raw);
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::ForeignDatabase { .. }), "got {err:?}");
    }

    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }
}
