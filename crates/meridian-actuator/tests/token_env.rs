//! A bearer token from an environment variable. In its own test binary, with a single test,
//! because it sets a variable of the process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use meridian_actuator::{ActuatorOptions, HttpActuator, HttpActuatorSettings, Target, TokenSource};
use meridian_core::endpoint::UrlTemplate;
use support::{Endpoint, within};

const VAR: &str = "MERIDIAN_ACTUATOR_TEST_TOKEN";

#[tokio::test]
async fn bearer_token_from_an_environment_variable() {
    // SAFETY: this binary's only test; nothing else reads or writes the environment while it
    // runs (the runtime's threads do not).
    unsafe { std::env::set_var(VAR, "  env-token-1\n") };
    let ep = Endpoint::start().await;
    let url = UrlTemplate::parse(&ep.url("/{{region}}/{{service}}")).unwrap();
    let settings = HttpActuatorSettings { token: TokenSource::Env(VAR.into()), ..HttpActuatorSettings::new(url) };
    let a = HttpActuator::new(&settings, &ActuatorOptions::default()).unwrap();
    let t = Target { plan: "restore".into(), region: "jp".into(), service: "store".into() };
    within(a.set_traffic(&t, 10, "k1")).await.unwrap();
    // Read on every call, like the file.
    unsafe { std::env::set_var(VAR, "env-token-2") };
    assert_eq!(within(a.read_traffic(&t)).await, Ok(Some(10)));

    let auth: Vec<Option<String>> = ep.seen().iter().map(|s| s.header("authorization")).collect();
    assert_eq!(auth, vec![Some("Bearer env-token-1".to_string()), Some("Bearer env-token-2".to_string())]);
}
