//! `GET /approvals`, `POST /approvals` and `DELETE /approvals/{name}`.
//!
//! A granted approval is the same manifest as an approval file (`apiVersion`, `kind`,
//! `metadata`, `spec`), as JSON. It goes through the core's validator, the one the CLI's
//! `validate` and the file watcher use, so an approval means the same wherever it comes from.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use meridian_core::approval::ApprovalRecord;
use meridian_core::diagnostics::Severity;
use meridian_core::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Action, Identity};
use crate::error::{ApiError, FieldProblem};

/// An approval as listed: the record and whether it holds now.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalView<'a> {
    #[serde(flatten)]
    record: &'a ApprovalRecord,
    /// active, not-yet-valid, expired or revoked.
    status: &'static str,
}

fn status(a: &ApprovalRecord, now: DateTime<Utc>) -> &'static str {
    if a.revoked.as_ref().is_some_and(|r| r.at <= now) {
        "revoked"
    } else if a.granted_at.is_some_and(|t| t > now) {
        "not-yet-valid"
    } else if a.expires.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    }
}

/// Read from the store, not the published snapshot: an approval a 201 answered a moment ago
/// is listed.
pub(crate) async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let records = state.control.approvals().await?;
    let now = state.control.now();
    let approvals: Vec<ApprovalView> =
        records.iter().map(|record| ApprovalView { record, status: status(record, now) }).collect();
    Ok(Json(json!({ "approvals": approvals })))
}

const MANIFEST_HINT: &str = r#"send an Approval manifest as JSON: {"apiVersion": "meridian.dev/v1alpha1", "kind": "Approval", "metadata": {"name": "..."}, "spec": {"flag": "...", "reference": "..."}}"#;

pub(crate) async fn grant(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let what = "POST /api/v1/approvals";
    state.authorize(&identity, Action::GrantAny, what)?;
    let now = state.control.now();
    let (mut record, mut warnings) = approval_from_body(&body, &identity, now)?;
    state.authorize(&identity, Action::Grant { flag: &record.flag }, &format!("{what} (flag {})", record.flag))?;
    let snapshot = state.control.snapshot();
    warnings.extend(scope_warnings(&snapshot, &record));
    // Who entered it, and for whom. An unsigned approval says so in its grantedBy, so the
    // durable record names the token; a signed one cannot (its signature covers grantedBy),
    // and the history's grant event says it instead.
    let mut by = record.granted_by.clone();
    if record.granted_by != identity.name && identity.role.is_some() {
        by = format!("{} (via {})", record.granted_by, identity.name);
        if record.signature.is_none() {
            record.granted_by.clone_from(&by);
        }
    }
    state.control.grant(record.clone(), &by).await?;
    let location = format!("/api/v1/approvals/{}", record.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(
            json!({ "approval": ApprovalView { record: &record, status: status(&record, now) }, "warnings": warnings }),
        ),
    ))
}

/// The approval a `POST /api/v1/approvals` body grants, checked by the core's validator, with
/// the validator's warnings: the one parse entry point of grant bodies, public for the fuzz
/// targets. `spec.grantedBy` defaults to the token's name; authorization is the caller's.
pub fn approval_from_body(
    body: &[u8],
    identity: &Identity,
    now: DateTime<Utc>,
) -> Result<(ApprovalRecord, Vec<String>), ApiError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"), MANIFEST_HINT))?;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the body is not a JSON object", MANIFEST_HINT));
    };
    match object.get("kind").and_then(Value::as_str) {
        Some("Approval") => {}
        Some("RolloutPlan") => {
            return Err(ApiError::bad_request(
                "POST /api/v1/approvals takes an Approval, not a RolloutPlan",
                "plans are loaded from the controller's files",
            ));
        }
        _ => return Err(ApiError::bad_request("kind must be \"Approval\"", MANIFEST_HINT)),
    }
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        if spec.contains_key("revoked") {
            return Err(ApiError::bad_request(
                "spec.revoked cannot be set when granting",
                "revoke an approval with DELETE /api/v1/approvals/{name}",
            ));
        }
        spec.entry("grantedBy").or_insert_with(|| Value::String(identity.name.clone()));
    }
    // JSON is YAML: the pretty form goes through the same parser and validator as files,
    // one field per line so positions stay meaningful.
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let bundle = meridian_core::validate::load(&[("request body".to_string(), text)], Some(now));
    let problems: Vec<FieldProblem> = bundle
        .report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| FieldProblem { path: d.path.clone(), message: d.message.clone(), hint: d.hint.clone() })
        .collect();
    if let Some(first) = problems.first() {
        let at = if first.path.is_empty() { String::new() } else { format!("{}: ", first.path) };
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more in details)", n - 1),
        };
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: format!("invalid approval: {at}{}{more}", first.message),
            hint: first.hint.clone().or_else(|| Some(MANIFEST_HINT.to_string())),
            details: problems,
        });
    }
    let warnings = bundle
        .report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    match bundle.approvals.into_iter().next() {
        Some(record) => Ok((record, warnings)),
        None => Err(ApiError::bad_request("no approval in the body", MANIFEST_HINT)),
    }
}

/// Typos that would make an approval silently useless: a flag no plan asks for, a scope
/// naming plans, regions or services that do not exist. Warnings, as in approval files:
/// plans may be added later.
fn scope_warnings(snapshot: &Snapshot, a: &ApprovalRecord) -> Vec<String> {
    let mut warnings = Vec::new();
    let plans: Vec<_> = snapshot.plans.values().map(|e| &e.plan).collect();
    if plans.is_empty() {
        return warnings;
    }
    if !plans.iter().any(|p| p.flags().contains(&a.flag)) {
        warnings.push(format!("spec.flag: no plan requires flag {:?}", a.flag));
    }
    for p in &a.scope.plans {
        if !snapshot.plans.contains_key(p) {
            warnings.push(format!("spec.scope.plans: unknown plan {p:?}"));
        }
    }
    let in_scope: Vec<_> =
        plans.iter().filter(|p| a.scope.plans.is_empty() || a.scope.plans.contains(&p.name)).collect();
    for r in &a.scope.regions {
        if !in_scope.iter().any(|p| p.region_index(r).is_some()) {
            warnings.push(format!("spec.scope.regions: no plan in scope has region {r:?}"));
        }
    }
    for s in &a.scope.services {
        if !in_scope.iter().any(|p| p.service_index(s).is_some()) {
            warnings.push(format!("spec.scope.services: no plan in scope has service {s:?}"));
        }
    }
    warnings
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeParams {
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    Query(query): Query<RevokeParams>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body_params: RevokeParams = if body.iter().all(u8::is_ascii_whitespace) {
        RevokeParams::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("invalid revoke body: {e}"), r#"send {"reason": "..."} or ?reason=..."#)
        })?
    };
    let reason = body_params.reason.or(query.reason).filter(|r| !r.trim().is_empty());
    let what = format!("DELETE /api/v1/approvals/{name}");
    state.authorize(&identity, Action::RevokeAny, &what)?;
    // The store is the truth: an approval granted a moment ago may not be published yet.
    let approvals = state.control.approvals().await?;
    let Some(approval) = approvals.iter().find(|a| a.name == name) else {
        return Err(ApiError::not_found(
            format!("no approval named {name:?}"),
            crate::plans::known("approvals", approvals.iter().map(|a| &a.name)),
        ));
    };
    let what = format!("DELETE /api/v1/approvals/{name} (flag {})", approval.flag);
    state.authorize(&identity, Action::Revoke { flag: &approval.flag }, &what)?;
    if let Some(r) = &approval.revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("approval {name:?} was already revoked by {} at {}", r.by, r.at.to_rfc3339()),
            "a revoked approval is never valid again; grant a new one under a new name",
        ));
    }
    state.control.revoke(&name, &identity.name, reason.clone()).await?;
    Ok(Json(json!({ "revoked": name, "flag": approval.flag, "by": identity.name, "reason": reason })))
}
