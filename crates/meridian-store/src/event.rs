//! Controller events: what happened to the controller itself rather than to a plan (a
//! configuration applied or rejected, an API request denied), kept append-only next to the
//! audit log so that no such record is lost across restarts. The store does not interpret
//! `kind` or `detail`; the shell owns their vocabulary.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, limit, parse_ts, sql, ts};
use crate::{Store, StoreError};

/// One stored controller event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Increasing; page with `events(after_id, ..)`.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// What happened, e.g. `config-rejected`, `access-denied`.
    pub kind: String,
    /// Who or what caused it: a token's subject, `config`.
    pub who: String,
    pub detail: serde_json::Value,
}

impl Store {
    /// Append a controller event; returns its id.
    pub fn record_event(
        &mut self,
        at: DateTime<Utc>,
        kind: &str,
        who: &str,
        detail: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let op = "record an event";
        let tx = self.write_tx(op)?;
        tx.execute(
            "INSERT INTO events (at, kind, who, detail) VALUES (?1, ?2, ?3, ?4)",
            params![ts(at), kind, who, encode(detail, "event detail")?],
        )
        .map_err(sql(op))?;
        let id = tx.last_insert_rowid();
        crate::chain::append(&tx, crate::chain::Kind::Event, &crate::chain::row(id))?;
        tx.commit().map_err(sql(op))?;
        Ok(id)
    }

    /// Controller events in order, at most `limit` with `id > after_id`.
    pub fn events(&self, after_id: i64, limit_to: usize) -> Result<Vec<EventRecord>, StoreError> {
        let op = "read events";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, at, kind, who, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(sql(op))?;
        let rows = stmt
            .query_map(params![after_id, limit(limit_to)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?))
            })
            .map_err(sql(op))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, kind, who, detail) = row.map_err(sql(op))?;
            let key = id.to_string();
            out.push(EventRecord {
                id,
                at: parse_ts(&at, "event", &key)?,
                kind,
                who,
                detail: decode(&detail, "event", &key)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn events_round_trip_in_order_and_are_append_only() {
        let (_tmp, mut store) = temp_store();
        let detail = serde_json::json!({ "errors": ["plans/a.yaml:3:5: unknown field"] });
        let a = store.record_event(t(1), "config-rejected", "config", &detail).unwrap();
        let b = store
            .record_event(t(2), "access-denied", "ci-token", &serde_json::json!({ "request": "POST /approvals" }))
            .unwrap();
        let all = store.events(0, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!((all[0].at, all[0].kind.as_str(), all[0].who.as_str()), (t(1), "config-rejected", "config"));
        assert_eq!(all[0].detail, detail);
        assert_eq!(store.events(a, 10).unwrap().len(), 1);
        assert!(store.conn.execute("DELETE FROM events", []).is_err());
    }
}
