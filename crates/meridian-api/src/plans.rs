//! `GET /plans`, `GET /plans/{name}` and `POST /plans/{name}/{action}`: the published views
//! and operator commands, optionally scoped to one wave or one region. `freeze` and
//! `unfreeze` carry their parameters in the body as well, and `promote` may say `"full":
//! true` (`promote --full`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use meridian_core::command::FreezeRequest;
use meridian_core::snapshot::Snapshot;
use meridian_core::{Command, CommandKind, Plan, PlanState};
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
    snapshot.detail(&name, state.control.now()).map(Json).ok_or_else(|| unknown_plan(&snapshot, &name))
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
    /// `promote` only: promote the whole remaining scope.
    #[serde(default)]
    full: bool,
}

const SCOPE_HINT: &str =
    r#"send no body for the whole plan, or {"wave": "W"} or {"region": "R"} (promote also takes "full": true)"#;

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
    let plan_state = snapshot.plans.get(&name).map(|e| &*e.state);
    let command = command_from_body(&plan, plan_state, kind, &body, &identity.name, state.control.now())?;
    state.control.command(&name, command.clone()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "plan": name, "command": command }))))
}

/// The command a `POST /api/v1/plans/{plan}/{kind}` body asks for, read and checked against
/// `plan` (and its `state`, for `unfreeze`): the one parse entry point of command, freeze and
/// unfreeze bodies, public for the fuzz targets. Authorization is the caller's.
pub fn command_from_body(
    plan: &Plan,
    state: Option<&PlanState>,
    kind: CommandKind,
    body: &[u8],
    by: &str,
    now: DateTime<Utc>,
) -> Result<Command, ApiError> {
    refuse_full(kind, body)?;
    match kind {
        CommandKind::Freeze => freeze_command(plan, body, by, now),
        CommandKind::Unfreeze => unfreeze_command(plan, state, body, by, now),
        _ => {
            let scope = parse_scope(body)?;
            check_scope(plan, &scope)?;
            let full = scope.full;
            Ok(Command { wave: scope.wave, region: scope.region, full, ..Command::plan_wide(kind, by, now) })
        }
    }
}

/// `"full"` belongs to `promote` alone: any other command that carries it is refused by name,
/// rather than as an unknown field or (worse) taken as if it were not there.
fn refuse_full(kind: CommandKind, body: &[u8]) -> Result<(), ApiError> {
    if kind == CommandKind::Promote {
        return Ok(());
    }
    let carries_full = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.as_object().is_some_and(|o| o.contains_key("full")));
    if carries_full {
        return Err(ApiError::bad_request(
            format!("\"full\" is only for promote, not for {kind}"),
            format!(
                "leave \"full\" out of the {kind} body, or POST /api/v1/plans/PLAN/promote with {{\"full\": true}}"
            ),
        ));
    }
    Ok(())
}

/// The body of `POST /plans/{name}/freeze`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeBody {
    reason: String,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    wave: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

const FREEZE_HINT: &str =
    r#"send {"reason": "...", "until": "2026-05-06T15:00:00Z"}, optionally with "wave" or "region" and a "name""#;

fn freeze_command(plan: &Plan, body: &[u8], by: &str, now: DateTime<Utc>) -> Result<Command, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a freeze needs a reason", FREEZE_HINT));
    }
    let body: FreezeBody = object_body(body, "freeze", FREEZE_HINT)?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the freeze's reason is empty",
            "say why; it is shown as the blocked reason",
        ));
    }
    if let Some(until) = body.until
        && until <= now
    {
        return Err(ApiError::bad_request(
            format!("until {} is not in the future", until.to_rfc3339()),
            "give a later time, or leave until out to freeze until an unfreeze",
        ));
    }
    let scope = CommandScope { wave: body.wave, region: body.region, full: false };
    if scope.wave.is_some() && scope.region.is_some() {
        return Err(ApiError::bad_request("give a wave or a region, not both", FREEZE_HINT));
    }
    check_scope(plan, &scope)?;
    let name = match body.name {
        Some(n) if n.trim().is_empty() => {
            return Err(ApiError::bad_request("the freeze's name is empty", "leave name out for a default name"));
        }
        Some(n) => n,
        None => FreezeRequest::default_name(scope.wave.as_deref(), scope.region.as_deref()),
    };
    let request = FreezeRequest { name, reason: body.reason.trim().to_string(), until: body.until };
    Ok(Command { wave: scope.wave, region: scope.region, ..Command::freeze(request, by, now) })
}

/// The body of `POST /plans/{name}/unfreeze`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnfreezeBody {
    #[serde(default)]
    name: Option<String>,
}

fn unfreeze_command(
    plan: &Plan,
    state: Option<&PlanState>,
    body: &[u8],
    by: &str,
    now: DateTime<Utc>,
) -> Result<Command, ApiError> {
    let body: UnfreezeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UnfreezeBody::default()
    } else {
        object_body(body, "unfreeze", r#"send no body to lift every run-time freeze, or {"name": "N"} for one"#)?
    };
    if let Some(name) = &body.name {
        let names: Vec<&String> = state.iter().flat_map(|s| s.freezes.iter().map(|f| &f.name)).collect();
        if !names.contains(&name) {
            return Err(ApiError::bad_request(
                format!("plan {:?} has no run-time freeze {name:?}", plan.name),
                known("run-time freezes", names.into_iter()),
            ));
        }
    }
    Ok(Command::unfreeze(body.name, by, now))
}

/// A command's JSON body, which must be an object: serde would also take an array for a
/// struct (`[]` read as "no fields", a whole-plan scope).
fn object_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str, hint: &str) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid {what} body: {e}"), hint);
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!("invalid {what} body: it must be a JSON object"), hint));
    }
    serde_json::from_value(value).map_err(invalid)
}

fn parse_scope(body: &[u8]) -> Result<CommandScope, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CommandScope::default());
    }
    let scope: CommandScope = object_body(body, "command", SCOPE_HINT)?;
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
