//! Plans that depend on plans, end to end: a real `meridian run --no-auth` with two plans read
//! from one directory. checkout-restore's canary waits for signin-restore's canary, which waits
//! for an `ops-go` approval. While it is missing, the API, `meridian status` and the blocked
//! reason say what checkout-restore waits for and no store unit gets traffic; once an Approval
//! file grants it, signin-restore's canary completes and checkout-restore proceeds to the end.
//!
//! Every wait is a condition polled with a deadline.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{RunningMeridian, spawn_run};

const SIGNIN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: signin-restore}
spec:
  services: [{name: signin}]
  regions: [{name: us-east}, {name: eu-west}]
  waves:
    - {name: canary, regions: [us-east, eu-west], approvals: [ops-go]}
  steps: [50, 100]
  stepBake: 3s
  actuator: {log: {}}
";

const CHECKOUT: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: checkout-restore}
spec:
  services: [{name: store}]
  regions: [{name: us-east}, {name: eu-west}]
  waves:
    - name: canary
      regions: [us-east]
      dependsOn: [{plan: signin-restore, wave: canary}]
    - {name: rest, regions: [eu-west]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

const GO: &str = "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: ops-go-1}
spec: {flag: ops-go, grantedBy: on-call, reference: change 42}
";

fn get(runtime: &tokio::runtime::Runtime, url: String) -> Value {
    runtime.block_on(async {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
    })
}

/// Poll `GET /api/v1/plans/NAME` until `done` says so (at most 60 s).
fn wait_for(
    runtime: &tokio::runtime::Runtime,
    run: &RunningMeridian,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let detail = get(runtime, format!("{}/api/v1/plans/{name}", run.base));
        if done(&detail) {
            return detail;
        }
        assert!(Instant::now() < deadline, "plan {name} never got there:\n{detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(run: &RunningMeridian, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["status", name, "--server", &run.base])
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_TOKEN_FILE")
        .output()
        .expect("run meridian status")
}

fn records(runtime: &tokio::runtime::Runtime, run: &RunningMeridian, plan: &str) -> Vec<Value> {
    let v = get(runtime, format!("{}/api/v1/audit?plan={plan}&limit=1000", run.base));
    v["records"].as_array().unwrap().clone()
}

fn at(record: &Value) -> chrono::DateTime<chrono::Utc> {
    record["at"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_plan_waits_for_the_other_plans_wave_says_so_and_then_proceeds() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("signin.yaml"), SIGNIN).unwrap();
    std::fs::write(config.join("checkout.yaml"), CHECKOUT).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");

    // signin-restore waits for its approval; checkout-restore waits for signin-restore.
    let waiting = "waits for plan signin-restore wave canary";
    let store = wait_for(&runtime, &run, "checkout-restore", |d| {
        d["waveWaiting"].as_array().is_some_and(|w| w.iter().any(|w| w["reason"] == waiting))
    });
    assert_eq!(store["phase"], "pending", "{store:#}");
    assert_eq!(store["dependsOn"][0]["plan"], "signin-restore");
    assert_eq!(store["dependsOn"][0]["planWave"], "canary");
    assert_eq!(store["dependsOn"][0]["wave"], "canary");
    assert_eq!(store["dependsOn"][0]["holds"], false);
    let units = store["waiting"].as_array().unwrap();
    assert!(units.iter().any(|u| u["region"] == "us-east" && u["reason"] == waiting), "{units:?}");
    assert!(store["state"]["units"].as_array().unwrap().iter().all(|u| u["percent"] == 0));
    let out = status(&run, "checkout-restore");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(waiting), "{text}");
    // Held for a while (no time alone lifts it): still nothing of the store has traffic.
    std::thread::sleep(Duration::from_millis(1500));
    let store = get(&runtime, format!("{}/api/v1/plans/checkout-restore", run.base));
    assert!(store["state"]["units"].as_array().unwrap().iter().all(|u| u["percent"] == 0), "{store:#}");

    // The approval arrives as a file: signin-restore's canary completes, then checkout-restore
    // runs to the end.
    std::fs::write(config.join("go.yaml"), GO).unwrap();
    wait_for(&runtime, &run, "checkout-restore", |d| d["phase"] == "complete");
    let signin = wait_for(&runtime, &run, "signin-restore", |d| d["phase"] == "complete");
    assert_eq!(signin["phase"], "complete");
    let store = get(&runtime, format!("{}/api/v1/plans/checkout-restore", run.base));
    assert_eq!(store["dependsOn"][0]["holds"], true);

    // The order, from the audit trail: no store unit started before signin's canary completed.
    let canary_done = records(&runtime, &run, "signin-restore")
        .iter()
        .find(|r| r["wave"] == "canary" && r["event"]["type"] == "wave" && r["event"]["to"] == "complete")
        .map(at)
        .expect("signin-restore's canary completed");
    let store_records = records(&runtime, &run, "checkout-restore");
    let starts: Vec<&Value> = store_records.iter().filter(|r| r["cause"]["reason"] == "started").collect();
    assert_eq!(starts.len(), 2, "{store_records:#?}");
    for start in &starts {
        assert!(at(start) >= canary_done, "{start} before signin-restore's canary completed at {canary_done}");
    }
    // And at once: checkout-restore is decided before signin-restore (by name), and nothing
    // else happens when signin-restore completes (no wake-up, no actuation), so only deciding
    // again in the same pass starts it.
    let waited = at(starts[0]) - canary_done;
    assert!(waited < chrono::TimeDelta::seconds(2), "checkout-restore started {waited} after the canary completed");
}
