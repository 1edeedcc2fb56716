//! The router driven in-process (`tower::ServiceExt::oneshot`) against the fake control plane:
//! every endpoint, the role and flag matrix, denials recorded, scope validation, limits and
//! the error shape.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use axum::http::StatusCode;
use meridian_api::Limits;
use meridian_core::ports::control::{ControlError, ControlPlane, Readiness};
use meridian_core::state::{AcceptedFailures, UnitFailure};
use meridian_core::{AuditEvent, AuditRecord, Cause, CommandKind, UnitPhase, WavePhase};
use support::*;

#[tokio::test]
async fn every_token_reads_plans_and_detail() {
    let (_, app) = app(Limits::default());
    for token in [VIEWER, OPERATOR, APPROVER, CI] {
        let a = call(&app, "GET", "/api/v1/plans", Some(token), None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let plans = a.json();
        assert_eq!(plans["plans"][0]["name"], "restore");
        assert_eq!(plans["plans"][0]["units"], 4);
        assert_eq!(plans["plans"][0]["phase"], "pending");
    }
    let d = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    assert_eq!(d["name"], "restore");
    assert_eq!(d["state"]["units"].as_array().unwrap().len(), 4);
    assert_eq!(d["state"]["units"][0]["phase"], "pending");
    assert_eq!(d["state"]["units"][0]["percent"], 0);
    let jp = d["regions"].as_array().unwrap().iter().find(|r| r["name"] == "jp").unwrap().clone();
    assert_eq!(jp["wave"], "asia");
    assert_eq!(jp["approvals"][0]["flag"], "jp-regulator");
    assert_eq!(jp["approvals"][0]["holds"], false);
    let us = d["regions"].as_array().unwrap().iter().find(|r| r["name"] == "us-east").unwrap().clone();
    assert_eq!(us["approvals"][0]["flag"], "ops-go");
    assert_eq!(us["approvals"][0]["holds"], true, "{us}");

    let missing = call(&app, "GET", "/api/v1/plans/restor", Some(VIEWER), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error(), ("no plan named \"restor\"".into(), "known plans: restore".into()));
}

#[tokio::test]
async fn missing_and_invalid_tokens_get_401_and_are_recorded() {
    let (control, app) = app(Limits::default());
    let a = call(&app, "GET", "/api/v1/plans", None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    assert_eq!(a.error().0, "missing bearer token");
    assert!(a.error().1.contains("Authorization: Bearer"));
    let b = call(&app, "POST", "/api/v1/plans/restore/pause", Some("not-a-real-token-at-all"), None).await;
    assert_eq!(b.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.error().0, "invalid token");
    let denials = control.denials();
    assert_eq!(denials.len(), 2, "{denials:?}");
    assert_eq!(denials[0].who, "anonymous");
    assert!(denials[0].what.starts_with("GET /api/v1/plans (401"), "{:?}", denials[0]);
    assert_eq!(denials[1].who, "unknown token");
    assert!(denials[1].what.starts_with("POST /api/v1/plans/restore/pause (401"));
    assert!(control.commands().is_empty());
}

#[tokio::test]
async fn probes_need_no_token() {
    let (control, app) = app(Limits::default());
    let h = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!((h.status, h.text.as_str()), (StatusCode::OK, "ok\n"));
    let r = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ready"], true);
    control.set_readiness(Readiness { ready: false, reasons: vec!["recovering intents".into()] });
    let r = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["reasons"][0], "recovering intents");
    assert_eq!(r.error().0, "not ready: recovering intents");
    let m = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert!(m.text.contains("meridian_fake_plans 1"));
    let i = call(&app, "GET", "/", None, None).await;
    assert_eq!(i.status, StatusCode::OK);
    // The dashboard: one page, reading the API, loading nothing from elsewhere.
    assert!(i.text.contains("<title>Meridian</title>") && i.text.contains("fetch(\"/api/v1\" + path"));
    let csp = i.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "only the page's own script runs: {csp}");
    assert!(control.denials().is_empty());
}

#[tokio::test]
async fn operator_commands_with_scope() {
    let (control, app) = app(Limits::default());
    let a = call(&app, "POST", "/api/v1/plans/restore/pause", Some(OPERATOR), None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.json()["command"]["kind"], "pause");
    assert_eq!(a.json()["command"]["by"], "olga");
    let b = call(&app, "POST", "/api/v1/plans/restore/resume", Some(OPERATOR), Some(r#"{"wave": "asia"}"#)).await;
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.text);
    let c = call(&app, "POST", "/api/v1/plans/restore/abort", Some(OPERATOR), Some(r#"{"region": "jp"}"#)).await;
    assert_eq!(c.status, StatusCode::ACCEPTED, "{}", c.text);
    let commands = control.commands();
    assert_eq!(commands.len(), 3);
    assert_eq!(commands[0].1.kind, CommandKind::Pause);
    assert_eq!((commands[0].1.wave.as_deref(), commands[0].1.region.as_deref()), (None, None));
    assert_eq!(commands[1].1.wave.as_deref(), Some("asia"));
    assert_eq!(commands[2].1.region.as_deref(), Some("jp"));
    assert!(commands.iter().all(|(plan, c)| plan == "restore" && c.by == "olga"));
    let state = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    assert_eq!(state["phase"], "paused");
    assert_eq!(state["state"]["abortedRegions"][0], "jp");
}

#[tokio::test]
async fn command_scope_and_shape_are_validated() {
    let (control, app) = app(Limits::default());
    let cases: [(&str, &str, StatusCode, &str, &str); 7] = [
        (
            "pause",
            r#"{"wave": "asai"}"#,
            StatusCode::BAD_REQUEST,
            "plan \"restore\" has no wave \"asai\"",
            "known waves: canary, asia",
        ),
        (
            "pause",
            r#"{"region": "kr"}"#,
            StatusCode::BAD_REQUEST,
            "plan \"restore\" has no region \"kr\"",
            "known regions: us-east, jp",
        ),
        (
            "pause",
            r#"{"wave": "asia", "region": "jp"}"#,
            StatusCode::BAD_REQUEST,
            "give a wave or a region, not both",
            "send no body",
        ),
        (
            "pause",
            r#"{"zone": "x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid command body: unknown field `zone`",
            "send no body",
        ),
        ("pause", "{not json", StatusCode::BAD_REQUEST, "invalid command body", "{\"wave\": \"W\"}"),
        (
            "halt",
            "",
            StatusCode::NOT_FOUND,
            "no action \"halt\"",
            "use pause, resume, abort, promote, retry, freeze or unfreeze",
        ),
        ("pause", "", StatusCode::OK, "", ""),
    ];
    for (action, body, status, error, hint) in cases {
        let uri = format!("/api/v1/plans/restore/{action}");
        let a = call(&app, "POST", &uri, Some(OPERATOR), Some(body)).await;
        if status == StatusCode::OK {
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
            continue;
        }
        assert_eq!(a.status, status, "{body}: {}", a.text);
        let (e, h) = a.error();
        assert!(e.starts_with(error), "{e:?} does not start with {error:?}");
        assert!(h.contains(hint), "{h:?} does not contain {hint:?}");
    }
    let missing = call(&app, "POST", "/api/v1/plans/nope/pause", Some(OPERATOR), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error().0, "no plan named \"nope\"");
    assert_eq!(control.commands().len(), 1);
}

/// `"full"` is `promote`'s alone: other commands refuse it by name, a promote keeps it.
#[tokio::test]
async fn full_is_for_promote_only() {
    let (control, app) = app(Limits::default());
    for (action, body) in [
        ("pause", r#"{"full": true}"#),
        ("retry", r#"{"wave": "asia", "full": false}"#),
        ("freeze", r#"{"reason": "audit", "full": true}"#),
        ("unfreeze", r#"{"full": true}"#),
    ] {
        let a = call(&app, "POST", &format!("/api/v1/plans/restore/{action}"), Some(OPERATOR), Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{action} {body}: {}", a.text);
        let (error, hint) = a.error();
        assert_eq!(error, format!("\"full\" is only for promote, not for {action}"));
        assert!(hint.contains(r#"promote with {"full": true}"#), "{hint}");
    }
    assert!(control.commands().is_empty(), "a refused body queues nothing");
    let bad = call(&app, "POST", "/api/v1/plans/restore/promote", Some(OPERATOR), Some(r#"{"full": "yes"}"#)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.error().0.starts_with("invalid command body"), "{}", bad.text);

    let ok =
        call(&app, "POST", "/api/v1/plans/restore/promote", Some(OPERATOR), Some(r#"{"full": true, "wave": "asia"}"#))
            .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
    assert_eq!(ok.json()["command"]["full"], true, "{}", ok.text);
    let once = call(&app, "POST", "/api/v1/plans/restore/promote", Some(OPERATOR), Some(r#"{"region": "jp"}"#)).await;
    assert_eq!(once.status, StatusCode::ACCEPTED, "{}", once.text);
    assert!(once.json()["command"].get("full").is_none(), "a one-shot promote says nothing of full: {}", once.text);
    let queued: Vec<(bool, Option<String>)> =
        control.commands().into_iter().map(|(_, c)| (c.full, c.wave.or(c.region))).collect();
    assert_eq!(queued, vec![(true, Some("asia".to_string())), (false, Some("jp".to_string()))]);
}

#[tokio::test]
async fn command_role_matrix_and_denials() {
    let (control, app) = app(Limits::default());
    let mut expected_denials = 0;
    for kind in ["pause", "resume", "abort", "promote", "retry"] {
        let uri = format!("/api/v1/plans/restore/{kind}");
        for (token, who, allowed) in [
            (VIEWER, "vic", false),
            (OPERATOR, "olga", true),
            (APPROVER, "alice", false),
            (CI, "ci-pipeline", kind == "promote" || kind == "resume"),
        ] {
            let a = call(&app, "POST", &uri, Some(token), None).await;
            if allowed {
                assert_eq!(a.status, StatusCode::ACCEPTED, "{who} {kind}: {}", a.text);
            } else {
                expected_denials += 1;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{who} {kind}: {}", a.text);
                let (error, hint) = a.error();
                assert!(error.contains(who) && error.contains(kind), "{error}");
                assert!(!hint.is_empty());
                let last = control.denials().pop().unwrap();
                assert_eq!(last.who, who);
                assert!(last.what.starts_with(&format!("POST /api/v1/plans/restore/{kind} (403 ")), "{last:?}");
            }
        }
    }
    assert_eq!(control.denials().len(), expected_denials);
    let by: Vec<(CommandKind, String)> = control.commands().into_iter().map(|(_, c)| (c.kind, c.by)).collect();
    assert_eq!(by.iter().filter(|(_, b)| b == "olga").count(), 5);
    assert_eq!(
        by.iter().filter(|(_, b)| b == "ci-pipeline").map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![CommandKind::Resume, CommandKind::Promote]
    );
}

#[tokio::test]
async fn approvers_grant_only_their_flags() {
    let (control, app) = app(Limits::default());
    let a =
        call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json("jp-ok-1", "jp-regulator"))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.headers["location"], "/api/v1/approvals/jp-ok-1");
    let body = a.json();
    assert_eq!(body["approval"]["grantedBy"], "Ministry liaison office (via alice)");
    assert_eq!(body["approval"]["status"], "active");
    assert_eq!(body["warnings"].as_array().unwrap().len(), 0, "{body}");
    // The flag now holds for jp.
    let d = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    let jp = d["regions"].as_array().unwrap().iter().find(|r| r["name"] == "jp").unwrap().clone();
    assert_eq!(jp["approvals"][0]["holds"], true, "{jp}");

    // Another flag: 403, recorded, nothing granted.
    let b = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json("go-2", "ops-go"))).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN);
    assert!(b.error().0.contains("may not grant flag \"ops-go\" (it may grant: jp-regulator)"), "{}", b.text);
    let last = control.denials().pop().unwrap();
    assert_eq!(last.who, "alice");
    assert!(last.what.contains("flag ops-go"), "{last:?}");

    // CI grants its own flag; viewer and operator may not grant at all.
    let c = call(&app, "POST", "/api/v1/approvals", Some(CI), Some(&approval_json("go-2", "ops-go"))).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    for token in [VIEWER, OPERATOR] {
        let d = call(&app, "POST", "/api/v1/approvals", Some(token), Some(&approval_json("x-1", "jp-regulator"))).await;
        assert_eq!(d.status, StatusCode::FORBIDDEN);
        assert!(d.error().0.contains("may not grant approvals"), "{}", d.text);
    }
    assert_eq!(control.denials().len(), 3);

    let list = call(&app, "GET", "/api/v1/approvals", Some(VIEWER), None).await.json();
    let names: Vec<&str> = list["approvals"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ops-go-1", "jp-ok-1", "go-2"]);

    // Same name again: 409.
    let e =
        call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json("jp-ok-1", "jp-regulator"))).await;
    assert_eq!(e.status, StatusCode::CONFLICT, "{}", e.text);
}

#[tokio::test]
async fn granted_by_defaults_to_the_token_and_warnings_flag_typos() {
    let (_, app) = app(Limits::default());
    let body = serde_json::json!({
        "apiVersion": "meridian.dev/v1alpha1", "kind": "Approval", "metadata": {"name": "jp-2"},
        "spec": {"flag": "jp-regulator", "reference": "r", "scope": {"plans": ["restor"], "services": ["music"]}}
    });
    let a = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&body.to_string())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let v = a.json();
    assert_eq!(v["approval"]["grantedBy"], "alice");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("unknown plan \\\"restor\\\""), "{warnings}");
}

#[tokio::test]
async fn invalid_approvals_get_400_with_every_problem() {
    let (control, app) = app(Limits::default());
    let bad = serde_json::json!({
        "apiVersion": "meridian.dev/v1alpha1", "kind": "Approval", "metadata": {"name": "Bad_Name"},
        "spec": {"flag": "jp-regulator", "grantedBy": "m", "expires": "tomorrow"}
    });
    let a = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&bad.to_string())).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    let v = a.json();
    assert!(v["error"].as_str().unwrap().starts_with("invalid approval: "), "{v}");
    assert!(v["error"].as_str().unwrap().contains("(and 1 more in details)"), "{v}");
    let details = v["details"].as_array().unwrap();
    let paths: Vec<&str> = details.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"metadata.name") && paths.contains(&"spec.expires"), "{paths:?}");

    let cases: [(&str, &str); 6] = [
        ("{", "invalid JSON body"),
        ("[1]", "the body is not a JSON object"),
        (r#"{"kind": "RolloutPlan"}"#, "takes an Approval, not a RolloutPlan"),
        (
            r#"{"kind": "Approval", "apiVersion": "meridian.dev/v1alpha1", "metadata": {"name": "a"}, "spec": {"flag": "jp-regulator", "color": "red"}}"#,
            "invalid approval: ",
        ),
        (
            r#"{"kind": "Approval", "apiVersion": "meridian.dev/v1alpha1", "metadata": {"name": "a"}, "spec": {"flag": "jp-regulator", "revoked": {"at": "2026-01-01T00:00:00Z", "by": "x"}}}"#,
            "spec.revoked cannot be set",
        ),
        (
            r#"{"kind": "Approval", "apiVersion": "v0", "metadata": {"name": "a"}, "spec": {"flag": "jp-regulator"}}"#,
            "invalid approval: apiVersion: unsupported apiVersion",
        ),
    ];
    for (body, error) in cases {
        let a = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        let (e, h) = a.error();
        assert!(e.contains(error), "{e:?} lacks {error:?}");
        assert!(!h.is_empty(), "{body}: no hint");
    }
    assert_eq!(control.snapshot().approvals.len(), 1, "nothing was granted");
}

#[tokio::test]
async fn revoke_checks_the_flag_and_takes_a_reason() {
    let (control, app) = app(Limits::default());
    let a =
        call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json("jp-ok-1", "jp-regulator"))).await;
    assert_eq!(a.status, StatusCode::CREATED);

    // Not alice's flag, and not an approver: 403, recorded.
    let b = call(&app, "DELETE", "/api/v1/approvals/ops-go-1", Some(APPROVER), None).await;
    assert_eq!(b.status, StatusCode::FORBIDDEN, "{}", b.text);
    assert!(b.error().0.contains("may not revoke approvals of flag \"ops-go\""));
    let c = call(&app, "DELETE", "/api/v1/approvals/jp-ok-1", Some(OPERATOR), None).await;
    assert_eq!(c.status, StatusCode::FORBIDDEN);
    assert_eq!(control.denials().len(), 2);

    let d = call(&app, "DELETE", "/api/v1/approvals/jp-ok-1?reason=letter%20withdrawn", Some(APPROVER), None).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(d.json()["by"], "alice");
    assert_eq!(d.json()["reason"], "letter withdrawn");
    let list = call(&app, "GET", "/api/v1/approvals", Some(VIEWER), None).await.json();
    let jp = list["approvals"].as_array().unwrap().iter().find(|a| a["name"] == "jp-ok-1").unwrap().clone();
    assert_eq!(jp["status"], "revoked");
    assert_eq!(jp["revoked"]["by"], "alice");
    assert_eq!(jp["revoked"]["reason"], "letter withdrawn");

    let again = call(&app, "DELETE", "/api/v1/approvals/jp-ok-1", Some(APPROVER), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.error().0.contains("already revoked by alice"));

    // The reason in a JSON body; CI revokes its own flag.
    let e = call(&app, "DELETE", "/api/v1/approvals/ops-go-1", Some(CI), Some(r#"{"reason": "tests failed"}"#)).await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.text);
    assert_eq!(e.json()["reason"], "tests failed");

    let missing = call(&app, "DELETE", "/api/v1/approvals/nope", Some(APPROVER), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.error().1.starts_with("known approvals: "));
}

fn record(plan: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: chrono::Utc::now(),
        plan: plan.into(),
        wave: Some("canary".into()),
        region: None,
        service: None,
        event: AuditEvent::Wave { from: WavePhase::Pending, to: WavePhase::Running },
        cause: Cause::WaveStarted,
    }
}

#[tokio::test]
async fn audit_pages_and_validates_its_parameters() {
    let (control, app) = app(Limits::default());
    for _ in 0..3 {
        control.commit(record("restore"));
    }
    control.commit(record("other"));
    let all = call(&app, "GET", "/api/v1/audit", Some(VIEWER), None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.json()["records"].as_array().unwrap().len(), 4);
    let page = call(&app, "GET", "/api/v1/audit?plan=restore&after=1&limit=1", Some(VIEWER), None).await.json();
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0]["seq"].as_u64(), records[0]["plan"].as_str()), (Some(2), Some("restore")));
    for (query, error) in [
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=5000", "limit must be between 1 and 1000"),
        ("after=-1", "after must be a non-negative integer, not \"-1\""),
        ("plan=restore&colour=red", "unknown parameter \"colour\""),
    ] {
        let a = call(&app, "GET", &format!("/api/v1/audit?{query}"), Some(VIEWER), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(a.error().0, error);
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_as_json() {
    let (control, app) = app(Limits { body_bytes: 1024, ..Limits::default() });
    let big = format!(r#"{{"wave": "{}"}}"#, "x".repeat(4096));
    let a = call(&app, "POST", "/api/v1/plans/restore/pause", Some(OPERATOR), Some(&big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert_eq!(a.error().0, "request body too large (limit 1024 bytes)");
    let b = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&big)).await;
    assert_eq!(b.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(control.commands().is_empty());
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let (control, app) = app(Limits { request_timeout: std::time::Duration::from_millis(100), ..Limits::default() });
    control.stall_next(std::time::Duration::from_secs(5));
    let a = call(&app, "POST", "/api/v1/plans/restore/pause", Some(OPERATOR), None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.error().0, "request not answered within 100ms");
    assert!(control.commands().is_empty());
}

#[tokio::test]
async fn control_plane_failures_map_to_statuses() {
    let (control, app) = app(Limits::default());
    for (error, status) in [
        (ControlError::Stopped, StatusCode::SERVICE_UNAVAILABLE),
        (ControlError::Store("disk full".into()), StatusCode::INTERNAL_SERVER_ERROR),
        (ControlError::Invalid("no".into()), StatusCode::BAD_REQUEST),
        (ControlError::Conflict("x".into()), StatusCode::CONFLICT),
    ] {
        control.fail_next(error.clone());
        let a = call(&app, "POST", "/api/v1/plans/restore/pause", Some(OPERATOR), None).await;
        assert_eq!(a.status, status, "{error:?}");
        assert_eq!(a.error().0, error.to_string());
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_shape() {
    let (_, app) = app(Limits::default());
    let a = call(&app, "GET", "/api/v1/nothing", Some(VIEWER), None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error().0, "no endpoint at /api/v1/nothing");
    let b = call(&app, "GET", "/nothing", None, None).await;
    assert_eq!(b.status, StatusCode::NOT_FOUND);
    let c = call(&app, "DELETE", "/api/v1/plans", Some(OPERATOR), None).await;
    assert_eq!(c.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(c.error().0, "method not allowed on this path");
    let d = call(&app, "GET", "/api/v1/whoami", Some(APPROVER), None).await.json();
    assert_eq!(d["identity"]["name"], "alice");
    assert_eq!(d["identity"]["role"], "approver");
    assert_eq!(d["identity"]["flags"][0], "jp-regulator");
    assert_eq!(d["authDisabled"], false);
    let v = call(&app, "GET", "/api/v1/version", Some(VIEWER), None).await.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["api"], "v1");
}

#[tokio::test]
async fn disabled_auth_allows_everything_as_anonymous() {
    let control = meridian_api::fake::FakeControl::from_yaml(PLAN);
    let app = meridian_api::router(control.clone(), meridian_api::Auth::disabled(), Limits::default());
    let a = call(&app, "POST", "/api/v1/plans/restore/abort", None, None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(control.commands()[0].1.by, "anonymous");
    let b = call(&app, "POST", "/api/v1/approvals", None, Some(&approval_json("jp-1", "jp-regulator"))).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);
    // No token to attribute it to: grantedBy is kept as sent.
    assert_eq!(b.json()["approval"]["grantedBy"], "Ministry liaison office");
    assert_eq!(call(&app, "GET", "/api/v1/whoami", None, None).await.json()["authDisabled"], true);
}

#[tokio::test]
async fn config_status_shows_a_rejected_edit() {
    let (control, app) = app(Limits::default());
    let fine = call(&app, "GET", "/api/v1/config", Some(VIEWER), None).await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.text);
    assert!(fine.json().get("rejected").is_none());
    control.set_config(meridian_core::snapshot::ConfigStatus {
        generation: 3,
        loaded_at: None,
        warnings: 1,
        rejected: Some(meridian_core::snapshot::RejectedEdit {
            at: chrono::Utc::now(),
            errors: vec!["plans/a.yaml:3:5: error: unknown region \"zz\"".into()],
        }),
        last_edit: None,
    });
    let v = call(&app, "GET", "/api/v1/config", Some(VIEWER), None).await.json();
    assert_eq!(v["generation"], 3);
    assert_eq!(v["rejected"]["errors"][0], "plans/a.yaml:3:5: error: unknown region \"zz\"");
    assert_eq!(call(&app, "GET", "/api/v1/config", None, None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn freeze_and_unfreeze_carry_their_parameters_and_are_kept_in_the_plan_state() {
    let (control, app) = app(Limits::default());
    let until = (chrono::Utc::now() + chrono::TimeDelta::hours(2)).to_rfc3339();
    let body = format!(r#"{{"reason": "incident 4711", "until": "{until}", "region": "jp"}}"#);
    let a = call(&app, "POST", "/api/v1/plans/restore/freeze", Some(OPERATOR), Some(&body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let command = &a.json()["command"];
    assert_eq!(command["kind"], "freeze");
    assert_eq!(command["region"], "jp");
    assert_eq!(command["by"], "olga");
    assert_eq!(command["freeze"]["name"], "region-jp", "a default name from the scope");
    assert_eq!(command["freeze"]["reason"], "incident 4711");
    assert!(command["freeze"]["until"].is_string());
    let b = call(
        &app,
        "POST",
        "/api/v1/plans/restore/freeze",
        Some(OPERATOR),
        Some(r#"{"reason": "year-end change freeze", "name": "year-end"}"#),
    )
    .await;
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.text);
    let detail = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    let freezes = detail["state"]["freezes"].as_array().unwrap();
    assert_eq!(freezes.len(), 2);
    assert_eq!((freezes[0]["name"].as_str(), freezes[0]["region"].as_str()), (Some("region-jp"), Some("jp")));
    assert_eq!((freezes[1]["name"].as_str(), freezes[1].get("until")), (Some("year-end"), None));

    // Unfreeze names one that exists, or lifts every one.
    let wrong = call(&app, "POST", "/api/v1/plans/restore/unfreeze", Some(OPERATOR), Some(r#"{"name": "nope"}"#)).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.error(),
        (
            "plan \"restore\" has no run-time freeze \"nope\"".into(),
            "known run-time freezes: region-jp, year-end".into()
        )
    );
    let one =
        call(&app, "POST", "/api/v1/plans/restore/unfreeze", Some(OPERATOR), Some(r#"{"name": "region-jp"}"#)).await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.text);
    assert_eq!(one.json()["command"]["unfreeze"], "region-jp");
    let detail = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    assert_eq!(detail["state"]["freezes"][0]["name"], "year-end");
    let all = call(&app, "POST", "/api/v1/plans/restore/unfreeze", Some(OPERATOR), None).await;
    assert_eq!(all.status, StatusCode::ACCEPTED, "{}", all.text);
    let detail = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    assert!(detail["state"].get("freezes").is_none(), "{detail}");

    // Every command is audited with who asked.
    let kinds: Vec<(CommandKind, String)> = control.commands().into_iter().map(|(_, c)| (c.kind, c.by)).collect();
    assert_eq!(kinds.len(), 4);
    assert!(kinds.iter().all(|(_, by)| by == "olga"));
    let audit = call(&app, "GET", "/api/v1/audit?plan=restore", Some(VIEWER), None).await.json();
    assert_eq!(audit["records"].as_array().unwrap().len(), 4);
    assert_eq!(audit["records"][0]["event"]["command"], "freeze");
}

#[tokio::test]
async fn freeze_bodies_are_validated() {
    let (control, app) = app(Limits::default());
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let past_body = format!(r#"{{"reason": "x", "until": "{past}"}}"#);
    let cases: [(&str, StatusCode, &str, &str); 7] = [
        ("", StatusCode::BAD_REQUEST, "a freeze needs a reason", "\"reason\""),
        (r#"{"reason": "  "}"#, StatusCode::BAD_REQUEST, "the freeze's reason is empty", "blocked reason"),
        (&past_body, StatusCode::BAD_REQUEST, "until ", "leave until out"),
        (r#"{"reason": "x", "wave": "asia", "region": "jp"}"#, StatusCode::BAD_REQUEST, "give a wave or a region", ""),
        (
            r#"{"reason": "x", "region": "kr"}"#,
            StatusCode::BAD_REQUEST,
            "plan \"restore\" has no region \"kr\"",
            "us-east, jp",
        ),
        (r#"{"reason": "x", "until": "tomorrow"}"#, StatusCode::BAD_REQUEST, "invalid freeze body", "\"until\""),
        (r#"{"reason": "x", "scope": "jp"}"#, StatusCode::BAD_REQUEST, "invalid freeze body: unknown field", ""),
    ];
    for (body, status, error, hint) in cases {
        let a = call(&app, "POST", "/api/v1/plans/restore/freeze", Some(OPERATOR), Some(body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        let (e, h) = a.error();
        assert!(e.starts_with(error), "{e:?} does not start with {error:?}");
        assert!(h.contains(hint), "{h:?} does not contain {hint:?}");
    }
    let bad = call(&app, "POST", "/api/v1/plans/restore/unfreeze", Some(OPERATOR), Some(r#"{"wave": "asia"}"#)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().0.starts_with("invalid unfreeze body"));
    assert!(control.commands().is_empty());
}

#[tokio::test]
async fn freeze_and_unfreeze_need_the_operator_role_like_pause() {
    let (control, app) = app(Limits::default());
    for (kind, body) in [("freeze", r#"{"reason": "x"}"#), ("unfreeze", "")] {
        let uri = format!("/api/v1/plans/restore/{kind}");
        for (token, who) in [(VIEWER, "vic"), (APPROVER, "alice"), (CI, "ci-pipeline")] {
            let a = call(&app, "POST", &uri, Some(token), Some(body)).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{who} {kind}: {}", a.text);
            assert!(a.error().0.contains(kind), "{}", a.text);
        }
        let a = call(&app, "POST", &uri, Some(OPERATOR), Some(body)).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{kind}: {}", a.text);
    }
    assert_eq!(control.denials().len(), 6);
    assert_eq!(control.commands().len(), 2);
}

#[tokio::test]
async fn plan_detail_shows_each_regions_effective_settings_with_their_origins() {
    let control = meridian_api::fake::FakeControl::from_yaml(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: regional}
spec:
  services: [{name: signin}]
  regions:
    - {name: us-east}
    - name: jp
      timezone: Asia/Tokyo
      labels: {continent: asia}
      stepBake: 30m
      freezes: [{reason: Golden Week, from: 2026-04-29, to: 2026-05-06}]
  waves:
    - {name: canary, regions: [us-east]}
    - {name: asia, selector: {matchLabels: {continent: asia}}}
  stepBake: 10m
  actuator: {log: {}}
"#,
    );
    let app = meridian_api::router(control, auth(), Limits::default());
    let d = call(&app, "GET", "/api/v1/plans/regional", Some(VIEWER), None).await.json();
    let jp = d["regions"].as_array().unwrap().iter().find(|r| r["name"] == "jp").unwrap().clone();
    assert_eq!(jp["wave"], "asia");
    assert_eq!(jp["chosenBy"], serde_json::json!({"by": "selector", "selector": "continent=asia"}));
    assert_eq!(jp["labels"]["continent"], "asia");
    assert_eq!(jp["definedAt"], "fixture.yaml:9");
    assert_eq!(jp["settings"]["stepBake"], serde_json::json!({"value": "30m", "origin": "region"}));
    assert_eq!(jp["settings"]["steps"]["origin"], "plan");
    assert_eq!(jp["settings"]["actuator"], serde_json::json!({"value": "log (dry run)", "origin": "plan"}));
    assert_eq!(
        jp["settings"]["freezes"][0],
        serde_json::json!({"reason": "Golden Week", "from": "2026-04-29", "to": "2026-05-06", "origin": "region"})
    );
    let us = d["regions"].as_array().unwrap().iter().find(|r| r["name"] == "us-east").unwrap().clone();
    assert_eq!(us["chosenBy"], serde_json::json!({"by": "name"}));
    assert_eq!(us["settings"]["stepBake"], serde_json::json!({"value": "10m", "origin": "plan"}));
}

#[tokio::test]
async fn history_pages_and_filters_the_controllers_events() {
    let (_, app) = app(Limits::default());
    // Three denials make three history events in the fake.
    for _ in 0..3 {
        let denied = call(&app, "POST", "/api/v1/plans/restore/pause", Some(VIEWER), None).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
    }
    let all = call(&app, "GET", "/api/v1/history", Some(VIEWER), None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all = all.json();
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{all}");
    assert_eq!(events[0]["kind"], "access-denied");
    assert_eq!(events[0]["id"], 1);
    assert!(events[0]["detail"]["request"].as_str().unwrap().starts_with("POST /api/v1/plans/restore/pause"));
    assert_eq!(all["next"], 3);

    let page = call(&app, "GET", "/api/v1/history?after=1&limit=1", Some(VIEWER), None).await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["id"], 2);
    assert_eq!(page["next"], 2);
    let none = call(&app, "GET", "/api/v1/history?kind=approval-granted", Some(VIEWER), None).await.json();
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    assert_eq!(none["next"], 3, "the page was read even though nothing matched");

    for bad in ["/api/v1/history?limit=0", "/api/v1/history?after=-1", "/api/v1/history?plan=restore"] {
        let r = call(&app, "GET", bad, Some(VIEWER), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
}

#[tokio::test]
async fn plans_and_detail_carry_the_outcome_with_accepted_failures() {
    let (control, app) = app(Limits::default());
    let running = call(&app, "GET", "/api/v1/plans", Some(VIEWER), None).await.json();
    assert_eq!(running["plans"][0]["outcome"]["summary"], "pending");
    assert_eq!(running["plans"][0]["outcome"]["failed"], serde_json::json!([]));
    // us-east is enabled; jp's signin failed and jp was rolled back; alice promoted asia.
    control.update("restore", |s| {
        for u in &mut s.units {
            (u.phase, u.percent) =
                if u.region == "jp" { (UnitPhase::RolledBack, 0) } else { (UnitPhase::Enabled, 100) };
        }
        s.units[2].failure = Some(Box::new(UnitFailure {
            at: "2026-06-01T10:00:00Z".parse().unwrap(),
            check: "error-rate".into(),
            verdict: meridian_core::HealthVerdict::Unhealthy,
            value: Some(0.2),
            failures: 2,
            baseline: None,
            progress_deadline: None,
        }));
        for w in &mut s.waves {
            w.phase = WavePhase::Complete;
        }
        s.waves[1].accepted = Some(AcceptedFailures {
            by: "alice".into(),
            at: "2026-06-01T11:00:00Z".parse().unwrap(),
            regions: vec!["jp".into()],
        });
    });
    let list = call(&app, "GET", "/api/v1/plans", Some(VIEWER), None).await.json();
    let outcome = &list["plans"][0]["outcome"];
    assert_eq!(list["plans"][0]["phase"], "complete");
    assert_eq!(outcome["summary"], "complete, 1 region rolled back: jp (accepted by alice)");
    let detail = call(&app, "GET", "/api/v1/plans/restore", Some(VIEWER), None).await.json();
    assert_eq!(detail["outcome"], *outcome, "one outcome for the list and the detail");
    let jp = &detail["outcome"]["failed"][0];
    assert_eq!(jp["region"], "jp");
    assert_eq!(jp["wave"], "asia");
    assert_eq!(jp["state"], "rolled-back");
    assert_eq!(jp["service"], "signin");
    assert_eq!(jp["accepted"], serde_json::json!({"by": "alice", "at": "2026-06-01T11:00:00Z"}));
    assert_eq!(detail["state"]["waves"][1]["accepted"]["by"], "alice");
    assert_eq!(detail["outcome"]["enabled"], 2);
    assert_eq!(detail["outcome"]["units"], 4);
}

#[tokio::test]
async fn a_command_body_that_is_not_a_json_object_is_a_400_not_an_empty_scope() {
    let (control, app) = app(Limits::default());
    for (action, body) in [
        ("pause", "[]"),
        ("abort", "[\"asia\"]"),
        ("pause", "null"),
        ("pause", "3"),
        ("freeze", "[]"),
        ("unfreeze", "[]"),
    ] {
        let a = call(&app, "POST", &format!("/api/v1/plans/restore/{action}"), Some(OPERATOR), Some(body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{action} {body}: {}", a.text);
        let (e, h) = a.error();
        assert!(e.contains("must be a JSON object"), "{e:?}");
        assert!(!h.is_empty(), "{h:?}");
    }
    assert!(control.commands().is_empty(), "nothing was queued");
}

#[tokio::test]
async fn events_of_an_unknown_plan_are_a_404_like_its_detail() {
    let (_, app) = app(Limits::default());
    let a = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        call(&app, "GET", "/api/v1/events?plan=unknown", Some(VIEWER), None),
    )
    .await
    .expect("an answer, not a stream that never ends");
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(a.error().0, "no plan named \"unknown\"");
    assert!(a.error().1.contains("restore"), "{}", a.text);
}

#[tokio::test]
async fn the_404_hint_points_at_documentation_that_exists() {
    let (_, app) = app(Limits::default());
    let hint = call(&app, "GET", "/api/v1/nothing", Some(VIEWER), None).await.error().1;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(!hint.contains("docs/api.md"), "{hint}");
    assert!(hint.contains("README.md#http-api-and-the-cli-client"), "{hint}");
    assert!(readme.contains("\n## HTTP API and the CLI client\n"), "the anchor's heading exists");
}

#[tokio::test]
async fn approval_names_follow_kubernetes_rules_dot_by_dot() {
    let (control, app) = app(Limits::default());
    for name in ["a..b", "a.-b", "a-.b"] {
        let a =
            call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json(name, "jp-regulator"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.text);
        assert!(a.error().0.contains("is not a valid object name"), "{}", a.text);
    }
    let ok = call(&app, "POST", "/api/v1/approvals", Some(APPROVER), Some(&approval_json("a.b", "jp-regulator"))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let _ = control;
}

/// A plan with a relative check, us-east, eu-west and eu-central enabled, and jp judged
/// against them: unhealthy at 0.031 against a median of 0.009.
fn relative_fixture() -> std::sync::Arc<meridian_api::fake::FakeControl> {
    use meridian_core::HealthVerdict;
    use meridian_core::manifest::BaselineKind;
    use meridian_core::relative::Baseline;
    let control = meridian_api::fake::FakeControl::from_yaml(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: fleet}
spec:
  services: [{name: signin}]
  regions:
    - {name: us-east, noData: ignore}
    - {name: eu-west, noData: ignore}
    - {name: eu-central}
    - {name: jp}
  waves:
    - {name: first, regions: [us-east, eu-west, eu-central]}
    - {name: asia, regions: [jp]}
  health:
    checks:
      - name: error-rate
        prometheus: {query: 'ratio{service="{{service}}"}'}
        max: 0.1
        failureLimit: 3
        relative: {maxRatio: 2.0, baseline: median, minBaselineRegions: 2}
  actuator: {log: {}}
"#,
    );
    control.update("fleet", |s| {
        for u in &mut s.units {
            (u.phase, u.percent) =
                if u.region == "jp" { (UnitPhase::Progressing, 10) } else { (UnitPhase::Enabled, 100) };
        }
        let jp = s.units.iter_mut().find(|u| u.region == "jp").unwrap();
        jp.step = Some(0);
        jp.waiting = Some(meridian_core::WaitReason::Health { checks: vec!["error-rate".into()] });
        let check = &mut jp.checks[0];
        check.verdict = Some(HealthVerdict::Unhealthy);
        check.value = Some(0.031);
        check.consecutive_failures = 1;
        check.baseline = Some(Baseline {
            kind: BaselineKind::Median,
            regions: vec!["us-east".into(), "eu-west".into(), "eu-central".into()],
            value: Some(0.009),
            min_regions: 2,
            limit: Some(0.018),
        });
        s.waves[0].phase = WavePhase::Complete;
        s.waves[1].phase = WavePhase::Running;
    });
    control
}

#[tokio::test]
async fn plan_detail_shows_what_a_relative_check_compared_a_region_with() {
    let app = meridian_api::router(relative_fixture(), auth(), Limits::default());
    let d = call(&app, "GET", "/api/v1/plans/fleet", Some(VIEWER), None).await.json();
    let jp = d["state"]["units"].as_array().unwrap().iter().find(|u| u["region"] == "jp").unwrap().clone();
    assert_eq!(
        jp["checks"][0]["baseline"],
        serde_json::json!({
            "kind": "median",
            "regions": ["us-east", "eu-west", "eu-central"],
            "value": 0.009,
            "minRegions": 2,
            "limit": 0.018,
        })
    );
    assert_eq!(jp["checks"][0]["value"], 0.031);
    let waiting = d["waiting"].as_array().unwrap().iter().find(|w| w["region"] == "jp").unwrap().clone();
    assert_eq!(
        waiting["reason"],
        "waiting for fresh healthy data from error-rate (error-rate: 0.031 vs baseline 0.009 (median of us-east, \
         eu-west, eu-central), limit 0.018)"
    );
    let settings = &d["regions"][3]["settings"]["checks"][0];
    assert_eq!(
        settings["relative"],
        serde_json::json!({"maxRatio": 2.0, "baseline": "median", "minBaselineRegions": 2, "minDelta": 0.0})
    );
}
