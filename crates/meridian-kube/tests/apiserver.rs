//! The custom resources against a real Kubernetes API server: `kube-apiserver` and `etcd`
//! (built by `scripts/kube-test-binaries`, found through `MERIDIAN_KUBE_BIN`) on 127.0.0.1,
//! driven with the real `kubectl`. The API server refuses a CRD whose schema is not
//! structural, so installing them is the test that they are valid.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::time::Duration;

use common::{ControlPlane, GATED, JP_GO, Recorder, repo_root, text, wait_for};

#[test]
fn the_crds_install_and_every_example_manifest_applies_unchanged() {
    let plane = ControlPlane::start();
    plane.install_crds();
    // The committed definitions are what the code generates (checked in the unit tests too).
    assert_eq!(
        std::fs::read_to_string(repo_root().join("deploy/crds/meridian.yaml")).unwrap(),
        meridian_kube::crds_yaml().unwrap()
    );

    let out = plane.kubectl(&["apply", "-R", "-f", "config/"], None);
    assert!(out.status.success(), "config/ did not apply: {}", text(&out));
    let out = plane.kubectl(&["get", "rolloutplans", "-o", "name"], None);
    let names = text(&out);
    for plan in ["demo", "network-restoration", "store-relaunch"] {
        assert!(names.contains(&format!("rolloutplan.meridian.dev/{plan}")), "{names}");
    }
    let out = plane.kubectl(&["get", "approvals", "jp-regulator-2026-05", "-o", "jsonpath={.spec.flag}"], None);
    assert_eq!(text(&out), "jp-regulator");
    let out = plane.kubectl(&["get", "regions", "-o", "name"], None);
    assert!(!text(&out).trim().is_empty(), "no Region resources from config/regional: {}", text(&out));

    // What the schema refuses: an unknown field, and a value of the wrong type.
    let bad = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: bad}\nspec:\n  services: [{name: s}]\n  \
               regions: [{name: a}]\n  waves: [{name: w, regions: [a]}]\n";
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&format!("{bad}  colour: red\n")));
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown field \"spec.colour\""), "{}", text(&out));
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&format!("{bad}  steps: fast\n")));
    assert!(!out.status.success());
    assert!(text(&out).contains("spec.steps"), "{}", text(&out));

    // The core's doc comments are what `kubectl explain` says.
    let out = plane.kubectl(&["explain", "rolloutplan.spec.waves"], None);
    assert!(
        text(&out).contains("Waves run strictly in order; every region belongs to exactly one wave."),
        "{}",
        text(&out)
    );
}

#[test]
fn a_status_written_to_the_subresource_fills_the_printer_columns() {
    let plane = ControlPlane::start();
    plane.install_crds();
    let out = plane.kubectl(&["apply", "-f", "config/demo.yaml"], None);
    assert!(out.status.success(), "{}", text(&out));

    // The status the controller would write, computed by the crate's pure function.
    let bundle = meridian_core::validate::load(
        &[("demo.yaml".to_string(), std::fs::read_to_string(repo_root().join("config/demo.yaml")).unwrap())],
        None,
    );
    let plan = bundle.plans.into_iter().next().unwrap();
    let mut state = meridian_core::PlanState::new(&plan);
    state.waves[0].phase = meridian_core::WavePhase::Running;
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let status = meridian_kube::status::plan_status(&plan, &state, Some(1), None, None, now);
    let patch = serde_json::json!({ "status": status }).to_string();
    let out =
        plane.kubectl(&["patch", "rolloutplan", "demo", "--subresource=status", "--type=merge", "-p", &patch], None);
    assert!(out.status.success(), "status patch refused: {}", text(&out));
    let out = plane.kubectl(&["get", "rolloutplan", "demo"], None);
    let table = text(&out);
    let header = table.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(header, ["NAME", "PHASE", "WAVE", "ENABLED", "BLOCKED", "AGE"], "{table}");
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("demo") && row.contains("running") && row.contains("canary"), "{table}");
    assert!(row.contains(&format!("0/{}", plan.unit_count())), "{table}");
    // The conditions went through the schema unchanged.
    let out = plane.kubectl(&["get", "rolloutplan", "demo", "-o", "jsonpath={.status.conditions[*].type}"], None);
    assert_eq!(text(&out), "Accepted Progressing Blocked Degraded Complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_runs_on_resources_watched_in_the_api_server() {
    use meridian_controller::control::ControlPlane as _;
    let plane = ControlPlane::start();
    plane.install_crds();
    let out = plane.kubectl(&["apply", "-f", "-"], Some(GATED));
    assert!(out.status.success(), "{}", text(&out));

    let client = plane.client().await;
    let source = std::sync::Arc::new(meridian_kube::KubeSource::new(client, "default"));
    let fleet = std::sync::Arc::new(Recorder::default());
    let adapters = meridian_controller::runtime::Adapters {
        store: std::sync::Arc::new(meridian_controller::memory::MemoryStore::default()),
        health: std::sync::Arc::new(meridian_controller::nohealth::Unreadable { reason: "no checks".into() }),
        actuator: fleet.clone(),
        clock: std::sync::Arc::new(meridian_controller::runtime::SystemClock),
        notifier: std::sync::Arc::new(meridian_controller::runtime::NoNotifier),
    };
    let running = meridian_controller::runtime::start_with(
        source,
        meridian_controller::runtime::Settings::new(Vec::new()),
        adapters,
    )
    .await
    .expect("the controller starts on the API server's resources");
    let c = running.controller.clone();
    let unit = |region: &str| c.snapshot().plans["gated"].state.unit(region, "signin").cloned().unwrap();

    // a rolls out; jp waits for its regulator.
    wait_for("a enabled and jp waiting for its approval", Duration::from_secs(20), || {
        unit("a").phase == meridian_core::UnitPhase::Enabled
            && matches!(unit("jp").waiting, Some(meridian_core::WaitReason::Approval { .. }))
    })
    .await;
    assert_eq!(fleet.traffic.lock().unwrap().get(&("jp".into(), "signin".into())), None, "jp got traffic");

    // The regulator's approval is applied with kubectl: the watch wakes the loop and jp goes.
    let out = plane.kubectl(&["apply", "-f", "-"], Some(JP_GO));
    assert!(out.status.success(), "{}", text(&out));
    wait_for("plan complete", Duration::from_secs(20), || {
        c.snapshot().plans["gated"].state.phase() == meridian_core::PlanPhase::Complete
    })
    .await;
    let approvals = c.approvals().await.unwrap();
    assert!(approvals.iter().any(|a| a.name == "jp-letter" && a.revoked.is_none()), "{approvals:?}");

    // An edit that passes the schema but not validation is rejected whole, located by resource.
    let generation = c.snapshot().config.generation;
    let edit = GATED.replace("regions: [a], bake", "regions: [zz], bake");
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&edit));
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the edit rejected", Duration::from_secs(20), || c.snapshot().config.rejected.is_some()).await;
    let rejected = c.snapshot().config.rejected.clone().unwrap();
    assert!(
        rejected
            .errors
            .iter()
            .any(|e| e.starts_with("RolloutPlan/default/gated:") && e.contains("unknown region \"zz\"")),
        "{:?}",
        rejected.errors
    );
    assert_eq!(c.snapshot().config.generation, generation, "the last good spec stays in force");

    // The approval deleted from the API server is revoked, as a removed file is.
    let out = plane.kubectl(&["delete", "approval", "jp-letter"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = plane.kubectl(&["apply", "-f", "-"], Some(GATED));
    assert!(out.status.success(), "{}", text(&out));
    let mut revoked = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !revoked {
        assert!(tokio::time::Instant::now() < deadline, "the deleted approval was never revoked");
        revoked = c.approvals().await.unwrap().iter().any(|a| a.name == "jp-letter" && a.revoked.is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown();
}
