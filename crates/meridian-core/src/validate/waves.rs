//! Waves: which regions each wave holds, by name and by label selector, and the wave's own
//! settings (`maxParallel`, `bake`, approvals).
//!
//! Owns placing every region in exactly one wave and the selector semantics
//! ([`selector_matches`], [`describe_selector`]). It does not define regions or their
//! labels (`regions`, `labels`).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::PlanChecker;
use super::labels::label_value_problem;
use super::labels::{LABEL_RULE, label_key_problem};
use super::regions::Site;
use crate::diagnostics::closest;
use crate::duration::Span;
use crate::manifest::{LabelSelector, RolloutPlanSpec, SelectorOperator};
use crate::plan::{ChosenBy, Region, Wave};

impl<'d> PlanChecker<'d, '_> {
    pub(super) fn waves(
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
            let owner = format!("wave {:?}", raw_wave.name);
            let max_failures =
                self.failure_budget(&format!("{base}.maxFailures"), &owner, raw_wave.max_failures.as_ref());
            if let Some(b) = max_failures
                && !members.is_empty()
                && b.allowed(members.len()) >= members.len()
            {
                self.warn(
                    &format!("{base}.maxFailures"),
                    "budget-covers-every-region",
                    format!(
                        "maxFailures {b} of wave {:?} tolerates {} failing",
                        raw_wave.name,
                        if members.len() == 1 {
                            "its only region".into()
                        } else {
                            format!("all its {} regions", members.len())
                        }
                    ),
                    Some("the wave would complete with no region enabled; allow fewer failures".into()),
                );
            }
            waves.push(Wave {
                name: raw_wave.name.clone(),
                regions: members,
                chosen_by,
                max_parallel,
                bake,
                approvals: raw_wave.approvals.clone(),
                max_failures,
                depends_on: super::dependencies::resolved(&raw_wave.depends_on),
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
    pub(super) fn selector(&mut self, path: &str, wave: &str, selector: &LabelSelector) -> bool {
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
}

/// How a region came into the wave it is in, and where that is written.
pub(super) struct Placement {
    pub(super) wave: String,
    pub(super) by: ChosenBy,
    pub(super) path: String,
}

pub(super) fn operator_name(op: SelectorOperator) -> &'static str {
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
