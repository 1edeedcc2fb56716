//! `meridian run PATH... --state-dir DIR --listen ADDR`: the standalone controller.
//!
//! Wiring only: the database-backed store, the health providers, the actuators and the API
//! around `meridian_controller::runtime`. Exits 1 when the controller cannot start (invalid
//! configuration, state dir in use) or when a background task fails; 0 on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_actuator::{ActuatorOptions, PlanActuators};
use meridian_controller::control::ControlPlane;
use meridian_controller::nohealth::Unreadable;
use meridian_controller::runtime::{Adapters, Running, Settings, SystemClock, start};
use meridian_core::duration::Span;
use meridian_core::ports::HealthSource;
use meridian_store::SqliteStore;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plan and approval files or directories, watched for changes.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Directory of the state database (created if missing; one controller per directory).
    #[arg(long, default_value = "meridian-state")]
    pub state_dir: PathBuf,
    /// Address of the dashboard, the API and /metrics.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Base URL of the Prometheus server for `prometheus` checks without their own `url`.
    #[arg(long, env = "MERIDIAN_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// How often targets with traffic are read back to detect drift.
    #[arg(long, default_value = "30s")]
    pub readback_interval: Span,
    /// Exit once every plan is complete (0), or once one is halted or aborted (1); for CI
    /// jobs and scripts. Default: run until stopped.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Bearer tokens with their roles (YAML); required unless --no-auth.
    #[arg(long, value_name = "FILE", required_unless_present = "no_auth")]
    pub tokens: Option<PathBuf>,
    /// Accept every API request as `anonymous` with every permission. Local experiments only.
    #[arg(long, conflicts_with = "tokens")]
    pub no_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also export one series per unit on /metrics (meridian_unit_state,
    /// meridian_unit_traffic_percent, meridian_health_value): about 8 per (region, service),
    /// so keep it for small fleets. The per-plan aggregates are always exported.
    #[arg(long)]
    pub unit_metrics: bool,
}

pub fn run(args: &Args) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meridian run: failed to start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_async(args))
}

/// Build the adapters for `meridian run` and `meridian demo`.
pub fn adapters(state_dir: &std::path::Path, health: Arc<dyn HealthSource>) -> Result<Adapters, String> {
    let store = SqliteStore::open(state_dir).map_err(|e| error_chain(&e))?;
    let actuator = PlanActuators::new(ActuatorOptions::default()).map_err(|e| e.to_string())?;
    Ok(Adapters { store: Arc::new(store), health, actuator: Arc::new(actuator), clock: Arc::new(SystemClock) })
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
            eprintln!("meridian: {reason}");
            return Arc::new(Unreadable { reason });
        }
    };
    match meridian_health::CheckRouter::new(config, meridian_health::HttpSourceConfig::default()) {
        Ok(router) => Arc::new(RouterHealth { router, reported: Default::default() }),
        Err(e) => {
            let reason = format!("health providers unavailable: {}", error_chain(&e));
            eprintln!("meridian: {reason}");
            Arc::new(Unreadable { reason })
        }
    }
}

/// `meridian-health`'s providers behind the core's health port.
struct RouterHealth {
    router: meridian_health::CheckRouter,
    /// Errors already printed, so a down Prometheus is reported once, not every interval.
    reported: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl HealthSource for RouterHealth {
    fn evaluate<'a>(
        &'a self,
        plan: &'a meridian_core::Plan,
        request: &'a meridian_core::ports::EvalRequest,
    ) -> meridian_core::ports::BoxFuture<'a, Vec<meridian_core::HealthSample>> {
        Box::pin(async move {
            let request = meridian_health::EvalRequest {
                service: request.service.clone(),
                wave: request.wave.clone(),
                regions: request.regions.clone(),
                now: request.now,
            };
            let evaluation = meridian_health::HealthSource::evaluate(&self.router, plan, &request).await;
            if let Ok(mut reported) = self.reported.lock() {
                for e in &evaluation.errors {
                    let message = format!("plan {}: {}", plan.name, error_chain(e));
                    if reported.insert(message.clone()) {
                        meridian_controller::log_line(&format!("meridian: health: {message}"));
                    }
                }
            }
            evaluation.samples
        })
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
    let health = health_source(args.prometheus.as_deref());
    let adapters = match adapters(&args.state_dir, health) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("meridian run: {e}");
            return 1;
        }
    };
    let mut settings = Settings::new(args.paths.clone());
    settings.unit_metrics = args.unit_metrics;
    settings.readback_interval = Duration::from_millis(args.readback_interval.as_millis().max(100));
    let auth = match &args.tokens {
        Some(path) => match meridian_api::Auth::from_file(path) {
            Ok(auth) => auth,
            Err(e) => {
                eprintln!("meridian run: {}", error_chain(&e));
                return 1;
            }
        },
        None => meridian_api::Auth::disabled(),
    };
    let tls = args.tls_cert.clone().zip(args.tls_key.clone()).map(|(cert, key)| meridian_api::TlsFiles { cert, key });
    if let Some(files) = &tls
        && let Err(e) = files.check()
    {
        eprintln!("meridian run: {}", error_chain(&e));
        return 1;
    }
    let listener = match bind_api(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meridian run: {e}");
            return 1;
        }
    };
    let running = match start(settings, adapters).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian run: {}", start_error(&e));
            return 1;
        }
    };
    let api = match serve_api(running.controller.clone(), listener, auth, tls).await {
        Ok(api) => api,
        Err(e) => {
            eprintln!("meridian run: {e}");
            running.shutdown();
            return 1;
        }
    };
    eprintln!(
        "meridian run: watching {}, state in {}, API on {}://{}",
        args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        args.state_dir.display(),
        if args.tls_cert.is_some() { "https" } else { "http" },
        api.addr
    );
    supervise(running, Some(api), args.exit_when_done).await
}

/// Run until a signal (exit 0), a failed background task (exit 1), or, with `until_done`,
/// until every plan is complete (0) or one is halted or aborted (1).
pub async fn supervise(mut running: Running, api: Option<ApiServer>, until_done: bool) -> i32 {
    let controller = running.controller.clone();
    let done = async move {
        if !until_done {
            return std::future::pending().await;
        }
        loop {
            if let Some(code) = outcome(&controller.snapshot()) {
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
    let (code, graceful) = tokio::select! {
        failed = api_stopped => {
            eprintln!("meridian run: {failed}; exiting so a supervisor can restart it");
            (1, false)
        }
        failed = running.join_failure() => {
            eprintln!("meridian run: {} stopped unexpectedly; exiting so a supervisor can restart it", failed.unwrap_or("a task"));
            (1, true)
        }
        code = done => (code, true),
        _ = shutdown_signal() => (0, true),
    };
    // Stop deciding and acting first (readiness turns 503), then let the API finish: event
    // streams end and requests in flight get up to 10 s; reads are served from the last
    // snapshot and commands or grants still become durable, for the next start to apply.
    running.shutdown();
    if let (true, Some(stop), Some(task)) = (graceful, api_shutdown, api_task) {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(11), task).await;
    }
    code
}

/// 0 when every plan is complete, 1 when any is halted or aborted, `None` while running.
pub fn outcome(snapshot: &meridian_controller::snapshot::Snapshot) -> Option<i32> {
    use meridian_core::PlanPhase;
    let phases: Vec<PlanPhase> = snapshot.plans.values().map(|p| p.state.phase()).collect();
    if phases.iter().any(|p| matches!(p, PlanPhase::Halted | PlanPhase::Aborted)) {
        Some(1)
    } else if !phases.is_empty() && phases.iter().all(|p| *p == PlanPhase::Complete) {
        Some(0)
    } else {
        None
    }
}

async fn shutdown_signal() {
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
