//! The standalone controller at run time.
//!
//! ```text
//!  config watcher ─┐                                   ┌─> store.commit (state, audit, intents)
//!  health pollers ─┤                                   ├─> snapshot + /events + metrics
//!  read-backs ─────┼─> events ─> decision loop: decide ┤
//!  API requests ───┘        (and timers at wake_at)    └─> actuation workers ─> actuator
//!                                                            (one per target, in order)
//! ```
//!
//! Event-driven: an approval, a command, a file change or a health result wakes the loop at
//! once; timers (bakes, windows, expiries) wake it at the engine's `wake_at`. The loop is the
//! only writer of plan state. Actuation is crash-safe by the store contract (see `store`):
//! every intent is durable before it is sent, and startup resolves open intents by reading
//! each target back before anything else runs. A background task that dies takes readiness
//! down with it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::plan::Plan;
use meridian_core::ports::{Actuator, BoxFuture, HealthSource, Target};
use meridian_core::{
    AuditRecord, Command, Confirmation, HealthSample, Observations, PlanState, TrafficReading, decide,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use crate::config::FileSource;
use crate::control::{AuditFeed, ControlError, ControlPlane, FeedItem, Readiness};
use crate::metrics::Metrics;
use crate::snapshot::{ConfigStatus, PlanEntry, RejectedEdit, Snapshot};
use crate::store::{ControllerEvent, Intent, IntentOutcome, StateStore, StoreFailure, StoredEvent};
use meridian_core::approval::{FILE_REMOVED_BY, FILE_REMOVED_REASON};
use meridian_core::ports::config::{
    ApprovalSync, Config, ConfigError, ConfigSource, sync_source_approvals, vanished_in_flight,
};

pub use meridian_core::ports::Clock;

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The effectful parts, supplied by the binary (or a test).
#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<dyn StateStore>,
    pub health: Arc<dyn HealthSource>,
    pub actuator: Arc<dyn Actuator>,
    pub clock: Arc<dyn Clock>,
}

/// Tunables of the run loop.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Plan and approval files or directories, watched for changes.
    pub paths: Vec<PathBuf>,
    /// How often targets with traffic are read back to detect drift.
    pub readback_interval: Duration,
    /// First delay before re-sending an intent that failed with a retryable error (doubles,
    /// up to a minute).
    pub intent_retry: Duration,
    /// Safety net for the file watcher: re-check the files this often.
    pub config_poll: Duration,
    /// Export per-unit series on `/metrics` (a million of them at 150,000 units); off by
    /// default, the aggregates are always there.
    pub unit_metrics: bool,
}

impl Settings {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Settings {
            paths,
            readback_interval: Duration::from_secs(30),
            intent_retry: Duration::from_secs(1),
            config_poll: Duration::from_secs(2),
            unit_metrics: false,
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("failed to read the state store: {0}")]
    Store(#[from] StoreFailure),
}

/// What wakes the decision loop.
enum Event {
    Kick,
    Health {
        plan: String,
        samples: Vec<HealthSample>,
    },
    Readings {
        plan: String,
        readings: Vec<(TrafficReading, DateTime<Utc>)>,
    },
    /// A target confirmed an actuation.
    Confirmed {
        plan: String,
        confirmation: Confirmation,
    },
    Config(Arc<Config>),
    ConfigRejected(ConfigError),
}

/// The running controller; implements [`ControlPlane`] for the API.
pub struct Controller {
    adapters: Adapters,
    settings: Settings,
    metrics: Metrics,
    snapshot: RwLock<Arc<Snapshot>>,
    events: mpsc::UnboundedSender<Event>,
    audit_tx: broadcast::Sender<AuditRecord>,
    readiness: Mutex<Readiness>,
    /// Targets with an actuation worker running; `true` = new intents arrived meanwhile.
    inflight: Mutex<HashMap<Target, bool>>,
    plans: RwLock<BTreeMap<String, Arc<Plan>>>,
    /// Serialises API grants, so two requests for one name cannot both pass the check.
    grants: Arc<Mutex<()>>,
    /// Where plans and approvals come from (files, or Kubernetes resources).
    source: Arc<dyn ConfigSource>,
}

/// Handles of the background tasks; dropping it does not stop them, `shutdown` does.
pub struct Running {
    pub controller: Arc<Controller>,
    tasks: JoinSet<&'static str>,
}

impl Running {
    /// Wait until a background task ends (which only happens on failure) and name it.
    /// The failure is counted and takes readiness down before the caller decides what to do.
    pub async fn join_failure(&mut self) -> Option<&'static str> {
        let failed = self.tasks.join_next().await.map(|r| r.unwrap_or("a background task (panicked)"))?;
        self.controller.metrics.task_failures.with_label_values(&[failed]).inc();
        self.controller.set_ready(false, vec![format!("{failed} stopped")]);
        Some(failed)
    }

    /// Stop deciding and acting: `/readyz` turns 503 ("shutting down") and the background
    /// tasks end. The published snapshot stays readable and requests still reach the store.
    pub fn shutdown(mut self) {
        self.controller.set_ready(false, vec!["shutting down".into()]);
        self.tasks.abort_all();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Start the controller on the files and directories of `settings.paths`, watched: load and
/// validate the configuration, load state, resolve open intents, then start the loop and its
/// helpers.
pub async fn start(settings: Settings, adapters: Adapters) -> Result<Running, StartError> {
    let source = Arc::new(FileSource::new(settings.paths.clone(), settings.config_poll));
    start_with(source, settings, adapters).await
}

/// [`start`] on any source of configuration: the runtime reads plans and approvals only
/// through it.
pub async fn start_with(
    source: Arc<dyn ConfigSource>,
    settings: Settings,
    adapters: Adapters,
) -> Result<Running, StartError> {
    let now = adapters.clock.now();
    let config = Arc::new(source.load(now).await?);
    let (events, rx) = mpsc::unbounded_channel();
    let (audit_tx, _) = broadcast::channel(4096);
    let controller = Arc::new(Controller {
        adapters: adapters.clone(),
        settings: settings.clone(),
        metrics: Metrics::with_unit_series(settings.unit_metrics),
        snapshot: RwLock::new(Arc::new(Snapshot::default())),
        events,
        audit_tx,
        readiness: Mutex::new(Readiness { ready: false, reasons: vec!["resolving open intents".into()] }),
        inflight: Mutex::new(HashMap::new()),
        plans: RwLock::new(BTreeMap::new()),
        grants: Arc::new(Mutex::new(())),
        source,
    });
    let store = adapters.store.clone();
    let expired = blocking(move || store.events("approval-expired"))
        .await?
        .into_iter()
        .filter_map(|e| e.detail["approval"].as_str().map(str::to_string))
        .collect();
    let mut state = LoopState {
        plans: BTreeMap::new(),
        expired,
        samples: HashMap::new(),
        readings: HashMap::new(),
        confirmations: HashMap::new(),
        config: None,
    };
    controller.apply_config(&mut state, config).await?;
    controller.publish(&state, None).await;
    controller.recover().await;
    controller.set_ready(true, Vec::new());

    let mut tasks = JoinSet::new();
    let c = controller.clone();
    tasks.spawn(async move {
        c.decision_loop(state, rx).await;
        "decision loop"
    });
    let c = controller.clone();
    tasks.spawn(async move {
        c.health_loop().await;
        "health poller"
    });
    let c = controller.clone();
    tasks.spawn(async move {
        c.readback_loop().await;
        "read-back"
    });
    let c = controller.clone();
    tasks.spawn(async move {
        c.intent_reconciler().await;
        "intent reconciler"
    });
    let c = controller.clone();
    tasks.spawn(async move {
        c.config_watcher().await;
        "config watcher"
    });
    Ok(Running { controller, tasks })
}

/// State owned by the decision loop alone.
struct LoopState {
    plans: BTreeMap<String, PlanRun>,
    /// Approvals whose expiry has been recorded (seeded from the store, so never twice).
    expired: std::collections::HashSet<String>,
    samples: HashMap<String, Vec<HealthSample>>,
    readings: HashMap<String, Vec<(TrafficReading, DateTime<Utc>)>>,
    confirmations: HashMap<String, Vec<Confirmation>>,
    config: Option<Arc<Config>>,
}

struct PlanRun {
    plan: Arc<Plan>,
    state: PlanState,
    wake_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl Controller {
    fn now(&self) -> DateTime<Utc> {
        self.adapters.clock.now()
    }

    fn store(&self) -> Arc<dyn StateStore> {
        self.adapters.store.clone()
    }

    pub fn metrics_registry(&self) -> &Metrics {
        &self.metrics
    }

    fn set_ready(&self, ready: bool, reasons: Vec<String>) {
        if let Ok(mut r) = self.readiness.lock() {
            *r = Readiness { ready, reasons };
        }
    }

    fn kick(&self) {
        let _ = self.events.send(Event::Kick);
    }

    // ----- configuration -----

    /// Apply a validated configuration: sync file approvals into the store, align states.
    async fn apply_config(&self, state: &mut LoopState, config: Arc<Config>) -> Result<(), StoreFailure> {
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
                tracing_error(&format!(
                    "approval {name} was granted from {from}, which is outside {}; it stays in force; revoke it \
                     with `meridian revoke {name}` if it should not",
                    self.source.describe()
                ));
            }
        }
        let mut plans = BTreeMap::new();
        for plan in &config.plans {
            let existing = state.plans.remove(&plan.name);
            let plan_state = match existing {
                Some(run) => run.state,
                None => {
                    let store = self.store();
                    let name = plan.name.clone();
                    blocking(move || store.load_state(&name)).await?.unwrap_or_else(|| PlanState::new(plan))
                }
            };
            plans.insert(
                plan.name.clone(),
                PlanRun { plan: plan.clone(), state: plan_state, wake_at: Some(now), updated_at: now },
            );
        }
        // Plans removed from the files keep their stored state; nothing is deleted.
        state.plans = plans;
        if let Ok(mut p) = self.plans.write() {
            *p = state.plans.iter().map(|(k, v)| (k.clone(), v.plan.clone())).collect();
        }
        self.metrics.config_generation.set(config.generation as i64);
        state.config = Some(config);
        Ok(())
    }

    /// Reload on every change of the files' contents since `initial` (what `start` loaded).
    async fn config_watcher(self: Arc<Self>) {
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

    // ----- the decision loop -----

    async fn decision_loop(self: Arc<Self>, mut state: LoopState, mut rx: mpsc::UnboundedReceiver<Event>) {
        loop {
            let wake = state.plans.values().filter_map(|p| p.wake_at).min();
            let sleep_for =
                wake.map(|w| (w - self.now()).to_std().unwrap_or(Duration::ZERO)).unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.absorb(&mut state, event).await,
                    None => return,
                },
                _ = tokio::time::sleep(sleep_for) => {}
            }
            while let Ok(event) = rx.try_recv() {
                self.absorb(&mut state, event).await;
            }
            let mut rejected = None;
            let names: Vec<String> = state.plans.keys().cloned().collect();
            for name in names {
                if let Err(e) = self.decide_plan(&mut state, &name).await {
                    tracing_error(&format!("decision for plan {name} not committed: {e}"));
                    self.set_ready(false, vec![format!("state store: {e}")]);
                    rejected = Some(());
                    // Retry soon; the in-memory state was not advanced.
                    if let Some(run) = state.plans.get_mut(&name) {
                        run.wake_at = Some(self.now() + chrono::TimeDelta::seconds(1));
                    }
                }
            }
            if rejected.is_none()
                && !self.readiness().ready
                && self.readiness().reasons.iter().all(|r| r.starts_with("state store"))
            {
                self.set_ready(true, Vec::new());
            }
        }
    }

    async fn absorb(&self, state: &mut LoopState, event: Event) {
        match event {
            Event::Kick => {}
            Event::Health { plan, samples } => {
                self.metrics.observe_samples(&plan, &samples);
                state.samples.entry(plan).or_default().extend(samples);
            }
            Event::Readings { plan, readings } => state.readings.entry(plan).or_default().extend(readings),
            Event::Confirmed { plan, confirmation } => state.confirmations.entry(plan).or_default().push(confirmation),
            Event::Config(config) => {
                let generation = config.generation;
                let vanished =
                    vanished_in_flight(state.plans.iter().map(|(name, run)| (name.as_str(), &run.state)), &config);
                if !vanished.is_empty() {
                    return self.reject_config(state, ConfigError::PlansVanished(vanished)).await;
                }
                match self.apply_config(state, config).await {
                    Ok(()) => {
                        self.metrics.config_reloads.with_label_values(&["applied"]).inc();
                        self.record_event("config-applied", "config", serde_json::json!({ "generation": generation }));
                        self.publish(state, None).await;
                    }
                    Err(e) => tracing_error(&format!("configuration not applied: {e}")),
                }
            }
            Event::ConfigRejected(error) => self.reject_config(state, error).await,
        }
    }

    /// Report an edit that is not applied (the last good configuration stays in force):
    /// counted, logged, recorded and published with its errors.
    async fn reject_config(&self, state: &LoopState, error: ConfigError) {
        self.metrics.config_reloads.with_label_values(&[error.metric_label()]).inc();
        let errors = error.messages();
        tracing_error(&format!(
            "configuration edit rejected; the previous version stays in force: {}",
            errors.join(" | ")
        ));
        self.record_event("config-rejected", "config", serde_json::json!({ "errors": errors }));
        let rejected = RejectedEdit { at: self.now(), errors };
        self.publish(state, Some(rejected)).await;
    }

    /// Decide one plan, commit the decision, publish it, and start its actuations.
    async fn decide_plan(self: &Arc<Self>, state: &mut LoopState, name: &str) -> Result<(), StoreFailure> {
        let started = std::time::Instant::now();
        let store = self.store();
        let plan_name = name.to_string();
        let (approvals, commands, unconfirmed) = blocking(move || {
            let approvals = store.approvals()?;
            let commands = store.pending_commands(&plan_name)?;
            let unconfirmed = store.unconfirmed(&plan_name)?;
            Ok::<_, StoreFailure>((approvals, commands, unconfirmed))
        })
        .await?;
        let now = self.now();
        self.announce_expiries(&mut state.expired, &approvals, now);
        let Some(run) = state.plans.get_mut(name) else { return Ok(()) };
        let samples = state.samples.remove(name).unwrap_or_default();
        let confirmations = state.confirmations.remove(name).unwrap_or_default();
        let inflight: Vec<Target> = self.inflight.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let readings: Vec<TrafficReading> = state
            .readings
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .filter(|(r, read_at)| {
                let unit = run.state.unit(&r.region, &r.service);
                let settled = unit.is_some_and(|u| u.since.is_none_or(|s| s < *read_at));
                let busy = inflight.iter().any(|t| t.plan == name && t.region == r.region && t.service == r.service);
                settled && !busy
            })
            .map(|(r, _)| r)
            .collect();
        let command_list: Vec<Command> = commands.iter().map(|c| c.command.clone()).collect();
        let obs = Observations {
            approvals: &approvals,
            health: &samples,
            traffic: &readings,
            commands: &command_list,
            unconfirmed: &unconfirmed,
            confirmations: &confirmations,
        };
        let decision = decide(&run.plan, run.state.clone(), &obs, now);
        let changed = decision.state != run.state || !decision.audit.is_empty() || !commands.is_empty();
        run.wake_at = decision.wake_at;
        self.metrics.decision_duration.with_label_values(&[] as &[&str]).observe(started.elapsed().as_secs_f64());
        if !changed {
            // An approval granted or revoked with no effect on any unit (a paused or
            // complete plan) must still show up in the API at once.
            if self.snapshot().approvals != approvals {
                self.publish_with_approvals(state, None, Some(approvals)).await;
            }
            return Ok(());
        }
        let store = self.store();
        let (plan_name, new_state, audit, actions) =
            (name.to_string(), decision.state.clone(), decision.audit.clone(), decision.actions.clone());
        let command_ids: Vec<i64> = commands.iter().map(|c| c.id).collect();
        let at = self.now();
        let intents =
            blocking(move || store.commit(&plan_name, &new_state, &audit, &actions, &command_ids, at)).await?;
        run.state = decision.state;
        run.updated_at = now;
        self.metrics.observe_audit(&decision.audit);
        for record in &decision.audit {
            let _ = self.audit_tx.send(record.clone());
        }
        for intent in intents {
            self.dispatch(intent);
        }
        self.publish_with_approvals(state, None, Some(approvals)).await;
        Ok(())
    }

    async fn publish(&self, state: &LoopState, rejected: Option<RejectedEdit>) {
        self.publish_with_approvals(state, rejected, None).await;
    }

    async fn publish_with_approvals(
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
            },
        };
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(snapshot);
        }
    }

    // ----- actuation -----

    fn plan(&self, name: &str) -> Option<Arc<Plan>> {
        self.plans.read().ok().and_then(|p| p.get(name).cloned())
    }

    /// Hand an intent to its target's worker, starting one if none runs.
    fn dispatch(self: &Arc<Self>, intent: Intent) {
        let target =
            Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
        let start = match self.inflight.lock() {
            Ok(mut map) => match map.get_mut(&target) {
                Some(dirty) => {
                    *dirty = true;
                    false
                }
                None => {
                    map.insert(target.clone(), false);
                    true
                }
            },
            Err(_) => false,
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.actuation_worker(target).await });
        }
        self.metrics.open_intents.inc();
    }

    /// Send the newest open intent of `target` until none is left; in order, one at a time.
    async fn actuation_worker(self: Arc<Self>, target: Target) {
        let mut delay = self.settings.intent_retry;
        loop {
            let store = self.store();
            let t = target.clone();
            let open = blocking(move || store.open_intents()).await;
            let newest = match open {
                Ok(list) => list
                    .into_iter()
                    .filter(|i| i.plan == t.plan && i.region == t.region && i.service == t.service)
                    .max_by_key(|i| i.id),
                Err(e) => {
                    tracing_error(&format!("cannot read open intents: {e}"));
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let Some(intent) = newest else {
                let done = match self.inflight.lock() {
                    Ok(mut map) => {
                        if map.get(&target).copied().unwrap_or(false) {
                            map.insert(target.clone(), false);
                            false
                        } else {
                            map.remove(&target);
                            true
                        }
                    }
                    Err(_) => true,
                };
                if done {
                    return;
                }
                continue;
            };
            match self.send_intent(&intent).await {
                Ok(()) => delay = self.settings.intent_retry,
                Err(retryable) if retryable => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
                Err(_) => {}
            }
        }
    }

    /// One attempt (with the actuator's own retries). `Err(true)`: try again later.
    async fn send_intent(&self, intent: &Intent) -> Result<(), bool> {
        let Some(plan) = self.plan(&intent.plan) else {
            let store = self.store();
            let id = intent.id;
            let now = self.now();
            let _ = blocking(move || {
                store.complete(id, IntentOutcome::Failed { error: "plan no longer configured".into() }, now)
            })
            .await;
            return Err(false);
        };
        let target =
            Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
        let store = self.store();
        let (id, now) = (intent.id, self.now());
        let _ = blocking(move || store.mark_sent(id, now)).await;
        let started = std::time::Instant::now();
        let result = self.adapters.actuator.set_traffic(&plan, &target, intent.percent, &intent.idempotency_key).await;
        let elapsed = started.elapsed().as_secs_f64();
        let store = self.store();
        let now = self.now();
        match result {
            Ok(()) => {
                self.metrics.actuation_duration.with_label_values(&["ok"]).observe(elapsed);
                self.metrics.open_intents.dec();
                let percent = intent.percent;
                let _ = blocking(move || store.complete(id, IntentOutcome::Done { observed: percent }, now)).await;
                self.confirmed(intent, now);
                Ok(())
            }
            Err(e) => {
                self.metrics.actuation_duration.with_label_values(&["error"]).observe(elapsed);
                self.metrics.actuation_errors.with_label_values(&[e.label]).inc();
                tracing_error(&format!(
                    "actuation {}/{}/{} -> {}% failed: {}",
                    target.plan, target.region, target.service, intent.percent, e.message
                ));
                if e.retryable {
                    return Err(true);
                }
                self.metrics.open_intents.dec();
                let error = e.message.clone();
                let _ = blocking(move || store.complete(id, IntentOutcome::Failed { error }, now)).await;
                Err(false)
            }
        }
    }

    /// Startup: every open intent is resolved by reading its target back first: already
    /// applied → done; otherwise sent again with the same idempotency key. Never guessed.
    async fn recover(self: &Arc<Self>) {
        let store = self.store();
        let open = match blocking(move || store.open_intents()).await {
            Ok(open) => open,
            Err(e) => {
                self.set_ready(false, vec![format!("state store: {e}")]);
                return;
            }
        };
        for intent in open {
            let Some(plan) = self.plan(&intent.plan) else { continue };
            let target =
                Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
            match self.adapters.actuator.read_traffic(&plan, &target).await {
                Ok(Some(observed)) if observed == intent.percent => {
                    let store = self.store();
                    let (id, now) = (intent.id, self.now());
                    let _ = blocking(move || store.complete(id, IntentOutcome::Done { observed }, now)).await;
                    // When it was applied is unknown; the hold restarts now, which never shortens it.
                    self.confirmed(&intent, now);
                    self.record_event(
                        "intent-recovered",
                        "controller",
                        serde_json::json!({"intent": intent.id, "plan": intent.plan, "region": intent.region,
                            "service": intent.service, "percent": intent.percent, "resolution": "already applied"}),
                    );
                }
                other => {
                    let observed = other.as_ref().ok().cloned().flatten();
                    self.record_event(
                        "intent-recovered",
                        "controller",
                        serde_json::json!({"intent": intent.id, "plan": intent.plan, "region": intent.region,
                            "service": intent.service, "percent": intent.percent, "observed": observed,
                            "resolution": "re-sent"}),
                    );
                    self.dispatch(intent);
                }
            }
        }
    }

    /// Re-dispatch open intents whose worker is not running (e.g. after a retryable failure
    /// of the read-back at startup).
    async fn intent_reconciler(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.intent_retry.max(Duration::from_millis(200)) * 5);
        loop {
            tick.tick().await;
            let store = self.store();
            let Ok(open) = blocking(move || store.open_intents()).await else { continue };
            self.metrics.open_intents.set(open.len() as i64);
            for intent in open {
                let target = Target {
                    plan: intent.plan.clone(),
                    region: intent.region.clone(),
                    service: intent.service.clone(),
                };
                let running = self.inflight.lock().map(|m| m.contains_key(&target)).unwrap_or(true);
                if !running {
                    self.dispatch(intent);
                }
            }
        }
    }

    // ----- health and read-back -----

    /// Evaluate every plan's checks on its interval, for the units under watch.
    async fn health_loop(self: Arc<Self>) {
        let mut next: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            let snapshot = self.snapshot();
            let now_instant = tokio::time::Instant::now();
            let mut soonest = now_instant + Duration::from_secs(1);
            for (name, entry) in &snapshot.plans {
                if entry.plan.health.checks.is_empty() {
                    continue;
                }
                let interval = Duration::from_millis(entry.plan.health.interval.as_millis().max(100));
                let due = *next.get(name).unwrap_or(&now_instant);
                if due > now_instant {
                    soonest = soonest.min(due);
                    continue;
                }
                next.insert(name.clone(), now_instant + interval);
                soonest = soonest.min(now_instant + interval);
                let requests = meridian_core::watch::health_requests(&entry.plan, &entry.state, self.now());
                if requests.is_empty() {
                    continue;
                }
                let me = self.clone();
                let plan = entry.plan.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    for request in &requests {
                        samples.extend(me.adapters.health.evaluate(&plan, request).await);
                    }
                    let _ = me.events.send(Event::Health { plan: plan.name.clone(), samples });
                });
            }
            tokio::time::sleep_until(soonest).await;
        }
    }

    /// Read back the traffic of units that should serve some, to detect drift.
    async fn readback_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.readback_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let snapshot = self.snapshot();
            for (name, entry) in &snapshot.plans {
                let mut readings = Vec::new();
                // Every unit Meridian has moved, those it took back to 0 included: a region rolled
                // back or disabled for a lost approval and switched on behind its back is drift
                // too. Units never moved are left alone, so adopting a service that is already
                // live never switches it off.
                let moved = |u: &&meridian_core::state::UnitState| u.actuated || u.percent > 0;
                for u in entry.state.units.iter().filter(moved) {
                    let target = Target { plan: name.clone(), region: u.region.clone(), service: u.service.clone() };
                    let read_at = self.now();
                    if let Ok(Some(percent)) = self.adapters.actuator.read_traffic(&entry.plan, &target).await {
                        readings.push((
                            TrafficReading { region: u.region.clone(), service: u.service.clone(), percent },
                            read_at,
                        ));
                    }
                }
                if !readings.is_empty() {
                    let _ = self.events.send(Event::Readings { plan: name.clone(), readings });
                }
            }
        }
    }

    /// Expiry is an event of its own: recorded once per approval when its time has come.
    fn announce_expiries(
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

    /// Tell the decision loop a target confirmed an actuation, so the step's hold starts then.
    fn confirmed(&self, intent: &Intent, at: DateTime<Utc>) {
        let confirmation = Confirmation {
            region: intent.region.clone(),
            service: intent.service.clone(),
            percent: intent.percent,
            at,
        };
        let _ = self.events.send(Event::Confirmed { plan: intent.plan.clone(), confirmation });
    }

    fn record_event(&self, kind: &str, who: &str, detail: serde_json::Value) {
        let event = ControllerEvent { at: self.now(), kind: kind.to_string(), who: who.to_string(), detail };
        let store = self.store();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.record_event(&event) {
                tracing_error(&format!("failed to record {} event: {e}", event.kind));
            }
        });
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
    let changes = sync_source_approvals(config, &store.approvals()?, &store.file_approvals()?, |s| source.owns(s));
    let mut kept = Vec::new();
    for change in changes {
        match change {
            ApprovalSync::Put { approval, source } => {
                store.put_approval(&approval, &source, &approval.granted_by, now)?;
            }
            ApprovalSync::Revoke { name } => {
                store.revoke_approval(&name, FILE_REMOVED_BY, Some(FILE_REMOVED_REASON), now)?;
            }
            ApprovalSync::KeepForeign { name, source } => kept.push((name, source)),
        }
    }
    Ok(kept)
}

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

fn tracing_error(message: &str) {
    crate::log_line(&format!("meridian: {message}"));
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
            if let Some(w) = &command.wave
                && p.wave_index(w).is_none()
            {
                return Err(ControlError::Invalid(format!("plan {plan:?} has no wave {w:?}")));
            }
            if let Some(r) = &command.region
                && p.region_index(r).is_none()
            {
                return Err(ControlError::Invalid(format!("plan {plan:?} has no region {r:?}")));
            }
            let store = self.store();
            blocking(move || store.enqueue_command(&plan, &command))
                .await
                .map_err(|e| ControlError::Store(e.message))?;
            self.kick();
            Ok(())
        })
    }

    fn grant(&self, approval: ApprovalRecord) -> BoxFuture<'_, Result<(), ControlError>> {
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
            // The store, not the published snapshot, is the truth: a grant made a moment ago
            // may not be published yet.
            let store = self.store();
            let now = self.now();
            let by = approval.granted_by.clone();
            let grants = self.grants.clone();
            let conflict = blocking(move || {
                let _one_at_a_time =
                    grants.lock().map_err(|_| StoreFailure { message: "grant lock poisoned".into() })?;
                if store.approvals()?.iter().any(|a| a.name == approval.name) {
                    return Ok(Some(approval.name));
                }
                store.put_approval(&approval, "api", &by, now).map(|()| None)
            })
            .await
            .map_err(|e| ControlError::Store(e.message))?;
            if let Some(name) = conflict {
                return Err(ControlError::Conflict(name));
            }
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

    fn record_denial(&self, who: &str, what: &str, at: DateTime<Utc>) {
        let _ = at;
        self.record_event("access-denied", who, serde_json::json!({ "request": what }));
    }

    fn metrics(&self) -> String {
        // Gauges are refreshed at scrape time from the published snapshot, so they are right
        // after a restart and seconds-to-expiry counts down between decisions.
        self.metrics.scrape(&self.snapshot(), self.now())
    }

    fn readiness(&self) -> Readiness {
        self.readiness.lock().map(|r| r.clone()).unwrap_or(Readiness { ready: false, reasons: vec!["poisoned".into()] })
    }
}
