//! Health adapters: they read a plan's checks from where the data lives and hand the engine
//! one judged [`HealthSample`] per (region, check) asked for.
//!
//! ```text
//!                 EvalRequest (service, wave, regions under watch, now)
//!                        │
//!   CheckRouter ─────────┼──> PrometheusSource: one /api/v1/query per check (+ one for the
//!   (per check, by       │      traffic guard), the vector split by the region label
//!    its source)         └──> HttpSource: one GET per region, a number by JSON pointer or
//!                               a sample from a Prometheus text-format body
//!                                          │
//!                        per region: Reading (value + timestamp | missing | failed)
//!                                          │ judge: staleness, NaN, traffic guard,
//!                                          │        meridian_core::health::assess, and for a
//!                                          │        relative check meridian_core::relative
//!                                          │        against the usable values of the request's
//!                                          v        baseline regions, read from the same answer
//!                        Evaluation { samples: Vec<HealthSample>, errors }
//! ```
//!
//! This crate fetches and judges; it decides nothing. It fails closed: a failed fetch, an
//! HTTP error, a timeout, a warning, a partial or malformed answer, an ambiguous series, a
//! stale or NaN value all become an explicit `Error` or `NoData` sample with a `detail`,
//! never silence and never `Healthy`. The only way to `Healthy` is a fresh, unambiguous,
//! parsed value that `assess` accepts.

use meridian_core::plan::Plan;

pub mod http;
pub mod judge;
pub mod prometheus;
pub mod router;
pub mod template;
pub mod textformat;

mod fetch;

pub use fetch::FetchError;
pub use http::{HttpCheckError, HttpSource, HttpSourceConfig};
pub use judge::Reading;
pub use prometheus::{PrometheusConfig, PrometheusError, PrometheusSource};
pub use router::{CheckRouter, RouterError};

/// Default time allowed for one HTTP request, body included.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default largest response body read; a larger one is an error, not a truncated read.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

pub use meridian_core::ports::{EvalFault, EvalRequest, Evaluation, HealthSource};

/// One evaluation of every check of `plan` for `request`, the way every source does it:
/// regions the plan does not know are judged `Error` first, the checks of the rest run
/// concurrently (`per_check(check index, known regions)`), and the samples come back in the
/// documented order.
pub(crate) async fn evaluate_checks<'a, F, Fut>(plan: &'a Plan, request: &'a EvalRequest, per_check: F) -> Evaluation
where
    F: Fn(usize, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Evaluation>,
{
    let (regions, mut eval) = screen_request(plan, request);
    if !regions.is_empty() {
        let checks = (0..plan.health.checks.len()).map(|c| per_check(c, regions.clone()));
        for part in futures_util::future::join_all(checks).await {
            eval.samples.extend(part.samples);
            eval.errors.extend(part.errors);
        }
    }
    order_samples(plan, request, &mut eval);
    eval
}

/// An error met while evaluating one check, with the check (and region, when it concerns
/// one) it happened for.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("check {check:?}: {source}")]
    Prometheus {
        check: String,
        /// Set when the error concerns one region's series only.
        region: Option<String>,
        #[source]
        source: PrometheusError,
    },
    #[error("check {check:?}, region {region:?}: {source}")]
    Http {
        check: String,
        region: String,
        #[source]
        source: HttpCheckError,
    },
    #[error("check {check:?} reads {kind}, which this source does not read")]
    UnsupportedCheck { check: String, kind: &'static str },
    #[error("region {region:?} is not in plan {plan:?}")]
    UnknownRegion { plan: String, region: String },
    #[error("service {service:?} is not in plan {plan:?}")]
    UnknownService { plan: String, service: String },
}

impl From<EvalError> for EvalFault {
    fn from(e: EvalError) -> Self {
        let check = match &e {
            EvalError::Prometheus { check, .. }
            | EvalError::Http { check, .. }
            | EvalError::UnsupportedCheck { check, .. } => Some(check.clone()),
            EvalError::UnknownRegion { .. } | EvalError::UnknownService { .. } => None,
        };
        EvalFault { check, label: e.metric_label(), message: error_chain(&e) }
    }
}

impl EvalError {
    /// A stable, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EvalError::Prometheus { source, .. } => source.metric_label(),
            EvalError::Http { source, .. } => source.metric_label(),
            EvalError::UnsupportedCheck { .. } => "unsupported_check",
            EvalError::UnknownRegion { .. } => "unknown_region",
            EvalError::UnknownService { .. } => "unknown_service",
        }
    }
}

/// Regions of the request in order, each once.
pub(crate) fn requested_regions(request: &EvalRequest) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(request.regions.len());
    for r in &request.regions {
        if !out.contains(&r.as_str()) {
            out.push(r);
        }
    }
    out
}

/// Split a request into the regions the plan knows (returned, to be evaluated) and the
/// rest, which get an `Error` sample per check here. An unknown service makes every
/// region unknown.
pub(crate) fn screen_request(plan: &Plan, request: &EvalRequest) -> (Vec<String>, Evaluation) {
    let mut eval = Evaluation::default();
    let mut known = Vec::new();
    let service_known = plan.service_index(&request.service).is_some();
    if !service_known {
        eval.errors
            .push(EvalError::UnknownService { plan: plan.name.clone(), service: request.service.clone() }.into());
    }
    for region in requested_regions(request) {
        if service_known && plan.region_index(region).is_some() {
            known.push(region.to_string());
            continue;
        }
        let error = if service_known {
            EvalError::UnknownRegion { plan: plan.name.clone(), region: region.to_string() }
        } else {
            EvalError::UnknownService { plan: plan.name.clone(), service: request.service.clone() }
        };
        for check in &plan.health.checks {
            eval.samples.push(judge::error_sample(
                region,
                &request.service,
                &check.name,
                error.to_string(),
                request.now,
            ));
        }
        if service_known {
            eval.errors.push(error.into());
        }
    }
    (known, eval)
}

/// Put samples back in the documented order: checks in plan order, regions in request order.
pub(crate) fn order_samples(plan: &Plan, request: &EvalRequest, eval: &mut Evaluation) {
    let regions = requested_regions(request);
    let check_pos = |name: &str| plan.health.checks.iter().position(|c| c.name == name).unwrap_or(usize::MAX);
    let region_pos = |name: &str| regions.iter().position(|r| *r == name).unwrap_or(usize::MAX);
    eval.samples.sort_by_key(|s| (check_pos(&s.check), region_pos(&s.region)));
}

/// An error's message followed by those of its sources, each once: what a sample's
/// `detail` says.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let message = e.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = e.source();
    }
    text
}
