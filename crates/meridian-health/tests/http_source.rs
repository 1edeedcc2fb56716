//! The http provider against per-region endpoints served on 127.0.0.1.

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
use meridian_health::{EvalRequest, HealthSource, HttpSource, HttpSourceConfig};
use serde_json::json;
use support::{Fleet, SilentServer, plan, sample_of};

const REGIONS: [&str; 4] = ["us-east", "eu-west", "jp", "kr"];

fn plan_with(checks: &str) -> Plan {
    plan(&format!(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{ name: http-test }}
spec:
  services: [{{ name: signin }}]
  regions:
    - {{ name: us-east, timezone: UTC }}
    - {{ name: eu-west, timezone: UTC }}
    - {{ name: jp, timezone: UTC }}
    - {{ name: kr, timezone: UTC }}
  waves:
    - {{ name: all, regions: [us-east, eu-west, jp, kr] }}
  health:
    checks:
{checks}
"#
    ))
}

fn request() -> EvalRequest {
    EvalRequest {
        service: "signin".into(),
        wave: "all".into(),
        regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        baseline: Vec::new(),
        now: Utc::now(),
    }
}

fn source() -> HttpSource {
    HttpSource::new(HttpSourceConfig::default()).expect("source")
}

fn verdict_and_detail(samples: &[meridian_core::HealthSample], region: &str) -> (HealthVerdict, String) {
    let s = sample_of(samples, "errors", region);
    (s.verdict, s.detail.clone().unwrap_or_default())
}

#[tokio::test]
async fn reads_a_number_by_json_pointer_per_region() {
    let fleet = Fleet::start().await;
    fleet.set_json("us-east", json!({ "signin": { "errorRate": 0.001 } }));
    fleet.set_json("eu-west", json!({ "signin": { "errorRate": 0.2 } }));
    fleet.set_json("jp", json!({ "signin": { "errorRate": null } }));
    fleet.set_status("kr", 500);
    let plan = plan_with(&format!(
        "      - name: errors\n        http: {{ url: '{}/json/{{{{region}}}}', pointer: /signin/errorRate }}\n        max: 0.01\n",
        fleet.base()
    ));
    let eval = source().evaluate(&plan, &request()).await;
    assert_eq!(eval.samples.len(), 4);
    assert_eq!(verdict_and_detail(&eval.samples, "us-east"), (Healthy, String::new()));
    assert_eq!(sample_of(&eval.samples, "errors", "us-east").value, Some(0.001));
    assert_eq!(verdict_and_detail(&eval.samples, "eu-west"), (Unhealthy, "0.2 is above max 0.01".into()));
    assert_eq!(verdict_and_detail(&eval.samples, "jp"), (NoData, "value at /signin/errorRate is null".into()));
    let (verdict, detail) = verdict_and_detail(&eval.samples, "kr");
    assert_eq!(verdict, Error);
    assert!(detail.contains("/json/kr answered 500 Internal Server Error"), "{detail}");
    assert_eq!(eval.errors.iter().map(|e| e.metric_label()).collect::<Vec<_>>(), ["http_5xx"]);
}

#[tokio::test]
async fn reads_one_sample_of_a_text_format_body() {
    let fleet = Fleet::start().await;
    fleet.set_gauge("us-east", r#"meridian_test_error_ratio{service="signin"}"#, 0.001);
    fleet.set_gauge("us-east", r#"meridian_test_error_ratio{service="store"}"#, 0.9);
    fleet.set_gauge("eu-west", r#"meridian_test_error_ratio{service="signin",pod="a"}"#, 0.001);
    fleet.set_gauge("eu-west", r#"meridian_test_error_ratio{service="signin",pod="b"}"#, 0.001);
    fleet.set_gauge("jp", r#"meridian_test_error_ratio{service="store"}"#, 0.0);
    fleet.set_gauge("kr", r#"meridian_test_error_ratio{service="signin"}"#, f64::NAN);
    let plan = plan_with(&format!(
        r#"      - name: errors
        http:
          url: '{}/metrics/{{{{region}}}}'
          metric: 'meridian_test_error_ratio{{service="{{{{service}}}}"}}'
        max: 0.01
"#,
        fleet.base()
    ));
    let eval = source().evaluate(&plan, &request()).await;
    assert_eq!(verdict_and_detail(&eval.samples, "us-east").0, Healthy, "{:#?}", eval.samples);
    let (verdict, detail) = verdict_and_detail(&eval.samples, "eu-west");
    assert_eq!(verdict, Error);
    assert!(detail.contains("2 samples match meridian_test_error_ratio{service=\"signin\"}"), "{detail}");
    let (verdict, detail) = verdict_and_detail(&eval.samples, "jp");
    assert_eq!(verdict, NoData);
    assert!(detail.contains("no sample of"), "{detail}");
    assert_eq!(verdict_and_detail(&eval.samples, "kr").0, NoData, "NaN");
}

#[tokio::test]
async fn timeouts_and_missing_endpoints_are_errors() {
    let silent = SilentServer::start().await;
    let plan = plan_with(&format!(
        "      - name: errors\n        http: {{ url: 'http://{}/h/{{{{region}}}}', pointer: /e }}\n        max: 0.01\n",
        silent.addr
    ));
    let source = HttpSource::new(HttpSourceConfig { timeout: Duration::from_millis(300), ..Default::default() })
        .expect("source");
    let started = Instant::now();
    let eval = source.evaluate(&plan, &request()).await;
    assert!(started.elapsed() < Duration::from_millis(600), "regions are read concurrently: {:?}", started.elapsed());
    for s in &eval.samples {
        assert_eq!(s.verdict, Error, "{s:?}");
        assert!(s.detail.as_deref().is_some_and(|d| d.contains("timed out after 300ms")), "{s:?}");
    }

    let fleet = Fleet::start().await;
    let plan = plan_with(&format!(
        "      - name: errors\n        http: {{ url: '{}/json/{{{{region}}}}', pointer: /e }}\n        max: 0.01\n",
        fleet.base()
    ));
    let eval = self::source().evaluate(&plan, &request()).await;
    assert!(eval.samples.iter().all(|s| s.verdict == Error), "404 everywhere: {:#?}", eval.samples);
    assert!(eval.errors.iter().all(|e| e.metric_label() == "http_4xx"));
}

#[tokio::test]
async fn a_guarded_check_without_prometheus_is_an_error_and_prometheus_checks_are_not_read() {
    let fleet = Fleet::start().await;
    for region in REGIONS {
        fleet.set_json(region, json!({ "e": 0.0 }));
    }
    let plan = plan_with(&format!(
        r#"      - name: errors
        http: {{ url: '{}/json/{{{{region}}}}', pointer: /e }}
        max: 0.01
        minSamples: {{ query: 'sum by (region) (requests)', min: 10 }}
      - name: promql
        prometheus: {{ query: 'up' }}
        max: 1
"#,
        fleet.base()
    ));
    let eval = source().evaluate(&plan, &request()).await;
    assert_eq!(eval.samples.len(), 8);
    for s in &eval.samples {
        assert_eq!(s.verdict, Error, "{s:?}");
    }
    let (_, detail) = verdict_and_detail(&eval.samples, "jp");
    assert!(detail.starts_with("traffic guard: the traffic guard (minSamples) is a PromQL query"), "{detail}");
    let promql = sample_of(&eval.samples, "promql", "jp");
    assert_eq!(promql.detail.as_deref(), Some("check \"promql\" reads prometheus, which this source does not read"));
}
