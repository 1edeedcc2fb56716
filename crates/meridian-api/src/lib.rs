//! Meridian's HTTP API: the controller's `ControlPlane` over JSON, versioned under `/api/v1`.
//!
//! ```text
//!   request ─> body limit ─> timeout ─> router ─┬─ /healthz /readyz /metrics /   (no token)
//!                                               └─ /api/v1/* ─> auth (401) ─> handler
//!                                                                  │ role/flag check (403,
//!                                                                  │  denial recorded)
//!                                                                  v
//!                                                           ControlPlane (snapshot, command,
//!                                                           grant, revoke, audit, subscribe)
//!   every error ─> {"error": "...", "hint": "..."} with its status
//! ```
//!
//! This crate owns the wire format, authentication and authorization, request limits and the
//! listener (plain TCP or rustls). It decides nothing about rollouts: every change goes
//! through the core's `ControlPlane` port, which makes it durable before it answers. It
//! depends on that port alone (`meridian-core`), never on a runtime, a watcher or a
//! database, so the standalone and the Kubernetes controller serve the same API.

mod approvals;
pub mod auth;
mod error;
mod events;
#[cfg(feature = "fake")]
pub mod fake;
mod plans;
mod probes;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use meridian_core::ports::control::ControlPlane;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use approvals::approval_from_body;
pub use auth::{Auth, AuthError, Identity, Role};
pub use error::ApiError;
pub use plans::command_from_body;
pub use serve::{ServeError, TlsFiles, serve, set_log_sink};

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted; larger ones get 413.
    pub body_bytes: usize,
    /// Longest a request may take to be answered (streams excepted once they started); then 503.
    pub request_timeout: Duration,
    /// How often `/events` sends a keep-alive comment on a quiet stream.
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { body_bytes: 64 * 1024, request_timeout: Duration::from_secs(30), keep_alive: Duration::from_secs(15) }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub control: Arc<dyn ControlPlane>,
    pub auth: Arc<Auth>,
    pub limits: Limits,
}

/// The whole HTTP surface: `/api/v1/...`, `/metrics`, `/healthz`, `/readyz` and `/`.
pub fn router(control: Arc<dyn ControlPlane>, auth: Auth, limits: Limits) -> Router {
    if auth.is_disabled() {
        serve::log_line(
            "meridian-api: WARNING: AUTHENTICATION IS DISABLED. Anyone who can reach this address can \
             pause, abort and promote rollouts and grant or revoke approvals. Use this for demos only; \
             give a tokens file in production.",
        );
    }
    let state = AppState { control, auth: Arc::new(auth), limits };
    let api = Router::new()
        .route("/plans", get(plans::list))
        .route("/plans/{name}", get(plans::detail))
        .route("/plans/{name}/{action}", post(plans::command))
        .route("/approvals", get(approvals::list).post(approvals::grant))
        .route("/approvals/{name}", delete(approvals::revoke))
        .route("/audit", get(events::audit))
        .route("/audit/chain", get(events::chain))
        .route("/history", get(events::history))
        .route("/events", get(events::stream))
        .route("/config", get(probes::config))
        .route("/whoami", get(probes::whoami))
        .route("/version", get(probes::version))
        .fallback(probes::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(probes::index))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .fallback(probes::not_found)
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        // Outermost, so the limit and timeout layers' plain answers get the JSON error shape too.
        .layer(axum::middleware::map_response_with_state(limits, error::json_errors))
        .with_state(state)
}
