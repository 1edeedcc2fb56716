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

/// Until the dashboard lands: where things are.
pub(crate) async fn index() -> Html<&'static str> {
    Html(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Meridian</title></head>
<body>
<h1>Meridian</h1>
<p>The dashboard is not part of this build yet. The API:</p>
<ul>
<li><a href="/api/v1/plans">/api/v1/plans</a> (needs a bearer token unless authentication is disabled)</li>
<li><a href="/api/v1/approvals">/api/v1/approvals</a></li>
<li><a href="/api/v1/audit">/api/v1/audit</a></li>
<li><a href="/api/v1/events">/api/v1/events</a> (server-sent events)</li>
<li><a href="/metrics">/metrics</a>, <a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a></li>
</ul>
</body>
</html>
"#,
    )
}
