//! The API's tokens file (`Auth::from_yaml`) and the `Authorization` header matched against
//! it. Input: the header on the first line, the file after it.
//!
//! Never panics; a refused file names at least one problem; every plain `token` of an
//! accepted file authenticates as its own entry, with its role, and nothing authenticates
//! without one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_api::auth::{Action, Auth, AuthError};
use meridian_core::CommandKind;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (header, yaml) = text.split_once('\n').unwrap_or(("", &text));
    let auth = match Auth::from_yaml("tokens.yaml", yaml) {
        Ok(auth) => auth,
        Err(AuthError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty() && problems.iter().all(|p| !p.trim().is_empty()));
            return;
        }
        Err(e) => panic!("from_yaml reads no file, yet: {e}"),
    };
    assert!(!auth.is_disabled());
    if let Ok(identity) = auth.authenticate(Some(header)) {
        assert!(identity.role.is_some(), "{identity:?}");
        for action in [Action::Read, Action::Command(CommandKind::Abort), Action::GrantAny, Action::Grant { flag: "f" }]
        {
            let _ = identity.allows(action);
        }
    }
    // The accepted file, read again as plain YAML: each plain token must let its holder in.
    let Ok(raw) = serde_yaml::from_str::<serde_yaml::Value>(yaml) else { panic!("accepted, yet not YAML") };
    for entry in raw.get("tokens").and_then(|t| t.as_sequence()).into_iter().flatten() {
        // Plain keys and values only: a tagged one (`! role: viewer`) is the same to serde, not
        // to `Value::get`.
        let text = |key: &str| entry.get(key).and_then(|v| v.as_str());
        let (Some(token), Some(name)) = (text("token"), text("name")) else { continue };
        let identity = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .unwrap_or_else(|e| panic!("plain token {token:?} of {name:?} does not authenticate: {e:?}"));
        assert_eq!(identity.name, name);
        if let Some(role) = text("role") {
            assert_eq!(identity.role.map(|r| r.to_string()).as_deref(), Some(role));
        }
    }
});
