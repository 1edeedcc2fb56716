//! Honest outcomes, end to end: a real `meridian run --no-auth` rolls a plan out to a
//! simulated fleet (meridian-fleet) where us-east fails its health check while its sibling jp
//! waits for an approval.
//!
//! - `status --wait` fails fast (exit 1) naming the region, service, state and cause, while
//!   the wave cannot halt yet; `--no-fail-fast` waits for the halt instead.
//! - After a promote accepts the failure, the completed plan exits 4 (`--accept-failures`: 0),
//!   and `status`, the API, the metrics and the dashboard say who accepted it.
//! - `run --exit-when-done` and a concurrent `status --wait` (at its default 2 s interval)
//!   get the same outcome: the controller keeps serving it for a grace period.
//!
//! - `status --wait --until COND` ends (0) once the plan, a wave or a region needs an
//!   approval, is paused, failed or halted; a condition that can no longer come exits 5, and a
//!   timeout names what the rollout is blocked on.
//!
//! Every wait is a condition with a deadline (`status --wait --timeout`, or a bounded wait for
//! the process to exit).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use meridian_fleet::{Fleet, FleetConfig, FleetHandle};

use crate::support::{RunningMeridian, spawn_run};

/// us-east and jp in one wave; jp needs its regulator's approval. Steps and bakes of a second.
fn plan(fleet: &FleetHandle) -> String {
    format!(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: restore}}
spec:
  services: [{{name: signin}}, {{name: store, after: [signin]}}]
  regions:
    - {{name: us-east}}
    - {{name: jp, approvals: [jp-regulator]}}
  waves:
    - {{name: all, regions: [us-east, jp]}}
  steps: [10, 100]
  stepBake: 1s
  health:
    interval: 1s
    checks:
      - name: error-rate
        http: {{url: '{metrics}', metric: error_ratio}}
        max: 0.05
        failureLimit: 1
  onFailure: rollback-region
  actuator:
    http: {{url: '{traffic}', timeout: 2s}}
"#,
        metrics = fleet.unit_metrics_url_template(),
        traffic = fleet.traffic_url_template(),
    )
}

/// A fleet on its own runtime (kept alive by the returned value), with us-east failing when
/// `us_east_fails`, and the plan written to a fresh config dir.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    runtime: tokio::runtime::Runtime,
    _fleet: FleetHandle,
}

fn setup(us_east_fails: bool) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fleet = runtime.block_on(Fleet::start(FleetConfig::new(["us-east", "jp"], ["signin", "store"]))).unwrap();
    if us_east_fails {
        fleet.set_error_ratio("us-east", None, 0.5).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), plan(&fleet)).unwrap();
    let state = dir.path().join("state");
    Setup { _dir: dir, config, state, runtime, _fleet: fleet }
}

/// `meridian ARGS --server BASE`, started now; output piped.
fn start(run: &RunningMeridian, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .args(["--server", &run.base])
        .env_remove("MERIDIAN_SERVER")
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meridian")
}

/// Wait for a client started with [`start`], at most `deadline`.
fn finish(child: Child, deadline: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => out.expect("meridian's output"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("meridian (pid {pid}) did not finish within {deadline:?}")
        }
    }
}

fn meridian(run: &RunningMeridian, args: &[&str]) -> Output {
    finish(start(run, args), Duration::from_secs(90))
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn get(setup: &Setup, url: String) -> String {
    setup.runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn a_failure_ends_the_wait_at_once_and_a_completion_that_accepted_it_is_not_clean() {
    let s = setup(true);
    let run = spawn_run(&s.config, &s.state, &["--no-auth"]).expect("meridian run starts");

    // us-east fails while jp waits for its approval: the wave cannot halt, yet the wait ends.
    let began = Instant::now();
    let o = meridian(&run, &["status", "restore", "--wait", "--interval", "200ms", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let why = err(&o);
    assert!(
        why.contains("region us-east (wave all) rolled back: signin failed: check error-rate unhealthy (0.5 > max 0.05), 1 failing evaluation; nobody accepted it"),
        "{why}"
    );
    assert!(began.elapsed() < Duration::from_secs(60));
    let detail: serde_json::Value =
        serde_json::from_str(&get(&s, format!("{}/api/v1/plans/restore", run.base))).unwrap();
    assert_eq!(detail["state"]["waves"][0]["phase"], "running", "the wave has not halted: {detail}");
    assert_eq!(detail["outcome"]["summary"], "running, 1 region rolled back: us-east (not accepted)");

    // Waiting for the failure itself, or for jp's approval to be needed, ends at once (0).
    let o = meridian(&run, &["status", "restore", "--wait", "--until", "failed", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains(
            "plan restore reached failed: plan restore: region us-east (wave all) rolled back: signin failed"
        ),
        "{}",
        err(&o)
    );
    let o =
        meridian(&run, &["status", "restore", "--wait", "--until", "approval-needed=jp-regulator", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("reached approval-needed=jp-regulator: jp/signin"), "{}", err(&o));
    // A halt cannot come while jp waits: the timeout says what holds it.
    let o =
        meridian(&run, &["status", "restore", "--wait", "--until", "halted", "--interval", "200ms", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("waiting for plan restore (until halted); it is running, 1 region rolled back: us-east (not accepted), waiting for:"), "{}", err(&o));
    assert!(err(&o).contains("\n  jp/signin"), "{}", err(&o));
    assert!(err(&o).contains(": approval jp-regulator not granted"), "{}", err(&o));

    // --no-fail-fast waits for the halt, which cannot come while jp waits.
    let o =
        meridian(&run, &["status", "restore", "--wait", "--no-fail-fast", "--interval", "200ms", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("it is running, 1 region rolled back: us-east (not accepted)"), "{}", err(&o));

    // The regulator says yes; jp finishes and the wave halts on us-east.
    let o =
        meridian(&run, &["approve", "jp-regulator", "--plan", "restore", "--region", "jp", "--reference", "letter 1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = meridian(
        &run,
        &["status", "restore", "--wait", "--until", "halted", "--interval", "200ms", "--timeout", "60s"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains("plan restore reached halted: plan restore: wave all halted on failed regions us-east"),
        "{}",
        err(&o)
    );
    let o =
        meridian(&run, &["status", "restore", "--wait", "--no-fail-fast", "--interval", "200ms", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("plan restore halted: wave all"), "{}", err(&o));

    // The on-call engineer accepts it: complete, but not clean.
    let o = meridian(&run, &["promote", "restore", "--wave", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = meridian(&run, &["status", "restore", "--wait", "--interval", "200ms", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(err(&o).contains("plan restore is complete with 2/4 units enabled"), "{}", err(&o));
    assert!(err(&o).contains("(accepted by anonymous)"), "{}", err(&o));
    assert!(
        out(&o).starts_with("restore: complete, 1 region rolled back: us-east (accepted by anonymous) (2/4 enabled"),
        "{}",
        out(&o)
    );
    let o = meridian(&run, &["status", "restore", "--wait", "--accept-failures", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = meridian(&run, &["status", "--wait", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(4), "every plan: {}", err(&o));
    assert!(out(&o).contains("1 region rolled back: us-east (accepted by anonymous)"), "{}", out(&o));
    let o = meridian(&run, &["status", "restore", "--wait", "--wave", "all", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(4), "the wave: {}", err(&o));

    // The API, the metrics and the page say the same.
    let detail: serde_json::Value =
        serde_json::from_str(&get(&s, format!("{}/api/v1/plans/restore", run.base))).unwrap();
    assert_eq!(detail["state"]["waves"][0]["accepted"]["by"], "anonymous");
    assert_eq!(detail["state"]["waves"][0]["accepted"]["regions"], serde_json::json!(["us-east"]));
    assert_eq!(detail["outcome"]["failed"][0]["accepted"]["by"], "anonymous");
    let metrics = get(&s, format!("{}/metrics", run.base));
    assert!(metrics.contains(r#"meridian_regions{plan="restore",state="rolled-back"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"meridian_regions{plan="restore",state="enabled"} 1"#), "{metrics}");
    let dom = crate::dashboard::dump_dom(&format!("{}/", run.base));
    assert!(dom.contains("complete, 1 region rolled back: us-east (accepted by anonymous)"), "{dom}");
    assert!(dom.contains(r#"data-failed="us-east""#), "{dom}");
    assert!(dom.contains("accepting failed regions us-east"), "{dom}");
}

#[test]
fn status_wait_until_an_approval_is_needed_a_pause_or_a_condition_that_never_comes() {
    let s = setup(false);
    let run = spawn_run(&s.config, &s.state, &["--no-auth"]).expect("meridian run starts");
    let wait =
        |extra: &[&str]| meridian(&run, &[&["status", "restore", "--wait", "--interval", "200ms"][..], extra].concat());

    // A pipeline waits until jp needs its regulator's approval, then asks for it.
    let o = wait(&["--until", "approval-needed=jp-regulator", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("plan restore reached approval-needed=jp-regulator: jp/signin"), "{}", err(&o));
    assert!(err(&o).contains(": approval jp-regulator not granted"), "{}", err(&o));
    assert!(out(&o).contains("jp-regulator"), "the table is shown: {}", out(&o));
    let o = wait(&["--until", "approval-needed", "--region", "jp", "-o", "json", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let detail: serde_json::Value = serde_json::from_str(&out(&o)).expect("the plan's JSON");
    assert_eq!(detail["name"], "restore");
    // Another flag is never needed here: the timeout names what the rollout is blocked on.
    let o = wait(&["--until", "approval-needed=ops-go", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("timed out after 1s waiting for plan restore (until approval-needed=ops-go)"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("\n  jp/signin"), "{}", err(&o));

    // An operator pauses jp: a wait for the pause ends once the controller applied it.
    let o = meridian(&run, &["pause", "restore", "--region", "jp"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = wait(&["--until", "paused", "--region", "jp", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains("region jp of plan restore reached paused: region jp of plan restore is paused"),
        "{}",
        err(&o)
    );
    let o = wait(&["--until", "paused", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(2), "a region's pause is not the plan's: {}", err(&o));
    let o = meridian(&run, &["resume", "restore", "--region", "jp"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // us-east completes: it will never need an approval (5), nor halt.
    let o = wait(&["--region", "us-east", "--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = wait(&["--region", "us-east", "--until", "approval-needed", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(
        err(&o).contains("region us-east of plan restore is complete, so it will never be approval-needed"),
        "{}",
        err(&o)
    );

    // The regulator says yes; the plan completes and can no longer fail.
    let o =
        meridian(&run, &["approve", "jp-regulator", "--plan", "restore", "--region", "jp", "--reference", "letter 1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = wait(&["--timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = wait(&["--until", "failed", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));

    // Conditions are checked before anything is asked.
    let o = meridian(&run, &["status", "restore", "--wait", "--until", "done"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("unknown condition \"done\"; use complete, approval-needed"), "{}", err(&o));
    let o = meridian(&run, &["status", "--wait", "--until", "halted"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("--until halted needs a PLAN"), "{}", err(&o));
}

/// Start `meridian run EXTRA` on `s`, and right away `status --wait` at its default interval.
fn run_and_wait(s: &Setup, run_args: &[&str], status_args: &[&[&str]]) -> (RunningMeridian, Vec<Child>) {
    let run = spawn_run(&s.config, &s.state, run_args).expect("meridian run starts");
    let waiters = status_args
        .iter()
        .map(|extra| start(&run, &[&["status", "restore", "--wait", "--timeout", "90s"][..], extra].concat()))
        .collect();
    (run, waiters)
}

#[test]
fn run_exit_when_done_and_a_concurrent_status_wait_get_the_same_failure() {
    let s = setup(true);
    let (mut run, waiters) = run_and_wait(&s, &["--no-auth", "--exit-when-done"], &[&[]]);
    let (code, printed) = run.wait_exit(Duration::from_secs(90));
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("region us-east (wave all) rolled back: signin failed: check error-rate"), "{printed}");
    for waiter in waiters {
        let o = finish(waiter, Duration::from_secs(60));
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        assert!(!err(&o).contains("cannot reach"), "{}", err(&o));
        assert!(err(&o).contains("region us-east (wave all) rolled back: signin failed"), "{}", err(&o));
    }
}

#[test]
fn run_exit_when_done_and_concurrent_waits_get_a_completion_with_an_aborted_region() {
    let s = setup(false);
    let (mut run, waiters) =
        run_and_wait(&s, &["--no-auth", "--exit-when-done", "--accept-failures"], &[&[], &["--accept-failures"]]);
    // jp never gets its approval; once us-east is enabled, the operator gives up on jp.
    let o = meridian(
        &run,
        &["status", "restore", "--wait", "--region", "us-east", "--interval", "200ms", "--timeout", "60s"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = meridian(&run, &["abort", "restore", "--region", "jp"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let (code, printed) = run.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "--accept-failures: {printed}");
    assert!(printed.contains("plan restore is complete with 2/4 units enabled"), "{printed}");
    assert!(printed.contains("region jp aborted"), "{printed}");
    let codes: Vec<Option<i32>> = waiters
        .into_iter()
        .map(|w| {
            let o = finish(w, Duration::from_secs(60));
            assert!(err(&o).contains("region jp aborted"), "{}", err(&o));
            o.status.code()
        })
        .collect();
    assert_eq!(codes, [Some(4), Some(0)], "status --wait, then with --accept-failures");
}
