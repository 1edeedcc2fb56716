//! RolloutCommands no plan will ever apply: one naming a plan that does not run in the
//! command's namespace (a typo, a plan not created yet or refused, or, with
//! `--all-namespaces`, a command created next to the wrong plan). The store reads a plan's
//! commands from the plan's namespace only, so such a command would wait forever, unseen.
//! The leader refuses each once it is [`GRACE`] old and still stray: a `command-refused`
//! record in the controller's history (durable, naming who issued it and why), a Warning
//! Event `CommandRefused` on the command, and the object deleted.
//!
//! Owns finding and refusing them; applying commands is the store's and the engine's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use meridian_core::ports::control::ControlPlane;
use meridian_core::ports::store::{ControllerEvent, StateStore as _};

use crate::crd::RolloutCommandResource;
use crate::events::{PlanEvent, PlanEvents};
use crate::scope::Namespaces;
use crate::store::{KubeStore, lock};

/// How old a stray command gets before it is refused: time for the plan applied with it to
/// be loaded.
pub const GRACE: Duration = Duration::from_secs(5);

/// Why no plan will apply `command`, if none will: its plan is not among `running` (the
/// plans in force) in the command's namespace.
pub fn stray_reason(
    namespaces: &Namespaces,
    running: impl Fn(&str) -> bool,
    command: &RolloutCommandResource,
) -> Option<String> {
    let namespace = command.namespace().unwrap_or_default();
    let plan = &command.spec.plan;
    if running(plan) && namespaces.is_running(&namespace, plan) {
        return None;
    }
    Some(match namespaces.of_plan(plan).filter(|ns| *ns != namespace && running(plan)) {
        Some(elsewhere) => format!(
            "plan {plan:?} runs in namespace {elsewhere:?}, not in {namespace:?}; create the RolloutCommand in \
             {elsewhere:?}"
        ),
        None => format!("no RolloutPlan named {plan:?} runs in namespace {namespace:?}; check the plan's name"),
    })
}

/// Refuse stray commands as the watch shows them, until the task is dropped.
pub async fn refuse_stray_commands(
    client: Client,
    namespaces: Arc<Namespaces>,
    control: Arc<dyn ControlPlane>,
    store: Arc<KubeStore>,
    events: Arc<PlanEvents>,
) {
    let api: Api<RolloutCommandResource> = namespaces.watched_api(&client);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    // Commands (by uid) with a refusal pending: one per command, however often the watch
    // shows it again (an update, a re-list), so a refusal is recorded once.
    let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
    while let Some(event) = stream.next().await {
        let command = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            _ => continue,
        };
        let running = |plan: &str| control.snapshot().plans.contains_key(plan);
        if stray_reason(&namespaces, running, &command).is_none() {
            continue;
        }
        let uid = command.metadata.uid.clone().unwrap_or_default();
        if !lock(&pending).insert(uid.clone()) {
            continue;
        }
        let age = command
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| chrono::Utc::now().timestamp_millis() - t.0.as_millisecond())
            .map_or(Duration::ZERO, |ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        let (client, namespaces, control, store, events, pending) =
            (client.clone(), namespaces.clone(), control.clone(), store.clone(), events.clone(), pending.clone());
        tokio::spawn(async move {
            tokio::time::sleep(GRACE.saturating_sub(age)).await;
            refuse(&client, &namespaces, control.as_ref(), &store, &events, &command).await;
            lock(&pending).remove(&uid);
        });
    }
}

/// Refuse `command` if it still exists and is still stray.
async fn refuse(
    client: &Client,
    namespaces: &Namespaces,
    control: &dyn ControlPlane,
    store: &Arc<KubeStore>,
    events: &PlanEvents,
    command: &RolloutCommandResource,
) {
    let namespace = command.namespace().unwrap_or_default();
    let name = command.name_any();
    let api: Api<RolloutCommandResource> = Api::namespaced(client.clone(), &namespace);
    let Ok(Some(current)) = api.get_opt(&name).await else { return };
    if current.metadata.deletion_timestamp.is_some() {
        return;
    }
    let running = |plan: &str| control.snapshot().plans.contains_key(plan);
    let Some(reason) = stray_reason(namespaces, running, &current) else { return };
    let spec = &current.spec;
    let event = ControllerEvent {
        at: chrono::Utc::now(),
        kind: "command-refused".into(),
        who: spec.by.clone(),
        detail: serde_json::json!({
            "command": spec.command, "plan": spec.plan, "namespace": namespace, "object": name, "reason": reason,
        }),
    };
    let recorder = store.clone();
    let recorded = tokio::task::spawn_blocking(move || recorder.record_event(&event)).await;
    if !matches!(recorded, Ok(Ok(()))) {
        // Not recorded: leave the command for the next pass rather than lose its trace.
        crate::log_line(&format!("could not record the refusal of RolloutCommand {namespace}/{name}; kept"));
        return;
    }
    let note = format!("{} by {} refused: {reason}", spec.command, spec.by);
    let uid = current.metadata.uid.clone().unwrap_or_default();
    let warning = PlanEvent { warning: true, reason: "CommandRefused".into(), action: "Refuse".into(), note };
    events.publish_regarding("RolloutCommand", &namespace, &name, &uid, &warning).await;
    if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
        crate::log_line(&format!("could not delete the refused RolloutCommand {namespace}/{name}: {e}"));
    }
    crate::log_line(&format!("RolloutCommand {namespace}/{name} refused: {reason}"));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kube::api::ObjectMeta;

    use super::*;
    use crate::crd::RolloutCommandSpec;

    fn command(namespace: &str, plan: &str) -> RolloutCommandResource {
        RolloutCommandResource {
            metadata: ObjectMeta {
                name: Some("pause-1".into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: RolloutCommandSpec {
                plan: plan.into(),
                command: meridian_core::CommandKind::Pause,
                wave: None,
                region: None,
                by: "alice".into(),
                freeze: None,
                unfreeze: None,
                full: false,
            },
        }
    }

    #[test]
    fn a_command_is_stray_unless_its_plan_runs_in_its_namespace() {
        let all = Namespaces::all("meridian");
        all.record(HashMap::from([("alpha".to_string(), "team-a".to_string())]), Vec::new(), &[]);
        let running = |plan: &str| plan == "alpha";
        assert_eq!(stray_reason(&all, running, &command("team-a", "alpha")), None);
        let elsewhere = stray_reason(&all, running, &command("team-b", "alpha")).unwrap();
        assert!(elsewhere.contains("runs in namespace \"team-a\", not in \"team-b\""), "{elsewhere}");
        let unknown = stray_reason(&all, running, &command("team-a", "alhpa")).unwrap();
        assert!(unknown.contains("no RolloutPlan named \"alhpa\" runs in namespace \"team-a\""), "{unknown}");
        // One namespace: the plan's name alone decides.
        let one = Namespaces::one("meridian");
        assert_eq!(stray_reason(&one, running, &command("meridian", "alpha")), None);
        assert!(stray_reason(&one, running, &command("meridian", "beta")).is_some());
    }
}
