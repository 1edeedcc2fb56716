//! Per-region check limits in use (README "Region overrides" and "Health"): the same
//! reading is judged by each region's effective `min`/`max`, and a region's `noData` and
//! `failureLimit` decide what the same verdict does to it. The plan is loaded from YAML
//! through meridian-core's validation, one region overriding in the plan's `regions`, one in
//! a `kind: Region` document. Prometheus is a scripted fake of its query API and the http
//! checks read a fleet endpoint, both on 127.0.0.1; `noData` and `failureLimit` are applied
//! by the engine, so those verdicts are followed through `engine::decide` on an injected clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::engine::{Observations, decide};
use meridian_core::health::HealthSample;
use meridian_core::health::HealthVerdict::*;
use meridian_core::manifest::NoDataPolicy;
use meridian_core::plan::{Origin, Plan};
use meridian_core::state::{PlanState, UnitPhase, UnitState, WaitReason};
use meridian_health::{EvalRequest, HealthSource, HttpSource, HttpSourceConfig, PrometheusConfig, PrometheusSource};
use serde_json::json;
use support::{Fleet, ScriptedApi, plan, sample_of};

/// `plan-limits` judges by the plan's check; `raised-max` lets the error rate up to 0.05;
/// `no-data-fails` fails on missing data (a region-level `noData`, over the check's default
/// `hold`); `patient` (a `Region` document) fails only after 3 failing evaluations.
fn thresholds_plan(check_source: &str) -> Plan {
    plan(&format!(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{ name: thresholds }}
spec:
  services: [{{ name: signin }}]
  regions:
    - {{ name: plan-limits, timezone: UTC }}
    - name: raised-max
      timezone: UTC
      checks:
        - {{ name: error-rate, max: 0.05 }}
    - name: no-data-fails
      timezone: UTC
      noData: fail
  waves:
    - {{ name: all, regions: [plan-limits, raised-max, no-data-fails, patient] }}
  health:
    interval: 30s
    checks:
      - name: error-rate
{check_source}
        max: 0.01
---
apiVersion: meridian.dev/v1alpha1
kind: Region
metadata: {{ name: patient }}
spec:
  plan: thresholds
  timezone: UTC
  checks:
    - {{ name: error-rate, failureLimit: 3 }}
"#
    ))
}

const PROMETHEUS_CHECK: &str = r#"        prometheus: { query: 'max by (region) (errors{service="{{service}}"})' }"#;

fn prometheus_plan() -> Plan {
    thresholds_plan(PROMETHEUS_CHECK)
}

/// The injected clock: every value, request and decision is dated from here.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn request(regions: &[&str], now: DateTime<Utc>) -> EvalRequest {
    EvalRequest {
        service: "signin".into(),
        wave: "all".into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        baseline: Vec::new(),
        now,
    }
}

/// An instant vector with one series per region, each with `value`, evaluated `at`.
fn vector(regions: &[&str], value: &str, at: DateTime<Utc>) -> String {
    let ts = at.timestamp_millis() as f64 / 1000.0;
    let result: Vec<String> = regions
        .iter()
        .map(|region| format!(r#"{{"metric":{{"region":"{region}"}},"value":[{ts},"{value}"]}}"#))
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","))
}

async fn evaluate_prometheus(body: String, regions: &[&str], now: DateTime<Utc>) -> Vec<HealthSample> {
    let api = ScriptedApi::start(200, body).await;
    let source = PrometheusSource::new(PrometheusConfig::with_url(api.url())).expect("source");
    let eval = source.evaluate(&prometheus_plan(), &request(regions, now)).await;
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    assert_eq!(api.queries().len(), 1, "one query serves every region: {:?}", api.queries());
    eval.samples
}

#[test]
fn the_plan_carries_each_regions_limits_and_where_they_came_from() {
    let plan = prometheus_plan();
    let check = |region: &str| {
        let r = plan.region_index(region).expect("region");
        plan.effective_settings(r).checks.into_iter().next().expect("one check")
    };
    let base = check("plan-limits");
    assert_eq!((base.max.value, base.max.origin), (Some(0.01), Origin::Plan));
    assert_eq!((base.no_data.value, base.failure_limit.value), (NoDataPolicy::Hold, 1));
    let raised = check("raised-max");
    assert_eq!((raised.max.value, raised.max.origin), (Some(0.05), Origin::Region));
    let no_data = check("no-data-fails");
    assert_eq!((no_data.no_data.value, no_data.no_data.origin), (NoDataPolicy::Fail, Origin::Region));
    assert_eq!(no_data.max.origin, Origin::Plan);
    let patient = check("patient");
    assert_eq!((patient.failure_limit.value, patient.failure_limit.origin), (3, Origin::Region));
}

#[tokio::test]
async fn the_same_value_is_healthy_under_a_raised_region_max_and_unhealthy_under_the_plans() {
    let regions = ["plan-limits", "raised-max"];
    let now = t0();
    let samples = evaluate_prometheus(vector(&regions, "0.03", now), &regions, now).await;
    assert_eq!(samples.len(), 2, "{samples:#?}");
    let strict = sample_of(&samples, "error-rate", "plan-limits");
    assert_eq!((strict.verdict, strict.value), (Unhealthy, Some(0.03)), "{strict:?}");
    assert_eq!(strict.detail.as_deref(), Some("0.03 is above max 0.01"));
    let raised = sample_of(&samples, "error-rate", "raised-max");
    assert_eq!((raised.verdict, raised.value, raised.detail.as_deref()), (Healthy, Some(0.03), None), "{raised:?}");

    // Above the region's own max, the region is unhealthy too, and says by which max.
    let samples = evaluate_prometheus(vector(&regions, "0.07", now), &regions, now).await;
    let raised = sample_of(&samples, "error-rate", "raised-max");
    assert_eq!((raised.verdict, raised.detail.as_deref()), (Unhealthy, Some("0.07 is above max 0.05")));
}

#[tokio::test]
async fn http_checks_judge_each_region_by_its_own_limits_too() {
    let fleet = Fleet::start().await;
    for region in ["plan-limits", "raised-max"] {
        fleet.set_json(region, json!({ "errorRate": 0.03 }));
    }
    let check = format!("        http: {{ url: '{}/json/{{{{region}}}}', pointer: /errorRate }}", fleet.base());
    let plan = thresholds_plan(&check);
    let source = HttpSource::new(HttpSourceConfig::default()).expect("source");
    let eval = source.evaluate(&plan, &request(&["plan-limits", "raised-max"], t0())).await;
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    let strict = sample_of(&eval.samples, "error-rate", "plan-limits");
    assert_eq!((strict.verdict, strict.detail.as_deref()), (Unhealthy, Some("0.03 is above max 0.01")));
    assert_eq!(sample_of(&eval.samples, "error-rate", "raised-max").verdict, Healthy, "{:#?}", eval.samples);
}

// ----- what the verdicts do, through the engine -----

/// The plan's units after a first decision at `start`: every region of the one wave at its
/// first step.
fn started(plan: &Plan, start: DateTime<Utc>) -> PlanState {
    let d = decide(plan, PlanState::new(plan), &Observations::default(), start);
    for u in &d.state.units {
        assert_eq!((u.phase, u.percent), (UnitPhase::Progressing, 1), "{u:?}");
    }
    d.state
}

fn after_samples(plan: &Plan, state: PlanState, samples: &[HealthSample], now: DateTime<Utc>) -> PlanState {
    let obs = Observations { health: samples, ..Observations::default() };
    decide(plan, state, &obs, now).state
}

fn unit<'a>(state: &'a PlanState, region: &str) -> &'a UnitState {
    state.unit(region, "signin").expect("unit")
}

#[tokio::test]
async fn a_missing_series_holds_under_the_plans_no_data_and_fails_a_region_with_no_data_fail() {
    let plan = prometheus_plan();
    let start = t0();
    let state = started(&plan, start);

    // Prometheus answers, but with no series for either region.
    let regions = ["plan-limits", "no-data-fails"];
    let now = start + TimeDelta::seconds(30);
    let samples = evaluate_prometheus(vector(&["elsewhere"], "0", now), &regions, now).await;
    for region in regions {
        let s = sample_of(&samples, "error-rate", region);
        assert_eq!(s.verdict, NoData, "the verdict is the same in both regions: {s:?}");
        assert!(s.detail.as_deref().is_some_and(|d| d.contains("no series with region=")), "{s:?}");
    }

    let state = after_samples(&plan, state, &samples, now);
    let held = unit(&state, "plan-limits");
    assert_eq!((held.phase, held.percent), (UnitPhase::Progressing, 1), "hold: no failure, no advance: {held:?}");
    assert_eq!(held.checks[0].consecutive_failures, 0);
    assert!(matches!(&held.waiting, Some(WaitReason::Health { checks }) if checks == &["error-rate"]), "{held:?}");
    let failed = unit(&state, "no-data-fails");
    assert_eq!((failed.phase, failed.percent), (UnitPhase::RolledBack, 0), "noData: fail rolls back: {failed:?}");
}

#[tokio::test]
async fn a_region_failure_limit_decides_how_many_unhealthy_evaluations_fail_it() {
    let plan = prometheus_plan();
    let regions = ["plan-limits", "patient"];
    let start = t0();
    let mut state = started(&plan, start);
    let mut phases = Vec::new();
    for k in 1..=3 {
        let now = start + TimeDelta::seconds(30 * k);
        let samples = evaluate_prometheus(vector(&regions, "0.03", now), &regions, now).await;
        assert!(samples.iter().all(|s| s.verdict == Unhealthy), "{samples:#?}");
        state = after_samples(&plan, state, &samples, now);
        let patient = unit(&state, "patient");
        phases.push((unit(&state, "plan-limits").phase, patient.phase, patient.checks[0].consecutive_failures));
    }
    assert_eq!(
        phases,
        [
            (UnitPhase::RolledBack, UnitPhase::Progressing, 1),
            (UnitPhase::RolledBack, UnitPhase::Progressing, 2),
            (UnitPhase::RolledBack, UnitPhase::RolledBack, 3),
        ]
    );
}
