//! Notification sinks: the controller's notices (`meridian_core::notify`: failures,
//! approvals needed, approval changes, completions, rejected edits) delivered to webhooks.
//!
//! ```text
//!  runtime ──notify(notices)──> Webhooks (Notifier) ── filter per sink (topics, plans)
//!                                   │ try_send: a full queue drops and counts, never waits
//!                                   v
//!                 one bounded queue and one worker per sink ──POST──> receiver
//!                                   │ retries 5xx, 408, 429 and network errors with
//!                                   │ backoff (doubling, at most a minute; Retry-After honoured)
//!                                   v
//!                 meridian_notifications_total{sink, result = sent | failed | dropped}
//! ```
//!
//! One module per job: `sinks` reads the sinks file (every problem located, secrets resolved
//! from files or the environment and never echoed), `payload` renders a notice for a sink's
//! format (generic JSON or Slack-compatible), `webhook` queues and delivers. A sink's URL and
//! token are secrets: they are never logged, never in an error, never in `Debug`.

mod payload;
mod sinks;
mod webhook;

pub use payload::{Format, render};
pub use sinks::{Secret, SinkSpec, SinksError, load, parse};
pub use webhook::Webhooks;

use std::sync::OnceLock;

static LOG_SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Where this crate's warnings go (the controller's log); until set, stderr.
pub fn set_log_sink(sink: fn(&str)) {
    let _ = LOG_SINK.set(sink);
}

/// One warning line that never panics (stderr may be a closed pipe).
fn warn(line: &str) {
    use std::io::Write as _;
    match LOG_SINK.get() {
        Some(sink) => sink(line),
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}
