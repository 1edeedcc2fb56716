//! The Prometheus provider against scripted answers of the query API on 127.0.0.1: the
//! shapes a real server produces rarely (warnings, 5xx, huge or non-JSON bodies) or never
//! (a server that accepts and never answers). Every one must fail closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use meridian_core::health::HealthVerdict::{self, *};
use meridian_core::plan::Plan;
use meridian_health::{EvalRequest, HealthSource, PrometheusConfig, PrometheusSource};
use support::{ScriptedApi, SilentServer, plan, sample_of, verdicts};

fn test_plan() -> Plan {
    plan(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: { name: proto }
spec:
  services: [{ name: signin }, { name: store }]
  regions:
    - { name: us-east, timezone: UTC }
    - { name: jp, timezone: UTC }
  waves:
    - { name: all, regions: [us-east, jp] }
  health:
    checks:
      - name: error-rate
        prometheus: { query: 'max by (region) (errors{service="{{service}}",plan="{{plan}}",wave="{{wave}}"})' }
        max: 0.01
        minSamples: { query: 'sum by (region) (requests{service="{{service}}"})', min: 50 }
"#,
    )
}

fn request(regions: &[&str]) -> EvalRequest {
    EvalRequest {
        service: "signin".into(),
        wave: "all".into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        baseline: Vec::new(),
        now: Utc::now(),
    }
}

fn source(url: reqwest::Url) -> PrometheusSource {
    PrometheusSource::new(PrometheusConfig::with_url(url)).expect("source")
}

fn vector(samples: &[(&str, &str)]) -> String {
    let ts = Utc::now().timestamp_millis() as f64 / 1000.0;
    let result: Vec<String> = samples
        .iter()
        .map(|(region, value)| format!(r#"{{"metric":{{"region":"{region}"}},"value":[{ts},"{value}"]}}"#))
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","))
}

/// Evaluate both regions and check that every sample is `want` with a detail containing `says`.
async fn expect_all(source: &PrometheusSource, want: HealthVerdict, says: &str) -> Vec<&'static str> {
    let eval = source.evaluate(&test_plan(), &request(&["us-east", "jp"])).await;
    assert_eq!(eval.samples.len(), 2, "{:?}", eval.samples);
    for s in &eval.samples {
        assert_eq!(s.verdict, want, "{s:?}");
        assert!(s.detail.as_deref().is_some_and(|d| d.contains(says)), "expected {says:?} in {s:?}");
    }
    eval.errors.iter().map(|e| e.metric_label()).collect()
}

#[tokio::test]
async fn one_query_per_check_and_one_for_its_guard_serve_every_region() {
    let api = ScriptedApi::start(200, vector(&[("us-east", "500"), ("jp", "500"), ("eu-west", "0")])).await;
    let eval = source(api.url()).evaluate(&test_plan(), &request(&["us-east", "jp"])).await;
    let mut queries = api.queries();
    queries.sort();
    assert_eq!(
        queries,
        [
            r#"max by (region) (errors{service="signin",plan="proto",wave="all"})"#,
            r#"sum by (region) (requests{service="signin"})"#,
        ]
    );
    // The same scripted vector answers both: 500 requests, and an error rate of 500.
    assert_eq!(verdicts(&eval.samples).values().copied().collect::<Vec<_>>(), [Unhealthy, Unhealthy]);
    assert_eq!(sample_of(&eval.samples, "error-rate", "jp").value, Some(500.0));
    assert!(eval.errors.is_empty());
}

#[tokio::test]
async fn nothing_to_watch_sends_no_query() {
    let api = ScriptedApi::start(200, vector(&[])).await;
    let eval = source(api.url()).evaluate(&test_plan(), &request(&[])).await;
    assert!(eval.samples.is_empty());
    assert!(api.queries().is_empty());
}

#[tokio::test]
async fn unknown_regions_and_services_get_error_samples_and_duplicates_one_sample() {
    let api = ScriptedApi::start(200, vector(&[("us-east", "0"), ("jp", "0")])).await;
    let source = source(api.url());
    let eval = source.evaluate(&test_plan(), &request(&["jp", "atlantis", "jp"])).await;
    let got: Vec<(&str, HealthVerdict)> = eval.samples.iter().map(|s| (s.region.as_str(), s.verdict)).collect();
    assert_eq!(got, [("jp", NoData), ("atlantis", Error)], "jp: 0 requests is below the guard");
    assert_eq!(eval.errors.iter().map(|e| e.metric_label()).collect::<Vec<_>>(), ["unknown_region"]);

    let mut req = request(&["jp"]);
    req.service = "music".into();
    let eval = source.evaluate(&test_plan(), &req).await;
    assert_eq!(eval.samples.len(), 1);
    assert_eq!(eval.samples[0].verdict, Error);
    assert!(eval.samples[0].detail.as_deref().is_some_and(|d| d.contains("service \"music\" is not in plan")));
}

#[tokio::test]
async fn an_empty_vector_is_no_data() {
    let api = ScriptedApi::start(200, vector(&[])).await;
    let labels = expect_all(&source(api.url()), NoData, "empty vector").await;
    assert!(labels.is_empty());
}

#[tokio::test]
async fn warnings_mean_partial_data_and_fail_closed() {
    let body = r#"{"status":"success","warnings":["store eu-2 unreachable, partial response"],
        "data":{"resultType":"vector","result":[{"metric":{"region":"us-east"},"value":[1,"0"]}]}}"#;
    let api = ScriptedApi::start(200, body).await;
    let labels = expect_all(&source(api.url()), Error, "warnings, so the result may be partial").await;
    assert_eq!(labels, ["warnings", "warnings"]);
}

#[tokio::test]
async fn server_errors_and_foreign_bodies_fail_closed() {
    let api = ScriptedApi::start(503, r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#).await;
    let labels =
        expect_all(&source(api.url()), Error, "rejected the query with 503 Service Unavailable: timeout").await;
    assert_eq!(labels, ["api_error", "api_error"]);

    let api = ScriptedApi::start(502, "<html>bad gateway</html>").await;
    let labels = expect_all(&source(api.url()), Error, "answered 502 Bad Gateway: <html>bad gateway</html>").await;
    // One per query that failed: the check's and its minSamples guard's, as for the 503.
    assert_eq!(labels, ["http_5xx", "http_5xx"]);

    let api = ScriptedApi::start(200, "<html>sign in</html>").await;
    expect_all(&source(api.url()), Error, "not its json api").await;

    let api = ScriptedApi::start(200, r#"{"status":"error","errorType":"bad_data","error":"nope"}"#).await;
    expect_all(&source(api.url()), Error, "bad_data: nope").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_error() {
    let api = ScriptedApi::start(200, vector(&[("us-east", "0"); 200])).await;
    let config = PrometheusConfig { max_body_bytes: 1024, ..PrometheusConfig::with_url(api.url()) };
    let labels = expect_all(&PrometheusSource::new(config).unwrap(), Error, "exceeds 1024 bytes").await;
    assert_eq!(labels, ["body_too_large", "body_too_large"]);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_into_errors() {
    let silent = SilentServer::start().await;
    let config = PrometheusConfig { timeout: Duration::from_millis(300), ..PrometheusConfig::with_url(silent.url()) };
    let started = Instant::now();
    let labels = expect_all(&PrometheusSource::new(config).unwrap(), Error, "timed out after 300ms").await;
    assert_eq!(labels, ["timeout", "timeout"]);
    // Check and guard run concurrently: one timeout, not two in a row.
    assert!(started.elapsed() < Duration::from_millis(550), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_check_without_a_server_is_an_error() {
    let source = PrometheusSource::new(PrometheusConfig::default()).unwrap();
    let labels = expect_all(&source, Error, "names no prometheus url and no default server is configured").await;
    assert_eq!(labels, ["no_url", "no_url"]);
}

#[test]
fn the_default_timeout_is_ten_seconds() {
    assert_eq!(PrometheusConfig::default().timeout, Duration::from_secs(10));
    assert_eq!(meridian_health::HttpSourceConfig::default().timeout, Duration::from_secs(10));
}

/// A plan named `name` whose error-rate query does not mention the plan (so many plans render
/// it alike), evaluated every `interval`.
fn shared_query_plan(name: &str, interval: &str, query: &str) -> Plan {
    plan(&format!(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{ name: {name} }}
spec:
  services: [{{ name: signin }}]
  regions: [{{ name: us-east, timezone: UTC }}, {{ name: jp, timezone: UTC }}]
  waves: [{{ name: all, regions: [us-east, jp] }}]
  health:
    interval: {interval}
    checks:
      - name: error-rate
        prometheus: {{ query: '{query}' }}
        max: 0.01
"#
    ))
}

#[tokio::test]
async fn identical_queries_of_one_tick_are_sent_once_and_each_plan_gets_the_answer() {
    let api = ScriptedApi::start(200, vector(&[("us-east", "0.001"), ("jp", "0.5")])).await;
    let source = source(api.url());
    let shared = r#"max by (region) (errors{service="{{service}}"})"#;
    let plans: Vec<Plan> = (0..5).map(|i| shared_query_plan(&format!("p{i}"), "30s", shared)).collect();
    let tick = request(&["us-east", "jp"]);
    // Five plans at one tick, all at once: one request, every plan judged from its answer.
    let evals = futures_util::future::join_all(plans.iter().map(|p| source.evaluate(p, &tick))).await;
    assert_eq!(api.queries(), [r#"max by (region) (errors{service="signin"})"#]);
    for eval in &evals {
        assert_eq!(verdicts(&eval.samples).values().copied().collect::<Vec<_>>(), [Unhealthy, Healthy]);
    }
    // Another plan of the same tick, after the answer came: still the one request.
    source.evaluate(&shared_query_plan("late", "30s", shared), &tick).await;
    assert_eq!(api.queries().len(), 1);

    // A different question each: the next tick, another interval, another rendered query.
    let mut next = tick.clone();
    next.now += chrono::TimeDelta::seconds(30);
    source.evaluate(&plans[0], &next).await;
    source.evaluate(&shared_query_plan("fast", "10s", shared), &tick).await;
    let own = r#"max by (region) (errors{service="{{service}}",plan="{{plan}}"})"#;
    source.evaluate(&shared_query_plan("own", "30s", own), &tick).await;
    assert_eq!(api.queries().len(), 4, "{:?}", api.queries());
}

#[tokio::test]
async fn a_failed_shared_query_fails_every_plan_that_asked_it() {
    let api = ScriptedApi::start(503, "overloaded").await;
    let source = source(api.url());
    let shared = r#"max by (region) (errors{service="{{service}}"})"#;
    let tick = request(&["us-east", "jp"]);
    let (a, b) = futures_util::future::join(
        source.evaluate(&shared_query_plan("a", "30s", shared), &tick),
        source.evaluate(&shared_query_plan("b", "30s", shared), &tick),
    )
    .await;
    assert_eq!(api.queries().len(), 1);
    for eval in [a, b] {
        assert!(eval.samples.iter().all(|s| s.verdict == Error), "{:?}", eval.samples);
        assert_eq!(eval.errors.iter().map(|e| e.metric_label()).collect::<Vec<_>>(), ["http_5xx"]);
    }
}
