//! `-o json|yaml|wide` on the client commands, write commands included, and the client config
//! file that names the server.

use std::process::{Command, Output};

use crate::support::{spawn_run, stderr, stdout};

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: shown}
spec:
  services: [{name: web}]
  regions: [{name: us}, {name: eu, approvals: [eu-go]}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 1h
  actuator: {log: {}}
";

/// `meridian ARGS` with no --server: the server comes from the config file `config`.
fn client(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env("MERIDIAN_CONFIG", config)
        .env_remove("MERIDIAN_SERVER")
        .output()
        .expect("run meridian")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}{}", out.status.code(), stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn every_command_speaks_json_and_yaml_and_the_tables_widen_with_the_server_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let client_config = dir.path().join("client.yaml");
    std::fs::write(&client_config, format!("server: {}\n", run.base)).unwrap();

    // A write command, as data.
    let granted: serde_json::Value = serde_json::from_str(&ok(client(
        &client_config,
        &["approve", "eu-go", "--plan", "shown", "--reference", "CHG-5", "--name", "eu-go-1", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(granted["approval"]["name"], "eu-go-1");
    let paused: serde_yaml::Value =
        serde_yaml::from_str(&ok(client(&client_config, &["pause", "shown", "--wave", "rest", "-o", "yaml"]))).unwrap();
    assert_eq!(paused["command"]["kind"].as_str(), Some("pause"), "{paused:?}");

    // Read commands as YAML: the same data as JSON.
    let yaml: serde_yaml::Value = serde_yaml::from_str(&ok(client(&client_config, &["status", "-o", "yaml"]))).unwrap();
    let json: serde_yaml::Value = serde_json::from_str(&ok(client(&client_config, &["status", "-o", "json"]))).unwrap();
    assert_eq!(yaml, json);
    assert_eq!(yaml["plans"][0]["name"].as_str(), Some("shown"));
    let approvals: serde_yaml::Value =
        serde_yaml::from_str(&ok(client(&client_config, &["approvals", "-o", "yaml"]))).unwrap();
    assert_eq!(approvals["approvals"][0]["reference"].as_str(), Some("CHG-5"));

    // Wide tables: more columns.
    let narrow = ok(client(&client_config, &["status"]));
    let wide = ok(client(&client_config, &["status", "-o", "wide"]));
    assert!(
        !narrow.contains("OUTCOME") && wide.lines().next().unwrap().ends_with("FAILED  ABORTED  OUTCOME"),
        "{wide}"
    );
    let wide = ok(client(&client_config, &["approvals", "-o", "wide"]));
    assert!(wide.lines().next().unwrap().contains("REFERENCE"), "{wide}");
    assert!(wide.contains("CHG-5"), "{wide}");

    // A flag still wins over the file.
    let elsewhere = client(&client_config, &["status", "--server", "http://127.0.0.1:9"]);
    assert_eq!(elsewhere.status.code(), Some(3), "{}", stderr(&elsewhere));
    assert!(stderr(&elsewhere).contains("cannot reach http://127.0.0.1:9"), "{}", stderr(&elsewhere));
}

#[test]
fn a_broken_client_config_is_a_located_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.yaml");
    std::fs::write(&config, "server: http://127.0.0.1:9\ntoken: abc\n").unwrap();
    let out = client(&config, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let expected = format!("{}:2:1: error: unknown field `token`", config.display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let missing = client(&dir.path().join("nope.yaml"), &["status"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(stderr(&missing).contains("cannot read the client config"), "{}", stderr(&missing));
}

#[test]
fn the_audit_log_and_the_configuration_status_are_read_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let client_config = dir.path().join("client.yaml");
    std::fs::write(&client_config, format!("server: {}\n", run.base)).unwrap();

    let log = ok(client(&client_config, &["audit", "log", "--plan", "shown", "--limit", "2"]));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].ends_with(" UTC shown #1 wave canary: pending -> running: wave started"), "{log}");
    let page: serde_json::Value =
        serde_json::from_str(&ok(client(&client_config, &["audit", "log", "--after", "1", "-o", "json"]))).unwrap();
    assert_eq!(page["records"][0]["seq"], 2, "{page}");

    let status = ok(client(&client_config, &["config"]));
    assert!(status.starts_with("configuration generation 1 in force, loaded "), "{status}");
    // A broken edit: the command says so, with the located error, and exits 1.
    std::fs::write(config.join("plan.yaml"), PLAN.replace("steps: [50, 100]", "steps: [50, 10]")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rejected = loop {
        let out = client(&client_config, &["config"]);
        if out.status.code() == Some(1) {
            break stdout(&out);
        }
        assert!(std::time::Instant::now() < deadline, "the edit was not rejected: {}", stdout(&out));
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(rejected.contains("the last edit was REJECTED at "), "{rejected}");
    assert!(rejected.contains("plan.yaml:"), "{rejected}");
}
