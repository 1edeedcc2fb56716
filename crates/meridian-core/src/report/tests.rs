use chrono::TimeZone;

use super::*;
use crate::approval::{ApprovalSignature, RevokedInfo};
use crate::manifest::{OnApprovalRevoked, OnFailure};
use crate::state::WavePhase;

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, minute, 0).unwrap()
}

/// Builds a plan's log with gapless seqs.
#[derive(Default)]
struct Log {
    records: Vec<AuditRecord>,
}

impl Log {
    /// A command's record names a wave only when the command did (as the engine records it).
    fn push(&mut self, at: u32, region: Option<&str>, service: Option<&str>, event: AuditEvent, cause: Cause) {
        let wave = match region {
            _ if matches!(event, AuditEvent::Command { .. }) => None,
            Some("us") | None => Some("canary"),
            Some(_) => Some("asia"),
        };
        self.records.push(AuditRecord {
            seq: self.records.len() as u64 + 1,
            at: t(at),
            plan: "p".into(),
            wave: wave.map(str::to_string),
            region: region.map(str::to_string),
            service: service.map(str::to_string),
            event,
            cause,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn unit(&mut self, at: u32, region: &str, from: UnitPhase, to: UnitPhase, fp: u32, tp: u32, cause: Cause) {
        let event = AuditEvent::Unit { from, to, step: None, from_percent: fp, to_percent: tp };
        self.push(at, Some(region), Some("signin"), event, cause);
    }

    fn wave(&mut self, at: u32, wave_of: &str, to: WavePhase, cause: Cause) {
        let event = AuditEvent::Wave { from: WavePhase::Running, to };
        self.push(at, None, None, event, cause);
        if let Some(last) = self.records.last_mut() {
            last.wave = Some(wave_of.into());
        }
    }
}

fn evidence(value: f64) -> Vec<CheckEvidence> {
    vec![CheckEvidence {
        region: None,
        service: None,
        check: "error-rate".into(),
        verdict: Some(HealthVerdict::Healthy),
        value: Some(value),
        at: None,
        min: None,
        max: Some(0.01),
        baseline: None,
    }]
}

fn approval(name: &str, flag: &str) -> ApprovalRecord {
    ApprovalRecord {
        name: name.into(),
        flag: flag.into(),
        granted_by: "Ministry liaison office".into(),
        reference: Some("letter 2026-0528-17".into()),
        granted_at: None,
        expires: Some(t(59)),
        scope: ApprovalScopeSet {
            plans: vec!["p".into()],
            regions: vec!["jp".into()],
            services: vec![],
            confined_to_plans: None,
        },
        revoked: None,
        signature: Some(ApprovalSignature { key: "liaison".into(), value: "c2ln".into() }),
    }
}

fn granted(at: u32, record: ApprovalRecord) -> ApprovalHistoryEvent {
    ApprovalHistoryEvent {
        kind: ApprovalChange::Granted,
        at: t(at),
        by: "alice".into(),
        source: "api".into(),
        reason: None,
        record,
    }
}

fn revoked(at: u32, mut record: ApprovalRecord) -> ApprovalHistoryEvent {
    record.revoked = Some(RevokedInfo { at: t(at), by: "ministry".into(), reason: Some("letter withdrawn".into()) });
    ApprovalHistoryEvent {
        kind: ApprovalChange::Revoked,
        at: t(at),
        by: "ministry".into(),
        source: "revoke".into(),
        reason: Some("letter withdrawn".into()),
        record,
    }
}

fn started(approvals: &[&str], flags: &[&str]) -> Cause {
    Cause::Started {
        approvals: approvals.iter().map(|a| a.to_string()).collect(),
        flags: flags.iter().map(|a| a.to_string()).collect(),
    }
}

fn report(log: &Log, history: &[ApprovalHistoryEvent], region: Option<&str>) -> Result<Report, ReportError> {
    derive(&ReportInput { plan: "p", audit: &log.records, approvals: history, region, chain: None })
}

/// jp goes all the way with its regulator's approval.
fn full_rollout() -> (Log, Vec<ApprovalHistoryEvent>) {
    use UnitPhase::*;
    let mut log = Log::default();
    log.unit(
        1,
        "jp",
        Pending,
        Blocked,
        0,
        0,
        Cause::Blocked {
            waiting: WaitReason::Approval {
                flag: "jp-regulator".into(),
                problem: crate::approval::ApprovalProblem::Missing,
            },
        },
    );
    log.unit(5, "jp", Blocked, Progressing, 0, 10, started(&["jp-1"], &["jp-regulator"]));
    let advanced = Cause::Advanced {
        approvals: vec!["jp-1".into()],
        promoted: false,
        flags: vec!["jp-regulator".into()],
        health: evidence(0.002),
        full: None,
    };
    log.unit(10, "jp", Progressing, Progressing, 10, 100, advanced);
    log.unit(
        15,
        "jp",
        Progressing,
        Enabled,
        100,
        100,
        Cause::Completed { promoted: false, health: evidence(0.004), full: None },
    );
    (log, vec![granted(3, approval("jp-1", "jp-regulator"))])
}

#[test]
fn a_region_that_went_all_the_way_shows_its_approvals_steps_and_health() {
    let (log, history) = full_rollout();
    let report = report(&log, &history, None).unwrap();
    assert_eq!(report.traffic_without_approvals, Answer::No);
    assert_eq!(report.log.gap, None);
    let jp = &report.regions[0];
    assert_eq!(jp.region, "jp");
    assert_eq!(jp.wave.as_deref(), Some("asia"));
    assert_eq!(jp.first_traffic, Some(t(5)));
    assert_eq!(jp.services, vec![ServiceOutcome { service: "signin".into(), phase: UnitPhase::Enabled, percent: 100 }]);
    let a = &jp.approvals_at_first_traffic[0];
    assert_eq!(a.name, "jp-1");
    let record = a.record.as_ref().unwrap();
    assert_eq!(
        (record.granted_by.as_str(), record.reference.as_deref()),
        ("Ministry liaison office", Some("letter 2026-0528-17"))
    );
    assert_eq!(a.signature, "signed with key liaison");
    assert_eq!(a.scope, "plans: p; regions: jp");
    assert_eq!(jp.proof.len(), 2, "the start and the advance raised traffic");
    assert!(jp.proof.iter().all(|p| p.answer == Answer::No && p.approvals[0].valid));
    assert_eq!(jp.steps.len(), 4);
    let values: Vec<(String, Option<f64>)> = jp.bakes.iter().map(|b| (b.what.clone(), b.health[0].value)).collect();
    assert_eq!(values, [("step at 10%".to_string(), Some(0.002)), ("last step (100%)".to_string(), Some(0.004))]);
}

#[test]
fn a_revoked_approval_shows_the_rollback_with_its_cause() {
    use UnitPhase::*;
    let (mut log, mut history) = full_rollout();
    log.records.truncate(2);
    history.push(revoked(7, approval("jp-1", "jp-regulator")));
    let lost = Cause::ApprovalLost {
        flag: "jp-regulator".into(),
        problem: crate::approval::ApprovalProblem::Revoked { name: "jp-1".into(), at: t(7), by: "ministry".into() },
        policy: OnApprovalRevoked::Disable,
    };
    log.unit(7, "jp", Progressing, Blocked, 10, 0, lost);
    let report = report(&log, &history, Some("jp")).unwrap();
    let jp = &report.regions[0];
    assert_eq!(jp.traffic_without_approvals, Answer::No, "the raise came before the revocation");
    assert_eq!(jp.failures.len(), 1);
    assert_eq!(jp.failures[0].change, "progressing -> blocked (10% -> 0%)");
    assert_eq!(
        jp.failures[0].cause,
        "approval jp-regulator (jp-1) revoked by ministry at 2026-06-01T09:07:00Z; onApprovalRevoked: disable"
    );
    // The approval's whole history is shown, its revocation included.
    let kinds: Vec<ApprovalChange> = jp.approvals_at_first_traffic[0].history.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [ApprovalChange::Granted, ApprovalChange::Revoked]);
    // As it stood at first traffic, it was not revoked yet.
    assert!(jp.approvals_at_first_traffic[0].record.as_ref().unwrap().revoked.is_none());
}

#[test]
fn a_raise_citing_an_approval_that_did_not_hold_then_says_yes() {
    let (log, mut history) = full_rollout();
    history.push(revoked(4, approval("jp-1", "jp-regulator")));
    let report = report(&log, &history, None).unwrap();
    assert_eq!(report.traffic_without_approvals, Answer::Yes);
    let p = &report.regions[0].proof[0];
    assert_eq!(p.answer, Answer::Yes);
    assert_eq!(
        p.problems,
        [
            "approval jp-regulator (jp-1) revoked by ministry at 2026-06-01T09:04:00Z",
            "flag jp-regulator is carried by no cited approval that held"
        ]
    );
    // Out of scope is caught by the same rule.
    let mut elsewhere = approval("jp-1", "jp-regulator");
    elsewhere.scope.regions = vec!["kr".into()];
    let report = super::derive(&ReportInput {
        plan: "p",
        audit: &full_rollout().0.records,
        approvals: &[granted(3, elsewhere)],
        region: None,
        chain: None,
    })
    .unwrap();
    assert_eq!(report.traffic_without_approvals, Answer::Yes);
    // A flag the record needed that no cited approval carries.
    let mut log = full_rollout().0;
    log.records.truncate(2);
    log.records[1].cause = started(&["jp-1"], &["jp-regulator", "ops-go"]);
    let report = report_of(&log, &full_rollout().1);
    assert_eq!(report.regions[0].proof[0].problems, ["flag ops-go is carried by no cited approval that held"]);
    assert_eq!(report.traffic_without_approvals, Answer::Yes);
}

fn report_of(log: &Log, history: &[ApprovalHistoryEvent]) -> Report {
    report(log, history, None).unwrap()
}

#[test]
fn an_approval_missing_from_the_history_leaves_it_unproven() {
    let (log, _) = full_rollout();
    let report = report_of(&log, &[]);
    assert_eq!(report.traffic_without_approvals, Answer::Unproven);
    assert_eq!(report.regions[0].approvals_at_first_traffic[0].signature, "unknown");
}

#[test]
fn a_promote_that_accepted_failures_names_who_and_the_failure_its_cause() {
    use UnitPhase::*;
    let mut log = Log::default();
    log.unit(1, "us", Blocked, Progressing, 0, 10, started(&[], &[]));
    let failed = Cause::HealthFailed {
        check: "error-rate".into(),
        verdict: HealthVerdict::Unhealthy,
        value: Some(0.5),
        failures: 3,
        baseline: None,
    };
    log.unit(3, "us", Progressing, Failed, 10, 10, failed);
    log.unit(
        3,
        "us",
        Failed,
        RolledBack,
        10,
        0,
        Cause::RegionFailed { service: "signin".into(), policy: OnFailure::RollbackRegion },
    );
    log.wave(4, "canary", WavePhase::Halted, Cause::WaveHalted { failed_regions: vec!["us".into()] });
    log.push(
        5,
        None,
        None,
        AuditEvent::Command { command: CommandKind::Promote, by: "bob".into() },
        Cause::Command { command: CommandKind::Promote, by: "bob".into() },
    );
    log.wave(
        5,
        "canary",
        WavePhase::Complete,
        Cause::FailuresAccepted { by: "bob".into(), regions: vec!["us".into()] },
    );
    let report = report_of(&log, &[]);
    let us = &report.regions[0];
    assert_eq!(us.traffic_without_approvals, Answer::No, "a region that needs no approval");
    assert_eq!(us.accepted_failures.len(), 1);
    assert_eq!(
        (us.accepted_failures[0].by.as_str(), us.accepted_failures[0].regions.as_slice()),
        ("bob", &["us".to_string()][..])
    );
    let causes: Vec<&str> = us.failures.iter().map(|f| f.cause.as_str()).collect();
    assert_eq!(
        causes,
        [
            "check error-rate unhealthy value 0.5, 3 failing evaluations in a row",
            "signin failed here; onFailure: rollback-region"
        ]
    );
    assert_eq!(us.services[0].phase, RolledBack);
}

#[test]
fn operator_commands_in_the_regions_scope_are_shown_with_who_issued_them() {
    let (mut log, history) = full_rollout();
    let command = |kind, by: &str| {
        (AuditEvent::Command { command: kind, by: by.into() }, Cause::Command { command: kind, by: by.into() })
    };
    let (e, c) = command(CommandKind::Pause, "carol");
    log.push(20, Some("jp"), None, e, c);
    let (e, c) = command(CommandKind::Pause, "dave");
    log.push(21, Some("us"), None, e, c);
    let (e, c) = command(CommandKind::Resume, "erin");
    log.push(22, None, None, e, c);
    let jp = report(&log, &history, Some("jp")).unwrap().regions.remove(0);
    let shown: Vec<(CommandKind, &str, &str)> =
        jp.commands.iter().map(|c| (c.command, c.by.as_str(), c.scope.as_str())).collect();
    assert_eq!(shown, [(CommandKind::Pause, "carol", "region jp"), (CommandKind::Resume, "erin", "plan")]);
}

#[test]
fn bad_input_names_what_exists() {
    let (log, history) = full_rollout();
    assert_eq!(
        report(&log, &history, Some("kr")).unwrap_err().to_string(),
        "plan \"p\" has no region \"kr\" in its audit records; regions: jp"
    );
    assert_eq!(report(&Log::default(), &history, None).unwrap_err(), ReportError::NoRecords { plan: "p".into() });
}

#[test]
fn a_region_left_out_of_its_waves_capped_evidence_says_so_and_keeps_its_last_steps() {
    let (mut log, history) = full_rollout();
    let mut other = evidence(0.001);
    other[0].region = Some("kr".into());
    other[0].service = Some("signin".into());
    let baked = Cause::WaveBaked { promoted: false, health: other, health_omitted: 5, full: None };
    log.wave(20, "asia", WavePhase::Complete, baked);
    let report = report(&log, &history, None).unwrap();
    let bakes = &report.regions[0].bakes;
    let wave = bakes.last().unwrap();
    assert_eq!((wave.what.as_str(), wave.health.len(), wave.left_out), ("wave asia", 0, true));
    assert!(bakes.iter().filter(|b| b.service.is_some()).all(|b| !b.health.is_empty() && !b.left_out));
    let md = markdown(&report);
    assert!(md.contains("| wave asia | healthy hold | - | left out of the wave's record"), "{md}");
}

#[test]
fn markdown_reads_as_a_ticket_excerpt() {
    let (log, history) = full_rollout();
    let mut report = report_of(&log, &history);
    let md = markdown(&report);
    for line in [
        "# Evidence report: p",
        "- Audit records: 4 (seq 1 to 4, 2026-06-01 09:01:00Z to 2026-06-01 09:15:00Z); gapless",
        "- Audit chain head: not available",
        "- **Traffic without its approvals: no** (jp)",
        "## Region jp (wave asia)",
        "| jp-1 | jp-regulator | Ministry liaison office | letter 2026-0528-17 | - | 2026-06-01 09:59:00Z | plans: p; regions: jp | signed with key liaison |",
        "- jp-1: granted at 2026-06-01 09:03:00Z by alice (api)",
        "| 2 | 2026-06-01 09:05:00Z | signin | 0% -> 10% | jp-regulator | jp-1 (valid) | no |",
        "| 3 | 2026-06-01 09:10:00Z | signin | step at 10% | healthy hold | error-rate | 0.002 | healthy | max 0.01 |",
    ] {
        assert!(md.lines().any(|l| l == line), "missing line {line:?} in\n{md}");
    }
    report.chain_head = Some(ChainHead { entries: 4, hash: "ab12".into() });
    assert!(markdown(&report).contains(
        "- Audit chain head: 4:ab12 (verified, 4 records; keep it: `meridian audit verify --anchor 4:ab12`)\n"
    ));
    report.chain_broken = Some("entry 3 (audit p#3) does not match its hash".into());
    assert!(markdown(&report).contains("- Audit chain head: BROKEN: entry 3 (audit p#3) does not match its hash\n"));
}

#[test]
fn json_is_the_documented_struct_and_reads_back() {
    let (log, history) = full_rollout();
    let report = report_of(&log, &history);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["trafficWithoutApprovals"], "no");
    assert_eq!(json["regions"][0]["approvalsAtFirstTraffic"][0]["record"]["grantedBy"], "Ministry liaison office");
    assert_eq!(json["regions"][0]["bakes"][0]["health"][0]["value"], 0.002);
    assert_eq!(json["regions"][0]["proof"][0]["approvals"][0]["valid"], true);
    assert!(json.get("chainHead").is_none());
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn html_is_self_contained_escaped_and_printable() {
    let (mut log, history) = full_rollout();
    log.records[0].region = Some("jp".into());
    let mut report = report_of(&log, &history);
    report.plan = "<p&>".into();
    let page = html(&report);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("@media print"));
    assert!(page.contains("Evidence report: &lt;p&amp;&gt;"));
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://") && !page.contains("<link")
    );
    assert!(page.contains("<span class=\"answer no\">no</span>"));
    assert!(page.contains("<span class=\"value\">0.002</span>"));
}
