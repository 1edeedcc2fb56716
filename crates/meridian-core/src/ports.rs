//! The narrow interfaces the shells implement: where health comes from and how traffic is
//! set. Defined here, next to the engine they feed, so adapters depend on the core and never
//! the other way round. Async without a runtime: futures are boxed `std` futures.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::health::HealthSample;
use crate::plan::Plan;

/// A boxed, sendable future (object-safe async trait methods without extra crates).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One (plan, region, service) whose traffic is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub plan: String,
    pub region: String,
    pub service: String,
}

/// What one health evaluation covers: one service of one plan, for the regions under watch.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    pub service: String,
    /// The wave the regions belong to (for `{{wave}}` in queries).
    pub wave: String,
    pub regions: Vec<String>,
    pub now: DateTime<Utc>,
}

/// Where health comes from. Must return one sample per (region, check) asked for: missing
/// or unreadable data is an explicit `NoData`/`Error` sample, never silence, never healthy.
pub trait HealthSource: Send + Sync {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Vec<HealthSample>>;
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
