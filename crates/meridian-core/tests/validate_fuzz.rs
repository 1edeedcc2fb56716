//! Validation never panics, whatever it is given, and always says where and what.
//!
//! Bounded property tests that CI runs: arbitrary bytes, YAML-shaped noise, and mutations
//! of a valid plan. For open-ended fuzzing, see the cargo-fuzz target in `fuzz/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use chrono::{DateTime, TimeZone, Utc};
use meridian_core::validate::{Bundle, load};
use proptest::prelude::*;
use proptest::test_runner::Config;

const VALID: &str = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: network-restoration
spec:
  services:
    - name: signin
    - name: store
      after: [signin]
  regions:
    - name: us-east
      timezone: America/New_York
    - name: jp
      timezone: Asia/Tokyo
      approvals: [jp-regulator]
  waves:
    - name: canary
      regions: [us-east]
      bake: 30m
      approvals: [ops-go]
    - name: asia
      regions: [jp]
      maxParallel: 1
      bake: 1h
  steps: [1, 10, 50, 100]
  stepBake: 5m
  windows:
    - days: [Mon, Tue, Wed, Thu]
      from: "09:00"
      to: "17:00"
  health:
    interval: 30s
    checks:
      - name: error-rate
        prometheus:
          query: 'sum by (region) (rate(errors{service="{{service}}"}[2m]))'
        max: 0.01
        failureLimit: 3
        noData: hold
        minSamples: { query: 'sum by (region) (rate(requests[2m]))', min: 100 }
  onFailure: rollback-region
  actuator:
    http:
      url: https://control.{{region}}.example.net/v1/{{service}}/traffic
---
apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata:
  name: jp-regulator-2026-05
spec:
  flag: jp-regulator
  grantedBy: Ministry liaison office
  grantedAt: 2026-05-28T00:00:00Z
  expires: 2026-12-31T00:00:00Z
  scope: { plans: [network-restoration] }
"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

/// Load one file and check what every run must guarantee.
fn load_checked(text: &str) -> Bundle {
    let bundle = load(&[("fuzz.yaml".to_string(), text.to_string())], Some(now()));
    let lines = text.lines().count().max(1);
    for d in &bundle.report.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d} points before the file starts");
        assert!(d.line <= lines + 1, "{d} points past the end of a {lines}-line file");
        assert!(!d.message.trim().is_empty(), "empty message at {}:{}", d.line, d.column);
        assert!(!d.to_string().is_empty());
    }
    if !bundle.plans.is_empty() || !bundle.approvals.is_empty() {
        // Whatever was accepted came with no error about its document.
        assert!(bundle.documents.len() >= bundle.plans.len() + bundle.approvals.len());
    }
    bundle
}

/// Cases per property run: `PROPTEST_CASES` when set (the README's way to search longer),
/// `default` otherwise. A value that is not a number stops the run instead of being ignored.
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_CASES={v:?} is not a number of cases"))
        }
        _ => default,
    }
}

/// 256 cases per property by default (seconds in a debug build).
fn config() -> Config {
    // Failures are printed with their input; no regression files next to the sources.
    Config { cases: cases(256), failure_persistence: None, ..Config::default() }
}

/// YAML-significant fragments, to reach deeper than random characters do.
const TOKENS: &[&str] = &[
    "apiVersion: meridian.dev/v1alpha1\n",
    "kind: RolloutPlan\n",
    "kind: Approval\n",
    "metadata: {name: p}\n",
    "spec:\n",
    "  services:\n",
    "  regions:\n",
    "  waves:\n",
    "    - name: a\n",
    "      regions: [a]\n",
    "      after: [a]\n",
    "  steps: [1, 100]\n",
    "  health:\n",
    "    checks:\n",
    "  windows:\n",
    "      from: \"09:00\"\n",
    "---\n",
    "...\n",
    "- ",
    ": ",
    "\n",
    "  ",
    "\t",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "!tag ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "#",
    "{{",
    "}}",
    "~",
    "0",
    "-1",
    "1e999",
    ".nan",
    "99999999999999999999999",
    "x",
    "é",
    "\u{feff}",
    "%YAML 1.2\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Scalar(usize, &'static str),
    InsertKey(usize, &'static str),
    Indent(usize, bool),
}

const SCALARS: &[&str] = &[
    "",
    "0",
    "-1",
    "1.5",
    "~",
    "[]",
    "{}",
    "[1, 2]",
    "{a: 1}",
    "'x'",
    "\"\"",
    "true",
    "1e999",
    ".inf",
    "99999999999999999999",
    "-5m",
    "0s",
    "5",
    "24:00",
    "Asia/Tokio",
    "{{nope}}",
    "{{",
    "&x anchored",
    "*missing",
    "!tagged value",
    "[unclosed",
    "jp",
    "signin",
];

const KEYS: &[&str] = &["name", "after", "regions", "bake", "steps", "extra", "spec", "kind", "max", "<<", "?"];

fn mutation(lines: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..lines).prop_map(Mutation::Delete),
        (0..lines).prop_map(Mutation::Duplicate),
        (0..lines, 0..lines).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (0..lines, prop::sample::select(SCALARS)).prop_map(|(i, s)| Mutation::Scalar(i, s)),
        (0..lines, prop::sample::select(KEYS)).prop_map(|(i, k)| Mutation::InsertKey(i, k)),
        (0..lines, any::<bool>()).prop_map(|(i, more)| Mutation::Indent(i, more)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let at = |i: usize| i % lines.len();
        match *m {
            Mutation::Delete(i) => {
                lines.remove(at(i));
            }
            Mutation::Duplicate(i) => {
                let line = lines[at(i)].clone();
                lines.insert(at(i), line);
            }
            Mutation::Swap(a, b) => {
                let (a, b) = (at(a), at(b));
                lines.swap(a, b);
            }
            Mutation::Scalar(i, scalar) => {
                let i = at(i);
                let line = &lines[i];
                lines[i] = match line.find(": ") {
                    Some(colon) => format!("{}: {scalar}", &line[..colon]),
                    None => match line.find("- ") {
                        Some(dash) => format!("{}- {scalar}", &line[..dash]),
                        None => format!("{line}{scalar}"),
                    },
                };
            }
            Mutation::InsertKey(i, key) => {
                let i = at(i);
                let indent: String = lines[i].chars().take_while(|c| *c == ' ').collect();
                lines.insert(i, format!("{indent}{key}: x"));
            }
            Mutation::Indent(i, more) => {
                let i = at(i);
                lines[i] = if more {
                    format!("  {}", lines[i])
                } else {
                    lines[i].strip_prefix("  ").unwrap_or(&lines[i]).to_string()
                };
            }
        }
    }
    lines.join("\n")
}

#[test]
fn the_valid_plan_yields_a_plan_and_an_approval() {
    let bundle = load_checked(VALID);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    assert_eq!(bundle.plans.len(), 1);
    assert_eq!(bundle.approvals.len(), 1);
}

#[test]
fn hostile_shapes_do_not_panic() {
    let deep_flow = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_block: String = (0..300).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let many_docs = "---\n".repeat(2000);
    let many_errors = VALID.replace("name: ", "nam: ");
    let self_merge = "a: &a\n  <<: *a\n";
    for text in
        ["", "\0", "---", "~", "\u{feff}", &deep_flow, &deep_block, laughs, &many_docs, &many_errors, self_merge]
    {
        load_checked(text);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        load_checked(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_shaped_noise_does_not_panic(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80)) {
        load_checked(&tokens.concat());
    }

    #[test]
    fn yaml_like_characters_do_not_panic(text in "[a-z0-9 :\\-\\[\\]{},&*!|>'\"#?%@`\n\t.~]{0,400}") {
        load_checked(&text);
    }

    #[test]
    fn mutated_plans_do_not_panic(mutations in prop::collection::vec(mutation(VALID.lines().count()), 1..6)) {
        let text = apply(VALID, &mutations);
        let first = load_checked(&text);
        // Validation is a pure function of its input.
        let second = load(&[("fuzz.yaml".to_string(), text.clone())], Some(now()));
        prop_assert_eq!(first.report, second.report);
    }
}
