//! Property tests of the decision engine: random small plans driven by random observation
//! sequences on an injected clock, with the engine's safety invariants checked after every
//! decision by an independent model (approvals through `approval::flag_holds`, health from
//! the samples the test itself handed over, time from the test's own clock).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet, RevokedInfo, flag_holds};
use meridian_core::command::{Command, CommandKind, FreezeRequest};
use meridian_core::engine::{Action, Decision, Observations, TrafficReading, decide};
use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::manifest::{NoDataPolicy, OnApprovalRevoked};
use meridian_core::plan::Plan;
use meridian_core::state::{PlanPhase, PlanState, UnitPhase, WaitReason, WavePhase};
use meridian_core::validate::load;
use meridian_core::{AuditEvent, Cause, window};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// ----- random plans -----

const ZONES: [&str; 4] = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo"];
const NO_DATA: [&str; 3] = ["hold", "fail", "ignore"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Debug, Clone)]
struct PlanSpec {
    /// Per service: bit mask of earlier services it comes after.
    after: Vec<u8>,
    /// Per region: time zone index, whether it needs its own approval.
    regions: Vec<(usize, bool)>,
    /// Per region: its wave.
    wave_of: Vec<usize>,
    /// Per wave: maxParallel (0: unset), bake in minutes, whether it has a gate.
    waves: Vec<(usize, Option<u32>, bool)>,
    steps: Vec<u32>,
    step_bake_min: u32,
    interval_s: u32,
    /// Day mask, from (half hours), length (half hours).
    window: Option<(u8, u32, u32)>,
    /// failureLimit, noData index.
    checks: Vec<(u32, usize)>,
    pause_on_failure: bool,
    disable_on_revoke: bool,
    /// Per region: its own stepBake in minutes, and a calendar freeze of its own (days after
    /// 2026-03-05, and how many more days it lasts).
    region_extra: Vec<RegionExtra>,
    /// Per wave: its `maxFailures` (a count, or with `true` that many times 40 %).
    wave_budgets: Vec<Option<(u32, bool)>>,
    /// The plan's `maxFailures`, the same way.
    plan_budget: Option<(u32, bool)>,
    /// `onBudgetExceeded: abort` instead of halt.
    abort_on_budget: bool,
    /// `progressDeadline` in minutes, and `onProgressDeadline: fail` (else alert).
    deadline: Option<(u32, bool)>,
}

fn budget_yaml((n, percent): (u32, bool)) -> String {
    if percent { format!("\"{}%\"", n * 40) } else { n.to_string() }
}

/// A region's own stepBake (minutes) and calendar freeze (days after 2026-03-05, extra days).
type RegionExtra = (Option<u32>, Option<(u32, u32)>);

/// A run-time freeze as the model remembers it: name, wave, region, end.
type ModelFreeze = (String, Option<String>, Option<String>, Option<DateTime<Utc>>);

fn plan_spec() -> impl Strategy<Value = PlanSpec> {
    let budget = || prop::option::weighted(0.6, (prop::sample::select(vec![0u32, 0, 1, 2]), prop::bool::weighted(0.3)));
    let deadline = prop::option::weighted(0.4, (5..=90u32, any::<bool>()));
    (base_plan_spec(), prop::collection::vec(budget(), 4), budget(), prop::bool::weighted(0.3), deadline).prop_map(
        |(mut spec, mut waves, plan, abort, deadline)| {
            waves.truncate(spec.waves.len());
            spec.wave_budgets = waves;
            spec.plan_budget = plan;
            spec.abort_on_budget = abort;
            spec.deadline = deadline;
            spec
        },
    )
}

fn base_plan_spec() -> impl Strategy<Value = PlanSpec> {
    (1..=3usize, 1..=6usize, 1..=4usize).prop_flat_map(|(ns, nr, nw)| {
        let nw = nw.min(nr);
        (
            prop::collection::vec(any::<u8>(), ns),
            prop::collection::vec((0..ZONES.len(), prop::bool::weighted(0.4)), nr),
            prop::collection::vec(
                (prop::option::weighted(0.3, 1..=10u32), prop::option::weighted(0.3, (0..30u32, 0..3u32))),
                nr,
            ),
            prop::collection::vec(0..nw, nr),
            prop::collection::vec((0..=3usize, prop::option::of(1..=15u32), prop::bool::weighted(0.3)), nw),
            prop::collection::btree_set(prop::sample::select(vec![1u32, 2, 5, 10, 20, 25, 50, 75]), 0..=3),
            1..=10u32,
            prop::sample::select(vec![30u32, 60]),
            prop::option::weighted(0.4, (1..128u8, 0..48u32, 1..=30u32)),
            prop::collection::vec((1..=3u32, 0..NO_DATA.len()), 0..=2),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                move |(
                    after,
                    regions,
                    region_extra,
                    mut wave_of,
                    waves,
                    steps,
                    step_bake_min,
                    interval_s,
                    window,
                    checks,
                    p,
                    d,
                )| {
                    // Every wave gets at least one region.
                    for (w, slot) in wave_of.iter_mut().enumerate().take(nw) {
                        *slot = w;
                    }
                    let mut steps: Vec<u32> = steps.into_iter().collect();
                    steps.push(100);
                    PlanSpec {
                        after,
                        regions,
                        wave_of,
                        waves,
                        steps,
                        step_bake_min,
                        interval_s,
                        window,
                        checks,
                        pause_on_failure: p,
                        disable_on_revoke: d,
                        region_extra,
                        wave_budgets: Vec::new(),
                        plan_budget: None,
                        abort_on_budget: false,
                        deadline: None,
                    }
                },
            )
    })
}

fn region_flag(r: usize) -> String {
    format!("r{r}-ok")
}

fn wave_flag(w: usize) -> String {
    format!("w{w}-go")
}

impl PlanSpec {
    fn yaml(&self) -> String {
        let mut y =
            String::from("apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: { name: prop }\nspec:\n");
        y += "  services:\n";
        for (s, mask) in self.after.iter().enumerate() {
            let deps: Vec<String> = (0..s).filter(|d| mask & (1 << d) != 0).map(|d| format!("s{d}")).collect();
            y += &format!("    - name: s{s}\n      after: [{}]\n", deps.join(", "));
        }
        y += "  regions:\n";
        for (r, (tz, gated)) in self.regions.iter().enumerate() {
            y += &format!("    - name: r{r}\n      timezone: {}\n", ZONES[*tz]);
            if *gated {
                y += &format!("      approvals: [{}]\n", region_flag(r));
            }
            let (bake, _) = self.region_extra[r];
            if let Some(b) = bake {
                y += &format!("      stepBake: {b}m\n");
            }
            if let Some((from, to)) = self.freeze_days(r) {
                y += &format!("      freezes:\n        - {{reason: r{r} freeze, from: {from}, to: {to}}}\n");
            }
        }
        y += "  waves:\n";
        for (w, (max_parallel, bake, gated)) in self.waves.iter().enumerate() {
            let members: Vec<String> =
                self.wave_of.iter().enumerate().filter(|(_, x)| **x == w).map(|(r, _)| format!("r{r}")).collect();
            y += &format!("    - name: w{w}\n      regions: [{}]\n", members.join(", "));
            if *max_parallel > 0 {
                y += &format!("      maxParallel: {max_parallel}\n");
            }
            if let Some(b) = bake {
                y += &format!("      bake: {b}m\n");
            }
            if *gated {
                y += &format!("      approvals: [{}]\n", wave_flag(w));
            }
            if let Some(Some(b)) = self.wave_budgets.get(w) {
                y += &format!("      maxFailures: {}\n", budget_yaml(*b));
            }
        }
        if let Some(b) = self.plan_budget {
            y += &format!("  maxFailures: {}\n", budget_yaml(b));
        }
        if self.abort_on_budget {
            y += "  onBudgetExceeded: abort\n";
        }
        if let Some((minutes, fail)) = self.deadline {
            y += &format!(
                "  progressDeadline: {minutes}m\n  onProgressDeadline: {}\n",
                if fail { "fail" } else { "alert" }
            );
        }
        let steps: Vec<String> = self.steps.iter().map(u32::to_string).collect();
        y += &format!("  steps: [{}]\n  stepBake: {}m\n", steps.join(", "), self.step_bake_min);
        if let Some((mask, from, len)) = self.window {
            let days: Vec<&str> = (0..7).filter(|d| mask & (1 << d) != 0).map(|d| DAYS[d]).collect();
            let clock = |half: u32| format!("\"{:02}:{:02}\"", (half / 2) % 24, (half % 2) * 30);
            y += &format!(
                "  windows:\n    - days: [{}]\n      from: {}\n      to: {}\n",
                days.join(", "),
                clock(from),
                clock((from + len) % 48)
            );
        }
        y += &format!("  health:\n    interval: {}s\n    checks:\n", self.interval_s);
        for (c, (limit, no_data)) in self.checks.iter().enumerate() {
            y += &format!(
                "      - name: c{c}\n        prometheus: {{ query: 'q{c}' }}\n        max: 1\n        failureLimit: {limit}\n        noData: {}\n",
                NO_DATA[*no_data]
            );
        }
        if self.checks.is_empty() {
            // `checks:` with no entries: an empty list.
            y = y.replace("    checks:\n", "    checks: []\n");
        }
        y += &format!(
            "  onFailure: {}\n  onApprovalRevoked: {}\n",
            if self.pause_on_failure { "pause" } else { "rollback-region" },
            if self.disable_on_revoke { "disable" } else { "hold" }
        );
        y
    }

    /// Region `r`'s calendar freeze: first and last local day.
    fn freeze_days(&self, r: usize) -> Option<(NaiveDate, NaiveDate)> {
        let (offset, len) = self.region_extra[r].1?;
        let base = NaiveDate::from_ymd_opt(2026, 3, 5)?;
        let from = base + TimeDelta::days(i64::from(offset));
        Some((from, from + TimeDelta::days(i64::from(len))))
    }

    fn flags(&self) -> Vec<String> {
        let mut flags: Vec<String> =
            self.regions.iter().enumerate().filter(|(_, (_, g))| *g).map(|(r, _)| region_flag(r)).collect();
        flags.extend(self.waves.iter().enumerate().filter(|(_, w)| w.2).map(|(w, _)| wave_flag(w)));
        flags
    }
}

// ----- random observation sequences -----

#[derive(Debug, Clone)]
enum TimeMove {
    /// Forward by this many seconds.
    By(u32),
    /// To the engine's `wake_at` (or one health interval when it has none).
    ToWake,
    /// A long jump, in hours.
    Jump(u32),
}

#[derive(Debug, Clone)]
enum Input {
    /// Healthy samples at `now` for every check of every unit that has traffic.
    AllHealthy,
    /// Unhealthy samples at `now` for every check of every unit with traffic in one region.
    RegionUnhealthy(usize),
    /// One sample: unit, check, verdict, age in seconds.
    Sample(usize, usize, usize, u32),
    /// Grant a flag: flag index, valid from (minutes ahead, 0 = now), expires in minutes,
    /// scoped to one service.
    Grant(usize, u32, Option<u32>, Option<usize>),
    /// Revoke an approval (index into the approvals granted so far).
    Revoke(usize),
    /// Command kind (the sixth: `promote --full`), scope (0 plan, 1 wave, 2 region), index.
    Command(usize, usize, usize),
    /// A traffic read-back: unit, percent choice.
    Reading(usize, usize),
    /// A run-time freeze: name index, scope (0 plan, 1 wave, 2 region), index, ends in minutes.
    Freeze(usize, usize, usize, Option<u32>),
    /// Lift a run-time freeze by name index, or every one.
    Unfreeze(Option<usize>),
}

#[derive(Debug, Clone)]
struct Step {
    time: TimeMove,
    inputs: Vec<Input>,
    /// Where to probe between this decision and its `wake_at` (per mille of the gap).
    probe: u16,
}

fn time_move() -> impl Strategy<Value = TimeMove> {
    prop_oneof![
        4 => (1..=600u32).prop_map(TimeMove::By),
        4 => Just(TimeMove::ToWake),
        1 => (1..=30u32).prop_map(TimeMove::Jump),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => Just(Input::AllHealthy),
        1 => (0..6usize).prop_map(Input::RegionUnhealthy),
        3 => (0..18usize, 0..2usize, 0..6usize, 0..=200u32).prop_map(|(u, c, v, a)| Input::Sample(u, c, v, a)),
        2 => (0..16usize, prop::sample::select(vec![0u32, 0, 0, 30]), prop::option::weighted(0.3, 1..=240u32),
              prop::option::weighted(0.2, 0..3usize))
            .prop_map(|(f, from, exp, svc)| Input::Grant(f, from, exp, svc)),
        1 => (0..16usize).prop_map(Input::Revoke),
        1 => (0..6usize, 0..3usize, 0..6usize).prop_map(|(k, s, i)| Input::Command(k, s, i)),
        1 => (0..18usize, 0..6usize).prop_map(|(u, p)| Input::Reading(u, p)),
        1 => (0..2usize, 0..3usize, 0..6usize, prop::option::weighted(0.6, 1..=120u32))
            .prop_map(|(n, s, i, until)| Input::Freeze(n, s, i, until)),
        1 => prop::option::weighted(0.7, 0..2usize).prop_map(Input::Unfreeze),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (time_move(), prop::collection::vec(input(), 0..=3), 0..1000u16).prop_map(|(time, inputs, probe)| Step {
            time,
            inputs,
            probe,
        }),
        10..=60,
    )
}

// ----- the independent model -----

/// A sample as the model remembers it: when it was measured, and its verdict.
type Seen = (DateTime<Utc>, HealthVerdict);

/// What the test knows, kept apart from the engine's state.
struct Model {
    plan: Plan,
    spec: PlanSpec,
    now: DateTime<Utc>,
    approvals: Vec<ApprovalRecord>,
    /// Per unit: when its current (step, percent) began.
    entered: Vec<Option<DateTime<Utc>>>,
    /// Per unit: a promote command was given since it entered its step.
    promoted: Vec<bool>,
    /// Per unit and check: the newest sample handed over (at, verdict).
    latest: Vec<Vec<Option<Seen>>>,
    /// Per unit: its region's own flags held at some decision so far.
    ever_approved: Vec<bool>,
    /// Per wave: a promote arrived while it was baking or halted.
    wave_promoted: Vec<bool>,
    /// Per region: it failed (or was rolled back after a failure) and no retry came since.
    region_failed: Vec<bool>,
    /// Run-time freezes declared so far and not lifted: name, wave, region, end.
    freezes: Vec<ModelFreeze>,
    /// Full promotions (wave, region) declared and not cancelled by a pause or an abort of
    /// an overlapping scope or a failure in scope. Kept past their scope's completion: the
    /// model may allow more than the engine does, never less.
    full: Vec<(Option<String>, Option<String>)>,
}

impl Model {
    fn services(&self) -> usize {
        self.plan.services.len()
    }

    fn required_flags(&self, state: &PlanState, i: usize) -> Vec<String> {
        let region = &self.plan.regions[i / self.services()];
        let mut flags = region.approvals.clone();
        // Once the wave completes, its gate holds back only units that still start or climb.
        let steps = matches!(state.units[i].phase, UnitPhase::Pending | UnitPhase::Blocked | UnitPhase::Progressing);
        if state.waves[region.wave].phase != WavePhase::Complete || steps {
            flags.extend(self.plan.waves[region.wave].approvals.iter().cloned());
        }
        flags
    }

    fn flags_hold(&self, flags: &[String], i: usize) -> bool {
        let region = &self.plan.regions[i / self.services()].name;
        let service = &self.plan.services[i % self.services()].name;
        flags.iter().all(|f| flag_holds(&self.approvals, f, &self.plan.name, region, Some(service), self.now).is_ok())
    }

    /// Is region `r` frozen at `now`? Calendar freezes by the region's local date, run-time
    /// ones by the commands handed over: worked out here, not by the engine's freeze code.
    fn frozen(&self, r: usize) -> Option<String> {
        let region = &self.plan.regions[r];
        if let Some((from, to)) = self.spec.freeze_days(r) {
            let today = self.now.with_timezone(&region.timezone).date_naive();
            if from <= today && today <= to {
                return Some(format!("calendar freeze {from}..{to}"));
            }
        }
        let wave = &self.plan.waves[region.wave].name;
        self.freezes
            .iter()
            .find(|(_, w, reg, until)| {
                let in_scope = match (reg, w) {
                    (Some(x), _) => *x == region.name,
                    (None, Some(x)) => x == wave,
                    (None, None) => true,
                };
                in_scope && until.is_none_or(|u| self.now < u)
            })
            .map(|(name, ..)| format!("run-time freeze {name}"))
    }

    fn stale_after(&self) -> TimeDelta {
        self.plan.health.interval.to_delta() * 3
    }

    /// Turn random inputs into observations for this decision.
    fn observations(
        &mut self,
        state: &PlanState,
        inputs: &[Input],
    ) -> (Vec<HealthSample>, Vec<TrafficReading>, Vec<Command>) {
        let (mut health, mut traffic, mut commands) = (Vec::new(), Vec::new(), Vec::new());
        let units = self.plan.unit_count();
        let flags = self.spec.flags();
        for input in inputs {
            match *input {
                Input::AllHealthy => {
                    for u in state.units.iter().filter(|u| u.percent > 0) {
                        for c in &self.plan.health.checks {
                            health.push(sample(&u.region, &u.service, &c.name, HealthVerdict::Healthy, self.now));
                        }
                    }
                }
                Input::RegionUnhealthy(r) => {
                    let region = &self.plan.regions[r % self.plan.regions.len()].name;
                    for u in state.units.iter().filter(|u| u.percent > 0 && &u.region == region) {
                        for c in &self.plan.health.checks {
                            health.push(sample(&u.region, &u.service, &c.name, HealthVerdict::Unhealthy, self.now));
                        }
                    }
                }
                Input::Sample(u, c, v, age) => {
                    if self.plan.health.checks.is_empty() {
                        continue;
                    }
                    let unit = &state.units[u % units];
                    let check = &self.plan.health.checks[c % self.plan.health.checks.len()].name;
                    let verdict = [
                        HealthVerdict::Healthy,
                        HealthVerdict::Healthy,
                        HealthVerdict::Unhealthy,
                        HealthVerdict::NoData,
                        HealthVerdict::Error,
                        HealthVerdict::Healthy,
                    ][v];
                    let at = self.now - TimeDelta::seconds(i64::from(age));
                    health.push(sample(&unit.region, &unit.service, check, verdict, at));
                }
                Input::Grant(f, from, expires, service) => {
                    if flags.is_empty() {
                        continue;
                    }
                    let granted_at = self.now + TimeDelta::minutes(i64::from(from));
                    let mut scope = ApprovalScopeSet::default();
                    if let Some(s) = service {
                        scope.services = vec![self.plan.services[s % self.services()].name.clone()];
                    }
                    self.approvals.push(ApprovalRecord {
                        name: format!("a{}", self.approvals.len()),
                        flag: flags[f % flags.len()].clone(),
                        granted_by: "prop".into(),
                        reference: None,
                        granted_at: Some(granted_at),
                        expires: expires.map(|m| granted_at + TimeDelta::minutes(i64::from(m))),
                        scope,
                        revoked: None,
                        signature: None,
                    });
                }
                Input::Revoke(k) => {
                    if self.approvals.is_empty() {
                        continue;
                    }
                    let n = self.approvals.len();
                    let a = &mut self.approvals[k % n];
                    if a.revoked.is_none() {
                        a.revoked = Some(RevokedInfo { at: self.now, by: "prop".into(), reason: None });
                    }
                }
                Input::Command(kind, scope, idx) => {
                    let full = kind == 5;
                    let kind = [
                        CommandKind::Pause,
                        CommandKind::Resume,
                        CommandKind::Abort,
                        CommandKind::Promote,
                        CommandKind::Retry,
                        CommandKind::Promote,
                    ][kind];
                    let (mut wave, mut region) = (None, None);
                    match scope {
                        1 => wave = Some(self.plan.waves[idx % self.plan.waves.len()].name.clone()),
                        2 => region = Some(self.plan.regions[idx % self.plan.regions.len()].name.clone()),
                        _ => {}
                    }
                    commands.push(Command { wave, region, full, ..Command::plan_wide(kind, "prop", self.now) });
                }
                Input::Freeze(n, scope, idx, until) => {
                    let request = FreezeRequest {
                        name: format!("f{n}"),
                        reason: "prop".into(),
                        until: until.map(|m| self.now + TimeDelta::minutes(i64::from(m))),
                    };
                    let (mut wave, mut region) = (None, None);
                    match scope {
                        1 => wave = Some(self.plan.waves[idx % self.plan.waves.len()].name.clone()),
                        2 => region = Some(self.plan.regions[idx % self.plan.regions.len()].name.clone()),
                        _ => {}
                    }
                    commands.push(Command { wave, region, ..Command::freeze(request, "prop", self.now) });
                }
                Input::Unfreeze(n) => commands.push(Command::unfreeze(n.map(|n| format!("f{n}")), "prop", self.now)),
                Input::Reading(u, p) => {
                    let unit = &state.units[u % units];
                    let percent = [0, 1, 10, 50, 100, unit.percent][p];
                    traffic.push(TrafficReading {
                        region: unit.region.clone(),
                        service: unit.service.clone(),
                        percent,
                    });
                }
            }
        }
        (health, traffic, commands)
    }

    /// Record what was handed over, before the decision's result is checked.
    fn note_inputs(&mut self, before: &PlanState, health: &[HealthSample], commands: &[Command]) {
        for s in health {
            let r = self.plan.region_index(&s.region).unwrap();
            let sv = self.plan.service_index(&s.service).unwrap();
            let c = self.plan.health.checks.iter().position(|c| c.name == s.check).unwrap();
            let slot = &mut self.latest[self.plan.unit_index(r, sv)][c];
            if slot.is_none_or(|(at, _)| s.at > at) {
                *slot = Some((s.at, s.verdict));
            }
        }
        for c in commands {
            match (c.kind, &c.freeze) {
                (CommandKind::Freeze, Some(f)) => {
                    self.freezes.retain(|x| x.0 != f.name);
                    self.freezes.push((f.name.clone(), c.wave.clone(), c.region.clone(), f.until));
                }
                (CommandKind::Unfreeze, _) => self.freezes.retain(|x| c.unfreeze.as_ref().is_some_and(|n| *n != x.0)),
                (CommandKind::Promote, _) if c.full => {
                    let scope = (if c.region.is_none() { c.wave.clone() } else { None }, c.region.clone());
                    self.full.retain(|p| *p != scope);
                    self.full.push(scope);
                }
                (CommandKind::Pause | CommandKind::Abort, _) => {
                    let regions: Vec<usize> = (0..self.plan.regions.len())
                        .filter(|&r| {
                            let region = &self.plan.regions[r];
                            c.region.as_ref().is_none_or(|n| *n == region.name)
                                && c.wave.as_ref().is_none_or(|w| *w == self.plan.waves[region.wave].name)
                        })
                        .collect();
                    self.cancel_full(&regions);
                }
                _ => {}
            }
        }
        if commands.iter().any(|c| c.kind == CommandKind::Retry) {
            self.region_failed.iter_mut().for_each(|f| *f = false);
        }
        if commands.iter().any(|c| c.kind == CommandKind::Promote && !c.full) {
            self.promoted.iter_mut().for_each(|p| *p = true);
            for (w, wave) in before.waves.iter().enumerate() {
                if matches!(wave.phase, WavePhase::Baking | WavePhase::Halted) {
                    self.wave_promoted[w] = true;
                }
            }
        }
        for i in 0..self.plan.unit_count() {
            let region = &self.plan.regions[i / self.services()].approvals;
            if self.flags_hold(region, i) {
                self.ever_approved[i] = true;
            }
        }
    }

    /// Does full promotion `p` cover region `r`?
    fn full_covers(&self, p: &(Option<String>, Option<String>), r: usize) -> bool {
        let region = &self.plan.regions[r];
        match p {
            (_, Some(name)) => *name == region.name,
            (Some(w), None) => *w == self.plan.waves[region.wave].name,
            (None, None) => true,
        }
    }

    /// Cancel the full promotions covering any of `regions`.
    fn cancel_full(&mut self, regions: &[usize]) {
        let full = std::mem::take(&mut self.full);
        self.full = full.into_iter().filter(|p| !regions.iter().any(|&r| self.full_covers(p, r))).collect();
    }

    /// Is wave `w`'s bake covered by a full promotion (of the plan or of the wave)?
    fn full_covers_wave(&self, w: usize) -> bool {
        self.full
            .iter()
            .any(|(wave, region)| region.is_none() && wave.as_ref().is_none_or(|n| *n == self.plan.waves[w].name))
    }

    /// Why an advance of unit `i` at `now` would be unjustified, if it would.
    fn advance_unjustified(&self, i: usize) -> Option<String> {
        let settings = &self.plan.regions[i / self.services()].settings;
        let entered = self.entered[i]?;
        let full = self.full.iter().any(|p| self.full_covers(p, i / self.services()));
        if !self.promoted[i] && !full && self.now < entered + settings.step_bake.to_delta() {
            return Some(format!("step bake not over (entered {entered})"));
        }
        for (c, limits) in settings.checks.iter().enumerate() {
            let latest = self.latest[i][c];
            if limits.no_data == NoDataPolicy::Ignore {
                if latest.is_some_and(|(_, v)| v == HealthVerdict::Unhealthy) {
                    return Some(format!("ignored-when-missing check c{c} is unhealthy"));
                }
                continue;
            }
            match latest {
                Some((at, HealthVerdict::Healthy)) if at > entered && self.now - at <= self.stale_after() => {}
                other => return Some(format!("check c{c} has no fresh healthy verdict: {other:?}")),
            }
        }
        None
    }
}

fn sample(region: &str, service: &str, check: &str, verdict: HealthVerdict, at: DateTime<Utc>) -> HealthSample {
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

/// Regions of wave `w` in progress, as the engine counts them: some unit has traffic or a
/// step, not every unit is enabled, and the region is not aborted, nor a failure its wave's
/// budget took (as the engine's state lists them).
fn in_progress(plan: &Plan, state: &PlanState, w: usize) -> Vec<String> {
    let n = plan.services.len();
    plan.waves[w]
        .regions
        .iter()
        .filter(|&&r| !state.waves[w].within_budget.iter().any(|c| c.region == plan.regions[r].name))
        .filter(|&&r| {
            let units = &state.units[r * n..(r + 1) * n];
            let aborted = state.aborted || state.aborted_regions.contains(&plan.regions[r].name);
            !aborted
                && units.iter().any(|u| u.percent > 0 || u.step.is_some())
                && !units.iter().all(|u| u.phase == UnitPhase::Enabled)
        })
        .map(|&r| plan.regions[r].name.clone())
        .collect()
}

/// Every invariant of one decision, `before` -> `d`.
fn check_decision(
    m: &mut Model,
    before: &PlanState,
    d: &Decision,
    commands: &[Command],
    traffic: &[TrafficReading],
) -> Result<(), String> {
    let plan = &m.plan;
    let after = &d.state;
    let n = plan.services.len();
    let now = m.now;
    macro_rules! ensure {
        ($cond:expr, $($fmt:tt)*) => {
            if !$cond {
                return Err(format!("at {now}: {}", format!($($fmt)*)));
            }
        };
    }
    ensure!(d.wake_at.is_none_or(|w| w > now), "wake_at {:?} not after now", d.wake_at);

    // Full promotions: a unit failing in this decision cancels every one covering its region
    // before anything moves; the engine keeps none the model does not (a pause, an abort or a
    // failure ended it, or it was never asked for), and none accepts a failure.
    let newly_failed: Vec<usize> = (0..plan.unit_count())
        .filter(|&i| before.units[i].failure.is_none() && after.units[i].failure.is_some())
        .map(|i| i / n)
        .collect();
    m.cancel_full(&newly_failed);
    let m = &*m;
    let plan = &m.plan;
    for p in &after.full_promotions {
        ensure!(m.full.contains(&(p.wave.clone(), p.region.clone())), "{} kept, the model has {:?}", p, m.full);
    }
    for x in &d.audit {
        if let (Cause::FailuresAccepted { .. }, Some(w)) =
            (&x.cause, x.wave.as_deref().and_then(|w| plan.wave_index(w)))
        {
            ensure!(m.wave_promoted[w], "wave {} accepted failures without a one-shot promote", plan.waves[w].name);
        }
    }

    // Audit: gapless, increasing, stamped now.
    for (k, r) in d.audit.iter().enumerate() {
        ensure!(r.seq == before.audit_seq + k as u64 + 1, "audit seq {} after {}", r.seq, before.audit_seq);
        ensure!(r.at == now, "audit record stamped {}", r.at);
    }
    ensure!(after.audit_seq == before.audit_seq + d.audit.len() as u64, "audit_seq out of step");

    // Health watch: every unit the engine waits on for health (a health wait, a step bake
    // whose end needs fresh verdicts, an enabled unit of a baking wave) is in what the shells
    // are asked to evaluate, so no unit waits for verdicts nobody fetches.
    if !plan.health.checks.is_empty() {
        let requested: BTreeSet<(String, String)> = meridian_core::watch::health_requests(plan, after, now)
            .into_iter()
            .flat_map(|r| r.regions.into_iter().map(move |region| (region, r.service.clone())))
            .collect();
        for (i, u) in after.units.iter().enumerate() {
            let waits_on_health = (u.phase == UnitPhase::Progressing
                && matches!(u.waiting, Some(WaitReason::Health { .. } | WaitReason::StepBake { .. })))
                || (u.phase == UnitPhase::Enabled && after.waves[plan.regions[i / n].wave].phase == WavePhase::Baking);
            if u.percent > 0 && waits_on_health {
                ensure!(
                    requested.contains(&(u.region.clone(), u.service.clone())),
                    "{}/{} waits on health ({:?}, {:?}) but is not requested",
                    u.region,
                    u.service,
                    u.phase,
                    u.waiting
                );
            }
        }
    }

    // Actions: one per unit whose traffic changed or drifted, nothing else.
    let mut seen = BTreeSet::new();
    for Action::SetTraffic { region, service, percent, from } in &d.actions {
        let i = plan.unit_index(plan.region_index(region).unwrap(), plan.service_index(service).unwrap());
        ensure!(seen.insert(i), "two actions for {region}/{service}");
        ensure!(after.units[i].percent == *percent, "action percent {percent} != state");
        ensure!(*from == before.units[i].percent, "action from {from} != previous state");
        let drift = d.audit.iter().any(|r| {
            r.region.as_deref() == Some(region.as_str())
                && r.service.as_deref() == Some(service.as_str())
                && matches!(r.event, AuditEvent::Drift { .. })
        });
        let read_back = traffic.iter().any(|t| &t.region == region && &t.service == service && t.percent != *from);
        ensure!(*percent != *from || (drift && read_back), "action for {region}/{service} without change or drift");
    }

    for i in 0..plan.unit_count() {
        let (b, a) = (&before.units[i], &after.units[i]);
        let r = i / n;
        let region = &plan.regions[r];
        let steps = &region.settings.steps;
        let name = format!("{}/{}", a.region, a.service);
        if a.percent != b.percent {
            ensure!(seen.contains(&i), "{name} changed traffic without an action");
            let last = d.audit.iter().rev().find_map(|x| match x.event {
                AuditEvent::Unit { to_percent, .. }
                    if x.region.as_deref() == Some(&a.region) && x.service.as_deref() == Some(&a.service) =>
                {
                    Some(to_percent)
                }
                _ => None,
            });
            ensure!(last == Some(a.percent), "{name} changed traffic without an audit record");
        }
        // Traffic moves along the steps: up one step, or down to 0.
        ensure!(a.percent == 0 || steps.contains(&a.percent), "{name} at {}% is not a step", a.percent);
        if a.percent > b.percent {
            let next =
                if b.percent == 0 { steps[0] } else { steps[steps.iter().position(|s| *s == b.percent).unwrap() + 1] };
            ensure!(a.percent == next, "{name} jumped {}% -> {}%", b.percent, a.percent);
            // Never without every required approval, checked independently.
            let flags = m.required_flags(before, i);
            ensure!(m.flags_hold(&flags, i), "{name} raised to {}% without approvals {flags:?}", a.percent);
            // A failed region starts and advances nothing until a retry.
            ensure!(!m.region_failed[r], "{name} raised to {}% in a failed region", a.percent);
            // A step starts only inside a window.
            ensure!(
                window::any_open(&region.settings.windows, region.timezone, now),
                "{name} started a step outside its windows"
            );
            // And never inside a freeze.
            let frozen = m.frozen(r);
            ensure!(frozen.is_none(), "{name} raised to {}% during a {}", a.percent, frozen.unwrap_or_default());
        } else if a.percent < b.percent {
            ensure!(a.percent == 0, "{name} went down {}% -> {}% but not to 0", b.percent, a.percent);
        }
        ensure!(a.percent == 0 || m.ever_approved[i], "{name} has traffic but its region was never approved");
        // Advancing (a step after the first, or enabled) needs baked, fresh healthy data.
        let advanced = (a.percent > b.percent && b.percent > 0)
            || (a.phase == UnitPhase::Enabled && b.phase != UnitPhase::Enabled);
        if a.percent > b.percent || advanced {
            // Nothing moves up in an aborted or paused scope.
            let wave_name = &plan.waves[region.wave].name;
            ensure!(!after.aborted && !after.aborted_regions.contains(&region.name), "{name} moved up while aborted");
            ensure!(
                !after.paused.plan
                    && !after.paused.waves.contains(wave_name)
                    && !after.paused.regions.contains(&region.name),
                "{name} moved up while paused"
            );
        }
        // The record that moved it is the evidence: a raise cites the flags it needed (its
        // region's at least), each carried by a cited approval; a bake that ended healthy
        // shows every check it needed healthy, against the region's limits.
        if a.percent > b.percent || advanced {
            let record = d.audit.iter().rev().find(|x| {
                x.region.as_deref() == Some(a.region.as_str())
                    && x.service.as_deref() == Some(a.service.as_str())
                    && matches!(x.event, AuditEvent::Unit { to, to_percent, .. } if to_percent == a.percent && to == a.phase)
            });
            let cause = record.map(|x| &x.cause);
            if let Some(Cause::Started { approvals, flags } | Cause::Advanced { approvals, flags, .. }) = cause {
                for f in &region.approvals {
                    ensure!(flags.contains(f), "{name} raised citing flags {flags:?} without its region's {f}");
                }
                for f in flags {
                    let carried = approvals.iter().any(|n| m.approvals.iter().any(|x| &x.name == n && &x.flag == f));
                    ensure!(carried, "{name} raised citing flag {f} but no approval of it ({approvals:?})");
                }
            } else if a.percent > b.percent {
                ensure!(false, "{name} raised to {}% by {cause:?}", a.percent);
            }
            if let Some(
                Cause::Advanced { promoted: false, health, .. } | Cause::Completed { promoted: false, health, .. },
            ) = cause
            {
                ensure!(health.len() == region.settings.checks.len(), "{name} baked with evidence {health:?}");
                for (e, limits) in health.iter().zip(&region.settings.checks) {
                    ensure!(
                        limits.no_data == NoDataPolicy::Ignore || e.verdict == Some(HealthVerdict::Healthy),
                        "{name} baked with {e}"
                    );
                    ensure!(e.max == limits.max && e.min == limits.min, "{name} evidence {e} has other limits");
                }
            }
        }
        if advanced && let Some(why) = m.advance_unjustified(i) {
            return Err(format!(
                "at {now}: {name} advanced ({} {}% -> {} {}%): {why}",
                b.phase, b.percent, a.phase, a.percent
            ));
        }
        if a.phase == UnitPhase::Enabled {
            ensure!(a.percent == 100, "{name} enabled at {}%", a.percent);
        }
        // With onApprovalRevoked: disable, nothing keeps traffic without its approvals.
        if plan.on_approval_revoked == OnApprovalRevoked::Disable && a.percent > 0 {
            let flags = m.required_flags(after, i);
            ensure!(m.flags_hold(&flags, i), "{name} keeps {}% without approvals under disable", a.percent);
        }
    }

    // Waves: in order, Complete is final, maxParallel holds, bakes are respected.
    for (w, wave) in plan.waves.iter().enumerate() {
        let (bw, aw) = (&before.waves[w], &after.waves[w]);
        ensure!(bw.phase != WavePhase::Complete || aw.phase == WavePhase::Complete, "wave {} left Complete", wave.name);
        let live = wave.regions.iter().any(|&r| after.units[r * n..(r + 1) * n].iter().any(|u| u.percent > 0));
        if live {
            let earlier = after.waves[..w].iter().find(|x| x.phase != WavePhase::Complete);
            ensure!(
                earlier.is_none(),
                "wave {} has traffic before {:?} completed",
                wave.name,
                earlier.map(|x| &x.name)
            );
        }
        if aw.phase == WavePhase::Pending {
            ensure!(!live, "pending wave {} has traffic", wave.name);
        }
        // maxParallel: a region takes a slot when it starts, so no region starts while the
        // wave's slots are taken. (A region that had finished and then fails under
        // `onFailure: pause`, or loses an approval under `disable`, is in progress again
        // without starting anything; it then keeps the next region from starting.)
        let was_active = in_progress(plan, before, w);
        let active = in_progress(plan, after, w);
        let started = active.iter().any(|name| {
            let r = plan.region_index(name).unwrap();
            !was_active.contains(name)
                && (r * n..(r + 1) * n).any(|i| before.units[i].percent == 0 && after.units[i].percent > 0)
        });
        ensure!(
            !started || active.len() <= wave.max_parallel,
            "wave {} started a region with {active:?} in progress, maxParallel {}",
            wave.name,
            wave.max_parallel
        );
        if aw.phase == WavePhase::Complete && bw.phase != WavePhase::Complete && !wave.bake.is_zero() {
            let baked = bw.phase == WavePhase::Baking && bw.since.is_some_and(|s| now >= s + wave.bake.to_delta());
            ensure!(
                baked || m.wave_promoted[w] || m.full_covers_wave(w),
                "wave {} completed without baking ({:?})",
                wave.name,
                bw
            );
        }
    }
    // Progress deadlines: recorded only once the deadline has passed since the unit last
    // moved; `alert` moves no traffic, `fail` fails the unit.
    for x in &d.audit {
        let Cause::ProgressDeadline { since, policy, .. } = &x.cause else { continue };
        let i = plan.unit_index(
            plan.region_index(x.region.as_deref().unwrap()).unwrap(),
            plan.service_index(x.service.as_deref().unwrap()).unwrap(),
        );
        let deadline = plan.regions[i / n].settings.progress_deadline.unwrap();
        ensure!(now >= *since + deadline.to_delta(), "{:?} before its deadline {deadline}", x.cause);
        ensure!(m.entered[i].is_none_or(|e| e <= *since), "{:?} counts from before the unit last moved", x.cause);
        match policy {
            meridian_core::manifest::OnProgressDeadline::Alert => {
                let AuditEvent::Unit { from_percent, to_percent, .. } = x.event else { unreachable!() };
                ensure!(from_percent == to_percent, "an alert moved traffic: {x:?}");
                ensure!(after.units[i].stalled.is_some(), "{x:?} without a marker");
            }
            meridian_core::manifest::OnProgressDeadline::Fail => {
                ensure!(matches!(x.event, AuditEvent::Unit { to: UnitPhase::Failed, .. }), "fail did not fail: {x:?}");
            }
        }
    }

    // Failure budgets.
    for (w, wave) in plan.waves.iter().enumerate() {
        let Some(budget) = wave.max_failures else { continue };
        let aw = &after.waves[w];
        let region_failed = |state: &PlanState, r: usize| {
            !(state.aborted || state.aborted_regions.contains(&plan.regions[r].name))
                && state.units[r * n..(r + 1) * n]
                    .iter()
                    .any(|u| matches!(u.phase, UnitPhase::Failed | UnitPhase::RolledBack))
        };
        let failed = wave.regions.iter().filter(|&&r| region_failed(after, r)).count();
        let allowed = budget.allowed(wave.regions.len());
        // One failure past the wave's budget stops it at once (or aborts the rollout).
        if failed > allowed && aw.phase != WavePhase::Complete && !after.aborted {
            ensure!(
                aw.phase == WavePhase::Halted,
                "wave {} has {failed} failed > {allowed} but is {}",
                wave.name,
                aw.phase
            );
        }
        // Within it (and without a plan budget to count too), the wave never halts.
        if failed <= allowed && plan.max_failures.is_none() {
            ensure!(aw.phase != WavePhase::Halted, "wave {} halted with {failed} failed <= {allowed}", wave.name);
        }
    }
    for (w, wave) in plan.waves.iter().enumerate() {
        // No region of a wave stopped past its budget starts.
        if plan.wave_budget(w).is_none() || after.waves[w].phase != WavePhase::Halted {
            continue;
        }
        for &r in &wave.regions {
            let units = r * n..(r + 1) * n;
            let was_started = before.units[units.clone()]
                .iter()
                .any(|u| u.percent > 0 || u.step.is_some() || u.phase == UnitPhase::Enabled);
            let started = after.units[units].iter().any(|u| u.percent > 0);
            ensure!(was_started || !started, "region {} of halted wave {} started", plan.regions[r].name, wave.name);
        }
    }
    let _ = commands;
    Ok(())
}

/// Advance the model's per-unit and per-wave bookkeeping past a checked decision.
fn settle_model(m: &mut Model, before: &PlanState, after: &PlanState) {
    for i in 0..m.plan.unit_count() {
        let (b, a) = (&before.units[i], &after.units[i]);
        if a.step != b.step || a.percent != b.percent {
            m.entered[i] = Some(m.now);
            m.promoted[i] = false;
        }
    }
    let n = m.plan.services.len();
    for r in 0..m.plan.regions.len() {
        let aborted = after.aborted || after.aborted_regions.contains(&m.plan.regions[r].name);
        let failed = after.units[r * n..(r + 1) * n]
            .iter()
            .any(|u| matches!(u.phase, UnitPhase::Failed | UnitPhase::RolledBack));
        if failed && !aborted {
            m.region_failed[r] = true;
        }
    }
    for w in 0..m.plan.waves.len() {
        if before.waves[w].phase != after.waves[w].phase {
            m.wave_promoted[w] = false;
        }
    }
}

fn run(
    spec: &PlanSpec,
    steps: &[Step],
    start_hours: u32,
    grant_all: bool,
    tally: bool,
) -> Result<PlanState, TestCaseError> {
    let yaml = spec.yaml();
    let bundle = load(&[("prop.yaml".into(), yaml.clone())], None);
    prop_assert!(!bundle.report.has_errors(), "{yaml}\n{:#?}", bundle.report);
    let plan = bundle.plans.into_iter().next().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 3, 5, 0, 0, 0).unwrap() + TimeDelta::hours(i64::from(start_hours));
    let units = plan.unit_count();
    let checks = plan.health.checks.len();
    let mut m = Model {
        spec: spec.clone(),
        now: start,
        approvals: Vec::new(),
        entered: vec![None; units],
        promoted: vec![false; units],
        latest: vec![vec![None; checks]; units],
        ever_approved: vec![false; units],
        wave_promoted: vec![false; plan.waves.len()],
        region_failed: vec![false; plan.regions.len()],
        freezes: Vec::new(),
        full: Vec::new(),
        plan,
    };
    if grant_all {
        for (k, flag) in spec.flags().into_iter().enumerate() {
            m.approvals.push(ApprovalRecord {
                name: format!("initial{k}"),
                flag,
                granted_by: "prop".into(),
                reference: None,
                granted_at: None,
                expires: None,
                scope: ApprovalScopeSet::default(),
                revoked: None,
                signature: None,
            });
        }
    }
    let mut state = PlanState::new(&m.plan);
    let mut wake_at: Option<DateTime<Utc>> = None;
    let interval = m.plan.health.interval.to_delta();
    for (k, step) in steps.iter().enumerate() {
        m.now = match step.time {
            _ if k == 0 => m.now,
            TimeMove::By(s) => m.now + TimeDelta::seconds(i64::from(s)),
            TimeMove::ToWake => wake_at.unwrap_or(m.now + interval),
            TimeMove::Jump(h) => m.now + TimeDelta::hours(i64::from(h)),
        };
        let (health, traffic, commands) = m.observations(&state, &step.inputs);
        m.note_inputs(&state, &health, &commands);
        let obs = Observations {
            approvals: &m.approvals,
            health: &health,
            traffic: &traffic,
            commands: &commands,
            ..Observations::default()
        };
        let d = decide(&m.plan, state.clone(), &obs, m.now);
        // Determinism: the same inputs give the same outputs.
        let again = decide(&m.plan, state.clone(), &obs, m.now);
        prop_assert_eq!(&d, &again);
        if let Err(e) = check_decision(&mut m, &state, &d, &commands, &traffic) {
            return Err(TestCaseError::fail(format!(
                "step {k}: {e}\nplan:\n{yaml}\ndecision audit: {:#?}\nbefore: {:#?}",
                d.audit, state
            )));
        }
        settle_model(&mut m, &state, &d.state);
        if tally {
            count(&d, &state);
        }

        // Level-triggered and honest about wake_at: with nothing new, deciding again at any
        // moment before wake_at changes no unit and no wave and sends nothing.
        let gap = d.wake_at.map_or(TimeDelta::hours(72), |w| w - m.now);
        let probe_at = m.now + TimeDelta::milliseconds(gap.num_milliseconds() * i64::from(step.probe) / 1000);
        let quiet = Observations { approvals: &m.approvals, ..Observations::default() };
        let probe = decide(&m.plan, d.state.clone(), &quiet, probe_at);
        prop_assert!(
            probe.actions.is_empty(),
            "step {k}: probe at {probe_at} (wake {:?}) acted: {:?}\n{yaml}",
            d.wake_at,
            probe.actions
        );
        for (u, (x, y)) in d.state.units.iter().zip(&probe.state.units).enumerate() {
            prop_assert!(
                (x.phase, x.step, x.percent) == (y.phase, y.step, y.percent),
                "step {k}: probe at {probe_at} (wake {:?}) moved unit {u}: {:?} -> {:?}\n{yaml}\n{:#?}",
                d.wake_at,
                x,
                y,
                probe.audit
            );
        }
        for (x, y) in d.state.waves.iter().zip(&probe.state.waves) {
            prop_assert_eq!(x.phase, y.phase, "step {}: probe at {} moved wave {}", k, probe_at, &x.name);
        }
        wake_at = d.wake_at;
        state = d.state;
    }
    Ok(state)
}

/// How often the random runs reached what they are meant to exercise (summed over cases).
#[derive(Debug, Default)]
struct Coverage {
    decisions: usize,
    starts: usize,
    advances: usize,
    enabled: usize,
    rollbacks: usize,
    approval_losses: usize,
    waves_completed: usize,
    waves_halted: usize,
    drifts: usize,
    plans_completed: usize,
    /// Decisions that left some unit held by a freeze.
    frozen: usize,
    budgets_consumed: usize,
    budgets_exceeded: usize,
    deadlines: usize,
    /// Steps and wave bakes taken under a full promotion, and full promotions ended.
    full_moves: usize,
    full_ends: usize,
}

static COVERAGE: Mutex<Coverage> = Mutex::new(Coverage {
    decisions: 0,
    starts: 0,
    advances: 0,
    enabled: 0,
    rollbacks: 0,
    approval_losses: 0,
    waves_completed: 0,
    waves_halted: 0,
    drifts: 0,
    plans_completed: 0,
    frozen: 0,
    budgets_consumed: 0,
    budgets_exceeded: 0,
    deadlines: 0,
    full_moves: 0,
    full_ends: 0,
});

fn count(d: &Decision, before: &PlanState) {
    let mut c = COVERAGE.lock().unwrap_or_else(|e| e.into_inner());
    c.decisions += 1;
    for r in &d.audit {
        if let Cause::Advanced { full: Some(_), .. }
        | Cause::Completed { full: Some(_), .. }
        | Cause::WaveBaked { full: Some(_), .. } = r.cause
        {
            c.full_moves += 1;
        }
        match (&r.event, &r.cause) {
            (AuditEvent::FullPromotionEnded { .. }, _) => c.full_ends += 1,
            (AuditEvent::Unit { .. }, Cause::Started { .. }) => c.starts += 1,
            (AuditEvent::Unit { .. }, Cause::Advanced { .. }) => c.advances += 1,
            (AuditEvent::Unit { to: UnitPhase::Enabled, .. }, _) => c.enabled += 1,
            (AuditEvent::Unit { to: UnitPhase::RolledBack, .. }, _) => c.rollbacks += 1,
            (_, Cause::ApprovalLost { .. }) => c.approval_losses += 1,
            (AuditEvent::Wave { to: WavePhase::Complete, .. }, _) => c.waves_completed += 1,
            (AuditEvent::Wave { to: WavePhase::Halted, .. }, _) => c.waves_halted += 1,
            (AuditEvent::Drift { .. }, _) => c.drifts += 1,
            (_, Cause::BudgetConsumed { .. }) => c.budgets_consumed += 1,
            (_, Cause::BudgetExceeded { .. }) => c.budgets_exceeded += 1,
            (_, Cause::ProgressDeadline { .. }) => c.deadlines += 1,
            _ => {}
        }
    }
    if d.state.phase() == PlanPhase::Complete && before.phase() != PlanPhase::Complete {
        c.plans_completed += 1;
    }
    if d.state.units.iter().any(|u| matches!(u.waiting, Some(WaitReason::Frozen { .. }))) {
        c.frozen += 1;
    }
}

/// Random cases per run when `PROPTEST_CASES` is not set; the coverage floors below are
/// tuned to it.
const DEFAULT_CASES: u32 = 256;

/// Cases per property run: `PROPTEST_CASES` when set (the README's way to run longer),
/// `default` otherwise. A value that is not a number stops the run instead of being ignored.
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_CASES={v:?} is not a number of cases"))
        }
        _ => default,
    }
}

#[test]
fn engine_invariants_hold_over_random_plans_and_observations() {
    let cases = cases(DEFAULT_CASES);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let strategy = (plan_spec(), steps(), 0..(24 * 30u32), prop::bool::weighted(0.6));
    let mut runner = TestRunner::new(config);
    let ran = AtomicU32::new(0);
    let result = runner.run(&strategy, |(spec, steps, start_hours, grant_all)| {
        ran.fetch_add(1, Ordering::Relaxed);
        run(&spec, &steps, start_hours, grant_all, true).map(|_| ())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let ran = ran.into_inner();
    assert_eq!(ran, cases, "every case runs once when all pass (no filters, no shrinking)");
    // The random runs must actually reach what they are meant to exercise. The floors hold
    // for the default number of cases and any larger one; a shorter run only reports.
    let c = COVERAGE.lock().unwrap_or_else(|e| e.into_inner());
    println!("ran {ran} random cases: {c:#?}");
    if cases < DEFAULT_CASES {
        println!("coverage floors not checked: fewer than {DEFAULT_CASES} cases");
        return;
    }
    assert!(c.starts > 100 && c.advances > 100 && c.enabled > 20, "{c:#?}");
    assert!(c.rollbacks > 5 && c.approval_losses > 5 && c.drifts > 5, "{c:#?}");
    assert!(c.waves_completed > 10 && c.waves_halted > 2 && c.plans_completed > 2, "{c:#?}");
    assert!(c.frozen > 20, "{c:#?}");
    // Each alone is rare at this count (a few per run); the directed tests cover each.
    assert!(c.budgets_consumed + c.budgets_exceeded > 0 && c.deadlines > 0, "{c:#?}");
    assert!(c.full_moves > 0 && c.full_ends > 0, "{c:#?}");
}

/// `PROPTEST_CASES` sets how many random cases the property above runs (README,
/// "Development"): the test binary runs it again in a child process with a small count.
#[test]
fn proptest_cases_sets_how_many_random_cases_run() {
    let child = |value: &str| {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["engine_invariants_hold_over_random_plans_and_observations", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("PROPTEST_CASES", value)
            .output()
            .expect("run the test binary");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, text) = child("3");
    assert!(ok, "{text}");
    assert!(text.contains("ran 3 random cases"), "{text}");
    assert!(text.contains("coverage floors not checked: fewer than 256 cases"), "{text}");
    let (ok, text) = child("lots");
    assert!(!ok, "{text}");
    assert!(text.contains("PROPTEST_CASES=\"lots\" is not a number of cases"), "{text}");
}

/// A long healthy run of one larger plan: invariants hold all the way to the end.
#[test]
fn a_healthy_fleet_completes_a_rollout_with_every_invariant_holding() {
    let spec = PlanSpec {
        after: vec![0, 1, 1],
        regions: vec![(0, false), (1, true), (2, false), (3, true), (0, false), (1, false)],
        wave_of: vec![0, 1, 1, 2, 2, 2],
        waves: vec![(0, Some(5), true), (1, Some(10), false), (2, None, false)],
        steps: vec![1, 10, 50, 100],
        step_bake_min: 2,
        interval_s: 30,
        window: None,
        checks: vec![(2, 0), (1, 2)],
        pause_on_failure: false,
        disable_on_revoke: true,
        region_extra: vec![(None, None), (Some(5), None), (None, None), (None, None), (None, None), (None, None)],
        wave_budgets: Vec::new(),
        plan_budget: None,
        abort_on_budget: false,
        deadline: None,
    };
    let steps: Vec<Step> =
        (0..400).map(|_| Step { time: TimeMove::By(30), inputs: vec![Input::AllHealthy], probe: 500 }).collect();
    assert_eq!(run(&spec, &steps, 0, true, false).unwrap().phase(), PlanPhase::Complete);
}

/// The same fleet with one region failing all along: within its wave's budget, the wave
/// completes without it and the rollout completes, every invariant holding; past the budget,
/// the wave stops and later waves never start.
#[test]
fn a_failure_within_budget_completes_and_one_past_it_stops_the_wave() {
    let spec = |budget: u32| PlanSpec {
        after: vec![0, 1],
        regions: vec![(0, false), (1, false), (2, false), (3, false)],
        wave_of: vec![0, 1, 1, 2],
        waves: vec![(0, Some(5), false), (1, Some(10), false), (2, None, false)],
        steps: vec![1, 10, 50, 100],
        step_bake_min: 2,
        interval_s: 30,
        window: None,
        checks: vec![(1, 0)],
        pause_on_failure: false,
        disable_on_revoke: false,
        region_extra: vec![(None, None); 4],
        wave_budgets: vec![None, Some((budget, false)), None],
        plan_budget: None,
        abort_on_budget: false,
        deadline: Some((30, true)),
    };
    let steps: Vec<Step> = (0..400)
        .map(|_| Step {
            time: TimeMove::By(30),
            inputs: vec![Input::RegionUnhealthy(2), Input::AllHealthy],
            probe: 500,
        })
        .collect();
    let end = run(&spec(1), &steps, 0, true, false).unwrap();
    assert_eq!(end.phase(), PlanPhase::Complete, "{end:#?}");
    assert_eq!(end.units[2 * 2].phase, UnitPhase::RolledBack);
    let end = run(&spec(0), &steps, 0, true, false).unwrap();
    assert_eq!(end.waves[1].phase, WavePhase::Halted, "{end:#?}");
    assert_eq!(end.waves[2].phase, WavePhase::Pending);
}
