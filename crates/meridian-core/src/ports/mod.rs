//! The narrow interfaces the shells implement, defined next to the engine they feed so every
//! adapter depends on the core and never the other way round:
//!
//! ```text
//!   ConfigSource (files | Kubernetes) ──> runtime ──> StateStore (SQLite | Kubernetes)
//!                                           │  │
//!   HealthSource (Prometheus, HTTP) ──> observe  actuate ──> Actuator (HTTP | Kubernetes)
//!                                           │
//!                           ControlPlane <──┘ (the API and the CLI's commands read and ask through it)
//!                                decide ──> Notifier (webhook sinks; queued, never waited on)
//! ```
//!
//! Here: where health comes from (`HealthSource`), how traffic is set (`Actuator`), where notices go (`Notifier`); in
//! `store`, what is kept durably (`StateStore`); in `control`, the controller's face to the
//! API (`ControlPlane`); in `config`, where plans and approvals come from (`ConfigSource`).
//! Async without a runtime: futures are boxed `std` futures, subscriptions a small trait.

pub mod config;
pub mod control;
pub mod store;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::health::HealthSample;
use crate::plan::Plan;

/// A boxed, sendable future (object-safe async trait methods without extra crates).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The time source: the controller reads time and waits for timers only through it, so a
/// test (or a simulation) can drive a whole rollout's bakes without waiting for them.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now()` has reached `at` (at once when it has).
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_, ()>;
}

/// One (plan, region, service) whose traffic is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub plan: String,
    pub region: String,
    pub service: String,
}

/// What one health evaluation covers: one service of one plan, for the regions under watch
/// (`watch::health_requests`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// The service the queries are rendered for (`{{service}}`).
    pub service: String,
    /// The wave the regions belong to (`{{wave}}`).
    pub wave: String,
    /// The regions to judge: only units under watch. Duplicates are judged once.
    pub regions: Vec<String>,
    /// The regions fully enabled for the service (`watch::baseline_regions`): what a check's
    /// `relative` part compares with, read from the same query. Never judged for them.
    pub baseline: Vec<String>,
    /// The moment of the evaluation: the staleness reference, and the `at` of samples that
    /// carry no value timestamp (`NoData`, `Error`).
    pub now: DateTime<Utc>,
}

/// What one evaluation found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Exactly one per (check, region) asked for.
    pub samples: Vec<HealthSample>,
    /// What went wrong on the way, for logs and metrics. Each is already reflected in
    /// `samples` as an `Error` (or `NoData`) verdict.
    pub errors: Vec<EvalFault>,
}

impl Evaluation {
    pub fn into_samples(self) -> Vec<HealthSample> {
        self.samples
    }
}

impl From<Vec<HealthSample>> for Evaluation {
    fn from(samples: Vec<HealthSample>) -> Self {
        Evaluation { samples, errors: Vec::new() }
    }
}

/// An error met while evaluating a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalFault {
    /// The check it concerns; `None` for the whole request (an unknown service, say).
    pub check: Option<String>,
    /// A stable, low-cardinality kind for metrics (`timeout`, `http_5xx`, `ambiguous`, ...).
    pub label: &'static str,
    /// What happened, in words.
    pub message: String,
}

impl EvalFault {
    pub fn metric_label(&self) -> &'static str {
        self.label
    }
}

/// Where health comes from. Must return one sample per (region, check) asked for: missing
/// or unreadable data is an explicit `NoData`/`Error` sample, never silence, never healthy.
pub trait HealthSource: Send + Sync {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Evaluation>;
}

/// A failed actuation, with whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActuationError {
    pub message: String,
    pub retryable: bool,
    /// A short label for metrics (`timeout`, `http_5xx`, ...).
    pub label: &'static str,
}

/// Sets and reads back a target's traffic. Calls must be idempotent: the same key and
/// percent sent twice has the effect of once.
pub trait Actuator: Send + Sync {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
        percent: u32,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>>;

    /// The percent the target serves now; `None` when the target has never been set.
    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>>;
}

/// Where notices go (webhook sinks, see `crate::notify`). Handing them over never waits: a
/// sink that is slow or down must never hold a decision, so an implementation queues (and
/// drops, counting, when its queue is full).
pub trait Notifier: Send + Sync {
    fn notify(&self, notices: Vec<crate::notify::Notice>);
}

/// No sinks: notices are dropped (the default).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _notices: Vec<crate::notify::Notice>) {}
}
