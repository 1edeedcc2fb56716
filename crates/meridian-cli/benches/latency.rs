//! Latency of the standalone controller end to end, against real HTTP endpoints and a real
//! Prometheus. A measurement, not a timed test: it prints figures and asserts nothing about
//! them.
//!
//! ```sh
//! cargo bench -p meridian-cli --bench latency                              # 30 iterations
//! MERIDIAN_BENCH_ITERATIONS=100 cargo bench -p meridian-cli --bench latency
//! ```
//!
//! Setup: the `meridian run` binary (release build) with `--prometheus`, a simulated fleet
//! (meridian-fleet, in this process, so its put log and this benchmark share one clock), and
//! a Prometheus scraping the fleet every second (the fleet's `testkit`). Two plans:
//!
//! - `bench-gate`: regions g0..gN, each gated by its own flag, one service, no health checks.
//!   Iteration i sends `POST /api/v1/approvals` granting gi's flag and measures until the
//!   fleet logs the first PUT for gi: **approval-to-first-actuation**.
//! - `bench-health`: regions h0..hN at their first step (10 %) with a 1 h step bake, healthy,
//!   under the product brief's error-rate check (1 s health interval, failureLimit 2, 5 s rate
//!   windows, a 20-request guard). Iteration i raises hi's error ratio to 0.5 at the fleet and
//!   measures until the fleet logs the rollback PUT (0 %) for hi:
//!   **health-failure-to-rollback**. It also reports the part after the controller took its
//!   first failing sample (the check's `at` in `GET /api/v1/plans/{name}`, polled every 20 ms)
//!   and the part after the failure decision (the `HealthFailed` audit record's `at`).
//!
//! Each iteration starts after a random pause (up to 0.3 s before an approval, 1.5 s before
//! a failure; seed printed, replay with `MERIDIAN_BENCH_SEED`), so a failure lands at a random
//! moment of the 1 s scrape and health cycles instead of right after the previous rollback,
//! always at the same phase. One
//! unmeasured warm-up iteration precedes each series. Percentiles are nearest-rank, so with
//! 30 iterations p99 is the slowest one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use meridian_core::{AuditRecord, Cause, HealthVerdict, PlanState, UnitPhase};
use meridian_fleet::config::DEFAULT_BASELINE_ERROR_RATIO;
use meridian_fleet::testkit::{Prometheus, SCRAPE_INTERVAL, ScrapeTarget, eventually, free_port};
use meridian_fleet::{Fleet, FleetConfig, FleetHandle};
use serde_json::{Value, json};

const HEALTH_INTERVAL: &str = "1s";
const FAILURE_LIMIT: u32 = 2;
const RATE_WINDOW: &str = "5s";
const RAISED_ERROR_RATIO: f64 = 0.5;

fn main() {
    let iterations: usize = match std::env::var("MERIDIAN_BENCH_ITERATIONS") {
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("MERIDIAN_BENCH_ITERATIONS={n:?} is not a number")),
        Err(_) => 30,
    };
    assert!(iterations > 0, "MERIDIAN_BENCH_ITERATIONS must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seed: u64 = std::env::var("MERIDIAN_BENCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    runtime.block_on(bench(iterations, Rng(seed)));
}

/// xorshift64*: small and seedable, to spread the moments a failure or approval lands.
struct Rng(u64);

impl Rng {
    /// A pause of up to `max`.
    fn pause(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        Duration::from_micros(r % (max.as_micros() as u64).max(1))
    }
}

async fn bench(iterations: usize, mut rng: Rng) {
    // Region 0 of each plan is the warm-up.
    let n = iterations + 1;
    let gates: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
    let healths: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
    let fleet =
        Fleet::start(FleetConfig::new(gates.iter().chain(&healths).cloned(), ["web", "api"])).await.expect("fleet");
    let prometheus = Prometheus::start(vec![ScrapeTarget::fleet(&fleet)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("gate.yaml"), gate_plan(&gates, &fleet)).unwrap();
    std::fs::write(config.join("health.yaml"), health_plan(&healths, &fleet)).unwrap();
    let controller = Controller::start(&config, &dir.path().join("state"), &prometheus).await;

    eprintln!(
        "latency benchmark: {iterations} iterations (+1 warm-up), meridian run (release) on 127.0.0.1, \
         seed {} (MERIDIAN_BENCH_SEED)",
        rng.0
    );
    let approval = approval_to_first_actuation(&controller, &fleet, &gates, &mut rng).await;
    let health = health_failure_to_rollback(&controller, &fleet, &healths, &mut rng).await;

    println!();
    println!("approval-to-first-actuation, {iterations} iterations");
    row("POST /api/v1/approvals sent -> first PUT for the region received", &approval.actuated);
    row("  of which: POST sent -> answered 201", &approval.answered);
    println!();
    println!(
        "health-failure-to-rollback, {iterations} iterations (scrape interval {}s, health interval {HEALTH_INTERVAL}, \
         failureLimit {FAILURE_LIMIT}, rate window {RATE_WINDOW}, error ratio {DEFAULT_BASELINE_ERROR_RATIO} -> \
         {RAISED_ERROR_RATIO})",
        SCRAPE_INTERVAL.as_secs()
    );
    row("error ratio raised at the fleet -> rollback PUT (0 %) received", &health.total);
    row("  error ratio raised -> first failing sample taken (check `at`)", &health.to_first_failure);
    row("  first failing sample -> rollback PUT received", &health.after_first_failure);
    row("  failure decision (HealthFailed audit `at`) -> rollback PUT", &health.after_decision);
    drop(controller);
    drop(prometheus);
}

fn gate_plan(regions: &[String], fleet: &FleetHandle) -> String {
    let list: Vec<String> = regions.iter().map(|r| format!("{{name: {r}, approvals: [go-{r}]}}")).collect();
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: bench-gate}}
spec:
  services: [{{name: web}}]
  regions: [{}]
  waves: [{{name: all, regions: [{}]}}]
  steps: [100]
  stepBake: 1h
  actuator:
    http: {{url: '{}', timeout: 2s}}
",
        list.join(", "),
        regions.join(", "),
        fleet.traffic_url_template()
    )
}

fn health_plan(regions: &[String], fleet: &FleetHandle) -> String {
    let list: Vec<String> = regions.iter().map(|r| format!("{{name: {r}}}")).collect();
    format!(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: bench-health}}
spec:
  services: [{{name: api}}]
  regions: [{list}]
  waves: [{{name: all, regions: [{names}]}}]
  steps: [10, 100]
  stepBake: 1h
  health:
    interval: {HEALTH_INTERVAL}
    checks:
      - name: error-rate
        prometheus:
          query: >-
            sum by (region) (rate(http_requests_total{{service="{{{{service}}}}",code=~"5.."}}[{RATE_WINDOW}]))
            / sum by (region) (rate(http_requests_total{{service="{{{{service}}}}"}}[{RATE_WINDOW}]))
        max: 0.05
        failureLimit: {FAILURE_LIMIT}
        minSamples:
          query: 'sum by (region) (increase(http_requests_total{{service="{{{{service}}}}"}}[{RATE_WINDOW}]))'
          min: 20
  onFailure: rollback-region
  actuator:
    http: {{url: '{url}', timeout: 2s}}
"#,
        list = list.join(", "),
        names = regions.join(", "),
        url = fleet.traffic_url_template()
    )
}

struct ApprovalTimes {
    actuated: Vec<f64>,
    answered: Vec<f64>,
}

async fn approval_to_first_actuation(
    controller: &Controller,
    fleet: &FleetHandle,
    regions: &[String],
    rng: &mut Rng,
) -> ApprovalTimes {
    let mut times = ApprovalTimes { actuated: Vec::new(), answered: Vec::new() };
    for (i, region) in regions.iter().enumerate() {
        tokio::time::sleep(rng.pause(Duration::from_millis(300))).await;
        let manifest = json!({
            "apiVersion": "meridian.dev/v1alpha1",
            "kind": "Approval",
            "metadata": { "name": format!("go-{region}-bench") },
            "spec": { "flag": format!("go-{region}"), "grantedBy": "latency benchmark", "reference": "bench" },
        });
        let sent = Utc::now();
        let resp = controller.client.post(format!("{}/api/v1/approvals", controller.api)).json(&manifest).send().await;
        let answered = Utc::now();
        let resp = resp.expect("POST /api/v1/approvals");
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap_or_default());
        let first_put = eventually(&format!("the first PUT for {region}"), Duration::from_secs(10), || async {
            fleet.puts().into_iter().find(|p| &p.region == region).map(|p| p.at).ok_or_else(|| "none yet".to_string())
        })
        .await;
        if i > 0 {
            times.actuated.push(ms(first_put - sent));
            times.answered.push(ms(answered - sent));
        }
    }
    times
}

struct HealthTimes {
    total: Vec<f64>,
    to_first_failure: Vec<f64>,
    after_first_failure: Vec<f64>,
    after_decision: Vec<f64>,
}

async fn health_failure_to_rollback(
    controller: &Controller,
    fleet: &FleetHandle,
    regions: &[String],
    rng: &mut Rng,
) -> HealthTimes {
    let mut times = HealthTimes {
        total: Vec::new(),
        to_first_failure: Vec::new(),
        after_first_failure: Vec::new(),
        after_decision: Vec::new(),
    };
    // Every region at its first step with a healthy verdict (Prometheus scrapes 5 to 6 s after
    // its start; the rate windows then fill).
    eventually("every health region to be healthy at 10 %", Duration::from_secs(60), || async {
        let state = controller.state("bench-health").await?;
        let unhealthy: Vec<&str> = state
            .units
            .iter()
            .filter(|u| !(u.percent == 10 && u.checks.iter().all(|c| c.verdict == Some(HealthVerdict::Healthy))))
            .map(|u| u.region.as_str())
            .collect();
        if unhealthy.is_empty() { Ok(()) } else { Err(format!("not yet healthy: {unhealthy:?}")) }
    })
    .await;

    for (i, region) in regions.iter().enumerate() {
        tokio::time::sleep(rng.pause(Duration::from_millis(1500))).await;
        let raised = Utc::now();
        fleet.set_error_ratio(region, None, RAISED_ERROR_RATIO).unwrap();
        // The first failing sample, as the controller recorded it in the unit's check state.
        let mut first_failure: Option<DateTime<Utc>> = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        let rollback = loop {
            assert!(Instant::now() < deadline, "{region} was not rolled back within 30 s");
            if let Some(p) = fleet.puts().into_iter().find(|p| &p.region == region && p.percent == 0 && p.applied()) {
                break p.at;
            }
            if first_failure.is_none()
                && let Ok(state) = controller.state("bench-health").await
                && let Some(u) = state.units.iter().find(|u| &u.region == region)
                && let Some(c) = u.checks.first()
                && c.verdict == Some(HealthVerdict::Unhealthy)
                && c.consecutive_failures == 1
                && u.phase == UnitPhase::Progressing
            {
                first_failure = c.at;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let audit = controller.audit("bench-health").await;
        let decided = audit
            .iter()
            .find(|r| r.region.as_deref() == Some(region) && matches!(r.cause, Cause::HealthFailed { .. }))
            .map(|r| r.at);
        if i == 0 {
            continue;
        }
        times.total.push(ms(rollback - raised));
        match first_failure {
            Some(at) => {
                times.to_first_failure.push(ms(at - raised));
                times.after_first_failure.push(ms(rollback - at));
            }
            None => eprintln!("{region}: the first failing sample was not observed (polled every 20 ms)"),
        }
        match decided {
            Some(at) => times.after_decision.push(ms(rollback - at)),
            None => eprintln!("{region}: no HealthFailed audit record"),
        }
    }
    times
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(label: &str, values: &[f64]) {
    println!("  {label:<66} {}", summary(values));
}

fn summary(values: &[f64]) -> String {
    if values.is_empty() {
        return "no samples".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "p50 {:8.1} ms   p99 {:8.1} ms   (min {:.1}, max {:.1}, n {})",
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    )
}

/// `meridian run` on a free port; SIGKILLed on drop.
struct Controller {
    child: Child,
    api: String,
    client: reqwest::Client,
}

impl Controller {
    async fn start(config: &Path, state: &Path, prometheus: &Prometheus) -> Controller {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = state.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("run")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &listen, "--no-auth", "--prometheus", &prometheus.url()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn meridian run");
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let controller = Controller { child, api: format!("http://{listen}"), client };
        eventually("meridian run to be ready", Duration::from_secs(20), || async {
            match controller.client.get(format!("{}/readyz", controller.api)).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}; log: {}", std::fs::read_to_string(&log).unwrap_or_default())),
            }
        })
        .await;
        controller
    }

    async fn state(&self, plan: &str) -> Result<PlanState, String> {
        let detail = self.get(&format!("/api/v1/plans/{plan}")).await?;
        serde_json::from_value(detail["state"].clone()).map_err(|e| e.to_string())
    }

    async fn audit(&self, plan: &str) -> Vec<AuditRecord> {
        // Page through: seq is gapless per plan.
        let mut records: Vec<AuditRecord> = Vec::new();
        loop {
            let after = records.last().map_or(0, |r| r.seq);
            let page = self.get(&format!("/api/v1/audit?plan={plan}&after={after}&limit=1000")).await.unwrap();
            let batch: Vec<AuditRecord> = serde_json::from_value(page["records"].clone()).unwrap();
            if batch.is_empty() {
                return records;
            }
            records.extend(batch);
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self.client.get(format!("{}{path}", self.api)).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
