//! Actuation intents: every traffic change, recorded before it is sent.
//!
//! The shell's rule, which makes a crash between "sent" and "recorded" harmless:
//!
//! 1. An intent is recorded (by `commit_decision`, with the decision that wants it) BEFORE
//!    any request is sent. Nothing is ever sent without an open intent.
//! 2. Just before each attempt the shell calls `mark_intent_sent` (counts attempts; the
//!    request carries the intent's `idempotency_key`, the same on every attempt).
//! 3. After the target confirmed (a successful response, or a read-back showing the
//!    percent), the shell calls `complete_intent(Done { observed_percent })`; when it gives
//!    up, `complete_intent(Failed { error })`, and the next decision's read-back decides.
//! 4. On restart, every intent in `open_intents()` is resolved by reading the target back:
//!    if it already serves `percent`, complete it as done; otherwise send it again (same
//!    key). Never guess from `sent_at` whether the request arrived.
//!
//! A newer intent for the same (plan, region, service) supersedes the open one in the same
//! transaction (at most one open intent per unit, enforced by a unique index). A
//! superseded intent must not be sent any more; completing or marking it is a no-op that
//! returns it, since a send in flight when the newer intent was recorded is a normal race.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::codec::{parse_opt_ts, parse_ts, percent, sql, ts};
use crate::{Store, StoreError, chain};

/// An intent's id: assigned by the database, increasing, never reused once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntentId(pub i64);

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One recorded actuation: make (region, service) of `plan` serve `percent` %.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub id: IntentId,
    pub plan: String,
    pub region: String,
    pub service: String,
    pub percent: u32,
    /// The percent the unit had before the decision (for logs and metrics).
    pub from_percent: u32,
    /// Sent with every attempt so the target applies the change once.
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
    /// The latest attempt, if any.
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub status: IntentStatus,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum IntentStatus {
    /// Recorded, perhaps sent, not yet confirmed.
    Open,
    /// The target confirmed serving `observed_percent`.
    Done { observed_percent: u32 },
    /// The shell gave up on it.
    Failed { error: String },
    /// A newer intent for the same unit replaced it before it closed.
    Superseded { by: IntentId },
}

impl IntentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            IntentStatus::Open => "open",
            IntentStatus::Done { .. } => "done",
            IntentStatus::Failed { .. } => "failed",
            IntentStatus::Superseded { .. } => "superseded",
        }
    }
}

/// How an intent ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum IntentOutcome {
    Done { observed_percent: u32 },
    Failed { error: String },
}

const COLUMNS: &str = "id, plan, region, service, percent, from_percent, idempotency_key, created_at, sent_at, \
                       attempts, status, closed_at, observed_percent, error, superseded_by";

/// An intent row as SQLite hands it over, before validation.
struct Row {
    id: i64,
    plan: String,
    region: String,
    service: String,
    percent: i64,
    from_percent: i64,
    idempotency_key: String,
    created_at: String,
    sent_at: Option<String>,
    attempts: i64,
    status: String,
    closed_at: Option<String>,
    observed_percent: Option<i64>,
    error: Option<String>,
    superseded_by: Option<i64>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            plan: r.get(1)?,
            region: r.get(2)?,
            service: r.get(3)?,
            percent: r.get(4)?,
            from_percent: r.get(5)?,
            idempotency_key: r.get(6)?,
            created_at: r.get(7)?,
            sent_at: r.get(8)?,
            attempts: r.get(9)?,
            status: r.get(10)?,
            closed_at: r.get(11)?,
            observed_percent: r.get(12)?,
            error: r.get(13)?,
            superseded_by: r.get(14)?,
        })
    }

    fn into_intent(self) -> Result<Intent, StoreError> {
        const WHAT: &str = "intent";
        let key = self.id.to_string();
        let corrupt = |detail: String| StoreError::Corrupt { what: WHAT, key: key.clone(), detail };
        let status = match (self.status.as_str(), self.observed_percent, self.error, self.superseded_by) {
            ("open", ..) => IntentStatus::Open,
            ("done", Some(p), ..) => IntentStatus::Done { observed_percent: percent(p, WHAT, &key)? },
            ("failed", _, Some(error), _) => IntentStatus::Failed { error },
            ("superseded", _, _, Some(by)) => IntentStatus::Superseded { by: IntentId(by) },
            (other, ..) => return Err(corrupt(format!("status {other:?} without its details"))),
        };
        Ok(Intent {
            id: IntentId(self.id),
            percent: percent(self.percent, WHAT, &key)?,
            from_percent: percent(self.from_percent, WHAT, &key)?,
            created_at: parse_ts(&self.created_at, WHAT, &key)?,
            sent_at: parse_opt_ts(self.sent_at, WHAT, &key)?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt(format!("attempts {}", self.attempts)))?,
            closed_at: parse_opt_ts(self.closed_at, WHAT, &key)?,
            plan: self.plan,
            region: self.region,
            service: self.service,
            idempotency_key: self.idempotency_key,
            status,
        })
    }
}

fn get(conn: &Connection, id: IntentId) -> Result<Option<Intent>, StoreError> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM intents WHERE id = ?1"), params![id.0], Row::read)
        .optional()
        .map_err(sql("read an intent"))?
        .map(Row::into_intent)
        .transpose()
}

fn query(conn: &Connection, where_order: &str, params: impl rusqlite::Params) -> Result<Vec<Intent>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM intents {where_order}")).map_err(sql("read intents"))?;
    let rows = stmt.query_map(params, Row::read).map_err(sql("read intents"))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(sql("read intents"))?.into_intent()?);
    }
    Ok(out)
}

/// Record a new open intent inside a decision's transaction, superseding the unit's open one.
#[allow(clippy::too_many_arguments)] // one call site, each argument a column
pub(crate) fn record(
    conn: &Connection,
    store_id: &str,
    plan: &str,
    region: &str,
    service: &str,
    percent: u32,
    from_percent: u32,
    at: DateTime<Utc>,
) -> Result<Intent, StoreError> {
    let op = "record an intent";
    let older: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM intents WHERE plan = ?1 AND region = ?2 AND service = ?3 AND status = 'open'",
            )
            .map_err(sql(op))?;
        stmt.query_map(params![plan, region, service], |r| r.get(0))
            .map_err(sql(op))?
            .collect::<Result<_, _>>()
            .map_err(sql(op))?
    };
    // Close the older ones first: the unique index allows one open intent per unit.
    for &id in &older {
        conn.execute("UPDATE intents SET status = 'superseded', closed_at = ?2 WHERE id = ?1", params![id, ts(at)])
            .map_err(sql(op))?;
    }
    // The key needs the row id, which exists only after the insert: insert a placeholder
    // (only ever one row holds it, as it is rewritten at once), then set the real key.
    conn.execute(
        "INSERT INTO intents (plan, region, service, percent, from_percent, idempotency_key, created_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, 'placeholder', ?6, 'open')",
        params![plan, region, service, percent, from_percent, ts(at)],
    )
    .map_err(sql(op))?;
    let id = conn.last_insert_rowid();
    let key = format!("meridian-{store_id}-{id}");
    conn.execute("UPDATE intents SET idempotency_key = ?2 WHERE id = ?1", params![id, key]).map_err(sql(op))?;
    for older in older {
        conn.execute("UPDATE intents SET superseded_by = ?2 WHERE id = ?1", params![older, id]).map_err(sql(op))?;
        chain::append(conn, chain::Kind::IntentClosed, &chain::row(older))?;
    }
    chain::append(conn, chain::Kind::Intent, &chain::row(id))?;
    get(conn, IntentId(id))?.ok_or(StoreError::IntentNotFound { id: IntentId(id) })
}

impl Store {
    /// Every open intent, oldest first: what a restarting shell must resolve by read-back.
    pub fn open_intents(&self) -> Result<Vec<Intent>, StoreError> {
        query(&self.conn, "WHERE status = 'open' ORDER BY id", [])
    }

    pub fn intent(&self, id: IntentId) -> Result<Option<Intent>, StoreError> {
        get(&self.conn, id)
    }

    /// Units of `plan` whose newest intent is not done (open, or failed for good): the target
    /// has not confirmed what the state says, so the engine must not move them further.
    pub fn unconfirmed_units(&self, plan: &str) -> Result<Vec<(String, String)>, StoreError> {
        let op = "read unconfirmed units";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT region, service FROM intents AS i
                 WHERE plan = ?1 AND status <> 'done'
                   AND id = (SELECT MAX(id) FROM intents
                             WHERE plan = i.plan AND region = i.region AND service = i.service)
                 ORDER BY region, service",
            )
            .map_err(sql(op))?;
        stmt.query_map(params![plan], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql(op))?
            .collect::<Result<_, _>>()
            .map_err(sql(op))
    }

    /// The newest intent for a unit, whatever its status: the last actuation asked for.
    pub fn latest_intent(&self, plan: &str, region: &str, service: &str) -> Result<Option<Intent>, StoreError> {
        let mut v = query(
            &self.conn,
            "WHERE plan = ?1 AND region = ?2 AND service = ?3 ORDER BY id DESC LIMIT 1",
            params![plan, region, service],
        )?;
        Ok(v.pop())
    }

    /// Note an attempt to send an open intent (call it just before each attempt). A
    /// superseded intent is returned unchanged: the caller must not send it.
    pub fn mark_intent_sent(&mut self, id: IntentId, at: DateTime<Utc>) -> Result<Intent, StoreError> {
        let tx = self.write_tx("mark an intent sent")?;
        let intent = mark_sent(&tx, id, at)?;
        tx.commit().map_err(sql("mark an intent sent"))?;
        Ok(intent)
    }

    /// Close an open intent as done or failed. A superseded intent is returned unchanged;
    /// completing a done or failed one again is refused (it means two owners, a bug).
    pub fn complete_intent(
        &mut self,
        id: IntentId,
        outcome: IntentOutcome,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError> {
        let tx = self.write_tx("complete an intent")?;
        let intent = complete(&tx, id, outcome, at)?;
        tx.commit().map_err(sql("complete an intent"))?;
        Ok(intent)
    }

    /// Several [`Store::mark_intent_sent`] and [`Store::complete_intent`] calls in ONE
    /// transaction, so that many actuations in flight wait for the disk once: each write
    /// succeeds or is refused on its own (a refused one writes nothing), and every one that
    /// succeeded is durable when this returns. The outer error (nothing written) is for a
    /// transaction that could not be committed at all.
    pub fn write_intents(&mut self, writes: &[IntentWrite]) -> Result<Vec<Result<Intent, StoreError>>, StoreError> {
        let op = "write intents";
        let mut tx = self.write_tx(op)?;
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            let sp = tx.savepoint().map_err(sql(op))?;
            let written = match write {
                IntentWrite::Sent { id, at } => mark_sent(&sp, *id, *at),
                IntentWrite::Complete { id, outcome, at } => complete(&sp, *id, outcome.clone(), *at),
            };
            match written {
                Ok(_) => sp.commit().map_err(sql(op))?,
                Err(_) => drop(sp), // rolls back this write only
            }
            out.push(written);
        }
        tx.commit().map_err(sql(op))?;
        Ok(out)
    }
}

/// One write of [`Store::write_intents`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentWrite {
    /// [`Store::mark_intent_sent`].
    Sent { id: IntentId, at: DateTime<Utc> },
    /// [`Store::complete_intent`].
    Complete { id: IntentId, outcome: IntentOutcome, at: DateTime<Utc> },
}

fn mark_sent(conn: &Connection, id: IntentId, at: DateTime<Utc>) -> Result<Intent, StoreError> {
    let intent = get(conn, id)?.ok_or(StoreError::IntentNotFound { id })?;
    match intent.status {
        IntentStatus::Open => {}
        IntentStatus::Superseded { .. } => return Ok(intent),
        ref closed => return Err(StoreError::IntentClosed { id, status: closed.as_str() }),
    }
    conn.prepare_cached("UPDATE intents SET sent_at = ?2, attempts = attempts + 1 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![id.0, ts(at)]))
        .map_err(sql("mark an intent sent"))?;
    Ok(Intent { sent_at: Some(at), attempts: intent.attempts + 1, ..intent })
}

fn complete(conn: &Connection, id: IntentId, outcome: IntentOutcome, at: DateTime<Utc>) -> Result<Intent, StoreError> {
    let op = "complete an intent";
    let intent = get(conn, id)?.ok_or(StoreError::IntentNotFound { id })?;
    match intent.status {
        IntentStatus::Open => {}
        IntentStatus::Superseded { .. } => return Ok(intent),
        ref closed => return Err(StoreError::IntentClosed { id, status: closed.as_str() }),
    }
    let status = match outcome {
        IntentOutcome::Done { observed_percent } => {
            conn.prepare_cached(
                "UPDATE intents SET status = 'done', observed_percent = ?2, closed_at = ?3 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![id.0, observed_percent, ts(at)]))
            .map_err(sql(op))?;
            IntentStatus::Done { observed_percent }
        }
        IntentOutcome::Failed { error } => {
            conn.prepare_cached("UPDATE intents SET status = 'failed', error = ?2, closed_at = ?3 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id.0, error, ts(at)]))
                .map_err(sql(op))?;
            IntentStatus::Failed { error }
        }
    };
    chain::append(conn, chain::Kind::IntentClosed, &chain::row(id.0))?;
    Ok(Intent { status, closed_at: Some(at), ..intent })
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::*;

    #[test]
    fn an_intent_goes_open_sent_done() {
        let (_tmp, mut store) = temp_store();
        let i = store.commit_decision("p", &state("p", 0), &[], &[set("eu", "web", 10)], &[], t(1)).unwrap().remove(0);
        assert_eq!((i.status.clone(), i.attempts, i.sent_at), (IntentStatus::Open, 0, None));
        assert!(i.idempotency_key.starts_with("meridian-") && i.idempotency_key.ends_with(&format!("-{}", i.id)));
        let sent = store.mark_intent_sent(i.id, t(2)).unwrap();
        let sent = store.mark_intent_sent(sent.id, t(3)).unwrap();
        assert_eq!((sent.attempts, sent.sent_at), (2, Some(t(3))));
        assert_eq!(sent.idempotency_key, i.idempotency_key, "the key never changes between attempts");
        assert_eq!(store.open_intents().unwrap(), vec![sent.clone()]);
        let done = store.complete_intent(i.id, IntentOutcome::Done { observed_percent: 10 }, t(4)).unwrap();
        assert_eq!(done.status, IntentStatus::Done { observed_percent: 10 });
        assert_eq!(done.closed_at, Some(t(4)));
        assert!(store.open_intents().unwrap().is_empty());
        assert_eq!(store.intent(i.id).unwrap(), Some(done));
    }

    #[test]
    fn units_are_unconfirmed_until_their_newest_intent_is_done() {
        let (_tmp, mut store) = temp_store();
        let s = state("p", 0);
        let first =
            store.commit_decision("p", &s, &[], &[set("eu", "web", 10), set("us", "web", 10)], &[], t(1)).unwrap();
        let units = |store: &Store| store.unconfirmed_units("p").unwrap();
        assert_eq!(units(&store), vec![("eu".into(), "web".into()), ("us".into(), "web".into())]);
        store.complete_intent(first[0].id, IntentOutcome::Done { observed_percent: 10 }, t(2)).unwrap();
        store.complete_intent(first[1].id, IntentOutcome::Failed { error: "400".into() }, t(2)).unwrap();
        // Done confirms; failed for good does not.
        assert_eq!(units(&store), vec![("us".to_string(), "web".to_string())]);
        let next = store.commit_decision("p", &s, &[], &[set("eu", "web", 50)], &[], t(3)).unwrap().remove(0);
        assert_eq!(units(&store).len(), 2);
        store.complete_intent(next.id, IntentOutcome::Done { observed_percent: 50 }, t(4)).unwrap();
        assert_eq!(units(&store), vec![("us".to_string(), "web".to_string())]);
        assert!(store.unconfirmed_units("other").unwrap().is_empty());
    }

    #[test]
    fn a_failed_intent_is_closed_with_its_error() {
        let (_tmp, mut store) = temp_store();
        let i = store.commit_decision("p", &state("p", 0), &[], &[set("eu", "web", 10)], &[], t(1)).unwrap().remove(0);
        let failed =
            store.complete_intent(i.id, IntentOutcome::Failed { error: "503 after 5 tries".into() }, t(2)).unwrap();
        assert_eq!(failed.status, IntentStatus::Failed { error: "503 after 5 tries".into() });
        assert!(store.open_intents().unwrap().is_empty());
    }

    #[test]
    fn closing_twice_or_an_unknown_intent_is_refused() {
        let (_tmp, mut store) = temp_store();
        let i = store.commit_decision("p", &state("p", 0), &[], &[set("eu", "web", 10)], &[], t(1)).unwrap().remove(0);
        store.complete_intent(i.id, IntentOutcome::Done { observed_percent: 10 }, t(2)).unwrap();
        let err = store.complete_intent(i.id, IntentOutcome::Done { observed_percent: 10 }, t(3)).unwrap_err();
        assert!(matches!(err, StoreError::IntentClosed { status: "done", .. }), "got {err:?}");
        let err = store.mark_intent_sent(i.id, t(3)).unwrap_err();
        assert!(matches!(err, StoreError::IntentClosed { .. }), "got {err:?}");
        let err = store.mark_intent_sent(IntentId(404), t(3)).unwrap_err();
        assert!(matches!(err, StoreError::IntentNotFound { id: IntentId(404) }), "got {err:?}");
    }

    #[test]
    fn a_newer_intent_for_the_unit_supersedes_the_open_one() {
        let (_tmp, mut store) = temp_store();
        let s = state("p", 0);
        let first =
            store.commit_decision("p", &s, &[], &[set("eu", "web", 10), set("us", "web", 10)], &[], t(1)).unwrap();
        let second = store.commit_decision("p", &s, &[], &[set("eu", "web", 50)], &[], t(2)).unwrap().remove(0);
        let old = store.intent(first[0].id).unwrap().unwrap();
        assert_eq!(old.status, IntentStatus::Superseded { by: second.id });
        assert_eq!(old.closed_at, Some(t(2)));
        // The other unit's intent is untouched; the newest per unit is open.
        assert_eq!(
            store.open_intents().unwrap().iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![first[1].id, second.id]
        );
        assert_eq!(store.latest_intent("p", "eu", "web").unwrap(), Some(second.clone()));
        // A send that was in flight may still report back: a no-op, not an error.
        assert_eq!(store.complete_intent(old.id, IntentOutcome::Done { observed_percent: 10 }, t(3)).unwrap(), old);
        assert_eq!(store.mark_intent_sent(old.id, t(3)).unwrap(), old);
        // A closed (done) intent is not superseded again; the new one is simply recorded.
        store.complete_intent(second.id, IntentOutcome::Done { observed_percent: 50 }, t(3)).unwrap();
        let third = store.commit_decision("p", &s, &[], &[set("eu", "web", 100)], &[], t(4)).unwrap().remove(0);
        assert_eq!(store.intent(second.id).unwrap().unwrap().status, IntentStatus::Done { observed_percent: 50 });
        assert_eq!(third.status, IntentStatus::Open);
    }

    #[test]
    fn two_actions_for_one_unit_in_one_decision_leave_the_last_open() {
        let (_tmp, mut store) = temp_store();
        let v = store
            .commit_decision("p", &state("p", 0), &[], &[set("eu", "web", 10), set("eu", "web", 0)], &[], t(1))
            .unwrap();
        assert_eq!(store.intent(v[0].id).unwrap().unwrap().status, IntentStatus::Superseded { by: v[1].id });
        assert_eq!(store.open_intents().unwrap(), vec![v[1].clone()]);
    }

    #[test]
    fn intent_writes_in_one_transaction_succeed_or_are_refused_each_on_its_own() {
        let (_tmp, mut store) = temp_store();
        let v =
            store.commit_decision("p", &state("p", 0), &[], &[set("a", "s", 1), set("b", "s", 1)], &[], t(1)).unwrap();
        let (a, b) = (v[0].id, v[1].id);
        store.complete_intent(b, IntentOutcome::Done { observed_percent: 1 }, t(2)).unwrap();
        let out = store
            .write_intents(&[
                IntentWrite::Sent { id: a, at: t(3) },
                IntentWrite::Complete { id: b, outcome: IntentOutcome::Done { observed_percent: 1 }, at: t(3) },
                IntentWrite::Complete { id: a, outcome: IntentOutcome::Done { observed_percent: 1 }, at: t(4) },
                IntentWrite::Sent { id: IntentId(404), at: t(4) },
            ])
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap().attempts, 1);
        assert!(matches!(out[1], Err(StoreError::IntentClosed { status: "done", .. })), "got {:?}", out[1]);
        assert_eq!(out[2].as_ref().unwrap().status, IntentStatus::Done { observed_percent: 1 });
        assert!(matches!(out[3], Err(StoreError::IntentNotFound { .. })), "got {:?}", out[3]);
        // What each returned is what was written, and the refused ones wrote nothing.
        assert_eq!(store.intent(a).unwrap().as_ref(), out[2].as_ref().ok());
        assert_eq!(store.intent(a).unwrap().unwrap().sent_at, Some(t(3)));
        assert_eq!(store.intent(b).unwrap().unwrap().closed_at, Some(t(2)));
        assert!(store.open_intents().unwrap().is_empty());
        assert!(store.verify_chain(None).unwrap().is_ok(), "the chain holds");
    }

    #[test]
    fn idempotency_keys_are_unique_and_carry_the_store_id() {
        let (_tmp, mut store) = temp_store();
        let v = store
            .commit_decision(
                "p",
                &state("p", 0),
                &[],
                &[set("a", "s", 1), set("b", "s", 1), set("c", "s", 1)],
                &[],
                t(1),
            )
            .unwrap();
        let mut keys: Vec<_> = v.iter().map(|i| i.idempotency_key.clone()).collect();
        assert!(keys.iter().all(|k| k.contains(store.store_id())));
        keys.dedup();
        assert_eq!(keys.len(), 3);
    }
}
