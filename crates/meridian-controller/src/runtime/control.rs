//! The controller's `ControlPlane`: what the API reads (the published snapshot, the audit
//! feed, the store's approvals and history) and asks (commands, grants, revocations), each
//! made durable in the store before it returns, then a kick of the decision loop.

use super::*;
use meridian_core::approval::signature_refusal;

/// The audit feed port over the controller's broadcast channel.
struct BroadcastFeed(broadcast::Receiver<AuditRecord>);

impl AuditFeed for BroadcastFeed {
    fn next(&mut self) -> BoxFuture<'_, FeedItem> {
        Box::pin(async move {
            match self.0.recv().await {
                Ok(record) => FeedItem::Record(Box::new(record)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => FeedItem::Lagged(skipped),
                Err(broadcast::error::RecvError::Closed) => FeedItem::Closed,
            }
        })
    }
}

impl ControlPlane for Controller {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn subscribe(&self) -> Box<dyn AuditFeed> {
        Box::new(BroadcastFeed(self.audit_tx.subscribe()))
    }

    fn now(&self) -> DateTime<Utc> {
        self.adapters.clock.now()
    }

    fn command(&self, plan: &str, command: Command) -> BoxFuture<'_, Result<(), ControlError>> {
        let plan = plan.to_string();
        Box::pin(async move {
            let p = self.plan(&plan).ok_or_else(|| ControlError::UnknownPlan(plan.clone()))?;
            if let Some(problem) = meridian_core::command::scope_problem(&p, &command) {
                return Err(ControlError::Invalid(problem));
            }
            let store = self.store();
            blocking(move || store.enqueue_command(&plan, &command))
                .await
                .map_err(|e| ControlError::Store(e.message))?;
            self.kick();
            Ok(())
        })
    }

    fn grant(&self, approval: ApprovalRecord, by: &str) -> BoxFuture<'_, Result<(), ControlError>> {
        let by = by.to_string();
        let (name, flag, by_for_log) = (approval.name.clone(), approval.flag.clone(), by.clone());
        Box::pin(async move {
            if approval.flag.trim().is_empty()
                || approval.name.trim().is_empty()
                || approval.granted_by.trim().is_empty()
            {
                return Err(ControlError::Invalid("an approval needs a name, a flag and grantedBy".into()));
            }
            if let (Some(g), Some(e)) = (approval.granted_at, approval.expires)
                && e <= g
            {
                return Err(ControlError::Invalid("the approval expires before it is granted".into()));
            }
            // The same rule files and resources are judged by, against the plans in force.
            let plans: Vec<Arc<Plan>> = self.plans.read().map(|p| p.values().cloned().collect()).unwrap_or_default();
            if let Some((plan, problem)) = signature_refusal(plans.iter().map(AsRef::as_ref), &approval) {
                let message = format!("approval {:?} is refused by plan {plan:?}: {problem}", approval.name);
                self.refuse_approval(&approval, plan, &problem, "api", &by);
                return Err(ControlError::Invalid(format!("{message}; {}", problem.hint())));
            }
            // The store, not the published snapshot, is the truth: a grant made a moment ago
            // may not be published yet.
            let store = self.store();
            let now = self.now();
            let grants = self.grants.clone();
            let clock = self.adapters.clock.clone();
            let source = self.source.clone();
            let granted = blocking(move || {
                let mut recent = grants.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if store.approvals()?.iter().any(|a| a.name == approval.name) {
                    return Ok(Granted::Conflict(approval.name));
                }
                store.put_approval(&approval, "api", &by, now)?;
                // The grant is on record whatever this read says: unread, it counts as the
                // source's (a reload too many costs one read).
                let mirrored = store
                    .source_approvals()
                    .map_or(true, |owned| owned.iter().any(|(n, s)| *n == approval.name && source.owns(s)));
                if !mirrored {
                    return Ok(Granted::Kept);
                }
                // In Kubernetes mode the grant is an Approval resource, written before this
                // record: a configuration read before now may lack it (see the mirroring).
                recent.insert(approval.name, clock.now());
                Ok::<_, StoreFailure>(Granted::Mirrored)
            })
            .await
            .map_err(|e| ControlError::Store(e.message))?;
            match granted {
                Granted::Conflict(name) => return Err(ControlError::Conflict(name)),
                // The source decides from now on whether the grant stays, so it is read again
                // after the grant is on record: a resource deleted at once (before the source
                // noticed it was there) is seen gone, and the grant revoked.
                Granted::Mirrored => self.reload.notify_one(),
                Granted::Kept => {}
            }
            approval_line("granted over the API", &name, &flag, &by_for_log);
            self.kick();
            Ok(())
        })
    }

    fn approvals(&self) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, ControlError>> {
        Box::pin(async move {
            let store = self.store();
            blocking(move || store.approvals()).await.map_err(|e| ControlError::Store(e.message))
        })
    }

    fn revoke(&self, name: &str, by: &str, reason: Option<String>) -> BoxFuture<'_, Result<(), ControlError>> {
        let (name, by) = (name.to_string(), by.to_string());
        let who = by.clone();
        Box::pin(async move {
            let store = self.store();
            let now = self.now();
            let n = name.clone();
            let found = blocking(move || store.revoke_approval(&n, &by, reason.as_deref(), now))
                .await
                .map_err(|e| ControlError::Store(e.message))?;
            if !found {
                return Err(ControlError::UnknownApproval(name));
            }
            crate::log::line(
                Level::Info,
                "approval-revoked",
                &[("approval", &name), ("by", &who)],
                &format!("approval {name} revoked over the API by {who}"),
            );
            self.kick();
            Ok(())
        })
    }

    fn audit(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>, ControlError>> {
        let plan = plan.map(str::to_string);
        Box::pin(async move {
            let store = self.store();
            blocking(move || store.audit(plan.as_deref(), after, limit))
                .await
                .map_err(|e| ControlError::Store(e.message))
        })
    }

    fn history(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>, ControlError>> {
        Box::pin(async move {
            let store = self.store();
            blocking(move || store.history(after, limit)).await.map_err(|e| ControlError::Store(e.message))
        })
    }

    fn chain(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<meridian_core::chain::ChainPage, ControlError>> {
        let plan = plan.map(str::to_string);
        Box::pin(async move {
            let store = self.store();
            blocking(move || store.chain(plan.as_deref(), after, limit))
                .await
                .map_err(|e| ControlError::Store(e.message))?
                .map_err(ControlError::Invalid)
        })
    }

    fn record_denial(&self, who: &str, what: &str, at: DateTime<Utc>) {
        self.record_event_at("access-denied", who, serde_json::json!({ "request": what }), at);
    }

    fn metrics(&self) -> String {
        // Gauges are refreshed at scrape time from the published snapshot, so they are right
        // after a restart and seconds-to-expiry counts down between decisions.
        self.metrics.scrape(&self.snapshot(), self.now())
    }

    fn readiness(&self) -> Readiness {
        self.problems.readiness()
    }
}

/// How a grant through the API went.
enum Granted {
    /// An approval of that name is on record already.
    Conflict(String),
    /// Recorded as the configuration source's (a Kubernetes resource): the source keeps it.
    Mirrored,
    /// Recorded as the API's own.
    Kept,
}
