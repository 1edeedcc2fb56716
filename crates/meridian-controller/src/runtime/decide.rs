//! Deciding: the decision loop, the only writer of plan state. It absorbs events, runs the
//! engine for each due plan, commits the pass's decisions together (state, audit, intents;
//! one transaction) before anything acts on them, publishes the snapshot and hands the new
//! intents to the actuation workers. Must not talk to targets or health sources.

use std::sync::atomic::Ordering;

use meridian_core::UnitRef;
use meridian_core::dependency::PlanProgress;
use meridian_core::ports::store::{PlanDecision, QueuedCommand};
use meridian_core::watch::{read_unit, reading_counts};

use super::*;
use meridian_core::diagnostics::Severity;

/// One plan's decision, decided in a pass and waiting for the pass's commit.
pub(super) struct Decided {
    commit: PlanDecision,
    /// When it was decided.
    at: DateTime<Utc>,
}

/// The decision loop must stop: too many decisions in a row failed to commit.
struct Stop;

/// The validator's codes for an approval refused for its signature.
fn is_signature_code(code: &str) -> bool {
    matches!(code, "approval-unsigned" | "unknown-signing-key" | "bad-signature")
}

impl Controller {
    pub(super) async fn decision_loop(self: Arc<Self>, mut state: LoopState, mut rx: mpsc::UnboundedReceiver<Event>) {
        loop {
            // Nothing due: sleep until an event or the next plan's timer, however long that is
            // (idle is idle).
            let wake = state.plans.values().filter_map(PlanRun::next_timer).min();
            let timer = async {
                match wake {
                    Some(at) => self.adapters.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.absorb(&mut state, event).await,
                    None => return,
                },
                () = timer => {}
            }
            while let Ok(event) = rx.try_recv() {
                self.absorb(&mut state, event).await;
            }
            // Only the plans something happened to, or whose timer is due: by the engine's
            // contract, deciding any other again changes nothing.
            let now = self.now();
            let mut names = std::mem::take(&mut state.due);
            if std::mem::take(&mut state.all_due) {
                names.extend(state.plans.keys().cloned());
            } else {
                names.extend(
                    state
                        .plans
                        .iter()
                        .filter(|(_, run)| run.next_timer().is_some_and(|at| at <= now))
                        .map(|(name, _)| name.clone()),
                );
            }
            if names.is_empty() {
                continue;
            }
            let store = self.store();
            let approvals = match blocking(move || store.approvals()).await {
                Ok(approvals) => approvals,
                Err(e) => {
                    if self.decision_failed(&mut state, names, &e).await {
                        return;
                    }
                    continue;
                }
            };
            self.announce_expiries(&mut state.expired, &approvals, now);
            let mut changed = false;
            // A plan that completes a wave may let a plan that depends on it start (`dependsOn`):
            // while the plans' progress moves, the plans with dependencies are decided again at
            // once. Bounded: each round that moves completes a wave somewhere.
            let linked = state.plans.values().any(|run| run.plan.has_dependencies());
            let mut progress = linked.then(|| PlanProgress::of(state.plans.values().map(|run| &*run.state)));
            let mut rounds = state.plans.len() + 1;
            loop {
                let mut pass = Vec::new();
                // What each plan's decision reads from the store, for the whole pass at once: one
                // turn at the database, not one per plan behind the actuations' group commits.
                let store = self.store();
                let wanted: Vec<String> = names.iter().cloned().collect();
                let mut reads = blocking(move || {
                    wanted
                        .into_iter()
                        .map(|plan| {
                            let read = store
                                .pending_commands(&plan)
                                .and_then(|commands| Ok((commands, store.unconfirmed(&plan)?)));
                            (plan, read)
                        })
                        .collect::<HashMap<_, _>>()
                })
                .await;
                for name in names {
                    let read = reads.remove(&name).unwrap_or_else(|| Ok((Vec::new(), Vec::new())));
                    match read.and_then(|read| self.decide_plan(&mut state, &name, &approvals, read)) {
                        Ok(decided) => pass.extend(decided),
                        Err(e) => {
                            if self.decision_failed(&mut state, vec![name].into_iter().collect(), &e).await {
                                return;
                            }
                        }
                    }
                }
                match self.commit_pass(&mut state, pass).await {
                    Ok(c) => changed |= c,
                    Err(Stop) => return,
                }
                rounds -= 1;
                let Some(before) = progress.take() else { break };
                let after = PlanProgress::of(state.plans.values().map(|run| &*run.state));
                if after == before || rounds == 0 {
                    break;
                }
                progress = Some(after);
                names = state
                    .plans
                    .iter()
                    .filter(|(_, run)| run.plan.has_dependencies())
                    .map(|(name, _)| name.clone())
                    .collect();
            }
            // Published once per pass, after every commit of it: a pass over many plans does not
            // copy the world once per plan. An approval granted or revoked with no effect on any
            // unit (a paused or complete plan) still shows up in the API at once.
            if changed || self.snapshot().approvals != approvals {
                self.publish_with_approvals(&state, None, Some(approvals)).await;
            }
        }
    }

    /// A pass that could not read or commit for `names`: logged and counted; they are retried
    /// in a second from what the store holds. `true` once too many failed in a row: the loop
    /// stops, and with it the process.
    async fn decision_failed(
        &self,
        state: &mut LoopState,
        names: std::collections::BTreeSet<String>,
        e: &StoreFailure,
    ) -> bool {
        self.store_write_failed("decide", e);
        let failed = self.failed_commits.fetch_add(1, Ordering::SeqCst) + 1;
        if failed >= self.settings.max_failed_commits {
            log(
                Level::Error,
                "store",
                &format!(
                    "state store: {failed} decisions in a row failed to commit (last: {e}); stopping, since a \
                     controller that cannot record its decisions must not act; fix the state store \
                     (disk space, permissions, damage) and start again"
                ),
            );
            return true;
        }
        for name in names {
            // Retry soon from what the store holds: the in-memory state was not advanced, and a
            // store shared with other writers (the Kubernetes one, after a leader change) may
            // hold a newer decision to decide from again.
            let store = self.store();
            let plan = name.clone();
            if let Ok(Some(stored)) = blocking(move || store.load_state(&plan)).await
                && let Some(run) = state.plans.get_mut(&name)
            {
                run.state = Arc::new(stored);
            }
            if let Some(run) = state.plans.get_mut(&name) {
                run.wake_at = Some(self.now() + chrono::TimeDelta::seconds(1));
            }
        }
        false
    }

    pub(super) async fn absorb(&self, state: &mut LoopState, event: Event) {
        match event {
            Event::Kick => state.all_due = true,
            Event::Health { plan, samples, faults } => {
                self.metrics.observe_samples(&plan, &samples);
                self.report_faults(&plan, &faults);
                state.due.insert(plan.clone());
                state.samples.entry(plan).or_default().extend(samples);
            }
            Event::Readings { plan, readings } => {
                state.due.insert(plan.clone());
                state.readings.entry(plan).or_default().extend(readings);
            }
            Event::Confirmed { plan, confirmation } => {
                state.due.insert(plan.clone());
                state.confirmations.entry(plan).or_default().push(confirmation);
            }
            Event::Config(config) => {
                let generation = config.generation;
                let vanished =
                    vanished_in_flight(state.plans.iter().map(|(name, run)| (name.as_str(), &*run.state)), &config);
                if !vanished.is_empty() {
                    return self.reject_config(state, ConfigError::PlansVanished(vanished)).await;
                }
                match self.apply_config(state, config).await {
                    Ok(()) => {
                        state.all_due = true;
                        self.metrics.config_reloads.with_label_values(&["applied"]).inc();
                        self.record_event("config-applied", "config", serde_json::json!({ "generation": generation }));
                        self.publish(state, None).await;
                    }
                    Err(e) => self.store_write_failed("apply_config", &e),
                }
            }
            Event::ConfigRejected(error) => self.reject_config(state, error).await,
        }
    }

    /// Report an edit that is not applied (the last good configuration stays in force):
    /// counted, logged, recorded and published with its errors.
    pub(super) async fn reject_config(&self, state: &LoopState, error: ConfigError) {
        self.metrics.config_reloads.with_label_values(&[error.metric_label()]).inc();
        let errors = error.messages();
        log(
            Level::Warn,
            "config",
            &format!("configuration edit rejected; the previous version stays in force: {}", errors.join(" | ")),
        );
        self.record_event("config-rejected", "config", serde_json::json!({ "errors": errors }));
        // An approval refused for its signature is also an event of its own, as from the API.
        if let ConfigError::Invalid(report) = &error {
            for d in report.diagnostics.iter().filter(|d| d.severity == Severity::Error && is_signature_code(d.code)) {
                self.record_event(
                    "approval-refused",
                    "config",
                    serde_json::json!({ "source": d.file, "code": d.code, "error": d.to_string() }),
                );
            }
        }
        let rejected = RejectedEdit { at: self.now(), errors };
        self.publish(state, Some(rejected)).await;
    }

    /// Decide one plan from what the pass read for it (its pending commands and unconfirmed
    /// units): its decision when anything changed, for the pass to commit (the caller
    /// publishes once per pass).
    pub(super) fn decide_plan(
        self: &Arc<Self>,
        state: &mut LoopState,
        name: &str,
        approvals: &[ApprovalRecord],
        (commands, unconfirmed): (Vec<QueuedCommand>, Vec<UnitRef>),
    ) -> Result<Option<Decided>, StoreFailure> {
        // The engine; the pass's reads and its commit are shared, so not in here.
        let _timer = self.metrics.decision_duration.with_label_values(&[] as &[&str]).start_timer();
        let now = self.now();
        // Where the other plans stand, for this one's `dependsOn` (the rule is the engine's).
        let other_plans = state.plans.get(name).filter(|run| run.plan.has_dependencies()).map(|_| {
            PlanProgress::of(state.plans.iter().filter(|(other, _)| *other != name).map(|(_, run)| &*run.state))
        });
        let Some(run) = state.plans.get_mut(name) else { return Ok(None) };
        let samples = state.samples.remove(name).unwrap_or_default();
        let confirmations = state.confirmations.remove(name).unwrap_or_default();
        let readings: Vec<TrafficReading> = state
            .readings
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .filter(|(r, read_at)| {
                let target = Target { plan: name.to_string(), region: r.region.clone(), service: r.service.clone() };
                let busy = self.actuating(&target);
                read_unit(&run.state, &r.region, &r.service).is_some_and(|u| reading_counts(u, *read_at, busy))
            })
            .map(|(r, _)| r)
            .collect();
        let command_list: Vec<Command> = commands.iter().map(|c| c.command.clone()).collect();
        let obs = Observations {
            approvals,
            health: &samples,
            traffic: &readings,
            commands: &command_list,
            unconfirmed: &unconfirmed,
            confirmations: &confirmations,
            other_plans: other_plans.as_ref(),
        };
        let decision = decide(&run.plan, PlanState::clone(&run.state), &obs, now);
        run.warn_at = self.announce_expiring(&mut state.expiring, &run.plan, &decision.state, approvals, now);
        let changed = decision.state != *run.state || !decision.audit.is_empty() || !commands.is_empty();
        run.wake_at = decision.wake_at;
        if !changed {
            return Ok(None);
        }
        let commit = PlanDecision {
            plan: name.to_string(),
            state: decision.state,
            audit: decision.audit,
            actions: decision.actions,
            applied_commands: commands.iter().map(|c| c.id).collect(),
        };
        Ok(Some(Decided { commit, at: now }))
    }

    /// Commit a pass's decisions together (one transaction, one wait for the disk), then, and
    /// only then, take each committed one as the plan's state and hand its intents to the
    /// actuation workers; `true` when any state changed. A decision the store refused is
    /// retried from what the store holds (`decision_failed`); `Err(Stop)` once too many failed.
    async fn commit_pass(self: &Arc<Self>, state: &mut LoopState, pass: Vec<Decided>) -> Result<bool, Stop> {
        if pass.is_empty() {
            return Ok(false);
        }
        let store = self.store();
        let at = self.now();
        let (commits, times): (Vec<PlanDecision>, Vec<DateTime<Utc>>) =
            pass.into_iter().map(|d| (d.commit, d.at)).unzip();
        let (commits, mut results) = blocking(move || {
            let results = store.commit_all(&commits, at);
            (commits, results)
        })
        .await;
        if results.len() != commits.len() {
            let message = format!("the store answered {} of {} decisions", results.len(), commits.len());
            results = commits.iter().map(|_| Err(StoreFailure { message: message.clone() })).collect();
        }
        let mut changed = false;
        for ((commit, now), result) in commits.into_iter().zip(times).zip(results) {
            match result {
                Ok(intents) => {
                    self.committed(state, commit, now, intents);
                    changed = true;
                }
                Err(e) => {
                    if self.decision_failed(state, std::iter::once(commit.plan).collect(), &e).await {
                        return Err(Stop);
                    }
                }
            }
        }
        Ok(changed)
    }

    /// A decision on disk: it becomes the plan's state, its audit records are announced, and
    /// its intents go to the actuation workers.
    fn committed(
        self: &Arc<Self>,
        state: &mut LoopState,
        commit: PlanDecision,
        now: DateTime<Utc>,
        intents: Vec<Intent>,
    ) {
        self.failed_commits.store(0, Ordering::SeqCst);
        self.problems.clear(key::STORE);
        let Some(run) = state.plans.get_mut(&commit.plan) else { return };
        // A decision without records can still end the plan (the last departing unit seen at
        // 0 %): its completion is told too.
        if !commit.audit.is_empty() || run.state.phase() != commit.state.phase() {
            let notices =
                meridian_core::notify::decision_notices(&run.plan, &run.state, &commit.state, &commit.audit, now);
            if !notices.is_empty() {
                self.adapters.notifier.notify(notices);
            }
        }
        run.state = Arc::new(commit.state);
        run.updated_at = now;
        self.metrics.observe_audit(&commit.audit);
        for record in &commit.audit {
            crate::log::transition(record);
        }
        for record in commit.audit {
            let _ = self.audit_tx.send(record);
        }
        for intent in intents {
            self.dispatch(intent);
        }
    }

    pub(super) async fn publish(&self, state: &LoopState, rejected: Option<RejectedEdit>) {
        self.publish_with_approvals(state, rejected, None).await;
    }

    pub(super) async fn publish_with_approvals(
        &self,
        state: &LoopState,
        rejected: Option<RejectedEdit>,
        approvals: Option<Vec<ApprovalRecord>>,
    ) {
        let approvals = match approvals {
            Some(a) => a,
            None => {
                let store = self.store();
                blocking(move || store.approvals()).await.unwrap_or_else(|_| self.snapshot().approvals.clone())
            }
        };
        let previous = self.snapshot();
        // Grants and revocations since the last view (none at the first: that is a start).
        let before = (previous.config.generation > 0).then_some(previous.approvals.as_slice());
        let notices = meridian_core::notify::approval_notices(before, &approvals, self.now());
        if !notices.is_empty() {
            self.adapters.notifier.notify(notices);
        }
        let config = state.config.as_ref();
        let snapshot = Snapshot {
            plans: state
                .plans
                .iter()
                .map(|(name, run)| {
                    (
                        name.clone(),
                        PlanEntry {
                            plan: run.plan.clone(),
                            state: run.state.clone(),
                            updated_at: run.updated_at,
                            wake_at: run.wake_at,
                        },
                    )
                })
                .collect(),
            approvals,
            config: ConfigStatus {
                generation: config.map_or(0, |c| c.generation),
                loaded_at: config.map(|c| c.loaded_at),
                warnings: config.map_or(0, |c| c.warnings.warnings()),
                rejected: rejected
                    .or_else(|| previous.config.rejected.clone().filter(|r| config.is_none_or(|c| r.at > c.loaded_at))),
                last_edit: state.last_edit.clone(),
            },
            expiry_warning: Some(span(self.settings.expiry_warning)),
        };
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(snapshot);
        }
        self.published.send_replace(());
    }

    /// Every health fault is counted by plan, check and kind; each distinct one is logged once.
    fn report_faults(&self, plan: &str, faults: &[meridian_core::ports::EvalFault]) {
        for fault in faults {
            let check = fault.check.as_deref().unwrap_or("");
            self.metrics.health_errors.with_label_values(&[plan, check, fault.label]).inc();
            let message = format!("plan {plan}: {}", fault.message);
            if self.reported_faults.lock().is_ok_and(|mut seen| seen.insert(message.clone())) {
                log(Level::Warn, "health", &format!("health: {message}"));
            }
        }
    }

    /// An approval refused where it arrived (the API; files and resources are refused with
    /// their edit): recorded with why, and counted.
    pub(super) fn refuse_approval(
        &self,
        approval: &ApprovalRecord,
        plan: &str,
        problem: &meridian_core::signing::SignatureProblem,
        source: &str,
        by: &str,
    ) {
        self.metrics.approvals_refused.with_label_values(&[problem.code()]).inc();
        self.record_event(
            "approval-refused",
            by,
            serde_json::json!({
                "approval": approval.name,
                "flag": approval.flag,
                "plan": plan,
                "source": source,
                "code": problem.code(),
                "error": problem.to_string(),
            }),
        );
    }

    /// An approval a unit depends on that enters the warning window is announced once
    /// (`approval-expiring`). Returns when the next one not yet announced enters it.
    pub(super) fn announce_expiring(
        &self,
        announced: &mut std::collections::HashSet<String>,
        plan: &Plan,
        state: &PlanState,
        approvals: &[ApprovalRecord],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let window = span(self.settings.expiry_warning);
        for e in meridian_core::expiry::expiring(plan, state, approvals, now, window) {
            if announced.insert(e.approval.name.clone()) {
                self.record_event(
                    "approval-expiring",
                    "clock",
                    serde_json::json!({
                        "approval": e.approval.name,
                        "flag": e.approval.flag,
                        "plan": plan.name,
                        "expires": e.expires,
                        "units": e.units,
                    }),
                );
            }
        }
        let flags = plan.flags();
        approvals
            .iter()
            .filter(|a| a.revoked.is_none() && !announced.contains(&a.name) && flags.contains(&a.flag))
            .filter_map(|a| a.expires.and_then(|e| e.checked_sub_signed(window)))
            .filter(|at| *at > now)
            .min()
    }

    /// Expiry is an event of its own: recorded once per approval when its time has come.
    pub(super) fn announce_expiries(
        &self,
        announced: &mut std::collections::HashSet<String>,
        approvals: &[ApprovalRecord],
        now: DateTime<Utc>,
    ) {
        for a in approvals {
            if let Some(expires) = a.expires
                && expires <= now
                && a.revoked.is_none()
                && announced.insert(a.name.clone())
            {
                self.record_event(
                    "approval-expired",
                    "clock",
                    serde_json::json!({ "approval": a.name, "flag": a.flag, "expires": expires }),
                );
            }
        }
    }
}
