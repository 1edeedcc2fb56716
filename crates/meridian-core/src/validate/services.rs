//! Services: names, `after` dependencies and the dependency order.
//!
//! Owns the service list of a plan and the cycle report. It does not look at regions,
//! waves or health, and it never reorders what the user wrote except into dependency order.

use std::collections::HashMap;

use super::PlanChecker;
use crate::diagnostics::did_you_mean;
use crate::manifest::RolloutPlanSpec;
use crate::plan::Service;

impl<'d> PlanChecker<'d, '_> {
    /// Services, their `after` dependencies, and the dependency order.
    pub(super) fn services(
        &mut self,
        spec: &RolloutPlanSpec,
        index: &HashMap<&str, usize>,
    ) -> (Vec<Service>, Vec<usize>) {
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
}

/// Services in dependency order, stable with respect to written order, and every cycle
/// found on the way (each as service indices, a service followed by the one it waits for).
/// Services on a cycle are appended in written order so the order stays complete.
pub(super) fn topo_order(services: &[Service]) -> (Vec<usize>, Vec<Vec<usize>>) {
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
