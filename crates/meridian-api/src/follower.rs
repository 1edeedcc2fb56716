//! What a replica that does not lead serves (Kubernetes mode with leader election): alive on
//! `/healthz`, not ready on `/readyz` (so the Service sends API and dashboard traffic to the
//! leader), `meridian_leader 0` on `/metrics`, and on everything else a 503 that says who
//! leads. It holds no state, so it cannot answer stale.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

/// Who holds the lease now, as last observed (`None` while nobody does).
pub type LeaderName = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// See the module doc.
pub fn follower_router(leader: LeaderName) -> Router {
    let who = leader.clone();
    let ready = move || {
        let who = who.clone();
        async move { following(&who, "not ready") }
    };
    let who = leader.clone();
    let rest = move || {
        let who = who.clone();
        async move { following(&who, "this replica does not lead") }
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|| async {
                "# HELP meridian_leader 1 on the replica that leads (decides, writes state, actuates), 0 on the \
                 others.\n# TYPE meridian_leader gauge\nmeridian_leader 0\n"
            }),
        )
        .fallback(rest)
}

fn following(leader: &LeaderName, what: &str) -> Response {
    let error = match leader() {
        Some(name) => format!("{what}: following; the leader is {name}"),
        None => format!("{what}: following; no replica leads at the moment (an election is under way)"),
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        error,
        "send requests to the leader (the Service routes to the ready replica, which is the leader)",
    )
    .into_response()
}
