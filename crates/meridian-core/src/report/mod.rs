//! The evidence report (`meridian report`): per region of a plan, the approvals in force when
//! it first received traffic, every step, the health each bake ended on, failures, operator
//! commands and accepted failures, and the proof that no traffic was raised without its
//! approvals.
//!
//! ```text
//!   audit records of the plan ─┐
//!   approval history ──────────┼──> derive ──> Report ──> markdown / html (here), JSON (serde)
//!   chain head (optional) ─────┘
//! ```
//!
//! Owns the report's shape and its derivation from the records. Pure: the shells fetch the
//! inputs (a store read-only, or the API) and write the output. The rules it applies are
//! not its own: whether an approval held at a moment is `ApprovalRecord::check`, the wording
//! of a cause is `Cause`'s `Display`, a gap in the log is `audit::seq_gap`.

mod html;
mod markdown;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::{ApprovalChange, ApprovalRecord, ApprovalScopeSet};
use crate::audit::{AuditEvent, AuditRecord, Cause, CheckEvidence, seq_gap};
use crate::command::CommandKind;
use crate::health::HealthVerdict;
use crate::state::{UnitPhase, WaitReason};

pub use html::html;
pub use markdown::markdown;

/// One entry of the approval history, as the stores and the API keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalHistoryEvent {
    /// `granted`, `updated` or `revoked`.
    pub kind: ApprovalChange,
    pub at: DateTime<Utc>,
    /// Who did it: a token's subject, `config` for the file watcher.
    pub by: String,
    /// Where it came from: `file:PATH`, `api`, `revoke`, `kube:NS/NAME`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval as it stood after this event.
    pub record: ApprovalRecord,
}

pub use crate::chain::ChainHead;

/// What the report is made from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    pub plan: &'a str,
    /// The plan's audit records, in seq order (all of them: the report checks there is no gap).
    pub audit: &'a [AuditRecord],
    /// The approval history, oldest first (every approval; those of other plans are ignored).
    pub approvals: &'a [ApprovalHistoryEvent],
    /// Only this region (`None`: every region with records).
    pub region: Option<&'a str>,
    /// The audit chain as verified when the report was made: its head, or what broke it
    /// (`None`: not available from this source).
    pub chain: Option<&'a Result<ChainHead, String>>,
}

/// Why no report can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("plan {plan:?} has no audit records")]
    NoRecords { plan: String },
    #[error("plan {plan:?} has no region {region:?} in its audit records; regions: {}", known.join(", "))]
    UnknownRegion { plan: String, region: String, known: Vec<String> },
}

/// The evidence report of one plan. The JSON form of `meridian report --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub plan: String,
    /// The audit log the report was made from.
    pub log: LogSummary,
    /// The head of the audit hash chain, verified when the report was made: the anchor to
    /// keep elsewhere (`meridian audit verify --anchor N:HASH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<ChainHead>,
    /// Why the audit chain does not hold, when it does not (the first bad record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_broken: Option<String>,
    /// Whether traffic was ever raised anywhere in the report without its approvals: the
    /// worst of the regions' answers.
    pub traffic_without_approvals: Answer,
    pub regions: Vec<RegionReport>,
}

/// Which records the report read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogSummary {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_at: DateTime<Utc>,
    /// The time of the last record: the report says nothing about later moments.
    pub last_at: DateTime<Utc>,
    /// The first break in the seq order (`expected`, `got`), if the log is not gapless from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<(u64, u64)>,
}

/// The answer to "did traffic flow without its approvals?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// Every record that raised traffic cites approvals that held at that moment.
    No,
    /// The records cannot show it either way (an approval they cite is not in the history).
    Unproven,
    /// A record raised traffic citing an approval that did not hold, or none for a flag.
    Yes,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::No => "no",
            Answer::Unproven => "unproven",
            Answer::Yes => "yes",
        }
    }
}

/// Everything the report says about one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionReport {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// Each service's phase and traffic after the last record.
    pub services: Vec<ServiceOutcome>,
    /// When the region first received traffic (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_traffic: Option<DateTime<Utc>>,
    /// The approvals the records that first gave it traffic cite, as they stood then.
    pub approvals_at_first_traffic: Vec<ApprovalInForce>,
    /// Did traffic flow here without its approvals? Shown by `proof`.
    pub traffic_without_approvals: Answer,
    /// Every record that raised the region's traffic, with the approvals it cites checked
    /// against the approval history at that record's time.
    pub proof: Vec<RaiseProof>,
    /// Every record about the region's units, in order.
    pub steps: Vec<Entry>,
    /// Each bake that ended (a step, the last step, the wave) and the health it ended on.
    pub bakes: Vec<Bake>,
    /// Health failures, rollbacks, lost approvals, aborts and drift.
    pub failures: Vec<Entry>,
    /// Operator commands whose scope covers the region (the plan, its wave, the region).
    pub commands: Vec<CommandEntry>,
    /// Promotes that completed the region's wave accepting this region's failure.
    pub accepted_failures: Vec<AcceptedFailure>,
}

/// Where a service ended up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOutcome {
    pub service: String,
    pub phase: UnitPhase,
    pub percent: u32,
}

/// An approval as it stood at a moment, and its whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalInForce {
    pub name: String,
    /// The approval as it stood at that moment (`None`: not in the history by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ApprovalRecord>,
    /// `signed with key K`, or `unsigned`.
    pub signature: String,
    /// `any`, or the plans, regions and services it is limited to.
    pub scope: String,
    /// Every event of this approval, oldest first (later revocations included).
    pub history: Vec<ApprovalHistoryEvent>,
}

/// One record that raised traffic, and why it was allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RaiseProof {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub service: String,
    pub from_percent: u32,
    pub to_percent: u32,
    /// The flags the unit needed then, as the record says (empty in records written before
    /// they were kept).
    pub flags: Vec<String>,
    /// Each approval the record cites, checked at the record's time.
    pub approvals: Vec<CitedApproval>,
    pub answer: Answer,
    /// Why the answer is not `no`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// A cited approval, checked against the history at the citing record's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CitedApproval {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Granted, unexpired, unrevoked and in scope at that moment (`ApprovalRecord::check`).
    pub valid: bool,
    /// Why not, in the blocked reason's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One audit record, for reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What changed: `blocked -> progressing (0% -> 1%)`.
    pub change: String,
    /// Why, in the audit log's words.
    pub cause: String,
}

/// A bake that ended, and the health it ended on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bake {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The service whose step baked (`None`: the wave's bake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `step at 10%`, `last step (100%)`, `wave canary`.
    pub what: String,
    /// An operator's promote ended it rather than a healthy hold.
    pub promoted: bool,
    /// What each check showed against its limits (empty in records written before it was kept).
    pub health: Vec<CheckEvidence>,
    /// A wave's bake whose record left this region's evidence out (past its limit); the
    /// region's own last-step bakes have it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_out: bool,
}

/// An operator command in the region's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub command: CommandKind,
    pub by: String,
    /// `plan`, `wave W` or `region R`.
    pub scope: String,
    /// What a freeze or unfreeze declared, in the audit log's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A promote that completed a halted wave, accepting failed regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedFailure {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    pub by: String,
    /// Every region that promote accepted.
    pub regions: Vec<String>,
}

/// Make the report. Pure: the same inputs give the same report.
pub fn derive(input: &ReportInput<'_>) -> Result<Report, ReportError> {
    let records: Vec<&AuditRecord> = input.audit.iter().filter(|r| r.plan == input.plan).collect();
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(ReportError::NoRecords { plan: input.plan.to_string() });
    };
    let owned: Vec<AuditRecord> = records.iter().map(|r| (*r).clone()).collect();
    let log = LogSummary {
        records: records.len() as u64,
        first_seq: first.seq,
        last_seq: last.seq,
        first_at: first.at,
        last_at: last.at,
        gap: seq_gap(0, &owned),
    };
    let mut known: Vec<String> = Vec::new();
    for r in &records {
        if let Some(region) = &r.region
            && !known.contains(region)
        {
            known.push(region.clone());
        }
    }
    let chosen: Vec<String> = match input.region {
        Some(region) if known.iter().any(|k| k == region) => vec![region.to_string()],
        Some(region) => {
            return Err(ReportError::UnknownRegion { plan: input.plan.to_string(), region: region.to_string(), known });
        }
        None => known,
    };
    let history = History::new(input.approvals);
    let regions: Vec<RegionReport> =
        chosen.iter().map(|region| region_report(input.plan, region, &records, &history)).collect();
    let traffic_without_approvals = regions.iter().map(|r| r.traffic_without_approvals).max().unwrap_or(Answer::No);
    Ok(Report {
        plan: input.plan.to_string(),
        log,
        chain_head: input.chain.and_then(|c| c.as_ref().ok()).cloned(),
        chain_broken: input.chain.and_then(|c| c.as_ref().err()).cloned(),
        traffic_without_approvals,
        regions,
    })
}

/// The approval history by name.
struct History<'a> {
    by_name: BTreeMap<&'a str, Vec<&'a ApprovalHistoryEvent>>,
}

impl<'a> History<'a> {
    fn new(events: &'a [ApprovalHistoryEvent]) -> Self {
        let mut by_name: BTreeMap<&str, Vec<&ApprovalHistoryEvent>> = BTreeMap::new();
        for e in events {
            by_name.entry(e.record.name.as_str()).or_default().push(e);
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|e| e.at);
        }
        History { by_name }
    }

    /// The approval as it stood at `at`: its last event at or before then.
    fn as_of(&self, name: &str, at: DateTime<Utc>) -> Option<&'a ApprovalRecord> {
        self.by_name.get(name)?.iter().rev().find(|e| e.at <= at).map(|e| &e.record)
    }

    fn events(&self, name: &str) -> Vec<ApprovalHistoryEvent> {
        self.by_name.get(name).map(|l| l.iter().map(|e| (*e).clone()).collect()).unwrap_or_default()
    }
}

fn region_report(plan: &str, region: &str, records: &[&AuditRecord], history: &History<'_>) -> RegionReport {
    let mine: Vec<&AuditRecord> = records.iter().copied().filter(|r| r.region.as_deref() == Some(region)).collect();
    let wave = mine.iter().find_map(|r| r.wave.clone());
    let entry = |r: &AuditRecord| Entry {
        seq: r.seq,
        at: r.at,
        service: r.service.clone(),
        change: r.change(),
        cause: r.cause.to_string(),
    };

    let mut services: Vec<ServiceOutcome> = Vec::new();
    let mut steps = Vec::new();
    let mut bakes = Vec::new();
    let mut failures = Vec::new();
    let mut proof = Vec::new();
    for r in mine.iter().filter(|r| r.service.is_some()) {
        let service = r.service.clone().unwrap_or_default();
        if let AuditEvent::Unit { to, to_percent, .. } = r.event {
            match services.iter_mut().find(|s| s.service == service) {
                Some(s) => (s.phase, s.percent) = (to, to_percent),
                None => services.push(ServiceOutcome { service: service.clone(), phase: to, percent: to_percent }),
            }
        }
        match (&r.event, &r.cause) {
            (AuditEvent::Unit { .. }, _) => steps.push(entry(r)),
            (AuditEvent::Drift { .. }, _) => failures.push(entry(r)),
            _ => {}
        }
        if let AuditEvent::Unit { from_percent, to_percent, to, .. } = r.event {
            if to_percent > from_percent {
                proof.push(raise_proof(plan, region, r, &service, from_percent, to_percent, history));
            }
            match &r.cause {
                Cause::Advanced { promoted, health, .. } => bakes.push(Bake {
                    seq: r.seq,
                    at: r.at,
                    service: Some(service.clone()),
                    what: format!("step at {from_percent}%"),
                    promoted: *promoted,
                    health: health.clone(),
                    left_out: false,
                }),
                Cause::Completed { promoted, health, .. } => bakes.push(Bake {
                    seq: r.seq,
                    at: r.at,
                    service: Some(service.clone()),
                    what: format!("last step ({to_percent}%)"),
                    promoted: *promoted,
                    health: health.clone(),
                    left_out: false,
                }),
                Cause::HealthFailed { .. }
                | Cause::RegionFailed { .. }
                | Cause::ApprovalLost { .. }
                | Cause::ProgressDeadline { .. } => failures.push(entry(r)),
                Cause::Blocked { waiting: WaitReason::Aborted } if to == UnitPhase::RolledBack => {
                    failures.push(entry(r))
                }
                _ => {}
            }
        }
    }

    // Which failure budget took this region's failure, or which one it went past.
    for r in mine.iter().filter(|r| r.service.is_none()) {
        if matches!(r.cause, Cause::BudgetConsumed { .. } | Cause::BudgetExceeded { .. }) {
            failures.push(entry(r));
        }
    }
    failures.sort_by_key(|e| e.seq);

    // Wave-level records: the wave's bake (with this region's evidence) and accepted failures.
    let mut accepted_failures = Vec::new();
    for r in records.iter().filter(|r| r.region.is_none() && r.wave.is_some() && r.wave == wave) {
        match &r.cause {
            Cause::WaveBaked { promoted, health, health_omitted, .. } => {
                let health: Vec<CheckEvidence> =
                    health.iter().filter(|e| e.region.as_deref() == Some(region)).cloned().collect();
                bakes.push(Bake {
                    seq: r.seq,
                    at: r.at,
                    service: None,
                    what: format!("wave {}", r.wave.as_deref().unwrap_or_default()),
                    promoted: *promoted,
                    left_out: health.is_empty() && *health_omitted > 0,
                    health,
                })
            }
            Cause::FailuresAccepted { by, regions } if regions.iter().any(|x| x == region) => {
                accepted_failures.push(AcceptedFailure {
                    seq: r.seq,
                    at: r.at,
                    wave: r.wave.clone(),
                    by: by.clone(),
                    regions: regions.clone(),
                })
            }
            _ => {}
        }
    }

    // Commands whose scope covers the region: the plan, its wave, or the region itself.
    let commands = records
        .iter()
        .filter_map(|r| {
            let AuditEvent::Command { command, by } = &r.event else { return None };
            let scope = match (&r.region, &r.wave) {
                (Some(x), _) if x == region => format!("region {x}"),
                (Some(_), _) => return None,
                (None, Some(w)) if Some(w) == wave.as_ref() => format!("wave {w}"),
                (None, Some(_)) => return None,
                (None, None) => "plan".to_string(),
            };
            Some(CommandEntry {
                seq: r.seq,
                at: r.at,
                command: *command,
                by: by.clone(),
                scope,
                detail: matches!(r.cause, Cause::FreezeDeclared { .. } | Cause::FreezeLifted { .. })
                    .then(|| r.cause.to_string()),
            })
        })
        .collect();

    let first_traffic = proof.iter().find(|p| p.from_percent == 0).map(|p| p.at);
    let mut approvals_at_first_traffic: Vec<ApprovalInForce> = Vec::new();
    if let Some(at) = first_traffic {
        for p in proof.iter().filter(|p| p.at == at) {
            for cited in &p.approvals {
                if approvals_at_first_traffic.iter().any(|a| a.name == cited.name) {
                    continue;
                }
                let record = history.as_of(&cited.name, at).cloned();
                approvals_at_first_traffic.push(ApprovalInForce {
                    name: cited.name.clone(),
                    signature: record.as_ref().map_or("unknown".into(), signature_of),
                    scope: record.as_ref().map_or("unknown".into(), |r| scope_of(&r.scope)),
                    record,
                    history: history.events(&cited.name),
                });
            }
        }
    }
    let traffic_without_approvals = proof.iter().map(|p| p.answer).max().unwrap_or(Answer::No);
    RegionReport {
        region: region.to_string(),
        wave,
        services,
        first_traffic,
        approvals_at_first_traffic,
        traffic_without_approvals,
        proof,
        steps,
        bakes,
        failures,
        commands,
        accepted_failures,
    }
}

/// Check one raise: every approval it cites held at its time (as the history says it stood
/// then), and every flag it needed is carried by one of them.
fn raise_proof(
    plan: &str,
    region: &str,
    r: &AuditRecord,
    service: &str,
    from_percent: u32,
    to_percent: u32,
    history: &History<'_>,
) -> RaiseProof {
    let (names, flags): (&[String], &[String]) = match &r.cause {
        Cause::Started { approvals, flags } | Cause::Advanced { approvals, flags, .. } => (approvals, flags),
        _ => (&[], &[]),
    };
    let mut problems = Vec::new();
    let mut unproven = false;
    let approvals: Vec<CitedApproval> = names
        .iter()
        .map(|name| match history.as_of(name, r.at) {
            None => {
                unproven = true;
                problems.push(format!("approval {name} is not in the approval history by {}", r.at.to_rfc3339()));
                CitedApproval { name: name.clone(), flag: None, valid: false, problem: Some("not on record".into()) }
            }
            Some(record) => {
                let checked = record.check(plan, region, Some(service), r.at);
                let problem = checked
                    .err()
                    .map(|problem| WaitReason::Approval { flag: record.flag.clone(), problem }.to_string());
                if let Some(p) = &problem {
                    problems.push(p.clone());
                }
                CitedApproval { name: name.clone(), flag: Some(record.flag.clone()), valid: problem.is_none(), problem }
            }
        })
        .collect();
    let mut wrong = approvals.iter().any(|a| a.flag.is_some() && !a.valid);
    for flag in flags {
        if approvals.iter().any(|a| a.valid && a.flag.as_deref() == Some(flag.as_str())) {
            continue;
        }
        problems.push(format!("flag {flag} is carried by no cited approval that held"));
        // An approval missing from the history might have carried it: that is unproven.
        wrong |= !unproven;
    }
    let answer = if wrong {
        Answer::Yes
    } else if unproven {
        Answer::Unproven
    } else {
        Answer::No
    };
    RaiseProof {
        seq: r.seq,
        at: r.at,
        service: service.to_string(),
        from_percent,
        to_percent,
        flags: flags.to_vec(),
        approvals,
        answer,
        problems,
    }
}

/// `signed with key liaison`, or `unsigned`.
pub fn signature_of(record: &ApprovalRecord) -> String {
    match &record.signature {
        Some(s) => format!("signed with key {}", s.key),
        None => "unsigned".into(),
    }
}

/// `any`, or `plans: a; regions: jp; services: signin, store`.
pub fn scope_of(scope: &ApprovalScopeSet) -> String {
    let parts: Vec<String> = [("plans", &scope.plans), ("regions", &scope.regions), ("services", &scope.services)]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(name, list)| format!("{name}: {}", list.join(", ")))
        .collect();
    if parts.is_empty() { "any".into() } else { parts.join("; ") }
}

/// `0.002`, `no-data`, `not evaluated`: a check's value as shown in a table.
pub fn shown_value(e: &CheckEvidence) -> String {
    match (e.value, e.verdict) {
        (Some(v), _) => v.to_string(),
        (None, Some(verdict)) => verdict_name(verdict),
        (None, None) => "not evaluated".into(),
    }
}

/// `healthy`, `no-data`: as written in JSON.
pub fn verdict_name(verdict: HealthVerdict) -> String {
    crate::audit::wire_name(&verdict)
}

/// A time as the report prints it: `2026-06-01 09:00:00Z`.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests;
