//! `meridian kube` for real: two replicas of the binary against a real kube-apiserver and
//! etcd (the kit in crates/meridian-kube/tests/common), electing a leader on a Lease, driving
//! a rollout against a simulated fleet of HTTP endpoints. The leader is SIGKILLed mid-rollout,
//! and later the next leader is frozen with SIGSTOP: each time the other replica takes over
//! within lease duration + 2 s and resumes from the state in the API server, the frozen one
//! sends nothing once resumed and exits, and the fleet's log shows every unit walking the
//! steps once, each step with one idempotency key (no duplicate, no conflicting actuation).
//! Each replica says on `/metrics` who leads (`meridian_leader`, 1 on the leader, 0 on the
//! follower), what the `MeridianNoLeader` alert reads.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_fleet::{Fleet, FleetConfig};

#[path = "../../crates/meridian-kube/tests/common/mod.rs"]
mod kubeplane;

use kubeplane::{ControlPlane, text};

const LEASE_SECONDS: u64 = 3;
const STEPS: [u32; 3] = [10, 50, 100];

fn plan(fleet_url: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: ha}}
{}",
        spec(fleet_url)
    )
}

fn spec(fleet_url: &str) -> String {
    format!(
        "
spec:
  services: [{{name: signin}}, {{name: store}}]
  regions: [{{name: a}}, {{name: b}}, {{name: c}}, {{name: d}}]
  waves:
    - {{name: one, regions: [a, b], bake: 1s}}
    - {{name: two, regions: [c, d], bake: 1s}}
  steps: [10, 50, 100]
  stepBake: 1500ms
  actuator:
    http: {{url: '{fleet_url}/fleet/{{{{region}}}}/{{{{service}}}}/traffic', timeout: 2s, retries: 2}}
"
    )
}

/// The port each replica of the HA test listens on.
fn port_of(identity: &str) -> u16 {
    static PORTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, u16>>> =
        std::sync::OnceLock::new();
    let mut ports = PORTS.get_or_init(Default::default).lock().unwrap();
    *ports.entry(identity.to_string()).or_insert_with(kubeplane::free_port)
}

/// A quick plan `name` in `namespace`: service signin, regions a then b, 200 ms bakes.
fn small_plan(name: &str, namespace: &str, fleet_url: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}, namespace: {namespace}}}\n{}",
        spec(fleet_url)
            .replace("[{name: signin}, {name: store}]", "[{name: signin}]")
            .replace("[{name: a}, {name: b}, {name: c}, {name: d}]", "[{name: a}, {name: b}]")
            .replace("[a, b], bake: 1s}", "[a], bake: 200ms}")
            .replace("[c, d], bake: 1s}", "[b], bake: 200ms}")
            .replace("stepBake: 1500ms", "stepBake: 200ms")
    )
}

/// A replica in namespace default, logging JSON lines.
fn replica(kubeconfig: &Path, identity: &str, log: &Path) -> Child {
    replica_with(&["--log-format", "json", "--log-level", "info"], "default", kubeconfig, identity, log)
}

fn replica_in(namespace: &str, kubeconfig: &Path, identity: &str, log: &Path) -> Child {
    replica_with(&[], namespace, kubeconfig, identity, log)
}

fn replica_with(extra: &[&str], namespace: &str, kubeconfig: &Path, identity: &str, log: &Path) -> Child {
    let listen = format!("127.0.0.1:{}", port_of(&format!("{namespace}/{identity}")));
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("kube")
        .args(extra)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", namespace, "--listen", &listen, "--no-auth", "--identity", identity])
        .args(["--lease-duration", &format!("{LEASE_SECONDS}s"), "--renew-deadline", "2s", "--retry-period", "500ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn meridian kube")
}

/// `GET url` as text, from a test body that blocks its thread (multi-thread runtime).
fn get_text(url: &str) -> String {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
    })
}

fn holder(plane: &ControlPlane) -> String {
    holder_in(plane, "default")
}

fn holder_in(plane: &ControlPlane, namespace: &str) -> String {
    text(&plane.kubectl(&["get", "lease", "meridian", "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"], None))
}

/// Poll `cond` every 50 ms until it holds; panics after `within`.
fn wait(what: &str, within: Duration, cond: impl FnMut() -> bool) -> Instant {
    wait_explained(what, within, String::new, cond)
}

/// [`wait`], with `explain()` (the controller's log, say) in the panic message.
fn wait_explained(
    what: &str,
    within: Duration,
    explain: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}\n{}", explain());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// The test body blocks its thread while waiting; the fleet serves on the other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn two_replicas_one_leads_and_a_killed_or_frozen_leader_is_replaced_without_repeating_a_step() {
    let plane = ControlPlane::start();
    plane.install_crds();
    let regions = ["a", "b", "c", "d"];
    let services = ["signin", "store"];
    let fleet = Fleet::start(FleetConfig::new(regions, services)).await.expect("start fleet");
    let applied = plane.kubectl(&["apply", "-f", "-"], Some(&plan(&fleet.base_url())));
    assert!(applied.status.success(), "{}", text(&applied));
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let logs = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("--- {n}:\n{}", std::fs::read_to_string(log(n)).unwrap_or_default()))
            .collect::<String>()
    };
    let mut replicas = std::collections::HashMap::new();
    for name in ["r1", "r2"] {
        replicas.insert(name.to_string(), replica(&plane.kubeconfig, name, &log(name)));
    }

    // One leads and the rollout starts.
    wait("a leader and the first actuations", Duration::from_secs(60), || {
        fleet.puts().iter().filter(|p| p.applied()).count() >= 2
    });
    let first = holder(&plane);
    assert!(replicas.contains_key(&first), "unknown holder {first:?}\n{}", logs(&["r1", "r2"]));

    // The follower serves the same API read from the API server, and takes commands for the
    // leader: a pause and a resume sent to it are applied by the leader.
    let follower = if first == "r1" { "r2" } else { "r1" };
    let server = format!("http://127.0.0.1:{}", port_of(&format!("default/{follower}")));
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian")).args(args).args(["--server", &server]).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    wait("the follower to show the plan", Duration::from_secs(20), || cli(&["status"]).1.contains("ha"));
    // Leadership on /metrics (what the MeridianNoLeader alert reads): 1 on the leader, 0 on the
    // follower, both naming the leader.
    for (who, value) in [(first.as_str(), 1), (follower, 0)] {
        let url = format!("http://127.0.0.1:{}/metrics", port_of(&format!("default/{who}")));
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let line = format!("meridian_leader{{leader=\"{first}\"}} {value}");
        assert!(page.lines().any(|l| l == line), "no {line} on {who}'s /metrics:\n{page}");
    }
    let phase = || text(&plane.kubectl(&["get", "rolloutplan", "ha", "-o", "jsonpath={.status.phase}"], None));
    // The follower's live event stream carries what the leader commits, read from the API server.
    let streamed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut events = reqwest::get(format!("{server}/api/v1/events?plan=ha")).await.unwrap();
    assert_eq!(events.status(), 200);
    let sink = streamed.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(chunk)) = events.chunk().await {
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
        }
        sink.lock().unwrap().push_str("\n[stream ended]");
    });
    let (ok, said) = cli(&["pause", "ha"]);
    assert!(ok, "pause through the follower: {said}");
    wait("the leader to apply the follower's pause", Duration::from_secs(20), || phase() == "paused");
    wait("the follower's event stream to carry the pause", Duration::from_secs(20), || {
        let seen = streamed.lock().unwrap();
        assert!(!seen.contains("[stream ended]"), "the follower's event stream ended: {seen}");
        seen.contains("event: audit") && seen.contains("\"command\":\"pause\"")
    });
    reader.abort();
    let (ok, said) = cli(&["resume", "ha"]);
    assert!(ok, "resume through the follower: {said}");
    wait("the leader to apply the resume", Duration::from_secs(20), || phase() == "running");
    let (ok, said) = cli(&["approve", "x-flag", "--plan", "ha", "--reference", "r"]);
    assert!(!ok && said.contains("done by the leader"), "a grant on a follower: {said}");

    // SIGKILL the leader mid-rollout: the other takes over within lease + 2 s.
    let mut killed = replicas.remove(&first).unwrap();
    killed.kill().unwrap();
    let killed_at = Instant::now();
    let _ = killed.wait();
    let second = if first == "r1" { "r2" } else { "r1" };
    let took_over = wait("the other replica to take the lease", Duration::from_secs(LEASE_SECONDS + 10), || {
        holder(&plane) == second
    });
    let takeover = took_over - killed_at;
    eprintln!("SIGKILL: {second} took over {:.2} s after {first} was killed", takeover.as_secs_f64());
    assert!(takeover <= Duration::from_secs(LEASE_SECONDS + 2), "takeover took {takeover:?}\n{}", logs(&[second]));

    // A third replica joins as a follower; then the leader is frozen while it leads.
    replicas.insert("r3".to_string(), replica(&plane.kubeconfig, "r3", &log("r3")));
    let before = fleet.puts().len();
    wait("the new leader to make progress", Duration::from_secs(30), || fleet.puts().len() > before);
    let frozen = replicas.remove(second).unwrap();
    let pid = frozen.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let stopped_at = Instant::now();
    let took_over = wait("r3 to take the lease", Duration::from_secs(LEASE_SECONDS + 10), || holder(&plane) == "r3");
    let takeover = took_over - stopped_at;
    eprintln!("SIGSTOP: r3 took over {:.2} s after {second} was frozen", takeover.as_secs_f64());
    assert!(takeover <= Duration::from_secs(LEASE_SECONDS + 2), "takeover took {takeover:?}\n{}", logs(&["r3"]));
    let before = fleet.puts().len();
    wait("r3 to make progress", Duration::from_secs(30), || fleet.puts().len() > before);

    // Thawed, the deposed leader sends nothing more and exits.
    let resumed_seq = fleet.puts().last().map_or(0, |p| p.seq);
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let mut frozen = frozen;
    let exited = wait("the deposed leader to exit", Duration::from_secs(15), || frozen.try_wait().unwrap().is_some());
    let _ = exited;
    let code = frozen.try_wait().unwrap().and_then(|s| s.code());
    assert_eq!(code, Some(1), "{}", logs(&[second]));
    assert!(logs(&[second]).contains("lost the lease"), "{}", logs(&[second]));
    // Each request names the replica that sent it (Meridian-Instance), so the check below is
    // about the deposed one itself, not a re-send of its committed intent by the new leader.
    assert!(
        fleet.puts().iter().any(|p| p.instance.as_deref() == Some(second)),
        "no request names the replica that sent it"
    );
    // What the deposed replica can still do: a request it had handed to its HTTP client just
    // before it was frozen is written on resume (no client-side check can take it back). Every
    // such request carries its old term in the key, so a target that checks the term, as the
    // fleet does, refuses it once the new leader has set that unit: nothing the deposed replica
    // sent after it was resumed may have been applied over a newer term's write.
    let puts = fleet.puts();
    for p in puts.iter().filter(|p| p.seq > resumed_seq && p.instance.as_deref() == Some(second)) {
        let term = p.idempotency_key.as_deref().and_then(meridian_fleet::fencing_term);
        let newer_before = puts.iter().any(|q| {
            q.seq < p.seq
                && q.applied()
                && (q.region.as_str(), q.service.as_str()) == (p.region.as_str(), p.service.as_str())
                && q.idempotency_key.as_deref().and_then(meridian_fleet::fencing_term) > term
        });
        assert!(
            !(p.applied() && newer_before),
            "the deposed leader's late request was applied over a newer leader's write: {p:?}\n{}",
            logs(&[second, "r3"])
        );
        eprintln!(
            "late request from the deposed replica: {} {}/{} {}% -> {}",
            p.idempotency_key.as_deref().unwrap_or("-"),
            p.region,
            p.service,
            p.percent,
            p.status
        );
    }

    // The rollout completes under r3.
    wait("every unit at 100 %", Duration::from_secs(90), || {
        regions.iter().all(|r| services.iter().all(|s| fleet.traffic(r, s) == Some(100)))
    });
    let out = plane.kubectl(&["get", "rolloutplan", "ha"], None);
    eprintln!("{}", text(&out));
    wait("the status to say complete", Duration::from_secs(20), || {
        text(&plane.kubectl(&["get", "rolloutplan", "ha", "-o", "jsonpath={.status.phase}"], None)) == "complete"
    });

    // No step repeated or skipped, and each step sent under one key (a re-send after a takeover
    // reuses the intent's key, so the fleet applies it once).
    let puts = fleet.puts();
    for r in regions {
        for s in services {
            let mine: Vec<_> = puts.iter().filter(|p| p.applied() && p.region == r && p.service == s).collect();
            let mut walked: Vec<u32> = Vec::new();
            for p in &mine {
                if walked.last() != Some(&p.percent) {
                    walked.push(p.percent);
                }
            }
            assert_eq!(walked, STEPS, "{r}/{s} walked {walked:?}");
            for step in STEPS {
                let keys: std::collections::BTreeSet<_> =
                    mine.iter().filter(|p| p.percent == step).map(|p| p.idempotency_key.clone()).collect();
                assert_eq!(keys.len(), 1, "{r}/{s} {step}% was sent under several keys: {keys:?}");
            }
        }
    }
    for (_, mut child) in replicas {
        let _ = child.kill();
        let _ = child.wait();
    }
    // With --log-format json a replica's log is JSON lines only: following, leading, losing
    // the lease and the transitions alike.
    for name in ["r1", "r2", "r3"] {
        let logged = std::fs::read_to_string(log(name)).unwrap_or_default();
        for line in logged.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok_and(|v| v["message"].is_string()), "{name} logged a line that is not JSON: {line}");
        }
        assert!(logged.contains("\"kind\":\"lifecycle\"") && logged.contains(" follows on lease "), "{name}: {logged}");
    }
    assert!(logs(&["r1", "r2", "r3"]).contains("\"kind\":\"transition\""), "no transition was logged");
}

/// The controller's identity as deploy/rbac.yaml binds it: a static token whose user is the
/// ServiceAccount's name, which is what RBAC matches a ServiceAccount subject on.
const CONTROLLER: &str = "system:serviceaccount:meridian:meridian";

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_controller_does_its_job_with_exactly_the_rbac_in_deploy() {
    let groups: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:meridian"];
    let plane = ControlPlane::start_with_tokens(&[("controller-token-for-the-tests", CONTROLLER, groups)]);
    plane.install_crds();
    for file in ["deploy/namespace.yaml", "deploy/rbac.yaml", "deploy/admission.yaml"] {
        let out = plane.kubectl(&["apply", "-f", file], None);
        assert!(out.status.success(), "{file}: {}", text(&out));
    }
    let fleet = Fleet::start(FleetConfig::new(["a", "b"], ["signin", "store", "music"])).await.expect("start fleet");
    let manifest = small_plan("rbac", "meridian", &fleet.base_url());
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let kubeconfig = plane.kubeconfig_for("controller-token-for-the-tests");
    let mut child = replica_in("meridian", &kubeconfig, "only", &log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait("every unit at 100 % under the controller's own identity", Duration::from_secs(60), || {
        ["a", "b"].iter().all(|r| fleet.traffic(r, "signin") == Some(100))
    });
    wait("the status to say complete", Duration::from_secs(20), || {
        text(&plane.kubectl(&["get", "rolloutplan", "rbac", "-n", "meridian", "-o", "jsonpath={.status.phase}"], None))
            == "complete"
    });
    let out = plane.kubectl(&["get", "configmap", "meridian-audit-rbac-000001", "-n", "meridian", "-o", "name"], None);
    assert!(out.status.success(), "no audit log: {}\n{}", text(&out), logged());
    // Every transition is an Event on the plan.
    let reasons = || {
        text(
            &plane
                .kubectl(&["get", "events.events.k8s.io", "-n", "meridian", "-o", "jsonpath={.items[*].reason}"], None),
        )
    };
    wait("Events for the transitions", Duration::from_secs(20), || reasons().contains("Completed"));
    assert!(reasons().contains("WaveStarted"), "{}", reasons());
    // An edit that does not validate: the last good spec stays, Accepted turns False with the
    // located error, and an Event says so.
    let bad = manifest.replace("regions: [a], bake", "regions: [zz], bake");
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&bad));
    assert!(out.status.success(), "{}", text(&out));
    let accepted = || {
        text(&plane.kubectl(
            &[
                "get",
                "rolloutplan",
                "rbac",
                "-n",
                "meridian",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Accepted')].status} {.status.conditions[?(@.type=='Accepted')].message}",
            ],
            None,
        ))
    };
    wait("Accepted=False", Duration::from_secs(20), || accepted().starts_with("False"));
    assert!(accepted().contains("unknown region \"zz\""), "{}", accepted());
    wait("an InvalidSpec Event", Duration::from_secs(20), || reasons().contains("InvalidSpec"));

    let get = |name: &str, path: &str| {
        text(&plane.kubectl(&["get", "rolloutplan", name, "-n", "meridian", "-o", &format!("jsonpath={path}")], None))
    };
    // A command made with kubectl alone: applied once by the leader, audited with its issuer.
    let pause = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutCommand\nmetadata: {generateName: pause-, namespace: \
                 meridian}\nspec: {plan: rbac, command: pause, by: admin}\n";
    let out = plane.kubectl(&["create", "-f", "-"], Some(pause));
    assert!(out.status.success(), "{}", text(&out));
    wait("the kubectl pause applied", Duration::from_secs(20), || {
        get("rbac", "{.status.phase}") == "paused"
            || text(&plane.kubectl(&["get", "rolloutcommands", "-n", "meridian", "-o", "name"], None)).is_empty()
    });
    wait("the applied RolloutCommand deleted", Duration::from_secs(20), || {
        text(&plane.kubectl(&["get", "rolloutcommands", "-n", "meridian", "-o", "name"], None)).is_empty()
    });
    let audit = text(&plane.kubectl(
        &["get", "configmap", "meridian-audit-rbac-000001", "-n", "meridian", "-o", "jsonpath={.data}"],
        None,
    ));
    assert!(audit.contains(r#"\"command\":\"pause\",\"by\":\"admin\""#), "{audit}");
    // The plan's audit log and the controller's history are hash chains, verified over the API.
    let server = format!("http://127.0.0.1:{}", port_of("meridian/only"));
    for scope in [&["--plan", "rbac"][..], &[]] {
        let mut args = vec!["audit", "verify", "--server", &server];
        args.extend_from_slice(scope);
        let out = crate::support::meridian(&args);
        let said = crate::support::stdout(&out);
        assert!(out.status.success() && said.contains("audit chain intact"), "{said}{}", crate::support::stderr(&out));
    }

    // Deletion: every plan carries the finalizer; a settled plan goes at once.
    assert_eq!(get("rbac", "{.metadata.finalizers}"), "[\"meridian.dev/rollout\"]");
    let out = plane.kubectl(&["delete", "rolloutplan", "rbac", "-n", "meridian", "--timeout=20s"], None);
    assert!(out.status.success(), "a complete plan's deletion: {}\n{}", text(&out), logged());
    // A plan with traffic in flight (b waits for an approval nobody gives) is held...
    let held = manifest
        .replace("name: rbac", "name: held")
        .replace("{name: signin}", "{name: store}")
        .replace("{name: b}]", "{name: b, approvals: [never-given]}]");
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&held));
    assert!(out.status.success(), "{}", text(&out));
    wait("held: a enabled, b waiting", Duration::from_secs(30), || fleet.traffic("a", "store") == Some(100));
    wait("held: the finalizer", Duration::from_secs(20), || {
        get("held", "{.metadata.finalizers}").contains("meridian.dev/rollout")
    });
    let out = plane.kubectl(&["delete", "rolloutplan", "held", "-n", "meridian", "--wait=false"], None);
    assert!(out.status.success(), "{}", text(&out));
    wait("a DeletionWaiting Event", Duration::from_secs(20), || reasons().contains("DeletionWaiting"));
    assert!(!get("held", "{.metadata.deletionTimestamp}").is_empty(), "the plan in flight went");
    assert_eq!(fleet.traffic("a", "store"), Some(100), "traffic is left as the rollout left it");
    // ... until its policy says abort: aborted (audited), then gone.
    let out =
        plane.kubectl(&["annotate", "rolloutplan", "held", "-n", "meridian", "meridian.dev/on-delete=abort"], None);
    assert!(out.status.success(), "{}", text(&out));
    wait("the aborted plan to go", Duration::from_secs(30), || {
        !plane.kubectl(&["get", "rolloutplan", "held", "-n", "meridian"], None).status.success()
    });
    assert!(reasons().contains("DeletionAborting"), "{}", reasons());
    let out = plane
        .kubectl(&["get", "configmap", "meridian-audit-held-000001", "-n", "meridian", "-o", "jsonpath={.data}"], None);
    assert!(
        text(&out).contains("kubernetes (RolloutPlan deleted)"),
        "the abort was not audited: {}\n{}",
        text(&out),
        logged()
    );
    // A grant through the HTTP API is an Approval resource the controller writes (marked as
    // its API's, with the caller), under deploy/'s RBAC and admission policy; it opens the gate.
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&gated_plan("gated", "meridian", "music", &fleet.base_url())));
    assert!(out.status.success(), "{}", text(&out));
    wait("gated: a enabled, b waiting for go-b", Duration::from_secs(30), || fleet.traffic("a", "music") == Some(100));
    let api = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian")).args(args).args(["--server", &server]).output().unwrap();
        assert!(
            out.status.success(),
            "meridian {args:?}: {}{}",
            crate::support::stdout(&out),
            crate::support::stderr(&out)
        );
    };
    api(&["approve", "go-b", "--plan", "gated", "--reference", "ticket 7", "--name", "go-b-api"]);
    let approval = |path: &str| {
        text(
            &plane.kubectl(&["get", "approval", "go-b-api", "-n", "meridian", "-o", &format!("jsonpath={path}")], None),
        )
    };
    assert_eq!(approval("{.metadata.annotations.meridian\\.dev/granted-via}"), "api");
    assert_eq!(approval("{.spec.flag} {.spec.reference}"), "go-b ticket 7");
    wait("the API's grant to open b", Duration::from_secs(30), || fleet.traffic("b", "music") == Some(100));
    // Revoked through the API: recorded as revoked, and the resource is gone.
    api(&["revoke", "go-b-api", "--reason", "done"]);
    let out = plane.kubectl(&["get", "approval", "go-b-api", "-n", "meridian"], None);
    assert!(!out.status.success() && text(&out).contains("NotFound"), "{}", text(&out));
    let approvals = || -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&get_text(&format!("{server}/api/v1/approvals"))).unwrap();
        v["approvals"].as_array().cloned().unwrap_or_default()
    };
    let revoked = |name: &str| approvals().iter().any(|a| a["name"] == name && !a["revoked"].is_null());
    let go_b = approvals().into_iter().find(|a| a["name"] == "go-b-api");
    assert!(go_b.as_ref().is_some_and(|a| a["revoked"]["reason"] == "done"), "{go_b:?}");
    // Deleting an API grant's resource with kubectl revokes it, like any Approval's deletion.
    api(&["approve", "go-b", "--plan", "gated", "--reference", "ticket 8", "--name", "go-b-again"]);
    assert!(!revoked("go-b-again"));
    let out = plane.kubectl(&["delete", "approval", "go-b-again", "-n", "meridian"], None);
    assert!(out.status.success(), "{}", text(&out));
    wait_explained("the deleted resource's grant revoked", Duration::from_secs(30), logged, || revoked("go-b-again"));

    // The namespace without plans is a configuration like any other, not a rejected edit.
    assert!(!logged().contains("no RolloutPlan found"), "{}", logged());
    assert!(!logged().contains("forbidden"), "the controller was refused something:\n{}", logged());
    let _ = child.kill();
    let _ = child.wait();
}

/// A plan `name` in `namespace` on the fleet's regions a then b for `service`; region b needs
/// the flag `go-b`.
fn gated_plan(name: &str, namespace: &str, service: &str, fleet_url: &str) -> String {
    small_plan(name, namespace, fleet_url)
        .replace("{name: signin}", &format!("{{name: {service}}}"))
        .replace("{name: b}]", "{name: b, approvals: [go-b]}]")
}

fn approval_in(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: \
         {{flag: go-b, grantedBy: ministry, reference: letter 9}}\n"
    )
}

/// `meridian kube --all-namespaces` as the controller's ServiceAccount bound to exactly
/// deploy/cluster's ClusterRole and Lease Role: one replica runs the plans of two namespaces,
/// each plan's status, audit and Events in its own namespace; an Approval opens the plan of its
/// namespace only, not the other's of the same flag; a second plan of an existing name in
/// another namespace is refused (Accepted=False naming both namespaces, an Event) while the
/// first runs on, and runs from its own record once the first is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn one_replica_runs_the_plans_of_every_namespace_with_exactly_the_cluster_rbac() {
    let groups: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:meridian"];
    let plane = ControlPlane::start_with_tokens(&[("controller-token-for-the-tests", CONTROLLER, groups)]);
    plane.install_crds();
    let apply = |what: &str, manifest: &str| {
        let out = plane.kubectl(&["apply", "-f", "-"], Some(manifest));
        assert!(out.status.success(), "{what}: {}", text(&out));
    };
    let out = plane.kubectl(&["apply", "-f", "deploy/namespace.yaml"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = plane.kubectl(&["create", "serviceaccount", "meridian", "-n", "meridian"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = plane.kubectl(&["apply", "-f", "deploy/cluster/rbac.yaml"], None);
    assert!(out.status.success(), "{}", text(&out));
    for ns in ["team-a", "team-b"] {
        let out = plane.kubectl(&["create", "namespace", ns], None);
        assert!(out.status.success(), "{}", text(&out));
    }
    let fleet = Fleet::start(FleetConfig::new(["a", "b"], ["signin", "store", "music"])).await.expect("start fleet");
    let url = fleet.base_url();
    apply("alpha", &gated_plan("alpha", "team-a", "signin", &url));
    apply("beta", &gated_plan("beta", "team-b", "store", &url));
    // The flag both plans need, granted in team-a only: it opens alpha, never beta.
    apply("team-a's approval", &approval_in("go-b-a", "team-a"));

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let listen = format!("127.0.0.1:{}", port_of("all/only"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("kube")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_for("controller-token-for-the-tests"))
        .args(["--namespace", "meridian", "--all-namespaces", "--listen", &listen, "--no-auth", "--identity", "only"])
        .args(["--lease-duration", &format!("{LEASE_SECONDS}s"), "--renew-deadline", "2s", "--retry-period", "500ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn meridian kube");
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let get = |ns: &str, name: &str, path: &str| {
        text(&plane.kubectl(&["get", "rolloutplan", name, "-n", ns, "-o", &format!("jsonpath={path}")], None))
    };
    wait("the first replica to lead", Duration::from_secs(30), || holder_in(&plane, "meridian") == "only");
    // A second replica, same flags: it follows, reading every namespace's plans.
    let follower_log = dir.path().join("follower.log");
    let follower_listen = format!("127.0.0.1:{}", port_of("all/second"));
    let mut follower = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("kube")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_for("controller-token-for-the-tests"))
        .args(["--namespace", "meridian", "--all-namespaces", "--listen", &follower_listen, "--no-auth"])
        .args(["--identity", "second"])
        .args(["--lease-duration", &format!("{LEASE_SECONDS}s"), "--renew-deadline", "2s", "--retry-period", "500ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&follower_log).unwrap())
        .spawn()
        .expect("spawn the second replica");

    wait("alpha complete in team-a", Duration::from_secs(60), || {
        ["a", "b"].iter().all(|r| fleet.traffic(r, "signin") == Some(100))
    });
    wait("alpha's status to say complete", Duration::from_secs(20), || {
        get("team-a", "alpha", "{.status.phase}") == "complete"
    });
    // beta went as far as its own namespace allows: a enabled, b waiting for its flag.
    wait("beta: a enabled", Duration::from_secs(30), || fleet.traffic("a", "store") == Some(100));
    wait("beta: blocked on go-b", Duration::from_secs(20), || {
        get("team-b", "beta", "{.status.blocked}").contains("go-b")
    });
    assert_eq!(fleet.traffic("b", "store"), None, "team-a's approval opened team-b's plan\n{}", logged());

    // The follower shows both namespaces' plans as the leader left them, and takes a command
    // for team-b's plan, which the leader applies there.
    let on_follower = |args: &[&str]| {
        let mut all = args.to_vec();
        let server = format!("http://{follower_listen}");
        all.extend(["--server", &server]);
        let out = crate::support::meridian(&all);
        (out.status.success(), format!("{}{}", crate::support::stdout(&out), crate::support::stderr(&out)))
    };
    wait("the follower to show alpha complete and beta running", Duration::from_secs(20), || {
        let (_, said) = on_follower(&["status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&said).unwrap_or_default();
        let plans = v["plans"].as_array().cloned().unwrap_or_default();
        let phase = |name: &str| plans.iter().find(|p| p["name"] == name).map(|p| p["phase"].clone());
        phase("alpha") == Some("complete".into()) && phase("beta") == Some("running".into())
    });
    let (ok, said) = on_follower(&["pause", "beta"]);
    assert!(ok, "pause beta through the follower: {said}");
    wait("the leader to pause team-b's beta", Duration::from_secs(20), || {
        get("team-b", "beta", "{.status.phase}") == "paused"
    });
    let (ok, said) = on_follower(&["resume", "beta"]);
    assert!(ok, "resume beta through the follower: {said}");
    wait("beta running again", Duration::from_secs(20), || get("team-b", "beta", "{.status.phase}") == "running");
    let followed = std::fs::read_to_string(&follower_log).unwrap_or_default();
    assert!(followed.contains("second follows on lease meridian/meridian"), "{followed}");

    // A plan named alpha in team-b as well: refused, said on it, while team-a's alpha stays.
    apply("a second alpha", &gated_plan("alpha", "team-b", "music", &url));
    let accepted = || {
        get(
            "team-b",
            "alpha",
            "{.status.conditions[?(@.type=='Accepted')].status} {.status.conditions[?(@.type=='Accepted')].reason} \
             {.status.conditions[?(@.type=='Accepted')].message}",
        )
    };
    wait("team-b's alpha Accepted=False", Duration::from_secs(20), || accepted().starts_with("False DuplicateName"));
    assert!(
        accepted().contains("namespace \"team-a\"") && accepted().contains("namespace \"team-b\""),
        "{}",
        accepted()
    );
    let reasons = |ns: &str| {
        text(&plane.kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "jsonpath={.items[*].reason}"], None))
    };
    wait("a DuplicateName Event in team-b", Duration::from_secs(20), || reasons("team-b").contains("DuplicateName"));
    assert_eq!(get("team-a", "alpha", "{.status.phase}"), "complete");
    assert!(get("team-a", "alpha", "{.status.conditions[?(@.type=='Accepted')].status}") == "True");

    // A command created next to the refused duplicate, for the alpha that runs in team-a, would
    // wait forever unseen: it is refused (history, a Warning Event on it) and deleted.
    let stray = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutCommand\nmetadata: {name: stray-pause, namespace: \
                 team-b}\nspec: {plan: alpha, command: pause, by: admin}\n";
    apply("a stray command", stray);
    wait("the stray command refused and deleted", Duration::from_secs(30), || {
        text(&plane.kubectl(&["get", "rolloutcommands", "-n", "team-b", "-o", "name"], None)).is_empty()
    });
    wait("a CommandRefused Event in team-b", Duration::from_secs(20), || reasons("team-b").contains("CommandRefused"));
    let notes =
        text(&plane.kubectl(&["get", "events.events.k8s.io", "-n", "team-b", "-o", "jsonpath={.items[*].note}"], None));
    assert!(notes.contains("plan \"alpha\" runs in namespace \"team-a\", not in \"team-b\""), "{notes}");
    assert_eq!(get("team-a", "alpha", "{.status.phase}"), "complete", "the stray command was applied");
    let server = format!("http://127.0.0.1:{}", port_of("all/only"));
    let history = get_text(&format!("{server}/api/v1/history?limit=1000"));
    assert!(history.contains("command-refused") && history.contains("stray-pause"), "{history}");

    // team-b's own approval opens beta.
    apply("team-b's approval", &approval_in("go-b-b", "team-b"));
    wait("beta complete", Duration::from_secs(60), || fleet.traffic("b", "store") == Some(100));
    wait("beta's status to say complete", Duration::from_secs(20), || {
        get("team-b", "beta", "{.status.phase}") == "complete"
    });
    assert_eq!(fleet.traffic("a", "music"), None, "the refused duplicate was run\n{}", logged());

    // Each plan's audit log and Events are in its namespace; the history in the controller's.
    for (ns, plan) in [("team-a", "alpha"), ("team-b", "beta")] {
        let segment = format!("meridian-audit-{plan}-000001");
        let out = plane.kubectl(&["get", "configmap", &segment, "-n", ns, "-o", "name"], None);
        assert!(out.status.success(), "no audit log of {plan} in {ns}: {}\n{}", text(&out), logged());
        wait("the transitions' Events", Duration::from_secs(20), || reasons(ns).contains("Completed"));
    }
    let out = plane.kubectl(&["get", "configmap", "meridian-audit-alpha-000001", "-n", "team-b"], None);
    assert!(!out.status.success(), "the refused alpha got an audit log");
    let out = plane.kubectl(&["get", "configmap", "meridian-history-000001", "-n", "meridian", "-o", "name"], None);
    assert!(out.status.success(), "no history in the home namespace: {}", text(&out));
    // The API names plans as before, and verifies each plan's chain.
    for plan in ["alpha", "beta"] {
        let out = crate::support::meridian(&["audit", "verify", "--server", &server, "--plan", plan]);
        let said = crate::support::stdout(&out);
        assert!(out.status.success() && said.contains("audit chain intact"), "{said}{}", crate::support::stderr(&out));
    }

    // team-a's alpha deleted (complete: it goes at once): the name passes to team-b's alpha,
    // which starts from its own (empty) record, not from the state of the one that went.
    let out = plane.kubectl(&["delete", "rolloutplan", "alpha", "-n", "team-a", "--timeout=20s"], None);
    assert!(out.status.success(), "{}\n{}", text(&out), logged());
    wait("team-b's alpha to run to the end", Duration::from_secs(60), || {
        ["a", "b"].iter().all(|r| fleet.traffic(r, "music") == Some(100))
    });
    wait("team-b's alpha complete and accepted", Duration::from_secs(20), || {
        get("team-b", "alpha", "{.status.phase} {.status.conditions[?(@.type=='Accepted')].status}") == "complete True"
    });
    let out = plane.kubectl(&["get", "configmap", "meridian-audit-alpha-000001", "-n", "team-b", "-o", "name"], None);
    assert!(out.status.success(), "no audit log of team-b's alpha: {}\n{}", text(&out), logged());
    let out = crate::support::meridian(&["audit", "verify", "--server", &server, "--plan", "alpha"]);
    let said = crate::support::stdout(&out);
    assert!(out.status.success() && said.contains("audit chain intact"), "{said}{}", crate::support::stderr(&out));
    assert!(!logged().contains("forbidden"), "the controller was refused something:\n{}", logged());
    let followed = std::fs::read_to_string(&follower_log).unwrap_or_default();
    assert!(!followed.contains("forbidden"), "the follower was refused something:\n{followed}");
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = child.kill();
    let _ = child.wait();
}

/// `kubectl` with one kubeconfig (the test API server's, or a real cluster's).
struct Kubectl {
    bin: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        kubeplane::kubectl_with(&self.bin, &self.kubeconfig, args, stdin)
    }
}

/// `small_plan` enabled through the Kubernetes actuator: the percent in ConfigMap
/// `REGION-SERVICE` of `namespace`, key `percent`.
fn configmap_plan(name: &str, namespace: &str) -> String {
    let plan = small_plan(name, namespace, "http://unused");
    let http = plan.lines().find(|l| l.trim_start().starts_with("http:")).unwrap().to_string();
    plan.replace(
        &http,
        &format!(
            "    kubernetes: {{namespace: {namespace}, configMap: {{name: '{{{{region}}}}-{{{{service}}}}', key:              percent}}}}"
        ),
    )
}

/// The end-to-end story on any cluster `k` reaches: the CRDs install, a plan applied with
/// kubectl in a fresh namespace is rolled out by `meridian kube` (run here, against a fleet on
/// 127.0.0.1) to 100 %, its status says complete, Events tell the transitions, and the plan's
/// deletion completes; a second plan is rolled out by the Kubernetes actuator to ConfigMaps of
/// that namespace; the namespace is deleted at the end.
async fn end_to_end(k: &Kubectl, namespace: &str, log_dir: &Path) {
    let out = k.run(&["create", "namespace", namespace], None);
    assert!(out.status.success(), "create namespace {namespace}: {}", text(&out));
    let out = k.run(&["apply", "-f", "deploy/crds/meridian.yaml"], None);
    assert!(out.status.success(), "the CRDs: {}", text(&out));
    let out = k.run(&["wait", "--for=condition=Established", "--timeout=60s", "crd/rolloutplans.meridian.dev"], None);
    assert!(out.status.success(), "{}", text(&out));
    let fleet = Fleet::start(FleetConfig::new(["a", "b"], ["signin"])).await.expect("start fleet");
    let manifest = small_plan("e2e", namespace, &fleet.base_url());
    let out = k.run(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{}", text(&out));
    let log = log_dir.join("e2e.log");
    let mut controller = replica_in(namespace, &k.kubeconfig, "e2e", &log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let get = |path: &str| {
        text(&k.run(&["get", "rolloutplan", "e2e", "-n", namespace, "-o", &format!("jsonpath={path}")], None))
    };
    wait("every unit at 100 %", Duration::from_secs(120), || {
        ["a", "b"].iter().all(|r| fleet.traffic(r, "signin") == Some(100))
    });
    wait("the status to say complete", Duration::from_secs(30), || get("{.status.phase}") == "complete");
    let reasons =
        || text(&k.run(&["get", "events.events.k8s.io", "-n", namespace, "-o", "jsonpath={.items[*].reason}"], None));
    wait("the transitions' Events", Duration::from_secs(30), || reasons().contains("Completed"));
    let out = k.run(&["delete", "rolloutplan", "e2e", "-n", namespace, "--timeout=30s"], None);
    assert!(out.status.success(), "the plan's deletion: {}\n{}", text(&out), logged());

    // The Kubernetes actuator: each unit's percent in a ConfigMap, walked step by step.
    for region in ["a", "b"] {
        let out = k.run(&["create", "configmap", &format!("{region}-signin"), "-n", namespace], None);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = k.run(&["apply", "-f", "-"], Some(&configmap_plan("e2e-configmap", namespace)));
    assert!(out.status.success(), "{}", text(&out));
    let percent = |region: &str| {
        let path = "jsonpath={.data.percent}";
        text(&k.run(&["get", "configmap", &format!("{region}-signin"), "-n", namespace, "-o", path], None))
    };
    wait("both ConfigMaps at 100 %", Duration::from_secs(120), || percent("a") == "100" && percent("b") == "100");
    let get = |path: &str| {
        text(&k.run(&["get", "rolloutplan", "e2e-configmap", "-n", namespace, "-o", &format!("jsonpath={path}")], None))
    };
    wait("the actuator's plan complete", Duration::from_secs(30), || get("{.status.phase}") == "complete");
    let key = text(
        &k.run(&["get", "configmap", "b-signin", "-n", namespace, "-o", "jsonpath={.metadata.annotations}"], None),
    );
    assert!(key.contains("meridian.dev/idempotency-key") && key.contains("e2e-configmap/b/signin/"), "{key}");
    // Every step of each unit is in the audit log, in order: 10, 50, then 100 %.
    let server = format!("http://127.0.0.1:{}", port_of(&format!("{namespace}/e2e")));
    let audit: serde_json::Value =
        serde_json::from_str(&get_text(&format!("{server}/api/v1/audit?plan=e2e-configmap&limit=1000"))).unwrap();
    let records = audit["records"].as_array().cloned().unwrap_or_default();
    for region in ["a", "b"] {
        let walked: Vec<u64> = records
            .iter()
            .filter(|r| r["region"] == region && r["event"]["type"] == "unit")
            .filter_map(|r| r["event"]["to_percent"].as_u64())
            .filter(|p| *p > 0)
            .collect();
        let mut steps = walked.clone();
        steps.dedup();
        assert_eq!(steps, [10, 50, 100], "{region}/signin walked {walked:?}: {audit}");
    }
    let out = crate::support::meridian(&["audit", "verify", "--server", &server, "--plan", "e2e-configmap"]);
    assert!(out.status.success(), "{}{}", crate::support::stdout(&out), crate::support::stderr(&out));
    let _ = controller.kill();
    let _ = controller.wait();
    let _ = k.run(&["delete", "namespace", namespace, "--wait=false"], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_end_to_end_story_runs_on_the_test_api_server() {
    let plane = ControlPlane::start();
    let k = Kubectl { bin: plane.bin.join("kubectl"), kubeconfig: plane.kubeconfig.clone() };
    let dir = tempfile::tempdir().unwrap();
    end_to_end(&k, "meridian-e2e", dir.path()).await;
}

/// The same story against a real cluster: `MERIDIAN_TEST_KUBECONFIG=~/.kube/config
/// scripts/test`. It creates a namespace `meridian-e2e-<pid>` (deleted at the end) and installs
/// the CRDs (cluster-wide, left in place); the controller runs on this machine. Without the
/// variable it says plainly that it was skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_end_to_end_story_runs_on_a_real_cluster_when_one_is_given() {
    let Some(kubeconfig) = std::env::var_os("MERIDIAN_TEST_KUBECONFIG").map(std::path::PathBuf::from) else {
        eprintln!(
            "SKIPPED: the end-to-end suite against a real cluster (set MERIDIAN_TEST_KUBECONFIG to a kubeconfig \
             to run it; it ran against the test API server instead)"
        );
        return;
    };
    let bin = std::env::var_os("MERIDIAN_KUBE_BIN")
        .map(|d| std::path::PathBuf::from(d).join("kubectl"))
        .unwrap_or_else(|| "kubectl".into());
    let k = Kubectl { bin, kubeconfig };
    let dir = tempfile::tempdir().unwrap();
    end_to_end(&k, &format!("meridian-e2e-{}", std::process::id()), dir.path()).await;
}

#[test]
fn bad_election_settings_are_refused_by_flag_name_before_any_cluster_is_contacted() {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["kube", "--no-auth", "--kubeconfig", "/nonexistent", "--lease-duration", "2s", "--renew-deadline", "3s"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("--renew-deadline (3s) must be shorter than --lease-duration (2s)"), "{said}");
    assert!(!said.contains("kubeconfig"), "the cluster was contacted first: {said}");
}
