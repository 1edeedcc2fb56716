//! `meridian run --notifications FILE`: webhook sinks told of what happens, against a real
//! HTTP receiver on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{meridian, spawn_run, stderr};

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: told}
spec:
  services: [{name: web}, {name: api}]
  regions: [{name: us}, {name: eu, approvals: [eu-go]}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

/// What a receiver got: each request's path and JSON body, in order.
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A receiver of POSTs on 127.0.0.1, and what it got.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                seen.lock().unwrap().push((path, value));
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (base, got)
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sinks_are_told_what_they_subscribed_to_from_the_wait_for_an_approval_to_the_completion() {
    let (base, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    std::fs::write(dir.path().join("chat-url"), format!("{base}/chat/T0/secretpart\n")).unwrap();
    let sinks = dir.path().join("notifications.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n  - name: everything\n    url: {base}/all\n  - name: chat\n    format: slack\n    urlFile: {}\n    \
             topics: [approval-needed, completions]\n",
            dir.path().join("chat-url").display()
        ),
    )
    .unwrap();
    let sinks_arg = sinks.display().to_string();
    let mut run = spawn_run(
        &config,
        &dir.path().join("state"),
        &["--no-auth", "--exit-when-done", "--notifications", &sinks_arg],
    )
    .expect("meridian run starts");
    assert!(run.stderr_head.contains("notifications to sinks everything, chat"), "{}", run.stderr_head);
    let generic = |got: &[(String, serde_json::Value)]| -> Vec<serde_json::Value> {
        got.iter().filter(|(p, _)| p == "/all").map(|(_, v)| v.clone()).collect()
    };
    // eu waits for eu-go once canary is done: one notice for the region, not one per service.
    wait_for("the approval-needed notice", Duration::from_secs(60), || {
        generic(&got.lock().unwrap()).iter().any(|v| v["topic"] == "approval-needed")
    });
    let granted = meridian(&["approve", "eu-go", "--plan", "told", "--reference", "CHG-9", "--server", &run.base]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    let (code, printed) = run.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{printed}");
    wait_for("the completion notice", Duration::from_secs(30), || {
        generic(&got.lock().unwrap())
            .iter()
            .any(|v| v["summary"].as_str().is_some_and(|s| s.contains("rollout complete")))
    });
    let got = got.lock().unwrap().clone();
    let all = generic(&got);
    let summaries: Vec<&str> = all.iter().filter_map(|v| v["summary"].as_str()).collect();
    let needed: Vec<&serde_json::Value> = all.iter().filter(|v| v["topic"] == "approval-needed").collect();
    assert_eq!(needed.len(), 1, "{summaries:#?}");
    assert_eq!((needed[0]["region"].as_str(), needed[0]["flag"].as_str()), (Some("eu"), Some("eu-go")));
    assert_eq!(needed[0]["source"], "meridian");
    assert!(
        summaries.iter().any(|s| s.starts_with("approval eu-go") && s.contains("granted by") && s.contains("CHG-9")),
        "{summaries:#?}"
    );
    for wave in ["canary", "rest"] {
        assert!(summaries.contains(&format!("told: wave {wave} complete").as_str()), "{summaries:#?}");
    }
    assert!(summaries.contains(&"told: rollout complete"), "{summaries:#?}");
    assert!(all.iter().all(|v| v["topic"] != "failures"), "{summaries:#?}");
    // The chat sink: Slack's shape, and only its topics (no grant).
    let chat: Vec<&str> =
        got.iter().filter(|(p, _)| p == "/chat/T0/secretpart").filter_map(|(_, v)| v["text"].as_str()).collect();
    assert!(chat.iter().any(|t| t.starts_with(":warning: *meridian* (approval-needed): told: region eu")), "{chat:#?}");
    assert!(chat.iter().any(|t| t.contains("(completions): told: rollout complete")), "{chat:#?}");
    assert!(chat.iter().all(|t| !t.contains("(approvals)")), "{chat:#?}");
    // The URLs are secrets: not in the log.
    assert!(!printed.contains("secretpart") && !run.stderr_head.contains("secretpart"), "{printed}");
}

#[test]
fn a_bad_sinks_file_stops_the_start_with_every_problem_located_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let sinks = dir.path().join("n.yaml");
    std::fs::write(
        &sinks,
        "sinks:\n  - name: chat\n    url: ftp://hooks.invalid/T0/secretpart\n    topics: [failure]\n  - name: pager\n    \
         urlEnv: MERIDIAN_TEST_UNSET_HOOK\n",
    )
    .unwrap();
    let sinks_arg = sinks.display().to_string();
    let Err((code, printed)) =
        spawn_run(&config, &dir.path().join("state"), &["--no-auth", "--notifications", &sinks_arg])
    else {
        panic!("meridian run started with a bad sinks file")
    };
    assert_eq!(code, Some(1), "{printed}");
    let file = sinks.display().to_string();
    for expected in [
        format!("{file}:3:10: error: url is not an http or https URL"),
        format!("{file}:4:14: error: unknown topic \"failure\""),
        format!("{file}:6:13: error: environment variable MERIDIAN_TEST_UNSET_HOOK is not set"),
    ] {
        assert!(printed.contains(&expected), "missing {expected:?} in:\n{printed}");
    }
    assert!(!printed.contains("secretpart"), "{printed}");
}
