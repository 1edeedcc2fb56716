//! What happens when a `RolloutPlan` is deleted: the leader puts the finalizer
//! `meridian.dev/rollout` on every plan, so a `kubectl delete` of a plan whose rollout has
//! traffic in flight does not take it out of control. The policy, chosen per plan with the
//! annotation `meridian.dev/on-delete`:
//!
//! - `wait` (the default): the deletion waits until the rollout is settled (complete, aborted,
//!   or without traffic), the same rule that keeps a plan whose file vanished in force
//!   (`ports::config::vanished_in_flight`); an Event says what it waits for. Traffic stays as
//!   the rollout leaves it.
//! - `abort`: the controller aborts the plan (audited, by `kubernetes (RolloutPlan deleted)`):
//!   every unit not fully enabled is rolled back, enabled ones keep their traffic; then the
//!   deletion completes.
//!
//! With `--all-namespaces` every running plan is guarded in its own namespace; a plan refused
//! as a duplicate name gets no finalizer (it has no rollout), and one it still carries from
//! when it ran is removed when it is deleted.
//!
//! Once settled and its last actuations confirmed, the finalizer is removed and the object goes; the audit log stays in its
//! ConfigMaps. Owns adding and removing the finalizer and asking for the abort; the rules
//! of what "settled" and "abort" mean are the core's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use meridian_core::command::{Command, CommandKind};
use meridian_core::ports::control::ControlPlane;
use meridian_core::ports::store::StateStore;

use crate::crd::RolloutPlanResource;
use crate::events::{PlanEvent, PlanEvents};
use crate::scope::Namespaces;

pub const FINALIZER: &str = "meridian.dev/rollout";
pub const ON_DELETE: &str = "meridian.dev/on-delete";
/// Who the audit record of an abort on deletion names.
pub const DELETED_BY: &str = "kubernetes (RolloutPlan deleted)";

/// The deletion policy an object asks for; an unknown value is `wait` (the safe one), said in
/// the Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    Wait,
    Abort,
}

pub fn on_delete(annotations: Option<&BTreeMap<String, String>>) -> Result<OnDelete, String> {
    match annotations.and_then(|a| a.get(ON_DELETE)).map(String::as_str) {
        None | Some("wait") => Ok(OnDelete::Wait),
        Some("abort") => Ok(OnDelete::Abort),
        Some(other) => Err(format!("{ON_DELETE}: {other:?} is not a policy (wait or abort); waiting")),
    }
}

/// Guard every watched plan until the task is dropped (run on the leader only).
/// `store` tells whether actuations of a settled plan are still open (an abort's rollbacks):
/// the object goes only once they are done.
pub async fn guard_deletions(
    client: kube::Client,
    namespaces: Arc<Namespaces>,
    control: Arc<dyn ControlPlane>,
    store: Arc<dyn StateStore>,
    events: Arc<PlanEvents>,
) {
    let watched: Api<RolloutPlanResource> = namespaces.watched_api(&client);
    let mut stream = watcher(watched, watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    // Objects looked at again on every tick: deletions being waited for, and objects seen
    // before the source placed them (the first load may come after the first watch event).
    let mut pending: BTreeSet<(String, String)> = BTreeSet::new();
    let mut announced: BTreeSet<String> = BTreeSet::new();
    let mut aborted: BTreeSet<String> = BTreeSet::new();
    loop {
        let names: Vec<(String, String)> = tokio::select! {
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                    o.metadata.namespace.zip(o.metadata.name).into_iter().collect()
                }
                Some(_) => continue,
                None => return,
            },
            _ = tick.tick() => pending.iter().cloned().collect(),
        };
        for key in names {
            let (namespace, name) = &key;
            let plans: Api<RolloutPlanResource> = Api::namespaced(client.clone(), namespace);
            let Ok(Some(object)) = plans.get_opt(name).await else {
                pending.remove(&key);
                continue;
            };
            let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
            let ours = finalizers.iter().any(|f| f == FINALIZER);
            if !namespaces.is_running(namespace, name) {
                let placed = namespaces.of_plan(name).is_some();
                if object.metadata.deletion_timestamp.is_some() && ours && placed {
                    // A refused duplicate has no rollout to wait for.
                    let without: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
                    patch_finalizers(&plans, name, object.metadata.resource_version.as_deref(), &without).await;
                }
                if placed && object.metadata.deletion_timestamp.is_none() {
                    pending.remove(&key);
                } else {
                    pending.insert(key.clone());
                }
                continue;
            }
            let name = name.as_str();
            if object.metadata.deletion_timestamp.is_none() {
                if !ours {
                    let mut with = finalizers;
                    with.push(FINALIZER.to_string());
                    patch_finalizers(&plans, name, object.metadata.resource_version.as_deref(), &with).await;
                }
                continue;
            }
            if !ours {
                pending.remove(&key);
                continue;
            }
            pending.insert(key.clone());
            let policy = on_delete(object.metadata.annotations.as_ref());
            let snapshot = control.snapshot();
            let state = snapshot.plans.get(name).map(|e| &e.state);
            let in_flight = state.map_or(0, |s| s.units_in_flight());
            if in_flight == 0 && !actuating(&store, name).await {
                let without: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
                if patch_finalizers(&plans, name, object.metadata.resource_version.as_deref(), &without).await {
                    pending.remove(&key);
                    announced.remove(name);
                    aborted.remove(name);
                }
                continue;
            }
            if policy == Ok(OnDelete::Abort) && state.is_some_and(|s| !s.aborted) && aborted.insert(name.to_string()) {
                let abort = Command {
                    kind: CommandKind::Abort,
                    wave: None,
                    region: None,
                    by: DELETED_BY.to_string(),
                    at: control.now(),
                    freeze: None,
                    unfreeze: None,
                    full: false,
                };
                if let Err(e) = control.command(name, abort).await {
                    aborted.remove(name);
                    crate::log_line(&format!("could not abort the deleted RolloutPlan {name}: {e}"));
                }
                let note = format!("deleted with {ON_DELETE}: abort; aborting ({in_flight} units in flight)");
                events.publish(name, &event("DeletionAborting", note)).await;
            } else if policy != Ok(OnDelete::Abort) && announced.insert(name.to_string()) {
                let why = policy.err().map(|e| format!("{e}; ")).unwrap_or_default();
                let note = format!(
                    "{why}the deletion waits until the rollout settles ({in_flight} units in flight): let it complete, \
                     abort it (meridian abort {name}), or annotate {ON_DELETE}=abort"
                );
                events.publish(name, &event("DeletionWaiting", note)).await;
            }
        }
    }
}

/// Whether `plan` has actuations not yet confirmed (or the store cannot say).
async fn actuating(store: &Arc<dyn StateStore>, plan: &str) -> bool {
    let store = store.clone();
    let plan = plan.to_string();
    tokio::task::spawn_blocking(move || store.open_intents().map(|open| open.iter().any(|i| i.plan == plan)))
        .await
        .map_or(true, |r| r.unwrap_or(true))
}

fn event(reason: &str, note: String) -> PlanEvent {
    PlanEvent { warning: true, reason: reason.into(), action: "Delete".into(), note }
}

/// Set the finalizers, conditionally on the resourceVersion read; false when that failed (a
/// conflict is looked at again on the next event or tick).
async fn patch_finalizers(
    plans: &Api<RolloutPlanResource>,
    name: &str,
    resource_version: Option<&str>,
    finalizers: &[String],
) -> bool {
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": resource_version, "finalizers": finalizers }
    });
    match plans.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => false,
        Err(e) => {
            crate::log_line(&format!("could not update the finalizers of RolloutPlan {name}: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_wait_unless_abort_is_asked_for() {
        let with = |v: &str| BTreeMap::from([(ON_DELETE.to_string(), v.to_string())]);
        assert_eq!(on_delete(None), Ok(OnDelete::Wait));
        assert_eq!(on_delete(Some(&with("abort"))), Ok(OnDelete::Abort));
        assert!(on_delete(Some(&with("disable"))).unwrap_err().contains("wait or abort"));
    }
}
