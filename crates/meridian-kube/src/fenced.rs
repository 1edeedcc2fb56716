//! The actuator of a leader: every traffic change is sent only while the [`Fence`] says this
//! replica may act, checked before the request starts and again every time it makes progress,
//! so a leader whose lease lapsed (a stalled or frozen process, a lost connection) sends
//! nothing more even before it notices: a request under way when it was frozen is dropped on
//! resume before another byte is written. What no client-side check can stop is a request the
//! kernel had already been handed; a target that must refuse even that checks the term in the
//! idempotency key (`…/t{TERM}r…`), the fencing token. Read-backs pass through (they change
//! nothing).
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
            return Box::pin(async { Err(not_leader()) });
        }
        Box::pin(WhileFenced {
            inner: self.inner.set_traffic(plan, target, percent, idempotency_key),
            fence: &*self.fence,
        })
    }

    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        self.inner.read_traffic(plan, target)
    }
}

/// A request that is dropped, unfinished, at its first poll after the fence closed.
struct WhileFenced<'a, F> {
    inner: F,
    fence: &'a dyn Fence,
}

impl<F> std::future::Future for WhileFenced<'_, F>
where
    F: std::future::Future<Output = Result<(), ActuationError>> + Unpin,
{
    type Output = Result<(), ActuationError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        if self.fence.term().is_none() {
            return std::task::Poll::Ready(Err(not_leader()));
        }
        std::pin::Pin::new(&mut self.inner).poll(cx)
    }
}

fn not_leader() -> ActuationError {
    ActuationError {
        message: "not sent: this replica no longer leads (its lease lapsed)".into(),
        retryable: true,
        label: "not_leader",
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
