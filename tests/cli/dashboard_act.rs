//! Acting from the dashboard in a real headless Chromium (driven over the DevTools protocol)
//! against a real `meridian run`: a token typed into the page decides which buttons it shows;
//! a promote and a pause clicked (and confirmed) there change the state the API then reports,
//! recorded under the token's name; an approver grants from the page; the triage tools at 60
//! regions. Screenshots at 1280x800 go to `target/tmp/dashboard/`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::Browser;
use crate::support::spawn_run;

const VIEWER: &str = "viewer-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";
const APPROVER: &str = "approver-token-0123456789";

fn tokens(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tokens.yaml");
    std::fs::write(
        &path,
        format!(
            "tokens:\n  - {{name: watcher, token: {VIEWER}, role: viewer}}\n  - {{name: oncall, token: {OPERATOR}, \
             role: operator}}\n  - {{name: liaison, token: {APPROVER}, role: approver, flags: [eu-reg]}}\n"
        ),
    )
    .unwrap();
    path
}

/// `GET base + path` with the viewer's token, as JSON.
fn get(base: &str, path: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}{path}"))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// Wait (at most 20 s) until the API's `path` answers something `ok` accepts.
fn wait_api(base: &str, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = get(base, path);
        if ok(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "the API never reported {what}: {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unit<'a>(detail: &'a Value, region: &str, service: &str) -> &'a Value {
    detail["state"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["region"] == region && u["service"] == service)
        .unwrap()
}

fn sign_in(b: &mut Browser, token: &str) {
    b.click("#token-button");
    b.wait_for("document.activeElement && document.activeElement.id === 'token'", Duration::from_secs(5));
    b.type_text(token);
    b.press("Enter");
}

fn text(b: &mut Browser, selector: &str) -> String {
    let selector = serde_json::to_string(selector).unwrap();
    b.eval(&format!("(document.querySelector({selector}) || {{}}).innerText || ''")).as_str().unwrap_or("").to_string()
}

fn count(b: &mut Browser, selector: &str) -> u64 {
    let selector = serde_json::to_string(selector).unwrap();
    b.eval(&format!("document.querySelectorAll({selector}).length")).as_u64().unwrap()
}

const T: Duration = Duration::from_secs(20);

#[test]
fn a_viewer_sees_no_buttons_and_an_operator_promotes_and_pauses_from_the_page() {
    let (dir, config, state) = crate::dashboard::setup();
    let tokens = tokens(dir.path());
    let run = spawn_run(&config, &state, &["--tokens", tokens.to_str().unwrap()]).expect("meridian run starts");
    let base = run.base.clone();
    wait_api(&base, "/api/v1/plans/restore", "us-east at 1 %", |d| unit(d, "us-east", "signin")["percent"] == 1);

    let mut b = Browser::start();
    b.navigate(&format!("{base}/"));
    b.wait_for("document.getElementById('token-form').style.display === 'block'", T);
    sign_in(&mut b, VIEWER);
    b.wait_for("document.body.dataset.ready === 'true' && document.querySelector('[data-unit=\"us-east/signin\"]')", T);
    assert!(text(&mut b, "#whoami").contains("signed in as watcher (viewer)"));
    // A viewer gets no buttons: no commands, no grant form, no revoke.
    assert_eq!(count(&mut b, "button[data-action], #grant-form, [data-revoke]"), 0);
    // The token is in this tab's session storage only, not in the address.
    assert_eq!(b.eval("sessionStorage.getItem('meridian-token')"), VIEWER);
    assert!(!b.eval("location.href").as_str().unwrap().contains(VIEWER));
    // A blocked unit shows what it waits for; jp is missing its regulator's approval.
    assert!(text(&mut b, "[data-unit=\"us-east/store\"]").contains("waiting for signin to be enabled first"));
    assert!(text(&mut b, "tr[data-wave=\"asia\"]").contains("waiting for wave canary to complete"));
    // A step bake shows a live countdown.
    assert!(text(&mut b, "[data-unit=\"us-east/signin\"]").contains("bake ends in 59m"), "{}", text(&mut b, "#grid"));
    b.screenshot("viewer");

    sign_in(&mut b, OPERATOR);
    b.wait_for("document.querySelector('button[data-action=\"promote\"][data-scope=\"region:us-east\"]')", T);
    assert!(text(&mut b, "#whoami").contains("signed in as oncall (operator)"));
    for (action, scope) in [
        ("pause", "plan"),
        ("promote", "plan"),
        ("promote-full", "plan"),
        ("promote-full", "wave:canary"),
        ("promote-full", "region:jp"),
        ("retry", "plan"),
        ("abort", "plan"),
        ("freeze", "plan"),
        ("pause", "wave:canary"),
        ("abort", "wave:asia"),
        ("freeze", "region:jp"),
        ("retry", "region:us-east"),
    ] {
        assert_eq!(
            count(&mut b, &format!("button[data-action=\"{action}\"][data-scope=\"{scope}\"]")),
            1,
            "{action} {scope}"
        );
    }

    // Promote us-east from its actions menu: the dialog names the scope and the consequence.
    b.click("tr[data-region=\"us-east\"] details[data-details=\"actions\"] summary");
    b.click("button[data-action=\"promote\"][data-scope=\"region:us-east\"]");
    b.wait_for("document.getElementById('confirm').open", T);
    assert_eq!(text(&mut b, "#confirm-title"), "Promote region us-east of plan restore?");
    assert!(text(&mut b, "#confirm-text").contains("Skips the current step bake of progressing units in scope, once"));
    b.screenshot("confirm-promote");
    b.click("#confirm-ok");
    let detail =
        wait_api(&base, "/api/v1/plans/restore", "us-east at 10 %", |d| unit(d, "us-east", "signin")["percent"] == 10);
    assert_eq!(unit(&detail, "us-east", "signin")["phase"], "progressing");
    b.wait_for("document.querySelector('[data-unit=\"us-east/signin\"][data-percent=\"10\"]')", T);
    assert!(
        text(&mut b, "#status").contains("promote of region us-east of plan restore: accepted (recorded as oncall)")
    );

    // Pause the whole plan, with the keyboard: focus the button, Enter, then confirm.
    b.eval("document.querySelector('button[data-action=\"pause\"][data-scope=\"plan\"]').focus()");
    b.press("Enter");
    b.wait_for("document.getElementById('confirm').open", T);
    assert_eq!(text(&mut b, "#confirm-title"), "Pause the whole plan restore?");
    b.click("#confirm-ok");
    wait_api(&base, "/api/v1/plans/restore", "the plan paused", |d| d["phase"] == "paused");
    b.wait_for("document.querySelector('button[data-action=\"resume\"][data-scope=\"plan\"]')", T);

    // Both went through the API and are audited under the token's name.
    let audit = get(&base, "/api/v1/audit?plan=restore&limit=1000");
    let commands: Vec<(String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"]["type"] == "command")
        .map(|r| (r["event"]["command"].as_str().unwrap().to_string(), r["event"]["by"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(commands, [("promote".to_string(), "oncall".to_string()), ("pause".to_string(), "oncall".to_string())]);
    b.wait_for(
        "[...document.querySelectorAll('#audit li')].some((li) => li.innerText.includes('plan: pause by oncall'))",
        T,
    );
    b.screenshot("operator");

    // A freeze of one region asks for its reason; its unfreeze button then appears there.
    b.click("button[data-action=\"freeze\"][data-scope=\"region:us-east\"]");
    b.wait_for("document.getElementById('confirm').open", T);
    assert_eq!(text(&mut b, "#confirm-title"), "Freeze region us-east of plan restore?");
    b.click("#f-reason");
    b.type_text("carrier maintenance");
    b.click("#confirm-ok");
    let detail =
        wait_api(&base, "/api/v1/plans/restore", "the freeze", |d| d["state"]["freezes"][0]["region"] == "us-east");
    let freeze = &detail["state"]["freezes"][0];
    assert_eq!(freeze["reason"], "carrier maintenance");
    assert_eq!(freeze["by"], "oncall");
    let name = freeze["name"].as_str().unwrap();
    let unfreeze = "button[data-action=\"unfreeze\"][data-scope=\"region:us-east\"]";
    b.wait_for(&format!("document.querySelector('{unfreeze}')"), T);
    assert_eq!(text(&mut b, unfreeze), format!("unfreeze {name}"));
    b.click(unfreeze);
    b.wait_for("document.getElementById('confirm').open", T);
    b.click("#confirm-ok");
    wait_api(&base, "/api/v1/plans/restore", "the unfreeze", |d| d["state"]["freezes"].is_null());

    // Promote the canary wave in full while the plan is paused: the dialog names the scope
    // and the consequence, the page shows the promotion in force, and nothing moves yet.
    b.click("button[data-action=\"promote-full\"][data-scope=\"wave:canary\"]");
    b.wait_for("document.getElementById('confirm').open", T);
    assert_eq!(text(&mut b, "#confirm-title"), "Promote wave canary of plan restore in full?");
    assert!(
        text(&mut b, "#confirm-text").contains(
            "Every remaining bake in wave canary of plan restore is skipped until it completes; approvals, windows and \
             health still gate"
        ),
        "{}",
        text(&mut b, "#confirm-text")
    );
    b.screenshot("confirm-promote-full");
    b.click("#confirm-ok");
    let detail = wait_api(&base, "/api/v1/plans/restore", "the full promotion", |d| {
        d["state"]["fullPromotions"][0]["wave"] == "canary"
    });
    assert_eq!(detail["state"]["fullPromotions"][0]["by"], "oncall");
    let banner = "[data-full-promotion=\"wave canary\"]";
    b.wait_for(&format!("document.querySelector('{banner}')"), T);
    assert!(text(&mut b, banner).contains("promote full of wave canary by oncall"), "{}", text(&mut b, banner));
    assert!(
        text(&mut b, "#status").contains("promote full of wave canary of plan restore: accepted (recorded as oncall)")
    );
    assert_eq!(unit(&detail, "us-east", "signin")["percent"], 10, "paused: nothing moved");
    b.screenshot("promote-full");

    // A resume lets it run: us-east's hour-long step bakes and the canary's hour-long wave bake
    // are skipped, so the wave completes at once; asia still waits for jp's regulator.
    b.click("button[data-action=\"resume\"][data-scope=\"plan\"]");
    b.wait_for("document.getElementById('confirm').open", T);
    b.click("#confirm-ok");
    let detail = wait_api(&base, "/api/v1/plans/restore", "the canary complete", |d| {
        d["state"]["waves"][0]["phase"] == "complete"
    });
    assert!(detail["state"]["fullPromotions"].is_null(), "ended with its wave: {detail}");
    assert_eq!(unit(&detail, "us-east", "store")["phase"], "enabled");
    assert_eq!(unit(&detail, "jp", "signin")["percent"], 0, "approvals still gate");
    b.wait_for(&format!("!document.querySelector('{banner}')"), T);
    b.wait_for(
        "[...document.querySelectorAll('#audit li')].some((li) => li.innerText.includes('full promotion of wave canary by oncall ended'))",
        T,
    );
    b.wait_for(
        "[...document.querySelectorAll('#audit li')].some((li) => li.innerText.includes('wave baked (promote full of wave canary by oncall)'))",
        T,
    );
    b.screenshot("promote-full-done");
}

/// 60 regions: a canary wave of 5 (one of them waiting for its regulator) and 55 pending.
fn fleet_plan() -> String {
    let regions: Vec<String> = (0..60)
        .map(|i| {
            let approvals = if i == 3 { ", approvals: [eu-reg]" } else { "" };
            format!("    - {{name: region-{i:02}, timezone: Europe/Paris{approvals}}}\n")
        })
        .collect();
    let rest: Vec<String> = (5..60).map(|i| format!("region-{i:02}")).collect();
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: fleet}}
spec:
  services: [{{name: signin}}]
  regions:
{}  waves:
    - {{name: canary, regions: [region-00, region-01, region-02, region-03, region-04]}}
    - {{name: rest, regions: [{}]}}
  steps: [1, 100]
  stepBake: 1h
",
        regions.concat(),
        rest.join(", ")
    )
}

fn visible_regions(b: &mut Browser) -> Vec<String> {
    let names = b.eval(
        "[...document.querySelectorAll('tr[data-region]')].filter((r) => !r.hidden).map((r) => r.dataset.region)",
    );
    names.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

#[test]
fn triage_at_60_regions_an_approver_grants_from_the_page_and_a_rejected_edit_is_a_banner() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("fleet.yaml"), fleet_plan()).unwrap();
    let tokens = tokens(dir.path());
    let run = spawn_run(&config, &dir.path().join("state"), &["--tokens", tokens.to_str().unwrap()])
        .expect("meridian run starts");
    let base = run.base.clone();
    wait_api(&base, "/api/v1/plans/fleet", "the canary at 1 %", |d| unit(d, "region-04", "signin")["percent"] == 1);

    let mut b = Browser::start();
    b.navigate(&format!("{base}/"));
    b.wait_for("document.getElementById('token-form').style.display === 'block'", T);
    sign_in(&mut b, APPROVER);
    b.wait_for("document.body.dataset.ready === 'true' && document.querySelector('[data-count=\"progressing\"]')", T);
    // Counts per phase at the top.
    assert_eq!(text(&mut b, "[data-count=\"progressing\"]"), "progressing 4");
    assert_eq!(text(&mut b, "[data-count=\"pending\"]"), "pending 55");
    assert_eq!(text(&mut b, "[data-count=\"blocked\"]"), "blocked 1");
    // The pending wave starts collapsed.
    assert_eq!(visible_regions(&mut b), ["region-00", "region-01", "region-02", "region-03", "region-04"]);
    assert_eq!(text(&mut b, "#shown"), "5 of 60 regions shown");
    // Problems only: the region blocked on its approval, not the healthy ones.
    b.click("#problems-only");
    b.wait_for("document.getElementById('shown').innerText === '1 of 60 regions shown'", T);
    assert_eq!(visible_regions(&mut b), ["region-03"]);
    assert!(text(&mut b, "tr[data-region=\"region-03\"]").contains("approval eu-reg not granted"));
    b.screenshot("problems-only");
    b.click("#problems-only");
    // The search looks into collapsed waves too.
    b.click("#region-search");
    b.type_text("region-4");
    b.type_text("2");
    b.wait_for("document.getElementById('shown').innerText === '1 of 60 regions shown'", T);
    assert_eq!(visible_regions(&mut b), ["region-42"]);
    b.eval("(() => { const s = document.getElementById('region-search'); s.value = ''; s.dispatchEvent(new Event('input')); })()");
    b.click("button[data-wave-toggle=\"rest\"]");
    b.wait_for("document.getElementById('shown').innerText === '60 of 60 regions shown'", T);
    b.eval("window.scrollTo(0, 0)");
    b.screenshot("triage-60-regions");

    // An approver has no command buttons, but a grant form.
    assert_eq!(count(&mut b, "button[data-action]"), 0);
    let expires = (chrono::Utc::now() + chrono::TimeDelta::days(2)).format("%Y-%m-%d %H:%M").to_string();
    for (field, value) in [
        ("flag", "eu-reg"),
        ("name", "eu-letter"),
        ("reference", "letter 7"),
        ("regions", "region-03"),
        ("expires", &expires),
    ] {
        b.click(&format!("#grant-{field}"));
        b.type_text(value);
    }
    b.click("#grant-form button[type=submit]");
    b.wait_for("document.getElementById('confirm').open", T);
    assert_eq!(text(&mut b, "#confirm-title"), "Grant eu-reg as eu-letter?");
    assert!(text(&mut b, "#confirm-text").contains("in scope (region region-03) may start until"));
    b.screenshot("confirm-grant");
    b.click("#confirm-ok");
    let approvals = wait_api(&base, "/api/v1/approvals", "the approval", |a| a["approvals"][0]["name"] == "eu-letter");
    let granted = &approvals["approvals"][0];
    assert_eq!(granted["grantedBy"], "liaison");
    assert_eq!(granted["reference"], "letter 7");
    assert_eq!(granted["scope"]["regions"], serde_json::json!(["region-03"]));
    assert_eq!(granted["expires"].as_str().unwrap()[..16], expires.replace(' ', "T"));
    wait_api(&base, "/api/v1/plans/fleet", "region-03 started", |d| unit(d, "region-03", "signin")["percent"] == 1);
    let history = get(&base, "/api/v1/history?kind=approval-granted");
    assert!(history.to_string().contains("liaison"), "{history}");
    // Its badge, its scope in words, its expiry to the minute; and a revoke button.
    b.wait_for("document.querySelector('tr[data-approval=\"eu-letter\"] [data-revoke]')", T);
    let row = text(&mut b, "tr[data-approval=\"eu-letter\"]");
    assert!(row.contains("active"), "{row}");
    assert!(row.contains("region region-03"), "{row}");
    assert!(row.contains(&format!("{expires} UTC")), "{row}");
    b.click("tr[data-approval=\"eu-letter\"] [data-revoke]");
    b.wait_for("document.getElementById('confirm').open", T);
    b.click("#f-revoke-reason");
    b.type_text("sent in error");
    b.click("#confirm-ok");
    wait_api(&base, "/api/v1/approvals", "the revocation", |a| a["approvals"][0]["status"] == "revoked");
    b.wait_for("document.querySelector('tr[data-approval=\"eu-letter\"] [data-status=\"revoked\"]')", T);
    assert!(text(&mut b, "tr[data-approval=\"eu-letter\"]").contains("revoked by liaison"));

    // A rejected edit: a banner with the located errors; the previous plan stays in force.
    std::fs::write(config.join("bad.yaml"), crate::support::INVALID_PLAN).unwrap();
    b.wait_for("document.getElementById('rejected')", Duration::from_secs(30));
    let banner = text(&mut b, "#rejected");
    assert!(banner.contains("bad.yaml:"), "{banner}");
    assert!(banner.contains("Asia/Tokio"), "{banner}");
    b.eval("window.scrollTo(0, 0)");
    b.screenshot("rejected-edit");
}

fn post(base: &str, path: &str, body: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}{path}"))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "POST {path}: {status}");
}

#[test]
fn failures_stand_out_in_the_transitions_which_page_back_and_the_keyboard_focus_is_visible() {
    let (dir, config, state) = crate::dashboard::setup();
    let tokens = tokens(dir.path());
    let run = spawn_run(&config, &state, &["--tokens", tokens.to_str().unwrap()]).expect("meridian run starts");
    let base = run.base.clone();
    wait_api(&base, "/api/v1/plans/restore", "us-east at 1 %", |d| unit(d, "us-east", "signin")["percent"] == 1);
    // More than two pages of transitions, then a failure: us-east aborted and rolled back.
    for _ in 0..12 {
        post(&base, "/api/v1/plans/restore/pause", r#"{"region": "us-east"}"#);
        post(&base, "/api/v1/plans/restore/resume", r#"{"region": "us-east"}"#);
    }
    post(&base, "/api/v1/plans/restore/abort", r#"{"region": "us-east"}"#);
    let detail = wait_api(&base, "/api/v1/plans/restore", "us-east rolled back", |d| {
        unit(d, "us-east", "signin")["phase"] == "rolled-back"
    });
    let records = detail["state"]["auditSeq"].as_u64().unwrap();
    assert!(records > 60, "{records} records");

    let mut b = Browser::start();
    b.navigate(&format!("{base}/"));
    b.wait_for("document.getElementById('token-form').style.display === 'block'", T);
    // The keyboard reaches the header's button first, and its focus is outlined.
    b.eval("document.activeElement.blur()");
    b.press("Tab");
    assert_eq!(b.eval("document.activeElement.id"), "token-button");
    assert_eq!(b.eval("getComputedStyle(document.activeElement).outlineStyle"), "solid");
    sign_in(&mut b, VIEWER);
    b.wait_for(&format!("document.querySelector('#audit li[data-seq=\"{records}\"]')"), T);
    assert_eq!(count(&mut b, "#audit li"), 30);
    let failure = text(&mut b, "#audit li.failure");
    assert!(failure.starts_with("✗ #"), "{failure}");
    assert!(failure.contains("us-east/signin: progressing -> rolled-back"), "{failure}");
    b.screenshot("transitions");
    // A wave folds from the keyboard, and the focus stays on its toggle through redraws.
    let toggle = "button[data-wave-toggle=\"canary\"]";
    b.eval(&format!("document.querySelector('{toggle}').focus()"));
    b.press("Enter");
    b.wait_for(&format!("document.querySelector('{toggle}').getAttribute('aria-expanded') === 'false'"), T);
    b.eval("document.querySelector('#plan section').dataset.old = 'yes'");
    b.wait_for("!document.querySelector('#plan section[data-old]')", T);
    assert_eq!(b.eval("document.activeElement.dataset.waveToggle"), "canary");
    assert_eq!(b.eval("getComputedStyle(document.activeElement).outlineStyle"), "solid");
    assert!(visible_regions(&mut b).is_empty());
    // Older pages, 30 at a time, down to the first record.
    b.click("#older");
    b.wait_for("document.querySelectorAll('#audit li').length === 60", T);
    while b.eval("document.getElementById('older').hidden") != Value::Bool(true) {
        b.click("#older");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count(&mut b, "#audit li"), records);
    assert_eq!(b.eval("document.querySelector('#audit li:last-child').dataset.seq"), "1");
    let seqs = b.eval("[...document.querySelectorAll('#audit li')].map((li) => Number(li.dataset.seq))");
    let seqs: Vec<u64> = seqs.as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=records).rev().collect::<Vec<_>>());
}
