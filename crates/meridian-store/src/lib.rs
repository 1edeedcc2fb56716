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
//! - a schema newer than this code is refused, never used;
//! - a database is checked before it is used: a damaged file (`PRAGMA quick_check`), an empty
//!   (0-byte) one and one that cannot be written are refused with the way out, never started
//!   over; only a missing file starts a new state.
//!
//! What it must not do: decide anything, read plans, or talk to targets. It is synchronous
//! and blocking (an async caller uses `spawn_blocking`); `Store` is `Send`, not `Sync`.
//!
//! Time is always an argument (`at`); only bookkeeping (when a migration ran, the store id)
//! reads the clock.

mod approval;
mod chain;
mod codec;
mod command;
mod decision;
mod error;
mod event;
mod intent;
mod lock;
mod port;
mod reader;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

pub use approval::{ApprovalChange, ApprovalEvent, ApprovalEventKind};
pub use command::{CommandId, PendingCommand};
pub use decision::NewDecision;
pub use error::StoreError;
pub use event::EventRecord;
pub use intent::{Intent, IntentId, IntentOutcome, IntentStatus, IntentWrite};
pub use meridian_core::approval::{FILE_REMOVED_BY, FILE_REMOVED_REASON, revoked_by_file_removal};
pub use port::SqliteStore;
pub use reader::{StoreReader, history_event};
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
    /// None for a read-only view ([`Store::open_read_only`]), which takes no lock.
    _lock: Option<StateDirLock>,
}

impl Store {
    /// Open (creating if needed) the state dir and its database, taking the dir's lock.
    ///
    /// Fails with `StoreError::Locked` if another process (or another `Store` in this one)
    /// has the dir open, with `StoreError::SchemaTooNew` if a newer meridian wrote it, and with
    /// `Empty`, `Damaged` or `ReadOnly` for a database that must not be trusted.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_with_flags(dir.as_ref(), OpenFlags::default())
    }

    /// [`Store::open`] with SQLite's open flags; tests use it to open a database read-only
    /// where file modes cannot make it so (as root).
    fn open_with_flags(dir: &Path, flags: OpenFlags) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { dir: dir.to_path_buf(), source })?;
        let lock = StateDirLock::acquire(dir)?;
        let db_path = dir.join(DB_FILE);
        // SQLite takes a 0-byte file for a new database; here it is one whose contents were
        // lost, and starting over it would silently drop every approval and revocation.
        if std::fs::metadata(&db_path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(StoreError::Empty { path: db_path });
        }
        let open_err = |source| classify(&db_path, source);
        let mut conn = Connection::open_with_flags(&db_path, flags).map_err(open_err)?;
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? {
            return Err(StoreError::ReadOnly { path: db_path, detail: "opened read-only".into() });
        }
        // We hold the dir lock, so nobody else writes; the timeout only covers a reader
        // (such as a backup) that briefly holds SQLite's own locks.
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::WalUnavailable { path: db_path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        check_integrity(&conn, &db_path)?;
        schema::migrate(&mut conn, &db_path)?;
        let store_id = ensure_store_id(&mut conn).map_err(open_err)?;
        Ok(Store { conn, store_id, dir: dir.to_path_buf(), db_path, _lock: Some(lock) })
    }

    /// A read-only view of a state dir, for tools that inspect it (`meridian audit verify`,
    /// `meridian report`) while a controller may be running on it: takes no lock, migrates
    /// nothing and writes nothing. The database must exist and be no newer than this code
    /// (an older one reads; what it lacks, such as the audit chain, is an error when asked).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref();
        let db_path = dir.join(DB_FILE);
        if !db_path.is_file() {
            return Err(StoreError::NoDatabase { path: db_path });
        }
        if std::fs::metadata(&db_path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Empty { path: db_path });
        }
        let open_err = |source| classify(&db_path, source);
        let conn =
            Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        check_integrity(&conn, &db_path)?;
        let found: i64 = conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(|_| StoreError::ForeignDatabase { path: db_path.clone() })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { path: db_path, found, supported: SCHEMA_VERSION });
        }
        let store_id = conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| r.get(0))
            .map_err(sql("read the store id"))?;
        Ok(Store { conn, store_id, dir: dir.to_path_buf(), db_path, _lock: None })
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
    // A test write, so that a database that cannot be written (a read-only file or
    // filesystem) is refused at start, not found out at the first decision.
    tx.execute("UPDATE meta SET value = value WHERE key = 'store_id'", [])?;
    tx.commit()?;
    Ok(id)
}

/// `PRAGMA quick_check`: every page and b-tree of the file is readable and well formed
/// (linear in the file's size; it does not compare indexes with their tables row by row).
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    let checked = conn.prepare("PRAGMA quick_check(5)").and_then(|mut stmt| {
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            problems.push(row?);
        }
        Ok(())
    });
    checked.map_err(|source| classify(path, source))?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(StoreError::Damaged { path: path.to_path_buf(), detail: problems.join("; ") }),
    }
}

/// An error met while opening: damage and read-only files get their own errors, with the
/// way out; anything else is a plain open failure.
pub(crate) fn classify(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase, ReadOnly};
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Damaged { path, detail: source.to_string() },
        Some(ReadOnly) => StoreError::ReadOnly { path, detail: source.to_string() },
        _ => StoreError::Open { path, source },
    }
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

    /// A store with a few hundred decisions, closed (so the WAL is checkpointed into the
    /// file), and the database path.
    fn filled_and_closed() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        for seq in 1..=300u64 {
            store.commit_decision("p", &state("p", seq), &[rec("p", seq)], &[], &[], t(seq as i64)).unwrap();
        }
        drop(store);
        let path = tmp.path().join(DB_FILE);
        assert!(!tmp.path().join(format!("{DB_FILE}-wal")).exists(), "the close checkpointed the log");
        (tmp, path)
    }

    fn page_size(path: &Path) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65536,
            n => u64::from(n),
        }
    }

    fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }

    fn assert_damaged(err: &StoreError, path: &Path) {
        assert!(matches!(err, StoreError::Damaged { .. }), "got {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("restore it from a backup") && msg.contains("move it aside"), "{msg}");
        assert_eq!(err.metric_label(), "damaged");
    }

    #[test]
    fn a_database_with_a_damaged_page_is_refused_naming_the_file_and_the_way_out() {
        let (tmp, path) = filled_and_closed();
        let len = std::fs::metadata(&path).unwrap().len();
        let page = page_size(&path);
        let middle = (len / page / 2) * page;
        overwrite(&path, middle + 8, &[0xA5; 512]);
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert_damaged(&err, &path);
        assert_eq!(std::fs::read(&path).unwrap(), before, "a refused database is left as it was");
    }

    #[test]
    fn a_database_with_a_zeroed_index_page_is_refused() {
        let (tmp, path) = filled_and_closed();
        let root: u64 = {
            let raw = Connection::open(&path).unwrap();
            raw.query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_records'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as u64
        };
        let page = page_size(&path);
        overwrite(&path, (root - 1) * page, &vec![0u8; page as usize]);
        let err = Store::open(tmp.path()).unwrap_err();
        assert_damaged(&err, &path);
    }

    #[test]
    fn an_empty_database_file_is_refused_not_started_fresh() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(DB_FILE);
        std::fs::write(&path, b"").unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::Empty { .. }), "got {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("0 bytes"), "{msg}");
        assert!(msg.contains("restore it from a backup") && msg.contains("move it aside"), "{msg}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "nothing was written into it");
        // Moved aside, the way out the message names: a new, empty state.
        std::fs::rename(&path, tmp.path().join("meridian.db.empty")).unwrap();
        Store::open(tmp.path()).expect("a state dir without a database starts a new one");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(DB_FILE);
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert_damaged(&err, &path);
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192]);
    }

    #[test]
    fn a_database_opened_read_only_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let err = Store::open_with_flags(tmp.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "got {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&tmp.path().join(DB_FILE).display().to_string()) && msg.contains("writable"), "{msg}");
    }

    #[test]
    #[allow(clippy::print_stderr, reason = "a test says why it skips an assertion")]
    fn a_read_only_database_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        drop(Store::open(tmp.path()).unwrap());
        let path = tmp.path().join(DB_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
            // Root (or CAP_DAC_OVERRIDE) writes through file modes; the refusal of a read-only
            // connection is shown by a_database_opened_read_only_is_refused.
            eprintln!(
                "skipped: this process can write a 0444 file (running as root), so chmod cannot make it read-only"
            );
            return;
        }
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "got {err:?}");
    }

    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }
}
