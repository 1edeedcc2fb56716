//! The controller at run time: the same loop for every source of configuration and every
//! store (files and SQLite standalone; Kubernetes resources next).
//!
//! ```text
//!  configure (ConfigSource) ─┐                              ┌─> StateStore::commit_all (a pass's state, audit, intents)
//!  observe: health, reads ───┤                              ├─> snapshot + audit feed + metrics
//!  control (API requests) ───┼─> events ─> decide: engine ──┤
//!                            │     (and timers at wake_at)  └─> actuate: one worker per target ─> Actuator
//!                            │                                  (at most max_actuations sending at once)
//! ```
//!
//! One job per module: `configure` (apply, reject and watch configuration), `decide` (the
//! loop, the only writer of plan state), `actuate` (workers, recovery, reconciler), `observe`
//! (health evaluations and read-backs), `control` (the `ControlPlane` the API uses),
//! `problems` (what keeps it from being ready). This module wires them and owns their shared
//! state.
//!
//! Event-driven: an approval, a command, a configuration change or a health result wakes the
//! loop at once; timers (bakes, windows, expiries) wake it at the engine's `wake_at`.
//! Actuation is crash-safe by the store contract (see `ports::store`): every intent is durable
//! before it is sent, and startup resolves open intents by reading each target back before
//! anything else runs. Everything spawned is supervised: a background task that ends takes
//! readiness down; an actuation worker or a health evaluation that panics is counted, takes
//! readiness down until that job succeeds again, and leaves nothing "in flight"; a failed
//! store write is logged, counted and takes readiness down until a write succeeds.

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

mod actuate;
mod configure;
mod control;
mod decide;
mod observe;
mod problems;

use problems::{Problems, key};

use crate::config::FileSource;
use crate::control::{AuditFeed, ControlError, ControlPlane, FeedItem, Readiness};
use crate::log::Level;
use crate::metrics::Metrics;
use crate::snapshot::{AppliedEdit, ConfigStatus, PlanEntry, RejectedEdit, Snapshot};
use crate::store::{ControllerEvent, Intent, IntentOutcome, StateStore, StoreFailure, StoredEvent};
use meridian_core::approval::{FILE_REMOVED_BY, FILE_REMOVED_REASON};
use meridian_core::ports::config::{
    ApprovalSync, Config, ConfigError, ConfigSource, sync_source_approvals, vanished_in_flight,
};

pub use meridian_core::ports::{Clock, NoNotifier, Notifier};

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to (`advance`, `set`): for tests and simulations that
/// drive bakes, windows and expiries without waiting for them. Timers waiting on it wake as
/// soon as it reaches their moment.
pub struct ManualClock {
    now: tokio::sync::watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: tokio::sync::watch::Sender::new(start) }
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        self.now.send_modify(|now| *now += by);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which outlives this borrow.
            let _ = rx.wait_for(|now| *now >= at).await;
        })
    }
}

/// The effectful parts, supplied by the binary (or a test).
#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<dyn StateStore>,
    pub health: Arc<dyn HealthSource>,
    pub actuator: Arc<dyn Actuator>,
    pub clock: Arc<dyn Clock>,
    /// Where notices go (`NoNotifier`: nowhere).
    pub notifier: Arc<dyn Notifier>,
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
    /// Actuations sent at the same time at most, across all targets (each target's own are
    /// always one at a time, in order): a burst of thousands of first steps is sent, and its
    /// intents closed, in group commits of up to this many.
    pub max_actuations: usize,
    /// Decisions in a row that may fail to commit (each retried after a second) before the
    /// decision loop gives up and the process exits for its supervisor: a controller that
    /// cannot record what it decides must not go on running.
    pub max_failed_commits: u32,
    /// How long before its expiry an approval that a unit still depends on is announced
    /// (`approval-expiring` event, `meridian_approval_expiring` metric).
    pub expiry_warning: Duration,
}

impl Settings {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Settings {
            paths,
            readback_interval: Duration::from_secs(30),
            intent_retry: Duration::from_secs(1),
            config_poll: Duration::from_secs(2),
            unit_metrics: false,
            max_actuations: 32,
            max_failed_commits: 10,
            expiry_warning: Duration::from_secs(24 * 3600),
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
        /// What went wrong on the way (already reflected in `samples`).
        faults: Vec<meridian_core::ports::EvalFault>,
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
    metrics: Arc<Metrics>,
    snapshot: RwLock<Arc<Snapshot>>,
    events: mpsc::UnboundedSender<Event>,
    audit_tx: broadcast::Sender<AuditRecord>,
    /// What keeps it from being ready, by cause.
    problems: Arc<Problems>,
    /// Health faults already logged, so a Prometheus that is down is reported once, not every
    /// interval (each is still counted every time).
    reported_faults: Mutex<std::collections::HashSet<String>>,
    /// Decisions in a row that failed to commit; at `Settings::max_failed_commits` the
    /// decision loop stops, and with it the process.
    failed_commits: std::sync::atomic::AtomicU32,
    /// Plans with a health evaluation running: at most one at a time each.
    health_inflight: Mutex<std::collections::HashSet<String>>,
    /// Targets with an actuation worker running, each with the newer intent handed over
    /// while it was busy (sent next), if any.
    inflight: Mutex<HashMap<Target, Option<Intent>>>,
    /// One per actuation in flight, `Settings::max_actuations` in all.
    actuation_slots: Arc<tokio::sync::Semaphore>,
    plans: RwLock<BTreeMap<String, Arc<Plan>>>,
    /// Ticks at every publication of the snapshot: what waits for the state to change (the
    /// health poller with nothing under watch) sleeps on it instead of polling.
    published: tokio::sync::watch::Sender<()>,
    /// Serialises API grants, so two requests for one name cannot both pass the check, and
    /// the mirroring of a source's approvals with them. Holds when each recent grant was on
    /// record (`configure::mirror_source_approvals` reads it).
    grants: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
    /// Asks the configuration watcher to load again though the source saw no change: after a
    /// grant through the API that the source keeps (a Kubernetes resource, perhaps deleted
    /// before the source noticed it), and when a configuration read before a grant was on
    /// record left its revocation to the next read.
    reload: tokio::sync::Notify,
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
        self.controller.problems.raise(&format!("task:{failed}"), format!("{failed} stopped"));
        Some(failed)
    }

    /// Stop deciding and acting: `/readyz` turns 503 ("shutting down") and the background
    /// tasks end. The published snapshot stays readable and requests still reach the store.
    pub fn shutdown(mut self) {
        self.controller.problems.raise(key::SHUTTING_DOWN, "shutting down");
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
    let config = source.load(adapters.clock.now()).await?;
    start_loaded(source, config, settings, adapters).await
}

/// [`start_with`] on a configuration the caller has just loaded from `source` (to check it
/// first, as `meridian run` does for actuators only `meridian kube` drives): every file is
/// read and validated once, not twice (at 1,000 plans that is most of a start).
pub async fn start_loaded(
    source: Arc<dyn ConfigSource>,
    config: Config,
    settings: Settings,
    adapters: Adapters,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let (events, rx) = mpsc::unbounded_channel();
    let (audit_tx, _) = broadcast::channel(4096);
    let controller = Arc::new(Controller {
        adapters: adapters.clone(),
        settings: settings.clone(),
        metrics: Arc::new(
            Metrics::with_unit_series(settings.unit_metrics).with_expiry_warning(span(settings.expiry_warning)),
        ),
        snapshot: RwLock::new(Arc::new(Snapshot::default())),
        events,
        audit_tx,
        problems: Arc::new(Problems::starting()),
        failed_commits: std::sync::atomic::AtomicU32::new(0),
        health_inflight: Mutex::new(std::collections::HashSet::new()),
        reported_faults: Mutex::new(std::collections::HashSet::new()),
        inflight: Mutex::new(HashMap::new()),
        actuation_slots: Arc::new(tokio::sync::Semaphore::new(settings.max_actuations.max(1))),
        plans: RwLock::new(BTreeMap::new()),
        published: tokio::sync::watch::Sender::new(()),
        grants: Arc::new(Mutex::new(HashMap::new())),
        reload: tokio::sync::Notify::new(),
        source,
    });
    let store = adapters.store.clone();
    let expired = blocking(move || store.events("approval-expired"))
        .await?
        .into_iter()
        .filter_map(|e| e.detail["approval"].as_str().map(str::to_string))
        .collect();
    let store = adapters.store.clone();
    let expiring = blocking(move || store.events("approval-expiring"))
        .await?
        .into_iter()
        .filter_map(|e| e.detail["approval"].as_str().map(str::to_string))
        .collect();
    let mut state = LoopState {
        plans: BTreeMap::new(),
        expired,
        expiring,
        due: std::collections::BTreeSet::new(),
        all_due: false,
        samples: HashMap::new(),
        readings: HashMap::new(),
        confirmations: HashMap::new(),
        config: None,
        last_edit: None,
    };
    controller.apply_config(&mut state, config).await?;
    controller.publish(&state, None).await;
    controller.recover().await;
    controller.problems.clear(key::STARTING);

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
    /// Approvals whose coming expiry has been announced (seeded from the store too).
    expiring: std::collections::HashSet<String>,
    /// Plans the next pass decides because something new arrived for them (health, a
    /// read-back, a confirmation); the others are decided when their timer is due.
    due: std::collections::BTreeSet<String>,
    /// The next pass decides every plan: a command, an approval or a configuration may touch
    /// any of them.
    all_due: bool,
    samples: HashMap<String, Vec<HealthSample>>,
    readings: HashMap<String, Vec<(TrafficReading, DateTime<Utc>)>>,
    confirmations: HashMap<String, Vec<Confirmation>>,
    config: Option<Arc<Config>>,
    /// The last configuration that changed a plan's definition, with what it changed.
    last_edit: Option<AppliedEdit>,
}

struct PlanRun {
    plan: Arc<Plan>,
    /// Shared with the published snapshot: replaced by each committed decision, never changed
    /// in place, so publishing copies no unit (at 150,000 units a copy is ~40 MB).
    state: Arc<PlanState>,
    wake_at: Option<DateTime<Utc>>,
    /// When the next approval it depends on enters the expiry warning window.
    warn_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl PlanRun {
    /// When time alone may change this plan's decision (its engine's `wake_at`) or an
    /// approval it depends on is to be announced as expiring.
    fn next_timer(&self) -> Option<DateTime<Utc>> {
        self.wake_at.into_iter().chain(self.warn_at).min()
    }
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

    /// The one funnel for a failed store write: logged, counted by operation, and readiness
    /// down until a write succeeds again. Nothing a write was meant to keep is pretended.
    fn store_write_failed(&self, op: &'static str, e: &StoreFailure) {
        store_failure(&self.metrics, &self.problems, op, e);
    }

    /// Spawn `work` and watch it: a panic is counted (`meridian_task_failures_total{task}`),
    /// logged, and takes readiness down under `problem` until `cleanup` (which also runs after
    /// a normal end) says otherwise. `cleanup` gets whether it panicked.
    fn spawn_watched<F>(
        self: &Arc<Self>,
        task: &'static str,
        problem: String,
        work: F,
        cleanup: impl FnOnce(&Arc<Self>, bool) + Send + 'static,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let panicked = tokio::spawn(work).await.is_err_and(|e| e.is_panic());
            if panicked {
                me.metrics.task_failures.with_label_values(&[task]).inc();
                log(Level::Error, "panic", &format!("{problem}: it panicked"));
                me.problems.raise(&problem, format!("{problem} panicked"));
            }
            cleanup(&me, panicked);
        });
    }

    /// Wake the decision loop: something it reads from the store changed behind its back (a
    /// command queued by another writer, such as `kubectl`).
    pub fn kick(&self) {
        let _ = self.events.send(Event::Kick);
    }

    /// Record a controller event (a denial, a reload, an expiry) in the background. A write
    /// that fails goes through the same funnel as a failed decision: logged, counted under
    /// `record_event`, and readiness down until a write succeeds again.
    fn record_event(&self, kind: &str, who: &str, detail: serde_json::Value) {
        self.record_event_at(kind, who, detail, self.now());
    }

    /// Record a controller event (in the background: callers never wait on it); a failure goes
    /// through the same funnel as every store write, and a success clears a store problem.
    fn record_event_at(&self, kind: &str, who: &str, detail: serde_json::Value, at: DateTime<Utc>) {
        let event = ControllerEvent { at, kind: kind.to_string(), who: who.to_string(), detail };
        if let Some(notice) = meridian_core::notify::event_notice(&event) {
            self.adapters.notifier.notify(vec![notice]);
        }
        let (store, metrics, problems) = (self.store(), self.metrics.clone(), self.problems.clone());
        tokio::task::spawn_blocking(move || match store.record_event(&event) {
            Ok(()) => problems.clear(key::STORE),
            Err(e) => {
                store_failure(&metrics, &problems, "record_event", &e);
            }
        });
    }
}

/// A std duration as a chrono one (saturating: a window of centuries is "always").
fn span(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// A failed store write: logged, counted by operation (`meridian_store_errors_total{op}`),
/// and readiness down until a write succeeds again.
fn store_failure(metrics: &Metrics, problems: &Problems, op: &'static str, e: &StoreFailure) {
    log(Level::Error, "store", &format!("state store: {op} failed: {e}"));
    metrics.store_errors.with_label_values(&[op]).inc();
    problems.raise(key::STORE, format!("state store: {op} failed: {e}"));
}

/// An approval granted or changed, as a line: who may now act on what.
fn approval_line(what: &str, name: &str, flag: &str, by: &str) {
    crate::log::line(
        Level::Info,
        "approval-granted",
        &[("approval", name), ("flag", flag), ("by", by)],
        &format!("approval {name} (flag {flag}) {what} by {by}"),
    );
}

/// A line at `level` about `kind` (see `crate::log`).
fn log(level: Level, kind: &str, message: &str) {
    crate::log::line(level, kind, &[], message);
}
