//! The sinks file (`meridian run --notifications FILE`):
//!
//! ```yaml
//! sinks:
//!   - name: oncall-slack
//!     format: slack                 # or json (the default)
//!     urlEnv: ONCALL_SLACK_WEBHOOK  # or urlFile: /etc/meridian/slack-url, or url: https://...
//!     topics: [failures, approval-needed]   # default: every topic
//!     plans: [network-restoration]          # default: every plan
//!   - name: ticketing
//!     url: https://tickets.internal/hooks/meridian
//!     bearerTokenFile: /etc/meridian/ticket-token
//!     retries: 8        # after the first attempt (default 5)
//!     backoff: 2s       # the first wait, doubling up to a minute (default 1s)
//!     timeout: 5s       # per attempt (default 10s)
//!     queue: 500        # notices waiting at most (default 1000); more are dropped and counted
//! ```
//!
//! Every problem is reported at once, each at its line and column with the fix. Secrets (a
//! URL, a token) are read from the file, the named file or the environment, and never appear
//! in an error, a log line or `Debug`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use meridian_core::diagnostics::{Diagnostic, Severity, did_you_mean};
use meridian_core::duration::Span;
use meridian_core::notify::{Notice, Topic};
use meridian_core::source::{Pos, document_locations};
use serde::Deserialize;

use crate::payload::Format;

/// A value that is never shown (a webhook URL carries its credential in its path).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One sink, resolved and checked.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub format: Format,
    pub url: Secret,
    pub bearer_token: Option<Secret>,
    /// What it is told; never empty.
    pub topics: BTreeSet<Topic>,
    /// Only notices of these plans (empty: every plan; notices about no plan always pass).
    pub plans: Vec<String>,
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    pub backoff: Duration,
    pub queue: usize,
}

impl SinkSpec {
    /// Whether this sink is told `notice`.
    pub fn wants(&self, notice: &Notice) -> bool {
        self.topics.contains(&notice.topic)
            && (self.plans.is_empty() || notice.plan.as_ref().is_none_or(|p| self.plans.contains(p)))
    }
}

/// Why the sinks file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SinksError {
    #[error("cannot read notifications file {path}: {message}")]
    Read { path: String, message: String },
    #[error("notifications file {} is invalid:\n{}", .0.first().map_or("", |d| d.file.as_str()),
        .0.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    sinks: Vec<RawSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSink {
    name: String,
    format: Option<String>,
    url: Option<String>,
    url_file: Option<String>,
    url_env: Option<String>,
    bearer_token_file: Option<String>,
    topics: Option<Vec<String>>,
    #[serde(default)]
    plans: Vec<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    backoff: Option<String>,
    queue: Option<usize>,
}

const MAX_RETRIES: u32 = 20;
const MAX_QUEUE: usize = 100_000;

/// Read and check the sinks file at `path`, resolving secrets from files and the environment.
pub fn load(path: &Path) -> Result<Vec<SinkSpec>, SinksError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| SinksError::Read { path: name.clone(), message: e.to_string() })?;
    parse(&name, &text, |var| std::env::var(var).ok(), |file| std::fs::read_to_string(file).map_err(|e| e.to_string()))
}

/// Check the sinks file `text` (named `file` in errors); `env` and `read` resolve `urlEnv`,
/// `urlFile` and `bearerTokenFile`.
pub fn parse(
    file: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> Result<String, String>,
) -> Result<Vec<SinkSpec>, SinksError> {
    let locations = document_locations(text).into_iter().next().unwrap_or_default();
    let at = |path: &str, message: String, hint: &str| {
        let Pos { line, column } = locations.value(path);
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line,
            column,
            path: path.to_string(),
            code: "notifications",
            message,
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        }
    };
    let raw: RawFile = match serde_yaml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            return Err(SinksError::Invalid(vec![Diagnostic {
                severity: Severity::Error,
                file: file.to_string(),
                line,
                column,
                path: String::new(),
                code: "notifications",
                message,
                hint: Some(
                    "the file is `sinks:`, a list of {name, url | urlFile | urlEnv, format, topics, plans, \
                     bearerTokenFile, timeout, retries, backoff, queue}"
                        .into(),
                ),
            }]));
        }
    };
    let mut problems = Vec::new();
    if raw.sinks.is_empty() {
        problems.push(at("sinks", "no sinks".into(), "add a sink, or start without --notifications"));
    }
    let mut names = HashSet::new();
    let mut specs = Vec::new();
    for (i, sink) in raw.sinks.into_iter().enumerate() {
        let p = |field: &str| format!("sinks[{i}].{field}");
        let before = problems.len();
        if sink.name.trim().is_empty() {
            problems.push(at(&p("name"), "a sink needs a name".into(), "name it, e.g. oncall-slack"));
        } else if !names.insert(sink.name.clone()) {
            problems.push(at(
                &p("name"),
                format!("sink {:?} is named twice", sink.name),
                "give each sink its own name",
            ));
        }
        let format = match sink.format.as_deref() {
            None => Format::Json,
            Some(word) => Format::parse(word).unwrap_or_else(|| {
                problems.push(at(&p("format"), format!("unknown format {word:?}"), "format is json or slack"));
                Format::Json
            }),
        };
        let url = resolve_url(&sink, &p, &at, &env, &read, &mut problems);
        let bearer_token = sink.bearer_token_file.as_deref().and_then(|f| match read(f) {
            Ok(token) if !token.trim().is_empty() => Some(Secret(token.trim().to_string())),
            Ok(_) => {
                problems.push(at(&p("bearerTokenFile"), format!("token file {f} is empty"), "write the token in it"));
                None
            }
            Err(e) => {
                problems.push(at(&p("bearerTokenFile"), format!("cannot read token file {f}: {e}"), "fix the path"));
                None
            }
        });
        let topics: BTreeSet<Topic> = match &sink.topics {
            None => Topic::ALL.into_iter().collect(),
            Some(words) => {
                if words.is_empty() {
                    problems.push(at(
                        &p("topics"),
                        "no topics".into(),
                        "list some, or leave topics out for every topic",
                    ));
                }
                words
                    .iter()
                    .enumerate()
                    .filter_map(|(j, w)| {
                        Topic::parse(w).or_else(|| {
                            let all = Topic::ALL.map(Topic::as_str);
                            let hint = did_you_mean(w, all).unwrap_or_else(|| format!("topics are {}", all.join(", ")));
                            problems.push(at(
                                &format!("sinks[{i}].topics[{j}]"),
                                format!("unknown topic {w:?}"),
                                &hint,
                            ));
                            None
                        })
                    })
                    .collect()
            }
        };
        let mut span = |field: &str, value: &Option<String>, default: Duration| match value {
            None => default,
            Some(text) => match text.parse::<Span>() {
                Ok(s) if !s.is_zero() => Duration::from_millis(s.as_millis()),
                Ok(_) => {
                    problems.push(at(&p(field), format!("{field} must be more than 0"), "e.g. 10s"));
                    default
                }
                Err(e) => {
                    problems.push(at(&p(field), e.to_string(), "write a duration such as 500ms, 10s or 1m"));
                    default
                }
            },
        };
        let timeout = span("timeout", &sink.timeout, Duration::from_secs(10));
        let backoff = span("backoff", &sink.backoff, Duration::from_secs(1));
        let retries = sink.retries.unwrap_or(5);
        if retries > MAX_RETRIES {
            problems.push(at(&p("retries"), format!("retries {retries} is more than {MAX_RETRIES}"), "at most 20"));
        }
        let queue = sink.queue.unwrap_or(1000);
        if queue == 0 || queue > MAX_QUEUE {
            problems.push(at(&p("queue"), format!("queue {queue} is out of range"), "between 1 and 100000"));
        }
        if problems.len() == before
            && let Some(url) = url
        {
            specs.push(SinkSpec {
                name: sink.name,
                format,
                url,
                bearer_token,
                topics,
                plans: sink.plans,
                timeout,
                retries,
                backoff,
                queue,
            });
        }
    }
    if problems.is_empty() { Ok(specs) } else { Err(SinksError::Invalid(problems)) }
}

/// The sink's URL from exactly one of `url`, `urlFile` and `urlEnv`, checked for an http(s)
/// scheme and a host. Errors name where it came from, never what it is.
fn resolve_url(
    sink: &RawSink,
    p: &dyn Fn(&str) -> String,
    at: &dyn Fn(&str, String, &str) -> Diagnostic,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&str) -> Result<String, String>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Secret> {
    let given: Vec<&str> = [("url", &sink.url), ("urlFile", &sink.url_file), ("urlEnv", &sink.url_env)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|_| k))
        .collect();
    let field = match given.as_slice() {
        [] => {
            problems.push(at(
                &p("name"),
                format!("sink {:?} has no url", sink.name),
                "give one of url, urlFile (a file holding the URL) or urlEnv (an environment variable holding it)",
            ));
            return None;
        }
        [one] => *one,
        many => {
            problems.push(at(
                &p(many[1]),
                format!("sink {:?} gives {}", sink.name, many.join(" and ")),
                "give only one of url, urlFile and urlEnv",
            ));
            return None;
        }
    };
    let (text, from) = match field {
        "url" => (sink.url.clone(), "url".to_string()),
        "urlFile" => {
            let f = sink.url_file.as_deref().unwrap_or_default();
            match read(f) {
                Ok(t) => (Some(t.trim().to_string()), format!("the URL in {f}")),
                Err(e) => {
                    problems.push(at(&p(field), format!("cannot read URL file {f}: {e}"), "fix the path"));
                    return None;
                }
            }
        }
        _ => {
            let var = sink.url_env.as_deref().unwrap_or_default();
            match env(var).filter(|v| !v.trim().is_empty()) {
                Some(v) => (Some(v.trim().to_string()), format!("the URL in ${var}")),
                None => {
                    problems.push(at(
                        &p(field),
                        format!("environment variable {var} is not set"),
                        "set it to the webhook URL before starting, or use urlFile",
                    ));
                    return None;
                }
            }
        }
    };
    let text = text.unwrap_or_default();
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(Secret(text)),
        Ok(_) => {
            problems.push(at(&p(field), format!("{from} is not an http or https URL"), "write https://HOST/PATH"));
            None
        }
        Err(e) => {
            problems.push(at(&p(field), format!("{from} is not a URL ({e})"), "write https://HOST/PATH"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<SinkSpec>, Vec<String>> {
        parse(
            "n.yaml",
            text,
            |var| (var == "HOOK").then(|| "https://hooks.example.test/T000/B000/secretpart".to_string()),
            |f| if f == "/token" { Ok("s3cret\n".into()) } else { Err("No such file or directory".into()) },
        )
        .map_err(|e| match e {
            SinksError::Invalid(ds) => ds.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        })
    }

    #[test]
    fn a_sink_gets_its_defaults_and_its_secrets_stay_hidden() {
        let specs =
            check("sinks:\n  - name: oncall\n    format: slack\n    urlEnv: HOOK\n    bearerTokenFile: /token\n")
                .unwrap();
        let s = &specs[0];
        assert_eq!((s.name.as_str(), s.format, s.retries, s.queue), ("oncall", Format::Slack, 5, 1000));
        assert_eq!((s.timeout, s.backoff), (Duration::from_secs(10), Duration::from_secs(1)));
        assert_eq!(s.topics.len(), Topic::ALL.len());
        assert_eq!(s.bearer_token.as_ref().map(Secret::expose), Some("s3cret"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("secretpart") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn every_problem_is_reported_at_once_at_its_place_without_the_secret() {
        let text = "sinks:\n  - name: a\n    url: ftp://x/y\n    topics: [failure, completions]\n    retries: 99\n  \
                    - name: a\n    urlEnv: NOPE\n    timeout: soon\n  - name: c\n    url: https://h/x\n    urlFile: /f\n  \
                    - name: d\n";
        let problems = check(text).unwrap_err();
        let expected = [
            "n.yaml:3:10: error: url is not an http or https URL",
            "n.yaml:4:14: error: unknown topic \"failure\"",
            "n.yaml:5:14: error: retries 99 is more than 20",
            "n.yaml:6:11: error: sink \"a\" is named twice",
            "n.yaml:7:13: error: environment variable NOPE is not set",
            "n.yaml:8:14: error: duration \"soon\" does not start with a number",
            "n.yaml:11:14: error: sink \"c\" gives url and urlFile",
            "n.yaml:12:11: error: sink \"d\" has no url",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (p, e) in problems.iter().zip(expected) {
            assert!(p.starts_with(e), "{p}\n  expected {e}");
        }
        assert!(problems[1].contains("did you mean \"failures\""), "{}", problems[1]);
    }

    #[test]
    fn a_url_read_from_a_file_that_is_not_a_url_is_refused_without_echoing_it() {
        let problems = parse("n.yaml", "sinks:\n  - name: a\n    urlFile: /token\n", |_| None, |_| Ok("s3cret".into()))
            .map_err(|e| e.to_string())
            .unwrap_err();
        assert!(problems.contains("the URL in /token is not a URL"), "{problems}");
        assert!(!problems.contains("s3cret"), "{problems}");
    }

    #[test]
    fn a_typo_in_a_field_is_located() {
        let problems = check("sinks:\n  - name: a\n    urll: https://h/\n").unwrap_err();
        assert!(problems[0].starts_with("n.yaml:3:5: error: sinks[0]: unknown field `urll`"), "{problems:?}");
    }

    #[test]
    fn filters_by_topic_and_plan() {
        let specs =
            check("sinks:\n  - name: a\n    urlEnv: HOOK\n    topics: [failures]\n    plans: [restore]\n").unwrap();
        let notice = |topic: &str, plan: Option<&str>| -> Notice {
            serde_json::from_value(serde_json::json!({
                "topic": topic, "urgency": "info", "at": "2026-06-01T09:00:00Z", "plan": plan, "summary": "s"
            }))
            .unwrap()
        };
        assert!(specs[0].wants(&notice("failures", Some("restore"))));
        assert!(!specs[0].wants(&notice("failures", Some("other"))));
        assert!(!specs[0].wants(&notice("completions", Some("restore"))));
    }
}
