//! Operator commands (pause, resume, abort, promote, retry) as engine inputs.
//!
//! Owns their shape only; the engine applies them exactly once per decision they are given to.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandKind {
    /// Hold units in scope at their current traffic.
    Pause,
    /// Undo a pause.
    Resume,
    /// Stop: roll back every unit in scope that is not enabled; nothing in scope starts again
    /// (not even on retry). An aborted region or wave is left out of its wave, which then
    /// completes without it; abort plan-wide to stop the whole rollout.
    Abort,
    /// Skip the current step bake of progressing units in scope, once. Plan-wide or scoped to
    /// a wave, also skip the bake of a baking wave or accept the failures of a halted one.
    /// Never skips approvals, windows or health, and is not kept for a later gate.
    Promote,
    /// Send failed units in scope back to progressing at their step, and rolled-back ones
    /// back to the start.
    Retry,
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::Abort => "abort",
            CommandKind::Promote => "promote",
            CommandKind::Retry => "retry",
        })
    }
}

impl std::str::FromStr for CommandKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pause" => Ok(CommandKind::Pause),
            "resume" => Ok(CommandKind::Resume),
            "abort" => Ok(CommandKind::Abort),
            "promote" => Ok(CommandKind::Promote),
            "retry" => Ok(CommandKind::Retry),
            other => Err(format!("unknown command {other:?}; use pause, resume, abort, promote or retry")),
        }
    }
}

/// A command with its scope: the whole plan, one wave, or one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub kind: CommandKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Who asked (a token's subject, a user name).
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Command {
    pub fn plan_wide(kind: CommandKind, by: &str, at: DateTime<Utc>) -> Self {
        Command { kind, wave: None, region: None, by: by.to_string(), at }
    }
}
