//! The raw layer: manifests exactly as users write them in YAML (or apply as custom resources).
//!
//! Owns the serde shape, the JSON Schema (doc comments become descriptions) and nothing else.
//! Leaf values that need interpretation (durations, time zones, days, clock times, dates) stay
//! strings here so that `validate` can report every bad value at once, with its location,
//! instead of serde stopping at the first. Unknown fields are rejected.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `apiVersion` every Meridian manifest carries.
pub const API_VERSION: &str = "meridian.dev/v1alpha1";

/// Kubernetes-style object metadata (only the fields Meridian reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Unique name of the object; plans are addressed by it in the CLI and API.
    pub name: String,
    /// Kubernetes namespace (ignored in standalone mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A phased regional rollout: which services to enable, where, in which order, how fast,
/// and what must hold before and during each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPlan {
    /// Always `meridian.dev/v1alpha1`.
    pub api_version: String,
    /// Always `RolloutPlan`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: RolloutPlanSpec,
}

/// What a rollout plan asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPlanSpec {
    /// Services to enable, in dependency order inside each region.
    pub services: Vec<ServiceSpec>,
    /// Every region the plan may touch.
    pub regions: Vec<RegionSpec>,
    /// Waves run strictly in order; every region belongs to exactly one wave.
    pub waves: Vec<WaveSpec>,
    /// Traffic percentages each (region, service) moves through, strictly increasing and
    /// ending at 100. Default: `[1, 10, 50, 100]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u32>>,
    /// How long each step is held, healthy, before the next. Default: `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub step_bake: Option<String>,
    /// When a region may START a step, in the region's local time. Empty: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
    /// Health checks evaluated for every (region, service) in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// What a health failure does to its region. Default: `rollback-region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// What an approval that expires or is revoked mid-flight does. Default: `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_approval_revoked: Option<OnApprovalRevoked>,
    /// Failed regions the whole plan tolerates, over all its waves: a count (`2`) or a percent
    /// of the plan's regions (`"10%"`, rounded down). A failure within every budget lets its
    /// wave complete without the region. Default: no plan-wide budget (only the waves' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<CountOrPercent>,
    /// What a failure past a budget does: `halt` (default) stops its wave at once, later waves
    /// wait for a retry or a promote; `abort` aborts the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_budget_exceeded: Option<OnBudgetExceeded>,
    /// How long a (region, service) may go without progress (a step, enabled) while it waits
    /// for nothing expected (an approval, a window, a freeze, a dependency, parallelism, a
    /// pause, an earlier wave, another plan), e.g. health data that never arrives. Default: no
    /// deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub progress_deadline: Option<String>,
    /// What a unit past its `progressDeadline` does: `alert` (default) records it and shows it,
    /// changing no traffic; `fail` fails the unit as a health failure would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_progress_deadline: Option<OnProgressDeadline>,
    /// How traffic is set in each region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actuator: Option<ActuatorSpec>,
    /// Periods in which no step may start in any region, read in each region's local time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<FreezeSpec>,
    /// What the approvals of some flags must be for the flag to hold: signed by one of the
    /// flag's keys, and/or from several distinct grantors. At most one entry per flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_policies: Vec<ApprovalPolicySpec>,
    /// Other plans (or waves of them) that must be complete before any unit of this plan
    /// starts, e.g. `[{plan: signin-restore}]`: separate teams' plans restore in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencySpec>,
}

/// Another plan, or one of its waves, that must be complete first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DependencySpec {
    /// The other plan's `metadata.name` (read from the same files, or the same namespace).
    pub plan: String,
    /// One of its waves: complete once that wave is. Default: the whole plan complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
}

/// The rules for one flag's approvals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalPolicySpec {
    /// The flag, as named in a region's or wave's `approvals`.
    pub flag: String,
    /// How many distinct grantors must each have a holding approval of the flag at once
    /// (the two-person rule: `2`). Grantors are told apart by signing key when `signedBy` is
    /// set, else by `grantedBy`. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<i64>,
    /// When set, only approvals signed (`meridian approval sign`) by one of these keys count;
    /// others are refused where they arrive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<SignerSpec>,
}

/// A key that may sign a flag's approvals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignerSpec {
    /// The name an approval's `signature.key` refers to this key by, e.g. `liaison`.
    pub name: String,
    /// `ed25519:` and the base64 public key, as `meridian approval keygen` prints it.
    #[schemars(regex(pattern = r"^ed25519:[A-Za-z0-9+/]{43}=$"))]
    pub public_key: String,
}

/// A service enabled region by region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Services that must be fully enabled in a region before this one starts there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// The fields every region has, written once for the two places a region is written: an
/// entry under a plan's `spec.regions` ([`RegionSpec`]) and the `spec` of a `Region` document
/// ([`RegionDocumentSpec`]). Each struct gets its own leading fields, then these, so that
/// serde still rejects unknown fields (`#[serde(flatten)]` cannot be combined with
/// `deny_unknown_fields`) and the schema shows one flat object; and the conversion from a
/// document to an entry is generated from the same list, so no field can be forgotten.
macro_rules! region_structs {
    (
        $(
            $(#[$meta:meta])*
            pub struct $name:ident { $($lead:tt)* }
        )+
        shared $shared:tt
    ) => {
        $(region_structs!(@one $(#[$meta])* pub struct $name { $($lead)* } $shared);)+
        region_structs!(@to_region_spec $shared);
    };
    (@one $(#[$meta:meta])* pub struct $name:ident { $($lead:tt)* } { $($shared:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($lead)*
            $($shared)*
        }
    };
    (@to_region_spec { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        impl RegionDocumentSpec {
            /// The region entry this document stands for.
            pub fn to_region_spec(&self, name: &str) -> RegionSpec {
                RegionSpec { name: name.to_string(), $($field: self.$field.clone(),)* }
            }
        }
    };
}

region_structs! {
    /// A region, what it requires, and where it differs from the plan. Fields not written here
    /// come from the plan.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct RegionSpec {
        pub name: String,
    }

    /// A region as a document of its own: the plan it belongs to, then the fields of a region
    /// entry (except `name`, which is `metadata.name`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct RegionDocumentSpec {
        /// The `RolloutPlan` (by `metadata.name`) this region belongs to.
        pub plan: String,
    }

    shared {
        /// IANA time zone in which windows and freezes are read, e.g. `Asia/Tokyo`. Default: `UTC`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timezone: Option<String>,
        /// Approval flags that must all be granted, unexpired and in scope before this region
        /// receives any traffic, and for as long as it does.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub approvals: Vec<String>,
        /// Labels a wave's `selector` picks regions by, e.g. `{continent: asia, tier: low-traffic}`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub labels: BTreeMap<String, String>,
        /// This region's traffic steps, instead of the plan's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub steps: Option<Vec<u32>>,
        /// This region's hold per step, instead of the plan's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
        pub step_bake: Option<String>,
        /// This region's `progressDeadline`, instead of the plan's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
        pub progress_deadline: Option<String>,
        /// This region's windows, instead of the plan's (`[]`: any time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub windows: Option<Vec<WindowSpec>>,
        /// What missing data means for every check in this region, instead of each check's `noData`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub no_data: Option<NoDataPolicy>,
        /// This region's limits for some of the plan's checks, by check name.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub checks: Vec<CheckOverrideSpec>,
        /// What a health failure does to this region, instead of the plan's `onFailure`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub on_failure: Option<OnFailure>,
        /// How traffic is set in this region, replacing the plan's whole `actuator` section.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub actuator: Option<ActuatorSpec>,
        /// Periods in which no step may start in this region, in addition to the plan's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub freezes: Vec<FreezeSpec>,
    }
}

/// One check's limits for one region. Fields not written here come from the plan's check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckOverrideSpec {
    /// The name of a check under the plan's `health.checks`.
    pub name: String,
    /// Least healthy value (inclusive) in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Greatest healthy value (inclusive) in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Consecutive failing evaluations before this region fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    /// What missing, stale or unreadable data means for this check in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
}

/// A period in which no step may start: every day from `from` to `to` (inclusive), all day
/// or, with `daily`, only between those local times. Read in the region's time zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FreezeSpec {
    /// Why, shown as the blocked reason: "Golden Week", "carnival", "year-end change freeze".
    pub reason: String,
    /// First day, `YYYY-MM-DD`.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub from: String,
    /// Last day (inclusive; may equal `from`), `YYYY-MM-DD`.
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub to: String,
    /// Only between these local times on each of those days. Absent: all day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailySpec>,
}

/// A time range on each day of a freeze.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DailySpec {
    /// Local start, `HH:MM`.
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub from: String,
    /// Local end, `HH:MM` (`24:00` for midnight). Earlier than `from`: runs past midnight.
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub to: String,
}

/// One region of a plan in a file of its own, so that a regional team owns it. The plan's
/// regions are its `spec.regions` followed by every `Region` naming it, in file-path order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Region {
    /// Always `meridian.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Region`.
    pub kind: String,
    /// `name` is the region's name.
    pub metadata: Metadata,
    pub spec: RegionDocumentSpec,
}

/// A group of regions that run together, after the previous wave has finished and baked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveSpec {
    pub name: String,
    /// Regions in this wave by name, started in this order (before any the selector adds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Also every region whose labels match, in the order the regions are declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// At most this many regions of the wave in progress at once. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<i64>,
    /// Healthy hold after every region of the wave is enabled, before the next wave starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub bake: Option<String>,
    /// Approval flags gating every step of this wave (an operator's go, a CI promotion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
    /// Failed regions this wave tolerates and still completes: a count (`1`) or a percent of
    /// its regions (`"25%"`, rounded down). Default: none, unless the plan sets a
    /// `maxFailures` of its own (then only the plan's budget counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<CountOrPercent>,
    /// Other plans (or waves of them) that must be complete before any unit of this wave
    /// starts, e.g. `[{plan: signin-restore, wave: canary}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencySpec>,
}

/// A number of regions (`2`) or a percent of them (`"25%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CountOrPercent {
    Count(i64),
    /// As written; `validate` reads the percent.
    Text(String),
}

impl<'de> Deserialize<'de> for CountOrPercent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CountOrPercent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of regions or a percent such as \"25%\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(CountOrPercent::Count(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(CountOrPercent::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CountOrPercent::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for CountOrPercent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountOrPercent".into()
    }

    fn inline_schema() -> bool {
        true
    }

    // The Kubernetes convention for a count or a percent (as `maxUnavailable`), so the same
    // schema serves the CRDs; `validate` checks the value. The field's doc comment describes it.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

/// Regions by their labels, as in Kubernetes: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a region must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement on a label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    /// For `In` and `NotIn`: at least one value. For `Exists` and `DoesNotExist`: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// How a requirement tests its label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    /// The label is set to one of `values`.
    #[default]
    In,
    /// The label is not set, or set to none of `values`.
    NotIn,
    /// The label is set, to any value.
    Exists,
    /// The label is not set.
    DoesNotExist,
}

/// A recurring time range, in the region's local time, in which steps may start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// Days on which the window opens: `Mon`..`Sun` (full names accepted). Empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Local opening time, `HH:MM`.
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub from: String,
    /// Local closing time, `HH:MM` (`24:00` for midnight). Earlier than `from`: the window
    /// runs past midnight into the next day.
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub to: String,
}

/// How health is read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthSpec {
    /// How often every check is evaluated. Default: `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub interval: Option<String>,
    /// Label that carries the region name in query results. Default: `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_label: Option<String>,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

/// One health check. Its value must stay within `min`/`max`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckSpec {
    pub name: String,
    /// A PromQL query evaluated once per service for all regions, split by the region label.
    /// Placeholders: `{{service}}`, `{{plan}}`, `{{wave}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusCheckSpec>,
    /// A plain HTTP source, for setups without Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheckSpec>,
    /// Least healthy value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Greatest healthy value (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Consecutive failing evaluations before the region fails. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    /// What missing, stale or unreadable data means. Default: `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
    /// Traffic guard: below this many samples the verdict is "no data", never "healthy".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<MinSamplesSpec>,
    /// Compare each region with the regions already fully enabled for the same service,
    /// read from the same query: a value above `maxRatio` times their baseline is unhealthy.
    /// `min`/`max` still apply. Prometheus checks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<RelativeSpec>,
}

/// A check's judgement relative to the fleet: the region's value against a baseline of the
/// regions already fully enabled for the service (the region itself left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RelativeSpec {
    /// Greatest healthy value as a multiple of the baseline (at least 1), e.g. `2.0`.
    pub max_ratio: f64,
    /// How the baseline regions' values are combined. Default: `median`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineKind>,
    /// Fewest baseline regions with a usable value for a relative verdict; with fewer, the
    /// relative part has no verdict and the check's `noData` decides. Default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_baseline_regions: Option<i64>,
    /// Absolute tolerance above the baseline: a value within `baseline + minDelta` is never
    /// unhealthy by ratio. This is what a zero baseline is compared with. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_delta: Option<f64>,
}

/// How a baseline combines the values of its regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineKind {
    /// The middle value (the mean of the two middle ones for an even count): one bad
    /// baseline region does not move it.
    #[default]
    Median,
    /// The arithmetic mean.
    Mean,
}

impl BaselineKind {
    /// As written in a plan: `median`, `mean`.
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineKind::Median => "median",
            BaselineKind::Mean => "mean",
        }
    }
}

/// A Prometheus instant query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusCheckSpec {
    pub query: String,
    /// Base URL of the Prometheus server. Default: the controller's `--prometheus` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A number read over HTTP, per region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheckSpec {
    /// URL to GET. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`, `{{wave}}`.
    pub url: String,
    /// JSON pointer to the number in a JSON body (e.g. `/errorRate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Metric name to read from a Prometheus text-format body instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// The least request count that makes a verdict conclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MinSamplesSpec {
    /// Query for the number of samples (requests) in the check's window, split by region.
    pub query: String,
    /// Least count; below it the verdict is "no data".
    pub min: f64,
}

/// How traffic is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActuatorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpActuatorSpec>,
    /// Sets traffic through an object in a Kubernetes cluster (needs `meridian kube`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesActuatorSpec>,
    /// Dry run: record what would be done, change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogActuatorSpec>,
}

/// Sets a (region, service) traffic percent over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpActuatorSpec {
    /// Endpoint. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub url: String,
    /// `PUT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// File holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Environment variable holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Per-request timeout. Default: `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retries after the first attempt, with exponential backoff and jitter. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// On drift (read-back differs from state): `reapply` (default) or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<String>,
}

/// Sets a (region, service) traffic percent through one Kubernetes object: a ConfigMap key,
/// the backend weights of a Gateway API `HTTPRoute`, or a Deployment's replicas. Exactly one
/// of `configMap`, `httpRoute` and `deployment`. Only `meridian kube` drives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesActuatorSpec {
    /// The cluster the object is in. Default: the cluster meridian runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSpec>,
    /// Namespace of the object. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub namespace: String,
    /// The percent as the value of a key in a ConfigMap (`"0"` to `"100"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapTargetSpec>,
    /// The percent as backend weights of an `HTTPRoute` (gateway.networking.k8s.io/v1):
    /// `backend` gets the percent, `stable` the rest, in every rule that names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteTargetSpec>,
    /// The percent as a Deployment's replicas: `ceil(replicas * percent / 100)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentTargetSpec>,
    /// On drift (read-back differs from state): `reapply` (default) or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<String>,
}

/// Another cluster than the one meridian runs in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// A Secret in meridian's own namespace holding a kubeconfig for that cluster.
    pub secret: SecretKeySpec,
}

/// A key of a Secret in meridian's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySpec {
    /// The Secret's name. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub name: String,
    /// The key holding the kubeconfig. Default: `kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A ConfigMap key that holds the percent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapTargetSpec {
    /// The ConfigMap's name. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub name: String,
    /// The key under `data`. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub key: String,
}

/// An `HTTPRoute` splitting traffic between a new and a stable backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteTargetSpec {
    /// The HTTPRoute's name. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub name: String,
    /// The backendRef (a Service name) that gets the percent as its weight.
    pub backend: String,
    /// The backendRef (a Service name) that gets 100 minus the percent.
    pub stable: String,
}

/// A Deployment scaled in proportion to the percent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentTargetSpec {
    /// The Deployment's name. Placeholders: `{{region}}`, `{{service}}`, `{{plan}}`.
    pub name: String,
    /// Replicas at 100 %; a percent p runs `ceil(replicas * p / 100)`, 0 % none.
    pub replicas: i64,
}

/// The dry-run actuator takes no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogActuatorSpec {}

/// What a health failure does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Set every service of the failed region back to 0 %.
    #[default]
    RollbackRegion,
    /// Freeze the failed region at its current traffic until an operator decides.
    Pause,
}

/// What an approval that stops being valid does to regions that depend on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnApprovalRevoked {
    /// Keep current traffic, take no further step.
    #[default]
    Hold,
    /// Set the region's traffic to 0 %.
    Disable,
}

/// What a failure past a `maxFailures` budget does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnBudgetExceeded {
    /// Stop the wave at once: no further region of it starts, and later waves wait until a
    /// retry brings the failures back within budget or a promote accepts them.
    #[default]
    Halt,
    /// Abort the rollout: every unit that is not enabled goes back to 0 %, nothing starts again.
    Abort,
}

/// What a unit past its `progressDeadline` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnProgressDeadline {
    /// Record it (audit, state, metric) and change no traffic.
    #[default]
    Alert,
    /// Fail the unit as a health failure would; its region's `onFailure` applies.
    Fail,
}

/// What missing, stale or unreadable health data means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoDataPolicy {
    /// Do not advance and do not fail: wait for data.
    #[default]
    Hold,
    /// Count as a failing evaluation.
    Fail,
    /// Leave this check out of the decision.
    Ignore,
}

/// A recorded permission: a regulator's sign-off, an operator's go, a CI promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Always `meridian.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Approval`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ApprovalSpec,
}

/// Who granted which flag, on what evidence, for how long, and where it applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    /// The flag this approval grants, as named in a region's or wave's `approvals`.
    pub flag: String,
    /// Person or body that granted it.
    pub granted_by: String,
    /// Evidence: a letter, a ticket, a CI run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When it was granted (RFC 3339). It is not valid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<String>,
    /// When it stops being valid (RFC 3339). Absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Where it applies; an absent list means "everywhere".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ApprovalScope>,
    /// Set when the approval has been withdrawn; it is then never valid again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// An Ed25519 signature over the approval's canonical content (name, flag, grantedBy,
    /// reference, grantedAt, expires, scope), added by `meridian approval sign`. Required
    /// when a plan's `approvalPolicies` list keys for the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureSpec>,
}

/// Which key signed an approval, and the signature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureSpec {
    /// The key's name in the plan's `approvalPolicies[].signedBy`.
    pub key: String,
    /// The 64-byte Ed25519 signature, base64.
    pub value: String,
}

/// Limits where an approval applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// A withdrawal of an approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revocation {
    /// When (RFC 3339).
    pub at: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: &str = "timezone: Asia/Tokyo
approvals: [jp-regulator]
labels: {continent: asia}
steps: [5, 50, 100]
stepBake: 30m
windows: [{days: [Mon], from: '09:00', to: '17:00'}]
noData: fail
checks: [{name: errors, max: 0.05}]
onFailure: pause
actuator: {log: {}}
freezes: [{reason: Golden Week, from: 2026-04-29, to: 2026-05-06}]
";

    #[test]
    fn a_region_document_is_exactly_a_region_entry() {
        let entry: RegionSpec = serde_yaml::from_str(&format!("name: jp\n{SHARED}")).unwrap();
        let document: RegionDocumentSpec = serde_yaml::from_str(&format!("plan: apac\n{SHARED}")).unwrap();
        assert_eq!(document.to_region_spec("jp"), entry);
        assert_eq!(entry.freezes.len(), 1, "every shared field was read");
    }

    #[test]
    fn both_reject_unknown_fields() {
        let entry = serde_yaml::from_str::<RegionSpec>("name: jp\ntimezon: Asia/Tokyo\n").unwrap_err();
        assert!(entry.to_string().contains("unknown field `timezon`"), "{entry}");
        let document = serde_yaml::from_str::<RegionDocumentSpec>("plan: apac\nname: jp\n").unwrap_err();
        assert!(document.to_string().contains("unknown field `name`"), "{document}");
        assert!(serde_yaml::from_str::<RegionSpec>("name: jp\nplan: apac\n").is_err());
    }
}
