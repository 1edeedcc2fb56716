//! The `http` actuator against real HTTP servers on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use std::time::{Duration, Instant};

use meridian_actuator::{
    ActuatorError, ActuatorOptions, Backoff, HttpActuator, HttpActuatorSettings, SetMethod, Target, TokenSource,
};
use meridian_core::Span;
use meridian_core::endpoint::UrlTemplate;
use serde_json::json;
use support::{Endpoint, Reply, closed_port, within};

/// Fast, reproducible retries.
fn fast() -> ActuatorOptions {
    ActuatorOptions {
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        jitter_seed: Some(7),
        instance: None,
    }
}

fn spec(url: String) -> HttpActuatorSettings {
    HttpActuatorSettings::new(UrlTemplate::parse(&url).expect("valid url"))
}

fn target(region: &str, service: &str) -> Target {
    Target { plan: "restore".into(), region: region.into(), service: service.into() }
}

fn actuator(spec: &HttpActuatorSettings) -> HttpActuator {
    HttpActuator::new(spec, &fast()).expect("client")
}

#[tokio::test]
async fn put_sends_the_body_and_the_idempotency_key() {
    let ep = Endpoint::start().await;
    let a = actuator(&spec(ep.url("/v1/{{plan}}/{{region}}/{{service}}/traffic")));
    let applied = within(a.set_traffic(&target("jp", "store"), 10, "intent-41")).await.unwrap();
    assert_eq!(applied.attempts, 1);
    assert!(!applied.dry_run);
    let seen = ep.seen();
    assert_eq!(seen.len(), 1);
    let put = &seen[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, "/v1/restore/jp/store/traffic");
    assert_eq!(put.body, Some(json!({"percent": 10, "plan": "restore", "region": "jp", "service": "store"})));
    assert_eq!(put.header("idempotency-key").as_deref(), Some("intent-41"));
    assert_eq!(put.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(put.header("authorization"), None);
    assert_eq!(ep.traffic("/v1/restore/jp/store/traffic"), Some(10));
}

#[tokio::test]
async fn post_when_the_plan_says_so() {
    let ep = Endpoint::start().await;
    let a = actuator(&HttpActuatorSettings { method: SetMethod::Post, ..spec(ep.url("/{{region}}/{{service}}")) });
    within(a.set_traffic(&target("kr", "music"), 100, "k-post")).await.unwrap();
    let seen = ep.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/kr/music");
    assert_eq!(seen[0].body, Some(json!({"percent": 100, "plan": "restore", "region": "kr", "service": "music"})));
    assert_eq!(seen[0].header("idempotency-key").as_deref(), Some("k-post"));
}

#[tokio::test]
async fn bearer_token_from_a_file_is_re_read_on_every_call() {
    let ep = Endpoint::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "first-token\n").unwrap();
    let a = actuator(&HttpActuatorSettings {
        token: TokenSource::File(token_path.clone()),
        ..spec(ep.url("/{{region}}/{{service}}"))
    });
    let t = target("jp", "signin");
    within(a.set_traffic(&t, 1, "k1")).await.unwrap();
    // Rotation: write the new token beside the file and rename it over, as secret mounts do.
    let next = dir.path().join("token.next");
    std::fs::write(&next, "second-token").unwrap();
    std::fs::rename(&next, &token_path).unwrap();
    within(a.set_traffic(&t, 10, "k2")).await.unwrap();
    assert_eq!(within(a.read_traffic(&t)).await.unwrap(), Some(10));

    let auth: Vec<Option<String>> = ep.seen().iter().map(|s| s.header("authorization")).collect();
    assert_eq!(
        auth,
        vec![
            Some("Bearer first-token".to_string()),
            Some("Bearer second-token".to_string()),
            Some("Bearer second-token".to_string())
        ]
    );
}

#[tokio::test]
async fn a_missing_or_empty_token_file_is_an_error_naming_the_file_and_nothing_is_sent() {
    let ep = Endpoint::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("absent-token");
    let a = actuator(&HttpActuatorSettings {
        token: TokenSource::File(token_path.clone()),
        ..spec(ep.url("/{{region}}/{{service}}"))
    });
    let err = within(a.set_traffic(&target("jp", "signin"), 1, "k")).await.unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with(&format!("failed to read bearer token file {}: ", token_path.display())), "{message}");
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "token");

    std::fs::write(&token_path, " \n").unwrap();
    let err = within(a.read_traffic(&target("jp", "signin"))).await.unwrap_err();
    assert_eq!(err.to_string(), format!("bearer token file {} is empty", token_path.display()));
    assert!(ep.seen().is_empty());
}

#[tokio::test]
async fn an_unset_token_variable_is_an_error_naming_it() {
    let ep = Endpoint::start().await;
    let var = "MERIDIAN_ACTUATOR_TEST_TOKEN_NEVER_SET";
    let a = actuator(&HttpActuatorSettings { token: TokenSource::Env(var.into()), ..spec(ep.url("/{{region}}")) });
    let err = within(a.set_traffic(&target("jp", "signin"), 1, "k")).await.unwrap_err();
    assert_eq!(err, ActuatorError::TokenEnv { var: var.into() });
    assert_eq!(err.to_string(), format!("environment variable {var} for the bearer token is not set or empty"));
    assert!(ep.seen().is_empty());
}

#[tokio::test]
async fn retries_on_503_then_succeeds_with_the_same_key_and_body() {
    let ep = Endpoint::start().await;
    ep.script([Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    let a = actuator(&spec(ep.url("/{{region}}/{{service}}")));
    assert_eq!(a.retries(), 3);
    let applied = within(a.set_traffic(&target("jp", "store"), 50, "intent-7")).await.unwrap();
    assert_eq!(applied.attempts, 4);
    let seen = ep.seen();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.method, "PUT");
        assert_eq!(s.header("idempotency-key").as_deref(), Some("intent-7"));
        assert_eq!(s.body, seen[0].body);
    }
    assert_eq!(ep.traffic("/jp/store"), Some(50));
}

#[tokio::test]
async fn gives_up_after_the_last_retry_with_a_retryable_error() {
    let ep = Endpoint::start().await;
    ep.script(std::iter::repeat_n(Reply::Status(503), 10));
    let a = actuator(&HttpActuatorSettings { retries: 2, ..spec(ep.url("/{{region}}/{{service}}")) });
    let err = within(a.set_traffic(&target("jp", "store"), 50, "k")).await.unwrap_err();
    assert!(matches!(err, ActuatorError::Status { status: 503, attempt: 3, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "http_5xx");
    assert_eq!(err.to_string(), format!("PUT {} answered 503 (attempt 3)", ep.url("/jp/store")));
    assert_eq!(ep.seen().len(), 3);
}

#[tokio::test]
async fn never_retries_a_400() {
    let ep = Endpoint::start().await;
    ep.script([Reply::Json(400, json!({"error": "percent must be one of 0, 50, 100"}))]);
    let a = actuator(&spec(ep.url("/{{region}}/{{service}}")));
    let err = within(a.set_traffic(&target("jp", "store"), 10, "k")).await.unwrap_err();
    assert!(matches!(err, ActuatorError::Status { status: 400, attempt: 1, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "http_4xx");
    // The endpoint's explanation is kept for the operator.
    assert!(err.to_string().ends_with(r#": {"error":"percent must be one of 0, 50, 100"}"#), "{err}");
    assert_eq!(ep.seen().len(), 1);
}

#[tokio::test]
async fn retries_a_429() {
    let ep = Endpoint::start().await;
    ep.script([Reply::Status(429)]);
    let a = actuator(&spec(ep.url("/{{region}}/{{service}}")));
    let applied = within(a.set_traffic(&target("jp", "store"), 10, "k")).await.unwrap();
    assert_eq!(applied.attempts, 2);
    assert_eq!(ep.seen().len(), 2);
}

#[tokio::test]
async fn times_out_against_a_server_that_never_answers() {
    let ep = Endpoint::start().await;
    ep.script(std::iter::repeat_n(Reply::Hang, 10));
    let a = actuator(&HttpActuatorSettings {
        timeout: Span::from_millis(200),
        retries: 1,
        ..spec(ep.url("/{{region}}/{{service}}"))
    });
    let started = Instant::now();
    let err = within(a.set_traffic(&target("jp", "store"), 10, "k-slow")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        ActuatorError::Timeout {
            method: "PUT",
            url: ep.url("/jp/store"),
            attempt: 2,
            timeout: Duration::from_millis(200)
        }
    );
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "timeout");
    assert_eq!(err.to_string(), format!("PUT {} timed out after 200ms (attempt 2)", ep.url("/jp/store")));
    // Both requests reached the server, with the same key, and each waited its full timeout.
    let seen = ep.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.header("idempotency-key").as_deref() == Some("k-slow")));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[tokio::test]
async fn waits_between_retries_as_the_seeded_backoff_says() {
    let ep = Endpoint::start().await;
    ep.script([Reply::Status(503), Reply::Status(502), Reply::Status(500)]);
    let options = ActuatorOptions {
        backoff_base: Duration::from_millis(60),
        backoff_cap: Duration::from_millis(400),
        jitter_seed: Some(42),
        instance: None,
    };
    let a = HttpActuator::new(&spec(ep.url("/{{region}}/{{service}}")), &options).unwrap();
    within(a.set_traffic(&target("jp", "store"), 10, "k")).await.unwrap();

    // The same seed replays the delays the actuator drew.
    let replay = Backoff::new(options.backoff_base, options.backoff_cap, 42);
    let expected: Vec<Duration> = (0..3).map(|n| replay.delay(n)).collect();
    for (n, d) in expected.iter().enumerate() {
        assert!(*d <= replay.ceiling(n as u32), "delay {n} {d:?} above its ceiling");
    }
    // Seed 42 draws delays far enough from zero for the gaps below to mean something.
    assert!(expected.iter().any(|d| *d >= Duration::from_millis(30)), "{expected:?}");

    let seen = ep.seen();
    assert_eq!(seen.len(), 4);
    for n in 0..3 {
        let gap = seen[n + 1].at.duration_since(seen[n].at);
        // A retry is sent no sooner than its drawn delay after the answer to the previous one.
        assert!(gap >= expected[n], "gap before retry {n}: {gap:?} < drawn delay {:?}", expected[n]);
    }
}

#[tokio::test]
async fn read_back_follows_the_wire_contract() {
    let ep = Endpoint::start().await;
    let a = actuator(&spec(ep.url("/{{region}}/{{service}}")));
    let t = target("jp", "store");
    // 404: never set.
    assert_eq!(within(a.read_traffic(&t)).await, Ok(None));
    within(a.set_traffic(&t, 37, "k")).await.unwrap();
    assert_eq!(within(a.read_traffic(&t)).await, Ok(Some(37)));

    ep.script([Reply::Json(200, json!({"percent": null}))]);
    assert_eq!(within(a.read_traffic(&t)).await, Ok(None));

    // Retried like a set.
    ep.script([Reply::Status(503), Reply::Status(504)]);
    assert_eq!(within(a.read_traffic(&t)).await, Ok(Some(37)));

    ep.script([Reply::Json(200, json!({"traffic": 37}))]);
    let err = within(a.read_traffic(&t)).await.unwrap_err();
    assert!(matches!(err, ActuatorError::InvalidResponse { attempt: 1, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("no percent field"), "{err}");

    ep.script([Reply::Status(401)]);
    let err = within(a.read_traffic(&t)).await.unwrap_err();
    assert!(matches!(err, ActuatorError::Status { method: "GET", status: 401, attempt: 1, .. }), "{err:?}");

    let gets = ep.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 8);
    assert!(ep.seen().iter().filter(|s| s.method == "GET").all(|s| s.header("idempotency-key").is_none()));
}

#[tokio::test]
async fn connection_refused_is_retryable_after_every_attempt() {
    let port = closed_port().await;
    let a = actuator(&HttpActuatorSettings {
        retries: 2,
        ..spec(format!("http://127.0.0.1:{port}/{{{{region}}}}/{{{{service}}}}"))
    });
    let err = within(a.set_traffic(&target("jp", "store"), 10, "k")).await.unwrap_err();
    match &err {
        ActuatorError::Connect { method: "PUT", url, attempt: 3, reason } => {
            assert_eq!(url, &format!("http://127.0.0.1:{port}/jp/store"));
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected a connect error on attempt 3, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "connect");
    let err = within(a.read_traffic(&target("jp", "store"))).await.unwrap_err();
    assert!(matches!(err, ActuatorError::Connect { method: "GET", attempt: 3, .. }), "{err:?}");
}

#[tokio::test]
async fn percent_above_100_is_refused_before_sending() {
    let ep = Endpoint::start().await;
    let a = actuator(&spec(ep.url("/{{region}}")));
    let err = within(a.set_traffic(&target("jp", "store"), 101, "k")).await.unwrap_err();
    assert_eq!(err, ActuatorError::InvalidPercent { percent: 101 });
    assert!(ep.seen().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let ep = Endpoint::start().await;
    ep.script([Reply::Status(307)]);
    let a = actuator(&spec(ep.url("/{{region}}")));
    let err = within(a.set_traffic(&target("jp", "store"), 10, "k")).await.unwrap_err();
    assert!(matches!(err, ActuatorError::Status { status: 307, attempt: 1, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(ep.seen().len(), 1);
}

#[tokio::test]
async fn an_unsendable_idempotency_key_is_refused_before_sending() {
    let ep = Endpoint::start().await;
    let a = actuator(&spec(ep.url("/{{region}}")));
    let err = within(a.set_traffic(&target("jp", "store"), 10, "bad\nkey")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"PUT {} could not be built: idempotency key "bad\nkey" is not a valid http header value"#,
            ep.url("/jp")
        )
    );
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "invalid_request");
    assert!(ep.seen().is_empty());
}
