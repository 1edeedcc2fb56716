//! `GET /plans`, `GET /plans/{name}` and `POST /plans/{name}/{action}`: the published views
//! and operator commands, optionally scoped to one wave or one region.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use meridian_controller::snapshot::Snapshot;
use meridian_core::{Command, CommandKind, Plan};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{Action, Identity};
use crate::error::ApiError;

pub(crate) async fn list(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "plans": state.control.snapshot().summaries() }))
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = state.control.snapshot();
    snapshot.detail(&name, Utc::now()).map(Json).ok_or_else(|| unknown_plan(&snapshot, &name))
}

pub(crate) fn unknown_plan(snapshot: &Snapshot, name: &str) -> ApiError {
    ApiError::not_found(format!("no plan named {name:?}"), known("plans", snapshot.plans.keys()))
}

/// "known plans: a, b" (or "there are no plans"), for hints.
pub(crate) fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() { format!("there are no {what}") } else { format!("known {what}: {}", names.join(", ")) }
}

/// The optional body of a command: where it applies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandScope {
    #[serde(default)]
    wave: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

const SCOPE_HINT: &str = r#"send no body for the whole plan, or {"wave": "W"} or {"region": "R"}"#;

pub(crate) async fn command(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let kind: CommandKind = action.parse().map_err(|e: String| {
        ApiError::not_found(format!("no action {action:?}"), e.replace("unknown command", "unknown action"))
    })?;
    let what = format!("POST /api/v1/plans/{name}/{action}");
    state.authorize(&identity, Action::Command(kind), &what)?;
    let snapshot = state.control.snapshot();
    let plan = snapshot.plans.get(&name).map(|e| e.plan.clone()).ok_or_else(|| unknown_plan(&snapshot, &name))?;
    let scope = parse_scope(&body)?;
    check_scope(&plan, &scope)?;
    let command = Command { kind, wave: scope.wave, region: scope.region, by: identity.name.clone(), at: Utc::now() };
    state.control.command(&name, command.clone()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "plan": name, "command": command }))))
}

fn parse_scope(body: &[u8]) -> Result<CommandScope, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CommandScope::default());
    }
    let scope: CommandScope = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid command body: {e}"), SCOPE_HINT))?;
    if scope.wave.is_some() && scope.region.is_some() {
        return Err(ApiError::bad_request("give a wave or a region, not both", SCOPE_HINT));
    }
    Ok(scope)
}

fn check_scope(plan: &Plan, scope: &CommandScope) -> Result<(), ApiError> {
    if let Some(wave) = &scope.wave
        && plan.wave_index(wave).is_none()
    {
        return Err(ApiError::bad_request(
            format!("plan {:?} has no wave {wave:?}", plan.name),
            known("waves", plan.waves.iter().map(|w| &w.name)),
        ));
    }
    if let Some(region) = &scope.region
        && plan.region_index(region).is_none()
    {
        return Err(ApiError::bad_request(
            format!("plan {:?} has no region {region:?}", plan.name),
            known("regions", plan.regions.iter().map(|r| &r.name)),
        ));
    }
    Ok(())
}
