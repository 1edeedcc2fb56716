//! Prometheus metrics of the controller, in one registry the API serves at `/metrics`.
//!
//! Owns metric names, labels and how a snapshot of state maps onto them. Label sets stay
//! bounded: per (plan, region, service) for state and traffic, per check for health, per
//! approval for validity and expiry.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
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

/// Every metric the controller exports.
pub struct Metrics {
    pub registry: Registry,
    unit_state: IntGaugeVec,
    unit_traffic: IntGaugeVec,
    plan_phase: IntGaugeVec,
    health_value: GaugeVec,
    health_verdicts: IntCounterVec,
    approval_valid: IntGaugeVec,
    approval_expiry: GaugeVec,
    transitions: IntCounterVec,
    drift: IntCounterVec,
    pub actuation_duration: HistogramVec,
    pub actuation_errors: IntCounterVec,
    pub decision_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub open_intents: IntGauge,
    pub task_failures: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
        Metrics {
            unit_state: reg!(IntGaugeVec::new(
                Opts::new("meridian_unit_state", "1 for the phase each (region, service) is in"),
                &["plan", "region", "service", "state"]
            )),
            unit_traffic: reg!(IntGaugeVec::new(
                Opts::new("meridian_unit_traffic_percent", "Traffic percent each (region, service) is meant to serve"),
                &unit
            )),
            plan_phase: reg!(IntGaugeVec::new(
                Opts::new("meridian_plan_phase", "1 for the phase each plan is in"),
                &["plan", "phase"]
            )),
            health_value: reg!(GaugeVec::new(
                Opts::new("meridian_health_value", "Latest measured value of each check"),
                &["plan", "region", "service", "check"]
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
            transitions: reg!(IntCounterVec::new(
                Opts::new("meridian_transitions_total", "Unit transitions by target phase"),
                &["plan", "to"]
            )),
            drift: reg!(IntCounterVec::new(
                Opts::new("meridian_drift_total", "Read-backs that differed from the state"),
                &unit
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
                    "Time of one decision loop pass (decide + commit)"
                )
                .buckets(seconds),
                &["plan"]
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
            registry,
        }
    }

    /// Mirror a plan's state onto the gauges.
    pub fn observe_state(&self, state: &PlanState, phase_name: &str) {
        for u in &state.units {
            for p in PHASES {
                let v = i64::from(u.phase == p);
                self.unit_state.with_label_values(&[&state.plan, &u.region, &u.service, p.as_str()]).set(v);
            }
            self.unit_traffic.with_label_values(&[&state.plan, &u.region, &u.service]).set(i64::from(u.percent));
            for c in &u.checks {
                if let Some(v) = c.value {
                    self.health_value.with_label_values(&[&state.plan, &u.region, &u.service, &c.name]).set(v);
                }
            }
        }
        for phase in ["pending", "running", "paused", "halted", "complete", "aborted"] {
            self.plan_phase.with_label_values(&[&state.plan, phase]).set(i64::from(phase == phase_name));
        }
    }

    pub fn observe_audit(&self, records: &[AuditRecord]) {
        for r in records {
            match &r.event {
                AuditEvent::Unit { from, to, .. } if from != to => {
                    self.transitions.with_label_values(&[&r.plan, to.as_str()]).inc();
                }
                AuditEvent::Drift { .. } => {
                    let region = r.region.as_deref().unwrap_or_default();
                    let service = r.service.as_deref().unwrap_or_default();
                    self.drift.with_label_values(&[&r.plan, region, service]).inc();
                }
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
    pub fn observe_approvals(&self, approvals: &[ApprovalRecord], now: DateTime<Utc>) {
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
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
