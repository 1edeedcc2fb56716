//! Plans that depend on plans (`dependsOn`): scenarios on an injected clock, the projection
//! of several plans together, and a property test that no unit of a dependent wave ever
//! starts before what it depends on is complete, checked by a model of its own (the other
//! plan's audit trail and the commands the test gave it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::blockers::blockers;
use meridian_core::command::{Command, CommandKind};
use meridian_core::dependency::PlanProgress;
use meridian_core::engine::{Action, Observations, decide};
use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::plan::Plan;
use meridian_core::simulate::{SimOptions, simulate_together};
use meridian_core::state::{PlanState, UnitPhase, WaitReason, WavePhase};
use meridian_core::validate::load;
use meridian_core::watch::under_watch;
use meridian_core::{AuditEvent, AuditRecord, Cause};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn mk_doc(name: &str, spec: &str) -> String {
    format!("apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

/// Plans read together (so `dependsOn` resolves), by name.
fn mk_plans(docs: &[String]) -> Vec<Plan> {
    let files: Vec<(String, String)> =
        docs.iter().enumerate().map(|(i, d)| (format!("p{i}.yaml"), d.clone())).collect();
    let bundle = load(&files, None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    bundle.plans
}

const SIGNIN: &str = "  services: [{name: signin}]
  regions: [{name: us}, {name: eu}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 10m
";

fn mk_store(extra: &str) -> String {
    format!(
        "  services: [{{name: store}}]
  regions: [{{name: us}}, {{name: eu}}, {{name: jp}}]
  waves:
    - name: first
      regions: [us, eu]
      maxParallel: 1
      dependsOn: [{{plan: signin, wave: canary}}]
    - {{name: second, regions: [jp]}}
  steps: [50, 100]
  stepBake: 10m
{extra}"
    )
}

/// One decision of `plan` at `now`, seeing `others`, with healthy samples for what is watched.
fn step(
    plan: &Plan,
    state: &PlanState,
    others: Option<&PlanProgress>,
    commands: &[Command],
    now: DateTime<Utc>,
) -> (PlanState, Vec<AuditRecord>, Vec<Action>) {
    let health = healthy(plan, state, now, &[]);
    let obs = Observations { health: &health, commands, other_plans: others, ..Observations::default() };
    let d = decide(plan, state.clone(), &obs, now);
    (d.state, d.audit, d.actions)
}

/// A verdict at `now` for every unit under watch: unhealthy in `failing`, healthy elsewhere.
fn healthy(plan: &Plan, state: &PlanState, now: DateTime<Utc>, failing: &[String]) -> Vec<HealthSample> {
    let mut out = Vec::new();
    for (i, u) in state.units.iter().enumerate() {
        if !under_watch(plan, state, i) {
            continue;
        }
        let verdict = if failing.contains(&u.region) { HealthVerdict::Unhealthy } else { HealthVerdict::Healthy };
        for check in &plan.health.checks {
            out.push(HealthSample {
                region: u.region.clone(),
                service: u.service.clone(),
                check: check.name.clone(),
                verdict,
                value: None,
                detail: None,
                at: now,
                baseline: None,
            });
        }
    }
    out
}

fn unit<'s>(state: &'s PlanState, region: &str) -> &'s meridian_core::state::UnitState {
    state.units.iter().find(|u| u.region == region).unwrap()
}

#[test]
fn a_dependent_wave_waits_for_the_other_plans_wave_says_so_and_starts_once_it_is_complete() {
    let plans = mk_plans(&[mk_doc("signin", SIGNIN), mk_doc("store", &mk_store("  progressDeadline: 20m\n"))]);
    let (signin, store) = (&plans[0], &plans[1]);
    let mut a = PlanState::new(signin);
    let mut b = PlanState::new(store);
    let mut now = t0();
    // Nothing known about signin: store waits, and says for what.
    (b, _, _) = step(store, &b, None, &[], now);
    let waits = WaitReason::PlanDependency { plan: "signin".into(), wave: Some("canary".into()), aborted: false };
    assert_eq!(b.waves[0].phase, WavePhase::Pending);
    assert_eq!(b.waves[0].waiting.as_ref(), Some(&waits));
    assert_eq!(unit(&b, "us").waiting.as_ref(), Some(&waits));
    assert_eq!(waits.to_string(), "waits for plan signin wave canary");
    // signin's canary runs; store waits all along, well past its progress deadline, which a
    // dependency does not run (an expected wait).
    let mut store_audit = Vec::new();
    while a.waves[0].phase != WavePhase::Complete {
        (a, _, _) = step(signin, &a, None, &[], now);
        let progress = PlanProgress::of([&a]);
        let (next, audit, actions) = step(store, &b, Some(&progress), &[], now);
        if a.waves[0].phase != WavePhase::Complete {
            assert!(actions.is_empty() && next.units.iter().all(|u| u.percent == 0), "store moved at {now}");
        }
        store_audit.extend(audit);
        b = next;
        now += mins(5);
    }
    assert!(now - t0() >= mins(20), "the canary took {}", now - t0());
    assert!(!store_audit.iter().any(|r| matches!(r.cause, Cause::ProgressDeadline { .. })), "{store_audit:#?}");
    // Complete: the decision that completed it let store's first region start at once.
    assert_eq!(unit(&b, "us").percent, 50);
    assert_eq!(unit(&b, "eu").phase, UnitPhase::Blocked);
    assert!(matches!(unit(&b, "eu").waiting, Some(WaitReason::Parallelism { .. })));
    // The whole-plan form waits for every wave.
    let whole = mk_plans(&[mk_doc("signin", SIGNIN), mk_doc("store", &mk_store("  dependsOn: [{plan: signin}]\n"))]);
    let (state, _, _) = step(&whole[1], &PlanState::new(&whole[1]), Some(&PlanProgress::of([&a])), &[], now);
    assert_eq!(
        state.waves[0].waiting.as_ref().map(ToString::to_string).as_deref(),
        Some("waits for plan signin to complete")
    );
    let roots = blockers(&state);
    assert_eq!(roots.roots[0].kind, "plan");
    assert_eq!(roots.roots[0].reason, "waits for plan signin to complete");
}

#[test]
fn when_the_other_plan_is_aborted_started_units_go_on_and_the_rest_wait_again() {
    let plans = mk_plans(&[mk_doc("signin", SIGNIN), mk_doc("store", &mk_store(""))]);
    let (signin, store) = (&plans[0], &plans[1]);
    let mut a = PlanState::new(signin);
    let mut b = PlanState::new(store);
    let mut now = t0();
    while unit(&b, "us").percent == 0 {
        (a, _, _) = step(signin, &a, None, &[], now);
        (b, _, _) = step(store, &b, Some(&PlanProgress::of([&a])), &[], now);
        now += mins(5);
    }
    // signin is aborted while store's us is at 50 % and eu waits for a parallel slot.
    let abort = Command::plan_wide(CommandKind::Abort, "oncall", now);
    (a, _, _) = step(signin, &a, None, &[abort], now);
    assert!(a.aborted);
    let mut lowered = false;
    for _ in 0..12 {
        let (next, _, actions) = step(store, &b, Some(&PlanProgress::of([&a])), &[], now);
        lowered |= actions.iter().any(|Action::SetTraffic { percent, from, .. }| percent < from);
        b = next;
        now += mins(5);
    }
    assert!(!lowered, "the dependency alone lowered traffic");
    assert_eq!(unit(&b, "us").phase, UnitPhase::Enabled, "a started unit goes on");
    assert_eq!(unit(&b, "eu").percent, 0);
    assert_eq!(
        unit(&b, "eu").waiting.as_ref().map(ToString::to_string).as_deref(),
        Some("waits for plan signin wave canary (that plan was aborted)")
    );
    assert_eq!(b.waves[0].phase, WavePhase::Running);
}

#[test]
fn projected_together_the_dependent_wave_starts_after_its_dependency_completes() {
    let plans = mk_plans(&[mk_doc("store", &mk_store("  dependsOn: [{plan: signin}]\n")), mk_doc("signin", SIGNIN)]);
    let refs: Vec<&Plan> = plans.iter().collect();
    let timelines = simulate_together(&refs, &[], &SimOptions::new(t0()));
    let (store, signin) = (&timelines[0], &timelines[1]);
    let signin_done = signin.finished_at.expect("signin finishes");
    assert_eq!(signin_done, t0() + mins(40), "two waves of two 10m steps, each enabled after its bake");
    let store_start = store.waves[0].started_at.expect("store starts");
    assert_eq!(store_start, signin_done, "store's first wave starts in the decision signin completes");
    assert!(store.finished_at.is_some_and(|f| f > store_start));
    // Alone, store never starts, and says why.
    let alone = simulate_together(&refs[..1], &[], &SimOptions::new(t0()));
    assert!(alone[0].finished_at.is_none());
    assert_eq!(alone[0].units[0].waiting_text.as_deref(), Some("waits for plan signin to complete"));
}

// ----- property: no unit of a dependent wave starts before its dependencies are complete -----

#[derive(Debug, Clone)]
struct Case {
    /// Plan a: per wave, its regions (at least one).
    a_waves: Vec<usize>,
    /// a's wave budget (tolerates its failed region) or none (a failure halts it).
    a_budget: bool,
    /// A region of a that fails, from this many minutes.
    a_fails: Option<(usize, i64)>,
    /// An abort of a at this many minutes; a promote of its halted waves at that many.
    a_abort: Option<i64>,
    a_promote: Option<i64>,
    /// Plan b: per wave, its regions, maxParallel 1 or not, its dependsOn (a's wave index, or
    /// `None` for the whole plan).
    b_waves: Vec<(usize, bool, Vec<Option<usize>>)>,
    /// b's plan-wide dependsOn.
    b_plan_deps: Vec<Option<usize>>,
    /// Minutes between decisions.
    tick: i64,
}

fn case() -> impl Strategy<Value = Case> {
    (1..=3usize)
        .prop_flat_map(|a_len| {
            let dep = move || prop::option::weighted(0.7, 0..a_len);
            (
                prop::collection::vec(1..=2usize, a_len),
                any::<bool>(),
                prop::option::weighted(0.4, (0..6usize, 0..60i64)),
                prop::option::weighted(0.3, 0..120i64),
                prop::option::weighted(0.3, 0..200i64),
                prop::collection::vec((1..=2usize, any::<bool>(), prop::collection::vec(dep(), 0..=2)), 1..=3),
                prop::collection::vec(dep(), 0..=1),
                1..=7i64,
            )
        })
        .prop_map(|(a_waves, a_budget, a_fails, a_abort, a_promote, b_waves, b_plan_deps, tick)| Case {
            a_waves,
            a_budget,
            a_fails,
            a_abort,
            a_promote,
            b_waves,
            b_plan_deps,
            tick,
        })
}

fn deps_yaml(deps: &[Option<usize>]) -> String {
    let entries: Vec<String> = deps
        .iter()
        .map(|d| match d {
            Some(w) => format!("{{plan: a, wave: w{w}}}"),
            None => "{plan: a}".to_string(),
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

fn case_plans(c: &Case) -> Vec<Plan> {
    let mut regions = Vec::new();
    let mut waves = String::new();
    for (w, n) in c.a_waves.iter().enumerate() {
        let names: Vec<String> = (0..*n).map(|k| format!("a{w}{k}")).collect();
        regions.extend(names.iter().cloned());
        let budget = if c.a_budget { ", maxFailures: 1" } else { "" };
        waves.push_str(&format!("    - {{name: w{w}, regions: [{}]{budget}}}\n", names.join(", ")));
    }
    let region_list = regions.iter().map(|r| format!("{{name: {r}}}")).collect::<Vec<_>>().join(", ");
    let a = format!(
        "  services: [{{name: s}}]\n  regions: [{region_list}]\n  waves:\n{waves}  steps: [10, 100]\n  stepBake: \
         5m\n  health:\n    interval: 30s\n    checks:\n      - {{name: e, prometheus: {{query: x}}, max: 1}}\n"
    );
    let mut regions = Vec::new();
    let mut waves = String::new();
    for (w, (n, serial, deps)) in c.b_waves.iter().enumerate() {
        let names: Vec<String> = (0..*n).map(|k| format!("b{w}{k}")).collect();
        regions.extend(names.iter().cloned());
        let serial = if *serial { ", maxParallel: 1" } else { "" };
        let deps = if deps.is_empty() { String::new() } else { format!(", dependsOn: {}", deps_yaml(deps)) };
        waves.push_str(&format!("    - {{name: v{w}, regions: [{}]{serial}{deps}}}\n", names.join(", ")));
    }
    let region_list = regions.iter().map(|r| format!("{{name: {r}}}")).collect::<Vec<_>>().join(", ");
    let plan_deps =
        if c.b_plan_deps.is_empty() { String::new() } else { format!("  dependsOn: {}\n", deps_yaml(&c.b_plan_deps)) };
    let b = format!(
        "  services: [{{name: s}}, {{name: t, after: [s]}}]\n  regions: [{region_list}]\n  waves:\n{waves}{plan_deps}  \
         steps: [10, 50, 100]\n  stepBake: 3m\n"
    );
    mk_plans(&[mk_doc("a", &a), mk_doc("b", &b)])
}

/// Drive both plans for 8 hours; check every start of b against a model of a built from a's
/// audit records and the commands given to it.
fn check_case(c: &Case) -> Result<(), TestCaseError> {
    let plans = case_plans(c);
    let (a_plan, b_plan) = (&plans[0], &plans[1]);
    let mut a = PlanState::new(a_plan);
    let mut b = PlanState::new(b_plan);
    // The model: when each of a's waves completed, and whether a is aborted.
    let mut completed: Vec<Option<DateTime<Utc>>> = vec![None; a_plan.waves.len()];
    let mut aborted = false;
    let mut now = t0();
    let end = t0() + TimeDelta::hours(8);
    let at = |m: i64| t0() + mins(m);
    while now < end {
        let mut commands = Vec::new();
        if c.a_abort.is_some_and(|m| now >= at(m)) && !aborted {
            commands.push(Command::plan_wide(CommandKind::Abort, "oncall", now));
            aborted = true;
        }
        if c.a_promote.is_some_and(|m| now >= at(m) && now < at(m) + mins(c.tick)) {
            commands.push(Command::plan_wide(CommandKind::Promote, "oncall", now));
        }
        let failing: Vec<String> = match c.a_fails {
            Some((k, m)) if now >= at(m) => a_plan.regions.get(k).map(|r| r.name.clone()).into_iter().collect(),
            _ => Vec::new(),
        };
        let health = healthy(a_plan, &a, now, &failing);
        let obs = Observations { health: &health, commands: &commands, ..Observations::default() };
        let d = decide(a_plan, a.clone(), &obs, now);
        for r in &d.audit {
            if let AuditEvent::Wave { to: WavePhase::Complete, .. } = r.event {
                let w = a_plan.wave_index(r.wave.as_deref().unwrap()).unwrap();
                completed[w] = Some(r.at);
            }
        }
        a = d.state;
        let progress = PlanProgress::of([&a]);
        let (next, audit, actions) = step(b_plan, &b, Some(&progress), &[], now);
        // Started units are never rolled back by a dependency: b has no failures, so its
        // traffic never goes down.
        for Action::SetTraffic { region, percent, from, .. } in &actions {
            prop_assert!(percent >= from, "b/{region} lowered from {from} to {percent} at {now}");
        }
        for r in audit.iter().filter(|r| matches!(r.cause, Cause::Started { .. })) {
            let w = b_plan.wave_index(r.wave.as_deref().unwrap()).unwrap();
            let deps = b_plan.depends_on.iter().chain(&b_plan.waves[w].depends_on);
            for dep in deps {
                let holds = !aborted
                    && match &dep.wave {
                        Some(v) => completed[a_plan.wave_index(v).unwrap()].is_some_and(|t| t <= now),
                        None => completed.iter().all(|t| t.is_some_and(|t| t <= now)),
                    };
                prop_assert!(
                    holds,
                    "b/{} of wave {} started at {now} before a {:?} was complete (completed: {completed:?}, \
                     aborted: {aborted})",
                    r.region.as_deref().unwrap_or("?"),
                    b_plan.waves[w].name,
                    dep.wave
                );
            }
        }
        // Every unit of b that waits only on a dependency names one that does not hold.
        for u in &next.units {
            if let Some(WaitReason::PlanDependency { plan, wave, .. }) = &u.waiting {
                let dep = meridian_core::plan::PlanDependency { plan: plan.clone(), wave: wave.clone() };
                prop_assert!(!progress.holds(&dep), "b/{} waits for {dep:?}, which holds", u.region);
                prop_assert_eq!(u.percent, 0);
            }
        }
        b = next;
        now += mins(c.tick);
    }
    // When a completes and stays so, b finishes (it has no failures of its own).
    if !aborted && completed.iter().all(Option::is_some) {
        prop_assert!(b.units.iter().all(|u| u.phase == UnitPhase::Enabled), "{:#?}", b.units);
    }
    Ok(())
}

#[test]
fn no_unit_of_a_dependent_wave_starts_before_its_dependency_is_complete() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96);
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    runner.run(&case(), |c| check_case(&c)).unwrap();
}

#[test]
fn the_story_works_in_a_dependent_plan_promote_the_halted_wave_heal_and_retry_to_100() {
    let health = "  health:\n    interval: 30s\n    checks: [{name: errors, prometheus: {query: 'x'}, max: 0.01}]\n";
    let plans = mk_plans(&[mk_doc("signin", SIGNIN), mk_doc("store", &mk_store(health))]);
    let (signin, store) = (&plans[0], &plans[1]);
    let (mut a, mut b) = (PlanState::new(signin), PlanState::new(store));
    let mut now = t0();
    let mut failing = vec!["eu".to_string()];
    let mut commands: Vec<Command> = Vec::new();
    let mut promoted = false;
    let mut retried = false;
    let deadline = t0() + TimeDelta::hours(6);
    while b.phase() != meridian_core::state::PlanPhase::Complete {
        assert!(now < deadline, "store did not complete: {b:#?}");
        (a, _, _) = step(signin, &a, None, &[], now);
        let progress = PlanProgress::of([&a]);
        let health = healthy(store, &b, now, &failing);
        let obs = Observations {
            health: &health,
            commands: &commands,
            other_plans: Some(&progress),
            ..Observations::default()
        };
        b = decide(store, b.clone(), &obs, now).state;
        commands.clear();
        if b.waves[0].phase == WavePhase::Halted && !promoted {
            // eu failed in the dependent wave: the operator accepts it, heals it and retries it.
            assert_eq!(unit(&b, "us").percent, 100, "us went on within the wave: {b:#?}");
            promoted = true;
            commands.push(Command {
                wave: Some("first".into()),
                ..Command::plan_wide(CommandKind::Promote, "oncall", now)
            });
        } else if promoted && !retried {
            assert_eq!(b.waves[0].phase, WavePhase::Complete);
            failing.clear();
            retried = true;
            commands
                .push(Command { region: Some("eu".into()), ..Command::plan_wide(CommandKind::Retry, "oncall", now) });
        }
        now += TimeDelta::seconds(30);
    }
    assert!(promoted && retried);
    assert!(b.units.iter().all(|u| u.phase == UnitPhase::Enabled && u.percent == 100), "{b:#?}");
}
