//! Signed approvals end to end: `meridian approval keygen` and `sign`, then a `meridian run`
//! whose plan requires jp-regulator signed by the liaison's key. Unsigned and badly signed
//! approvals are refused (a file with its edit, the API with a 400) and recorded; jp gets
//! traffic only once a correctly signed approval file is in place.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{meridian, spawn_run, stderr, stdout};

fn plan(public_key: &str) -> String {
    format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: signed}}
spec:
  services: [{{name: signin}}]
  regions:
    - name: us
    - name: jp
      approvals: [jp-regulator]
  waves:
    - {{name: all, regions: [us, jp]}}
  steps: [50, 100]
  stepBake: 1s
  actuator: {{log: {{}}}}
  approvalPolicies:
    - flag: jp-regulator
      signedBy:
        - {{name: liaison, publicKey: \"{public_key}\"}}
"
    )
}

const APPROVAL: &str = "apiVersion: meridian.dev/v1alpha1
kind: Approval
metadata:
  name: jp-letter
spec:
  flag: jp-regulator
  grantedBy: Ministry liaison office
  reference: letter 2026-0528-17
  scope: {plans: [signed], regions: [jp]}
";

fn run_ok(args: &[&str]) -> String {
    let out = meridian(args);
    assert!(out.status.success(), "meridian {args:?}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

async fn get(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn jp_percent(detail: &serde_json::Value) -> i64 {
    let units = detail["state"]["units"].as_array().unwrap();
    units.iter().find(|u| u["region"] == "jp").map(|u| u["percent"].as_i64().unwrap()).unwrap()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_correctly_signed_approval_opens_a_signed_flag() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("liaison.key");
    let other_key = dir.path().join("intruder.key");
    // keygen: a private key file for its owner only, and the line for the plan.
    let line = run_ok(&["approval", "keygen", "--out", key.to_str().unwrap()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(line.starts_with("- {name: liaison, publicKey: \"ed25519:"), "{line}");
    let public_key = line.split('"').nth(1).unwrap().to_string();
    run_ok(&["approval", "keygen", "--out", other_key.to_str().unwrap(), "--name", "liaison"]);

    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    write(&config.join("plan.yaml"), &plan(&public_key));
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("{}/api/v1/{path}", run.base);

    // us rolls; jp waits for its flag.
    wait_for("us enabled", || async {
        let detail = get(&client, url("plans/signed")).await;
        detail["state"]["units"].as_array().unwrap().iter().any(|u| u["region"] == "us" && u["percent"] == 100)
    })
    .await;

    // The API refuses an unsigned approval of the flag, saying why.
    let manifest: serde_json::Value = serde_json::json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "jp-over-the-api"},
        "spec": {"flag": "jp-regulator", "grantedBy": "Ministry liaison office", "reference": "phone call"}
    });
    let refused = client.post(url("approvals")).json(&manifest).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("approval \"jp-over-the-api\" is refused by plan \"signed\": it is not signed")
            && error.contains("meridian approval sign"),
        "{body}"
    );

    // A file signed with another key under the liaison's name, then one altered after
    // signing: each edit is rejected with a located error, and jp stays at 0 %.
    let approval = dir.path().join("jp-letter.yaml");
    write(&approval, APPROVAL);
    let forged = run_ok(&["approval", "sign", "--key", other_key.to_str().unwrap(), approval.to_str().unwrap()]);
    write(&config.join("jp-letter.yaml"), &forged);
    wait_for("the forged approval refused", || async {
        let cfg = get(&client, url("config")).await;
        cfg["rejected"]["errors"].as_array().is_some_and(|e| {
            e.iter().any(|e| e.as_str().unwrap().contains("approval \"jp-letter\" is refused by plan \"signed\": its signature by key \"liaison\" does not match its content"))
        })
    })
    .await;
    let first_rejection = get(&client, url("config")).await["rejected"]["at"].clone();
    let signed = run_ok(&["approval", "sign", "--key", key.to_str().unwrap(), approval.to_str().unwrap()]);
    write(&config.join("jp-letter.yaml"), &signed.replace("letter 2026-0528-17", "letter 2026-0528-18"));
    wait_for("the altered approval refused", || async {
        let cfg = get(&client, url("config")).await;
        cfg["rejected"]["at"] != first_rejection
            && cfg["rejected"]["errors"].to_string().contains("its signature by key \\\"liaison\\\" does not match")
    })
    .await;
    assert_eq!(jp_percent(&get(&client, url("plans/signed")).await), 0);

    // Every refusal is in the history, with why.
    let history = get(&client, url("history?kind=approval-refused")).await;
    let events = history["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["approval"] == "jp-over-the-api" && e["detail"]["code"] == "approval-unsigned"),
        "{history}"
    );
    assert!(events.iter().any(|e| e["detail"]["code"] == "bad-signature"), "{history}");

    // The real one, signed in place: jp rolls to 100 %.
    write(&approval, APPROVAL);
    run_ok(&["approval", "sign", "--key", key.to_str().unwrap(), "--in-place", approval.to_str().unwrap()]);
    std::fs::copy(&approval, config.join("jp-letter.yaml")).unwrap();
    wait_for("jp enabled", || async { jp_percent(&get(&client, url("plans/signed")).await) == 100 }).await;
    let audit = get(&client, url("audit?plan=signed")).await;
    assert!(audit.to_string().contains("jp-letter"), "the step names the signed approval as evidence: {audit}");

    // `meridian approve --key` signs what it sends: the liaison's key is accepted, another
    // key under the same name is refused by the server, naming the signature.
    let approve = |name: &str, key: &Path| {
        meridian(&[
            "approve",
            "jp-regulator",
            "--plan",
            "signed",
            "--region",
            "jp",
            "--reference",
            "call 2026-06-02",
            "--granted-by",
            "Ministry liaison office",
            "--name",
            name,
            "--key",
            key.to_str().unwrap(),
            "--server",
            &run.base,
        ])
    };
    let out = approve("jp-by-cli", &key);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("signed with key liaison"), "{}", stdout(&out));
    let approvals = get(&client, url("approvals")).await;
    let by_cli = approvals["approvals"].as_array().unwrap().iter().find(|a| a["name"] == "jp-by-cli").cloned();
    assert_eq!(by_cli.as_ref().map(|a| a["status"].clone()), Some(serde_json::json!("active")), "{approvals}");
    let out = approve("jp-forged-by-cli", &other_key);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("does not match its content"), "{}", stderr(&out));
}

#[test]
fn sign_refuses_what_is_not_one_valid_approval() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    run_ok(&["approval", "keygen", "--out", key.to_str().unwrap()]);
    // keygen never overwrites a key.
    let again = meridian(&["approval", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    let bad = dir.path().join("bad.yaml");
    write(&bad, &APPROVAL.replace("grantedBy: Ministry liaison office", "grantedBy: ''"));
    let out = meridian(&["approval", "sign", "--key", key.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("grantedBy is empty") && stderr(&out).contains("nothing was signed"),
        "{}",
        stderr(&out)
    );
}
