//! What keeps the controller from being ready, by cause: each problem is raised under a key
//! by whoever met it and cleared by whoever sees it resolved, so one cause clearing (a store
//! write that works again) never hides another (a task that stopped). Ready when none is left.
//!
//! Owns the set and its reading as a `Readiness`; must not decide what is a problem.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::control::Readiness;

/// Keys of the problems the runtime raises.
pub(super) mod key {
    pub const STARTING: &str = "starting";
    pub const SHUTTING_DOWN: &str = "shutting-down";
    /// A write to the state store failed; cleared by the next write that succeeds (a decision or an event).
    pub const STORE: &str = "store";
}

#[derive(Debug, Default)]
pub(super) struct Problems(Mutex<BTreeMap<String, String>>);

impl Problems {
    pub(super) fn starting() -> Self {
        let problems = Problems::default();
        problems.raise(key::STARTING, "resolving open intents");
        problems
    }

    pub(super) fn raise(&self, key: &str, message: impl Into<String>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.to_string(), message.into());
        }
    }

    pub(super) fn clear(&self, key: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(key);
        }
    }

    pub(super) fn readiness(&self) -> Readiness {
        match self.0.lock() {
            Ok(map) => Readiness { ready: map.is_empty(), reasons: map.values().cloned().collect() },
            Err(_) => Readiness { ready: false, reasons: vec!["readiness lock poisoned".into()] },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_clearing_never_hides_another() {
        let problems = Problems::starting();
        assert!(!problems.readiness().ready);
        problems.clear(key::STARTING);
        assert!(problems.readiness().ready);
        problems.raise(key::STORE, "state store: disk full");
        problems.raise("task:health poller", "health poller stopped");
        problems.clear(key::STORE);
        let r = problems.readiness();
        assert!(!r.ready);
        assert_eq!(r.reasons, vec!["health poller stopped".to_string()]);
    }
}
