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

/// The server's version, for `meridian version` to set beside its own.
pub(crate) async fn version() -> impl IntoResponse {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "api": "v1" }))
}

pub(crate) async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(
        format!("no endpoint at {}", uri.path()),
        "the API lives under /api/v1 (plans, approvals, audit, events, whoami); see the endpoints in README.md#http-api-and-the-cli-client",
    )
}

/// The live dashboard: one self-contained page (no external assets) that reads the same
/// `/api/v1` JSON as the CLI, with the viewer's bearer token, and follows `/api/v1/events`.
pub(crate) async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store"), (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP.as_str())], Html(DASHBOARD))
}

const DASHBOARD: &str = include_str!("dashboard.html");

/// Only the page's own inline script (by its hash) and style may run; it may talk to this
/// origin only; nothing may frame it.
static DASHBOARD_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let script =
        DASHBOARD.split_once("<script>").and_then(|(_, rest)| rest.split_once("</script>")).map_or("", |(s, _)| s);
    let digest = sha2::Digest::finalize(sha2::Digest::chain_update(<sha2::Sha256 as sha2::Digest>::new(), script));
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; connect-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        base64(&digest)
    )
});

/// Standard base64 with padding (for the CSP hash; no dependency for 20 lines).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected);
        }
    }
}
