//! The endpoints without a token: `/healthz`, `/readyz`, `/metrics` and the `/` page; plus
//! `/api/v1/whoami` and the 404 answer.

use axum::Json;
use axum::extract::{Extension, OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::auth::Identity;
use crate::error::ApiError;

/// The process is up and answering.
pub(crate) async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n")
}

/// Ready to do its job (recovery done, every task running); 503 with the reasons otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.control.readiness();
    if readiness.ready {
        return Json(json!({ "ready": true })).into_response();
    }
    let reasons = if readiness.reasons.is_empty() { vec!["not ready".to_string()] } else { readiness.reasons };
    let body = json!({
        "ready": false,
        "reasons": reasons,
        "error": format!("not ready: {}", reasons.join("; ")),
        "hint": "see the controller's log; a failed background task makes the controller exit so a supervisor restarts it",
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The controller's registry in the Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.control.metrics())
}

/// The configuration in force and the last rejected edit, if any (the previous version stays
/// in force until an edit validates).
pub(crate) async fn config(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.control.snapshot().config.clone())
}

pub(crate) async fn whoami(Extension(identity): Extension<Identity>) -> impl IntoResponse {
    Json(json!({ "identity": identity, "authDisabled": identity.role.is_none() }))
}

pub(crate) async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(
        format!("no endpoint at {}", uri.path()),
        "the API lives under /api/v1 (plans, approvals, audit, events, whoami); see docs/api.md",
    )
}

/// The live dashboard: one self-contained page (no external assets) that reads the same
/// `/api/v1` JSON as the CLI, with the viewer's bearer token, and follows `/api/v1/events`.
pub(crate) async fn index() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // Everything is inline and same-origin; nothing else may load or be framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ],
        Html(include_str!("dashboard.html")),
    )
}
