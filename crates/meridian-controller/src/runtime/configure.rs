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
        let grants = self.grants.clone();
        let (kept, deferred) = blocking(move || {
            let mut recent = grants.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            mirror_source_approvals(store.as_ref(), &config_for_sync, source.as_ref(), &mut recent, now)
        })
        .await?;
        if deferred {
            self.reload.notify_one();
        }
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
            // A reload asked for reads the source as it is now, so a change the source was
            // about to report is in it too (dropping `changed` loses nothing).
            tokio::select! {
                () = self.source.changed() => {}
                () = self.reload.notified() => {}
            }
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
/// (name, source), to be reported, and whether a revocation was left to the next read.
///
/// `recent` holds when each API grant was on record. A grant in Kubernetes mode is an Approval
/// resource written before its record, so a configuration read (`loaded_at`, taken before the
/// source lists) before that moment may lack it: such a configuration does not revoke it, and
/// the caller has the source read again, so the next one, read after it, does if the resource
/// is gone by then.
fn mirror_source_approvals(
    store: &dyn StateStore,
    config: &Config,
    source: &dyn ConfigSource,
    recent: &mut HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(Vec<(String, String)>, bool), StoreFailure> {
    recent.retain(|_, on_record| *on_record > config.loaded_at);
    let mut changes =
        sync_source_approvals(config, &store.approvals()?, &store.source_approvals()?, |s| source.owns(s));
    let before = changes.len();
    changes.retain(|c| !matches!(c, ApprovalSync::Revoke { name } if recent.contains_key(name)));
    let deferred = changes.len() < before;
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
    Ok((kept, deferred))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use meridian_core::approval::ApprovalScopeSet;
    use meridian_core::diagnostics::Report;

    use super::*;
    use crate::memory::MemoryStore;

    /// Owns `kube:` sources; never loads (the test hands configurations over itself).
    struct Kube;

    impl ConfigSource for Kube {
        fn load(&self, _: DateTime<Utc>) -> BoxFuture<'_, Result<Config, ConfigError>> {
            Box::pin(std::future::pending())
        }
        fn changed(&self) -> BoxFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
        fn owns(&self, source: &str) -> bool {
            source.starts_with("kube:")
        }
        fn describe(&self) -> String {
            "kube".into()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + chrono::TimeDelta::seconds(s)
    }

    fn read_at(at: DateTime<Utc>) -> Config {
        Config {
            generation: 2,
            plans: Vec::new(),
            approvals: Vec::new(),
            approval_sources: HashMap::new(),
            warnings: Report::default(),
            loaded_at: at,
            fingerprint: 0,
        }
    }

    fn revoked(store: &MemoryStore, name: &str) -> bool {
        store.approvals().unwrap().iter().any(|a| a.name == name && a.revoked.is_some())
    }

    #[test]
    fn a_configuration_read_before_a_grant_was_on_record_does_not_revoke_it() {
        let store = MemoryStore::default();
        for name in ["new", "old"] {
            let approval = ApprovalRecord {
                name: name.into(),
                flag: "go".into(),
                granted_by: "alice".into(),
                reference: None,
                granted_at: Some(t(0)),
                expires: None,
                scope: ApprovalScopeSet::default(),
                revoked: None,
                signature: None,
            };
            store.put_approval(&approval, &format!("kube:meridian/{name}"), "alice", t(0)).unwrap();
        }
        // "new" was granted through the API and on record at 5 s; "old" long before.
        let mut recent = HashMap::from([("new".to_string(), t(5))]);
        // Read at 4 s, before the grant's resource existed: it lacks both, but only "old" is gone.
        let (_, deferred) = mirror_source_approvals(&store, &read_at(t(4)), &Kube, &mut recent, t(6)).unwrap();
        assert!(deferred, "the source is to be read again");
        assert!(revoked(&store, "old"));
        assert!(!revoked(&store, "new"), "a grant newer than the configuration's read");
        // Read at 7 s and still without it: the resource is gone (deleted), so is the grant.
        let (_, deferred) = mirror_source_approvals(&store, &read_at(t(7)), &Kube, &mut recent, t(8)).unwrap();
        assert!(!deferred);
        assert!(revoked(&store, "new"));
        assert!(recent.is_empty(), "forgotten once a configuration read after it applied");
    }
}
