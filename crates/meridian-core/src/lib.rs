//! Meridian's core: the rollout model, its validation, and the pure decision engine.
//!
//! ```text
//!  YAML ──> source (documents + locations) ──> manifest (raw serde types)
//!                                                  │ validate (every error, located)
//!                                                  v
//!                        approvals ──────────>   plan (resolved, typed, with approval policies)
//!    (signing: canonical content, Ed25519 verify;  │
//!     approval::Judged counts them per policy)     │
//!     observations (approvals, health samples,     v
//!     read-backs, commands, the other plans'
//!     progress: dependency) + state + now ──> engine::decide ──> state, actions, audit, wake_at
//!                                                  │
//!                                          simulate (the engine on a virtual clock: `meridian plan`)
//!
//!   state + edited plan ──> edit (the one rule for a plan edited in flight; its summary)
//!   plan + state ──> outcome (done? clean? which regions failed, who accepted them)
//!   outcome + state ──> wait (has a wait for complete, approval-needed, halted, failed, paused ended?)
//!   plan + state + approvals ──> expiry (approvals in use that expire soon)
//!   stored records ──> chain (each linked to the one before by SHA-256; verify names the first break)
//!   audit records + approval history ──> report (the evidence report: proof that no traffic
//!                                          was raised without its approvals)
//! ```
//!
//! This crate does no I/O beyond what its callers hand it, starts no threads and reads no
//! clock: time is always an argument. Adapters (stores, health sources, actuators, the API,
//! the Kubernetes mode) live in other crates and call in.

pub mod approval;
pub mod audit;
pub mod blockers;
pub mod chain;
pub mod command;
pub mod dependency;
pub mod diagnostics;
pub mod duration;
pub mod edit;
pub mod endpoint;
pub mod engine;
pub mod expiry;
pub mod freeze;
pub mod gaps;
pub mod health;
pub mod manifest;
pub mod metric_selector;
pub mod notify;
pub mod outcome;
pub mod plan;
pub mod ports;
pub mod relative;
pub mod report;
pub mod schema;
pub mod signing;
pub mod simulate;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod validate;
pub mod wait;
pub mod watch;
pub mod window;

pub use approval::ApprovalRecord;
pub use audit::{AuditEvent, AuditRecord, Cause, CheckEvidence};
pub use command::{Command, CommandKind};
pub use diagnostics::{Diagnostic, Severity};
pub use duration::Span;
pub use engine::{Action, Confirmation, Decision, Observations, TrafficReading, UnitRef, decide};
pub use health::{HealthSample, HealthVerdict};
pub use outcome::Outcome;
pub use plan::Plan;
pub use state::{PlanPhase, PlanState, UnitPhase, WaitReason, WavePhase};

/// An error and its sources on one line: `failed to open x: permission denied`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
