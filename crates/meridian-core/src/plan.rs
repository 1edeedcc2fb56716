//! The resolved layer: a plan after validation, with names resolved to indices, defaults
//! applied and every value typed. The engine only ever sees this.
//!
//! Owns the shape of a valid plan and the effective (per-region) settings. It does not parse
//! or validate: `validate` builds it, and a `Plan` that exists is known to be consistent
//! (every index in range, services topologically ordered, steps increasing to 100).

use std::collections::HashMap;

use chrono_tz::Tz;

use crate::duration::Span;
use crate::manifest::{ActuatorSpec, NoDataPolicy, OnApprovalRevoked, OnFailure};
use crate::window::Window;

/// Default traffic steps when a plan names none.
pub const DEFAULT_STEPS: [u32; 4] = [1, 10, 50, 100];
/// Default hold per step.
pub const DEFAULT_STEP_BAKE: Span = Span::from_secs(300);
/// Default health interval.
pub const DEFAULT_HEALTH_INTERVAL: Span = Span::from_secs(30);
/// Default label carrying the region in query results.
pub const DEFAULT_REGION_LABEL: &str = "region";

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
    pub actuator: Option<ActuatorSpec>,
    /// Name to index, built by `Plan::index_names`.
    pub(crate) region_lookup: HashMap<String, usize>,
    pub(crate) service_lookup: HashMap<String, usize>,
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
    /// Settings in force for this region.
    pub settings: RegionSettings,
}

/// Everything the engine reads per region. Today every region carries the plan's values;
/// region overrides replace them field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSettings {
    pub steps: Vec<u32>,
    pub step_bake: Span,
    pub windows: Vec<Window>,
    pub on_failure: OnFailure,
    /// Aligned with `Health::checks`.
    pub checks: Vec<CheckLimits>,
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
    /// At least 1, at most the number of regions.
    pub max_parallel: usize,
    pub bake: Span,
    pub approvals: Vec<String>,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckSource {
    Prometheus { query: String, url: Option<String> },
    Http { url: String, pointer: Option<String>, metric: Option<String> },
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
