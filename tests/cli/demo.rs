//! `meridian demo --fast`: the README's first command, end to end.

use crate::support::run_demo_fast;

#[test]
fn the_demo_tells_its_whole_story() {
    let out = run_demo_fast(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"));
    position("dashboard on http://127.0.0.1:");
    // br-south fails and is rolled back; the operator promotes the halted wave.
    position("br-south/store: progressing -> failed");
    let halted = position("wave main: running -> halted: failed regions: br-south");
    // The demo says what on-call does next, and how, before it does it.
    let advice = position("on-call now: see why on the dashboard (http://127.0.0.1:");
    assert!(text.contains("`meridian promote demo --wave main --server http://127.0.0.1:"), "{text}");
    assert!(advice > halted && position("promoting wave main") > advice);
    // jp is held until the ministry's grant, and its first step names the approval.
    let granted = position("the ministry grants jp-regulator");
    let jp_started = position("jp/signin: blocked -> progressing (0% -> 10%): started (approvals: jp-regulator-demo)");
    assert!(jp_started > granted, "jp got traffic before its approval");
    position("rollout complete");
    let summary = &text[position("rollout complete")..];
    for (region, state) in [
        ("us-east", "enabled 100%"),
        ("eu-west", "enabled 100%"),
        ("eu-central", "enabled 100%"),
        ("br-south", "rolled-back 0%"),
        ("jp", "enabled 100%"),
        ("kr", "enabled 100%"),
    ] {
        let line = summary.lines().find(|l| l.trim_start().starts_with(&format!("{region} "))).unwrap();
        assert_eq!(line.matches(state).count(), 3, "{line}");
    }
}

/// Without --exit the dashboard and the API stay up after the rollout, until Ctrl-C (SIGINT),
/// which ends the demo with exit 0.
#[test]
fn without_exit_the_demo_keeps_serving_until_ctrl_c() {
    use std::io::BufRead as _;
    use std::time::{Duration, Instant};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--fast", "--listen", "127.0.0.1:0", "--timeout", "2m"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn meridian demo");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut seen = String::new();
    let addr = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            child.kill().ok();
            panic!("no 'stays up' line within 150 s:\n{seen}")
        });
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("the dashboard stays up on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    assert!(seen.contains("rollout complete"), "{seen}");
    // Still answering after the rollout ended.
    let body = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["status", "demo", "-o", "json", "--server", &format!("http://{addr}")])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&body.stdout).unwrap_or_default();
    assert_eq!(status["phase"], "complete", "{}", String::from_utf8_lossy(&body.stdout));
    assert!(child.try_wait().unwrap().is_none(), "the demo ended without Ctrl-C");
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the demo did not end within 20 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}
