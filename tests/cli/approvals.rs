//! Approvals through the API of a real `meridian run`: a 201 is durable and visible to every
//! later request, and permissions are checked before anything is looked up.

use crate::support::{repo_root, spawn_run};

const TOKENS: &str = "tokens:
  - {name: liaison, token: liaison-token-for-the-tests-0001, role: approver, flags: [ops-go]}
  - {name: ops, token: ops-approver-token-for-the-tests-02, role: approver, flags: [other-flag]}
  - {name: oncall, token: oncall-viewer-token-for-the-tests3, role: viewer}
";

fn approval(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name},
        "spec": {"flag": "ops-go", "reference": "ticket 42"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_right_after_a_grant_finds_it_and_a_forbidden_one_is_403_not_404() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let config = repo_root().join("config/demo.yaml");
    let run = spawn_run(&config, &dir.path().join("state"), &["--tokens", tokens.to_str().unwrap()])
        .expect("meridian run starts");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("{}/api/v1/{path}", run.base);

    for k in 0..50 {
        let name = format!("go-{k}");
        let granted = client
            .post(url("approvals"))
            .bearer_auth("liaison-token-for-the-tests-0001")
            .json(&approval(&name))
            .send()
            .await
            .unwrap();
        assert_eq!(granted.status(), 201, "grant {name}: {}", granted.text().await.unwrap());
        // Listed at once, and revocable at once.
        let listed: serde_json::Value = client
            .get(url("approvals"))
            .bearer_auth("oncall-viewer-token-for-the-tests3")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            listed["approvals"].as_array().unwrap().iter().any(|a| a["name"] == name.as_str()),
            "{name} not listed right after its 201"
        );
        if k == 0 {
            // A forbidden revoke of a fresh approval is refused for what it is (403), by a
            // token that may revoke other flags and by one that may revoke nothing.
            for token in ["ops-approver-token-for-the-tests-02", "oncall-viewer-token-for-the-tests3"] {
                let refused = client.delete(url(&format!("approvals/{name}"))).bearer_auth(token).send().await.unwrap();
                assert_eq!(refused.status(), 403, "{token}: {}", refused.text().await.unwrap());
            }
        }
        let revoked = client
            .delete(url(&format!("approvals/{name}")))
            .bearer_auth("liaison-token-for-the-tests-0001")
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200, "revoke {name} right after its grant: {}", revoked.text().await.unwrap());
    }
    // A token that may revoke nothing learns nothing: 403 for an unknown name too.
    let unknown = client
        .delete(url("approvals/no-such-approval"))
        .bearer_auth("oncall-viewer-token-for-the-tests3")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 403);
    let unknown = client
        .delete(url("approvals/no-such-approval"))
        .bearer_auth("liaison-token-for-the-tests-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
