//! The API's one error shape, `{"error": "...", "hint": "..."}`, and the mapping of the
//! control plane's errors and of the tower layers' bare answers onto it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_core::ports::control::ControlError;
use serde::Serialize;

use crate::Limits;

/// An error answer. `details` carries per-field problems of a rejected manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldProblem>,
}

/// One problem in a request body, at a field path.
#[derive(Debug, Clone, Serialize)]
pub struct FieldProblem {
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, hint: impl Into<String>) -> Self {
        let hint = hint.into();
        ApiError { status, error: error.into(), hint: (!hint.is_empty()).then_some(hint), details: Vec::new() }
    }

    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, error, hint)
    }

    pub fn not_found(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, error, hint)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::UnknownPlan(_) => ApiError::not_found(message, "GET /api/v1/plans lists the plans"),
            ControlError::UnknownApproval(_) => {
                ApiError::not_found(message, "GET /api/v1/approvals lists the approvals")
            }
            ControlError::Invalid(_) => ApiError::bad_request(message, ""),
            ControlError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                message,
                "choose another name; an approval's name is never reused, even after it is revoked",
            ),
            ControlError::Store(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                message,
                "nothing was recorded; retry, and check the controller's log",
            ),
            ControlError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "nothing was recorded; retry once the controller is back",
            ),
            ControlError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "nothing was recorded; send it to the leader (its address is in /metrics and in this message)",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Give every error answer the JSON shape, including the bare ones of the body limit (413),
/// the timeout (503), an unknown route (404), a wrong method (405) and extractor rejections.
pub(crate) async fn json_errors(State(limits): State<Limits>, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            format!("request body too large (limit {} bytes)", limits.body_bytes),
            "send a smaller body; approvals and commands are a few hundred bytes",
        ),
        StatusCode::SERVICE_UNAVAILABLE if text.is_empty() => ApiError::new(
            status,
            format!("request not answered within {:?}", limits.request_timeout),
            "the controller may be busy or its store slow; retry",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method not allowed on this path",
            parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .map(|a| format!("allowed: {a}"))
                .unwrap_or_default(),
        ),
        _ => ApiError::new(
            status,
            if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text },
            "",
        ),
    };
    let mut fixed = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}
