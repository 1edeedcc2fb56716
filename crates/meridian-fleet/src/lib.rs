//! A simulated fleet on 127.0.0.1: for every (region, service) a traffic actuator endpoint
//! and metrics with synthetic traffic, so `meridian demo` and the end-to-end and crash tests
//! drive a real HTTP control plane and read real health data.
//!
//! ```text
//!  FleetConfig (regions x services, load, faults, scripted faults)
//!        │ Fleet::start (binds 127.0.0.1 only)
//!        v
//!  server (axum) ── parse, lock, call, answer ──> model::FleetState (pure, time injected)
//!        ^                                             │ units, counters, put log
//!        │ HTTP: actuator, metrics, faults, log         v
//!  meridian / Prometheus / tests        exposition (Prometheus text, pure)
//!        FleetHandle (in-process control: faults, traffic, put log, shutdown)
//! ```
//!
//! # Endpoints
//!
//! Actuator (the wire contract of `meridian-actuator`'s `http` actuator):
//! - `PUT` or `POST /fleet/{region}/{service}/traffic`, header `Idempotency-Key`, body
//!   `{"percent": N, "plan": "...", ...}` (`plan` is logged when given; other fields are
//!   ignored) → 200 `{"percent": N}`. A key already applied with the same unit and percent is
//!   a no-op answered 200 as before (so a late retry never undoes a newer setting) and is
//!   logged with `replay: true`. A key already used for another unit or percent → 422; a
//!   missing key, a bad body or a percent over 100 → 400; with a token configured, a missing
//!   or wrong `Authorization: Bearer` → 401.
//! - `GET /fleet/{region}/{service}/traffic` → `{"percent": N}`, or `{"percent": null}` when
//!   never set.
//! - Unknown region or service → 404 `{"error": "..."}` (every error body has that shape).
//! - The put log (`FleetHandle::puts`, `GET /fleet/puts`) holds every request for a known
//!   unit whose body had an integer percent, whatever the answer, in arrival order; a request
//!   that arrived is carried out even if its caller hangs up or is killed meanwhile.
//!
//! Metrics (Prometheus text format 0.0.4):
//! - `GET /fleet/{region}/{service}/metrics` → `error_ratio{region,service}`,
//!   `fleet_requests{region,service}` (requests served in one metrics window at the current
//!   traffic: requests/second x percent/100 x window) and `fleet_traffic_percent`.
//!   While a unit serves 0 % (or was never set), `error_ratio` is `NaN`: no requests, no
//!   ratio. The line stays, so a reader can tell "no data" from "no such unit" (404).
//! - `GET /metrics` → for every unit `http_requests_total{region,service,code="200"|"500"}`
//!   counters computed from elapsed time at the traffic and error ratio in force (so they grow
//!   smoothly between scrapes), an `http_request_duration_seconds` histogram of the same
//!   requests, and the gauges above.
//!
//! Control (for the demo and for tests in another process):
//! - `POST /fleet/{region}/faults` `{"errorRatio": 0.3, "service": "store"}` (service
//!   optional: all of the region's), `DELETE /fleet/{region}/faults` (back to the baseline).
//! - `GET /fleet/puts` → every actuation request received, in order (`PutRecord`s);
//!   `DELETE /fleet/puts` forgets them.
//! - `GET /fleet/state` → units, scripted faults (and when they fired), actuator fault.
//! - `GET|POST|DELETE /fleet/actuator-faults` `{"failNext": 2, "status": 503, "delayMs": 0}`:
//!   make the traffic endpoints fail or slow down.
//! - `GET /healthz` → `ok`.
//!
//! # Test kit
//!
//! With the `testkit` feature, `testkit` starts a real Prometheus on 127.0.0.1 scraping
//! given targets (this fleet among them) every second, for tests and benchmarks.

pub mod config;
pub mod error;
pub mod exposition;
pub mod model;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{Fault, FleetConfig, ScriptedFault};
pub use error::FleetError;
pub use model::{ActuatorFault, PutRecord, ScriptedFaultStatus, UnitSnapshot, fencing_term};
pub use server::{Fleet, FleetHandle};
