//! One module per subcommand. Each returns the process exit code; `main` only dispatches.

pub mod approval;
pub mod approve;
pub mod audit;
pub mod bench;
pub mod completion;
pub mod control;
pub mod crds;
pub mod demo;
pub mod diff;
pub mod info;
pub mod kube;
pub mod plan;
pub mod plan_live;
pub mod report;
pub mod run;
pub mod schema;
pub mod status;
pub mod validate;
pub mod watch;

use chrono::{DateTime, Utc};

/// Parse an RFC 3339 time given on the command line.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("invalid time {text:?} ({e}); use RFC 3339, e.g. 2026-06-01T09:00:00Z"))
}

/// Output format shared by the commands that have one (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// The same data as JSON, for scripts (`jq`).
    Json,
    /// The same data as YAML.
    Yaml,
    /// Text with more columns where a table has them (`status`, `approvals`); else as text.
    Wide,
}

impl Format {
    /// Whether this is a text format (`text` or `wide`) rather than data.
    pub fn is_text(self) -> bool {
        matches!(self, Format::Text | Format::Wide)
    }
}
