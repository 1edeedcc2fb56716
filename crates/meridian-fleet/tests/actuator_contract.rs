//! The fleet against the real `http` actuator of `meridian-actuator`: the two sides of the
//! wire contract agree on set, read-back, idempotency keys, retries and tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::time::Duration;

use meridian_actuator::{ActuatorOptions, HttpActuator, HttpActuatorSettings, SetMethod, Target};
use meridian_core::Span;
use meridian_core::endpoint::UrlTemplate;
use meridian_fleet::{ActuatorFault, Fleet, FleetConfig, FleetHandle};

fn mk_target(region: &str, service: &str) -> Target {
    Target { plan: "demo".into(), region: region.into(), service: service.into() }
}

fn mk_actuator(fleet: &FleetHandle, method: Option<SetMethod>) -> HttpActuator {
    let url = UrlTemplate::parse(&fleet.traffic_url_template()).unwrap();
    let spec = HttpActuatorSettings {
        method: method.unwrap_or_default(),
        timeout: Span::from_secs(2),
        retries: 2,
        ..HttpActuatorSettings::new(url)
    };
    let options = ActuatorOptions {
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        jitter_seed: Some(7),
        instance: Some("replica-a".into()),
    };
    HttpActuator::new(&spec, &options).unwrap()
}

async fn start() -> FleetHandle {
    Fleet::start(FleetConfig::new(["us-east", "jp"], ["signin", "store"])).await.unwrap()
}

#[tokio::test]
async fn set_and_read_back_round_trip_with_put_and_post() {
    let fleet = start().await;
    for (method, expected) in [(None, "PUT"), (Some(SetMethod::Post), "POST")] {
        let actuator = mk_actuator(&fleet, method);
        let target = mk_target("jp", "store");
        fleet.reset_log();
        let before = actuator.read_traffic(&target).await.unwrap();
        assert_eq!(before, fleet.traffic("jp", "store"));
        let applied = actuator.set_traffic(&target, 50, &format!("demo/jp/store/{expected}")).await.unwrap();
        assert_eq!(applied.attempts, 1);
        assert_eq!(fleet.traffic("jp", "store"), Some(50));
        assert_eq!(actuator.read_traffic(&target).await.unwrap(), Some(50));
        let puts = fleet.puts();
        assert_eq!(puts.len(), 1);
        assert_eq!(puts[0].method, expected);
        assert_eq!(puts[0].plan.as_deref(), Some("demo"));
        assert_eq!(puts[0].idempotency_key.as_deref(), Some(format!("demo/jp/store/{expected}").as_str()));
        assert_eq!(puts[0].instance.as_deref(), Some("replica-a"), "the sender names itself");
    }
    assert_eq!(mk_actuator(&fleet, None).read_traffic(&mk_target("us-east", "signin")).await.unwrap(), None);
}

#[tokio::test]
async fn retries_carry_the_same_key_and_a_replay_changes_nothing() {
    let fleet = start().await;
    let actuator = mk_actuator(&fleet, None);
    let target = mk_target("us-east", "store");
    fleet.set_actuator_fault(ActuatorFault { fail_next: 2, status: 503, delay_ms: 0 });
    let applied = actuator.set_traffic(&target, 10, "k1").await.unwrap();
    assert_eq!(applied.attempts, 3);
    let log: Vec<(u16, Option<String>)> = fleet.puts().into_iter().map(|p| (p.status, p.idempotency_key)).collect();
    assert_eq!(log, vec![(503, Some("k1".into())), (503, Some("k1".into())), (200, Some("k1".into()))]);

    // A newer intent, then a late resend of the old one: the old one must not win.
    actuator.set_traffic(&target, 50, "k2").await.unwrap();
    actuator.set_traffic(&target, 10, "k1").await.unwrap();
    assert_eq!(actuator.read_traffic(&target).await.unwrap(), Some(50));
    assert!(fleet.puts().last().unwrap().replay);
}

#[tokio::test]
async fn an_unknown_unit_reads_back_as_never_set_and_refuses_a_set() {
    let fleet = start().await;
    let actuator = mk_actuator(&fleet, None);
    let target = mk_target("mars", "store");
    // The actuator's contract reads a 404 as "never set"; the fleet answers 404 for units it
    // does not simulate, and refuses to set them.
    assert_eq!(actuator.read_traffic(&target).await.unwrap(), None);
    assert!(actuator.set_traffic(&target, 10, "k").await.is_err());
    assert!(fleet.puts().is_empty());
}
