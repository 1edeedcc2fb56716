//! Notices: what is worth telling people who are not watching the page (a chat channel, a
//! pager, a ticket queue), each as one line that reads on its own.
//!
//! ```text
//!  decide:   (plan, state before, state after, audit) ──> decision_notices() ─┐
//!  publish:  (approvals before, approvals after) ─────> approval_notices() ──┼─> Notifier port
//!  events:   ControllerEvent (expiring, expired, config rejected) ─> event_notice() ─┘   (webhook sinks)
//! ```
//!
//! Owns the one rule for what is notified and how it is worded; the shells only carry the
//! notices to their sinks. Notices come from the change between two states, not from single
//! audit records, so a region that fails on three services is one notice, not three, and a
//! unit that waits on an approval it waited on before says nothing new. Pure: no I/O, no
//! clock.
//!
//! Topics (what a sink subscribes to): `failures` (a region failed or was rolled back, a wave
//! halted, a plan aborted, a failure budget exceeded, a progress deadline passed),
//! `approval-needed` (a region started to wait for an approval), `approvals` (granted,
//! revoked, expiring, expired), `completions` (a wave or a plan completed, with what it
//! accepted), `config` (an edit of the configuration was rejected).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRecord;
use crate::audit::{AuditRecord, Cause};
use crate::command::CommandKind;
use crate::manifest::{OnBudgetExceeded, OnProgressDeadline};
use crate::outcome::{RegionState, outcome, region_state};
use crate::plan::Plan;
use crate::ports::store::ControllerEvent;
use crate::state::{PlanPhase, PlanState, WaitReason, WavePhase};

/// What a notice is about; sinks subscribe by topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    Failures,
    ApprovalNeeded,
    Approvals,
    Completions,
    Config,
}

impl Topic {
    pub const ALL: [Topic; 5] =
        [Topic::Failures, Topic::ApprovalNeeded, Topic::Approvals, Topic::Completions, Topic::Config];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Failures => "failures",
            Topic::ApprovalNeeded => "approval-needed",
            Topic::Approvals => "approvals",
            Topic::Completions => "completions",
            Topic::Config => "config",
        }
    }

    /// The topic a sinks file names.
    pub fn parse(word: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == word)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loudly a sink should say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Good news or a record of something done (a completion, a grant).
    Info,
    /// Someone should look soon (an approval needed or expiring, a rejected edit).
    Warning,
    /// Something failed.
    Critical,
}

/// One thing to tell people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub topic: Topic,
    pub urgency: Urgency,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// One line that reads on its own: `restore: region jp (wave asia) rolled back: ...`.
    pub summary: String,
}

impl Notice {
    fn new(topic: Topic, urgency: Urgency, at: DateTime<Utc>, summary: String) -> Self {
        Notice { topic, urgency, at, plan: None, wave: None, region: None, approval: None, flag: None, summary }
    }

    fn of_plan(mut self, plan: &str) -> Self {
        self.plan = Some(plan.to_string());
        self
    }
}

/// What one decision of `plan` (from `before` to `after`, writing `records`) is worth telling:
/// regions that failed or were rolled back, waves that halted or completed, the plan's
/// completion or abort, exceeded budgets and passed progress deadlines, and regions that began
/// to wait for an approval. In plan order, at most one notice per region and topic.
pub fn decision_notices(
    plan: &Plan,
    before: &PlanState,
    after: &PlanState,
    records: &[AuditRecord],
    at: DateTime<Utc>,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let name = plan.name.as_str();
    // Units are region-major, aligned with the plan: a region's units are one slice.
    let services = plan.services.len().max(1);
    fn units_of(state: &PlanState, r: usize, services: usize) -> &[crate::state::UnitState] {
        state.units.get(r * services..(r + 1) * services).unwrap_or_default()
    }
    let failed_now = || outcome(plan, after).failed;
    let mut failed_cache = None;
    for (r, region) in plan.regions.iter().enumerate() {
        let state_of = |state: &PlanState| {
            let units = units_of(state, r, services);
            (!units.is_empty()).then(|| region_state(state, &region.name, units))
        };
        let (old, new) = (state_of(before), state_of(after));
        let wave = plan.waves.get(region.wave).map(|w| w.name.clone());
        let failing = |s: Option<RegionState>| matches!(s, Some(RegionState::Failed | RegionState::RolledBack));
        if failing(new) && !failing(old) {
            let failed = failed_cache.get_or_insert_with(failed_now);
            let how = match new {
                Some(RegionState::RolledBack) => "rolled back",
                _ => "failed (traffic kept)",
            };
            let cause = failed
                .iter()
                .find(|f| f.region == region.name)
                .map(|f| format!(": {} failed: {}", f.service, f.cause))
                .unwrap_or_default();
            let mut n = Notice::new(
                Topic::Failures,
                Urgency::Critical,
                at,
                format!("{name}: region {} (wave {}) {how}{cause}", region.name, wave.as_deref().unwrap_or("?")),
            )
            .of_plan(name);
            n.region = Some(region.name.clone());
            n.wave = wave.clone();
            out.push(n);
        }
        // A region that starts to wait for an approval: one notice per flag it now waits on.
        let waits = |state: &PlanState| -> BTreeSet<String> {
            units_of(state, r, services)
                .iter()
                .filter_map(|u| match &u.waiting {
                    Some(WaitReason::Approval { flag, .. }) => Some(flag.clone()),
                    _ => None,
                })
                .collect()
        };
        let (old_flags, new_flags) = (waits(before), waits(after));
        for flag in new_flags.difference(&old_flags) {
            let why = units_of(after, r, services)
                .iter()
                .find_map(|u| match &u.waiting {
                    Some(w @ WaitReason::Approval { flag: f, .. }) if f == flag => Some(w.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            let mut n = Notice::new(
                Topic::ApprovalNeeded,
                Urgency::Warning,
                at,
                format!("{name}: region {} (wave {}) waits: {why}", region.name, wave.as_deref().unwrap_or("?")),
            )
            .of_plan(name);
            n.region = Some(region.name.clone());
            n.wave = wave.clone();
            n.flag = Some(flag.clone());
            out.push(n);
        }
    }
    for (i, w) in after.waves.iter().enumerate() {
        let old = before.waves.get(i).map(|b| b.phase);
        if old == Some(w.phase) {
            continue;
        }
        match w.phase {
            WavePhase::Halted => {
                let regions = records
                    .iter()
                    .find_map(|r| match &r.cause {
                        Cause::WaveHalted { failed_regions } if r.wave.as_deref() == Some(&w.name) => {
                            Some(failed_regions.join(", "))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                let mut n = Notice::new(
                    Topic::Failures,
                    Urgency::Critical,
                    at,
                    format!(
                        "{name}: wave {} halted on failed regions {regions}; later waves wait for a retry \
                         (meridian retry {name} --region R) or a promote (meridian promote {name} --wave {})",
                        w.name, w.name
                    ),
                )
                .of_plan(name);
                n.wave = Some(w.name.clone());
                out.push(n);
            }
            WavePhase::Complete => {
                let accepted = w
                    .accepted
                    .as_ref()
                    .map(|a| format!(", accepting failed regions {} (by {})", a.regions.join(", "), a.by))
                    .unwrap_or_default();
                let mut n = Notice::new(
                    Topic::Completions,
                    Urgency::Info,
                    at,
                    format!("{name}: wave {} complete{accepted}", w.name),
                )
                .of_plan(name);
                n.wave = Some(w.name.clone());
                out.push(n);
            }
            _ => {}
        }
    }
    let (old_phase, new_phase) = (before.phase(), after.phase());
    if old_phase != new_phase {
        match new_phase {
            PlanPhase::Complete => {
                let o = outcome(plan, after);
                let urgency = if o.enabled == o.units { Urgency::Info } else { Urgency::Warning };
                out.push(
                    Notice::new(Topic::Completions, urgency, at, format!("{name}: rollout {}", o.summary))
                        .of_plan(name),
                );
            }
            PlanPhase::Aborted => {
                let by = records
                    .iter()
                    .find_map(|r| match &r.cause {
                        Cause::Command { command: CommandKind::Abort, by } => Some(format!(" by {by}")),
                        _ => None,
                    })
                    .unwrap_or_default();
                out.push(
                    Notice::new(Topic::Failures, Urgency::Critical, at, format!("{name}: rollout aborted{by}"))
                        .of_plan(name),
                );
            }
            _ => {}
        }
    }
    let mut deadlines = BTreeSet::new();
    for r in records {
        let (summary, region) = match &r.cause {
            Cause::BudgetExceeded { region, budget, policy } => {
                let then = match policy {
                    OnBudgetExceeded::Halt => "its wave halts",
                    OnBudgetExceeded::Abort => "the rollout is aborted",
                };
                (format!("{name}: region {region} failed past {budget}; {then}"), Some(region.clone()))
            }
            Cause::ProgressDeadline { since, deadline, waiting, policy } => {
                let Some(region) = r.region.clone() else { continue };
                if !deadlines.insert(region.clone()) {
                    continue;
                }
                let waiting = waiting.as_ref().map(|w| format!(" ({w})")).unwrap_or_default();
                let then = match policy {
                    OnProgressDeadline::Alert => "alert only, no traffic changed",
                    OnProgressDeadline::Fail => "the unit fails",
                };
                (
                    format!(
                        "{name}: region {region} made no progress since {} (progressDeadline {deadline}){waiting}; {then}",
                        since.format("%Y-%m-%d %H:%M UTC")
                    ),
                    Some(region),
                )
            }
            _ => continue,
        };
        let mut n = Notice::new(Topic::Failures, Urgency::Critical, at, summary).of_plan(name);
        n.wave = r.wave.clone();
        n.region = region;
        out.push(n);
    }
    out
}

/// Grants and revocations between two readings of the approvals (`before` empty at start is
/// not a change: the caller passes `None` then and gets nothing).
pub fn approval_notices(before: Option<&[ApprovalRecord]>, after: &[ApprovalRecord], at: DateTime<Utc>) -> Vec<Notice> {
    let Some(before) = before else { return Vec::new() };
    let old: BTreeMap<&str, &ApprovalRecord> = before.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut out = Vec::new();
    for a in after {
        let previous = old.get(a.name.as_str());
        let (summary, urgency) = match (&a.revoked, previous) {
            (None, None) => (
                format!(
                    "approval {} (flag {}) granted by {}{}{}",
                    a.name,
                    a.flag,
                    a.granted_by,
                    a.reference.as_ref().map(|r| format!(", reference {r}")).unwrap_or_default(),
                    a.expires.map(|e| format!(", expires {}", e.format("%Y-%m-%d %H:%M UTC"))).unwrap_or_default()
                ),
                Urgency::Info,
            ),
            (Some(r), Some(p)) if p.revoked.is_none() => (
                format!(
                    "approval {} (flag {}) revoked by {}{}",
                    a.name,
                    a.flag,
                    r.by,
                    r.reason.as_ref().map(|why| format!(": {why}")).unwrap_or_default()
                ),
                Urgency::Warning,
            ),
            _ => continue,
        };
        let mut n = Notice::new(Topic::Approvals, urgency, at, summary);
        n.approval = Some(a.name.clone());
        n.flag = Some(a.flag.clone());
        out.push(n);
    }
    out
}

/// A controller event worth telling: an approval expiring or expired, a configuration edit
/// rejected.
pub fn event_notice(event: &ControllerEvent) -> Option<Notice> {
    let text = |key: &str| event.detail.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let (approval, flag) = (text("approval"), text("flag"));
    let mut n = match event.kind.as_str() {
        "approval-expiring" | "approval-expired" => {
            let (verb, urgency) = match event.kind.as_str() {
                "approval-expiring" => ("expires", Urgency::Warning),
                _ => ("expired", Urgency::Warning),
            };
            let when = text("expires").map(|e| format!(" at {e}")).unwrap_or_default();
            Notice::new(
                Topic::Approvals,
                urgency,
                event.at,
                format!(
                    "approval {} (flag {}) {verb}{when}",
                    approval.as_deref().unwrap_or("?"),
                    flag.as_deref().unwrap_or("?")
                ),
            )
        }
        "config-rejected" => {
            let errors: Vec<String> = event
                .detail
                .get("errors")
                .and_then(|e| e.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let first = errors.first().cloned().unwrap_or_default();
            let more = match errors.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            Notice::new(
                Topic::Config,
                Urgency::Warning,
                event.at,
                format!("configuration edit rejected, the last good version stays in force: {first}{more}"),
            )
        }
        _ => return None,
    };
    n.approval = approval;
    n.flag = flag;
    Some(n)
}

#[cfg(test)]
mod tests;
