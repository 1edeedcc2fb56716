//! Operator commands (pause, resume, abort, promote, retry, freeze, unfreeze) as engine inputs.
//!
//! Owns their shape only; the engine applies them exactly once per decision they are given to.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Never skips approvals, windows or health, and is not kept for a later gate. With
    /// `Command::full`, it is kept: every remaining step and wave bake in scope is skipped
    /// until the scope completes (`state::FullPromotion`).
    Promote,
    /// Send failed units in scope back to progressing at their step, and rolled-back ones
    /// back to the start.
    Retry,
    /// Declare a run-time freeze (`Command::freeze`) on the scope: no step starts there until
    /// it is lifted or its `until` passes; units keep their traffic.
    Freeze,
    /// Lift the run-time freeze named in `Command::unfreeze`, or every one when it names none.
    Unfreeze,
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandKind::Pause => "pause",
            CommandKind::Resume => "resume",
            CommandKind::Abort => "abort",
            CommandKind::Promote => "promote",
            CommandKind::Retry => "retry",
            CommandKind::Freeze => "freeze",
            CommandKind::Unfreeze => "unfreeze",
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
            "freeze" => Ok(CommandKind::Freeze),
            "unfreeze" => Ok(CommandKind::Unfreeze),
            other => {
                Err(format!("unknown command {other:?}; use pause, resume, abort, promote, retry, freeze or unfreeze"))
            }
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
    /// For `freeze`: what it declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeRequest>,
    /// For `unfreeze`: the run-time freeze to lift; `None` lifts every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfreeze: Option<String>,
    /// For `promote`: promote the whole remaining scope (`promote --full`), not only its
    /// current bakes. Meaningless for any other kind (receivers refuse it there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// What is wrong with `command`'s scope for `plan` (a wave or region it does not have, or
/// `full` on another command than promote), if anything: the one check every receiver of a command makes before queuing it.
pub fn scope_problem(plan: &crate::plan::Plan, command: &Command) -> Option<String> {
    if command.full && command.kind != CommandKind::Promote {
        return Some(format!("\"full\" is only for promote, not for {}", command.kind));
    }
    if let Some(w) = &command.wave
        && plan.wave_index(w).is_none()
    {
        return Some(format!("plan {:?} has no wave {w:?}", plan.name));
    }
    if let Some(r) = &command.region
        && plan.region_index(r).is_none()
    {
        return Some(format!("plan {:?} has no region {r:?}", plan.name));
    }
    None
}

/// A run-time freeze as an operator declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeRequest {
    /// Names it for `unfreeze`; declaring a name again replaces that freeze.
    pub name: String,
    /// Shown as the blocked reason.
    pub reason: String,
    /// When it ends by itself; `None`: when lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl FreezeRequest {
    /// The name of a freeze declared without one: `plan`, `wave-asia`, `region-jp`.
    pub fn default_name(wave: Option<&str>, region: Option<&str>) -> String {
        match (region, wave) {
            (Some(r), _) => format!("region-{r}"),
            (None, Some(w)) => format!("wave-{w}"),
            (None, None) => "plan".into(),
        }
    }
}

impl Command {
    pub fn plan_wide(kind: CommandKind, by: &str, at: DateTime<Utc>) -> Self {
        Command { kind, wave: None, region: None, by: by.to_string(), at, freeze: None, unfreeze: None, full: false }
    }

    /// A plan-wide `promote --full`; set `wave` or `region` to narrow it.
    pub fn promote_full(by: &str, at: DateTime<Utc>) -> Self {
        Command { full: true, ..Command::plan_wide(CommandKind::Promote, by, at) }
    }

    /// A plan-wide `freeze`; set `wave` or `region` to narrow it.
    pub fn freeze(request: FreezeRequest, by: &str, at: DateTime<Utc>) -> Self {
        Command { freeze: Some(request), ..Command::plan_wide(CommandKind::Freeze, by, at) }
    }

    /// An `unfreeze` of one run-time freeze, or of every one (`None`).
    pub fn unfreeze(name: Option<String>, by: &str, at: DateTime<Utc>) -> Self {
        Command { unfreeze: name, ..Command::plan_wide(CommandKind::Unfreeze, by, at) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_is_kept_for_promote_and_refused_on_any_other_command() {
        let at = DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z").unwrap().with_timezone(&Utc);
        let old: Command = serde_json::from_str(r#"{"kind":"promote","by":"a","at":"2026-06-01T09:00:00Z"}"#).unwrap();
        assert!(!old.full, "a command written before full is a one-shot promote");
        assert!(!serde_json::to_string(&old).unwrap().contains("full"));
        let full = Command { wave: Some("asia".into()), ..Command::promote_full("a", at) };
        assert!(serde_json::to_string(&full).unwrap().contains(r#""full":true"#));

        let plan = crate::validate::load(
            &[(
                "p.yaml".into(),
                "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                 [{name: s}]\n  regions: [{name: jp}]\n  waves: [{name: asia, regions: [jp]}]\n"
                    .into(),
            )],
            None,
        )
        .plans
        .remove(0);
        assert_eq!(scope_problem(&plan, &full), None);
        let pause = Command { full: true, ..Command::plan_wide(CommandKind::Pause, "a", at) };
        assert_eq!(scope_problem(&plan, &pause).as_deref(), Some("\"full\" is only for promote, not for pause"));
    }
}
