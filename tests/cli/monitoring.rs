//! The alert rules (`deploy/prometheus/alerts.yaml`): `promtool check rules` accepts them,
//! `promtool test rules` passes their unit tests (`alerts_test.yaml`), and every alert has a
//! test time where it fires and one where it must not.
//!
//! promtool comes from Debian's prometheus package (`scripts/install-test-deps`); without it
//! these tests fail and say so, they never skip.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use meridian_fleet::testkit::promtool_binary;

use crate::support::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&read("deploy/prometheus/alerts.yaml")).expect("the rules are YAML")
}

fn rule_tests() -> serde_yaml::Value {
    serde_yaml::from_str(&read("deploy/prometheus/alerts_test.yaml")).expect("the rule tests are YAML")
}

/// Every alert's (name, expression).
fn alerts(rules: &serde_yaml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert").to_string();
            out.push((name, rule["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

/// Run promtool in `deploy/prometheus`; its success and what it printed.
fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(promtool_binary()).args(args).current_dir(dir).output().expect("run promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn the_rules_pass_promtool_and_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() {
    let dir = repo_root().join("deploy/prometheus");
    let names: Vec<String> = alerts(&rules()).into_iter().map(|(name, _)| name).collect();
    let (ok, said) = promtool(&["check", "rules", "alerts.yaml"], &dir);
    assert!(ok, "promtool check rules:\n{said}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", names.len())), "{said}");
    let (ok, said) = promtool(&["test", "rules", "alerts_test.yaml"], &dir);
    assert!(ok, "promtool test rules:\n{said}");

    // (alert, fires) pairs the unit tests check.
    let mut checked: BTreeSet<(String, bool)> = BTreeSet::new();
    for test in rule_tests()["tests"].as_sequence().expect("tests") {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let alert = case["alertname"].as_str().expect("alertname").to_string();
            let fires = case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
            checked.insert((alert, fires));
        }
    }
    for name in &names {
        for fires in [true, false] {
            assert!(
                checked.contains(&(name.clone(), fires)),
                "alerts_test.yaml has no case where {name} {}",
                if fires { "fires" } else { "stays quiet" }
            );
        }
    }
    let unknown: Vec<_> = checked.iter().filter(|(a, _)| !names.contains(a)).collect();
    assert!(unknown.is_empty(), "unit tests of alerts that do not exist: {unknown:?}");
}
