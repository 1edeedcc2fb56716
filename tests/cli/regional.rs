//! The plan split across files in `config/regional/`: `meridian validate` and `meridian plan`
//! on the directory, and a region defined twice across files.

use std::fs;

use crate::support::{meridian, repo_root, stderr, stdout};

/// A Tuesday, the day before Golden Week starts in Japan.
const START: &str = "2026-04-28T00:00:00Z";

#[test]
fn the_regional_example_validates_clean() {
    let out = meridian(&["validate", "--now", "2026-04-01T00:00:00Z", "config/regional/"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    // Clean, and it says which selector chose which regions.
    assert_eq!(
        stdout(&out),
        "note: plan store-relaunch, wave west: selector continent in (america,europe,south-america),tier notin (canary) \
         chose eu-west, br\n\
         note: plan store-relaunch, wave asia: selector continent=asia chose in-west, jp\n\
         4 files, 1 valid plan, 0 approvals: 0 errors, 0 warnings\n"
    );
    let json = meridian(&["validate", "-o", "json", "--now", "2026-04-01T00:00:00Z", "config/regional/"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        json["selections"][1],
        serde_json::json!({"plan": "store-relaunch", "wave": "asia", "selector": "continent=asia", "regions": ["in-west", "jp"]})
    );
}

/// `text` with runs of spaces squeezed to one, so table alignment does not matter.
fn squeezed(text: &str) -> String {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn plan_shows_where_regions_differ_how_waves_chose_them_and_the_freeze_in_the_timeline() {
    let out = meridian(&["plan", "config/regional/", "--assume-healthy", "--start", START, "--full"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = squeezed(&stdout(&out));
    for expected in [
        // Per region with an override: the effective values and whose they are.
        "jp (config/regional/regions/jp.yaml:8)",
        "steps 1, 5, 25, 50, 100 region",
        "stepBake 30m region",
        "windows Mon-Fri 09:00-18:00 region",
        "onFailure rollback-region plan",
        "freeze year-end change freeze 2026-12-19..2027-01-04 plan",
        "freeze Golden Week 2026-04-29..2026-05-06 region",
        "br (config/regional/regions/br.yaml:8)",
        "onFailure pause region",
        "in-west (config/regional/regions/in-west.yaml:8)",
        "error-rate max 0.02 region",
        "error-rate failureLimit 5 region",
        "error-rate noData hold plan",
        "actuator http POST https://traffic.in-west.example.net/v2/{{service}}/weight region",
        // How each wave's regions were chosen.
        "regions: us-east (by name)",
        "regions: in-west (by selector continent=asia), jp (by selector continent=asia)",
        // Golden Week holds jp: its first step waits for the freeze to end (2026-05-06 24:00
        // in Tokyo) and for its next business-hours window (Thursday 09:00 in Tokyo).
        "jp signin 1% 05-07 00:00 5% 05-07 00:30",
        "in-west signin 1% 04-29 02:30",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    // us-east and eu-west override nothing: no settings block for them.
    assert!(!text.contains("us-east (config/regional/plan.yaml"), "{text}");
}

#[test]
fn plan_json_carries_each_regions_settings_with_their_origins() {
    let out = meridian(&["plan", "config/regional/", "--assume-healthy", "--start", START, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let regions = v["regions"].as_array().unwrap();
    let names: Vec<&str> = regions.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["us-east", "eu-west", "br", "in-west", "jp"], "plan regions, then Region files in path order");
    let jp = &regions[4];
    assert_eq!(jp["wave"], "asia");
    assert_eq!(jp["chosenBy"], serde_json::json!({"by": "selector", "selector": "continent=asia"}));
    assert_eq!(jp["settings"]["stepBake"], serde_json::json!({"value": "30m", "origin": "region"}));
    assert_eq!(jp["settings"]["onFailure"], serde_json::json!({"value": "rollback-region", "origin": "plan"}));
    let held = v["audit"].as_array().unwrap().iter().find(|r| {
        r["region"] == "jp" && r["cause"]["reason"] == "blocked" && r["cause"]["waiting"]["kind"] == "frozen"
    });
    let held = held.expect("jp's block by Golden Week is audited");
    assert_eq!(held["cause"]["waiting"]["reason"], "Golden Week");
    assert_eq!(held["cause"]["waiting"]["until"], "2026-05-06T15:00:00Z");
}

#[test]
fn a_region_defined_in_two_files_is_an_error_at_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root().join("config/regional");
    fs::create_dir(dir.path().join("regions")).unwrap();
    for file in ["plan.yaml", "regions/jp.yaml", "regions/br.yaml", "regions/in-west.yaml"] {
        fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    // Someone copies Japan's file for a new region and forgets to rename it.
    fs::copy(root.join("regions/jp.yaml"), dir.path().join("regions/kr.yaml")).unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let out = meridian(&["validate", "--now", "2026-04-01T00:00:00Z", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let first = format!("{path}/regions/jp.yaml:8");
    let second =
        format!("{path}/regions/kr.yaml:8:9: error: region \"jp\" of plan \"store-relaunch\" is defined twice");
    assert!(text.contains(&second), "{text}");
    assert!(text.contains(&format!("it is first defined at {first};")), "{text}");
}
