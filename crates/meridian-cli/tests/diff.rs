//! Golden tests of `meridian diff OLD NEW`: the binary's output compared exactly with the
//! files in `tests/diff/expected/` (set `UPDATE_GOLDEN=1` to rewrite them after a deliberate
//! change, then read the diff). The state in flight is made by the real engine and written
//! to a real SQLite state dir, which `--state-dir` reads read-only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_controller::store::StateStore;
use meridian_core::engine::{Observations, decide};
use meridian_core::validate::load;
use meridian_core::{PlanState, UnitPhase};
use meridian_store::SqliteStore;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diff")
}

/// Run `meridian diff` on the fixtures with `extra` arguments; (exit code, stdout, stderr).
fn diff(extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("diff")
        .arg(fixtures().join("old"))
        .arg(fixtures().join("new"))
        .args(extra)
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_TOKEN_FILE")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn golden(name: &str, actual: &str) {
    let path = fixtures().join("expected").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

/// The old plan's rollout decided by the engine minute by minute until `reached`: the state
/// and its audit records, and when.
fn rollout(reached: impl Fn(&PlanState) -> bool) -> (PlanState, Vec<meridian_core::AuditRecord>, DateTime<Utc>) {
    let text = std::fs::read_to_string(fixtures().join("old/restore.yaml")).unwrap();
    let bundle = load(&[("restore.yaml".into(), text)], None);
    assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
    let plan = &bundle.plans[0];
    let mut state = PlanState::new(plan);
    let mut now = Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap();
    let mut audit = Vec::new();
    while !reached(&state) {
        let d = decide(plan, state, &Observations::default(), now);
        audit.extend(d.audit);
        state = d.state;
        now += TimeDelta::minutes(1);
        assert!(now < Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap(), "never reached");
    }
    (state, audit, now)
}

/// A real SQLite state dir holding `rollout(reached)`.
fn state_dir(reached: impl Fn(&PlanState) -> bool) -> tempfile::TempDir {
    let (state, audit, now) = rollout(reached);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.commit("restore", &state, &audit, &[], &[], now).unwrap();
    drop(store);
    dir
}

#[test]
fn a_rollout_not_started() {
    let (code, out, err) = diff(&[]);
    assert_eq!(code, 0, "{err}");
    golden("not-started.txt", &out);
}

#[test]
fn against_a_state_dir_in_text_and_json() {
    // us/signin at 25 %: shortened steps place it at or below its traffic.
    let dir =
        state_dir(|s| s.unit("us", "signin").is_some_and(|u| u.percent == 25 && u.phase == UnitPhase::Progressing));
    let path = dir.path().to_str().unwrap();
    let (code, out, err) = diff(&["--state-dir", path]);
    assert_eq!(code, 0, "{err}");
    golden("state-dir.txt", &out.replace(path, "STATE_DIR"));
    let (code, out, err) = diff(&["--state-dir", path, "-o", "json", "--plan", "restore"]);
    assert_eq!(code, 0, "{err}");
    golden("state-dir.json", &out.replace(path, "STATE_DIR"));
}

#[test]
fn against_a_state_dir_later_a_removed_region_in_flight_and_a_wave_that_reopens() {
    // The canary wave complete, eu at its first steps: eu is wound down, canary re-opens for fr.
    let dir = state_dir(|s| s.unit("eu", "store").is_some_and(|u| u.percent > 0));
    let path = dir.path().to_str().unwrap();
    let (code, out, err) = diff(&["--state-dir", path, "--plan", "restore"]);
    assert_eq!(code, 0, "{err}");
    golden("state-dir-later.txt", &out.replace(path, "STATE_DIR"));
}

#[test]
fn usage_errors_exit_3_and_name_what_is_wrong() {
    let (code, _, err) = diff(&["--plan", "nope"]);
    assert_eq!(code, 3);
    assert_eq!(err, "meridian diff: no plan named \"nope\" in OLD or NEW\n");
    let (code, _, err) = diff(&["--state-dir", "/nonexistent/meridian-state"]);
    assert_eq!(code, 3);
    assert!(err.starts_with("meridian diff: cannot read the state dir /nonexistent/meridian-state"), "{err}");
}

const VIEWER: &str = "viewer-token-0000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_live_server() {
    // The real API router on 127.0.0.1, its plan at the same point as the state dir above.
    let yaml = std::fs::read_to_string(fixtures().join("old/restore.yaml")).unwrap();
    let control = meridian_api::fake::FakeControl::from_yaml(&yaml);
    let (state, _, _) = rollout(|s| s.unit("eu", "store").is_some_and(|u| u.percent > 0));
    control.update("restore", |s| *s = state);
    let auth = meridian_api::Auth::from_yaml(
        "tokens.yaml",
        &format!("tokens:\n- {{name: vic, token: {VIEWER}, role: viewer}}\n"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let app = meridian_api::router(control, auth, meridian_api::Limits::default());
    tokio::spawn(meridian_api::serve(listener, app, None, std::future::pending()));

    let url = base.clone();
    let run = move || diff(&["--server", url.as_str(), "--token", VIEWER, "--plan", "restore"]);
    let (code, out, err) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, 0, "{err}");
    golden("server.txt", &out.replace(&base, "SERVER"));

    // Without a token the server refuses (1), and a server nobody answers on is a usage error (3).
    let url = base.clone();
    let run = move || diff(&["--server", url.as_str(), "--plan", "restore"]);
    let (code, _, err) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, 1, "{err}");
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) = tokio::task::spawn_blocking(move || diff(&["--server", url.as_str()])).await.unwrap();
    assert_eq!(code, 3, "{err}");
}
