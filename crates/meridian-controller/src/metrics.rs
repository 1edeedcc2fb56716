//! Prometheus metrics of the controller, in one registry the API serves at `/metrics`.
//!
//! Owns metric names, labels and how the published snapshot maps onto them. The default set
//! stays small at any fleet size: aggregates per plan (units by wave and phase, regions by
//! state, traffic per service, the plan's phase), per check, per approval and per error kind;
//! 1,000 plans of 50 regions x 3 services export a few thousand series, not a million.
//! Per-unit series (`meridian_unit_*`, `meridian_health_value`, and the per-region
//! `meridian_health_limit` to read them against) are opt-in
//! (`Metrics::with_unit_series`, `meridian run --unit-metrics`).
//!
//! State gauges are rebuilt from the snapshot at every scrape (reset, then set, under one
//! lock), so a plan that left or a phase no longer held leaves no stale series behind.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use crate::snapshot::Snapshot;
use chrono::{DateTime, TimeDelta, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::outcome::region_state;
use meridian_core::plan::Plan;
use meridian_core::state::{PlanState, UnitPhase};
use meridian_core::{AuditEvent, AuditRecord, HealthSample};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

const PHASES: [UnitPhase; 7] = [
    UnitPhase::Pending,
    UnitPhase::Blocked,
    UnitPhase::Progressing,
    UnitPhase::Enabled,
    UnitPhase::Failed,
    UnitPhase::RolledBack,
    UnitPhase::Paused,
];

/// The leadership gauge of the Kubernetes mode: 1 on the replica that leads, 0 on the others
/// (labelled with the leader's identity), so an alert can tell "no replica leads" from "no
/// replica is up".
pub const LEADER: &str = "meridian_leader";
/// Its help text, the same on the leader and the followers.
pub const LEADER_HELP: &str = "1 on the replica that leads (decides, writes state, actuates), 0 on the others";

/// Regions over all plans up to which `meridian_region_traffic_percent` is exported by
/// default: one series each, so the default set stays under 20,000 series at any fleet size.
pub const REGION_SERIES_CAP: usize = 10_000;

/// Every metric the controller exports.
pub struct Metrics {
    pub registry: Registry,
    /// Per-unit series, opt-in; `None` by default.
    unit_series: Option<UnitSeries>,
    units: IntGaugeVec,
    regions: IntGaugeVec,
    service_traffic: GaugeVec,
    /// Mean traffic per (plan, region), while the fleet has at most `region_cap` regions over
    /// all plans (any size with per-unit series).
    region_traffic: GaugeVec,
    region_cap: usize,
    /// The cap was met and said so (once, until the fleet is under it again).
    region_capped: std::sync::atomic::AtomicBool,
    plan_phase: IntGaugeVec,
    /// Per plan and check, the unit nearest to its limit (or furthest beyond it): its latest
    /// value, and the limits it is judged by; and how many units are beyond theirs.
    health_worst_value: GaugeVec,
    health_worst_limit: GaugeVec,
    health_beyond_limit: IntGaugeVec,
    /// Units past their progress deadline (`onProgressDeadline: alert`), per plan.
    progress_deadline_exceeded: IntGaugeVec,
    health_verdicts: IntCounterVec,
    approval_valid: IntGaugeVec,
    approval_expiry: GaugeVec,
    approval_expiring: IntGaugeVec,
    /// How far ahead `approval_expiring` looks.
    expiry_warning: TimeDelta,
    pub approvals_refused: IntCounterVec,
    transitions: IntCounterVec,
    drift: IntCounterVec,
    pub actuation_duration: HistogramVec,
    pub actuation_errors: IntCounterVec,
    pub decision_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub open_intents: IntGauge,
    pub task_failures: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub health_errors: IntCounterVec,
    /// `meridian_leader{leader}`: 1 once this replica leads (Kubernetes mode, [`Metrics::lead`]);
    /// no series in the standalone mode. Followers say 0 (`meridian_kube::follower`).
    leader: IntGaugeVec,
    /// Held from the reset of the state gauges to the end of rendering, so concurrent
    /// scrapes never see a half-rebuilt set.
    scrape: Mutex<()>,
}

/// How far `value` is beyond its nearest limit, relative to that limit's size (negative while
/// within: the headroom left), so units with different limits compare: 0.2 against `max:
/// 0.1` is 1.0, 0.05 against it -0.5.
fn limit_distance(value: f64, max: Option<f64>, min: Option<f64>) -> f64 {
    let relative = |over: f64, limit: f64| over / limit.abs().max(f64::EPSILON);
    let above = max.map(|m| relative(value - m, m));
    let below = min.map(|m| relative(m - value, m));
    match (above, below) {
        (Some(a), Some(b)) => a.max(b),
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => f64::NEG_INFINITY,
    }
}

/// The per-unit series: one per (plan, region, service), so 150,000 units are over a million
/// series. For small fleets, or for debugging one.
struct UnitSeries {
    state: IntGaugeVec,
    traffic: IntGaugeVec,
    health_value: GaugeVec,
    /// Each check's effective `max` and `min` per region (overrides applied), so a value can be
    /// read against the limit it is judged by: per region, since limits are.
    health_limit: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The default set: aggregates only.
    pub fn new() -> Self {
        Self::with_unit_series(false)
    }

    /// The default set, plus one series per unit (state, traffic, health value) when
    /// `unit_series` is true.
    #[allow(clippy::expect_used, reason = "the definitions are static: a bad one fails the first test, never a user")]
    pub fn with_unit_series(unit_series: bool) -> Self {
        let registry = Registry::new();
        let unit = ["plan", "region", "service"];
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definitions are static and valid");
                registry.register(Box::new(m.clone())).expect("metric names are unique");
                m
            }};
        }
        let seconds = vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let unit_series = unit_series.then(|| UnitSeries {
            state: reg!(IntGaugeVec::new(
                Opts::new("meridian_unit_state", "1 for the phase each (region, service) is in"),
                &["plan", "region", "service", "state"]
            )),
            traffic: reg!(IntGaugeVec::new(
                Opts::new("meridian_unit_traffic_percent", "Traffic percent each (region, service) is meant to serve"),
                &unit
            )),
            health_value: reg!(GaugeVec::new(
                Opts::new("meridian_health_value", "Latest measured value of each check"),
                &["plan", "region", "service", "check"]
            )),
            health_limit: reg!(GaugeVec::new(
                Opts::new("meridian_health_limit", "Each check's max or min in each region (its overrides applied)"),
                &["plan", "region", "check", "bound"]
            )),
        });
        Metrics {
            unit_series,
            units: reg!(IntGaugeVec::new(
                Opts::new(
                    "meridian_units",
                    "Units (region, service) by plan, wave and phase; phases with none are absent"
                ),
                &["plan", "wave", "phase"]
            )),
            regions: reg!(IntGaugeVec::new(
                Opts::new("meridian_regions", "Regions by plan and state; states with none are absent"),
                &["plan", "state"]
            )),
            service_traffic: reg!(GaugeVec::new(
                Opts::new(
                    "meridian_service_traffic_percent",
                    "Mean traffic percent a service is meant to serve over the plan's regions"
                ),
                &["plan", "service"]
            )),
            region_traffic: reg!(GaugeVec::new(
                Opts::new(
                    "meridian_region_traffic_percent",
                    "Mean traffic percent a region is meant to serve over the plan's services (up to 10,000 regions over all plans by default)"
                ),
                &["plan", "region"]
            )),
            region_cap: REGION_SERIES_CAP,
            region_capped: std::sync::atomic::AtomicBool::new(false),
            plan_phase: reg!(IntGaugeVec::new(
                Opts::new("meridian_plan_phase", "1 for the phase each plan is in (other phases absent)"),
                &["plan", "phase"]
            )),
            health_worst_value: reg!(GaugeVec::new(
                Opts::new(
                    "meridian_health_worst_value",
                    "Latest value of the unit nearest to its limit (or furthest beyond it), per plan and check"
                ),
                &["plan", "check"]
            )),
            health_worst_limit: reg!(GaugeVec::new(
                Opts::new(
                    "meridian_health_worst_limit",
                    "The max or min (bound) that meridian_health_worst_value is judged by, its region's overrides applied"
                ),
                &["plan", "check", "bound"]
            )),
            health_beyond_limit: reg!(IntGaugeVec::new(
                Opts::new(
                    "meridian_health_beyond_limit",
                    "Units whose latest value of the check is beyond their max or min, per plan and check"
                ),
                &["plan", "check"]
            )),
            progress_deadline_exceeded: reg!(IntGaugeVec::new(
                Opts::new(
                    "meridian_progress_deadline_exceeded",
                    "Units that made no progress within their progressDeadline (onProgressDeadline: alert)"
                ),
                &["plan"]
            )),
            health_verdicts: reg!(IntCounterVec::new(
                Opts::new("meridian_health_verdicts_total", "Health evaluations by verdict"),
                &["plan", "check", "verdict"]
            )),
            approval_valid: reg!(IntGaugeVec::new(
                Opts::new("meridian_approval_valid", "1 when the approval is granted, unexpired and not revoked"),
                &["approval", "flag"]
            )),
            approval_expiry: reg!(GaugeVec::new(
                Opts::new("meridian_approval_expiry_seconds", "Seconds until the approval expires (negative: expired)"),
                &["approval", "flag"]
            )),
            approval_expiring: reg!(IntGaugeVec::new(
                Opts::new(
                    "meridian_approval_expiring",
                    "1 for an approval a unit still depends on that expires within the warning window \
                     (run --expiry-warning)"
                ),
                &["plan", "approval", "flag"]
            )),
            expiry_warning: TimeDelta::hours(24),
            approvals_refused: reg!(IntCounterVec::new(
                Opts::new(
                    "meridian_approvals_refused_total",
                    "Approvals refused over the API for their signature, by reason"
                ),
                &["reason"]
            )),
            transitions: reg!(IntCounterVec::new(
                Opts::new("meridian_transitions_total", "Unit transitions by target phase"),
                &["plan", "to"]
            )),
            drift: reg!(IntCounterVec::new(
                Opts::new("meridian_drift_total", "Read-backs that differed from the state"),
                &["plan"]
            )),
            actuation_duration: reg!(HistogramVec::new(
                HistogramOpts::new("meridian_actuation_duration_seconds", "Time to apply a traffic change")
                    .buckets(seconds.clone()),
                &["result"]
            )),
            actuation_errors: reg!(IntCounterVec::new(
                Opts::new("meridian_actuation_errors_total", "Failed actuations by error kind"),
                &["error"]
            )),
            decision_duration: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "meridian_decision_duration_seconds",
                    "Time of one plan's decision (decide + commit); not per plan, to stay small"
                )
                .buckets(seconds),
                &[]
            )),
            config_reloads: reg!(IntCounterVec::new(
                Opts::new("meridian_config_reloads_total", "Configuration reloads by result"),
                &["result"]
            )),
            config_generation: reg!(IntGauge::new(
                "meridian_config_generation",
                "Generation of the configuration in force"
            )),
            open_intents: reg!(IntGauge::new("meridian_open_intents", "Actuation intents not yet confirmed")),
            task_failures: reg!(IntCounterVec::new(
                Opts::new("meridian_task_failures_total", "Background tasks that failed"),
                &["task"]
            )),
            store_errors: reg!(IntCounterVec::new(
                Opts::new("meridian_store_errors_total", "Failed state store operations by operation"),
                &["op"]
            )),
            health_errors: reg!(IntCounterVec::new(
                Opts::new(
                    "meridian_health_errors_total",
                    "Errors met reading health, by plan, check and kind (each also an error verdict)"
                ),
                &["plan", "check", "error"]
            )),
            leader: reg!(IntGaugeVec::new(Opts::new(LEADER, LEADER_HELP), &["leader"])),
            scrape: Mutex::new(()),
            registry,
        }
    }

    /// Export `meridian_region_traffic_percent` up to this many regions over all plans.
    pub fn with_region_cap(mut self, cap: usize) -> Self {
        self.region_cap = cap;
        self
    }

    /// Look this far ahead for approvals in use that expire (default 24 hours).
    pub fn with_expiry_warning(mut self, window: TimeDelta) -> Self {
        self.expiry_warning = window;
        self
    }

    /// Say that this replica leads as `identity` (`meridian_leader{leader=identity} 1`) from now
    /// on; a replica that loses its lease exits, so there is no way back to 0 here.
    pub fn lead(&self, identity: &str) {
        self.leader.reset();
        self.leader.with_label_values(&[identity]).set(1);
    }

    /// Mirror one plan's state onto the gauges (after a reset of them, at scrape time).
    fn observe_state(&self, plan: &Plan, state: &PlanState, per_region: bool) {
        let n = plan.services.len().max(1);
        let mut units: BTreeMap<(usize, &'static str), i64> = BTreeMap::new();
        let mut traffic = vec![0u64; plan.services.len()];
        for (i, u) in state.units.iter().enumerate() {
            let wave = plan.regions.get(i / n).map_or(0, |r| r.wave);
            *units.entry((wave, u.phase.as_str())).or_default() += 1;
            if let Some(t) = traffic.get_mut(i % n) {
                *t += u64::from(u.percent);
            }
        }
        for ((w, phase), count) in units {
            let wave = plan.waves.get(w).map_or("", |w| w.name.as_str());
            self.units.with_label_values(&[&state.plan, wave, phase]).set(count);
        }
        let mut regions: BTreeMap<&'static str, i64> = BTreeMap::new();
        for (region, units) in plan.regions.iter().zip(state.units.chunks(n)) {
            *regions.entry(region_state(state, &region.name, units).as_str()).or_default() += 1;
            if per_region {
                let total: u64 = units.iter().map(|u| u64::from(u.percent)).sum();
                self.region_traffic.with_label_values(&[&state.plan, &region.name]).set(total as f64 / n as f64);
            }
        }
        for (region_state, count) in regions {
            self.regions.with_label_values(&[&state.plan, region_state]).set(count);
        }
        let region_count = plan.regions.len().max(1) as f64;
        for (service, total) in plan.services.iter().zip(traffic) {
            self.service_traffic.with_label_values(&[&state.plan, &service.name]).set(total as f64 / region_count);
        }
        self.plan_phase.with_label_values(&[&state.plan, &state.phase().to_string()]).set(1);
        self.observe_health_limits(plan, state);
        if plan.regions.iter().any(|r| r.settings.progress_deadline.is_some()) {
            let stalled = state.units.iter().filter(|u| u.stalled.is_some()).count();
            self.progress_deadline_exceeded.with_label_values(&[&state.plan]).set(stalled as i64);
        }
        if let Some(series) = &self.unit_series {
            for u in &state.units {
                for p in PHASES {
                    let v = i64::from(u.phase == p);
                    series.state.with_label_values(&[&state.plan, &u.region, &u.service, p.as_str()]).set(v);
                }
                series.traffic.with_label_values(&[&state.plan, &u.region, &u.service]).set(i64::from(u.percent));
                for c in &u.checks {
                    if let Some(v) = c.value {
                        series.health_value.with_label_values(&[&state.plan, &u.region, &u.service, &c.name]).set(v);
                    }
                }
            }
            for region in &plan.regions {
                for (check, limits) in plan.health.checks.iter().zip(&region.settings.checks) {
                    for (bound, limit) in [("max", limits.max), ("min", limits.min)] {
                        if let Some(v) = limit {
                            series
                                .health_limit
                                .with_label_values(&[&state.plan, &region.name, &check.name, bound])
                                .set(v);
                        }
                    }
                }
            }
        }
    }

    /// Per check, the unit nearest to (or furthest beyond) its limit and the units beyond it,
    /// so a value can be read against its limit from the default set at any fleet size.
    fn observe_health_limits(&self, plan: &Plan, state: &PlanState) {
        let n = plan.services.len().max(1);
        for (c, check) in plan.health.checks.iter().enumerate() {
            let mut worst: Option<(f64, f64, &meridian_core::plan::CheckLimits)> = None;
            let mut beyond = 0i64;
            for (region, units) in plan.regions.iter().zip(state.units.chunks(n)) {
                let Some(limits) = region.settings.checks.get(c) else { continue };
                if limits.max.is_none() && limits.min.is_none() {
                    continue;
                }
                for unit in units {
                    let Some(value) = unit.checks.get(c).and_then(|k| k.value).filter(|v| v.is_finite()) else {
                        continue;
                    };
                    let distance = limit_distance(value, limits.max, limits.min);
                    if distance > 0.0 {
                        beyond += 1;
                    }
                    if worst.is_none_or(|(d, _, _)| distance > d) {
                        worst = Some((distance, value, limits));
                    }
                }
            }
            let Some((_, value, limits)) = worst else { continue };
            self.health_worst_value.with_label_values(&[&state.plan, &check.name]).set(value);
            for (bound, limit) in [("max", limits.max), ("min", limits.min)] {
                if let Some(v) = limit {
                    self.health_worst_limit.with_label_values(&[&state.plan, &check.name, bound]).set(v);
                }
            }
            self.health_beyond_limit.with_label_values(&[&state.plan, &check.name]).set(beyond);
        }
    }

    /// Rebuild the state gauges from the published snapshot and render the registry.
    pub fn scrape(&self, snapshot: &Snapshot, now: DateTime<Utc>) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.units.reset();
        self.regions.reset();
        self.service_traffic.reset();
        self.region_traffic.reset();
        self.plan_phase.reset();
        self.health_worst_value.reset();
        self.health_worst_limit.reset();
        self.health_beyond_limit.reset();
        self.progress_deadline_exceeded.reset();
        self.approval_valid.reset();
        self.approval_expiry.reset();
        self.approval_expiring.reset();
        if let Some(series) = &self.unit_series {
            series.state.reset();
            series.traffic.reset();
            series.health_value.reset();
            series.health_limit.reset();
        }
        let fleet: usize = snapshot.plans.values().map(|e| e.plan.regions.len()).sum();
        let per_region = self.unit_series.is_some() || fleet <= self.region_cap;
        let capped = !per_region;
        if capped != self.region_capped.swap(capped, std::sync::atomic::Ordering::Relaxed) && capped {
            crate::log::line(
                crate::log::Level::Warn,
                "metrics",
                &[],
                &format!(
                    "metrics: {fleet} regions over all plans are more than {}: meridian_region_traffic_percent is not \
                     exported (the per-plan aggregates are); start with --unit-metrics to export it anyway",
                    self.region_cap
                ),
            );
        }
        for entry in snapshot.plans.values() {
            self.observe_state(&entry.plan, &entry.state, per_region);
            let expiring = meridian_core::expiry::expiring(
                &entry.plan,
                &entry.state,
                &snapshot.approvals,
                now,
                self.expiry_warning,
            );
            for e in expiring {
                self.approval_expiring
                    .with_label_values(&[&entry.plan.name, &e.approval.name, &e.approval.flag])
                    .set(1);
            }
        }
        self.observe_approvals(&snapshot.approvals, now);
        self.render()
    }

    pub fn observe_audit(&self, records: &[AuditRecord]) {
        for r in records {
            match &r.event {
                AuditEvent::Unit { from, to, .. } if from != to => {
                    self.transitions.with_label_values(&[&r.plan, to.as_str()]).inc();
                }
                AuditEvent::Drift { .. } => self.drift.with_label_values(&[&r.plan]).inc(),
                _ => {}
            }
        }
    }

    pub fn observe_samples(&self, plan: &str, samples: &[HealthSample]) {
        for s in samples {
            let verdict =
                serde_json::to_value(s.verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            self.health_verdicts.with_label_values(&[plan, &s.check, &verdict]).inc();
        }
    }

    /// Approval validity (ignoring scope) and seconds to expiry.
    fn observe_approvals(&self, approvals: &[ApprovalRecord], now: DateTime<Utc>) {
        let mut seen = HashSet::new();
        for a in approvals {
            if !seen.insert(&a.name) {
                continue;
            }
            let valid = a.revoked.as_ref().is_none_or(|r| r.at > now)
                && a.granted_at.is_none_or(|g| g <= now)
                && a.expires.is_none_or(|e| e > now);
            self.approval_valid.with_label_values(&[&a.name, &a.flag]).set(i64::from(valid));
            if let Some(e) = a.expires {
                self.approval_expiry
                    .with_label_values(&[&a.name, &a.flag])
                    .set((e - now).num_milliseconds() as f64 / 1000.0);
            }
        }
    }

    /// The registry in Prometheus text format.
    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::snapshot::PlanEntry;

    /// One plan of `regions` regions x 3 services in two waves (the first region a canary).
    fn mk_plan(regions: usize) -> Plan {
        let names: Vec<String> = (0..regions).map(|r| format!("r{r}")).collect();
        let text = format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: p}}\nspec:\n  services: [{{name: \
             a}}, {{name: b}}, {{name: c}}]\n  regions: [{}]\n  waves:\n    - {{name: canary, regions: [r0]}}\n    - \
             {{name: rest, regions: [{}]}}\n  steps: [50, 100]\n",
            names.iter().map(|n| format!("{{name: {n}}}")).collect::<Vec<_>>().join(", "),
            names[1..].join(", ")
        );
        let bundle = meridian_core::validate::load(&[("p.yaml".to_string(), text)], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    fn mk_snapshot(plans: usize, regions: usize) -> Snapshot {
        let template = mk_plan(regions);
        let mut snapshot = Snapshot::default();
        for k in 0..plans {
            let mut plan = template.clone();
            plan.name = format!("plan-{k}");
            let mut state = PlanState::new(&plan);
            // The canary region is enabled; r1's first service failed; the rest wait.
            for u in &mut state.units[..3] {
                (u.phase, u.percent) = (UnitPhase::Enabled, 100);
            }
            (state.units[3].phase, state.units[3].percent) = (UnitPhase::Failed, 50);
            state.waves[0].phase = meridian_core::WavePhase::Complete;
            state.waves[1].phase = meridian_core::WavePhase::Running;
            let entry =
                PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: Utc::now(), wake_at: None };
            snapshot.plans.insert(entry.plan.name.clone(), entry);
        }
        snapshot
    }

    fn series(page: &str) -> Vec<&str> {
        page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect()
    }

    #[test]
    fn the_default_set_stays_small_and_counts_units_regions_and_traffic() {
        let snapshot = mk_snapshot(200, 50);
        let metrics = Metrics::new();
        let page = metrics.scrape(&snapshot, Utc::now());
        let lines = series(&page);
        // 200 plans x 7,500 units would be 1.2 M per-unit series; the aggregates are a few per plan.
        // Plus one traffic series per region while there are at most 10,000 of them.
        assert!(lines.len() <= 200 * 12 + 10_000 + 100, "{} series", lines.len());
        assert!(!page.contains("meridian_unit_"), "per-unit series are opt-in");
        assert!(!page.contains("meridian_health_value"), "per-unit series are opt-in");
        assert!(!page.contains("meridian_health_limit"), "per-unit series are opt-in");
        let has = |line: &str| lines.contains(&line);
        assert!(has(r#"meridian_units{phase="enabled",plan="plan-7",wave="canary"} 3"#), "{page}");
        assert!(has(r#"meridian_units{phase="failed",plan="plan-7",wave="rest"} 1"#));
        assert!(has(r#"meridian_units{phase="pending",plan="plan-7",wave="rest"} 146"#));
        assert!(has(r#"meridian_regions{plan="plan-7",state="enabled"} 1"#));
        assert!(has(r#"meridian_regions{plan="plan-7",state="failed"} 1"#));
        assert!(has(r#"meridian_regions{plan="plan-7",state="pending"} 48"#));
        // signin ("a"): 100 % in r0 and 50 % in r1 over 50 regions.
        assert!(has(r#"meridian_service_traffic_percent{plan="plan-7",service="a"} 3"#));
        assert!(has(r#"meridian_service_traffic_percent{plan="plan-7",service="b"} 2"#));
        assert!(has(r#"meridian_plan_phase{phase="running",plan="plan-7"} 1"#));
        assert!(!page.contains(r#"meridian_plan_phase{phase="pending",plan="plan-7"}"#));
        // 200 x 50 = 10,000 regions: at the cap, each region's mean traffic is there.
        assert!(has(r#"meridian_region_traffic_percent{plan="plan-7",region="r0"} 100"#), "{page}");
        assert!(has(r#"meridian_region_traffic_percent{plan="plan-7",region="r1"} 16.666666666666668"#), "{page}");
        // Past the cap it is left out (and said once); the aggregates stay.
        let page = Metrics::new().with_region_cap(9_999).scrape(&snapshot, Utc::now());
        assert!(!page.contains("meridian_region_traffic_percent{"), "capped");
        assert!(page.contains(r#"meridian_service_traffic_percent{plan="plan-7",service="a"} 3"#));
        // Per-unit series on: any size.
        let page = Metrics::with_unit_series(true).with_region_cap(1).scrape(&snapshot, Utc::now());
        assert!(page.contains(r#"meridian_region_traffic_percent{plan="plan-7",region="r0"} 100"#));
    }

    #[test]
    fn units_past_their_progress_deadline_are_counted_and_shown_as_a_wait_reason() {
        let plan = meridian_core::validate::load(
            &[(
                "p.yaml".to_string(),
                "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                 [{name: a}]\n  regions: [{name: r0}]\n  waves: [{name: w, regions: [r0]}]\n  \
                 progressDeadline: 20m\n  stepBake: 5m\n"
                    .to_string(),
            )],
            None,
        )
        .plans
        .into_iter()
        .next()
        .unwrap();
        let mut state = PlanState::new(&plan);
        let since = Utc::now() - TimeDelta::minutes(30);
        state.units[0].phase = UnitPhase::Progressing;
        state.units[0].waiting = Some(meridian_core::WaitReason::Health { checks: vec!["errors".into()] });
        state.units[0].stalled = Some(Box::new(meridian_core::state::Stalled {
            since,
            deadline: "20m".into(),
            at: since + TimeDelta::minutes(20),
        }));
        let mut snapshot = Snapshot::default();
        let entry = PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: Utc::now(), wake_at: None };
        snapshot.plans.insert("p".into(), entry);
        let page = Metrics::new().scrape(&snapshot, Utc::now());
        assert!(series(&page).contains(&r#"meridian_progress_deadline_exceeded{plan="p"} 1"#), "{page}");
        let detail = snapshot.detail("p", since + TimeDelta::minutes(30)).unwrap();
        assert_eq!(
            detail.waiting[0].reason,
            "waiting for fresh healthy data from errors; no progress for 30m (deadline 20m)"
        );
        // Plans without a deadline export no such series.
        let page = Metrics::new().scrape(&mk_snapshot(1, 3), Utc::now());
        assert!(!page.contains("meridian_progress_deadline_exceeded{"), "{page}");
    }

    #[test]
    fn a_completion_with_an_accepted_rollback_and_an_abort_counts_each_region_as_it_is() {
        let plan = mk_plan(4);
        let mut state = PlanState::new(&plan);
        for (i, u) in state.units.iter_mut().enumerate() {
            (u.phase, u.percent) = match i / 3 {
                1 => (UnitPhase::RolledBack, 0),
                2 if i % 3 == 0 => (UnitPhase::RolledBack, 0),
                2 => (UnitPhase::Blocked, 0),
                _ => (UnitPhase::Enabled, 100),
            };
        }
        state.aborted_regions.insert("r2".into());
        for w in &mut state.waves {
            w.phase = meridian_core::WavePhase::Complete;
        }
        let mut snapshot = Snapshot::default();
        let entry = PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: Utc::now(), wake_at: None };
        snapshot.plans.insert("p".into(), entry);
        let page = Metrics::new().scrape(&snapshot, Utc::now());
        let lines = series(&page);
        // An abort is what the operator asked for, not a rollback after a failure.
        for line in [
            r#"meridian_regions{plan="p",state="enabled"} 2"#,
            r#"meridian_regions{plan="p",state="rolled-back"} 1"#,
            r#"meridian_regions{plan="p",state="aborted"} 1"#,
            r#"meridian_plan_phase{phase="complete",plan="p"} 1"#,
        ] {
            assert!(lines.contains(&line), "missing {line}:\n{page}");
        }
        assert_eq!(lines.iter().filter(|l| l.starts_with("meridian_regions{")).count(), 3, "{page}");
    }

    #[test]
    fn unit_series_put_each_health_value_beside_the_limit_of_its_region() {
        let text = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: a}]
  regions:
    - {name: r0}
    - {name: r1, checks: [{name: errors, max: 0.05}]}
  waves: [{name: w, regions: [r0, r1]}]
  health:
    checks:
      - {name: errors, prometheus: {url: "http://127.0.0.1:9090", query: errors}, max: 0.01}
      - {name: rps, prometheus: {url: "http://127.0.0.1:9090", query: rps}, min: 10}
"#;
        let bundle = meridian_core::validate::load(&[("p.yaml".to_string(), text.to_string())], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        let plan = bundle.plans.into_iter().next().unwrap();
        let mut state = PlanState::new(&plan);
        state.units[1].checks =
            vec![meridian_core::state::CheckState { name: "errors".into(), value: Some(0.031), ..Default::default() }];
        let mut snapshot = Snapshot::default();
        let entry = PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: Utc::now(), wake_at: None };
        snapshot.plans.insert("p".into(), entry);
        let page = Metrics::with_unit_series(true).scrape(&snapshot, Utc::now());
        let lines = series(&page);
        for line in [
            r#"meridian_health_value{check="errors",plan="p",region="r1",service="a"} 0.031"#,
            r#"meridian_health_limit{bound="max",check="errors",plan="p",region="r0"} 0.01"#,
            r#"meridian_health_limit{bound="max",check="errors",plan="p",region="r1"} 0.05"#,
            r#"meridian_health_limit{bound="min",check="rps",plan="p",region="r1"} 10"#,
        ] {
            assert!(lines.contains(&line), "missing {line}:\n{page}");
        }
        // A bound the check does not have is not exported.
        assert!(!page.contains(r#"bound="min",check="errors""#), "{page}");
        assert!(!Metrics::new().scrape(&snapshot, Utc::now()).contains("meridian_health_limit"));
    }

    #[test]
    fn the_default_set_reads_each_check_against_its_limit_at_the_unit_nearest_to_it() {
        let text = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: a}]
  regions:
    - {name: r0}
    - {name: r1, checks: [{name: errors, max: 0.05}]}
    - {name: r2}
  waves: [{name: w, regions: [r0, r1, r2]}]
  health:
    checks:
      - {name: errors, prometheus: {url: "http://127.0.0.1:9090", query: errors}, max: 0.01}
      - {name: rps, prometheus: {url: "http://127.0.0.1:9090", query: rps}, min: 10}
      - {name: latency, prometheus: {url: "http://127.0.0.1:9090", query: latency}, max: 0.5}
"#;
        let bundle = meridian_core::validate::load(&[("p.yaml".to_string(), text.to_string())], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        let plan = bundle.plans.into_iter().next().unwrap();
        let mut state = PlanState::new(&plan);
        // errors: r0 0.005 of 0.01 (half left), r1 0.031 of its own 0.05, r2 0.02 over 0.01
        // (beyond by its whole limit); rps: r0 12 over min 10, r1 9 under it, r2 no data.
        for (unit, (errors, rps)) in state.units.iter_mut().zip([(0.005, Some(12.0)), (0.031, Some(9.0)), (0.02, None)])
        {
            unit.checks[0].value = Some(errors);
            unit.checks[1].value = rps;
        }
        let mut snapshot = Snapshot::default();
        let entry = PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: Utc::now(), wake_at: None };
        snapshot.plans.insert("p".into(), entry);
        let page = Metrics::new().scrape(&snapshot, Utc::now());
        let lines = series(&page);
        for line in [
            r#"meridian_health_worst_value{check="errors",plan="p"} 0.02"#,
            r#"meridian_health_worst_limit{bound="max",check="errors",plan="p"} 0.01"#,
            r#"meridian_health_beyond_limit{check="errors",plan="p"} 1"#,
            r#"meridian_health_worst_value{check="rps",plan="p"} 9"#,
            r#"meridian_health_worst_limit{bound="min",check="rps",plan="p"} 10"#,
            r#"meridian_health_beyond_limit{check="rps",plan="p"} 1"#,
        ] {
            assert!(lines.contains(&line), "missing {line}:\n{page}");
        }
        // A check without any value yet has no series: no data is not a value within limits.
        assert!(!page.contains(r#"check="latency""#), "{page}");
        assert!(!page.contains(r#"bound="min",check="errors""#), "{page}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("meridian_health_worst_value{")).count(), 2, "{page}");
    }

    #[test]
    fn only_a_leading_replica_exports_the_leader_gauge() {
        let metrics = Metrics::new();
        let page = metrics.scrape(&Snapshot::default(), Utc::now());
        assert!(!page.contains(LEADER), "the standalone controller has no leader series:\n{page}");
        metrics.lead("meridian-7d9f-x");
        let page = metrics.scrape(&Snapshot::default(), Utc::now());
        assert!(series(&page).contains(&r#"meridian_leader{leader="meridian-7d9f-x"} 1"#), "{page}");
        assert!(page.contains(&format!("# HELP {LEADER} {LEADER_HELP}")), "{page}");
    }

    #[test]
    fn a_plan_that_left_leaves_no_series_and_unit_series_come_on_request() {
        let metrics = Metrics::with_unit_series(true);
        let mut snapshot = mk_snapshot(2, 3);
        let page = metrics.scrape(&snapshot, Utc::now());
        assert!(page.contains(r#"meridian_unit_traffic_percent{plan="plan-1",region="r0",service="a"} 100"#), "{page}");
        assert!(page.contains(r#"meridian_unit_state{plan="plan-1",region="r1",service="a",state="failed"} 1"#));
        snapshot.plans.remove("plan-1");
        let page = metrics.scrape(&snapshot, Utc::now());
        assert!(!page.contains(r#"plan="plan-1""#), "stale series of a plan that left:\n{page}");
        assert!(page.contains(r#"plan="plan-0""#));
    }
}
