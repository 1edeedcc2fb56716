//! Health from a real Prometheus, end to end: the `meridian run` binary rolls a plan out to a
//! simulated fleet (meridian-fleet) while a real Prometheus (the fleet's `testkit` harness)
//! scrapes the fleet's `/metrics` every second, and the plan's check is the product brief's
//! error-rate query with a traffic guard.
//!
//! - One region's error rate rises mid-rollout: that region is rolled back (0 % at the fleet,
//!   `rolled-back` in the API) while the other regions finish.
//! - Prometheus stops mid-rollout: every progressing unit waits for health and nothing
//!   advances, over several step bakes; Prometheus starts again and the rollout completes.
//!
//! Every wait is a condition with a deadline. The one negative assertion ("nothing
//! advances") watches a bounded window that starts once the API shows the controller noticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use meridian_core::{AuditRecord, Cause, HealthVerdict, PlanState, UnitPhase, WaitReason, WavePhase};
use meridian_fleet::testkit::{Prometheus, ScrapeTarget, eventually, free_port};
use meridian_fleet::{Fleet, FleetConfig, FleetHandle, PutRecord};
use serde_json::Value;

const STEPS: [u32; 3] = [10, 50, 100];
const STEP_BAKE: Duration = Duration::from_secs(2);
/// Prometheus scrapes 5 to 6 s after it starts (see the testkit's docs), then the rollout runs.
const ROLLOUT: Duration = Duration::from_secs(45);

/// A plan over `regions` x {signin, store} whose one check is the product brief's error-rate
/// query, with windows of five 1 s scrapes and a guard of at least 20 requests in them (a
/// unit at 10 % serves about 50).
fn plan(name: &str, regions: &[&str], fleet: &FleetHandle) -> String {
    let regions: Vec<String> = regions.iter().map(|r| format!("{{name: {r}}}")).collect();
    let regions = regions.join(", ");
    format!(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: {name}}}
spec:
  services: [{{name: signin}}, {{name: store, after: [signin]}}]
  regions: [{regions}]
  waves:
    - {{name: all, regions: [{names}]}}
  steps: [10, 50, 100]
  stepBake: {bake}ms
  health:
    interval: 1s
    checks:
      - name: error-rate
        prometheus:
          query: >-
            sum by (region) (rate(http_requests_total{{service="{{{{service}}}}",code=~"5.."}}[5s]))
            / sum by (region) (rate(http_requests_total{{service="{{{{service}}}}"}}[5s]))
        max: 0.05
        failureLimit: 2
        noData: hold
        minSamples:
          query: 'sum by (region) (increase(http_requests_total{{service="{{{{service}}}}"}}[5s]))'
          min: 20
  onFailure: rollback-region
  actuator:
    http: {{url: '{url}', timeout: 2s}}
"#,
        names = regions.replace("{name: ", "").replace('}', ""),
        bake = STEP_BAKE.as_millis(),
        url = fleet.traffic_url_template(),
    )
}

/// A `meridian run` process with its API on a free port; SIGKILLed on drop.
struct Controller {
    child: Child,
    api: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Controller {
    async fn start(config: &Path, state: &Path, prometheus: &Prometheus, extra: &[&str]) -> Controller {
        let log = state.with_extension("log");
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("run")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &listen, "--no-auth", "--prometheus", &prometheus.url()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("controller log"))
            .spawn()
            .expect("spawn meridian run");
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let controller = Controller { child, api: format!("http://{listen}"), log, client };
        let readyz = format!("{}/readyz", controller.api);
        eventually("meridian run to be ready", Duration::from_secs(20), || async {
            match controller.client.get(&readyz).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}; log:\n{}", controller.log_text())),
            }
        })
        .await;
        controller
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The plan's state as the API shows it (`GET /api/v1/plans/{name}`).
    async fn state(&self, plan: &str) -> Result<PlanState, String> {
        let detail = self.get(&format!("/api/v1/plans/{plan}")).await?;
        serde_json::from_value(detail["state"].clone()).map_err(|e| format!("plan state: {e}: {detail}"))
    }

    async fn audit(&self, plan: &str) -> Vec<AuditRecord> {
        let page = self.get(&format!("/api/v1/audit?plan={plan}&limit=1000")).await.unwrap();
        serde_json::from_value(page["records"].clone()).unwrap()
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self.client.get(format!("{}{path}", self.api)).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
    }

    async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "meridian run did not exit within {deadline:?}; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fleet, a Prometheus scraping it, and `meridian run` on a plan over it.
struct Scenario {
    fleet: FleetHandle,
    prometheus: Prometheus,
    controller: Controller,
    _dir: tempfile::TempDir,
}

async fn scenario(name: &str, regions: &[&str], extra: &[&str]) -> Scenario {
    let fleet = Fleet::start(FleetConfig::new(regions.iter().copied(), ["signin", "store"])).await.unwrap();
    // Started first: its first scrape comes 5 to 6 s later whatever we do meanwhile.
    let prometheus = Prometheus::start(vec![ScrapeTarget::fleet(&fleet)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), plan(name, regions, &fleet)).unwrap();
    let controller = Controller::start(&config, &dir.path().join("state"), &prometheus, extra).await;
    Scenario { fleet, prometheus, controller, _dir: dir }
}

fn unit<'a>(state: &'a PlanState, region: &str, service: &str) -> &'a meridian_core::state::UnitState {
    state.units.iter().find(|u| u.region == region && u.service == service).expect("unit in state")
}

/// The percentages each unit was set to at the fleet, in order, repeats dropped.
fn walked(puts: &[PutRecord]) -> BTreeMap<(String, String), Vec<u32>> {
    let mut walked: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for p in puts.iter().filter(|p| p.applied()) {
        let w = walked.entry((p.region.clone(), p.service.clone())).or_default();
        if w.last() != Some(&p.percent) {
            w.push(p.percent);
        }
    }
    walked
}

/// Applied PUTs after `after_seq` that set a unit above what it served before them.
fn raises_after(puts: &[PutRecord], after_seq: u64) -> Vec<PutRecord> {
    let mut serving: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut raises = Vec::new();
    for p in puts.iter().filter(|p| p.applied()) {
        let before = serving.insert((p.region.clone(), p.service.clone()), p.percent).unwrap_or(0);
        if p.seq > after_seq && p.percent > before {
            raises.push(p.clone());
        }
    }
    raises
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_error_rate_rises_is_rolled_back_while_the_others_finish() {
    let s = scenario("prom-rollback", &["east", "west", "north"], &[]).await;
    let (fleet, controller) = (&s.fleet, &s.controller);

    // Mid-rollout: west's signin is enabled and its store has started.
    eventually("west/store to get traffic", ROLLOUT, || async {
        match fleet.traffic("west", "store") {
            Some(p) if p > 0 => Ok(()),
            other => Err(format!("west/store at {other:?}; {:?}", walked(&fleet.puts()))),
        }
    })
    .await;
    fleet.set_error_ratio("west", None, 0.5).unwrap();
    let raised_seq = fleet.puts().last().map_or(0, |p| p.seq);

    let state = eventually("west to be rolled back", Duration::from_secs(20), || async {
        let state = controller.state("prom-rollback").await?;
        let west: Vec<(UnitPhase, Option<u32>)> = ["signin", "store"]
            .iter()
            .map(|svc| (unit(&state, "west", svc).phase, fleet.traffic("west", svc)))
            .collect();
        if west.iter().all(|(phase, at_fleet)| *phase == UnitPhase::RolledBack && at_fleet.unwrap_or(0) == 0) {
            Ok(state)
        } else {
            Err(format!("west: {west:?}"))
        }
    })
    .await;
    for svc in ["signin", "store"] {
        assert_eq!(unit(&state, "west", svc).percent, 0, "{svc}");
    }

    let state = eventually("east and north to finish", ROLLOUT, || async {
        let state = controller.state("prom-rollback").await?;
        let others: Vec<_> = ["east", "north"]
            .iter()
            .flat_map(|r| ["signin", "store"].map(|svc| (*r, svc)))
            .map(|(r, svc)| (r, svc, unit(&state, r, svc).phase, fleet.traffic(r, svc)))
            .collect();
        if others.iter().all(|(.., phase, at_fleet)| *phase == UnitPhase::Enabled && *at_fleet == Some(100)) {
            Ok(state)
        } else {
            Err(format!("{others:?}"))
        }
    })
    .await;
    // The failed region halts its wave once the others are done (README, failed regions).
    assert_eq!(state.waves[0].phase, WavePhase::Halted, "{:?}", state.waves);
    assert!(
        matches!(&state.waves[0].waiting, Some(WaitReason::WaveHalted { failed_regions, .. }) if failed_regions == &["west"]),
        "{:?}",
        state.waves[0]
    );

    let puts = fleet.puts();
    let walked = walked(&puts);
    for r in ["east", "north"] {
        for svc in ["signin", "store"] {
            assert_eq!(walked[&(r.to_string(), svc.to_string())], STEPS, "{r}/{svc}");
        }
    }
    for svc in ["signin", "store"] {
        let w = &walked[&("west".to_string(), svc.to_string())];
        assert_eq!(w.last(), Some(&0), "west/{svc} walked {w:?}");
    }
    // Nothing in west went up again after the error rate rose.
    let west_raises: Vec<_> = raises_after(&puts, raised_seq).into_iter().filter(|p| p.region == "west").collect();
    assert!(west_raises.is_empty(), "{west_raises:?}");

    // The cause is on record: west's check failed unhealthy failureLimit times in a row.
    let audit = controller.audit("prom-rollback").await;
    let failed = audit
        .iter()
        .find(|r| r.region.as_deref() == Some("west") && matches!(r.cause, Cause::HealthFailed { .. }))
        .unwrap_or_else(|| panic!("no health failure recorded for west: {audit:#?}"));
    match &failed.cause {
        Cause::HealthFailed { check, verdict, value, failures, baseline: None } => {
            assert_eq!((check.as_str(), *verdict, *failures), ("error-rate", HealthVerdict::Unhealthy, 2));
            assert!(value.is_some_and(|v| v > 0.05), "{value:?}");
        }
        _ => unreachable!(),
    }
    assert!(
        !audit.iter().any(|r| r.region.as_deref() != Some("west") && matches!(r.cause, Cause::HealthFailed { .. })),
        "only west failed: {audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prometheus_holds_every_unit_and_the_rollout_resumes_when_it_is_back() {
    let mut s = scenario("prom-outage", &["a", "b"], &["--exit-when-done"]).await;

    // Mid-rollout: some unit has reached its second step.
    eventually("a unit to reach 50 %", ROLLOUT, || async {
        let puts = s.fleet.puts();
        if puts.iter().any(|p| p.applied() && p.percent == 50) { Ok(()) } else { Err(format!("{:?}", walked(&puts))) }
    })
    .await;
    let stopped_seq = s.fleet.puts().last().map_or(0, |p| p.seq);
    s.prometheus.stop().await;
    let stopped_at = Instant::now();

    // The controller noticed: every progressing unit waits for health and has no good verdict.
    let noticed = eventually("every progressing unit to wait for health", Duration::from_secs(10), || async {
        let state = s.controller.state("prom-outage").await?;
        if holding_for_health(&state) { Ok(state) } else { Err(format!("{:#?}", state.units)) }
    })
    .await;
    let noticed_seq = s.fleet.puts().last().map_or(0, |p| p.seq);
    eprintln!(
        "prometheus stopped; noticed after {:?}; raised between the stop and then: {:?}",
        stopped_at.elapsed(),
        raises_after(&s.fleet.puts(), stopped_seq)
    );

    // Several step bakes without health: every unit stays where it was and keeps waiting.
    let window = STEP_BAKE * 4;
    let until = Instant::now() + window;
    while Instant::now() < until {
        let state = s.controller.state("prom-outage").await.unwrap();
        assert!(holding_for_health(&state), "a unit stopped waiting for health: {:#?}", state.units);
        for (now, then) in state.units.iter().zip(&noticed.units) {
            assert_eq!(now.percent, then.percent, "{}/{} moved without health", now.region, now.service);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let raises = raises_after(&s.fleet.puts(), noticed_seq);
    assert!(raises.is_empty(), "traffic raised while Prometheus was down: {raises:?}");
    let log = s.controller.log_text();
    assert!(log.contains("WARN  health:"), "the outage is reported on stderr: {log}");

    // Back again on the same port and storage: the rollout resumes and completes.
    s.prometheus.start_again().await;
    let status = s.controller.wait_exit(ROLLOUT).await;
    assert_eq!(status.code(), Some(0), "meridian run --exit-when-done: {}", s.controller.log_text());
    let walked = walked(&s.fleet.puts());
    for r in ["a", "b"] {
        for svc in ["signin", "store"] {
            assert_eq!(s.fleet.traffic(r, svc), Some(100), "{r}/{svc}");
            assert_eq!(walked[&(r.to_string(), svc.to_string())], STEPS, "{r}/{svc}");
        }
    }
}

/// At least one unit progresses, and every progressing one waits for health with only
/// error or no-data verdicts.
fn holding_for_health(state: &PlanState) -> bool {
    let progressing: Vec<_> = state.units.iter().filter(|u| u.phase == UnitPhase::Progressing).collect();
    !progressing.is_empty()
        && progressing.iter().all(|u| {
            matches!(u.waiting, Some(WaitReason::Health { .. }))
                && u.checks.iter().all(|c| matches!(c.verdict, Some(HealthVerdict::Error | HealthVerdict::NoData)))
        })
}
