//! Test kit for the health adapters: a simulated fleet serving per-region metrics on
//! 127.0.0.1, a real Prometheus scraping it (the shared harness of meridian-fleet's
//! `testkit`), a server that never answers, and a scripted fake of Prometheus' API.
//!
//! Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meridian_core::health::{HealthSample, HealthVerdict};
use meridian_core::plan::Plan;
#[allow(unused_imports)] // each test file uses part of it
pub use meridian_fleet::testkit::{Prometheus, ScrapeTarget, eventually};
use reqwest::Url;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Build a plan from YAML through the real validation path.
pub fn plan(yaml: &str) -> Plan {
    let bundle = meridian_core::validate::load(&[("plan.yaml".into(), yaml.into())], None);
    assert!(!bundle.report.has_errors(), "test plan does not validate: {:#?}", bundle.report);
    bundle.plans.into_iter().next().expect("one plan")
}

/// `(check, region) -> verdict`, for assertions.
pub fn verdicts(samples: &[HealthSample]) -> BTreeMap<(String, String), HealthVerdict> {
    samples.iter().map(|s| ((s.check.clone(), s.region.clone()), s.verdict)).collect()
}

pub fn verdict_of(samples: &[HealthSample], check: &str, region: &str) -> HealthVerdict {
    sample_of(samples, check, region).verdict
}

pub fn sample_of<'a>(samples: &'a [HealthSample], check: &str, region: &str) -> &'a HealthSample {
    samples
        .iter()
        .find(|s| s.check == check && s.region == region)
        .unwrap_or_else(|| panic!("no sample for ({check}, {region}) in {samples:#?}"))
}

/// A server task, stopped when dropped.
struct Served {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(router: Router) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Served { addr, task }
}

// ----- the fleet -----

/// Synthetic traffic of one (region, service): counters advance with wall time.
#[derive(Debug, Clone)]
struct Traffic {
    rps: f64,
    error_ratio: f64,
    ok: f64,
    errors: f64,
    last: Instant,
}

#[derive(Debug, Default)]
struct FleetState {
    traffic: BTreeMap<(String, String), Traffic>,
    /// region -> series text (`name{labels}`) -> value
    gauges: BTreeMap<String, BTreeMap<String, f64>>,
    /// region -> JSON body for `/json/{region}`
    json: BTreeMap<String, serde_json::Value>,
    /// region -> status answered on every route of that region
    status: BTreeMap<String, u16>,
}

impl FleetState {
    fn advance(&mut self) {
        let now = Instant::now();
        for t in self.traffic.values_mut() {
            let dt = now.duration_since(t.last).as_secs_f64();
            t.ok += t.rps * (1.0 - t.error_ratio) * dt;
            t.errors += t.rps * t.error_ratio * dt;
            t.last = now;
        }
    }

    fn exposition(&mut self, region: &str) -> String {
        self.advance();
        let mut out = String::from("# TYPE meridian_test_requests_total counter\n");
        for ((r, service), t) in &self.traffic {
            if r == region {
                out.push_str(&format!("meridian_test_requests_total{{service=\"{service}\",code=\"200\"}} {}\n", t.ok));
                out.push_str(&format!(
                    "meridian_test_requests_total{{service=\"{service}\",code=\"500\"}} {}\n",
                    t.errors
                ));
            }
        }
        for (series, value) in self.gauges.get(region).into_iter().flatten() {
            out.push_str(&format!("{series} {value}\n"));
        }
        out
    }
}

/// Per-region endpoints the tests control, on 127.0.0.1:
/// `GET /metrics/{region}` (text format: synthetic request counters and set gauges) and
/// `GET /json/{region}` (a JSON body).
pub struct Fleet {
    state: Arc<Mutex<FleetState>>,
    server: Served,
}

impl Fleet {
    pub async fn start() -> Fleet {
        let state = Arc::new(Mutex::new(FleetState::default()));
        let router = Router::new()
            .route("/metrics/{region}", get(fleet_metrics))
            .route("/json/{region}", get(fleet_json))
            .with_state(state.clone());
        Fleet { state, server: serve(router).await }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut FleetState) -> T) -> T {
        let mut state = self.state.lock().expect("fleet state");
        state.advance();
        f(&mut state)
    }

    /// Serve `rps` requests a second for (region, service), `error_ratio` of them failing.
    pub fn set_traffic(&self, region: &str, service: &str, rps: f64, error_ratio: f64) {
        self.with(|s| {
            let t = s.traffic.entry((region.into(), service.into())).or_insert(Traffic {
                rps: 0.0,
                error_ratio: 0.0,
                ok: 0.0,
                errors: 0.0,
                last: Instant::now(),
            });
            t.rps = rps;
            t.error_ratio = error_ratio;
        })
    }

    /// Expose `series` (`name{labels}`) with `value` on the region's metrics endpoint.
    pub fn set_gauge(&self, region: &str, series: &str, value: f64) {
        self.with(|s| _ = s.gauges.entry(region.into()).or_default().insert(series.into(), value))
    }

    pub fn set_json(&self, region: &str, body: serde_json::Value) {
        self.with(|s| _ = s.json.insert(region.into(), body))
    }

    /// Answer every request for this region with `status` (and an empty body).
    pub fn set_status(&self, region: &str, status: u16) {
        self.with(|s| _ = s.status.insert(region.into(), status))
    }
}

async fn fleet_metrics(State(state): State<Arc<Mutex<FleetState>>>, UrlPath(region): UrlPath<String>) -> Response {
    let mut state = state.lock().expect("fleet state");
    if let Some(&status) = state.status.get(&region) {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    }
    ([("content-type", "text/plain; version=0.0.4")], state.exposition(&region)).into_response()
}

async fn fleet_json(State(state): State<Arc<Mutex<FleetState>>>, UrlPath(region): UrlPath<String>) -> Response {
    let state = state.lock().expect("fleet state");
    if let Some(&status) = state.status.get(&region) {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    }
    match state.json.get(&region) {
        Some(body) => ([("content-type", "application/json")], body.to_string()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ----- a real Prometheus -----

/// A real Prometheus (the shared harness in meridian-fleet's `testkit`) scraping one fleet
/// endpoint per region every second, the region in `label`. Killed on drop.
pub async fn scraping(fleet: &Fleet, regions: &[&str], label: &str) -> Prometheus {
    let targets = regions
        .iter()
        .map(|region| {
            ScrapeTarget::new(format!("fleet-{region}"), fleet.addr())
                .with_path(format!("/metrics/{region}"))
                .with_label(label, *region)
        })
        .collect();
    Prometheus::start(targets).await
}

/// The server's base URL, as the providers take it.
pub fn url_of(prometheus: &Prometheus) -> Url {
    Url::parse(&prometheus.url()).expect("prometheus url")
}

// ----- servers that misbehave -----

/// Accepts connections and never answers; holds them open until dropped.
pub struct SilentServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentServer { addr, task }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("url")
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fake of Prometheus' query API answering every query with one scripted status and
/// body, and recording the PromQL it was sent.
pub struct ScriptedApi {
    server: Served,
    queries: Arc<Mutex<Vec<String>>>,
}

impl ScriptedApi {
    pub async fn start(status: u16, body: impl Into<String>) -> ScriptedApi {
        let body: String = body.into();
        let status = StatusCode::from_u16(status).expect("status");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        let answer = move |form: String| {
            let body = body.clone();
            let seen = seen.clone();
            async move {
                // The form body, read as a URL query: `query=...`.
                let url = Url::parse(&format!("http://form/?{form}")).expect("form");
                let query = url.query_pairs().find(|(k, _)| k == "query").map(|(_, v)| v.into_owned());
                seen.lock().expect("queries").push(query.unwrap_or_default());
                (status, [("content-type", "application/json")], body)
            }
        };
        let router = Router::new().route("/api/v1/query", post(answer));
        ScriptedApi { server: serve(router).await, queries }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.server.addr)).expect("url")
    }

    /// The PromQL of every query received so far.
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().expect("queries").clone()
    }
}
