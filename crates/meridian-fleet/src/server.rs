//! The HTTP face of the fleet on 127.0.0.1, and the handle that controls it in-process.
//!
//! Owns binding, routing, the wire shapes and shutdown. Every decision about state is the
//! model's: handlers parse, lock, call the model, answer. The lock is never held across an
//! await.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::FleetConfig;
use crate::error::FleetError;
use crate::exposition;
use crate::model::{Actuation, ActuatorFault, FleetState, PutOutcome, PutRecord, ScriptedFaultStatus, UnitSnapshot};

/// How long `shutdown` waits for open connections to finish before it cuts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Starts simulated fleets.
pub struct Fleet;

impl Fleet {
    /// Validate the config, bind 127.0.0.1 on its port and serve on the current tokio
    /// runtime until the handle is shut down or dropped.
    pub async fn start(config: FleetConfig) -> Result<FleetHandle, FleetError> {
        let state = FleetState::new(&config, Instant::now())?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
        let listener = TcpListener::bind(addr).await.map_err(|source| FleetError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| FleetError::Bind { addr, source })?;
        let shared = Arc::new(Shared { state: Mutex::new(state), token: config.token.clone() });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender means the handle is gone: stop too.
                    let _ = shutdown_rx.await;
                })
                .await
        });
        Ok(FleetHandle { addr, shared, shutdown: Some(shutdown_tx), task: Some(task) })
    }
}

struct Shared {
    state: Mutex<FleetState>,
    token: Option<String>,
}

impl Shared {
    /// The state survives a panicking holder (there is none by design); never poison the fleet.
    fn lock(&self) -> MutexGuard<'_, FleetState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fleet. Dropping it stops the server (without waiting); `shutdown` waits.
pub struct FleetHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl FleetHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The actuator URL template for a plan's `actuator.http.url`.
    pub fn traffic_url_template(&self) -> String {
        format!("{}/fleet/{{{{region}}}}/{{{{service}}}}/traffic", self.base_url())
    }

    /// The per-unit metrics URL template for a plan's `http` health check.
    pub fn unit_metrics_url_template(&self) -> String {
        format!("{}/fleet/{{{{region}}}}/{{{{service}}}}/metrics", self.base_url())
    }

    /// Stop accepting, let open requests finish (at most a few seconds), and wait.
    pub async fn shutdown(mut self) -> Result<(), FleetError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Some(mut task) = self.task.take() else { return Ok(()) };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(source))) => Err(FleetError::Server { source }),
            Ok(Err(join)) => Err(FleetError::Server { source: std::io::Error::other(join.to_string()) }),
            Err(_elapsed) => {
                // Idle keep-alive connections that never close: cut them.
                task.abort();
                Ok(())
            }
        }
    }

    /// Set the error ratio of one service of `region`, or of all its services.
    pub fn set_error_ratio(&self, region: &str, service: Option<&str>, ratio: f64) -> Result<(), FleetError> {
        self.shared.lock().set_error_ratio(region, service, ratio, Instant::now())
    }

    /// Every service of `region` back to the baseline error ratio.
    pub fn clear_faults(&self, region: &str) -> Result<(), FleetError> {
        self.shared.lock().clear_faults(region, Instant::now())
    }

    /// The percent a unit serves; `None` when never set or unknown.
    pub fn traffic(&self, region: &str, service: &str) -> Option<u32> {
        let state = self.shared.lock();
        state.unit(region, service).ok().and_then(|unit| state.traffic(unit))
    }

    /// Change what a unit serves without an actuation (nothing is logged): drift, as if
    /// someone changed it behind the controller's back.
    pub fn force_traffic(&self, region: &str, service: &str, percent: Option<u32>) -> Result<(), FleetError> {
        let mut state = self.shared.lock();
        let unit = state.unit(region, service)?;
        state.force_traffic(unit, percent, Instant::now());
        Ok(())
    }

    /// Every actuation request received since the start or the last `reset_log`, in order.
    pub fn puts(&self) -> Vec<PutRecord> {
        self.shared.lock().puts().to_vec()
    }

    /// Forget the actuation log and the idempotency keys seen.
    pub fn reset_log(&self) {
        self.shared.lock().reset_log();
    }

    /// Every unit now, region-major.
    pub fn units(&self) -> Vec<UnitSnapshot> {
        self.shared.lock().snapshot(Instant::now())
    }

    pub fn scripted_faults(&self) -> Vec<ScriptedFaultStatus> {
        self.shared.lock().scripted_faults()
    }

    /// Make the traffic endpoints fail or slow down (see `ActuatorFault`).
    pub fn set_actuator_fault(&self, fault: ActuatorFault) {
        self.shared.lock().set_actuator_fault(fault);
    }
}

impl Drop for FleetHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/fleet/{region}/{service}/traffic", get(read_traffic).put(set_traffic).post(set_traffic))
        .route("/fleet/{region}/{service}/metrics", get(unit_metrics))
        .route("/fleet/{region}/faults", post(set_fault).delete(clear_fault))
        .route("/fleet/puts", get(list_puts).delete(reset_puts))
        .route("/fleet/state", get(fleet_state))
        .route("/fleet/actuator-faults", get(get_actuator_fault).post(set_actuator_fault).delete(clear_actuator_fault))
        .route("/metrics", get(fleet_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see the meridian-fleet crate docs") })
        .with_state(shared)
}

type AppState = State<Arc<Shared>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn fleet_error(e: &FleetError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.to_string())
}

fn ok_json(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(exposition::CONTENT_TYPE))], body).into_response()
}

fn check_token(shared: &Shared, headers: &HeaderMap) -> Result<(), FleetError> {
    let Some(expected) = shared.token.as_deref() else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(expected) { Ok(()) } else { Err(FleetError::Unauthorized) }
}

/// Check the token, look the unit up and read the injected delay, before any waiting.
fn traffic_preamble(
    shared: &Shared,
    headers: &HeaderMap,
    region: &str,
    service: &str,
) -> Result<(usize, Duration), FleetError> {
    check_token(shared, headers)?;
    let state = shared.lock();
    let unit = state.unit(region, service)?;
    Ok((unit, Duration::from_millis(state.actuator_fault().delay_ms)))
}

async fn read_traffic(
    State(shared): AppState,
    Path((region, service)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (unit, delay) = match traffic_preamble(&shared, &headers, &region, &service) {
        Ok(found) => found,
        Err(e) => return fleet_error(&e),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let percent = shared.lock().traffic(unit);
    ok_json(json!({ "percent": percent }))
}

async fn set_traffic(
    State(shared): AppState,
    Path((region, service)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (unit, delay) = match traffic_preamble(&shared, &headers, &region, &service) {
        Ok(found) => found,
        Err(e) => return fleet_error(&e),
    };
    let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let Some(percent) = body.get("percent").and_then(Value::as_u64) else {
        return error(StatusCode::BAD_REQUEST, "body must be a JSON object with an integer \"percent\" from 0 to 100");
    };
    let percent = u32::try_from(percent).unwrap_or(u32::MAX);
    let plan = body.get("plan").and_then(Value::as_str).map(str::to_string);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let instance = headers.get("meridian-instance").and_then(|v| v.to_str().ok()).map(str::to_string);
    // A request that arrived is carried out even if the caller hangs up or is killed while it
    // waits (hyper may drop this handler then): like a real control plane, and deterministic.
    let carried_out = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let request = Actuation {
            unit,
            percent,
            plan: plan.as_deref(),
            idempotency_key: key.as_deref(),
            method: method.as_str(),
            instance: instance.as_deref(),
        };
        shared.lock().actuate(request, Utc::now(), Instant::now())
    });
    match carried_out.await {
        Ok(PutOutcome::Applied { percent }) => ok_json(json!({ "percent": percent })),
        Ok(PutOutcome::Refused { status, message }) => {
            error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("actuation task failed: {e}")),
    }
}

async fn unit_metrics(State(shared): AppState, Path((region, service)): Path<(String, String)>) -> Response {
    let mut state = shared.lock();
    let unit = match state.unit(&region, &service) {
        Ok(unit) => unit,
        Err(e) => return fleet_error(&e),
    };
    let snapshot = state.unit_snapshot(unit, Instant::now());
    let window = state.metrics_window().as_secs_f64();
    drop(state);
    text(exposition::unit_page(&snapshot, window))
}

async fn fleet_metrics(State(shared): AppState) -> Response {
    let mut state = shared.lock();
    let units = state.snapshot(Instant::now());
    let window = state.metrics_window().as_secs_f64();
    drop(state);
    text(exposition::fleet_page(&units, window))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultBody {
    error_ratio: f64,
    #[serde(default)]
    service: Option<String>,
}

async fn set_fault(State(shared): AppState, Path(region): Path<String>, body: Bytes) -> Response {
    // An unknown region is a 404 whatever the body.
    if let Err(e) = shared.lock().region(&region) {
        return fleet_error(&e);
    }
    let fault: FaultBody = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"errorRatio\": 0.3, \"service\": \"store\" (optional)}}: {e}"),
            );
        }
    };
    match shared.lock().set_error_ratio(&region, fault.service.as_deref(), fault.error_ratio, Instant::now()) {
        Ok(()) => ok_json(json!({ "region": region, "service": fault.service, "errorRatio": fault.error_ratio })),
        Err(e) => fleet_error(&e),
    }
}

async fn clear_fault(State(shared): AppState, Path(region): Path<String>) -> Response {
    match shared.lock().clear_faults(&region, Instant::now()) {
        Ok(()) => ok_json(json!({ "region": region, "cleared": true })),
        Err(e) => fleet_error(&e),
    }
}

async fn list_puts(State(shared): AppState) -> Response {
    let puts = shared.lock().puts().to_vec();
    (StatusCode::OK, axum::Json(puts)).into_response()
}

async fn reset_puts(State(shared): AppState) -> Response {
    shared.lock().reset_log();
    ok_json(json!({ "reset": true }))
}

async fn fleet_state(State(shared): AppState) -> Response {
    let mut state = shared.lock();
    let units = state.snapshot(Instant::now());
    let scripted = state.scripted_faults();
    let actuator_fault = state.actuator_fault();
    drop(state);
    // NaN is not JSON: a unit without traffic shows `errorRatio` as configured, never NaN.
    ok_json(json!({ "units": units, "scriptedFaults": scripted, "actuatorFault": actuator_fault }))
}

async fn get_actuator_fault(State(shared): AppState) -> Response {
    let fault = shared.lock().actuator_fault();
    (StatusCode::OK, axum::Json(fault)).into_response()
}

async fn set_actuator_fault(State(shared): AppState, body: Bytes) -> Response {
    let fault: ActuatorFault = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"failNext\": N, \"status\": 503, \"delayMs\": 0}}: {e}"),
            );
        }
    };
    if fault.status != 0 && !(400..=599).contains(&fault.status) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("status must be an HTTP error status (400-599), got {}", fault.status),
        );
    }
    shared.lock().set_actuator_fault(fault);
    (StatusCode::OK, axum::Json(fault)).into_response()
}

async fn clear_actuator_fault(State(shared): AppState) -> Response {
    shared.lock().set_actuator_fault(ActuatorFault::default());
    (StatusCode::OK, axum::Json(ActuatorFault::default())).into_response()
}
