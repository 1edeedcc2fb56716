//! A health source for plans that cannot be read: every (region, check) asked for gets an
//! explicit `NoData` sample saying why. Fail-closed by construction; used when no provider
//! is configured for a check's source.

use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::plan::Plan;
use meridian_core::ports::{BoxFuture, EvalFault, EvalRequest, Evaluation, HealthSource};

pub struct Unreadable {
    pub reason: String,
}

impl HealthSource for Unreadable {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(async move {
            let samples = request
                .regions
                .iter()
                .flat_map(|region| {
                    plan.health.checks.iter().map(move |check| HealthSample {
                        region: region.clone(),
                        service: request.service.clone(),
                        check: check.name.clone(),
                        verdict: HealthVerdict::NoData,
                        value: None,
                        detail: Some(self.reason.clone()),
                        at: request.now,
                        baseline: None,
                    })
                })
                .collect();
            let errors = vec![EvalFault { check: None, label: "unavailable", message: self.reason.clone() }];
            Evaluation { samples, errors }
        })
    }
}
