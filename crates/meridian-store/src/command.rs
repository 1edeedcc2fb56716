//! Operator commands waiting for the decision that applies them.
//!
//! The API enqueues; the decision loop reads `pending_commands`, hands them to the engine,
//! and passes their ids to `commit_decision`, which marks them applied in the decision's own
//! transaction. A crash before that commit leaves them pending (applied by the next
//! decision), a crash after leaves them applied: each command takes effect exactly once.

use std::fmt;

use chrono::{DateTime, Utc};
use meridian_core::Command;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, parse_ts, sql, ts};
use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub i64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A command not yet applied by any committed decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCommand {
    pub id: CommandId,
    pub plan: String,
    pub command: Command,
}

impl Store {
    /// Queue a command for `plan`'s next decision.
    pub fn enqueue_command(&mut self, plan: &str, command: &Command) -> Result<CommandId, StoreError> {
        let op = "enqueue a command";
        let tx = self.write_tx(op)?;
        tx.execute(
            "INSERT INTO commands (plan, command, enqueued_at) VALUES (?1, ?2, ?3)",
            params![plan, encode(command, "command")?, ts(command.at)],
        )
        .map_err(sql(op))?;
        let id = CommandId(tx.last_insert_rowid());
        tx.commit().map_err(sql(op))?;
        Ok(id)
    }

    /// `plan`'s commands that no committed decision has applied yet, oldest first. Reading
    /// them changes nothing: pass their ids to `commit_decision` to mark them applied.
    pub fn pending_commands(&self, plan: &str) -> Result<Vec<PendingCommand>, StoreError> {
        let op = "read pending commands";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, command FROM commands WHERE plan = ?1 AND applied_at IS NULL ORDER BY id")
            .map_err(sql(op))?;
        let rows =
            stmt.query_map(params![plan], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(sql(op))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(sql(op))?;
            out.push(PendingCommand {
                id: CommandId(id),
                plan: plan.to_string(),
                command: decode(&json, "command", &id.to_string())?,
            });
        }
        Ok(out)
    }
}

/// Mark a command applied inside a decision's transaction; it must be `plan`'s and pending.
pub(crate) fn mark_applied(conn: &Connection, plan: &str, id: CommandId, at: DateTime<Utc>) -> Result<(), StoreError> {
    let op = "mark a command applied";
    let changed = conn
        .execute(
            "UPDATE commands SET applied_at = ?3 WHERE id = ?1 AND plan = ?2 AND applied_at IS NULL",
            params![id.0, plan, ts(at)],
        )
        .map_err(sql(op))?;
    if changed == 1 {
        return Ok(());
    }
    let applied: Option<Option<String>> = conn
        .query_row("SELECT applied_at FROM commands WHERE id = ?1 AND plan = ?2", params![id.0, plan], |r| r.get(0))
        .optional()
        .map_err(sql(op))?;
    match applied {
        Some(Some(at)) => Err(StoreError::CommandAlreadyApplied { id, at: parse_ts(&at, "command", &id.to_string())? }),
        _ => Err(StoreError::CommandNotFound { id, plan: plan.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use meridian_core::CommandKind;

    use crate::testutil::*;
    use crate::*;

    #[test]
    fn commands_wait_until_a_decision_applies_them() {
        let (_tmp, mut store) = temp_store();
        let pause = command(CommandKind::Pause, t(1));
        let a = store.enqueue_command("p", &pause).unwrap();
        let b = store.enqueue_command("p", &command(CommandKind::Resume, t(2))).unwrap();
        let other = store.enqueue_command("q", &command(CommandKind::Abort, t(2))).unwrap();
        let pending = store.pending_commands("p").unwrap();
        assert_eq!(pending.iter().map(|c| c.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(pending[0].command, pause);
        assert_eq!(store.pending_commands("p").unwrap(), pending, "reading does not take them");

        store.commit_decision("p", &state("p", 1), &[rec("p", 1)], &[], &[a], t(3)).unwrap();
        assert_eq!(store.pending_commands("p").unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), vec![b]);

        let err = store.commit_decision("p", &state("p", 2), &[rec("p", 2)], &[], &[a], t(4)).unwrap_err();
        assert!(matches!(err, StoreError::CommandAlreadyApplied { id, at } if id == a && at == t(3)), "got {err:?}");
        let err = store.commit_decision("p", &state("p", 2), &[rec("p", 2)], &[], &[other], t(4)).unwrap_err();
        assert!(matches!(err, StoreError::CommandNotFound { .. }), "another plan's command: got {err:?}");
        assert_eq!(store.pending_commands("q").unwrap().len(), 1);
    }

    #[test]
    fn pending_commands_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(tmp.path()).unwrap();
        let id = store.enqueue_command("p", &command(CommandKind::Promote, t(1))).unwrap();
        drop(store);
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.pending_commands("p").unwrap()[0].id, id);
    }
}
