//! The `meridian` client subcommands (status, approve, revoke, pause, ...) run as the real
//! binary against the real API router on 127.0.0.1, backed by the fake control plane.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use meridian_api::fake::FakeControl;
use meridian_api::{Auth, Limits, TlsFiles, router, serve};
use meridian_controller::control::ControlPlane;
use meridian_core::{CommandKind, UnitPhase, WavePhase};

const PLAN: &str = r#"
apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: restore}
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions:
    - {name: us-east}
    - {name: jp, approvals: [jp-regulator]}
  waves:
    - {name: canary, regions: [us-east]}
    - {name: asia, regions: [jp]}
  steps: [10, 100]
  actuator: {log: {}}
"#;

const VIEWER: &str = "viewer-token-0000000001";
const OPERATOR: &str = "operator-token-00000001";
const APPROVER: &str = "approver-token-00000001";

struct Server {
    base: String,
    control: Arc<FakeControl>,
}

async fn start(tls: Option<TlsFiles>) -> Server {
    let control = FakeControl::from_yaml(PLAN);
    let auth = Auth::from_yaml(
        "tokens.yaml",
        &format!(
            "tokens:\n- {{name: vic, token: {VIEWER}, role: viewer}}\n- {{name: olga, token: {OPERATOR}, role: operator}}\n\
             - {{name: alice, token: {APPROVER}, role: approver, flags: [jp-regulator]}}\n"
        ),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scheme = if tls.is_some() { "https://localhost" } else { "http://127.0.0.1" };
    tokio::spawn(serve(listener, router(control.clone(), auth, Limits::default()), tls, std::future::pending()));
    Server { base: format!("{scheme}:{}", addr.port()), control }
}

/// Run `meridian ARGS` with `--server` pointing at `server` (unless given) and a clean env.
async fn meridian(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(&args)
            .env_remove("MERIDIAN_SERVER")
            .env_remove("MERIDIAN_TOKEN")
            .env_remove("MERIDIAN_TOKEN_FILE")
            .env_remove("MERIDIAN_CA_CERT")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn complete_everything(control: &FakeControl) {
    control.update("restore", |s| {
        s.units.iter_mut().for_each(|u| {
            u.phase = UnitPhase::Enabled;
            u.percent = 100;
        });
        s.waves.iter_mut().for_each(|w| w.phase = WavePhase::Complete);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_plans_and_shows_one_as_a_table_or_json() {
    let s = start(None).await;
    let list = meridian(&["status", "--server", &s.base, "--token", VIEWER], &[]).await;
    assert_eq!(code(&list), 0, "{}", err(&list));
    let text = out(&list);
    assert!(text.starts_with("PLAN     PHASE    ENABLED  WAVES"), "{text}");
    assert!(text.contains("restore  pending  0/4      canary:pending asia:pending"), "{text}");

    // Server and token from the environment.
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", VIEWER)];
    let one = meridian(&["status", "restore"], &env).await;
    assert_eq!(code(&one), 0, "{}", err(&one));
    let table = out(&one);
    assert!(table.contains("WAVE    REGION   SERVICE  STATE    STEP  TRAFFIC  HEALTH  WAITING FOR"), "{table}");
    assert!(
        table.contains(
            "asia    jp       signin   pending  -     0%       -       jp-regulator (approval jp-regulator not granted)"
        ),
        "{table}"
    );

    let json = meridian(&["status", "restore", "-o", "json"], &env).await;
    assert_eq!(code(&json), 0);
    let v: serde_json::Value = serde_json::from_str(&out(&json)).unwrap();
    assert_eq!(v["name"], "restore");
    assert_eq!(v["state"]["units"].as_array().unwrap().len(), 4);
    let list: serde_json::Value = serde_json::from_str(&out(&meridian(&["status", "-o", "json"], &env).await)).unwrap();
    assert_eq!(list["plans"][0]["enabled"], 0);
}

/// Wait (up to 20 s) until the API has read the snapshot `n` more times than now.
async fn after_reads(control: &meridian_api::fake::FakeControl, n: usize) {
    let target = control.snapshot_reads() + n;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while control.snapshot_reads() < target {
        assert!(tokio::time::Instant::now() < deadline, "the waiter never polled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_exits_0_when_complete() {
    let s = start(None).await;
    let control = s.control.clone();
    tokio::spawn(async move {
        // Once the waiter has read the pending state (two reads: it polls), complete it.
        after_reads(&control, 2).await;
        complete_everything(&control);
    });
    let o = meridian(
        &[
            "status",
            "restore",
            "--wait",
            "--interval",
            "100ms",
            "--timeout",
            "20s",
            "--server",
            &s.base,
            "--token",
            VIEWER,
        ],
        &[],
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("restore: complete (4/4 enabled"), "{}", out(&o));
    assert!(err(&o).contains("restore: pending (0/4 enabled"), "progress goes to stderr: {}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_for_a_wave_or_region() {
    let s = start(None).await;
    s.control.update("restore", |st| {
        st.waves[0].phase = WavePhase::Complete;
        st.units.iter_mut().filter(|u| u.region == "us-east").for_each(|u| u.phase = UnitPhase::Enabled);
    });
    let common = ["--wait", "--interval", "100ms", "--timeout", "1s", "--server", &s.base, "--token", VIEWER];
    let wave = meridian(&[&["status", "restore", "--wave", "canary"][..], &common].concat(), &[]).await;
    assert_eq!(code(&wave), 0, "{}", err(&wave));
    let region = meridian(&[&["status", "restore", "--region", "us-east"][..], &common].concat(), &[]).await;
    assert_eq!(code(&region), 0, "{}", err(&region));
    let other = meridian(&[&["status", "restore", "--region", "jp"][..], &common].concat(), &[]).await;
    assert_eq!(code(&other), 2, "jp is not done: {}", err(&other));
    let unknown = meridian(&[&["status", "restore", "--wave", "europe"][..], &common].concat(), &[]).await;
    assert_eq!(code(&unknown), 3);
    assert!(err(&unknown).contains("plan restore has no wave \"europe\" (waves: canary, asia)"), "{}", err(&unknown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_exits_1_when_halted_or_aborted() {
    let s = start(None).await;
    let control = s.control.clone();
    tokio::spawn(async move {
        after_reads(&control, 2).await;
        control.update("restore", |st| {
            st.waves[0].phase = WavePhase::Halted;
            st.units[0].phase = UnitPhase::RolledBack;
        });
    });
    let o =
        meridian(&["status", "restore", "--wait", "--interval", "100ms", "--server", &s.base, "--token", VIEWER], &[])
            .await;
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(err(&o).contains("plan restore halted: wave canary"), "{}", err(&o));

    // Aborted through the CLI itself, then waited on.
    let abort = meridian(&["abort", "restore", "--server", &s.base, "--token", OPERATOR], &[]).await;
    assert_eq!(code(&abort), 0, "{}", err(&abort));
    let o = meridian(&["status", "--wait", "--server", &s.base, "--token", VIEWER], &[]).await;
    assert_eq!(code(&o), 1, "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_exits_2_on_timeout() {
    let s = start(None).await;
    let began = std::time::Instant::now();
    let o = meridian(
        &[
            "status",
            "restore",
            "--wait",
            "--interval",
            "100ms",
            "--timeout",
            "700ms",
            "--server",
            &s.base,
            "--token",
            VIEWER,
        ],
        &[],
    )
    .await;
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("timed out after 700ms waiting for plan restore; it is pending"), "{}", err(&o));
    assert!(began.elapsed() >= Duration::from_millis(700));
    assert!(out(&o).contains("WAVE"), "the last table is shown: {}", out(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_3_on_usage_and_connection_errors() {
    let s = start(None).await;
    let nobody = format!("http://{}", closed_port().await);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["status", "--server", &nobody, "--token", VIEWER], "cannot reach"),
        (vec!["status", "restore", "--wait", "--server", &nobody], "hint: is the controller running?"),
        (vec!["status", "nope", "--server", &s.base, "--token", VIEWER], "no plan named \"nope\""),
        (vec!["status", "restore", "--server", &s.base], "missing bearer token"),
        (vec!["status", "restore", "--server", &s.base, "--token", "wrong-token-000000000"], "invalid token"),
        (vec!["status", "--wave", "canary", "--server", &s.base], "--wave"),
        (vec!["status", "restore", "--timeout", "soon"], "soon"),
        (vec!["status", "--server", "localhost:7070"], "invalid --server"),
    ];
    for (args, needle) in cases {
        let o = meridian(&args, &[]).await;
        assert_eq!(code(&o), 3, "{args:?}: {}", err(&o));
        assert!(err(&o).contains(needle), "{args:?}: {needle:?} not in {}", err(&o));
    }
    // A missing or wrong token is explained in the CLI's terms, not as an HTTP header.
    let o = meridian(&["status", "restore", "--server", &s.base], &[]).await;
    assert!(
        err(&o).contains("hint: pass --token-file FILE or --token TOKEN, or set MERIDIAN_TOKEN_FILE or MERIDIAN_TOKEN"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("Authorization"), "{}", err(&o));
    let help = meridian(&["status", "--help"], &[]).await;
    assert_eq!(code(&help), 0);
    assert!(out(&help).contains("2  with --wait: --timeout passed first"), "{}", out(&help));
    assert!(out(&help).contains("4  with --wait: complete, but not every unit is enabled"), "{}", out(&help));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_keeps_the_token_out_of_the_command_line() {
    let s = start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("operator.token");
    std::fs::write(&file, format!("{OPERATOR}\n")).unwrap();
    let path = file.to_str().unwrap();

    // The flag, on a read and on a write.
    let o = meridian(&["status", "restore", "--server", &s.base, "--token-file", path], &[]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = meridian(&["pause", "restore", "--server", &s.base, "--token-file", path], &[]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).starts_with("pause accepted for plan restore (by olga)"), "{}", out(&o));
    // The environment.
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN_FILE", path)];
    let o = meridian(&["resume", "restore"], &env).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).starts_with("resume accepted for plan restore (by olga)"), "{}", out(&o));

    // Unreadable, empty, or given with a token: usage errors naming the file, nothing sent.
    let missing = dir.path().join("missing.token");
    let o = meridian(&["pause", "restore", "--token-file", missing.to_str().unwrap()], &env).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(err(&o).contains(&format!("failed to read token file {}", missing.display())), "{}", err(&o));
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let o = meridian(&["status", "restore", "--token-file", empty.to_str().unwrap()], &env).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(err(&o).contains(&format!("token file {} is empty", empty.display())), "{}", err(&o));
    let o = meridian(&["status", "restore", "--token", VIEWER], &env).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(err(&o).contains("keep one"), "{}", err(&o));
    let kinds: Vec<CommandKind> = s.control.commands().iter().map(|(_, c)| c.kind).collect();
    assert_eq!(kinds, [CommandKind::Pause, CommandKind::Resume]);
    let help = meridian(&["pause", "--help"], &[]).await;
    assert!(out(&help).contains("--token-file <FILE>"), "{}", out(&help));
    assert!(out(&help).contains("MERIDIAN_TOKEN_FILE"), "{}", out(&help));
}

/// Run `meridian ARGS` on a terminal (script(1) gives it one) with `input` typed: exit code
/// and everything the terminal showed.
async fn on_a_terminal(input: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    use std::io::Write;
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_meridian"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let line = quoted.join(" ");
    let input = input.to_string();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env_remove("MERIDIAN_SERVER")
            .env_remove("MERIDIAN_TOKEN")
            .env_remove("MERIDIAN_TOKEN_FILE")
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        (code(&o), format!("{}{}", out(&o), err(&o)))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_revoke_ask_on_a_terminal_and_take_yes() {
    let s = start(None).await;
    let operator = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", OPERATOR)];
    let sent = || s.control.commands().iter().map(|(_, c)| c.kind).collect::<Vec<CommandKind>>();

    // On a terminal: anything but y declines, and nothing is sent.
    let (c, shown) = on_a_terminal("n\n", &["abort", "restore", "--region", "jp"], &operator).await;
    assert_eq!(c, 1, "{shown}");
    assert!(
        shown.contains("abort region jp of plan restore (rolled back unless fully enabled; it starts no more)? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("meridian abort: not confirmed; nothing was sent"), "{shown}");
    assert_eq!(sent(), []);
    let (c, shown) = on_a_terminal("y\n", &["abort", "restore"], &operator).await;
    assert_eq!(c, 0, "{shown}");
    assert!(shown.contains("abort plan restore (every region not fully enabled is rolled back)? [y/N]"), "{shown}");
    assert!(shown.contains("abort accepted for plan restore (by olga)"), "{shown}");
    // --yes skips the question.
    let (c, shown) = on_a_terminal("", &["abort", "restore", "--wave", "asia", "--yes"], &operator).await;
    assert_eq!(c, 0, "{shown}");
    assert!(!shown.contains("[y/N]"), "{shown}");
    // Off a terminal (a pipeline) nothing is asked, with or without --yes.
    for args in [&["abort", "restore", "--region", "us-east"][..], &["abort", "restore", "-y"]] {
        let o = meridian(args, &operator).await;
        assert_eq!(code(&o), 0, "{}", err(&o));
        assert!(!err(&o).contains("[y/N]"), "{}", err(&o));
    }
    assert_eq!(sent(), [CommandKind::Abort; 4]);

    let approver = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", APPROVER)];
    let o =
        meridian(&["approve", "jp-regulator", "--plan", "restore", "--reference", "x", "--name", "jp-1"], &approver)
            .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let (c, shown) = on_a_terminal("no\n", &["revoke", "jp-1"], &approver).await;
    assert_eq!(c, 1, "{shown}");
    assert!(shown.contains("revoke approval jp-1 (it is never valid again)? [y/N]"), "{shown}");
    assert!(s.control.snapshot().approvals.iter().all(|a| a.revoked.is_none()), "not revoked");
    let (c, shown) = on_a_terminal("", &["revoke", "jp-1", "--yes", "--reason", "test"], &approver).await;
    assert_eq!(c, 0, "{shown}");
    assert!(shown.contains("revoked approval jp-1 (flag jp-regulator) by alice"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_show_approvals_history_whoami_and_versions() {
    let s = start(None).await;
    let approver = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", APPROVER)];
    let o = meridian(&["whoami"], &approver).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), format!("alice (role approver, flags jp-regulator) on {}\n", s.base));
    let o = meridian(&["whoami", "-o", "json"], &approver).await;
    let me: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(me["identity"]["role"], "approver");

    let version = env!("CARGO_PKG_VERSION");
    let o = meridian(&["version"], &approver).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(out(&o), format!("client {version}\nserver {version} ({})\n", s.base));
    let o = meridian(&["version", "-o", "json"], &approver).await;
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!((v["client"]["version"].as_str(), v["server"]["version"].as_str()), (Some(version), Some(version)));
    let nobody = format!("http://{}", closed_port().await);
    let o = meridian(&["version", "--server", &nobody], &[]).await;
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert_eq!(out(&o), format!("client {version}\n"), "the client's version is shown anyway");
    let o = meridian(&["version", "--client", "--server", &nobody], &[]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));

    let o = meridian(&["approvals"], &approver).await;
    assert_eq!((code(&o), out(&o).as_str()), (0, "no approvals\n"), "{}", err(&o));
    let o = meridian(
        &[
            "approve",
            "jp-regulator",
            "--plan",
            "restore",
            "--region",
            "jp",
            "--reference",
            "letter 7",
            "--name",
            "jp-7",
        ],
        &approver,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = meridian(&["approvals"], &approver).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    let table = out(&o);
    assert!(table.starts_with("NAME  FLAG          STATUS  GRANTED BY  EXPIRES  SCOPE"), "{table}");
    assert!(table.contains("jp-7  jp-regulator  active  alice       never    plans restore regions jp"), "{table}");
    let o = meridian(&["approvals", "jp-7"], &approver).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("reference:   letter 7"), "{}", out(&o));
    let o = meridian(&["approvals", "jp-7", "-o", "json"], &approver).await;
    let one: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!((one["flag"].as_str(), one["status"].as_str()), (Some("jp-regulator"), Some("active")));
    let o = meridian(&["approvals", "jp-8"], &approver).await;
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(err(&o).contains("no approval named \"jp-8\"\n  hint: known approvals: jp-7"), "{}", err(&o));

    // A denied request is in the controller's history.
    let o = meridian(&["pause", "restore"], &approver).await;
    assert_eq!(code(&o), 1, "{}", err(&o));
    let o = meridian(&["history"], &approver).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).starts_with("ID  AT"), "{}", out(&o));
    assert!(out(&o).contains("alice"), "{}", out(&o));
    let o = meridian(&["history", "-o", "json", "--kind", "access-denied"], &approver).await;
    let page: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(page["events"].as_array().is_some(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_revoke_round_trip() {
    let s = start(None).await;
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", APPROVER)];
    let o = meridian(
        &[
            "approve",
            "jp-regulator",
            "--plan",
            "restore",
            "--region",
            "jp",
            "--service",
            "signin",
            "--service",
            "store",
            "--reference",
            "letter 2026-0528-17",
            "--expires",
            "30d",
            "--name",
            "jp-ok-1",
            "--granted-by",
            "Ministry liaison office",
        ],
        &env,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        out(&o).starts_with("granted jp-regulator as approval jp-ok-1 for plan restore, regions jp, services signin, store (by Ministry liaison office (via alice)); expires "),
        "{}",
        out(&o)
    );
    let approvals = s.control.snapshot().approvals.clone();
    let a = approvals.iter().find(|a| a.name == "jp-ok-1").unwrap();
    assert_eq!(a.scope.plans, ["restore"]);
    assert_eq!(a.scope.regions, ["jp"]);
    assert_eq!(a.scope.services, ["signin", "store"]);
    assert_eq!(a.reference.as_deref(), Some("letter 2026-0528-17"));
    assert!(a.expires.unwrap() > chrono::Utc::now() + chrono::Duration::days(29));

    // The same name again: refused by the server (1), its error and hint printed.
    let again =
        meridian(&["approve", "jp-regulator", "--plan", "restore", "--reference", "x", "--name", "jp-ok-1"], &env)
            .await;
    assert_eq!(code(&again), 1);
    assert!(err(&again).contains("meridian approve: an approval named \"jp-ok-1\" already exists"), "{}", err(&again));
    assert!(err(&again).contains("  hint: choose another name"), "{}", err(&again));

    // A flag this token may not grant: 1, with the server's reason.
    let other = meridian(&["approve", "ops-go", "--plan", "restore", "--reference", "x"], &env).await;
    assert_eq!(code(&other), 1);
    assert!(err(&other).contains("may not grant flag \"ops-go\""), "{}", err(&other));
    assert!(s.control.denials().iter().any(|d| d.who == "alice"));

    let bad =
        meridian(&["approve", "jp-regulator", "--plan", "restore", "--reference", "x", "--expires", "someday"], &env)
            .await;
    assert_eq!(code(&bad), 3);
    let missing = meridian(&["approve", "jp-regulator", "--plan", "restore"], &env).await;
    assert_eq!(code(&missing), 3, "--reference is required: {}", err(&missing));

    let revoke = meridian(&["revoke", "jp-ok-1", "--reason", "letter withdrawn"], &env).await;
    assert_eq!(code(&revoke), 0, "{}", err(&revoke));
    assert!(out(&revoke).contains("revoked approval jp-ok-1 (flag jp-regulator) by alice"), "{}", out(&revoke));
    let approvals = s.control.snapshot().approvals.clone();
    let revoked = approvals.iter().find(|a| a.name == "jp-ok-1").unwrap().revoked.clone().unwrap();
    assert_eq!((revoked.by.as_str(), revoked.reason.as_deref()), ("alice", Some("letter withdrawn")));
    let twice = meridian(&["revoke", "jp-ok-1"], &env).await;
    assert_eq!(code(&twice), 1);
    assert!(err(&twice).contains("already revoked"), "{}", err(&twice));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_round_trip_with_scope_and_errors() {
    let s = start(None).await;
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", OPERATOR)];
    for (args, line) in [
        (vec!["pause", "restore", "--wave", "asia"], "pause accepted for plan restore, wave asia (by olga)"),
        (vec!["resume", "restore", "--wave", "asia"], "resume accepted for plan restore, wave asia (by olga)"),
        (vec!["promote", "restore"], "promote accepted for plan restore (by olga)"),
        (vec!["retry", "restore", "--region", "jp"], "retry accepted for plan restore, region jp (by olga)"),
        (vec!["abort", "restore", "--region", "us-east"], "abort accepted for plan restore, region us-east (by olga)"),
    ] {
        let o = meridian(&args, &env).await;
        assert_eq!(code(&o), 0, "{args:?}: {}", err(&o));
        assert!(out(&o).starts_with(line), "{}", out(&o));
    }
    let kinds: Vec<CommandKind> = s.control.commands().iter().map(|(_, c)| c.kind).collect();
    use CommandKind::*;
    assert_eq!(kinds, [Pause, Resume, Promote, Retry, Abort]);

    let unknown = meridian(&["pause", "restore", "--region", "kr"], &env).await;
    assert_eq!(code(&unknown), 1);
    assert!(err(&unknown).contains("plan \"restore\" has no region \"kr\""), "{}", err(&unknown));
    assert!(err(&unknown).contains("hint: known regions: us-east, jp"), "{}", err(&unknown));
    let viewer = meridian(&["pause", "restore", "--server", &s.base, "--token", VIEWER], &[]).await;
    assert_eq!(code(&viewer), 1);
    assert!(err(&viewer).contains("may not pause; that needs role operator"), "{}", err(&viewer));
    let both = meridian(&["pause", "restore", "--wave", "asia", "--region", "jp"], &env).await;
    assert_eq!(code(&both), 3);
    let nobody = format!("http://{}", closed_port().await);
    let down = meridian(&["pause", "restore", "--server", &nobody], &env).await;
    assert_eq!(code(&down), 3, "{}", err(&down));
    assert_eq!(s.control.commands().len(), 5);
}

/// The run-time freezes of plan restore, as the server holds them: (name, wave, region, reason, until, by).
type FreezeRow = (String, Option<String>, Option<String>, String, Option<chrono::DateTime<chrono::Utc>>, String);

fn freezes(control: &FakeControl) -> Vec<FreezeRow> {
    control.snapshot().plans["restore"]
        .state
        .freezes
        .iter()
        .map(|f| (f.name.clone(), f.wave.clone(), f.region.clone(), f.reason.clone(), f.until, f.by.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_and_unfreeze_round_trip_with_scope_and_errors() {
    use chrono::{TimeZone, Utc};
    let s = start(None).await;
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", OPERATOR)];
    let some = |v: &str| Some(v.to_string());

    // A region, until a span from now: the server gets the region, the reason and now + 2h.
    let before = Utc::now();
    let o =
        meridian(&["freeze", "restore", "--reason", "incident 4711", "--region", "jp", "--until", "2h"], &env).await;
    let after = Utc::now();
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).starts_with("freeze region-jp accepted for plan restore, region jp, until 20"), "{}", out(&o));
    assert!(out(&o).ends_with(" (by olga); no step starts there meanwhile\n"), "{}", out(&o));
    let (_, command) = s.control.commands().last().cloned().unwrap();
    assert_eq!(
        (command.kind, command.wave.as_deref(), command.region.as_deref()),
        (CommandKind::Freeze, None, Some("jp"))
    );
    let request = command.freeze.unwrap();
    assert_eq!((request.name.as_str(), request.reason.as_str()), ("region-jp", "incident 4711"));
    let until = request.until.unwrap();
    let two_hours = chrono::Duration::hours(2);
    // Sent in whole seconds.
    assert!(
        before + two_hours - chrono::Duration::seconds(1) <= until && until <= after + two_hours,
        "until {until}, sent between {before} and {after}"
    );

    // A wave, until an RFC 3339 time, under a name of its own.
    let o = meridian(
        &[
            "freeze",
            "restore",
            "--reason",
            "canary check",
            "--wave",
            "canary",
            "--until",
            "2030-01-01T00:00:00Z",
            "--name",
            "canary-hold",
        ],
        &env,
    )
    .await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "freeze canary-hold accepted for plan restore, wave canary, until 2030-01-01T00:00:00Z (by olga); \
         no step starts there meanwhile\n"
    );
    // The whole plan, until lifted.
    let o = meridian(&["freeze", "restore", "--reason", "year-end change freeze"], &env).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "freeze plan accepted for plan restore, the whole plan, until lifted (by olga); no step starts there meanwhile\n"
    );
    let jan_2030 = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(
        freezes(&s.control),
        [
            ("region-jp".into(), None, some("jp"), "incident 4711".into(), Some(until), "olga".into()),
            ("canary-hold".into(), some("canary"), None, "canary check".into(), Some(jan_2030), "olga".into()),
            ("plan".into(), None, None, "year-end change freeze".into(), None, "olga".into()),
        ]
    );

    // Refusals: exit 1 with the server's error and hint; bad arguments: exit 3, nothing sent.
    let sent = s.control.commands().len();
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            vec!["freeze", "nope", "--reason", "x"],
            1,
            &["meridian freeze: no plan named \"nope\"", "hint: known plans: restore"],
        ),
        (
            vec!["freeze", "restore", "--reason", "x", "--wave", "europe"],
            1,
            &["plan \"restore\" has no wave \"europe\"", "hint: known waves: canary, asia"],
        ),
        (
            vec!["freeze", "restore", "--reason", "x", "--until", "2020-01-01T00:00:00Z"],
            1,
            &["meridian freeze: until 2020-01-01T00:00:00+00:00 is not in the future", "hint: give a later time"],
        ),
        (vec!["freeze", "restore", "--reason", " "], 1, &["meridian freeze: the freeze's reason is empty"]),
        (
            vec!["freeze", "restore", "--reason", "x", "--until", "someday"],
            3,
            &["meridian freeze: invalid --until \"someday\"; use RFC 3339 (2026-12-31T00:00:00Z) or a span such as 7d"],
        ),
        (
            vec!["unfreeze", "restore", "--name", "region-kr"],
            1,
            &[
                "meridian unfreeze: plan \"restore\" has no run-time freeze \"region-kr\"",
                "hint: known run-time freezes: region-jp, canary-hold, plan",
            ],
        ),
        (vec!["unfreeze", "nope"], 1, &["meridian unfreeze: no plan named \"nope\""]),
    ];
    for (args, expected, needles) in cases {
        let o = meridian(&args, &env).await;
        assert_eq!(code(&o), expected, "{args:?}: {}", err(&o));
        for needle in needles {
            assert!(err(&o).contains(needle), "{args:?}: {needle:?} not in {}", err(&o));
        }
        assert_eq!(out(&o), "", "{args:?}");
    }
    let viewer = meridian(&["freeze", "restore", "--reason", "x", "--server", &s.base, "--token", VIEWER], &[]).await;
    assert_eq!(code(&viewer), 1);
    assert!(err(&viewer).contains("may not freeze; that needs role operator"), "{}", err(&viewer));
    assert_eq!(s.control.commands().len(), sent, "no refused freeze or unfreeze reaches the controller");
    assert_eq!(freezes(&s.control).len(), 3);

    // Lift one by name, then every other one.
    let o = meridian(&["unfreeze", "restore", "--name", "region-jp"], &env).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "unfreeze of freeze region-jp accepted for plan restore (by olga); the controller applies it at once\n"
    );
    let (_, command) = s.control.commands().last().cloned().unwrap();
    assert_eq!((command.kind, command.unfreeze.as_deref()), (CommandKind::Unfreeze, Some("region-jp")));
    let names: Vec<String> = freezes(&s.control).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["canary-hold", "plan"]);
    let o = meridian(&["unfreeze", "restore"], &env).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        out(&o),
        "unfreeze of every run-time freeze accepted for plan restore (by olga); the controller applies it at once\n"
    );
    let (_, command) = s.control.commands().last().cloned().unwrap();
    assert_eq!((command.kind, command.unfreeze), (CommandKind::Unfreeze, None));
    assert_eq!(freezes(&s.control), []);
}

/// Arguments clap rejects get the client commands' usage code, 3, like `pause` does above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_and_unfreeze_usage_errors_exit_3() {
    let s = start(None).await;
    let env = [("MERIDIAN_SERVER", s.base.as_str()), ("MERIDIAN_TOKEN", OPERATOR)];
    let cases: [(&[&str], &str); 3] = [
        (&["freeze", "restore", "--reason", "x", "--wave", "asia", "--region", "jp"], "cannot be used with"),
        (&["freeze", "restore"], "--reason"),
        (&["unfreeze"], "<PLAN>"),
    ];
    for (args, needle) in cases {
        let o = meridian(args, &env).await;
        assert_eq!(code(&o), 3, "{args:?}: {}", err(&o));
        assert!(err(&o).contains(needle), "{args:?}: {needle:?} not in {}", err(&o));
    }
    assert_eq!(s.control.commands().len(), 0);
}

/// Serve the API over TLS with `cert` and `key`, and check that `status --wait --ca-cert
/// CERT` trusts it.
async fn serve_tls_trusted_by_its_own_certificate(cert: std::path::PathBuf, key: std::path::PathBuf) -> Server {
    let ca = cert.to_str().unwrap().to_string();
    let s = start(Some(TlsFiles { cert, key })).await;
    complete_everything(&s.control);
    let o =
        meridian(&["status", "restore", "--wait", "--server", &s.base, "--token", VIEWER, "--ca-cert", &ca], &[]).await;
    assert_eq!(code(&o), 0, "{}", err(&o));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_tls_with_a_ca_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = serve_tls_trusted_by_its_own_certificate(cert_path, key_path).await;
    let untrusted = meridian(&["status", "restore", "--server", &s.base, "--token", VIEWER], &[]).await;
    assert_eq!(code(&untrusted), 3, "{}", err(&untrusted));
}

/// What `openssl req -x509` makes (CA:TRUE) served as the API's own certificate, and given to
/// the client as `--ca-cert`: trusted, as the README says; any other server certificate is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_tls_with_an_openssl_self_signed_ca_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key_path)
        .arg("-out")
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"), "the case at hand is a CA:TRUE certificate");
    let s = serve_tls_trusted_by_its_own_certificate(cert_path, key_path).await;
    // A different certificate given as --ca-cert does not make this server trusted.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.cert.pem()).unwrap();
    let wrong = meridian(
        &["status", "restore", "--server", &s.base, "--token", VIEWER, "--ca-cert", other_path.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code(&wrong), 3, "{}", err(&wrong));
}
