//! Approvals from files and the API, and the append-only history of every grant, change and
//! revocation.
//!
//! `put_approval` is level-triggered: putting what is already stored changes nothing and
//! appends no event, so a file watcher may put every approval on every reload. A revoked
//! approval is kept with its revocation forever: putting it again unchanged is a no-op (the
//! revocation stands, even if its file still says otherwise), changing it is refused. The one
//! exception: an approval revoked because its file was removed ([`crate::FILE_REMOVED_REASON`]) is
//! granted again when a file (`source` `file:...`) puts it back. Nothing here deletes; a
//! removed file is the shell's to turn into a revocation.

use std::fmt;

use chrono::{DateTime, Utc};
use meridian_core::ApprovalRecord;
use meridian_core::approval::{RevokedInfo, approval_change};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, limit, parse_ts, sql, ts};
use crate::{Store, StoreError, chain};

pub use meridian_core::approval::ApprovalChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalEventKind {
    Granted,
    Updated,
    Revoked,
}

impl ApprovalEventKind {
    fn as_str(self) -> &'static str {
        match self {
            ApprovalEventKind::Granted => "granted",
            ApprovalEventKind::Updated => "updated",
            ApprovalEventKind::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "granted" => Some(ApprovalEventKind::Granted),
            "updated" => Some(ApprovalEventKind::Updated),
            "revoked" => Some(ApprovalEventKind::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for ApprovalEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the approval history: who did what, when, through which source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalEvent {
    /// Increasing; page with `approval_events(after_id, ..)`.
    pub id: i64,
    pub name: String,
    pub kind: ApprovalEventKind,
    /// Who did it: an API token's subject, `config` for the file watcher. (The grantor the
    /// approval names is `record.granted_by`.)
    pub by: String,
    /// Where it came from: `file:PATH`, `api`.
    pub source: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval as it stood after this event.
    pub record: ApprovalRecord,
}

fn get(conn: &Connection, name: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    let json: Option<String> = conn
        .query_row("SELECT record FROM approvals WHERE name = ?1", params![name], |r| r.get(0))
        .optional()
        .map_err(sql("read an approval"))?;
    json.map(|j| decode(&j, "approval", name)).transpose()
}

fn write(
    conn: &Connection,
    record: &ApprovalRecord,
    kind: ApprovalEventKind,
    source: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let op = "record an approval";
    let json = encode(record, "approval")?;
    conn.execute(
        "INSERT INTO approvals (name, record, source, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET record = excluded.record, source = excluded.source,
                                          updated_at = excluded.updated_at",
        params![record.name, json, source, ts(at)],
    )
    .map_err(sql(op))?;
    let reason = match (kind, &record.revoked) {
        (ApprovalEventKind::Revoked, Some(r)) => r.reason.as_deref(),
        _ => None,
    };
    conn.execute(
        "INSERT INTO approval_events (name, kind, by, source, at, reason, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![record.name, kind.as_str(), by, source, ts(at), reason, json],
    )
    .map_err(sql(op))?;
    chain::append(conn, chain::Kind::Approval, &chain::row(conn.last_insert_rowid()))?;
    // The same change in the controller's event log, in the same transaction, so one
    // ordered history (`events`) holds grants and revocations next to expiries, rejected
    // edits and denied requests.
    let detail = serde_json::json!({
        "approval": record.name,
        "flag": record.flag,
        "source": source,
        "reason": reason,
        "record": record,
    });
    conn.execute(
        "INSERT INTO events (at, kind, who, detail) VALUES (?1, ?2, ?3, ?4)",
        params![ts(at), format!("approval-{}", kind.as_str()), by, encode(&detail, "event detail")?],
    )
    .map_err(sql(op))?;
    chain::append(conn, chain::Kind::Event, &chain::row(conn.last_insert_rowid()))
}

impl Store {
    /// Grant or update an approval from `source` (`file:PATH`, `api`), done by `by` (a
    /// token's subject, `config`), appending a history event when anything changed. See the
    /// module doc for revoked approvals.
    pub fn put_approval(
        &mut self,
        record: &ApprovalRecord,
        source: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<ApprovalChange, StoreError> {
        let tx = self.write_tx("record an approval")?;
        let stored = get(&tx, &record.name)?;
        let change = approval_change(stored.as_ref(), record, source).map_err(|revoked| {
            StoreError::ApprovalRevoked { name: record.name.clone(), by: revoked.by, at: revoked.at }
        })?;
        let kind = match change {
            ApprovalChange::Unchanged => return Ok(change),
            ApprovalChange::Granted => ApprovalEventKind::Granted,
            ApprovalChange::Updated => ApprovalEventKind::Updated,
            ApprovalChange::Revoked => ApprovalEventKind::Revoked,
        };
        write(&tx, record, kind, source, by, at)?;
        tx.commit().map_err(sql("record an approval"))?;
        Ok(change)
    }

    /// Revoke an approval: it is kept, with who revoked it, when and why. Returns `true` when
    /// this call revoked it, `false` when it already was (the first revocation stands and no
    /// event is appended). An unknown name is an error.
    pub fn revoke_approval(
        &mut self,
        name: &str,
        by: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let tx = self.write_tx("revoke an approval")?;
        let mut record = get(&tx, name)?.ok_or_else(|| StoreError::ApprovalNotFound { name: name.to_string() })?;
        if record.revoked.is_some() {
            return Ok(false);
        }
        record.revoked = Some(RevokedInfo { at, by: by.to_string(), reason: reason.map(str::to_string) });
        write(&tx, &record, ApprovalEventKind::Revoked, "revoke", by, at)?;
        tx.commit().map_err(sql("revoke an approval"))?;
        Ok(true)
    }

    /// Every approval on record, revoked ones included, by name.
    pub fn approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        let op = "list approvals";
        let mut stmt = self.conn.prepare_cached("SELECT name, record FROM approvals ORDER BY name").map_err(sql(op))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(sql(op))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row.map_err(sql(op))?;
            out.push(decode(&json, "approval", &name)?);
        }
        Ok(out)
    }

    /// The approvals in force whose last grant came from a configuration source (anything but
    /// `api`: `file`, `file:PATH`, `kube:NAMESPACE/NAME`), with that source: the set a source
    /// mirrors. An approval removed while the controller was stopped is found by comparing
    /// what the source holds at start with this set.
    pub fn source_approvals(&self) -> Result<Vec<(String, String)>, StoreError> {
        let op = "list source approvals";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, record, source FROM approvals WHERE source <> 'api' ORDER BY name")
            .map_err(sql(op))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql(op))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json, source) = row.map_err(sql(op))?;
            let record: ApprovalRecord = decode(&json, "approval", &name)?;
            if record.revoked.is_none() {
                out.push((name, source));
            }
        }
        Ok(out)
    }

    pub fn approval(&self, name: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        get(&self.conn, name)
    }

    /// The approval history in order, at most `limit` events with `id > after_id`.
    pub fn approval_events(&self, after_id: i64, limit_to: usize) -> Result<Vec<ApprovalEvent>, StoreError> {
        approval_events(&self.conn, after_id, limit_to)
    }
}

/// [`Store::approval_events`], on any connection (the store's, or a read-only one).
/// The approval history in order, at most `limit` events with `id > after_id`.
pub(crate) fn approval_events(
    conn: &Connection,
    after_id: i64,
    limit_to: usize,
) -> Result<Vec<ApprovalEvent>, StoreError> {
    let op = "read approval events";
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, name, kind, by, source, at, reason, record FROM approval_events
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(sql(op))?;
    type Raw = (i64, String, String, String, String, String, Option<String>, String);
    let rows = stmt
        .query_map(params![after_id, limit(limit_to)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .map_err(sql(op))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, kind, by, source, at, reason, record): Raw = row.map_err(sql(op))?;
        let key = id.to_string();
        let kind = ApprovalEventKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            what: "approval event",
            key: key.clone(),
            detail: format!("unknown kind {kind:?}"),
        })?;
        out.push(ApprovalEvent {
            id,
            name,
            kind,
            by,
            source,
            at: parse_ts(&at, "approval event", &key)?,
            reason,
            record: decode(&record, "approval event", &key)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::*;

    #[test]
    fn granting_is_recorded_once_and_updates_are_recorded() {
        let (_tmp, mut store) = temp_store();
        let a = approval("jp-regulator-2026-05", "jp-regulator");
        assert_eq!(store.put_approval(&a, "file:config/jp.yaml", "config", t(1)).unwrap(), ApprovalChange::Granted);
        assert_eq!(store.put_approval(&a, "file:config/jp.yaml", "config", t(2)).unwrap(), ApprovalChange::Unchanged);
        let mut b = a.clone();
        b.expires = Some(t(100));
        assert_eq!(store.put_approval(&b, "file:config/jp.yaml", "config", t(3)).unwrap(), ApprovalChange::Updated);
        assert_eq!(store.approvals().unwrap(), vec![b.clone()]);
        let events = store.approval_events(0, 10).unwrap();
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![ApprovalEventKind::Granted, ApprovalEventKind::Updated]
        );
        assert_eq!(
            (events[0].by.as_str(), events[0].source.as_str(), events[0].at),
            ("config", "file:config/jp.yaml", t(1))
        );
        assert_eq!(events[0].record, a);
        assert_eq!(events[1].record, b);
        assert_eq!(store.approval_events(events[0].id, 10).unwrap(), vec![events[1].clone()]);
    }

    #[test]
    fn revoking_keeps_the_record_and_appends_an_event() {
        let (_tmp, mut store) = temp_store();
        let a = approval("ops-go-1", "ops-go");
        store.put_approval(&a, "api", "alice", t(1)).unwrap();
        assert!(store.revoke_approval("ops-go-1", "bob", Some("incident 42"), t(5)).unwrap());
        let revoked = store.approval("ops-go-1").unwrap().unwrap();
        let info = revoked.revoked.clone().unwrap();
        assert_eq!((info.by.as_str(), info.reason.as_deref(), info.at), ("bob", Some("incident 42"), t(5)));
        assert_eq!(store.approvals().unwrap(), vec![revoked.clone()], "never deleted");
        // Twice: the first revocation stands, no second event.
        assert!(!store.revoke_approval("ops-go-1", "carol", None, t(6)).unwrap());
        assert_eq!(store.approval("ops-go-1").unwrap(), Some(revoked));
        let events = store.approval_events(0, 10).unwrap();
        assert_eq!(events.len(), 2);
        let last = &events[1];
        assert_eq!(
            (last.kind, last.by.as_str(), last.reason.as_deref(), last.at),
            (ApprovalEventKind::Revoked, "bob", Some("incident 42"), t(5))
        );
        assert_eq!((events[0].by.as_str(), events[0].source.as_str()), ("alice", "api"));
        let err = store.revoke_approval("nope", "bob", None, t(6)).unwrap_err();
        assert!(matches!(err, StoreError::ApprovalNotFound { .. }), "got {err:?}");
    }

    #[test]
    fn a_revoked_approval_stays_revoked_when_its_file_is_reloaded() {
        let (_tmp, mut store) = temp_store();
        let a = approval("jp-1", "jp-regulator");
        store.put_approval(&a, "file:config/jp.yaml", "config", t(1)).unwrap();
        store.revoke_approval("jp-1", "ministry", Some("measures insufficient"), t(2)).unwrap();
        assert_eq!(store.put_approval(&a, "file:config/jp.yaml", "config", t(3)).unwrap(), ApprovalChange::Unchanged);
        assert!(store.approval("jp-1").unwrap().unwrap().revoked.is_some());
        let mut changed = a.clone();
        changed.expires = Some(t(200));
        let err = store.put_approval(&changed, "file:config/jp.yaml", "config", t(4)).unwrap_err();
        assert!(matches!(err, StoreError::ApprovalRevoked { .. }), "got {err:?}");
        assert!(err.to_string().contains("another name"), "{err}");
        assert_eq!(store.approval_events(0, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_put_that_carries_a_revocation_is_a_revocation_event() {
        let (_tmp, mut store) = temp_store();
        let mut a = approval("ci-1", "ci-promote");
        store.put_approval(&a, "api", "ci", t(1)).unwrap();
        a.revoked = Some(meridian_core::approval::RevokedInfo { at: t(2), by: "ci".into(), reason: None });
        assert_eq!(store.put_approval(&a, "api", "ci", t(2)).unwrap(), ApprovalChange::Revoked);
        let events = store.approval_events(0, 10).unwrap();
        assert_eq!((events[1].kind, events[1].by.as_str()), (ApprovalEventKind::Revoked, "ci"));
    }

    #[test]
    fn approval_events_are_append_only_even_to_raw_sql() {
        let (_tmp, mut store) = temp_store();
        store.put_approval(&approval("a", "f"), "api", "x", t(1)).unwrap();
        assert!(store.conn.execute("DELETE FROM approval_events", []).is_err());
        assert!(store.conn.execute("UPDATE approval_events SET by = 'mallory'", []).is_err());
    }
}
