//! One actuator per plan, behind the core's `Actuator` port: what the controller holds.
//!
//! Owns the choice of actuator for each target and the sharing of one HTTP client (one
//! connection pool) and one dry run between plans. A target gets its region's effective
//! actuator (`settings.actuator`: the plan's, or the region's whole replacement). An HTTP
//! actuator is rebuilt only when its `actuator.http` section changed, so a config reload
//! that leaves it alone keeps the jitter state and pool, and an edit takes effect at the
//! next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use meridian_core::plan::{ActuatorSettings, HttpActuatorSettings, Origin, Plan};
use meridian_core::ports::{ActuationError, Actuator, BoxFuture, Target};

use crate::error::ActuatorError;
use crate::http::{HttpActuator, build_client};
use crate::log::LogActuator;
use crate::{ActuatorOptions, TrafficActuator};

/// Plan name, and region name for a region with an actuator of its own.
type ActuatorKey = (String, Option<String>);

/// Every plan's actuator. Implements [`meridian_core::ports::Actuator`]; errors are turned
/// into [`ActuationError`] with [`ActuatorError::is_retryable`] and
/// [`ActuatorError::metric_label`].
#[derive(Debug)]
pub struct PlanActuators {
    options: ActuatorOptions,
    client: reqwest::Client,
    /// Shared by every plan without an `http` actuator; targets carry the plan's name.
    dry_run: Arc<LogActuator>,
    /// By plan name and, for a region with an actuator of its own, region name; with the
    /// settings it was built from.
    http: Mutex<HashMap<ActuatorKey, (HttpActuatorSettings, Arc<HttpActuator>)>>,
}

impl PlanActuators {
    pub fn new(options: ActuatorOptions) -> Result<Self, ActuatorError> {
        Ok(PlanActuators {
            options,
            client: build_client()?,
            dry_run: Arc::new(LogActuator::new()),
            http: Mutex::new(HashMap::new()),
        })
    }

    /// The actuator for `plan`, as its `actuator:` section says now (regions that replace
    /// it aside: see [`PlanActuators::for_target`]). A `kubernetes` section is refused.
    pub fn for_plan(&self, plan: &Plan) -> Result<TrafficActuator, ActuatorError> {
        self.build(plan, None, "", plan.actuator.as_ref())
    }

    /// The actuator for `target`: its region's effective actuator, the plan's unless the
    /// region replaces it. An unknown region gets the plan's. A `kubernetes` one is refused
    /// ([`ActuatorError::NeedsKubeMode`]): never silently turned into a dry run.
    pub fn for_target(&self, plan: &Plan, target: &Target) -> Result<TrafficActuator, ActuatorError> {
        let Some(region) = plan.region_index(&target.region).map(|r| &plan.regions[r]) else {
            return self.for_plan(plan);
        };
        let own = region.settings.origins.actuator == Origin::Region;
        self.build(plan, own.then_some(region.name.as_str()), &region.name, region.settings.actuator.as_ref())
    }

    fn build(
        &self,
        plan: &Plan,
        own: Option<&str>,
        region: &str,
        settings: Option<&ActuatorSettings>,
    ) -> Result<TrafficActuator, ActuatorError> {
        let settings = match settings {
            Some(ActuatorSettings::Http(settings)) => settings,
            Some(ActuatorSettings::Kubernetes(_)) => {
                return Err(ActuatorError::NeedsKubeMode {
                    place: format!("plan {:?} in region {region:?}", plan.name),
                });
            }
            Some(ActuatorSettings::Log) | None => return Ok(TrafficActuator::Log(self.dry_run.clone())),
        };
        let key = (plan.name.clone(), own.map(str::to_string));
        // The map only ever holds complete entries, so a poisoned lock is still usable.
        let mut cache = self.http.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((built_from, actuator)) = cache.get(&key)
            && built_from == settings
        {
            return Ok(TrafficActuator::Http(actuator.clone()));
        }
        let actuator = Arc::new(HttpActuator::with_client(settings, &self.options, self.client.clone()));
        cache.insert(key, (settings.clone(), actuator.clone()));
        Ok(TrafficActuator::Http(actuator))
    }

    /// The dry run shared by plans without an `http` actuator; take its records to log them.
    pub fn dry_run(&self) -> &Arc<LogActuator> {
        &self.dry_run
    }
}

impl Actuator for PlanActuators {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
        percent: u32,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        Box::pin(async move {
            let actuator = self.for_target(plan, target)?;
            actuator.set_traffic(target, percent, idempotency_key).await?;
            Ok(())
        })
    }

    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        Box::pin(async move { Ok(self.for_target(plan, target)?.read_traffic(target).await?) })
    }
}
