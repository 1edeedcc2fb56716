#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]
use chrono::{TimeZone, Utc};
use meridian_core::simulate::{SimOptions, simulate};
use meridian_core::validate::load;

const PLAN: &str = r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: { name: demo }
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
      bake: 10m
    - name: asia
      regions: [jp]
  steps: [10, 50, 100]
  stepBake: 1m
  health:
    checks:
      - name: errors
        prometheus: { query: 'x{service="{{service}}"}' }
        max: 0.01
        minSamples: { query: 'y', min: 10 }
"#;

#[test]
fn smoke_restoration_holds_jp_until_granted() {
    let bundle = load(&[("p.yaml".into(), PLAN.into())], None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    let plan = &bundle.plans[0];
    let mut opts = SimOptions::new(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    opts.assume_healthy = true;
    let t = simulate(plan, &[], &opts);
    for r in &t.audit {
        println!("{}", r.summary());
    }
    let us = t.units.iter().find(|u| u.region == "us-east" && u.service == "store").unwrap();
    assert!(us.enabled_at.is_some());
    let jp = t.units.iter().find(|u| u.region == "jp" && u.service == "signin").unwrap();
    assert!(jp.steps.is_empty(), "{jp:?}");
}
