//! `meridian audit verify` end to end: a real `meridian run` rolls a plan out (with an
//! approval granted and revoked over the API), then the chain is verified over the API and
//! from the state dir while the controller runs, and copies of the database file are
//! tampered with the way someone with write access to the file could: an edited record, a
//! deleted one, two reordered, the tail cut off. Each time verify fails and names the record.

use std::path::Path;

use crate::support::{meridian, spawn_run, stderr, stdout};

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: chained}
spec:
  services: [{name: web}]
  regions: [{name: us}, {name: eu}]
  waves:
    - {name: all, regions: [us, eu]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

fn verify(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["audit", "verify", "-o", "json"];
    all.extend_from_slice(args);
    let out = meridian(&all);
    let json = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr(&out))
}

/// A copy of the state dir (database and its WAL), opened raw with the append-only
/// triggers dropped.
fn tampered_copy(state: &Path, into: &Path) -> rusqlite::Connection {
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(state).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
    }
    let raw = rusqlite::Connection::open(into.join("meridian.db")).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;
         DROP TRIGGER chain_no_update; DROP TRIGGER chain_no_delete;",
    )
    .unwrap();
    raw
}

#[test]
fn verify_holds_on_a_real_run_and_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let state = dir.path().join("state");
    let run = spawn_run(&config, &state, &["--no-auth"]).expect("meridian run starts");

    // Wait for the rollout to finish, then record an approval grant and revocation so every
    // kind of record is in the chain.
    let done = meridian(&["status", "chained", "--wait", "--timeout", "60s", "--server", &run.base]);
    assert_eq!(done.status.code(), Some(0), "{}{}", stdout(&done), stderr(&done));
    let granted = meridian(&[
        "approve",
        "ops-go",
        "--plan",
        "chained",
        "--reference",
        "CHG-1",
        "--name",
        "go-1",
        "--server",
        &run.base,
    ]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    let revoked = meridian(&["revoke", "go-1", "--reason", "test", "--server", &run.base]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));

    // Over the API (every hash recomputed by the client) and from the state dir, beside the
    // running controller.
    let (code, api, err) = verify(&["--server", &run.base]);
    assert_eq!(code, Some(0), "{api} {err}");
    assert_eq!(api["intact"], true);
    let entries = api["head"]["entries"].as_u64().unwrap();
    assert!(entries >= 10, "a rollout of 2 units in 2 steps and an approval make at least 10 records: {api}");
    let (code, local, err) = verify(&["--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{local} {err}");
    assert!(local["head"]["entries"].as_u64().unwrap() >= entries);
    drop(run);

    // The head printed now is the anchor an auditor keeps.
    let (_, head, _) = verify(&["--state-dir", state.to_str().unwrap()]);
    let anchor = head["anchor"].as_str().unwrap().to_string();
    let text = meridian(&["audit", "verify", "--state-dir", state.to_str().unwrap(), "--anchor", &anchor]);
    assert!(stdout(&text).contains("audit chain intact") && stdout(&text).contains(&anchor), "{}", stdout(&text));

    let broken = |copy: &Path, anchor: Option<&str>| {
        let mut args = vec!["--state-dir", copy.to_str().unwrap()];
        if let Some(a) = anchor {
            args.extend(["--anchor", a]);
        }
        let (code, json, err) = verify(&args);
        assert_eq!(code, Some(1), "{json} {err}");
        assert_eq!(json["intact"], false);
        json["message"].as_str().unwrap().to_string()
    };

    let edited = dir.path().join("edited");
    tampered_copy(&state, &edited)
        .execute(
            "UPDATE audit_records SET at = '2020-01-01T00:00:00.000000000Z' WHERE plan = 'chained' AND seq = 3",
            [],
        )
        .unwrap();
    let message = broken(&edited, None);
    assert!(message.contains("(audit chained#3) does not match its hash"), "{message}");

    let deleted = dir.path().join("deleted");
    tampered_copy(&state, &deleted)
        .execute("DELETE FROM audit_records WHERE plan = 'chained' AND seq = 2", [])
        .unwrap();
    let message = broken(&deleted, None);
    assert!(message.contains("(audit chained#2) names a record that is gone"), "{message}");

    let reordered = dir.path().join("reordered");
    tampered_copy(&state, &reordered)
        .execute_batch(
            "UPDATE audit_records SET seq = 1000 WHERE plan = 'chained' AND seq = 4;
             UPDATE audit_records SET seq = 4 WHERE plan = 'chained' AND seq = 5;
             UPDATE audit_records SET seq = 5 WHERE plan = 'chained' AND seq = 1000;",
        )
        .unwrap();
    let message = broken(&reordered, None);
    assert!(message.contains("(audit chained#4) does not match its hash"), "{message}");

    // Cutting the tail (the last record and its entry) goes unnoticed without the anchor,
    // and is named with it.
    let cut = dir.path().join("cut");
    let raw = tampered_copy(&state, &cut);
    let (kind, reference): (String, String) = raw
        .query_row("SELECT kind, reference FROM chain ORDER BY n DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(kind, "event", "the revocation's controller event is the last record");
    raw.execute_batch("DROP TRIGGER events_no_delete").unwrap();
    raw.execute("DELETE FROM events WHERE id = ?1", [reference.parse::<i64>().unwrap()]).unwrap();
    raw.execute("DELETE FROM chain WHERE n = (SELECT MAX(n) FROM chain)", []).unwrap();
    drop(raw);
    let (code, _, _) = verify(&["--state-dir", cut.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let message = broken(&cut, Some(&anchor));
    assert!(message.contains("entries were removed from its end"), "{message}");
}

#[test]
fn verify_explains_a_state_dir_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let out = meridian(&["audit", "verify", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no meridian database at") && stderr(&out).contains("--state-dir"),
        "{}",
        stderr(&out)
    );
    let out = meridian(&["audit", "verify", "--state-dir", "x", "--anchor", "12"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is not N:HASH"), "{}", stderr(&out));
}
