//! The second parsing stage: raw manifests to a resolved [`Plan`] and [`ApprovalRecord`]s,
//! collecting every problem at once, each pointing at the node it is about.
//!
//! One code path for everyone: `meridian validate`, the file watcher, the Kubernetes mode
//! and `meridian plan` all call [`load`] or [`validate_documents`]. Errors make a plan
//! unusable; warnings (risks) do not, unless the caller is strict.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;

use crate::approval::{ApprovalRecord, ApprovalScopeSet, RevokedInfo};
use crate::diagnostics::{Report, closest, did_you_mean};
use crate::duration::{Span, SpanError};
use crate::endpoint::{Url, UrlError, UrlTemplate, parse_http_url};
use crate::freeze::{DailyRange, Freeze};
use crate::manifest::{
    ActuatorSpec, Approval, CheckSpec, FreezeSpec, HealthSpec, HttpActuatorSpec, HttpCheckSpec, LabelSelector,
    OnFailure, Region as RegionManifest, RegionSpec, RolloutPlan, RolloutPlanSpec, SelectorOperator, WindowSpec,
};
use crate::metric_selector::SelectorTemplate;
use crate::plan::{
    ActuatorSettings, BodyReader, Check, CheckLimits, CheckOrigins, CheckSource, ChosenBy, DEFAULT_ACTUATOR_RETRIES,
    DEFAULT_ACTUATOR_TIMEOUT, DEFAULT_HEALTH_INTERVAL, DEFAULT_REGION_LABEL, DEFAULT_STEP_BAKE, DEFAULT_STEPS,
    DriftPolicy, Health, HttpActuatorSettings, Origin, Plan, Region, RegionSettings, Service, SetMethod,
    SettingOrigins, TokenSource, Wave, template_placeholders,
};
use crate::source::{Document, Manifest, Recovered, parse_file_recovering};
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
///
/// Documents with schema problems are still checked semantically where serde could read
/// them (see [`parse_file_recovering`]), so one run reports as much as it can; they never
/// become plans or approvals.
pub fn load(files: &[(String, String)], now: Option<DateTime<Utc>>) -> Bundle {
    let mut report = Report::default();
    let mut documents = Vec::new();
    let mut recovered = Vec::new();
    for (name, text) in files {
        let parsed = parse_file_recovering(name, text);
        documents.extend(parsed.documents);
        recovered.extend(parsed.recovered);
        report.extend(parsed.report);
    }
    let mut entries: Vec<(&Document, Option<&Recovered>)> =
        documents.iter().map(|d| (d, None)).chain(recovered.iter().map(|r| (&r.document, Some(r)))).collect();
    // File order as given, then document order: "first defined" must mean first read.
    let file_rank: HashMap<&str, usize> = files.iter().enumerate().rev().map(|(i, (n, _))| (n.as_str(), i)).collect();
    entries.sort_by_key(|(d, _)| (file_rank.get(d.file.as_str()).copied().unwrap_or(usize::MAX), d.index));
    let mut bundle = validate_entries(&entries, now);
    bundle.report.extend(report);
    bundle.report.sort();
    bundle.documents = documents;
    bundle
}

/// Validate parsed documents.
pub fn validate_documents(documents: &[Document], now: Option<DateTime<Utc>>) -> Bundle {
    let entries: Vec<(&Document, Option<&Recovered>)> = documents.iter().map(|d| (d, None)).collect();
    validate_entries(&entries, now)
}

/// Keep the semantic diagnostics of recovered documents that are not about what the
/// recovery dropped (those would judge a plan the user did not write). A plan's checks
/// also report in the `Region` documents merged into it, so each diagnostic is judged
/// against the recovered documents of its own file.
fn keep_relevant(local: Report, recovered: &[&Recovered], into: &mut Report) {
    for d in local.diagnostics {
        if !recovered.iter().any(|r| r.document.file == d.file && r.touches(&d.path)) {
            into.push(d);
        }
    }
}

/// A `Region` document merged into the plan it names.
#[derive(Clone, Copy)]
struct RegionDocument<'d> {
    doc: &'d Document,
    recovered: Option<&'d Recovered>,
    raw: &'d RegionManifest,
}

fn validate_entries<'d>(entries: &[(&'d Document, Option<&'d Recovered>)], now: Option<DateTime<Utc>>) -> Bundle {
    let mut bundle = Bundle::default();
    let mut plan_names: HashMap<&str, &Document> = HashMap::new();
    let mut approval_names: HashMap<&str, &Document> = HashMap::new();
    let raw_plans: Vec<(&Document, &RolloutPlan)> = entries
        .iter()
        .filter_map(|(d, _)| match &d.manifest {
            Manifest::Plan(p) => Some((*d, p.as_ref())),
            _ => None,
        })
        .collect();
    let region_documents = region_documents(entries, &raw_plans, &mut bundle.report);
    for (doc, recovered) in entries {
        let Manifest::Plan(raw) = &doc.manifest else { continue };
        let mut local = Report::default();
        check_name(doc, "plan", &raw.metadata.name, &mut local);
        if let Some(first) = plan_names.get(raw.metadata.name.as_str()) {
            local.push(doc.error(
                "metadata.name",
                "duplicate-plan",
                format!("plan {:?} is defined twice", raw.metadata.name),
                Some(format!(
                    "it is first defined at {}:{}; rename one of them",
                    first.file,
                    first.locations.value("metadata.name").line
                )),
            ));
        }
        let duplicate = plan_names.contains_key(raw.metadata.name.as_str());
        plan_names.entry(raw.metadata.name.as_str()).or_insert(doc);
        // A duplicate is still checked, so that fixing its name reveals nothing new.
        let merged = region_documents.get(raw.metadata.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let mut checker = PlanChecker { doc, report: &mut local, errors: 0 };
        let plan = checker.check(raw, merged);
        let recovered_docs: Vec<&Recovered> =
            recovered.iter().copied().chain(merged.iter().filter_map(|m| m.recovered)).collect();
        keep_relevant(local, &recovered_docs, &mut bundle.report);
        if let Some(plan) = plan
            && recovered_docs.is_empty()
            && !duplicate
        {
            bundle.plans.push(plan);
        }
    }
    for (doc, recovered) in entries {
        let Manifest::Approval(raw) = &doc.manifest else { continue };
        let mut local = Report::default();
        check_name(doc, "approval", &raw.metadata.name, &mut local);
        if let Some(first) = approval_names.get(raw.metadata.name.as_str()) {
            local.push(doc.error(
                "metadata.name",
                "duplicate-approval",
                format!("approval {:?} is defined twice", raw.metadata.name),
                Some(format!(
                    "it is first defined at {}:{}; rename one of them",
                    first.file,
                    first.locations.value("metadata.name").line
                )),
            ));
        }
        let duplicate = approval_names.contains_key(raw.metadata.name.as_str());
        approval_names.entry(raw.metadata.name.as_str()).or_insert(doc);
        let approval = check_approval(doc, raw, &raw_plans, &region_documents, now, &mut local);
        keep_relevant(local, recovered.as_slice(), &mut bundle.report);
        if let Some(a) = approval
            && recovered.is_none()
            && !duplicate
        {
            bundle.approvals.push(a);
        }
    }
    bundle.report.sort();
    bundle
}

/// `Region` documents by the plan they name, in the order read. A document naming no known
/// plan is reported here and checked on its own, as far as that goes without its plan.
fn region_documents<'d>(
    entries: &[(&'d Document, Option<&'d Recovered>)],
    plans: &[(&Document, &RolloutPlan)],
    report: &mut Report,
) -> HashMap<&'d str, Vec<RegionDocument<'d>>> {
    let plan_names: Vec<&str> = plans.iter().map(|(_, p)| p.metadata.name.as_str()).collect();
    let mut out: HashMap<&str, Vec<RegionDocument<'d>>> = HashMap::new();
    for (doc, recovered) in entries {
        let Manifest::Region(raw) = &doc.manifest else { continue };
        let mut local = Report::default();
        check_name(doc, "region", &raw.metadata.name, &mut local);
        if !raw.metadata.labels.is_empty() && raw.spec.labels.is_empty() {
            local.push(doc.warning(
                "metadata.labels",
                "metadata-labels",
                format!("region {:?} has labels under metadata, which waves do not select by", raw.metadata.name),
                Some("move them to spec.labels".into()),
            ));
        }
        let plan = raw.spec.plan.as_str();
        if plan_names.contains(&plan) {
            out.entry(plan).or_default().push(RegionDocument { doc, recovered: *recovered, raw });
        } else {
            let (message, hint) = if plan.trim().is_empty() {
                (
                    format!("region {:?} names no plan", raw.metadata.name),
                    "set spec.plan to the name of the RolloutPlan this region belongs to".to_string(),
                )
            } else {
                let hint =
                    did_you_mean(plan, plan_names.iter().copied()).unwrap_or_else(|| match plan_names.as_slice() {
                        [] => {
                            "no RolloutPlan was read with it; validate the plan's files together with this one".into()
                        }
                        known => format!("known plans: {}", known.join(", ")),
                    });
                (format!("region {:?} belongs to unknown plan {plan:?}", raw.metadata.name), hint)
            };
            local.push(doc.error("spec.plan", "unknown-plan", message, Some(hint)));
            // Check what can be checked without the plan: the region's own values.
            let mut checker = PlanChecker { doc, report: &mut local, errors: 0 };
            let region = raw.spec.to_region_spec(&raw.metadata.name);
            checker.region(&region, "spec", &Defaults::detached());
        }
        keep_relevant(local, recovered.as_slice(), report);
    }
    out
}

/// Object names follow Kubernetes rules so the same file works as a custom resource.
fn check_name(doc: &Document, what: &str, name: &str, report: &mut Report) {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if valid {
        return;
    }
    let rule = "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
    let suggestion: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.') => c,
            _ => '-',
        })
        .collect();
    let suggestion = suggestion.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let hint = if suggestion.is_empty() || suggestion.len() > 253 {
        rule.to_string()
    } else {
        format!("{rule}, e.g. {suggestion:?}")
    };
    let message = if name.is_empty() {
        format!("{what} name is empty")
    } else {
        format!("{what} name {name:?} is not a valid object name")
    };
    report.push(doc.error("metadata.name", "invalid-name", message, Some(hint)));
}

/// What a malformed duration most likely means: `2 hours` -> `2h`, `1w` -> `7d`.
fn duration_suggestion(text: &str) -> Option<String> {
    let mut out = String::new();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, factor) = match rest[..unit_len].to_ascii_lowercase().as_str() {
            "ms" | "msec" | "millis" | "milliseconds" => ("ms", 1),
            "s" | "sec" | "secs" | "second" | "seconds" => ("s", 1),
            "m" | "min" | "mins" | "minute" | "minutes" => ("m", 1),
            "h" | "hr" | "hrs" | "hour" | "hours" => ("h", 1),
            "d" | "day" | "days" => ("d", 1),
            "w" | "wk" | "week" | "weeks" => ("d", 7),
            _ => return None,
        };
        rest = &rest[unit_len..];
        out.push_str(&format!("{}{unit}", number.checked_mul(factor)?));
    }
    (out != text && out.parse::<Span>().is_ok_and(|s| !s.is_zero())).then_some(out)
}

/// A check's plan-level limits as written; values out of range (reported where the check is
/// checked) read as their defaults.
fn written_limits(c: &CheckSpec) -> CheckLimits {
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

/// The last field name of a path: `spec.waves[2].bake` -> `bake`.
fn field_of(path: &str) -> &str {
    let end = path.rfind('[').filter(|&i| !path[i..].contains('.')).unwrap_or(path.len());
    let head = &path[..end];
    head.rsplit('.').next().unwrap_or(head)
}

/// Placeholders a health query may use: it covers every region at once.
const QUERY_VARS: [&str; 3] = ["service", "plan", "wave"];
/// Placeholders an HTTP health check URL may use: it is read per region.
const CHECK_URL_VARS: [&str; 4] = ["region", "service", "plan", "wave"];
/// Placeholders an actuator URL may use.
const ACTUATOR_URL_VARS: [&str; 3] = ["region", "service", "plan"];
/// Good URLs, for hints.
const ACTUATOR_URL_EXAMPLE: &str = "https://control.{{region}}.example.net/v1/services/{{service}}/traffic";
const CHECK_URL_EXAMPLE: &str = "https://metrics.{{region}}.example.net/health/{{service}}";
const PROMETHEUS_URL_EXAMPLE: &str = "http://prometheus.example.net:9090";

/// What a region inherits from its plan where it does not override it.
struct Defaults<'p> {
    steps: Vec<u32>,
    step_bake: Span,
    windows: Vec<Window>,
    on_failure: OnFailure,
    /// `None` when the plan is unknown: check names cannot be resolved then.
    checks: Option<PlanChecks<'p>>,
    actuator: Option<ActuatorSettings>,
    freezes: Vec<Freeze>,
}

impl Defaults<'_> {
    /// For a `Region` document whose plan is unknown.
    fn detached() -> Self {
        Defaults {
            steps: DEFAULT_STEPS.to_vec(),
            step_bake: DEFAULT_STEP_BAKE,
            windows: Vec::new(),
            on_failure: OnFailure::default(),
            checks: None,
            actuator: None,
            freezes: Vec::new(),
        }
    }
}

/// A plan's health checks as region overrides see them. A check with an error in its own
/// definition (e.g. no source) does not resolve, but it is still written: an override naming
/// it names a check that exists.
#[derive(Clone, Copy)]
struct PlanChecks<'p> {
    /// Every check as written under `spec.health.checks`, resolved or not.
    written: &'p [CheckSpec],
    /// The checks that resolved, aligned with `Health::checks` and with each region's limits.
    resolved: &'p [Check],
    /// For each resolved check, its index in `written` (and under `spec.health.checks`).
    written_index: &'p [usize],
}

/// Where a region's name is written, for diagnostics that point at it from elsewhere.
#[derive(Clone, Copy)]
struct Site<'d> {
    doc: &'d Document,
    /// `spec.regions[3].name`, or `metadata.name` for a `Region` document.
    from_document: bool,
    index: usize,
}

impl Site<'_> {
    fn name_path(&self) -> String {
        if self.from_document { "metadata.name".into() } else { format!("spec.regions[{}].name", self.index) }
    }

    fn at(&self) -> String {
        format!("{}:{}", self.doc.file, self.doc.locations.value(&self.name_path()).line)
    }
}

/// How a region came into the wave it is in, and where that is written.
struct Placement {
    wave: String,
    by: ChosenBy,
    path: String,
}

struct PlanChecker<'d, 'r> {
    /// The document diagnostics point into: the plan's, or a merged `Region` document's.
    doc: &'d Document,
    report: &'r mut Report,
    errors: usize,
}

impl<'d> PlanChecker<'d, '_> {
    /// Run `f` with diagnostics pointing into `doc`.
    fn in_doc<T>(&mut self, doc: &'d Document, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.doc, doc);
        let out = f(self);
        self.doc = saved;
        out
    }

    fn error(&mut self, path: &str, code: &'static str, message: String, hint: Option<String>) {
        self.errors += 1;
        self.report.push(self.doc.error(path, code, message, hint));
    }

    fn warn(&mut self, path: &str, code: &'static str, message: String, hint: Option<String>) {
        self.report.push(self.doc.warning(path, code, message, hint));
    }

    fn line_of(&self, path: &str) -> usize {
        self.doc.locations.value(path).line
    }

    /// A duration field. Zero is never a useful value for any of them.
    fn span(&mut self, path: &str, text: Option<&str>, default: Span) -> Span {
        let Some(text) = text else { return default };
        let field = field_of(path);
        const FORMAT: &str = "write durations like 90s, 5m or 1h30m";
        if text.trim_start().starts_with('-') {
            self.error(
                path,
                "negative-duration",
                format!("{field} {text:?} is negative"),
                Some("use a positive duration such as 5m".into()),
            );
            return default;
        }
        match text.parse::<Span>() {
            Ok(span) if span.is_zero() => {
                self.error(
                    path,
                    "zero-duration",
                    format!("{field} {text:?} must be longer than zero"),
                    Some("use a positive duration such as 5m".into()),
                );
                default
            }
            Ok(span) => span,
            Err(e) => {
                let message = match &e {
                    SpanError::Empty => format!("{field} is empty"),
                    SpanError::MissingUnit(..) => format!("{field} {text:?} has no unit"),
                    SpanError::UnknownUnit(_, unit) => format!("{field} {text:?} has unknown unit {unit:?}"),
                    SpanError::NotANumber(_) => format!("{field} {text:?} is not a duration"),
                    SpanError::Overflow(_) => format!("{field} {text:?} is too long"),
                };
                let hint = match (e, duration_suggestion(text)) {
                    (_, Some(better)) => format!("did you mean {better}?"),
                    (SpanError::MissingUnit(_, n), None) => format!("write {n}s, {n}m or {n}h"),
                    (SpanError::Overflow(_), None) => "use a duration of at most a few days".into(),
                    (SpanError::UnknownUnit(..), None) => format!("units are ms, s, m, h and d; {FORMAT}"),
                    _ => FORMAT.into(),
                };
                self.error(path, "invalid-duration", message, Some(hint));
                default
            }
        }
    }

    /// Names must be present and unique; returns name -> index of its first definition.
    fn names<'n>(&mut self, what: &str, list: &str, names: impl Iterator<Item = &'n str>) -> HashMap<&'n str, usize> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = format!("{list}[{i}].name");
            if name.trim().is_empty() {
                self.error(
                    &path,
                    "empty-name",
                    format!("{what} name is empty"),
                    Some(format!("give the {what} a name")),
                );
            } else if let Some(first) = seen.get(name) {
                let first_line = self.line_of(&format!("{list}[{first}].name"));
                self.error(
                    &path,
                    "duplicate-name",
                    format!("duplicate {what} {name:?}"),
                    Some(format!("it is first defined on line {first_line}; rename or remove one of them")),
                );
            } else {
                seen.insert(name, i);
            }
        }
        seen
    }

    fn check(&mut self, raw: &'d RolloutPlan, merged: &[RegionDocument<'d>]) -> Option<Plan> {
        let spec = &raw.spec;
        if spec.services.is_empty() {
            self.error(
                "spec.services",
                "empty-services",
                "plan has no services".into(),
                Some("list at least one, e.g. services: [{name: signin}]".into()),
            );
        }
        if spec.regions.is_empty() {
            self.error(
                "spec.regions",
                "empty-regions",
                "plan has no regions".into(),
                Some("list at least one, e.g. regions: [{name: us-east, timezone: America/New_York}]".into()),
            );
        }
        if spec.waves.is_empty() {
            self.error(
                "spec.waves",
                "empty-waves",
                "plan has no waves".into(),
                Some("list at least one, e.g. waves: [{name: canary, regions: [us-east]}]".into()),
            );
        }
        let service_idx = self.names("service", "spec.services", spec.services.iter().map(|s| s.name.as_str()));
        let mut region_idx = self.names("region", "spec.regions", spec.regions.iter().map(|r| r.name.as_str()));
        self.names("wave", "spec.waves", spec.waves.iter().map(|w| w.name.as_str()));

        let (services, service_order) = self.services(spec, &service_idx);

        // Plan-wide settings.
        let steps = self.steps("spec.steps", spec.steps.as_deref());
        if spec.steps.as_deref().is_some_and(|s| s == steps) {
            self.step_risks("spec.steps", &steps);
        }
        let step_bake = self.span("spec.stepBake", spec.step_bake.as_deref(), DEFAULT_STEP_BAKE);
        let windows = self.windows("spec.windows", &spec.windows);
        let on_failure = spec.on_failure.unwrap_or_default();
        // `check_index[k]` is where `health.checks[k]` is written: checks that do not
        // resolve are left out, so the two differ after the first of those.
        let (health, check_index) = self.health(spec.health.as_ref());
        let actuator = spec.actuator.as_ref().and_then(|a| self.actuator("spec.actuator", a));
        let freezes = self.freezes("spec.freezes", &spec.freezes, Origin::Plan);
        let defaults = Defaults {
            steps: steps.clone(),
            step_bake,
            windows,
            on_failure,
            checks: Some(PlanChecks {
                written: spec.health.as_ref().map(|h| h.checks.as_slice()).unwrap_or_default(),
                resolved: &health.checks,
                written_index: &check_index,
            }),
            actuator: actuator.clone(),
            freezes,
        };

        // Regions: the plan's own, then those of the Region documents naming it, in order.
        let mut regions = Vec::new();
        let mut sites = Vec::new();
        for (i, r) in spec.regions.iter().enumerate() {
            regions.push(self.region(r, &format!("spec.regions[{i}]"), &defaults));
            sites.push(Site { doc: self.doc, from_document: false, index: i });
        }
        for m in merged {
            let name = m.raw.metadata.name.as_str();
            let entry = m.raw.spec.to_region_spec(name);
            let region = self.in_doc(m.doc, |c| c.region(&entry, "spec", &defaults));
            if let Some(&first) = region_idx.get(name) {
                let first = sites[first].at();
                self.in_doc(m.doc, |c| {
                    c.error(
                        "metadata.name",
                        "duplicate-region",
                        format!("region {name:?} of plan {:?} is defined twice", raw.metadata.name),
                        Some(format!(
                            "it is first defined at {first}; define each region once, in the plan's regions \
                             or in one Region document"
                        )),
                    )
                });
                continue;
            }
            if name.trim().is_empty() {
                continue; // reported as an invalid name
            }
            region_idx.insert(name, regions.len());
            sites.push(Site { doc: m.doc, from_document: true, index: regions.len() });
            regions.push(region);
        }

        let waves = self.waves(spec, &region_idx, &mut regions, &sites);
        self.risks(raw, &waves);

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
            actuator,
            region_lookup: HashMap::new(),
            service_lookup: HashMap::new(),
        };
        plan.index_names();
        Some(plan)
    }

    /// Services, their `after` dependencies, and the dependency order.
    fn services(&mut self, spec: &RolloutPlanSpec, index: &HashMap<&str, usize>) -> (Vec<Service>, Vec<usize>) {
        let mut services = Vec::new();
        for (i, s) in spec.services.iter().enumerate() {
            let mut after = Vec::new();
            for (j, dep) in s.after.iter().enumerate() {
                let path = format!("spec.services[{i}].after[{j}]");
                match index.get(dep.as_str()) {
                    Some(&d) if d == i => self.error(
                        &path,
                        "self-dependency",
                        format!("service {:?} waits for itself", s.name),
                        Some("remove it from its own after list".into()),
                    ),
                    Some(&d) if after.contains(&d) => self.error(
                        &path,
                        "duplicate-dependency",
                        format!("service {:?} lists {dep:?} twice in after", s.name),
                        Some("remove the repeat".into()),
                    ),
                    Some(&d) => after.push(d),
                    None => {
                        let hint = did_you_mean(dep, index.keys().copied())
                            .or_else(|| Some(format!("declare {dep:?} under spec.services, or remove it from after")));
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
            services.push(Service { name: s.name.clone(), after });
        }
        let (order, cycles) = topo_order(&services);
        for cycle in cycles {
            // Point at the entry of the first service in the cycle that names the next one.
            let (a, b) = (cycle[0], cycle[1 % cycle.len()]);
            let j = spec.services[a].after.iter().position(|n| *n == services[b].name).unwrap_or(0);
            let mut names: Vec<&str> = cycle.iter().map(|&i| services[i].name.as_str()).collect();
            names.push(names[0]);
            self.error(
                &format!("spec.services[{a}].after[{j}]"),
                "dependency-cycle",
                format!("services wait for each other in a cycle: {}", names.join(" after ")),
                Some("none of them could ever start; remove one of these after entries".into()),
            );
        }
        (services, order)
    }

    fn waves(
        &mut self,
        spec: &RolloutPlanSpec,
        region_idx: &HashMap<&str, usize>,
        regions: &mut [Region],
        sites: &[Site<'d>],
    ) -> Vec<Wave> {
        let mut waves = Vec::new();
        let mut placed: HashMap<usize, Placement> = HashMap::new();
        // Declared regions that an unknown name in a wave most likely meant.
        let mut meant: HashSet<&str> = HashSet::new();
        // A selector with errors matched nothing; regions with labels may be meant for it.
        let mut broken_selector = false;
        // A region counts once, at its first definition (repeats are reported as duplicates).
        let first_definition: Vec<bool> =
            regions.iter().enumerate().map(|(r, region)| region_idx.get(region.name.as_str()) == Some(&r)).collect();
        for (w, raw_wave) in spec.waves.iter().enumerate() {
            let base = format!("spec.waves[{w}]");
            if raw_wave.regions.is_empty() && raw_wave.selector.is_none() {
                self.error(
                    &format!("{base}.regions"),
                    "empty-wave",
                    format!("wave {:?} has no regions", raw_wave.name),
                    Some("list its regions, select them by label with a selector, or remove the wave".into()),
                );
            }
            let mut members = Vec::new();
            let mut chosen_by = Vec::new();
            for (j, name) in raw_wave.regions.iter().enumerate() {
                let path = format!("{base}.regions[{j}]");
                let Some(&r) = region_idx.get(name.as_str()) else {
                    let guess = closest(name, region_idx.keys().copied());
                    let hint = match guess {
                        Some(g) => {
                            meant.insert(g);
                            format!("did you mean {g:?}?")
                        }
                        None => format!(
                            "declare {name:?} under spec.regions or in a Region document, or remove it from this wave"
                        ),
                    };
                    self.error(
                        &path,
                        "unknown-region",
                        format!("unknown region {name:?} in wave {:?}", raw_wave.name),
                        Some(hint),
                    );
                    continue;
                };
                if let Some(first) = placed.get(&r) {
                    let line = self.line_of(&first.path);
                    let (message, hint) = match &first.by {
                        ChosenBy::Name if first.wave == raw_wave.name => (
                            format!("region {name:?} is listed twice in wave {:?}", raw_wave.name),
                            format!("it is first listed on line {line}; remove the repeat"),
                        ),
                        ChosenBy::Name => (
                            format!(
                                "region {name:?} is in wave {:?} and again in wave {:?}",
                                first.wave, raw_wave.name
                            ),
                            format!("a region belongs to exactly one wave; remove one (the other is on line {line})"),
                        ),
                        ChosenBy::Selector(sel) => (
                            format!(
                                "region {name:?} is in wave {:?} by its selector {sel} and again in wave {:?} by name",
                                first.wave, raw_wave.name
                            ),
                            format!(
                                "a region belongs to exactly one wave; remove it here, or exclude it from that \
                                 selector (line {line}) with matchExpressions: [{{key: ..., operator: NotIn, values: [...]}}]"
                            ),
                        ),
                    };
                    self.error(&path, "region-in-two-waves", message, Some(hint));
                    continue;
                }
                placed.insert(r, Placement { wave: raw_wave.name.clone(), by: ChosenBy::Name, path });
                regions[r].wave = w;
                members.push(r);
                chosen_by.push(ChosenBy::Name);
            }
            if let Some(selector) = &raw_wave.selector {
                let path = format!("{base}.selector");
                let valid = self.selector(&path, &raw_wave.name, selector);
                broken_selector |= !valid;
                if valid {
                    let text = describe_selector(selector);
                    let mut matched = 0;
                    for r in 0..regions.len() {
                        if !first_definition[r] || !selector_matches(selector, &regions[r].labels) {
                            continue;
                        }
                        matched += 1;
                        if members.contains(&r) {
                            continue; // also listed by name in this wave: once is enough
                        }
                        if let Some(first) = placed.get(&r) {
                            let line = self.line_of(&first.path);
                            let name = &regions[r].name;
                            self.error(
                                &path,
                                "region-in-two-waves",
                                format!(
                                    "selector {text} of wave {:?} matches region {name:?}, which is already in wave {:?} {}",
                                    raw_wave.name, first.wave, first.by
                                ),
                                Some(format!(
                                    "a region belongs to exactly one wave; exclude it here, e.g. with matchExpressions: \
                                     [{{key: ..., operator: NotIn, values: [...]}}], or take it out of wave {:?} (line {line})",
                                    first.wave
                                )),
                            );
                            continue;
                        }
                        let by = ChosenBy::Selector(text.clone());
                        placed.insert(r, Placement { wave: raw_wave.name.clone(), by: by.clone(), path: path.clone() });
                        regions[r].wave = w;
                        members.push(r);
                        chosen_by.push(by);
                    }
                    if matched == 0 {
                        let mut in_use: Vec<String> =
                            regions.iter().flat_map(|r| r.labels.iter().map(|(k, v)| format!("{k}={v}"))).collect();
                        in_use.sort();
                        in_use.dedup();
                        let hint = if in_use.is_empty() {
                            "no region has labels; give regions labels such as labels: {continent: asia}".to_string()
                        } else {
                            format!("labels in use: {}", in_use.join(", "))
                        };
                        self.warn(
                            &path,
                            "selector-matches-nothing",
                            format!("selector {text} of wave {:?} matches no region", raw_wave.name),
                            Some(hint),
                        );
                    }
                }
            }
            let max_parallel = match raw_wave.max_parallel {
                None => members.len().max(1),
                Some(n) if n <= 0 => {
                    self.error(
                        &format!("{base}.maxParallel"),
                        "invalid-max-parallel",
                        format!("maxParallel of wave {:?} is {n}; it must be at least 1", raw_wave.name),
                        Some("leave maxParallel out to run every region of the wave at once".into()),
                    );
                    1
                }
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(members.len().max(1)),
            };
            let bake = self.span(&format!("{base}.bake"), raw_wave.bake.as_deref(), Span::ZERO);
            self.flags(&format!("{base}.approvals"), &raw_wave.approvals);
            waves.push(Wave {
                name: raw_wave.name.clone(),
                regions: members,
                chosen_by,
                max_parallel,
                bake,
                approvals: raw_wave.approvals.clone(),
            });
        }
        for (r, region) in regions.iter().enumerate() {
            // A misspelt listing already says "did you mean" this region.
            if !first_definition[r]
                || placed.contains_key(&r)
                || meant.contains(region.name.as_str())
                || (broken_selector && !region.labels.is_empty())
            {
                continue;
            }
            let site = sites[r];
            let hint = if region.labels.is_empty() {
                "add it to the regions of a wave, or remove it".to_string()
            } else {
                let labels: Vec<String> = region.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "no wave's selector matches its labels ({}); add it to the regions of a wave, or fix its labels",
                    labels.join(", ")
                )
            };
            let message = format!("region {:?} is in no wave", region.name);
            self.in_doc(site.doc, |c| c.error(&site.name_path(), "region-in-no-wave", message, Some(hint)));
        }
        waves
    }

    /// A wave's selector: `true` when it can be matched.
    fn selector(&mut self, path: &str, wave: &str, selector: &LabelSelector) -> bool {
        let before = self.errors;
        if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
            self.error(
                path,
                "empty-selector",
                format!("selector of wave {wave:?} has neither matchLabels nor matchExpressions"),
                Some(
                    "an empty selector would match every region; say which, e.g. matchLabels: {continent: asia}".into(),
                ),
            );
        }
        for (key, value) in &selector.match_labels {
            self.label(&format!("{path}.matchLabels.{key}"), key, value);
        }
        for (j, e) in selector.match_expressions.iter().enumerate() {
            let base = format!("{path}.matchExpressions[{j}]");
            if let Some(problem) = label_key_problem(&e.key) {
                self.error(
                    &format!("{base}.key"),
                    "invalid-label",
                    format!("label key {:?} {problem}", e.key),
                    Some(LABEL_RULE.into()),
                );
            }
            let needs_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            let operator = operator_name(e.operator);
            if needs_values && e.values.is_empty() {
                self.error(
                    &base,
                    "selector-values",
                    format!("operator {operator} needs values"),
                    Some(format!(
                        "list the label values, e.g. values: [asia], or use {}",
                        if e.operator == SelectorOperator::In { "Exists" } else { "DoesNotExist" }
                    )),
                );
            } else if !needs_values && !e.values.is_empty() {
                self.error(
                    &format!("{base}.values"),
                    "selector-values",
                    format!("operator {operator} takes no values"),
                    Some(format!(
                        "remove values, or use {}",
                        if e.operator == SelectorOperator::Exists { "In" } else { "NotIn" }
                    )),
                );
            }
            for (k, v) in e.values.iter().enumerate() {
                if let Some(problem) = label_value_problem(v) {
                    self.error(
                        &format!("{base}.values[{k}]"),
                        "invalid-label",
                        format!("label value {v:?} {problem}"),
                        Some(LABEL_RULE.into()),
                    );
                }
            }
        }
        self.errors == before
    }

    /// A region's labels, or a selector's `matchLabels`.
    fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (key, value) in labels {
            self.label(&format!("{path}.{key}"), key, value);
        }
    }

    fn label(&mut self, path: &str, key: &str, value: &str) {
        if let Some(problem) = label_key_problem(key) {
            self.error(path, "invalid-label", format!("label key {key:?} {problem}"), Some(LABEL_RULE.into()));
        }
        if let Some(problem) = label_value_problem(value) {
            self.error(
                path,
                "invalid-label",
                format!("value {value:?} of label {key:?} {problem}"),
                Some(LABEL_RULE.into()),
            );
        }
    }

    /// One region entry (of the plan, or of a `Region` document with `base` = `spec`),
    /// resolved against what it inherits.
    fn region(&mut self, r: &RegionSpec, base: &str, d: &Defaults<'_>) -> Region {
        let from_document = base == "spec";
        let name_path = if from_document { "metadata.name".to_string() } else { format!("{base}.name") };
        let timezone = match r.timezone.as_deref() {
            None => Tz::UTC,
            Some(text) => match text.parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    self.unknown_timezone(&format!("{base}.timezone"), &r.name, text);
                    Tz::UTC
                }
            },
        };
        self.flags(&format!("{base}.approvals"), &r.approvals);
        self.labels(&format!("{base}.labels"), &r.labels);
        let mut origins = SettingOrigins::default();
        let steps = match r.steps.as_deref() {
            Some(raw) => {
                origins.steps = Origin::Region;
                let steps = self.steps(&format!("{base}.steps"), Some(raw));
                if steps == raw {
                    self.step_risks(&format!("{base}.steps"), &steps);
                }
                steps
            }
            None => d.steps.clone(),
        };
        let step_bake = match r.step_bake.as_deref() {
            Some(text) => {
                origins.step_bake = Origin::Region;
                self.span(&format!("{base}.stepBake"), Some(text), d.step_bake)
            }
            None => d.step_bake,
        };
        let windows = match &r.windows {
            Some(raw) => {
                origins.windows = Origin::Region;
                self.windows(&format!("{base}.windows"), raw)
            }
            None => d.windows.clone(),
        };
        let on_failure = match r.on_failure {
            Some(policy) => {
                origins.on_failure = Origin::Region;
                policy
            }
            None => d.on_failure,
        };
        let actuator = match &r.actuator {
            Some(a) => {
                origins.actuator = Origin::Region;
                self.actuator(&format!("{base}.actuator"), a)
            }
            None => d.actuator.clone(),
        };
        let (checks, check_origins) = self.check_overrides(r, base, d.checks);
        origins.checks = check_origins;
        let mut freezes = d.freezes.clone();
        freezes.extend(self.freezes(&format!("{base}.freezes"), &r.freezes, Origin::Region));
        let defined_at = format!("{}:{}", self.doc.file, self.line_of(&name_path));
        Region {
            name: r.name.clone(),
            timezone,
            approvals: r.approvals.clone(),
            wave: usize::MAX,
            labels: r.labels.clone(),
            defined_at,
            settings: RegionSettings { steps, step_bake, windows, on_failure, checks, actuator, freezes, origins },
        }
    }

    /// A region's `noData` and `checks` over the plan's check limits, field by field.
    /// `plan_checks` is `None` when the plan is unknown.
    fn check_overrides(
        &mut self,
        r: &RegionSpec,
        base: &str,
        plan_checks: Option<PlanChecks<'_>>,
    ) -> (Vec<CheckLimits>, Vec<CheckOrigins>) {
        let plan_known = plan_checks.is_some();
        let PlanChecks { written, resolved, written_index } =
            plan_checks.unwrap_or(PlanChecks { written: &[], resolved: &[], written_index: &[] });
        let mut limits: Vec<CheckLimits> = resolved.iter().map(|c| c.limits.clone()).collect();
        let mut origins = vec![CheckOrigins::default(); limits.len()];
        if let Some(policy) = r.no_data {
            for (l, o) in limits.iter_mut().zip(origins.iter_mut()) {
                l.no_data = policy;
                o.no_data = Origin::Region;
            }
            // It would apply to every check, and there is none: an override that changes nothing.
            if plan_known && written.is_empty() {
                self.warn(
                    &format!("{base}.noData"),
                    "empty-override",
                    format!(
                        "region {:?} sets noData, but the plan has no health checks, so it changes nothing",
                        r.name
                    ),
                    Some("add checks under spec.health.checks, or remove noData".into()),
                );
            }
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (j, c) in r.checks.iter().enumerate() {
            let path = format!("{base}.checks[{j}]");
            if !plan_known {
                continue; // nothing to check the name against
            }
            // By the checks as written: one with an error of its own still exists.
            let Some(w) = written.iter().position(|p| p.name == c.name) else {
                let names: Vec<&str> = written.iter().map(|p| p.name.as_str()).collect();
                let hint = did_you_mean(&c.name, names.iter().copied()).unwrap_or_else(|| match names.as_slice() {
                    [] => "the plan has no health checks to override; add them under spec.health.checks".into(),
                    known => format!("the plan's checks are: {}", known.join(", ")),
                });
                self.error(
                    &format!("{path}.name"),
                    "unknown-check",
                    format!("region {:?} overrides unknown check {:?}", r.name, c.name),
                    Some(hint),
                );
                continue;
            };
            if let Some(&first) = seen.get(&w) {
                let line = self.line_of(&format!("{base}.checks[{first}]"));
                self.error(
                    &format!("{path}.name"),
                    "duplicate-name",
                    format!("region {:?} overrides check {:?} twice", r.name, c.name),
                    Some(format!("it is first overridden on line {line}; merge the two")),
                );
                continue;
            }
            seen.insert(w, j);
            if c.min.is_none() && c.max.is_none() && c.failure_limit.is_none() && c.no_data.is_none() {
                self.warn(
                    &path,
                    "empty-override",
                    format!("override of check {:?} in region {:?} changes nothing", c.name, r.name),
                    Some("set min, max, failureLimit or noData, or remove it".into()),
                );
            }
            // A check that did not resolve has its error where it is written; its override
            // is still checked, against the limits as written, and then set aside.
            let mut unresolved = (written_limits(&written[w]), CheckOrigins::default());
            let (l, o) = match written_index.iter().position(|&i| i == w) {
                Some(k) => (&mut limits[k], &mut origins[k]),
                None => (&mut unresolved.0, &mut unresolved.1),
            };
            for (field, value, slot, origin) in
                [("min", c.min, &mut l.min, &mut o.min), ("max", c.max, &mut l.max, &mut o.max)]
            {
                let Some(v) = value else { continue };
                if v.is_finite() {
                    *slot = Some(v);
                    *origin = Origin::Region;
                } else {
                    self.errors += 1;
                    self.report.push(self.doc.error(
                        &format!("{path}.{field}"),
                        "non-finite-threshold",
                        format!("{field} of check {:?} in region {:?} must be a finite number", c.name, r.name),
                        Some(format!("leave {field} out to keep the plan's {field}")),
                    ));
                }
            }
            match c.failure_limit {
                Some(n) if n <= 0 => self.error(
                    &format!("{path}.failureLimit"),
                    "invalid-failure-limit",
                    format!("failureLimit of check {:?} in region {:?} is {n}; it must be at least 1", c.name, r.name),
                    Some("1 fails the region on the first failing evaluation".into()),
                ),
                Some(n) => {
                    l.failure_limit = u32::try_from(n).unwrap_or(u32::MAX);
                    o.failure_limit = Origin::Region;
                }
                None => {}
            }
            if let Some(policy) = c.no_data {
                l.no_data = policy;
                o.no_data = Origin::Region;
            }
            if let (Some(min), Some(max)) = (l.min, l.max)
                && min > max
            {
                let from = |origin: Origin| if origin == Origin::Region { "this region" } else { "the plan" };
                self.error(
                    &path,
                    "min-above-max",
                    format!(
                        "in region {:?}, check {:?} has min {min} (from {}) above max {max} (from {}); no value could be healthy",
                        r.name,
                        c.name,
                        from(o.min),
                        from(o.max)
                    ),
                    Some("override the other bound too, or fix one".into()),
                );
            }
        }
        (limits, origins)
    }

    /// Calendar freezes of the plan or of a region.
    fn freezes(&mut self, path: &str, raw: &[FreezeSpec], origin: Origin) -> Vec<Freeze> {
        let mut out = Vec::new();
        for (i, f) in raw.iter().enumerate() {
            let base = format!("{path}[{i}]");
            let before = self.errors;
            if f.reason.trim().is_empty() {
                self.error(
                    &format!("{base}.reason"),
                    "empty-reason",
                    "freeze has no reason".into(),
                    Some("say why, e.g. reason: Golden Week; it is shown as the blocked reason".into()),
                );
            }
            let mut date = |field: &str, text: &str| match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
                Ok(d) => Some(d),
                Err(_) => {
                    let hint = if text.len() > 10 && NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").is_ok() {
                        format!(
                            "a freeze covers whole local days: write {}, and add daily: {{from: \"HH:MM\", to: \"HH:MM\"}} for hours",
                            &text[..10]
                        )
                    } else {
                        "write dates as YYYY-MM-DD, e.g. 2026-04-29".into()
                    };
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-date",
                        format!("freeze {field} {text:?} is not a date"),
                        Some(hint),
                    );
                    None
                }
            };
            let (from, to) = (date("from", &f.from), date("to", &f.to));
            if let (Some(from), Some(to)) = (from, to)
                && to < from
            {
                self.error(
                    &format!("{base}.to"),
                    "freeze-ends-before-start",
                    format!("freeze ends on {to}, before it starts on {from}"),
                    Some("to is the last frozen day, inclusive; it may equal from".into()),
                );
            }
            let daily = f.daily.as_ref().and_then(|d| {
                let mut clock = |field: &str, text: &str| match parse_clock(text) {
                    Some(1440) if field == "from" => {
                        self.error(
                            &format!("{base}.daily.from"),
                            "invalid-time",
                            "a daily freeze cannot start at 24:00".into(),
                            Some("use 00:00".into()),
                        );
                        None
                    }
                    Some(m) => Some(m),
                    None => {
                        self.error(
                            &format!("{base}.daily.{field}"),
                            "invalid-time",
                            format!("daily {field} {text:?} is not a time of day"),
                            Some("write local times as HH:MM from 00:00 to 24:00, e.g. 09:00".into()),
                        );
                        None
                    }
                };
                let (from, to) = (clock("from", &d.from)?, clock("to", &d.to)?);
                if from == to % 1440 && !(from == 0 && to == 1440) {
                    self.error(
                        &format!("{base}.daily"),
                        "empty-window",
                        format!("daily range from {} to {} is empty", d.from, d.to),
                        Some("leave daily out to freeze whole days".into()),
                    );
                    return None;
                }
                Some(DailyRange { from, to: if to == 1440 && from == 0 { 1440 } else { to % 1440 } })
            });
            if self.errors > before {
                continue;
            }
            let (Some(from), Some(to)) = (from, to) else { continue };
            out.push(Freeze { reason: f.reason.trim().to_string(), from, to, daily, origin });
        }
        out
    }

    fn unknown_timezone(&mut self, path: &str, region: &str, text: &str) {
        const EXAMPLE: &str = "use an IANA time zone name such as Europe/Berlin or Asia/Tokyo";
        if text.trim().is_empty() {
            self.error(
                path,
                "unknown-timezone",
                format!("time zone of region {region:?} is empty"),
                Some(format!("{EXAMPLE}, or leave timezone out for UTC")),
            );
            return;
        }
        // Abbreviations are ambiguous and ignore daylight saving; suggest the usual zone.
        let usual = match text.to_ascii_uppercase().as_str() {
            "JST" => Some("Asia/Tokyo"),
            "KST" => Some("Asia/Seoul"),
            "HKT" => Some("Asia/Hong_Kong"),
            "SGT" => Some("Asia/Singapore"),
            "IST" => Some("Asia/Kolkata"),
            "AEST" | "AEDT" => Some("Australia/Sydney"),
            "BST" => Some("Europe/London"),
            "CEST" => Some("Europe/Berlin"),
            "PST" | "PDT" => Some("America/Los_Angeles"),
            "CDT" => Some("America/Chicago"),
            "EDT" => Some("America/New_York"),
            "BRT" => Some("America/Sao_Paulo"),
            _ => None,
        };
        let hint = match usual {
            Some(zone) => format!("abbreviations are ambiguous and ignore daylight saving; did you mean {zone:?}?"),
            None => did_you_mean(text, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name())).unwrap_or(EXAMPLE.into()),
        };
        self.error(path, "unknown-timezone", format!("unknown time zone {text:?} for region {region:?}"), Some(hint));
    }

    /// Approval flags named by a region or a wave.
    fn flags(&mut self, path: &str, flags: &[String]) {
        for (j, flag) in flags.iter().enumerate() {
            if flag.trim().is_empty() {
                self.error(
                    &format!("{path}[{j}]"),
                    "empty-flag",
                    "approval flag is empty".into(),
                    Some("name the flag an Approval grants, e.g. jp-regulator".into()),
                );
            } else if flags[..j].contains(flag) {
                self.error(
                    &format!("{path}[{j}]"),
                    "duplicate-flag",
                    format!("approval flag {flag:?} is listed twice"),
                    Some("remove the repeat".into()),
                );
            }
        }
    }

    fn steps(&mut self, path: &str, raw: Option<&[u32]>) -> Vec<u32> {
        let Some(steps) = raw else { return DEFAULT_STEPS.to_vec() };
        if steps.is_empty() {
            self.error(
                path,
                "empty-steps",
                "steps is empty".into(),
                Some("list traffic percentages ending at 100, e.g. [1, 10, 50, 100], or leave steps out".into()),
            );
            return DEFAULT_STEPS.to_vec();
        }
        let before = self.errors;
        let mut last_flagged = false;
        for (i, &step) in steps.iter().enumerate() {
            let p = format!("{path}[{i}]");
            last_flagged = true;
            if step == 0 || step > 100 {
                let hint = if step == 0 {
                    "a unit at 0 % has no traffic; start at 1 or more"
                } else {
                    "steps are traffic percentages; the last one is 100"
                };
                self.error(
                    &p,
                    "step-out-of-range",
                    format!("step {step} is not a percentage from 1 to 100"),
                    Some(hint.into()),
                );
            } else if i > 0 && step <= steps[i - 1] {
                self.error(
                    &p,
                    "steps-not-increasing",
                    format!("step {step} does not rise above the step before it ({})", steps[i - 1]),
                    Some("steps must be strictly increasing, e.g. [1, 10, 50, 100]".into()),
                );
            } else {
                last_flagged = false;
            }
        }
        if let Some(&last) = steps.last()
            && last != 100
            && !last_flagged
        {
            self.error(
                &format!("{path}[{}]", steps.len() - 1),
                "steps-not-ending-at-100",
                format!("steps end at {last}, not 100"),
                Some("append 100: a rollout is done only at full traffic".into()),
            );
        }
        if self.errors > before { DEFAULT_STEPS.to_vec() } else { steps.to_vec() }
    }

    fn windows(&mut self, path: &str, raw: &[WindowSpec]) -> Vec<Window> {
        let mut out = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let base = format!("{path}[{i}]");
            let mut days = [w.days.is_empty(); 7];
            for (j, day) in w.days.iter().enumerate() {
                match parse_day(day) {
                    Some(d) if days[d] => self.error(
                        &format!("{base}.days[{j}]"),
                        "duplicate-day",
                        format!("day {day:?} is listed twice in this window"),
                        Some("remove the repeat".into()),
                    ),
                    Some(d) => days[d] = true,
                    None => {
                        let hint = closest(day, DAY_NAMES)
                            .or_else(|| day.get(..3).and_then(|prefix| closest(prefix, DAY_NAMES)))
                            .map(|d| format!("did you mean {d:?}?"))
                            .unwrap_or_else(|| format!("use {}", DAY_NAMES.join(", ")));
                        self.error(
                            &format!("{base}.days[{j}]"),
                            "invalid-day",
                            format!("unknown day {day:?}"),
                            Some(hint),
                        )
                    }
                }
            }
            let mut clock = |field: &str, text: &str| match parse_clock(text) {
                Some(1440) if field == "from" => {
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
                    let hint = match text.split_once(':') {
                        Some((h, m)) if h.len() == 1 && m.len() == 2 => format!("write it as \"0{h}:{m}\""),
                        _ => "write local times as HH:MM from 00:00 to 24:00, e.g. 09:00 or 17:30".into(),
                    };
                    self.error(
                        &format!("{base}.{field}"),
                        "invalid-time",
                        format!("window {field} {text:?} is not a time of day"),
                        Some(hint),
                    );
                    None
                }
            };
            let (from, to) = (clock("from", &w.from), clock("to", &w.to));
            let (Some(from), Some(to)) = (from, to) else { continue };
            if from == to {
                self.error(
                    &base,
                    "empty-window",
                    format!("window from {} to {} is empty", w.from, w.to),
                    Some("a window open all day runs from 00:00 to 24:00".into()),
                );
                continue;
            }
            out.push(Window { days, from, to: if to == 1440 && from == 0 { 1440 } else { to % 1440 } });
        }
        out
    }

    /// The plan's health section, and for each check that resolved the index it is written
    /// at under `spec.health.checks` (a check with an error in its source is left out).
    fn health(&mut self, raw: Option<&HealthSpec>) -> (Health, Vec<usize>) {
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

    /// Placeholders in a query or URL; `what` names it in messages. `true` when they are
    /// all allowed and closed.
    fn template(&mut self, path: &str, what: &str, template: &str, allowed: &[&str]) -> bool {
        if template.trim().is_empty() {
            let hint = if what == "query" { "write a PromQL query" } else { "write the URL" };
            self.error(path, "empty-template", format!("{what} is empty"), Some(hint.into()));
            return false;
        }
        let before = self.errors;
        let listed = allowed.iter().map(|a| format!("{{{{{a}}}}}")).collect::<Vec<_>>().join(", ");
        for name in template_placeholders(template) {
            if allowed.contains(&name.as_str()) {
                continue;
            }
            let hint = if name == "region" {
                format!("a {what} covers every region at once and is split by the region label; use only {listed}")
            } else if let Some(guess) = closest(&name, allowed.iter().copied()) {
                format!("did you mean {{{{{guess}}}}}?")
            } else {
                format!("placeholders allowed here: {listed}")
            };
            self.error(
                path,
                "unknown-placeholder",
                format!("unknown placeholder {{{{{name}}}}} in {what}"),
                Some(hint),
            );
        }
        // An opening {{ with no closing }} is sent to the server as written.
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            match rest[start + 2..].find("}}") {
                Some(end) => rest = &rest[start + 2 + end + 2..],
                None => {
                    self.error(
                        path,
                        "unclosed-placeholder",
                        format!("placeholder in {what} opens with {{{{ but never closes"),
                        Some("close it with }}, e.g. {{service}}".into()),
                    );
                    break;
                }
            }
        }
        self.errors == before
    }

    /// A templated URL whose placeholders were checked: with sample names filled in, it must
    /// be an absolute http(s) URL. `what` names it in messages; `example` shows a good one.
    fn url_template(&mut self, path: &str, what: &str, text: &str, example: &str) -> Option<UrlTemplate> {
        match UrlTemplate::parse(text) {
            Ok(template) => Some(template),
            Err(e) => {
                self.url_error(path, what, text, e, example);
                None
            }
        }
    }

    /// A URL without placeholders (a Prometheus server): an absolute http(s) URL.
    fn base_url(&mut self, path: &str, what: &str, text: &str, example: &str) -> Option<Url> {
        match parse_http_url(text) {
            Ok(url) => Some(url),
            Err(e) => {
                self.url_error(path, what, text, e, example);
                None
            }
        }
    }

    fn url_error(&mut self, path: &str, what: &str, text: &str, e: UrlError, example: &str) {
        let (message, hint) = match e {
            UrlError::Scheme { scheme } => (
                format!("{what} {text:?} uses unsupported scheme {scheme:?}"),
                format!("meridian calls only http and https; use e.g. {example}"),
            ),
            UrlError::Unparsable { reason } => (
                format!("{what} {text:?} is not a valid url: {reason}"),
                format!("write an absolute http:// or https:// url, e.g. {example}"),
            ),
        };
        self.error(path, "invalid-url", message, Some(hint));
    }

    /// An `http` check source: its URL, and how the value is found in the body.
    fn http_check_source(&mut self, base: &str, check: &str, h: &HttpCheckSpec) -> Option<CheckSource> {
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
    fn check_spec(&mut self, i: usize, c: &CheckSpec) -> Option<Check> {
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

    /// An `actuator` section at `path` (the plan's, or a region's replacement), resolved;
    /// `None` when it has an error.
    fn actuator(&mut self, path: &str, a: &ActuatorSpec) -> Option<ActuatorSettings> {
        let h = match (&a.http, &a.log) {
            (Some(h), None) => h,
            (None, Some(_)) => return Some(ActuatorSettings::Log),
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "actuator-kind",
                    "actuator has both http and log".into(),
                    Some("keep http to change traffic, or log for a dry run".into()),
                );
                // Still check the http section, so that fixing the kind reveals nothing new.
                let _ = self.http_actuator(path, a.http.as_ref()?);
                return None;
            }
            (None, None) => {
                self.error(
                    path,
                    "actuator-kind",
                    "actuator names no kind".into(),
                    Some("add http: {url: ...}, or log: {} for a dry run".into()),
                );
                return None;
            }
        };
        self.http_actuator(path, h).map(ActuatorSettings::Http)
    }

    fn http_actuator(&mut self, path: &str, h: &HttpActuatorSpec) -> Option<HttpActuatorSettings> {
        let before = self.errors;
        let url_path = format!("{path}.http.url");
        let url = if self.template(&url_path, "url", &h.url, &ACTUATOR_URL_VARS) {
            self.url_template(&url_path, "actuator url", &h.url, ACTUATOR_URL_EXAMPLE)
        } else {
            None
        };
        let token = match (&h.token_file, &h.token_env) {
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{path}.http.tokenEnv"),
                    "token-source",
                    "http actuator has both tokenFile and tokenEnv".into(),
                    Some(
                        "keep one: the token is read from a file (tokenFile) or from an environment variable (tokenEnv)"
                            .into(),
                    ),
                );
                TokenSource::None
            }
            (Some(file), None) => TokenSource::File(file.into()),
            (None, Some(var)) => TokenSource::Env(var.clone()),
            (None, None) => TokenSource::None,
        };
        let method = match h.method.as_deref() {
            None | Some("PUT") => SetMethod::Put,
            Some("POST") => SetMethod::Post,
            Some(m) => {
                let hint = if m.eq_ignore_ascii_case("put") || m.eq_ignore_ascii_case("post") {
                    format!("write it in capitals: {}", m.to_ascii_uppercase())
                } else {
                    "use PUT or POST".into()
                };
                self.error(
                    &format!("{path}.http.method"),
                    "invalid-method",
                    format!("method {m:?} is not supported"),
                    Some(hint),
                );
                SetMethod::Put
            }
        };
        let timeout = self.span(&format!("{path}.http.timeout"), h.timeout.as_deref(), DEFAULT_ACTUATOR_TIMEOUT);
        let retries = match h.retries {
            None => DEFAULT_ACTUATOR_RETRIES,
            Some(r) if r < 0 => {
                self.error(
                    &format!("{path}.http.retries"),
                    "invalid-retries",
                    format!("retries is {r}; it cannot be negative"),
                    Some("use 0 for a single attempt".into()),
                );
                DEFAULT_ACTUATOR_RETRIES
            }
            Some(r) => match u32::try_from(r) {
                Ok(r) => r,
                Err(_) => {
                    self.error(
                        &format!("{path}.http.retries"),
                        "invalid-retries",
                        format!("retries is {r}; it is too many"),
                        Some(format!("use at most {}; a few (e.g. 3) is usual", u32::MAX)),
                    );
                    DEFAULT_ACTUATOR_RETRIES
                }
            },
        };
        let on_drift = match h.on_drift.as_deref() {
            None | Some("reapply") => DriftPolicy::Reapply,
            Some("hold") => DriftPolicy::Hold,
            Some(d) => {
                let hint = did_you_mean(d, ["reapply", "hold"]).unwrap_or_else(|| "use reapply or hold".into());
                self.error(
                    &format!("{path}.http.onDrift"),
                    "invalid-on-drift",
                    format!("onDrift {d:?} is not supported"),
                    Some(hint),
                );
                DriftPolicy::Reapply
            }
        };
        let url = url.filter(|_| self.errors == before)?;
        Some(HttpActuatorSettings { url, method, token, timeout, retries, on_drift })
    }

    /// Risky but legal choices: warnings, errors under `--strict`.
    fn risks(&mut self, raw: &RolloutPlan, waves: &[Wave]) {
        if let Some(first) = waves.first()
            && first.regions.len() > 1
        {
            self.warn(
                "spec.waves[0].regions",
                "risk-wide-first-wave",
                format!("first wave {:?} has {} regions", first.name, first.regions.len()),
                Some("start with a single canary region, so a bad release reaches one region first".into()),
            );
        }
        // The longest bake so far, and the wave it belongs to.
        let mut longest: Option<(Span, &str)> = None;
        for (w, wave) in waves.iter().enumerate() {
            let last = w + 1 == waves.len();
            let written = raw.spec.waves.get(w).and_then(|rw| rw.bake.as_deref());
            // The last wave's bake guards nothing: no wave follows it.
            if written.is_none() && !last {
                self.warn(
                    &format!("spec.waves[{w}]"),
                    "risk-no-bake",
                    format!("wave {:?} has no bake", wave.name),
                    Some("add bake (e.g. 30m) so problems surface before the next wave starts".into()),
                );
            }
            if let Some((span, name)) = longest
                && written.is_some()
                && !wave.bake.is_zero()
                && wave.bake < span
            {
                self.warn(
                    &format!("spec.waves[{w}].bake"),
                    "risk-shrinking-bake",
                    format!("wave {:?} bakes {} but the earlier wave {name:?} bakes {span}", wave.name, wave.bake),
                    Some(format!("later, larger waves should bake at least as long; use {span} or more")),
                );
            }
            if longest.is_none_or(|(s, _)| wave.bake > s) {
                longest = Some((wave.bake, wave.name.as_str()));
            }
        }
        // Checks written but all in error are reported as such, not as missing.
        if raw.spec.health.as_ref().is_none_or(|h| h.checks.is_empty()) {
            self.warn(
                "spec",
                "risk-no-health",
                "plan has no health checks, so steps advance on time alone".into(),
                Some("add spec.health.checks".into()),
            );
        }
        // Every check with one source, whether its source resolved or not: an error in a URL
        // does not make the missing guard any less of a risk.
        let written = raw.spec.health.as_ref().map(|h| h.checks.as_slice()).unwrap_or_default();
        for (i, check) in written.iter().enumerate() {
            if check.prometheus.is_some() != check.http.is_some() && check.min_samples.is_none() {
                self.warn(
                    &format!("spec.health.checks[{i}]"),
                    "risk-no-traffic-guard",
                    format!("check {:?} has no traffic guard", check.name),
                    Some("add minSamples: {query: ..., min: ...} so a silent region is never read as healthy".into()),
                );
            }
        }
    }

    /// Steps as written (plan or region) that multiply traffic by more than 10.
    fn step_risks(&mut self, path: &str, steps: &[u32]) {
        for i in 1..steps.len() {
            let (from, to) = (steps[i - 1], steps[i]);
            if u64::from(to) > u64::from(from) * 10 {
                self.warn(
                    &format!("{path}[{i}]"),
                    "risk-big-step",
                    format!("step {to} is {} times the step before it ({from})", ratio(from, to)),
                    Some(format!(
                        "add a step in between, e.g. {}, so no step multiplies traffic by more than 10",
                        (u64::from(from) * 10).min(99)
                    )),
                );
            }
        }
    }
}

const LABEL_RULE: &str = "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 of them \
     (a key may have a DNS prefix and '/': example.com/tier)";

/// Why a label key is not one Kubernetes would accept, if it is not.
fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
    {
        return Some("has an invalid prefix");
    }
    if name.is_empty() {
        return Some("is empty");
    }
    label_value_problem(name)
}

/// Why a label value is not one Kubernetes would accept, if it is not (empty is fine).
fn label_value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some("is longer than 63 characters");
    }
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let inner = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !inner || !edge(value.bytes().next()) || !edge(value.bytes().last()) {
        return Some("is not valid");
    }
    None
}

fn operator_name(op: SelectorOperator) -> &'static str {
    match op {
        SelectorOperator::In => "In",
        SelectorOperator::NotIn => "NotIn",
        SelectorOperator::Exists => "Exists",
        SelectorOperator::DoesNotExist => "DoesNotExist",
    }
}

/// Does a region with `labels` match? Every `matchLabels` pair and every requirement must hold.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

/// A selector as kubectl writes one: `continent=asia,tier notin (core),!legacy`.
pub fn describe_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in &selector.match_expressions {
        parts.push(match e.operator {
            SelectorOperator::In => format!("{} in ({})", e.key, e.values.join(",")),
            SelectorOperator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
            SelectorOperator::Exists => e.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Services in dependency order, stable with respect to written order, and every cycle
/// found on the way (each as service indices, a service followed by the one it waits for).
/// Services on a cycle are appended in written order so the order stays complete.
fn topo_order(services: &[Service]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let n = services.len();
    let mut order = Vec::with_capacity(n);
    let mut cycles = Vec::new();
    let mut done = vec![false; n];
    while order.len() < n {
        let next = (0..n).find(|&i| !done[i] && services[i].after.iter().all(|&d| d >= n || done[d]));
        if let Some(i) = next {
            done[i] = true;
            order.push(i);
            continue;
        }
        // Every remaining service waits for another remaining one: walk until a repeat.
        let mut seen: Vec<usize> = Vec::new();
        let Some(mut at) = (0..n).find(|&i| !done[i]) else { break };
        while !seen.contains(&at) {
            seen.push(at);
            at = services[at].after.iter().copied().find(|&d| d < n && !done[d]).unwrap_or(at);
        }
        let start = seen.iter().position(|&s| s == at).unwrap_or(0);
        let mut cycle = seen[start..].to_vec();
        // Start the cycle at its first-written service, so the report is stable.
        if let Some(min_at) = cycle.iter().enumerate().min_by_key(|(_, s)| **s).map(|(k, _)| k) {
            cycle.rotate_left(min_at);
        }
        // Break the cycle so the rest can be ordered (and further cycles found).
        let mut members = cycle.clone();
        members.sort_unstable();
        for m in members {
            done[m] = true;
            order.push(m);
        }
        cycles.push(cycle);
    }
    (order, cycles)
}

/// `to / from`, with one decimal when it is not whole.
fn ratio(from: u32, to: u32) -> String {
    if from == 0 {
        return "infinitely many".into();
    }
    if to.is_multiple_of(from) { (to / from).to_string() } else { format!("{:.1}", f64::from(to) / f64::from(from)) }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn timestamp(
    doc: &Document,
    path: &str,
    label: &str,
    text: Option<&str>,
    report: &mut Report,
    errors: &mut usize,
) -> Option<DateTime<Utc>> {
    let text = text?;
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            *errors += 1;
            let hint = if text.len() == 10 && text.as_bytes().get(4) == Some(&b'-') {
                format!("add a time and zone, e.g. {text}T00:00:00Z")
            } else {
                "use RFC 3339 with a zone, e.g. 2026-12-31T00:00:00Z".into()
            };
            report.push(doc.error(
                path,
                "invalid-timestamp",
                format!("{label} {text:?} is not a valid time"),
                Some(hint),
            ));
            None
        }
    }
}

fn check_approval(
    doc: &Document,
    raw: &Approval,
    plans: &[(&Document, &RolloutPlan)],
    region_documents: &HashMap<&str, Vec<RegionDocument<'_>>>,
    now: Option<DateTime<Utc>>,
    report: &mut Report,
) -> Option<ApprovalRecord> {
    let spec = &raw.spec;
    let name = &raw.metadata.name;
    let mut errors = 0;
    if spec.flag.trim().is_empty() {
        errors += 1;
        report.push(doc.error(
            "spec.flag",
            "empty-flag",
            "approval flag is empty".into(),
            Some("name the flag a region or wave lists under approvals, e.g. jp-regulator".into()),
        ));
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
    let granted_at = timestamp(doc, "spec.grantedAt", "grantedAt", spec.granted_at.as_deref(), report, &mut errors);
    let expires = timestamp(doc, "spec.expires", "expires", spec.expires.as_deref(), report, &mut errors);
    let revoked_at = spec
        .revoked
        .as_ref()
        .and_then(|r| timestamp(doc, "spec.revoked.at", "revoked.at", Some(r.at.as_str()), report, &mut errors));
    if let Some(r) = &spec.revoked
        && r.by.trim().is_empty()
    {
        errors += 1;
        report.push(doc.error(
            "spec.revoked.by",
            "empty-revoked-by",
            "revoked.by is empty".into(),
            Some("name who withdrew the approval".into()),
        ));
    }
    let mut never_valid = false;
    if let (Some(g), Some(e)) = (granted_at, expires)
        && e <= g
    {
        never_valid = true;
        report.push(doc.warning(
            "spec.expires",
            "expires-before-grant",
            format!("approval {name:?} expires at {}, before it is granted at {}", rfc3339(e), rfc3339(g)),
            Some("it can never be valid; fix expires or grantedAt".into()),
        ));
    }
    if let (Some(e), Some(now)) = (expires, now)
        && e <= now
        && !never_valid
    {
        report.push(doc.warning(
            "spec.expires",
            "approval-expired",
            format!("approval {name:?} expired at {}", rfc3339(e)),
            Some("it grants nothing; record a new approval with a later expires, or delete this one".into()),
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
                    did_you_mean(plan, known.keys().copied()).or_else(|| Some("this entry matches nothing".into())),
                ));
            }
        }
        let in_scope: Vec<&RolloutPlan> = known
            .iter()
            .filter(|(n, _)| scope.plans.is_empty() || scope.plans.iter().any(|p| p == *n))
            .map(|(_, p)| *p)
            .collect();
        // Regions of a plan in their own documents count as its regions.
        let merged = |p: &RolloutPlan| {
            region_documents.get(p.metadata.name.as_str()).map(Vec::as_slice).unwrap_or_default().to_vec()
        };
        let regions: HashSet<&str> = in_scope
            .iter()
            .flat_map(|p| {
                p.spec
                    .regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .chain(merged(p).into_iter().map(|m| m.raw.metadata.name.as_str()))
            })
            .collect();
        let services: HashSet<&str> =
            in_scope.iter().flat_map(|p| p.spec.services.iter().map(|s| s.name.as_str())).collect();
        let flags: HashSet<&str> = in_scope
            .iter()
            .flat_map(|p| {
                p.spec
                    .regions
                    .iter()
                    .flat_map(|r| r.approvals.iter())
                    .chain(merged(p).into_iter().flat_map(|m| m.raw.spec.approvals.iter()))
                    .chain(p.spec.waves.iter().flat_map(|w| w.approvals.iter()))
                    .map(String::as_str)
            })
            .collect();
        if !in_scope.is_empty() && !spec.flag.trim().is_empty() && !flags.contains(spec.flag.as_str()) {
            report.push(
                doc.warning(
                    "spec.flag",
                    "unused-flag",
                    format!("no region or wave in scope requires flag {:?}", spec.flag),
                    did_you_mean(&spec.flag, flags.iter().copied())
                        .or_else(|| Some("check the flag against the approvals lists of the plan".into())),
                ),
            );
        }
        for (j, r) in scope.regions.iter().enumerate() {
            if !in_scope.is_empty() && !regions.contains(r.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.regions[{j}]"),
                    "unknown-scope-region",
                    format!("scope names region {r:?} that no plan in scope has"),
                    did_you_mean(r, regions.iter().copied()).or_else(|| Some("this entry matches nothing".into())),
                ));
            }
        }
        for (j, s) in scope.services.iter().enumerate() {
            if !in_scope.is_empty() && !services.contains(s.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.services[{j}]"),
                    "unknown-scope-service",
                    format!("scope names service {s:?} that no plan in scope has"),
                    did_you_mean(s, services.iter().copied()).or_else(|| Some("this entry matches nothing".into())),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-region plan with this `actuator:` section (indented under `spec`).
    fn plan_with_actuator(actuator: &str) -> Bundle {
        let yaml = format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: signin}}]
  regions: [{{name: jp}}]
  waves: [{{name: all, regions: [jp]}}]
  actuator:
{actuator}"
        );
        load(&[("p.yaml".into(), yaml)], None)
    }

    fn errors(bundle: &Bundle) -> Vec<(String, &'static str)> {
        bundle
            .report
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diagnostics::Severity::Error)
            .map(|d| (d.path.clone(), d.code))
            .collect()
    }

    #[test]
    fn actuator_sections_resolve_to_typed_settings() {
        let url = "https://control.{{region}}.example.net/{{service}}";
        let cases: Vec<(String, Option<ActuatorSettings>)> = vec![
            ("    log: {}\n".into(), Some(ActuatorSettings::Log)),
            (
                format!("    http: {{url: '{url}'}}\n"),
                Some(ActuatorSettings::Http(HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap()))),
            ),
            (
                format!(
                    "    http: {{url: '{url}', method: POST, tokenFile: /run/token, timeout: 1500ms, retries: 0, onDrift: hold}}\n"
                ),
                Some(ActuatorSettings::Http(HttpActuatorSettings {
                    method: SetMethod::Post,
                    token: TokenSource::File("/run/token".into()),
                    timeout: Span::from_millis(1500),
                    retries: 0,
                    on_drift: DriftPolicy::Hold,
                    ..HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap())
                })),
            ),
            (
                format!("    http: {{url: '{url}', method: PUT, tokenEnv: TOKEN, onDrift: reapply}}\n"),
                Some(ActuatorSettings::Http(HttpActuatorSettings {
                    token: TokenSource::Env("TOKEN".into()),
                    ..HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap())
                })),
            ),
        ];
        for (section, expected) in cases {
            let bundle = plan_with_actuator(&section);
            assert_eq!(errors(&bundle), vec![], "{section}");
            let plan = bundle.plan("p").unwrap();
            assert_eq!(plan.actuator, expected, "{section}");
            assert_eq!(plan.regions[0].settings.actuator, expected, "{section}");
        }
    }

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

    #[test]
    fn bad_actuator_settings_are_located_errors() {
        let url = "http://h/{{region}}";
        let cases = [
            (format!("    http: {{url: '{url}', method: PATCH}}\n"), "spec.actuator.http.method", "invalid-method"),
            (format!("    http: {{url: '{url}', method: post}}\n"), "spec.actuator.http.method", "invalid-method"),
            (format!("    http: {{url: '{url}', timeout: soon}}\n"), "spec.actuator.http.timeout", "invalid-duration"),
            (format!("    http: {{url: '{url}', timeout: 0s}}\n"), "spec.actuator.http.timeout", "zero-duration"),
            (format!("    http: {{url: '{url}', retries: -1}}\n"), "spec.actuator.http.retries", "invalid-retries"),
            (
                format!("    http: {{url: '{url}', retries: 5000000000}}\n"),
                "spec.actuator.http.retries",
                "invalid-retries",
            ),
            (format!("    http: {{url: '{url}', onDrift: holds}}\n"), "spec.actuator.http.onDrift", "invalid-on-drift"),
            (
                format!("    http: {{url: '{url}', tokenFile: /t, tokenEnv: T}}\n"),
                "spec.actuator.http.tokenEnv",
                "token-source",
            ),
            (format!("    http: {{url: '{url}'}}\n    log: {{}}\n"), "spec.actuator", "actuator-kind"),
            ("    {}\n".to_string(), "spec.actuator", "actuator-kind"),
            ("    http: {url: 'ftp://h/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
            ("    http: {url: 'control/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
            ("    http: {url: 'http://h:99999/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
        ];
        for (section, path, code) in cases {
            let bundle = plan_with_actuator(&section);
            assert_eq!(errors(&bundle), vec![(path.to_string(), code)], "{section}");
            assert!(bundle.plan("p").is_none(), "{section}");
        }
    }
}
