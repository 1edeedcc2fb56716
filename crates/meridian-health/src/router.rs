//! The source a controller holds: each check goes to the provider its `source` names, all
//! checks evaluated concurrently. Owns dispatch only.

use meridian_core::plan::{CheckSource, Plan};

use crate::http::{HttpCheckError, HttpSource, HttpSourceConfig};
use crate::prometheus::{PrometheusConfig, PrometheusError, PrometheusSource};
use meridian_core::ports::BoxFuture;

use crate::{EvalRequest, Evaluation, HealthSource};

/// Routes `prometheus` checks to a [`PrometheusSource`] and `http` checks to an
/// [`HttpSource`] whose traffic guards run on the same Prometheus source.
#[derive(Debug, Clone)]
pub struct CheckRouter {
    prometheus: PrometheusSource,
    http: HttpSource,
}

/// Why a router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("failed to build the prometheus source")]
    Prometheus(#[source] PrometheusError),
    #[error("failed to build the http source")]
    Http(#[source] HttpCheckError),
}

impl RouterError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            RouterError::Prometheus(e) => e.metric_label(),
            RouterError::Http(e) => e.metric_label(),
        }
    }
}

impl CheckRouter {
    pub fn new(prometheus: PrometheusConfig, http: HttpSourceConfig) -> Result<Self, RouterError> {
        let prometheus = PrometheusSource::new(prometheus).map_err(RouterError::Prometheus)?;
        let http = HttpSource::new(http).map_err(RouterError::Http)?.with_guard(prometheus.clone());
        Ok(CheckRouter { prometheus, http })
    }

    /// From providers built elsewhere. The http source keeps the guard it was given.
    pub fn from_sources(prometheus: PrometheusSource, http: HttpSource) -> Self {
        CheckRouter { prometheus, http }
    }
}

impl HealthSource for CheckRouter {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(crate::evaluate_checks(plan, request, move |c, regions| async move {
            match plan.health.checks[c].source {
                CheckSource::Prometheus { .. } => self.prometheus.evaluate_check(plan, c, request, &regions).await,
                CheckSource::Http { .. } => self.http.evaluate_check(plan, c, request, &regions).await,
            }
        }))
    }
}
