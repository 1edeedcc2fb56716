use std::fs;

use crate::support::{meridian, stderr, stdout};

const NOW: &str = "2026-06-01T00:00:00Z";

#[test]
fn the_example_configs_are_valid() {
    let out = meridian(&["validate", "--now", NOW, "config/"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    // The demo plan reads health without Prometheus, so its check has no traffic guard: the one
    // warning, explained in config/demo.yaml.
    let text = stdout(&out);
    assert!(text.contains("config/demo.yaml:") && text.contains("has no traffic guard"), "{text}");
    let files = walk(&crate::support::repo_root().join("config")).len();
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.starts_with(&format!("{files} files, ")), "{summary}");
    assert!(summary.ends_with(" 2 approvals: 0 errors, 1 warning"), "{summary}");
}

#[test]
fn errors_are_located_with_hints_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    fs::write(
        &file,
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: bad}
spec:
  services: [{name: signin}]
  regions: [{name: jp, timezone: Asia/Tokio}]
  waves:
    - name: asia
      regions: [jpn]
      bake: 10m
  steps: [1, 10, 50]
",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = meridian(&["validate", "--now", NOW, path]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for expected in [
        format!("{path}:6:34: error: unknown time zone \"Asia/Tokio\" for region \"jp\"; did you mean \"Asia/Tokyo\"?"),
        format!("{path}:9:17: error: unknown region \"jpn\" in wave \"asia\"; did you mean \"jp\"?"),
        format!("{path}:11:18: error: steps end at 50, not 100; append 100: a rollout is done only at full traffic"),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // Every line is located in the file and the run ends with its counts.
    for line in text.lines().filter(|l| l.contains(": error: ") || l.contains(": warning: ")) {
        assert!(line.starts_with(&format!("{path}:")), "{line}");
    }
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with("1 file, 0 valid plans, 0 approvals: 3 errors")),
        "{text}"
    );
}

#[test]
fn strict_turns_risk_warnings_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("risky.yaml");
    fs::write(
        &file,
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: risky}
spec:
  services: [{name: signin}]
  regions: [{name: a}, {name: b}]
  waves: [{name: all, regions: [a, b]}]
",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let relaxed = meridian(&["validate", path]);
    assert_eq!(relaxed.status.code(), Some(0), "{}", stdout(&relaxed));
    assert!(stdout(&relaxed).contains("warning: first wave \"all\" has 2 regions"));
    let strict = meridian(&["validate", "--strict", path]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stdout(&strict).contains("error: first wave \"all\" has 2 regions"));
}

#[test]
fn json_output_counts_and_locates() {
    let out = meridian(&["validate", "-o", "json", "--now", NOW, "config/"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0);
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["files"], walk(&crate::support::repo_root().join("config")).len());
    let plans: Vec<&str> = v["plans"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    for plan in ["network-restoration", "demo"] {
        assert!(plans.contains(&plan), "{plans:?}");
    }
    let d = &v["diagnostics"][0];
    assert_eq!((d["file"].as_str(), d["severity"].as_str()), (Some("config/demo.yaml"), Some("warning")));
    assert!(d["line"].as_u64().unwrap() > 1 && d["column"].as_u64().unwrap() >= 1, "{d}");
}

#[test]
fn usage_errors_exit_2() {
    let out = meridian(&["validate", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no/such/dir: no such file or directory"));
    let out = meridian(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = meridian(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = fs::read_to_string(crate::support::repo_root().join("deploy/schema/meridian.schema.json")).unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn every_example_config_points_editors_at_the_schema() {
    for entry in walk(&crate::support::repo_root().join("config")) {
        let text = fs::read_to_string(&entry).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let prefix = "# yaml-language-server: $schema=";
        assert!(first.starts_with(prefix), "{} does not start with the schema modeline", entry.display());
        let target = entry.parent().unwrap().join(&first[prefix.len()..]);
        assert!(target.exists(), "{}: modeline points at missing {}", entry.display(), target.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out
}
