//! The fleet under a real Prometheus (Debian's `prometheus`, started by the `testkit`): the
//! page passes promtool, the product brief's error-rate query sees per-region rates, and the
//! harness itself stops and starts again on the same port and storage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_fleet::testkit::{Prometheus, ScrapeTarget, eventually, promtool_binary};
use meridian_fleet::{Fleet, FleetConfig, FleetHandle};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The product brief's error-rate check, split by region, with a window that holds several
/// 1 s scrapes.
const ERROR_RATIO: &str = "sum by (region) (rate(http_requests_total{service=\"store\",code=~\"5..\"}[5s])) \
     / sum by (region) (rate(http_requests_total{service=\"store\"}[5s]))";
const REQUEST_RATE: &str = "sum by (region) (rate(http_requests_total{service=\"store\"}[5s]))";

async fn fleet() -> FleetHandle {
    let config = FleetConfig::new(["us-east", "jp"], ["signin", "store"])
        .with_requests_per_second(1000.0)
        .with_baseline_error_ratio(0.0);
    let fleet = Fleet::start(config).await.unwrap();
    let c = reqwest::Client::new();
    for (region, percent) in [("us-east", 100), ("jp", 50)] {
        let resp = c
            .put(format!("{}/fleet/{region}/store/traffic", fleet.base_url()))
            .header("Idempotency-Key", region)
            .json(&json!({ "percent": percent }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    fleet
}

/// `region -> value` of an instant query, or the reason it is not there yet.
async fn by_region(prometheus: &Prometheus, promql: &str) -> Result<BTreeMap<String, f64>, String> {
    let series = prometheus.query(promql).await?;
    Ok(series.into_iter().filter_map(|s| Some((s.labels.get("region")?.clone(), s.value))).collect())
}

#[tokio::test]
async fn promtool_accepts_the_metrics_page() {
    let fleet = fleet().await;
    let page = reqwest::get(format!("{}/metrics", fleet.base_url())).await.unwrap().text().await.unwrap();
    let mut check = Command::new(promtool_binary())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_real_prometheus_sees_per_region_rates() {
    let fleet = fleet().await;
    fleet.set_error_ratio("jp", None, 0.3).unwrap();
    let prometheus = Prometheus::start(vec![ScrapeTarget::fleet(&fleet)]).await;

    // Early on a rate covers too few scrapes: wait until both settle.
    eventually("the expected ratios and rates", WAIT, || async {
        let ratios = by_region(&prometheus, ERROR_RATIO).await?;
        let rates = by_region(&prometheus, REQUEST_RATE).await?;
        let settled = ratios.len() == 2
            && rates.len() == 2
            && (ratios["jp"] - 0.3).abs() < 0.02
            && ratios["us-east"] < 0.001
            && (rates["us-east"] - 1000.0).abs() < 50.0
            && (rates["jp"] - 500.0).abs() < 25.0;
        if settled { Ok(()) } else { Err(format!("ratios {ratios:?}, rates {rates:?}")) }
    })
    .await;
}

#[tokio::test]
async fn the_harness_stops_and_starts_again_on_the_same_port_and_storage() {
    let fleet = fleet().await;
    let mut prometheus = Prometheus::start(vec![ScrapeTarget::fleet(&fleet)]).await;
    let url = prometheus.url();
    prometheus.wait_scraping(WAIT).await;
    let before =
        by_region(&prometheus, "max by (region) (http_requests_total{service=\"store\",code=\"200\"})").await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");

    prometheus.stop().await;
    assert!(!prometheus.is_running());
    let refused = reqwest::get(format!("{url}/-/ready")).await;
    assert!(refused.is_err(), "still answering after stop: {refused:?}");

    prometheus.start_again().await;
    assert_eq!(prometheus.url(), url);
    // What was scraped before the stop is still there (same storage): a range query over
    // the whole test sees samples older than the restart.
    let kept = by_region(
        &prometheus,
        "max by (region) (max_over_time(http_requests_total{service=\"store\",code=\"200\"}[5m]))",
    )
    .await
    .unwrap();
    assert_eq!(kept.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "{kept:?}");
    prometheus.wait_scraping(WAIT).await;

    prometheus.kill();
    assert!(!prometheus.is_running());
    prometheus.start_again().await;
    prometheus.wait_scraping(WAIT).await;
}
