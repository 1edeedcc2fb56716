//! The fleet's state: what each (region, service) unit serves, its error ratio, its synthetic
//! request counters, the scripted faults, and the log of every actuation received.
//!
//! Pure and synchronous. Time is an argument (a monotonic `Instant` for the counters, a
//! wall-clock timestamp for the log), so all of it is tested without a server or a clock.
//! It does no I/O and knows nothing of HTTP beyond the status it records for each actuation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{FleetConfig, ScriptedFault};
use crate::error::FleetError;

/// One actuation request the fleet received for a known unit with a readable percent,
/// whatever it answered. See `applied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRecord {
    /// Position in the log, from 1; never reused, not even after `reset_log`.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub region: String,
    pub service: String,
    pub percent: u32,
    /// The body's `plan` field, when the sender gave one (the HTTP actuator does).
    #[serde(default)]
    pub plan: Option<String>,
    /// The `Idempotency-Key` header; `None` when it was missing (such a request is refused).
    pub idempotency_key: Option<String>,
    /// The `Meridian-Instance` header: which controller replica sent it, when it said.
    #[serde(default)]
    pub instance: Option<String>,
    /// `PUT` or `POST`.
    pub method: String,
    /// The HTTP status the fleet answered.
    pub status: u16,
    /// True when an earlier request with the same key, unit and percent was already
    /// applied: this one was answered 200 as a no-op (the wire contract) and changed nothing.
    pub replay: bool,
}

impl PutRecord {
    /// Whether this request set what the unit serves (a 200 that was not a replay).
    pub fn applied(&self) -> bool {
        self.status == 200 && !self.replay
    }
}

/// What one unit looks like now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitSnapshot {
    pub region: String,
    pub service: String,
    /// `None` until the first applied actuation.
    pub percent: Option<u32>,
    /// The unit's error ratio as configured, whatever its traffic.
    pub error_ratio: f64,
    /// Synthetic requests answered 200 and 500 since the start (fractional; the exposition
    /// rounds down).
    pub ok_requests: f64,
    pub error_requests: f64,
    /// Requests served in one metrics window at the current traffic.
    pub window_requests: f64,
}

impl UnitSnapshot {
    /// The error ratio a scraper sees: NaN while the unit serves no traffic, because 0 errors
    /// out of 0 requests is not a ratio. Health readers must treat it as "no data".
    pub fn observed_error_ratio(&self) -> f64 {
        if self.percent.unwrap_or(0) == 0 { f64::NAN } else { self.error_ratio }
    }
}

/// A scripted fault and when it fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptedFaultStatus {
    pub region: String,
    pub trigger_service: String,
    pub at_percent: u32,
    pub error_ratio: f64,
    pub service: Option<String>,
    pub fired_at: Option<DateTime<Utc>>,
}

/// Failures injected into the actuator endpoints themselves (for retry and timeout tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActuatorFault {
    /// The next this-many actuation requests are answered with `status` and not applied.
    #[serde(default)]
    pub fail_next: u32,
    /// Status for the failed requests; 0 means 503.
    #[serde(default)]
    pub status: u16,
    /// Every traffic request (GET, PUT, POST) waits this long before it is handled.
    #[serde(default)]
    pub delay_ms: u64,
}

/// The fencing term an idempotency key carries, in Meridian's form
/// `PLAN/REGION/SERVICE/t{TERM}r{REVISION}a{N}`: the leader term that decided it. A target that
/// refuses a term older than the newest it has seen for a unit is fenced against a deposed
/// leader's late request, as this fleet is. Other keys carry none.
pub fn fencing_term(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_prefix('t')?.split('r').next()?.parse().ok()
}

/// One actuation request, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actuation<'a> {
    /// From `FleetState::unit`.
    pub unit: usize,
    pub percent: u32,
    pub plan: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub method: &'a str,
    /// The `Meridian-Instance` header: which controller replica sent it.
    pub instance: Option<&'a str>,
}

/// How an actuation request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Applied { percent: u32 },
    Refused { status: u16, message: String },
}

#[derive(Debug, Clone)]
struct Unit {
    percent: Option<u32>,
    /// The highest fencing term a write to it carried (`fencing_term` of its key).
    fence: Option<u64>,
    error_ratio: f64,
    ok: f64,
    errors: f64,
    /// Counters are accumulated up to this moment.
    since: Instant,
}

#[derive(Debug, Clone)]
struct KeyUse {
    unit: usize,
    percent: u32,
}

/// The whole simulated fleet.
#[derive(Debug, Clone)]
pub struct FleetState {
    regions: Vec<String>,
    services: Vec<String>,
    /// Region-major: `region * services.len() + service`.
    units: Vec<Unit>,
    requests_per_second: f64,
    baseline_error_ratio: f64,
    metrics_window: Duration,
    scripted: Vec<(ScriptedFault, Option<DateTime<Utc>>)>,
    puts: Vec<PutRecord>,
    next_seq: u64,
    keys: HashMap<String, KeyUse>,
    actuator_fault: ActuatorFault,
}

impl FleetState {
    /// A fleet as configured, with every counter at zero at `now`. The config must be valid.
    pub fn new(config: &FleetConfig, now: Instant) -> Result<Self, FleetError> {
        config.validate()?;
        let unit = Unit {
            percent: None,
            fence: None,
            error_ratio: config.baseline_error_ratio,
            ok: 0.0,
            errors: 0.0,
            since: now,
        };
        let mut state = FleetState {
            regions: config.regions.clone(),
            services: config.services.clone(),
            units: vec![unit; config.regions.len() * config.services.len()],
            requests_per_second: config.requests_per_second,
            baseline_error_ratio: config.baseline_error_ratio,
            metrics_window: config.metrics_window,
            scripted: config.scripted_faults.iter().map(|f| (f.clone(), None)).collect(),
            puts: Vec::new(),
            next_seq: 1,
            keys: HashMap::new(),
            actuator_fault: ActuatorFault::default(),
        };
        for fault in &config.faults {
            state.set_error_ratio(&fault.region, fault.service.as_deref(), fault.error_ratio, now)?;
        }
        Ok(state)
    }

    /// The index of a (region, service) unit.
    pub fn unit(&self, region: &str, service: &str) -> Result<usize, FleetError> {
        let r = self.region(region)?;
        let s = self.services.iter().position(|s| s == service).ok_or_else(|| FleetError::UnknownService {
            region: region.to_string(),
            service: service.to_string(),
            known: format!("services {}", self.services.join(", ")),
        })?;
        Ok(r * self.services.len() + s)
    }

    /// The index of a region.
    pub fn region(&self, region: &str) -> Result<usize, FleetError> {
        self.regions.iter().position(|r| r == region).ok_or_else(|| FleetError::UnknownRegion {
            region: region.to_string(),
            known: format!("regions {}", self.regions.join(", ")),
        })
    }

    fn names(&self, unit: usize) -> (&str, &str) {
        let n = self.services.len();
        (&self.regions[unit / n], &self.services[unit % n])
    }

    /// Percent a unit serves; `None` until first set.
    pub fn traffic(&self, unit: usize) -> Option<u32> {
        self.units.get(unit).and_then(|u| u.percent)
    }

    /// Record an actuation request for `unit` and apply it unless it is refused or a replay.
    /// A key already applied with the same unit and percent is a no-op answered 200, so a late
    /// retry never undoes a newer setting; a key already used for another unit or percent is
    /// refused with 422: a key names one intent.
    pub fn actuate(&mut self, request: Actuation<'_>, at: DateTime<Utc>, now: Instant) -> PutOutcome {
        let Actuation { unit, percent, plan, idempotency_key, method, instance } = request;
        let mut replay = false;
        let outcome = if percent > 100 {
            PutOutcome::Refused { status: 400, message: format!("percent must be from 0 to 100, got {percent}") }
        } else if let Some(status) = self.take_injected_failure() {
            PutOutcome::Refused { status, message: "injected actuator failure".to_string() }
        } else {
            match idempotency_key {
                None => PutOutcome::Refused { status: 400, message: "missing Idempotency-Key header".to_string() },
                Some(key) => match self.keys.get(key) {
                    Some(used) if used.unit != unit || used.percent != percent => {
                        let (region, service) = self.names(used.unit);
                        PutOutcome::Refused {
                            status: 422,
                            message: format!(
                                "idempotency key {key:?} was already used to set {region}/{service} to {}%",
                                used.percent
                            ),
                        }
                    }
                    Some(_) => {
                        replay = true;
                        PutOutcome::Applied { percent }
                    }
                    None => match (fencing_term(key), self.units.get(unit).and_then(|u| u.fence)) {
                        (Some(term), Some(highest)) if term < highest => {
                            let (region, service) = self.names(unit);
                            PutOutcome::Refused {
                                status: 409,
                                message: format!(
                                    "stale fencing term {term}: {region}/{service} was last set in term {highest}"
                                ),
                            }
                        }
                        (term, _) => {
                            if let (Some(term), Some(u)) = (term, self.units.get_mut(unit)) {
                                u.fence = Some(u.fence.map_or(term, |f| f.max(term)));
                            }
                            self.keys.insert(key.to_string(), KeyUse { unit, percent });
                            self.apply(unit, percent, at, now);
                            PutOutcome::Applied { percent }
                        }
                    },
                },
            }
        };
        let status = match &outcome {
            PutOutcome::Applied { .. } => 200,
            PutOutcome::Refused { status, .. } => *status,
        };
        let (region, service) = self.names(unit);
        let record = PutRecord {
            seq: self.next_seq,
            at,
            region: region.to_string(),
            service: service.to_string(),
            percent,
            plan: plan.map(str::to_string),
            idempotency_key: idempotency_key.map(str::to_string),
            instance: instance.map(str::to_string),
            method: method.to_string(),
            status,
            replay,
        };
        self.next_seq += 1;
        self.puts.push(record);
        outcome
    }

    fn take_injected_failure(&mut self) -> Option<u16> {
        let fault = &mut self.actuator_fault;
        if fault.fail_next == 0 {
            return None;
        }
        fault.fail_next -= 1;
        Some(if fault.status == 0 { 503 } else { fault.status })
    }

    fn apply(&mut self, unit: usize, percent: u32, at: DateTime<Utc>, now: Instant) {
        self.advance(unit, now);
        self.units[unit].percent = Some(percent);
        let n = self.services.len();
        let (region, service) = (unit / n, unit % n);
        let mut fired = Vec::new();
        for (i, (fault, fired_at)) in self.scripted.iter().enumerate() {
            if fired_at.is_none()
                && fault.region == self.regions[region]
                && fault.trigger_service == self.services[service]
                && percent >= fault.at_percent
            {
                fired.push(i);
            }
        }
        for i in fired {
            let fault = self.scripted[i].0.clone();
            self.scripted[i].1 = Some(at);
            // Names were validated with the config, so this cannot fail.
            let _ = self.set_error_ratio(&fault.region, fault.service.as_deref(), fault.error_ratio, now);
        }
    }

    /// Set what a unit serves without recording an actuation: a change made behind the
    /// controller's back, for drift tests.
    pub fn force_traffic(&mut self, unit: usize, percent: Option<u32>, now: Instant) {
        self.advance(unit, now);
        self.units[unit].percent = percent.map(|p| p.min(100));
    }

    /// Set the error ratio of one service of a region, or of all of them.
    pub fn set_error_ratio(
        &mut self,
        region: &str,
        service: Option<&str>,
        ratio: f64,
        now: Instant,
    ) -> Result<(), FleetError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(FleetError::InvalidErrorRatio { ratio });
        }
        for unit in self.units_of(region, service)? {
            self.advance(unit, now);
            self.units[unit].error_ratio = ratio;
        }
        Ok(())
    }

    /// Every service of a region back to the baseline error ratio.
    pub fn clear_faults(&mut self, region: &str, now: Instant) -> Result<(), FleetError> {
        self.set_error_ratio(region, None, self.baseline_error_ratio, now)
    }

    fn units_of(&self, region: &str, service: Option<&str>) -> Result<Vec<usize>, FleetError> {
        match service {
            Some(service) => Ok(vec![self.unit(region, service)?]),
            None => {
                let r = self.region(region)?;
                let n = self.services.len();
                Ok((r * n..(r + 1) * n).collect())
            }
        }
    }

    /// Bring a unit's counters up to `now` at the traffic and error ratio in force since the
    /// last change. Called before every change, so counters grow piecewise-linearly.
    fn advance(&mut self, unit: usize, now: Instant) {
        let rps = self.requests_per_second;
        let u = &mut self.units[unit];
        let elapsed = now.saturating_duration_since(u.since).as_secs_f64();
        let served = rps * f64::from(u.percent.unwrap_or(0)) / 100.0 * elapsed;
        u.errors += served * u.error_ratio;
        u.ok += served * (1.0 - u.error_ratio);
        u.since = u.since.max(now);
    }

    /// Every unit, region-major, with counters brought up to `now`.
    pub fn snapshot(&mut self, now: Instant) -> Vec<UnitSnapshot> {
        (0..self.units.len()).map(|unit| self.unit_snapshot(unit, now)).collect()
    }

    pub fn unit_snapshot(&mut self, unit: usize, now: Instant) -> UnitSnapshot {
        self.advance(unit, now);
        let window = self.metrics_window.as_secs_f64();
        let (region, service) = self.names(unit);
        let (region, service) = (region.to_string(), service.to_string());
        let u = &self.units[unit];
        UnitSnapshot {
            region,
            service,
            percent: u.percent,
            error_ratio: u.error_ratio,
            ok_requests: u.ok,
            error_requests: u.errors,
            window_requests: self.requests_per_second * f64::from(u.percent.unwrap_or(0)) / 100.0 * window,
        }
    }

    pub fn metrics_window(&self) -> Duration {
        self.metrics_window
    }

    pub fn puts(&self) -> &[PutRecord] {
        &self.puts
    }

    /// Forget the actuation log and the idempotency keys seen; sequence numbers go on.
    pub fn reset_log(&mut self) {
        self.puts.clear();
        self.keys.clear();
    }

    pub fn scripted_faults(&self) -> Vec<ScriptedFaultStatus> {
        self.scripted
            .iter()
            .map(|(f, fired_at)| ScriptedFaultStatus {
                region: f.region.clone(),
                trigger_service: f.trigger_service.clone(),
                at_percent: f.at_percent,
                error_ratio: f.error_ratio,
                service: f.service.clone(),
                fired_at: *fired_at,
            })
            .collect()
    }

    pub fn actuator_fault(&self) -> ActuatorFault {
        self.actuator_fault
    }

    pub fn set_actuator_fault(&mut self, fault: ActuatorFault) {
        self.actuator_fault = fault;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Fault, ScriptedFault};

    fn mk_state(config: FleetConfig) -> (FleetState, Instant) {
        let t0 = Instant::now();
        (FleetState::new(&config, t0).unwrap(), t0)
    }

    fn mk_config() -> FleetConfig {
        FleetConfig::new(["us-east", "jp"], ["signin", "store"])
            .with_requests_per_second(100.0)
            .with_baseline_error_ratio(0.01)
            .with_metrics_window(Duration::from_secs(10))
    }

    fn mk_put<'a>(unit: usize, percent: u32, key: Option<&'a str>, method: &'static str) -> Actuation<'a> {
        Actuation { unit, percent, plan: Some("demo"), idempotency_key: key, method, instance: None }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap()
    }

    #[test]
    fn a_write_of_an_older_fencing_term_is_refused_once_a_newer_one_set_the_unit() {
        let (mut state, t0) = mk_state(mk_config());
        let unit = state.unit("jp", "store").unwrap();
        assert_eq!(fencing_term("p/jp/store/t3r10a1"), Some(3));
        assert_eq!(fencing_term("anything-else"), None);
        let put =
            |state: &mut FleetState, percent, key| state.actuate(mk_put(unit, percent, Some(key), "PUT"), at(), t0);
        assert_eq!(put(&mut state, 10, "p/jp/store/t1r1a0"), PutOutcome::Applied { percent: 10 });
        assert_eq!(put(&mut state, 50, "p/jp/store/t2r1a0"), PutOutcome::Applied { percent: 50 });
        // The deposed leader's late request: refused, the unit keeps the newer leader's value.
        let late = put(&mut state, 100, "p/jp/store/t1r2a0");
        assert!(matches!(late, PutOutcome::Refused { status: 409, .. }), "{late:?}");
        assert_eq!(state.traffic(unit), Some(50));
        // A replay of an applied key is still a no-op 200; keys without a term are not fenced.
        assert_eq!(put(&mut state, 10, "p/jp/store/t1r1a0"), PutOutcome::Applied { percent: 10 });
        assert_eq!(put(&mut state, 100, "plain-key"), PutOutcome::Applied { percent: 100 });
    }

    #[test]
    fn counters_grow_with_traffic_and_error_ratio_piecewise() {
        let (mut state, t0) = mk_state(mk_config());
        let unit = state.unit("jp", "store").unwrap();
        // 10 s at nothing, then 10 s at 50 %, then 10 s at 50 % with a 30 % error ratio.
        state.actuate(mk_put(unit, 50, Some("k1"), "PUT"), at(), t0 + Duration::from_secs(10));
        state.set_error_ratio("jp", Some("store"), 0.3, t0 + Duration::from_secs(20)).unwrap();
        let s = state.unit_snapshot(unit, t0 + Duration::from_secs(30));
        assert!((s.ok_requests - (500.0 * 0.99 + 500.0 * 0.7)).abs() < 1e-6, "{s:?}");
        assert!((s.error_requests - (500.0 * 0.01 + 500.0 * 0.3)).abs() < 1e-6, "{s:?}");
        assert_eq!(s.window_requests, 500.0);
        assert_eq!(s.observed_error_ratio(), 0.3);
        let other = state.unit_snapshot(state.unit("us-east", "store").unwrap(), t0 + Duration::from_secs(30));
        assert_eq!((other.ok_requests, other.error_requests, other.window_requests), (0.0, 0.0, 0.0));
        assert!(other.observed_error_ratio().is_nan(), "no traffic, no ratio");
    }

    #[test]
    fn a_reused_key_is_a_replay_for_the_same_body_and_refused_for_another() {
        let (mut state, t0) = mk_state(mk_config());
        let store = state.unit("jp", "store").unwrap();
        let signin = state.unit("jp", "signin").unwrap();
        assert_eq!(state.actuate(mk_put(store, 10, Some("k"), "PUT"), at(), t0), PutOutcome::Applied { percent: 10 });
        assert_eq!(state.actuate(mk_put(store, 10, Some("k"), "POST"), at(), t0), PutOutcome::Applied { percent: 10 });
        assert!(matches!(
            state.actuate(mk_put(store, 50, Some("k"), "PUT"), at(), t0),
            PutOutcome::Refused { status: 422, .. }
        ));
        assert!(matches!(
            state.actuate(mk_put(signin, 10, Some("k"), "PUT"), at(), t0),
            PutOutcome::Refused { status: 422, .. }
        ));
        assert!(matches!(
            state.actuate(mk_put(store, 50, None, "PUT"), at(), t0),
            PutOutcome::Refused { status: 400, .. }
        ));
        assert!(matches!(
            state.actuate(mk_put(store, 150, Some("k2"), "PUT"), at(), t0),
            PutOutcome::Refused { status: 400, .. }
        ));
        assert_eq!(state.traffic(store), Some(10));
        assert_eq!(state.traffic(signin), None);
        let log: Vec<(u64, u16, bool)> = state.puts().iter().map(|p| (p.seq, p.status, p.replay)).collect();
        assert_eq!(
            log,
            vec![(1, 200, false), (2, 200, true), (3, 422, false), (4, 422, false), (5, 400, false), (6, 400, false)]
        );
        state.reset_log();
        assert!(state.puts().is_empty());
        state.actuate(mk_put(store, 50, Some("k"), "PUT"), at(), t0);
        assert_eq!((state.puts()[0].seq, state.puts()[0].status), (7, 200), "keys are forgotten with the log");
    }

    #[test]
    fn a_late_replay_never_undoes_a_newer_setting() {
        let (mut state, t0) = mk_state(mk_config());
        let store = state.unit("jp", "store").unwrap();
        state.actuate(mk_put(store, 10, Some("k1"), "PUT"), at(), t0);
        state.actuate(mk_put(store, 50, Some("k2"), "PUT"), at(), t0);
        assert_eq!(state.actuate(mk_put(store, 10, Some("k1"), "PUT"), at(), t0), PutOutcome::Applied { percent: 10 });
        assert_eq!(state.traffic(store), Some(50));
        let applied: Vec<bool> = state.puts().iter().map(PutRecord::applied).collect();
        assert_eq!(applied, vec![true, true, false]);
        assert_eq!(state.puts()[0].plan.as_deref(), Some("demo"));
    }

    #[test]
    fn scripted_fault_fires_once_inside_the_put_that_crosses_the_threshold() {
        let config = mk_config().with_scripted_fault(ScriptedFault {
            region: "jp".into(),
            trigger_service: "store".into(),
            at_percent: 50,
            error_ratio: 0.4,
            service: None,
        });
        let (mut state, t0) = mk_state(config);
        let store = state.unit("jp", "store").unwrap();
        let signin = state.unit("jp", "signin").unwrap();
        state.actuate(mk_put(signin, 100, Some("a"), "PUT"), at(), t0);
        state.actuate(mk_put(store, 10, Some("b"), "PUT"), at(), t0);
        assert_eq!(state.unit_snapshot(signin, t0).error_ratio, 0.01);
        assert_eq!(state.scripted_faults()[0].fired_at, None);
        state.actuate(mk_put(store, 50, Some("c"), "PUT"), at(), t0);
        assert_eq!(state.unit_snapshot(signin, t0).error_ratio, 0.4, "the whole region fails");
        assert_eq!(state.unit_snapshot(store, t0).error_ratio, 0.4);
        assert_eq!(state.unit_snapshot(state.unit("us-east", "store").unwrap(), t0).error_ratio, 0.01);
        assert_eq!(state.scripted_faults()[0].fired_at, Some(at()));
        state.clear_faults("jp", t0).unwrap();
        state.actuate(mk_put(store, 100, Some("d"), "PUT"), at(), t0);
        assert_eq!(state.unit_snapshot(store, t0).error_ratio, 0.01, "fires once, not again after a clear");
    }

    #[test]
    fn injected_failures_are_recorded_and_not_applied() {
        let (mut state, t0) = mk_state(mk_config());
        let unit = state.unit("us-east", "signin").unwrap();
        state.set_actuator_fault(ActuatorFault { fail_next: 2, status: 0, delay_ms: 0 });
        assert!(matches!(
            state.actuate(mk_put(unit, 10, Some("k"), "PUT"), at(), t0),
            PutOutcome::Refused { status: 503, .. }
        ));
        assert!(matches!(
            state.actuate(mk_put(unit, 10, Some("k"), "PUT"), at(), t0),
            PutOutcome::Refused { status: 503, .. }
        ));
        assert_eq!(state.traffic(unit), None);
        assert_eq!(state.actuate(mk_put(unit, 10, Some("k"), "PUT"), at(), t0), PutOutcome::Applied { percent: 10 });
        assert!(!state.puts()[2].replay, "a refused request does not claim its key");
        assert_eq!(state.actuator_fault().fail_next, 0);
    }

    #[test]
    fn initial_faults_and_lookups() {
        let config =
            mk_config().with_fault(Fault { region: "us-east".into(), service: Some("store".into()), error_ratio: 0.2 });
        let (mut state, t0) = mk_state(config);
        let units = state.snapshot(t0);
        let ratios: Vec<f64> = units.iter().map(|u| u.error_ratio).collect();
        assert_eq!(ratios, vec![0.01, 0.2, 0.01, 0.01]);
        assert!(matches!(state.unit("mars", "store"), Err(FleetError::UnknownRegion { .. })));
        assert!(matches!(state.unit("jp", "music"), Err(FleetError::UnknownService { .. })));
        assert!(matches!(state.set_error_ratio("jp", None, 1.5, t0), Err(FleetError::InvalidErrorRatio { .. })));
    }
}
