//! Health relative to the fleet (`relative` on a check), through the engine on an injected
//! clock: a scripted fleet of per-region values is judged the way the health adapters judge
//! one batched query (`health::assess`, then `relative::baseline` over the regions the engine
//! names in `EvalRequest::baseline`, then `relative::assess`), and the engine's records,
//! state and outcome are checked. Property tests check the invariants of the judgement and
//! of whole random rollouts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::command::{Command, CommandKind};
use meridian_core::engine::{Observations, decide};
use meridian_core::health::{HealthSample, HealthVerdict, assess};
use meridian_core::manifest::BaselineKind;
use meridian_core::outcome::outcome;
use meridian_core::plan::Plan;
use meridian_core::relative::{self, RelativeLimit};
use meridian_core::simulate::{SimOptions, simulate};
use meridian_core::state::{PlanPhase, PlanState, UnitPhase, WaitReason, WavePhase};
use meridian_core::validate::load;
use meridian_core::{AuditRecord, Cause, CheckEvidence};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn mk_plan(text: &str) -> Plan {
    let bundle = load(&[("p.yaml".into(), text.to_string())], None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    bundle.plans.into_iter().next().expect("one plan")
}

/// The example: us-east is the canary, eu-west and eu-central follow, and jp comes
/// last, compared with the median of the three. In the `ignore` regions missing data (all
/// the relative part can give the first regions to start) is ignored: `max` alone judges them.
fn fleet_plan(relative: &str, ignore: &[&str]) -> Plan {
    let region = |name: &str| {
        if ignore.contains(&name) {
            format!("{{name: {name}, checks: [{{name: error-rate, noData: ignore}}]}}")
        } else {
            format!("{{name: {name}}}")
        }
    };
    mk_plan(&format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: fleet}}
spec:
  services: [{{name: signin}}]
  regions:
    - {}
    - {}
    - {}
    - {}
  waves:
    - {{name: canary, regions: [us-east], bake: 5m}}
    - {{name: europe, regions: [eu-west, eu-central], bake: 5m}}
    - {{name: asia, regions: [jp]}}
  steps: [10, 100]
  stepBake: 1m
  health:
    interval: 30s
    checks:
      - name: error-rate
        prometheus: {{query: x}}
        max: 0.1
        relative: {relative}
",
        region("us-east"),
        region("eu-west"),
        region("eu-central"),
        region("jp"),
    ))
}

/// A rollout whose fleet reports a value per region; every check is judged from it.
struct Fleet {
    plan: Plan,
    state: PlanState,
    now: DateTime<Utc>,
    audit: Vec<AuditRecord>,
    values: BTreeMap<String, f64>,
    /// Every sample handed to the engine, with the state it was judged against.
    handed: Vec<(HealthSample, PlanState)>,
}

impl Fleet {
    fn new(plan: Plan, values: &[(&str, f64)]) -> Self {
        let state = PlanState::new(&plan);
        let values = values.iter().map(|(r, v)| (r.to_string(), *v)).collect();
        Fleet { plan, state, now: t0(), audit: Vec::new(), values, handed: Vec::new() }
    }

    /// What the health adapter makes of one batched query: each watched region judged by
    /// its own limits, then against the baseline regions' values from the same result.
    fn samples(&self) -> Vec<HealthSample> {
        let mut out = Vec::new();
        for request in meridian_core::watch::health_requests(&self.plan, &self.state, self.now) {
            for (c, check) in self.plan.health.checks.iter().enumerate() {
                let fleet: Vec<(&str, f64)> =
                    request.baseline.iter().filter_map(|r| self.values.get(r).map(|v| (r.as_str(), *v))).collect();
                for region in &request.regions {
                    let Some(&value) = self.values.get(region) else { continue };
                    let r = self.plan.region_index(region).unwrap();
                    let limits = &self.plan.regions[r].settings.checks[c];
                    let absolute = assess(limits, Some(value), None);
                    let (verdict, baseline) = match &check.relative {
                        Some(rel) => {
                            let b = relative::baseline(rel, region, &fleet);
                            (relative::assess(absolute, value, &b), Some(b))
                        }
                        None => (absolute, None),
                    };
                    out.push(HealthSample {
                        region: region.clone(),
                        service: request.service.clone(),
                        check: check.name.clone(),
                        verdict,
                        value: Some(value),
                        detail: None,
                        at: self.now,
                        baseline,
                    });
                }
            }
        }
        out
    }

    fn decide(&mut self, health: &[HealthSample], commands: &[Command]) {
        let obs = Observations { health, commands, ..Observations::default() };
        let d = decide(&self.plan, self.state.clone(), &obs, self.now);
        self.handed.extend(health.iter().map(|s| (s.clone(), self.state.clone())));
        self.audit.extend(d.audit);
        self.state = d.state;
    }

    fn tick(&mut self) {
        let samples = self.samples();
        self.decide(&samples, &[]);
    }

    fn command(&mut self, kind: CommandKind, wave: Option<&str>, region: Option<&str>) {
        let cmd = Command {
            wave: wave.map(Into::into),
            region: region.map(Into::into),
            ..Command::plan_wide(kind, "alice", self.now)
        };
        self.decide(&[], &[cmd]);
    }

    /// Tick every 30 s until `pred` holds or `d` passes.
    fn run_until(&mut self, d: TimeDelta, mut pred: impl FnMut(&Fleet) -> bool) -> bool {
        let until = self.now + d;
        while self.now <= until {
            self.tick();
            if pred(self) {
                return true;
            }
            self.now += TimeDelta::seconds(30);
        }
        false
    }

    fn unit(&self, region: &str) -> &meridian_core::state::UnitState {
        self.state.unit(region, "signin").unwrap()
    }

    fn wave(&self, name: &str) -> WavePhase {
        self.state.waves.iter().find(|w| w.name == name).unwrap().phase
    }
}

const EXAMPLE: &str = "{maxRatio: 2.0, baseline: median, minBaselineRegions: 2}";
/// The two regions that start before two others are enabled.
const FIRST_TWO: [&str; 2] = ["us-east", "eu-west"];

#[test]
fn a_region_more_than_twice_the_median_of_the_enabled_regions_fails_and_says_against_what() {
    let mut run = Fleet::new(
        fleet_plan(EXAMPLE, &FIRST_TWO),
        &[("us-east", 0.009), ("eu-west", 0.007), ("eu-central", 0.012), ("jp", 0.031)],
    );
    assert!(run.run_until(TimeDelta::hours(2), |f| f.unit("jp").phase == UnitPhase::RolledBack));
    // 0.031 is within max 0.1: only the comparison with the fleet fails it.
    let failure = run.unit("jp").failure.clone().unwrap();
    let baseline = failure.baseline.clone().unwrap();
    assert_eq!(baseline.regions, ["us-east", "eu-west", "eu-central"]);
    assert_eq!((baseline.value, baseline.limit), (Some(0.009), Some(0.018)));
    let failed = run.audit.iter().find(|r| matches!(r.cause, Cause::HealthFailed { .. })).unwrap();
    assert_eq!(
        failed.cause.to_string(),
        "check error-rate unhealthy value 0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit \
         0.018, 1 failing evaluations in a row"
    );
    let o = outcome(&run.plan, &run.state);
    assert_eq!(
        o.failed[0].cause,
        "check error-rate unhealthy (0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit 0.018), \
         1 failing evaluation"
    );
    // The other regions passed against each other, and their evidence says so.
    let eu_central_done = run
        .audit
        .iter()
        .find(|r| r.region.as_deref() == Some("eu-central") && matches!(r.cause, Cause::Completed { .. }))
        .unwrap();
    let Cause::Completed { health, .. } = &eu_central_done.cause else { unreachable!() };
    let b = health[0].baseline.as_ref().unwrap();
    assert!(!b.regions.contains(&"eu-central".to_string()), "{b:?}");
    assert!(b.regions.contains(&"us-east".to_string()), "{b:?}");
}

#[test]
fn the_story_promote_the_halted_wave_heal_and_retry_reaches_100() {
    let mut run = Fleet::new(
        fleet_plan(EXAMPLE, &FIRST_TWO),
        &[("us-east", 0.009), ("eu-west", 0.007), ("eu-central", 0.012), ("jp", 0.031)],
    );
    assert!(run.run_until(TimeDelta::hours(2), |f| f.wave("asia") == WavePhase::Halted), "{:#?}", run.state);
    run.command(CommandKind::Promote, Some("asia"), None);
    assert_eq!(run.wave("asia"), WavePhase::Complete);
    assert_eq!(run.state.phase(), PlanPhase::Complete);
    run.values.insert("jp".into(), 0.010);
    run.command(CommandKind::Retry, None, Some("jp"));
    assert!(run.run_until(TimeDelta::hours(1), |f| f.unit("jp").phase == UnitPhase::Enabled), "{:#?}", run.state);
    assert_eq!(run.unit("jp").percent, 100);
    let b = run.unit("jp").checks[0].baseline.clone().unwrap();
    assert_eq!((b.value, b.regions.len()), (Some(0.009), 3));
}

#[test]
fn with_too_few_baseline_regions_no_data_decides_and_absolute_limits_still_apply() {
    // eu-west starts with only us-east enabled: one baseline region of the two required.
    let mut run =
        Fleet::new(fleet_plan(EXAMPLE, &["us-east"]), &[("us-east", 0.009), ("eu-west", 0.0), ("eu-central", 0.0)]);
    let europe = |f: &Fleet| f.unit("eu-west").percent > 0;
    assert!(run.run_until(TimeDelta::hours(1), europe));
    run.run_until(TimeDelta::minutes(20), |_| false);
    // maxParallel 1: eu-west holds at its first step (noData: hold), eu-central waits for it.
    let eu_west = run.unit("eu-west");
    assert_eq!((eu_west.phase, eu_west.percent), (UnitPhase::Progressing, 10), "{eu_west:#?}");
    assert_eq!(eu_west.checks[0].verdict, Some(HealthVerdict::NoData));
    assert!(matches!(&eu_west.waiting, Some(WaitReason::Health { checks }) if checks == &["error-rate"]));
    let b = eu_west.checks[0].baseline.clone().unwrap();
    assert_eq!(b.to_string(), "no baseline (1 fully enabled region with data: us-east; minBaselineRegions 2)");
    // An absolute failure needs no baseline.
    run.values.insert("eu-west".into(), 0.5);
    run.tick();
    assert_eq!(run.unit("eu-west").phase, UnitPhase::RolledBack);
    assert_eq!(run.unit("eu-west").failure.as_ref().unwrap().value, Some(0.5));
}

#[test]
fn a_zero_baseline_is_judged_with_min_delta() {
    let values = [("us-east", 0.0), ("eu-west", 0.0), ("eu-central", 0.0), ("jp", 0.0005)];
    let mut strict = Fleet::new(fleet_plan("{maxRatio: 2, minBaselineRegions: 1}", &["us-east"]), &values);
    assert!(strict.run_until(TimeDelta::hours(2), |f| f.unit("jp").phase == UnitPhase::RolledBack));
    let mut tolerant =
        Fleet::new(fleet_plan("{maxRatio: 2, minBaselineRegions: 1, minDelta: 0.001}", &["us-east"]), &values);
    assert!(tolerant.run_until(TimeDelta::hours(2), |f| f.state.phase() == PlanPhase::Complete));
    assert_eq!(tolerant.unit("jp").percent, 100);
}

#[test]
fn meridian_plan_shows_a_region_without_a_baseline_holding() {
    let mut opts = SimOptions::new(t0());
    opts.assume_healthy = true;
    // Nobody is enabled when eu-west starts besides us-east: it holds without a baseline of 2.
    let held = simulate(&fleet_plan(EXAMPLE, &["us-east"]), &[], &opts);
    assert_eq!(held.phase, PlanPhase::Running, "{:#?}", held.units);
    let eu_west = held.units.iter().find(|u| u.region == "eu-west").unwrap();
    assert_eq!(eu_west.final_phase, UnitPhase::Progressing);
    assert!(matches!(eu_west.waiting, Some(WaitReason::Health { .. })), "{eu_west:?}");
    let done = simulate(&fleet_plan("{maxRatio: 2.0, minBaselineRegions: 1}", &["us-east"]), &[], &opts);
    assert_eq!(done.phase, PlanPhase::Complete);
}

// ----- properties -----

const VALUES: [f64; 8] = [0.0, 0.0005, 0.005, 0.009, 0.01, 0.02, 0.031, 0.5];

fn relative_limit() -> impl Strategy<Value = RelativeLimit> {
    (prop::sample::select(vec![1.0, 1.5, 2.0, 3.0]), any::<bool>(), 1..=4usize, prop::sample::select(vec![0.0, 0.001]))
        .prop_map(|(max_ratio, mean, min_baseline_regions, min_delta)| RelativeLimit {
            max_ratio,
            baseline: if mean { BaselineKind::Mean } else { BaselineKind::Median },
            min_baseline_regions,
            min_delta,
        })
}

proptest! {
    #[test]
    fn the_judgement_never_passes_above_the_limit_nor_judges_with_too_few_regions(
        rel in relative_limit(),
        fleet in prop::collection::vec((0..6usize, prop::sample::select(VALUES.to_vec())), 0..8),
        judged in 0..6usize,
        value in prop::sample::select(VALUES.to_vec()),
        absolute in prop::sample::select(vec![HealthVerdict::Healthy, HealthVerdict::Unhealthy, HealthVerdict::NoData]),
    ) {
        let names = ["a", "b", "c", "d", "e", "f"];
        let fleet: Vec<(&str, f64)> = fleet.iter().map(|&(r, v)| (names[r], v)).collect();
        let b = relative::baseline(&rel, names[judged], &fleet);
        let others: std::collections::BTreeSet<&str> =
            fleet.iter().map(|(r, _)| *r).filter(|r| *r != names[judged]).collect();
        prop_assert!(!b.regions.iter().any(|r| r == names[judged]), "its own baseline: {b:?}");
        prop_assert_eq!(b.regions.len(), others.len());
        prop_assert_eq!(b.value.is_some(), others.len() >= rel.min_baseline_regions);
        if let Some(v) = b.value {
            let lo = fleet.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let hi = fleet.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(lo <= v && v <= hi, "a baseline within its values: {b:?}");
        }
        let verdict = relative::assess(absolute, value, &b);
        if absolute != HealthVerdict::Healthy {
            prop_assert_eq!(verdict, absolute, "absolute verdicts stand");
        }
        if verdict == HealthVerdict::Healthy {
            let base = b.value.unwrap();
            prop_assert!(value <= (rel.max_ratio * base).max(base + rel.min_delta));
            if rel.min_delta == 0.0 {
                prop_assert!(value <= rel.max_ratio * base, "{value} passed above {} x {base}", rel.max_ratio);
            }
        }
    }
}

/// Random fleets with random relative checks, noData policies, heals, promotes and retries:
/// whatever happens, a step is never baked (nor a unit completed) on a relative check unless
/// its evidence shows a baseline of enough fully enabled other regions and a value within the
/// limit, and every baseline handed over is made of regions fully enabled at that moment.
#[test]
fn rollouts_never_advance_on_a_relative_check_without_a_baseline_or_above_its_limit() {
    let spec = (
        3..=6usize,
        relative_limit(),
        prop::collection::vec((prop::sample::select(VALUES.to_vec()), 0..3usize), 6),
        prop::collection::vec((0..240u32, 0..6usize, 0..3u8), 0..6),
        1..=3usize,
    );
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    runner
        .run(&spec, |(n, rel, regions, events, waves)| {
            let rel = RelativeLimit { min_baseline_regions: rel.min_baseline_regions.min(n - 1), ..rel };
            let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let policies = ["hold", "fail", "ignore"];
            let region_yaml: Vec<String> = names
                .iter()
                .zip(&regions)
                .map(|(r, (_, p))| format!("    - {{name: {r}, checks: [{{name: errors, noData: {}}}]}}", policies[*p]))
                .collect();
            let waves = waves.min(n);
            let wave_yaml: Vec<String> = (0..waves)
                .map(|w| {
                    let members: Vec<&str> =
                        names.iter().enumerate().filter(|(i, _)| i % waves == w).map(|(_, r)| r.as_str()).collect();
                    format!("    - {{name: w{w}, regions: [{}], maxParallel: 2, bake: 2m}}", members.join(", "))
                })
                .collect();
            let text = format!(
                "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: s}}]
  regions:
{}
  waves:
{}
  steps: [10, 100]
  stepBake: 1m
  health:
    interval: 30s
    checks:
      - name: errors
        prometheus: {{query: x}}
        max: 0.1
        relative: {{maxRatio: {}, baseline: {}, minBaselineRegions: {}, minDelta: {}}}
",
                region_yaml.join("\n"),
                wave_yaml.join("\n"),
                rel.max_ratio,
                rel.baseline.as_str(),
                rel.min_baseline_regions,
                rel.min_delta
            );
            let values: Vec<(&str, f64)> = names.iter().zip(&regions).map(|(r, (v, _))| (r.as_str(), *v)).collect();
            let mut run = Fleet::new(mk_plan(&text), &values);
            let mut events = events;
            events.sort();
            for minute in 0..240u32 {
                for &(_, r, kind) in events.iter().filter(|(at, _, _)| *at == minute) {
                    let region = names[r % n].clone();
                    match kind {
                        0 => {
                            run.values.insert(region, 0.001);
                        }
                        1 => run.command(CommandKind::Retry, None, Some(&region)),
                        _ => {
                            let wave = format!("w{}", (r % n) % waves);
                            run.command(CommandKind::Promote, Some(&wave), None);
                        }
                    }
                }
                run.tick();
                run.now += TimeDelta::seconds(30);
                run.tick();
                run.now += TimeDelta::seconds(30);
            }
            check_invariants(&run, &rel);
            Ok(())
        })
        .unwrap();
}

fn check_invariants(run: &Fleet, rel: &RelativeLimit) {
    for (sample, before) in &run.handed {
        let b = sample.baseline.as_ref().expect("a relative check's verdict carries its baseline");
        assert!(!b.regions.contains(&sample.region), "{sample:?}");
        for r in &b.regions {
            let u = before.unit(r, &sample.service).unwrap();
            assert!(u.phase == UnitPhase::Enabled && u.percent == 100, "baseline region {r} is {u:?}");
        }
        if sample.verdict == HealthVerdict::Healthy {
            assert!(b.regions.len() >= rel.min_baseline_regions, "judged with too few regions: {sample:?}");
        }
    }
    for record in &run.audit {
        let (health, region) = match &record.cause {
            Cause::Advanced { promoted: false, health, .. } | Cause::Completed { promoted: false, health, .. } => {
                (health, record.region.clone().unwrap())
            }
            _ => continue,
        };
        let ignored = run.plan.regions[run.plan.region_index(&region).unwrap()].settings.checks[0].no_data
            == meridian_core::manifest::NoDataPolicy::Ignore;
        for e in health {
            if ignored && e.verdict == Some(HealthVerdict::NoData) {
                continue; // noData: ignore leaves the check out; max still judged the value
            }
            judged_within_limit(e, &region, rel);
        }
    }
}

fn judged_within_limit(e: &CheckEvidence, region: &str, rel: &RelativeLimit) {
    assert_eq!(e.verdict, Some(HealthVerdict::Healthy), "{e:?}");
    let b = e.baseline.as_ref().expect("evidence of a relative check has its baseline");
    let (value, base) = (e.value.unwrap(), b.value.expect("never judged without a baseline"));
    assert!(b.regions.len() >= rel.min_baseline_regions, "{region}: {b:?}");
    assert!(!b.regions.iter().any(|r| r == region), "{region} in its own baseline: {b:?}");
    assert!(value <= (rel.max_ratio * base).max(base + rel.min_delta), "{region}: {value} above {b:?}");
}
