//! Engine benchmarks: one decision on a 1,000-region x 5-service plan in mid-rollout, and a
//! whole simulated rollout of that plan. Run with `cargo bench -p meridian-core`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::fmt::Write;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use meridian_core::simulate::{SimOptions, simulate};
use meridian_core::state::PlanState;
use meridian_core::validate::load;
use meridian_core::{HealthSample, HealthVerdict, Observations, Plan, decide};

const ZONES: [&str; 6] = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC", "Asia/Kolkata"];

/// 1,000 regions in 4 waves, 5 services with dependencies, a window and a health check.
fn big_plan() -> Plan {
    let mut y = String::from(
        "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: big}\nspec:\n  services:\n    - name: s0\n    - {name: s1, after: [s0]}\n    - {name: s2, after: [s0]}\n    - {name: s3, after: [s1]}\n    - {name: s4, after: [s2, s3]}\n  regions:\n",
    );
    for r in 0..1000 {
        writeln!(y, "    - {{name: r{r:04}, timezone: {}}}", ZONES[r % ZONES.len()]).unwrap();
    }
    y.push_str("  waves:\n");
    for (name, from, to, par, bake) in [
        ("canary", 0, 1, 1, "30m"),
        ("w1", 1, 100, 50, "1h"),
        ("w2", 100, 500, 100, "1h"),
        ("w3", 500, 1000, 200, "1h"),
    ] {
        let regions: Vec<String> = (from..to).map(|r| format!("r{r:04}")).collect();
        writeln!(y, "    - {{name: {name}, maxParallel: {par}, bake: {bake}, regions: [{}]}}", regions.join(", "))
            .unwrap();
    }
    y.push_str(
        "  steps: [1, 10, 50, 100]\n  stepBake: 5m\n  windows: [{days: [Mon, Tue, Wed, Thu, Fri], from: \"06:00\", to: \"22:00\"}]\n  health:\n    checks:\n      - name: errors\n        prometheus: {query: 'x{service=\"{{service}}\"}'}\n        max: 0.01\n",
    );
    let bundle = load(&[("big.yaml".into(), y)], None);
    assert!(!bundle.report.has_errors(), "{:?}", bundle.report.diagnostics.first());
    bundle.plans.into_iter().next().unwrap()
}

fn healthy(plan: &Plan, state: &PlanState, at: chrono::DateTime<Utc>) -> Vec<HealthSample> {
    state
        .units
        .iter()
        .filter(|u| u.percent > 0)
        .map(|u| HealthSample {
            region: u.region.clone(),
            service: u.service.clone(),
            check: plan.health.checks[0].name.clone(),
            verdict: HealthVerdict::Healthy,
            value: Some(0.0),
            detail: None,
            at,
            baseline: None,
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let plan = big_plan();
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap();
    let mut opts = SimOptions::new(start);
    opts.assume_healthy = true;

    let full = simulate(&plan, &[], &opts);
    assert!(full.finished_at.is_some(), "the benchmark plan must complete");
    println!(
        "full rollout: {} units, {} decisions, {} audit records, simulated {}",
        plan.unit_count(),
        full.decisions,
        full.audit.len(),
        meridian_core::Span::from_delta(full.ended_at - start)
    );

    // A state in mid-rollout: wave w2 running with 100 regions in flight.
    let mut mid_opts = opts.clone();
    mid_opts.horizon =
        meridian_core::Span::from_millis(meridian_core::Span::from_delta(full.ended_at - start).as_millis() / 2);
    let mid = simulate(&plan, &[], &mid_opts);
    let now = mid.ended_at + chrono::TimeDelta::seconds(30);
    let samples = healthy(&plan, &mid.state, now);
    println!("mid-rollout state: {} units with traffic, {} samples per decision", samples.len(), samples.len());

    c.bench_function("decide 1000x5 mid-rollout", |b| {
        b.iter(|| {
            let obs = Observations { health: &samples, ..Observations::default() };
            decide(&plan, mid.state.clone(), &obs, now)
        })
    });
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("full rollout 1000x5", |b| b.iter(|| simulate(&plan, &[], &opts)));
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
