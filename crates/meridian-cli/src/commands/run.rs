//! `meridian run PATH... --state-dir DIR --listen ADDR`: the standalone controller.
//!
//! Wiring only: the database-backed store, the health providers, the actuators and the API
//! around `meridian_controller::runtime`. Exits 1 when the controller cannot start (invalid
//! configuration, state dir in use) or when a background task fails; 0 on SIGINT/SIGTERM.
//! With `--exit-when-done`, how the rollout ended is the core's `outcome::overall`, the same
//! rule `meridian status --wait` applies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_actuator::{ActuatorOptions, PlanActuators};
use meridian_controller::config::FileSource;
use meridian_controller::control::ControlPlane;
use meridian_controller::nohealth::Unreadable;
use meridian_controller::runtime::{Adapters, Running, Settings, StartError, SystemClock, start_loaded};
use meridian_core::duration::Span;
use meridian_core::ports::HealthSource;
use meridian_core::ports::config::{Config, ConfigSource};
use meridian_store::SqliteStore;

const EXIT_CODES: &str = "\
Exit codes:
  0  stopped by SIGINT or SIGTERM; with --exit-when-done: every plan is complete and every
     unit enabled
  1  it could not start (invalid configuration, bad TLS files, state dir in use, a damaged,
     empty or read-only database, address taken) or a background task failed (10 decisions
     in a row that failed to commit stop it); with --exit-when-done: a region failed that nobody
     accepted (at once; with --no-fail-fast once its wave halts), or a plan halted or was
     aborted
  4  with --exit-when-done: every plan is complete, but not every unit is enabled (failures
     a promote accepted, or aborted regions); 0 with --accept-failures

With --exit-when-done, the API keeps serving the final state for 5 s after the outcome is
known, so a concurrent `meridian status --wait` gets the outcome too.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Plan and approval files or directories, watched for changes.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Directory of the state database (created if missing; one controller per directory).
    #[arg(long, default_value = "meridian-state")]
    pub state_dir: PathBuf,
    /// Exit once every plan is complete (0, or 4 when not every unit is enabled), or as soon as
    /// a region fails that nobody accepted or a plan halts or is aborted (1); for CI jobs and
    /// scripts. Default: run until stopped.
    #[arg(long)]
    pub exit_when_done: bool,
    /// With --exit-when-done: a completion with accepted failures or aborted regions exits 0,
    /// not 4.
    #[arg(long, requires = "exit_when_done")]
    pub accept_failures: bool,
    /// With --exit-when-done: on a failed region, wait for its wave to halt (then exit 1)
    /// instead of exiting 1 at once; a promote may still accept the failure meanwhile.
    #[arg(long, requires = "exit_when_done")]
    pub no_fail_fast: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub loop_args: LoopArgs,
}
/// Where and how the dashboard, the API and /metrics are served (`run` and `kube`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the dashboard, the API and /metrics.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Bearer tokens with their roles (YAML); required unless --no-auth.
    #[arg(long, value_name = "FILE", required_unless_present = "no_auth")]
    pub tokens: Option<PathBuf>,
    /// Accept every API request as `anonymous` with every permission. Local experiments only.
    #[arg(long, conflicts_with = "tokens")]
    pub no_auth: bool,
    /// With --no-auth: allow a listen address that is not loopback, so that anyone who can
    /// reach it may grant approvals and abort rollouts.
    #[arg(long, requires = "no_auth")]
    pub i_know_this_is_open: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Tunables of the run loop (`run` and `kube`).
#[derive(Debug, clap::Args)]
pub struct LoopArgs {
    /// Base URL of the Prometheus server for `prometheus` checks without their own `url`.
    #[arg(long, env = "MERIDIAN_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// How often targets with traffic are read back to detect drift.
    #[arg(long, default_value = "30s")]
    pub readback_interval: Span,
    /// Also export one series per unit on /metrics (meridian_unit_state,
    /// meridian_unit_traffic_percent, meridian_health_value, and each check's
    /// meridian_health_limit per region): about 8 per (region, service), so keep it for small
    /// fleets. The per-plan aggregates are always exported.
    #[arg(long)]
    pub unit_metrics: bool,
    /// Announce an approval a unit still depends on this long before it expires: an
    /// `approval-expiring` event once, and meridian_approval_expiring on /metrics.
    #[arg(long, default_value = "24h")]
    pub expiry_warning: Span,
    /// How the log on stderr is written: `text` (one line per event, for people) or `json`
    /// (one JSON object per line, for a log pipeline).
    #[arg(long, env = "MERIDIAN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What is logged: `error`, `warn`, `info` (every transition, approval change and
    /// configuration change, plus the rest) or `debug`.
    #[arg(long, env = "MERIDIAN_LOG_LEVEL", default_value = "info")]
    pub log_level: LogLevel,
    /// Webhook sinks (YAML) told of failures, approvals needed, approval changes,
    /// completions and rejected edits; see the README's Notifications section.
    #[arg(long, value_name = "FILE", env = "MERIDIAN_NOTIFICATIONS")]
    pub notifications: Option<PathBuf>,
}

/// `--log-format` (see `meridian_controller::log`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--log-level` (see `meridian_controller::log`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LoopArgs {
    /// Start the process's log as asked (before anything is logged).
    pub fn init_log(&self) {
        use meridian_controller::log::{Format, Level, init};
        let format = match self.log_format {
            LogFormat::Text => Format::Text,
            LogFormat::Json => Format::Json,
        };
        let level = match self.log_level {
            LogLevel::Error => Level::Error,
            LogLevel::Warn => Level::Warn,
            LogLevel::Info => Level::Info,
            LogLevel::Debug => Level::Debug,
        };
        init(format, level);
        // The API's and the Kubernetes mode's own lines (warnings) in the same format.
        meridian_api::set_log_sink(|line| meridian_controller::log::line(Level::Warn, "api", &[], line));
        meridian_kube::set_log_sink(|line| meridian_controller::log::line(Level::Warn, "kubernetes", &[], line));
        meridian_notify::set_log_sink(|line| meridian_controller::log::line(Level::Warn, "notifications", &[], line));
    }

    /// The loop's settings for these paths.
    pub fn settings(&self, paths: Vec<PathBuf>) -> Settings {
        let mut settings = Settings::new(paths);
        settings.unit_metrics = self.unit_metrics;
        settings.expiry_warning = Duration::from_millis(self.expiry_warning.as_millis());
        settings.readback_interval = Duration::from_millis(self.readback_interval.as_millis().max(100));
        settings
    }

    /// The sinks of `--notifications`, checked and started (on the current runtime), with
    /// their delivery counters to register on `/metrics`; none without the option.
    pub fn notifier(&self, who: &str) -> Result<Option<Notifications>, String> {
        let Some(path) = &self.notifications else { return Ok(None) };
        let specs = meridian_notify::load(path).map_err(|e| e.to_string())?;
        let hooks = meridian_notify::Webhooks::start(specs)?;
        say(Level::Info, who, &format!("notifications to sinks {}", hooks.names().join(", ")));
        let collector = hooks.collector();
        Ok(Some(Notifications { notifier: Arc::new(hooks), collector }))
    }
}

/// Started notification sinks: what the runtime hands notices to, and their counters.
pub struct Notifications {
    pub notifier: Arc<dyn meridian_controller::runtime::Notifier>,
    pub collector: Box<dyn prometheus::core::Collector>,
}

impl Notifications {
    /// Hand the sinks to the runtime's adapters.
    pub fn plug(notifications: &Option<Notifications>, adapters: &mut Adapters) {
        if let Some(n) = notifications {
            adapters.notifier = n.notifier.clone();
        }
    }

    /// Export the delivery counters on the running controller's `/metrics`.
    pub fn export(notifications: Option<Notifications>, running: &Running) {
        if let Some(n) = notifications {
            let _ = running.controller.metrics_registry().registry.register(n.collector);
        }
    }
}

/// The API's pieces checked and bound before anything is decided: a bad tokens file, bad TLS
/// files, a taken address or an open API on a public address stop the start. Warnings are
/// printed with `who` (`meridian run`).
pub async fn prepare_api(
    args: &ServeArgs,
    who: &str,
) -> Result<(tokio::net::TcpListener, meridian_api::Auth, Option<meridian_api::TlsFiles>), String> {
    let auth = match &args.tokens {
        Some(path) => {
            let auth = meridian_api::Auth::from_file(path).map_err(|e| error_chain(&e))?;
            for warning in auth.warnings() {
                say(Level::Warn, who, &format!("warning: {warning}"));
            }
            auth
        }
        None => meridian_api::Auth::disabled(),
    };
    let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(cert, key)| meridian_api::TlsFiles { cert, key });
    if let Some(files) = &tls {
        files.check().map_err(|e| error_chain(&e))?;
    }
    let listener = bind_api(&args.listen).await?;
    open_api_allowed(&listener, auth.is_disabled(), args.i_know_this_is_open)?;
    Ok((listener, auth, tls))
}

use meridian_controller::log::{Level, say};

pub fn run(args: &Args) -> i32 {
    args.loop_args.init_log();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meridian run: failed to start the async runtime: {e}");
            return crate::exit::FAILED;
        }
    };
    runtime.block_on(run_async(args))
}

/// Build the adapters for `meridian run` and `meridian demo`.
pub fn adapters(state_dir: &std::path::Path, health: Arc<dyn HealthSource>) -> Result<Adapters, String> {
    let store = SqliteStore::open(state_dir).map_err(|e| error_chain(&e))?;
    let actuator = PlanActuators::new(ActuatorOptions::default()).map_err(|e| e.to_string())?;
    Ok(Adapters {
        store: Arc::new(store),
        health,
        actuator: Arc::new(actuator),
        clock: Arc::new(SystemClock),
        notifier: Arc::new(meridian_controller::runtime::NoNotifier),
    })
}

pub use meridian_controller::error_chain;

/// The configuration's diagnostics, one per line, for a failed start.
pub fn start_error(e: &meridian_controller::runtime::StartError) -> String {
    use meridian_controller::config::ConfigError;
    use meridian_controller::runtime::StartError;
    match e {
        StartError::Config(ConfigError::Invalid(report)) => report
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .chain(std::iter::once(format!("{} errors; fix them and start again", report.errors())))
            .collect::<Vec<_>>()
            .join("\n"),
        other => error_chain(other),
    }
}

/// The health providers: Prometheus (at `prometheus`, or each check's own `url`) and HTTP.
/// A provider that cannot be built (a malformed `--prometheus` URL) fails closed: every
/// verdict is "no data" with the reason, and the reason is printed once.
pub fn health_source(prometheus: Option<&str>) -> Arc<dyn HealthSource> {
    let config = match prometheus.map(reqwest::Url::parse).transpose() {
        Ok(url) => meridian_health::PrometheusConfig { url, ..Default::default() },
        Err(e) => {
            let reason = format!("--prometheus is not a valid URL: {e}");
            say(Level::Error, "meridian", &reason);
            return Arc::new(Unreadable { reason });
        }
    };
    match meridian_health::CheckRouter::new(config, meridian_health::HttpSourceConfig::default()) {
        Ok(router) => Arc::new(router),
        Err(e) => {
            let reason = format!("health providers unavailable: {}", error_chain(&e));
            say(Level::Error, "meridian", &reason);
            Arc::new(Unreadable { reason })
        }
    }
}

/// The API server running in the background.
pub struct ApiServer {
    pub addr: std::net::SocketAddr,
    pub task: tokio::task::JoinHandle<Result<(), String>>,
    /// Dropping or sending on it starts the graceful shutdown (event streams end, requests in
    /// flight get up to 10 s).
    pub shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Bind `listen`; done before the controller starts, so a taken address stops `run` before
/// anything is decided.
pub async fn bind_api(listen: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))
}

/// An API without authentication only on a loopback address, unless the caller says it
/// knows (`--i-know-this-is-open`).
fn open_api_allowed(listener: &tokio::net::TcpListener, auth_disabled: bool, i_know: bool) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| format!("cannot read the listen address: {e}"))?;
    if !auth_disabled || i_know || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--no-auth on {addr}, which is not a loopback address, would let anyone who can reach it grant \
         approvals and abort rollouts; listen on 127.0.0.1, give --tokens FILE, or add --i-know-this-is-open"
    ))
}

/// Serve the dashboard, the API and /metrics on `listener`.
pub async fn serve_api(
    controller: Arc<meridian_controller::runtime::Controller>,
    listener: tokio::net::TcpListener,
    auth: meridian_api::Auth,
    tls: Option<meridian_api::TlsFiles>,
) -> Result<ApiServer, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let router = meridian_api::router(controller, auth, meridian_api::Limits::default());
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = stop.await;
        };
        meridian_api::serve(listener, router, tls, stop).await.map_err(|e| error_chain(&e))
    });
    Ok(ApiServer { addr, task, shutdown })
}

async fn run_async(args: &Args) -> i32 {
    let health = health_source(args.loop_args.prometheus.as_deref());
    let mut adapters = match adapters(&args.state_dir, health) {
        Ok(a) => a,
        Err(e) => {
            say(Level::Error, "meridian run", &e.to_string());
            return crate::exit::FAILED;
        }
    };
    let notifications = match args.loop_args.notifier("meridian run") {
        Ok(n) => n,
        Err(e) => {
            say(Level::Error, "meridian run", &e);
            return crate::exit::FAILED;
        }
    };
    Notifications::plug(&notifications, &mut adapters);
    let settings = args.loop_args.settings(args.paths.clone());
    // Read and validated once, here: the controller starts on this very configuration.
    let source = Arc::new(FileSource::new(settings.paths.clone(), settings.config_poll));
    let loaded = source.load(adapters.clock.now()).await;
    if let Err(e) = loaded.as_ref().map_or(Ok(()), standalone_actuators) {
        say(Level::Error, "meridian run", &e.to_string());
        return crate::exit::FAILED;
    }
    let (listener, auth, tls) = match prepare_api(&args.serve, "meridian run").await {
        Ok(api) => api,
        Err(e) => {
            say(Level::Error, "meridian run", &e.to_string());
            return crate::exit::FAILED;
        }
    };
    let started = match loaded {
        Ok(config) => start_loaded(source, config, settings, adapters).await,
        Err(e) => Err(StartError::Config(e)),
    };
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            say(Level::Error, "meridian run", &start_error(&e));
            return crate::exit::FAILED;
        }
    };
    Notifications::export(notifications, &running);
    let api = match serve_api(running.controller.clone(), listener, auth, tls).await {
        Ok(api) => api,
        Err(e) => {
            say(Level::Error, "meridian run", &e.to_string());
            running.shutdown();
            return crate::exit::FAILED;
        }
    };
    say(
        Level::Info,
        "meridian run",
        &format!(
            "watching {}, state in {}, API on {}://{}",
            args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            args.state_dir.display(),
            if args.serve.tls_cert.is_some() { "https" } else { "http" },
            api.addr
        ),
    );
    let until_done = args
        .exit_when_done
        .then_some(ExitWhenDone { accept_failures: args.accept_failures, fail_fast: !args.no_fail_fast });
    supervise(running, Some(api), until_done, std::future::pending()).await
}

/// A plan that asks for the kubernetes actuator stops the start: only `meridian kube` drives
/// it. (One edited in later is refused by each actuation, with the same message.) A
/// configuration that does not load is left to the start, which reports it in full.
fn standalone_actuators(config: &Config) -> Result<(), String> {
    match config.plans.iter().find_map(|plan| meridian_actuator::needs_kube_mode(plan)) {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
}

/// `--exit-when-done` and its options.
#[derive(Debug, Clone, Copy)]
pub struct ExitWhenDone {
    /// A completion with accepted failures or aborted regions exits 0, not 4.
    pub accept_failures: bool,
    /// Exit 1 on a failure nobody accepted at once, not once its wave halts.
    pub fail_fast: bool,
}

/// How long the API keeps serving the final state after `--exit-when-done` decided to exit,
/// so that a concurrent `meridian status --wait` (asking every 2 s by default) reads the
/// outcome instead of finding the controller gone.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Run until a signal (exit 0), a failed background task (exit 1), `deposed` (a leader that
/// lost its lease: exit 1 with the reason it gives), or, with `until_done`, until the rollout
/// ended (see [`done`]).
pub async fn supervise(
    mut running: Running,
    api: Option<ApiServer>,
    until_done: Option<ExitWhenDone>,
    deposed: impl std::future::Future<Output = String>,
) -> i32 {
    let controller = running.controller.clone();
    let ended = async move {
        let Some(rule) = until_done else { return std::future::pending().await };
        loop {
            if let Some(code) = done(&controller.snapshot(), rule) {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (mut api_task, api_shutdown) = match api {
        Some(api) => (Some(api.task), Some(api.shutdown)),
        None => (None, None),
    };
    let api_stopped = async {
        match api_task.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => "the API server stopped".to_string(),
                Ok(Err(e)) => format!("the API server failed: {e}"),
                Err(e) => format!("the API server panicked: {e}"),
            },
            None => std::future::pending().await,
        }
    };
    let (code, graceful, linger) = tokio::select! {
        failed = api_stopped => {
            say(Level::Error, "meridian run", &format!("{failed}; exiting so a supervisor can restart it"));
            (1, false, false)
        }
        failed = running.join_failure() => {
            say(Level::Error, "meridian run", &format!("{} stopped unexpectedly; exiting so a supervisor can restart it", failed.unwrap_or("a task")));
            (1, true, false)
        }
        code = ended => (code, true, true),
        why = deposed => {
            say(Level::Error, "meridian", &format!("{why}; exiting so that this replica restarts as a follower"));
            (1, false, false)
        }
        _ = shutdown_signal() => (0, true, false),
    };
    // Stop deciding and acting first (readiness turns 503), then let the API finish: event
    // streams end and requests in flight get up to 10 s; reads are served from the last
    // snapshot and commands or grants still become durable, for the next start to apply.
    running.shutdown();
    if linger && api_task.is_some() {
        // The outcome is known: keep serving it for a while, so a waiter polling the API gets
        // it rather than "cannot reach". A signal cuts the wait short.
        tokio::select! {
            _ = tokio::time::sleep(EXIT_GRACE) => {}
            _ = shutdown_signal() => {}
        }
    }
    if let (true, Some(stop), Some(task)) = (graceful, api_shutdown, api_task) {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(11), task).await;
    }
    code
}

/// The exit code once the rollout ended, saying why on stderr; `None` while it runs. 0 when
/// every plan is complete with every unit enabled; 4 when complete with accepted failures or
/// aborted regions (0 with `accept_failures`); 1 on a failure nobody accepted (with
/// `fail_fast`, or once its wave halts), or a plan halted or aborted.
pub fn done(snapshot: &meridian_controller::snapshot::Snapshot, rule: ExitWhenDone) -> Option<i32> {
    use meridian_core::outcome::{End, outcome, overall};
    let outcomes: Vec<meridian_core::Outcome> = snapshot.plans.values().map(|e| outcome(&e.plan, &e.state)).collect();
    let grace = EXIT_GRACE.as_secs();
    Some(match overall(&outcomes, rule.fail_fast)? {
        End::Enabled => {
            say(
                Level::Info,
                "meridian run",
                &format!("every plan is complete and every unit enabled; exiting 0 in {grace} s"),
            );
            crate::exit::OK
        }
        End::CompleteWithExceptions(why) if rule.accept_failures => {
            say(
                Level::Info,
                "meridian run",
                &format!("{why}\n  not every unit is enabled; exiting 0 (--accept-failures) in {grace} s"),
            );
            crate::exit::OK
        }
        End::CompleteWithExceptions(why) => {
            say(
                Level::Warn,
                "meridian run",
                &format!("{why}\n  not every unit is enabled; exiting 4 in {grace} s (--accept-failures exits 0)"),
            );
            crate::exit::NOT_ALL_ENABLED
        }
        End::Failed(why) => {
            say(Level::Error, "meridian run", &format!("{why}\n  exiting 1 in {grace} s"));
            crate::exit::FAILED
        }
    })
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
