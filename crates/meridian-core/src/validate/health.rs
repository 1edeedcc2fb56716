//! Health: the plan's `health` section, each check's limits, and its source resolved into a
//! typed [`CheckSource`] (Prometheus server URL, HTTP check URL template, JSON pointer or
//! metric selector), so the health adapters read no plan text.
//!
//! Owns the checks as the plan writes them. Region overrides of their limits are
//! `regions`'; the traffic-guard risk is `risks`'. It must not reach out to any server.

use super::PlanChecker;
use crate::manifest::{CheckSpec, HealthSpec, HttpCheckSpec};
use crate::metric_selector::SelectorTemplate;
use crate::plan::{BodyReader, Check, CheckLimits, CheckSource, DEFAULT_HEALTH_INTERVAL, DEFAULT_REGION_LABEL, Health};

impl<'d> PlanChecker<'d, '_> {
    /// The plan's health section, and for each check that resolved the index it is written
    /// at under `spec.health.checks` (a check with an error in its source is left out).
    pub(super) fn health(&mut self, raw: Option<&HealthSpec>) -> (Health, Vec<usize>) {
        let Some(raw) = raw else {
            let health = Health {
                interval: DEFAULT_HEALTH_INTERVAL,
                region_label: DEFAULT_REGION_LABEL.into(),
                checks: Vec::new(),
            };
            return (health, Vec::new());
        };
        let interval = self.span("spec.health.interval", raw.interval.as_deref(), DEFAULT_HEALTH_INTERVAL);
        let region_label = raw.region_label.clone().unwrap_or_else(|| DEFAULT_REGION_LABEL.into());
        if region_label.trim().is_empty() {
            self.error(
                "spec.health.regionLabel",
                "empty-region-label",
                "regionLabel is empty".into(),
                Some("name the label that carries the region in query results, or leave it out for \"region\"".into()),
            );
        }
        self.names("check", "spec.health.checks", raw.checks.iter().map(|c| c.name.as_str()));
        let (index, checks) =
            raw.checks.iter().enumerate().filter_map(|(i, c)| self.check_spec(i, c).map(|c| (i, c))).unzip();
        (Health { interval, region_label, checks }, index)
    }

    /// An `http` check source: its URL, and how the value is found in the body.
    pub(super) fn http_check_source(&mut self, base: &str, check: &str, h: &HttpCheckSpec) -> Option<CheckSource> {
        let before = self.errors;
        let path = format!("{base}.http.url");
        let url = if self.template(&path, "url", &h.url, &CHECK_URL_VARS) {
            self.url_template(&path, "check url", &h.url, CHECK_URL_EXAMPLE)
        } else {
            None
        };
        let reader = match (&h.pointer, &h.metric) {
            (Some(pointer), None) => {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    self.error(
                        &format!("{base}.http.pointer"),
                        "invalid-pointer",
                        format!("pointer {pointer:?} of http check {check:?} is not a JSON pointer"),
                        Some(format!("a JSON pointer starts with /; did you mean \"/{pointer}\"?")),
                    );
                }
                Some(BodyReader::Pointer(pointer.clone()))
            }
            (None, Some(metric)) => {
                let path = format!("{base}.http.metric");
                if self.template(&path, "metric", metric, &CHECK_URL_VARS) {
                    match SelectorTemplate::parse(metric) {
                        Ok(selector) => Some(BodyReader::Metric(selector)),
                        Err(e) => {
                            self.error(
                                &path,
                                "invalid-selector",
                                format!(
                                    "metric {metric:?} of http check {check:?} is not a metric selector: {}",
                                    e.reason
                                ),
                                Some(
                                    "write a metric name with optional labels in quotes, e.g. \
                                     http_error_ratio{service=\"{{service}}\"}"
                                        .into(),
                                ),
                            );
                            None
                        }
                    }
                } else {
                    None
                }
            }
            (pointer, metric) => {
                if let Some(metric) = metric {
                    self.template(&format!("{base}.http.metric"), "metric", metric, &CHECK_URL_VARS);
                }
                let message = if pointer.is_some() {
                    format!("http check {check:?} has both pointer and metric")
                } else {
                    format!("http check {check:?} has neither pointer nor metric")
                };
                self.error(
                    &format!("{base}.http"),
                    "http-check-reader",
                    message,
                    Some("use pointer for a JSON body (e.g. /errorRate), metric for a Prometheus text body".into()),
                );
                None
            }
        };
        let (url, reader) = (url?, reader?);
        (self.errors == before).then_some(CheckSource::Http { url, reader })
    }

    /// One check, resolved; `None` when its source has an error (its other fields are still
    /// checked).
    pub(super) fn check_spec(&mut self, i: usize, c: &CheckSpec) -> Option<Check> {
        let base = format!("spec.health.checks[{i}]");
        let source = match (&c.prometheus, &c.http) {
            (Some(p), None) => {
                let query_ok = self.template(&format!("{base}.prometheus.query"), "query", &p.query, &QUERY_VARS);
                let server = match &p.url {
                    None => Some(None),
                    Some(url) => self
                        .base_url(&format!("{base}.prometheus.url"), "prometheus url", url, PROMETHEUS_URL_EXAMPLE)
                        .map(Some),
                };
                server.filter(|_| query_ok).map(|server| CheckSource::Prometheus { query: p.query.clone(), server })
            }
            (None, Some(h)) => self.http_check_source(&base, &c.name, h),
            (Some(_), Some(_)) => {
                self.error(
                    &base,
                    "check-source",
                    format!("check {:?} has both prometheus and http", c.name),
                    Some("keep one source per check, or split it into two checks".into()),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    &base,
                    "check-source",
                    format!("check {:?} has no source", c.name),
                    Some("add prometheus: {query: ...} or http: {url: ...}".into()),
                );
                return None;
            }
        };
        if c.min.is_none() && c.max.is_none() {
            self.error(
                &base,
                "check-without-threshold",
                format!("check {:?} has neither min nor max", c.name),
                Some("add max (e.g. for an error rate) or min (e.g. for a success rate)".into()),
            );
        }
        if let (Some(min), Some(max)) = (c.min, c.max)
            && min > max
        {
            self.error(
                &format!("{base}.min"),
                "min-above-max",
                format!("check {:?} has min {min} above max {max}; no value could be healthy", c.name),
                Some("swap them, or fix one".into()),
            );
        }
        for (field, v) in [("min", c.min), ("max", c.max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                self.error(
                    &format!("{base}.{field}"),
                    "non-finite-threshold",
                    format!("{field} of check {:?} must be a finite number", c.name),
                    Some(format!("leave {field} out for no bound on that side")),
                );
            }
        }
        if let Some(n) = c.failure_limit
            && n <= 0
        {
            self.error(
                &format!("{base}.failureLimit"),
                "invalid-failure-limit",
                format!("failureLimit of check {:?} is {n}; it must be at least 1", c.name),
                Some("1 fails the region on the first failing evaluation".into()),
            );
        }
        if let Some(m) = &c.min_samples {
            self.template(&format!("{base}.minSamples.query"), "query", &m.query, &QUERY_VARS);
            if !(m.min.is_finite() && m.min >= 0.0) {
                self.error(
                    &format!("{base}.minSamples.min"),
                    "invalid-min-samples",
                    format!("minSamples.min of check {:?} must be a number of at least 0", c.name),
                    Some("set the least request count that makes a verdict conclusive, e.g. 100".into()),
                );
            }
        }
        Some(Check {
            name: c.name.clone(),
            source: source?,
            limits: written_limits(c),
            min_samples_query: c.min_samples.as_ref().map(|m| m.query.clone()),
        })
    }
}

/// A check's plan-level limits as written; values out of range (reported where the check is
/// checked) read as their defaults.
pub(super) fn written_limits(c: &CheckSpec) -> CheckLimits {
    CheckLimits {
        min: c.min,
        max: c.max,
        failure_limit: match c.failure_limit {
            Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
            _ => 1,
        },
        no_data: c.no_data.unwrap_or_default(),
        min_samples: c.min_samples.as_ref().map(|m| m.min),
    }
}

/// Placeholders a health query may use: it covers every region at once.
pub(super) const QUERY_VARS: [&str; 3] = ["service", "plan", "wave"];
/// Placeholders an HTTP health check URL may use: it is read per region.
pub(super) const CHECK_URL_VARS: [&str; 4] = ["region", "service", "plan", "wave"];

pub(super) const CHECK_URL_EXAMPLE: &str = "https://metrics.{{region}}.example.net/health/{{service}}";
pub(super) const PROMETHEUS_URL_EXAMPLE: &str = "http://prometheus.example.net:9090";

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::super::test_support::errors;
    use super::*;
    use crate::endpoint::{UrlTemplate, parse_http_url};

    #[test]
    fn check_sources_resolve_to_typed_values() {
        let yaml = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: signin}]
  regions: [{name: jp}]
  waves: [{name: all, regions: [jp]}]
  health:
    checks:
      - {name: a, prometheus: {query: 'x{service="{{service}}"}'}, max: 1, minSamples: {query: r, min: 1}}
      - {name: b, prometheus: {query: y, url: 'http://prom:9090/p'}, max: 1, minSamples: {query: r, min: 1}}
      - {name: c, http: {url: 'https://s.{{region}}.example.net/', pointer: /e}, max: 1}
      - {name: d, http: {url: 'https://s.example.net/m', metric: 'm{service="{{service}}"}'}, max: 1}
"#;
        let bundle = load(&[("p.yaml".into(), yaml.into())], None);
        assert_eq!(errors(&bundle), vec![]);
        let sources: Vec<CheckSource> =
            bundle.plan("p").unwrap().health.checks.iter().map(|c| c.source.clone()).collect();
        assert_eq!(
            sources,
            vec![
                CheckSource::Prometheus { query: r#"x{service="{{service}}"}"#.into(), server: None },
                CheckSource::Prometheus {
                    query: "y".into(),
                    server: Some(parse_http_url("http://prom:9090/p").unwrap())
                },
                CheckSource::Http {
                    url: UrlTemplate::parse("https://s.{{region}}.example.net/").unwrap(),
                    reader: BodyReader::Pointer("/e".into()),
                },
                CheckSource::Http {
                    url: UrlTemplate::parse("https://s.example.net/m").unwrap(),
                    reader: BodyReader::Metric(SelectorTemplate::parse(r#"m{service="{{service}}"}"#).unwrap()),
                },
            ]
        );
    }
}
