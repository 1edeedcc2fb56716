//! The Grafana dashboard (`deploy/grafana/meridian.json`) and the alert rules
//! (`deploy/prometheus/alerts.yaml`) against what the controller really exports:
//!
//! - `promtool check rules` accepts the rules, `promtool test rules` passes their unit tests
//!   (`alerts_test.yaml`), and every alert has a test time where it fires and one where it
//!   must not;
//! - every dashboard query is valid PromQL (promtool checks them as recording rules);
//! - every metric name the dashboard, the rules and the rules' unit tests use is one a running
//!   `meridian run` exports, once it was made to do what some series wait for (a health read
//!   and an actuation that fail, a region rolled back and one failed, a configuration reload,
//!   an approval about to expire), and every label matcher they use selects something on its
//!   page (a `state="rolled-back"` the controller never writes would never fire). The
//!   exceptions are listed below with the reason and checked their own way;
//! - a real Prometheus scraping that controller: each alert's expression selects what the
//!   situation should raise and nothing else, and every dashboard query answers with data.
//!
//! promtool comes from Debian's prometheus package (`scripts/install-test-deps`); without it
//! these tests fail and say so, they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use meridian_fleet::testkit::{Prometheus, ScrapeTarget, eventually, promtool_binary};
use meridian_fleet::{Fleet, FleetConfig, FleetHandle};
use serde_json::Value;

use crate::support::{repo_root, spawn_run};

/// Per-unit series, exported only with `meridian run --unit-metrics`: the rules must not use
/// them, and a dashboard panel that does says so in its description.
const OPT_IN: &[&str] =
    &["meridian_unit_state", "meridian_unit_traffic_percent", "meridian_health_value", "meridian_health_limit"];
/// Exported by `meridian kube` only (1 on the leader, 0 on the followers); checked below on
/// the metrics module the leader uses, and on both replicas in `kube::two_replicas_...`.
const KUBE_ONLY: &[&str] = &["meridian_leader"];
/// Prometheus's own series about its targets.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/meridian.json")).expect("the dashboard is JSON")
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

/// Every Grafana panel (rows' nested panels included) with the queries of its targets.
fn panels(dashboard: &Value) -> Vec<(String, String, Vec<String>)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String, Vec<String>)>) {
        for p in panels.as_array().into_iter().flatten() {
            let exprs: Vec<String> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_string))
                .collect();
            let title = p["title"].as_str().unwrap_or_default().to_string();
            let description = p["description"].as_str().unwrap_or_default().to_string();
            if p["type"] != "row" {
                assert!(!exprs.is_empty(), "panel {title:?} has no query");
            }
            out.push((title, description, exprs));
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's queries with Grafana's variables replaced, so Prometheus can parse them.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .flat_map(|(_, _, exprs)| exprs)
        .map(|e| e.replace("$__rate_interval", "1m").replace("$plan", ".*"))
        .collect()
}

#[test]
fn the_dashboard_lays_out_its_panels_on_the_grid_and_every_query_is_valid_promql() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "meridian");
    // Unique ids, within Grafana's 24 columns, no two panels on the same cell, every query on
    // the dashboard's Prometheus variable (chosen at import).
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(ids.insert(p["id"].as_u64().expect("id")), "panel id {} twice", p["id"]);
        let g = |k: &str| p["gridPos"][k].as_u64().unwrap_or_else(|| panic!("{title}: gridPos.{k}"));
        assert!(g("x") + g("w") <= 24, "{title} is wider than the grid");
        for x in g("x")..g("x") + g("w") {
            for y in g("y")..g("y") + g("h") {
                if let Some(other) = cells.insert((x, y), title.to_string()) {
                    panic!("{title} overlaps {other}");
                }
            }
        }
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!("      - record: dashboard_query_{i}\n        expr: {}\n", serde_json::json!(q)));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yaml"), &rules).unwrap();
    let (ok, said) = promtool(&["check", "rules", "dashboard.yaml"], dir.path());
    assert!(ok, "a dashboard query is not valid PromQL:\n{said}\n{rules}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", queries.len())), "{said}");
}

/// The metric names a PromQL expression selects: what is left once strings, label matchers,
/// ranges, grouping label lists, functions, keywords and numbers are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out strings, `{...}` and `[...]`.
    let mut plain = String::new();
    let mut closing: Option<char> = None;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, closing) {
            (Some(q), _) => {
                if c == q {
                    quote = None;
                }
                plain.push(' ');
            }
            (None, _) if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                plain.push(' ');
            }
            (None, Some(end)) => {
                if c == end {
                    closing = None;
                }
                plain.push(' ');
            }
            (None, None) if c == '{' || c == '[' => {
                closing = Some(if c == '{' { '}' } else { ']' });
                plain.push(' ');
            }
            (None, None) => plain.push(c),
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '$' {
            // A number or a duration (7, 3600, 0.99, 5m), or a Grafana variable.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._$".contains(chars[i])) {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        // `sum by (...) (...)`: an aggregation with its grouping first.
        let rest: String = chars[next..].iter().take(8).collect();
        let grouped = ["by", "without"].iter().any(|k| {
            rest.strip_prefix(k)
                .is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        });
        match word.as_str() {
            // Their label list in parentheses is not a selector.
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                if called {
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                }
            }
            "and" | "or" | "unless" | "bool" | "offset" | "inf" | "nan" => {}
            _ if called || grouped => {} // a function or an aggregation
            _ => {
                names.insert(word);
            }
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql_as_prometheus_would() {
    let names = metric_names(
        r#"sum by (plan, check) (increase(meridian_x_total{job="m",verdict=~"a|b"}[5m])) > 0 unless on (plan) meridian_y == 1 and meridian_z < 7 * 24 * 3600 or absent(up{job="meridian"})"#,
    );
    let want: BTreeSet<String> = ["meridian_x_total", "meridian_y", "meridian_z", "up"].map(String::from).into();
    assert_eq!(names, want);
    let names =
        metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket{plan=~\"$plan\"}[$__rate_interval])))");
    assert_eq!(names, BTreeSet::from(["a_bucket".to_string()]));
}

/// One label matcher: label, operator (`=`, `!=`, `=~`, `!~`), value.
type Matcher = (String, String, String);

/// The selectors with a matcher list in an expression: the metric and its matchers.
fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let before = &rest[..open];
        let name_start =
            before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
        let name = before[name_start..].to_string();
        let close = open + rest[open..].find('}').expect("a matcher list is closed");
        // Split on commas outside quotes.
        let (mut parts, mut part, mut quoted) = (Vec::new(), String::new(), false);
        for c in rest[open + 1..close].chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    part.push(c);
                }
                ',' if !quoted => parts.push(std::mem::take(&mut part)),
                _ => part.push(c),
            }
        }
        parts.push(part);
        let matchers = parts
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let op_at = p.find(['=', '!']).unwrap_or_else(|| panic!("no operator in matcher {p:?} of {expr}"));
                let op_len = if p[op_at..].starts_with("=~") || p[op_at..].starts_with("!") { 2 } else { 1 };
                let value = p[op_at + op_len..].trim().trim_matches('"').to_string();
                (p[..op_at].trim().to_string(), p[op_at..op_at + op_len].to_string(), value)
            })
            .collect();
        if !name.is_empty() {
            out.push((name, matchers));
        }
        rest = &rest[close + 1..];
    }
    out
}

#[test]
fn selectors_are_read_with_their_matchers() {
    let found = selectors(r#"sum(rate(a_total{job="m",verdict=~"x|y"}[5m])) / b{plan!="p,q"} unless c"#);
    let m = |l: &str, op: &str, v: &str| (l.to_string(), op.to_string(), v.to_string());
    assert_eq!(
        found,
        vec![
            ("a_total".to_string(), vec![m("job", "=", "m"), m("verdict", "=~", "x|y")]),
            ("b".to_string(), vec![m("plan", "!=", "p,q")]),
        ]
    );
}

/// Labels Prometheus adds to every series of a target, not the controller.
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod"];

/// What the page lacks of the matchers the dashboard and the rules use: each label must be
/// on the metric's series, and each `label="value"` must be there as written (a rule that
/// selects a state the controller never exports would never fire). The unit tests' series
/// are checked for their label names only, since their values are made up.
fn unmatched(page: &str, exprs: &[(String, String)], test_series: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |place: &str, expr: &str, values_too: bool| {
        for (name, matchers) in selectors(expr) {
            if KUBE_ONLY.contains(&name.as_str()) || PROMETHEUS_OWN.contains(&name.as_str()) {
                continue;
            }
            let prefix = format!("{name}{{");
            let lines: Vec<&str> = page.lines().filter(|l| l.starts_with(&prefix)).collect();
            for (label, op, value) in matchers.iter().filter(|(l, _, _)| !TARGET_LABELS.contains(&l.as_str())) {
                let pair = format!("{label}=\"{value}\"");
                let wanted = if values_too && op == "=" { pair } else { format!("{label}=\"") };
                if !lines.iter().any(|l| l.contains(&wanted)) {
                    out.push(format!("{place}: no {name} series with {wanted}"));
                }
            }
        }
    };
    for (place, expr) in exprs {
        check(place, expr, true);
    }
    for (place, series) in test_series {
        check(place, series, false);
    }
    out
}

/// (where, expression or series), e.g. ("alert MeridianDown", "up{...} == 0").
type Placed = Vec<(String, String)>;

/// The dashboard's and the rules' expressions, and the unit tests' series, with where each is.
fn expressions() -> (Placed, Placed) {
    let mut exprs = Vec::new();
    for (title, _, queries) in panels(&dashboard()) {
        exprs.extend(queries.into_iter().map(|q| (format!("dashboard panel {title:?}"), q)));
    }
    exprs.extend(alerts(&rules()).into_iter().map(|(alert, expr)| (format!("alert {alert}"), expr)));
    let mut series = Vec::new();
    for test in rule_tests()["tests"].as_sequence().expect("tests") {
        for s in test["input_series"].as_sequence().into_iter().flatten() {
            let place = format!("unit test {:?}", test["name"].as_str().unwrap_or_default());
            series.push((place, s["series"].as_str().expect("series").to_string()));
        }
    }
    (exprs, series)
}

/// Every metric name used, with where: the dashboard's queries and its plan variable, the
/// rules, and the series the rules' unit tests feed in.
fn used_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let dashboard = dashboard();
    for (title, _, exprs) in panels(&dashboard) {
        for e in exprs {
            for n in metric_names(&e) {
                used.entry(n).or_default().insert(format!("dashboard panel {title:?}"));
            }
        }
    }
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["definition"].as_str() {
            let metric = q.trim_start_matches("label_values(").split(',').next().unwrap_or_default().trim();
            assert!(!metric.is_empty() && q.starts_with("label_values("), "variable query {q}");
            used.entry(metric.to_string()).or_default().insert(format!("dashboard variable {}", var["name"]));
        }
    }
    for (alert, expr) in alerts(&rules()) {
        for n in metric_names(&expr) {
            used.entry(n).or_default().insert(format!("alert {alert}"));
        }
    }
    for test in rule_tests()["tests"].as_sequence().expect("tests") {
        for s in test["input_series"].as_sequence().into_iter().flatten() {
            let series = s["series"].as_str().expect("series");
            let name = series.split('{').next().unwrap_or_default().to_string();
            used.entry(name).or_default().insert(format!("unit test {:?}", test["name"].as_str().unwrap_or_default()));
        }
    }
    used
}

/// The sample names (histograms' `_bucket`, `_sum`, `_count` included) of a metrics page.
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// A plan on the simulated fleet: its units move and its first check reads values; its
/// second reads a port nothing listens on (error verdicts, `connect` health errors), so they
/// stay at their first step. us and br fail their error rate: us is rolled back, br keeps its
/// traffic (`onFailure: pause`). jp needs an approval that expires in 3 hours
/// (`meridian_approval_expiring`); the plan has a progress deadline.
fn watched(fleet: &FleetHandle) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: watched}}
spec:
  services: [{{name: web}}]
  regions: [{{name: us}}, {{name: jp, approvals: [jp-regulator]}}, {{name: br, onFailure: pause}}]
  waves: [{{name: all, regions: [us, jp, br]}}]
  steps: [50, 100]
  stepBake: 1s
  progressDeadline: 1h
  health:
    interval: 1s
    checks:
      - name: error-rate
        http: {{url: '{metrics}', metric: error_ratio}}
        max: 0.05
      - name: unreachable
        http: {{url: 'http://127.0.0.1:1/{{{{region}}}}/{{{{service}}}}/metrics', metric: error_ratio}}
        max: 0.05
  actuator:
    http: {{url: '{traffic}', timeout: 2s}}
",
        metrics = fleet.unit_metrics_url_template(),
        traffic = fleet.traffic_url_template(),
    )
}

/// A plan that completes at once: enabled units.
const DONE: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: done}
spec:
  services: [{name: web}]
  regions: [{name: eu}]
  waves: [{name: all, regions: [eu]}]
  steps: [100]
  stepBake: 200ms
  actuator: {log: {}}
";

/// A plan whose target refuses every connection: actuation errors and their durations.
const UNREACHABLE: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: unreachable}
spec:
  services: [{name: web}]
  regions: [{name: eu}]
  waves: [{name: all, regions: [eu]}]
  steps: [100]
  actuator:
    http: {url: 'http://127.0.0.1:1/{{region}}/{{service}}/traffic', timeout: 1s, retries: 0}
";

fn approval(name: &str, flag: &str, expires: chrono::DateTime<chrono::Utc>) -> String {
    let expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        "apiVersion: meridian.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}}}\nspec:\n  flag: {flag}\n  \
         grantedBy: Ministry liaison office\n  reference: letter 17\n  expires: \"{expires}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_use_is_one_a_running_controller_exports() {
    let used = used_names();
    for (name, places) in &used {
        let rules: Vec<_> = places.iter().filter(|p| !p.starts_with("dashboard")).collect();
        if OPT_IN.contains(&name.as_str()) {
            assert!(rules.is_empty(), "{name} is exported with --unit-metrics only, yet {rules:?} use it");
        }
    }
    for (title, description, exprs) in panels(&dashboard()) {
        let opt_in: Vec<_> =
            exprs.iter().flat_map(|e| metric_names(e)).filter(|n| OPT_IN.contains(&n.as_str())).collect();
        assert!(
            opt_in.is_empty() || (title.contains("--unit-metrics") && description.contains("--unit-metrics")),
            "panel {title:?} uses {opt_in:?} without saying it needs --unit-metrics"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let now = chrono::Utc::now();
    let fleet = Fleet::start(FleetConfig::new(["us", "jp", "br"], ["web"])).await.expect("start the fleet");
    fleet.set_error_ratio("us", None, 0.5).unwrap();
    fleet.set_error_ratio("br", None, 0.5).unwrap();
    std::fs::write(config.join("watched.yaml"), watched(&fleet)).unwrap();
    std::fs::write(config.join("done.yaml"), DONE).unwrap();
    std::fs::write(config.join("unreachable.yaml"), UNREACHABLE).unwrap();
    std::fs::write(config.join("jp.yaml"), approval("jp-letter", "jp-regulator", now + chrono::TimeDelta::hours(3)))
        .unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth", "--unit-metrics"])
        .unwrap_or_else(|(code, said)| panic!("meridian run did not start ({code:?}):\n{said}"));
    // An edit once it runs: a configuration reload.
    std::fs::write(config.join("kr.yaml"), approval("kr-letter", "kr-regulator", now + chrono::TimeDelta::days(30)))
        .unwrap();

    let needed: BTreeSet<&str> =
        used.keys().map(String::as_str).filter(|n| !KUBE_ONLY.contains(n) && !PROMETHEUS_OWN.contains(n)).collect();
    let (exprs, test_series) = expressions();
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let page = reqwest::get(format!("{}/metrics", run.base)).await.unwrap().text().await.unwrap();
        let missing: Vec<&str> = needed.iter().copied().filter(|n| !exported(&page).contains(*n)).collect();
        let unmatched = unmatched(&page, &exprs, &test_series);
        if missing.is_empty() && unmatched.is_empty() {
            break page;
        }
        if Instant::now() > deadline {
            let missing: BTreeMap<_, _> = missing.iter().map(|n| (*n, &used[*n])).collect();
            panic!(
                "not exported by meridian run within 60 s: {missing:#?}\nmatchers that select nothing: \
                 {unmatched:#?}\n\n{page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // What the controller was made to do shows in the series, not only in their names.
    for line in [
        r#"meridian_config_reloads_total{result="applied"}"#,
        r#"meridian_actuation_errors_total{error="#,
        r#"meridian_health_errors_total{check="unreachable",error="connect",plan="watched"}"#,
        r#"meridian_health_verdicts_total{check="error-rate",plan="watched",verdict="healthy"}"#,
        r#"meridian_approval_expiring{approval="jp-letter",flag="jp-regulator",plan="watched"} 1"#,
        r#"meridian_regions{plan="watched",state="rolled-back"} 1"#,
        r#"meridian_regions{plan="watched",state="failed"} 1"#,
    ] {
        assert!(page.contains(line), "no {line} on the page:\n{page}");
    }

    in_prometheus(&run.base).await;

    // The leader gauge: not in the standalone mode, and on the metrics module's page once a
    // replica leads (what `meridian kube` does when it wins the lease).
    for name in KUBE_ONLY {
        assert!(!exported(&page).contains(*name), "{name} is kube-only, yet meridian run exports it");
    }
    let metrics = meridian_controller::metrics::Metrics::new();
    metrics.lead("meridian-0");
    let leader_page = metrics.scrape(&Default::default(), chrono::Utc::now());
    for name in KUBE_ONLY {
        assert!(exported(&leader_page).contains(*name), "a leading replica does not export {name}:\n{leader_page}");
    }
}

/// A real Prometheus scraping the controller above as job `meridian`: each alert's expression
/// selects what this situation should raise (a rule without `for:` fires as soon as it does;
/// the others would after their `for:`), nothing else, and every dashboard query answers with
/// data (the leader's only in the Kubernetes mode).
async fn in_prometheus(base: &str) {
    let address = base.trim_start_matches("http://");
    let prometheus = Prometheus::start(vec![ScrapeTarget::new("meridian", address)]).await;
    prometheus.wait_scraping(Duration::from_secs(30)).await;
    let alerts: BTreeMap<String, String> = alerts(&rules()).into_iter().collect();
    // alert -> the label the situation decides and the values it must select, exactly.
    let expected: [(&str, &str, &[&str]); 8] = [
        ("MeridianRegionRolledBack", "plan", &["watched"]),
        ("MeridianRegionFailed", "plan", &["watched"]),
        ("MeridianApprovalExpiringSoon", "approval", &["jp-letter"]),
        ("MeridianHealthDataMissing", "check", &["unreachable"]),
        ("MeridianActuationErrors", "error", &["connect"]),
        ("MeridianRolloutStalled", "plan", &[]),
        ("MeridianDown", "job", &[]),
        ("MeridianNoLeader", "job", &[]),
    ];
    assert_eq!(expected.len(), alerts.len(), "a new alert needs its expectation here");
    for (alert, label, values) in expected {
        let expr = &alerts[alert];
        let want: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
        eventually(&format!("{alert} to select {want:?}"), Duration::from_secs(30), || async {
            let got: BTreeSet<String> = prometheus
                .query(expr)
                .await?
                .into_iter()
                .map(|s| s.labels.get(label).cloned().unwrap_or_default())
                .collect();
            if got == want { Ok(()) } else { Err(format!("{expr} selects {label} {got:?}")) }
        })
        .await;
    }
    for query in dashboard_queries(&dashboard()) {
        if metric_names(&query).iter().any(|n| KUBE_ONLY.contains(&n.as_str())) {
            continue;
        }
        eventually(&format!("dashboard query {query} to answer with data"), Duration::from_secs(30), || async {
            let series = prometheus.query(&query).await?;
            if series.is_empty() { Err("no data".to_string()) } else { Ok(()) }
        })
        .await;
    }
}
