//! Meridian's actuators: make a (plan, region, service) serve a traffic percent, and read
//! back what it serves.
//!
//! ```text
//!  engine: SetTraffic ─> controller: intent stored ─┐
//!                                                   ├─> PlanActuators (core `Actuator` port, per plan)
//!  controller: restart recovery, drift read-back ───┘      │
//!                                      ┌───────────────────┴──────────────────┐
//!                               HttpActuator                            LogActuator (dry run)
//!                  PUT/POST + GET on the templated url         in-memory traffic + a journal
//!                  token, timeout, retries with jitter          the caller takes and logs
//! ```
//!
//! [`PlanActuators`] is what the controller holds: it implements the core's
//! [`meridian_core::ports::Actuator`] port and picks, per target, the actuator its region's
//! effective settings name: the plan's `actuator:` section, or the region's own replacement
//! (none means the dry run). [`TrafficActuator`] is one plan's actuator, built
//! by [`from_spec`]. The wire contract of the `http` kind is in [`http`].
//!
//! This crate sends; it does not decide. It never records intents, never compares a
//! read-back with the plan's state and never chooses between re-applying and holding on
//! drift: that is the controller's, around these calls.

pub mod backoff;
pub mod error;
pub mod http;
pub mod log;
mod plans;

use std::sync::Arc;
use std::time::Duration;

use meridian_core::manifest::ActuatorSpec;

pub use backoff::{Backoff, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP};
pub use error::ActuatorError;
pub use http::{HttpActuator, SetMethod, TokenSource};
pub use log::{DryRunRecord, LogActuator};
pub use meridian_core::ports::Target;
pub use plans::PlanActuators;

/// Settings of this process, not of a plan: how retries are spaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActuatorOptions {
    /// Delay ceiling before the first retry; doubles for each further retry.
    pub backoff_base: Duration,
    /// Largest delay ceiling.
    pub backoff_cap: Duration,
    /// Seed of the jitter; `None` seeds it at random. Tests set it to get exact delays.
    pub jitter_seed: Option<u64>,
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions { backoff_base: DEFAULT_BACKOFF_BASE, backoff_cap: DEFAULT_BACKOFF_CAP, jitter_seed: None }
    }
}

/// What a successful set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Requests sent, retries included; 0 for a dry run.
    pub attempts: u32,
    /// Nothing was changed: the dry-run actuator recorded it.
    pub dry_run: bool,
}

/// One plan's actuator. Clones share the same actuator.
#[derive(Debug, Clone)]
pub enum TrafficActuator {
    Http(Arc<HttpActuator>),
    Log(Arc<LogActuator>),
}

impl TrafficActuator {
    /// Make `target` serve `percent` % of its traffic; idempotent under `idempotency_key`.
    pub async fn set_traffic(
        &self,
        target: &Target,
        percent: u32,
        idempotency_key: &str,
    ) -> Result<Applied, ActuatorError> {
        match self {
            TrafficActuator::Http(a) => a.set_traffic(target, percent, idempotency_key).await,
            TrafficActuator::Log(a) => a.set_traffic(target, percent, idempotency_key).await,
        }
    }

    /// The percent `target` serves now, or `None` when it has never been set.
    pub async fn read_traffic(&self, target: &Target) -> Result<Option<u32>, ActuatorError> {
        match self {
            TrafficActuator::Http(a) => a.read_traffic(target).await,
            TrafficActuator::Log(a) => a.read_traffic(target).await,
        }
    }

    /// `true` for the dry run.
    pub fn is_dry_run(&self) -> bool {
        matches!(self, TrafficActuator::Log(_))
    }
}

/// The actuator a plan's `actuator:` section names; a plan without one gets a fresh dry run.
pub fn from_spec(spec: Option<&ActuatorSpec>, options: &ActuatorOptions) -> Result<TrafficActuator, ActuatorError> {
    match resolve_kind(spec)? {
        Kind::Http(h) => Ok(TrafficActuator::Http(Arc::new(HttpActuator::from_spec(h, options)?))),
        Kind::Log => Ok(TrafficActuator::Log(Arc::new(LogActuator::new()))),
    }
}

pub(crate) enum Kind<'a> {
    Http(&'a meridian_core::manifest::HttpActuatorSpec),
    Log,
}

pub(crate) fn resolve_kind(spec: Option<&ActuatorSpec>) -> Result<Kind<'_>, ActuatorError> {
    match spec {
        None => Ok(Kind::Log),
        Some(ActuatorSpec { http: Some(h), log: None }) => Ok(Kind::Http(h)),
        Some(ActuatorSpec { http: None, log: Some(_) }) => Ok(Kind::Log),
        Some(ActuatorSpec { http: Some(_), log: Some(_) }) => Err(ActuatorError::InvalidSpec {
            field: "actuator",
            reason: "actuator has both http and log; choose one".into(),
        }),
        Some(ActuatorSpec { http: None, log: None }) => Err(ActuatorError::InvalidSpec {
            field: "actuator",
            reason: "actuator names no kind; add http: {url: ...} or log: {}".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use meridian_core::manifest::{HttpActuatorSpec, LogActuatorSpec};

    use super::*;

    #[test]
    fn no_actuator_means_a_dry_run() {
        let o = ActuatorOptions::default();
        assert!(from_spec(None, &o).unwrap().is_dry_run());
        let log = ActuatorSpec { http: None, log: Some(LogActuatorSpec {}) };
        assert!(from_spec(Some(&log), &o).unwrap().is_dry_run());
        let http = ActuatorSpec {
            http: Some(HttpActuatorSpec { url: "http://127.0.0.1:9/{{region}}".into(), ..Default::default() }),
            log: None,
        };
        assert!(!from_spec(Some(&http), &o).unwrap().is_dry_run());
    }

    #[test]
    fn an_actuator_must_name_exactly_one_kind() {
        let o = ActuatorOptions::default();
        let both = ActuatorSpec {
            http: Some(HttpActuatorSpec { url: "http://h/".into(), ..Default::default() }),
            log: Some(LogActuatorSpec {}),
        };
        for spec in [both, ActuatorSpec::default()] {
            let err = from_spec(Some(&spec), &o).unwrap_err();
            assert!(matches!(err, ActuatorError::InvalidSpec { field: "actuator", .. }), "{err}");
        }
    }
}
