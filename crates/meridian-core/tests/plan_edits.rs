//! Editing a running plan (`meridian_core::edit`): a scenario per kind of edit on an injected
//! clock, and a property test that applies random valid edits at random moments of random
//! rollouts and checks, by a model of its own (the steps and approvals the test wrote), that
//! no edit raises traffic, that no unit keeps traffic without its approvals, and that removed
//! units go to 0 % with their audit records kept.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet};
use meridian_core::command::{Command, CommandKind};
use meridian_core::edit::{EditSummary, UnitChange, WaveChange, summarize};
use meridian_core::engine::{Action, Decision, Observations, decide};
use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::plan::Plan;
use meridian_core::state::{PlanPhase, PlanState, UnitPhase, WavePhase};
use meridian_core::validate::load;
use meridian_core::{AuditEvent, AuditRecord, Cause};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn mk_plan(spec: &str) -> Plan {
    let text = format!("apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{ name: p }}\nspec:\n{spec}");
    let bundle = load(&[("p.yaml".into(), text)], None);
    assert!(!bundle.report.has_errors(), "{spec}\n{:#?}", bundle.report);
    bundle.plans.into_iter().next().expect("one plan")
}

fn mk_approval(flag: &str) -> ApprovalRecord {
    ApprovalRecord {
        name: format!("{flag}-grant"),
        flag: flag.into(),
        granted_by: "tester".into(),
        reference: None,
        granted_at: Some(t0()),
        expires: None,
        scope: ApprovalScopeSet::default(),
        revoked: None,
        signature: None,
    }
}

/// A rollout driven minute by minute by a fleet that reports every check healthy.
struct Run {
    plan: Plan,
    state: PlanState,
    now: DateTime<Utc>,
    approvals: Vec<ApprovalRecord>,
    audit: Vec<AuditRecord>,
    last: Option<Decision>,
    /// Regions the fleet reports unhealthy.
    unhealthy: Vec<String>,
    /// Commands for the next decision.
    commands: Vec<Command>,
}

impl Run {
    fn new(plan: Plan) -> Self {
        let state = PlanState::new(&plan);
        Run {
            plan,
            state,
            now: t0(),
            approvals: Vec::new(),
            audit: Vec::new(),
            last: None,
            unhealthy: Vec::new(),
            commands: Vec::new(),
        }
    }

    fn tick(&mut self) -> &Decision {
        let health: Vec<HealthSample> = self
            .state
            .units
            .iter()
            .flat_map(|u| {
                u.checks.iter().map(|c| HealthSample {
                    region: u.region.clone(),
                    service: u.service.clone(),
                    check: c.name.clone(),
                    verdict: if self.unhealthy.contains(&u.region) {
                        HealthVerdict::Unhealthy
                    } else {
                        HealthVerdict::Healthy
                    },
                    value: Some(0.0),
                    detail: None,
                    at: self.now,
                    baseline: None,
                })
            })
            .collect();
        let commands = std::mem::take(&mut self.commands);
        let obs = Observations {
            approvals: &self.approvals,
            health: &health,
            commands: &commands,
            ..Observations::default()
        };
        let d = decide(&self.plan, self.state.clone(), &obs, self.now);
        assert_eq!(d, decide(&self.plan, self.state.clone(), &obs, self.now), "deterministic");
        self.audit.extend(d.audit.iter().cloned());
        self.state = d.state.clone();
        self.last = Some(d);
        self.last.as_ref().unwrap()
    }

    /// Decide every minute for `minutes`.
    fn run(&mut self, minutes: i64) {
        for _ in 0..minutes {
            self.now += TimeDelta::minutes(1);
            self.tick();
        }
    }

    /// Decide every minute until `done` holds (at most `minutes`).
    fn run_until(&mut self, minutes: i64, done: impl Fn(&Run) -> bool) -> bool {
        for _ in 0..minutes {
            if done(self) {
                return true;
            }
            self.now += TimeDelta::minutes(1);
            self.tick();
        }
        done(self)
    }

    /// Edit the plan: what `meridian diff` would say, then the edit in force.
    fn edit(&mut self, spec: &str) -> EditSummary {
        let new = mk_plan(spec);
        let summary = summarize(&self.plan, &new, &self.state);
        self.plan = new;
        summary
    }

    fn unit(&self, region: &str, service: &str) -> (UnitPhase, Option<usize>, u32) {
        let u = self.state.unit(region, service).unwrap_or_else(|| panic!("{region}/{service}"));
        (u.phase, u.step, u.percent)
    }

    fn wave(&self, name: &str) -> WavePhase {
        self.state.waves.iter().find(|w| w.name == name).unwrap().phase
    }

    fn actions(&self) -> &[Action] {
        &self.last.as_ref().unwrap().actions
    }

    fn edited(&self) -> Vec<&AuditRecord> {
        self.audit.iter().filter(|r| matches!(r.cause, Cause::PlanEdited { .. })).collect()
    }
}

const SERVICES: &str = "  services: [{name: signin}]\n";
const HEALTH: &str = "  health:\n    interval: 30s\n    checks:\n      - name: errors\n        prometheus: { query: 'x' }\n        max: 0.01\n";

fn spec(regions: &str, waves: &str, steps: &str, extra: &str) -> String {
    format!("{SERVICES}  regions: {regions}\n  waves: {waves}\n  steps: {steps}\n  stepBake: 10m\n{HEALTH}{extra}")
}

const TWO_WAVES: &str = "[{name: canary, regions: [us]}, {name: rest, regions: [eu, jp]}]";

fn base() -> String {
    spec("[{name: us}, {name: eu}, {name: jp}]", TWO_WAVES, "[1, 5, 25, 100]", "")
}

/// Steps changed above a unit whose own step stays: `meridian diff` says where it climbs next
/// (it said "no change in flight"), and the counts read as English.
#[test]
fn steps_changed_above_a_unit_say_where_it_climbs_next() {
    let regions = "[{name: us}, {name: eu}, {name: jp}]";
    let mut run = Run::new(mk_plan(&base()));
    run.tick();
    assert!(run.run_until(300, |r| r.unit("eu", "signin").2 == 5 && r.unit("jp", "signin").2 == 5));
    // [1, 5, 25, 100] at 5 % edited to [2, 5, 50, 100]: still at step 2, but 50 % comes next.
    let summary = run.edit(&spec(regions, TWO_WAVES, "[2, 5, 50, 100]", ""));
    assert_eq!(
        summary.lines(),
        [
            "unit eu/signin moves: steps now [2, 5, 50, 100]: keeps 5 %; next step 50 % (step 3 of 4)",
            "unit jp/signin moves: steps now [2, 5, 50, 100]: keeps 5 %; next step 50 % (step 3 of 4)"
        ]
    );
    assert_eq!(summary.counts(), "2 units move");
    run.tick();
    assert_eq!(run.unit("eu", "signin"), (UnitPhase::Progressing, Some(1), 5));
    assert!(run.run_until(30, |r| r.unit("eu", "signin").2 != 5));
    assert_eq!(run.unit("eu", "signin").2, 50, "the next step, as said");
    // Steps changed only below it: nothing to say.
    let summary = run.edit(&spec(regions, TWO_WAVES, "[1, 5, 50, 100]", ""));
    assert!(summary.lines().iter().all(|l| !l.contains("eu/signin")), "{:?}", summary.lines());
}

#[test]
fn shortened_steps_keep_the_traffic_and_place_the_unit_at_or_below_it() {
    let mut run = Run::new(mk_plan(&base()));
    run.tick();
    assert!(run.run_until(60, |r| r.unit("us", "signin").2 == 25));
    assert_eq!(run.unit("us", "signin"), (UnitPhase::Progressing, Some(2), 25));

    // [1, 5, 25, 100] at 25 % edited to [10, 50, 100]: not 100 % (the old clamp), not 50 %.
    let summary = run.edit(&spec("[{name: us}, {name: eu}, {name: jp}]", TWO_WAVES, "[10, 50, 100]", ""));
    assert_eq!(
        summary.lines(),
        ["unit us/signin moves: steps now [10, 50, 100]: keeps 25 %; next step 50 % (step 2 of 3)"]
    );
    run.tick();
    assert_eq!(run.unit("us", "signin"), (UnitPhase::Progressing, Some(0), 25));
    assert!(run.actions().is_empty(), "an edit alone sends nothing: {:?}", run.actions());
    let edited = run.edited();
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0].region.as_deref(), Some("us"));
    assert!(matches!(edited[0].event, AuditEvent::Unit { from_percent: 25, to_percent: 25, step: Some(0), .. }));

    // The next move is an ordinary step, to the first step above 25 %, after its bake.
    let reached_25 = run
        .audit
        .iter()
        .find(|r| matches!(r.event, AuditEvent::Unit { to_percent: 25, from_percent: 5, .. }))
        .unwrap()
        .at;
    assert!(run.run_until(30, |r| r.unit("us", "signin").2 != 25));
    assert_eq!(run.unit("us", "signin"), (UnitPhase::Progressing, Some(1), 50));
    assert!(run.now >= reached_25 + TimeDelta::minutes(10), "held for its bake: {reached_25} -> {}", run.now);
    assert!(matches!(run.audit.last().unwrap().cause, Cause::Advanced { .. }));
}

#[test]
fn a_unit_below_every_new_step_goes_to_the_first_one_next() {
    let mut run = Run::new(mk_plan(&base()));
    run.tick();
    assert_eq!(run.unit("us", "signin").2, 1);
    run.edit(&spec("[{name: us}, {name: eu}, {name: jp}]", TWO_WAVES, "[10, 100]", ""));
    run.tick();
    assert_eq!(run.unit("us", "signin"), (UnitPhase::Progressing, Some(0), 1));
    assert!(run.run_until(30, |r| r.unit("us", "signin").2 != 1));
    assert_eq!(run.unit("us", "signin"), (UnitPhase::Progressing, Some(0), 10));
}

#[test]
fn a_removed_region_with_traffic_is_wound_down_to_zero_and_keeps_its_audit_records() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(200, |r| r.unit("eu", "signin").2 == 5));
    let before = run.audit.iter().filter(|r| r.region.as_deref() == Some("eu")).count();
    assert!(before >= 2);

    let summary = run.edit(&spec(
        "[{name: us}, {name: jp}]",
        "[{name: canary, regions: [us]}, {name: rest, regions: [jp]}]",
        "[1, 5, 25, 100]",
        "",
    ));
    assert_eq!(summary.units.len(), 1);
    assert_eq!(summary.units[0].change, UnitChange::Removed);
    assert!(summary.units[0].reason.contains("wound down from 5 % to 0 %"), "{:?}", summary.units[0]);
    assert_eq!(summary.counts(), "1 unit removed");

    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(
        run.actions().contains(&Action::SetTraffic {
            region: "eu".into(),
            service: "signin".into(),
            percent: 0,
            from: 5
        }),
        "{:?}",
        run.actions()
    );
    let departing = &run.state.departing;
    assert_eq!(departing.len(), 1);
    assert_eq!((departing[0].phase, departing[0].percent), (UnitPhase::RolledBack, 0));
    let wound = run.edited().into_iter().find(|r| r.region.as_deref() == Some("eu")).expect("wind-down audited");
    assert!(matches!(wound.event, AuditEvent::Unit { from_percent: 5, to_percent: 0, to: UnitPhase::RolledBack, .. }));
    assert!(run.audit.iter().filter(|r| r.region.as_deref() == Some("eu")).count() > before, "records kept");

    // Once the target confirmed (nothing unconfirmed), it leaves the state.
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(run.state.departing.is_empty());
    assert!(run.state.unit("eu", "signin").is_none());
    // jp goes on to 100 % without it.
    assert!(run.run_until(300, |r| r.unit("jp", "signin").0 == UnitPhase::Enabled));
}

#[test]
fn a_departing_unit_stays_until_the_target_serves_zero_and_a_failed_wind_down_is_sent_again() {
    // Under `onDrift: hold`: a unit that left the plan is switched off whatever it says.
    let hold = "  actuator:\n    http: {url: 'http://127.0.0.1:1/{{region}}/{{service}}', onDrift: hold}\n";
    let regions = "[{name: us}, {name: eu}, {name: jp}]";
    let mut run = Run::new(mk_plan(&spec(regions, TWO_WAVES, "[1, 5, 25, 100]", hold)));
    assert!(run.run_until(200, |r| r.unit("eu", "signin").2 > 0));
    run.edit(&spec(
        "[{name: us}, {name: jp}]",
        "[{name: canary, regions: [us]}, {name: rest, regions: [jp]}]",
        "[1, 5, 25, 100]",
        hold,
    ));
    run.tick();
    let unconfirmed = [meridian_core::UnitRef { region: "eu".into(), service: "signin".into() }];
    let obs = Observations { unconfirmed: &unconfirmed, ..Observations::default() };
    let d = decide(&run.plan, run.state.clone(), &obs, run.now + TimeDelta::minutes(1));
    assert_eq!(d.state.departing.len(), 1, "kept while the 0 % is unconfirmed");
    assert!(d.actions.iter().all(|Action::SetTraffic { region, .. }| region != "eu"), "not sent twice");
    assert!(d.state.units_in_flight() <= run.state.units_in_flight());

    // The 0 % failed for good (its intent stays unconfirmed) and a read-back shows traffic:
    // drift, sent again (whatever onDrift says), audited; the unit stays until it is seen at 0 %.
    let still = [meridian_core::TrafficReading { region: "eu".into(), service: "signin".into(), percent: 5 }];
    let obs = Observations { unconfirmed: &unconfirmed, traffic: &still, ..Observations::default() };
    let at = run.now + TimeDelta::minutes(2);
    let d = decide(&run.plan, run.state.clone(), &obs, at);
    assert_eq!(
        d.actions,
        [Action::SetTraffic { region: "eu".into(), service: "signin".into(), percent: 0, from: 5 }],
        "the wind-down sent again"
    );
    assert!(
        d.audit.iter().any(|r| r.region.as_deref() == Some("eu")
            && r.event == AuditEvent::Drift { expected: 0, observed: 5 }
            && r.cause == Cause::Drift),
        "{:?}",
        d.audit
    );
    assert_eq!(d.state.departing.len(), 1);
    assert_eq!(d.state.departing[0].since, Some(at), "older read-backs no longer count");
    // Seen at 0 % (switched off by hand, say): gone, though its last intent never closed.
    let off = [meridian_core::TrafficReading { region: "eu".into(), service: "signin".into(), percent: 0 }];
    let obs = Observations { unconfirmed: &unconfirmed, traffic: &off, ..Observations::default() };
    let d = decide(&run.plan, d.state, &obs, at + TimeDelta::minutes(1));
    assert!(d.state.departing.is_empty(), "a target serving 0 % lets the unit go");
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

/// A unit at 0 % whose target was switched on by hand under `onDrift: hold` (the drift held,
/// not undone) and that an edit then removes: it is switched off, not dropped with its traffic.
#[test]
fn a_removed_unit_holding_a_drift_is_switched_off() {
    let hold = "  actuator:\n    http: {url: 'http://127.0.0.1:1/{{region}}/{{service}}', onDrift: hold}\n";
    let mut run = Run::new(mk_plan(&spec("[{name: us}, {name: eu}, {name: jp}]", TWO_WAVES, "[1, 5, 25, 100]", hold)));
    assert!(run.run_until(200, |r| r.unit("eu", "signin").2 > 0));
    run.commands.push(Command {
        kind: CommandKind::Abort,
        wave: None,
        region: Some("eu".into()),
        by: "oncall".into(),
        at: run.now,
        freeze: None,
        unfreeze: None,
        full: false,
    });
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.unit("eu", "signin").2, 0, "aborted to 0 %");
    let on = [meridian_core::TrafficReading { region: "eu".into(), service: "signin".into(), percent: 30 }];
    let obs = Observations { traffic: &on, ..Observations::default() };
    run.now += TimeDelta::minutes(1);
    run.state = decide(&run.plan, run.state.clone(), &obs, run.now).state;
    assert_eq!(run.state.unit("eu", "signin").unwrap().drift, Some(30), "held, not undone");

    run.edit(&spec(
        "[{name: us}, {name: jp}]",
        "[{name: canary, regions: [us]}, {name: rest, regions: [jp]}]",
        "[1, 5, 25, 100]",
        hold,
    ));
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(
        run.actions(),
        [Action::SetTraffic { region: "eu".into(), service: "signin".into(), percent: 0, from: 30 }],
        "switched off"
    );
    assert_eq!(run.state.departing.len(), 1, "until its target is seen at 0 %");
    assert_eq!(run.state.departing[0].drift, None);
}

#[test]
fn a_region_added_to_a_complete_wave_reopens_it_and_later_waves_wait() {
    let three = "[{name: canary, regions: [us], bake: 10m}, {name: rest, regions: [eu]}, {name: last, regions: [jp]}]";
    let mut run = Run::new(mk_plan(&spec("[{name: us}, {name: eu}, {name: jp}]", three, "[50, 100]", "")));
    assert!(run.run_until(200, |r| r.wave("canary") == WavePhase::Complete && r.unit("eu", "signin").2 > 0));
    let edited =
        "[{name: canary, regions: [us, fr], bake: 10m}, {name: rest, regions: [eu]}, {name: last, regions: [jp]}]";
    let summary = run.edit(&spec("[{name: us}, {name: fr}, {name: eu}, {name: jp}]", edited, "[50, 100]", ""));
    assert_eq!(
        summary.lines(),
        ["wave canary re-opens: new units in fr", "unit fr/signin new: new in the plan; starts pending in wave canary"]
    );
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(run.edited().iter().any(|r| r.wave.as_deref() == Some("canary")
        && r.event == AuditEvent::Wave { from: WavePhase::Complete, to: WavePhase::Running }));
    // eu, already running in the next wave, goes on; jp's wave waits for canary again.
    assert!(run.run_until(300, |r| r.unit("fr", "signin").0 == UnitPhase::Enabled));
    assert_eq!(run.unit("jp", "signin").2, 0, "the last wave waits for the re-opened canary");
    assert!(run.run_until(300, |r| r.unit("jp", "signin").0 == UnitPhase::Enabled));
    let fr_done = run
        .audit
        .iter()
        .find(|r| r.wave.as_deref() == Some("canary") && matches!(r.cause, Cause::WaveBaked { .. }))
        .map(|r| r.at);
    let jp_start = run
        .audit
        .iter()
        .find(|r| r.region.as_deref() == Some("jp") && matches!(r.cause, Cause::Started { .. }))
        .map(|r| r.at);
    assert!(fr_done.is_some() && jp_start.is_some() && fr_done <= jp_start, "{fr_done:?} {jp_start:?}");
}

#[test]
fn a_region_moved_to_a_later_pending_wave_keeps_its_traffic_and_holds_until_it_starts() {
    let three = "[{name: canary, regions: [us]}, {name: rest, regions: [eu]}, {name: last, regions: [jp]}]";
    let mut run = Run::new(mk_plan(&spec("[{name: us}, {name: eu}, {name: jp}]", three, "[1, 5, 25, 100]", "")));
    assert!(run.run_until(300, |r| r.unit("eu", "signin").2 == 5));
    let moved = "[{name: canary, regions: [us]}, {name: rest, regions: [jp]}, {name: last, regions: [eu]}]";
    let summary = run.edit(&spec("[{name: us}, {name: eu}, {name: jp}]", moved, "[1, 5, 25, 100]", ""));
    let lines = summary.lines();
    assert!(
        lines.contains(
            &"unit eu/signin moves: moved from wave rest to wave last; keeps 5 %; holds until wave rest completes"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"unit jp/signin moves: moved from wave last to wave rest; keeps 0 %".to_string()),
        "{lines:?}"
    );
    run.now += TimeDelta::minutes(1);
    run.tick();
    // The wave called `rest` runs on with jp; eu is in `last`, pending: it holds at 5 %.
    run.run(20);
    assert_eq!(run.unit("eu", "signin").2, 5);
    assert_eq!(run.wave("last"), WavePhase::Pending);
    assert!(run.run_until(400, |r| r.unit("eu", "signin").0 == UnitPhase::Enabled));
    assert_eq!(run.wave("rest"), WavePhase::Complete);
}

#[test]
fn waves_reordered_keep_their_phases_and_the_summary_says_they_moved() {
    let mut run = Run::new(mk_plan(&spec(
        "[{name: us}, {name: eu}, {name: jp}]",
        "[{name: a, regions: [us]}, {name: b, regions: [eu]}, {name: c, regions: [jp]}]",
        "[1, 100]",
        "",
    )));
    assert!(run.run_until(200, |r| r.wave("b") == WavePhase::Running));
    let summary = run.edit(&spec(
        "[{name: us}, {name: eu}, {name: jp}]",
        "[{name: a, regions: [us]}, {name: c, regions: [jp]}, {name: b, regions: [eu]}]",
        "[1, 100]",
        "",
    ));
    assert!(summary.waves.iter().any(|w| w.wave == "c" && w.change == WaveChange::Moves), "{:?}", summary.waves);
    let eu = run.unit("eu", "signin").2;
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.wave("a"), WavePhase::Complete);
    assert_ne!(run.wave("b"), WavePhase::Pending, "a started wave goes on");
    assert!(run.unit("eu", "signin").2 >= eu);
    assert!(run.run_until(400, |r| r.state.phase() == meridian_core::PlanPhase::Complete));
}

#[test]
fn a_service_added_and_one_removed() {
    let two = "  services: [{name: signin}, {name: store, after: [signin]}]\n";
    let body = |services: &str| {
        format!(
            "{services}  regions: [{{name: us}}, {{name: eu}}]\n  waves: [{{name: canary, regions: [us]}}, {{name: rest, regions: [eu]}}]\n  steps: [50, 100]\n  stepBake: 10m\n{HEALTH}"
        )
    };
    let mut run = Run::new(mk_plan(&body(two)));
    assert!(run.run_until(200, |r| r.unit("us", "store").2 == 50));
    // store removed, music added after signin.
    let summary = run.edit(&body("  services: [{name: signin}, {name: music, after: [signin]}]\n"));
    let changes: BTreeMap<String, UnitChange> =
        summary.units.iter().map(|u| (format!("{}/{}", u.region, u.service), u.change)).collect();
    assert_eq!(changes["us/store"], UnitChange::Removed);
    assert_eq!(changes["us/music"], UnitChange::New);
    assert_eq!(changes["eu/music"], UnitChange::New);
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(run.actions().contains(&Action::SetTraffic {
        region: "us".into(),
        service: "store".into(),
        percent: 0,
        from: 50
    }));
    assert!(run.run_until(400, |r| r.state.phase() == meridian_core::PlanPhase::Complete));
    assert!(run.state.departing.is_empty());
}

#[test]
fn a_new_check_holds_units_with_traffic_until_it_reports_and_a_removed_one_is_dropped() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(60, |r| r.unit("us", "signin").2 == 5));
    let two_checks = format!("{HEALTH}      - name: latency\n        prometheus: {{ query: 'y' }}\n        max: 0.5\n");
    let new_spec = format!(
        "{SERVICES}  regions: [{{name: us}}, {{name: eu}}, {{name: jp}}]\n  waves: {TWO_WAVES}\n  steps: [1, 5, 25, 100]\n  stepBake: 10m\n{two_checks}"
    );
    let summary = run.edit(&new_spec);
    assert_eq!(summary.units.len(), 1);
    assert_eq!(summary.units[0].change, UnitChange::Holds);
    // Decided without any sample: the new check has none, so the unit does not step on.
    let obs = Observations::default();
    let d = decide(&run.plan, run.state.clone(), &obs, run.now + TimeDelta::hours(1));
    assert_eq!(d.state.unit("us", "signin").unwrap().percent, 5);
    assert_eq!(d.state.unit("us", "signin").unwrap().checks.len(), 2);
    // With samples of both, it goes on; back to one check, the other's state is dropped.
    assert!(run.run_until(60, |r| r.unit("us", "signin").2 > 5));
    run.edit(&base());
    run.tick();
    assert_eq!(run.state.unit("us", "signin").unwrap().checks.len(), 1);
}

#[test]
fn a_region_whose_approvals_now_name_a_flag_it_lacks_loses_its_traffic() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(300, |r| r.unit("eu", "signin").2 == 5));
    // onApprovalRevoked is the default, hold: a flag never granted has nothing to hold.
    let summary =
        run.edit(&spec("[{name: us}, {name: eu, approvals: [eu-ok]}, {name: jp}]", TWO_WAVES, "[1, 5, 25, 100]", ""));
    assert_eq!(summary.units.len(), 1, "{:?}", summary.units);
    assert_eq!(summary.units[0].change, UnitChange::Holds);
    assert!(summary.units[0].reason.contains("now needs eu-ok"));
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.unit("eu", "signin"), (UnitPhase::Blocked, None, 0));
    assert!(run.actions().contains(&Action::SetTraffic {
        region: "eu".into(),
        service: "signin".into(),
        percent: 0,
        from: 5
    }));
    // Granted, it starts again from the first step.
    run.approvals.push(mk_approval("eu-ok"));
    assert!(run.run_until(300, |r| r.unit("eu", "signin").0 == UnitPhase::Enabled));
}

#[test]
fn a_longer_step_bake_extends_the_hold_that_runs() {
    let mut run = Run::new(mk_plan(&base()));
    run.tick();
    let started = run.now;
    run.run(5);
    let longer = base().replace("stepBake: 10m", "stepBake: 30m");
    let summary = run.edit(&longer);
    assert!(summary.is_empty(), "{summary:?}");
    assert!(run.run_until(60, |r| r.unit("us", "signin").2 > 1));
    let advanced = run.audit.iter().find(|r| matches!(r.cause, Cause::Advanced { .. })).unwrap().at;
    assert!(advanced >= started + TimeDelta::minutes(30), "{advanced} vs {started}");
}

#[test]
fn an_operator_promotes_a_halted_wave_edited_meanwhile_heals_and_retries_the_failed_region_and_it_reaches_100() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(300, |r| r.unit("eu", "signin").2 > 0));
    run.unhealthy.push("eu".into());
    assert!(run.run_until(300, |r| r.wave("rest") == WavePhase::Halted));
    assert_eq!(run.unit("eu", "signin").0, UnitPhase::RolledBack);
    assert_eq!(run.unit("jp", "signin").0, UnitPhase::Enabled);

    // The steps are edited while the wave is halted: nothing moves by that alone.
    run.edit(&spec("[{name: us}, {name: eu}, {name: jp}]", TWO_WAVES, "[10, 50, 100]", ""));
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(run.actions().is_empty(), "{:?}", run.actions());
    assert_eq!(run.wave("rest"), WavePhase::Halted);

    let at = run.now;
    run.commands.push(Command { wave: Some("rest".into()), ..Command::plan_wide(CommandKind::Promote, "oncall", at) });
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.wave("rest"), WavePhase::Complete);

    run.unhealthy.clear();
    let at = run.now;
    run.commands.push(Command { region: Some("eu".into()), ..Command::plan_wide(CommandKind::Retry, "oncall", at) });
    assert!(run.run_until(300, |r| r.unit("eu", "signin").0 == UnitPhase::Enabled));
    assert_eq!(run.unit("eu", "signin").2, 100);
    // It climbed the edited steps.
    let raises: Vec<u32> = run
        .audit
        .iter()
        .filter(|r| r.region.as_deref() == Some("eu") && r.at > at)
        .filter_map(|r| match r.event {
            AuditEvent::Unit { from_percent, to_percent, .. } if to_percent > from_percent => Some(to_percent),
            _ => None,
        })
        .collect();
    assert_eq!(raises, [10, 50, 100]);
}

// ----- property: random edits at random moments of random rollouts -----

#[derive(Debug, Clone)]
struct Shape {
    services: usize,
    /// Per region: its wave, whether it needs its flag (`rN-ok`), whether that flag is granted.
    regions: Vec<(usize, bool, bool)>,
    waves: usize,
    steps: Vec<u32>,
    bake: u32,
    checks: usize,
}

impl Shape {
    /// Regions are named by a stable id, so an edit keeps, drops or adds them by name.
    fn yaml(&self, ids: &[usize], order: &[usize]) -> String {
        let services: Vec<String> = (0..self.services).map(|s| format!("{{name: s{s}}}")).collect();
        let mut y = format!("  services: [{}]\n  regions:\n", services.join(", "));
        for (k, (_, gated, _)) in self.regions.iter().enumerate() {
            y += &format!("    - name: r{}\n", ids[k]);
            if *gated {
                y += &format!("      approvals: [r{}-ok]\n", ids[k]);
            }
        }
        y += "  waves:\n";
        for &w in order {
            let members: Vec<String> = self
                .regions
                .iter()
                .enumerate()
                .filter(|(_, r)| r.0 == w)
                .map(|(k, _)| format!("r{}", ids[k]))
                .collect();
            if members.is_empty() {
                continue;
            }
            y += &format!("    - {{name: w{w}, regions: [{}], bake: 5m}}\n", members.join(", "));
        }
        let steps: Vec<String> = self.steps.iter().map(u32::to_string).collect();
        y += &format!("  steps: [{}]\n  stepBake: {}m\n", steps.join(", "), self.bake);
        if self.checks > 0 {
            y += "  health:\n    interval: 30s\n    checks:\n";
            for c in 0..self.checks {
                y += &format!("      - name: c{c}\n        prometheus: {{ query: 'x' }}\n        max: 1\n");
            }
        }
        y
    }

    fn grants(&self, ids: &[usize]) -> Vec<ApprovalRecord> {
        self.regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.1 && r.2)
            .map(|(k, _)| mk_approval(&format!("r{}-ok", ids[k])))
            .collect()
    }
}

fn steps() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::btree_set(prop::sample::select(vec![1u32, 2, 5, 10, 20, 25, 50, 75]), 0..=3).prop_map(|s| {
        let mut v: Vec<u32> = s.into_iter().collect();
        v.push(100);
        v
    })
}

fn shape() -> impl Strategy<Value = Shape> {
    (1..=3usize, 1..=3usize, 1..=4usize).prop_flat_map(|(services, waves, regions)| {
        (
            prop::collection::vec((0..waves, prop::bool::weighted(0.3), prop::bool::weighted(0.7)), regions),
            steps(),
            1..=15u32,
            0..=2usize,
        )
            .prop_map(move |(regions, steps, bake, checks)| Shape {
                services,
                regions,
                waves,
                steps,
                bake,
                checks,
            })
    })
}

/// One valid edit.
#[derive(Debug, Clone)]
enum Edit {
    Steps(Vec<u32>),
    Bake(u32),
    AddRegion { wave: usize, gated: bool, granted: bool },
    RemoveRegion(usize),
    MoveRegion(usize, usize),
    ReorderWaves(usize),
    Services(usize),
    Checks(usize),
    Approvals(usize, bool, bool),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        steps().prop_map(Edit::Steps),
        (1..=30u32).prop_map(Edit::Bake),
        (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(wave, gated, granted)| Edit::AddRegion {
            wave,
            gated,
            granted
        }),
        (0..4usize).prop_map(Edit::RemoveRegion),
        (0..4usize, 0..3usize).prop_map(|(r, w)| Edit::MoveRegion(r, w)),
        (1..3usize).prop_map(Edit::ReorderWaves),
        (1..=3usize).prop_map(Edit::Services),
        (0..=2usize).prop_map(Edit::Checks),
        (0..4usize, any::<bool>(), any::<bool>()).prop_map(|(r, g, ok)| Edit::Approvals(r, g, ok)),
    ]
}

/// Apply `edit` to the shape (and the ids naming its regions, the wave order).
fn apply(shape: &Shape, ids: &[usize], edit: &Edit) -> (Shape, Vec<usize>, Vec<usize>) {
    let (mut s, mut ids) = (shape.clone(), ids.to_vec());
    let mut order: Vec<usize> = (0..s.waves).collect();
    let n = s.regions.len();
    match edit.clone() {
        Edit::Steps(steps) => s.steps = steps,
        Edit::Bake(b) => s.bake = b,
        Edit::AddRegion { wave, gated, granted } => {
            s.regions.push((wave % s.waves, gated, granted));
            ids.push(ids.iter().max().map_or(0, |m| m + 1));
        }
        Edit::RemoveRegion(k) if n > 1 => {
            s.regions.remove(k % n);
            ids.remove(k % n);
        }
        Edit::RemoveRegion(_) => {}
        Edit::MoveRegion(k, w) => s.regions[k % n].0 = w % s.waves,
        Edit::ReorderWaves(k) => order.rotate_left(k % s.waves.max(1)),
        Edit::Services(m) => s.services = m,
        Edit::Checks(c) => s.checks = c,
        Edit::Approvals(k, gated, granted) => {
            s.regions[k % n].1 = gated;
            s.regions[k % n].2 = granted;
        }
    }
    (s, ids, order)
}

fn required_flags(plan: &Plan, region: &str) -> Vec<String> {
    plan.region_index(region).map(|r| plan.regions[r].approvals.clone()).unwrap_or_default()
}

fn check_edit(shape: Shape, minutes: i64, edit: Edit) -> Result<(), TestCaseError> {
    let ids: Vec<usize> = (0..shape.regions.len()).collect();
    let order: Vec<usize> = (0..shape.waves).collect();
    let mut run = Run::new(mk_plan(&shape.yaml(&ids, &order)));
    run.approvals = shape.grants(&ids);
    run.tick();
    run.run(minutes);
    let before: BTreeMap<(String, String), u32> =
        run.state.units.iter().map(|u| ((u.region.clone(), u.service.clone()), u.percent)).collect();
    let records_before = run.audit.len();

    let (edited, new_ids, new_order) = apply(&shape, &ids, &edit);
    let new_plan = mk_plan(&edited.yaml(&new_ids, &new_order));
    let summary = summarize(&run.plan, &new_plan, &run.state);

    // The rule itself: traffic kept exactly, steps at or below it.
    let mut aligned = run.state.clone();
    aligned.align(&new_plan);
    for u in &aligned.units {
        let was = before.get(&(u.region.clone(), u.service.clone())).copied().unwrap_or(0);
        prop_assert_eq!(u.percent, was, "{}/{} traffic changed by the edit alone", &u.region, &u.service);
        if let (Some(step), true) = (u.step, u.percent > 0) {
            let steps = &new_plan.regions[new_plan.region_index(&u.region).unwrap()].settings.steps;
            prop_assert!(step < steps.len());
            prop_assert!(
                steps[step] <= u.percent || step == 0,
                "{}/{} at step {step} above {}",
                &u.region,
                &u.service,
                u.percent
            );
        }
    }

    // The decision that applies it.
    run.plan = new_plan.clone();
    run.approvals = edited.grants(&new_ids);
    run.now += TimeDelta::minutes(1);
    let d = run.tick().clone();
    let mut raised: Vec<(String, String, u32)> = Vec::new();
    for r in &d.audit {
        if let AuditEvent::Unit { from_percent, to_percent, .. } = &r.event
            && to_percent > from_percent
        {
            let cause = &r.cause;
            prop_assert!(matches!(cause, Cause::Started { .. } | Cause::Advanced { .. }), "raised by {cause:?}");
            raised.push((r.region.clone().unwrap(), r.service.clone().unwrap(), *to_percent));
        }
    }
    for u in &run.state.units {
        let was = before.get(&(u.region.clone(), u.service.clone())).copied().unwrap_or(0);
        if u.percent > was {
            // Only an ordinary step of the new plan, onto one of its steps.
            prop_assert!(raised.iter().any(|(r, s, p)| *r == u.region && *s == u.service && *p == u.percent));
            let steps = &new_plan.regions[new_plan.region_index(&u.region).unwrap()].settings.steps;
            prop_assert!(steps.contains(&u.percent));
        }
        // No traffic without the region's approvals after this decision.
        if u.percent > 0 {
            for flag in required_flags(&new_plan, &u.region) {
                prop_assert!(
                    run.approvals.iter().any(|a| a.flag == flag),
                    "{}/{} at {} % without {flag}",
                    &u.region,
                    &u.service,
                    u.percent
                );
            }
        }
    }
    // Removed units: wound down to 0 % (an action), their records kept, then gone.
    for ((region, service), percent) in &before {
        if new_plan.region_index(region).is_some() && new_plan.service_index(service).is_some() {
            continue;
        }
        prop_assert!(
            summary
                .units
                .iter()
                .any(|u| u.region == *region && u.service == *service && u.change == UnitChange::Removed)
        );
        if *percent > 0 {
            let zero =
                Action::SetTraffic { region: region.clone(), service: service.clone(), percent: 0, from: *percent };
            prop_assert!(d.actions.contains(&zero), "{region}/{service} not wound down: {:?}", d.actions);
            prop_assert!(
                run.state.departing.iter().any(|u| u.region == *region && u.service == *service && u.percent == 0)
            );
        }
        prop_assert!(
            d.audit.iter().any(|r| r.region.as_deref() == Some(region) && r.service.as_deref() == Some(service))
        );
    }
    prop_assert!(run.audit.len() >= records_before);

    // The rollout goes on under the edited plan: the same invariants hold, departing units go.
    for _ in 0..30 {
        run.now += TimeDelta::minutes(3);
        run.tick();
        for u in &run.state.units {
            if u.percent > 0 {
                for flag in required_flags(&new_plan, &u.region) {
                    prop_assert!(run.approvals.iter().any(|a| a.flag == flag));
                }
            }
            if let Some(step) = u.step {
                let steps = &new_plan.regions[new_plan.region_index(&u.region).unwrap()].settings.steps;
                prop_assert!(step < steps.len());
            }
        }
    }
    prop_assert!(run.state.departing.is_empty());
    Ok(())
}

#[test]
fn random_edits_at_random_moments_keep_the_invariants() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner.run(&(shape(), 0..240i64, edit()), |(shape, minutes, edit)| check_edit(shape, minutes, edit)).unwrap();
}

#[test]
fn a_pending_region_moved_into_a_complete_wave_reopens_it_and_reaches_100() {
    // With another change in the same edit (a wave removed), and the move alone (every wave
    // kept, so nothing else makes the edit visible): the wave re-opens either way.
    let cases = [
        (
            "[{name: us}, {name: eu}, {name: jp}]",
            "[{name: canary, regions: [us], bake: 10m}, {name: rest, regions: [eu]}, {name: last, regions: [jp]}]",
            "[{name: canary, regions: [us, jp], bake: 10m}, {name: rest, regions: [eu]}]",
            false,
        ),
        (
            "[{name: us}, {name: eu}, {name: jp}, {name: fr}]",
            "[{name: canary, regions: [us], bake: 10m}, {name: rest, regions: [eu]}, {name: last, regions: [jp, fr]}]",
            "[{name: canary, regions: [us, jp], bake: 10m}, {name: rest, regions: [eu]}, {name: last, regions: [fr]}]",
            true,
        ),
    ];
    for (regions, waves, moved, alone) in cases {
        let mut run = Run::new(mk_plan(&spec(regions, waves, "[50, 100]", "")));
        assert!(run.run_until(200, |r| r.wave("canary") == WavePhase::Complete && r.unit("eu", "signin").2 > 0));
        assert_eq!(run.unit("jp", "signin").2, 0);
        let summary = run.edit(&spec(regions, moved, "[50, 100]", ""));
        let lines = summary.lines();
        assert!(lines.contains(&"wave canary re-opens: units not started moved in: jp".to_string()), "{lines:?}");
        run.now += TimeDelta::minutes(1);
        run.tick();
        assert_eq!(run.wave("canary"), WavePhase::Running);
        if alone {
            assert_eq!(run.edited().len(), 1, "the re-open is audited");
        }
        assert!(run.run_until(300, |r| r.unit("jp", "signin").0 == UnitPhase::Enabled), "{:#?}", run.state);
        assert!(run.run_until(300, |r| r.state.phase() == PlanPhase::Complete), "{:#?}", run.state);
        assert_eq!(run.unit("jp", "signin"), (UnitPhase::Enabled, Some(1), 100));
    }
}

#[test]
fn an_enabled_region_moved_into_a_wave_whose_gate_is_not_granted_keeps_its_traffic_under_hold() {
    let regions = "[{name: us}, {name: eu}, {name: jp}]";
    let three = |gate: &str| {
        format!(
            "[{{name: canary, regions: [us]}}, {{name: rest, regions: [{}]}}, {{name: last, regions: [{}], approvals: [last-go]}}]",
            if gate.is_empty() { "eu" } else { "jp" },
            if gate.is_empty() { "jp" } else { "eu" },
        )
    };
    for (policy, kept) in [("", 100), ("  onApprovalRevoked: disable\n", 0)] {
        let mut run = Run::new(mk_plan(&spec(regions, &three(""), "[50, 100]", policy)));
        assert!(run.run_until(300, |r| r.unit("eu", "signin").0 == UnitPhase::Enabled));
        let summary = run.edit(&spec(regions, &three("moved"), "[50, 100]", policy));
        let eu = summary.units.iter().find(|u| u.region == "eu").expect("eu listed");
        assert_eq!(eu.change, UnitChange::Moves);
        assert_eq!(
            eu.reason.contains("its steps now need last-go (onApprovalRevoked: disable takes it to 0 %"),
            kept == 0,
            "{policy}: {}",
            eu.reason
        );
        run.run(30);
        assert_eq!(run.unit("eu", "signin").2, kept, "{policy}{:#?}", run.state);
        run.approvals.push(mk_approval("last-go"));
        assert!(run.run_until(300, |r| r.state.phase() == PlanPhase::Complete), "{policy}{:#?}", run.state);
        assert_eq!(run.unit("eu", "signin").2, 100);
    }
}

#[test]
fn a_flag_added_to_an_enabled_region_is_in_the_summary_and_takes_it_to_zero() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(300, |r| r.unit("us", "signin").0 == UnitPhase::Enabled));
    let summary =
        run.edit(&spec("[{name: us, approvals: [us-ok]}, {name: eu}, {name: jp}]", TWO_WAVES, "[1, 5, 25, 100]", ""));
    let us = summary.units.iter().find(|u| u.region == "us").expect("us listed");
    assert_eq!(us.change, UnitChange::Holds);
    assert!(us.reason.contains("now needs us-ok"), "{}", us.reason);
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.unit("us", "signin").2, 0);
}

#[test]
fn a_region_restored_before_its_wind_down_is_confirmed_starts_afresh_not_failed() {
    let mut run = Run::new(mk_plan(&base()));
    assert!(run.run_until(300, |r| r.unit("eu", "signin").2 == 5));
    let without_eu = "[{name: canary, regions: [us]}, {name: rest, regions: [jp]}]";
    run.edit(&spec("[{name: us}, {name: jp}]", without_eu, "[1, 5, 25, 100]", ""));
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert_eq!(run.state.departing.len(), 1, "wound down to 0 %, not yet confirmed");
    assert_eq!(run.state.departing[0].percent, 0);
    let summary = run.edit(&base());
    let lines = summary.lines();
    assert!(
        lines.contains(
            &"unit eu/signin new: back in the plan, wound down to 0 %; starts pending in wave rest".to_string()
        ),
        "{lines:?}"
    );
    run.now += TimeDelta::minutes(1);
    run.tick();
    assert!(run.state.departing.is_empty());
    assert_ne!(run.wave("rest"), WavePhase::Halted, "{:#?}", run.state);
    assert!(!matches!(run.unit("eu", "signin").0, UnitPhase::RolledBack | UnitPhase::Failed));
    assert!(run.run_until(300, |r| r.state.phase() == PlanPhase::Complete), "{:#?}", run.state);
    assert_eq!(run.unit("eu", "signin").2, 100);
}
