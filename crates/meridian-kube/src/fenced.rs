//! The actuator of a leader: every traffic change is sent only while the [`Fence`] says this
//! replica may act, checked at the moment of sending, so a leader whose lease lapsed (a
//! stalled process, a lost connection) sends nothing more even before it notices. Read-backs
//! pass through (they change nothing).
//!
//! Owns that one check; must not decide anything.

use std::sync::Arc;

use meridian_core::plan::Plan;
use meridian_core::ports::{ActuationError, Actuator, BoxFuture, Target};

use crate::store::Fence;

/// See the module doc.
pub struct FencedActuator {
    pub inner: Arc<dyn Actuator>,
    pub fence: Arc<dyn Fence>,
}

impl Actuator for FencedActuator {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
        percent: u32,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        if self.fence.term().is_none() {
            return Box::pin(async {
                Err(ActuationError {
                    message: "not sent: this replica no longer leads (its lease lapsed)".into(),
                    retryable: true,
                    label: "not_leader",
                })
            });
        }
        self.inner.set_traffic(plan, target, percent, idempotency_key)
    }

    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        self.inner.read_traffic(plan, target)
    }
}

/// A leader's fence: open while the lease is held in the term it was won in (a lease lost and
/// won again is a new term, and this leader's writes stay refused).
pub struct LeaseFence {
    pub leadership: crate::lease::Leadership,
    pub term: u64,
}

impl Fence for LeaseFence {
    fn term(&self) -> Option<u64> {
        self.leadership.acting().map(|t| t.transitions).filter(|t| *t == self.term)
    }
}
