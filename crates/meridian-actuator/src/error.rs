//! The one error type of this crate: what failed, where (url, status, attempt), whether trying
//! again may help, and a short label for metrics.
//!
//! Messages are lowercase, name the file, variable or url involved, and never contain a
//! bearer token.

use std::path::PathBuf;
use std::time::Duration;

use meridian_core::ports::ActuationError;

/// Why setting or reading back traffic failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActuatorError {
    /// The url template, filled with a target's names, is not an absolute http(s) url
    /// (validation checked it with sample names; a name may still not fit).
    #[error("actuator url {url:?} is not a valid http url: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A traffic percent above 100 was asked for; nothing was sent.
    #[error("traffic percent {percent} is out of range; use 0 to 100")]
    InvalidPercent { percent: u32 },

    /// The bearer token file is missing or unreadable; nothing was sent.
    #[error("failed to read bearer token file {}: {reason}", path.display())]
    TokenFile { path: PathBuf, reason: String },

    /// The bearer token file holds only whitespace; nothing was sent.
    #[error("bearer token file {} is empty", path.display())]
    EmptyTokenFile { path: PathBuf },

    /// The bearer token environment variable is unset, empty or not unicode; nothing was sent.
    #[error("environment variable {var} for the bearer token is not set or empty")]
    TokenEnv { var: String },

    /// The http client could not be built (TLS initialisation).
    #[error("failed to build the http client: {reason}")]
    Client { reason: String },

    /// No connection could be made (refused, unreachable, DNS).
    #[error("{method} {url} could not connect (attempt {attempt}): {reason}")]
    Connect { method: &'static str, url: String, attempt: u32, reason: String },

    /// No complete answer within the per-request timeout.
    #[error("{method} {url} timed out after {}ms (attempt {attempt})", timeout.as_millis())]
    Timeout { method: &'static str, url: String, attempt: u32, timeout: Duration },

    /// The request could not be built (a token or idempotency key that is not a valid header
    /// value); nothing was sent.
    #[error("{method} {url} could not be built: {reason}")]
    InvalidRequest { method: &'static str, url: String, reason: String },

    /// The connection broke while sending the request or reading the answer.
    #[error("{method} {url} failed (attempt {attempt}): {reason}")]
    Transport { method: &'static str, url: String, attempt: u32, reason: String },

    /// The endpoint answered with a status other than success.
    #[error("{method} {url} answered {status} (attempt {attempt}){}", body_suffix(body))]
    Status { method: &'static str, url: String, attempt: u32, status: u16, body: String },

    /// The target's actuator is `kubernetes`, which only `meridian kube` drives; nothing was
    /// sent.
    #[error(
        "{place} sets traffic with the kubernetes actuator, which needs `meridian kube`; run the plan with meridian \
         kube, or use an http actuator"
    )]
    NeedsKubeMode {
        /// Who asks for it: `plan "p" in region "jp"`, or `an actuator section`.
        place: String,
    },

    /// A read-back answered 200 with a body that does not follow the wire contract.
    #[error("GET {url} returned an unusable traffic read-back (attempt {attempt}): {reason}")]
    InvalidResponse { url: String, attempt: u32, reason: String },
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() { String::new() } else { format!(": {body}") }
}

impl ActuatorError {
    /// Whether the same call may succeed later: connection failures, timeouts, broken
    /// transfers, 429 and 5xx. Other 4xx, bad settings and bad tokens need a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            ActuatorError::Connect { .. } | ActuatorError::Timeout { .. } | ActuatorError::Transport { .. } => true,
            ActuatorError::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            ActuatorError::InvalidUrl { .. }
            | ActuatorError::InvalidPercent { .. }
            | ActuatorError::TokenFile { .. }
            | ActuatorError::EmptyTokenFile { .. }
            | ActuatorError::TokenEnv { .. }
            | ActuatorError::Client { .. }
            | ActuatorError::InvalidRequest { .. }
            | ActuatorError::NeedsKubeMode { .. }
            | ActuatorError::InvalidResponse { .. } => false,
        }
    }

    /// A short, stable label for the `reason` of an actuation-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ActuatorError::InvalidUrl { .. } => "invalid_url",
            ActuatorError::InvalidPercent { .. } => "invalid_percent",
            ActuatorError::TokenFile { .. } | ActuatorError::EmptyTokenFile { .. } | ActuatorError::TokenEnv { .. } => {
                "token"
            }
            ActuatorError::Client { .. } => "client",
            ActuatorError::InvalidRequest { .. } => "invalid_request",
            ActuatorError::Connect { .. } => "connect",
            ActuatorError::Timeout { .. } => "timeout",
            ActuatorError::Transport { .. } => "transport",
            ActuatorError::Status { status: 429, .. } => "http_429",
            ActuatorError::Status { status: 500..=599, .. } => "http_5xx",
            ActuatorError::Status { status: 400..=499, .. } => "http_4xx",
            ActuatorError::Status { .. } => "http_other",
            ActuatorError::InvalidResponse { .. } => "invalid_response",
            ActuatorError::NeedsKubeMode { .. } => "needs_kube_mode",
        }
    }

    /// The attempt (1-based) this error came from, for errors raised by a request.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            ActuatorError::Connect { attempt, .. }
            | ActuatorError::Timeout { attempt, .. }
            | ActuatorError::Transport { attempt, .. }
            | ActuatorError::Status { attempt, .. }
            | ActuatorError::InvalidResponse { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }
}

impl From<ActuatorError> for ActuationError {
    fn from(e: ActuatorError) -> Self {
        ActuationError { message: e.to_string(), retryable: e.is_retryable(), label: e.metric_label() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ActuatorError {
        ActuatorError::Status {
            method: "PUT",
            url: "http://127.0.0.1:1/x".into(),
            attempt: 2,
            status: code,
            body: "".into(),
        }
    }

    #[test]
    fn retryable_statuses_are_429_and_5xx_only() {
        for (code, retryable, label) in [
            (400, false, "http_4xx"),
            (401, false, "http_4xx"),
            (404, false, "http_4xx"),
            (409, false, "http_4xx"),
            (429, true, "http_429"),
            (500, true, "http_5xx"),
            (503, true, "http_5xx"),
            (599, true, "http_5xx"),
            (302, false, "http_other"),
        ] {
            assert_eq!(status(code).is_retryable(), retryable, "status {code}");
            assert_eq!(status(code).metric_label(), label, "status {code}");
        }
    }

    #[test]
    fn messages_are_lowercase_and_carry_context() {
        let e = ActuatorError::Status {
            method: "PUT",
            url: "http://127.0.0.1:9/v1/jp/store".into(),
            attempt: 4,
            status: 503,
            body: "busy".into(),
        };
        assert_eq!(e.to_string(), "PUT http://127.0.0.1:9/v1/jp/store answered 503 (attempt 4): busy");
        let e = ActuatorError::TokenFile { path: "/run/secrets/token".into(), reason: "no such file".into() };
        assert_eq!(e.to_string(), "failed to read bearer token file /run/secrets/token: no such file");
        assert_eq!(e.attempt(), None);
        let converted: ActuationError = e.into();
        assert!(!converted.retryable);
        assert_eq!(converted.label, "token");
    }
}
