//! Writes what the controller reports on each `RolloutPlan` (`status::plan_status`: the
//! printer columns, `observedGeneration`, the conditions) from the published snapshot, as a
//! merge patch of those fields only: the engine record beside them is the store's, written
//! conditionally, and a patch that leaves it out leaves it as it is.
//!
//! In all-namespaces mode it also writes `Accepted=False` (reason `DuplicateName`, naming
//! both namespaces) on each plan refused because a plan of its name runs from another
//! namespace, with one Event per refusal.
//!
//! Looks at the snapshot once a second; a plan whose state and configuration did not change
//! since its status was last written costs nothing, and a status is written only when it
//! differs from what the object shows. Must not decide anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use meridian_core::ports::control::ControlPlane;

use crate::crd::RolloutPlanResource;
use crate::events::{PlanEvents, duplicate_event, rejected_event};
use crate::scope::{Namespaces, RefusedPlan};
use crate::status::{RolloutPlanStatus, plan_status, refused_status};

/// What a status is computed from: the plan's last update, the configuration's generation,
/// the located errors of a rejected edit of it.
type Basis = (chrono::DateTime<chrono::Utc>, u64, Option<Vec<String>>);

/// Keep every plan's reported status current until the task is dropped.
/// An edit of a plan that is rejected also gets an Event (once per rejection).
pub async fn report_status(
    client: kube::Client,
    namespaces: Arc<Namespaces>,
    control: Arc<dyn ControlPlane>,
    events: Arc<PlanEvents>,
) {
    // Refused duplicates whose Event was published, as they were.
    let mut refusals: HashSet<RefusedPlan> = HashSet::new();
    let mut announced: HashMap<String, Vec<String>> = HashMap::new();
    // Per plan: what the last written status was computed from.
    let mut seen: HashMap<String, Basis> = HashMap::new();
    loop {
        let snapshot = control.snapshot();
        let now = control.now();
        for (name, entry) in &snapshot.plans {
            let Some((plans, namespace)) = namespaces.plan_api::<RolloutPlanResource>(&client, name) else {
                continue;
            };
            let prefix = format!("RolloutPlan/{namespace}/{name}:");
            let rejected: Option<Vec<String>> = snapshot.config.rejected.as_ref().and_then(|r| {
                let mine: Vec<String> = r.errors.iter().filter(|e| e.starts_with(&prefix)).cloned().collect();
                (!mine.is_empty()).then_some(mine)
            });
            match &rejected {
                Some(errors) if announced.get(name) != Some(errors) => {
                    events.publish(name, &rejected_event(errors)).await;
                    announced.insert(name.clone(), errors.clone());
                }
                Some(_) => {}
                None => {
                    announced.remove(name);
                }
            }
            let basis = (entry.updated_at, snapshot.config.generation, rejected.clone());
            if seen.get(name) == Some(&basis) {
                continue;
            }
            let Ok(Some(object)) = plans.get_opt(name).await else { continue };
            let previous = object.status.clone().unwrap_or_default();
            let status = plan_status(
                &entry.plan,
                &entry.state,
                object.metadata.generation,
                rejected.as_deref(),
                Some(&previous),
                now,
            );
            let shown = RolloutPlanStatus { engine: None, ..previous };
            if shown == status {
                seen.insert(name.clone(), basis);
                continue;
            }
            let patch = serde_json::json!({ "status": status });
            match plans.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    seen.insert(name.clone(), basis);
                }
                Err(e) => crate::log_line(&format!("could not write the status of RolloutPlan {name}: {e}")),
            }
        }
        let refused = namespaces.refused();
        refusals.retain(|r| refused.contains(r));
        for r in refused {
            if write_refused(&client, &r, now).await && refusals.insert(r.clone()) {
                events.publish_on(&r.namespace, &r.name, &duplicate_event(&r)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Say on a refused duplicate that it does not run (only when its status does not say so
/// already); true when its status says so now.
async fn write_refused(client: &kube::Client, refused: &RefusedPlan, now: chrono::DateTime<chrono::Utc>) -> bool {
    let plans: Api<RolloutPlanResource> = Api::namespaced(client.clone(), &refused.namespace);
    let Ok(Some(object)) = plans.get_opt(&refused.name).await else { return false };
    let previous = object.status.clone().unwrap_or_default();
    let status = refused_status(refused, object.metadata.generation, Some(&previous), now);
    if previous.conditions == status.conditions && previous.observed_generation == status.observed_generation {
        return true;
    }
    let patch = serde_json::json!({ "status": { "observedGeneration": status.observed_generation, "conditions": status.conditions } });
    match plans.patch_status(&refused.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => true,
        Err(e) => {
            crate::log_line(&format!(
                "could not write the status of RolloutPlan {}/{}: {e}",
                refused.namespace, refused.name
            ));
            false
        }
    }
}
