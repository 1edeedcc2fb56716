use crate::support::{meridian, stderr, stdout};

const START: &str = "2026-11-30T13:00:00Z"; // a Monday, 08:00 in New York

#[test]
fn restoration_projection_honours_windows_and_holds_out_of_scope_services() {
    let out = meridian(&["plan", "config/", "--plan", "network-restoration", "--assume-healthy", "--start", START]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // The window opens at 09:00 New York time, 14:00 UTC.
    assert!(
        text.contains("us-east     signin   1% 11-30 14:00") || text.contains("us-east  signin   1% 11-30 14:00"),
        "{text}"
    );
    // The ministry's letter covers signin and store, not music.
    assert!(
        text.contains("jp/music: approval jp-regulator (jp-regulator-2026-05) does not cover this region or service"),
        "{text}"
    );
    assert!(text.contains("finish   not within the projection"), "{text}");
}

#[test]
fn without_health_data_nothing_advances_past_the_first_step() {
    let out = meridian(&["plan", "config/demo.yaml", "--start", START, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("finishedAt").is_none());
    let units = v["units"].as_array().unwrap();
    let max_steps = units.iter().map(|u| u["steps"].as_array().unwrap().len()).max().unwrap();
    assert_eq!(max_steps, 1, "no unit may pass its first step without health data");
    let signin = units.iter().find(|u| u["region"] == "us-east" && u["service"] == "signin").unwrap();
    assert_eq!(signin["waiting"]["kind"], "health");
}

#[test]
fn a_simulated_grant_releases_the_gated_region() {
    let held = meridian(&["plan", "config/demo.yaml", "--assume-healthy", "--start", START, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert!(v.get("finishedAt").is_none());
    let jp = v["units"].as_array().unwrap().iter().find(|u| u["region"] == "jp" && u["service"] == "signin").unwrap();
    assert_eq!(jp["waiting"]["kind"], "approval");
    assert_eq!(jp["waiting"]["flag"], "jp-regulator");

    let granted = meridian(&[
        "plan",
        "config/demo.yaml",
        "--assume-healthy",
        "--start",
        START,
        "--grant",
        "jp-regulator@2026-11-30T13:10:00Z",
        "-o",
        "json",
    ]);
    assert_eq!(granted.status.code(), Some(0), "{}", stderr(&granted));
    let v: serde_json::Value = serde_json::from_slice(&granted.stdout).unwrap();
    assert!(v["finishedAt"].is_string(), "{v}");
    let jp = v["units"].as_array().unwrap().iter().find(|u| u["region"] == "jp" && u["service"] == "signin").unwrap();
    let first = jp["steps"][0]["at"].as_str().unwrap();
    assert!(first >= "2026-11-30T13:10:00Z", "jp got traffic at {first}, before its grant");
    // Evidence: the audit record of jp's first step names the approval that held.
    let start_record = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "jp" && r["cause"]["reason"] == "started")
        .unwrap();
    assert_eq!(start_record["cause"]["approvals"][0], "simulated-grant-1-jp-regulator");
}

#[test]
fn plan_rejects_invalid_input_and_unknown_plans() {
    let out = meridian(&["plan", "config/", "--plan", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no plan named \"nope\""));
    let out = meridian(&["plan", "config/", "--grant", "@2026-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(2));
}
