//! `meridian run`'s log: one line per transition, approval change and configuration change,
//! as text or as JSON lines (`--log-format json`), at the level asked for.

use std::time::Duration;

use crate::support::{meridian, spawn_run, stderr};

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: logged}
spec:
  services: [{name: web}]
  regions: [{name: us}, {name: eu, approvals: [eu-go]}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

fn config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    (dir, config)
}

#[test]
fn json_lines_say_every_transition_approval_and_the_exit() {
    let (dir, config) = config();
    let mut run =
        spawn_run(&config, &dir.path().join("state"), &["--no-auth", "--log-format", "json", "--exit-when-done"])
            .expect("meridian run starts");
    let granted = meridian(&["approve", "eu-go", "--plan", "logged", "--reference", "CHG-7", "--server", &run.base]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    let (code, printed) = run.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{printed}");
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .chain(run.stderr_head.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).collect::<Vec<_>>();
    // Every transition, with its subject as fields and in words.
    let transitions = of("transition");
    assert!(
        transitions.iter().any(|l| l["plan"] == "logged"
            && l["region"] == "eu"
            && l["service"] == "web"
            && l["message"].as_str().unwrap().contains("(0% -> 50%)")),
        "{printed}"
    );
    assert!(transitions.iter().all(|l| l["level"] == "info" && l["time"].is_string()), "{printed}");
    // The approval granted over the API, and the configuration applied at start.
    assert!(
        of("approval-granted").iter().any(|l| l["approval"].as_str().is_some_and(|a| a.starts_with("eu-go"))),
        "{printed}"
    );
    assert!(
        of("config").iter().any(|l| l["message"] == "configuration generation 1 applied: plans logged"),
        "{printed}"
    );
    // Why it exits.
    assert!(
        of("lifecycle").iter().any(|l| l["message"].as_str().unwrap().contains("every plan is complete")),
        "{printed}"
    );
}

#[test]
fn at_warn_the_transitions_are_not_logged() {
    let (dir, config) = config();
    let mut run =
        spawn_run(&config, &dir.path().join("state"), &["--no-auth", "--log-level", "warn", "--exit-when-done"])
            .expect("meridian run starts");
    let granted = meridian(&["approve", "eu-go", "--plan", "logged", "--reference", "CHG-7", "--server", &run.base]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    let (code, printed) = run.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("meridian run: every plan is complete"), "{printed}");
    assert!(!printed.contains("INFO"), "info lines at --log-level warn:\n{printed}");
}
