//! An in-memory [`StateStore`] with the same contract as the database-backed one (atomic
//! commits, gapless audit, intents superseded per target). For tests of the run loop; it
//! keeps nothing across restarts, so `meridian run` never uses it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use meridian_core::approval::{ApprovalRecord, RevokedInfo};
use meridian_core::{Action, AuditRecord, Command, PlanState};

use crate::store::{
    ControllerEvent, Intent, IntentOutcome, PlanDecision, QueuedCommand, StateStore, StoreFailure, StoreResult,
    StoredEvent,
};

#[derive(Default)]
struct Inner {
    states: BTreeMap<String, PlanState>,
    audit: Vec<AuditRecord>,
    intents: Vec<(Intent, Option<IntentOutcome>)>,
    commands: Vec<(String, QueuedCommand, bool)>,
    approvals: BTreeMap<String, ApprovalRecord>,
    /// Where each approval's last grant came from.
    approval_sources: BTreeMap<String, String>,
    events: Vec<ControllerEvent>,
    next_id: i64,
}

/// See the module doc.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Every write fails while set: a full disk, a read-only file, for tests.
    failing: std::sync::atomic::AtomicBool,
    /// How often each plan's pending commands were read: once per decision of the plan.
    command_reads: Mutex<BTreeMap<String, usize>>,
    /// How many decisions each `commit_all` was handed, in order.
    commit_passes: Mutex<Vec<usize>>,
    /// Where a grant through the API is recorded from, if not `api`: see [`Self::mirroring_api_grants`].
    api_source_prefix: Option<String>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> StoreResult<T>) -> StoreResult<T> {
        let mut inner = self.inner.lock().map_err(|_| StoreFailure { message: "memory store poisoned".into() })?;
        f(&mut inner)
    }

    /// A store that records a grant through the API as a resource of the configuration
    /// source, under `PREFIX + name`, as the Kubernetes store does (it writes an Approval
    /// resource first): the source's next reads decide whether the grant stays.
    pub fn mirroring_api_grants(prefix: &str) -> Self {
        MemoryStore { api_source_prefix: Some(prefix.to_string()), ..MemoryStore::default() }
    }

    /// How often the pending commands of `plan` were read: the run loop does so once per
    /// decision of the plan, so tests count decisions with it.
    pub fn command_reads(&self, plan: &str) -> usize {
        self.command_reads.lock().map_or(0, |reads| reads.get(plan).copied().unwrap_or(0))
    }

    /// How many decisions each `commit_all` call was handed, in order: the run loop commits
    /// once per pass, so tests see its passes with it.
    pub fn commit_passes(&self) -> Vec<usize> {
        self.commit_passes.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// While `on`, every write fails (reads still work), as on a full disk.
    pub fn fail_writes(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> StoreResult<T>) -> StoreResult<T> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreFailure { message: "no space left on device (injected)".into() });
        }
        self.with(f)
    }

    /// Every controller event recorded so far.
    pub fn events(&self) -> Vec<ControllerEvent> {
        self.with(|i| Ok(i.events.clone())).unwrap_or_default()
    }

    /// Every intent with its outcome (`None` while open).
    pub fn intents(&self) -> Vec<(Intent, Option<IntentOutcome>)> {
        self.with(|i| Ok(i.intents.clone())).unwrap_or_default()
    }
}

impl StateStore for MemoryStore {
    fn load_state(&self, plan: &str) -> StoreResult<Option<PlanState>> {
        self.with(|i| Ok(i.states.get(plan).cloned()))
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
        self.write(|i| {
            let last = i.audit.iter().filter(|r| r.plan == plan).map(|r| r.seq).max().unwrap_or(0);
            if let Some((expected, got)) = meridian_core::audit::seq_gap(last, audit) {
                return Err(StoreFailure { message: format!("audit gap: expected seq {expected}, got {got}") });
            }
            i.states.insert(plan.to_string(), state.clone());
            i.audit.extend(audit.iter().cloned());
            for c in &mut i.commands {
                if applied_commands.contains(&c.1.id) {
                    c.2 = true;
                }
            }
            let mut created = Vec::new();
            for Action::SetTraffic { region, service, percent, .. } in actions {
                for (old, outcome) in &mut i.intents {
                    if outcome.is_none() && old.plan == plan && old.region == *region && old.service == *service {
                        *outcome = Some(IntentOutcome::Failed { error: "superseded".into() });
                    }
                }
                i.next_id += 1;
                let intent = Intent {
                    id: i.next_id,
                    plan: plan.to_string(),
                    region: region.clone(),
                    service: service.clone(),
                    percent: *percent,
                    idempotency_key: format!("{plan}/{region}/{service}/{}", i.next_id),
                };
                i.intents.push((intent.clone(), None));
                created.push(intent);
            }
            Ok(created)
        })
    }

    fn commit_all(&self, decisions: &[PlanDecision], at: DateTime<Utc>) -> Vec<StoreResult<Vec<Intent>>> {
        if let Ok(mut passes) = self.commit_passes.lock() {
            passes.push(decisions.len());
        }
        decisions
            .iter()
            .map(|d| self.commit(&d.plan, &d.state, &d.audit, &d.actions, &d.applied_commands, at))
            .collect()
    }

    fn open_intents(&self) -> StoreResult<Vec<Intent>> {
        self.with(|i| Ok(i.intents.iter().filter(|(_, o)| o.is_none()).map(|(x, _)| x.clone()).collect()))
    }

    fn unconfirmed(&self, plan: &str) -> StoreResult<Vec<meridian_core::UnitRef>> {
        self.with(|i| {
            let mut newest: BTreeMap<(String, String), (i64, bool)> = BTreeMap::new();
            for (intent, outcome) in i.intents.iter().filter(|(x, _)| x.plan == plan) {
                let done = matches!(outcome, Some(IntentOutcome::Done { .. }));
                let key = (intent.region.clone(), intent.service.clone());
                if newest.get(&key).is_none_or(|(id, _)| *id < intent.id) {
                    newest.insert(key, (intent.id, done));
                }
            }
            Ok(newest
                .into_iter()
                .filter(|(_, (_, done))| !done)
                .map(|((region, service), _)| meridian_core::UnitRef { region, service })
                .collect())
        })
    }

    fn mark_sent(&self, _id: i64, _at: DateTime<Utc>) -> StoreResult<()> {
        Ok(())
    }

    fn mark_sending(&self, id: i64, _at: DateTime<Utc>) -> StoreResult<bool> {
        self.with(|i| Ok(i.intents.iter().any(|(x, o)| x.id == id && o.is_none())))
    }

    fn complete(&self, id: i64, outcome: IntentOutcome, _at: DateTime<Utc>) -> StoreResult<()> {
        self.write(|i| {
            if let Some((_, o)) = i.intents.iter_mut().find(|(x, o)| x.id == id && o.is_none()) {
                *o = Some(outcome);
            }
            Ok(())
        })
    }

    fn enqueue_command(&self, plan: &str, command: &Command) -> StoreResult<i64> {
        self.write(|i| {
            i.next_id += 1;
            let id = i.next_id;
            i.commands.push((plan.to_string(), QueuedCommand { id, command: command.clone() }, false));
            Ok(id)
        })
    }

    fn pending_commands(&self, plan: &str) -> StoreResult<Vec<QueuedCommand>> {
        if let Ok(mut reads) = self.command_reads.lock() {
            *reads.entry(plan.to_string()).or_default() += 1;
        }
        self.write(|i| {
            Ok(i.commands.iter().filter(|(p, _, done)| p == plan && !done).map(|(_, c, _)| c.clone()).collect())
        })
    }

    fn approvals(&self) -> StoreResult<Vec<ApprovalRecord>> {
        self.with(|i| Ok(i.approvals.values().cloned().collect()))
    }

    fn put_approval(&self, approval: &ApprovalRecord, source: &str, by: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let mirrored;
        let source = match &self.api_source_prefix {
            Some(prefix) if source == "api" => {
                mirrored = format!("{prefix}{}", approval.name);
                mirrored.as_str()
            }
            _ => source,
        };
        self.write(|i| {
            i.approvals.insert(approval.name.clone(), approval.clone());
            i.approval_sources.insert(approval.name.clone(), source.to_string());
            i.events.push(ControllerEvent {
                at,
                kind: "approval-granted".into(),
                who: by.to_string(),
                detail: serde_json::json!({ "approval": approval.name, "flag": approval.flag, "source": source }),
            });
            Ok(())
        })
    }

    fn revoke_approval(&self, name: &str, by: &str, reason: Option<&str>, at: DateTime<Utc>) -> StoreResult<bool> {
        self.write(|i| {
            let Some(a) = i.approvals.get_mut(name) else { return Ok(false) };
            if a.revoked.is_none() {
                a.revoked = Some(RevokedInfo { at, by: by.to_string(), reason: reason.map(str::to_string) });
            }
            i.events.push(ControllerEvent {
                at,
                kind: "approval-revoked".into(),
                who: by.to_string(),
                detail: serde_json::json!({ "approval": name, "reason": reason }),
            });
            Ok(true)
        })
    }

    fn source_approvals(&self) -> StoreResult<Vec<(String, String)>> {
        self.with(|i| {
            Ok(i.approvals
                .values()
                .filter(|a| a.revoked.is_none())
                .filter_map(|a| {
                    let source = i.approval_sources.get(&a.name)?;
                    (source != "api").then(|| (a.name.clone(), source.clone()))
                })
                .collect())
        })
    }

    fn audit(&self, plan: Option<&str>, after: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.with(|i| {
            Ok(i.audit
                .iter()
                .filter(|r| plan.is_none_or(|p| r.plan == p) && r.seq > after)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn record_event(&self, event: &ControllerEvent) -> StoreResult<()> {
        self.write(|i| {
            i.events.push(event.clone());
            Ok(())
        })
    }

    fn events(&self, kind: &str) -> StoreResult<Vec<ControllerEvent>> {
        self.with(|i| Ok(i.events.iter().filter(|e| e.kind == kind).cloned().collect()))
    }

    fn history(&self, after: i64, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.with(|i| {
            Ok(i.events
                .iter()
                .zip(1_i64..)
                .filter(|(_, id)| *id > after)
                .take(limit)
                .map(|(e, id)| StoredEvent { id, event: e.clone() })
                .collect())
        })
    }
}
