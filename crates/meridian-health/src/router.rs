//! The source a controller holds: each check goes to the provider its `source` names, all
//! checks evaluated concurrently. Owns dispatch only.

use futures_util::future::join_all;
use meridian_core::plan::{CheckSource, Plan};

use crate::http::{HttpCheckError, HttpSource, HttpSourceConfig};
use crate::prometheus::{PrometheusConfig, PrometheusError, PrometheusSource};
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
    async fn evaluate(&self, plan: &Plan, request: &EvalRequest) -> Evaluation {
        let (regions, mut eval) = crate::screen_request(plan, request);
        if !regions.is_empty() {
            let checks = plan.health.checks.iter().enumerate().map(|(c, check)| {
                let regions = &regions;
                async move {
                    match check.source {
                        CheckSource::Prometheus { .. } => {
                            self.prometheus.evaluate_check(plan, c, request, regions).await
                        }
                        CheckSource::Http { .. } => self.http.evaluate_check(plan, c, request, regions).await,
                    }
                }
            });
            for e in join_all(checks).await {
                eval.extend(e);
            }
        }
        crate::order_samples(plan, request, &mut eval);
        eval
    }
}
