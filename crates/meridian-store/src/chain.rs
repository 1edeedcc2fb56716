//! The store's side of the tamper-evident audit chain (`meridian_core::chain`): one entry in
//! `chain` per record kept for the record, appended in the same transaction as the record.
//!
//! | kind            | record                           | reference  | fields hashed                                  |
//! | --------------- | -------------------------------- | ---------- | ---------------------------------------------- |
//! | `audit`         | `audit_records`                  | `PLAN#SEQ` | plan, seq, at, record                          |
//! | `intent`        | `intents` (as decided)           | row id     | plan, region, service, percent, from, key, created |
//! | `intent-closed` | `intents` (as it ended)          | row id     | status, closed_at, observed, error, superseded_by |
//! | `approval`      | `approval_events`                | row id     | name, kind, by, source, at, reason, record     |
//! | `event`         | `events` (denials, reloads, ...) | row id     | at, kind, who, detail                          |
//!
//! An entry's fields are read back with the very query the verifier uses, so what is hashed
//! on append is exactly what is checked later. The intents' `sent_at` and `attempts` are
//! bookkeeping of delivery, not part of the record, and are not hashed.

use meridian_core::chain::{self, ChainBreak, ChainEntry, ChainHead};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{int, limit, sql};
use crate::{Store, StoreError};

/// What a chain entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Audit,
    Intent,
    IntentClosed,
    Approval,
    Event,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Audit, Kind::Intent, Kind::IntentClosed, Kind::Approval, Kind::Event];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::Intent => "intent",
            Kind::IntentClosed => "intent-closed",
            Kind::Approval => "approval",
            Kind::Event => "event",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The record's hashed fields, found by its reference.
    fn fields_sql(self) -> &'static str {
        match self {
            Kind::Audit => "SELECT plan, CAST(seq AS TEXT), at, record FROM audit_records WHERE plan = ?1 AND seq = ?2",
            Kind::Intent => {
                "SELECT plan, region, service, CAST(percent AS TEXT), CAST(from_percent AS TEXT),
                        idempotency_key, created_at FROM intents WHERE id = ?1"
            }
            Kind::IntentClosed => {
                "SELECT status, closed_at, CAST(observed_percent AS TEXT), error, CAST(superseded_by AS TEXT)
                 FROM intents WHERE id = ?1 AND status <> 'open'"
            }
            Kind::Approval => "SELECT name, kind, by, source, at, reason, record FROM approval_events WHERE id = ?1",
            Kind::Event => "SELECT at, kind, who, detail FROM events WHERE id = ?1",
        }
    }

    /// Every record of this kind, as (reference, time), in the order they were written.
    fn records_sql(self) -> &'static str {
        match self {
            Kind::Audit => "SELECT plan || '#' || CAST(seq AS TEXT), at FROM audit_records ORDER BY id",
            Kind::Intent => "SELECT CAST(id AS TEXT), created_at FROM intents ORDER BY id",
            Kind::IntentClosed => "SELECT CAST(id AS TEXT), closed_at FROM intents WHERE status <> 'open' ORDER BY id",
            Kind::Approval => "SELECT CAST(id AS TEXT), at FROM approval_events ORDER BY id",
            Kind::Event => "SELECT CAST(id AS TEXT), at FROM events ORDER BY id",
        }
    }

    /// References of records of this kind that no entry covers (`?1`: at most how many).
    fn unchained_sql(self) -> &'static str {
        match self {
            Kind::Audit => {
                "SELECT plan || '#' || CAST(seq AS TEXT) AS r FROM audit_records
                 WHERE r NOT IN (SELECT reference FROM chain WHERE kind = 'audit') ORDER BY id LIMIT ?1"
            }
            Kind::Intent => {
                "SELECT CAST(id AS TEXT) AS r FROM intents
                 WHERE r NOT IN (SELECT reference FROM chain WHERE kind = 'intent') ORDER BY id LIMIT ?1"
            }
            Kind::IntentClosed => {
                "SELECT CAST(id AS TEXT) AS r FROM intents WHERE status <> 'open'
                 AND r NOT IN (SELECT reference FROM chain WHERE kind = 'intent-closed') ORDER BY id LIMIT ?1"
            }
            Kind::Approval => {
                "SELECT CAST(id AS TEXT) AS r FROM approval_events
                 WHERE r NOT IN (SELECT reference FROM chain WHERE kind = 'approval') ORDER BY id LIMIT ?1"
            }
            Kind::Event => {
                "SELECT CAST(id AS TEXT) AS r FROM events
                 WHERE r NOT IN (SELECT reference FROM chain WHERE kind = 'event') ORDER BY id LIMIT ?1"
            }
        }
    }
}

/// A row id as the chain references it.
pub(crate) fn row(id: i64) -> String {
    id.to_string()
}

/// An audit record as the chain references it.
pub(crate) fn audit_ref(plan: &str, seq: u64) -> String {
    format!("{plan}#{seq}")
}

fn fields(conn: &Connection, kind: Kind, reference: &str) -> Result<Option<Vec<Option<String>>>, StoreError> {
    let op = "read a chained record";
    let mut stmt = conn.prepare_cached(kind.fields_sql()).map_err(sql(op))?;
    let n = stmt.column_count();
    let read = |r: &rusqlite::Row<'_>| (0..n).map(|i| r.get::<_, Option<String>>(i)).collect();
    // A reference that does not parse names no record.
    let found = match kind {
        Kind::Audit => match reference.rsplit_once('#').and_then(|(p, s)| Some((p, s.parse::<i64>().ok()?))) {
            Some((plan, seq)) => stmt.query_row(params![plan, seq], read),
            None => return Ok(None),
        },
        _ => match reference.parse::<i64>() {
            Ok(id) => stmt.query_row(params![id], read),
            Err(_) => return Ok(None),
        },
    };
    found.optional().map_err(sql(op))
}

fn head(conn: &Connection) -> Result<ChainHead, StoreError> {
    let op = "read the chain head";
    let found: Option<(i64, String)> = conn
        .prepare_cached("SELECT n, hash FROM chain ORDER BY n DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(sql(op))?;
    Ok(match found {
        Some((n, hash)) => ChainHead { entries: n as u64, hash },
        None => ChainHead::empty(),
    })
}

/// Link the record `reference` of `kind` into the chain (inside the transaction that wrote it).
pub(crate) fn append(conn: &Connection, kind: Kind, reference: &str) -> Result<(), StoreError> {
    let op = "append to the audit chain";
    let content = fields(conn, kind, reference)?.ok_or_else(|| StoreError::Corrupt {
        what: "chained record",
        key: format!("{} {reference}", kind.as_str()),
        detail: "not found in the transaction that wrote it".into(),
    })?;
    let entry = chain::append(&head(conn)?, kind.as_str(), reference, content);
    let n = int(entry.n, "chain entry")?;
    conn.prepare_cached("INSERT INTO chain (n, kind, reference, hash) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![n, entry.kind, entry.reference, entry.hash]))
        .map_err(sql(op))?;
    Ok(())
}

/// Chain every record written before the chain existed (the migration that adds it), in
/// the order they were written: by time, then table, then row.
pub(crate) fn backfill(conn: &Connection) -> Result<(), StoreError> {
    let op = "chain the records written before the chain";
    let mut all: Vec<(String, usize, i64, Kind, String)> = Vec::new();
    for (order, kind) in Kind::ALL.into_iter().enumerate() {
        let mut stmt = conn.prepare(kind.records_sql()).map_err(sql(op))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))).map_err(sql(op))?;
        for (i, row) in rows.enumerate() {
            let (reference, at) = row.map_err(sql(op))?;
            all.push((at.unwrap_or_default(), order, i as i64, kind, reference));
        }
    }
    all.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    for (_, _, _, kind, reference) in all {
        append(conn, kind, &reference)?;
    }
    Ok(())
}

impl Store {
    /// A database from before the chain (opened read-only, so not migrated) has none.
    fn require_chain(&self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found < 2 {
            return Err(StoreError::SchemaTooOld {
                path: self.db_path().to_path_buf(),
                found,
                supported: crate::SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// The chain's last entry: `entries` and `hash` (the anchor to keep elsewhere).
    pub fn chain_head(&self) -> Result<ChainHead, StoreError> {
        self.require_chain()?;
        head(&self.conn)
    }

    /// Chain entries with `n > after`, at most `limit`, each with the record's content as
    /// the store holds it now (`fields: None` when the record is gone).
    pub fn chain_entries(&self, after: u64, limit_to: usize) -> Result<Vec<ChainEntry>, StoreError> {
        let op = "read the audit chain";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT n, kind, reference, hash FROM chain WHERE n > ?1 ORDER BY n LIMIT ?2")
            .map_err(sql(op))?;
        let rows: Vec<(i64, String, String, String)> = stmt
            .query_map(params![int(after, "chain entry")?, limit(limit_to)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(sql(op))?
            .collect::<Result<_, _>>()
            .map_err(sql(op))?;
        rows.into_iter()
            .map(|(n, kind, reference, hash)| {
                let content = match Kind::parse(&kind) {
                    Some(k) => fields(&self.conn, k, &reference)?,
                    // An unknown kind cannot be checked; it verifies as a missing record.
                    None => None,
                };
                Ok(ChainEntry { n: n as u64, kind, reference, fields: content, hash })
            })
            .collect()
    }

    /// Records that no chain entry covers (at most a few references per kind).
    pub fn unchained(&self) -> Result<Vec<ChainBreak>, StoreError> {
        let op = "look for records outside the audit chain";
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let mut stmt = self.conn.prepare(kind.unchained_sql()).map_err(sql(op))?;
            let references: Vec<String> = stmt
                .query_map(params![10], |r| r.get(0))
                .map_err(sql(op))?
                .collect::<Result<_, _>>()
                .map_err(sql(op))?;
            if !references.is_empty() {
                out.push(ChainBreak::Unchained { kind: kind.as_str().to_string(), references });
            }
        }
        Ok(out)
    }

    /// Walk the whole chain (page by page) and the records around it. `Ok(Err(break))` is a
    /// chain that does not hold; `Err` a store that could not be read.
    pub fn verify_chain(&self, anchor: Option<ChainHead>) -> Result<Result<ChainHead, ChainBreak>, StoreError> {
        const PAGE: usize = 1000;
        self.require_chain()?;
        let mut verifier = chain::Verifier::new(anchor);
        loop {
            let page = self.chain_entries(verifier.head().entries, PAGE)?;
            for entry in &page {
                if let Err(broken) = verifier.push(entry) {
                    return Ok(Err(broken));
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        if let Some(first) = self.unchained()?.into_iter().next() {
            return Ok(Err(first));
        }
        Ok(verifier.finish())
    }
}

#[cfg(test)]
mod tests {
    use meridian_core::chain::{ChainBreak, ChainHead};
    use rusqlite::Connection;

    use crate::testutil::*;
    use crate::*;

    /// A store with every kind of chained record: a decision with two audit records and two
    /// intents, a superseding decision, a completed intent, an approval granted and revoked,
    /// and a controller event. Returns the dir (the store is closed).
    fn filled() -> tempfile::TempDir {
        let (tmp, mut store) = temp_store();
        store
            .commit_decision("p", &state("p", 2), &[rec("p", 1), rec("p", 2)], &[set("eu", "web", 1)], &[], t(1))
            .unwrap();
        let intents =
            store.commit_decision("p", &state("p", 3), &[rec("p", 3)], &[set("eu", "web", 10)], &[], t(2)).unwrap();
        store.complete_intent(intents[0].id, IntentOutcome::Done { observed_percent: 10 }, t(3)).unwrap();
        store.put_approval(&approval("go-1", "ops-go"), "api", "alice", t(4)).unwrap();
        store.revoke_approval("go-1", "bob", Some("wrong build"), t(5)).unwrap();
        store
            .record_event(t(6), "access-denied", "mallory", &serde_json::json!({"path": "/api/v1/approvals"}))
            .unwrap();
        drop(store);
        tmp
    }

    /// The database file opened directly, with the append-only triggers dropped: what an
    /// attacker with write access to the file can do.
    fn raw(tmp: &tempfile::TempDir) -> Connection {
        let raw = Connection::open(tmp.path().join(DB_FILE)).unwrap();
        raw.execute_batch(
            "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;
             DROP TRIGGER chain_no_update; DROP TRIGGER chain_no_delete;",
        )
        .unwrap();
        raw
    }

    fn verify(tmp: &tempfile::TempDir, anchor: Option<ChainHead>) -> Result<ChainHead, ChainBreak> {
        Store::open_read_only(tmp.path()).unwrap().verify_chain(anchor).unwrap()
    }

    fn entry_of(tmp: &tempfile::TempDir, kind: &str, reference: &str) -> u64 {
        let store = Store::open_read_only(tmp.path()).unwrap();
        let all = store.chain_entries(0, 1000).unwrap();
        all.iter().find(|e| e.kind == kind && e.reference == reference).map(|e| e.n).unwrap()
    }

    #[test]
    fn every_record_kept_for_the_record_is_chained_and_verifies() {
        let tmp = filled();
        let store = Store::open_read_only(tmp.path()).unwrap();
        let entries = store.chain_entries(0, 1000).unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        // 3 audit, 2 intents (the first superseded, the second done), 2 approval events each
        // mirrored as a controller event, 1 denial.
        assert_eq!(kinds.iter().filter(|k| **k == "audit").count(), 3);
        assert_eq!(kinds.iter().filter(|k| **k == "intent").count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == "intent-closed").count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == "approval").count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == "event").count(), 3);
        let head = store.verify_chain(None).unwrap().unwrap();
        assert_eq!(head, store.chain_head().unwrap());
        assert_eq!(head.entries, 12);
    }

    #[test]
    fn an_edited_audit_record_is_named() {
        let tmp = filled();
        let n = entry_of(&tmp, "audit", "p#2");
        raw(&tmp)
            .execute("UPDATE audit_records SET record = replace(record, 'ops-go-1', 'forged') WHERE seq = 2", [])
            .unwrap();
        assert_eq!(verify(&tmp, None), Err(ChainBreak::Altered { n, kind: "audit".into(), reference: "p#2".into() }));
    }

    #[test]
    fn a_deleted_record_is_named() {
        let tmp = filled();
        let n = entry_of(&tmp, "audit", "p#2");
        raw(&tmp).execute("DELETE FROM audit_records WHERE seq = 2", []).unwrap();
        assert_eq!(verify(&tmp, None), Err(ChainBreak::Missing { n, kind: "audit".into(), reference: "p#2".into() }));
    }

    #[test]
    fn two_reordered_records_break_at_the_first() {
        let tmp = filled();
        let n = entry_of(&tmp, "audit", "p#1");
        // Swap what records 1 and 2 say (their seq columns stay in place).
        raw(&tmp)
            .execute_batch(
                "UPDATE audit_records SET seq = 1000 WHERE seq = 1;
                 UPDATE audit_records SET seq = 1 WHERE seq = 2;
                 UPDATE audit_records SET seq = 2 WHERE seq = 1000;",
            )
            .unwrap();
        assert!(matches!(verify(&tmp, None), Err(ChainBreak::Altered { n: m, .. }) if m == n));
    }

    #[test]
    fn an_edited_intent_result_and_an_edited_approval_event_are_named() {
        let tmp = filled();
        raw(&tmp).execute("UPDATE intents SET observed_percent = 50 WHERE status = 'done'", []).unwrap();
        assert!(matches!(verify(&tmp, None), Err(ChainBreak::Altered { kind, .. }) if kind == "intent-closed"));
        let tmp = filled();
        let conn = raw(&tmp);
        conn.execute_batch("DROP TRIGGER approval_events_no_update").unwrap();
        conn.execute("UPDATE approval_events SET by = 'carol' WHERE kind = 'revoked'", []).unwrap();
        assert!(matches!(verify(&tmp, None), Err(ChainBreak::Altered { kind, .. }) if kind == "approval"));
    }

    #[test]
    fn a_deleted_entry_a_forged_record_and_a_cut_tail_are_found() {
        let tmp = filled();
        raw(&tmp).execute("DELETE FROM chain WHERE n = 4", []).unwrap();
        assert_eq!(verify(&tmp, None), Err(ChainBreak::Gap { n: 4, found: 5 }));

        let tmp = filled();
        raw(&tmp)
            .execute("INSERT INTO events (at, kind, who, detail) VALUES ('2026-06-01T00:09:00Z', 'x', 'y', '{}')", [])
            .unwrap();
        assert!(matches!(verify(&tmp, None), Err(ChainBreak::Unchained { kind, .. }) if kind == "event"));

        // Cutting the tail (the last record and its entry) leaves a chain that holds on its
        // own; only the anchor kept elsewhere shows it.
        let tmp = filled();
        let anchor = verify(&tmp, None).unwrap();
        let conn = raw(&tmp);
        conn.execute_batch("DROP TRIGGER events_no_delete").unwrap();
        conn.execute("DELETE FROM events WHERE kind = 'access-denied'", []).unwrap();
        conn.execute("DELETE FROM chain WHERE n = ?1", [anchor.entries as i64]).unwrap();
        assert!(verify(&tmp, None).is_ok());
        assert_eq!(
            verify(&tmp, Some(anchor.clone())),
            Err(ChainBreak::Truncated { entries: anchor.entries - 1, anchor: anchor.entries })
        );
    }

    #[test]
    fn a_database_from_before_the_chain_is_chained_when_migrated() {
        let tmp = filled();
        let conn = raw(&tmp);
        conn.execute_batch("DROP TABLE chain; DELETE FROM schema_migrations WHERE version = 2;").unwrap();
        drop(conn);
        let old = Store::open_read_only(tmp.path()).unwrap();
        assert!(matches!(old.verify_chain(None), Err(StoreError::SchemaTooOld { found: 1, .. })));
        drop(old);
        drop(Store::open(tmp.path()).unwrap());
        let head = verify(&tmp, None).unwrap();
        assert_eq!(head.entries, 12);
    }

    #[test]
    fn the_read_only_view_works_beside_the_running_store_and_never_writes() {
        let tmp = filled();
        let mut store = Store::open(tmp.path()).unwrap();
        let view = Store::open_read_only(tmp.path()).unwrap();
        let before = view.chain_head().unwrap();
        store.record_event(t(7), "config-applied", "config", &serde_json::json!({})).unwrap();
        assert_eq!(view.chain_head().unwrap().entries, before.entries + 1);
        assert!(view.verify_chain(None).unwrap().is_ok());
        let missing = tempfile::tempdir().unwrap();
        assert!(matches!(Store::open_read_only(missing.path()), Err(StoreError::NoDatabase { .. })));
    }
}
