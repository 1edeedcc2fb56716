//! One module per subcommand. Each returns the process exit code; `main` only dispatches.

pub mod approval;
pub mod approve;
pub mod audit;
pub mod bench;
pub mod completion;
pub mod control;
pub mod crds;
pub mod demo;
pub mod info;
pub mod kube;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod status;
pub mod validate;

use chrono::{DateTime, Utc};

/// Parse an RFC 3339 time given on the command line.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("invalid time {text:?} ({e}); use RFC 3339, e.g. 2026-06-01T09:00:00Z"))
}

/// Output format shared by the commands that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}
