//! What a replica that does not lead answers through the same HTTP API and dashboard: the
//! plans, their state, approvals, audit and history read from the API server (refreshed every
//! 2 s, so at most that much behind the leader), the live event stream (`/api/v1/events`) fed
//! by the audit records each refresh finds past the last one it saw (none of the history
//! before the replica started, as on the leader), and commands made durable as
//! `RolloutCommand` resources for the leader to apply, exactly as on the leader. Grants and
//! revocations are the leader's (they are checked against the plans in force, signatures
//! included): a follower answers them 503, naming the leader. It decides nothing, writes no
//! state and actuates nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::ports::BoxFuture;
use meridian_core::ports::config::ConfigSource;
use meridian_core::ports::control::{AuditFeed, ControlError, ControlPlane, FeedItem, Readiness};
use meridian_core::ports::store::{ControllerEvent, StateStore, StoredEvent};
use meridian_core::snapshot::{ConfigStatus, PlanEntry, RejectedEdit, Snapshot};
use meridian_core::{AuditRecord, Command};

use crate::source::KubeSource;
use crate::store::KubeStore;

/// Who leads now, as last observed.
pub type Leader = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// See the module doc.
pub struct FollowerControl {
    source: Arc<KubeSource>,
    store: Arc<KubeStore>,
    leader: Leader,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The leader's `--expiry-warning`, for the plans' expiring approvals.
    expiry_warning: Option<chrono::TimeDelta>,
    /// The event stream's records, as the refreshes find them.
    feed: tokio::sync::broadcast::Sender<AuditRecord>,
    /// Per plan, the last audit seq sent to the stream.
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

/// Records one refresh reads for the stream, at most (the rest come with the next).
const FEED_PAGE: usize = 500;

/// How often the view is read again from the API server.
const REFRESH: Duration = Duration::from_secs(2);

impl FollowerControl {
    pub fn new(
        source: Arc<KubeSource>,
        store: Arc<KubeStore>,
        leader: Leader,
        expiry_warning: Option<chrono::TimeDelta>,
    ) -> Arc<Self> {
        let snapshot = RwLock::new(Arc::new(Snapshot::default()));
        let (feed, _) = tokio::sync::broadcast::channel(1024);
        Arc::new(FollowerControl { source, store, leader, snapshot, expiry_warning, feed, seen: Arc::default() })
    }

    /// Keep the view current until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.refresh().await;
            tokio::time::sleep(REFRESH).await;
        }
    }

    /// Read the plans (validated as the leader does), their state and the approvals.
    pub async fn refresh(&self) {
        let now = Utc::now();
        let previous = self.snapshot();
        let loaded = self.source.load(now).await;
        let store = self.store.clone();
        let (config, rejected) = match loaded {
            Ok(config) => (Some(config), None),
            Err(e) => (None, Some(RejectedEdit { at: now, errors: e.messages() })),
        };
        let plans: Vec<Arc<meridian_core::plan::Plan>> = match &config {
            Some(c) => c.plans.clone(),
            None => previous.plans.values().map(|e| e.plan.clone()).collect(),
        };
        let seen = self.seen.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut entries = std::collections::BTreeMap::new();
            let mut fresh = Vec::new();
            for plan in plans {
                let state = store.peek_state(&plan.name)?.unwrap_or_else(|| meridian_core::PlanState::new(&plan));
                fresh.extend(new_records(&store, &seen, &plan.name, state.audit_seq)?);
                entries.insert(
                    plan.name.clone(),
                    PlanEntry { plan, state: Arc::new(state), updated_at: now, wake_at: None },
                );
            }
            Ok::<_, meridian_core::ports::store::StoreFailure>((entries, store.approvals()?, fresh))
        })
        .await;
        let Ok(Ok((plans, approvals, fresh))) = read else { return };
        for record in fresh {
            // Nobody listening is not an error.
            let _ = self.feed.send(record);
        }
        let status = ConfigStatus {
            generation: config.as_ref().map_or(previous.config.generation, |c| c.generation),
            loaded_at: config.as_ref().map(|c| c.loaded_at).or(previous.config.loaded_at),
            warnings: config.as_ref().map_or(previous.config.warnings, |c| c.warnings.warnings()),
            rejected,
            last_edit: None,
        };
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(Snapshot { plans, approvals, config: status, expiry_warning: self.expiry_warning });
        }
    }

    fn not_here(&self, what: &str) -> ControlError {
        let leader = (self.leader)().unwrap_or_else(|| "being elected".into());
        ControlError::Unavailable(format!("{what} is done by the leader ({leader}); this replica follows"))
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KubeStore) -> Result<T, meridian_core::ports::store::StoreFailure> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, ControlError>> {
        let store = self.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(|e| ControlError::Store(e.to_string()))?
                .map_err(|e| ControlError::Store(e.message))
        })
    }
}

/// The audit records of `plan` committed since the last call (`last` is its latest seq); on
/// the first call for a plan, none: the stream starts now, as on the leader.
fn new_records(
    store: &KubeStore,
    seen: &Mutex<HashMap<String, u64>>,
    plan: &str,
    last: u64,
) -> Result<Vec<AuditRecord>, meridian_core::ports::store::StoreFailure> {
    let after = {
        let mut seen = crate::store::lock(seen);
        match seen.get(plan).copied() {
            None => {
                seen.insert(plan.to_string(), last);
                return Ok(Vec::new());
            }
            Some(after) if after >= last => return Ok(Vec::new()),
            Some(after) => after,
        }
    };
    let records: Vec<AuditRecord> =
        store.audit(Some(plan), after, FEED_PAGE)?.into_iter().filter(|r| r.seq > after).collect();
    if let Some(newest) = records.iter().map(|r| r.seq).max() {
        crate::store::lock(seen).insert(plan.to_string(), newest);
    }
    Ok(records)
}

/// A follower's audit feed: the records its refreshes find.
struct FollowerFeed(tokio::sync::broadcast::Receiver<AuditRecord>);

impl AuditFeed for FollowerFeed {
    fn next(&mut self) -> BoxFuture<'_, FeedItem> {
        Box::pin(async move {
            use tokio::sync::broadcast::error::RecvError;
            match self.0.recv().await {
                Ok(record) => FeedItem::Record(Box::new(record)),
                Err(RecvError::Lagged(skipped)) => FeedItem::Lagged(skipped),
                Err(RecvError::Closed) => FeedItem::Closed,
            }
        })
    }
}

impl ControlPlane for FollowerControl {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn subscribe(&self) -> Box<dyn AuditFeed> {
        Box::new(FollowerFeed(self.feed.subscribe()))
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn command(&self, plan: &str, command: Command) -> BoxFuture<'_, Result<(), ControlError>> {
        let plan = plan.to_string();
        Box::pin(async move {
            let entry = self.snapshot().plans.get(&plan).map(|e| e.plan.clone());
            let p = entry.ok_or_else(|| ControlError::UnknownPlan(plan.clone()))?;
            if let Some(problem) = meridian_core::command::scope_problem(&p, &command) {
                return Err(ControlError::Invalid(problem));
            }
            // Durable in the API server before the answer; the leader's watch applies it.
            self.blocking(move |s| s.enqueue_command(&plan, &command).map(|_| ())).await
        })
    }

    fn grant(&self, _approval: ApprovalRecord, _by: &str) -> BoxFuture<'_, Result<(), ControlError>> {
        let e = self.not_here("granting an approval");
        Box::pin(async move { Err(e) })
    }

    fn approvals(&self) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, ControlError>> {
        self.blocking(|s| s.approvals())
    }

    fn revoke(&self, _name: &str, _by: &str, _reason: Option<String>) -> BoxFuture<'_, Result<(), ControlError>> {
        let e = self.not_here("revoking an approval");
        Box::pin(async move { Err(e) })
    }

    fn audit(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>, ControlError>> {
        let plan = plan.map(str::to_string);
        self.blocking(move |s| s.audit(plan.as_deref(), after, limit))
    }

    fn history(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>, ControlError>> {
        self.blocking(move |s| s.history(after, limit))
    }

    fn chain(
        &self,
        plan: Option<&str>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<meridian_core::chain::ChainPage, ControlError>> {
        let plan = plan.map(str::to_string);
        let page = self.blocking(move |s| s.chain(plan.as_deref(), after, limit));
        Box::pin(async move { page.await?.map_err(ControlError::Invalid) })
    }

    fn record_denial(&self, who: &str, what: &str, at: DateTime<Utc>) {
        let event = ControllerEvent {
            at,
            kind: "access-denied".into(),
            who: who.to_string(),
            detail: serde_json::json!({ "request": what }),
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.record_event(&event) {
                crate::log_line(&format!("could not record a denied request: {}", e.message));
            }
        });
    }

    fn metrics(&self) -> String {
        let leader = (self.leader)().unwrap_or_default().replace(['\\', '"', '\n'], "_");
        // The leader exports the same gauge at 1 (`meridian_controller::metrics::LEADER`, with
        // the same help text), so that an alert tells "no replica leads" from "none is up".
        format!(
            "# HELP meridian_leader 1 on the replica that leads (decides, writes state, actuates), 0 on the \
             others\n# TYPE meridian_leader gauge\nmeridian_leader{{leader=\"{leader}\"}} 0\n"
        )
    }

    fn readiness(&self) -> Readiness {
        Readiness { ready: true, reasons: Vec::new() }
    }
}
