//! The Prometheus provider against a real Prometheus (Debian's `prometheus`), started per
//! test on 127.0.0.1 by the shared harness (meridian-fleet's `testkit`) and scraping a
//! simulated fleet every second.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use meridian_core::health::HealthVerdict::{self, *};
use meridian_core::plan::Plan;
use meridian_health::{CheckRouter, EvalRequest, HealthSource, HttpSourceConfig, PrometheusConfig, PrometheusSource};
use support::{Fleet, Prometheus, eventually, plan, sample_of, scraping, url_of, verdict_of, verdicts};

const SCRAPED: [&str; 3] = ["us-east", "eu-west", "jp"];
const WAIT: Duration = Duration::from_secs(30);

/// A plan over the scraped regions plus `kr`, which nothing scrapes.
fn plan_with(region_label: &str, wave: &str, checks: &str) -> Plan {
    plan(&format!(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{ name: health-test }}
spec:
  services: [{{ name: signin }}]
  regions:
    - {{ name: us-east, timezone: UTC }}
    - {{ name: eu-west, timezone: UTC }}
    - {{ name: jp, timezone: UTC }}
    - {{ name: kr, timezone: UTC }}
  waves:
    - {{ name: {wave}, regions: [us-east, eu-west, jp, kr] }}
  health:
    interval: 30s
    regionLabel: {region_label}
    checks:
{checks}
"#
    ))
}

/// Error ratio from request counters, guarded by the request count: the shape of a real check.
const ERROR_RATE: &str = r#"
      - name: error-rate
        prometheus:
          query: |
            sum by (region) (rate(meridian_test_requests_total{service="{{service}}",code=~"5.."}[5s]))
              / sum by (region) (rate(meridian_test_requests_total{service="{{service}}"}[5s]))
        max: 0.01
        minSamples:
          query: 'sum by (region) (increase(meridian_test_requests_total{service="{{service}}"}[5s]))'
          min: 50
"#;

fn request(regions: &[&str]) -> EvalRequest {
    EvalRequest {
        service: "signin".into(),
        wave: "all".into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        baseline: Vec::new(),
        now: Utc::now(),
    }
}

fn source(prometheus: &Prometheus) -> PrometheusSource {
    PrometheusSource::new(PrometheusConfig::with_url(url_of(prometheus))).expect("source")
}

async fn healthy_fleet() -> (Fleet, Prometheus) {
    let fleet = Fleet::start().await;
    for region in SCRAPED {
        fleet.set_traffic(region, "signin", 100.0, 0.001);
    }
    let prometheus = scraping(&fleet, &SCRAPED, "region").await;
    (fleet, prometheus)
}

fn all(samples: &[meridian_core::HealthSample], verdict: HealthVerdict) -> Result<(), String> {
    if samples.iter().all(|s| s.verdict == verdict) { Ok(()) } else { Err(format!("{:?}", verdicts(samples))) }
}

/// Every region has been scraped once: no sample is still `NoData`.
fn all_scraped(samples: &[meridian_core::HealthSample]) -> Result<(), String> {
    if samples.iter().any(|s| s.verdict == NoData) { Err(format!("{:?}", verdicts(samples))) } else { Ok(()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_regions_are_healthy_and_a_raised_error_rate_fails_only_its_region() {
    let (fleet, prometheus) = healthy_fleet().await;
    let plan = plan_with("region", "all", ERROR_RATE);
    let source = source(&prometheus);

    let eval = eventually("every region healthy", WAIT, || async {
        let eval = source.evaluate(&plan, &request(&SCRAPED)).await;
        all(&eval.samples, Healthy).map(|_| eval)
    })
    .await;
    assert_eq!(eval.samples.len(), 3);
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    let now = Utc::now();
    for (sample, region) in eval.samples.iter().zip(SCRAPED) {
        assert_eq!((sample.region.as_str(), sample.service.as_str()), (region, "signin"));
        let value = sample.value.expect("a healthy sample carries its value");
        assert!((0.0..=0.01).contains(&value), "{sample:?}");
        assert!((now - sample.at).abs() < TimeDelta::seconds(10), "at is the query's evaluation time: {sample:?}");
    }

    fleet.set_traffic("jp", "signin", 100.0, 0.2);
    let samples = eventually("jp unhealthy", WAIT, || async {
        let samples = source.evaluate(&plan, &request(&SCRAPED)).await.into_samples();
        match verdict_of(&samples, "error-rate", "jp") {
            Unhealthy => Ok(samples),
            other => Err(format!("jp is {other:?}: {samples:?}")),
        }
    })
    .await;
    assert_eq!(verdict_of(&samples, "error-rate", "us-east"), Healthy, "{samples:#?}");
    assert_eq!(verdict_of(&samples, "error-rate", "eu-west"), Healthy, "{samples:#?}");
    let jp = sample_of(&samples, "error-rate", "jp");
    assert!(jp.value.is_some_and(|v| v > 0.01), "{jp:?}");
    assert!(jp.detail.as_deref().is_some_and(|d| d.contains("above max 0.01")), "{jp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_without_traffic_or_series_are_no_data() {
    let fleet = Fleet::start().await;
    fleet.set_traffic("us-east", "signin", 100.0, 0.0);
    fleet.set_traffic("eu-west", "signin", 1.0, 0.0); // below minSamples
    fleet.set_traffic("jp", "signin", 0.0, 0.0); // 0 / 0
    let prometheus = scraping(&fleet, &SCRAPED, "region").await;
    let plan = plan_with("region", "all", ERROR_RATE);
    let source = source(&prometheus);
    let regions = ["us-east", "eu-west", "jp", "kr"];

    // Scrapes of the regions land at different moments: wait for each one's final reason.
    let samples = eventually("every region judged", WAIT, || async {
        let samples = source.evaluate(&plan, &request(&regions)).await.into_samples();
        let says = |region: &str, verdict: HealthVerdict, text: &str| {
            let s = sample_of(&samples, "error-rate", region);
            s.verdict == verdict && s.detail.as_deref().unwrap_or_default().contains(text)
        };
        let judged = says("us-east", Healthy, "")
            && says("eu-west", NoData, "fewer than minSamples 50")
            && says("jp", NoData, "NaN")
            && says("kr", NoData, "no series with region=\"kr\"");
        if judged { Ok(samples) } else { Err(format!("{samples:#?}")) }
    })
    .await;
    assert_eq!(samples.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prometheus_gives_errors_and_nothing_healthy() {
    let (_fleet, mut prometheus) = healthy_fleet().await;
    let plan = plan_with("region", "all", ERROR_RATE);
    let source = source(&prometheus);
    eventually("every region healthy", WAIT, || async {
        all(&source.evaluate(&plan, &request(&SCRAPED)).await.samples, Healthy)
    })
    .await;

    prometheus.stop().await;
    let eval = source.evaluate(&plan, &request(&SCRAPED)).await;
    assert_eq!(eval.samples.len(), 3);
    for s in &eval.samples {
        assert_eq!(s.verdict, Error, "{s:?}");
        assert!(s.value.is_none());
        assert!(s.detail.as_deref().is_some_and(|d| d.contains("failed to connect")), "{s:?}");
    }
    let labels: Vec<&str> = eval.errors.iter().map(|e| e.metric_label()).collect();
    assert_eq!(labels, ["connect", "connect"], "one error per query (check and guard)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_series_for_one_region_is_an_error_for_that_region() {
    let fleet = Fleet::start().await;
    fleet.set_gauge("us-east", r#"meridian_test_error_ratio{service="signin"}"#, 0.001);
    fleet.set_gauge("eu-west", r#"meridian_test_error_ratio{service="signin",pod="a"}"#, 0.001);
    fleet.set_gauge("eu-west", r#"meridian_test_error_ratio{service="signin",pod="b"}"#, 0.5);
    fleet.set_gauge("jp", r#"meridian_test_error_ratio{service="signin"}"#, 0.001);
    let prometheus = scraping(&fleet, &SCRAPED, "region").await;
    // Not aggregated by region: eu-west has a series per pod.
    let plan = plan_with(
        "region",
        "all",
        r#"
      - name: error-rate
        prometheus: { query: 'meridian_test_error_ratio{service="{{service}}"}' }
        max: 0.01
"#,
    );
    let source = source(&prometheus);
    let eval = eventually("every region scraped", WAIT, || async {
        let eval = source.evaluate(&plan, &request(&SCRAPED)).await;
        all_scraped(&eval.samples).map(|_| eval)
    })
    .await;
    let eu = sample_of(&eval.samples, "error-rate", "eu-west");
    assert!(eu.detail.as_deref().is_some_and(|d| d.starts_with("2 series for region \"eu-west\"")), "{eu:?}");
    assert_eq!(verdict_of(&eval.samples, "error-rate", "us-east"), Healthy);
    assert_eq!(verdict_of(&eval.samples, "error-rate", "jp"), Healthy);
    assert_eq!(eval.errors.iter().map(|e| e.metric_label()).collect::<Vec<_>>(), ["ambiguous"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_promql_non_vectors_and_unsplit_vectors_are_errors() {
    let (_fleet, prometheus) = healthy_fleet().await;
    let plan = plan_with(
        "region",
        "all",
        r#"
      - name: bad-promql
        prometheus: { query: 'sum by (region) (' }
        max: 1
      - name: scalar
        prometheus: { query: 'scalar(sum(meridian_test_requests_total))' }
        max: 1
      - name: unsplit
        prometheus: { query: 'sum(meridian_test_requests_total{service="{{service}}"})' }
        max: 1
"#,
    );
    let source = source(&prometheus);
    // `unsplit` is an empty vector (no data) until the first scrape, an error after it.
    let eval = eventually("all three checks failing", WAIT, || async {
        let eval = source.evaluate(&plan, &request(&SCRAPED)).await;
        all(&eval.samples, Error).map(|_| eval)
    })
    .await;
    assert_eq!(eval.samples.len(), 9);
    let detail = |check: &str| sample_of(&eval.samples, check, "jp").detail.clone().unwrap_or_default();
    assert!(
        detail("bad-promql").contains("rejected the query with 400 Bad Request: bad_data"),
        "{}",
        detail("bad-promql")
    );
    assert!(detail("scalar").contains("returned a scalar, not an instant vector"), "{}", detail("scalar"));
    assert!(detail("unsplit").contains("has no \"region\" label"), "{}", detail("unsplit"));
    let mut labels: Vec<&str> = eval.errors.iter().map(|e| e.metric_label()).collect();
    labels.sort();
    assert_eq!(labels, ["api_error", "missing_region_label", "not_vector"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_older_than_the_staleness_bound_are_no_data() {
    let (_fleet, prometheus) = healthy_fleet().await;
    let plan = plan_with("region", "all", ERROR_RATE);
    let config =
        PrometheusConfig { max_age: Some(Duration::from_secs(10)), ..PrometheusConfig::with_url(url_of(&prometheus)) };
    let source = PrometheusSource::new(config).expect("source");
    eventually("every region healthy", WAIT, || async {
        all(&source.evaluate(&plan, &request(&SCRAPED)).await.samples, Healthy)
    })
    .await;

    // Judged a minute later than Prometheus evaluated: stale.
    let mut late = request(&SCRAPED);
    late.now += TimeDelta::seconds(60);
    let samples = source.evaluate(&plan, &late).await.into_samples();
    for s in &samples {
        assert_eq!(s.verdict, NoData, "{s:?}");
        assert!(s.detail.as_deref().is_some_and(|d| d.contains("older than the 10s staleness bound")), "{s:?}");
        assert_eq!(s.at, late.now, "a no-data sample is stamped with the request's now");
    }
    // Judged a minute before: Prometheus' clock is ahead; not trusted either.
    let mut early = request(&SCRAPED);
    early.now -= TimeDelta::seconds(60);
    let samples = source.evaluate(&plan, &early).await.into_samples();
    assert!(samples.iter().all(|s| s.verdict == Error), "{samples:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_label_is_configurable_and_plan_and_wave_are_templated() {
    let fleet = Fleet::start().await;
    for (region, value) in [("us-east", 0.001), ("eu-west", 0.001), ("jp", 0.3)] {
        fleet.set_gauge(
            region,
            r#"meridian_test_error_ratio{service="signin",plan="health-test",wave="canary"}"#,
            value,
        );
        // Another wave's series: excluded by the {{wave}} matcher, or jp would be ambiguous.
        fleet.set_gauge(region, r#"meridian_test_error_ratio{service="signin",plan="health-test",wave="other"}"#, 0.9);
    }
    let prometheus = scraping(&fleet, &SCRAPED, "zone").await;
    let plan = plan_with(
        "zone",
        "canary",
        r#"
      - name: error-rate
        prometheus:
          query: 'max by (zone) (meridian_test_error_ratio{service="{{service}}",plan="{{plan}}",wave="{{wave}}"})'
        max: 0.01
"#,
    );
    let source = source(&prometheus);
    let samples = eventually("every region scraped", WAIT, || async {
        let req = EvalRequest { wave: "canary".into(), ..request(&SCRAPED) };
        let samples = source.evaluate(&plan, &req).await.into_samples();
        all_scraped(&samples).map(|_| samples)
    })
    .await;
    assert_eq!(verdict_of(&samples, "error-rate", "us-east"), Healthy, "{samples:#?}");
    assert_eq!(verdict_of(&samples, "error-rate", "eu-west"), Healthy, "{samples:#?}");
    assert_eq!(verdict_of(&samples, "error-rate", "jp"), Unhealthy, "{samples:#?}");
    assert_eq!(sample_of(&samples, "error-rate", "jp").value, Some(0.3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_runs_an_http_checks_traffic_guard_on_prometheus() {
    let (fleet, prometheus) = healthy_fleet().await;
    fleet.set_traffic("eu-west", "signin", 1.0, 0.0);
    for region in SCRAPED {
        fleet.set_json(region, serde_json::json!({ "errorRate": 0.001 }));
    }
    let plan = plan_with(
        "region",
        "all",
        &format!(
            r#"
      - name: http-errors
        http:
          url: '{}/json/{{{{region}}}}'
          pointer: /errorRate
        max: 0.01
        minSamples:
          query: 'sum by (region) (increase(meridian_test_requests_total{{service="{{{{service}}}}"}}[5s]))'
          min: 50
{ERROR_RATE}"#,
            fleet.base()
        ),
    );
    let router =
        CheckRouter::new(PrometheusConfig::with_url(url_of(&prometheus)), HttpSourceConfig::default()).expect("router");
    let samples = eventually("us-east and jp healthy on both checks", WAIT, || async {
        let samples = router.evaluate(&plan, &request(&SCRAPED)).await.into_samples();
        let ok = ["us-east", "jp"].iter().all(|r| {
            verdict_of(&samples, "http-errors", r) == Healthy && verdict_of(&samples, "error-rate", r) == Healthy
        });
        if ok { Ok(samples) } else { Err(format!("{:?}", verdicts(&samples))) }
    })
    .await;
    // Checks in plan order, regions in request order.
    let order: Vec<(&str, &str)> = samples.iter().map(|s| (s.check.as_str(), s.region.as_str())).collect();
    assert_eq!(
        order,
        [
            ("http-errors", "us-east"),
            ("http-errors", "eu-west"),
            ("http-errors", "jp"),
            ("error-rate", "us-east"),
            ("error-rate", "eu-west"),
            ("error-rate", "jp")
        ]
    );
    let eu = sample_of(&samples, "http-errors", "eu-west");
    assert_eq!(eu.verdict, NoData, "{eu:?}");
    assert!(eu.detail.as_deref().is_some_and(|d| d.contains("traffic guard")), "{eu:?}");
}
