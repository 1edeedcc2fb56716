//! An in-memory `ControlPlane` for tests of the API and of its clients: plans from YAML,
//! commands and approvals applied to the published snapshot at once, audit records kept in a
//! list and broadcast, denials and commands remembered for assertions.
//!
//! It decides nothing: tests move plan states by hand with [`FakeControl::update`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use meridian_core::approval::{ApprovalRecord, RevokedInfo};
use meridian_core::ports::BoxFuture;
use meridian_core::ports::control::{AuditFeed, ControlError, ControlPlane, FeedItem, Readiness};
use meridian_core::ports::store::{ControllerEvent, StoredEvent};
use meridian_core::snapshot::{PlanEntry, Snapshot};
use meridian_core::state::RuntimeFreeze;
use meridian_core::{AuditEvent, AuditRecord, Cause, Command, CommandKind, PlanState};
use tokio::sync::broadcast;

/// A denial passed to `record_denial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub who: String,
    pub what: String,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
struct Inner {
    snapshot: Arc<Snapshot>,
    audit: Vec<AuditRecord>,
    commands: Vec<(String, Command)>,
    denials: Vec<Denial>,
    readiness: Option<Readiness>,
    fail_with: Option<ControlError>,
    stall: Option<std::time::Duration>,
    /// How often the snapshot was read (every API read goes through it).
    snapshot_reads: usize,
}

pub struct FakeControl {
    inner: Mutex<Inner>,
    audit_tx: broadcast::Sender<AuditRecord>,
}

impl FakeControl {
    /// Plans and approvals from manifests (YAML, several documents), every unit pending.
    ///
    /// # Panics
    /// When the YAML does not validate: a test's fixture is wrong.
    pub fn from_yaml(yaml: &str) -> Arc<Self> {
        let bundle = meridian_core::validate::load(&[("fixture.yaml".to_string(), yaml.to_string())], None);
        assert!(!bundle.report.has_errors(), "fixture does not validate: {:?}", bundle.report.diagnostics);
        let now = Utc::now();
        let plans: BTreeMap<String, PlanEntry> = bundle
            .plans
            .into_iter()
            .map(|plan| {
                let state = PlanState::new(&plan);
                (
                    plan.name.clone(),
                    PlanEntry { plan: Arc::new(plan), state: Arc::new(state), updated_at: now, wake_at: None },
                )
            })
            .collect();
        let snapshot = Snapshot { plans, approvals: bundle.approvals, ..Snapshot::default() };
        let (audit_tx, _) = broadcast::channel(256);
        Arc::new(FakeControl {
            inner: Mutex::new(Inner { snapshot: Arc::new(snapshot), ..Inner::default() }),
            audit_tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How often the published snapshot was read: a test waits on it to know a client has
    /// seen the state before it changes the state.
    pub fn snapshot_reads(&self) -> usize {
        self.lock().snapshot_reads
    }

    /// Change a plan's state, as a decision would.
    pub fn update(&self, plan: &str, change: impl FnOnce(&mut PlanState)) {
        let mut inner = self.lock();
        let snapshot = Arc::make_mut(&mut inner.snapshot);
        if let Some(entry) = snapshot.plans.get_mut(plan) {
            change(Arc::make_mut(&mut entry.state));
            entry.updated_at = Utc::now();
        }
    }

    /// Append an audit record (its `seq` is assigned) and broadcast it.
    pub fn commit(&self, mut record: AuditRecord) -> AuditRecord {
        let mut inner = self.lock();
        record.seq = inner.audit.iter().filter(|r| r.plan == record.plan).count() as u64 + 1;
        inner.audit.push(record.clone());
        let _ = self.audit_tx.send(record.clone());
        record
    }

    pub fn commands(&self) -> Vec<(String, Command)> {
        self.lock().commands.clone()
    }

    pub fn denials(&self) -> Vec<Denial> {
        self.lock().denials.clone()
    }

    /// Publish this configuration status (e.g. a rejected edit).
    pub fn set_config(&self, config: meridian_core::snapshot::ConfigStatus) {
        let mut inner = self.lock();
        let mut snapshot = (*inner.snapshot).clone();
        snapshot.config = config;
        inner.snapshot = Arc::new(snapshot);
    }

    pub fn set_readiness(&self, readiness: Readiness) {
        self.lock().readiness = Some(readiness);
    }

    /// The next control request fails with `error`.
    pub fn fail_next(&self, error: ControlError) {
        self.lock().fail_with = Some(error);
    }

    /// The next command takes this long to be recorded (a slow store).
    pub fn stall_next(&self, delay: std::time::Duration) {
        self.lock().stall = Some(delay);
    }

    fn take_failure(&self) -> Result<(), ControlError> {
        self.lock().fail_with.take().map_or(Ok(()), Err)
    }
}

fn command_record(plan: &str, command: &Command) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: command.at,
        plan: plan.to_string(),
        wave: command.wave.clone(),
        region: command.region.clone(),
        service: None,
        event: AuditEvent::Command { command: command.kind, by: command.by.clone() },
        cause: Cause::Command { command: command.kind, by: command.by.clone() },
    }
}

/// What a pause, resume or abort does to the pause and abort sets, and a freeze or unfreeze
/// to the run-time freezes; promote and retry leave them alone (the engine would act on them
/// at its next decision).
fn apply(state: &mut PlanState, command: &Command) {
    match (command.kind, &command.wave, &command.region) {
        (CommandKind::Pause, None, None) => state.paused.plan = true,
        (CommandKind::Pause, Some(w), _) => _ = state.paused.waves.insert(w.clone()),
        (CommandKind::Pause, None, Some(r)) => _ = state.paused.regions.insert(r.clone()),
        (CommandKind::Resume, None, None) => state.paused.plan = false,
        (CommandKind::Resume, Some(w), _) => _ = state.paused.waves.remove(w),
        (CommandKind::Resume, None, Some(r)) => _ = state.paused.regions.remove(r),
        (CommandKind::Abort, None, Some(r)) => _ = state.aborted_regions.insert(r.clone()),
        (CommandKind::Abort, _, _) => state.aborted = true,
        (CommandKind::Freeze, wave, region) => {
            let Some(request) = &command.freeze else { return };
            state.freezes.retain(|f| f.name != request.name);
            state.freezes.push(RuntimeFreeze {
                name: request.name.clone(),
                reason: request.reason.clone(),
                by: command.by.clone(),
                at: command.at,
                until: request.until,
                wave: wave.clone(),
                region: region.clone(),
            });
        }
        (CommandKind::Unfreeze, _, _) => {
            state.freezes.retain(|f| command.unfreeze.as_ref().is_some_and(|n| *n != f.name));
        }
        (CommandKind::Promote | CommandKind::Retry, _, _) => {}
    }
}

/// The fake's audit feed: its broadcast channel.
struct FakeFeed(broadcast::Receiver<AuditRecord>);

impl AuditFeed for FakeFeed {
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

impl ControlPlane for FakeControl {
    fn snapshot(&self) -> Arc<Snapshot> {
        let mut inner = self.lock();
        inner.snapshot_reads += 1;
        inner.snapshot.clone()
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn subscribe(&self) -> Box<dyn AuditFeed> {
        Box::new(FakeFeed(self.audit_tx.subscribe()))
    }

    fn command(&self, plan: &str, command: Command) -> BoxFuture<'_, Result<(), ControlError>> {
        let plan = plan.to_string();
        Box::pin(async move {
            let stall = self.lock().stall.take();
            if let Some(delay) = stall {
                tokio::time::sleep(delay).await;
            }
            self.take_failure()?;
            if !self.snapshot().plans.contains_key(&plan) {
                return Err(ControlError::UnknownPlan(plan));
            }
            self.update(&plan, |state| apply(state, &command));
            self.lock().commands.push((plan.clone(), command.clone()));
            self.commit(command_record(&plan, &command));
            Ok(())
        })
    }

    fn grant(&self, approval: ApprovalRecord, _by: &str) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move {
            self.take_failure()?;
            let mut inner = self.lock();
            if inner.snapshot.approvals.iter().any(|a| a.name == approval.name) {
                return Err(ControlError::Conflict(approval.name));
            }
            Arc::make_mut(&mut inner.snapshot).approvals.push(approval);
            Ok(())
        })
    }

    fn approvals(&self) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, ControlError>> {
        Box::pin(async move {
            self.take_failure()?;
            Ok(self.lock().snapshot.approvals.clone())
        })
    }

    fn revoke(&self, name: &str, by: &str, reason: Option<String>) -> BoxFuture<'_, Result<(), ControlError>> {
        let (name, by) = (name.to_string(), by.to_string());
        Box::pin(async move {
            self.take_failure()?;
            let mut inner = self.lock();
            let snapshot = Arc::make_mut(&mut inner.snapshot);
            let approval =
                snapshot.approvals.iter_mut().find(|a| a.name == name).ok_or(ControlError::UnknownApproval(name))?;
            approval.revoked = Some(RevokedInfo { at: Utc::now(), by, reason });
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
            self.take_failure()?;
            Ok(self
                .lock()
                .audit
                .iter()
                .filter(|r| plan.as_ref().is_none_or(|p| *p == r.plan) && r.seq > after)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn history(&self, after: i64, limit: usize) -> BoxFuture<'_, Result<Vec<StoredEvent>, ControlError>> {
        Box::pin(async move {
            self.take_failure()?;
            // The fake's history is its denials, in order.
            Ok(self
                .lock()
                .denials
                .iter()
                .zip(1_i64..)
                .filter(|(_, id)| *id > after)
                .take(limit)
                .map(|(d, id)| StoredEvent {
                    id,
                    event: ControllerEvent {
                        at: d.at,
                        kind: "access-denied".into(),
                        who: d.who.clone(),
                        detail: serde_json::json!({ "request": d.what }),
                    },
                })
                .collect())
        })
    }

    fn record_denial(&self, who: &str, what: &str, at: DateTime<Utc>) {
        self.lock().denials.push(Denial { who: who.to_string(), what: what.to_string(), at });
    }

    fn metrics(&self) -> String {
        let inner = self.lock();
        let mut text = String::from("# TYPE meridian_fake_plans gauge\n");
        text.push_str(&format!("meridian_fake_plans {}\n", inner.snapshot.plans.len()));
        text
    }

    fn readiness(&self) -> Readiness {
        self.lock().readiness.clone().unwrap_or(Readiness { ready: true, reasons: Vec::new() })
    }
}
