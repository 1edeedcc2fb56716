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
//! (none means the dry run). A `kubernetes` section is refused with a clear error
//! ([`needs_kube_mode`]): `meridian_kube::actuator` drives it, under `meridian kube` only.
//! [`TrafficActuator`] is one plan's actuator, built by
//! [`from_settings`] from the typed [`ActuatorSettings`] validation resolved. The wire
//! contract of the `http` kind is in [`http`].
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

use meridian_core::plan::{ActuatorSettings, Plan};

pub use backoff::{Backoff, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP};
pub use error::ActuatorError;
pub use http::HttpActuator;
pub use log::{DryRunRecord, LogActuator};
pub use meridian_core::plan::{HttpActuatorSettings, SetMethod, TokenSource};
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
    /// Sent as `Meridian-Instance` with every traffic change, so a target (and its log) can
    /// tell which controller replica sent it (`meridian kube` sets its election identity).
    pub instance: Option<String>,
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            jitter_seed: None,
            instance: None,
        }
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
/// A `kubernetes` section is refused (it needs `meridian kube`, `meridian_kube::actuator`).
pub fn from_settings(
    settings: Option<&ActuatorSettings>,
    options: &ActuatorOptions,
) -> Result<TrafficActuator, ActuatorError> {
    match settings {
        Some(ActuatorSettings::Http(h)) => Ok(TrafficActuator::Http(Arc::new(HttpActuator::new(h, options)?))),
        Some(ActuatorSettings::Kubernetes(_)) => {
            Err(ActuatorError::NeedsKubeMode { place: "an actuator section".into() })
        }
        Some(ActuatorSettings::Log) | None => Ok(TrafficActuator::Log(Arc::new(LogActuator::new()))),
    }
}

/// Where `plan` asks for the kubernetes actuator, which this crate cannot drive: the error
/// for its first such region, so that `meridian run` can refuse the plan at start.
pub fn needs_kube_mode(plan: &Plan) -> Option<ActuatorError> {
    plan.regions
        .iter()
        .find(|r| matches!(r.settings.actuator, Some(ActuatorSettings::Kubernetes(_))))
        .map(|r| ActuatorError::NeedsKubeMode { place: format!("plan {:?} in region {:?}", plan.name, r.name) })
}

#[cfg(test)]
mod tests {
    use meridian_core::endpoint::UrlTemplate;

    use super::*;

    #[test]
    fn no_actuator_means_a_dry_run() {
        let o = ActuatorOptions::default();
        assert!(from_settings(None, &o).unwrap().is_dry_run());
        assert!(from_settings(Some(&ActuatorSettings::Log), &o).unwrap().is_dry_run());
        let url = UrlTemplate::parse("http://127.0.0.1:9/{{region}}").unwrap();
        let http = ActuatorSettings::Http(HttpActuatorSettings::new(url));
        assert!(!from_settings(Some(&http), &o).unwrap().is_dry_run());
    }

    #[test]
    fn a_kubernetes_section_is_refused_not_dry_run() {
        use meridian_core::plan::{ClusterRef, DriftPolicy, KubeObject, KubernetesActuatorSettings};
        let kube = ActuatorSettings::Kubernetes(KubernetesActuatorSettings {
            cluster: ClusterRef::Local,
            namespace: "shop".into(),
            object: KubeObject::ConfigMap { name: "c".into(), key: "k".into() },
            on_drift: DriftPolicy::Reapply,
        });
        let e = from_settings(Some(&kube), &ActuatorOptions::default()).unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.metric_label(), "needs_kube_mode");
    }
}
