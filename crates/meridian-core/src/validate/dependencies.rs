//! `dependsOn` across plans: every entry names a plan read with this one (not itself) and,
//! when it names a wave, a wave of that plan; and no set of dependencies waits on itself.
//!
//! Owns the checks that need every plan at once, so it runs after each plan was checked on
//! its own. A cycle is judged wave by wave, as the engine waits: plan A's second wave may
//! wait for plan B's first while B's second waits for A's first; only a wave that would wait,
//! through others, for itself is an error. What a dependency means at run time is
//! `crate::dependency`'s.

use std::collections::{HashMap, VecDeque};

use crate::diagnostics::{Report, did_you_mean};
use crate::manifest::{DependencySpec, RolloutPlan};
use crate::plan::PlanDependency;
use crate::source::Document;

/// The resolved form of a list of entries (checked by [`check`]).
pub(super) fn resolved(entries: &[DependencySpec]) -> Vec<PlanDependency> {
    entries.iter().map(|d| PlanDependency { plan: d.plan.clone(), wave: d.wave.clone() }).collect()
}

/// One `dependsOn` entry that names a known plan and wave: an edge of the wave graph.
struct Edge<'a> {
    /// The plan (by index) and the wave that waits (plan-wide entries: its first wave).
    from: WaveAt,
    /// The plan and the wave waited for (a whole plan: its last wave).
    to: WaveAt,
    doc: &'a Document,
    path: String,
    /// "plan store-restore" or "plan store-restore wave europe".
    from_label: String,
    to_label: String,
}

/// Check every plan's `dependsOn` against the others (`plans`: the first definition of each
/// name, as written). Returns the names of the plans with an error here.
pub(super) fn check(plans: &[(&Document, &RolloutPlan)], report: &mut Report) -> Vec<String> {
    let index: HashMap<&str, usize> =
        plans.iter().enumerate().rev().map(|(i, (_, p))| (p.metadata.name.as_str(), i)).collect();
    let names: Vec<&str> = plans.iter().map(|(_, p)| p.metadata.name.as_str()).collect();
    let mut failed = Vec::new();
    let mut edges = Vec::new();
    for (p, (doc, raw)) in plans.iter().enumerate() {
        let name = raw.metadata.name.as_str();
        let lists = std::iter::once((None, "spec".to_string(), &raw.spec.depends_on)).chain(
            raw.spec.waves.iter().enumerate().map(|(w, wave)| (Some(w), format!("spec.waves[{w}]"), &wave.depends_on)),
        );
        let mut errors = 0;
        for (wave, base, entries) in lists {
            for (k, entry) in entries.iter().enumerate() {
                let path = format!("{base}.dependsOn[{k}]");
                let waiter = match wave {
                    Some(w) => format!("plan {name} wave {}", raw.spec.waves[w].name),
                    None => format!("plan {name}"),
                };
                if entry.plan == name {
                    errors += 1;
                    report.push(doc.error(
                        &format!("{path}.plan"),
                        "self-dependency",
                        format!("{waiter} depends on its own plan {name:?}"),
                        Some("waves of a plan already run in order; remove this entry or name another plan".into()),
                    ));
                    continue;
                }
                let Some(&q) = index.get(entry.plan.as_str()) else {
                    errors += 1;
                    let hint = did_you_mean(&entry.plan, names.iter().copied()).unwrap_or_else(|| {
                        "define a RolloutPlan of that name in the same files (in Kubernetes: the same namespace), \
                         or remove this entry"
                            .into()
                    });
                    report.push(doc.error(
                        &format!("{path}.plan"),
                        "unknown-plan",
                        format!("{waiter} depends on plan {:?}, which is not defined", entry.plan),
                        Some(hint),
                    ));
                    continue;
                };
                let other = &plans[q].1.spec.waves;
                let target = match &entry.wave {
                    None => other.len().checked_sub(1),
                    Some(w) => match other.iter().position(|x| x.name == *w) {
                        Some(v) => Some(v),
                        None => {
                            errors += 1;
                            let waves = other.iter().map(|x| x.name.as_str());
                            let hint = did_you_mean(w, waves.clone()).unwrap_or_else(|| {
                                format!("name one of its waves: {}", waves.collect::<Vec<_>>().join(", "))
                            });
                            report.push(doc.error(
                                &format!("{path}.wave"),
                                "unknown-wave",
                                format!(
                                    "{waiter} depends on wave {w:?} of plan {:?}, which has no such wave",
                                    entry.plan
                                ),
                                Some(hint),
                            ));
                            None
                        }
                    },
                };
                if let Some(v) = target
                    && !raw.spec.waves.is_empty()
                {
                    let to_label = match &entry.wave {
                        Some(w) => format!("plan {} wave {w}", entry.plan),
                        None => format!("plan {}", entry.plan),
                    };
                    edges.push(Edge {
                        from: (p, wave.unwrap_or(0)),
                        to: (q, v),
                        doc,
                        path,
                        from_label: waiter,
                        to_label,
                    });
                }
            }
        }
        if errors > 0 {
            failed.push(name.to_string());
        }
    }
    let wave_counts: Vec<usize> = plans.iter().map(|(_, p)| p.spec.waves.len()).collect();
    for (e, edge) in edges.iter().enumerate() {
        let Some(back) = path_between(&edges, &wave_counts, edge.to, edge.from) else { continue };
        let hops: Vec<String> = std::iter::once(e)
            .chain(back)
            .map(|x| format!("{} waits for {}", edges[x].from_label, edges[x].to_label))
            .collect();
        report.push(
            edge.doc.error(
                &format!("{}.plan", edge.path),
                "dependency-cycle",
                format!("dependsOn makes a cycle, so none of it can ever start: {}", hops.join(", and ")),
                Some(
                    "remove one of these entries, or depend on an earlier wave of the other plan instead of all of it"
                        .into(),
                ),
            ),
        );
        let name = plans[edge.from.0].1.metadata.name.clone();
        if !failed.contains(&name) {
            failed.push(name);
        }
    }
    failed
}

/// A wave as (plan index, wave index).
type WaveAt = (usize, usize);

/// The cross-plan edges (by index) on a path of waits from wave `from` to wave `to`, if one
/// exists. A wave also waits for the wave before it in its plan.
fn path_between(edges: &[Edge<'_>], waves: &[usize], from: WaveAt, to: WaveAt) -> Option<Vec<usize>> {
    // Each wave reached: the wave it was reached from and by which edge (`None`: in order).
    let mut seen: HashMap<WaveAt, Option<(WaveAt, Option<usize>)>> = HashMap::from([(from, None)]);
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut hops = Vec::new();
            let mut at = node;
            while let Some(Some((prev, edge))) = seen.get(&at) {
                hops.extend(*edge);
                at = *prev;
            }
            hops.reverse();
            return Some(hops);
        }
        let (p, w) = node;
        let earlier = (w > 0 && w < waves[p]).then(|| ((p, w - 1), None));
        let across = edges.iter().enumerate().filter(|(_, e)| e.from == node).map(|(x, e)| (e.to, Some(x)));
        for (next, edge) in earlier.into_iter().chain(across) {
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(next) {
                slot.insert(Some((node, edge)));
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Severity;
    use crate::validate::load;

    fn plan(name: &str, plan_deps: &str, waves: &[(&str, &str)]) -> String {
        let mut text = format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n  services: \
             [{{name: s}}]\n  regions: [{}]\n",
            waves.iter().map(|(w, _)| format!("{{name: {name}-{w}}}")).collect::<Vec<_>>().join(", ")
        );
        if !plan_deps.is_empty() {
            text.push_str(&format!("  dependsOn: {plan_deps}\n"));
        }
        text.push_str("  waves:\n");
        for (w, deps) in waves {
            text.push_str(&format!("    - name: {w}\n      regions: [{name}-{w}]\n"));
            if !deps.is_empty() {
                text.push_str(&format!("      dependsOn: {deps}\n"));
            }
        }
        text
    }

    /// (file:line:column, code, message, hint) of every error.
    fn located(files: &[(&str, String)]) -> (Vec<String>, Vec<String>) {
        let files: Vec<(String, String)> = files.iter().map(|(n, t)| ((*n).to_string(), t.clone())).collect();
        let bundle = load(&files, None);
        let errors = bundle
            .report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| {
                format!(
                    "{}:{}:{} {} {} | {}",
                    d.file,
                    d.line,
                    d.column,
                    d.code,
                    d.message,
                    d.hint.clone().unwrap_or_default()
                )
            })
            .collect();
        (errors, bundle.plans.iter().map(|p| p.name.clone()).collect())
    }

    #[test]
    fn valid_dependencies_resolve_and_reach_the_plan() {
        let a = plan("signin", "", &[("canary", ""), ("rest", "")]);
        let b = plan("store", "[{plan: signin}]", &[("one", "[{plan: signin, wave: canary}]"), ("two", "")]);
        let files: Vec<(String, String)> = vec![("a.yaml".into(), a), ("b.yaml".into(), b)];
        let bundle = load(&files, None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report.diagnostics);
        let store = bundle.plan("store").unwrap();
        assert_eq!(store.depends_on.len(), 1);
        assert_eq!(store.depends_on[0].wave, None);
        assert_eq!(store.waves[0].depends_on[0].wave.as_deref(), Some("canary"));
    }

    #[test]
    fn unknown_plans_and_waves_and_self_dependencies_are_located_errors_with_a_fix() {
        let a = plan("signin", "", &[("canary", "")]);
        let b = plan(
            "store",
            "[{plan: signni}]",
            &[("one", "[{plan: signin, wave: canray}]"), ("two", "[{plan: store, wave: one}]")],
        );
        let (errors, plans) = located(&[("a.yaml", a), ("b.yaml", b)]);
        assert_eq!(
            errors,
            vec![
                "b.yaml:7:22 unknown-plan plan store depends on plan \"signni\", which is not defined | did you mean \
                 \"signin\"?",
                "b.yaml:11:40 unknown-wave plan store wave one depends on wave \"canray\" of plan \"signin\", which has \
                 no such wave | did you mean \"canary\"?",
                "b.yaml:14:26 self-dependency plan store wave two depends on its own plan \"store\" | waves of a plan \
                 already run in order; remove this entry or name another plan",
            ]
        );
        // The plan with errors is not loaded; the one it names is.
        assert_eq!(plans, vec!["signin".to_string()]);
        let (errors, _) = located(&[("b.yaml", plan("store", "[{plan: nothing-like-it}]", &[("one", "")]))]);
        assert!(
            errors[0].ends_with(
                "define a RolloutPlan of that name in the same files (in Kubernetes: the same \
                                     namespace), or remove this entry"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_cycle_across_plans_is_an_error_at_each_entry_on_it_but_waves_may_take_turns() {
        // a's second wave waits for b's first, b's second for a's first: they take turns.
        let a = plan("a", "", &[("one", ""), ("two", "[{plan: b, wave: one}]")]);
        let b = plan("b", "", &[("one", ""), ("two", "[{plan: a, wave: one}]")]);
        let (errors, plans) = located(&[("a.yaml", a), ("b.yaml", b)]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(plans.len(), 2);
        // a's first wave waits for b's second, which waits for a's first: a cycle.
        let a = plan("a", "", &[("one", "[{plan: b, wave: two}]"), ("two", "")]);
        let b = plan("b", "", &[("one", ""), ("two", "[{plan: a, wave: one}]")]);
        let (errors, plans) = located(&[("a.yaml", a), ("b.yaml", b)]);
        assert_eq!(
            errors,
            vec![
                "a.yaml:10:26 dependency-cycle dependsOn makes a cycle, so none of it can ever start: plan a wave one \
                 waits for plan b wave two, and plan b wave two waits for plan a wave one | remove one of these \
                 entries, or depend on an earlier wave of the other plan instead of all of it",
                "b.yaml:12:26 dependency-cycle dependsOn makes a cycle, so none of it can ever start: plan b wave two \
                 waits for plan a wave one, and plan a wave one waits for plan b wave two | remove one of these \
                 entries, or depend on an earlier wave of the other plan instead of all of it",
            ]
        );
        assert!(plans.is_empty());
        // Whole plans, through a third: a -> b -> c -> a.
        let (errors, _) = located(&[
            ("a.yaml", plan("a", "[{plan: b}]", &[("one", "")])),
            ("b.yaml", plan("b", "[{plan: c}]", &[("one", "")])),
            ("c.yaml", plan("c", "[{plan: a}]", &[("one", "")])),
        ]);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("plan a waits for plan b, and plan b waits for plan c, and plan c waits for plan a")
        );
    }
}
