//! The Kubernetes `StateStore` against a real API server (etcd and kube-apiserver, see
//! `common`): state in `.status.engine` with real resourceVersion conflicts, a controller that
//! resumes from it without repeating a step, audit and history in ConfigMap segments,
//! commands applied once, approvals kept, and the fencing that refuses a stale writer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ControlPlane, GATED, JP_GO, Recorder, text, wait_for};
use meridian_controller::control::ControlPlane as _;
use meridian_core::ports::store::StateStore;
use meridian_kube::store::{Fence, KubeStore, Unfenced};

async fn controller(
    plane: &ControlPlane,
    fleet: Arc<Recorder>,
) -> (meridian_controller::runtime::Running, Arc<KubeStore>) {
    let client = plane.client().await;
    let store = Arc::new(KubeStore::new(client.clone(), "default", Arc::new(Unfenced)).unwrap());
    let adapters = meridian_controller::runtime::Adapters {
        store: store.clone(),
        health: Arc::new(meridian_controller::nohealth::Unreadable { reason: "no checks".into() }),
        actuator: fleet,
        clock: Arc::new(meridian_controller::runtime::SystemClock),
        notifier: Arc::new(meridian_controller::runtime::NoNotifier),
    };
    let source = Arc::new(meridian_kube::KubeSource::new(client, "default"));
    let running = meridian_controller::runtime::start_with(
        source,
        meridian_controller::runtime::Settings::new(Vec::new()),
        adapters,
    )
    .await
    .expect("the controller starts on the API server");
    (running, store)
}

fn unit(c: &meridian_controller::runtime::Controller, region: &str) -> meridian_core::state::UnitState {
    c.snapshot().plans["gated"].state.unit(region, "signin").cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_lives_in_the_api_server_and_a_new_controller_resumes_without_repeating_a_step() {
    let plane = ControlPlane::start();
    plane.install_crds();
    assert!(plane.kubectl(&["apply", "-f", "-"], Some(GATED)).status.success());
    let fleet = Arc::new(Recorder::default());

    let (first, _) = controller(&plane, fleet.clone()).await;
    let c = first.controller.clone();
    wait_for("a enabled and jp waiting for its approval", Duration::from_secs(30), || {
        unit(&c, "a").phase == meridian_core::UnitPhase::Enabled
            && matches!(unit(&c, "jp").waiting, Some(meridian_core::WaitReason::Approval { .. }))
    })
    .await;
    // The engine record is in the plan's status, and the audit trail in its log.
    let out = plane.kubectl(&["get", "rolloutplan", "gated", "-o", "jsonpath={.status.engine.revision}"], None);
    let revision: u64 = text(&out).trim().parse().unwrap_or_else(|_| panic!("no engine revision: {}", text(&out)));
    assert!(revision >= 3, "revision {revision}");
    let audit = c.audit(Some("gated"), 0, 1000).await.unwrap();
    assert!(!audit.is_empty());
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=audit.len() as u64).collect::<Vec<_>>());
    let out = plane.kubectl(&["get", "configmap", "meridian-audit-gated-000001", "-o", "name"], None);
    assert!(out.status.success(), "no audit segment: {}", text(&out));
    // The reporter is not running here: the status is the store's alone.
    first.shutdown();
    drop(c);

    // A second controller (a new leader, a restarted pod) resumes from the API server.
    let (second, _) = controller(&plane, fleet.clone()).await;
    let c = second.controller.clone();
    assert_eq!(unit(&c, "a").phase, meridian_core::UnitPhase::Enabled, "the state was not resumed");
    assert!(plane.kubectl(&["apply", "-f", "-"], Some(JP_GO)).status.success());
    wait_for("plan complete", Duration::from_secs(30), || {
        c.snapshot().plans["gated"].state.phase() == meridian_core::PlanPhase::Complete
    })
    .await;
    let sent = fleet.sent.lock().unwrap().clone();
    let steps = |region: &str| sent.iter().filter(|(r, _, _)| r == region).map(|(_, _, p)| *p).collect::<Vec<_>>();
    assert_eq!(steps("a"), [50, 100], "a's steps were repeated or lost: {sent:?}");
    assert_eq!(steps("jp"), [50, 100], "{sent:?}");
    // Gapless across the two controllers, and the history kept the approval.
    let audit = c.audit(Some("gated"), 0, 1000).await.unwrap();
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=audit.len() as u64).collect::<Vec<_>>());
    let history = c.history(0, 100).await.unwrap();
    assert!(history.iter().any(|e| e.event.kind == "approval-granted"), "{history:?}");
    assert!(c.approvals().await.unwrap().iter().any(|a| a.name == "jp-letter"));

    // A command is durable in the API server, applied once, and its object removed.
    let by = "alice".to_string();
    let pause = meridian_core::Command {
        kind: meridian_core::CommandKind::Pause,
        wave: None,
        region: None,
        by,
        at: chrono::Utc::now(),
        freeze: None,
        unfreeze: None,
        full: false,
    };
    c.command("gated", pause).await.unwrap();
    wait_for("the pause applied", Duration::from_secs(30), || c.snapshot().plans["gated"].state.paused.plan).await;
    let mut gone = false;
    for _ in 0..100 {
        let out = plane.kubectl(&["get", "rolloutcommands", "-o", "name"], None);
        if text(&out).trim().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the applied RolloutCommand was not deleted");
    let paused = c.audit(Some("gated"), 0, 1000).await.unwrap();
    let pauses = paused.iter().filter(|r| matches!(r.event, meridian_core::audit::AuditEvent::Command { .. })).count();
    assert_eq!(pauses, 1, "the command was applied {pauses} times");
    second.shutdown();
}

/// A fence that says the term it is given.
struct Term(u64);

impl Fence for Term {
    fn term(&self) -> Option<u64> {
        Some(self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_racing_writer_is_refused_and_never_overwrites() {
    let plane = ControlPlane::start();
    plane.install_crds();
    assert!(plane.kubectl(&["apply", "-f", "-"], Some(GATED)).status.success());
    let client = plane.client().await;
    let bundle = meridian_core::validate::load(&[("gated.yaml".to_string(), GATED.to_string())], None);
    let plan = bundle.plans.into_iter().next().unwrap();
    let state = meridian_core::PlanState::new(&plan);

    let old = Arc::new(KubeStore::new(client.clone(), "default", Arc::new(Term(1))).unwrap());
    let new = Arc::new(KubeStore::new(client.clone(), "default", Arc::new(Term(2))).unwrap());
    let blocking = |f: Box<dyn FnOnce() -> Result<(), String> + Send>| tokio::task::spawn_blocking(f);
    let (o, n, s) = (old.clone(), new.clone(), state.clone());
    blocking(Box::new(move || {
        o.load_state("gated").map_err(|e| e.message)?;
        n.load_state("gated").map_err(|e| e.message)?;
        // The old leader commits first; the new one, which read the same revision, must not
        // overwrite it (a real 409 from the API server, then a re-read).
        o.commit("gated", &s, &[], &[], &[], chrono::Utc::now()).map_err(|e| e.message)?;
        let raced = n.commit("gated", &s, &[], &[], &[], chrono::Utc::now()).unwrap_err();
        assert!(raced.message.contains("another writer committed first"), "{}", raced.message);
        // Not even on a second try: it must read the other decision and decide from it.
        let again = n.commit("gated", &s, &[], &[], &[], chrono::Utc::now()).unwrap_err();
        assert!(again.message.contains("read it again"), "{}", again.message);
        // Re-read, the new leader commits in term 2; the old leader's next write is fenced.
        n.load_state("gated").map_err(|e| e.message)?;
        n.commit("gated", &s, &[], &[], &[], chrono::Utc::now()).map_err(|e| e.message)?;
        o.load_state("gated").map_err(|e| e.message)?;
        let fenced = o.commit("gated", &s, &[], &[], &[], chrono::Utc::now()).unwrap_err();
        assert!(fenced.message.contains("fenced"), "{}", fenced.message);
        Ok(())
    }))
    .await
    .unwrap()
    .unwrap();
    let out = plane.kubectl(&["get", "rolloutplan", "gated", "-o", "jsonpath={.status.engine.term}"], None);
    assert_eq!(text(&out), "2", "the stale writer overwrote the record");

    // A change to the status fields the store does not own (the reporter's) is no conflict.
    let patch = r#"{"status": {"phase": "running"}}"#;
    let out =
        plane.kubectl(&["patch", "rolloutplan", "gated", "--subresource=status", "--type=merge", "-p", patch], None);
    assert!(out.status.success(), "{}", text(&out));
    let n = new.clone();
    tokio::task::spawn_blocking(move || n.commit("gated", &state, &[], &[], &[], chrono::Utc::now()).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
    let out = plane
        .kubectl(&["get", "rolloutplan", "gated", "-o", "jsonpath={.status.phase} {.status.engine.revision}"], None);
    assert_eq!(text(&out), "running 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segment_log_appends_in_batches_idempotently_and_rolls_over() {
    use meridian_kube::store::log::{SEGMENT_RECORDS, SegmentLog};
    let plane = ControlPlane::start();
    let client = plane.client().await;
    let log = SegmentLog::new(kube::Api::namespaced(client, "default"), "meridian-audit-t".into(), "audit");
    let entry = |k: u64| (k, format!("{{\"seq\":{k}}}"));
    log.append(&[entry(1), entry(2)]).await.unwrap();
    log.append(&[entry(3)]).await.unwrap();
    // A repeat of what it holds (a writer that crashed before it recorded the append) is skipped.
    log.append(&[entry(2), entry(3), entry(4)]).await.unwrap();
    let read = log.read(0, 100).await.unwrap();
    assert_eq!(read.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Past a segment's capacity the next one starts; reads page across them.
    let many: Vec<_> = (5..=(SEGMENT_RECORDS as u64 + 10)).map(entry).collect();
    log.append(&many).await.unwrap();
    assert_eq!(log.last_key().await.unwrap(), SEGMENT_RECORDS as u64 + 10);
    let out = plane.kubectl(&["get", "configmap", "meridian-audit-t-000002", "-o", "name"], None);
    assert!(out.status.success(), "no second segment: {}", text(&out));
    let page = log.read(SEGMENT_RECORDS as u64 - 2, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        (SEGMENT_RECORDS as u64 - 1..).take(5).collect::<Vec<_>>()
    );
    assert_eq!(log.push("{\"x\":1}").await.unwrap(), SEGMENT_RECORDS as u64 + 11);

    // The log is a hash chain across its segments; editing an entry (kubectl, with the
    // rights to ConfigMaps) or deleting one is named by verify.
    use meridian_core::chain::{ChainBreak, verify};
    let last = SEGMENT_RECORDS as u64 + 11;
    let head = verify(&log.chain(0, 10_000).await.unwrap(), None).unwrap();
    assert_eq!(head.entries, last);
    let patch = |name: &str, data: &str| {
        let out = plane.kubectl(&["patch", "configmap", name, "--type", "merge", "-p", data], None);
        assert!(out.status.success(), "{}", text(&out));
    };
    patch("meridian-audit-t-000001", r#"{"data":{"000000000003":"{\"seq\":33}"}}"#);
    assert!(matches!(
        verify(&log.chain(0, 10_000).await.unwrap(), None),
        Err(ChainBreak::Altered { n: 3, reference, .. }) if reference == "meridian-audit-t#3"
    ));
    patch("meridian-audit-t-000001", r#"{"data":{"000000000003":"{\"seq\":3}"}}"#);
    assert_eq!(verify(&log.chain(0, 10_000).await.unwrap(), Some(head.clone())).unwrap(), head);
    let n = SEGMENT_RECORDS as u64 + 5;
    patch("meridian-audit-t-000002", &format!(r#"{{"data":{{"{n:012}":null}}}}"#));
    assert!(matches!(
        verify(&log.chain(0, 10_000).await.unwrap(), None),
        Err(ChainBreak::Missing { n: m, .. }) if m == n
    ));
}
