//! Configuration sync: applying what the `ConfigSource` yields (mirroring its approvals into
//! the store, aligning plan states), rejecting what must not apply, and watching the source.
//! Must not decide rollouts: an applied configuration only changes what the next decision
//! sees.

use super::*;

impl Controller {
    /// Apply a validated configuration: sync file approvals into the store, align states.
    pub(super) async fn apply_config(&self, state: &mut LoopState, config: Arc<Config>) -> Result<(), StoreFailure> {
        let store = self.store();
        let now = self.now();
        let config_for_sync = config.clone();
        let source = self.source.clone();
        let kept =
            blocking(move || mirror_source_approvals(store.as_ref(), &config_for_sync, source.as_ref(), now)).await?;
        // What the source reads never changes while running, so only the first apply (at
        // start) can find approvals from elsewhere; say so once, not on every reload.
        if state.config.is_none() {
            for (name, from) in kept {
                log(
                    Level::Warn,
                    "approval",
                    &format!(
                        "approval {name} was granted from {from}, which is outside {}; it stays in force; revoke it \
                     with `meridian revoke {name}` if it should not",
                        self.source.describe()
                    ),
                );
            }
        }
        // Read every new plan's stored state first, all in one go (at a start, 1,000 plans in
        // one query): a store error leaves the plans in force exactly as they were (all or
        // nothing), never a loop that lost some of them.
        let new: Vec<String> =
            config.plans.iter().filter(|p| !state.plans.contains_key(&p.name)).map(|p| p.name.clone()).collect();
        let store = self.store();
        let mut loaded =
            blocking(move || store.load_states(&new.iter().map(String::as_str).collect::<Vec<_>>())).await?;
        let mut plans = BTreeMap::new();
        let mut edits = Vec::new();
        for plan in &config.plans {
            let plan_state = match state.plans.remove(&plan.name) {
                Some(run) => {
                    // The engine applies the edit at its next decision (`meridian_core::edit`);
                    // what it will change is said now, in the log and the API's config status.
                    if *run.plan != **plan {
                        edits.push(meridian_core::edit::summarize(&run.plan, plan, &run.state));
                    }
                    run.state
                }
                None => Arc::new(loaded.remove(&plan.name).unwrap_or_else(|| PlanState::new(plan))),
            };
            plans.insert(
                plan.name.clone(),
                PlanRun { plan: plan.clone(), state: plan_state, wake_at: Some(now), warn_at: None, updated_at: now },
            );
        }
        // Plans removed from the files keep their stored state; nothing is deleted.
        state.plans = plans;
        if let Ok(mut p) = self.plans.write() {
            *p = state.plans.iter().map(|(k, v)| (k.clone(), v.plan.clone())).collect();
        }
        self.metrics.config_generation.set(config.generation as i64);
        let names: Vec<&str> = state.plans.keys().map(String::as_str).collect();
        log(
            Level::Info,
            "config",
            &format!("configuration generation {} applied: plans {}", config.generation, names.join(", ")),
        );
        for edit in &edits {
            log(Level::Info, "edit", &format!("plan {} edited: {}", edit.plan, edit.counts()));
            for line in edit.lines() {
                log(Level::Info, "edit", &format!("plan {}: {line}", edit.plan));
            }
        }
        if !edits.is_empty() {
            state.last_edit = Some(AppliedEdit { at: now, generation: config.generation, plans: edits });
        }
        state.config = Some(config);
        Ok(())
    }

    /// Reload on every change of the files' contents since `initial` (what `start` loaded).
    pub(super) async fn config_watcher(self: Arc<Self>) {
        loop {
            self.source.changed().await;
            let current = self.snapshot().config.generation;
            match self.source.load(self.now()).await {
                Ok(mut config) => {
                    config.generation = current + 1;
                    let _ = self.events.send(Event::Config(Arc::new(config)));
                }
                Err(e) => {
                    let _ = self.events.send(Event::ConfigRejected(e));
                }
            }
        }
    }
}

/// Mirror the source's approvals into the store by the core's one diff
/// (`sync_source_approvals`); returns the approvals kept because they came from elsewhere, as
/// (name, source), to be reported.
fn mirror_source_approvals(
    store: &dyn StateStore,
    config: &Config,
    source: &dyn ConfigSource,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, StoreFailure> {
    let changes = sync_source_approvals(config, &store.approvals()?, &store.source_approvals()?, |s| source.owns(s));
    let mut kept = Vec::new();
    for change in changes {
        match change {
            ApprovalSync::Put { approval, source } => {
                store.put_approval(&approval, &source, &approval.granted_by, now)?;
                approval_line("recorded", &approval.name, &approval.flag, &source);
            }
            ApprovalSync::Revoke { name } => {
                store.revoke_approval(&name, FILE_REMOVED_BY, Some(FILE_REMOVED_REASON), now)?;
                crate::log::line(
                    Level::Info,
                    "approval-revoked",
                    &[("approval", &name)],
                    &format!("approval {name} revoked: {FILE_REMOVED_REASON}"),
                );
            }
            ApprovalSync::KeepForeign { name, source } => kept.push((name, source)),
        }
    }
    Ok(kept)
}
