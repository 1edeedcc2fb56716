//! The Prometheus provider: one instant query (`/api/v1/query`) per check per service per
//! evaluation, plus one for the check's traffic guard, each split by the plan's region label.
//!
//! Owns the HTTP API's rules: what a usable answer is (2xx, `status: success`, no
//! `warnings`, a `vector` result whose every series carries the region label) and how a
//! vector becomes one reading per region (one series: its value; none: no data; two or
//! more: ambiguous, an error). It never collapses a vector into one number and never picks
//! one of several series. Judging is `judge`'s job.
//!
//! Identical questions are asked once: the same rendered query to the same server for plans
//! with the same health interval, evaluated at the same `now` (the controller evaluates every
//! plan due at one tick with that tick's time), share one request and its answer. A query
//! common to many plans (an error rate by service) costs one request per tick, not one per plan.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt;
use futures_util::future::{Shared, join};
use meridian_core::plan::{CheckSource, Plan};
use meridian_core::ports::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::fetch::{self, FetchError};
use crate::judge::{Fleet, Judgement, Reading, judge};
use crate::{DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, EvalError, EvalRequest, Evaluation, HealthSource, template};

/// How the Prometheus provider reaches and trusts its server.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Server for checks that name no `url` of their own (the controller's `--prometheus`).
    pub url: Option<Url>,
    /// Time allowed for one query, body included. Default: 10 s.
    pub timeout: Duration,
    /// Oldest acceptable value timestamp, measured from the request's `now`. `None`: the
    /// plan's health interval, so that a value is never older than the evaluation before it.
    pub max_age: Option<Duration>,
    /// Largest response body read. Default: 4 MiB.
    pub max_body_bytes: usize,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig { url: None, timeout: DEFAULT_TIMEOUT, max_age: None, max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

impl PrometheusConfig {
    pub fn with_url(url: Url) -> Self {
        PrometheusConfig { url: Some(url), ..Default::default() }
    }
}

/// Why a query gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("check {check:?} names no prometheus url and no default server is configured")]
    NoUrl { check: String },
    #[error("invalid prometheus url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("prometheus query failed: {source}")]
    Fetch {
        #[source]
        source: FetchError,
    },
    #[error("prometheus at {url} rejected the query{}: {error_type}: {error}", status.map(|s| format!(" with {s}")).unwrap_or_default())]
    Api { url: String, status: Option<StatusCode>, error_type: String, error: String },
    #[error("prometheus at {url} answered with a body that is not its json api: {reason}")]
    NotJson { url: String, reason: String },
    #[error("prometheus answered status {status:?}, not \"success\"")]
    NotSuccess { status: String },
    #[error("prometheus answered with warnings, so the result may be partial: {}", warnings.join("; "))]
    Warnings { warnings: Vec<String> },
    #[error("prometheus answered success without a result")]
    MissingData,
    #[error("query returned a {result_type}, not an instant vector split by region")]
    NotVector { result_type: String },
    #[error("a series has no {label:?} label ({series}); aggregate with `by ({label})` so each region is one series")]
    MissingRegionLabel { label: String, series: String },
    #[error("malformed series {series}: {reason}")]
    Malformed { series: String, reason: String },
    #[error("{count} series for region {region:?} ({}); make the query return one series per region", series.join(", "))]
    Ambiguous { region: String, count: usize, series: Vec<String> },
    /// The failure of a query shared with identical ones ([`PrometheusSource`]): each asker
    /// gets it as if it had sent the query itself.
    #[error(transparent)]
    Shared(Arc<PrometheusError>),
}

impl PrometheusError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            PrometheusError::NoUrl { .. } => "no_url",
            PrometheusError::InvalidUrl { .. } => "invalid_url",
            PrometheusError::Fetch { source } => source.metric_label(),
            PrometheusError::Api { .. } => "api_error",
            PrometheusError::NotJson { .. } => "not_json",
            PrometheusError::NotSuccess { .. } => "not_success",
            PrometheusError::Warnings { .. } => "warnings",
            PrometheusError::MissingData => "missing_data",
            PrometheusError::NotVector { .. } => "not_vector",
            PrometheusError::MissingRegionLabel { .. } => "missing_region_label",
            PrometheusError::Malformed { .. } => "malformed",
            PrometheusError::Ambiguous { .. } => "ambiguous",
            PrometheusError::Shared(e) => e.metric_label(),
        }
    }
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// The value as Prometheus wrote it (`"0.01"`, `"NaN"`, `"+Inf"`).
    pub raw: String,
    /// The evaluation timestamp Prometheus attached to the value.
    pub at: DateTime<Utc>,
}

impl Series {
    fn describe(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", labels.join(", "))
    }
}

/// An instant vector grouped by the region label. Series of regions nobody asked about are
/// kept but never looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSplit {
    pub label: String,
    pub by_region: HashMap<String, Vec<Series>>,
    /// Series in the whole vector.
    pub total: usize,
}

impl RegionSplit {
    /// Group `series` by `label`. Every series must carry it: one without it stands for no
    /// region or for all of them, and either way the vector cannot be read per region.
    pub fn new(series: Vec<Series>, label: &str) -> Result<RegionSplit, PrometheusError> {
        let total = series.len();
        let mut by_region: HashMap<String, Vec<Series>> = HashMap::new();
        for s in series {
            let Some(region) = s.labels.get(label).cloned() else {
                return Err(PrometheusError::MissingRegionLabel { label: label.to_string(), series: s.describe() });
            };
            by_region.entry(region).or_default().push(s);
        }
        Ok(RegionSplit { label: label.to_string(), by_region, total })
    }

    /// The reading for one region, and the error behind it when it is a failure.
    pub fn reading(&self, region: &str) -> (Reading, Option<PrometheusError>) {
        let series = self.by_region.get(region).map(Vec::as_slice).unwrap_or_default();
        match series {
            [] if self.total == 0 => (Reading::Missing("query returned an empty vector".into()), None),
            [] => (
                Reading::Missing(format!("no series with {}={region:?} among {} series", self.label, self.total)),
                None,
            ),
            [one] => match parse_value(&one.raw) {
                Some(value) => (Reading::Value { value, at: one.at }, None),
                None => {
                    let error = PrometheusError::Malformed {
                        series: one.describe(),
                        reason: format!("value {:?} is not a number", one.raw),
                    };
                    (Reading::Failed(error.to_string()), Some(error))
                }
            },
            many => {
                let error = PrometheusError::Ambiguous {
                    region: region.to_string(),
                    count: many.len(),
                    series: many.iter().map(Series::describe).collect(),
                };
                (Reading::Failed(error.to_string()), Some(error))
            }
        }
    }
}

/// Prometheus writes `NaN`, `+Inf` and `-Inf`; Rust's parser reads those too.
fn parse_value(raw: &str) -> Option<f64> {
    raw.trim().parse::<f64>().ok()
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    // `infos` (Prometheus 2.50+) are notes about the query ("metric might not be a
    // counter"), not about the completeness of the data; they are not read.
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(serde_json::Value, serde_json::Value)>,
    #[serde(default)]
    histogram: Option<serde_json::Value>,
}

/// Read an API answer into the series of an instant vector: the one entry point for bodies
/// of `/api/v1/query` (public for the fuzz targets). `url` names the server in errors;
/// `status` is the HTTP status when it was not 2xx (Prometheus explains 4xx/5xx in the same
/// JSON shape).
pub fn parse_response(url: &str, status: Option<StatusCode>, body: &[u8]) -> Result<Vec<Series>, PrometheusError> {
    let response: ApiResponse = serde_json::from_slice(body).map_err(|e| PrometheusError::NotJson {
        url: url.to_string(),
        reason: format!("{e} (body: {})", fetch::excerpt(&String::from_utf8_lossy(body), 200)),
    })?;
    if response.status != "success" || status.is_some() {
        return Err(match (response.error_type, response.error) {
            (None, None) => PrometheusError::NotSuccess { status: response.status },
            (error_type, error) => PrometheusError::Api {
                url: url.to_string(),
                status,
                error_type: error_type.unwrap_or_else(|| "error".into()),
                error: error.unwrap_or_default(),
            },
        });
    }
    if !response.warnings.is_empty() {
        return Err(PrometheusError::Warnings { warnings: response.warnings });
    }
    let data = response.data.ok_or(PrometheusError::MissingData)?;
    if data.result_type != "vector" {
        return Err(PrometheusError::NotVector { result_type: data.result_type });
    }
    let raw: Vec<RawSample> = serde_json::from_value(data.result).map_err(|e| PrometheusError::Malformed {
        series: "(result)".into(),
        reason: format!("the vector does not have the api's shape: {e}"),
    })?;
    raw.into_iter().map(series_of).collect()
}

fn series_of(raw: RawSample) -> Result<Series, PrometheusError> {
    let labels = raw.metric;
    let malformed = |labels: &BTreeMap<String, String>, reason: &str| PrometheusError::Malformed {
        series: Series { labels: labels.clone(), raw: String::new(), at: DateTime::UNIX_EPOCH }.describe(),
        reason: reason.to_string(),
    };
    let Some((ts, value)) = raw.value else {
        let reason = if raw.histogram.is_some() {
            "a native histogram, not a number; query a quantile or a rate instead"
        } else {
            "no value"
        };
        return Err(malformed(&labels, reason));
    };
    let at = ts
        .as_f64()
        .filter(|t| t.is_finite())
        .and_then(|t| DateTime::from_timestamp_millis((t * 1000.0).round() as i64))
        .ok_or_else(|| malformed(&labels, "bad timestamp"))?;
    let raw = match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Series { labels, raw, at })
}

/// The Prometheus provider.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    client: reqwest::Client,
    config: PrometheusConfig,
    /// Answers shared between identical queries (clones of the source share them too).
    shared: Arc<SharedQueries>,
}

/// What makes two queries the same question: the query endpoint, the rendered PromQL, the
/// plan's health interval and the evaluation's `now`. The controller evaluates every plan due
/// at one tick with that tick's `now`, so one error-rate query shared by many plans is sent
/// once per tick; a caller with its own `now` for each evaluation shares nothing.
type QueryKey = (Url, String, Duration, DateTime<Utc>);

type SharedAnswer = Shared<BoxFuture<'static, Result<Arc<Vec<Series>>, Arc<PrometheusError>>>>;

/// Identical queries asked together are sent once: those asked while it is in flight wait
/// for its answer, those asked after it get the same answer, failures included.
#[derive(Default)]
struct SharedQueries {
    answers: Mutex<HashMap<QueryKey, SharedAnswer>>,
}

impl std::fmt::Debug for SharedQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.answers.lock().map_or(0, |a| a.len());
        f.debug_struct("SharedQueries").field("answers", &count).finish()
    }
}

impl PrometheusSource {
    pub fn new(config: PrometheusConfig) -> Result<Self, PrometheusError> {
        let client = fetch::client(config.timeout).map_err(|source| PrometheusError::Fetch { source })?;
        Ok(PrometheusSource { client, config, shared: Arc::default() })
    }

    /// Share a client (its pool) with other adapters; `config.timeout` still bounds each query.
    pub fn with_client(client: reqwest::Client, config: PrometheusConfig) -> Self {
        PrometheusSource { client, config, shared: Arc::default() }
    }

    /// [`Self::query_by_region`], sent once for identical questions (see [`QueryKey`]).
    async fn shared_query_by_region(
        &self,
        server: &Url,
        query: &str,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<RegionSplit, PrometheusError> {
        let interval = Duration::from_millis(plan.health.interval.as_millis());
        let key: QueryKey = (server.clone(), query.to_string(), interval, now);
        let answer = {
            let mut answers = self.shared.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Older ticks are done with: nothing asks about them again.
            answers.retain(|(_, _, every, at), _| *at + TimeDelta::from_std(*every).unwrap_or(TimeDelta::MAX) >= now);
            answers
                .entry(key)
                .or_insert_with(|| {
                    let (me, server, query) = (self.clone(), server.clone(), query.to_string());
                    async move { me.query(&server, &query).await.map(Arc::new).map_err(Arc::new) }.boxed().shared()
                })
                .clone()
        };
        match answer.await {
            Ok(series) => RegionSplit::new(series.as_ref().clone(), &plan.health.region_label),
            Err(e) => Err(PrometheusError::Shared(e)),
        }
    }

    pub fn config(&self) -> &PrometheusConfig {
        &self.config
    }

    /// The server for a check: its own `url` (checked by validation), else the configured
    /// default.
    pub fn server_for(&self, check: &str, url: Option<&Url>) -> Result<Url, PrometheusError> {
        match url {
            Some(u) => Ok(u.clone()),
            None => self.config.url.clone().ok_or_else(|| PrometheusError::NoUrl { check: check.to_string() }),
        }
    }

    /// Run one instant query and return its vector's series.
    pub async fn query(&self, server: &Url, query: &str) -> Result<Vec<Series>, PrometheusError> {
        let endpoint = api_endpoint(server)?;
        let shown = fetch::display_url(&endpoint);
        let request = self.client.post(endpoint.clone()).form(&[("query", query)]);
        match fetch::send(request, &endpoint, self.config.timeout, self.config.max_body_bytes).await {
            Ok(body) => parse_response(&shown, None, &body),
            Err(FetchError::Status { url, status, body }) => {
                match parse_response(&url, Some(status), body.as_bytes()) {
                    Err(e @ PrometheusError::Api { .. }) => Err(e),
                    _ => Err(PrometheusError::Fetch { source: FetchError::Status { url, status, body } }),
                }
            }
            Err(source) => Err(PrometheusError::Fetch { source }),
        }
    }

    /// Run one instant query and group its series by `label`.
    pub async fn query_by_region(
        &self,
        server: &Url,
        query: &str,
        label: &str,
    ) -> Result<RegionSplit, PrometheusError> {
        RegionSplit::new(self.query(server, query).await?, label)
    }

    fn max_age(&self, plan: &Plan) -> TimeDelta {
        match self.config.max_age {
            Some(d) => TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX),
            None => plan.health.interval.to_delta(),
        }
    }

    /// The guard's readings for `regions`, or `None` when the check has no guard. Used by
    /// the http provider too: a guard is always PromQL.
    pub(crate) async fn guard_readings(
        &self,
        plan: &Plan,
        check: usize,
        request: &EvalRequest,
        regions: &[String],
        errors: &mut Vec<EvalError>,
    ) -> Option<Vec<Reading>> {
        let c = &plan.health.checks[check];
        let query = c.min_samples_query.as_ref()?;
        let url = match &c.source {
            CheckSource::Prometheus { server, .. } => server.as_ref(),
            CheckSource::Http { .. } => None,
        };
        let split = match self.server_for(&c.name, url) {
            Ok(server) => {
                let query = template::promql(query, &query_vars(plan, request));
                self.shared_query_by_region(&server, &query, plan, request.now).await
            }
            Err(e) => Err(e),
        };
        Some(readings(&c.name, split, regions, errors))
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
        let CheckSource::Prometheus { query, server } = &c.source else {
            return unsupported(plan, check, request, regions);
        };
        let mut errors = Vec::new();
        let main = async {
            let server = self.server_for(&c.name, server.as_ref())?;
            let query = template::promql(query, &query_vars(plan, request));
            self.shared_query_by_region(&server, &query, plan, request.now).await
        };
        // A relative check reads its baseline regions from the same two answers: no extra query.
        let extra = if c.relative.is_some() { baseline_only(plan, request, regions) } else { Vec::new() };
        let all: Vec<String> = regions.iter().chain(&extra).cloned().collect();
        let mut guard_errors = Vec::new();
        let guard = self.guard_readings(plan, check, request, &all, &mut guard_errors);
        let (split, guard) = join(main, guard).await;
        let readings = readings(&c.name, split, &all, &mut errors);
        errors.extend(guard_errors);
        // A baseline region's unreadable series is not this evaluation's fault: its value
        // just does not count.
        errors.retain(|e| !matches!(e, EvalError::Prometheus { region: Some(r), .. } if extra.contains(r)));
        let fleet = fleet_values(plan, check, request, &all, &readings, guard.as_deref(), self.max_age(plan));
        let fleet: Vec<(&str, f64)> = fleet.iter().map(|(r, v)| (r.as_str(), *v)).collect();
        let samples = judge_regions(
            plan,
            check,
            request,
            regions,
            &readings[..regions.len()],
            guard.as_deref().map(|g| &g[..regions.len()]),
            self.max_age(plan),
            &fleet,
        );
        Evaluation { samples, errors: errors.into_iter().map(Into::into).collect() }
    }
}

impl HealthSource for PrometheusSource {
    fn evaluate<'a>(&'a self, plan: &'a Plan, request: &'a EvalRequest) -> BoxFuture<'a, Evaluation> {
        Box::pin(crate::evaluate_checks(plan, request, move |c, regions| async move {
            self.evaluate_check(plan, c, request, &regions).await
        }))
    }
}

/// `{base}/api/v1/query`, keeping any path prefix of the base (`http://h/prometheus`).
fn api_endpoint(server: &Url) -> Result<Url, PrometheusError> {
    let mut endpoint = server.clone();
    let path = format!("{}/api/v1/query", server.path().trim_end_matches('/'));
    endpoint.set_path(&path);
    endpoint.set_query(None);
    if endpoint.cannot_be_a_base() {
        return Err(PrometheusError::InvalidUrl { url: server.to_string(), reason: "not a base url".into() });
    }
    Ok(endpoint)
}

pub(crate) fn query_vars<'a>(plan: &'a Plan, request: &'a EvalRequest) -> [(&'static str, &'a str); 3] {
    [("service", request.service.as_str()), ("plan", plan.name.as_str()), ("wave", request.wave.as_str())]
}

/// One reading per region from a query's outcome; errors are recorded once per query, or
/// once per region when only that region's series are at fault.
fn readings(
    check: &str,
    split: Result<RegionSplit, PrometheusError>,
    regions: &[String],
    errors: &mut Vec<EvalError>,
) -> Vec<Reading> {
    match split {
        Ok(split) => regions
            .iter()
            .map(|r| {
                let (reading, error) = split.reading(r);
                if let Some(source) = error {
                    errors.push(EvalError::Prometheus { check: check.to_string(), region: Some(r.clone()), source });
                }
                reading
            })
            .collect(),
        Err(source) => {
            let detail = crate::error_chain(&source);
            errors.push(EvalError::Prometheus { check: check.to_string(), region: None, source });
            regions.iter().map(|_| Reading::Failed(detail.clone())).collect()
        }
    }
}

/// The request's baseline regions that are not among `regions` (judged ones are read
/// anyway), known to the plan, each once.
fn baseline_only(plan: &Plan, request: &EvalRequest, regions: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &request.baseline {
        if !regions.contains(r) && !out.contains(r) && plan.region_index(r).is_some() {
            out.push(r.clone());
        }
    }
    out
}

/// The usable values of the request's baseline regions among `regions` (aligned with
/// `readings` and `guard`), in the request's baseline order, each judged by its own
/// region's traffic guard.
fn fleet_values(
    plan: &Plan,
    check: usize,
    request: &EvalRequest,
    regions: &[String],
    readings: &[Reading],
    guard: Option<&[Reading]>,
    max_age: TimeDelta,
) -> Vec<(String, f64)> {
    if plan.health.checks[check].relative.is_none() {
        return Vec::new();
    }
    request
        .baseline
        .iter()
        .filter_map(|b| {
            let i = regions.iter().position(|r| r == b)?;
            let j = judgement(plan, check, request, b, max_age);
            crate::judge::usable_value(&j, &readings[i], guard.map(|g| &g[i])).map(|v| (b.clone(), v))
        })
        .collect()
}

/// How region `region` is judged for `check`: its own limits, no fleet.
fn judgement<'a>(
    plan: &'a Plan,
    check: usize,
    request: &'a EvalRequest,
    region: &'a str,
    max_age: TimeDelta,
) -> Judgement<'a> {
    let c = &plan.health.checks[check];
    let limits =
        plan.region_index(region).and_then(|r| plan.regions[r].settings.checks.get(check)).unwrap_or(&c.limits);
    Judgement { region, service: &request.service, check: &c.name, limits, now: request.now, max_age, fleet: None }
}

/// Judge each region against its own limits and, for a relative check, against the
/// baseline values in `fleet` (the usable values of the request's baseline regions; empty
/// for a source that has none, so a relative check has no verdict there).
#[allow(clippy::too_many_arguments, reason = "one call per source, each argument a distinct input of the judgement")]
pub(crate) fn judge_regions(
    plan: &Plan,
    check: usize,
    request: &EvalRequest,
    regions: &[String],
    readings: &[Reading],
    guard: Option<&[Reading]>,
    max_age: TimeDelta,
    fleet: &[(&str, f64)],
) -> Vec<meridian_core::HealthSample> {
    let c = &plan.health.checks[check];
    regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let fleet = c.relative.as_ref().map(|relative| Fleet { relative, values: fleet });
            let j = Judgement { fleet, ..judgement(plan, check, request, region, max_age) };
            judge(&j, &readings[i], guard.map(|g| &g[i]))
        })
        .collect()
}

/// `Error` samples for a check this source cannot read.
pub(crate) fn unsupported(plan: &Plan, check: usize, request: &EvalRequest, regions: &[String]) -> Evaluation {
    let c = &plan.health.checks[check];
    let error = EvalError::UnsupportedCheck { check: c.name.clone(), kind: c.source.kind() };
    let samples = regions
        .iter()
        .map(|r| crate::judge::error_sample(r, &request.service, &c.name, error.to_string(), request.now))
        .collect();
    Evaluation { samples, errors: vec![error.into()] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<Series>, PrometheusError> {
        parse_response("http://p", None, body.as_bytes())
    }

    fn vector(samples: &str) -> String {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{samples}]}}}}"#)
    }

    fn split(body: &str) -> RegionSplit {
        RegionSplit::new(parse(body).unwrap(), "region").unwrap()
    }

    #[test]
    fn splits_a_vector_by_region_and_keeps_the_timestamp() {
        let s = split(&vector(
            r#"{"metric":{"region":"jp"},"value":[1780315200.25,"0.5"]},
               {"metric":{"region":"kr"},"value":[1780315200,"NaN"]},
               {"metric":{"region":"hk"},"value":[1780315200,"+Inf"]}"#,
        ));
        let (jp, _) = s.reading("jp");
        assert_eq!(jp, Reading::Value { value: 0.5, at: DateTime::from_timestamp_millis(1_780_315_200_250).unwrap() });
        assert!(matches!(s.reading("kr").0, Reading::Value { value, .. } if value.is_nan()));
        assert!(matches!(s.reading("hk").0, Reading::Value { value, .. } if value == f64::INFINITY));
        assert!(matches!(s.reading("us").0, Reading::Missing(m) if m.contains("no series with region=\"us\"")));
    }

    #[test]
    fn two_series_for_a_region_is_an_error_for_that_region_only() {
        let s = split(&vector(
            r#"{"metric":{"region":"jp","pod":"a"},"value":[1,"0"]},
               {"metric":{"region":"jp","pod":"b"},"value":[1,"1"]},
               {"metric":{"region":"kr"},"value":[1,"0"]}"#,
        ));
        let (jp, error) = s.reading("jp");
        assert!(matches!(jp, Reading::Failed(m) if m.starts_with("2 series for region \"jp\"")));
        assert_eq!(error.unwrap().metric_label(), "ambiguous");
        assert!(matches!(s.reading("kr").0, Reading::Value { .. }));
    }

    #[test]
    fn empty_vector_and_bad_values_never_read_as_values() {
        assert!(matches!(split(&vector("")).reading("jp").0, Reading::Missing(m) if m.contains("empty vector")));
        let s = split(&vector(r#"{"metric":{"region":"jp"},"value":[1,"oops"]}"#));
        assert!(matches!(s.reading("jp"), (Reading::Failed(_), Some(PrometheusError::Malformed { .. }))));
    }

    #[test]
    fn rejects_every_answer_that_is_not_a_clean_vector() {
        let cases = [
            (r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#, "api_error"),
            (r#"{"status":"weird"}"#, "not_success"),
            (r#"{"status":"success","warnings":["partial"],"data":{"resultType":"vector","result":[]}}"#, "warnings"),
            (r#"{"status":"success"}"#, "missing_data"),
            (r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#, "not_vector"),
            (r#"{"status":"success","data":{"resultType":"vector","result":{}}}"#, "malformed"),
            (r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#, "malformed"),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["x","1"]}]}}"#,
                "malformed",
            ),
            ("<html>login</html>", "not_json"),
        ];
        for (body, label) in cases {
            let e = parse(body).err().unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(e.metric_label(), label, "{body}: {e}");
        }
        let e = RegionSplit::new(parse(&vector(r#"{"metric":{},"value":[1,"0.1"]}"#)).unwrap(), "region").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a series has no \"region\" label ({}); aggregate with `by (region)` so each region is one series"
        );
    }

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        let u = |s: &str| api_endpoint(&Url::parse(s).unwrap()).unwrap().to_string();
        assert_eq!(u("http://127.0.0.1:9090"), "http://127.0.0.1:9090/api/v1/query");
        assert_eq!(u("http://127.0.0.1:9090/prom/"), "http://127.0.0.1:9090/prom/api/v1/query");
    }
}
