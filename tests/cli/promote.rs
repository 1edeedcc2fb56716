//! `meridian promote PLAN --full` against a real `meridian run` (dry-run `log` actuator): a
//! plan with hour-long step and wave bakes completes in seconds, each step still sent on its
//! own, and the API's plan detail shows the full promotion while it is in force. Every wait
//! is a condition with a deadline.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::spawn_run;

/// Three waves of one region each; steps held an hour, waves baked an hour; no health checks,
/// no actuator (a dry run).
const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: slow}
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions: [{name: a}, {name: b}, {name: c}]
  waves:
    - {name: one, regions: [a], bake: 1h}
    - {name: two, regions: [b], bake: 1h}
    - {name: three, regions: [c], bake: 1h}
  steps: [1, 10, 100]
  stepBake: 1h
";

fn get(base: &str, path: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { reqwest::get(format!("{base}{path}")).await.unwrap().json().await.unwrap() })
}

/// Wait (at most 20 s) until the API's `path` answers something `ok` accepts.
fn wait_api(base: &str, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = get(base, path);
        if ok(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "the API never reported {what}: {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn meridian(base: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--server", base])
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_TOKEN_FILE")
        .output()
        .expect("run meridian")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn promote_full_completes_a_plan_of_hour_long_bakes_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let base = run.base.clone();
    let signin_a = |d: &Value| d["state"]["units"][0]["percent"] == 1 && d["state"]["units"][0]["region"] == "a";
    wait_api(&base, "/api/v1/plans/slow", "a/signin at 1 %", signin_a);

    // Paused first, so the promotion is seen in force before it runs the plan to its end.
    assert_eq!(meridian(&base, &["pause", "slow"]).status.code(), Some(0));
    wait_api(&base, "/api/v1/plans/slow", "the pause", |d| d["phase"] == "paused");
    let o = meridian(&base, &["promote", "slow", "--full"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("promote --full accepted for plan slow (by anonymous)"),
        "{o:?}"
    );
    let detail = wait_api(&base, "/api/v1/plans/slow", "the full promotion", |d| {
        d["state"]["fullPromotions"].as_array().is_some_and(|p| !p.is_empty())
    });
    let promotion = &detail["state"]["fullPromotions"][0];
    assert_eq!(
        (promotion["by"].as_str(), promotion.get("wave"), promotion.get("region")),
        (Some("anonymous"), None, None)
    );
    assert_eq!(detail["state"]["units"][0]["percent"], 1, "paused: nothing moved");

    // A resume lets it run: every bake (over 10 h in all) is skipped.
    let resumed = Instant::now();
    assert_eq!(meridian(&base, &["resume", "slow"]).status.code(), Some(0));
    let o = meridian(&base, &["status", "slow", "--wait", "--interval", "200ms", "--timeout", "30s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let took = resumed.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("promote --full: a plan of 1 h bakes completed {took:?} after the resume");

    let detail = get(&base, "/api/v1/plans/slow");
    assert_eq!(detail["phase"], "complete");
    assert!(detail["state"].get("fullPromotions").is_none(), "ended with its scope: {detail}");
    let audit = get(&base, "/api/v1/audit?plan=slow&limit=1000");
    let records = audit["records"].as_array().unwrap();
    let causes: Vec<&str> = records.iter().filter_map(|r| r["cause"]["reason"].as_str()).collect();
    assert!(causes.contains(&"fullPromotionDeclared"), "{causes:?}");
    assert_eq!(causes.iter().filter(|c| **c == "waveBaked").count(), 3);
    for r in records.iter().filter(|r| matches!(r["cause"]["reason"].as_str(), Some("waveBaked" | "completed"))) {
        assert_eq!(r["cause"]["promoted"], true, "{r}");
        assert_eq!(r["cause"]["full"]["by"], "anonymous", "{r}");
    }
    let ended: Vec<&Value> = records.iter().filter(|r| r["event"]["type"] == "fullPromotionEnded").collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["cause"]["reason"], "scopeCompleted");
    // Every step was its own move: 1 -> 10 -> 100 for each unit, none skipped.
    for region in ["a", "b", "c"] {
        for service in ["signin", "store"] {
            let steps: Vec<u64> = records
                .iter()
                .filter(|r| r["region"] == region && r["service"] == service && r["event"]["type"] == "unit")
                .filter_map(|r| {
                    let (from, to) = (r["event"]["from_percent"].as_u64()?, r["event"]["to_percent"].as_u64()?);
                    (to > from).then_some(to)
                })
                .collect();
            assert_eq!(steps, [1, 10, 100], "{region}/{service}");
        }
    }
}
