//! What a fleet simulates: its regions and services, their synthetic load, and the faults it
//! starts with or triggers on cue.
//!
//! Owns the configuration shape and its validation (every problem reported at once). It does
//! not bind, serve or keep state.

use std::collections::HashSet;
use std::time::Duration;

use meridian_core::plan::Plan;

use crate::error::FleetError;

/// Requests per second one unit serves at 100 % traffic, unless configured.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 100.0;
/// Share of requests that fail when nothing is wrong, unless configured.
pub const DEFAULT_BASELINE_ERROR_RATIO: f64 = 0.002;
/// Window that `fleet_requests` counts over, unless configured.
pub const DEFAULT_METRICS_WINDOW: Duration = Duration::from_secs(10);

/// Everything `Fleet::start` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// Port on 127.0.0.1; 0 picks a free one. The fleet never binds another address.
    pub port: u16,
    pub regions: Vec<String>,
    pub services: Vec<String>,
    /// Synthetic requests per second of one (region, service) at 100 % traffic; a unit at
    /// N % serves N % of it.
    pub requests_per_second: f64,
    /// Error ratio of every unit until a fault changes it, and after a fault is cleared.
    pub baseline_error_ratio: f64,
    /// `fleet_requests` is the number of requests served in a window this long at the
    /// unit's current traffic.
    pub metrics_window: Duration,
    /// Error ratios in force from the start.
    pub faults: Vec<Fault>,
    /// Faults that switch on by themselves when a unit's traffic reaches a threshold.
    pub scripted_faults: Vec<ScriptedFault>,
    /// When set, the traffic endpoints answer 401 unless sent `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// A region (or one of its services) failing at a given error ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub region: String,
    /// `None`: every service of the region.
    pub service: Option<String>,
    /// Share of requests answered with an error, 0.0 to 1.0.
    pub error_ratio: f64,
}

/// "Region `region` starts failing at `error_ratio` once `trigger_service` there is set to
/// `at_percent` or more." Fires at most once, inside the PUT that crosses the threshold, so
/// the fault is in force before that PUT is answered: no timing races in demos or tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedFault {
    pub region: String,
    pub trigger_service: String,
    pub at_percent: u32,
    pub error_ratio: f64,
    /// Services that fail when it fires; `None`: every service of the region.
    pub service: Option<String>,
}

impl FleetConfig {
    /// A fleet of `regions` x `services` on a free port, with default load and no faults.
    pub fn new<R, S>(regions: R, services: S) -> Self
    where
        R: IntoIterator,
        R::Item: Into<String>,
        S: IntoIterator,
        S::Item: Into<String>,
    {
        FleetConfig {
            port: 0,
            regions: regions.into_iter().map(Into::into).collect(),
            services: services.into_iter().map(Into::into).collect(),
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            baseline_error_ratio: DEFAULT_BASELINE_ERROR_RATIO,
            metrics_window: DEFAULT_METRICS_WINDOW,
            faults: Vec::new(),
            scripted_faults: Vec::new(),
            token: None,
        }
    }

    /// Every region and service of a validated plan, in the plan's order.
    pub fn from_plan(plan: &Plan) -> Self {
        FleetConfig::new(plan.regions.iter().map(|r| r.name.clone()), plan.services.iter().map(|s| s.name.clone()))
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn with_requests_per_second(mut self, requests_per_second: f64) -> Self {
        self.requests_per_second = requests_per_second;
        self
    }

    pub fn with_baseline_error_ratio(mut self, ratio: f64) -> Self {
        self.baseline_error_ratio = ratio;
        self
    }

    pub fn with_metrics_window(mut self, window: Duration) -> Self {
        self.metrics_window = window;
        self
    }

    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    pub fn with_scripted_fault(mut self, fault: ScriptedFault) -> Self {
        self.scripted_faults.push(fault);
        self
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Every problem at once, or `Ok`.
    pub fn validate(&self) -> Result<(), FleetError> {
        let mut problems = Vec::new();
        check_names("region", &self.regions, &mut problems);
        check_names("service", &self.services, &mut problems);
        if !(self.requests_per_second.is_finite() && self.requests_per_second >= 0.0) {
            problems
                .push(format!("requests per second must be a finite number >= 0, got {}", self.requests_per_second));
        }
        check_ratio("baseline error ratio", self.baseline_error_ratio, &mut problems);
        if self.metrics_window.is_zero() {
            problems.push("metrics window must be longer than zero".to_string());
        }
        for (i, fault) in self.faults.iter().enumerate() {
            let what = format!("faults[{i}]");
            self.check_unit(&what, &fault.region, fault.service.as_deref(), &mut problems);
            check_ratio(&format!("{what}: error ratio"), fault.error_ratio, &mut problems);
        }
        for (i, fault) in self.scripted_faults.iter().enumerate() {
            let what = format!("scripted faults[{i}]");
            self.check_unit(&what, &fault.region, Some(&fault.trigger_service), &mut problems);
            self.check_unit(&what, &fault.region, fault.service.as_deref(), &mut problems);
            check_ratio(&format!("{what}: error ratio"), fault.error_ratio, &mut problems);
            if fault.at_percent > 100 {
                problems.push(format!("{what}: threshold must be a percent from 0 to 100, got {}", fault.at_percent));
            }
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            problems.push("token must not be empty (leave it unset to accept every request)".to_string());
        }
        problems.dedup();
        if problems.is_empty() { Ok(()) } else { Err(FleetError::InvalidConfig { problems }) }
    }

    fn check_unit(&self, what: &str, region: &str, service: Option<&str>, problems: &mut Vec<String>) {
        if !self.regions.iter().any(|r| r == region) {
            problems.push(format!("{what}: unknown region {region:?}"));
        }
        if let Some(service) = service
            && !self.services.iter().any(|s| s == service)
        {
            problems.push(format!("{what}: unknown service {service:?}"));
        }
    }
}

fn check_names(kind: &str, names: &[String], problems: &mut Vec<String>) {
    if names.is_empty() {
        problems.push(format!("at least one {kind} is required"));
    }
    let mut seen = HashSet::new();
    for name in names {
        // Names become URL path segments and label values; keep them to what needs no escaping.
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            problems.push(format!("{kind} name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"));
        }
        if !seen.insert(name.as_str()) {
            problems.push(format!("{kind} {name:?} is listed twice"));
        }
    }
}

fn check_ratio(what: &str, ratio: f64, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&ratio) {
        problems.push(format!("{what} must be between 0 and 1, got {ratio}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem_at_once() {
        let config = FleetConfig::new(["us-east", "us-east", "bad/name"], Vec::<String>::new())
            .with_baseline_error_ratio(1.5)
            .with_fault(Fault { region: "mars".into(), service: None, error_ratio: 0.1 })
            .with_scripted_fault(ScriptedFault {
                region: "us-east".into(),
                trigger_service: "store".into(),
                at_percent: 150,
                error_ratio: f64::NAN,
                service: None,
            });
        let Err(FleetError::InvalidConfig { problems }) = config.validate() else { panic!("expected invalid config") };
        let text = problems.join("\n");
        for expected in [
            "at least one service is required",
            "region \"us-east\" is listed twice",
            "region name \"bad/name\"",
            "baseline error ratio must be between 0 and 1",
            "faults[0]: unknown region \"mars\"",
            "scripted faults[0]: unknown service \"store\"",
            "scripted faults[0]: error ratio must be between 0 and 1, got NaN",
            "scripted faults[0]: threshold must be a percent from 0 to 100, got 150",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn a_plain_config_is_valid() {
        FleetConfig::new(["us-east", "jp"], ["signin", "store"]).validate().unwrap();
    }
}
