//! A read-only view of a state dir, for tools that read while the controller runs
//! (`meridian report --state-dir`).
//!
//! Takes no lock and writes nothing: it opens the database read-only (SQLite's WAL lets a
//! reader see the last committed state while the controller writes), never migrates, and
//! refuses a schema newer than this code. It reads with the same functions as [`Store`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_core::AuditRecord;
use meridian_core::approval::ApprovalChange;
use meridian_core::report::ApprovalHistoryEvent;
use rusqlite::{Connection, OpenFlags};

use crate::codec::sql;
use crate::{ApprovalEvent, ApprovalEventKind, DB_FILE, SCHEMA_VERSION, StoreError, approval, classify, decision};

/// How many rows one read takes while paging.
const PAGE: usize = 1000;

/// An open, read-only state dir.
#[derive(Debug)]
pub struct StoreReader {
    conn: Connection,
    db_path: PathBuf,
}

impl StoreReader {
    /// Open `dir`'s database read-only. A dir without one is an error (nothing is created).
    pub fn open(dir: impl AsRef<Path>) -> Result<StoreReader, StoreError> {
        let db_path = dir.as_ref().join(DB_FILE);
        if !db_path.is_file() {
            return Err(StoreError::NoDatabase { path: db_path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&db_path, flags).map_err(|e| classify(&db_path, e))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| classify(&db_path, e))?;
        let has_table: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| classify(&db_path, e))?;
        if !has_table {
            return Err(StoreError::ForeignDatabase { path: db_path });
        }
        let found: i64 = conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(sql("read the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { path: db_path, found, supported: SCHEMA_VERSION });
        }
        Ok(StoreReader { conn, db_path })
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Names of every plan with a stored state, sorted.
    pub fn plans(&self) -> Result<Vec<String>, StoreError> {
        decision::plans(&self.conn)
    }

    /// Every audit record of `plan`, in seq order.
    pub fn audit(&self, plan: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out: Vec<AuditRecord> = Vec::new();
        loop {
            let after = out.last().map_or(0, |r| r.seq);
            let page = decision::audit(&self.conn, Some(plan), after, PAGE)?;
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The whole approval history, oldest first.
    pub fn approval_history(&self) -> Result<Vec<ApprovalEvent>, StoreError> {
        let mut out: Vec<ApprovalEvent> = Vec::new();
        loop {
            let after = out.last().map_or(0, |e| e.id);
            let page = approval::approval_events(&self.conn, after, PAGE)?;
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}

/// A history event as the evidence report takes it.
pub fn history_event(e: ApprovalEvent) -> ApprovalHistoryEvent {
    ApprovalHistoryEvent {
        kind: match e.kind {
            ApprovalEventKind::Granted => ApprovalChange::Granted,
            ApprovalEventKind::Updated => ApprovalChange::Updated,
            ApprovalEventKind::Revoked => ApprovalChange::Revoked,
        },
        at: e.at,
        by: e.by,
        source: e.source,
        reason: e.reason,
        record: e.record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn reads_while_the_store_is_open_and_writes_nothing() {
        let (tmp, mut store) = temp_store();
        store.put_approval(&approval("ops-go-1", "ops-go"), "api", "alice", t(1)).unwrap();
        let reader = StoreReader::open(tmp.path()).unwrap();
        let history = reader.approval_history().unwrap();
        assert_eq!(history.len(), 1);
        let event = history_event(history[0].clone());
        assert_eq!((event.kind, event.by.as_str()), (ApprovalChange::Granted, "alice"));
        assert!(reader.audit("nope").unwrap().is_empty());
        assert!(reader.plans().unwrap().is_empty());
        // Writes made after it opened are seen (WAL), and the store keeps working.
        store.revoke_approval("ops-go-1", "bob", None, t(2)).unwrap();
        assert_eq!(reader.approval_history().unwrap().len(), 2);
    }

    #[test]
    fn a_dir_without_a_database_is_an_error_and_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let err = StoreReader::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::NoDatabase { .. }), "{err}");
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }
}
