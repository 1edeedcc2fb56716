//! Shared fixtures: a small plan, a tokens file with one token per role, and request helpers.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use meridian_api::fake::FakeControl;
use meridian_api::{Auth, Limits, router};
use serde_json::Value;
use tower::ServiceExt;

pub const PLAN: &str = r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: restore}
spec:
  services:
    - name: signin
    - name: store
      after: [signin]
  regions:
    - {name: us-east}
    - {name: jp, approvals: [jp-regulator]}
  waves:
    - {name: canary, regions: [us-east], approvals: [ops-go]}
    - {name: asia, regions: [jp]}
  steps: [10, 100]
  stepBake: 1m
  actuator: {log: {}}
---
apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: ops-go-1}
spec: {flag: ops-go, grantedBy: ops lead, reference: change 42}
"#;

pub const VIEWER: &str = "viewer-token-0000000001";
pub const OPERATOR: &str = "operator-token-00000001";
pub const APPROVER: &str = "approver-token-00000001";
pub const CI: &str = "ci-token-00000000000001";

/// One token per role; the approver's is stored hashed.
pub fn auth() -> Auth {
    let approver = meridian_api::auth::token_sha256_hex(APPROVER);
    Auth::from_yaml(
        "tokens.yaml",
        &format!(
            "tokens:\n\
             - {{name: vic, token: {VIEWER}, role: viewer}}\n\
             - {{name: olga, token: {OPERATOR}, role: operator}}\n\
             - {{name: alice, tokenSha256: \"{approver}\", role: approver, flags: [jp-regulator]}}\n\
             - {{name: ci-pipeline, token: {CI}, role: ci, flags: [ops-go]}}\n"
        ),
    )
    .expect("tokens fixture")
}

pub fn app(limits: Limits) -> (Arc<FakeControl>, Router) {
    let control = FakeControl::from_yaml(PLAN);
    let router = router(control.clone(), auth(), limits);
    (control, router)
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error shape: `error` and `hint` strings.
    pub fn error(&self) -> (String, String) {
        let v = self.json();
        let error = v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}")).to_string();
        let hint = v["hint"].as_str().unwrap_or_default().to_string();
        (error, hint)
    }
}

/// One request through the router, no network.
pub async fn call(router: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

/// An Approval manifest as JSON.
pub fn approval_json(name: &str, flag: &str) -> String {
    serde_json::json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name},
        "spec": {"flag": flag, "grantedBy": "Ministry liaison office", "reference": "letter 17",
                 "expires": "2099-01-01T00:00:00Z", "scope": {"plans": ["restore"], "regions": ["jp"]}}
    })
    .to_string()
}
