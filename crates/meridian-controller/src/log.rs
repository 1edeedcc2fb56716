//! The controller's log: one line on stderr per thing it does or meets (every transition,
//! actuation failure, health error, approval change, configuration applied or rejected,
//! store failure), as text for people or JSON lines for a log pipeline, at the level the
//! operator chooses (`meridian run --log-format json --log-level warn`).
//!
//! ```text
//! text: 2026-06-01T09:00:00Z INFO  transition restore us-east/signin: pending -> progressing (0% -> 1%): started
//! json: {"time":"2026-06-01T09:00:00Z","level":"info","kind":"transition","plan":"restore",...,"message":"..."}
//! ```
//!
//! One process-wide setting ([`init`], first call wins; until then warnings and errors only,
//! as text). Lines never panic: stderr may be a closed pipe (a log collector gone).

use std::io::Write as _;
use std::sync::OnceLock;

use chrono::{SecondsFormat, Utc};

/// How much is logged: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The controller cannot do its job (store writes fail, a task died).
    Error,
    /// Something needs a look (an actuation or health query failed, an edit was rejected).
    Warn,
    /// What it does: transitions, approvals, configuration changes.
    Info,
    /// More detail.
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TIME LEVEL message`, for people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

static SETTING: OnceLock<(Format, Level)> = OnceLock::new();

/// Set the process's log format and level (the first call wins).
pub fn init(format: Format, level: Level) {
    let _ = SETTING.set((format, level));
}

fn setting() -> (Format, Level) {
    SETTING.get().copied().unwrap_or((Format::Text, Level::Warn))
}

/// Whether lines of `level` are written.
pub fn enabled(level: Level) -> bool {
    level <= setting().1
}

/// Write one line: `kind` names what it is about (`transition`, `actuation`, `health`,
/// `config`, `approval-granted`, `store`, ...), `fields` are its subject (`plan`, `region`,
/// ...) for JSON, `message` says it in words.
pub fn line(level: Level, kind: &str, fields: &[(&str, &str)], message: &str) {
    let (format, max) = setting();
    if level > max {
        return;
    }
    let text = render(format, &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true), level, kind, fields, message);
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn render(format: Format, time: &str, level: Level, kind: &str, fields: &[(&str, &str)], message: &str) -> String {
    match format {
        Format::Text => format!("{time} {:<5} {message}", level.name().to_ascii_uppercase()),
        Format::Json => {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), time.into());
            object.insert("level".into(), level.name().into());
            object.insert("kind".into(), kind.into());
            for (key, value) in fields {
                object.insert((*key).to_string(), (*value).into());
            }
            object.insert("message".into(), message.into());
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// What a command says about itself (started, stopping, why it exits): as today's
/// `WHO: message` lines in text, as a `lifecycle` object in JSON, so that a JSON log holds
/// nothing but JSON. Always written, whatever the level.
pub fn say(level: Level, who: &str, message: &str) {
    match setting().0 {
        Format::Text => {
            let _ = writeln!(std::io::stderr(), "{who}: {message}");
        }
        Format::Json => {
            let text = render(
                Format::Json,
                &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                level,
                "lifecycle",
                &[],
                message,
            );
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }
}

/// An audit record as a line: the plan, its subject and what changed, in the words of
/// `meridian status` and the dashboard.
pub fn transition(record: &meridian_core::AuditRecord) {
    if !enabled(Level::Info) {
        return;
    }
    let seq = record.seq.to_string();
    let mut fields: Vec<(&str, &str)> = vec![("plan", &record.plan), ("seq", &seq)];
    for (key, value) in [("wave", &record.wave), ("region", &record.region), ("service", &record.service)] {
        if let Some(v) = value {
            fields.push((key, v));
        }
    }
    line(Level::Info, "transition", &fields, &format!("{} {}", record.plan, record.line()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_time_level_message_and_json_is_one_object() {
        let fields = [("plan", "restore"), ("region", "jp")];
        assert_eq!(
            render(Format::Text, "2026-06-01T09:00:00Z", Level::Warn, "health", &fields, "health: no data"),
            "2026-06-01T09:00:00Z WARN  health: no data"
        );
        let json = render(Format::Json, "2026-06-01T09:00:00Z", Level::Info, "transition", &fields, "a \"b\"\nc");
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["kind"], "transition");
        assert_eq!(v["region"], "jp");
        assert_eq!(v["message"], "a \"b\"\nc");
    }

    #[test]
    fn each_level_includes_the_ones_before_it() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info && Level::Info < Level::Debug);
    }
}
