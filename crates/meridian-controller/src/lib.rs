//! Meridian's standalone controller: the thin, effectful shell around the pure engine.

pub mod config;
pub mod control;
pub mod memory;
pub mod metrics;
pub mod nohealth;
pub mod runtime;
pub mod snapshot;
pub mod sqlite;
pub mod store;

/// Write one line to stderr for long-running code. Never `eprintln!` there: it panics when
/// stderr is a closed pipe (a log collector gone), and a log line must not take a task down.
pub fn log_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

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
