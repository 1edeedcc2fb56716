//! Scenario tests of the decision engine: small plans written as YAML, a scripted fleet that
//! reports health, and an injected clock. Every scenario is deterministic; no test sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet, RevokedInfo};
use meridian_core::command::{Command, CommandKind};
use meridian_core::dependency::PlanProgress;
use meridian_core::engine::{Action, Decision, Observations, TrafficReading, decide};
use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::outcome::{End, outcome};
use meridian_core::plan::{ActuatorSettings, Plan};
use meridian_core::state::{AcceptedFailures, PlanPhase, PlanState, UnitPhase, UnitState, WaitReason, WavePhase};
use meridian_core::validate::load;
use meridian_core::{AuditEvent, AuditRecord, Cause};

// ----- builders -----

/// 2026-06-01 is a Monday.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

/// A plan from the body of its `spec:` (each line indented by two spaces).
fn mk_plan(spec: &str) -> Plan {
    let text =
        format!("apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{ name: test }}\nspec:\n{spec}");
    let bundle = load(&[("test.yaml".into(), text)], None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    bundle.plans.into_iter().next().expect("one plan")
}

/// One check `errors` with the given extra settings, 30s interval.
fn mk_health(extra: &str) -> String {
    format!(
        "  health:\n    interval: 30s\n    checks:\n      - name: errors\n        prometheus: {{ query: 'x' }}\n        max: 0.01\n{extra}"
    )
}

fn mk_approval(name: &str, flag: &str, granted_at: DateTime<Utc>) -> ApprovalRecord {
    ApprovalRecord {
        name: name.into(),
        flag: flag.into(),
        granted_by: "tester".into(),
        reference: Some("letter 1".into()),
        granted_at: Some(granted_at),
        expires: None,
        scope: ApprovalScopeSet::default(),
        revoked: None,
        signature: None,
    }
}

fn mk_command(kind: CommandKind, wave: Option<&str>, region: Option<&str>, at: DateTime<Utc>) -> Command {
    Command { wave: wave.map(Into::into), region: region.map(Into::into), ..Command::plan_wide(kind, "oncall", at) }
}

fn mk_sample(region: &str, service: &str, check: &str, verdict: HealthVerdict, at: DateTime<Utc>) -> HealthSample {
    HealthSample {
        region: region.into(),
        service: service.into(),
        check: check.into(),
        verdict,
        value: None,
        detail: None,
        at,
        baseline: None,
    }
}

/// A rollout driven on an injected clock by a scripted fleet.
struct Rollout {
    plan: Plan,
    state: PlanState,
    now: DateTime<Utc>,
    approvals: Vec<ApprovalRecord>,
    audit: Vec<AuditRecord>,
    actions: Vec<(DateTime<Utc>, Action)>,
    wake_at: Option<DateTime<Utc>>,
    /// What the fleet reports per region (or `region/service`); default healthy.
    verdicts: BTreeMap<String, HealthVerdict>,
    /// Regions (or `region/service`) that report nothing at all.
    silent: Vec<String>,
}

impl Rollout {
    fn new(plan: Plan, start: DateTime<Utc>) -> Self {
        let state = PlanState::new(&plan);
        Rollout {
            plan,
            state,
            now: start,
            approvals: Vec::new(),
            audit: Vec::new(),
            actions: Vec::new(),
            wake_at: None,
            verdicts: BTreeMap::new(),
            silent: Vec::new(),
        }
    }

    fn decide_with(&mut self, health: &[HealthSample], traffic: &[TrafficReading], commands: &[Command]) -> Decision {
        let obs = Observations { approvals: &self.approvals, health, traffic, commands, ..Observations::default() };
        let d = decide(&self.plan, self.state.clone(), &obs, self.now);
        // Determinism: the same inputs give the same outputs.
        assert_eq!(d, decide(&self.plan, self.state.clone(), &obs, self.now));
        let last = self.audit.last().map_or(0, |l| l.seq);
        for (k, r) in d.audit.iter().enumerate() {
            assert_eq!(r.seq, last + k as u64 + 1, "gapless audit");
            assert_eq!(r.at, self.now);
        }
        self.audit.extend(d.audit.iter().cloned());
        self.actions.extend(d.actions.iter().map(|a| (self.now, a.clone())));
        self.wake_at = d.wake_at;
        self.state = d.state.clone();
        d
    }

    fn verdict_for(&self, u: &UnitState) -> Option<HealthVerdict> {
        let key = format!("{}/{}", u.region, u.service);
        if self.silent.contains(&u.region) || self.silent.contains(&key) {
            return None;
        }
        Some(
            self.verdicts.get(&key).or_else(|| self.verdicts.get(&u.region)).copied().unwrap_or(HealthVerdict::Healthy),
        )
    }

    /// What the fleet reports at `now` for every unit under watch: what the controller asks
    /// for, by the engine's one rule.
    fn samples(&self) -> Vec<HealthSample> {
        let mut out = Vec::new();
        for request in meridian_core::watch::health_requests(&self.plan, &self.state, self.now) {
            for region in &request.regions {
                let Some(u) = self.state.unit(region, &request.service) else { continue };
                let Some(verdict) = self.verdict_for(u) else { continue };
                for c in &self.plan.health.checks {
                    out.push(mk_sample(&u.region, &u.service, &c.name, verdict, self.now));
                }
            }
        }
        out
    }

    /// One decision with the fleet's health at `now`.
    fn tick(&mut self) -> Decision {
        let samples = self.samples();
        self.decide_with(&samples, &[], &[])
    }

    fn command(&mut self, kind: CommandKind, wave: Option<&str>, region: Option<&str>) -> Decision {
        let cmd = mk_command(kind, wave, region, self.now);
        self.decide_with(&[], &[], &[cmd])
    }

    /// Tick every health interval (and at every wake-up) until `pred` holds or `until` passes.
    fn run_until(&mut self, until: DateTime<Utc>, mut pred: impl FnMut(&Rollout) -> bool) -> bool {
        let interval = self.plan.health.interval.to_delta();
        loop {
            self.tick();
            if pred(self) {
                return true;
            }
            let next = self.now + interval;
            let next = self.wake_at.map_or(next, |w| w.min(next));
            if next > until {
                return false;
            }
            self.now = next;
        }
    }

    /// Tick until `until`, whatever happens.
    fn run_for(&mut self, d: TimeDelta) {
        let until = self.now + d;
        self.run_until(until, |_| false);
        self.now = until;
    }

    fn unit(&self, region: &str, service: &str) -> &UnitState {
        self.state.unit(region, service).expect("unit exists")
    }

    fn region_percents(&self, region: &str) -> Vec<u32> {
        self.state.units.iter().filter(|u| u.region == region).map(|u| u.percent).collect()
    }

    fn wave(&self, name: &str) -> WavePhase {
        self.state.waves.iter().find(|w| w.name == name).expect("wave exists").phase
    }

    fn region_enabled(&self, region: &str) -> bool {
        self.state.units.iter().filter(|u| u.region == region).all(|u| u.phase == UnitPhase::Enabled)
    }

    /// Times at which a unit's traffic was raised, with the new percent.
    fn raises(&self, region: &str, service: &str) -> Vec<(DateTime<Utc>, u32)> {
        self.audit
            .iter()
            .filter(|r| r.region.as_deref() == Some(region) && r.service.as_deref() == Some(service))
            .filter_map(|r| match r.event {
                AuditEvent::Unit { from_percent, to_percent, .. } if to_percent > from_percent => {
                    Some((r.at, to_percent))
                }
                _ => None,
            })
            .collect()
    }

    fn records_for(&self, region: &str) -> Vec<&AuditRecord> {
        self.audit.iter().filter(|r| r.region.as_deref() == Some(region)).collect()
    }
}

const TWO_WAVES: &str = r#"
  services:
    - name: signin
    - name: store
      after: [signin]
  regions:
    - name: a
    - name: b
    - name: c
    - name: d
  waves:
    - name: first
      regions: [a, b, c]
      bake: 5m
    - name: second
      regions: [d]
  steps: [10, 50, 100]
  stepBake: 1m
"#;

fn mk_two_waves(extra: &str) -> Plan {
    mk_plan(&format!("{TWO_WAVES}{extra}{}", mk_health("")))
}

// ----- the restoration story -----

const RESTORATION: &str = r#"
  services:
    - name: signin
    - name: store
      after: [signin]
    - name: music
      after: [signin]
  regions:
    - name: us-east
      timezone: America/New_York
    - name: eu-west
      timezone: Europe/Dublin
    - name: jp
      timezone: Asia/Tokyo
      approvals: [jp-regulator]
  waves:
    - name: canary
      regions: [us-east]
      bake: 10m
      approvals: [ops-go]
    - name: rest
      regions: [eu-west, jp]
  steps: [1, 10, 50, 100]
  stepBake: 2m
"#;

#[test]
fn restoration_holds_the_regulated_region_until_its_approval_then_enables_it() {
    let plan = mk_plan(&format!("{RESTORATION}{}", mk_health("        failureLimit: 2\n")));
    let mut run = Rollout::new(plan, t0());

    // Without the operator's go, the canary wave does not start anywhere.
    run.tick();
    assert_eq!(run.wave("canary"), WavePhase::Running);
    assert!(run.state.units.iter().all(|u| u.percent == 0));
    let signin = run.unit("us-east", "signin");
    assert_eq!(signin.phase, UnitPhase::Blocked);
    assert!(matches!(&signin.waiting, Some(WaitReason::Approval { flag, .. }) if flag == "ops-go"));
    assert!(
        matches!(&run.unit("us-east", "store").waiting, Some(WaitReason::Dependency { services }) if services == &["signin"])
    );

    run.now += mins(1);
    run.approvals.push(mk_approval("ops-go-1", "ops-go", run.now));
    let done = run.run_until(t0() + TimeDelta::hours(2), |r| r.region_enabled("eu-west"));
    assert!(done, "eu-west finishes: {:#?}", run.state);
    assert_eq!(run.wave("canary"), WavePhase::Complete);

    // jp is held back, with the reason stated, and never got any traffic.
    run.run_for(TimeDelta::hours(6));
    assert_eq!(run.region_percents("jp"), vec![0, 0, 0]);
    let jp = run.unit("jp", "signin");
    assert_eq!(jp.phase, UnitPhase::Blocked);
    assert_eq!(
        jp.waiting,
        Some(WaitReason::Approval {
            flag: "jp-regulator".into(),
            problem: meridian_core::approval::ApprovalProblem::Missing
        })
    );
    assert_eq!(run.wave("rest"), WavePhase::Running);
    assert!(run.actions.iter().all(|(_, Action::SetTraffic { region, .. })| region != "jp"));

    // The ministry says yes.
    let granted = run.now + mins(1);
    run.now = granted;
    let mut approval = mk_approval("jp-regulator-2026-05", "jp-regulator", granted);
    approval.reference = Some("letter 2026-0528-17".into());
    run.approvals.push(approval);
    let done = run.run_until(granted + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete);
    assert!(done, "{:#?}", run.state);
    assert!(run.region_enabled("jp"));

    // Every raise of jp's traffic came after the grant and names the approval as evidence.
    for service in ["signin", "store", "music"] {
        let raises = run.raises("jp", service);
        assert_eq!(raises.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 10, 50, 100]);
        assert!(raises.iter().all(|(at, _)| *at >= granted));
    }
    for r in run.records_for("jp") {
        if let AuditEvent::Unit { from_percent, to_percent, .. } = r.event
            && to_percent > from_percent
        {
            let evidence = match &r.cause {
                Cause::Started { approvals, .. } | Cause::Advanced { approvals, .. } => approvals,
                other => panic!("raise without evidence: {other:?}"),
            };
            assert!(evidence.contains(&"jp-regulator-2026-05".to_string()), "{}", r.summary());
        }
    }
    // Store and music start only once signin is enabled there.
    let signin_enabled = run
        .records_for("jp")
        .into_iter()
        .find(|r| {
            r.service.as_deref() == Some("signin") && matches!(r.event, AuditEvent::Unit { to: UnitPhase::Enabled, .. })
        })
        .map(|r| r.at)
        .unwrap();
    assert!(run.raises("jp", "store")[0].0 >= signin_enabled);
    assert!(run.raises("jp", "music")[0].0 >= signin_enabled);
}

// ----- failures -----

#[test]
fn a_failing_region_is_rolled_back_while_the_others_finish_then_the_wave_halts_until_retry() {
    let mut run = Rollout::new(mk_two_waves("  onFailure: rollback-region\n"), t0());
    run.run_until(t0() + mins(3), |r| r.unit("b", "signin").percent == 50);
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.now += TimeDelta::seconds(30);
    let d = run.tick();
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::RolledBack);
    assert!(d.actions.contains(&Action::SetTraffic {
        region: "b".into(),
        service: "signin".into(),
        percent: 0,
        from: 50
    }));
    let failed =
        run.audit.iter().find(|r| r.region.as_deref() == Some("b") && matches!(r.cause, Cause::HealthFailed { .. }));
    assert!(failed.is_some());

    // a and c finish; b stays at 0; the wave then halts and d waits.
    run.verdicts.clear();
    let halted = run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted);
    assert!(halted, "{:#?}", run.state.waves);
    assert!(run.region_enabled("a") && run.region_enabled("c"));
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    run.run_for(TimeDelta::hours(2));
    assert_eq!(run.wave("first"), WavePhase::Halted);
    assert_eq!(run.region_percents("d"), vec![0, 0]);
    assert_eq!(run.state.phase(), PlanPhase::Halted);

    // A retry of b sends it back to the start; the wave then completes and d runs.
    run.command(CommandKind::Retry, None, Some("b"));
    assert_eq!(run.wave("first"), WavePhase::Running);
    let done = run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete);
    assert!(done, "{:#?}", run.state);
    assert_eq!(run.raises("b", "signin").iter().map(|r| r.1).collect::<Vec<_>>(), vec![10, 50, 10, 50, 100]);
}

#[test]
fn promoting_a_halted_wave_accepts_the_failure_and_lets_the_next_wave_run() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted);
    assert_eq!(run.wave("first"), WavePhase::Halted);
    let promoted_at = run.now;
    let cmd = Command { wave: Some("first".into()), ..Command::plan_wide(CommandKind::Promote, "alice", run.now) };
    run.decide_with(&[], &[], &[cmd]);
    assert_eq!(run.wave("first"), WavePhase::Complete);
    // Who accepted which failures is kept with the wave, and the transition says so.
    let first = &run.state.waves[0];
    assert_eq!(
        first.accepted,
        Some(AcceptedFailures { by: "alice".into(), at: promoted_at, regions: vec!["b".into()] })
    );
    assert_eq!(first.promoted_by, None, "the promote is spent");
    let completed = run
        .audit
        .iter()
        .find(|r| matches!(r.event, AuditEvent::Wave { to: WavePhase::Complete, .. }))
        .expect("the wave's completion is audited");
    assert_eq!(completed.cause, Cause::FailuresAccepted { by: "alice".into(), regions: vec!["b".into()] });
    assert_eq!(completed.cause.to_string(), "promoted by alice, accepting failed regions b");
    run.run_until(run.now + TimeDelta::hours(1), |r| r.region_enabled("d"));
    assert!(run.region_enabled("d"));
    assert_eq!(run.region_percents("b"), vec![0, 0]);

    // The completed plan says it completed with b rolled back, accepted by alice.
    assert_eq!(run.state.phase(), PlanPhase::Complete);
    let o = outcome(&run.plan, &run.state);
    assert!(!o.all_enabled());
    assert_eq!(o.summary, "complete, 1 region rolled back: b (accepted by alice)");
    assert_eq!(o.failed[0].service, "signin");
    assert!(o.failed[0].cause.starts_with("check errors unhealthy"), "{}", o.failed[0].cause);
    assert!(matches!(o.end(None, true), Ok(Some(End::CompleteWithExceptions(_)))));
}

#[test]
fn a_failure_is_listed_at_once_while_a_sibling_region_waits_for_its_approval() {
    let spec = TWO_WAVES.replace("    - name: c\n", "    - name: c\n      approvals: [c-go]\n");
    let mut run = Rollout::new(mk_plan(&format!("{spec}  onFailure: rollback-region\n{}", mk_health(""))), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    let failed = run.run_until(t0() + TimeDelta::hours(1), |r| r.unit("b", "signin").phase == UnitPhase::RolledBack);
    assert!(failed, "{:#?}", run.state);
    let failure = run.unit("b", "signin").failure.clone().expect("the failure is recorded on the unit");
    assert_eq!((failure.check.as_str(), failure.verdict, failure.failures), ("errors", HealthVerdict::Unhealthy, 1));
    assert_eq!(run.unit("b", "store").failure, None, "only the unit that failed carries it");

    // c never gets its approval: the wave cannot halt, yet the outcome names b at once.
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.wave("first"), WavePhase::Running);
    let o = outcome(&run.plan, &run.state);
    assert_eq!(o.summary, "running, 1 region rolled back: b (not accepted)");
    assert_eq!(o.failed[0].at, Some(failure.at));
    let Ok(Some(End::Failed(why))) = o.end(None, true) else { panic!("{:?}", o.end(None, true)) };
    assert!(why.contains("region b (wave first) rolled back: signin failed: check errors unhealthy"), "{why}");
    assert_eq!(o.end(None, false), Ok(None), "without fail-fast the wait goes on until the wave halts");

    // A promote of the running wave accepts nothing; a retry clears the failure.
    run.command(CommandKind::Promote, Some("first"), None);
    assert_eq!(run.state.waves[0].accepted, None);
    run.verdicts.clear();
    run.command(CommandKind::Retry, None, Some("b"));
    assert_eq!(run.unit("b", "signin").failure, None);
    assert!(outcome(&run.plan, &run.state).failed.is_empty());
}

#[test]
fn a_region_retried_after_its_halted_wave_was_promoted_is_watched_and_reaches_100() {
    // The on-call story: b fails, the wave halts, the operator promotes it (accepting the
    // failure), heals b and retries it. Its wave is complete, yet b must be watched again.
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted);
    run.command(CommandKind::Promote, Some("first"), None);
    assert_eq!(run.wave("first"), WavePhase::Complete);
    run.verdicts.clear();
    run.command(CommandKind::Retry, None, Some("b"));
    run.tick();
    assert_eq!(run.unit("b", "signin").percent, 10);
    let watched = meridian_core::watch::health_requests(&run.plan, &run.state, run.now);
    assert!(
        watched.iter().any(|r| r.service == "signin" && r.regions.contains(&"b".to_string())),
        "b/signin is not watched: {watched:?}"
    );
    assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.region_enabled("b")), "{:#?}", run.state);
    assert_eq!(run.region_percents("b"), vec![100, 100]);
}

#[test]
fn a_promote_while_the_wave_runs_does_not_later_accept_a_halt_or_skip_the_wave_bake() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.command(CommandKind::Promote, Some("first"), None);
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") != WavePhase::Running);
    assert_eq!(run.wave("first"), WavePhase::Halted, "an early promote must not accept a later failure");

    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.command(CommandKind::Promote, None, None);
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Complete);
    let baking =
        run.audit.iter().find(|r| matches!(r.event, AuditEvent::Wave { to: WavePhase::Baking, .. })).unwrap().at;
    let complete =
        run.audit.iter().find(|r| matches!(r.event, AuditEvent::Wave { to: WavePhase::Complete, .. })).unwrap().at;
    assert_eq!(complete - baking, mins(5), "the wave still bakes its 5m");
}

#[test]
fn on_failure_pause_keeps_traffic_and_freezes_the_region_until_retry() {
    let mut run = Rollout::new(mk_two_waves("  onFailure: pause\n"), t0());
    run.run_until(t0() + mins(3), |r| r.unit("b", "signin").percent == 50);
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.now += TimeDelta::seconds(30);
    let d = run.tick();
    assert!(d.actions.iter().all(|Action::SetTraffic { region, .. }| region != "b"));
    let b = run.unit("b", "signin");
    assert_eq!((b.phase, b.percent), (UnitPhase::Failed, 50));
    run.verdicts.clear();
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.unit("b", "signin").percent, 50);
    assert_eq!(run.unit("b", "store").percent, 0);
    assert_eq!(run.wave("first"), WavePhase::Halted);
    run.command(CommandKind::Retry, Some("first"), None);
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::Progressing);
    let done = run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete);
    assert!(done);
    // Retry resumed from the held step, it did not drop to 0.
    assert_eq!(run.raises("b", "signin").iter().map(|r| r.1).collect::<Vec<_>>(), vec![10, 50, 100]);
}

#[test]
fn failure_limit_counts_consecutive_failing_evaluations_only() {
    let plan = mk_plan(&format!("{TWO_WAVES}{}", mk_health("        failureLimit: 3\n")));
    let mut run = Rollout::new(plan, t0());
    run.tick();
    let bad = |run: &Rollout, v| mk_sample("a", "signin", "errors", v, run.now);
    for _ in 0..2 {
        run.now += TimeDelta::seconds(30);
        let s = bad(&run, HealthVerdict::Unhealthy);
        run.decide_with(&[s], &[], &[]);
    }
    assert_eq!(run.unit("a", "signin").checks[0].consecutive_failures, 2);
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::Progressing);
    run.now += TimeDelta::seconds(30);
    let s = bad(&run, HealthVerdict::Healthy);
    run.decide_with(&[s], &[], &[]);
    assert_eq!(run.unit("a", "signin").checks[0].consecutive_failures, 0);
    for k in 0..3 {
        run.now += TimeDelta::seconds(30);
        let s = bad(&run, HealthVerdict::Unhealthy);
        run.decide_with(&[s], &[], &[]);
        let phase = run.unit("a", "signin").phase;
        assert_eq!(phase == UnitPhase::RolledBack, k == 2, "after {} failures: {phase}", k + 1);
    }
    // A repeated (not newer) sample does not count twice.
    let plan = mk_plan(&format!("{TWO_WAVES}{}", mk_health("        failureLimit: 2\n")));
    let mut run = Rollout::new(plan, t0());
    run.tick();
    run.now += TimeDelta::seconds(30);
    let s = bad(&run, HealthVerdict::Unhealthy);
    run.decide_with(std::slice::from_ref(&s), &[], &[]);
    run.now += TimeDelta::seconds(30);
    run.decide_with(&[s], &[], &[]);
    assert_eq!(run.unit("a", "signin").checks[0].consecutive_failures, 1);
}

#[test]
fn no_data_hold_waits_without_failing() {
    let plan = mk_plan(&format!("{TWO_WAVES}{}", mk_health("        noData: hold\n")));
    let mut run = Rollout::new(plan, t0());
    run.verdicts.insert("a".into(), HealthVerdict::NoData);
    run.verdicts.insert("b".into(), HealthVerdict::Error);
    run.silent.push("c".into());
    run.run_for(TimeDelta::hours(1));
    for r in ["a", "b", "c"] {
        let u = run.unit(r, "signin");
        assert_eq!((u.phase, u.percent), (UnitPhase::Progressing, 10), "{r}");
        assert!(
            matches!(&u.waiting, Some(WaitReason::Health { checks }) if checks == &["errors"]),
            "{r}: {:?}",
            u.waiting
        );
    }
    // Data comes back: they advance.
    run.verdicts.clear();
    run.silent.clear();
    run.run_for(mins(5));
    assert!(["a", "b", "c"].iter().all(|r| run.unit(r, "signin").percent == 100));
}

#[test]
fn no_data_fail_counts_as_a_failing_evaluation() {
    let plan = mk_plan(&format!("{TWO_WAVES}{}", mk_health("        noData: fail\n        failureLimit: 2\n")));
    let mut run = Rollout::new(plan, t0());
    run.verdicts.insert("a".into(), HealthVerdict::NoData);
    run.verdicts.insert("b".into(), HealthVerdict::Error);
    run.run_for(mins(2));
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::RolledBack);
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::RolledBack);
    assert_eq!(run.unit("c", "signin").percent, 100);
}

#[test]
fn no_data_ignore_leaves_the_check_out_but_never_ignores_an_unhealthy_verdict() {
    let plan = mk_plan(&format!("{TWO_WAVES}{}", mk_health("        noData: ignore\n        failureLimit: 3\n")));
    let mut run = Rollout::new(plan.clone(), t0());
    run.verdicts.insert("a".into(), HealthVerdict::NoData);
    run.silent.push("b".into());
    run.run_for(mins(10));
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::Enabled);
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::Enabled);

    // One unhealthy evaluation (below failureLimit) and then silence: it must not advance.
    let mut run = Rollout::new(plan, t0());
    run.tick();
    run.now += TimeDelta::seconds(30);
    let s = mk_sample("a", "signin", "errors", HealthVerdict::Unhealthy, run.now);
    run.decide_with(&[s], &[], &[]);
    run.silent.push("a".into());
    run.run_for(mins(10));
    let u = run.unit("a", "signin");
    assert_eq!((u.phase, u.percent), (UnitPhase::Progressing, 10));
}

#[test]
fn stale_healthy_data_never_advances() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    // Healthy, but measured before... and then nothing newer for more than 3 intervals.
    run.now += TimeDelta::seconds(30);
    let s = mk_sample("a", "signin", "errors", HealthVerdict::Healthy, run.now);
    run.decide_with(&[s], &[], &[]);
    run.now += mins(2);
    run.decide_with(&[], &[], &[]);
    assert_eq!(run.unit("a", "signin").percent, 10);
    assert!(matches!(run.unit("a", "signin").waiting, Some(WaitReason::Health { .. })));
    // A sample dated in the past beyond the staleness limit does not help either.
    let old = mk_sample("a", "signin", "errors", HealthVerdict::Healthy, run.now - mins(2));
    run.decide_with(&[old], &[], &[]);
    assert_eq!(run.unit("a", "signin").percent, 10);
    // A sample dated in the future is not taken for a measurement after the hold began.
    let mut run = Rollout::new(mk_two_waves(""), t0());
    let future = mk_sample("a", "signin", "errors", HealthVerdict::Healthy, t0() + mins(5));
    run.decide_with(&[future], &[], &[]);
    run.now = t0() + mins(1);
    run.decide_with(&[], &[], &[]);
    run.now = t0() + mins(2);
    run.decide_with(&[], &[], &[]);
    assert_eq!(run.unit("a", "signin").percent, 10);
}

// ----- approvals -----

const GATED: &str = r#"
  services:
    - name: signin
  regions:
    - name: us
    - name: jp
      approvals: [jp-regulator]
  waves:
    - name: all
      regions: [us, jp]
  steps: [10, 50, 100]
  stepBake: 2m
"#;

fn mk_gated(policy: &str) -> Plan {
    mk_plan(&format!("{GATED}  onApprovalRevoked: {policy}\n{}", mk_health("")))
}

/// The gated plan with an `approvalPolicies` entry for jp-regulator.
fn mk_gated_with_policy(policy: &str) -> Plan {
    mk_plan(&format!("{GATED}  approvalPolicies:\n    - {{flag: jp-regulator, {policy}}}\n{}", mk_health("")))
}

fn signing_key(seed: u8) -> meridian_core::signing::SecretKey {
    meridian_core::signing::SecretKey::from_seed([seed; 32])
}

#[test]
fn a_signed_flag_counts_only_approvals_signed_by_its_keys() {
    use meridian_core::approval::ApprovalProblem;
    let liaison = signing_key(1);
    let plan = mk_gated_with_policy(&format!("signedBy: [{{name: liaison, publicKey: '{}'}}]", liaison.public_key()));
    let mut run = Rollout::new(plan, t0());
    // Unsigned, then signed by a key the plan does not list: jp waits, saying why.
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    run.run_for(mins(10));
    assert_eq!(run.unit("jp", "signin").percent, 0);
    let reason = run.unit("jp", "signin").waiting.clone().unwrap();
    assert!(matches!(&reason, WaitReason::Approval { problem: ApprovalProblem::Untrusted { .. }, .. }), "{reason:?}");
    assert_eq!(
        reason.to_string(),
        "approval jp-regulator (jp-1) does not count: it is not signed, and flag \"jp-regulator\" requires a \
         signature by one of: liaison"
    );
    let mut forged = mk_approval("jp-2", "jp-regulator", t0());
    forged.signature = Some(meridian_core::signing::sign(&forged, "liaison", &signing_key(2)));
    run.approvals.push(forged);
    run.run_for(mins(10));
    assert_eq!(run.unit("jp", "signin").percent, 0, "a signature by another key under a trusted name");
    // Signed by the liaison, but replayed under another name: still nothing.
    let mut signed = mk_approval("jp-3", "jp-regulator", t0());
    signed.signature = Some(meridian_core::signing::sign(&signed, "liaison", &liaison));
    run.approvals.push(ApprovalRecord { name: "jp-4".into(), ..signed.clone() });
    run.run_for(mins(10));
    assert_eq!(run.unit("jp", "signin").percent, 0, "a replay under another name");
    // The real one: jp starts, and the step names it as evidence.
    run.approvals.push(signed);
    run.run_until(run.now + mins(10), |r| r.unit("jp", "signin").percent > 0);
    assert_eq!(run.unit("jp", "signin").percent, 10);
    let started = run.audit.iter().rev().find(|r| r.region.as_deref() == Some("jp")).unwrap();
    assert!(
        matches!(&started.cause, Cause::Started { approvals, .. } if approvals == &["jp-3".to_string()]),
        "{started:?}"
    );
}

#[test]
fn two_person_rule_needs_two_distinct_grantors() {
    use meridian_core::approval::ApprovalProblem;
    let mut run = Rollout::new(mk_gated_with_policy("requires: 2"), t0());
    let by =
        |name: &str, who: &str| ApprovalRecord { granted_by: who.into(), ..mk_approval(name, "jp-regulator", t0()) };
    run.approvals.push(by("jp-ministry", "ministry"));
    // The same grantor twice (entered once by a token for them, once by a file) counts once.
    run.approvals.push(by("jp-ministry-again", "Ministry (via alice)"));
    run.run_for(mins(10));
    let jp = run.unit("jp", "signin");
    assert_eq!(jp.percent, 0);
    let reason = jp.waiting.clone().unwrap();
    assert!(
        matches!(&reason, WaitReason::Approval { problem: ApprovalProblem::TooFewGrantors { required: 2, .. }, .. }),
        "{reason:?}"
    );
    assert_eq!(
        reason.to_string(),
        "waiting for approval jp-regulator: 1 of 2 grantors (ministry); still needed: 1 more distinct grantor"
    );
    run.approvals.push(by("jp-compliance", "compliance officer"));
    run.run_until(run.now + mins(10), |r| r.unit("jp", "signin").percent > 0);
    let started = run.audit.iter().rev().find(|r| r.region.as_deref() == Some("jp")).unwrap();
    assert!(
        matches!(&started.cause, Cause::Started { approvals, .. } if approvals == &["jp-compliance".to_string(), "jp-ministry".to_string()]),
        "{started:?}"
    );
    // One of the two revoked: the unit is held (onApprovalRevoked: hold by default).
    let now = run.now;
    run.approvals[2].revoked = Some(RevokedInfo { at: now, by: "compliance".into(), reason: None });
    run.run_for(mins(30));
    let jp = run.unit("jp", "signin");
    assert!(jp.percent > 0 && jp.percent < 100, "{jp:?}");
    assert!(matches!(&jp.waiting, Some(WaitReason::Approval { problem: ApprovalProblem::TooFewGrantors { .. }, .. })));
}

#[test]
fn a_signed_two_person_flag_tells_grantors_apart_by_key_and_names_the_missing_one() {
    use meridian_core::approval::ApprovalProblem;
    let (liaison, compliance) = (signing_key(1), signing_key(3));
    let plan = mk_gated_with_policy(&format!(
        "requires: 2, signedBy: [{{name: liaison, publicKey: '{}'}}, {{name: compliance, publicKey: '{}'}}]",
        liaison.public_key(),
        compliance.public_key()
    ));
    let mut run = Rollout::new(plan, t0());
    // One key signing twice under two grantedBy names is still one grantor.
    for (name, who) in [("jp-a", "ministry"), ("jp-b", "compliance officer")] {
        let mut a = ApprovalRecord { granted_by: who.into(), ..mk_approval(name, "jp-regulator", t0()) };
        a.signature = Some(meridian_core::signing::sign(&a, "liaison", &liaison));
        run.approvals.push(a);
    }
    run.run_for(mins(10));
    let reason = run.unit("jp", "signin").waiting.clone().unwrap();
    assert!(matches!(&reason, WaitReason::Approval { problem: ApprovalProblem::TooFewGrantors { .. }, .. }));
    assert_eq!(
        reason.to_string(),
        "waiting for approval jp-regulator: 1 of 2 grantors (ministry); still needed: 1 more distinct grantor, \
         signing with compliance"
    );
    let mut a = ApprovalRecord { granted_by: "compliance officer".into(), ..mk_approval("jp-c", "jp-regulator", t0()) };
    a.signature = Some(meridian_core::signing::sign(&a, "compliance", &compliance));
    run.approvals.push(a);
    assert!(run.run_until(run.now + mins(10), |r| r.unit("jp", "signin").percent > 0));
}

/// Revoke the first approval at `now`.
fn revoke(run: &mut Rollout) {
    let at = run.now;
    run.approvals[0].revoked = Some(RevokedInfo { at, by: "ministry".into(), reason: Some("review".into()) });
}

#[test]
fn a_revoked_approval_with_hold_keeps_traffic_and_takes_no_further_step() {
    let mut run = Rollout::new(mk_gated("hold"), t0());
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    run.run_until(t0() + mins(10), |r| r.unit("jp", "signin").percent == 50);
    revoke(&mut run);
    run.run_for(TimeDelta::hours(1));
    let jp = run.unit("jp", "signin");
    assert_eq!((jp.phase, jp.percent), (UnitPhase::Progressing, 50));
    assert!(
        matches!(&jp.waiting, Some(WaitReason::Approval { flag, problem: meridian_core::approval::ApprovalProblem::Revoked { .. } }) if flag == "jp-regulator")
    );
    let lost: Vec<_> = run.audit.iter().filter(|r| matches!(r.cause, Cause::ApprovalLost { .. })).collect();
    assert_eq!(lost.len(), 1, "recorded once, not at every decision");
    assert_eq!(run.wave("all"), WavePhase::Running);
    assert!(run.region_enabled("us"));

    // An operator pause on top of the hold does not re-audit the loss either.
    run.command(CommandKind::Pause, None, Some("jp"));
    run.run_for(mins(10));
    run.command(CommandKind::Resume, None, Some("jp"));
    run.run_for(mins(10));
    let lost = run.audit.iter().filter(|r| matches!(r.cause, Cause::ApprovalLost { .. })).count();
    assert_eq!(lost, 1);
    assert_eq!(run.unit("jp", "signin").percent, 50);

    // A new approval: it continues from where it held, and the restoration is audited once
    // with the approval now in force.
    run.approvals.push(mk_approval("jp-2", "jp-regulator", run.now));
    run.run_until(run.now + mins(10), |r| r.region_enabled("jp"));
    assert_eq!(run.raises("jp", "signin").iter().map(|r| r.1).collect::<Vec<_>>(), vec![10, 50, 100]);
    let restored: Vec<_> = run.audit.iter().filter(|r| matches!(r.cause, Cause::ApprovalRestored { .. })).collect();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].cause, Cause::ApprovalRestored { approvals: vec!["jp-2".into()] });
}

#[test]
fn a_lost_approval_under_disable_reopens_a_baking_wave_which_bakes_anew() {
    let plan = mk_plan(&format!(
        "{}  onApprovalRevoked: disable\n{}",
        GATED.replace("regions: [us, jp]", "regions: [us, jp]\n      bake: 30m"),
        mk_health("")
    ));
    let mut run = Rollout::new(plan, t0());
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    assert!(run.run_until(t0() + mins(30), |r| r.wave("all") == WavePhase::Baking));
    revoke(&mut run);
    run.tick();
    assert_eq!(run.unit("jp", "signin").percent, 0);
    assert_eq!(run.wave("all"), WavePhase::Running);
    assert!(run.audit.iter().any(|r| r.cause == Cause::WaveReopened { regions: vec!["jp".into()] }));
    run.run_for(TimeDelta::hours(2));
    assert_eq!(run.wave("all"), WavePhase::Running, "not without jp");
    run.approvals.push(mk_approval("jp-2", "jp-regulator", run.now));
    let regranted = run.now;
    assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.wave("all") == WavePhase::Complete));
    let enabled = run.raises("jp", "signin").last().unwrap().0 + mins(2);
    assert!(run.now >= enabled + mins(30), "the wave bakes its 30m again after {regranted}");
}

#[test]
fn a_failed_unit_losing_its_approval_under_disable_is_rolled_back_and_its_region_stays_failed() {
    let plan = mk_plan(&format!("{GATED}  onApprovalRevoked: disable\n  onFailure: pause\n{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    run.verdicts.insert("jp".into(), HealthVerdict::Unhealthy);
    run.run_until(t0() + mins(5), |r| r.unit("jp", "signin").phase == UnitPhase::Failed);
    assert_eq!(run.unit("jp", "signin").percent, 10);
    revoke(&mut run);
    run.tick();
    let jp = run.unit("jp", "signin");
    assert_eq!((jp.phase, jp.percent), (UnitPhase::RolledBack, 0));
    run.verdicts.clear();
    run.approvals.push(mk_approval("jp-2", "jp-regulator", run.now));
    run.run_for(mins(30));
    assert_eq!(run.unit("jp", "signin").percent, 0, "still failed: needs a retry");
    assert_eq!(run.wave("all"), WavePhase::Halted);
    run.command(CommandKind::Retry, None, Some("jp"));
    assert!(run.run_until(run.now + mins(30), |r| r.wave("all") == WavePhase::Complete));
}

#[test]
fn a_revoked_approval_with_disable_sets_traffic_to_zero_and_restarts_after_a_new_grant() {
    let mut run = Rollout::new(mk_gated("disable"), t0());
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    run.run_until(t0() + mins(10), |r| r.unit("jp", "signin").percent == 50);
    revoke(&mut run);
    let d = run.tick();
    assert!(d.actions.contains(&Action::SetTraffic {
        region: "jp".into(),
        service: "signin".into(),
        percent: 0,
        from: 50
    }));
    run.run_for(TimeDelta::hours(1));
    let jp = run.unit("jp", "signin");
    assert_eq!((jp.phase, jp.percent), (UnitPhase::Blocked, 0));
    run.approvals.push(mk_approval("jp-2", "jp-regulator", run.now));
    run.run_until(run.now + mins(10), |r| r.region_enabled("jp"));
    assert_eq!(run.raises("jp", "signin").iter().map(|r| r.1).collect::<Vec<_>>(), vec![10, 50, 10, 50, 100]);
}

#[test]
fn an_approval_expiring_mid_flight_applies_the_policy_at_its_expiry() {
    for policy in ["hold", "disable"] {
        let mut run = Rollout::new(mk_gated(policy), t0());
        let expires = t0() + mins(3) + TimeDelta::seconds(7);
        let mut a = mk_approval("jp-1", "jp-regulator", t0());
        a.expires = Some(expires);
        run.approvals.push(a);
        run.tick();
        // The engine asks to be woken exactly at the expiry.
        let mut wakes = Vec::new();
        while run.now < expires {
            run.tick();
            wakes.push(run.wake_at);
            run.now = run.wake_at.unwrap().min(run.now + TimeDelta::seconds(30));
        }
        assert!(wakes.contains(&Some(expires)), "{policy}: {wakes:?}");
        assert_eq!(run.now, expires);
        let before = run.unit("jp", "signin").percent;
        assert_eq!(before, 50);
        run.tick();
        let jp = run.unit("jp", "signin");
        let expected = if policy == "hold" { 50 } else { 0 };
        assert_eq!(jp.percent, expected, "{policy}");
        assert!(matches!(
            &jp.waiting,
            Some(WaitReason::Approval { problem: meridian_core::approval::ApprovalProblem::Expired { .. }, .. })
        ));
        run.run_for(TimeDelta::hours(1));
        assert_eq!(run.unit("jp", "signin").percent, expected, "{policy}");
    }
}

#[test]
fn a_wave_with_a_lost_approval_does_not_complete() {
    let plan = mk_plan(
        &format!("{GATED}  onApprovalRevoked: hold\n{}", mk_health(""))
            .replace("regions: [us, jp]", "regions: [us, jp]\n      bake: 5m\n    - name: later\n      regions: [eu]")
            .replace("    - name: jp\n", "    - name: eu\n    - name: jp\n"),
    );
    let mut run = Rollout::new(plan, t0());
    run.approvals.push(mk_approval("jp-1", "jp-regulator", t0()));
    run.run_until(t0() + mins(30), |r| r.region_enabled("jp"));
    revoke(&mut run);
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.unit("jp", "signin").percent, 100);
    assert_ne!(run.wave("all"), WavePhase::Complete);
    assert_eq!(run.region_percents("eu"), vec![0]);
}

#[test]
fn an_approval_scoped_to_one_service_gates_the_others() {
    let mut run = Rollout::new(mk_plan(&format!("{RESTORATION}{}", mk_health(""))), t0());
    run.approvals.push(mk_approval("ops", "ops-go", t0()));
    let mut jp = mk_approval("jp-1", "jp-regulator", t0());
    jp.scope.services = vec!["signin".into(), "store".into()];
    run.approvals.push(jp);
    run.run_for(TimeDelta::hours(3));
    assert!(run.unit("jp", "store").phase == UnitPhase::Enabled);
    let music = run.unit("jp", "music");
    assert_eq!(music.percent, 0);
    assert!(matches!(
        &music.waiting,
        Some(WaitReason::Approval { problem: meridian_core::approval::ApprovalProblem::OutOfScope { .. }, .. })
    ));
}

#[test]
fn a_rolled_back_region_starts_nothing_new_until_retried() {
    // music is held by an approval scoped to other services; signin then fails and the region
    // is rolled back. Granting music's approval later must not start it in the failed region.
    let mut run = Rollout::new(mk_plan(&format!("{RESTORATION}{}", mk_health(""))), t0());
    run.approvals.push(mk_approval("ops", "ops-go", t0()));
    let mut jp = mk_approval("jp-1", "jp-regulator", t0());
    jp.scope.services = vec!["signin".into(), "store".into()];
    run.approvals.push(jp);
    run.run_until(t0() + TimeDelta::hours(2), |r| r.unit("jp", "store").percent == 10);
    run.verdicts.insert("jp".into(), HealthVerdict::Unhealthy);
    run.now += TimeDelta::seconds(30);
    run.tick();
    assert_eq!(run.region_percents("jp"), vec![0, 0, 0]);
    run.verdicts.clear();
    run.approvals.push(mk_approval("jp-music", "jp-regulator", run.now));
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.region_percents("jp"), vec![0, 0, 0]);
    assert!(matches!(run.unit("jp", "music").waiting, Some(WaitReason::RegionFailed { .. })));
}

// ----- windows -----

#[test]
fn a_window_closing_mid_rollout_holds_the_unit_until_the_next_opening() {
    let plan = mk_plan(&format!(
        "{}  windows:\n    - from: \"09:00\"\n      to: \"10:00\"\n{}",
        GATED.replace("stepBake: 2m", "stepBake: 20m").replace("steps: [10, 50, 100]", "steps: [1, 10, 50, 100]"),
        mk_health("")
    ));
    let start = t0() + TimeDelta::hours(9) + mins(30);
    let mut run = Rollout::new(plan, t0());
    // Before the window: blocked, and woken exactly when it opens.
    run.tick();
    assert_eq!(
        run.unit("us", "signin").waiting,
        Some(WaitReason::Window { opens_at: Some(t0() + TimeDelta::hours(9)) })
    );
    assert_eq!(run.wake_at, Some(t0() + TimeDelta::hours(9)));
    run.now = start;
    run.run_for(TimeDelta::hours(1));
    let next_open = t0() + TimeDelta::hours(24 + 9);
    let us = run.unit("us", "signin");
    assert_eq!(us.percent, 10);
    assert_eq!(us.waiting, Some(WaitReason::Window { opens_at: Some(next_open) }));
    assert_eq!(run.wake_at, Some(next_open));
    run.run_until(next_open + TimeDelta::hours(2), |r| r.unit("us", "signin").phase == UnitPhase::Enabled);
    let raises = run.raises("us", "signin");
    assert_eq!(
        raises,
        vec![(start, 1), (start + mins(20), 10), (next_open, 50), (next_open + mins(20), 100)],
        "enabling at 100 needs no window, starting a step does"
    );
}

/// Steps held an hour, in a one-hour morning window: one step a day, across spring-forward.
fn dst_plan(tz: &str) -> Plan {
    mk_plan(&format!(
        r#"
  services:
    - name: signin
  regions:
    - name: r
      timezone: {tz}
  waves:
    - name: w
      regions: [r]
  steps: [10, 50, 100]
  stepBake: 1h
  windows:
    - from: "09:00"
      to: "10:00"
  health:
    interval: 5m
    checks:
      - name: errors
        prometheus: {{ query: 'x' }}
        max: 0.01
"#
    ))
}

#[test]
fn windows_follow_local_time_across_the_spring_forward_change() {
    // New York springs forward on Sunday 2026-03-08: 09:00 is 14:00 UTC before, 13:00 after.
    let plan = dst_plan("America/New_York");
    let mut run = Rollout::new(plan, utc(2026, 3, 7, 0, 0));
    run.tick();
    assert_eq!(run.wake_at, Some(utc(2026, 3, 7, 14, 0)));
    // Each step starts inside the morning window and holds an hour, so the window has closed
    // when it has baked: 10 % on Saturday 09:00 EST, 50 % on Sunday 09:00 EDT (one hour
    // earlier in UTC), 100 % on Monday 09:00 EDT, enabled an hour later (no window needed).
    run.run_until(utc(2026, 3, 11, 0, 0), |r| r.unit("r", "signin").phase == UnitPhase::Enabled);
    assert_eq!(
        run.raises("r", "signin"),
        vec![(utc(2026, 3, 7, 14, 0), 10), (utc(2026, 3, 8, 13, 0), 50), (utc(2026, 3, 9, 13, 0), 100)]
    );
    assert_eq!(run.unit("r", "signin").since, Some(utc(2026, 3, 9, 14, 0)));
    // Berlin springs forward on Sunday 2026-03-29: 09:00 is 08:00 UTC before, 07:00 after.
    let mut run = Rollout::new(dst_plan("Europe/Berlin"), utc(2026, 3, 28, 0, 0));
    run.run_until(utc(2026, 4, 1, 0, 0), |r| r.unit("r", "signin").phase == UnitPhase::Enabled);
    assert_eq!(
        run.raises("r", "signin"),
        vec![(utc(2026, 3, 28, 8, 0), 10), (utc(2026, 3, 29, 7, 0), 50), (utc(2026, 3, 30, 7, 0), 100)]
    );
}

// ----- operator commands -----

#[test]
fn pause_and_resume_plan_wide_hold_every_unit_where_it_is() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.run_until(t0() + mins(3), |r| r.unit("a", "signin").percent == 50);
    let d = run.command(CommandKind::Pause, None, None);
    assert!(d.actions.is_empty());
    assert_eq!(run.state.phase(), PlanPhase::Paused);
    let held: Vec<u32> = run.state.units.iter().map(|u| u.percent).collect();
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.state.units.iter().map(|u| u.percent).collect::<Vec<_>>(), held);
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::Paused);
    assert!(matches!(&run.unit("a", "store").waiting, Some(WaitReason::Paused { scope }) if scope == "plan"));
    run.command(CommandKind::Resume, None, None);
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::Progressing);
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete));
}

#[test]
fn pause_scoped_to_a_region_or_a_wave_holds_only_that_scope() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.command(CommandKind::Pause, None, Some("b"));
    run.run_for(mins(30));
    assert!(run.region_enabled("a") && run.region_enabled("c"));
    assert_eq!(run.unit("b", "signin").percent, 10);
    assert_ne!(run.wave("first"), WavePhase::Complete);
    run.command(CommandKind::Resume, None, Some("b"));
    run.command(CommandKind::Pause, Some("second"), None);
    run.run_for(TimeDelta::hours(1));
    assert_eq!(run.wave("first"), WavePhase::Complete);
    assert_eq!(run.region_percents("d"), vec![0, 0]);
    assert!(matches!(&run.unit("d", "signin").waiting, Some(WaitReason::Paused { scope }) if scope == "wave second"));
    run.command(CommandKind::Resume, Some("second"), None);
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete));
}

#[test]
fn abort_plan_wide_rolls_back_everything_not_enabled() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.run_until(t0() + mins(10), |r| r.unit("a", "signin").phase == UnitPhase::Enabled);
    let d = run.command(CommandKind::Abort, None, None);
    assert_eq!(run.state.phase(), PlanPhase::Aborted);
    assert_eq!(run.unit("a", "signin").percent, 100, "enabled units stay");
    assert!(run.state.units.iter().all(|u| u.phase == UnitPhase::Enabled || u.percent == 0));
    assert!(!d.actions.is_empty());
    run.run_for(TimeDelta::hours(2));
    assert_eq!(run.region_percents("d"), vec![0, 0]);
    assert!(run.state.units.iter().all(|u| u.phase == UnitPhase::Enabled || u.percent == 0));
}

#[test]
fn abort_of_a_region_rolls_it_back_and_the_wave_completes_without_it() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.command(CommandKind::Abort, None, Some("b"));
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    assert!(run.run_until(t0() + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete), "{:#?}", run.state);
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    assert_eq!(run.unit("b", "store").waiting, Some(WaitReason::Aborted));
    // A retry does not bring an aborted region back.
    run.command(CommandKind::Retry, None, Some("b"));
    run.run_for(mins(30));
    assert_eq!(run.region_percents("b"), vec![0, 0]);
}

#[test]
fn abort_of_a_wave_leaves_it_out_and_the_next_wave_still_runs() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.run_until(t0() + mins(3), |r| r.unit("a", "signin").percent == 50);
    run.command(CommandKind::Abort, Some("first"), None);
    for r in ["a", "b", "c"] {
        assert_eq!(run.region_percents(r), vec![0, 0]);
    }
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete));
    assert!(run.region_enabled("d"));
    assert_eq!(run.region_percents("a"), vec![0, 0]);
}

#[test]
fn retry_plan_wide_restarts_every_failed_region() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    run.verdicts.insert("c".into(), HealthVerdict::Unhealthy);
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted);
    assert_eq!(run.wave("first"), WavePhase::Halted);
    assert!(run.region_enabled("b"));
    run.verdicts.clear();
    run.command(CommandKind::Retry, None, None);
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete));
}

#[test]
fn promote_skips_a_step_bake_but_never_health() {
    let plan = mk_plan(&TWO_WAVES.replace("stepBake: 1m", "stepBake: 1h").add_health());
    let mut run = Rollout::new(plan, t0());
    run.tick();
    // No health data yet: a promote does not advance.
    run.now += TimeDelta::seconds(10);
    run.command(CommandKind::Promote, None, Some("a"));
    assert_eq!(run.unit("a", "signin").percent, 10);
    // With fresh healthy data after the step began, the promoted unit moves, once.
    run.now += TimeDelta::seconds(20);
    let d = run.tick();
    assert_eq!(run.unit("a", "signin").percent, 50, "{:?}", d.audit);
    assert_eq!(run.unit("b", "signin").percent, 10, "not in scope");
    run.now += TimeDelta::seconds(30);
    run.tick();
    assert_eq!(run.unit("a", "signin").percent, 50, "a promote skips one bake only");
    let promoted = run.audit.iter().any(|r| matches!(r.cause, Cause::Advanced { promoted: true, .. }));
    assert!(promoted);
}

#[test]
fn promote_of_a_baking_wave_skips_its_bake() {
    let plan = mk_plan(&TWO_WAVES.replace("bake: 5m", "bake: 2h").add_health());
    let mut run = Rollout::new(plan, t0());
    run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Baking);
    run.command(CommandKind::Promote, Some("first"), None);
    assert_eq!(run.wave("first"), WavePhase::Complete);
    assert!(run.audit.iter().any(|r| matches!(r.cause, Cause::WaveBaked { promoted: true, .. })));
}

trait AddHealth {
    fn add_health(self) -> String;
}

impl AddHealth for String {
    fn add_health(self) -> String {
        self + &mk_health("")
    }
}

// ----- parallelism -----

#[test]
fn max_parallel_limits_regions_in_progress_and_the_next_starts_as_soon_as_one_finishes() {
    let plan = mk_plan(&TWO_WAVES.replace("bake: 5m", "bake: 5m\n      maxParallel: 1").add_health());
    let mut run = Rollout::new(plan, t0());
    run.tick();
    assert_eq!(run.unit("a", "signin").percent, 10);
    assert!(
        matches!(&run.unit("b", "signin").waiting, Some(WaitReason::Parallelism { limit: 1, active }) if active[..] == ["a"])
    );
    assert!(run.run_until(t0() + TimeDelta::hours(2), |r| r.region_enabled("a")));
    let enabled_at = run.now;
    // b starts in the very decision that enabled a (nothing else would wake the engine).
    assert_eq!(run.unit("b", "signin").percent, 10, "{:?}", run.unit("b", "signin"));
    assert_eq!(run.raises("b", "signin")[0].0, enabled_at);
    assert!(run.run_until(t0() + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete));
    // At no time were two regions of the wave in progress.
    let mut starts: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for r in ["a", "b", "c"] {
        let first = run.raises(r, "signin")[0].0;
        let done = run
            .records_for(r)
            .into_iter()
            .filter(|x| matches!(x.event, AuditEvent::Unit { to: UnitPhase::Enabled, .. }))
            .map(|x| x.at)
            .max()
            .unwrap();
        starts.push((first, done));
    }
    assert!(starts[0].1 <= starts[1].0 && starts[1].1 <= starts[2].0, "{starts:?}");
}

#[test]
fn a_retried_paused_failure_does_not_exceed_max_parallel() {
    let plan = mk_plan(
        &TWO_WAVES
            .replace("bake: 5m", "bake: 5m\n      maxParallel: 1")
            .replace("stepBake: 1m", "stepBake: 1m\n  onFailure: pause")
            .add_health(),
    );
    let mut run = Rollout::new(plan, t0());
    run.tick();
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    run.run_for(mins(1));
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::Failed);
    run.verdicts.clear();
    run.run_for(mins(5));
    run.command(CommandKind::Retry, None, Some("a"));
    run.run_for(mins(1));
    let in_progress = ["a", "b", "c"]
        .iter()
        .filter(|r| {
            let units: Vec<_> = run.state.units.iter().filter(|u| u.region == **r).collect();
            units.iter().any(|u| u.percent > 0) && !units.iter().all(|u| u.phase == UnitPhase::Enabled)
        })
        .count();
    assert!(in_progress <= 1, "{:#?}", run.state.units);
}

// ----- drift -----

#[test]
fn a_traffic_read_back_that_differs_from_state_is_recorded_and_reapplied() {
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.now += TimeDelta::seconds(5);
    let reading = TrafficReading { region: "a".into(), service: "signin".into(), percent: 0 };
    let same = TrafficReading { region: "b".into(), service: "signin".into(), percent: 10 };
    let d = run.decide_with(&[], &[reading, same], &[]);
    assert_eq!(
        d.actions,
        vec![Action::SetTraffic { region: "a".into(), service: "signin".into(), percent: 10, from: 10 }]
    );
    assert!(
        matches!(d.audit.as_slice(), [r] if r.event == AuditEvent::Drift { expected: 10, observed: 0 } && r.cause == Cause::Drift)
    );
    assert_eq!(run.unit("a", "signin").percent, 10);
}

// ----- regional settings: overrides, freezes, labels, plans split across files -----

/// Two regions in one wave; `b` holds each step half an hour instead of the plan's 5m.
const LONG_BAKE: &str = r#"
  services:
    - name: signin
  regions:
    - name: a
    - name: b
      stepBake: 30m
  waves:
    - name: all
      regions: [a, b]
  steps: [10, 50, 100]
  stepBake: 5m
"#;

#[test]
fn a_region_with_longer_bakes_finishes_later_while_the_others_proceed() {
    let plan = mk_plan(&format!("{LONG_BAKE}{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    let done = run.run_until(t0() + TimeDelta::hours(3), |r| r.wave("all") == WavePhase::Complete);
    assert!(done, "{:#?}", run.state);
    // a moves every 5 minutes, b every 30, from the same start; neither waits for the other.
    assert_eq!(run.raises("a", "signin"), vec![(t0(), 10), (t0() + mins(5), 50), (t0() + mins(10), 100)]);
    assert_eq!(run.raises("b", "signin"), vec![(t0(), 10), (t0() + mins(30), 50), (t0() + mins(60), 100)]);
    let enabled_at = |region: &str| {
        run.audit
            .iter()
            .find(|r| {
                r.region.as_deref() == Some(region)
                    && matches!(r.event, AuditEvent::Unit { to: UnitPhase::Enabled, .. })
            })
            .map(|r| r.at)
    };
    assert_eq!(enabled_at("a"), Some(t0() + mins(15)));
    assert_eq!(enabled_at("b"), Some(t0() + mins(90)));
    assert_eq!(run.plan.regions[1].settings.step_bake.to_string(), "30m");
    assert_eq!(run.plan.regions[0].settings.step_bake.to_string(), "5m");
}

#[test]
fn region_overrides_replace_the_plans_values_field_by_field_and_say_where_each_came_from() {
    use meridian_core::manifest::{NoDataPolicy, OnFailure};
    use meridian_core::plan::Origin;
    let plan = mk_plan(
        r#"
  services:
    - name: signin
  regions:
    - name: plain
    - name: tuned
      steps: [5, 50, 100]
      noData: fail
      onFailure: pause
      checks:
        - name: errors
          max: 0.05
        - name: latency
          failureLimit: 4
      actuator:
        log: {}
  waves:
    - name: all
      regions: [plain, tuned]
  stepBake: 1m
  windows:
    - from: "09:00"
      to: "17:00"
  health:
    checks:
      - name: errors
        prometheus: { query: 'x' }
        max: 0.01
        failureLimit: 2
      - name: latency
        prometheus: { query: 'y' }
        max: 0.3
        noData: ignore
  actuator:
    http:
      url: https://control.{{region}}.example.net/{{service}}
"#,
    );
    let (plain, tuned) = (&plan.regions[0].settings, &plan.regions[1].settings);
    assert!(!plain.origins.any_region());
    assert_eq!(plain.steps, vec![1, 10, 50, 100]);
    assert_eq!(tuned.steps, vec![5, 50, 100]);
    assert_eq!(tuned.origins.steps, Origin::Region);
    // Not overridden: the plan's value, said to be the plan's.
    assert_eq!((tuned.step_bake, tuned.origins.step_bake), (plain.step_bake, Origin::Plan));
    assert_eq!((tuned.windows.len(), tuned.origins.windows), (1, Origin::Plan));
    assert_eq!((tuned.on_failure, tuned.origins.on_failure), (OnFailure::Pause, Origin::Region));
    assert_eq!(tuned.actuator, Some(ActuatorSettings::Log));
    assert!(
        matches!(&plain.actuator, Some(ActuatorSettings::Http(h)) if h.url.as_str() == "https://control.{{region}}.example.net/{{service}}")
    );
    // Checks: the region's noData for every check, then each check's own fields on top.
    let (errors, latency) = (&tuned.checks[0], &tuned.checks[1]);
    assert_eq!(
        (errors.max, errors.min, errors.failure_limit, errors.no_data),
        (Some(0.05), None, 2, NoDataPolicy::Fail)
    );
    assert_eq!((latency.max, latency.failure_limit, latency.no_data), (Some(0.3), 4, NoDataPolicy::Fail));
    let o = &tuned.origins.checks;
    assert_eq!(
        (o[0].max, o[0].min, o[0].failure_limit, o[0].no_data),
        (Origin::Region, Origin::Plan, Origin::Plan, Origin::Region)
    );
    assert_eq!((o[1].max, o[1].failure_limit), (Origin::Plan, Origin::Region));
    // The plan's check keeps its own limits, for regions that do not override them.
    assert_eq!((plain.checks[0].max, plain.checks[1].no_data), (Some(0.01), NoDataPolicy::Ignore));
    // The same, as displays receive it.
    let shown = serde_json::to_value(plan.effective_settings(1)).unwrap();
    assert_eq!(shown["steps"], serde_json::json!({"value": [5, 50, 100], "origin": "region"}));
    assert_eq!(shown["stepBake"], serde_json::json!({"value": "1m", "origin": "plan"}));
    assert_eq!(shown["windows"]["value"][0], "every day 09:00-17:00");
    assert_eq!(shown["actuator"], serde_json::json!({"value": "log (dry run)", "origin": "region"}));
    assert_eq!(shown["checks"][0]["max"], serde_json::json!({"value": 0.05, "origin": "region"}));
    assert_eq!(shown["checks"][0]["noData"], serde_json::json!({"value": "fail", "origin": "region"}));
    assert_eq!(shown["checks"][1]["failureLimit"], serde_json::json!({"value": 4, "origin": "region"}));
}

#[test]
fn a_regions_own_failure_limit_and_on_failure_decide_its_fate() {
    let plan = mk_plan(&format!(
        "{}{}",
        LONG_BAKE.replace(
            "      stepBake: 30m\n",
            "      onFailure: pause\n      checks:\n        - {name: errors, failureLimit: 3}\n"
        ),
        mk_health("")
    ));
    let mut run = Rollout::new(plan, t0());
    run.tick();
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.now += TimeDelta::seconds(30);
    run.tick();
    // The plan's failureLimit 1: a is rolled back at once. b allows 3 and holds.
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::RolledBack);
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::Progressing);
    run.now += TimeDelta::seconds(30);
    run.tick();
    run.now += TimeDelta::seconds(30);
    run.tick();
    // Third failing evaluation: b fails, and its own onFailure (pause) keeps its traffic.
    let b = run.unit("b", "signin");
    assert_eq!((b.phase, b.percent), (UnitPhase::Failed, 10));
}

/// New York springs forward on Sunday 2026-03-08. A freeze of that weekend, written for the
/// region in its local days: from Saturday 00:00 EST (05:00 UTC) to Monday 00:00 EDT (04:00
/// UTC, not 05:00).
fn freeze_plan() -> Plan {
    mk_plan(&format!(
        r#"
  services:
    - name: signin
  regions:
    - name: ny
      timezone: America/New_York
      freezes:
        - reason: weekend change freeze
          from: 2026-03-07
          to: 2026-03-08
    - name: eu
      timezone: Europe/Berlin
  waves:
    - name: all
      regions: [ny, eu]
  steps: [10, 50, 100]
  stepBake: 1h
{}"#,
        mk_health("").replace("interval: 30s", "interval: 5m")
    ))
}

#[test]
fn a_freeze_starting_mid_rollout_holds_the_region_at_its_step_and_releases_it_when_it_ends_across_dst() {
    let start = utc(2026, 3, 7, 3, 0); // Friday 22:00 in New York
    let mut run = Rollout::new(freeze_plan(), start);
    run.run_until(utc(2026, 3, 7, 4, 59), |_| false);
    assert_eq!(run.unit("ny", "signin").percent, 50, "50 % at 04:00 UTC, before the freeze");
    // The freeze begins at 05:00 UTC: ny's 50 % bakes at 05:00 but takes no step.
    run.now = utc(2026, 3, 7, 5, 0);
    run.tick();
    let until = utc(2026, 3, 9, 4, 0);
    let ny = run.unit("ny", "signin");
    assert_eq!((ny.phase, ny.percent), (UnitPhase::Progressing, 50));
    assert_eq!(
        ny.waiting,
        Some(WaitReason::Frozen { reason: "weekend change freeze".into(), until: Some(until), name: None })
    );
    assert_eq!(ny.waiting.as_ref().unwrap().to_string(), "frozen (weekend change freeze) until 2026-03-09T04:00:00Z");
    // The freeze is the region's own: eu goes on meanwhile.
    run.run_until(utc(2026, 3, 9, 3, 59), |_| false);
    assert!(run.region_enabled("eu"));
    assert_eq!(run.unit("ny", "signin").percent, 50, "held through the freeze, traffic unchanged");
    assert_eq!(run.wake_at, Some(until), "woken exactly when the freeze ends");
    run.now = until;
    run.run_until(until + TimeDelta::hours(2), |r| r.region_enabled("ny"));
    assert_eq!(
        run.raises("ny", "signin"),
        vec![(start, 10), (utc(2026, 3, 7, 4, 0), 50), (until, 100)],
        "the next step starts when the freeze ends, at local midnight after the clocks changed"
    );
    // Nothing was sent for ny while it was frozen.
    assert!(
        run.actions.iter().all(|(at, Action::SetTraffic { region, .. })| region != "ny"
            || *at <= utc(2026, 3, 7, 4, 0)
            || *at >= until)
    );
}

#[test]
fn a_unit_waiting_to_start_is_blocked_by_a_freeze_with_its_reason() {
    // Saturday noon in New York, inside the freeze: ny does not start; eu does.
    let mut run = Rollout::new(freeze_plan(), utc(2026, 3, 7, 17, 0));
    run.tick();
    let ny = run.unit("ny", "signin");
    assert_eq!((ny.phase, ny.percent), (UnitPhase::Blocked, 0));
    assert!(matches!(&ny.waiting, Some(WaitReason::Frozen { until: Some(u), .. }) if *u == utc(2026, 3, 9, 4, 0)));
    assert_eq!(run.unit("eu", "signin").percent, 10);
    let blocked = run.records_for("ny");
    assert!(
        matches!(blocked.as_slice(), [r] if matches!(&r.cause, Cause::Blocked { waiting: WaitReason::Frozen { .. } })),
        "the block is audited with its reason: {blocked:#?}"
    );
}

#[test]
fn a_run_time_freeze_holds_its_scope_until_unfrozen_and_is_audited() {
    use meridian_core::command::FreezeRequest;
    let mut run = Rollout::new(mk_two_waves(""), t0());
    run.tick();
    run.now += TimeDelta::seconds(30);
    let request = FreezeRequest { name: "incident-4711".into(), reason: "incident 4711".into(), until: None };
    let freeze = Command { region: Some("a".into()), ..Command::freeze(request, "oncall", run.now) };
    let d = run.decide_with(&[], &[], &[freeze]);
    let record = &d.audit[0];
    assert_eq!(record.region.as_deref(), Some("a"));
    assert_eq!(record.event, AuditEvent::Command { command: CommandKind::Freeze, by: "oncall".into() });
    assert!(record.summary().ends_with("a: freeze incident-4711 on region a by oncall: incident 4711, until lifted"));
    assert_eq!(run.state.freezes.len(), 1);
    // a stays at 10 % however long it bakes; b, in the same wave, goes on.
    run.run_for(TimeDelta::minutes(10));
    let a = run.unit("a", "signin");
    assert_eq!(a.percent, 10);
    assert_eq!(
        a.waiting,
        Some(WaitReason::Frozen { reason: "incident 4711".into(), until: None, name: Some("incident-4711".into()) })
    );
    assert!(run.region_enabled("b"));
    // Lifting it lets a move at once.
    let unfreeze = Command::unfreeze(Some("incident-4711".into()), "oncall", run.now);
    let d = run.decide_with(&[], &[], &[unfreeze]);
    assert_eq!(d.audit[0].cause, Cause::FreezeLifted { lifted: vec!["incident-4711".into()], by: "oncall".into() });
    assert!(run.state.freezes.is_empty());
    run.tick();
    assert_eq!(run.unit("a", "signin").percent, 50);
}

#[test]
fn a_run_time_freeze_with_an_end_lifts_itself_and_wakes_the_engine_then() {
    use meridian_core::command::FreezeRequest;
    let mut run = Rollout::new(mk_two_waves(""), t0());
    let until = t0() + mins(20);
    let request = FreezeRequest { name: "plan".into(), reason: "vendor maintenance".into(), until: Some(until) };
    run.decide_with(&[], &[], &[Command::freeze(request, "oncall", t0())]);
    // Nothing starts anywhere, and the engine asks to be woken at the end.
    assert!(run.state.units.iter().all(|u| u.percent == 0));
    assert_eq!(run.wake_at, Some(until));
    assert_eq!(
        run.unit("a", "signin").waiting.as_ref().unwrap().to_string(),
        format!("frozen (vendor maintenance) until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    run.run_until(until - TimeDelta::seconds(1), |_| false);
    assert!(run.state.units.iter().all(|u| u.percent == 0));
    run.now = until;
    run.tick();
    assert!(run.state.freezes.is_empty(), "an ended run-time freeze is dropped from the state");
    assert_eq!(run.unit("a", "signin").percent, 10);
    // An unfreeze with nothing to lift is still audited, saying so.
    let d = run.decide_with(&[], &[], &[Command::unfreeze(None, "oncall", run.now)]);
    assert_eq!(d.audit[0].cause, Cause::FreezeLifted { lifted: vec![], by: "oncall".into() });
}

const SPLIT_BASE: &str = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: { name: split }
spec:
  services:
    - name: signin
  regions:
    - name: us
      labels: {tier: canary}
  waves:
    - name: canary
      regions: [us]
      bake: 10m
    - name: asia
      selector:
        matchLabels: {continent: asia}
  steps: [10, 100]
  stepBake: 5m
  health:
    interval: 30s
    checks:
      - name: errors
        prometheus: { query: 'x' }
        max: 0.01
"#;

fn mk_region_file(name: &str, labels: &str) -> (String, String) {
    (
        format!("config/split/regions/{name}.yaml"),
        format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: Region\nmetadata: {{ name: {name} }}\nspec:\n  plan: split\n  labels: {labels}\n"
        ),
    )
}

fn mk_split(files: &[(String, String)]) -> Plan {
    let mut all = vec![("config/split/plan.yaml".to_string(), SPLIT_BASE.to_string())];
    all.extend(files.iter().cloned());
    let bundle = load(&all, None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    bundle.plans.into_iter().next().expect("one plan")
}

#[test]
fn a_label_selector_wave_picks_up_a_newly_added_region_file() {
    use meridian_core::plan::ChosenBy;
    let jp = mk_region_file("jp", "{continent: asia}");
    let mut run = Rollout::new(mk_split(std::slice::from_ref(&jp)), t0());
    run.run_until(t0() + mins(12), |_| false);
    assert_eq!(run.wave("canary"), WavePhase::Baking);

    // The Korean team adds its file while the canary bakes; nobody edits the base plan.
    let kr = mk_region_file("kr", "{continent: asia}");
    let plan = mk_split(&[jp, kr]);
    let asia = &plan.waves[1];
    let members: Vec<(&str, &ChosenBy)> =
        asia.regions.iter().map(|&r| plan.regions[r].name.as_str()).zip(&asia.chosen_by).collect();
    let by = ChosenBy::Selector("continent=asia".into());
    assert_eq!(members, vec![("jp", &by), ("kr", &by)]);
    assert_eq!(plan.regions[2].defined_at, "config/split/regions/kr.yaml:3");
    run.plan = plan;

    let done = run.run_until(t0() + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete);
    assert!(done, "{:#?}", run.state);
    let canary_done = run
        .audit
        .iter()
        .find(|r| {
            r.wave.as_deref() == Some("canary")
                && r.event == AuditEvent::Wave { from: WavePhase::Baking, to: WavePhase::Complete }
        })
        .map(|r| r.at)
        .unwrap();
    assert_eq!(run.raises("kr", "signin").first().map(|r| r.0), Some(canary_done), "kr starts with its wave");
    assert!(run.region_enabled("kr") && run.region_enabled("jp"));
}

#[test]
fn the_regional_example_validates_clean_and_merges_its_region_files_in_path_order() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/regional");
    let mut files = Vec::new();
    for path in [root.join("plan.yaml")]
        .into_iter()
        .chain(std::fs::read_dir(root.join("regions")).unwrap().map(|e| e.unwrap().path()))
    {
        files.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
    }
    files.sort();
    let bundle = load(&files, Some(t0()));
    assert!(bundle.report.diagnostics.is_empty(), "{:#?}", bundle.report);
    let plan = &bundle.plans[0];
    let names: Vec<&str> = plan.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east", "eu-west", "br", "in-west", "jp"]);
}

// ----- failure budgets -----

/// TWO_WAVES with `maxFailures` on wave `first` (and `extra` plan settings).
fn mk_budget(wave_budget: &str, extra: &str) -> Plan {
    let spec = TWO_WAVES.replace("      bake: 5m\n", &format!("      bake: 5m\n      maxFailures: {wave_budget}\n"));
    mk_plan(&format!("{spec}{extra}{}", mk_health("")))
}

fn budget_records(run: &Rollout) -> Vec<&AuditRecord> {
    run.audit
        .iter()
        .filter(|r| matches!(r.cause, Cause::BudgetConsumed { .. } | Cause::BudgetExceeded { .. }))
        .collect()
}

#[test]
fn a_failure_within_the_wave_budget_lets_the_wave_complete_and_later_waves_run() {
    let mut run = Rollout::new(mk_budget("1", ""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    let done = run.run_until(t0() + TimeDelta::hours(2), |r| r.region_enabled("d"));
    assert!(done, "{:#?}", run.state);
    assert_eq!(run.wave("first"), WavePhase::Complete);
    assert!(!run.audit.iter().any(|r| matches!(r.event, AuditEvent::Wave { to: WavePhase::Halted, .. })));
    // The failure stays visible: the unit, the wave's charges, the audit and the outcome say so.
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::RolledBack);
    assert_eq!(run.state.waves[0].within_budget.iter().map(|c| c.region.as_str()).collect::<Vec<_>>(), ["b"]);
    let records = budget_records(&run);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].region.as_deref(), Some("b"));
    assert_eq!(records[0].wave.as_deref(), Some("first"));
    let Cause::BudgetConsumed { region, budgets } = &records[0].cause else { panic!("{:?}", records[0].cause) };
    assert_eq!(region, "b");
    assert_eq!((budgets[0].budget.as_str(), budgets[0].used, budgets[0].allowed), ("wave first", 1, 1));
    assert_eq!(
        records[0].cause.to_string(),
        "region b failed within its failure budget: wave first maxFailures 1 (1 failed, 1 allowed)"
    );
    let o = outcome(&run.plan, &run.state);
    assert_eq!(o.summary, "complete, 1 region rolled back: b (accepted by maxFailures)");
    assert!(matches!(o.end(None, true), Ok(Some(End::CompleteWithExceptions(_)))), "{:?}", o.end(None, true));

    // And retryable: healed and retried, b reaches 100 % and its charge is released.
    run.verdicts.clear();
    run.command(CommandKind::Retry, None, Some("b"));
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.region_enabled("b")), "{:#?}", run.state);
    assert!(run.state.waves[0].within_budget.is_empty());
    assert_eq!(outcome(&run.plan, &run.state).summary, "complete");
}

#[test]
fn a_failure_past_the_budget_stops_the_wave_at_once_and_starts_no_further_region() {
    // One region at a time: a fails within the budget of 1, b fails past it; c never starts.
    let spec = TWO_WAVES.replace("      bake: 5m\n", "      bake: 5m\n      maxParallel: 1\n      maxFailures: 1\n");
    let mut run = Rollout::new(mk_plan(&format!("{spec}{}", mk_health(""))), t0());
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    let halted = run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted);
    assert!(halted, "{:#?}", run.state);
    let at = run.now;
    run.run_for(TimeDelta::hours(2));
    assert_eq!(run.region_percents("c"), vec![0, 0], "no region starts after the budget is exceeded");
    assert!(run.raises("c", "signin").is_empty());
    assert_eq!(run.wave("second"), WavePhase::Pending);
    assert!(
        matches!(run.unit("c", "signin").waiting, Some(WaitReason::WaveHalted { .. })),
        "{:?}",
        run.unit("c", "signin")
    );
    let records = budget_records(&run);
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(matches!(&records[0].cause, Cause::BudgetConsumed { region, .. } if region == "a"));
    let Cause::BudgetExceeded { region, budget, policy } = &records[1].cause else { panic!("{:?}", records[1]) };
    assert_eq!((region.as_str(), budget.used, budget.allowed), ("b", 2, 1));
    assert_eq!(*policy, meridian_core::manifest::OnBudgetExceeded::Halt);
    assert_eq!(records[1].at, at);
    assert_eq!(records[1].event, AuditEvent::Wave { from: WavePhase::Running, to: WavePhase::Halted });

    // A retry of b brings the failures back within budget: the wave resumes and c starts.
    run.verdicts.remove("b");
    run.command(CommandKind::Retry, None, Some("b"));
    assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.region_enabled("d")), "{:#?}", run.state);
    assert!(run.region_enabled("b") && run.region_enabled("c"));
    assert_eq!(run.unit("a", "signin").phase, UnitPhase::RolledBack, "a stays failed within the budget");
}

#[test]
fn a_percent_budget_counts_the_waves_regions_rounded_down() {
    // 34 % of 3 regions allows 1; 33 % allows none.
    let mut run = Rollout::new(mk_budget("\"34%\"", ""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(2), |r| r.wave("first") == WavePhase::Complete));
    let mut run = Rollout::new(mk_budget("\"33%\"", ""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(2), |r| r.wave("first") == WavePhase::Halted));
}

#[test]
fn the_plan_budget_counts_failures_across_waves() {
    // The plan tolerates one failed region: b's in the first wave, then d's is one too many.
    let mut run = Rollout::new(mk_plan(&format!("{TWO_WAVES}  maxFailures: 1\n{}", mk_health(""))), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    run.verdicts.insert("d".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(3), |r| r.wave("second") == WavePhase::Halted));
    assert_eq!(run.wave("first"), WavePhase::Complete);
    let records = budget_records(&run);
    assert_eq!(records.len(), 2, "{records:#?}");
    let Cause::BudgetExceeded { region, budget, .. } = &records[1].cause else { panic!("{:?}", records[1]) };
    assert_eq!((region.as_str(), budget.budget.as_str(), budget.used), ("d", "plan", 2));
    assert_eq!(run.state.phase(), PlanPhase::Halted);
}

#[test]
fn on_budget_exceeded_abort_aborts_the_rollout() {
    let mut run = Rollout::new(mk_budget("0", "  onBudgetExceeded: abort\n"), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Aborted));
    run.run_for(TimeDelta::hours(1));
    for u in &run.state.units {
        assert!(u.phase == UnitPhase::Enabled || u.percent == 0, "{u:?}");
    }
    let records = budget_records(&run);
    assert!(matches!(
        &records[0].cause,
        Cause::BudgetExceeded { policy: meridian_core::manifest::OnBudgetExceeded::Abort, .. }
    ));
}

#[test]
fn the_story_works_under_a_budget_promote_the_halted_wave_heal_and_retry_to_100() {
    let mut run = Rollout::new(mk_budget("0", ""), t0());
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted));
    // Let the regions already started finish, then the operator accepts b.
    run.run_for(TimeDelta::minutes(30));
    run.command(CommandKind::Promote, Some("first"), None);
    assert_eq!(run.wave("first"), WavePhase::Complete, "{:#?}", run.state.waves);
    assert_eq!(run.state.waves[0].accepted.as_ref().map(|a| a.regions.clone()), Some(vec!["b".to_string()]));
    run.verdicts.clear();
    run.command(CommandKind::Retry, None, Some("b"));
    assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.region_enabled("b")), "{:#?}", run.state);
    assert_eq!(run.region_percents("b"), vec![100, 100]);
    assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete));
}

// ----- progress deadlines -----

fn deadline_records(run: &Rollout) -> Vec<&AuditRecord> {
    run.audit.iter().filter(|r| matches!(r.cause, Cause::ProgressDeadline { .. })).collect()
}

#[test]
fn progress_deadline_alert_on_health_data_that_never_arrives_records_marks_and_wakes_without_moving_traffic() {
    // noData: hold forever: b never reports, so it holds at its first step.
    let plan = mk_plan(&format!("{TWO_WAVES}  progressDeadline: 20m\n{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    run.silent.push("b".into());
    run.tick();
    assert_eq!(run.unit("b", "signin").progress_at, Some(t0()), "the clock runs from the first step");
    // The engine wakes when the deadline passes, even with nothing else to do.
    run.run_until(t0() + mins(19), |_| false);
    assert!(deadline_records(&run).is_empty());
    let percents = run.region_percents("b");
    run.now = t0() + mins(19);
    run.tick();
    assert!(run.wake_at.is_some_and(|w| w <= t0() + mins(20)), "wakes at the deadline: {:?}", run.wake_at);
    run.now = t0() + mins(20);
    let d = run.tick();
    assert!(d.actions.is_empty(), "alert changes no traffic: {:?}", d.actions);
    assert_eq!(run.region_percents("b"), percents);
    let records = deadline_records(&run);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!((records[0].region.as_deref(), records[0].service.as_deref()), (Some("b"), Some("signin")));
    let Cause::ProgressDeadline { since, deadline, waiting, .. } = &records[0].cause else { unreachable!() };
    assert_eq!((*since, deadline.as_str()), (t0(), "20m"));
    assert!(matches!(waiting, Some(WaitReason::Health { .. })), "{waiting:?}");
    assert_eq!(
        records[0].cause.to_string(),
        "no progress since 2026-06-01T00:00:00Z (progressDeadline 20m) (waiting for fresh healthy data from \
         errors); onProgressDeadline: alert"
    );
    let stalled = run.unit("b", "signin").stalled.clone().expect("marked in the state");
    assert_eq!(stalled.describe(t0() + mins(30)), "no progress for 30m (deadline 20m)");
    // Recorded once; the other regions were never held up.
    run.run_for(TimeDelta::hours(1));
    assert_eq!(deadline_records(&run).len(), 1);
    assert!(run.region_enabled("a") && run.region_enabled("c"));
    assert_eq!(run.unit("b", "signin").phase, UnitPhase::Progressing);

    // Data arrives: b moves on and the marker goes.
    run.silent.clear();
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.unit("b", "signin").percent == 50));
    assert_eq!(run.unit("b", "signin").stalled, None);
}

#[test]
fn fail_on_progress_deadline_fails_the_unit_and_its_regions_on_failure_applies() {
    let plan = mk_plan(&format!("{TWO_WAVES}  progressDeadline: 20m\n  onProgressDeadline: fail\n{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    run.silent.push("b".into());
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.unit("b", "signin").phase == UnitPhase::RolledBack));
    assert_eq!(run.now, t0() + mins(20));
    let failure = run.unit("b", "signin").failure.clone().expect("kept");
    assert_eq!(failure.progress_deadline.as_deref(), Some("20m"));
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    let o = outcome(&run.plan, &run.state);
    assert_eq!(o.failed[0].cause, "no progress within its progressDeadline 20m");
    // Retried with its data back, it reaches 100 %.
    run.silent.clear();
    run.command(CommandKind::Retry, None, Some("b"));
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.region_enabled("b")), "{:#?}", run.state);
}

#[test]
fn expected_waits_do_not_count_against_the_deadline() {
    // c waits for an approval far longer than the deadline, then starts and finishes.
    let spec = TWO_WAVES.replace("    - name: c\n", "    - name: c\n      approvals: [c-go]\n");
    let plan = mk_plan(&format!("{spec}  progressDeadline: 20m\n  onProgressDeadline: fail\n{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    run.run_for(TimeDelta::hours(3));
    assert_eq!(run.unit("c", "signin").progress_at, None, "no clock while waiting for an approval");
    run.approvals.push(mk_approval("c-1", "c-go", run.now));
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.region_enabled("c")), "{:#?}", run.state);
    assert!(deadline_records(&run).is_empty());
    // A pause is expected too.
    let plan = mk_plan(&format!("{TWO_WAVES}  progressDeadline: 20m\n  onProgressDeadline: fail\n{}", mk_health("")));
    let mut run = Rollout::new(plan, t0());
    run.tick();
    run.command(CommandKind::Pause, None, None);
    run.run_for(TimeDelta::hours(2));
    run.command(CommandKind::Resume, None, None);
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.state.phase() == PlanPhase::Complete));
    assert!(deadline_records(&run).is_empty());
}

#[test]
fn an_unconfirmed_actuation_passes_the_deadline_and_a_region_may_have_its_own() {
    let spec = TWO_WAVES.replace("    - name: b\n", "    - name: b\n      progressDeadline: 40m\n");
    let plan = mk_plan(&format!("{spec}  progressDeadline: 20m\n{}", mk_health("")));
    assert_eq!(plan.effective_settings(1).progress_deadline.value.as_deref(), Some("40m"));
    let mut run = Rollout::new(plan, t0());
    // Every target leaves its first step unconfirmed.
    let unconfirmed: Vec<meridian_core::UnitRef> = run
        .plan
        .regions
        .iter()
        .map(|r| meridian_core::UnitRef { region: r.name.clone(), service: "signin".into() })
        .collect();
    let at = |run: &mut Rollout, m: i64| {
        run.now = t0() + mins(m);
        let samples = run.samples();
        let obs = Observations {
            approvals: &run.approvals,
            health: &samples,
            unconfirmed: &unconfirmed,
            ..Observations::default()
        };
        let d = decide(&run.plan, run.state.clone(), &obs, run.now);
        run.audit.extend(d.audit.iter().cloned());
        run.state = d.state;
        d.wake_at
    };
    at(&mut run, 0);
    assert!(matches!(run.unit("a", "signin").waiting, Some(WaitReason::Actuation { .. })));
    let wake = at(&mut run, 1);
    assert_eq!(wake, Some(t0() + mins(20)));
    at(&mut run, 20);
    let stalled: Vec<&str> =
        run.state.units.iter().filter(|u| u.stalled.is_some()).map(|u| u.region.as_str()).collect();
    assert_eq!(stalled, ["a", "c"], "b has 40m");
    at(&mut run, 40);
    assert!(run.unit("b", "signin").stalled.is_some());
}

// ----- promote --full -----

const THREE_WAVES: &str = r#"
  services:
    - name: signin
    - name: store
      after: [signin]
  regions:
    - name: a
    - name: b
    - name: c
    - name: d
      approvals: [d-regulator]
  waves:
    - name: one
      regions: [a]
      bake: 2h
    - name: two
      regions: [b, c]
      maxParallel: 2
      bake: 2h
    - name: three
      regions: [d]
      bake: 2h
  steps: [10, 50, 100]
  stepBake: 1h
"#;

fn mk_three_waves() -> Plan {
    mk_plan(&format!("{THREE_WAVES}{}", mk_health("        failureLimit: 2\n")))
}

impl Rollout {
    fn promote_full(&mut self, wave: Option<&str>, region: Option<&str>) -> Decision {
        let cmd = Command { full: true, ..mk_command(CommandKind::Promote, wave, region, self.now) };
        self.decide_with(&[], &[], &[cmd])
    }

    /// The scopes of the full promotions in force.
    fn full_scopes(&self) -> Vec<String> {
        self.state.full_promotions.iter().map(|p| p.scope()).collect()
    }

    /// The records that ended a full promotion: (scope, cause).
    fn full_ends(&self) -> Vec<(String, Cause)> {
        self.audit
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::FullPromotionEnded { scope, .. } => Some((scope.clone(), r.cause.clone())),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn promote_full_completes_a_three_wave_rollout_without_waiting_its_bakes_but_never_without_health() {
    let mut run = Rollout::new(mk_three_waves(), t0());
    run.approvals.push(mk_approval("d-1", "d-regulator", t0()));
    run.tick();
    assert_eq!(run.unit("a", "signin").percent, 10);
    run.now += TimeDelta::seconds(10);
    let d = run.promote_full(None, None);
    assert_eq!(run.full_scopes(), vec!["plan"]);
    assert_eq!(d.audit[0].cause, Cause::FullPromotionDeclared { scope: "plan".into(), by: "oncall".into() });
    assert_eq!(run.unit("a", "signin").percent, 10, "no fresh healthy verdict since the step began yet");
    // Bakes of 1h per step and 2h per wave (over 20h in all) are skipped: health paces it.
    assert!(run.run_until(t0() + mins(30), |r| r.state.phase() == PlanPhase::Complete), "{:#?}", run.state);
    assert!(run.now < t0() + mins(30));
    assert!(run.full_scopes().is_empty(), "the scope completed");
    assert_eq!(run.full_ends(), vec![("plan".to_string(), Cause::ScopeCompleted)]);
    // Every step and wave bake after the promote was skipped under it, and says so.
    let promoted_at = t0() + TimeDelta::seconds(10);
    for r in run.audit.iter().filter(|r| r.at >= promoted_at) {
        match &r.cause {
            Cause::Advanced { promoted, full, .. }
            | Cause::Completed { promoted, full, .. }
            | Cause::WaveBaked { promoted, full, .. } => {
                assert!(*promoted, "{}", r.summary());
                assert_eq!(full.as_ref().map(|p| (p.scope(), p.by.as_str())), Some(("plan".into(), "oncall")));
                assert!(r.cause.to_string().contains("(promote --full of plan by oncall)"), "{}", r.summary());
            }
            _ => {}
        }
    }
    let baked = run.audit.iter().filter(|r| matches!(r.cause, Cause::WaveBaked { .. })).count();
    assert_eq!(baked, 3);
    // Health still gates every move: a unit takes at most one step per fresh healthy verdict,
    // so no two raises of a unit share a decision.
    for u in &run.state.units {
        let raises = run.raises(&u.region, &u.service);
        assert_eq!(raises.len(), 3, "{}/{}: {raises:?}", u.region, u.service);
        assert!(raises.windows(2).all(|w| w[0].0 < w[1].0), "{}/{}: {raises:?}", u.region, u.service);
    }
}

#[test]
fn a_failure_in_scope_cancels_promote_full_and_the_region_fails_as_usual() {
    let mut run = Rollout::new(mk_three_waves(), t0());
    run.approvals.push(mk_approval("d-1", "d-regulator", t0()));
    run.tick();
    run.promote_full(None, None);
    run.promote_full(Some("three"), None);
    assert_eq!(run.full_scopes(), vec!["plan", "wave three"]);
    assert!(run.run_until(t0() + mins(30), |r| r.wave("two") == WavePhase::Running));
    run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(run.now + mins(10), |r| r.unit("b", "signin").phase == UnitPhase::RolledBack));
    // b failed and was rolled back as without a promotion; only the promotion covering it ended.
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    assert_eq!(run.full_scopes(), vec!["wave three"], "a promotion that does not cover b is kept");
    let ends = run.full_ends();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].0, "plan");
    assert!(matches!(&ends[0].1, Cause::FailedInScope { region, .. } if region == "b"), "{ends:?}");
    let end = run.audit.iter().find(|r| matches!(r.event, AuditEvent::FullPromotionEnded { .. })).unwrap();
    let service = match &ends[0].1 {
        Cause::FailedInScope { service, .. } => service.clone(),
        _ => unreachable!(),
    };
    assert_eq!(
        end.line(),
        format!("#{} plan test: full promotion of plan by oncall ended: b/{service} failed", end.seq)
    );
    // c bakes its steps again: none of its units moves in the next 50 minutes (stepBake 1h).
    let c: Vec<_> = run.state.units.iter().filter(|u| u.region == "c").map(|u| (u.since, u.percent)).collect();
    run.run_for(mins(50));
    let now_c: Vec<_> = run.state.units.iter().filter(|u| u.region == "c").map(|u| (u.since, u.percent)).collect();
    assert_eq!(now_c, c, "c moved under a cancelled promotion");
    // The wave halts on b as usual; a retry does not bring the promotion back.
    run.verdicts.remove("b");
    run.command(CommandKind::Retry, None, Some("b"));
    assert_eq!(run.full_scopes(), vec!["wave three"]);
}

#[test]
fn promote_full_never_skips_an_approval() {
    let mut run = Rollout::new(mk_three_waves(), t0());
    run.tick();
    run.promote_full(None, None);
    assert!(run.run_until(t0() + mins(30), |r| r.wave("three") == WavePhase::Running));
    // d needs d-regulator: hours pass and it gets no traffic, however promoted.
    run.run_for(TimeDelta::hours(3));
    assert_eq!(run.region_percents("d"), vec![0, 0]);
    assert!(
        matches!(run.unit("d", "signin").waiting, Some(WaitReason::Approval { .. })),
        "{:?}",
        run.unit("d", "signin")
    );
    assert_eq!(run.full_scopes(), vec!["plan"], "still in force while it waits");
    // Once granted, d goes through without its bakes.
    run.approvals.push(mk_approval("d-1", "d-regulator", run.now));
    let granted = run.now;
    assert!(run.run_until(granted + mins(15), |r| r.state.phase() == PlanPhase::Complete));
    let raises = run.raises("d", "signin");
    assert!(raises.iter().all(|(at, _)| *at >= granted), "{raises:?}");
}

#[test]
fn a_pause_or_an_abort_of_an_overlapping_scope_cancels_promote_full_and_a_resume_does_not_bring_it_back() {
    let mut run = Rollout::new(mk_three_waves(), t0());
    run.approvals.push(mk_approval("d-1", "d-regulator", t0()));
    run.tick();
    run.promote_full(Some("one"), None);
    run.promote_full(Some("two"), None);
    run.promote_full(None, Some("c"));
    // A pause of another scope leaves it alone.
    run.command(CommandKind::Pause, Some("three"), None);
    assert_eq!(run.full_scopes(), vec!["wave one", "wave two", "region c"]);
    // A pause of region a overlaps wave one: that promotion ends, audited with the pause.
    run.command(CommandKind::Pause, None, Some("a"));
    assert_eq!(run.full_scopes(), vec!["wave two", "region c"]);
    assert_eq!(
        run.full_ends(),
        vec![("wave one".to_string(), Cause::Command { command: CommandKind::Pause, by: "oncall".into() })]
    );
    run.command(CommandKind::Resume, None, Some("a"));
    assert_eq!(run.full_scopes(), vec!["wave two", "region c"], "a resume does not bring it back");
    // Back to baking: a's next step waits its hour.
    let before = run.unit("a", "signin").percent;
    run.run_for(mins(50));
    assert_eq!(run.unit("a", "signin").percent, before);
    // An abort of region c ends both promotions covering it.
    run.command(CommandKind::Abort, None, Some("c"));
    assert!(run.full_scopes().is_empty());
    let ends: Vec<String> = run.full_ends().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ends, vec!["wave one", "wave two", "region c"]);
    // Declared on a scope aborted before, it ends at once: nothing there moves again.
    run.promote_full(None, Some("c"));
    assert!(run.full_scopes().is_empty());
    assert_eq!(run.full_ends().last().unwrap().1, Cause::Blocked { waiting: WaitReason::Aborted });
}

#[test]
fn the_story_works_under_a_progress_deadline_promote_the_halted_wave_heal_and_retry_to_100() {
    // The operator takes an hour to act, three times the deadline: the halted wave and the
    // failed region are expected waits, and the retried region climbs with its deadline
    // running anew from the retry, under both policies.
    for policy in ["alert", "fail"] {
        let mut run =
            Rollout::new(mk_two_waves(&format!("  progressDeadline: 20m\n  onProgressDeadline: {policy}\n")), t0());
        run.verdicts.insert("b".into(), HealthVerdict::Unhealthy);
        assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted), "{policy}");
        run.run_for(TimeDelta::hours(1));
        assert!(deadline_records(&run).is_empty(), "{policy}: {:#?}", deadline_records(&run));
        run.command(CommandKind::Promote, Some("first"), None);
        assert_eq!(run.wave("first"), WavePhase::Complete, "{policy}");
        run.verdicts.clear();
        run.command(CommandKind::Retry, None, Some("b"));
        // Every wave is complete, but the plan runs until b is enabled again.
        assert_eq!(run.state.phase(), PlanPhase::Running, "{policy}");
        assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.region_enabled("b")), "{policy}: {:#?}", run.state);
        assert_eq!(run.region_percents("b"), vec![100, 100], "{policy}");
        assert!(run.run_until(run.now + TimeDelta::hours(2), |r| r.state.phase() == PlanPhase::Complete), "{policy}");
        assert!(deadline_records(&run).is_empty(), "{policy}: {:#?}", deadline_records(&run));
    }
}

#[test]
fn a_promote_past_the_budget_accepts_the_failed_region_and_the_regions_never_started_still_roll_out() {
    // One region at a time and no failure tolerated: a fails first, so b and c never start
    // and the wave halts. The operator accepts a: b and c must still reach 100 %, not be
    // left at 0 % in a wave and a plan that read as complete.
    let spec = TWO_WAVES.replace("      bake: 5m\n", "      bake: 5m\n      maxParallel: 1\n      maxFailures: 0\n");
    let mut run = Rollout::new(mk_plan(&format!("{spec}{}", mk_health(""))), t0());
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted));
    assert_eq!(run.region_percents("b"), vec![0, 0]);
    run.command(CommandKind::Promote, Some("first"), None);
    assert!(
        run.run_until(run.now + TimeDelta::hours(3), |r| r.state.phase() == PlanPhase::Complete),
        "{:#?}",
        run.state
    );
    for region in ["b", "c", "d"] {
        assert_eq!(run.region_percents(region), vec![100, 100], "{region}");
    }
    assert_eq!(run.state.waves[0].accepted.as_ref().map(|a| a.regions.clone()), Some(vec!["a".to_string()]));
}

#[test]
fn a_failed_region_a_promote_accepted_keeps_its_paused_traffic_when_the_wave_gate_goes() {
    // onFailure: pause keeps a's traffic; the promote accepts a and completes the wave. The
    // wave's gate ends afterwards, as gates do: a takes no step, so under disable it keeps its
    // traffic (the gate holds back steps still to take, not what a done wave left).
    let spec = TWO_WAVES.replace("      bake: 5m\n", "      bake: 5m\n      approvals: [first-go]\n");
    let extra = "  onFailure: pause\n  onApprovalRevoked: disable\n";
    let mut run = Rollout::new(mk_plan(&format!("{spec}{extra}{}", mk_health(""))), t0());
    run.approvals.push(mk_approval("go-1", "first-go", t0()));
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted));
    let kept = run.region_percents("a");
    assert!(kept.iter().any(|&p| p > 0), "{kept:?}");
    run.command(CommandKind::Promote, Some("first"), None);
    assert!(run.run_until(run.now + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Complete));
    run.approvals[0].revoked = Some(RevokedInfo { at: run.now, by: "ops".into(), reason: None });
    run.run_until(run.now + TimeDelta::hours(1), |_| false);
    assert_eq!(run.region_percents("a"), kept, "{:#?}", run.state);
    assert_eq!(run.region_percents("b"), vec![100, 100]);
    assert_eq!(run.state.phase(), PlanPhase::Complete);
}

#[test]
fn a_region_never_started_in_a_wave_promoted_past_its_failure_still_needs_the_wave_approval() {
    // The wave's gate held while a ran and failed, then was revoked. The promote accepts a
    // and completes the wave, but b never ran under the gate: it may not start without it.
    let spec = TWO_WAVES.replace(
        "      bake: 5m\n",
        "      bake: 5m\n      maxParallel: 1\n      maxFailures: 0\n      approvals: [first-go]\n",
    );
    let mut run = Rollout::new(mk_plan(&format!("{spec}{}", mk_health(""))), t0());
    run.approvals.push(mk_approval("go-1", "first-go", t0()));
    run.verdicts.insert("a".into(), HealthVerdict::Unhealthy);
    assert!(run.run_until(t0() + TimeDelta::hours(1), |r| r.wave("first") == WavePhase::Halted));
    run.approvals[0].revoked = Some(RevokedInfo { at: run.now, by: "ops".into(), reason: None });
    run.command(CommandKind::Promote, Some("first"), None);
    run.run_until(run.now + TimeDelta::hours(1), |_| false);
    assert_eq!(run.wave("first"), WavePhase::Complete);
    assert_eq!(run.region_percents("b"), vec![0, 0], "{:#?}", run.state);
    assert!(
        matches!(&run.unit("b", "signin").waiting, Some(WaitReason::Approval { flag, .. }) if flag == "first-go"),
        "{:#?}",
        run.unit("b", "signin")
    );
    // Every wave is complete, but b and c are still to start: the plan is running, and a
    // plan that depends on it waits.
    assert_eq!(run.wave("second"), WavePhase::Complete);
    assert_eq!(run.state.phase(), PlanPhase::Running);
    assert!(!PlanProgress::of([&run.state]).plans["test"].complete);
    // A new grant lets the regions never started roll out, and the plan completes.
    run.approvals.push(mk_approval("go-2", "first-go", run.now));
    assert!(run.run_until(run.now + TimeDelta::hours(3), |r| r.state.phase() == PlanPhase::Complete));
    for region in ["b", "c", "d"] {
        assert_eq!(run.region_percents(region), vec![100, 100], "{region}");
    }
}
