//! The second parsing stage: raw manifests to a resolved [`Plan`] and [`ApprovalRecord`]s,
//! collecting every problem at once, each pointing at the node it is about.
//!
//! One code path for everyone: `meridian validate`, the file watcher, the Kubernetes mode
//! and `meridian plan` all call [`load`] or [`validate_documents`]. Errors make a plan
//! unusable; warnings (risks) do not, unless the caller is strict.
//!
//! This module owns the walk: which documents become plans and approvals, and the order in
//! which a plan's sections are checked (`PlanChecker::check`). Each section's rules live in
//! a submodule of their own, in the order of the walk:
//!
//! ```text
//!  services ─> schedule (steps, stepBake, windows, freezes) ─> health ─> actuator
//!      ─> regions (entries and Region documents, overrides; labels) ─> waves ─> risks
//!      ─> approval policies (per flag: requires, signedBy)
//!  approvals (separately, against the plans read with them: scope, and signatures against
//!  the policies of the valid plans)
//!  shared: values (durations, names, flags), templates (placeholders and URLs)
//! ```
//!
//! Submodules add methods to `PlanChecker` and report through it; none of them reads a
//! file, a clock or the network, and none decides what another section's values mean.

mod actuator;
mod approvals;
mod dependencies;
pub(crate) use approvals::rfc3339;
mod health;
mod labels;
mod policies;
mod regions;
mod risks;
mod schedule;
mod services;
mod templates;
mod values;
mod waves;

pub use waves::{describe_selector, selector_matches};

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::approval::ApprovalRecord;
use crate::diagnostics::Report;
use crate::duration::Span;
use crate::freeze::Freeze;
use crate::manifest::{CheckSpec, OnFailure, Region as RegionManifest, RolloutPlan};
use crate::plan::{ActuatorSettings, Check, DEFAULT_STEP_BAKE, DEFAULT_STEPS, Origin, Plan};
use crate::source::{Document, Manifest, Recovered, parse_file_recovering};
use crate::window::Window;
use approvals::{check_approval, check_signature};
use regions::{Site, region_documents};
use values::check_name;

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
    // `dependsOn` across plans: the first definition of each plan, as written.
    let mut first_plans: Vec<(&Document, &RolloutPlan)> = Vec::new();
    for (doc, raw) in &raw_plans {
        if !first_plans.iter().any(|(_, p)| p.metadata.name == raw.metadata.name) {
            first_plans.push((*doc, *raw));
        }
    }
    let mut local = Report::default();
    let broken = dependencies::check(&first_plans, &mut local);
    let recovered: Vec<&Recovered> = entries.iter().filter_map(|(_, r)| *r).collect();
    keep_relevant(local, &recovered, &mut bundle.report);
    bundle.plans.retain(|p| !broken.contains(&p.name));
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
        let approval = check_approval(doc, raw, &raw_plans, &region_documents, now, &mut local)
            .filter(|a| check_signature(doc, a, &bundle.plans, &mut local));
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

/// What a region inherits from its plan where it does not override it.
struct Defaults<'p> {
    steps: Vec<u32>,
    step_bake: Span,
    progress_deadline: Option<Span>,
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
            progress_deadline: None,
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

    /// A deadline no longer than a step's bake passes at every step of a healthy unit.
    fn deadline_within_bake(&mut self, path: &str, owner: &str, deadline: Span, step_bake: Span) {
        self.warn(
            path,
            "deadline-within-bake",
            format!("progressDeadline {deadline} of {owner} is not longer than its stepBake {step_bake}"),
            Some("a step bakes without progress; make the deadline longer than stepBake, e.g. twice as long".into()),
        );
    }

    fn line_of(&self, path: &str) -> usize {
        self.doc.locations.value(path).line
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
        let progress_deadline = self.progress_deadline("spec.progressDeadline", spec.progress_deadline.as_deref());
        let on_failure = spec.on_failure.unwrap_or_default();
        let max_failures = self.failure_budget("spec.maxFailures", "the plan", spec.max_failures.as_ref());
        if let Some(deadline) = progress_deadline
            && deadline <= step_bake
        {
            self.deadline_within_bake("spec.progressDeadline", "the plan", deadline, step_bake);
        }
        // `check_index[k]` is where `health.checks[k]` is written: checks that do not
        // resolve are left out, so the two differ after the first of those.
        let (health, check_index) = self.health(spec.health.as_ref());
        let actuator = spec.actuator.as_ref().and_then(|a| self.actuator("spec.actuator", a));
        let freezes = self.freezes("spec.freezes", &spec.freezes, Origin::Plan);
        let defaults = Defaults {
            steps: steps.clone(),
            step_bake,
            progress_deadline,
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
        let required: std::collections::HashSet<&str> = regions
            .iter()
            .flat_map(|r| r.approvals.iter())
            .chain(waves.iter().flat_map(|w| w.approvals.iter()))
            .map(String::as_str)
            .collect();
        let approval_policies = self.approval_policies(&spec.approval_policies, &required);
        self.risks(raw, &waves);
        self.relative_risks(&health, &check_index, &regions, &waves);

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
            max_failures,
            on_budget_exceeded: spec.on_budget_exceeded.unwrap_or_default(),
            on_progress_deadline: spec.on_progress_deadline.unwrap_or_default(),
            actuator,
            approval_policies,
            depends_on: dependencies::resolved(&spec.depends_on),
            region_lookup: Default::default(),
            service_lookup: Default::default(),
        };
        plan.index_names();
        Some(plan)
    }
}

/// Small helpers for the table tests of the submodules.
#[cfg(test)]
mod test_support {
    use super::{Bundle, load};

    /// A one-region plan with this `actuator:` section (indented under `spec`).
    pub(in crate::validate) fn plan_with_actuator(actuator: &str) -> Bundle {
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

    pub(in crate::validate) fn errors(bundle: &Bundle) -> Vec<(String, &'static str)> {
        bundle
            .report
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diagnostics::Severity::Error)
            .map(|d| (d.path.clone(), d.code))
            .collect()
    }
}
