use crate::support::{INVALID_PLAN, meridian, stderr, stdout};

const START: &str = "2026-11-30T13:00:00Z"; // a Monday, 08:00 in New York

#[test]
fn restoration_projection_honours_windows_and_holds_out_of_scope_services() {
    let out =
        meridian(&["plan", "config/", "--plan", "network-restoration", "--assume-healthy", "--start", START, "--full"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // The window opens at 09:00 New York time, 14:00 UTC.
    assert!(
        text.contains("us-east     signin   1% 11-30 14:00") || text.contains("us-east  signin   1% 11-30 14:00"),
        "{text}"
    );
    // The ministry's letter covers signin and store, not music.
    assert!(
        text.contains("jp/music: approval jp-regulator (jp-regulator-2026-05) does not cover this region or service"),
        "{text}"
    );
    // Nobody grants jp's music: the rollout never finishes, and says what holds it, once,
    // with what waits on it summarised.
    assert!(text.contains("finish   never without action: jp/music: approval jp-regulator"), "{text}");
    let held = &text[text.find("held when the projection ends:").expect(&text)..];
    assert!(held.contains("  jp/music: approval jp-regulator"), "{held}");
    assert!(held.lines().count() < 12, "every waiting unit listed one by one:\n{held}");
    // The hour before the window opens is explained, in New York time.
    assert!(text.contains("  us-east waited 1h 00m for a window: opens Mon 09:00 EST\n"), "{text}");
}

#[test]
fn the_condensed_view_is_a_line_per_region_with_its_gaps_explained() {
    let out = meridian(&["plan", "config/", "--plan", "network-restoration", "--assume-healthy", "--start", START]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  REGION   FIRST TRAFFIC  ENABLED\n  us-east  11-30 14:00    11-30 16:00\n"), "{text}");
    assert!(text.contains("  us-east waited 1h 00m for a window: opens Mon 09:00 EST\n"), "{text}");
    // A line per region, not per service: no row names a service.
    assert!(!text.contains("SERVICE") && !text.contains(" signin "), "{text}");
    let wide = stdout(&meridian(&[
        "plan",
        "config/",
        "--plan",
        "network-restoration",
        "--assume-healthy",
        "--start",
        START,
        "-o",
        "wide",
    ]));
    assert!(wide.contains("STEP 1") && wide.contains(" signin "), "{wide}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&meridian(&[
        "plan",
        "config/",
        "--plan",
        "network-restoration",
        "--assume-healthy",
        "--start",
        START,
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["gaps"][0]["region"], "us-east", "{}", json["gaps"]);
    assert_eq!(json["gaps"][0]["why"], "a window: opens Mon 09:00 EST");
}

#[test]
fn a_rollout_that_never_finishes_says_why_and_what_would_let_it() {
    let out = meridian(&["plan", "config/network-restoration.yaml", "--assume-healthy", "--start", START]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("finish   never without action: us-east/signin: approval ops-go not granted"), "{text}");
    assert!(text.contains("try --grant ops-go, or --approvals PATH with its Approval"), "{text}");
    assert!(text.contains("  38 more units wait on these (an earlier wave"), "{text}");
    let out =
        meridian(&["plan", "config/network-restoration.yaml", "--assume-healthy", "--start", START, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blockers"]["roots"][0]["unit"], "us-east/signin");
    assert_eq!(v["blockers"]["roots"][0]["flag"], "ops-go");
    assert_eq!(v["blockers"]["downstream"], 38);
    // Granted, the same plan finishes: no blockers.
    let out = meridian(&[
        "plan",
        "config/network-restoration.yaml",
        "--assume-healthy",
        "--start",
        START,
        "--grant",
        "ops-go",
        "--grant",
        "jp-regulator",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("finishedAt").is_some(), "{}", v["blockers"]);
    assert_eq!(v["blockers"]["roots"], serde_json::json!([]));
}

#[test]
fn without_health_data_nothing_advances_past_the_first_step() {
    let out = meridian(&["plan", "config/demo.yaml", "--start", START, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("finishedAt").is_none());
    let units = v["units"].as_array().unwrap();
    let max_steps = units.iter().map(|u| u["steps"].as_array().unwrap().len()).max().unwrap();
    assert_eq!(max_steps, 1, "no unit may pass its first step without health data");
    let signin = units.iter().find(|u| u["region"] == "us-east" && u["service"] == "signin").unwrap();
    assert_eq!(signin["waiting"]["kind"], "health");
}

#[test]
fn a_simulated_grant_releases_the_gated_region() {
    let held = meridian(&["plan", "config/demo.yaml", "--assume-healthy", "--start", START, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert!(v.get("finishedAt").is_none());
    let jp = v["units"].as_array().unwrap().iter().find(|u| u["region"] == "jp" && u["service"] == "signin").unwrap();
    assert_eq!(jp["waiting"]["kind"], "approval");
    assert_eq!(jp["waiting"]["flag"], "jp-regulator");

    let granted = meridian(&[
        "plan",
        "config/demo.yaml",
        "--assume-healthy",
        "--start",
        START,
        "--grant",
        "jp-regulator@2026-11-30T13:10:00Z",
        "-o",
        "json",
    ]);
    assert_eq!(granted.status.code(), Some(0), "{}", stderr(&granted));
    let v: serde_json::Value = serde_json::from_slice(&granted.stdout).unwrap();
    assert!(v["finishedAt"].is_string(), "{v}");
    let jp = v["units"].as_array().unwrap().iter().find(|u| u["region"] == "jp" && u["service"] == "signin").unwrap();
    let first = jp["steps"][0]["at"].as_str().unwrap();
    assert!(first >= "2026-11-30T13:10:00Z", "jp got traffic at {first}, before its grant");
    // Evidence: the audit record of jp's first step names the approval that held.
    let start_record = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "jp" && r["cause"]["reason"] == "started")
        .unwrap();
    assert_eq!(start_record["cause"]["approvals"][0], "simulated-grant-1-jp-regulator");
}

#[test]
fn plan_rejects_invalid_input_and_unknown_plans() {
    let out = meridian(&["plan", "config/", "--plan", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("no plan named \"nope\""));
    let out = meridian(&["plan", "config/", "--grant", "@2026-01-01T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(3));
}

/// An approval for demo's regulator-gated region jp, granted half an hour after `START`.
const JP_LETTER: &str = "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata: {name: jp-letter}
spec:
  flag: jp-regulator
  grantedBy: Ministry liaison office
  reference: letter 17
  grantedAt: 2026-11-30T13:30:00Z
  scope: {plans: [demo], regions: [jp]}
";

#[test]
fn approvals_from_the_approvals_path_release_the_gated_region() {
    let dir = tempfile::tempdir().unwrap();
    let letter = dir.path().join("jp-letter.yaml");
    std::fs::write(&letter, JP_LETTER).unwrap();
    let approvals = dir.path().to_str().unwrap();
    let base = ["plan", "config/demo.yaml", "--assume-healthy", "--start", START, "--full"];

    // Without the approval file jp is blocked on its flag to the end of the projection.
    let held = meridian(&base);
    assert_eq!(held.status.code(), Some(0), "{}", stderr(&held));
    let text = stdout(&held);
    assert!(text.contains("  jp/signin: approval jp-regulator not granted\n"), "{text}");
    let jp_row = |text: &str| text.lines().find(|l| l.starts_with("  jp      signin")).map(str::to_string);
    assert!(jp_row(&text).is_some_and(|row| row.ends_with("blocked")), "{text}");

    // With it (a directory here), jp starts at the approval's grantedAt, and nothing is held.
    let released = meridian(&[&base[..], &["--approvals", approvals]].concat());
    assert_eq!(released.status.code(), Some(0), "{}", stderr(&released));
    let text = stdout(&released);
    assert!(jp_row(&text).is_some_and(|row| row.contains("10% 11-30 13:30:00")), "{text}");
    assert!(!text.contains("held when the projection ends"), "{text}");

    // Evidence (the file itself this time): jp's first step names the approval from the file.
    let json = meridian(&[&base[..], &["--approvals", letter.to_str().unwrap(), "-o", "json"]].concat());
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["finishedAt"].is_string(), "{v}");
    let start = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "jp" && r["service"] == "signin" && r["cause"]["reason"] == "started")
        .unwrap_or_else(|| panic!("no start of jp/signin in the audit: {v}"));
    assert_eq!(start["cause"]["approvals"], serde_json::json!(["jp-letter"]));
    assert_eq!(start["at"], "2026-11-30T13:30:00Z");
}

#[test]
fn an_invalid_plan_exits_1_with_located_errors_and_no_projection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, INVALID_PLAN).unwrap();
    let path = file.to_str().unwrap();
    for format in ["text", "json"] {
        let out = meridian(&["plan", path, "--assume-healthy", "--start", START, "-o", format]);
        assert_eq!(out.status.code(), Some(1), "{format}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{format}: no projection of an invalid plan");
        let text = stderr(&out);
        for expected in [
            format!(
                "{path}:6:34: error: unknown time zone \"Asia/Tokio\" for region \"jp\"; did you mean \"Asia/Tokyo\"?\n"
            ),
            format!("{path}:9:17: error: unknown region \"jpn\" in wave \"asia\"; did you mean \"jp\"?\n"),
            format!(
                "{path}:11:18: error: steps end at 50, not 100; append 100: a rollout is done only at full traffic\n"
            ),
        ] {
            assert!(text.contains(&expected), "{format}: missing {expected:?} in:\n{text}");
        }
        assert!(
            text.ends_with("meridian plan: fix the errors above first (see `meridian validate`)\n"),
            "{format}: {text}"
        );
    }

    // An error in a file given with --approvals blocks the projection the same way, located there.
    let letter = dir.path().join("letter.yaml");
    std::fs::write(&letter, JP_LETTER.replace("2026-11-30T13:30:00Z", "next tuesday")).unwrap();
    let out = meridian(&["plan", "config/demo.yaml", "--start", START, "--approvals", letter.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!("{}:8:14: error: grantedAt \"next tuesday\" is not a valid time", letter.display());
    assert!(stderr(&out).contains(&expected), "missing {expected:?} in:\n{}", stderr(&out));

    // So does a file that is not UTF-8: located, exit 1, not a usage error.
    std::fs::write(&file, b"apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: caf\xE9}\n")
        .unwrap();
    let out = meridian(&["plan", path, "--start", START]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected =
        format!("{path}:1:1: error: the file is not valid UTF-8: the first invalid byte, 0xE9, is at line 3");
    assert!(stderr(&out).starts_with(&expected), "missing {expected:?} in:\n{}", stderr(&out));
}

/// `--fail`: the golden timeline of a wave that tolerates one failed region, with two failing
/// (the second stops the wave at once: br-south never starts), and one failing within budget.
#[test]
fn a_simulated_failure_is_projected_through_the_failure_budgets() {
    let golden = |args: &[&str], file: &str| {
        let mut all = vec!["plan", "tests/fixtures/plan/budgets.yaml", "--assume-healthy", "--start", START];
        all.extend_from_slice(args);
        let out = meridian(&all);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let path = crate::support::repo_root().join("tests/fixtures/plan").join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, stdout(&out)).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(stdout(&out) == expected, "{file} differs (UPDATE_GOLDEN=1 to accept):\n{}", stdout(&out));
    };
    golden(&["--fail", "eu-west@2026-11-30T13:40:00Z"], "budgets.within.stdout");
    golden(&["--fail", "eu-west", "--fail", "eu-central"], "budgets.past.stdout");

    let out = meridian(&[
        "plan",
        "tests/fixtures/plan/budgets.yaml",
        "--assume-healthy",
        "--start",
        START,
        "--fail",
        "eu-west",
        "--fail",
        "eu-central",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["phase"], "halted");
    assert_eq!(v["failures"][1]["region"], "eu-central");
    let exceeded =
        v["audit"].as_array().unwrap().iter().find(|r| r["cause"]["reason"] == "budgetExceeded").expect("recorded");
    assert_eq!(exceeded["region"], "eu-central");
    assert_eq!(exceeded["cause"]["budget"]["budget"], "wave main");

    let out = meridian(&["plan", "tests/fixtures/plan/budgets.yaml", "--fail", "eu-wst"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no region \"eu-wst\" in the plans projected; did you mean \"eu-west\"?"),
        "{}",
        stderr(&out)
    );
}

/// Without health data the canary holds at its first step: past its progressDeadline it is
/// recorded and shown, its traffic untouched.
#[test]
fn a_unit_without_health_data_is_flagged_past_its_progress_deadline() {
    let out = meridian(&["plan", "tests/fixtures/plan/deadline.yaml", "--start", START]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "us-east/signin: waiting for fresh healthy data from error-rate; no progress for 20m (deadline 20m)"
        ),
        "{text}"
    );
    let out = meridian(&["plan", "tests/fixtures/plan/deadline.yaml", "--start", START, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = v["audit"].as_array().unwrap().iter().find(|r| r["cause"]["reason"] == "progressDeadline").unwrap();
    assert_eq!(record["region"], "us-east");
    assert_eq!(record["at"], "2026-11-30T13:20:00Z");
    assert_eq!(record["event"]["fromPercent"], record["event"]["toPercent"]);
}

#[test]
fn plans_that_depend_on_plans_are_projected_together_in_order() {
    let dir = "tests/fixtures/plan/dependent";
    let out = meridian(&["plan", dir, "--start", START, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = |name: &str| v.as_array().unwrap().iter().find(|p| p["plan"] == name).unwrap().clone();
    let wave = |p: &serde_json::Value, name: &str| {
        p["waves"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap().clone()
    };
    let (signin, store) = (plan("signin-restore"), plan("store-restore"));
    // store's canary starts when signin's canary completes (after its 30m bake), its second
    // wave when the whole of signin does; not at the start, where nothing holds it otherwise.
    assert_eq!(wave(&signin, "canary")["completedAt"], "2026-11-30T13:50:00Z");
    assert_eq!(wave(&store, "canary")["startedAt"], "2026-11-30T13:50:00Z");
    assert_eq!(signin["finishedAt"], "2026-11-30T14:10:00Z");
    assert_eq!(wave(&store, "rest")["startedAt"], "2026-11-30T14:10:00Z");
    assert_eq!(store["finishedAt"], "2026-11-30T14:30:00Z");
    // Asked for alone, store is still projected with the plan it waits for.
    let out = meridian(&["plan", dir, "--plan", "store-restore", "--start", START]);
    let text = stdout(&out);
    assert!(!text.contains("plan signin-restore\n"), "only the plan asked for is shown:\n{text}");
    assert!(text.contains("finish   2026-11-30 14:30 UTC (1h30m after start)"), "{text}");
    assert!(
        text.contains(
            "wave canary (maxParallel 1, bake 0s, after plan signin-restore wave canary): 11-30 13:50 -> 11-30 14:10"
        ),
        "{text}"
    );
    // Read without the plan it waits for, store is refused with a located error.
    let out = meridian(&["plan", "tests/fixtures/plan/dependent/store.yaml", "--start", START]);
    assert_eq!(out.status.code(), Some(1), "an unknown plan is a validation error");
    assert!(
        stderr(&out).contains("store.yaml:11:26: error: plan store-restore wave canary depends on plan \"signin-restore\", which is not defined"),
        "{}",
        stderr(&out)
    );
}

const LIVE_PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: live}
spec:
  services: [{name: web}]
  regions: [{name: us}, {name: eu, approvals: [eu-regulator]}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

#[test]
fn from_server_projects_the_rest_of_a_running_rollout_from_its_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), LIVE_PLAN).unwrap();
    let run =
        crate::support::spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let canary = meridian(&[
        "status",
        "live",
        "--wave",
        "canary",
        "--wait",
        "--timeout",
        "60s",
        "--interval",
        "200ms",
        "--server",
        &run.base,
    ]);
    assert_eq!(canary.status.code(), Some(0), "{}{}", stdout(&canary), stderr(&canary));
    let config_arg = config.to_str().unwrap();
    let project = |extra: &[&str]| {
        let mut args = vec!["plan", config_arg, "--from-server", &run.base, "--plan", "live"];
        args.extend_from_slice(extra);
        meridian(&args)
    };

    let out = project(&["--grant", "eu-regulator", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["projectedFrom"]["server"], run.base.as_str());
    let from = v["projectedFrom"]["at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(v["start"], v["projectedFrom"]["at"]);
    // The canary is enabled already: kept as the server says, not projected again.
    let us = &v["units"][0];
    assert_eq!((us["region"].as_str(), us["finalPhase"].as_str()), (Some("us"), Some("enabled")), "{us}");
    assert_eq!(us["steps"], serde_json::json!([]), "{us}");
    let enabled = us["enabledAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(enabled <= from, "{enabled} after the projection's start {from}");
    assert_eq!(v["waves"][0]["finalPhase"], "complete");
    // The rest, granted, goes through its two steps from now.
    let eu = &v["units"][1];
    assert_eq!((eu["region"].as_str(), eu["finalPhase"].as_str()), (Some("eu"), Some("enabled")), "{eu}");
    let steps: Vec<&str> = eu["steps"].as_array().unwrap().iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert_eq!(steps.len(), 2, "{eu}");
    assert_eq!(steps[0], v["start"].as_str().unwrap());
    let finish = v["finishedAt"].as_str().expect("a finish").parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    // Two steps of 1 s, the last one held too before the unit counts as enabled, as for the
    // canary from a fresh start: 2 s from now, not 4 s from the rollout's start.
    assert_eq!(finish - from, chrono::TimeDelta::seconds(2));

    // Without the grant it never finishes: the server holds no eu-regulator approval.
    let out = project(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&format!("projected from the live state of {} at ", run.base)), "{text}");
    assert!(text.contains("finish   never without action: eu/web: approval eu-regulator"), "{text}");

    // A local plan that is not the one running is refused, naming the difference.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("plan.yaml"), LIVE_PLAN.replace("eu", "fr")).unwrap();
    let out = meridian(&["plan", other.to_str().unwrap(), "--from-server", &run.base, "--plan", "live"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("the local plan live is not the one"), "{err}");
    assert!(err.contains("region eu only in the state, region fr only in the plan"), "{err}");
    // --from-server needs a plan to project.
    let out = meridian(&["plan", config_arg, "--from-server", &run.base]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn from_server_sends_the_token_of_token_file_as_the_client_commands_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), LIVE_PLAN).unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, "tokens:\n  - {name: oncall, token: oncall-viewer-token-for-the-tests3, role: viewer}\n")
        .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "oncall-viewer-token-for-the-tests3\n").unwrap();
    let run = crate::support::spawn_run(&config, &dir.path().join("state"), &["--tokens", tokens.to_str().unwrap()])
        .expect("meridian run starts");
    let config_arg = config.to_str().unwrap();
    let base = ["plan", config_arg, "--from-server", &run.base, "--plan", "live", "-o", "json"];

    // No token: the server's refusal (1), with how to give one.
    let out = meridian(&base);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("hint: pass --token-file FILE or --token TOKEN"), "{}", stderr(&out));
    let mut with_file = base.to_vec();
    with_file.extend(["--token-file", token.to_str().unwrap()]);
    let out = meridian(&with_file);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["projectedFrom"]["server"], run.base.as_str());
}
