//! The resolved layer: a plan after validation, with names resolved to indices, defaults
//! applied and every value typed. The engine only ever sees this.
//!
//! Owns the shape of a valid plan and the effective (per-region) settings. It does not parse
//! or validate: `validate` builds it, and a `Plan` that exists is known to be consistent
//! (every index in range, services topologically ordered, steps increasing to 100).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;

use chrono_tz::Tz;
use serde::Serialize;

use crate::duration::Span;
use crate::endpoint::{Url, UrlTemplate};
use crate::freeze::Freeze;
use crate::manifest::{NoDataPolicy, OnApprovalRevoked, OnBudgetExceeded, OnFailure, OnProgressDeadline};
use crate::metric_selector::SelectorTemplate;
use crate::relative::RelativeLimit;
use crate::signing::Signer;
use crate::window::Window;

/// Default traffic steps when a plan names none.
pub const DEFAULT_STEPS: [u32; 4] = [1, 10, 50, 100];
/// Default hold per step.
pub const DEFAULT_STEP_BAKE: Span = Span::from_secs(300);
/// Default health interval.
pub const DEFAULT_HEALTH_INTERVAL: Span = Span::from_secs(30);
/// Default label carrying the region in query results.
pub const DEFAULT_REGION_LABEL: &str = "region";
/// Default time allowed for one actuator request.
pub const DEFAULT_ACTUATOR_TIMEOUT: Span = Span::from_secs(10);
/// Default retries after an actuator's first request.
pub const DEFAULT_ACTUATOR_RETRIES: u32 = 3;

/// A validated rollout plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// In the order written; `service_order` is the dependency order.
    pub services: Vec<Service>,
    /// Indices into `services`, dependencies first (stable with respect to the written order).
    pub service_order: Vec<usize>,
    pub regions: Vec<Region>,
    pub waves: Vec<Wave>,
    pub health: Health,
    pub on_approval_revoked: OnApprovalRevoked,
    /// Failed regions the whole plan tolerates (`None`: no plan-wide budget).
    pub max_failures: Option<FailureBudget>,
    pub on_budget_exceeded: OnBudgetExceeded,
    /// What a unit past its region's `progress_deadline` does.
    pub on_progress_deadline: OnProgressDeadline,
    /// The plan's `actuator:` section; `None`: a dry run.
    pub actuator: Option<ActuatorSettings>,
    /// What the approvals of some flags must be (signed, from several grantors); a flag
    /// without one needs one holding approval. At most one per flag.
    pub approval_policies: Vec<ApprovalPolicy>,
    /// Other plans (or waves of them) every wave of this plan waits for (`spec.dependsOn`).
    pub depends_on: Vec<PlanDependency>,
    /// Name to index, built by `Plan::index_names`.
    pub(crate) region_lookup: NameIndex,
    pub(crate) service_lookup: NameIndex,
}

/// Region or service name to index. Looked up for every health sample, read-back and
/// confirmation of every decision, so hashed with FNV-1a rather than SipHash: the names are
/// the plan author's, not an attacker's, and short.
pub(crate) type NameIndex = HashMap<String, usize, BuildHasherDefault<NameHasher>>;

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What a flag's approvals must be for the flag to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    pub flag: String,
    /// Distinct grantors whose approvals must hold at once (at least 1).
    pub requires: usize,
    /// When any: only approvals signed by one of these keys count, and grantors are told
    /// apart by key.
    pub signers: Vec<Signer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// Indices of services that must be enabled in a region first.
    pub after: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub timezone: Tz,
    /// Flags required for any traffic here, at any time.
    pub approvals: Vec<String>,
    /// Index of the wave this region belongs to.
    pub wave: usize,
    /// Labels waves select regions by.
    pub labels: BTreeMap<String, String>,
    /// Where the region is defined, `file:line` (the plan's file, or a `Region` document's).
    pub defined_at: String,
    /// Settings in force for this region.
    pub settings: RegionSettings,
}

/// Everything the engine and the adapters read per region: the plan's values, replaced field
/// by field where the region overrides them. `origins` says which is which.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSettings {
    pub steps: Vec<u32>,
    pub step_bake: Span,
    /// How long a unit may make no progress outside an expected wait (`None`: no deadline).
    pub progress_deadline: Option<Span>,
    pub windows: Vec<Window>,
    pub on_failure: OnFailure,
    /// Aligned with `Health::checks`.
    pub checks: Vec<CheckLimits>,
    /// The actuator for this region: the plan's, or the region's whole replacement.
    pub actuator: Option<ActuatorSettings>,
    /// The plan's freezes followed by the region's own.
    pub freezes: Vec<Freeze>,
    pub origins: SettingOrigins,
}

impl RegionSettings {
    /// What a read-back that differs from the state does here (a dry run re-applies).
    pub fn on_drift(&self) -> DriftPolicy {
        match &self.actuator {
            Some(ActuatorSettings::Http(h)) => h.on_drift,
            Some(ActuatorSettings::Kubernetes(k)) => k.on_drift,
            Some(ActuatorSettings::Log) | None => DriftPolicy::Reapply,
        }
    }
}

/// How traffic is set: an `actuator:` section, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActuatorSettings {
    /// `http`: set and read back a percent over HTTP.
    Http(HttpActuatorSettings),
    /// `kubernetes`: set and read back a percent through a Kubernetes object.
    Kubernetes(KubernetesActuatorSettings),
    /// `log: {}`: a dry run that changes nothing.
    Log,
}

/// The Secret key a cluster's kubeconfig is read from when the plan names none.
pub const DEFAULT_KUBECONFIG_KEY: &str = "kubeconfig";

/// An `actuator.kubernetes` section, checked. Every name may hold the placeholders
/// `{{region}}`, `{{service}}` and `{{plan}}` ([`KubernetesActuatorSettings::render`]); with
/// sample names filled in, each is a valid name of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesActuatorSettings {
    pub cluster: ClusterRef,
    /// Namespace of the object (a template).
    pub namespace: String,
    pub object: KubeObject,
    pub on_drift: DriftPolicy,
}

impl KubernetesActuatorSettings {
    /// Fill a template of these settings with a target's names.
    pub fn render(template: &str, plan: &str, region: &str, service: &str) -> String {
        render_template(template, &[("plan", plan), ("region", region), ("service", service)])
    }
}

/// Which cluster a Kubernetes actuator writes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClusterRef {
    /// The cluster meridian runs in (its own client).
    Local,
    /// The cluster of the kubeconfig held in this Secret of meridian's namespace.
    Secret {
        /// A template.
        name: String,
        key: String,
    },
}

/// The object that carries a (region, service)'s percent, names as templates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KubeObject {
    /// `data[key]` of a ConfigMap is the percent, `"0"` to `"100"`.
    ConfigMap { name: String, key: String },
    /// In every rule of the HTTPRoute naming them, backendRef `backend` weighs the percent and
    /// `stable` the rest.
    HttpRoute { name: String, backend: String, stable: String },
    /// The Deployment runs `ceil(replicas * percent / 100)` replicas; `replicas` is at least 1.
    Deployment { name: String, replicas: u32 },
}

impl KubeObject {
    /// The kind, as Kubernetes spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            KubeObject::ConfigMap { .. } => "ConfigMap",
            KubeObject::HttpRoute { .. } => "HTTPRoute",
            KubeObject::Deployment { .. } => "Deployment",
        }
    }

    /// The object's name (a template).
    pub fn name(&self) -> &str {
        match self {
            KubeObject::ConfigMap { name, .. }
            | KubeObject::HttpRoute { name, .. }
            | KubeObject::Deployment { name, .. } => name,
        }
    }
}

/// An `actuator.http` section with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpActuatorSettings {
    /// Placeholders `{{plan}}`, `{{region}}`, `{{service}}`.
    pub url: UrlTemplate,
    pub method: SetMethod,
    pub token: TokenSource,
    /// Time allowed for one request, never zero.
    pub timeout: Span,
    /// Retries after the first request.
    pub retries: u32,
    pub on_drift: DriftPolicy,
}

impl HttpActuatorSettings {
    /// The defaults: `PUT`, no token, a 10 s timeout, 3 retries, re-apply on drift.
    pub fn new(url: UrlTemplate) -> Self {
        HttpActuatorSettings {
            url,
            method: SetMethod::Put,
            token: TokenSource::None,
            timeout: DEFAULT_ACTUATOR_TIMEOUT,
            retries: DEFAULT_ACTUATOR_RETRIES,
            on_drift: DriftPolicy::Reapply,
        }
    }
}

/// How an HTTP actuator sends a traffic change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetMethod {
    #[default]
    Put,
    Post,
}

impl SetMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SetMethod::Put => "PUT",
            SetMethod::Post => "POST",
        }
    }
}

/// Where an HTTP actuator's bearer token comes from; read on every call, so a rotated token
/// needs no restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenSource {
    /// No `Authorization` header.
    #[default]
    None,
    /// `tokenFile`: the file's content, trimmed.
    File(PathBuf),
    /// `tokenEnv`: the environment variable's value, trimmed.
    Env(String),
}

/// `onDrift`: what a read-back that differs from the state does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriftPolicy {
    /// Send the state's percent again, with a fresh idempotency key.
    #[default]
    Reapply,
    /// Record it once and take no further step until the target serves the state's percent.
    Hold,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The plan's value, or the default where the plan says nothing.
    #[default]
    Plan,
    /// The region's own value.
    Region,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Plan => "plan",
            Origin::Region => "region",
        })
    }
}

/// The origin of each field of [`RegionSettings`] (freezes carry their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingOrigins {
    pub steps: Origin,
    pub step_bake: Origin,
    pub progress_deadline: Origin,
    pub windows: Origin,
    pub on_failure: Origin,
    pub actuator: Origin,
    /// Aligned with `Health::checks`.
    pub checks: Vec<CheckOrigins>,
}

/// The origin of each overridable limit of one check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOrigins {
    pub min: Origin,
    pub max: Origin,
    pub failure_limit: Origin,
    pub no_data: Origin,
}

impl SettingOrigins {
    /// Does the region override anything (its own freezes included)?
    pub fn any_region(&self) -> bool {
        [self.steps, self.step_bake, self.progress_deadline, self.windows, self.on_failure, self.actuator]
            .contains(&Origin::Region)
            || self.checks.iter().any(|c| [c.min, c.max, c.failure_limit, c.no_data].contains(&Origin::Region))
    }
}

/// The parts of a check that decide its verdict and its consequence.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckLimits {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub failure_limit: u32,
    pub no_data: NoDataPolicy,
    pub min_samples: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub name: String,
    /// Region indices in start order.
    pub regions: Vec<usize>,
    /// How each region (aligned with `regions`) came to be in this wave.
    pub chosen_by: Vec<ChosenBy>,
    /// At least 1, at most the number of regions.
    pub max_parallel: usize,
    pub bake: Span,
    pub approvals: Vec<String>,
    /// Failed regions this wave tolerates (`None`: as [`Plan::wave_budget`] says).
    pub max_failures: Option<FailureBudget>,
    /// Other plans (or waves of them) this wave waits for, besides the plan's own.
    pub depends_on: Vec<PlanDependency>,
}

/// Another plan that must be complete first, or one of its waves (`dependsOn` entries; the
/// rule for when one holds is in [`crate::dependency`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDependency {
    pub plan: String,
    /// `None`: the whole plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
}

/// A `maxFailures` budget: a number of regions, or a percent of them (rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureBudget {
    Count(usize),
    Percent(u32),
}

impl FailureBudget {
    /// How many failed regions this budget allows out of `regions`.
    pub fn allowed(self, regions: usize) -> usize {
        match self {
            FailureBudget::Count(n) => n,
            FailureBudget::Percent(p) => regions.saturating_mul(p as usize) / 100,
        }
    }
}

impl std::fmt::Display for FailureBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureBudget::Count(n) => write!(f, "{n}"),
            FailureBudget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// How a region was put in its wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "by", content = "selector")]
pub enum ChosenBy {
    /// Listed under the wave's `regions`.
    Name,
    /// Matched by the wave's `selector`, as written here (`continent=asia,tier notin (core)`).
    Selector(String),
}

impl std::fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChosenBy::Name => f.write_str("by name"),
            ChosenBy::Selector(s) => write!(f, "by selector {s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub interval: Span,
    pub region_label: String,
    pub checks: Vec<Check>,
}

/// A check as the health adapters need it: where to read, what bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub source: CheckSource,
    /// The plan-level limits; regions may carry their own in `RegionSettings::checks`.
    pub limits: CheckLimits,
    /// Query for the traffic guard's sample count, if any.
    pub min_samples_query: Option<String>,
    /// The judgement relative to the fleet, if any (plan-wide: regions do not override it).
    pub relative: Option<RelativeLimit>,
}

/// Where a check reads its value, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckSource {
    /// A PromQL query (placeholders `{{service}}`, `{{plan}}`, `{{wave}}`) on the check's own
    /// server, or on the controller's default one when `server` is `None`.
    Prometheus { query: String, server: Option<Url> },
    /// One GET per region of `url` (placeholders `{{region}}`, `{{service}}`, `{{plan}}`,
    /// `{{wave}}`), the value found in the body by `reader`.
    Http { url: UrlTemplate, reader: BodyReader },
}

impl CheckSource {
    /// `prometheus` or `http`, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSource::Prometheus { .. } => "prometheus",
            CheckSource::Http { .. } => "http",
        }
    }
}

/// How an `http` check finds its number in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyReader {
    /// `pointer`: a JSON pointer (RFC 6901) into a JSON body, e.g. `/errorRate`.
    Pointer(String),
    /// `metric`: one sample of a Prometheus text-format body.
    Metric(SelectorTemplate),
}

impl Plan {
    /// Build the name lookups; called once when the plan is assembled.
    pub(crate) fn index_names(&mut self) {
        self.region_lookup = self.regions.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
        self.service_lookup = self.services.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    }

    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.region_lookup.get(name).copied()
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.service_lookup.get(name).copied()
    }

    pub fn wave_index(&self, name: &str) -> Option<usize> {
        self.waves.iter().position(|w| w.name == name)
    }

    /// Number of (region, service) units.
    pub fn unit_count(&self) -> usize {
        self.regions.len() * self.services.len()
    }

    /// Position of a unit in region-major order, the layout of `PlanState::units`.
    pub fn unit_index(&self, region: usize, service: usize) -> usize {
        region * self.services.len() + service
    }

    /// Does the plan, or any wave of it, wait for another plan (`dependsOn`)?
    pub fn has_dependencies(&self) -> bool {
        !self.depends_on.is_empty() || self.waves.iter().any(|w| !w.depends_on.is_empty())
    }

    /// The plans this one waits for, each once, in the order first named.
    pub fn dependency_plans(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for d in self.depends_on.iter().chain(self.waves.iter().flat_map(|w| &w.depends_on)) {
            if !names.contains(&d.plan.as_str()) {
                names.push(&d.plan);
            }
        }
        names
    }

    /// The policy for `flag`, if the plan has one.
    pub fn approval_policy(&self, flag: &str) -> Option<&ApprovalPolicy> {
        self.approval_policies.iter().find(|p| p.flag == flag)
    }

    /// Failed regions wave `w` allows, when it is under a failure budget at all: its own
    /// `maxFailures`; without one, no limit of its own when the plan has a budget (the plan's
    /// then counts alone). `None`: under no budget, a failed region halts the wave once nothing
    /// else in it can move (the behaviour before budgets existed).
    pub fn wave_budget(&self, w: usize) -> Option<usize> {
        let wave = &self.waves[w];
        match (wave.max_failures, self.max_failures) {
            (Some(b), _) => Some(b.allowed(wave.regions.len())),
            (None, Some(_)) => Some(usize::MAX),
            (None, None) => None,
        }
    }

    /// Failed regions the whole plan allows (no plan-wide budget: no limit).
    pub fn plan_budget(&self) -> usize {
        self.max_failures.map_or(usize::MAX, |b| b.allowed(self.regions.len()))
    }

    /// Every flag the plan refers to, sorted and deduplicated.
    pub fn flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = self
            .regions
            .iter()
            .flat_map(|r| r.approvals.iter())
            .chain(self.waves.iter().flat_map(|w| w.approvals.iter()))
            .cloned()
            .collect();
        flags.sort();
        flags.dedup();
        flags
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

fn sourced<T>(value: T, origin: Origin) -> Sourced<T> {
    Sourced { value, origin }
}

/// A region's effective settings with their origins, for displays (`meridian plan`, the
/// API's plan detail). Durations, windows and the actuator are in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    pub steps: Sourced<Vec<u32>>,
    pub step_bake: Sourced<String>,
    /// `None`: no deadline.
    pub progress_deadline: Sourced<Option<String>>,
    /// Empty: any time.
    pub windows: Sourced<Vec<String>>,
    pub on_failure: Sourced<OnFailure>,
    pub actuator: Sourced<String>,
    pub checks: Vec<EffectiveCheck>,
    /// The plan's and the region's, each with its origin.
    pub freezes: Vec<Freeze>,
}

/// One check's effective limits in a region.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveCheck {
    pub name: String,
    pub min: Sourced<Option<f64>>,
    pub max: Sourced<Option<f64>>,
    pub failure_limit: Sourced<u32>,
    pub no_data: Sourced<NoDataPolicy>,
    /// The check's `relative` part (the plan's; regions do not override it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative: Option<RelativeLimit>,
}

/// An actuator section in words: `http PUT https://...`, `kubernetes configmap ...`,
/// `log (dry run)`.
pub fn describe_actuator(actuator: Option<&ActuatorSettings>) -> String {
    match actuator {
        Some(ActuatorSettings::Http(h)) => format!("http {} {}", h.method.as_str(), h.url),
        Some(ActuatorSettings::Kubernetes(k)) => {
            let object = match &k.object {
                KubeObject::ConfigMap { name, key } => format!("configmap {}/{name} key {key}", k.namespace),
                KubeObject::HttpRoute { name, backend, stable } => {
                    format!("httproute {}/{name} backend {backend} (stable {stable})", k.namespace)
                }
                KubeObject::Deployment { name, replicas } => {
                    format!("deployment {}/{name} of {replicas} replicas at 100%", k.namespace)
                }
            };
            match &k.cluster {
                ClusterRef::Local => format!("kubernetes {object}"),
                ClusterRef::Secret { name, key } => {
                    format!("kubernetes {object} in the cluster of secret {name}[{key}]")
                }
            }
        }
        Some(ActuatorSettings::Log) => "log (dry run)".into(),
        None => "none (dry run)".into(),
    }
}

impl Plan {
    /// Region `r`'s effective settings and where each came from.
    pub fn effective_settings(&self, r: usize) -> EffectiveSettings {
        let s = &self.regions[r].settings;
        let o = &s.origins;
        let checks = self
            .health
            .checks
            .iter()
            .zip(&s.checks)
            .zip(&o.checks)
            .map(|((check, limits), origin)| EffectiveCheck {
                name: check.name.clone(),
                min: sourced(limits.min, origin.min),
                max: sourced(limits.max, origin.max),
                failure_limit: sourced(limits.failure_limit, origin.failure_limit),
                no_data: sourced(limits.no_data, origin.no_data),
                relative: check.relative,
            })
            .collect();
        EffectiveSettings {
            steps: sourced(s.steps.clone(), o.steps),
            step_bake: sourced(s.step_bake.to_string(), o.step_bake),
            progress_deadline: sourced(s.progress_deadline.map(|d| d.to_string()), o.progress_deadline),
            windows: sourced(s.windows.iter().map(ToString::to_string).collect(), o.windows),
            on_failure: sourced(s.on_failure, o.on_failure),
            actuator: sourced(describe_actuator(s.actuator.as_ref()), o.actuator),
            checks,
            freezes: s.freezes.clone(),
        }
    }
}

/// Fill a template's `{{name}}` placeholders. Unknown placeholders are left as written
/// (validation rejects them before a plan exists).
pub fn render_template(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholder names used in a template, in order of appearance.
pub fn template_placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        names.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_placeholders_and_keeps_unknown_ones() {
        let out = render_template(
            "https://c.{{region}}.net/{{ service }}/{{nope}}",
            &[("region", "jp"), ("service", "store")],
        );
        assert_eq!(out, "https://c.jp.net/store/{{nope}}");
        assert_eq!(template_placeholders("a{{x}}b{{ y }}c{{z"), vec!["x".to_string(), "y".to_string()]);
    }
}
