//! `meridian run` as a process: what it refuses at start.

use crate::support::{repo_root, spawn_run, spawn_run_on};

#[test]
fn a_second_run_on_the_same_state_dir_refuses_and_names_the_first() {
    let state = tempfile::tempdir().unwrap();
    let config = repo_root().join("config/demo.yaml");
    let first = spawn_run(&config, state.path(), &["--no-auth"]).expect("the first run starts");
    let (code, printed) = match spawn_run(&config, state.path(), &["--no-auth"]) {
        Ok(second) => panic!("a second run started on the same state dir: {}", second.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains(&first.child.id().to_string()), "the holder's pid is named: {printed}");
    assert!(printed.contains(&state.path().display().to_string()), "the state dir is named: {printed}");
    drop(first);
}

#[test]
fn bad_tls_files_stop_it_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let config = repo_root().join("config/demo.yaml");
    let state = dir.path().join("state");
    let args = ["--no-auth", "--tls-cert", cert.to_str().unwrap(), "--tls-key", cert.to_str().unwrap()];
    let (code, printed) = match spawn_run(&config, &state, &args) {
        Ok(run) => panic!("it started with a bad certificate: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("cert.pem"), "the file is named: {printed}");
    assert_no_decision(&state);
}

#[test]
fn a_taken_listen_address_stops_it_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, printed) = match spawn_run_on(&addr, &repo_root().join("config/demo.yaml"), &state, &["--no-auth"]) {
        Ok(run) => panic!("it started on a taken address: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains(&format!("cannot listen on {addr}")), "{printed}");
    assert_no_decision(&state);
}

/// The state dir (created when the store opened) holds no decision: nothing ran.
fn assert_no_decision(state: &std::path::Path) {
    let store = meridian_store::Store::open(state).expect("open the state");
    assert_eq!(store.audit(None, 0, 10).unwrap().len(), 0, "decisions were made before the start-up check");
}

#[test]
fn an_empty_database_file_stops_it_naming_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let db = state.join("meridian.db");
    std::fs::write(&db, b"").unwrap();
    let (code, printed) = match spawn_run(&repo_root().join("config/demo.yaml"), &state, &["--no-auth"]) {
        Ok(run) => panic!("it started fresh over an empty database: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains(&db.display().to_string()) && printed.contains("empty (0 bytes)"), "{printed}");
    assert!(printed.contains("restore it from a backup") && printed.contains("move it aside"), "{printed}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the file is left as it was");
}

#[test]
fn a_damaged_database_stops_it_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let db = state.join("meridian.db");
    std::fs::write(&db, vec![b'x'; 16384]).unwrap();
    let (code, printed) = match spawn_run(&repo_root().join("config/demo.yaml"), &state, &["--no-auth"]) {
        Ok(run) => panic!("it started on a damaged database: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains(&db.display().to_string()) && printed.contains("is damaged"), "{printed}");
}

#[test]
fn no_auth_on_a_non_loopback_address_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("config/demo.yaml");
    let state = dir.path().join("state");
    let (code, printed) = match spawn_run_on("0.0.0.0:0", &config, &state, &["--no-auth"]) {
        Ok(run) => panic!("it served an open API on every address: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("not a loopback address") && printed.contains("--i-know-this-is-open"), "{printed}");
    assert_no_decision(&state);
    let run = spawn_run_on("0.0.0.0:0", &config, &state, &["--no-auth", "--i-know-this-is-open"])
        .expect("it starts when told the API is open on purpose");
    drop(run);
}

#[test]
fn a_world_writable_tokens_file_is_refused_and_a_readable_one_with_plain_tokens_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, "tokens:\n- {name: oncall, token: long-enough-token-123, role: operator}\n").unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = repo_root().join("config/demo.yaml");
    let state = dir.path().join("state");
    let args = ["--tokens", tokens.to_str().unwrap()];
    let (code, printed) = match spawn_run(&config, &state, &args) {
        Ok(run) => panic!("it trusted a world-writable tokens file: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("writable by every user"), "{printed}");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = spawn_run(&config, &state, &args).expect("a world-readable file is accepted");
    assert!(
        run.stderr_head.contains("warning: tokens file") && run.stderr_head.contains("readable by every user"),
        "{}",
        run.stderr_head
    );
}

#[test]
fn a_plan_asking_for_the_kubernetes_actuator_stops_it_naming_meridian_kube() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: kubed}
spec:
  services: [{name: signin}]
  regions: [{name: us-east}, {name: jp, actuator: {kubernetes: {namespace: shop, configMap: {name: rollout, key: percent}}}}]
  waves: [{name: one, regions: [us-east]}, {name: two, regions: [jp]}]
",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, printed) = match spawn_run(&plan, &state, &["--no-auth"]) {
        Ok(run) => panic!("it started with a kubernetes actuator: {}", run.stderr_head),
        Err(refused) => refused,
    };
    assert_eq!(code, Some(1), "{printed}");
    assert!(
        printed.contains(
            "plan \"kubed\" in region \"jp\" sets traffic with the kubernetes actuator, which needs `meridian kube`"
        ),
        "{printed}"
    );
    assert_no_decision(&state);
}
