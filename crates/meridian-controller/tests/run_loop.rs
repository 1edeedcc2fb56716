//! The run loop end to end with in-memory adapters: a real plan file, the real engine, a
//! fake fleet that records every actuation. Waits are on conditions with deadlines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use meridian_controller::control::ControlPlane;
use meridian_controller::memory::MemoryStore;
use meridian_controller::runtime::{Adapters, Clock, NoNotifier, Settings, SystemClock, start};
use meridian_controller::store::StateStore;
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet};
use meridian_core::plan::Plan;
use meridian_core::ports::{ActuationError, Actuator, BoxFuture, EvalRequest, Evaluation, HealthSource, Target};
use meridian_core::{Command, CommandKind, HealthSample, HealthVerdict, PlanPhase};
use meridian_store::SqliteStore;

/// (region, service, percent, when) of one actuation the fake fleet received.
type Actuation = (String, String, u32, chrono::DateTime<Utc>);

#[derive(Default)]
struct FakeFleet {
    traffic: Mutex<HashMap<(String, String), u32>>,
    log: Mutex<Vec<Actuation>>,
    unhealthy: Mutex<Vec<String>>,
    /// Regions whose target refuses to go to 0 %, for good (a non-retryable error), and how
    /// often it refused.
    refuse_zero: Mutex<(Vec<String>, usize)>,
}

impl Actuator for FakeFleet {
    fn set_traffic<'a>(
        &'a self,
        _plan: &'a Plan,
        t: &'a Target,
        percent: u32,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        Box::pin(async move {
            let mut refuse = self.refuse_zero.lock().unwrap();
            if percent == 0 && refuse.0.contains(&t.region) {
                refuse.1 += 1;
                return Err(ActuationError { message: "403 forbidden".into(), retryable: false, label: "http_4xx" });
            }
            self.traffic.lock().unwrap().insert((t.region.clone(), t.service.clone()), percent);
            self.log.lock().unwrap().push((t.region.clone(), t.service.clone(), percent, Utc::now()));
            Ok(())
        })
    }

    fn read_traffic<'a>(
        &'a self,
        _plan: &'a Plan,
        t: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        Box::pin(async move { Ok(self.traffic.lock().unwrap().get(&(t.region.clone(), t.service.clone())).copied()) })
    }
}

impl HealthSource for FakeFleet {
    fn evaluate<'a>(&'a self, plan: &'a Plan, req: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(async move {
            let bad = self.unhealthy.lock().unwrap().clone();
            let samples: Vec<HealthSample> = req
                .regions
                .iter()
                .flat_map(|r| {
                    let verdict = if bad.contains(r) { HealthVerdict::Unhealthy } else { HealthVerdict::Healthy };
                    plan.health.checks.iter().map(move |c| HealthSample {
                        region: r.clone(),
                        service: req.service.clone(),
                        check: c.name.clone(),
                        verdict,
                        value: Some(0.0),
                        detail: None,
                        at: Utc::now(),
                        baseline: None,
                    })
                })
                .collect();
            samples.into()
        })
    }
}

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: quick}
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions: [{name: a}, {name: b}, {name: jp, approvals: [jp-regulator]}]
  waves:
    - {name: one, regions: [a], bake: 200ms}
    - {name: two, regions: [b, jp], bake: 200ms}
  steps: [50, 100]
  stepBake: 200ms
  health:
    interval: 100ms
    checks: [{name: errors, prometheus: {query: 'x'}, max: 0.01}]
";

/// Stop the controller and wait until its tasks let go of the store (and its file lock).
async fn stop_and_release<S: ?Sized>(
    running: meridian_controller::runtime::Running,
    c: Arc<meridian_controller::runtime::Controller>,
    store: &Arc<S>,
) {
    running.shutdown();
    drop(c);
    wait_for("store released", Duration::from_secs(10), || Arc::strong_count(store) == 1).await;
}

/// The fake fleet as health source and actuator, on the wall clock.
fn fake_adapters(store: Arc<dyn StateStore>, fleet: &Arc<FakeFleet>) -> Adapters {
    Adapters {
        store,
        health: fleet.clone(),
        actuator: fleet.clone(),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(NoNotifier),
    }
}

async fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !cond() {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_only_after_the_regulator_grants_in_memory() {
    rollout_completes_only_after_the_regulator_grants(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_only_after_the_regulator_grants_on_the_database_file() {
    let state_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(state_dir.path()).unwrap());
    rollout_completes_only_after_the_regulator_grants(store.clone()).await;
    // The stopped tasks let go of the store (and its lock) as they wind down.
    wait_for("store released", Duration::from_secs(10), || Arc::strong_count(&store) == 1).await;
    drop(store);
    // The state survived in the file: a new store on the same dir reads it back.
    let reopened = SqliteStore::open(state_dir.path()).unwrap();
    let state = reopened.load_state("quick").unwrap().unwrap();
    assert_eq!(state.phase(), PlanPhase::Complete);
}

async fn rollout_completes_only_after_the_regulator_grants(store: Arc<dyn StateStore>) {
    let (_dir, path) = setup(PLAN);
    let fleet = Arc::new(FakeFleet::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let mut settings = Settings::new(vec![path]);
    settings.unit_metrics = true;
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();

    let phase = |c: &meridian_controller::runtime::Controller| c.snapshot().plans["quick"].state.phase();
    let jp_signin = |c: &meridian_controller::runtime::Controller| {
        c.snapshot().plans["quick"].state.unit("jp", "signin").map(|u| u.waiting.clone())
    };
    // b finishes; jp waits for its approval.
    wait_for("b enabled", Duration::from_secs(20), || {
        c.snapshot().plans["quick"]
            .state
            .unit("b", "store")
            .is_some_and(|u| u.phase == meridian_core::UnitPhase::Enabled)
    })
    .await;
    assert!(matches!(jp_signin(&c), Some(Some(meridian_core::WaitReason::Approval { .. }))), "{:?}", jp_signin(&c));
    assert!(fleet.log.lock().unwrap().iter().all(|(r, _, _, _)| r != "jp"), "jp got traffic before its approval");

    let granted_at = Utc::now();
    c.grant(
        ApprovalRecord {
            name: "jp-letter".into(),
            flag: "jp-regulator".into(),
            granted_by: "ministry".into(),
            reference: Some("letter 17".into()),
            granted_at: None,
            expires: None,
            scope: ApprovalScopeSet::default(),
            revoked: None,
            signature: None,
        },
        "test",
    )
    .await
    .unwrap();
    wait_for("plan complete", Duration::from_secs(20), || phase(&c) == PlanPhase::Complete).await;

    let log = fleet.log.lock().unwrap().clone();
    let first_jp = log.iter().find(|(r, _, _, _)| r == "jp").unwrap();
    assert!(first_jp.3 >= granted_at, "jp actuated before the grant");
    // Every unit ends at 100 % at the fleet, as the state says.
    for u in &c.snapshot().plans["quick"].state.units {
        assert_eq!(fleet.traffic.lock().unwrap().get(&(u.region.clone(), u.service.clone())), Some(&100));
    }
    // The audit log is gapless and names the approval as evidence of jp's first step.
    let audit = c.audit(Some("quick"), 0, 10_000).await.unwrap();
    for (k, r) in audit.iter().enumerate() {
        assert_eq!(r.seq, k as u64 + 1);
    }
    assert!(audit.iter().any(|r| r.region.as_deref() == Some("jp")
        && matches!(&r.cause, meridian_core::Cause::Started { approvals, .. } if approvals == &vec!["jp-letter".to_string()])));
    wait_for("every intent confirmed", Duration::from_secs(10), || store.open_intents().unwrap().is_empty()).await;
    // /metrics says the same as the state.
    let page = c.metrics();
    for u in &c.snapshot().plans["quick"].state.units {
        let labels = [("plan", "quick"), ("region", u.region.as_str()), ("service", u.service.as_str())];
        assert_eq!(metric(&page, "meridian_unit_traffic_percent", &labels), Some(100.0), "{page}");
        let enabled =
            [("plan", "quick"), ("region", u.region.as_str()), ("service", u.service.as_str()), ("state", "enabled")];
        assert_eq!(metric(&page, "meridian_unit_state", &enabled), Some(1.0));
    }
    assert_eq!(metric(&page, "meridian_plan_phase", &[("plan", "quick"), ("phase", "complete")]), Some(1.0));
    assert_eq!(metric(&page, "meridian_plan_phase", &[("plan", "quick"), ("phase", "running")]), None);
    // The aggregates, always exported.
    let units = [("plan", "quick"), ("wave", "two"), ("phase", "enabled")];
    assert_eq!(metric(&page, "meridian_units", &units), Some(4.0), "{page}");
    assert_eq!(metric(&page, "meridian_units", &[("plan", "quick"), ("phase", "pending")]), None);
    assert_eq!(metric(&page, "meridian_regions", &[("plan", "quick"), ("state", "enabled")]), Some(3.0));
    let signin = [("plan", "quick"), ("service", "signin")];
    assert_eq!(metric(&page, "meridian_service_traffic_percent", &signin), Some(100.0));
    assert_eq!(
        metric(&page, "meridian_approval_valid", &[("approval", "jp-letter"), ("flag", "jp-regulator")]),
        Some(1.0)
    );
    assert!(metric(&page, "meridian_decision_duration_seconds_count", &[]).is_some_and(|n| n > 0.0));
    assert!(
        metric(&page, "meridian_transitions_total", &[("plan", "quick"), ("to", "enabled")]).is_some_and(|n| n >= 6.0)
    );
    running.shutdown();
}

/// The value of the sample `name{labels...}` on a Prometheus text page (labels in any order,
/// others allowed).
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric_name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let matches = metric_name == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if matches { value.parse().ok() } else { None }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_region_is_rolled_back_and_a_command_pauses() {
    let text = PLAN.replace("approvals: [jp-regulator]", "approvals: []");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    fleet.unhealthy.lock().unwrap().push("jp".into());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let running = start(Settings::new(vec![path]), adapters).await.expect("start");
    let c = running.controller.clone();
    wait_for("wave two halted", Duration::from_secs(20), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Halted
    })
    .await;
    let s = c.snapshot();
    let jp = s.plans["quick"].state.unit("jp", "signin").unwrap();
    assert_eq!(jp.phase, meridian_core::UnitPhase::RolledBack);
    wait_for("fleet rolled back", Duration::from_secs(5), || {
        fleet.traffic.lock().unwrap().get(&("jp".into(), "signin".into())) == Some(&0)
    })
    .await;
    // Commands are validated and applied.
    let bad = c
        .command(
            "quick",
            Command { region: Some("nope".into()), ..Command::plan_wide(CommandKind::Pause, "op", Utc::now()) },
        )
        .await;
    assert!(bad.is_err());
    c.command("quick", Command::plan_wide(CommandKind::Pause, "op", Utc::now())).await.unwrap();
    wait_for("paused recorded", Duration::from_secs(5), || c.snapshot().plans["quick"].state.paused.plan).await;
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_is_rejected_and_the_last_good_plan_stays() {
    let (_dir, path) = setup(PLAN);
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let mut settings = Settings::new(vec![path.clone()]);
    settings.config_poll = Duration::from_millis(100);
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    assert_eq!(c.snapshot().config.generation, 1);
    std::fs::write(&path, PLAN.replace("regions: [a]", "regions: [zz]")).unwrap();
    wait_for("edit rejected", Duration::from_secs(10), || c.snapshot().config.rejected.is_some()).await;
    let s = c.snapshot();
    assert_eq!(s.config.generation, 1, "the broken edit must not apply");
    assert!(
        s.config
            .rejected
            .as_ref()
            .unwrap()
            .errors
            .iter()
            .any(|e| e.contains("plan.yaml:8:29: error: unknown region \"zz\"")),
        "{:?}",
        s.config.rejected
    );
    assert!(store.events().iter().any(|e| e.kind == "config-rejected"));
    std::fs::write(&path, PLAN.replace("stepBake: 200ms", "stepBake: 300ms")).unwrap();
    wait_for("edit applied", Duration::from_secs(10), || c.snapshot().config.generation == 2).await;
    assert!(c.snapshot().config.rejected.is_none());
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_approval_is_recorded_once_and_holds_the_region() {
    let text = PLAN
        .replace("stepBake: 200ms", "stepBake: 2s")
        .replace("regions: [a]", "regions: [jp]")
        .replace("regions: [b, jp]", "regions: [b, a]");
    let (_dir, path) = setup(&text);
    let state_dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(FakeFleet::default());
    let expires = Utc::now() + chrono::TimeDelta::milliseconds(1500);
    for round in 0..2 {
        let store = Arc::new(SqliteStore::open(state_dir.path()).unwrap());
        let adapters = fake_adapters(store.clone(), &fleet);
        let running = start(Settings::new(vec![path.clone()]), adapters).await.expect("start");
        let c = running.controller.clone();
        if round == 0 {
            c.grant(
                ApprovalRecord {
                    name: "jp-short".into(),
                    flag: "jp-regulator".into(),
                    granted_by: "ministry".into(),
                    reference: None,
                    granted_at: None,
                    expires: Some(expires),
                    scope: ApprovalScopeSet::default(),
                    revoked: None,
                    signature: None,
                },
                "test",
            )
            .await
            .unwrap();
            wait_for("jp started", Duration::from_secs(10), || {
                c.snapshot().plans["quick"].state.unit("jp", "signin").is_some_and(|u| u.percent > 0)
            })
            .await;
        }
        wait_for("expiry recorded", Duration::from_secs(10), || {
            store.events("approval-expired").map(|e| !e.is_empty()).unwrap_or(false)
        })
        .await;
        wait_for("jp held by the expiry", Duration::from_secs(10), || {
            let s = c.snapshot();
            let u = s.plans["quick"].state.unit("jp", "signin").cloned().unwrap();
            matches!(
                u.waiting,
                Some(meridian_core::WaitReason::Approval {
                    problem: meridian_core::approval::ApprovalProblem::Expired { .. },
                    ..
                })
            ) && u.percent == 50
        })
        .await;
        stop_and_release(running, c, &store).await;
        assert_eq!(
            store.events("approval-expired").unwrap().len(),
            1,
            "expiry recorded more than once (round {round})"
        );
    }
}

fn approval(name: &str, flag: &str) -> ApprovalRecord {
    ApprovalRecord {
        name: name.into(),
        flag: flag.into(),
        granted_by: "ops".into(),
        reference: None,
        granted_at: None,
        expires: None,
        scope: ApprovalScopeSet::default(),
        revoked: None,
        signature: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_changes_no_unit_is_published_at_once_and_its_name_is_taken() {
    // Every unit waits for ops-go, so nothing moves and no decision changes: the grant of an
    // unrelated flag must still appear, and a second grant of its name must conflict.
    let text = PLAN.replace("regions: [{name: a}", "regions: [{name: a, approvals: [ops-go]}");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let running = start(Settings::new(vec![path]), adapters).await.expect("start");
    let c = running.controller.clone();
    wait_for("a blocked on ops-go", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.unit("a", "signin").is_some_and(|u| u.waiting.is_some())
    })
    .await;

    c.grant(approval("unrelated-1", "unrelated"), "test").await.unwrap();
    wait_for("the grant published", Duration::from_secs(5), || {
        c.snapshot().approvals.iter().any(|a| a.name == "unrelated-1")
    })
    .await;
    let again = c.grant(approval("unrelated-1", "other"), "test").await;
    assert!(
        matches!(again, Err(meridian_controller::control::ControlError::Conflict(ref n)) if n == "unrelated-1"),
        "{again:?}"
    );
    // Two grants of one new name at once: exactly one wins.
    for round in 0..20 {
        let name = format!("race-{round}");
        let (x, y) =
            tokio::join!(c.grant(approval(&name, "unrelated"), "test"), c.grant(approval(&name, "unrelated"), "test"));
        let conflicts = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(meridian_controller::control::ControlError::Conflict(_))))
            .count();
        assert!(x.is_ok() != y.is_ok() && conflicts == 1, "round {round}: {x:?} {y:?}");
    }
    c.revoke("unrelated-1", "ops", Some("test".into())).await.unwrap();
    wait_for("the revocation published", Duration::from_secs(5), || {
        c.snapshot().approvals.iter().any(|a| a.name == "unrelated-1" && a.revoked.is_some())
    })
    .await;
    assert!(fleet.log.lock().unwrap().is_empty(), "nothing may move while ops-go is missing");
    running.shutdown();
}

const JP_LETTER: &str = "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: jp-letter}
spec: {flag: jp-regulator, grantedBy: ministry}
";

/// The kinds of the controller's history events about `approval`, oldest first.
async fn approval_history(c: &meridian_controller::runtime::Controller, approval: &str) -> Vec<String> {
    let history = c.history(0, 1000).await.unwrap();
    assert!(history.windows(2).all(|w| w[0].id < w[1].id), "history out of order");
    history.into_iter().filter(|e| e.event.detail["approval"] == approval).map(|e| e.event.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_file_deleted_while_stopped_is_revoked_at_the_next_start_and_put_back_grants_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.yaml"), PLAN).unwrap();
    let approval_file = dir.path().join("jp.yaml");
    std::fs::write(&approval_file, JP_LETTER).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(FakeFleet::default());
    for round in 0..3 {
        let store = Arc::new(SqliteStore::open(state_dir.path()).unwrap());
        let adapters = fake_adapters(store.clone(), &fleet);
        let running = start(Settings::new(vec![dir.path().to_path_buf()]), adapters).await.expect("start");
        let c = running.controller.clone();
        let jp_letter = || c.snapshot().approvals.iter().find(|a| a.name == "jp-letter").cloned();
        match round {
            0 => {
                let granted = jp_letter().expect("the file's approval is on record");
                assert!(granted.revoked.is_none());
                std::fs::remove_file(&approval_file).unwrap();
            }
            1 => {
                // Right after the restart, before any decision changed anything, /metrics knows.
                let page = c.metrics();
                assert_eq!(metric(&page, "meridian_approval_valid", &[("approval", "jp-letter")]), Some(0.0), "{page}");
                assert!(metric(&page, "meridian_units", &[("plan", "quick"), ("wave", "one")]).is_some(), "{page}");
                assert_eq!(metric(&page, "meridian_unit_traffic_percent", &[]), None, "per-unit series are opt-in");
                let revoked = jp_letter().and_then(|a| a.revoked).expect("the vanished file's approval is revoked");
                assert_eq!(revoked.reason.as_deref(), Some("approval file removed"));
                assert_eq!(approval_history(&c, "jp-letter").await, ["approval-granted", "approval-revoked"]);
                wait_for("jp held for its approval", Duration::from_secs(10), || {
                    c.snapshot().plans["quick"].state.unit("jp", "signin").is_some_and(|u| u.waiting.is_some())
                })
                .await;
                std::fs::write(&approval_file, JP_LETTER).unwrap();
            }
            _ => {
                // The file is back: its removal's revocation is undone, on the record.
                assert!(jp_letter().expect("on record").revoked.is_none(), "putting the file back grants again");
                assert_eq!(
                    approval_history(&c, "jp-letter").await,
                    ["approval-granted", "approval-revoked", "approval-granted"]
                );
            }
        }
        stop_and_release(running, c, &store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_approval_outside_the_watched_paths_is_kept_not_revoked() {
    // Started once with the approvals directory, then without it (a forgotten argument):
    // the approval was not removed, only not watched, so it stays in force.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    let approvals = dir.path().join("approvals");
    std::fs::create_dir(&approvals).unwrap();
    std::fs::write(approvals.join("jp.yaml"), JP_LETTER).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(FakeFleet::default());
    for paths in [vec![plan.clone(), approvals.clone()], vec![plan.clone()]] {
        let store = Arc::new(SqliteStore::open(state_dir.path()).unwrap());
        let running = start(Settings::new(paths), fake_adapters(store.clone(), &fleet)).await.expect("start");
        let c = running.controller.clone();
        let letter = c.snapshot().approvals.iter().find(|a| a.name == "jp-letter").cloned().expect("on record");
        assert!(letter.revoked.is_none(), "{letter:?}");
        assert_eq!(approval_history(&c, "jp-letter").await, ["approval-granted"]);
        stop_and_release(running, c, &store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_file_and_an_approval_file_added_while_running_are_picked_up() {
    // Wave "asia" selects by label; kr joins it by dropping a Region file into the watched
    // directory, and is gated by a flag whose approval arrives as a file later still.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.yaml"),
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: quick}
spec:
  services: [{name: signin}]
  regions: [{name: a}, {name: jp, labels: {continent: asia}}]
  waves:
    - {name: one, regions: [a], bake: 100ms}
    - {name: asia, selector: {matchLabels: {continent: asia}}}
  steps: [50, 100]
  stepBake: 100ms
  health:
    interval: 100ms
    checks: [{name: errors, prometheus: {query: 'x'}, max: 0.01}]
",
    )
    .unwrap();
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let mut settings = Settings::new(vec![dir.path().to_path_buf()]);
    settings.config_poll = Duration::from_millis(100);
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    let unit = |region: &str| c.snapshot().plans["quick"].state.unit(region, "signin").cloned();

    std::fs::create_dir(dir.path().join("regions")).unwrap();
    std::fs::write(
        dir.path().join("regions/kr.yaml"),
        "apiVersion: meridian.dev/v1alpha1
kind: Region
metadata: {name: kr}
spec: {plan: quick, timezone: Asia/Seoul, labels: {continent: asia}, approvals: [kr-go]}
",
    )
    .unwrap();
    wait_for("kr joins wave asia", Duration::from_secs(10), || unit("kr").is_some()).await;
    let s = c.snapshot();
    let plan = &s.plans["quick"].plan;
    let kr = plan.region_index("kr").map(|r| plan.waves[plan.regions[r].wave].name.clone());
    assert_eq!(kr.as_deref(), Some("asia"));
    wait_for("jp enabled, kr waiting for kr-go", Duration::from_secs(20), || {
        unit("jp").is_some_and(|u| u.phase == meridian_core::UnitPhase::Enabled)
            && unit("kr").is_some_and(
                |u| matches!(&u.waiting, Some(meridian_core::WaitReason::Approval { flag, .. }) if flag == "kr-go"),
            )
    })
    .await;
    assert!(fleet.log.lock().unwrap().iter().all(|(r, _, _, _)| r != "kr"), "kr moved before its approval");

    std::fs::write(
        dir.path().join("kr-go.yaml"),
        "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: kr-go-1}
spec: {flag: kr-go, grantedBy: seoul office}
",
    )
    .unwrap();
    wait_for("plan complete", Duration::from_secs(20), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    assert_eq!(fleet.traffic.lock().unwrap().get(&("kr".into(), "signin".into())), Some(&100));
    assert!(c.snapshot().config.generation >= 3, "two edits applied: {}", c.snapshot().config.generation);
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_acted_on_at_once_not_at_the_next_timer() {
    // Only jp, gated; nothing else to do, so the loop has no timer due for an hour or more.
    let text = PLAN
        .replace("    - {name: one, regions: [a], bake: 200ms}\n", "")
        .replace("regions: [b, jp], bake: 200ms", "regions: [jp]")
        .replace("regions: [{name: a}, {name: b}, {name: jp,", "regions: [{name: jp,")
        .replace("stepBake: 200ms", "stepBake: 1h")
        .replace("interval: 100ms", "interval: 1h");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    let adapters = fake_adapters(Arc::new(MemoryStore::default()), &fleet);
    let mut settings = Settings::new(vec![path]);
    settings.config_poll = Duration::from_secs(3600);
    settings.readback_interval = Duration::from_secs(3600);
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    wait_for("jp waits for its approval", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.unit("jp", "signin").is_some_and(|u| u.waiting.is_some())
    })
    .await;
    let wake = c.snapshot().plans["quick"].wake_at;
    assert!(wake.is_none_or(|w| w - Utc::now() > chrono::TimeDelta::minutes(30)), "a timer is due soon: {wake:?}");

    c.grant(approval("jp-letter", "jp-regulator"), "test").await.unwrap();
    // Far sooner than any timer or poll (an hour): the grant itself woke the loop.
    wait_for("jp's first actuation", Duration::from_secs(10), || {
        fleet.log.lock().unwrap().iter().any(|(r, s, p, _)| r == "jp" && s == "signin" && *p == 50)
    })
    .await;
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_switched_on_behind_the_controllers_back_in_a_rolled_back_region_is_drift_and_is_undone() {
    let text = PLAN.replace("approvals: [jp-regulator]", "approvals: []");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    fleet.unhealthy.lock().unwrap().push("jp".into());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let mut settings = Settings::new(vec![path]);
    settings.readback_interval = Duration::from_millis(100);
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    wait_for("jp rolled back at the fleet", Duration::from_secs(20), || {
        c.snapshot().plans["quick"]
            .state
            .unit("jp", "signin")
            .is_some_and(|u| u.phase == meridian_core::UnitPhase::RolledBack)
            && fleet.traffic.lock().unwrap().get(&("jp".into(), "signin".into())) == Some(&0)
    })
    .await;
    // Someone switches jp back on by hand.
    fleet.traffic.lock().unwrap().insert(("jp".into(), "signin".into()), 50);
    wait_for("the drift undone", Duration::from_secs(10), || {
        fleet.traffic.lock().unwrap().get(&("jp".into(), "signin".into())) == Some(&0)
    })
    .await;
    let audit = c.audit(Some("quick"), 0, 10_000).await.unwrap();
    assert!(
        audit.iter().any(|r| r.region.as_deref() == Some("jp")
            && matches!(r.event, meridian_core::AuditEvent::Drift { expected: 0, observed: 50 })),
        "no drift record: {audit:?}"
    );
    assert_eq!(
        c.snapshot().plans["quick"].state.unit("jp", "signin").unwrap().phase,
        meridian_core::UnitPhase::RolledBack
    );
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_disabled_for_a_lost_approval_and_switched_on_by_hand_is_switched_off_again() {
    let text = PLAN.replace("stepBake: 200ms", "stepBake: 200ms\n  onApprovalRevoked: disable");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    let mut settings = Settings::new(vec![path]);
    settings.readback_interval = Duration::from_millis(100);
    let running = start(settings, fake_adapters(Arc::new(MemoryStore::default()), &fleet)).await.expect("start");
    let c = running.controller.clone();
    let jp = || fleet.traffic.lock().unwrap().get(&("jp".into(), "signin".into())).copied();
    c.grant(approval("jp-letter", "jp-regulator"), "test").await.unwrap();
    wait_for("jp serving", Duration::from_secs(20), || jp().is_some_and(|p| p > 0)).await;
    c.revoke("jp-letter", "ministry", Some("measures withdrawn".into())).await.unwrap();
    wait_for("jp disabled at the fleet", Duration::from_secs(10), || {
        jp() == Some(0)
            && c.snapshot().plans["quick"]
                .state
                .unit("jp", "signin")
                .is_some_and(|u| u.percent == 0 && u.step.is_none())
    })
    .await;
    // Someone switches jp back on by hand, with no approval in force.
    fleet.traffic.lock().unwrap().insert(("jp".into(), "signin".into()), 50);
    wait_for("the drift undone", Duration::from_secs(10), || jp() == Some(0)).await;
    let audit = c.audit(Some("quick"), 0, 10_000).await.unwrap();
    assert!(
        audit.iter().any(|r| r.region.as_deref() == Some("jp")
            && matches!(r.event, meridian_core::AuditEvent::Drift { expected: 0, observed: 50 })),
        "no drift record"
    );
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_retried_after_its_halted_wave_was_promoted_reaches_100() {
    // Halt, promote (accepting the failure), heal, retry: the retried region is in a complete
    // wave, and must still be watched for health until it is enabled.
    let text = PLAN.replace("approvals: [jp-regulator]", "approvals: []");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    fleet.unhealthy.lock().unwrap().push("jp".into());
    let running =
        start(Settings::new(vec![path]), fake_adapters(Arc::new(MemoryStore::default()), &fleet)).await.expect("start");
    let c = running.controller.clone();
    let unit = |c: &meridian_controller::runtime::Controller, service: &str| {
        c.snapshot().plans["quick"].state.unit("jp", service).cloned().unwrap()
    };
    wait_for("wave two halted", Duration::from_secs(20), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Halted
    })
    .await;
    let promote = Command { wave: Some("two".into()), ..Command::plan_wide(CommandKind::Promote, "op", Utc::now()) };
    c.command("quick", promote).await.unwrap();
    wait_for("wave two complete", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.waves[1].phase == meridian_core::WavePhase::Complete
    })
    .await;
    assert_eq!(unit(&c, "signin").phase, meridian_core::UnitPhase::RolledBack);
    fleet.unhealthy.lock().unwrap().clear();
    let retry = Command { region: Some("jp".into()), ..Command::plan_wide(CommandKind::Retry, "op", Utc::now()) };
    c.command("quick", retry).await.unwrap();
    wait_for("jp enabled after the retry", Duration::from_secs(20), || {
        ["signin", "store"].iter().all(|s| {
            let u = unit(&c, s);
            u.phase == meridian_core::UnitPhase::Enabled && u.percent == 100
        })
    })
    .await;
    for s in ["signin", "store"] {
        assert_eq!(fleet.traffic.lock().unwrap().get(&("jp".into(), s.to_string())), Some(&100), "jp/{s} at the fleet");
    }
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_file_emptied_mid_rollout_is_rejected_and_the_plan_stays_in_control() {
    // Two plans in one watched directory. "quick" is in flight (jp waits for its approval
    // while a and b serve traffic); "done" completes. Emptying quick's file (what `>` or an
    // editor does first) must not drop it; deleting the settled plan's file may.
    let dir = tempfile::tempdir().unwrap();
    let quick = dir.path().join("quick.yaml");
    let done = dir.path().join("done.yaml");
    std::fs::write(&quick, PLAN).unwrap();
    std::fs::write(
        &done,
        PLAN.replace("name: quick", "name: done").replace("approvals: [jp-regulator]", "approvals: []"),
    )
    .unwrap();
    let fleet = Arc::new(FakeFleet::default());
    let mut settings = Settings::new(vec![dir.path().to_path_buf()]);
    settings.config_poll = Duration::from_millis(100);
    let running = start(settings, fake_adapters(Arc::new(MemoryStore::default()), &fleet)).await.expect("start");
    let c = running.controller.clone();
    wait_for("quick serving in b and done complete", Duration::from_secs(20), || {
        let s = c.snapshot();
        s.plans["quick"].state.unit("b", "store").is_some_and(|u| u.percent == 100)
            && s.plans["done"].state.phase() == PlanPhase::Complete
    })
    .await;

    std::fs::write(&quick, "").unwrap();
    wait_for("the edit rejected", Duration::from_secs(10), || c.snapshot().config.rejected.is_some()).await;
    let s = c.snapshot();
    let errors = &s.config.rejected.as_ref().unwrap().errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("plan \"quick\" vanished from the files") && e.contains("meridian abort quick")),
        "{errors:?}"
    );
    assert_eq!(s.config.generation, 1, "the edit must not apply");
    assert!(s.plans.contains_key("quick"), "quick left control");
    // Still under control: a command on it is accepted and applied.
    c.command("quick", Command::plan_wide(CommandKind::Pause, "op", Utc::now())).await.unwrap();
    wait_for("quick paused", Duration::from_secs(5), || c.snapshot().plans["quick"].state.paused.plan).await;

    // Put back, the file applies again.
    std::fs::write(&quick, PLAN).unwrap();
    wait_for("quick's file back", Duration::from_secs(10), || {
        let s = c.snapshot();
        s.config.rejected.is_none() && s.config.generation == 2
    })
    .await;
    // A settled plan may leave: done's file removed is an applied edit.
    std::fs::remove_file(&done).unwrap();
    wait_for("done removed", Duration::from_secs(10), || {
        let s = c.snapshot();
        s.config.generation == 3 && !s.plans.contains_key("done") && s.plans.contains_key("quick")
    })
    .await;
    running.shutdown();
}

/// The fake fleet, but the first actuation of `panic_on` and the first `panic_evals`
/// evaluations panic, and evaluations take `eval_delay`, counting how many run at once.
#[derive(Default)]
struct UnrulyFleet {
    fleet: FakeFleet,
    panic_on: Option<(String, String)>,
    panicked: std::sync::atomic::AtomicBool,
    panic_evals: std::sync::atomic::AtomicUsize,
    eval_panicked: std::sync::atomic::AtomicBool,
    eval_delay: Duration,
    evaluating: std::sync::atomic::AtomicUsize,
    most_at_once: std::sync::atomic::AtomicUsize,
    /// After a panic, the next try of the same job waits until the test sets this, so that the
    /// readiness it took down stays down long enough to be seen.
    released: std::sync::atomic::AtomicBool,
}

impl UnrulyFleet {
    async fn until_released(&self) {
        while !self.released.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Actuator for UnrulyFleet {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        t: &'a Target,
        percent: u32,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        use std::sync::atomic::Ordering::SeqCst;
        let mine = self.panic_on.as_ref().is_some_and(|(r, s)| *r == t.region && *s == t.service);
        if mine && !self.panicked.swap(true, SeqCst) {
            panic!("actuator bug on {}/{}", t.region, t.service);
        }
        Box::pin(async move {
            if mine {
                self.until_released().await;
            }
            self.fleet.set_traffic(plan, t, percent, key).await
        })
    }

    fn read_traffic<'a>(&'a self, plan: &'a Plan, t: &'a Target) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        self.fleet.read_traffic(plan, t)
    }
}

impl HealthSource for UnrulyFleet {
    fn evaluate<'a>(&'a self, plan: &'a Plan, req: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let now = self.evaluating.fetch_add(1, SeqCst) + 1;
            self.most_at_once.fetch_max(now, SeqCst);
            tokio::time::sleep(self.eval_delay).await;
            self.evaluating.fetch_sub(1, SeqCst);
            if self.panic_evals.load(SeqCst) > 0 {
                self.panic_evals.fetch_sub(1, SeqCst);
                self.eval_panicked.store(true, SeqCst);
                panic!("health source bug");
            }
            if self.eval_panicked.load(SeqCst) {
                self.until_released().await;
            }
            self.fleet.evaluate(plan, req).await
        })
    }
}

async fn run_unruly(fleet: Arc<UnrulyFleet>) -> (tempfile::TempDir, meridian_controller::runtime::Running) {
    let text = PLAN.replace("approvals: [jp-regulator]", "approvals: []");
    let (dir, path) = setup(&text);
    let adapters = Adapters {
        store: Arc::new(MemoryStore::default()),
        health: fleet.clone(),
        actuator: fleet.clone(),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(NoNotifier),
    };
    let mut settings = Settings::new(vec![path]);
    settings.intent_retry = Duration::from_millis(100);
    (dir, start(settings, adapters).await.expect("start"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actuation_worker_that_panics_takes_readiness_down_and_its_intent_is_sent_again() {
    let fleet = Arc::new(UnrulyFleet { panic_on: Some(("a".into(), "signin".into())), ..UnrulyFleet::default() });
    let (_dir, running) = run_unruly(fleet.clone()).await;
    let c = running.controller.clone();
    wait_for("readiness down naming the worker", Duration::from_secs(10), || {
        c.readiness().reasons.iter().any(|r| r == "actuation worker for quick/a/signin panicked")
    })
    .await;
    assert!(!c.readiness().ready);
    assert_eq!(metric(&c.metrics(), "meridian_task_failures_total", &[("task", "actuation worker")]), Some(1.0));
    fleet.released.store(true, std::sync::atomic::Ordering::SeqCst);
    // Not left "in flight": the reconciler sends the open intent again, and the rollout ends.
    wait_for("plan complete", Duration::from_secs(30), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    wait_for("ready again", Duration::from_secs(10), || c.readiness().ready).await;
    assert_eq!(fleet.fleet.traffic.lock().unwrap().get(&("a".into(), "signin".into())), Some(&100));
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_evaluation_that_panics_is_reported_and_evaluations_never_pile_up() {
    let fleet = Arc::new(UnrulyFleet {
        panic_evals: std::sync::atomic::AtomicUsize::new(1),
        // 150 ms a request, two services: three health intervals per evaluation, which a poller
        // that did not wait would overlap.
        eval_delay: Duration::from_millis(150),
        ..UnrulyFleet::default()
    });
    let (_dir, running) = run_unruly(fleet.clone()).await;
    let c = running.controller.clone();
    wait_for("readiness down naming the evaluation", Duration::from_secs(10), || {
        c.readiness().reasons.iter().any(|r| r == "health evaluation of plan quick panicked")
    })
    .await;
    assert_eq!(metric(&c.metrics(), "meridian_task_failures_total", &[("task", "health evaluation")]), Some(1.0));
    fleet.released.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for("plan complete", Duration::from_secs(40), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    wait_for("ready again", Duration::from_secs(10), || c.readiness().ready).await;
    assert_eq!(fleet.most_at_once.load(std::sync::atomic::Ordering::SeqCst), 1, "evaluations of one plan overlapped");
    running.shutdown();
}

/// A health source whose every read times out: `Error` samples, and the fault saying why.
struct TimingOut;

impl HealthSource for TimingOut {
    fn evaluate<'a>(&'a self, plan: &'a Plan, req: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(async move {
            let mut eval = Evaluation::default();
            for c in &plan.health.checks {
                for r in &req.regions {
                    eval.samples.push(HealthSample {
                        region: r.clone(),
                        service: req.service.clone(),
                        check: c.name.clone(),
                        verdict: HealthVerdict::Error,
                        value: None,
                        detail: Some("timed out".into()),
                        at: req.now,
                        baseline: None,
                    });
                }
                eval.errors.push(meridian_core::ports::EvalFault {
                    check: Some(c.name.clone()),
                    label: "timeout",
                    message: format!("check {}: prometheus did not answer within 10s", c.name),
                });
            }
            eval
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_errors_reach_metrics_by_plan_check_and_kind_and_never_advance() {
    let (_dir, path) = setup(PLAN);
    let fleet = Arc::new(FakeFleet::default());
    let adapters = Adapters {
        store: Arc::new(MemoryStore::default()),
        health: Arc::new(TimingOut),
        actuator: fleet.clone(),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(NoNotifier),
    };
    let running = start(Settings::new(vec![path]), adapters).await.expect("start");
    let c = running.controller.clone();
    let labels = [("plan", "quick"), ("check", "errors"), ("error", "timeout")];
    wait_for("three timeouts counted", Duration::from_secs(10), || {
        metric(&c.metrics(), "meridian_health_errors_total", &labels).is_some_and(|n| n >= 3.0)
    })
    .await;
    // An error is never health: a stays at its first step.
    assert_eq!(c.snapshot().plans["quick"].state.unit("a", "signin").unwrap().percent, 50);
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_clock_drives_hour_long_bakes_without_waiting_for_them() {
    let text = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: slow}
spec:
  services: [{name: signin}]
  regions: [{name: a}, {name: b}]
  waves:
    - {name: one, regions: [a], bake: 1h}
    - {name: two, regions: [b], bake: 1h}
  steps: [50, 100]
  stepBake: 1h
";
    let (_dir, path) = setup(text);
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc);
    let clock = Arc::new(meridian_controller::runtime::ManualClock::new(t0));
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = Adapters {
        store: store.clone(),
        health: fleet.clone(),
        actuator: fleet.clone(),
        clock: clock.clone(),
        notifier: Arc::new(NoNotifier),
    };
    let running = start(Settings::new(vec![path]), adapters).await.expect("start");
    let c = running.controller.clone();
    let complete = || c.snapshot().plans["slow"].state.phase() == PlanPhase::Complete;
    for _ in 0..20 {
        // Settled: every actuation confirmed, and the next decision waits for the clock.
        wait_for("the controller waits on the clock", Duration::from_secs(10), || {
            complete()
                || (store.open_intents().unwrap().is_empty()
                    && c.snapshot().plans["slow"].wake_at.is_some_and(|w| w > clock.now()))
        })
        .await;
        if complete() {
            break;
        }
        let next = c.snapshot().plans["slow"].wake_at.unwrap();
        clock.set(next);
    }
    assert!(complete(), "{:?}", c.snapshot().plans["slow"].state);
    // Six hours of bakes on the clock: a at 50 %, 100 %, enabled, wave one baked, then b.
    assert_eq!(clock.now(), t0 + chrono::TimeDelta::hours(6));
    let audit = c.audit(Some("slow"), 0, 1000).await.unwrap();
    let b_started = audit
        .iter()
        .find(|r| r.region.as_deref() == Some("b") && matches!(r.cause, meridian_core::Cause::Started { .. }))
        .unwrap();
    assert_eq!(b_started.at, t0 + chrono::TimeDelta::hours(3), "b starts after a's two bakes and the wave bake");
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_takes_readiness_down_and_is_counted_until_it_can() {
    let text = PLAN.replace("approvals: [jp-regulator]", "approvals: []");
    let (_dir, path) = setup(&text);
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let running = start(Settings::new(vec![path]), fake_adapters(store.clone(), &fleet)).await.expect("start");
    let c = running.controller.clone();
    wait_for("a serving", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.unit("a", "signin").is_some_and(|u| u.percent > 0)
    })
    .await;
    store.fail_writes(true);
    wait_for("readiness down for the store", Duration::from_secs(10), || {
        c.readiness().reasons.iter().any(|r| r.starts_with("state store: decide failed: no space left on device"))
    })
    .await;
    assert!(!c.readiness().ready);
    let page = c.metrics();
    assert!(metric(&page, "meridian_store_errors_total", &[("op", "decide")]).is_some_and(|n| n >= 1.0), "{page}");
    // Nothing is decided while nothing can be recorded: the published state stays put.
    let held = c.snapshot().plans["quick"].state.audit_seq;
    wait_for("another failed attempt", Duration::from_secs(10), || {
        metric(&c.metrics(), "meridian_store_errors_total", &[("op", "decide")]).is_some_and(|n| n >= 2.0)
    })
    .await;
    assert_eq!(c.snapshot().plans["quick"].state.audit_seq, held);
    store.fail_writes(false);
    wait_for("ready again and complete", Duration::from_secs(20), || {
        c.readiness().ready && c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    running.shutdown();
}

/// A configuration source that is not files: a plan held in memory, changed by the test.
struct HeldSource {
    text: std::sync::Mutex<String>,
    changed: tokio::sync::Notify,
    /// The approval sources it owns start with this (as `kube:` for the Kubernetes source).
    owned: Option<&'static str>,
    /// How often it was read.
    loads: std::sync::atomic::AtomicUsize,
}

impl HeldSource {
    fn new(text: String, owned: Option<&'static str>) -> Arc<Self> {
        Arc::new(HeldSource { text: Mutex::new(text), changed: tokio::sync::Notify::new(), owned, loads: 0.into() })
    }
}

impl meridian_core::ports::config::ConfigSource for HeldSource {
    fn load(
        &self,
        now: chrono::DateTime<Utc>,
    ) -> BoxFuture<'_, Result<meridian_core::ports::config::Config, meridian_core::ports::config::ConfigError>> {
        let text = self.text.lock().unwrap().clone();
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            let bundle = meridian_core::validate::load(&[("held.yaml".to_string(), text)], Some(now));
            if bundle.report.has_errors() {
                return Err(meridian_core::ports::config::ConfigError::Invalid(bundle.report));
            }
            Ok(meridian_core::ports::config::Config {
                generation: 1,
                plans: bundle.plans.into_iter().map(Arc::new).collect(),
                approvals: bundle.approvals,
                approval_sources: HashMap::new(),
                warnings: bundle.report,
                loaded_at: now,
                fingerprint: 0,
            })
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.changed.notified())
    }

    fn owns(&self, source: &str) -> bool {
        self.owned.is_some_and(|prefix| source.starts_with(prefix))
    }

    fn describe(&self) -> String {
        "the test's memory".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_runs_on_any_configuration_source() {
    let source = HeldSource::new(PLAN.replace("approvals: [jp-regulator]", "approvals: []"), None);
    let fleet = Arc::new(FakeFleet::default());
    let adapters = fake_adapters(Arc::new(MemoryStore::default()), &fleet);
    let running = meridian_controller::runtime::start_with(source.clone(), Settings::new(Vec::new()), adapters)
        .await
        .expect("start");
    let c = running.controller.clone();
    wait_for("plan complete", Duration::from_secs(20), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    // An edit through the source: rejected whole when it does not validate.
    *source.text.lock().unwrap() = PLAN.replace("regions: [a]", "regions: [zz]");
    source.changed.notify_one();
    wait_for("the edit rejected", Duration::from_secs(10), || c.snapshot().config.rejected.is_some()).await;
    assert_eq!(c.snapshot().config.generation, 1);
    running.shutdown();
}

/// In Kubernetes mode a grant through the API is an Approval resource the source reports, and
/// deleting it revokes the grant. A resource deleted at once, before the source noticed it,
/// leaves the source's contents as they were at its last read, so no change wakes the
/// controller: the grant itself has the source read again, and that read revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_grant_the_source_keeps_is_read_back_from_it_and_revoked_when_its_resource_is_gone() {
    let source = HeldSource::new(PLAN.to_string(), Some("kube:"));
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::mirroring_api_grants("kube:test/"));
    let adapters = fake_adapters(store.clone(), &fleet);
    let running = meridian_controller::runtime::start_with(source.clone(), Settings::new(Vec::new()), adapters)
        .await
        .expect("start");
    let c = running.controller.clone();
    wait_for("jp waiting for jp-regulator", Duration::from_secs(20), || {
        c.snapshot().plans["quick"].state.unit("jp", "signin").is_some_and(|u| u.waiting.is_some())
    })
    .await;
    let loads = source.loads.load(std::sync::atomic::Ordering::SeqCst);
    // Granted, recorded as the source's, but the source no longer has it.
    c.grant(approval("jp-api", "jp-regulator"), "test").await.unwrap();
    // (The revocation may already be on record, so the grant's own event says where it is from.)
    let history = c.history(0, 1000).await.unwrap();
    assert!(
        history.iter().any(|e| e.event.kind == "approval-granted"
            && e.event.detail["approval"] == "jp-api"
            && e.event.detail["source"] == "kube:test/jp-api"),
        "recorded as the source's: {history:?}"
    );
    wait_for("the grant revoked", Duration::from_secs(10), || {
        store.approvals().unwrap().iter().any(|a| a.name == "jp-api" && a.revoked.is_some())
    })
    .await;
    assert!(source.loads.load(std::sync::atomic::Ordering::SeqCst) > loads, "the source was read again");
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_the_store_cannot_record_takes_readiness_down_until_a_write_succeeds() {
    let (_dir, path) = setup(PLAN);
    let store = Arc::new(MemoryStore::default());
    let fleet = Arc::new(FakeFleet::default());
    let running = start(Settings::new(vec![path]), fake_adapters(store.clone(), &fleet)).await.unwrap();
    let c = running.controller.clone();
    wait_for("ready", Duration::from_secs(10), || c.readiness().ready).await;
    store.fail_writes(true);
    c.record_denial("mallory", "POST /api/v1/plans/quick/abort", Utc::now());
    // The rollout goes on meanwhile, so its own commits may fail and name themselves too.
    wait_for("the failed denial counted", Duration::from_secs(10), || {
        metric(&c.metrics(), "meridian_store_errors_total", &[("op", "record_event")]) == Some(1.0)
    })
    .await;
    let r = c.readiness();
    assert!(!r.ready && r.reasons.iter().any(|r| r.contains("no space left on device")), "{r:?}");
    store.fail_writes(false);
    c.record_denial("mallory", "POST /api/v1/plans/quick/abort", Utc::now());
    wait_for("ready again once a write succeeds", Duration::from_secs(10), || c.readiness().ready).await;
    stop_and_release(running, c, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_commits_keep_failing_stops() {
    let (_dir, path) = setup(PLAN);
    let store = Arc::new(MemoryStore::default());
    let fleet = Arc::new(FakeFleet::default());
    let mut settings = Settings::new(vec![path]);
    settings.max_failed_commits = 3;
    let mut running = start(settings, fake_adapters(store.clone(), &fleet)).await.unwrap();
    let c = running.controller.clone();
    wait_for("the first step", Duration::from_secs(10), || !fleet.log.lock().unwrap().is_empty()).await;
    store.fail_writes(true);
    wait_for("readiness down", Duration::from_secs(10), || !c.readiness().ready).await;
    let stopped = tokio::time::timeout(Duration::from_secs(20), running.join_failure())
        .await
        .expect("the controller stops once 3 commits in a row failed");
    assert_eq!(stopped, Some("decision loop"));
    assert!(!c.readiness().ready);
    stop_and_release(running, c, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dangling_symlink_is_rejected_once_and_its_removal_clears_the_rejection() {
    let (dir, path) = setup(PLAN);
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let mut settings = Settings::new(vec![dir.path().to_path_buf()]);
    settings.config_poll = Duration::from_millis(50);
    let running = start(settings, fake_adapters(store.clone(), &fleet)).await.expect("start");
    let c = running.controller.clone();
    let link = dir.path().join("gone.yaml");
    std::os::unix::fs::symlink(dir.path().join("no-such-file.yaml"), &link).unwrap();
    wait_for("the dangling link rejected", Duration::from_secs(10), || c.snapshot().config.rejected.is_some()).await;
    let errors = c.snapshot().config.rejected.clone().unwrap().errors;
    assert!(errors.iter().any(|e| e.contains("gone.yaml")), "{errors:?}");
    std::fs::remove_file(&link).unwrap();
    wait_for("the rejection cleared", Duration::from_secs(10), || c.snapshot().config.rejected.is_none()).await;
    assert!(path.exists());
    let rejections = store.events().iter().filter(|e| e.kind == "config-rejected").count();
    assert_eq!(rejections, 1, "reported once, not on every poll");
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_a_unit_depends_on_is_announced_once_when_it_enters_the_warning_window() {
    let (_dir, path) = setup(PLAN);
    let state_dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(FakeFleet::default());
    // jp (pending in the second wave) depends on jp-regulator; its approval expires in 90
    // minutes, outside a 1h window at first, inside it once the window is 2h.
    let soon = ApprovalRecord {
        expires: Some(Utc::now() + chrono::TimeDelta::minutes(90)),
        ..approval("jp-soon", "jp-regulator")
    };
    for (round, window_hours) in [(0, 1), (1, 2), (2, 2)] {
        let store = Arc::new(SqliteStore::open(state_dir.path()).unwrap());
        let mut settings = Settings::new(vec![path.clone()]);
        settings.expiry_warning = Duration::from_secs(window_hours * 3600);
        let running = start(settings, fake_adapters(store.clone(), &fleet)).await.expect("start");
        let c = running.controller.clone();
        if round == 0 {
            c.grant(soon.clone(), "test").await.unwrap();
            wait_for("a decision with the grant", Duration::from_secs(10), || {
                c.snapshot().approvals.iter().any(|a| a.name == "jp-soon")
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(store.events("approval-expiring").unwrap().is_empty(), "outside the window: no warning");
            assert!(!c.metrics().contains("meridian_approval_expiring{"));
        } else {
            wait_for("the warning recorded", Duration::from_secs(10), || {
                store.events("approval-expiring").is_ok_and(|e| !e.is_empty())
            })
            .await;
            let metrics = c.metrics();
            assert!(
                metrics
                    .contains(r#"meridian_approval_expiring{approval="jp-soon",flag="jp-regulator",plan="quick"} 1"#),
                "{metrics}"
            );
        }
        stop_and_release(running, c, &store).await;
        let events = store.events("approval-expiring").unwrap();
        assert_eq!(events.len(), usize::from(round > 0), "announced once, across restarts (round {round})");
        if let Some(e) = events.first() {
            assert_eq!(e.detail["approval"], "jp-soon");
            assert_eq!(e.detail["plan"], "quick");
            assert!(e.detail["units"].as_array().unwrap().iter().any(|u| u == "jp/signin"), "{:?}", e.detail);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_plan_something_happened_to_is_decided_and_matching_read_backs_wake_nothing() {
    let plan = |name: &str| {
        format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: {name}}}
spec:
  services: [{{name: signin}}]
  regions: [{{name: {name}-r}}]
  waves: [{{name: one, regions: [{name}-r], bake: 1h}}]
  steps: [50, 100]
  stepBake: 1h
"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), plan("a")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), plan("b")).unwrap();
    // The clock stands still: no bake ends, so nothing is due but what the test causes.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc);
    let clock = Arc::new(meridian_controller::runtime::ManualClock::new(t0));
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = Adapters {
        store: store.clone(),
        health: fleet.clone(),
        actuator: fleet.clone(),
        clock: clock.clone(),
        notifier: Arc::new(NoNotifier),
    };
    let mut settings = Settings::new(vec![dir.path().to_path_buf()]);
    settings.readback_interval = Duration::from_millis(50);
    settings.config_poll = Duration::from_secs(3600);
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    let settled = |name: &str| {
        let snapshot = c.snapshot();
        let entry = &snapshot.plans[name];
        entry.wake_at.is_some_and(|w| w > clock.now())
            && entry.state.units[0]
                .waiting
                .as_ref()
                .is_some_and(|w| matches!(w, meridian_core::WaitReason::StepBake { .. }))
    };
    wait_for("both plans baking their first step", Duration::from_secs(10), || {
        settled("a") && settled("b") && store.open_intents().unwrap().is_empty()
    })
    .await;
    // A minute on (read-backs count only when taken after a unit's last move); the bakes
    // still have 59 minutes to go.
    clock.advance(chrono::TimeDelta::minutes(1));
    let (a_before, b_before) = (store.command_reads("a"), store.command_reads("b"));

    // Both targets are read back every 50 ms and serve what they should. Then someone changes
    // b's traffic by hand: its read-back is news, b is decided and the drift undone.
    fleet.traffic.lock().unwrap().insert(("b-r".into(), "signin".into()), 100);
    wait_for("b's drift undone", Duration::from_secs(10), || {
        fleet.traffic.lock().unwrap().get(&("b-r".into(), "signin".into())) == Some(&50)
            && store.open_intents().unwrap().is_empty()
            && store.command_reads("b") >= b_before + 2
    })
    .await;
    // Many read-back rounds of a came and went meanwhile, each matching: a was not decided
    // once, and nothing else woke it either.
    assert_eq!(store.command_reads("a"), a_before, "a was decided without anything new for it");
    let audit = c.audit(Some("b"), 0, 100).await.unwrap();
    assert!(
        audit.iter().any(|r| matches!(r.event, meridian_core::AuditEvent::Drift { expected: 50, observed: 100 })),
        "{audit:?}"
    );
    running.shutdown();
}

/// Records the plan and `now` of every evaluation, and answers healthy.
#[derive(Default)]
struct RecordingHealth {
    fleet: FakeFleet,
    asked: Mutex<Vec<(String, chrono::DateTime<Utc>)>>,
}

impl HealthSource for RecordingHealth {
    fn evaluate<'a>(&'a self, plan: &'a Plan, req: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        self.asked.lock().unwrap().push((plan.name.clone(), req.now));
        self.fleet.evaluate(plan, req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_with_one_health_interval_are_evaluated_at_the_same_ticks_with_the_same_now() {
    let plan = |name: &str| {
        format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: {name}}}
spec:
  services: [{{name: signin}}]
  regions: [{{name: r}}]
  waves: [{{name: one, regions: [r]}}]
  steps: [50, 100]
  stepBake: 1h
  health:
    interval: 100ms
    checks: [{{name: errors, prometheus: {{query: 'x'}}, max: 0.01}}]
"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), plan("a")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), plan("b")).unwrap();
    let health = Arc::new(RecordingHealth::default());
    let fleet = Arc::new(FakeFleet::default());
    let adapters = Adapters {
        store: Arc::new(MemoryStore::default()),
        health: health.clone(),
        actuator: fleet.clone(),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(NoNotifier),
    };
    let running = start(Settings::new(vec![dir.path().to_path_buf()]), adapters).await.expect("start");
    let nows = |plan: &str| -> std::collections::BTreeSet<chrono::DateTime<Utc>> {
        health.asked.lock().unwrap().iter().filter(|(p, _)| p == plan).map(|(_, at)| *at).collect()
    };
    // Both plans bake their first step for an hour, under watch: evaluated every 100 ms. The
    // ticks they share carry one `now`, so a health source can tell identical questions apart
    // from merely similar ones and send each once.
    wait_for("five ticks shared by both plans", Duration::from_secs(20), || {
        nows("a").intersection(&nows("b")).count() >= 5
    })
    .await;
    running.shutdown();
}

/// A fleet whose every actuation takes a while, that counts how many are in flight at once
/// and checks that each one's intent was committed before it was sent.
struct SlowFleet {
    store: Arc<MemoryStore>,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    sent: Mutex<Vec<(String, String, String, u32)>>,
    unrecorded: Mutex<Vec<String>>,
}

impl Actuator for SlowFleet {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        t: &'a Target,
        percent: u32,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            if !self.store.intents().iter().any(|(i, _)| i.idempotency_key == key && i.percent == percent) {
                self.unrecorded.lock().unwrap().push(key.to_string());
            }
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, SeqCst);
            self.sent.lock().unwrap().push((plan.name.clone(), t.region.clone(), t.service.clone(), percent));
            Ok(())
        })
    }

    fn read_traffic<'a>(
        &'a self,
        _plan: &'a Plan,
        t: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        let sent = self.sent.lock().unwrap();
        let last = sent.iter().rev().find(|(_, r, s, _)| *r == t.region && *s == t.service).map(|x| x.3);
        Box::pin(async move { Ok(last) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_over_many_plans_is_committed_once_and_actuated_a_few_at_a_time() {
    const PLANS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..PLANS {
        let plan = format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p{i:02}}}
spec:
  services: [{{name: web}}]
  regions: [{{name: a}}, {{name: b}}, {{name: c}}]
  waves: [{{name: all, regions: [a, b, c], bake: 1h}}]
  steps: [10, 100]
  stepBake: 1h
"
        );
        std::fs::write(dir.path().join(format!("p{i:02}.yaml")), plan).unwrap();
    }
    let store = Arc::new(MemoryStore::default());
    let fleet = Arc::new(SlowFleet {
        store: store.clone(),
        in_flight: Default::default(),
        most: Default::default(),
        sent: Mutex::new(Vec::new()),
        unrecorded: Mutex::new(Vec::new()),
    });
    let adapters = Adapters {
        store: store.clone(),
        health: Arc::new(FakeFleet::default()),
        actuator: fleet.clone(),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(NoNotifier),
    };
    let mut settings = Settings::new(vec![dir.path().to_path_buf()]);
    settings.max_actuations = 4;
    let running = start(settings, adapters).await.expect("start");
    let c = running.controller.clone();
    wait_for("every first step sent and closed", Duration::from_secs(30), || {
        fleet.sent.lock().unwrap().len() >= PLANS * 3 && store.open_intents().unwrap().is_empty()
    })
    .await;
    let snapshot = c.snapshot();
    assert!(snapshot.plans.values().all(|p| p.state.units.iter().all(|u| u.percent == 10)));

    // The first pass decided every plan and committed them in one call.
    let passes = store.commit_passes();
    assert_eq!(passes.first(), Some(&PLANS), "commit passes: {passes:?}");
    // Then each confirmation (a few at a time here) is decided and committed in a pass of its own.
    assert!(passes.iter().all(|&n| n > 0), "an empty commit: {passes:?}");
    // Every unit was sent its step once, never more than 4 at a time, each after its commit.
    let sent = fleet.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), PLANS * 3, "{sent:?}");
    let most = fleet.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} actuations in flight at once; expected 2 to 4");
    assert!(fleet.unrecorded.lock().unwrap().is_empty(), "sent before committed: {:?}", fleet.unrecorded);
    assert!(store.open_intents().unwrap().is_empty());
    running.shutdown();
}

/// Plan `quick` of one service on `regions` in `waves`: steps [50, 100], each baked
/// `step_bake`, under a check the fake fleet answers.
fn one_service_plan(regions: &str, waves: &str, step_bake: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: quick}}
spec:
  services: [{{name: signin}}]
  regions: {regions}
  waves: {waves}
  steps: [50, 100]
  stepBake: {step_bake}
  health:
    interval: 100ms
    checks: [{{name: errors, prometheus: {{query: 'x'}}, max: 0.01}}]
"
    )
}

/// Settings that see an edit of the files in `dir` and read targets back within 200 ms.
fn edits_seen_fast(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::new(vec![dir.to_path_buf()]);
    settings.config_poll = Duration::from_millis(100);
    settings.readback_interval = Duration::from_millis(200);
    settings
}

/// Notices the controller sent, in order.
#[derive(Default)]
struct Told(Mutex<Vec<meridian_core::notify::Notice>>);

impl meridian_core::ports::Notifier for Told {
    fn notify(&self, notices: Vec<meridian_core::notify::Notice>) {
        self.0.lock().unwrap().extend(notices);
    }
}

/// A plan whose every wave is complete while a region an edit removed still serves traffic
/// (its 0 % refused) is running, not complete: `--exit-when-done`, `status --wait` and plans
/// that depend on it wait. It completes, and says so, once the target is seen at 0 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_not_complete_while_a_removed_region_still_serves_traffic() {
    let plan = |regions: &str, waves: &str| one_service_plan(regions, waves, "100ms");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.yaml");
    let one = "[{name: one, regions: [a], bake: 100ms}";
    std::fs::write(
        &file,
        plan("[{name: a}, {name: b, stepBake: 1h}]", &format!("{one}, {{name: two, regions: [b]}}]")),
    )
    .unwrap();
    let fleet = Arc::new(FakeFleet::default());
    let told = Arc::new(Told::default());
    let mut adapters = fake_adapters(Arc::new(MemoryStore::default()), &fleet);
    adapters.notifier = told.clone();
    let running = start(edits_seen_fast(dir.path()), adapters).await.expect("start");
    let c = running.controller.clone();
    let served = |region: &str| fleet.traffic.lock().unwrap().get(&(region.into(), "signin".into())).copied();
    wait_for("b at 50 %", Duration::from_secs(10), || served("b") == Some(50)).await;

    fleet.refuse_zero.lock().unwrap().0.push("b".into());
    std::fs::write(&file, plan("[{name: a}]", &format!("{one}]"))).unwrap();
    wait_for("b's wind-down refused", Duration::from_secs(10), || fleet.refuse_zero.lock().unwrap().1 > 0).await;
    wait_for("b departing", Duration::from_secs(10), || c.snapshot().plans["quick"].state.departing.len() == 1).await;
    let state = c.snapshot().plans["quick"].state.clone();
    assert!(state.waves.iter().all(|w| w.phase == meridian_core::WavePhase::Complete), "{:?}", state.waves);
    assert_eq!(state.phase(), PlanPhase::Running, "b still serves {:?} %", served("b"));
    let complete = || told.0.lock().unwrap().iter().any(|n| n.summary.starts_with("quick: rollout complete"));
    assert!(!complete());

    fleet.refuse_zero.lock().unwrap().0.clear();
    wait_for("the plan complete", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.phase() == PlanPhase::Complete
    })
    .await;
    assert_eq!(served("b"), Some(0));
    wait_for("its completion told", Duration::from_secs(10), complete).await;
    running.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_removed_mid_rollout_is_wound_down_to_zero_even_after_a_refusal_and_the_edit_is_in_the_config_status()
{
    let plan = |regions: &str, waves: &str| one_service_plan(regions, waves, "1h");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.yaml");
    std::fs::write(&file, plan("[{name: a}, {name: b}]", "[{name: one, regions: [a]}, {name: two, regions: [b]}]"))
        .unwrap();
    let fleet = Arc::new(FakeFleet::default());
    let store = Arc::new(MemoryStore::default());
    let adapters = fake_adapters(store.clone(), &fleet);
    let running = start(edits_seen_fast(dir.path()), adapters).await.expect("start");
    let c = running.controller.clone();
    let served = |region: &str| fleet.traffic.lock().unwrap().get(&(region.into(), "signin".into())).copied();
    wait_for("a at 50 %", Duration::from_secs(10), || served("a") == Some(50)).await;
    assert!(c.snapshot().config.last_edit.is_none());

    // a's target refuses its 0 % for good at first: a stays departing (its plan in control)...
    fleet.refuse_zero.lock().unwrap().0.push("a".into());
    std::fs::write(&file, plan("[{name: b}]", "[{name: one, regions: [b]}]")).unwrap();
    wait_for("a's wind-down refused", Duration::from_secs(10), || fleet.refuse_zero.lock().unwrap().1 > 0).await;
    assert_eq!(served("a"), Some(50));
    wait_for("a departing, kept while its target serves traffic", Duration::from_secs(10), || {
        c.snapshot().plans["quick"].state.departing.len() == 1
    })
    .await;
    // ... and once the target takes it, a read-back that still shows 50 % has it sent again.
    fleet.refuse_zero.lock().unwrap().0.clear();
    wait_for("a wound down to 0 %", Duration::from_secs(10), || served("a") == Some(0)).await;
    wait_for("a dropped from the state", Duration::from_secs(10), || {
        let s = c.snapshot();
        let state = &s.plans["quick"].state;
        state.unit("a", "signin").is_none() && state.departing.is_empty()
    })
    .await;
    let s = c.snapshot();
    let edit = s.config.last_edit.as_ref().expect("the edit is in the config status");
    assert_eq!(edit.plans.len(), 1);
    let lines = edit.plans[0].lines();
    assert!(
        lines.contains(
            &"unit a/signin removed: region a removed from the plan: wound down from 50 % to 0 % by the next \
              decision; its audit records stay"
                .to_string()
        ),
        "{lines:?}"
    );
    let json = serde_json::to_value(&s.config).unwrap();
    let units = json["lastEdit"]["plans"][0]["units"].as_array().unwrap().clone();
    let a = units.iter().find(|u| u["region"] == "a").unwrap();
    assert_eq!((a["change"].as_str(), a["percent"].as_u64()), (Some("removed"), Some(50)));
    // The audit trail of the removed region is kept: its start and its wind-down.
    let records = store.audit(Some("quick"), 0, 10_000).unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.region.as_deref() == Some("a") && matches!(r.cause, meridian_core::Cause::Started { .. }))
    );
    assert!(
        records
            .iter()
            .any(|r| r.region.as_deref() == Some("a") && matches!(r.cause, meridian_core::Cause::PlanEdited { .. }))
    );
    running.shutdown();
}
