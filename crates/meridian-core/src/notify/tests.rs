use super::*;
use crate::approval::RevokedInfo;
use crate::engine::{Observations, decide};
use crate::health::HealthVerdict;
use crate::state::{AcceptedFailures, UnitFailure, UnitPhase};

fn mk_plan(approvals: &str) -> Plan {
    let text = format!(
        "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: p}}\nspec:\n  services: \
         [{{name: signin}}, {{name: store}}]\n  regions: [{{name: us}}, {{name: jp{approvals}}}, {{name: kr}}]\n  \
         waves:\n    - {{name: canary, regions: [us]}}\n    - {{name: asia, regions: [jp, kr]}}\n  steps: [10, 100]\n"
    );
    let bundle = crate::validate::load(&[("p.yaml".into(), text)], None);
    assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
    bundle.plans.into_iter().next().unwrap()
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
}

fn enable(state: &mut PlanState, region: &str) {
    for u in state.units.iter_mut().filter(|u| u.region == region) {
        (u.phase, u.percent) = (UnitPhase::Enabled, 100);
    }
}

fn summaries(notices: &[Notice]) -> Vec<String> {
    notices.iter().map(|n| format!("{} {}", n.topic, n.summary)).collect()
}

#[test]
fn a_region_that_rolls_back_on_two_services_is_one_failure_notice_with_its_cause() {
    let plan = mk_plan("");
    let mut before = PlanState::new(&plan);
    enable(&mut before, "us");
    before.waves[0].phase = WavePhase::Complete;
    before.waves[1].phase = WavePhase::Running;
    let mut after = before.clone();
    for u in after.units.iter_mut().filter(|u| u.region == "jp") {
        u.phase = UnitPhase::RolledBack;
    }
    let jp_signin = after.units.iter_mut().find(|u| u.region == "jp" && u.service == "signin").unwrap();
    jp_signin.failure = Some(Box::new(UnitFailure {
        at: t(10),
        check: "errors".into(),
        verdict: HealthVerdict::Unhealthy,
        value: Some(0.31),
        failures: 2,
        baseline: None,
        progress_deadline: None,
    }));
    let notices = decision_notices(&plan, &before, &after, &[], t(11));
    assert_eq!(
        summaries(&notices),
        [
            "failures p: region jp (wave asia) rolled back: signin failed: check errors unhealthy (value 0.31), 2 failing \
          evaluations in a row"
        ]
    );
    let n = &notices[0];
    assert_eq!((n.urgency, n.region.as_deref(), n.wave.as_deref()), (Urgency::Critical, Some("jp"), Some("asia")));
    // The same failure seen again says nothing new.
    assert!(decision_notices(&plan, &after, &after, &[], t(12)).is_empty());
}

#[test]
fn a_halt_and_a_completion_accepting_failures_name_what_happened_and_what_to_do() {
    let plan = mk_plan("");
    let mut before = PlanState::new(&plan);
    enable(&mut before, "us");
    before.waves[0].phase = WavePhase::Complete;
    before.waves[1].phase = WavePhase::Running;
    // jp failed and was rolled back (a decision before this one said so).
    for u in before.units.iter_mut().filter(|u| u.region == "jp") {
        u.phase = UnitPhase::RolledBack;
    }
    let mut halted = before.clone();
    halted.waves[1].phase = WavePhase::Halted;
    let record = AuditRecord {
        seq: 9,
        at: t(5),
        plan: "p".into(),
        wave: Some("asia".into()),
        region: None,
        service: None,
        event: crate::audit::AuditEvent::Wave { from: WavePhase::Running, to: WavePhase::Halted },
        cause: Cause::WaveHalted { failed_regions: vec!["jp".into()] },
    };
    let notices = decision_notices(&plan, &before, &halted, &[record], t(5));
    assert_eq!(
        summaries(&notices),
        [
            "failures p: wave asia halted on failed regions jp; later waves wait for a retry (meridian retry p --region R) \
          or a promote (meridian promote p --wave asia)"
        ]
    );
    let mut done = halted.clone();
    done.waves[1].phase = WavePhase::Complete;
    done.waves[1].accepted = Some(AcceptedFailures { by: "alice".into(), at: t(6), regions: vec!["jp".into()] });
    enable(&mut done, "kr");
    let notices = decision_notices(&plan, &halted, &done, &[], t(6));
    let texts = summaries(&notices);
    assert_eq!(texts[0], "completions p: wave asia complete, accepting failed regions jp (by alice)");
    assert!(texts[1].starts_with("completions p: rollout complete"), "{texts:?}");
    // Complete with a region not enabled: not all good news.
    assert_eq!(notices[1].urgency, Urgency::Warning);
}

#[test]
fn a_region_waiting_for_an_approval_is_announced_once_per_flag_from_a_real_decision() {
    let plan = mk_plan(", approvals: [jp-regulator]");
    let mut state = PlanState::new(&plan);
    enable(&mut state, "us");
    state.waves[0].phase = WavePhase::Complete;
    let obs = Observations::default();
    let mut all = Vec::new();
    let mut at = t(0);
    for _ in 0..4 {
        let decision = decide(&plan, state.clone(), &obs, at);
        all.extend(decision_notices(&plan, &state, &decision.state, &decision.audit, at));
        state = decision.state;
        at = decision.wake_at.unwrap_or(at + chrono::TimeDelta::seconds(10)).max(at);
    }
    let needed: Vec<&Notice> = all.iter().filter(|n| n.topic == Topic::ApprovalNeeded).collect();
    assert_eq!(needed.len(), 1, "{:?}", summaries(&all));
    assert_eq!(needed[0].flag.as_deref(), Some("jp-regulator"));
    assert_eq!(needed[0].region.as_deref(), Some("jp"));
    assert!(needed[0].summary.contains("approval jp-regulator not granted"), "{}", needed[0].summary);
}

fn approval(name: &str) -> ApprovalRecord {
    ApprovalRecord {
        name: name.into(),
        flag: "ops-go".into(),
        granted_by: "alice".into(),
        reference: Some("CHG-1".into()),
        granted_at: Some(t(0)),
        expires: Some(t(86_400)),
        scope: Default::default(),
        revoked: None,
        signature: None,
    }
}

#[test]
fn grants_and_revocations_are_told_once_and_a_start_tells_nothing() {
    let a = approval("go-1");
    assert!(approval_notices(None, std::slice::from_ref(&a), t(1)).is_empty());
    let granted = approval_notices(Some(&[]), std::slice::from_ref(&a), t(1));
    assert_eq!(
        summaries(&granted),
        ["approvals approval go-1 (flag ops-go) granted by alice, reference CHG-1, expires 2026-05-29 20:26 UTC"]
    );
    assert!(approval_notices(Some(std::slice::from_ref(&a)), std::slice::from_ref(&a), t(2)).is_empty());
    let mut revoked = a.clone();
    revoked.revoked = Some(RevokedInfo { at: t(3), by: "bob".into(), reason: Some("wrong change".into()) });
    let told = approval_notices(Some(std::slice::from_ref(&a)), std::slice::from_ref(&revoked), t(3));
    assert_eq!(summaries(&told), ["approvals approval go-1 (flag ops-go) revoked by bob: wrong change"]);
    assert!(approval_notices(Some(std::slice::from_ref(&revoked)), std::slice::from_ref(&revoked), t(4)).is_empty());
}

#[test]
fn expiries_and_rejected_edits_are_told_other_events_are_not() {
    let event = |kind: &str, detail: serde_json::Value| ControllerEvent {
        at: t(0),
        kind: kind.into(),
        who: "clock".into(),
        detail,
    };
    let expiring = event_notice(&event(
        "approval-expiring",
        serde_json::json!({"approval": "go-1", "flag": "ops-go", "expires": "2026-06-01T09:00:00Z"}),
    ))
    .unwrap();
    assert_eq!(expiring.summary, "approval go-1 (flag ops-go) expires at 2026-06-01T09:00:00Z");
    assert_eq!((expiring.topic, expiring.flag.as_deref()), (Topic::Approvals, Some("ops-go")));
    let rejected =
        event_notice(&event("config-rejected", serde_json::json!({"errors": ["p.yaml:3:4: error: bad", "two"]})))
            .unwrap();
    assert_eq!(rejected.topic, Topic::Config);
    assert!(rejected.summary.ends_with("p.yaml:3:4: error: bad (and 1 more)"), "{}", rejected.summary);
    assert!(event_notice(&event("access-denied", serde_json::json!({}))).is_none());
    assert!(event_notice(&event("config-applied", serde_json::json!({}))).is_none());
}

#[test]
fn every_topic_reads_back_from_its_name() {
    for topic in Topic::ALL {
        assert_eq!(Topic::parse(topic.as_str()), Some(topic));
    }
    assert_eq!(Topic::parse("failure"), None);
}
