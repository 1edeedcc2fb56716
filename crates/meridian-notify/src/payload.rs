//! A notice as the body a sink's receiver expects.

use meridian_core::notify::{Notice, Urgency};
use serde::Serialize;

/// The body's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The notice as one JSON object: `source`, `topic`, `urgency`, `at`, the subject
    /// (`plan`, `wave`, `region`, `approval`, `flag`) and `summary`.
    Json,
    /// `{"text": "..."}`, which Slack's incoming webhooks (and Mattermost's, and others that
    /// copy them) post to a channel.
    Slack,
}

impl Format {
    pub fn parse(word: &str) -> Option<Format> {
        match word {
            "json" => Some(Format::Json),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    source: &'static str,
    #[serde(flatten)]
    notice: &'a Notice,
}

/// The body to POST for `notice` (JSON in both formats).
pub fn render(format: Format, notice: &Notice) -> serde_json::Value {
    match format {
        Format::Json => serde_json::to_value(Envelope { source: "meridian", notice }).unwrap_or_default(),
        Format::Slack => {
            let mark = match notice.urgency {
                Urgency::Critical => ":red_circle:",
                Urgency::Warning => ":warning:",
                Urgency::Info => ":white_check_mark:",
            };
            serde_json::json!({ "text": format!("{mark} *meridian* ({}): {}", notice.topic, escape(&notice.summary)) })
        }
    }
}

/// Slack's three control characters in text, escaped as its docs ask.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use meridian_core::notify::Topic;

    fn notice() -> Notice {
        serde_json::from_value(serde_json::json!({
            "topic": "failures", "urgency": "critical", "at": "2026-06-01T09:00:00Z",
            "plan": "restore", "region": "jp", "wave": "asia",
            "summary": "restore: region jp (wave asia) rolled back: signin failed: check errors unhealthy (0.31 > max 0.05)"
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_carries_the_notice_and_its_source() {
        let body = render(Format::Json, &notice());
        assert_eq!(body["source"], "meridian");
        assert_eq!(body["topic"], "failures");
        assert_eq!(body["urgency"], "critical");
        assert_eq!(body["region"], "jp");
        assert_eq!(body["at"], "2026-06-01T09:00:00Z");
        let back: Notice = serde_json::from_value(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.topic, Topic::Failures);
        assert_eq!(
            back.at,
            DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z").map(|t| t.to_utc()).ok().unwrap_or_default()
        );
    }

    #[test]
    fn slack_is_one_escaped_text_line_marked_by_urgency() {
        let body = render(Format::Slack, &notice());
        assert_eq!(
            body,
            serde_json::json!({"text": ":red_circle: *meridian* (failures): restore: region jp (wave asia) rolled back: \
                signin failed: check errors unhealthy (0.31 &gt; max 0.05)"})
        );
    }
}
