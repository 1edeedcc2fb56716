//! `meridian report`: the evidence report of a real rollout (`meridian demo --fast` against its
//! simulated fleet, with a regulator's approval, health checks, a rolled-back region and a
//! promote that accepts it), read from the state dir, rendered by a real headless Chromium;
//! and the same report over the API of a running controller, while the state dir is in use.

use std::time::{Duration, Instant};

use crate::dashboard::dump_dom;
use crate::support::{meridian, run_demo_fast, spawn_run, stderr, stdout};

fn run_demo(state: &std::path::Path) {
    let out = run_demo_fast(&["--state-dir".as_ref(), state.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_report_of_a_real_rollout_shows_regions_approvals_health_and_no_traffic_without_approval() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    run_demo(&state);
    let state_arg = state.to_str().unwrap();

    // Bad input names what exists.
    let out = meridian(&["report", "--plan", "nope", "--state-dir", state_arg]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("plan \"nope\" is unknown; plans: demo"), "{}", stderr(&out));
    let out = meridian(&["report", "--plan", "demo", "--region", "mars", "--state-dir", state_arg]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("has no region \"mars\" in its audit records; regions: us-east, eu-west, eu-central"),
        "{}",
        stderr(&out)
    );

    // Markdown, for a ticket.
    let out = meridian(&["report", "--plan", "demo", "--region", "jp", "--state-dir", state_arg]);
    let md = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{md}\n{}", stderr(&out));
    assert!(md.contains("- **Traffic without its approvals: no**"), "{md}");
    assert!(
        md.contains("| jp-regulator-demo | jp-regulator | Ministry liaison office | letter DEMO-0528-17 |"),
        "{md}"
    );
    assert!(!md.contains("## Region us-east"), "--region jp shows jp only:\n{md}");

    // JSON, for machines.
    let out = meridian(&["report", "--plan", "demo", "--format", "json", "--state-dir", state_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["trafficWithoutApprovals"], "no");
    assert_eq!(json["regions"].as_array().unwrap().len(), 6);

    // HTML to a file, rendered by Chromium from disk (it fetches nothing).
    let page = dir.path().join("report.html");
    let out = meridian(&[
        "report",
        "--plan",
        "demo",
        "--format",
        "html",
        "--out",
        page.to_str().unwrap(),
        "--state-dir",
        state_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dom = dump_dom(&format!("file://{}", page.display()));
    for region in ["us-east", "eu-west", "eu-central", "br-south", "jp", "kr"] {
        assert!(dom.contains(&format!("<h2>Region {region} <span")), "region {region} missing:\n{dom}");
    }
    // The approvals in force when jp first received traffic, with who, reference, scope, signature.
    for text in
        ["jp-regulator-demo", "Ministry liaison office", "letter DEMO-0528-17", "plans: demo; regions: jp", "unsigned"]
    {
        assert!(dom.contains(text), "{text} missing:\n{dom}");
    }
    // "no" for traffic without approvals, for the plan and every region; never "yes".
    assert!(dom.contains(r#"Traffic without its approvals: <span class="answer no">no</span>"#), "{dom}");
    assert_eq!(dom.matches(r#"<li class="traffic-without-approvals">Traffic without its approvals: <span class="answer no">no</span></li>"#).count(), 6);
    assert!(!dom.contains("answer yes") && !dom.contains("answer unproven"), "{dom}");
    // Health values observed during the bakes, against the limit.
    let value = dom.find(r#"<span class="value">0"#).unwrap_or_else(|| panic!("no health value shown:\n{dom}"));
    assert!(dom[value..].contains("max 0.05"), "{dom}");
    // The rolled-back region's cause, and the promote that accepted it, with who.
    assert!(dom.contains("onFailure: rollback-region"), "{dom}");
    assert!(
        dom.contains("completed by a promote of <strong>demo on-call</strong>, accepting failed regions br-south"),
        "{dom}"
    );
    assert!(dom.contains("promote on wave main by <strong>demo on-call</strong>"), "{dom}");
    // The audit chain was verified while the report was made; its head is the anchor.
    let head = dom.split("Audit chain head: ").nth(1).unwrap_or_default();
    assert!(head.split(' ').next().is_some_and(|h| h.parse::<meridian_core::chain::ChainHead>().is_ok()), "{dom}");
    assert!(head.contains("(verified, "), "{dom}");
}

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: restore}
spec:
  services: [{name: signin}]
  regions: [{name: us-east, timezone: America/New_York}]
  waves: [{name: canary, regions: [us-east]}]
  steps: [1, 100]
  stepBake: 1h
";

#[test]
fn the_report_reads_a_running_controller_over_its_api_and_its_state_dir_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let state = dir.path().join("state");
    let run = spawn_run(&config, &state, &["--no-auth"]).expect("meridian run starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = meridian(&["report", "--plan", "restore", "--server", &run.base]);
        if out.status.code() == Some(0) && stdout(&out).contains("| signin | 0% -> 1% |") {
            break;
        }
        assert!(Instant::now() < deadline, "no report over the API: {}{}", stdout(&out), stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = meridian(&["report", "--plan", "restore", "--server", &run.base]);
    let md = stdout(&out);
    assert!(md.contains("## Region us-east (wave canary)"), "{md}");
    assert!(md.contains("| 0% -> 1% | none | none | no |"), "a region that needs no approval:\n{md}");
    let out = meridian(&["report", "--plan", "nope", "--server", &run.base]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("plan \"nope\" is unknown; plans: restore"), "{}", stderr(&out));
    // The state dir is locked by the controller; the report reads it anyway, read-only.
    let out = meridian(&["report", "--plan", "restore", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), md);
}
