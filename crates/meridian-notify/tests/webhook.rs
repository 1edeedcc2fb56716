//! The webhook sinks against a real HTTP receiver on 127.0.0.1.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use meridian_core::notify::Notice;
use meridian_core::ports::Notifier;
use meridian_notify::{SinkSpec, Webhooks, parse};

/// What the receiver got, and the statuses it answers with, in order (then 200).
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<(serde_json::Value, Option<String>)>>,
    script: Mutex<Vec<u16>>,
    /// Answer nothing for this long first (a stuck receiver).
    stall: Option<Duration>,
}

async fn take(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
    if let Some(stall) = r.stall {
        tokio::time::sleep(stall).await;
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    r.bodies.lock().unwrap().push((serde_json::from_str(&body).unwrap(), auth));
    let mut script = r.script.lock().unwrap();
    let code = if script.is_empty() { 200 } else { script.remove(0) };
    StatusCode::from_u16(code).unwrap()
}

async fn receiver(script: &[u16], stall: Option<Duration>) -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver { script: Mutex::new(script.to_vec()), stall, ..Receiver::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/T000/secretpart", listener.local_addr().unwrap());
    let app = Router::new().route("/hook/T000/secretpart", post(take)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

fn sink(url: &str, extra: &str) -> SinkSpec {
    let text = format!("sinks:\n  - name: test\n    urlEnv: HOOK\n    backoff: 20ms\n{extra}");
    let url = url.to_string();
    parse("n.yaml", &text, move |_| Some(url.clone()), |_| Ok("tok".into())).unwrap().remove(0)
}

fn notice(summary: &str) -> Notice {
    serde_json::from_value(serde_json::json!({
        "topic": "failures", "urgency": "critical", "at": "2026-06-01T09:00:00Z", "plan": "restore",
        "region": "jp", "summary": summary
    }))
    .unwrap()
}

fn count(hooks: &Webhooks, result: &str) -> u64 {
    let families = hooks.collector().collect();
    families[0]
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == result))
        .map_or(0, |m| m.get_counter().get_value() as u64)
}

async fn until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_notice_is_retried_through_server_errors_and_delivered_once_with_its_token() {
    let (r, url) = receiver(&[503, 500], None).await;
    let hooks = Webhooks::start(vec![sink(&url, "    bearerTokenFile: /t\n")]).unwrap();
    hooks.notify(vec![notice("restore: region jp rolled back")]);
    until("a delivery", Duration::from_secs(10), || count(&hooks, "sent") == 1).await;
    let bodies = r.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "two failures, then the delivery");
    let (body, auth) = &bodies[2];
    assert_eq!(body["summary"], "restore: region jp rolled back");
    assert_eq!(body["source"], "meridian");
    assert_eq!(auth.as_deref(), Some("Bearer tok"));
    assert_eq!(count(&hooks, "failed"), 0);
}

#[tokio::test]
async fn a_refusal_is_final_and_retries_end() {
    let (r, url) = receiver(&[400, 503, 503, 503], None).await;
    let hooks = Webhooks::start(vec![sink(&url, "    retries: 2\n    format: slack\n")]).unwrap();
    hooks.notify(vec![notice("first"), notice("second")]);
    until("both notices failed", Duration::from_secs(10), || count(&hooks, "failed") == 2).await;
    let bodies = r.bodies.lock().unwrap().clone();
    // The 400 ends the first at once; the second is tried 1 + 2 times.
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert_eq!(bodies[0].0["text"], ":red_circle: *meridian* (failures): first");
    assert_eq!(count(&hooks, "sent"), 0);
}

#[tokio::test]
async fn a_stuck_receiver_never_holds_the_caller_and_overflow_is_counted() {
    let (_r, url) = receiver(&[], Some(Duration::from_secs(30))).await;
    let hooks = Webhooks::start(vec![sink(&url, "    queue: 2\n    timeout: 20s\n")]).unwrap();
    let start = Instant::now();
    for i in 0..10 {
        hooks.notify(vec![notice(&format!("n{i}"))]);
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "notify waited {took:?}");
    // One in flight, two queued; the rest dropped (the worker may not have taken the first yet).
    let dropped = count(&hooks, "dropped");
    assert!((7..=8).contains(&dropped), "dropped {dropped}");
}

#[tokio::test]
async fn topics_and_plans_filter_what_a_sink_is_told() {
    let (r, url) = receiver(&[], None).await;
    let hooks = Webhooks::start(vec![sink(&url, "    topics: [completions]\n    plans: [restore]\n")]).unwrap();
    let mut done = notice("restore: rollout complete");
    done.topic = meridian_core::notify::Topic::Completions;
    let mut other = done.clone();
    other.plan = Some("other".into());
    hooks.notify(vec![notice("a failure"), other, done]);
    until("the completion", Duration::from_secs(10), || count(&hooks, "sent") == 1).await;
    let bodies = r.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].0["summary"], "restore: rollout complete");
}
