//! `PlanActuators` through the core's `Actuator` port, as the controller calls it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use std::time::Duration;

use meridian_actuator::{ActuatorOptions, PlanActuators, Target};
use meridian_core::plan::Plan;
use meridian_core::ports::Actuator;
use serde_json::json;
use support::{Endpoint, Reply, within};

fn plan(name: &str, actuator: &str) -> Plan {
    let yaml = format!(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: {name}
spec:
  services:
    - name: signin
  regions:
    - {{ name: jp, timezone: Asia/Tokyo }}
  waves:
    - name: all
      regions: [jp]
{actuator}"#
    );
    let bundle = meridian_core::validate::load(&[(format!("{name}.yaml"), yaml)], None);
    assert_eq!(bundle.report.errors(), 0, "{:?}", bundle.report);
    bundle.plan(name).expect("plan").clone()
}

fn http_plan(name: &str, url: &str) -> Plan {
    plan(name, &format!("  actuator:\n    http:\n      url: {url}\n      retries: 1\n"))
}

fn target(plan: &str) -> Target {
    Target { plan: plan.into(), region: "jp".into(), service: "signin".into() }
}

fn actuators() -> PlanActuators {
    PlanActuators::new(ActuatorOptions {
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        jitter_seed: Some(1),
        instance: None,
    })
    .unwrap()
}

#[tokio::test]
async fn http_plans_are_actuated_through_the_port() {
    let ep = Endpoint::start().await;
    let actuators = actuators();
    let p = http_plan("restore", &ep.url("/{{plan}}/{{region}}/{{service}}"));
    let t = target("restore");
    within(actuators.set_traffic(&p, &t, 10, "intent-1")).await.unwrap();
    assert_eq!(within(actuators.read_traffic(&p, &t)).await, Ok(Some(10)));
    let seen = ep.seen();
    assert_eq!(seen[0].path, "/restore/jp/signin");
    assert_eq!(seen[0].body, Some(json!({"percent": 10, "plan": "restore", "region": "jp", "service": "signin"})));

    // Errors keep their retryability and metric label.
    ep.script([Reply::Status(400)]);
    let err = within(actuators.set_traffic(&p, &t, 50, "intent-2")).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.label, "http_4xx");
    ep.script([Reply::Status(503), Reply::Status(503)]);
    let err = within(actuators.set_traffic(&p, &t, 50, "intent-3")).await.unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.label, "http_5xx");
    assert!(err.message.contains("answered 503 (attempt 2)"), "{}", err.message);
}

#[tokio::test]
async fn an_edited_actuator_takes_effect_at_the_next_call() {
    let old = Endpoint::start().await;
    let new = Endpoint::start().await;
    let actuators = actuators();
    let t = target("restore");
    let before = http_plan("restore", &old.url("/{{region}}/{{service}}"));
    within(actuators.set_traffic(&before, &t, 10, "k1")).await.unwrap();
    within(actuators.set_traffic(&before, &t, 10, "k1")).await.unwrap();
    let after = http_plan("restore", &new.url("/{{region}}/{{service}}"));
    within(actuators.set_traffic(&after, &t, 50, "k2")).await.unwrap();
    assert_eq!(old.seen().len(), 2);
    assert_eq!(new.seen().len(), 1);
    assert_eq!(new.traffic("/jp/signin"), Some(50));
}

#[tokio::test]
async fn plans_without_an_http_actuator_share_one_dry_run() {
    let actuators = actuators();
    let implicit = plan("quiet", "");
    let explicit = plan("dry", "  actuator:\n    log: {}\n");
    within(actuators.set_traffic(&implicit, &target("quiet"), 10, "k1")).await.unwrap();
    within(actuators.set_traffic(&explicit, &target("dry"), 50, "k2")).await.unwrap();
    assert_eq!(within(actuators.read_traffic(&implicit, &target("quiet"))).await, Ok(Some(10)));
    assert_eq!(within(actuators.read_traffic(&explicit, &target("dry"))).await, Ok(Some(50)));
    assert_eq!(within(actuators.read_traffic(&explicit, &target("other"))).await, Ok(None));
    let records: Vec<String> = actuators.dry_run().take_records().iter().map(ToString::to_string).collect();
    assert_eq!(
        records,
        vec![
            "dry run: would set quiet/jp/signin from unset to 10% (idempotency key k1)",
            "dry run: would set dry/jp/signin from unset to 50% (idempotency key k2)",
        ]
    );
    assert!(actuators.for_plan(&implicit).unwrap().is_dry_run());
}

/// `meridian run` has no Kubernetes client: a plan (or a region) asking for the kubernetes
/// actuator gets a clear, non-retryable error, never a silent dry run.
#[tokio::test]
async fn a_kubernetes_actuator_is_refused_with_a_clear_error() {
    let actuators = actuators();
    let p = plan("kubed", "  actuator:\n    kubernetes: {namespace: shop, configMap: {name: rollout, key: percent}}\n");
    let err = within(actuators.set_traffic(&p, &target("kubed"), 10, "k1")).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.label, "needs_kube_mode");
    assert_eq!(
        err.message,
        "plan \"kubed\" in region \"jp\" sets traffic with the kubernetes actuator, which needs `meridian kube`; run \
         the plan with meridian kube, or use an http actuator"
    );
    assert_eq!(within(actuators.read_traffic(&p, &target("kubed"))).await.unwrap_err().label, "needs_kube_mode");
    assert!(actuators.dry_run().take_records().is_empty());
    assert_eq!(meridian_actuator::needs_kube_mode(&p).map(|e| e.to_string()), Some(err.message));
    assert!(meridian_actuator::needs_kube_mode(&plan("quiet", "")).is_none());
}

#[tokio::test]
async fn port_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let actuators: std::sync::Arc<dyn Actuator> = std::sync::Arc::new(actuators());
    let p = plan("quiet", "");
    let t = target("quiet");
    let f = actuators.set_traffic(&p, &t, 1, "k");
    assert_send(&f);
    within(f).await.unwrap();
}

#[tokio::test]
async fn a_region_with_its_own_actuator_is_actuated_through_it_and_the_others_through_the_plans() {
    let shared = Endpoint::start().await;
    let own = Endpoint::start().await;
    let yaml = format!(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: regional
spec:
  services:
    - name: signin
  regions:
    - name: jp
    - name: in-west
      actuator:
        http:
          url: {}
          method: POST
  waves:
    - name: all
      regions: [jp, in-west]
  actuator:
    http:
      url: {}
"#,
        own.url("/v2/{{region}}/{{service}}"),
        shared.url("/{{region}}/{{service}}")
    );
    let bundle = meridian_core::validate::load(&[("regional.yaml".into(), yaml)], None);
    assert_eq!(bundle.report.errors(), 0, "{:?}", bundle.report);
    let p = bundle.plan("regional").expect("plan").clone();
    let actuators = actuators();
    let jp = Target { plan: "regional".into(), region: "jp".into(), service: "signin".into() };
    let india = Target { plan: "regional".into(), region: "in-west".into(), service: "signin".into() };
    within(actuators.set_traffic(&p, &jp, 10, "k1")).await.unwrap();
    within(actuators.set_traffic(&p, &india, 5, "k2")).await.unwrap();
    assert_eq!(shared.traffic("/jp/signin"), Some(10));
    assert_eq!(own.traffic("/v2/in-west/signin"), Some(5));
    assert_eq!((shared.seen().len(), own.seen().len()), (1, 1));
    assert_eq!(own.seen()[0].method, "POST");
    assert_eq!(within(actuators.read_traffic(&p, &india)).await, Ok(Some(5)));
}
