//! Health: the plan's `health` section, each check's limits, and its source resolved into a
//! typed [`CheckSource`] (Prometheus server URL, HTTP check URL template, JSON pointer or
//! metric selector), so the health adapters read no plan text.
//!
//! Owns the checks as the plan writes them, their `relative` part included (and the risks of
//! a relative check against the plan's regions and waves). Region overrides of their limits are
//! `regions`'; the traffic-guard risk is `risks`'. It must not reach out to any server.

use super::PlanChecker;
use crate::manifest::{CheckSpec, HealthSpec, HttpCheckSpec, NoDataPolicy, RelativeSpec};
use crate::metric_selector::SelectorTemplate;
use crate::plan::{
    BodyReader, Check, CheckLimits, CheckSource, DEFAULT_HEALTH_INTERVAL, DEFAULT_REGION_LABEL, Health, Region, Wave,
};
use crate::relative::{DEFAULT_MIN_BASELINE_REGIONS, RelativeLimit};

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
        let relative = c.relative.as_ref().map(|r| self.relative_spec(&base, c, r));
        Some(Check {
            name: c.name.clone(),
            source: source?,
            limits: written_limits(c),
            min_samples_query: c.min_samples.as_ref().map(|m| m.query.clone()),
            relative,
        })
    }

    /// A check's `relative` part; values out of range are reported and read as their
    /// defaults (the plan is not built then).
    fn relative_spec(&mut self, base: &str, c: &CheckSpec, r: &RelativeSpec) -> RelativeLimit {
        let path = format!("{base}.relative");
        if c.http.is_some() && c.prometheus.is_none() {
            self.error(
                &path,
                "relative-http-check",
                format!(
                    "check {:?} reads http, one request per region, so it has no fleet to compare a region with",
                    c.name
                ),
                Some(
                    "use a prometheus query split by the region label (one query for every region), or leave \
                     relative out"
                        .into(),
                ),
            );
        }
        if !(r.max_ratio.is_finite() && r.max_ratio >= 1.0) {
            self.error(
                &format!("{path}.maxRatio"),
                "invalid-max-ratio",
                format!(
                    "relative.maxRatio of check {:?} is {}; it must be a number of at least 1",
                    c.name, r.max_ratio
                ),
                Some("2.0 fails a region whose value is more than twice the baseline".into()),
            );
        }
        let min_baseline_regions = match r.min_baseline_regions {
            None => DEFAULT_MIN_BASELINE_REGIONS,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                self.error(
                    &format!("{path}.minBaselineRegions"),
                    "invalid-min-baseline-regions",
                    format!("relative.minBaselineRegions of check {:?} is {n}; it must be at least 1", c.name),
                    Some(format!(
                        "leave it out for {DEFAULT_MIN_BASELINE_REGIONS}, the fewest fully enabled regions a \
                         baseline is made of"
                    )),
                );
                DEFAULT_MIN_BASELINE_REGIONS
            }
        };
        let min_delta = match r.min_delta {
            None => 0.0,
            Some(d) if d.is_finite() && d >= 0.0 => d,
            Some(d) => {
                self.error(
                    &format!("{path}.minDelta"),
                    "invalid-min-delta",
                    format!("relative.minDelta of check {:?} is {d}; it must be a number of at least 0", c.name),
                    Some("set the absolute tolerance above the baseline, e.g. 0.001 for an error ratio".into()),
                );
                0.0
            }
        };
        RelativeLimit {
            max_ratio: r.max_ratio,
            baseline: r.baseline.unwrap_or_default(),
            min_baseline_regions,
            min_delta,
        }
    }

    /// Relative checks against the plan's regions: a `minBaselineRegions` no region could
    /// ever reach is an error; the first regions to start, which cannot have that many
    /// enabled before them, are a warning unless missing data is ignored there.
    pub(super) fn relative_risks(
        &mut self,
        health: &Health,
        check_index: &[usize],
        regions: &[Region],
        waves: &[Wave],
    ) {
        let start_order: Vec<usize> = waves.iter().flat_map(|w| w.regions.iter().copied()).collect();
        for (k, check) in health.checks.iter().enumerate() {
            let (Some(rel), Some(&i)) = (check.relative, check_index.get(k)) else { continue };
            let path = format!("spec.health.checks[{i}].relative");
            if rel.min_baseline_regions >= regions.len() {
                self.error(
                    &format!("{path}.minBaselineRegions"),
                    "relative-baseline-unreachable",
                    format!(
                        "check {:?} needs {} baseline regions, but the plan has {} regions, so a region has at most {} \
                         others to compare with",
                        check.name,
                        rel.min_baseline_regions,
                        regions.len(),
                        regions.len().saturating_sub(1)
                    ),
                    Some(match regions.len() {
                        0 | 1 => "a region can only be compared with other regions; leave relative out".into(),
                        n => format!("use at most {}", n - 1),
                    }),
                );
                continue;
            }
            let held: Vec<(&str, NoDataPolicy)> = start_order
                .iter()
                .take(rel.min_baseline_regions)
                .filter_map(|&r| regions.get(r))
                .filter_map(|r| {
                    let policy = r.settings.checks.get(k).map_or(check.limits.no_data, |l| l.no_data);
                    (policy != NoDataPolicy::Ignore).then_some((r.name.as_str(), policy))
                })
                .collect();
            if held.is_empty() {
                continue;
            }
            let names: Vec<&str> = held.iter().map(|(n, _)| *n).collect();
            let outcome = if held.iter().any(|(_, p)| *p == NoDataPolicy::Fail) {
                "noData: fail fails them"
            } else {
                "noData: hold holds them"
            };
            self.warn(
                &path,
                "risk-relative-without-baseline",
                format!(
                    "check {:?} compares a region with at least {} fully enabled regions, but the first regions to \
                     start ({}) cannot have that many before them: its relative part has no verdict there and {outcome}",
                    check.name,
                    rel.min_baseline_regions,
                    names.join(", ")
                ),
                Some(format!(
                    "give those regions checks: [{{name: {}, noData: ignore}}] so min/max alone judge them, or \
                     lower minBaselineRegions",
                    check.name
                )),
            );
        }
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

#[cfg(test)]
mod relative_tests {
    use super::super::load;
    use crate::diagnostics::Severity;
    use crate::manifest::BaselineKind;
    use crate::relative::RelativeLimit;

    /// Four regions in three waves, one check `errors` with this `relative` part and source.
    fn plan(relative: &str, source: &str, regions: &str) -> crate::validate::Bundle {
        let yaml = format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: signin}}]
  regions:
{regions}
  waves:
    - {{name: canary, regions: [a]}}
    - {{name: rest, regions: [b, c]}}
    - {{name: last, regions: [d]}}
  health:
    checks:
      - name: errors
        {source}
        max: 0.1
        relative: {relative}
"
        );
        load(&[("p.yaml".into(), yaml)], None)
    }

    const PROM: &str = "prometheus: {query: x}";
    const REGIONS: &str = "    - {name: a, checks: [{name: errors, noData: ignore}]}
    - {name: b, noData: ignore}
    - {name: c}
    - {name: d}";

    /// (line, column, code, severity) of each diagnostic about `relative`, in order.
    fn relative_diagnostics(bundle: &crate::validate::Bundle) -> Vec<(usize, usize, &'static str, Severity)> {
        bundle
            .report
            .diagnostics
            .iter()
            .filter(|d| d.path.contains("relative") || d.code.contains("relative"))
            .map(|d| (d.line, d.column, d.code, d.severity))
            .collect()
    }

    #[test]
    fn a_relative_part_resolves_with_its_defaults() {
        let bundle = plan("{maxRatio: 2}", PROM, REGIONS);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        assert_eq!(relative_diagnostics(&bundle), vec![], "the first two regions ignore missing data");
        let plan = bundle.plan("p").unwrap();
        assert_eq!(
            plan.health.checks[0].relative,
            Some(RelativeLimit {
                max_ratio: 2.0,
                baseline: BaselineKind::Median,
                min_baseline_regions: 2,
                min_delta: 0.0
            })
        );
        let shown = serde_json::to_value(plan.effective_settings(0).checks[0].relative).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"maxRatio": 2.0, "baseline": "median", "minBaselineRegions": 2, "minDelta": 0.0})
        );
        let mean = plan_with("{maxRatio: 1.5, baseline: mean, minBaselineRegions: 1, minDelta: 0.001}");
        assert_eq!(
            mean.plan("p").unwrap().health.checks[0].relative,
            Some(RelativeLimit {
                max_ratio: 1.5,
                baseline: BaselineKind::Mean,
                min_baseline_regions: 1,
                min_delta: 0.001
            })
        );
    }

    fn plan_with(relative: &str) -> crate::validate::Bundle {
        plan(relative, PROM, REGIONS)
    }

    #[test]
    fn bad_values_are_located_errors_each_with_a_fix() {
        // Line 20 holds `relative:`.
        let bundle = plan_with("{maxRatio: 0.5, minBaselineRegions: 0, minDelta: -1}");
        let found = relative_diagnostics(&bundle);
        let codes: Vec<&str> = found.iter().map(|d| d.2).collect();
        assert_eq!(codes, ["invalid-max-ratio", "invalid-min-baseline-regions", "invalid-min-delta"], "{found:?}");
        assert!(found.iter().all(|d| d.0 == 20 && d.3 == Severity::Error), "{found:?}");
        assert!(bundle.report.diagnostics.iter().filter(|d| d.code.starts_with("invalid-m")).all(|d| d.hint.is_some()));
        let nan = plan_with("{maxRatio: .nan}");
        assert_eq!(relative_diagnostics(&nan).iter().map(|d| d.2).collect::<Vec<_>>(), ["invalid-max-ratio"]);
        let unknown = plan_with("{maxRatio: 2, ratio: 3}");
        assert!(unknown.report.has_errors(), "unknown fields are rejected");
    }

    #[test]
    fn an_http_check_has_no_fleet_to_compare_with() {
        let bundle = plan("{maxRatio: 2}", "http: {url: 'https://m.{{region}}.example.net/', pointer: /e}", REGIONS);
        let found = relative_diagnostics(&bundle);
        assert_eq!(found.iter().map(|d| d.2).collect::<Vec<_>>(), ["relative-http-check"], "{found:?}");
        assert_eq!((found[0].0, found[0].3), (20, Severity::Error));
    }

    #[test]
    fn a_baseline_no_region_could_reach_is_an_error() {
        let bundle = plan_with("{maxRatio: 2, minBaselineRegions: 4}");
        let found = relative_diagnostics(&bundle);
        assert_eq!(found.iter().map(|d| d.2).collect::<Vec<_>>(), ["relative-baseline-unreachable"], "{found:?}");
        let d = bundle.report.diagnostics.iter().find(|d| d.code == "relative-baseline-unreachable").unwrap();
        assert_eq!(d.hint.as_deref(), Some("use at most 3"));
        assert!(plan_with("{maxRatio: 2, minBaselineRegions: 3}").plan("p").is_some());
    }

    #[test]
    fn the_first_regions_without_a_baseline_are_a_warning_unless_they_ignore_missing_data() {
        let regions = "    - {name: a}\n    - {name: b, noData: fail}\n    - {name: c}\n    - {name: d}";
        let bundle = plan("{maxRatio: 2}", PROM, regions);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        let d = bundle.report.diagnostics.iter().find(|d| d.code == "risk-relative-without-baseline").unwrap();
        assert_eq!((d.severity, d.line), (Severity::Warning, 20));
        assert!(d.message.contains("first regions to start (a, b)"), "{}", d.message);
        assert!(d.message.contains("noData: fail fails them"), "{}", d.message);
        assert!(d.hint.as_deref().unwrap().contains("{name: errors, noData: ignore}"));
        let one = plan("{maxRatio: 2, minBaselineRegions: 1}", PROM, regions);
        let d = one.report.diagnostics.iter().find(|d| d.code == "risk-relative-without-baseline").unwrap();
        assert!(d.message.contains("(a)") && d.message.contains("holds them"), "{}", d.message);
    }
}
