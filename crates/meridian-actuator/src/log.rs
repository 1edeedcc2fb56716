//! The `log` actuator: a dry run. It changes nothing anywhere; it remembers what each target
//! would serve (so read-backs, drift checks and restart recovery behave as with a real
//! endpoint, within one process) and keeps a journal of what it would have sent.
//!
//! It does not print: the journal is handed to the caller ([`LogActuator::take_records`]),
//! which logs or shows it as it logs everything else. The journal keeps the newest
//! [`JOURNAL_CAPACITY`] records so a long dry run cannot grow without bound.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use meridian_core::ports::Target;

use crate::Applied;
use crate::error::ActuatorError;

/// Records kept until the caller takes them.
pub const JOURNAL_CAPACITY: usize = 4096;

/// One set the dry run would have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunRecord {
    pub target: Target,
    pub percent: u32,
    /// What the target served before, as far as this dry run knows.
    pub previous: Option<u32>,
    pub idempotency_key: String,
}

impl std::fmt::Display for DryRunRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous = self.previous.map_or_else(|| "unset".to_string(), |p| format!("{p}%"));
        write!(
            f,
            "dry run: would set {}/{}/{} from {previous} to {}% (idempotency key {})",
            self.target.plan, self.target.region, self.target.service, self.percent, self.idempotency_key
        )
    }
}

#[derive(Debug, Default)]
struct DryRunState {
    /// What each target would serve, and the key that last set it.
    traffic: HashMap<Target, (u32, String)>,
    journal: VecDeque<DryRunRecord>,
}

/// The dry-run actuator. Its futures are `Send` and never wait.
#[derive(Debug, Default)]
pub struct LogActuator {
    state: Mutex<DryRunState>,
}

impl LogActuator {
    pub fn new() -> Self {
        LogActuator::default()
    }

    /// Record that `target` would serve `percent`. A repeat of the last call for the target
    /// (same key, same percent) is a no-op, as the wire contract asks of real endpoints.
    pub async fn set_traffic(
        &self,
        target: &Target,
        percent: u32,
        idempotency_key: &str,
    ) -> Result<Applied, ActuatorError> {
        if percent > 100 {
            return Err(ActuatorError::InvalidPercent { percent });
        }
        let mut state = self.lock();
        let previous = state.traffic.get(target).cloned();
        if previous.as_ref().is_some_and(|(p, key)| *p == percent && key == idempotency_key) {
            return Ok(Applied { attempts: 0, dry_run: true });
        }
        state.traffic.insert(target.clone(), (percent, idempotency_key.to_string()));
        if state.journal.len() == JOURNAL_CAPACITY {
            state.journal.pop_front();
        }
        state.journal.push_back(DryRunRecord {
            target: target.clone(),
            percent,
            previous: previous.map(|(p, _)| p),
            idempotency_key: idempotency_key.to_string(),
        });
        Ok(Applied { attempts: 0, dry_run: true })
    }

    /// What `target` would serve, or `None` when this dry run never set it.
    pub async fn read_traffic(&self, target: &Target) -> Result<Option<u32>, ActuatorError> {
        Ok(self.lock().traffic.get(target).map(|(p, _)| *p))
    }

    /// The journal, oldest first, leaving it in place.
    pub fn records(&self) -> Vec<DryRunRecord> {
        self.lock().journal.iter().cloned().collect()
    }

    /// The journal, oldest first, emptying it: the caller logs these.
    pub fn take_records(&self) -> Vec<DryRunRecord> {
        self.lock().journal.drain(..).collect()
    }

    /// What every target this dry run has set would serve.
    pub fn traffic(&self) -> BTreeMap<(String, String, String), u32> {
        self.lock()
            .traffic
            .iter()
            .map(|(t, (p, _))| ((t.plan.clone(), t.region.clone(), t.service.clone()), *p))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, DryRunState> {
        // The state is a map and a queue updated in single statements: still consistent after
        // a panic elsewhere.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(region: &str) -> Target {
        Target { plan: "demo".into(), region: region.into(), service: "signin".into() }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn read_back_returns_what_was_set() {
        block_on(async {
            let a = LogActuator::new();
            assert_eq!(a.read_traffic(&target("jp")).await, Ok(None));
            a.set_traffic(&target("jp"), 10, "k1").await.unwrap();
            a.set_traffic(&target("jp"), 50, "k2").await.unwrap();
            assert_eq!(a.read_traffic(&target("jp")).await, Ok(Some(50)));
            assert_eq!(a.read_traffic(&target("kr")).await, Ok(None));
            let records = a.take_records();
            assert_eq!(records.len(), 2);
            assert_eq!(records[1].previous, Some(10));
            assert_eq!(
                records[1].to_string(),
                "dry run: would set demo/jp/signin from 10% to 50% (idempotency key k2)"
            );
            assert!(a.take_records().is_empty());
            assert_eq!(a.traffic().get(&("demo".into(), "jp".into(), "signin".into())), Some(&50));
        });
    }

    #[test]
    fn a_repeated_key_is_recorded_once() {
        block_on(async {
            let a = LogActuator::new();
            let applied = a.set_traffic(&target("jp"), 10, "k1").await.unwrap();
            assert!(applied.dry_run);
            a.set_traffic(&target("jp"), 10, "k1").await.unwrap();
            assert_eq!(a.records().len(), 1);
            // A new key is a new actuation, even at the same percent (a drift re-apply).
            a.set_traffic(&target("jp"), 10, "k2").await.unwrap();
            assert_eq!(a.records().len(), 2);
        });
    }

    #[test]
    fn out_of_range_percent_is_refused() {
        block_on(async {
            let a = LogActuator::new();
            assert_eq!(
                a.set_traffic(&target("jp"), 101, "k").await,
                Err(ActuatorError::InvalidPercent { percent: 101 })
            );
            assert!(a.records().is_empty());
        });
    }

    #[test]
    fn the_journal_is_bounded() {
        block_on(async {
            let a = LogActuator::new();
            for i in 0..(JOURNAL_CAPACITY + 10) {
                a.set_traffic(&target("jp"), (i % 101) as u32, &format!("k{i}")).await.unwrap();
            }
            let records = a.records();
            assert_eq!(records.len(), JOURNAL_CAPACITY);
            assert_eq!(records[0].idempotency_key, "k10");
        });
    }
}
