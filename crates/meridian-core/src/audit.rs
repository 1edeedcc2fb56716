//! Audit records: every transition the engine makes, with its cause and its evidence.
//!
//! Owns the record shape and its human wording. The engine issues records; stores append
//! them and never rewrite them. Sequence numbers are gapless per plan.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalProblem;
use crate::command::CommandKind;
use crate::health::HealthVerdict;
use crate::manifest::{OnApprovalRevoked, OnBudgetExceeded, OnFailure, OnProgressDeadline};
use crate::relative::Baseline;
use crate::state::{FullPromotion, UnitPhase, WaitReason, WavePhase};

/// How many health evidence entries a wave's `WaveBaked` record keeps.
pub const WAVE_EVIDENCE_LIMIT: usize = 24;

/// A wave's evidence cut to [`WAVE_EVIDENCE_LIMIT`] entries, those not healthy first (in their
/// order), and how many were left out.
pub fn capped_evidence(mut all: Vec<CheckEvidence>) -> (Vec<CheckEvidence>, usize) {
    all.sort_by_key(|e| e.verdict == Some(HealthVerdict::Healthy));
    let omitted = all.len().saturating_sub(WAVE_EVIDENCE_LIMIT);
    all.truncate(WAVE_EVIDENCE_LIMIT);
    (all, omitted)
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One append-only record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Gapless per plan, starting at 1.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub event: AuditEvent,
    pub cause: Cause,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum AuditEvent {
    /// A unit changed phase, step or traffic.
    Unit {
        from: UnitPhase,
        to: UnitPhase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        from_percent: u32,
        to_percent: u32,
    },
    /// A wave changed phase.
    Wave { from: WavePhase, to: WavePhase },
    /// An operator command was applied.
    Command { command: CommandKind, by: String },
    /// A read-back disagreed with the state; traffic is re-applied.
    Drift { expected: u32, observed: u32 },
    /// The full promotion (`promote --full`) of `scope` (`plan`, `wave W`, `region R`) that
    /// `by` asked for ended: its scope completed, or a pause, an abort or a failure cancelled it.
    FullPromotionEnded { scope: String, by: String },
}

/// Why it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Cause {
    /// The wave's turn came.
    WaveStarted,
    /// The unit took its first step. `approvals` names every approval that held (evidence),
    /// `flags` the flags the unit needed at that moment (absent in records written before
    /// they were kept).
    Started {
        approvals: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        flags: Vec<String>,
    },
    /// The previous step baked healthy (or was promoted) and the next began; `health` is
    /// what each check showed when the bake ended (evidence). `full` names the full promotion
    /// the step was taken under, if any.
    Advanced {
        approvals: Vec<String>,
        promoted: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        flags: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        health: Vec<CheckEvidence>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        full: Option<FullPromotion>,
    },
    /// The last step baked healthy (or was promoted); `health` is what each check showed then
    /// (evidence), `full` the full promotion it was taken under, if any.
    Completed {
        promoted: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        health: Vec<CheckEvidence>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        full: Option<FullPromotion>,
    },
    /// It may not move yet.
    Blocked { waiting: WaitReason },
    /// A check failed `failureLimit` times in a row.
    HealthFailed {
        check: String,
        verdict: HealthVerdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        failures: u32,
        /// What the value was compared with, for a check with a `relative` part.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baseline: Option<Baseline>,
    },
    /// A service of the region failed; the plan's `onFailure` applies here.
    RegionFailed { service: String, policy: OnFailure },
    /// A required approval stopped holding; `onApprovalRevoked` applies.
    ApprovalLost { flag: String, problem: ApprovalProblem, policy: OnApprovalRevoked },
    /// Every required approval holds again for a unit that `onApprovalRevoked: hold` kept at
    /// its traffic; `approvals` names those now in force (evidence).
    ApprovalRestored { approvals: Vec<String> },
    /// An operator command.
    Command { command: CommandKind, by: String },
    /// Every region of the wave is enabled.
    WaveEnabled,
    /// The wave baked healthy (or was promoted); `health` is what each check of each of its
    /// units showed when the bake ended (evidence), `full` the full promotion that skipped
    /// the bake, if one did.
    WaveBaked {
        promoted: bool,
        /// At most [`WAVE_EVIDENCE_LIMIT`] entries, those not healthy first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        health: Vec<CheckEvidence>,
        /// Entries left out past the limit (50 regions x 3 services x 2 checks would be 300 in
        /// one record); each unit's own last-step record (`Completed`) keeps its evidence.
        #[serde(default, skip_serializing_if = "is_zero")]
        health_omitted: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        full: Option<FullPromotion>,
    },
    /// An operator's `promote --full` of `scope`: every remaining step and wave bake there is
    /// skipped until it completes (approvals, windows, freezes and health still gate).
    FullPromotionDeclared { scope: String, by: String },
    /// A full promotion's scope completed: nothing is left in it to skip.
    ScopeCompleted,
    /// Unit `region`/`service` in a full promotion's scope failed, which cancels it.
    FailedInScope { region: String, service: String },
    /// An operator's promote completed the halted wave, accepting its failed regions as they
    /// are (rolled back, or failed with traffic kept).
    FailuresAccepted { by: String, regions: Vec<String> },
    /// Regions of the wave failed.
    WaveHalted { failed_regions: Vec<String> },
    /// A retry cleared the failures that halted the wave.
    WaveResumed,
    /// Regions of a baking wave are no longer fully enabled (e.g. disabled for a lost
    /// approval); the wave runs again and bakes anew once they are.
    WaveReopened { regions: Vec<String> },
    /// The plan was edited in flight (`crate::edit`): what the edit did here, in words.
    PlanEdited { change: String },
    /// The pause or failure that held it was lifted.
    Resumed,
    /// The actuator read back a different percent than the state holds; it is re-applied.
    Drift,
    /// The same, under `onDrift: hold`: nothing is re-applied and the unit takes no further
    /// step until the target serves what the state says again.
    DriftHeld,
    /// A held drift ended: the target serves what the state says again.
    DriftResolved,
    /// An operator declared (or replaced) a run-time freeze on `scope` (`plan`, `wave W`,
    /// `region R`): no step starts there until it is lifted or `until` passes.
    FreezeDeclared {
        name: String,
        /// The freeze's reason (`reason` names the cause's kind in the serialized record).
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
        scope: String,
        by: String,
    },
    /// An operator lifted these run-time freezes (none: nothing matched).
    FreezeLifted { lifted: Vec<String>, by: String },
    /// The unit made no progress from `since` for its whole `progressDeadline` while waiting
    /// for nothing expected (`waiting`: what it waited for); `onProgressDeadline` applies
    /// (`alert`: recorded and shown, nothing else changes; `fail`: the unit fails and its
    /// region's `onFailure` applies).
    ProgressDeadline {
        since: DateTime<Utc>,
        deadline: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting: Option<WaitReason>,
        policy: OnProgressDeadline,
    },
    /// Region `region` failed within every failure budget of its wave: each budget in
    /// `budgets` took it, and the wave goes on without it.
    BudgetConsumed { region: String, budgets: Vec<BudgetUse> },
    /// Region `region` failed past `budget`; `onBudgetExceeded` applies (`halt`: its wave
    /// stops at once; `abort`: the rollout is aborted).
    BudgetExceeded { region: String, budget: BudgetUse, policy: OnBudgetExceeded },
}

/// One failure budget's use: `wave canary` (or `plan`) allows `allowed` failed regions
/// (`maxFailures` as written); `used` have failed, counting the one the record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUse {
    /// `wave canary` or `plan`.
    pub budget: String,
    pub max_failures: String,
    pub allowed: usize,
    pub used: usize,
}

impl fmt::Display for BudgetUse {
    /// `wave canary maxFailures 25% (1 failed, 1 allowed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} maxFailures {} ({} failed, {} allowed)", self.budget, self.max_failures, self.used, self.allowed)
    }
}

/// What one check showed when a bake ended: its latest evaluation and the limits it was
/// judged against. Carried by the records that end a bake, so the audit log alone shows the
/// health a step was held at, not only that it passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckEvidence {
    /// The unit, in a wave's record (a unit's own record names it already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub check: String,
    /// The latest verdict (none: never evaluated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<HealthVerdict>,
    /// The latest measured value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The region's effective limits for the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// What the value was compared with, for a check with a `relative` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

impl CheckEvidence {
    /// The limits as written: `min 0.99, max 1`, or `no limit`.
    pub fn limits(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("min {min}, max {max}"),
            (Some(min), None) => format!("min {min}"),
            (None, Some(max)) => format!("max {max}"),
            (None, None) => "no limit".into(),
        }
    }
}

impl fmt::Display for CheckEvidence {
    /// `error-rate 0.002 (max 0.01)`, `latency no-data (max 0.5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(r), Some(s)) = (&self.region, &self.service) {
            write!(f, "{r}/{s} ")?;
        }
        let value = |v: f64| self.baseline.as_ref().map_or_else(|| v.to_string(), |b| b.compare(v));
        let shown = match (self.verdict, self.value) {
            (Some(HealthVerdict::Healthy), Some(v)) => value(v),
            (Some(verdict), Some(v)) => format!("{} {}", wire_name(&verdict), value(v)),
            (Some(verdict), None) => wire_name(&verdict),
            (None, _) => "not evaluated".into(),
        };
        write!(f, "{} {shown} ({})", self.check, self.limits())
    }
}

/// ` (promote --full of wave asia by alice)`, or nothing.
fn under(full: &Option<FullPromotion>) -> String {
    full.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let evidence = |approvals: &[String]| {
            if approvals.is_empty() { String::new() } else { format!(" (approvals: {})", approvals.join(", ")) }
        };
        match self {
            Cause::WaveStarted => f.write_str("wave started"),
            Cause::Started { approvals, .. } => write!(f, "started{}", evidence(approvals)),
            Cause::Advanced { approvals, promoted: false, health, .. } => {
                write!(f, "step baked healthy{}{}", health_of(health), evidence(approvals))
            }
            Cause::Advanced { approvals, promoted: true, full, .. } => {
                write!(f, "promoted{}{}", under(full), evidence(approvals))
            }
            Cause::Completed { promoted: true, full, .. } => write!(f, "promoted to enabled{}", under(full)),
            Cause::Completed { promoted: false, health, .. } => {
                write!(f, "last step baked healthy{}", health_of(health))
            }
            Cause::Blocked { waiting } => write!(f, "{waiting}"),
            Cause::HealthFailed { check, verdict, value, failures, baseline } => {
                let value = match (value, baseline) {
                    (Some(v), Some(b)) => format!(" value {}", b.compare(*v)),
                    (Some(v), None) => format!(" value {v}"),
                    (None, _) => String::new(),
                };
                write!(f, "check {check} {}{value}, {failures} failing evaluations in a row", wire_name(verdict))
            }
            Cause::RegionFailed { service, policy } => {
                write!(f, "{service} failed here; onFailure: {}", wire_name(policy))
            }
            Cause::ApprovalLost { flag, problem, policy } => {
                let why = WaitReason::Approval { flag: flag.clone(), problem: problem.clone() };
                write!(f, "{why}; onApprovalRevoked: {}", wire_name(policy))
            }
            Cause::ApprovalRestored { approvals } => write!(f, "approvals hold again{}", evidence(approvals)),
            Cause::Command { command, by } => write!(f, "{command} by {by}"),
            Cause::WaveEnabled => f.write_str("every region enabled"),
            Cause::WaveBaked { promoted: true, full, .. } => write!(f, "wave promoted{}", under(full)),
            Cause::WaveBaked { promoted: false, .. } => f.write_str("wave baked healthy"),
            Cause::FullPromotionDeclared { scope, by } => write!(
                f,
                "promote --full of {scope} by {by}: every remaining bake in {scope} is skipped until it completes"
            ),
            Cause::ScopeCompleted => f.write_str("its scope completed"),
            Cause::FailedInScope { region, service } => write!(f, "{region}/{service} failed"),
            Cause::FailuresAccepted { by, regions } => {
                write!(f, "promoted by {by}, accepting failed regions {}", regions.join(", "))
            }
            Cause::WaveHalted { failed_regions } => {
                write!(f, "failed regions: {}", failed_regions.join(", "))
            }
            Cause::WaveResumed => f.write_str("failed regions retried"),
            Cause::WaveReopened { regions } => write!(f, "no longer fully enabled: {}", regions.join(", ")),
            Cause::PlanEdited { change } => write!(f, "plan edited: {change}"),
            Cause::Resumed => f.write_str("no longer held"),
            Cause::Drift => f.write_str("read-back differs from state; re-applied"),
            Cause::DriftHeld => f.write_str("read-back differs from state; held (onDrift: hold)"),
            Cause::DriftResolved => f.write_str("the target serves what the state says again"),
            Cause::FreezeDeclared { name, why, until, scope, by } => {
                let until = until.map_or("until lifted".to_string(), |u| format!("until {}", u.to_rfc3339()));
                write!(f, "freeze {name} on {scope} by {by}: {why}, {until}")
            }
            Cause::FreezeLifted { lifted, by } if lifted.is_empty() => {
                write!(f, "unfreeze by {by}: no run-time freeze to lift")
            }
            Cause::FreezeLifted { lifted, by } => write!(f, "unfreeze by {by}: lifted {}", lifted.join(", ")),
            Cause::ProgressDeadline { since, deadline, waiting, policy } => {
                let waiting = waiting.as_ref().map(|w| format!(" ({w})")).unwrap_or_default();
                write!(
                    f,
                    "no progress since {} (progressDeadline {deadline}){waiting}; onProgressDeadline: {}",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    wire_name(policy)
                )
            }
            Cause::BudgetConsumed { region, budgets } => {
                let budgets: Vec<String> = budgets.iter().map(ToString::to_string).collect();
                write!(f, "region {region} failed within its failure budget: {}", budgets.join(", "))
            }
            Cause::BudgetExceeded { region, budget, policy } => {
                write!(f, "region {region} failed past {budget}; onBudgetExceeded: {}", wire_name(policy))
            }
        }
    }
}

/// ` with error-rate 0.002 (max 0.01), latency 0.2 (max 0.5)`, or nothing without evidence.
fn health_of(health: &[CheckEvidence]) -> String {
    if health.is_empty() {
        return String::new();
    }
    let checks: Vec<String> = health.iter().map(ToString::to_string).collect();
    format!(" with {}", checks.join(", "))
}

/// A value as it is written in YAML and JSON (`rollback-region`, `unhealthy`).
pub(crate) fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Where `records`, appended after seq `last`, break the gapless order a store keeps: the
/// first `(expected, got)` that differ, or `None` when they follow on.
pub fn seq_gap(last: u64, records: &[AuditRecord]) -> Option<(u64, u64)> {
    records.iter().zip(last + 1..).find(|(r, expected)| r.seq != *expected).map(|(r, expected)| (expected, r.seq))
}

impl AuditRecord {
    /// One line for logs and terminals.
    pub fn summary(&self) -> String {
        format!("{} {}", self.at.to_rfc3339(), self.line())
    }

    /// The summary without its time (for a log that stamps its own): `#3 jp/signin:
    /// blocked -> progressing (0% -> 1%): started`.
    pub fn line(&self) -> String {
        let subject = match (&self.region, &self.service, &self.wave) {
            (Some(r), Some(s), _) => format!("{r}/{s}"),
            (Some(r), None, _) => r.clone(),
            (None, _, Some(w)) => format!("wave {w}"),
            _ => format!("plan {}", self.plan),
        };
        let what = self.change();
        if matches!(self.event, AuditEvent::Command { .. }) {
            // The command is its own cause; say it once (with what a freeze declares).
            let what = match &self.cause {
                Cause::FreezeDeclared { .. } | Cause::FreezeLifted { .. } | Cause::FullPromotionDeclared { .. } => {
                    self.cause.to_string()
                }
                _ => what,
            };
            return format!("#{} {subject}: {what}", self.seq);
        }
        format!("#{} {subject}: {what}: {}", self.seq, self.cause)
    }

    /// What changed, in words: `progressing 1% -> 10%`, `blocked -> progressing (0% -> 1%)`.
    pub fn change(&self) -> String {
        match &self.event {
            AuditEvent::Unit { from, to, from_percent, to_percent, .. } if from == to => {
                format!("{to} {from_percent}% -> {to_percent}%")
            }
            AuditEvent::Unit { from, to, from_percent, to_percent, .. } if from_percent == to_percent => {
                format!("{from} -> {to} (at {to_percent}%)")
            }
            AuditEvent::Unit { from, to, from_percent, to_percent, .. } => {
                format!("{from} -> {to} ({from_percent}% -> {to_percent}%)")
            }
            AuditEvent::Wave { from, to } => format!("{from} -> {to}"),
            AuditEvent::Command { command, by } => format!("{command} by {by}"),
            AuditEvent::Drift { expected, observed } => {
                format!("drift: expected {expected}%, observed {observed}%")
            }
            AuditEvent::FullPromotionEnded { scope, by } => format!("full promotion of {scope} by {by} ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_keeps_at_most_the_limit_of_evidence_not_healthy_first_and_counts_the_rest() {
        let entry = |n: usize, verdict| CheckEvidence {
            region: Some(format!("r{n:02}")),
            service: Some("web".into()),
            check: "errors".into(),
            verdict: Some(verdict),
            value: None,
            at: None,
            min: None,
            max: None,
            baseline: None,
        };
        let all: Vec<CheckEvidence> = (0..WAVE_EVIDENCE_LIMIT + 6)
            .map(|n| entry(n, if n == 20 || n == 27 { HealthVerdict::NoData } else { HealthVerdict::Healthy }))
            .collect();
        let (kept, omitted) = capped_evidence(all.clone());
        assert_eq!((kept.len(), omitted), (WAVE_EVIDENCE_LIMIT, 6));
        let regions: Vec<&str> = kept.iter().take(3).filter_map(|e| e.region.as_deref()).collect();
        assert_eq!(regions, ["r20", "r27", "r00"], "not healthy first, then in order");
        assert_eq!(capped_evidence(all[..3].to_vec()), (all[..3].to_vec(), 0), "a small wave keeps all");

        // The count is written only when something was left out; records from before read as 0.
        let cause = Cause::WaveBaked { promoted: false, health: kept, health_omitted: omitted, full: None };
        assert_eq!(
            serde_json::to_value(&cause).unwrap()["health_omitted"],
            6,
            "snake case, like every field of a cause"
        );
        let old: Cause = serde_json::from_str(r#"{"reason":"waveBaked","promoted":true}"#).unwrap();
        assert_eq!(old, Cause::WaveBaked { promoted: true, health: vec![], health_omitted: 0, full: None });
        assert!(!serde_json::to_string(&old).unwrap().contains("health_omitted"));
    }

    #[test]
    fn records_written_before_the_evidence_was_kept_still_parse() {
        let old = r#"{"seq":3,"at":"2026-06-01T09:00:00Z","plan":"p","region":"jp","service":"signin",
            "event":{"type":"unit","from":"progressing","to":"progressing","step":1,"from_percent":1,"to_percent":10},
            "cause":{"reason":"advanced","approvals":["jp-1"],"promoted":false}}"#;
        let record: AuditRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            record.cause,
            Cause::Advanced {
                approvals: vec!["jp-1".into()],
                promoted: false,
                flags: vec![],
                health: vec![],
                full: None
            }
        );
        let again = serde_json::to_string(&record).unwrap();
        assert!(!again.contains("health") && !again.contains("flags"), "{again}");
    }

    #[test]
    fn a_bake_says_the_health_it_ended_on() {
        let e = |check: &str, verdict, value| CheckEvidence {
            region: None,
            service: None,
            check: check.into(),
            verdict: Some(verdict),
            value,
            at: None,
            min: None,
            max: Some(0.01),
            baseline: None,
        };
        let cause = Cause::Advanced {
            approvals: vec!["jp-1".into()],
            promoted: false,
            flags: vec!["jp-regulator".into()],
            health: vec![e("error-rate", HealthVerdict::Healthy, Some(0.002)), e("x", HealthVerdict::NoData, None)],
            full: None,
        };
        assert_eq!(
            cause.to_string(),
            "step baked healthy with error-rate 0.002 (max 0.01), x no-data (max 0.01) (approvals: jp-1)"
        );
    }
}
