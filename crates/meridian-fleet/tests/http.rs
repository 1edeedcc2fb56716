//! The fleet over real HTTP on 127.0.0.1: the actuator contract, the put log, errors,
//! metrics, faults (configured, set over HTTP, scripted), tokens, injected actuator failures,
//! shutdown, and the binary. A real Prometheus scraping it: `tests/prometheus.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_fleet::{Fault, Fleet, FleetConfig, FleetHandle, ScriptedFault};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> Client {
    Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

fn mk_config() -> FleetConfig {
    FleetConfig::new(["us-east", "jp"], ["signin", "store"])
        .with_requests_per_second(200.0)
        .with_baseline_error_ratio(0.01)
        .with_metrics_window(Duration::from_secs(10))
}

async fn start(config: FleetConfig) -> FleetHandle {
    Fleet::start(config).await.unwrap()
}

async fn put(
    c: &Client,
    fleet: &FleetHandle,
    region: &str,
    service: &str,
    percent: u32,
    key: &str,
) -> (StatusCode, Value) {
    let url = format!("{}/fleet/{region}/{service}/traffic", fleet.base_url());
    let resp = c
        .put(url)
        .header("Idempotency-Key", key)
        .json(&json!({ "percent": percent, "plan": "demo" }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn get_json(c: &Client, url: String) -> (StatusCode, Value) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn get_text(c: &Client, url: String) -> String {
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    resp.text().await.unwrap()
}

/// One sample of a Prometheus text page, after checking that every line of it parses.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => {
                (metric, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}")))
            }
            None => (series, ""),
        };
        assert!(metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad metric name in {line:?}");
        let parsed: Vec<(&str, &str)> = label_text
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                (
                    k,
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label in {line:?}")),
                )
            })
            .collect();
        if metric == name && labels.iter().all(|want| parsed.contains(want)) && parsed.len() == labels.len() {
            assert!(found.is_none(), "duplicate series {name}{labels:?}");
            found = Some(value);
        }
    }
    found
}

/// Poll `check` until it returns `Some`, failing the test at the deadline.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn put_get_round_trip() {
    let fleet = start(mk_config()).await;
    let c = client();
    let url = format!("{}/fleet/jp/store/traffic", fleet.base_url());
    assert_eq!(get_json(&c, url.clone()).await, (StatusCode::OK, json!({ "percent": null })));
    assert_eq!(fleet.traffic("jp", "store"), None);

    assert_eq!(put(&c, &fleet, "jp", "store", 10, "k1").await, (StatusCode::OK, json!({ "percent": 10 })));
    assert_eq!(get_json(&c, url.clone()).await, (StatusCode::OK, json!({ "percent": 10 })));

    let resp =
        c.post(url.clone()).header("Idempotency-Key", "k2").json(&json!({ "percent": 50 })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "percent": 50 }));
    assert_eq!(get_json(&c, url).await.1, json!({ "percent": 50 }));
    assert_eq!(fleet.traffic("jp", "store"), Some(50));
    assert_eq!(fleet.traffic("jp", "signin"), None);
    assert_eq!(fleet.traffic("mars", "store"), None);
    fleet.shutdown().await.unwrap();
}

#[tokio::test]
async fn put_log_keeps_order_keys_and_methods() {
    let fleet = start(mk_config()).await;
    let c = client();
    put(&c, &fleet, "us-east", "signin", 10, "demo/us-east/signin/1").await;
    put(&c, &fleet, "jp", "store", 0, "demo/jp/store/2").await;
    let url = format!("{}/fleet/us-east/signin/traffic", fleet.base_url());
    c.post(&url)
        .header("Idempotency-Key", "demo/us-east/signin/3")
        .json(&json!({ "percent": 100 }))
        .send()
        .await
        .unwrap();
    // A late retry of an earlier intent is answered as before, changes nothing, and is marked.
    assert_eq!(put(&c, &fleet, "us-east", "signin", 10, "demo/us-east/signin/1").await.1, json!({ "percent": 10 }));
    assert_eq!(fleet.traffic("us-east", "signin"), Some(100));

    let puts = fleet.puts();
    let summary: Vec<String> = puts
        .iter()
        .map(|p| {
            let key = p.idempotency_key.as_deref().unwrap_or("-");
            format!("{} {} {}/{} {}% {key} {} {}", p.seq, p.method, p.region, p.service, p.percent, p.status, p.replay)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "1 PUT us-east/signin 10% demo/us-east/signin/1 200 false",
            "2 PUT jp/store 0% demo/jp/store/2 200 false",
            "3 POST us-east/signin 100% demo/us-east/signin/3 200 false",
            "4 PUT us-east/signin 10% demo/us-east/signin/1 200 true",
        ]
    );
    assert!(puts.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(puts[0].plan.as_deref(), Some("demo"));
    assert_eq!(puts.iter().filter(|p| p.applied()).count(), 3);

    // The same log over HTTP, for tests driving a separate process.
    let (status, body) = get_json(&c, format!("{}/fleet/puts", fleet.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::to_value(&puts).unwrap());
    assert_eq!(body[0]["idempotencyKey"], "demo/us-east/signin/1");
    let over_http: Vec<meridian_fleet::PutRecord> = serde_json::from_value(body).unwrap();
    assert_eq!(over_http, puts);

    let resp = c.delete(format!("{}/fleet/puts", fleet.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(fleet.puts().is_empty());
    put(&c, &fleet, "jp", "signin", 10, "k").await;
    assert_eq!(fleet.puts()[0].seq, 5, "sequence numbers go on after a reset");
    fleet.reset_log();
    assert_eq!(get_json(&c, format!("{}/fleet/puts", fleet.base_url())).await.1, json!([]));
    assert_eq!(fleet.traffic("us-east", "signin"), Some(100), "a reset forgets the log, not the traffic");
}

#[tokio::test]
async fn unknown_units_and_paths_are_json_404s() {
    let fleet = start(mk_config()).await;
    let c = client();
    let base = fleet.base_url();
    for (method, path) in [
        ("GET", "/fleet/mars/store/traffic"),
        ("PUT", "/fleet/mars/store/traffic"),
        ("POST", "/fleet/jp/music/traffic"),
        ("GET", "/fleet/jp/music/traffic"),
        ("GET", "/fleet/jp/music/metrics"),
        ("GET", "/fleet/mars/signin/metrics"),
        ("POST", "/fleet/mars/faults"),
        ("DELETE", "/fleet/mars/faults"),
        ("GET", "/nowhere"),
    ] {
        let req = c.request(method.parse().unwrap(), format!("{base}{path}")).header("Idempotency-Key", "k");
        let req = if method == "GET" || method == "DELETE" {
            req
        } else {
            req.json(&json!({ "percent": 10, "errorRatio": 0.1 }))
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {body}");
    }
    let (_, body) = get_json(&c, format!("{base}/fleet/jp/music/traffic")).await;
    assert!(body["error"].as_str().unwrap().contains("unknown service \"music\""), "{body}");
    assert!(fleet.puts().is_empty(), "nothing for unknown units is logged");
}

#[tokio::test]
async fn malformed_actuations_are_refused() {
    let fleet = start(mk_config()).await;
    let c = client();
    let url = format!("{}/fleet/jp/store/traffic", fleet.base_url());

    let resp = c.put(&url).json(&json!({ "percent": 10 })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "missing idempotency key");
    assert!(resp.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("Idempotency-Key"));

    for body in [json!({ "pct": 10 }), json!({ "percent": "10" }), json!({ "percent": -1 }), json!({ "percent": 1.5 })]
    {
        let resp = c.put(&url).header("Idempotency-Key", "x").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let resp = c.put(&url).header("Idempotency-Key", "x").body("not json").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    assert_eq!(put(&c, &fleet, "jp", "store", 101, "y").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(put(&c, &fleet, "jp", "store", 10, "z").await.0, StatusCode::OK);
    let (status, body) = put(&c, &fleet, "jp", "store", 50, "z").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a key names one intent: {body}");
    assert_eq!(fleet.traffic("jp", "store"), Some(10));

    // Requests with a readable percent are logged whatever the answer; unreadable ones are not.
    let statuses: Vec<(u32, u16)> = fleet.puts().iter().map(|p| (p.percent, p.status)).collect();
    assert_eq!(statuses, vec![(10, 400), (101, 400), (10, 200), (50, 422)]);
    assert_eq!(fleet.puts()[0].idempotency_key, None);
    assert_eq!(fleet.puts().iter().filter(|p| p.applied()).count(), 1);
}

#[tokio::test]
async fn unit_metrics_reflect_traffic_and_faults() {
    let fleet = start(mk_config()).await;
    let c = client();
    let url = format!("{}/fleet/jp/store/metrics", fleet.base_url());
    let labels = [("region", "jp"), ("service", "store")];

    let page = get_text(&c, url.clone()).await;
    assert!(sample(&page, "error_ratio", &labels).unwrap().is_nan(), "never set: no ratio\n{page}");
    assert_eq!(sample(&page, "fleet_requests", &labels), Some(0.0));
    assert_eq!(sample(&page, "fleet_traffic_percent", &labels), Some(0.0));

    put(&c, &fleet, "jp", "store", 10, "a").await;
    let page = get_text(&c, url.clone()).await;
    assert_eq!(sample(&page, "error_ratio", &labels), Some(0.01));
    // 200 requests/s x 10 % x 10 s.
    assert_eq!(sample(&page, "fleet_requests", &labels), Some(200.0));
    assert_eq!(sample(&page, "fleet_traffic_percent", &labels), Some(10.0));

    put(&c, &fleet, "jp", "store", 50, "b").await;
    assert_eq!(sample(&get_text(&c, url.clone()).await, "fleet_requests", &labels), Some(1000.0));

    // A region-wide fault over HTTP.
    let faults = format!("{}/fleet/jp/faults", fleet.base_url());
    let resp = c.post(&faults).json(&json!({ "errorRatio": 0.3 })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sample(&get_text(&c, url.clone()).await, "error_ratio", &labels), Some(0.3));
    // A fault on one service only.
    let resp = c.post(&faults).json(&json!({ "errorRatio": 0.5, "service": "signin" })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sample(&get_text(&c, url.clone()).await, "error_ratio", &labels), Some(0.3));
    let signin = fleet.units().into_iter().find(|u| u.region == "jp" && u.service == "signin").unwrap();
    assert_eq!(signin.error_ratio, 0.5);
    // Out of range and unknown fields are refused.
    for body in
        [json!({ "errorRatio": 1.5 }), json!({ "errorRate": 0.1 }), json!({ "errorRatio": 0.1, "service": "music" })]
    {
        let resp = c.post(&faults).json(&body).send().await.unwrap();
        assert!(resp.status().is_client_error(), "{body}: {}", resp.status());
    }

    let resp = c.delete(&faults).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sample(&get_text(&c, url.clone()).await, "error_ratio", &labels), Some(0.01));

    // In-process control.
    fleet.set_error_ratio("jp", Some("store"), 0.2).unwrap();
    assert_eq!(sample(&get_text(&c, url.clone()).await, "error_ratio", &labels), Some(0.2));
    assert!(fleet.set_error_ratio("mars", None, 0.2).is_err());
    assert!(fleet.set_error_ratio("jp", None, -0.1).is_err());
    fleet.clear_faults("jp").unwrap();

    // Back to 0 %: the ratio is NaN again.
    put(&c, &fleet, "jp", "store", 0, "c").await;
    let page = get_text(&c, url).await;
    assert!(sample(&page, "error_ratio", &labels).unwrap().is_nan());
    assert_eq!(sample(&page, "fleet_requests", &labels), Some(0.0));
}

#[tokio::test]
async fn fleet_counters_grow_with_traffic_and_errors() {
    let fleet = start(mk_config().with_requests_per_second(2000.0)).await;
    let c = client();
    let url = format!("{}/metrics", fleet.base_url());
    let ok = |region: &'static str| [("region", region), ("service", "store"), ("code", "200")];
    let err = |region: &'static str| [("region", region), ("service", "store"), ("code", "500")];

    let page = get_text(&c, url.clone()).await;
    assert_eq!(
        sample(&page, "http_requests_total", &ok("jp")),
        Some(0.0),
        "every series exists from the start\n{page}"
    );

    put(&c, &fleet, "jp", "store", 100, "a").await;
    fleet.set_error_ratio("jp", Some("store"), 0.25).unwrap();
    let first = get_text(&c, url.clone()).await;
    let first_ok = sample(&first, "http_requests_total", &ok("jp")).unwrap();

    // 2000 requests/s at 100 %: the counters move between any two scrapes a few ms apart.
    let (later_ok, later_err, page) = wait_for("counters to grow", || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let page = get_text(&c, url).await;
            let ok = sample(&page, "http_requests_total", &ok("jp")).unwrap();
            let err = sample(&page, "http_requests_total", &err("jp")).unwrap();
            (ok > first_ok + 100.0 && err > 100.0).then_some((ok, err, page))
        }
    })
    .await;
    let ratio = later_err / (later_ok + later_err);
    assert!((ratio - 0.25).abs() < 0.05, "error share {ratio} should approach the fault's 0.25");

    // The histogram counts the same requests.
    let hist = [("region", "jp"), ("service", "store")];
    let count = sample(&page, "http_request_duration_seconds_count", &hist).unwrap();
    // Each counter is rounded down on its own, so the sum may lag the histogram by one.
    assert!((count - (later_ok + later_err)).abs() <= 1.0, "{count} vs {later_ok} + {later_err}");
    let inf = sample(&page, "http_request_duration_seconds_bucket", &[hist[0], hist[1], ("le", "+Inf")]).unwrap();
    assert_eq!(inf, count);
    assert!(sample(&page, "http_request_duration_seconds_sum", &hist).unwrap() > 0.0);

    // A unit without traffic serves nothing.
    assert_eq!(sample(&page, "http_requests_total", &ok("us-east")), Some(0.0));
    assert_eq!(sample(&page, "http_requests_total", &err("us-east")), Some(0.0));
    assert!(sample(&page, "error_ratio", &[("region", "us-east"), ("service", "store")]).unwrap().is_nan());

    // At 0 % the counters stop.
    put(&c, &fleet, "jp", "store", 0, "b").await;
    let stopped = sample(&get_text(&c, url.clone()).await, "http_requests_total", &ok("jp")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sample(&get_text(&c, url).await, "http_requests_total", &ok("jp")), Some(stopped));
}

#[tokio::test]
async fn scripted_fault_fires_inside_the_put_that_crosses_the_threshold() {
    let config = mk_config().with_scripted_fault(ScriptedFault {
        region: "jp".into(),
        trigger_service: "store".into(),
        at_percent: 50,
        error_ratio: 0.4,
        service: None,
    });
    let fleet = start(config).await;
    let c = client();
    let url = format!("{}/fleet/jp/signin/metrics", fleet.base_url());
    let labels = [("region", "jp"), ("service", "signin")];
    put(&c, &fleet, "jp", "signin", 100, "a").await;
    put(&c, &fleet, "jp", "store", 10, "b").await;
    assert_eq!(sample(&get_text(&c, url.clone()).await, "error_ratio", &labels), Some(0.01));
    assert_eq!(fleet.scripted_faults()[0].fired_at, None);

    put(&c, &fleet, "jp", "store", 50, "c").await;
    // No waiting: the fault is in force before the PUT is answered.
    assert_eq!(sample(&get_text(&c, url).await, "error_ratio", &labels), Some(0.4));
    let (_, state) = get_json(&c, format!("{}/fleet/state", fleet.base_url())).await;
    assert!(state["scriptedFaults"][0]["firedAt"].is_string(), "{state}");
    let us_east = fleet.units().into_iter().find(|u| u.region == "us-east" && u.service == "store").unwrap();
    assert_eq!(us_east.error_ratio, 0.01, "other regions stay healthy");
}

#[tokio::test]
async fn configured_faults_are_in_force_from_the_start() {
    let fleet = start(mk_config().with_fault(Fault {
        region: "us-east".into(),
        service: Some("store".into()),
        error_ratio: 0.2,
    }))
    .await;
    let c = client();
    put(&c, &fleet, "us-east", "store", 10, "a").await;
    let page = get_text(&c, format!("{}/fleet/us-east/store/metrics", fleet.base_url())).await;
    assert_eq!(sample(&page, "error_ratio", &[("region", "us-east"), ("service", "store")]), Some(0.2));
}

#[tokio::test]
async fn a_token_guards_the_traffic_endpoints() {
    let fleet = start(mk_config().with_token("s3cret")).await;
    let c = client();
    let url = format!("{}/fleet/jp/store/traffic", fleet.base_url());
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut req = c.put(&url).header("Idempotency-Key", "k").json(&json!({ "percent": 10 }));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let resp = c
        .put(&url)
        .bearer_auth("s3cret")
        .header("Idempotency-Key", "k")
        .json(&json!({ "percent": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = c.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "percent": 10 }));
    assert_eq!(fleet.puts().len(), 1, "refused callers are not logged");
}

#[tokio::test]
async fn injected_actuator_failures_and_delays() {
    let fleet = start(mk_config()).await;
    let c = client();
    let faults = format!("{}/fleet/actuator-faults", fleet.base_url());
    let resp = c.post(&faults).json(&json!({ "failNext": 2, "status": 503 })).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(put(&c, &fleet, "jp", "store", 10, "k").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(put(&c, &fleet, "jp", "store", 10, "k").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fleet.traffic("jp", "store"), None);
    assert_eq!(put(&c, &fleet, "jp", "store", 10, "k").await, (StatusCode::OK, json!({ "percent": 10 })));
    let statuses: Vec<u16> = fleet.puts().iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);

    c.post(&faults).json(&json!({ "delayMs": 300 })).send().await.unwrap();
    let started = Instant::now();
    let resp = c.get(format!("{}/fleet/jp/store/traffic", fleet.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let slow = Client::builder().no_proxy().timeout(Duration::from_millis(100)).build().unwrap();
    let url = format!("{}/fleet/jp/store/traffic", fleet.base_url());
    let err = slow.put(&url).header("Idempotency-Key", "t").json(&json!({ "percent": 50 })).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let resp = c.delete(&faults).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "failNext": 0, "status": 0, "delayMs": 0 }));
    // The timed-out request still lands once its delay is over: the client cannot know.
    wait_for("the timed-out put to land", || async { (fleet.traffic("jp", "store") == Some(50)).then_some(()) }).await;
    assert_eq!(
        c.post(&faults).json(&json!({ "status": 200, "failNext": 1 })).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn binds_a_given_port_and_frees_it_on_shutdown() {
    let fleet = start(mk_config()).await;
    let addr = fleet.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(fleet.base_url(), format!("http://127.0.0.1:{}", addr.port()));
    assert_eq!(
        fleet.traffic_url_template(),
        format!("http://127.0.0.1:{}/fleet/{{{{region}}}}/{{{{service}}}}/traffic", addr.port())
    );
    let c = client();
    assert_eq!(c.get(format!("{}/healthz", fleet.base_url())).send().await.unwrap().text().await.unwrap(), "ok\n");
    fleet.shutdown().await.unwrap();
    assert!(client().get(format!("http://{addr}/healthz")).send().await.is_err(), "nothing listens after shutdown");

    let again = start(mk_config().with_port(addr.port())).await;
    assert_eq!(again.addr(), addr);
    let taken = Fleet::start(mk_config().with_port(addr.port())).await;
    assert!(matches!(taken, Err(meridian_fleet::FleetError::Bind { .. })), "the port is in use");
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_config_is_refused_before_binding() {
    let Err(err) = Fleet::start(FleetConfig::new(["jp"], Vec::<String>::new())).await else { panic!("started") };
    assert!(err.to_string().contains("at least one service is required"), "{err}");
}

#[test]
fn config_from_the_demo_plan() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let bundle = meridian_core::validate::load(&[("demo.yaml".to_string(), text)], None);
    let plan = bundle.plan("demo").unwrap();
    let config = FleetConfig::from_plan(plan);
    assert_eq!(config.regions, ["us-east", "eu-west", "eu-central", "br-south", "jp", "kr"]);
    assert_eq!(config.services, ["signin", "store", "music"]);
    config.validate().unwrap();
}

#[test]
fn the_binary_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian-fleet"))
        .args(["--port", "0", "--regions", "us-east,jp", "--services", "signin", "--fail-when", "jp/signin>=50:0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Kept open until the child is gone, so it never writes to a closed pipe.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let base =
        line.trim().strip_prefix("meridian-fleet listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = runtime.block_on(async {
        let c = client();
        let resp = c
            .put(format!("{base}/fleet/jp/signin/traffic"))
            .header("Idempotency-Key", "k")
            .json(&json!({ "percent": 50 }))
            .send()
            .await?;
        let page = c.get(format!("{base}/fleet/jp/signin/metrics")).send().await?.text().await?;
        Ok::<_, reqwest::Error>((resp.status(), page))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdout);
    let (status, page) = result.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sample(&page, "error_ratio", &[("region", "jp"), ("service", "signin")]), Some(0.5));
}
