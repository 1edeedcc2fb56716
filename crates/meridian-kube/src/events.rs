//! Kubernetes Events on each `RolloutPlan` (`kubectl describe rolloutplan`, `kubectl get
//! events`): one per audit record as it is committed (reason: the record's cause, `Warning`
//! for failures, rollbacks, halts, lost approvals and drift), and one when an edit of the plan
//! is rejected. Events expire after about an hour; the audit log in the store is the durable
//! record, readable through `/api/v1/audit`.
//!
//! Owns the mapping of audit records to Events and the publishing; must not decide anything.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use meridian_core::audit::{AuditRecord, Cause};
use meridian_core::ports::control::{ControlPlane, FeedItem};
use tokio::sync::Mutex;

use crate::crd::RolloutPlanResource;
use crate::scope::Namespaces;

/// Publishes Events on the plans, each in its plan's namespace.
pub struct PlanEvents {
    recorder: Recorder,
    client: kube::Client,
    namespaces: Arc<Namespaces>,
    /// Each plan object's uid by (namespace, name), for the Events' `regarding` reference.
    uids: Mutex<HashMap<(String, String), String>>,
}

/// The parts of an Event that vary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    pub warning: bool,
    /// PascalCase, at most 128 characters.
    pub reason: String,
    pub action: String,
    /// At most 1 kB.
    pub note: String,
}

impl PlanEvents {
    /// Events reported as controller `meridian`, instance `identity` (the pod).
    pub fn new(client: kube::Client, namespace: &str, identity: &str) -> Self {
        PlanEvents::with_namespaces(client, Arc::new(Namespaces::one(namespace)), identity)
    }

    /// Events on plans that live where `namespaces` says.
    pub fn with_namespaces(client: kube::Client, namespaces: Arc<Namespaces>, identity: &str) -> Self {
        let reporter = Reporter { controller: "meridian".into(), instance: Some(identity.to_string()) };
        PlanEvents {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespaces,
            uids: Mutex::new(HashMap::new()),
        }
    }

    /// Publish `event` on the running plan `plan`; a failure is logged (Events are best effort).
    pub async fn publish(&self, plan: &str, event: &PlanEvent) {
        if let Some(namespace) = self.namespaces.of_plan(plan) {
            self.publish_on(&namespace, plan, event).await;
        }
    }

    /// Publish `event` on the RolloutPlan object `namespace/plan` (one that runs or not).
    pub async fn publish_on(&self, namespace: &str, plan: &str, event: &PlanEvent) {
        let key = (namespace.to_string(), plan.to_string());
        let uid = {
            let mut uids = self.uids.lock().await;
            match uids.get(&key) {
                Some(uid) => Some(uid.clone()),
                None => {
                    match Api::<RolloutPlanResource>::namespaced(self.client.clone(), namespace).get_opt(plan).await {
                        Ok(Some(object)) => {
                            let uid = object.metadata.uid.clone().unwrap_or_default();
                            uids.insert(key, uid.clone());
                            Some(uid)
                        }
                        _ => None,
                    }
                }
            }
        };
        let Some(uid) = uid else { return };
        self.publish_regarding("RolloutPlan", namespace, plan, &uid, event).await;
    }

    /// Publish `event` on the meridian.dev object `kind` `namespace/name` of `uid`.
    pub async fn publish_regarding(&self, kind: &str, namespace: &str, name: &str, uid: &str, event: &PlanEvent) {
        let reference = ObjectReference {
            api_version: Some("meridian.dev/v1alpha1".into()),
            kind: Some(kind.into()),
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            uid: Some(uid.to_string()),
            ..ObjectReference::default()
        };
        let published = self
            .recorder
            .publish(
                &Event {
                    type_: if event.warning { EventType::Warning } else { EventType::Normal },
                    reason: event.reason.clone(),
                    note: Some(event.note.clone()),
                    action: event.action.clone(),
                    secondary: None,
                },
                &reference,
            )
            .await;
        if let Err(e) = published {
            crate::log_line(&format!("could not publish an Event on {kind} {namespace}/{name}: {e}"));
        }
    }
}

/// The Event for an audit record.
pub fn audit_event(record: &AuditRecord) -> PlanEvent {
    let reason = pascal(&cause_name(&record.cause));
    let warning = matches!(
        record.cause,
        Cause::HealthFailed { .. }
            | Cause::RegionFailed { .. }
            | Cause::ApprovalLost { .. }
            | Cause::WaveHalted { .. }
            | Cause::FailuresAccepted { .. }
            | Cause::BudgetConsumed { .. }
            | Cause::BudgetExceeded { .. }
            | Cause::ProgressDeadline { .. }
            | Cause::Drift
            | Cause::DriftHeld
            | Cause::FailedInScope { .. }
    );
    let action = match &record.event {
        meridian_core::audit::AuditEvent::Unit { .. } => "Unit",
        meridian_core::audit::AuditEvent::Wave { .. } => "Wave",
        meridian_core::audit::AuditEvent::Command { .. } => "Command",
        meridian_core::audit::AuditEvent::Drift { .. } => "Drift",
        meridian_core::audit::AuditEvent::FullPromotionEnded { .. } => "Promotion",
    };
    PlanEvent { warning, reason, action: action.to_string(), note: truncate(&record.summary(), 1000) }
}

/// The Event for a plan refused because another namespace's plan of its name runs.
pub fn duplicate_event(refused: &crate::scope::RefusedPlan) -> PlanEvent {
    PlanEvent {
        warning: true,
        reason: "DuplicateName".into(),
        action: "Validate".into(),
        note: truncate(&refused.message(), 1000),
    }
}

/// The Event for an edit of the plan that did not validate.
pub fn rejected_event(errors: &[String]) -> PlanEvent {
    PlanEvent {
        warning: true,
        reason: "InvalidSpec".into(),
        action: "Validate".into(),
        note: truncate(&format!("the previous spec stays in force: {}", errors.join("; ")), 1000),
    }
}

/// Publish an Event for every audit record as it is committed, until the feed closes.
pub async fn publish_transitions(events: Arc<PlanEvents>, control: Arc<dyn ControlPlane>) {
    let mut feed = control.subscribe();
    loop {
        match feed.next().await {
            FeedItem::Record(record) => events.publish(&record.plan, &audit_event(&record)).await,
            FeedItem::Lagged(n) => {
                crate::log_line(&format!(
                    "{n} transitions got no Kubernetes Event (fell behind); the audit log has them"
                ));
            }
            FeedItem::Closed => return,
        }
    }
}

/// The cause's wire name (`healthFailed`).
fn cause_name(cause: &Cause) -> String {
    serde_json::to_value(cause)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| "Transition".into())
}

fn pascal(name: &str) -> String {
    let mut out: String = name.chars().take(128).collect();
    if let Some(first) = out.get(..1) {
        out.replace_range(..1, &first.to_ascii_uppercase());
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::audit::AuditEvent;
    use meridian_core::state::UnitPhase;

    fn record(cause: Cause) -> AuditRecord {
        AuditRecord {
            seq: 4,
            at: chrono::DateTime::UNIX_EPOCH,
            plan: "p".into(),
            wave: Some("one".into()),
            region: Some("jp".into()),
            service: Some("signin".into()),
            event: AuditEvent::Unit {
                from: UnitPhase::Progressing,
                to: UnitPhase::Progressing,
                step: Some(1),
                from_percent: 10,
                to_percent: 50,
            },
            cause,
        }
    }

    #[test]
    fn a_record_becomes_an_event_named_by_its_cause() {
        let e = audit_event(&record(Cause::Advanced {
            approvals: vec!["jp-letter".into()],
            promoted: false,
            flags: vec![],
            health: vec![],
            full: None,
        }));
        assert_eq!((e.warning, e.reason.as_str(), e.action.as_str()), (false, "Advanced", "Unit"));
        assert!(e.note.contains("jp/signin") && e.note.contains("10% -> 50%"), "{}", e.note);
        let e = audit_event(&record(Cause::WaveHalted { failed_regions: vec!["jp".into()] }));
        assert_eq!((e.warning, e.reason.as_str()), (true, "WaveHalted"));
    }

    #[test]
    fn a_long_rejection_is_cut_to_the_limit_at_a_character_boundary() {
        let errors = vec!["é".repeat(2000)];
        let e = rejected_event(&errors);
        assert!(e.note.len() <= 1000 && e.note.ends_with("..."), "{}", e.note.len());
        assert_eq!(e.reason, "InvalidSpec");
    }
}
