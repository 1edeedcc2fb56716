//! The dashboard at `/` in a real headless Chromium against a real `meridian run`: it renders
//! regions x services with state and traffic, what blocked units wait for, each region's
//! effective settings with where they came from, approvals and recent transitions; and it
//! asks for a token when the API needs one.
//!
//! Needs Debian's `chromium` (`scripts/install-test-deps` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::spawn_run;

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: restore}
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions:
    - {name: us-east, timezone: America/New_York}
    - {name: jp, timezone: Asia/Tokyo, labels: {continent: asia}, approvals: [jp-regulator], stepBake: 2h}
  waves:
    - {name: canary, regions: [us-east], bake: 1h}
    - {name: asia, selector: {matchLabels: {continent: asia}}}
  steps: [1, 10, 100]
  stepBake: 1h
";

pub(crate) fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromium is not installed; run scripts/install-test-deps (Debian's chromium package)");
}

/// The DOM of `url` once its scripts settled (Chromium's virtual time budget), at most 60 s.
pub(crate) fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

pub(crate) fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let state = dir.path().join("state");
    (dir, config, state)
}

#[test]
fn the_dashboard_shows_units_reasons_settings_with_origins_approvals_and_transitions() {
    let (_dir, config, state) = setup();
    let run = spawn_run(&config, &state, &["--no-auth"]).expect("meridian run starts");
    // Wait until us-east took its first step, so the page has something to show.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dom = dump_dom(&format!("{}/", run.base));
    while !dom.contains(r#"data-unit="us-east/signin" data-phase="progressing" data-percent="1""#) {
        assert!(Instant::now() < deadline, "us-east never shown at 1 %:\n{dom}");
        std::thread::sleep(Duration::from_millis(200));
        dom = dump_dom(&format!("{}/", run.base));
    }
    assert!(dom.contains(r#"data-ready="true""#), "{dom}");
    // The grid: every unit with its phase and percent.
    for unit in [
        r#"data-unit="us-east/store" data-phase="blocked" data-percent="0""#,
        r#"data-unit="jp/signin" data-phase="pending" data-percent="0""#,
        r#"data-unit="jp/store" data-phase="pending" data-percent="0""#,
    ] {
        assert!(dom.contains(unit), "missing {unit}:\n{dom}");
    }
    // What blocked units and waves wait for, in words.
    assert!(dom.contains("waiting for signin to be enabled first"), "{dom}");
    assert!(dom.contains("waiting for wave canary to complete"), "{dom}");
    // jp's regulator flag does not hold, and it says so.
    assert!(dom.contains("✗ jp-regulator: approval jp-regulator not granted"), "{dom}");
    // jp came into its wave by selector, and its own stepBake is marked as the region's.
    assert!(dom.contains("by selector continent=asia"), "{dom}");
    assert!(dom.contains(r#"<span class="origin-region">2h</span> <span class="origin">(region)</span>"#), "{dom}");
    assert!(dom.contains(r#"<span class="">1h</span> <span class="origin">(plan)</span>"#), "{dom}");
    // Recent transitions, in words.
    assert!(dom.contains("us-east/signin: pending -&gt; progressing (0% -&gt; 1%): started"), "{dom}");
}

#[test]
fn without_a_token_the_dashboard_asks_for_one() {
    let (dir, config, state) = setup();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, "tokens:\n  - {name: oncall, token: a-long-random-token-for-tests, role: viewer}\n")
        .unwrap();
    let run = spawn_run(&config, &state, &["--tokens", tokens.to_str().unwrap()]).expect("meridian run starts");
    let dom = dump_dom(&format!("{}/", run.base));
    assert!(dom.contains(r#"id="token-form" style="display: block;""#), "{dom}");
    assert!(dom.contains("cannot read the API: this API needs a token"), "{dom}");
    assert!(!dom.contains("data-unit="), "nothing is shown without a token:\n{dom}");
    // It stopped asking after the first refusals (the page's 5 s of timers ran), so an open
    // tab without a token does not fill the controller's log with denials.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let history: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/api/v1/history?kind=access-denied", run.base))
            .bearer_auth("a-long-random-token-for-tests")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let denials = history["events"].as_array().unwrap().len();
    assert!((1..=4).contains(&denials), "{denials} denials: {history}");
}

#[test]
fn an_approval_a_unit_depends_on_that_expires_soon_is_called_out() {
    let (_dir, config, state) = setup();
    let expires = (chrono::Utc::now() + chrono::TimeDelta::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        config.join("jp-letter.yaml"),
        format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: Approval\nmetadata: {{name: jp-letter}}\nspec:\n  flag: \
             jp-regulator\n  grantedBy: Ministry liaison office\n  reference: letter 17\n  expires: \"{expires}\"\n  \
             scope: {{plans: [restore], regions: [jp]}}\n"
        ),
    )
    .unwrap();
    let run = spawn_run(&config, &state, &["--no-auth", "--expiry-warning", "24h"]).expect("meridian run starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dom = dump_dom(&format!("{}/", run.base));
    while !dom.contains(r#"data-expiring="jp-letter""#) {
        assert!(Instant::now() < deadline, "the expiring approval is never called out:\n{dom}");
        std::thread::sleep(Duration::from_millis(200));
        dom = dump_dom(&format!("{}/", run.base));
    }
    // Which approval, which flag, how long is left, and who depends on it.
    assert!(dom.contains("⚠ approval jp-letter (jp-regulator) expires in 2h 5"), "{dom}");
    assert!(dom.contains("2 units depend on it: jp/signin, jp/store"), "{dom}");
}

/// The API router over `control` (no authentication) on 127.0.0.1, served by the returned
/// runtime for as long as it lives, and its base URL.
fn serve_fake(control: &std::sync::Arc<meridian_api::fake::FakeControl>) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = meridian_api::router(control.clone(), meridian_api::Auth::disabled(), meridian_api::Limits::default());
    runtime.spawn(meridian_api::serve(listener, router, None, std::future::pending()));
    (runtime, base)
}

/// Units an edit removed that still wind down are called out above the grid (they are in no
/// wave any more), with what they wait for: the plan stays in control until their targets
/// serve 0 %. Over the fake control plane (the state is set, not rolled out).
#[test]
fn units_an_edit_removed_are_called_out_until_their_targets_serve_zero() {
    use meridian_core::state::UnitPhase;
    let control = meridian_api::fake::FakeControl::from_yaml(&format!("{PLAN}  actuator: {{log: {{}}}}\n"));
    control.update("restore", |s| {
        let mut wound = s.units[0].clone();
        (wound.region, wound.phase, wound.percent) = ("eu".into(), UnitPhase::RolledBack, 0);
        let mut serving = s.units[1].clone();
        (serving.region, serving.phase, serving.percent) = ("eu".into(), UnitPhase::Progressing, 10);
        s.departing = vec![wound, serving];
    });
    let (_runtime, base) = serve_fake(&control);
    let dom = dump_dom(&format!("{base}/"));
    assert!(dom.contains(r#"data-ready="true""#), "{dom}");
    assert!(
        dom.contains(
            r#"data-departing="eu/signin">eu/signin left the plan: wound down to 0 %, waiting for its target to confirm (sent again while a read-back shows traffic); the plan stays in control until then"#
        ),
        "{dom}"
    );
    assert!(
        dom.contains(
            r#"data-departing="eu/store">eu/store left the plan: to be wound down from 10 % to 0 %; the plan stays in control until then"#
        ),
        "{dom}"
    );
}

/// A relative check's comparison on the page: the region's value, the baseline and the
/// regions it came from, in the grid and in the unit's wait reason. Served by the API
/// router over the fake control plane (the state is set, not rolled out) on 127.0.0.1.
#[test]
fn a_relative_check_shows_the_baseline_and_the_regions_it_came_from() {
    use chrono::DurationRound;
    use meridian_core::HealthVerdict;
    use meridian_core::manifest::BaselineKind;
    use meridian_core::relative::Baseline;
    use meridian_core::state::UnitPhase;
    let control = meridian_api::fake::FakeControl::from_yaml(
        r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: fleet}
spec:
  services: [{name: signin}]
  regions:
    - {name: us-east, noData: ignore}
    - {name: eu-west, noData: ignore, timezone: Europe/Paris}
    - {name: eu-central}
    - {name: jp}
  waves:
    - {name: first, regions: [us-east, eu-west, eu-central]}
    - {name: asia, regions: [jp]}
  health:
    checks:
      - name: error-rate
        prometheus: {query: 'ratio{service="{{service}}"}'}
        max: 0.1
        relative: {maxRatio: 2.0, minBaselineRegions: 2}
  actuator: {log: {}}
"#,
    );
    let opens =
        (chrono::Utc::now() + chrono::TimeDelta::minutes(150)).duration_round(chrono::TimeDelta::minutes(1)).unwrap();
    control.update("fleet", |s| {
        for u in &mut s.units {
            (u.phase, u.percent) =
                if u.region == "jp" { (UnitPhase::Progressing, 10) } else { (UnitPhase::Enabled, 100) };
        }
        let jp = s.units.iter_mut().find(|u| u.region == "jp").unwrap();
        jp.waiting = Some(meridian_core::WaitReason::Health { checks: vec!["error-rate".into()] });
        let west = s.units.iter_mut().find(|u| u.region == "eu-west").unwrap();
        west.waiting = Some(meridian_core::WaitReason::Window { opens_at: Some(opens) });
        let eu = s.units.iter_mut().find(|u| u.region == "eu-central").unwrap();
        eu.checks[0].verdict = Some(HealthVerdict::Unhealthy);
        eu.checks[0].value = Some(0.2);
        eu.checks[0].at = Some(chrono::Utc::now());
        let jp = s.units.iter_mut().find(|u| u.region == "jp").unwrap();
        jp.checks[0].verdict = Some(HealthVerdict::Unhealthy);
        jp.checks[0].value = Some(0.031);
        jp.checks[0].baseline = Some(Baseline {
            kind: BaselineKind::Median,
            regions: vec!["us-east".into(), "eu-west".into(), "eu-central".into()],
            value: Some(0.009),
            min_regions: 2,
            limit: Some(0.018),
        });
    });
    let (_runtime, base) = serve_fake(&control);

    let dom = dump_dom(&format!("{base}/"));
    assert!(dom.contains(r#"data-ready="true""#), "{dom}");
    let compared = "0.031 vs baseline 0.009 (median of us-east, eu-west, eu-central), limit 0.018";
    assert!(dom.contains(&format!(r#"data-check="error-rate" title="">error-rate unhealthy ({compared})"#)), "{dom}");
    assert!(dom.contains(&format!("waiting for fresh healthy data from error-rate (error-rate: {compared})")), "{dom}");
    assert!(dom.contains("at most 2 × the median of ≥ 2 fully enabled regions"), "{dom}");
    // An absolute limit: the value against it.
    assert!(dom.contains(r#"data-check="error-rate" title="">error-rate unhealthy (0.2 &gt; max 0.1)"#), "{dom}");
    // A wait with an end: the API's words in the page's time format, and a countdown with
    // the region's local time.
    let shown = opens.format("%Y-%m-%d %H:%M UTC");
    assert!(dom.contains(&format!("outside its windows; next opens {shown}")), "{dom}");
    assert!(dom.contains("window opens in 2h "), "{dom}");
    assert!(dom.contains(" Europe/Paris)"), "{dom}");

    // The API carries the latest value only; the page keeps those it saw, one per evaluation.
    let mut b = crate::browser::Browser::start();
    b.navigate(&format!("{base}/"));
    b.wait_for("document.body.dataset.ready === 'true'", Duration::from_secs(20));
    control.update("fleet", |s| {
        let eu = s.units.iter_mut().find(|u| u.region == "eu-central").unwrap();
        eu.checks[0].verdict = Some(HealthVerdict::Healthy);
        eu.checks[0].value = Some(0.05);
        eu.checks[0].at = Some(chrono::Utc::now() + chrono::TimeDelta::seconds(1));
    });
    // The page's 5 s refresh picks it up.
    let cell = r#"document.querySelector('[data-unit="eu-central/signin"]').innerText"#;
    b.wait_for(
        &format!("{cell}.includes('error-rate healthy (0.05 ≤ max 0.1) recent: 0.2 → 0.05')"),
        Duration::from_secs(20),
    );
}
