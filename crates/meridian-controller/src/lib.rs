//! Meridian's standalone controller: the thin, effectful shell around the pure engine.

pub mod config;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod nohealth;
pub mod runtime;

pub use meridian_core::error_chain;
pub use meridian_core::ports::{control, store};
pub use meridian_core::snapshot;

/// Write one line to stderr for long-running code. Never `eprintln!` there: it panics when
/// stderr is a closed pipe (a log collector gone), and a log line must not take a task down.
pub fn log_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
