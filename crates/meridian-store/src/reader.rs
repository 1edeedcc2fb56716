//! A read-only view of a state dir, for tools that read while the controller runs
//! (`meridian report --state-dir`).
//!
//! Takes no lock and writes nothing ([`Store::open_read_only`]: SQLite's WAL lets a reader
//! see the last committed state while the controller writes; it never migrates and refuses a
//! schema newer than this code). It reads with the same functions as [`Store`].

use std::path::Path;

use meridian_core::AuditRecord;
use meridian_core::approval::ApprovalChange;
use meridian_core::chain::ChainHead;
use meridian_core::report::ApprovalHistoryEvent;

use crate::{ApprovalEvent, ApprovalEventKind, Store, StoreError, approval, decision};

/// How many rows one read takes while paging.
const PAGE: usize = 1000;

/// An open, read-only state dir.
#[derive(Debug)]
pub struct StoreReader {
    store: Store,
}

impl StoreReader {
    /// Open `dir`'s database read-only ([`Store::open_read_only`]). A dir without one is an
    /// error (nothing is created).
    pub fn open(dir: impl AsRef<Path>) -> Result<StoreReader, StoreError> {
        Ok(StoreReader { store: Store::open_read_only(dir)? })
    }

    pub fn db_path(&self) -> &Path {
        self.store.db_path()
    }

    /// The stored state of `plan`, if it has one (`meridian diff --state-dir`).
    pub fn state(&self, plan: &str) -> Result<Option<meridian_core::PlanState>, StoreError> {
        self.store.load_state(plan)
    }

    /// The audit chain, verified: its head (the anchor the report prints) or the first bad
    /// record in words; `None` for a database from before the chain.
    pub fn verify_chain(&self) -> Result<Option<Result<ChainHead, String>>, StoreError> {
        match self.store.verify_chain(None) {
            Ok(verified) => Ok(Some(verified.map_err(|b| b.to_string()))),
            Err(StoreError::SchemaTooOld { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of every plan with a stored state, sorted.
    pub fn plans(&self) -> Result<Vec<String>, StoreError> {
        decision::plans(&self.store.conn)
    }

    /// Every audit record of `plan`, in seq order.
    pub fn audit(&self, plan: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out: Vec<AuditRecord> = Vec::new();
        loop {
            let after = out.last().map_or(0, |r| r.seq);
            let page = decision::audit(&self.store.conn, Some(plan), after, PAGE)?;
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
            let page = approval::approval_events(&self.store.conn, after, PAGE)?;
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
