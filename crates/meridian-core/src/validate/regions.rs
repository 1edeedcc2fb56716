//! Regions: a plan's region entries and the `Region` documents merged into it, each
//! resolved against what it inherits from the plan (time zone, labels, overrides, freezes).
//!
//! Owns the merge of `Region` documents, where a region is defined, and a region's effective
//! settings with their origins. It does not place regions in waves (`waves`) and does not
//! check the plan-wide values it inherits (`schedule`, `health`, `actuator` do, once).

use std::collections::HashMap;

use chrono_tz::Tz;

use super::health::written_limits;
use super::values::check_name;
use super::{Defaults, PlanChecker, PlanChecks, RegionDocument, keep_relevant};
use crate::diagnostics::{Report, did_you_mean};
use crate::manifest::{RegionSpec, RolloutPlan};
use crate::plan::{CheckLimits, CheckOrigins, Origin, Region, RegionSettings, SettingOrigins};
use crate::source::{Document, Manifest, Recovered};

impl<'d> PlanChecker<'d, '_> {
    /// One region entry (of the plan, or of a `Region` document with `base` = `spec`),
    /// resolved against what it inherits.
    pub(super) fn region(&mut self, r: &RegionSpec, base: &str, d: &Defaults<'_>) -> Region {
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
        let progress_deadline = match r.progress_deadline.as_deref() {
            Some(text) => {
                origins.progress_deadline = Origin::Region;
                self.progress_deadline(&format!("{base}.progressDeadline"), Some(text))
            }
            None => d.progress_deadline,
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
        if let Some(deadline) = progress_deadline
            && deadline <= step_bake
            && (origins.progress_deadline == Origin::Region || origins.step_bake == Origin::Region)
        {
            let path = if origins.progress_deadline == Origin::Region {
                format!("{base}.progressDeadline")
            } else {
                format!("{base}.stepBake")
            };
            self.deadline_within_bake(&path, &format!("region {:?}", r.name), deadline, step_bake);
        }
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
            settings: RegionSettings {
                steps,
                step_bake,
                progress_deadline,
                windows,
                on_failure,
                checks,
                actuator,
                freezes,
                origins,
            },
        }
    }

    /// A region's `noData` and `checks` over the plan's check limits, field by field.
    /// `plan_checks` is `None` when the plan is unknown.
    pub(super) fn check_overrides(
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

    pub(super) fn unknown_timezone(&mut self, path: &str, region: &str, text: &str) {
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
}

/// `Region` documents by the plan they name, in the order read. A document naming no known
/// plan is reported here and checked on its own, as far as that goes without its plan.
pub(super) fn region_documents<'d>(
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

/// Where a region's name is written, for diagnostics that point at it from elsewhere.
#[derive(Clone, Copy)]
pub(super) struct Site<'d> {
    pub(super) doc: &'d Document,
    /// `spec.regions[3].name`, or `metadata.name` for a `Region` document.
    pub(super) from_document: bool,
    pub(super) index: usize,
}

impl Site<'_> {
    pub(super) fn name_path(&self) -> String {
        if self.from_document { "metadata.name".into() } else { format!("spec.regions[{}].name", self.index) }
    }

    pub(super) fn at(&self) -> String {
        format!("{}:{}", self.doc.file, self.doc.locations.value(&self.name_path()).line)
    }
}
