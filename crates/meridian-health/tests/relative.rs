//! Health relative to the fleet (README "Health relative to the fleet"): the Prometheus
//! provider judges a region against the regions the engine names as the baseline, reading
//! their values from the very same answer (no extra query), by the same rules a judged value
//! must pass. Prometheus is a scripted fake of its query API on 127.0.0.1; time is injected.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed unwrap is a failed test")]

mod support;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::health::HealthVerdict::*;
use meridian_core::plan::Plan;
use meridian_health::{EvalRequest, Evaluation, HealthSource, PrometheusConfig, PrometheusSource};
use support::{ScriptedApi, plan, sample_of};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// One check, `max: 0.1` and `relative: {maxRatio: 2, minBaselineRegions: 2}`, plus `extra`.
fn relative_plan(extra: &str) -> Plan {
    plan(&format!(
        r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{ name: fleet }}
spec:
  services: [{{ name: signin }}]
  regions:
    - {{ name: us-east, noData: ignore }}
    - {{ name: eu-west, noData: ignore }}
    - {{ name: eu-central }}
    - {{ name: jp }}
  waves:
    - {{ name: all, regions: [us-east, eu-west, eu-central, jp] }}
  health:
    interval: 30s
    checks:
      - name: error-rate
        prometheus: {{ query: 'ratio{{service="{{{{service}}}}"}}' }}
        max: 0.1
        relative: {{ maxRatio: 2, baseline: median, minBaselineRegions: 2 }}
{extra}"#
    ))
}

/// An instant vector: one series per (region, value, seconds before `t0`).
fn vector(series: &[(&str, &str, i64)]) -> String {
    let result: Vec<String> = series
        .iter()
        .map(|(region, value, ago)| {
            let ts = (t0() - TimeDelta::seconds(*ago)).timestamp_millis() as f64 / 1000.0;
            format!(r#"{{"metric":{{"region":"{region}"}},"value":[{ts},"{value}"]}}"#)
        })
        .collect();
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","))
}

fn request(regions: &[&str], baseline: &[&str]) -> EvalRequest {
    EvalRequest {
        service: "signin".into(),
        wave: "all".into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        baseline: baseline.iter().map(|r| r.to_string()).collect(),
        now: t0(),
    }
}

async fn evaluate(plan: &Plan, body: String, request: &EvalRequest) -> (Evaluation, Vec<String>) {
    let api = ScriptedApi::start(200, body).await;
    let source = PrometheusSource::new(PrometheusConfig::with_url(api.url())).unwrap();
    let eval = source.evaluate(plan, request).await;
    (eval, api.queries())
}

const FLEET: [(&str, &str, i64); 4] =
    [("us-east", "0.009", 1), ("eu-west", "0.007", 1), ("eu-central", "0.012", 1), ("jp", "0.031", 1)];

#[tokio::test]
async fn a_region_is_judged_against_the_median_of_the_enabled_regions_from_the_same_query() {
    let plan = relative_plan("");
    let req = request(&["jp"], &["us-east", "eu-west", "eu-central"]);
    let (eval, queries) = evaluate(&plan, vector(&FLEET), &req).await;
    assert_eq!(queries, [r#"ratio{service="signin"}"#], "one query, the baseline's values included");
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    assert_eq!(eval.samples.len(), 1, "baseline regions are read, never judged: {:#?}", eval.samples);
    let jp = sample_of(&eval.samples, "error-rate", "jp");
    assert_eq!((jp.verdict, jp.value), (Unhealthy, Some(0.031)), "{jp:?}");
    let b = jp.baseline.as_ref().unwrap();
    assert_eq!((b.value, b.limit), (Some(0.009), Some(0.018)));
    assert_eq!(b.regions, ["us-east", "eu-west", "eu-central"]);
    assert_eq!(
        jp.detail.as_deref(),
        Some("0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit 0.018")
    );

    // Healed: within twice the median, healthy, and the evidence is still there.
    let healed = [("jp", "0.018", 1), FLEET[0], FLEET[1], FLEET[2]];
    let (eval, _) = evaluate(&plan, vector(&healed), &req).await;
    let jp = sample_of(&eval.samples, "error-rate", "jp");
    assert_eq!((jp.verdict, jp.detail.as_deref()), (Healthy, None));
    assert_eq!(jp.baseline.as_ref().unwrap().value, Some(0.009));
}

#[tokio::test]
async fn unusable_baseline_values_do_not_count_and_too_few_give_no_verdict() {
    let plan = relative_plan("");
    // us-east is stale, eu-west NaN, eu-central has two series; kr is no region of the plan.
    let body = vector(&[
        ("us-east", "0.009", 120),
        ("eu-west", "NaN", 1),
        ("eu-central", "0.01", 1),
        ("eu-central", "0.02", 1),
        ("jp", "0.001", 1),
    ]);
    let req = request(&["jp"], &["us-east", "eu-west", "eu-central", "kr"]);
    let (eval, queries) = evaluate(&plan, body, &req).await;
    assert_eq!(queries.len(), 1);
    assert!(eval.errors.is_empty(), "a baseline region's bad series is not this evaluation's error: {:?}", eval.errors);
    let jp = sample_of(&eval.samples, "error-rate", "jp");
    assert_eq!(jp.verdict, NoData, "{jp:?}");
    assert_eq!(jp.baseline.as_ref().unwrap().regions, Vec::<String>::new());
    assert_eq!(
        jp.detail.as_deref(),
        Some(
            "0.001 vs no baseline (0 fully enabled regions with data; minBaselineRegions 2): the relative part has no verdict"
        )
    );

    // Absolute limits need no baseline.
    let (eval, _) = evaluate(&plan, vector(&[("jp", "0.5", 1)]), &req).await;
    let jp = sample_of(&eval.samples, "error-rate", "jp");
    assert_eq!((jp.verdict, jp.detail.as_deref()), (Unhealthy, Some("0.5 is above max 0.1")));
}

#[tokio::test]
async fn a_judged_region_is_never_its_own_baseline_and_the_traffic_guard_applies_to_baseline_regions() {
    // minSamples reads the same scripted vector: a region below 0.008 "samples" has too little
    // traffic, so eu-west's value does not count.
    let plan = relative_plan("        minSamples: { query: 'requests', min: 0.008 }\n");
    // eu-central is enabled in a wave still baking: judged, and in the baseline of the others.
    let req = request(&["eu-central", "jp"], &["us-east", "eu-west", "eu-central"]);
    let (eval, queries) = evaluate(&plan, vector(&FLEET), &req).await;
    assert_eq!(queries.len(), 2, "the check's query and its guard's, nothing more: {queries:?}");
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    let eu_central = sample_of(&eval.samples, "error-rate", "eu-central");
    let b = eu_central.baseline.as_ref().unwrap();
    assert_eq!(b.regions, ["us-east"], "neither itself nor the low-traffic eu-west");
    assert_eq!(eu_central.verdict, NoData, "one region, two required: {eu_central:?}");
    let jp = sample_of(&eval.samples, "error-rate", "jp");
    let b = jp.baseline.as_ref().unwrap();
    assert_eq!(b.regions, ["us-east", "eu-central"]);
    assert!((b.value.unwrap() - 0.0105).abs() < 1e-12, "the median of 0.009 and 0.012: {b:?}");
    assert_eq!(jp.verdict, Unhealthy, "0.031 is above twice 0.0105: {jp:?}");
}
