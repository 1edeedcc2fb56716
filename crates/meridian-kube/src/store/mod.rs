//! The `StateStore` port on the API server, so `meridian kube` keeps its state in the cluster
//! and any replica that becomes leader resumes from it.
//!
//! ```text
//!   RolloutPlan/P .status.engine   one conditional write per commit (resourceVersion): the
//!                                  engine state, one intent per traffic change, the applied
//!                                  commands, the audit records until they are in their log
//!   ConfigMap meridian-audit-P-N   the plan's audit trail, append-only segments (log.rs)
//!   ConfigMap meridian-history-N   the controller's history (approvals, rejected edits, denials)
//!   ConfigMap meridian-approval-A  one approval record, with the source of its last grant
//!   Approval A (home namespace)    a grant made through the HTTP API (approvals.rs)
//!   RolloutCommand PLAN-KIND-*     a queued operator command (the API's, or one made with
//!                                  kubectl), until the commit that applied it
//! ```
//!
//! Where: a plan's own objects (its `.status.engine`, its audit segments, its commands) in
//! the plan's namespace; the controller's history and recorded approvals in the home
//! namespace (`crate::scope`; one and the same unless `--all-namespaces`).
//!
//! The contract is the embedded store's: a commit is one atomic write (a plan's status), an
//! intent is recorded before it is sent and completed only once the target confirmed it, a
//! command takes effect exactly once (the commit that applies it names it; its object is
//! deleted after), audit records are gapless and never rewritten (they move from the record
//! to the log idempotently, by seq).
//!
//! Concurrency and fencing: every write of a record is conditional on the resourceVersion
//! read. On a conflict the record is read again: a write by a newer leader term, or another
//! commit (the revision moved), refuses the write (`record::may_write`): this replica does
//! not overwrite, it reports a store failure, and a deposed leader stops. Only a change to
//! other fields (the reporter's conditions, a label) is retried. Writes are also refused
//! while the [`Fence`] says this replica may not act.
//!
//! The port is blocking (the runtime calls it on its blocking pool); each call runs its
//! requests on the runtime handle the store was made on.

mod approvals;
pub mod log;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt as _};
use meridian_core::approval::{ApprovalChange, ApprovalRecord, RevokedInfo, approval_change};
use meridian_core::chain::ChainPage;
use meridian_core::engine::{Action, UnitRef};
use meridian_core::ports::store::{
    ControllerEvent, Intent, IntentOutcome, QueuedCommand, StateStore, StoreFailure, StoreResult, StoredEvent,
};
use meridian_core::{AuditRecord, Command, PlanState};

use self::log::SegmentLog;
use self::record::{EngineRecord, IntentStatus};
use crate::crd::{RolloutCommandResource, RolloutCommandSpec, RolloutPlanResource};
use crate::scope::Namespaces;
use crate::status::RolloutPlanStatus;

/// Whether this replica may write, and in which leader term.
pub trait Fence: Send + Sync + 'static {
    /// The current term while this replica may act; `None` otherwise.
    fn term(&self) -> Option<u64>;
}

/// A single controller that always may act, in term 0 (no election).
pub struct Unfenced;

impl Fence for Unfenced {
    fn term(&self) -> Option<u64> {
        Some(0)
    }
}

/// A replica that never writes state (a follower): every state write is refused.
pub struct ReadOnly;

impl Fence for ReadOnly {
    fn term(&self) -> Option<u64> {
        None
    }
}

const KIND_LABEL: &str = "meridian.dev/kind";
const PLAN_LABEL: &str = "meridian.dev/plan";
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "meridian");
/// Conditional writes of one record tried before giving up (each after a re-read).
const ATTEMPTS: usize = 5;

/// See the module doc.
pub struct KubeStore {
    handle: tokio::runtime::Handle,
    client: Client,
    namespaces: Arc<Namespaces>,
    /// The home namespace's ConfigMaps: recorded approvals.
    maps: Api<ConfigMap>,
    fence: Arc<dyn Fence>,
    /// The last record read or written per plan, with the object it came in. One lock per plan
    /// serialises that plan's writes in this process.
    records: Mutex<HashMap<String, Arc<Mutex<Option<Cached>>>>>,
    /// Per plan, the seq through which the audit log is known to hold the records.
    flushed: Mutex<HashMap<String, u64>>,
    /// Which plan an intent id belongs to, and which command object a command id names.
    intents: Mutex<HashMap<i64, String>>,
    commands: Mutex<HashMap<i64, String>>,
    /// Plans whose record another writer moved: no commit until `load_state` read it again
    /// (the caller re-decides from it, never overwrites it).
    stale: Mutex<std::collections::HashSet<String>>,
    history: SegmentLog,
}

#[derive(Clone)]
struct Cached {
    object: RolloutPlanResource,
    record: EngineRecord,
}

fn failure(what: &str, e: impl std::fmt::Display) -> StoreFailure {
    StoreFailure { message: format!("{what}: {e}") }
}

/// The guard of `m`, poisoned or not (a panicked holder leaves plain data behind).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A valid object name `meridian-KIND-NAME`, or `meridian-KIND-h<hash>` when `name` would not
/// make one (upper case, too long, odd characters).
pub fn object_name(kind: &str, name: &str) -> String {
    let plain = format!("meridian-{kind}-{name}");
    let valid = plain.len() <= 200
        && plain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && plain.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid { plain } else { format!("meridian-{kind}-h{:016x}", record::intent_id(name)) }
}

/// The start of a command object's name: the plan's name when it makes a valid one.
fn command_prefix(plan: &str) -> String {
    let fits = plan.len() <= 40 && plan.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if fits { plan.to_string() } else { format!("h{:016x}", record::intent_id(plan)) }
}

/// A label value for `name` (63 characters at most): itself when it fits, else its hash.
fn label_value(name: &str) -> String {
    let fits = name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if fits { name.to_string() } else { format!("h{:016x}", record::intent_id(name)) }
}

fn labels(kind: &str, plan: Option<&str>) -> BTreeMap<String, String> {
    let mut l =
        BTreeMap::from([(KIND_LABEL.to_string(), kind.to_string()), (MANAGED.0.to_string(), MANAGED.1.to_string())]);
    if let Some(plan) = plan {
        l.insert(PLAN_LABEL.to_string(), label_value(plan));
    }
    l
}

impl KubeStore {
    /// A store in `namespace`; must be made inside a tokio runtime (its handle runs the
    /// requests of the blocking calls).
    pub fn new(client: Client, namespace: &str, fence: Arc<dyn Fence>) -> Result<Self, StoreFailure> {
        KubeStore::with_namespaces(client, Arc::new(Namespaces::one(namespace)), fence)
    }

    /// A store whose plans live where `namespaces` says (the source fills it as it loads).
    pub fn with_namespaces(
        client: Client,
        namespaces: Arc<Namespaces>,
        fence: Arc<dyn Fence>,
    ) -> Result<Self, StoreFailure> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| failure("the Kubernetes store needs a tokio runtime", e))?;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespaces.home());
        Ok(KubeStore {
            handle,
            client,
            namespaces,
            history: SegmentLog::new(maps.clone(), "meridian-history".to_string(), "event"),
            maps,
            fence,
            records: Mutex::new(HashMap::new()),
            flushed: Mutex::new(HashMap::new()),
            intents: Mutex::new(HashMap::new()),
            commands: Mutex::new(HashMap::new()),
            stale: Mutex::new(std::collections::HashSet::new()),
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    fn term(&self) -> StoreResult<u64> {
        self.fence.term().ok_or_else(|| StoreFailure {
            message: "this replica is not the leader (or its lease lapsed); it may not write".into(),
        })
    }

    fn slot(&self, plan: &str) -> Arc<Mutex<Option<Cached>>> {
        lock(&self.records).entry(plan.to_string()).or_default().clone()
    }

    /// `K` in the namespace of the plan `plan`, and that namespace.
    fn plan_api<K>(&self, plan: &str) -> StoreResult<(Api<K>, String)>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.namespaces.plan_api(&self.client, plan).ok_or_else(|| StoreFailure {
            message: format!("no RolloutPlan named {plan} is watched in {}", self.namespaces.describe()),
        })
    }

    fn audit_log(&self, plan: &str) -> StoreResult<SegmentLog> {
        let (maps, _) = self.plan_api::<ConfigMap>(plan)?;
        Ok(SegmentLog::new(maps, object_name("audit", plan), "audit"))
    }

    /// The plan's object and record as the API server has them now.
    async fn read(&self, plan: &str) -> StoreResult<Option<Cached>> {
        let Some((plans, namespace)) = self.namespaces.plan_api::<RolloutPlanResource>(&self.client, plan) else {
            return Ok(None);
        };
        let Some(object) =
            plans.get_opt(plan).await.map_err(|e| failure(&format!("read RolloutPlan {namespace}/{plan}"), e))?
        else {
            return Ok(None);
        };
        let record = match object.status.as_ref().and_then(|s| s.engine.clone()) {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| failure(&format!("RolloutPlan {plan} has an unreadable .status.engine"), e))?,
            None => EngineRecord::default(),
        };
        Ok(Some(Cached { object, record }))
    }

    /// Write `change(record)` as the plan's record, conditionally; re-read and retry only when
    /// the conflict was not another writer's record (see the module doc). `change` returns the
    /// new record and a value for the caller, or `None` when there is nothing to write.
    fn write_record<T>(
        &self,
        plan: &str,
        mut change: impl FnMut(&EngineRecord) -> StoreResult<Option<(EngineRecord, T)>>,
        check_revision: bool,
    ) -> StoreResult<Option<T>> {
        let term = self.term()?;
        let slot = self.slot(plan);
        let mut cached = lock(&slot);
        self.block_on(async {
            for _ in 0..ATTEMPTS {
                let current = match cached.clone() {
                    Some(c) => c,
                    None => self.read(plan).await?.ok_or_else(|| StoreFailure {
                        message: format!("RolloutPlan {plan} is gone from {}", self.namespaces.describe()),
                    })?,
                };
                // Fenced also when the newer leader's record was read without a conflict.
                if let Err(refused) = record::may_write(&current.record, current.record.revision, term) {
                    *cached = None;
                    lock(&self.stale).insert(plan.to_string());
                    return Err(failure(&format!("write the state of RolloutPlan {plan}"), refused));
                }
                let Some((next, out)) = change(&current.record)? else { return Ok(None) };
                let mut object = current.object.clone();
                let mut status = object.status.take().unwrap_or_default();
                status.engine = Some(serde_json::to_value(&next).map_err(|e| failure("encode the engine record", e))?);
                object.status = Some(status);
                let (plans, _) = self.plan_api::<RolloutPlanResource>(plan)?;
                match plans.replace_status(plan, &PostParams::default(), &object).await {
                    Ok(written) => {
                        *cached = Some(Cached { object: written, record: next });
                        return Ok(Some(out));
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let fresh = self
                            .read(plan)
                            .await?
                            .ok_or_else(|| StoreFailure { message: format!("RolloutPlan {plan} was deleted") })?;
                        let read = if check_revision { current.record.revision } else { fresh.record.revision };
                        record::may_write(&fresh.record, read, term).map_err(|r| {
                            *cached = None;
                            lock(&self.stale).insert(plan.to_string());
                            failure(&format!("write the state of RolloutPlan {plan}"), r)
                        })?;
                        *cached = Some(fresh);
                    }
                    Err(e) => {
                        *cached = None;
                        return Err(failure(&format!("write the state of RolloutPlan {plan}"), e));
                    }
                }
            }
            Err(StoreFailure {
                message: format!("RolloutPlan {plan}: the status kept changing; gave up after {ATTEMPTS} tries"),
            })
        })
    }

    /// Move the plan's unflushed audit records into its log; remember how far it got.
    fn flush_audit(&self, plan: &str, records: &[AuditRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        // A deposed leader leaves them in the record for the next one to move.
        self.term()?;
        let entries = records
            .iter()
            .map(|r| serde_json::to_string(r).map(|json| (r.seq, json)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failure("encode an audit record", e))?;
        self.block_on(self.audit_log(plan)?.append(&entries))
            .map_err(|e| failure(&format!("append to the audit log of {plan}"), e))?;
        let last = records.iter().map(|r| r.seq).max().unwrap_or(0);
        lock(&self.flushed).insert(plan.to_string(), last);
        Ok(())
    }

    fn all_records(&self) -> StoreResult<Vec<(String, EngineRecord)>> {
        let plans: Api<RolloutPlanResource> = self.namespaces.watched_api(&self.client);
        let list = self
            .block_on(plans.list(&ListParams::default()))
            .map_err(|e| failure(&format!("list RolloutPlans in {}", self.namespaces.describe()), e))?;
        let mut out = Vec::new();
        for object in list.items {
            let name = object.name_any();
            // Only the plan that runs under its name (not a refused duplicate elsewhere).
            if !self.namespaces.is_running(&object.namespace().unwrap_or_default(), &name) {
                continue;
            }
            if let Some(value) = object.status.and_then(|s: RolloutPlanStatus| s.engine) {
                let record: EngineRecord = serde_json::from_value(value)
                    .map_err(|e| failure(&format!("RolloutPlan {name} has an unreadable .status.engine"), e))?;
                out.push((name, record));
            }
        }
        Ok(out)
    }

    fn record_of(&self, plan: &str) -> StoreResult<EngineRecord> {
        let slot = self.slot(plan);
        let mut cached = lock(&slot);
        if cached.is_none() {
            *cached = self.block_on(self.read(plan))?;
        }
        Ok(cached.as_ref().map(|c| c.record.clone()).unwrap_or_default())
    }

    fn settle(&self, id: i64, status: IntentStatus) -> StoreResult<()> {
        let plan = match lock(&self.intents).get(&id).cloned() {
            Some(plan) => plan,
            None => match self
                .all_records()?
                .into_iter()
                .find(|(_, r)| r.intents.iter().any(|i| record::intent_id(&i.key) == id))
            {
                Some((plan, _)) => plan,
                None => return Ok(()),
            },
        };
        self.write_record(&plan, |r| Ok(record::settle(r, id, status.clone()).map(|next| (next, ()))), false)?;
        Ok(())
    }

    /// A plan's state as the API server holds it now, read without taking it over (no cache,
    /// no audit moved): what a follower shows.
    pub fn peek_state(&self, plan: &str) -> StoreResult<Option<PlanState>> {
        Ok(self.block_on(self.read(plan))?.and_then(|c| c.record.state))
    }

    fn approval_maps(&self) -> StoreResult<Vec<(ConfigMap, ApprovalRecord, String)>> {
        let lp = ListParams::default().labels(&format!("{KIND_LABEL}=approval"));
        let list = self.block_on(self.maps.list(&lp)).map_err(|e| failure("list approvals", e))?;
        list.items
            .into_iter()
            .map(|cm| {
                let data = cm.data.clone().unwrap_or_default();
                let record: ApprovalRecord = serde_json::from_str(data.get("record").map_or("", String::as_str))
                    .map_err(|e| failure(&format!("ConfigMap {} holds no readable approval", cm.name_any()), e))?;
                Ok((cm, record, data.get("source").cloned().unwrap_or_default()))
            })
            .collect()
    }

    /// Write an approval record (conditionally on `existing`'s resourceVersion) and its
    /// history event.
    fn write_approval(
        &self,
        existing: Option<ConfigMap>,
        record: &ApprovalRecord,
        change: ApprovalChange,
        source: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let json = serde_json::to_string(record).map_err(|e| failure("encode an approval", e))?;
        let data = BTreeMap::from([("record".to_string(), json), ("source".to_string(), source.to_string())]);
        let name = object_name("approval", &record.name);
        let written = self.block_on(async {
            match existing {
                Some(mut cm) => {
                    cm.data = Some(data);
                    self.maps.replace(&name, &PostParams::default(), &cm).await.map(|_| ())
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(labels("approval", None)),
                            ..ObjectMeta::default()
                        },
                        data: Some(data),
                        ..ConfigMap::default()
                    };
                    self.maps.create(&PostParams::default(), &cm).await.map(|_| ())
                }
            }
        });
        match written {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
            Err(e) => return Err(failure(&format!("record approval {}", record.name), e)),
        }
        let kind = match change {
            ApprovalChange::Granted => "granted",
            ApprovalChange::Updated => "updated",
            ApprovalChange::Revoked | ApprovalChange::Unchanged => "revoked",
        };
        let reason = record.revoked.as_ref().and_then(|r| r.reason.clone());
        self.record_event(&ControllerEvent {
            at,
            kind: format!("approval-{kind}"),
            who: by.to_string(),
            detail: serde_json::json!({
                "approval": record.name, "flag": record.flag, "source": source, "reason": reason, "record": record,
            }),
        })?;
        Ok(true)
    }
}

impl StateStore for KubeStore {
    fn load_state(&self, plan: &str) -> StoreResult<Option<PlanState>> {
        // Known again from the record read now (the name may have changed namespace since).
        lock(&self.flushed).remove(plan);
        let slot = self.slot(plan);
        let mut cached = lock(&slot);
        *cached = self.block_on(self.read(plan))?;
        lock(&self.stale).remove(plan);
        let Some(current) = cached.as_ref() else { return Ok(None) };
        for intent in &current.record.intents {
            lock(&self.intents).insert(record::intent_id(&intent.key), plan.to_string());
        }
        let (state, unflushed) = (current.record.state.clone(), current.record.unflushed_audit.clone());
        drop(cached);
        // A leader that stopped between its commit and its log append left records behind.
        if let Err(e) = self.flush_audit(plan, &unflushed) {
            crate::log_line(&format!("kubernetes store: {}", e.message));
        }
        Ok(state)
    }

    fn commit(
        &self,
        plan: &str,
        state: &PlanState,
        audit: &[AuditRecord],
        actions: &[Action],
        applied_commands: &[i64],
        _at: DateTime<Utc>,
    ) -> StoreResult<Vec<Intent>> {
        let term = self.term()?;
        if lock(&self.stale).contains(plan) {
            return Err(StoreFailure {
                message: format!(
                    "RolloutPlan {plan}: another writer's decision is in the record; read it again (load_state) and \
                     decide from it"
                ),
            });
        }
        let applied: Vec<String> = {
            let names = lock(&self.commands);
            applied_commands.iter().filter_map(|id| names.get(id).cloned()).collect()
        };
        let flushed = lock(&self.flushed).get(plan).copied().unwrap_or(0);
        let written = self.write_record(
            plan,
            |r| {
                let (next, created) = record::commit(r, plan, state, audit, actions, &applied, term)
                    .map_err(|e| failure(&format!("commit RolloutPlan {plan}"), e))?;
                let unflushed = next.unflushed_audit.clone();
                Ok(Some((record::trimmed(&next, flushed), (created, unflushed))))
            },
            true,
        )?;
        let (created, unflushed) = written.unwrap_or_default();
        {
            let mut ids = lock(&self.intents);
            for intent in &created {
                ids.insert(intent.id, plan.to_string());
            }
        }
        // Durable already (in the record); the log catches up now or at the next commit.
        if let Err(e) = self.flush_audit(plan, &unflushed) {
            crate::log_line(&format!("kubernetes store: {}", e.message));
        }
        let (commands_api, _) = self.plan_api::<RolloutCommandResource>(plan)?;
        for name in &applied {
            let deleted = self.block_on(commands_api.delete(name, &DeleteParams::default()));
            if let Err(e) = deleted.map(|_| ()).or_else(|e| match e {
                kube::Error::Api(s) if s.code == 404 => Ok(()),
                e => Err(e),
            }) {
                crate::log_line(&format!(
                    "kubernetes store: delete the applied command {name}: {e} (it stays applied)"
                ));
            }
        }
        Ok(created)
    }

    fn open_intents(&self) -> StoreResult<Vec<Intent>> {
        let mut out = Vec::new();
        for (plan, record) in self.all_records()? {
            for intent in record.intents.iter().filter(|i| i.is_open()) {
                lock(&self.intents).insert(record::intent_id(&intent.key), plan.clone());
                out.push(intent.to_intent(&plan));
            }
        }
        Ok(out)
    }

    fn unconfirmed(&self, plan: &str) -> StoreResult<Vec<UnitRef>> {
        Ok(record::unconfirmed(&self.record_of(plan)?))
    }

    fn mark_sent(&self, id: i64, _at: DateTime<Utc>) -> StoreResult<()> {
        self.settle(id, IntentStatus::Sent)
    }

    /// Whether the intent is still open after the mark, in the record as this writer holds it.
    fn mark_sending(&self, id: i64, at: DateTime<Utc>) -> StoreResult<bool> {
        self.mark_sent(id, at)?;
        let Some(plan) = lock(&self.intents).get(&id).cloned() else { return Ok(true) };
        Ok(self.record_of(&plan)?.intents.iter().any(|i| record::intent_id(&i.key) == id && i.is_open()))
    }

    fn complete(&self, id: i64, outcome: IntentOutcome, _at: DateTime<Utc>) -> StoreResult<()> {
        self.settle(id, record::outcome_status(outcome))
    }

    fn enqueue_command(&self, plan: &str, command: &Command) -> StoreResult<i64> {
        let resource = RolloutCommandResource {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-{}-", command_prefix(plan), command.kind)),
                labels: Some(labels("command", Some(plan))),
                ..ObjectMeta::default()
            },
            spec: RolloutCommandSpec {
                plan: plan.to_string(),
                command: command.kind,
                wave: command.wave.clone(),
                region: command.region.clone(),
                by: command.by.clone(),
                freeze: command.freeze.clone(),
                unfreeze: command.unfreeze.clone(),
                full: command.full,
            },
        };
        let (commands_api, _) = self.plan_api::<RolloutCommandResource>(plan)?;
        let created = self
            .block_on(commands_api.create(&PostParams::default(), &resource))
            .map_err(|e| failure(&format!("queue a command for {plan}"), e))?;
        let name = created.name_any();
        let id = record::intent_id(&name);
        lock(&self.commands).insert(id, name);
        Ok(id)
    }

    fn pending_commands(&self, plan: &str) -> StoreResult<Vec<QueuedCommand>> {
        let applied = self.record_of(plan)?.applied_commands;
        let (commands_api, _) = self.plan_api::<RolloutCommandResource>(plan)?;
        let list = self
            .block_on(commands_api.list(&ListParams::default()))
            .map_err(|e| failure(&format!("list the RolloutCommands of {plan}"), e))?;
        let mut queued = Vec::new();
        for resource in list.items.into_iter().filter(|c| c.spec.plan == plan) {
            let name = resource.name_any();
            if applied.contains(&name) || resource.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let at = resource
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))
                .unwrap_or_default();
            let spec = resource.spec;
            let command = Command {
                kind: spec.command,
                wave: spec.wave,
                region: spec.region,
                by: spec.by,
                at,
                freeze: spec.freeze,
                unfreeze: spec.unfreeze,
                full: spec.full,
            };
            let id = record::intent_id(&name);
            lock(&self.commands).insert(id, name.clone());
            queued.push((at, name, QueuedCommand { id, command }));
        }
        queued.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(queued.into_iter().map(|(_, _, c)| c).collect())
    }

    fn approvals(&self) -> StoreResult<Vec<ApprovalRecord>> {
        let mut out: Vec<ApprovalRecord> = self.approval_maps()?.into_iter().map(|(_, r, _)| r).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn put_approval(&self, approval: &ApprovalRecord, source: &str, by: &str, at: DateTime<Utc>) -> StoreResult<()> {
        // A grant through the API becomes an Approval resource first (approvals.rs).
        let resource_source;
        let source = if source == "api" {
            resource_source = self.create_api_approval(approval, by)?;
            resource_source.as_str()
        } else {
            source
        };
        for _ in 0..ATTEMPTS {
            let existing = self.approval_maps()?.into_iter().find(|(_, r, _)| r.name == approval.name);
            let change = approval_change(existing.as_ref().map(|(_, r, _)| r), approval, source).map_err(
                |RevokedInfo { by, at, .. }| StoreFailure {
                    message: format!(
                        "approval {} was revoked by {by} at {at}; grant it under a new name",
                        approval.name
                    ),
                },
            )?;
            if change == ApprovalChange::Unchanged {
                return Ok(());
            }
            if self.write_approval(existing.map(|(cm, _, _)| cm), approval, change, source, by, at)? {
                return Ok(());
            }
        }
        Err(StoreFailure { message: format!("approval {} kept changing; gave up", approval.name) })
    }

    fn revoke_approval(&self, name: &str, by: &str, reason: Option<&str>, at: DateTime<Utc>) -> StoreResult<bool> {
        for _ in 0..ATTEMPTS {
            let Some((cm, mut record, _)) = self.approval_maps()?.into_iter().find(|(_, r, _)| r.name == name) else {
                return Ok(false);
            };
            if record.revoked.is_some() {
                // A retry finishes what a revocation left undone.
                self.delete_api_approval(name)?;
                return Ok(true);
            }
            record.revoked = Some(RevokedInfo { at, by: by.to_string(), reason: reason.map(str::to_string) });
            if self.write_approval(Some(cm), &record, ApprovalChange::Revoked, "revoke", by, at)? {
                self.delete_api_approval(name)?;
                return Ok(true);
            }
        }
        Err(StoreFailure { message: format!("approval {name} kept changing; gave up") })
    }

    fn source_approvals(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(self
            .approval_maps()?
            .into_iter()
            .filter(|(_, r, source)| r.revoked.is_none() && source != "api")
            .map(|(_, r, source)| (r.name, source))
            .collect())
    }

    fn audit(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let plans: Vec<String> = match plan {
            Some(p) => vec![p.to_string()],
            None => self.all_records()?.into_iter().map(|(p, _)| p).collect(),
        };
        let mut out = Vec::new();
        for p in plans {
            let logged = self
                .block_on(self.audit_log(&p)?.read(after, limit))
                .map_err(|e| failure(&format!("read the audit log of {p}"), e))?;
            let mut seen = 0;
            for (_, json) in logged {
                let r: AuditRecord = serde_json::from_str(&json).map_err(|e| failure("read an audit record", e))?;
                seen = seen.max(r.seq);
                out.push(r);
            }
            // Committed but not yet in the log.
            let record = self.record_of(&p)?;
            out.extend(record.unflushed_audit.into_iter().filter(|r| r.seq > after.max(seen)));
        }
        if plan.is_none() {
            out.sort_by(|a, b| (a.at, &a.plan, a.seq).cmp(&(b.at, &b.plan, b.seq)));
        }
        out.truncate(limit);
        Ok(out)
    }

    fn record_event(&self, event: &ControllerEvent) -> StoreResult<()> {
        let json = serde_json::to_string(event).map_err(|e| failure("encode an event", e))?;
        self.block_on(self.history.push(&json)).map_err(|e| failure("append to the controller history", e))?;
        Ok(())
    }

    fn events(&self, kind: &str) -> StoreResult<Vec<ControllerEvent>> {
        Ok(self.history(0, usize::MAX)?.into_iter().map(|e| e.event).filter(|e| e.kind == kind).collect())
    }

    /// One chain per plan (its audit log) and one for the controller's history (approval
    /// events, expiries, refusals, denials): `plan` picks a plan's, none the history's.
    fn chain(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Result<ChainPage, String>> {
        let (log, scope) = match plan {
            Some(p) => (self.audit_log(p)?, format!("plan {p}")),
            None => (self.history.clone(), "history".to_string()),
        };
        let entries =
            self.block_on(log.chain(after, limit)).map_err(|e| failure(&format!("read the chain of {scope}"), e))?;
        Ok(Ok(ChainPage { scope, entries, unchained: Vec::new() }))
    }

    fn history(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let after = u64::try_from(after.max(0)).unwrap_or(0);
        let page =
            self.block_on(self.history.read(after, limit)).map_err(|e| failure("read the controller history", e))?;
        page.into_iter()
            .map(|(id, json)| {
                let event: ControllerEvent = serde_json::from_str(&json).map_err(|e| failure("read an event", e))?;
                Ok(StoredEvent { id: i64::try_from(id).unwrap_or(i64::MAX), event })
            })
            .collect()
    }
}
