//! The second parsing stage: raw manifests to a resolved [`Plan`] and [`ApprovalRecord`]s,
//! collecting every problem at once, each pointing at the node it is about.
//!
//! One code path for everyone: `meridian validate`, the file watcher, the Kubernetes mode
//! and `meridian plan` all call [`load`] or [`validate_documents`]. Errors make a plan
//! unusable; warnings (risks) do not, unless the caller is strict.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::approval::{ApprovalRecord, ApprovalScopeSet, RevokedInfo};
use crate::diagnostics::{Report, did_you_mean};
use crate::duration::Span;
use crate::manifest::{Approval, CheckSpec, RolloutPlan};
use crate::plan::{
    Check, CheckLimits, CheckSource, DEFAULT_HEALTH_INTERVAL, DEFAULT_REGION_LABEL, DEFAULT_STEP_BAKE, DEFAULT_STEPS,
    Health, Plan, Region, RegionSettings, Service, Wave, template_placeholders,
};
use crate::source::{Document, Manifest, parse_file};
use crate::window::{DAY_NAMES, Window, parse_clock, parse_day};

/// Everything read from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// Plans without errors.
    pub plans: Vec<Plan>,
    /// Approvals without errors.
    pub approvals: Vec<ApprovalRecord>,
    pub report: Report,
    /// Every manifest that parsed, for tools that need the raw form (e.g. `crds`, the API).
    pub documents: Vec<Document>,
}

impl Bundle {
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }
}

/// Parse and validate (file name, text) pairs. `now` enables time-dependent warnings
/// (approvals already expired); pass `None` for a time-free check.
pub fn load(files: &[(String, String)], now: Option<DateTime<Utc>>) -> Bundle {
    let mut report = Report::default();
    let mut documents = Vec::new();
    for (name, text) in files {
        let (docs, r) = parse_file(name, text);
        documents.extend(docs);
        report.extend(r);
    }
    let mut bundle = validate_documents(&documents, now);
    bundle.report.extend(report);
    bundle.report.sort();
    bundle.documents = documents;
    bundle
}

/// Validate parsed documents.
pub fn validate_documents(documents: &[Document], now: Option<DateTime<Utc>>) -> Bundle {
    let mut bundle = Bundle::default();
    let mut plan_names: HashMap<String, &Document> = HashMap::new();
    let mut approval_names: HashMap<String, &Document> = HashMap::new();
    let raw_plans: Vec<(&Document, &RolloutPlan)> = documents
        .iter()
        .filter_map(|d| match &d.manifest {
            Manifest::Plan(p) => Some((d, p.as_ref())),
            Manifest::Approval(_) => None,
        })
        .collect();
    for (doc, raw) in &raw_plans {
        check_name(doc, &raw.metadata.name, &mut bundle.report);
        if let Some(first) = plan_names.get(&raw.metadata.name) {
            bundle.report.push(doc.error(
                "metadata.name",
                "duplicate-plan",
                format!("plan {:?} is defined twice", raw.metadata.name),
                Some(format!("first defined at {}:{}", first.file, first.locations.value("metadata.name").line)),
            ));
            continue;
        }
        plan_names.insert(raw.metadata.name.clone(), doc);
        let mut checker = PlanChecker { doc, report: &mut bundle.report, errors: 0 };
        if let Some(plan) = checker.check(raw) {
            bundle.plans.push(plan);
        }
    }
    for doc in documents {
        let Manifest::Approval(raw) = &doc.manifest else { continue };
        check_name(doc, &raw.metadata.name, &mut bundle.report);
        if let Some(first) = approval_names.get(&raw.metadata.name) {
            bundle.report.push(doc.error(
                "metadata.name",
                "duplicate-approval",
                format!("approval {:?} is defined twice", raw.metadata.name),
                Some(format!("first defined at {}:{}", first.file, first.locations.value("metadata.name").line)),
            ));
            continue;
        }
        approval_names.insert(raw.metadata.name.clone(), doc);
        if let Some(a) = check_approval(doc, raw, &raw_plans, now, &mut bundle.report) {
            bundle.approvals.push(a);
        }
    }
    bundle.report.sort();
    bundle
}

/// Object names follow Kubernetes rules so the same file works as a custom resource.
fn check_name(doc: &Document, name: &str, report: &mut Report) {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if !valid {
        report.push(doc.error(
            "metadata.name",
            "invalid-name",
            format!("invalid name {name:?}"),
            Some("use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into()),
        ));
    }
}

struct PlanChecker<'a> {
    doc: &'a Document,
    report: &'a mut Report,
    errors: usize,
}

impl PlanChecker<'_> {
    fn error(&mut self, path: &str, code: &'static str, message: String, hint: Option<String>) {
        self.errors += 1;
        self.report.push(self.doc.error(path, code, message, hint));
    }

    fn warn(&mut self, path: &str, code: &'static str, message: String, hint: Option<String>) {
        self.report.push(self.doc.warning(path, code, message, hint));
    }

    fn span(&mut self, path: &str, text: Option<&str>, default: Span, allow_zero: bool) -> Span {
        let Some(text) = text else { return default };
        match text.parse::<Span>() {
            Ok(span) if span.is_zero() && !allow_zero => {
                self.error(path, "zero-duration", format!("duration {text:?} must be greater than zero"), None);
                default
            }
            Ok(span) => span,
            Err(e) => {
                self.error(
                    path,
                    "invalid-duration",
                    e.to_string(),
                    Some("write durations like 90s, 5m or 1h30m".into()),
                );
                default
            }
        }
    }

    /// Names must be present and unique; returns name -> index.
    fn names<'n>(
        &mut self,
        what: &str,
        list: &'n str,
        names: impl Iterator<Item = &'n str>,
    ) -> HashMap<&'n str, usize> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = format!("spec.{list}[{i}].name");
            if name.trim().is_empty() {
                self.error(&path, "empty-name", format!("{what} name is empty"), None);
            } else if let Some(first) = seen.get(name) {
                let first_line = self.doc.locations.value(&format!("spec.{list}[{first}].name")).line;
                self.error(
                    &path,
                    "duplicate-name",
                    format!("duplicate {what} {name:?}"),
                    Some(format!("first defined on line {first_line}")),
                );
            } else {
                seen.insert(name, i);
            }
        }
        seen
    }

    fn check(&mut self, raw: &RolloutPlan) -> Option<Plan> {
        let spec = &raw.spec;
        if spec.services.is_empty() {
            self.error("spec.services", "empty-services", "a plan needs at least one service".into(), None);
        }
        if spec.regions.is_empty() {
            self.error("spec.regions", "empty-regions", "a plan needs at least one region".into(), None);
        }
        if spec.waves.is_empty() {
            self.error("spec.waves", "empty-waves", "a plan needs at least one wave".into(), None);
        }
        let service_idx = self.names("service", "services", spec.services.iter().map(|s| s.name.as_str()));
        let region_idx = self.names("region", "regions", spec.regions.iter().map(|r| r.name.as_str()));
        let wave_idx = self.names("wave", "waves", spec.waves.iter().map(|w| w.name.as_str()));
        let _ = wave_idx;

        // Services and their dependencies.
        let mut services = Vec::new();
        for (i, s) in spec.services.iter().enumerate() {
            let mut after = Vec::new();
            for (j, dep) in s.after.iter().enumerate() {
                let path = format!("spec.services[{i}].after[{j}]");
                match service_idx.get(dep.as_str()) {
                    Some(&d) if d == i => {
                        self.error(&path, "self-dependency", format!("service {:?} depends on itself", s.name), None)
                    }
                    Some(&d) => after.push(d),
                    None => {
                        let hint = did_you_mean(dep, service_idx.keys().copied());
                        self.error(
                            &path,
                            "unknown-service",
                            format!("unknown service {dep:?} in after of service {:?}", s.name),
                            hint,
                        )
                    }
                }
            }
            after.sort_unstable();
            after.dedup();
            services.push(Service { name: s.name.clone(), after });
        }
        let service_order = match topo_order(&services) {
            Ok(order) => order,
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&i| services[i].name.as_str()).collect();
                self.error(
                    &format!("spec.services[{}].after", cycle[0]),
                    "dependency-cycle",
                    format!("services depend on each other in a cycle: {} -> {}", names.join(" -> "), names[0]),
                    Some("remove one of these after entries".into()),
                );
                (0..services.len()).collect()
            }
        };

        // Plan-wide settings.
        let steps = self.steps("spec.steps", spec.steps.as_deref());
        let step_bake = self.span("spec.stepBake", spec.step_bake.as_deref(), DEFAULT_STEP_BAKE, false);
        let windows = self.windows("spec.windows", &spec.windows);
        let on_failure = spec.on_failure.unwrap_or_default();
        let health = self.health(spec.health.as_ref());
        self.actuator(spec);

        // Regions.
        let mut regions = Vec::new();
        for (i, r) in spec.regions.iter().enumerate() {
            let timezone = match r.timezone.as_deref() {
                None => Tz::UTC,
                Some(text) => match text.parse::<Tz>() {
                    Ok(tz) => tz,
                    Err(_) => {
                        let hint = did_you_mean(text, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
                            .or_else(|| Some("use an IANA name such as Europe/Berlin or Asia/Tokyo".into()));
                        self.error(
                            &format!("spec.regions[{i}].timezone"),
                            "unknown-timezone",
                            format!("unknown time zone {text:?}"),
                            hint,
                        );
                        Tz::UTC
                    }
                },
            };
            for (j, flag) in r.approvals.iter().enumerate() {
                if flag.trim().is_empty() {
                    self.error(
                        &format!("spec.regions[{i}].approvals[{j}]"),
                        "empty-flag",
                        "approval flag is empty".into(),
                        None,
                    );
                }
            }
            regions.push(Region {
                name: r.name.clone(),
                timezone,
                approvals: r.approvals.clone(),
                wave: usize::MAX,
                settings: RegionSettings {
                    steps: steps.clone(),
                    step_bake,
                    windows: windows.clone(),
                    on_failure,
                    checks: health.checks.iter().map(|c| c.limits.clone()).collect(),
                },
            });
        }

        // Waves.
        let mut waves = Vec::new();
        let mut placed: HashMap<usize, String> = HashMap::new();
        for (w, raw_wave) in spec.waves.iter().enumerate() {
            let base = format!("spec.waves[{w}]");
            if raw_wave.regions.is_empty() {
                self.error(
                    &format!("{base}.regions"),
                    "empty-wave",
                    format!("wave {:?} has no regions", raw_wave.name),
                    None,
                );
            }
            let mut members = Vec::new();
            for (j, name) in raw_wave.regions.iter().enumerate() {
                let path = format!("{base}.regions[{j}]");
                let Some(&r) = region_idx.get(name.as_str()) else {
                    let hint = did_you_mean(name, region_idx.keys().copied());
                    self.error(
                        &path,
                        "unknown-region",
                        format!("unknown region {name:?} in wave {:?}", raw_wave.name),
                        hint,
                    );
                    continue;
                };
                if let Some(first) = placed.get(&r) {
                    let message = if *first == raw_wave.name {
                        format!("region {name:?} is listed twice in wave {:?}", raw_wave.name)
                    } else {
                        format!("region {name:?} is in wave {first:?} and again in wave {:?}", raw_wave.name)
                    };
                    self.error(
                        &path,
                        "region-in-two-waves",
                        message,
                        Some("a region belongs to exactly one wave".into()),
                    );
                    continue;
                }
                placed.insert(r, raw_wave.name.clone());
                regions[r].wave = w;
                members.push(r);
            }
            let max_parallel = match raw_wave.max_parallel {
                None => members.len().max(1),
                Some(n) if n <= 0 => {
                    self.error(
                        &format!("{base}.maxParallel"),
                        "invalid-max-parallel",
                        format!("maxParallel must be at least 1, not {n}"),
                        None,
                    );
                    1
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(members.len().max(1)),
            };
            let bake = self.span(&format!("{base}.bake"), raw_wave.bake.as_deref(), Span::ZERO, false);
            for (j, flag) in raw_wave.approvals.iter().enumerate() {
                if flag.trim().is_empty() {
                    self.error(&format!("{base}.approvals[{j}]"), "empty-flag", "approval flag is empty".into(), None);
                }
            }
            waves.push(Wave {
                name: raw_wave.name.clone(),
                regions: members,
                max_parallel,
                bake,
                approvals: raw_wave.approvals.clone(),
            });
        }
        for (i, r) in spec.regions.iter().enumerate() {
            if !r.name.is_empty() && !placed.contains_key(&i) && region_idx.get(r.name.as_str()) == Some(&i) {
                self.error(
                    &format!("spec.regions[{i}].name"),
                    "region-in-no-wave",
                    format!("region {:?} is in no wave", r.name),
                    Some("add it to a wave's regions, or remove it".into()),
                );
            }
        }
        self.risks(raw, &waves, &steps, &health);

        if self.errors > 0 {
            return None;
        }
        let mut plan = Plan {
            name: raw.metadata.name.clone(),
            services,
            service_order,
            regions,
            waves,
            health,
            on_approval_revoked: spec.on_approval_revoked.unwrap_or_default(),
            actuator: spec.actuator.clone(),
            region_lookup: HashMap::new(),
            service_lookup: HashMap::new(),
        };
        plan.index_names();
        Some(plan)
    }

    fn steps(&mut self, path: &str, raw: Option<&[u32]>) -> Vec<u32> {
        let Some(steps) = raw else { return DEFAULT_STEPS.to_vec() };
        if steps.is_empty() {
            self.error(
                path,
                "empty-steps",
                "steps is empty".into(),
                Some("list traffic percentages ending at 100, e.g. [1, 10, 50, 100]".into()),
            );
            return DEFAULT_STEPS.to_vec();
        }
        let before = self.errors;
        for (i, &step) in steps.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if step == 0 || step > 100 {
                self.error(&p, "step-out-of-range", format!("step {step} is not a percentage from 1 to 100"), None);
            } else if i > 0 && step <= steps[i - 1] {
                self.error(
                    &p,
                    "steps-not-increasing",
                    format!("step {step} does not increase on {}", steps[i - 1]),
                    Some("steps must be strictly increasing".into()),
                );
            }
        }
        if steps.last() != Some(&100) && self.errors == before {
            self.error(
                &format!("{path}[{}]", steps.len() - 1),
                "steps-not-ending-at-100",
                "the last step must be 100".into(),
                Some("append 100 to the steps".into()),
            );
        }
        if self.errors > before { DEFAULT_STEPS.to_vec() } else { steps.to_vec() }
    }

    fn windows(&mut self, path: &str, raw: &[crate::manifest::WindowSpec]) -> Vec<Window> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let base = format!("{path}[{i}]");
            let mut days = [w.days.is_empty(); 7];
            for (j, day) in w.days.iter().enumerate() {
                match parse_day(day) {
                    Some(d) => days[d] = true,
                    None => {
                        let hint =
                            did_you_mean(day, DAY_NAMES).or_else(|| Some(format!("use {}", DAY_NAMES.join(", "))));
                        self.error(&format!("{base}.days[{j}]"), "invalid-day", format!("unknown day {day:?}"), hint)
                    }
                }
            }
            let mut clock = |field: &str, text: &str| match parse_clock(text) {
                Some(m) if field == "from" && m == 1440 => {
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-time",
                        "a window cannot open at 24:00".into(),
                        Some("use 00:00".into()),
                    );
                    None
                }
                Some(m) => Some(m),
                None => {
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-time",
                        format!("invalid time {text:?}"),
                        Some("write local times as HH:MM, e.g. 09:00 or 17:30".into()),
                    );
                    None
                }
            };
            let (from, to) = (clock("from", &w.from), clock("to", &w.to));
            let (Some(from), Some(to)) = (from, to) else { continue };
            if from == to || (from == 0 && to == 1440 && false) {
                self.error(
                    &base,
                    "empty-window",
                    format!("window from {} to {} is empty", w.from, w.to),
                    Some("a window that runs all day is from 00:00 to 24:00".into()),
                );
                continue;
            }
            out.push(Window { days, from, to: if to == 1440 && from == 0 { 1440 } else { to % 1440 } });
        }
        out
    }

    fn health(&mut self, raw: Option<&crate::manifest::HealthSpec>) -> Health {
        let Some(raw) = raw else {
            return Health {
                interval: DEFAULT_HEALTH_INTERVAL,
                region_label: DEFAULT_REGION_LABEL.into(),
                checks: Vec::new(),
            };
        };
        let interval = self.span("spec.health.interval", raw.interval.as_deref(), DEFAULT_HEALTH_INTERVAL, false);
        let region_label = raw.region_label.clone().unwrap_or_else(|| DEFAULT_REGION_LABEL.into());
        if region_label.trim().is_empty() {
            self.error("spec.health.regionLabel", "empty-region-label", "regionLabel is empty".into(), None);
        }
        let _ = self.names("check", "health.checks", raw.checks.iter().map(|c| c.name.as_str()));
        let checks = raw.checks.iter().enumerate().filter_map(|(i, c)| self.check_spec(i, c)).collect();
        Health { interval, region_label, checks }
    }

    fn template(&mut self, path: &str, template: &str, allowed: &[&str]) {
        for name in template_placeholders(template) {
            if !allowed.contains(&name.as_str()) {
                let hint = did_you_mean(&name, allowed.iter().copied()).or_else(|| {
                    Some(format!(
                        "placeholders here: {}",
                        allowed.iter().map(|a| format!("{{{{{a}}}}}")).collect::<Vec<_>>().join(", ")
                    ))
                });
                self.error(path, "unknown-placeholder", format!("unknown placeholder {{{{{name}}}}}"), hint);
            }
        }
        if template.trim().is_empty() {
            self.error(path, "empty-template", "empty query or URL".into(), None);
        }
    }

    fn check_spec(&mut self, i: usize, c: &CheckSpec) -> Option<Check> {
        let base = format!("spec.health.checks[{i}]");
        const QUERY_VARS: [&str; 3] = ["service", "plan", "wave"];
        const URL_VARS: [&str; 4] = ["region", "service", "plan", "wave"];
        let source = match (&c.prometheus, &c.http) {
            (Some(p), None) => {
                self.template(&format!("{base}.prometheus.query"), &p.query, &QUERY_VARS);
                CheckSource::Prometheus { query: p.query.clone(), url: p.url.clone() }
            }
            (None, Some(h)) => {
                self.template(&format!("{base}.http.url"), &h.url, &URL_VARS);
                if h.pointer.is_some() == h.metric.is_some() {
                    self.error(
                        &format!("{base}.http"),
                        "http-check-reader",
                        "an http check needs exactly one of pointer or metric".into(),
                        Some("pointer reads a JSON body, metric a Prometheus text body".into()),
                    );
                }
                CheckSource::Http { url: h.url.clone(), pointer: h.pointer.clone(), metric: h.metric.clone() }
            }
            (Some(_), Some(_)) => {
                self.error(
                    &base,
                    "check-source",
                    format!("check {:?} has both prometheus and http", c.name),
                    Some("keep one source per check".into()),
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
                Some("add max: (e.g. an error rate) or min: (e.g. a success rate)".into()),
            );
        }
        if let (Some(min), Some(max)) = (c.min, c.max)
            && min > max
        {
            self.error(&format!("{base}.min"), "min-above-max", format!("min {min} is above max {max}"), None);
        }
        for (field, v) in [("min", c.min), ("max", c.max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                self.error(
                    &format!("{base}.{field}"),
                    "non-finite-threshold",
                    format!("{field} must be a finite number"),
                    None,
                );
            }
        }
        let failure_limit = match c.failure_limit {
            None => 1,
            Some(n) if n <= 0 => {
                self.error(
                    &format!("{base}.failureLimit"),
                    "invalid-failure-limit",
                    format!("failureLimit must be at least 1, not {n}"),
                    None,
                );
                1
            }
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        };
        let min_samples = c.min_samples.as_ref().map(|m| {
            self.template(&format!("{base}.minSamples.query"), &m.query, &QUERY_VARS);
            if !(m.min.is_finite() && m.min >= 0.0) {
                self.error(
                    &format!("{base}.minSamples.min"),
                    "invalid-min-samples",
                    "minSamples.min must be a number of at least 0".into(),
                    None,
                );
            }
            m.min
        });
        Some(Check {
            name: c.name.clone(),
            source,
            limits: CheckLimits {
                min: c.min,
                max: c.max,
                failure_limit,
                no_data: c.no_data.unwrap_or_default(),
                min_samples,
            },
            min_samples_query: c.min_samples.as_ref().map(|m| m.query.clone()),
        })
    }

    fn actuator(&mut self, spec: &crate::manifest::RolloutPlanSpec) {
        let Some(a) = &spec.actuator else { return };
        match (&a.http, &a.log) {
            (Some(_), Some(_)) => self.error(
                "spec.actuator",
                "actuator-kind",
                "actuator has both http and log".into(),
                Some("choose one".into()),
            ),
            (None, None) => self.error(
                "spec.actuator",
                "actuator-kind",
                "actuator names no kind".into(),
                Some("add http: {url: ...} or log: {}".into()),
            ),
            _ => {}
        }
        let Some(h) = &a.http else { return };
        self.template("spec.actuator.http.url", &h.url, &["region", "service", "plan"]);
        if let Some(m) = &h.method
            && m != "PUT"
            && m != "POST"
        {
            self.error(
                "spec.actuator.http.method",
                "invalid-method",
                format!("method {m:?} is not supported"),
                Some("use PUT or POST".into()),
            );
        }
        self.span("spec.actuator.http.timeout", h.timeout.as_deref(), Span::ZERO, false);
        if h.retries.is_some_and(|r| r < 0) {
            self.error("spec.actuator.http.retries", "invalid-retries", "retries cannot be negative".into(), None);
        }
        if let Some(d) = &h.on_drift
            && d != "reapply"
            && d != "hold"
        {
            self.error(
                "spec.actuator.http.onDrift",
                "invalid-on-drift",
                format!("onDrift {d:?} is not supported"),
                Some("use reapply or hold".into()),
            );
        }
    }

    /// Risky but legal choices: warnings, errors under `--strict`.
    fn risks(&mut self, raw: &RolloutPlan, waves: &[Wave], steps: &[u32], health: &Health) {
        if let Some(first) = waves.first()
            && first.regions.len() > 1
        {
            self.warn(
                "spec.waves[0].regions",
                "risk-wide-first-wave",
                format!("first wave {:?} has {} regions", first.name, first.regions.len()),
                Some("start with a single canary region".into()),
            );
        }
        let mut longest: Option<(Span, &str)> = None;
        for (w, wave) in waves.iter().enumerate() {
            let last = w + 1 == waves.len();
            if raw.spec.waves[w].bake.is_none() && !last {
                self.warn(
                    &format!("spec.waves[{w}]"),
                    "risk-no-bake",
                    format!("wave {:?} has no bake", wave.name),
                    Some("add bake: so problems surface before the next wave starts".into()),
                );
            }
            if let Some((span, name)) = longest
                && wave.bake < span
                && raw.spec.waves[w].bake.is_some()
            {
                self.warn(
                    &format!("spec.waves[{w}].bake"),
                    "risk-shrinking-bake",
                    format!("wave {:?} bakes {} but earlier wave {name:?} bakes {span}", wave.name, wave.bake),
                    Some("later, larger waves should bake at least as long".into()),
                );
            }
            if longest.is_none_or(|(s, _)| wave.bake > s) {
                longest = Some((wave.bake, &raw.spec.waves[w].name));
            }
        }
        if health.checks.is_empty() {
            self.warn(
                "spec",
                "risk-no-health",
                "plan has no health checks; steps advance on time alone".into(),
                Some("add spec.health.checks".into()),
            );
        }
        for (i, check) in health.checks.iter().enumerate() {
            if check.min_samples_query.is_none() {
                self.warn(
                    &format!("spec.health.checks[{i}]"),
                    "risk-no-traffic-guard",
                    format!("check {:?} has no traffic guard", check.name),
                    Some("add minSamples so a silent region is never read as healthy".into()),
                );
            }
        }
        for i in 1..steps.len() {
            if steps[i] > steps[i - 1] * 10 {
                let path = if raw.spec.steps.is_some() { format!("spec.steps[{i}]") } else { "spec".to_string() };
                self.warn(
                    &path,
                    "risk-big-step",
                    format!("step {} multiplies traffic by more than 10 (from {})", steps[i], steps[i - 1]),
                    Some("add an intermediate step".into()),
                );
            }
        }
    }
}

/// Services in dependency order, stable with respect to written order; `Err` names a cycle.
fn topo_order(services: &[Service]) -> Result<Vec<usize>, Vec<usize>> {
    let n = services.len();
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while order.len() < n {
        let next = (0..n).find(|&i| !done[i] && services[i].after.iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                // Walk from any remaining service along unfinished dependencies until a repeat.
                let mut seen = Vec::new();
                let mut at = (0..n).find(|&i| !done[i]).unwrap_or(0);
                while !seen.contains(&at) {
                    seen.push(at);
                    at = services[at].after.iter().copied().find(|&d| !done[d]).unwrap_or(at);
                }
                let start = seen.iter().position(|&s| s == at).unwrap_or(0);
                let mut cycle = seen[start..].to_vec();
                cycle.reverse();
                return Err(cycle);
            }
        }
    }
    Ok(order)
}

fn timestamp(
    doc: &Document,
    path: &str,
    text: Option<&str>,
    report: &mut Report,
    errors: &mut usize,
) -> Option<DateTime<Utc>> {
    let text = text?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            *errors += 1;
            report.push(doc.error(
                path,
                "invalid-timestamp",
                format!("invalid timestamp {text:?}"),
                Some("use RFC 3339, e.g. 2026-12-31T00:00:00Z".into()),
            ));
            None
        }
    }
}

fn check_approval(
    doc: &Document,
    raw: &Approval,
    plans: &[(&Document, &RolloutPlan)],
    now: Option<DateTime<Utc>>,
    report: &mut Report,
) -> Option<ApprovalRecord> {
    let spec = &raw.spec;
    let mut errors = 0;
    if spec.flag.trim().is_empty() {
        errors += 1;
        report.push(doc.error("spec.flag", "empty-flag", "approval flag is empty".into(), None));
    }
    if spec.granted_by.trim().is_empty() {
        errors += 1;
        report.push(doc.error(
            "spec.grantedBy",
            "empty-granted-by",
            "grantedBy is empty".into(),
            Some("name the person or body that granted it".into()),
        ));
    }
    let granted_at = timestamp(doc, "spec.grantedAt", spec.granted_at.as_deref(), report, &mut errors);
    let expires = timestamp(doc, "spec.expires", spec.expires.as_deref(), report, &mut errors);
    let revoked_at =
        spec.revoked.as_ref().and_then(|r| timestamp(doc, "spec.revoked.at", Some(r.at.as_str()), report, &mut errors));
    if let (Some(g), Some(e)) = (granted_at, expires)
        && e <= g
    {
        report.push(doc.warning(
            "spec.expires",
            "expires-before-grant",
            format!("approval expires ({e}) before it is granted ({g})"),
            Some("it will never be valid".into()),
        ));
    }
    if let (Some(e), Some(now)) = (expires, now)
        && e <= now
    {
        report.push(doc.warning(
            "spec.expires",
            "approval-expired",
            format!("approval {:?} already expired at {e}", raw.metadata.name),
            Some("renew it with a new expiry".into()),
        ));
    }
    let scope = spec.scope.clone().unwrap_or_default();
    let known: BTreeMap<&str, &RolloutPlan> = plans.iter().map(|(_, p)| (p.metadata.name.as_str(), *p)).collect();
    if !known.is_empty() {
        for (j, plan) in scope.plans.iter().enumerate() {
            if !known.contains_key(plan.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.plans[{j}]"),
                    "unknown-scope-plan",
                    format!("scope names unknown plan {plan:?}"),
                    did_you_mean(plan, known.keys().copied()),
                ));
            }
        }
        let in_scope: Vec<&RolloutPlan> = known
            .iter()
            .filter(|(n, _)| scope.plans.is_empty() || scope.plans.iter().any(|p| p == *n))
            .map(|(_, p)| *p)
            .collect();
        let regions: HashSet<&str> =
            in_scope.iter().flat_map(|p| p.spec.regions.iter().map(|r| r.name.as_str())).collect();
        let services: HashSet<&str> =
            in_scope.iter().flat_map(|p| p.spec.services.iter().map(|s| s.name.as_str())).collect();
        for (j, r) in scope.regions.iter().enumerate() {
            if !in_scope.is_empty() && !regions.contains(r.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.regions[{j}]"),
                    "unknown-scope-region",
                    format!("scope names region {r:?} that no plan in scope has"),
                    did_you_mean(r, regions.iter().copied()),
                ));
            }
        }
        for (j, s) in scope.services.iter().enumerate() {
            if !in_scope.is_empty() && !services.contains(s.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.services[{j}]"),
                    "unknown-scope-service",
                    format!("scope names service {s:?} that no plan in scope has"),
                    did_you_mean(s, services.iter().copied()),
                ));
            }
        }
    }
    if errors > 0 {
        return None;
    }
    Some(ApprovalRecord {
        name: raw.metadata.name.clone(),
        flag: spec.flag.clone(),
        granted_by: spec.granted_by.clone(),
        reference: spec.reference.clone(),
        granted_at,
        expires,
        scope: ApprovalScopeSet { plans: scope.plans, regions: scope.regions, services: scope.services },
        revoked: spec.revoked.as_ref().zip(revoked_at).map(|(r, at)| RevokedInfo {
            at,
            by: r.by.clone(),
            reason: r.reason.clone(),
        }),
    })
}
