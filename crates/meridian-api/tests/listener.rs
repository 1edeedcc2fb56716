//! The API through a real listener on 127.0.0.1 with a real HTTP client: plain HTTP, server-sent
//! events, graceful shutdown with an open stream, and TLS with a self-signed certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_api::fake::FakeControl;
use meridian_api::{Limits, TlsFiles, serve};
use meridian_core::{AuditEvent, AuditRecord, Cause, UnitPhase};
use support::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    control: Arc<FakeControl>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), meridian_api::ServeError>>,
}

async fn start(limits: Limits, tls: Option<TlsFiles>) -> Server {
    let (control, router) = app(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, tls, async move {
        let _ = stopped.await;
    }));
    Server { addr, control, stop: Some(stop), task }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

fn unit_record(seq_plan: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: chrono::Utc::now(),
        plan: seq_plan.into(),
        wave: Some("canary".into()),
        region: Some("us-east".into()),
        service: Some("signin".into()),
        event: AuditEvent::Unit {
            from: UnitPhase::Blocked,
            to: UnitPhase::Progressing,
            step: Some(0),
            from_percent: 0,
            to_percent: 10,
        },
        cause: Cause::Started { approvals: vec!["ops-go-1".into()], flags: vec!["ops-go".into()] },
    }
}

/// Read the stream until `needle` shows up (or fail after 10 s).
async fn read_until(response: &mut reqwest::Response, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended or timed out before {needle:?} ({other:?}); got:\n{seen}"),
        }
    }
}

#[tokio::test]
async fn plain_http_round_trip() {
    let server = start(Limits::default(), None).await;
    let base = format!("http://{}", server.addr);
    let http = client();
    let plans: serde_json::Value =
        http.get(format!("{base}/api/v1/plans")).bearer_auth(VIEWER).send().await.unwrap().json().await.unwrap();
    assert_eq!(plans["plans"][0]["name"], "restore");
    let pause = http
        .post(format!("{base}/api/v1/plans/restore/pause"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"region": "jp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 202);
    assert_eq!(server.control.commands()[0].1.region.as_deref(), Some("jp"));
    let denied = http.post(format!("{base}/api/v1/plans/restore/pause")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["content-type"], "application/json");
    assert_eq!(server.control.denials().len(), 1);
    let big = http
        .post(format!("{base}/api/v1/approvals"))
        .bearer_auth(APPROVER)
        .body("x".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let body: serde_json::Value = big.json().await.unwrap();
    assert_eq!(body["error"], "request body too large (limit 65536 bytes)");
}

#[tokio::test]
async fn committed_records_arrive_on_events_with_keep_alives() {
    let server = start(Limits { keep_alive: Duration::from_millis(200), ..Limits::default() }, None).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let unauthorized = http.get(format!("{base}/api/v1/events")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    let mut all = http.get(format!("{base}/api/v1/events")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(all.headers()["content-type"], "text/event-stream");
    let mut only_restore =
        http.get(format!("{base}/api/v1/events?plan=restore")).bearer_auth(VIEWER).send().await.unwrap();
    let mut seen = String::new();
    // A quiet stream still carries keep-alive comments.
    read_until(&mut all, &mut seen, ": keep-alive").await;

    // The handler subscribes when the request arrives; the stream is open by now.
    // "other" (a plan the server does not know, so not one to filter on) comes first, so
    // that a filtered stream that reached "restore" has passed it.
    server.control.commit(unit_record("other"));
    server.control.commit(unit_record("restore"));
    read_until(&mut all, &mut seen, "id: 1\n").await;
    read_until(&mut all, &mut seen, "\"plan\":\"other\"").await;
    read_until(&mut all, &mut seen, "\"plan\":\"restore\"").await;
    let data = seen.lines().find(|l| l.starts_with("data: ") && l.contains("\"restore\"")).unwrap();
    let record: AuditRecord = serde_json::from_str(data.trim_start_matches("data: ")).unwrap();
    assert_eq!(record.seq, 1);
    assert_eq!(record.region.as_deref(), Some("us-east"));
    assert!(seen.contains("event: audit\n"), "{seen}");

    let mut filtered = String::new();
    read_until(&mut only_restore, &mut filtered, "\"plan\":\"restore\"").await;
    assert!(!filtered.contains("\"plan\":\"other\""), "{filtered}");
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let mut server = start(Limits::default(), None).await;
    let base = format!("http://{}", server.addr);
    let mut events =
        reqwest::Client::new().get(format!("{base}/api/v1/events")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let began = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut server.task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "server did not stop promptly: {result:?}");
    assert!(began.elapsed() < Duration::from_secs(5));
    // The stream ends instead of hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "event stream still open after shutdown");
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = start(Limits::default(), Some(TlsFiles { cert: cert_path, key: key_path })).await;

    let trusted = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([trusted])
        .resolve("localhost", server.addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let health = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let plans = https.get(format!("{base}/api/v1/plans")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(plans.status(), 200);
    let denied = https.get(format!("{base}/api/v1/plans")).send().await.unwrap();
    assert_eq!(denied.status(), 401);

    // Plain HTTP to the TLS port is not served.
    let plain = client().get(format!("http://{}/healthz", server.addr)).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // A client that does not trust the certificate is refused at the handshake.
    let untrusting =
        reqwest::Client::builder().resolve("localhost", server.addr).timeout(Duration::from_secs(10)).build().unwrap();
    assert!(untrusting.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn unreadable_tls_files_are_reported() {
    let (_, router) = app(Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles { cert: dir.path().join("missing.pem"), key: dir.path().join("key.pem") };
    let err = serve(listener, router, Some(files), std::future::pending()).await.unwrap_err();
    assert!(err.to_string().starts_with("failed to load the TLS certificate"), "{err}");
}
