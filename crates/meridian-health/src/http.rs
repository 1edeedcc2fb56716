//! The `http` provider, for setups without Prometheus: one GET per region per check, read
//! as a number at a JSON pointer (`pointer`) or as one sample of a Prometheus text-format
//! body (`metric`).
//!
//! Owns reading those bodies with the same fail-closed rules as the Prometheus provider: an
//! HTTP error, a timeout, a body that is not what the reader expects, a selector that
//! matches several samples are errors; an absent or null value is no data. A check's
//! traffic guard is a PromQL query, so it runs on the Prometheus source given with
//! [`HttpSource::with_guard`]; without one, a guarded check is an error, never unguarded.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::{join, join_all};
use meridian_core::metric_selector::MetricSelector;
use meridian_core::plan::{BodyReader, CheckSource, Plan};
use meridian_core::ports::BoxFuture;
use reqwest::Url;

use crate::fetch::{self, FetchError};
use crate::judge::Reading;
use crate::prometheus::{PrometheusSource, judge_regions, unsupported};
use crate::textformat::{self, TextFormatError};
use crate::{DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, EvalError, EvalRequest, Evaluation, HealthSource, template};

/// How the http provider reads its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSourceConfig {
    /// Time allowed for one GET, body included. Default: 10 s.
    pub timeout: Duration,
    /// Oldest acceptable timestamp of a text-format sample that carries one. `None`: the
    /// plan's health interval. Values without a timestamp are taken as of the request.
    pub max_age: Option<Duration>,
    /// Largest response body read. Default: 4 MiB.
    pub max_body_bytes: usize,
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        HttpSourceConfig { timeout: DEFAULT_TIMEOUT, max_age: None, max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

/// Why an http check gave no usable value.
#[derive(Debug, thiserror::Error)]
pub enum HttpCheckError {
    #[error("failed to build the http client")]
    Client {
        #[source]
        source: FetchError,
    },
    #[error("invalid check url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("health endpoint read failed: {source}")]
    Fetch {
        #[source]
        source: FetchError,
    },
    #[error("body from {url} is not json: {reason}")]
    NotJson { url: String, reason: String },
    #[error("value at {pointer} is {found}, not a number")]
    NotANumber { pointer: String, found: String },
    #[error("body from {url} is not valid text format: {source}")]
    TextFormat {
        url: String,
        #[source]
        source: TextFormatError,
    },
    #[error("{count} samples match {selector}; add labels to the metric selector so one matches")]
    Ambiguous { selector: String, count: usize },
    #[error("the traffic guard (minSamples) is a PromQL query and this http source has no prometheus to run it")]
    NoGuardSource,
}

impl HttpCheckError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            HttpCheckError::Client { .. } => "client",
            HttpCheckError::InvalidUrl { .. } => "invalid_url",
            HttpCheckError::Fetch { source } => source.metric_label(),
            HttpCheckError::NotJson { .. } => "not_json",
            HttpCheckError::NotANumber { .. } => "not_a_number",
            HttpCheckError::TextFormat { source, .. } => source.metric_label(),
            HttpCheckError::Ambiguous { .. } => "ambiguous",
            HttpCheckError::NoGuardSource => "no_guard_source",
        }
    }
}

/// How to find the number in one region's body: a check's [`BodyReader`] with its
/// placeholders filled for that region.
#[derive(Debug, Clone, PartialEq)]
pub enum RegionReader {
    /// A JSON pointer (RFC 6901) into a JSON body.
    Pointer(String),
    /// One sample of a text-format body.
    Metric(MetricSelector),
}

/// The http provider.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    config: HttpSourceConfig,
    guard: Option<PrometheusSource>,
}

impl HttpSource {
    pub fn new(config: HttpSourceConfig) -> Result<Self, HttpCheckError> {
        let client = fetch::client(config.timeout).map_err(|source| HttpCheckError::Client { source })?;
        Ok(HttpSource { client, config, guard: None })
    }

    /// Share a client (its pool) with other adapters; `config.timeout` still bounds each GET.
    pub fn with_client(client: reqwest::Client, config: HttpSourceConfig) -> Self {
        HttpSource { client, config, guard: None }
    }

    /// Run checks' traffic guards (`minSamples`, PromQL) on this Prometheus source.
    pub fn with_guard(mut self, prometheus: PrometheusSource) -> Self {
        self.guard = Some(prometheus);
        self
    }

    pub fn config(&self) -> &HttpSourceConfig {
        &self.config
    }

    /// GET `url` and read one value from its body. `now` stamps values without a timestamp.
    pub async fn read(&self, url: &Url, reader: &RegionReader, now: DateTime<Utc>) -> Result<Reading, HttpCheckError> {
        let accept = match reader {
            RegionReader::Pointer(_) => "application/json",
            RegionReader::Metric(_) => "text/plain;version=0.0.4",
        };
        let request = self.client.get(url.clone()).header(reqwest::header::ACCEPT, accept);
        let body = fetch::send(request, url, self.config.timeout, self.config.max_body_bytes)
            .await
            .map_err(|source| HttpCheckError::Fetch { source })?;
        let shown = fetch::display_url(url);
        match reader {
            RegionReader::Pointer(pointer) => read_pointer(&shown, &body, pointer, now),
            RegionReader::Metric(selector) => read_metric(&shown, &body, selector, now),
        }
    }

    fn max_age(&self, plan: &Plan) -> TimeDelta {
        match self.config.max_age {
            Some(d) => TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX),
            None => plan.health.interval.to_delta(),
        }
    }

    /// Evaluate one check for `regions` (all known to the plan).
    pub async fn evaluate_check(
        &self,
        plan: &Plan,
        check: usize,
        request: &EvalRequest,
        regions: &[String],
    ) -> Evaluation {
        let c = &plan.health.checks[check];
        let CheckSource::Http { url, reader } = &c.source else {
            return unsupported(plan, check, request, regions);
        };
        let reads = regions.iter().map(|region| async move {
            let vars = [
                ("region", region.as_str()),
                ("service", request.service.as_str()),
                ("plan", plan.name.as_str()),
                ("wave", request.wave.as_str()),
            ];
            let reader = match reader {
                BodyReader::Pointer(p) => RegionReader::Pointer(p.clone()),
                BodyReader::Metric(selector) => RegionReader::Metric(
                    selector
                        .render(&vars)
                        .map_err(|e| HttpCheckError::TextFormat { url: url.to_string(), source: e.into() })?,
                ),
            };
            // Names that do not fit in a URL are escaped; the template itself was checked.
            let target = template::url(url, &vars)
                .map_err(|e| HttpCheckError::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
            self.read(&target, &reader, request.now).await
        });
        let mut guard_errors = Vec::new();
        let guard = async {
            c.min_samples_query.as_ref()?;
            Some(match &self.guard {
                Some(prometheus) => prometheus
                    .guard_readings(plan, check, request, regions, &mut guard_errors)
                    .await
                    .unwrap_or_default(),
                None => {
                    let detail = HttpCheckError::NoGuardSource.to_string();
                    regions.iter().map(|_| Reading::Failed(detail.clone())).collect()
                }
            })
        };
        let (results, guard) = join(join_all(reads), guard).await;
        let mut errors = Vec::new();
        let readings: Vec<Reading> = results
            .into_iter()
            .zip(regions)
            .map(|(result, region)| match result {
                Ok(reading) => reading,
                Err(source) => {
                    let detail = crate::error_chain(&source);
                    errors.push(EvalError::Http { check: c.name.clone(), region: region.clone(), source });
                    Reading::Failed(detail)
                }
            })
            .collect();
        if guard.is_some() && self.guard.is_none() {
            for region in regions {
                let source = HttpCheckError::NoGuardSource;
                errors.push(EvalError::Http { check: c.name.clone(), region: region.clone(), source });
            }
        }
        errors.extend(guard_errors);
        // One GET per region: there is no fleet in the answer to compare with (validation
        // rejects `relative` on http checks; a relative check here has no verdict).
        let samples =
            judge_regions(plan, check, request, regions, &readings, guard.as_deref(), self.max_age(plan), &[]);
        Evaluation { samples, errors: errors.into_iter().map(Into::into).collect() }
    }
}

impl HealthSource for HttpSource {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(crate::evaluate_checks(plan, request, move |c, regions| async move {
            self.evaluate_check(plan, c, request, &regions).await
        }))
    }
}

fn read_pointer(url: &str, body: &[u8], pointer: &str, now: DateTime<Utc>) -> Result<Reading, HttpCheckError> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| HttpCheckError::NotJson {
        url: url.to_string(),
        reason: format!("{e} (body: {})", fetch::excerpt(&String::from_utf8_lossy(body), 200)),
    })?;
    let not_a_number = |found: String| HttpCheckError::NotANumber { pointer: pointer.to_string(), found };
    let value = match json.pointer(pointer) {
        None => return Ok(Reading::Missing(format!("no value at {pointer} in the body from {url}"))),
        Some(serde_json::Value::Null) => return Ok(Reading::Missing(format!("value at {pointer} is null"))),
        Some(serde_json::Value::Number(n)) => n.as_f64().ok_or_else(|| not_a_number(n.to_string()))?,
        // Some endpoints write numbers as strings, as Prometheus does ("NaN", "+Inf").
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().map_err(|_| not_a_number(format!("{s:?}")))?,
        Some(other) => return Err(not_a_number(fetch::excerpt(&other.to_string(), 80))),
    };
    Ok(Reading::Value { value, at: now })
}

fn read_metric(
    url: &str,
    body: &[u8],
    selector: &MetricSelector,
    now: DateTime<Utc>,
) -> Result<Reading, HttpCheckError> {
    let text = String::from_utf8_lossy(body);
    let samples =
        textformat::parse(&text).map_err(|source| HttpCheckError::TextFormat { url: url.to_string(), source })?;
    let matching: Vec<_> = samples.iter().filter(|s| s.matches(selector)).collect();
    match matching.as_slice() {
        [] => Ok(Reading::Missing(format!("no sample of {selector} in the body from {url}"))),
        [one] => {
            let at = match one.timestamp_ms {
                Some(ms) => DateTime::from_timestamp_millis(ms).ok_or_else(|| HttpCheckError::TextFormat {
                    url: url.to_string(),
                    source: TextFormatError::Line { line: 0, reason: format!("timestamp {ms} is out of range") },
                })?,
                None => now,
            };
            Ok(Reading::Value { value: one.value, at })
        }
        many => Err(HttpCheckError::Ambiguous { selector: selector.to_string(), count: many.len() }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn reads_json_pointers() {
        let body = br#"{"errorRate":0.01,"s":"NaN","n":null,"o":{},"b":true}"#;
        let read = |p: &str| read_pointer("u", body, p, now());
        assert_eq!(read("/errorRate").unwrap(), Reading::Value { value: 0.01, at: now() });
        assert!(matches!(read("/s").unwrap(), Reading::Value { value, .. } if value.is_nan()));
        assert!(matches!(read("/n").unwrap(), Reading::Missing(_)));
        assert!(matches!(read("/absent").unwrap(), Reading::Missing(m) if m.contains("no value at /absent")));
        assert_eq!(read("/o").unwrap_err().metric_label(), "not_a_number");
        assert_eq!(read("/b").unwrap_err().to_string(), "value at /b is true, not a number");
        assert_eq!(read_pointer("u", b"<html>", "/x", now()).unwrap_err().metric_label(), "not_json");
    }

    #[test]
    fn reads_one_text_format_sample() {
        let body = b"x{service=\"a\"} 0.5 1780315200000\nx{service=\"b\"} 2\n";
        let sel = |s: &str| MetricSelector::parse(s).unwrap();
        assert_eq!(
            read_metric("u", body, &sel("x{service=\"a\"}"), now()).unwrap(),
            Reading::Value { value: 0.5, at: DateTime::from_timestamp_millis(1_780_315_200_000).unwrap() }
        );
        assert_eq!(
            read_metric("u", body, &sel("x{service=\"b\"}"), now()).unwrap(),
            Reading::Value { value: 2.0, at: now() }
        );
        assert!(matches!(read_metric("u", body, &sel("y"), now()).unwrap(), Reading::Missing(_)));
        let e = read_metric("u", body, &sel("x"), now()).unwrap_err();
        assert_eq!(e.to_string(), "2 samples match x; add labels to the metric selector so one matches");
        assert_eq!(read_metric("u", b"x 1 2 3", &sel("x"), now()).unwrap_err().metric_label(), "text_format");
    }
}
