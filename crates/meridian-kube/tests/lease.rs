//! Leader election against a real `kube-apiserver` (the kit in `common`): two electors on one
//! Lease with short timing (lease 3 s, renew deadline 2 s, retry 0.5 s). Each replica reaches
//! the API server through its own TCP forwarder, which the test can cut as a network partition
//! cuts a replica off: its renewals fail, and nothing but its own clock tells it to stop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ControlPlane, text};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use meridian_kube::lease::{self, Leadership, LeaseSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const LEASE: &str = "meridian-leader";

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        ..LeaseSettings::new("default", LEASE, identity)
    }
}

/// A TCP forwarder from 127.0.0.1 to the API server that can be cut (every connection dropped,
/// new ones closed at once) and restored.
struct Link {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Link {
    async fn to(plane: &ControlPlane) -> Link {
        let upstream: SocketAddr = plane.server.trim_start_matches("https://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let pipes = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (accept_open, accept_pipes) = (Arc::clone(&open), Arc::clone(&pipes));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !accept_open.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_pipes.lock().unwrap().push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Link { addr, open, pipes, accept }
    }

    /// A client of the API server (as admin) through this link.
    async fn client(&self, plane: &ControlPlane) -> kube::Client {
        let file = kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap();
        let mut config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.unwrap();
        config.cluster_url = format!("https://{}", self.addr).parse().unwrap();
        kube::Client::try_from(config).unwrap()
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Poll `condition` every 5 ms until it gives a value; fails after `within`.
async fn wait_for<T>(what: &str, within: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn lease_field(plane: &ControlPlane, path: &str) -> String {
    let out = plane.kubectl(&["get", "lease", LEASE, "-o", &format!("jsonpath={{{path}}}")], None);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_acts_and_a_cut_off_leader_stops_before_the_other_takes_over() {
    let plane = ControlPlane::start();
    let links = [Link::to(&plane).await, Link::to(&plane).await];
    let replicas: [Leadership; 2] = [
        lease::spawn(links[0].client(&plane).await, settings("replica-a")).unwrap(),
        lease::spawn(links[1].client(&plane).await, settings("replica-b")).unwrap(),
    ];

    // One of them leads; over the next 3 s (six renewals) exactly one may act at every instant.
    let first =
        wait_for("a leader", Duration::from_secs(20), || replicas.iter().position(|r| r.acting().is_some())).await;
    let watched = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watched {
        let acting: Vec<_> = replicas.iter().filter_map(Leadership::acting).collect();
        assert_eq!(acting.len(), 1, "at {:?}: {acting:?}", Instant::now());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (leader, follower) = (&replicas[first], &replicas[1 - first]);
    let old = leader.acting().unwrap();
    assert_eq!(follower.acting(), None);
    assert_eq!(follower.holder(), Some(old.identity.clone()));
    assert_eq!(lease_field(&plane, ".spec.holderIdentity"), old.identity);
    assert_eq!(lease_field(&plane, ".spec.leaseTransitions"), old.transitions.to_string());

    // Cut the leader off. `lost` must fire by its own clock, though no renewal answers.
    let lost = {
        let (leader, old) = (leader.clone(), old.clone());
        tokio::spawn(async move {
            leader.lost(&old).await;
            Instant::now()
        })
    };
    let cut = Instant::now();
    links[first].cut();
    let (mut old_stopped, mut new_started) = (None, None);
    let deadline = cut + Duration::from_secs(3 + 2 + 1);
    while new_started.is_none() {
        let now = Instant::now();
        let (was, is) = (leader.acting(), follower.acting());
        assert!(was.is_none() || is.is_none(), "both act at {now:?}: {was:?} and {is:?}");
        if was.is_none() {
            old_stopped.get_or_insert(now);
        }
        if let Some(term) = is {
            new_started = Some((now, term));
        }
        assert!(now < deadline, "no takeover within 6 s of the cut");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (old_stopped, (new_started, new)) = (old_stopped.unwrap(), new_started.unwrap());
    let lost = lost.await.unwrap();
    let takeover = new_started - cut;
    eprintln!(
        "cut-off leader: lost() after {:.3} s, acting() None after {:.3} s; the other acts after {:.3} s, term {} -> {}",
        (lost - cut).as_secs_f64(),
        (old_stopped - cut).as_secs_f64(),
        takeover.as_secs_f64(),
        old.transitions,
        new.transitions,
    );
    assert!(old_stopped < new_started && lost <= new_started, "the old leader still acted when the new one started");
    assert!(lost - cut <= Duration::from_millis(2100), "lost() only after {:?}", lost - cut);
    assert!(takeover <= Duration::from_secs(3 + 2), "takeover after {takeover:?}, more than lease duration + 2 s");
    assert!(new.transitions > old.transitions, "{old:?} -> {new:?}");
    assert_eq!(new.identity, follower.acting().unwrap().identity);

    // Back on the network, the old leader reads that it was deposed and does not act.
    links[first].restore();
    wait_for("the old leader sees the new holder", Duration::from_secs(5), || {
        (leader.holder().as_deref() == Some(new.identity.as_str()) && leader.last_error().is_none()).then_some(())
    })
    .await;
    assert_eq!(leader.acting(), None);
    assert_eq!(lease_field(&plane, ".spec.holderIdentity"), new.identity);
    assert_eq!(lease_field(&plane, ".spec.leaseTransitions"), new.transitions.to_string());

    // The new leader releases on shutdown: the other takes over at once, not after expiry.
    let released = Instant::now();
    assert!(follower.release().await.unwrap());
    assert_eq!(follower.acting(), None);
    assert!(matches!(follower.until_leading().await, Err(lease::LeaseError::Stopped)));
    let third = tokio::time::timeout(Duration::from_secs(5), leader.until_leading()).await.unwrap().unwrap();
    let handover = released.elapsed();
    eprintln!("after a release, the other acts after {:.3} s, term {}", handover.as_secs_f64(), third.transitions);
    assert!(handover < Duration::from_millis(1500), "handover after a release took {handover:?}");
    assert_eq!(third.identity, old.identity);
    assert!(third.transitions > new.transitions, "{new:?} -> {third:?}");
}

/// The count of `PUT`s on Leases the API server refused with 409 Conflict, from its metrics.
fn lease_conflicts(plane: &ControlPlane) -> u64 {
    let out = plane.kubectl(&["get", "--raw", "/metrics"], None);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_request_total{")
                && ["code=\"409\"", "resource=\"leases\"", "verb=\"PUT\""].iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_read_again_never_overwritten() {
    let plane = ControlPlane::start();
    let fast = LeaseSettings { retry_period: Duration::from_millis(100), ..settings("replica-a") };
    let elector = lease::spawn(plane.client().await, fast).unwrap();
    let term = tokio::time::timeout(Duration::from_secs(20), elector.until_leading()).await.unwrap().unwrap();
    let leases: Api<Lease> = Api::namespaced(plane.client().await, "default");

    // Someone else writes the Lease (an annotation, by merge patch, with no resourceVersion) as
    // fast as it can. The elector's renewals that read before such a write get 409 Conflict; a
    // renewal that overwrote instead would put an older annotation back.
    let before = lease_conflicts(&plane);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut checked = Instant::now();
    let mut written = 0u64;
    let conflicts = loop {
        written += 1;
        let patch = serde_json::json!({"metadata": {"annotations": {"test.meridian.dev/n": written.to_string()}}});
        leases.patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let read = leases.get(LEASE).await.unwrap();
        let annotation = read.metadata.annotations.as_ref().and_then(|a| a.get("test.meridian.dev/n")).cloned();
        assert_eq!(annotation, Some(written.to_string()), "the elector overwrote a newer write");
        assert_eq!(elector.acting(), Some(term.clone()), "a conflict cost the lead");
        if checked.elapsed() > Duration::from_millis(500) {
            checked = Instant::now();
            let conflicts = lease_conflicts(&plane) - before;
            if conflicts >= 3 {
                break conflicts;
            }
        }
        assert!(Instant::now() < deadline, "fewer than 3 conflicts in 30 s ({written} writes)");
    };
    eprintln!(
        "{written} outside writes, {conflicts} renewals refused with 409; the lead held in term {}",
        term.transitions
    );
    let spec = leases.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.lease_transitions, Some(i32::try_from(term.transitions).unwrap()));

    // Someone else takes the lease outright (a conditional update, as a rival elector would).
    loop {
        let mut lease = leases.get(LEASE).await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(3600);
        spec.lease_transitions = spec.lease_transitions.map(|t| t + 1);
        match leases.replace(LEASE, &PostParams::default(), &lease).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let taken = Instant::now();
    wait_for("the elector sees it was deposed", Duration::from_secs(2), || elector.acting().is_none().then_some(()))
        .await;
    eprintln!("deposed: acting() None {:.3} s after the outside takeover", taken.elapsed().as_secs_f64());
    assert_eq!(elector.holder().as_deref(), Some("intruder"));
    // Well past the elector's own lease duration, it honours the intruder's hour and never
    // writes back.
    let watched = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watched {
        let spec = leases.get(LEASE).await.unwrap().spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("intruder"));
        assert_eq!(elector.acting(), None);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
