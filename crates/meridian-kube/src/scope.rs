//! Which namespaces `meridian kube` watches, and where each plan's own objects live.
//!
//! ```text
//!   --namespace NS        Watched::One(NS): plans, regions, approvals, commands of NS; every
//!                         object of the controller in NS
//!   --all-namespaces      Watched::All: plans, regions, approvals, commands of every namespace;
//!                         a plan's objects (status, audit segments, Events, finalizer,
//!                         commands) in the plan's namespace; the controller's own (Lease,
//!                         history, recorded approvals) in the home namespace
//! ```
//!
//! The engine, the HTTP API and the metrics name a plan by its name alone, so in
//! all-namespaces mode a plan name is unique across the cluster: when two namespaces hold a
//! RolloutPlan of the same name, the one created first runs and the other is refused
//! ([`resolve_plans`]); the source records which namespace each running plan comes from
//! ([`Namespaces::of_plan`]) and the refused ones, and every writer asks here where a plan
//! lives. Refusing keeps every name the API and the metrics show meaning one object; keying
//! plans `NAMESPACE/NAME` would have changed every URL, label and audit record.
//!
//! When the plan that runs under a name goes and one of that name in another namespace is
//! left, the name changes hands in two loads, never in one ([`hand_over`]): the first
//! configuration holds no plan of that name (the runtime lets the old one go, state and all),
//! the next one the newcomer, which starts from its own record. So one object's state never
//! carries over to another's.
//!
//! Owns that mapping and the choice of `Api` for it; must not decide anything about rollouts.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource};

/// What the source watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    One(String),
    All,
}

/// A RolloutPlan that is not run because a plan of the same name in another namespace was
/// created first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefusedPlan {
    pub namespace: String,
    pub name: String,
    /// The namespace of the plan of that name that runs.
    pub running_in: String,
}

impl RefusedPlan {
    /// What its `Accepted=False` condition and its Event say.
    pub fn message(&self) -> String {
        format!(
            "a RolloutPlan named {name:?} already runs from namespace {running:?} (created first); this one in \
             namespace {mine:?} is not run, since plans are named by name alone in the API and the metrics: rename \
             it, or delete one of the two",
            name = self.name,
            running = self.running_in,
            mine = self.namespace
        )
    }
}

/// One RolloutPlan object as listed: `(namespace, name, creation time in ms since the epoch)`.
pub type Listed = (String, String, i64);

/// Which of the listed plans run: the first created of each name (then by namespace, so the
/// choice is the same on every replica), as `name -> namespace`; the others are refused.
pub fn resolve_plans(listed: &[Listed]) -> (HashMap<String, String>, Vec<RefusedPlan>) {
    let mut by_age: Vec<&Listed> = listed.iter().collect();
    by_age.sort_by(|a, b| (a.2, &a.0, &a.1).cmp(&(b.2, &b.0, &b.1)));
    let mut running: HashMap<String, String> = HashMap::new();
    let mut refused = Vec::new();
    for (namespace, name, _) in by_age {
        match running.get(name) {
            Some(first) => refused.push(RefusedPlan {
                namespace: namespace.clone(),
                name: name.clone(),
                running_in: first.clone(),
            }),
            None => {
                running.insert(name.clone(), namespace.clone());
            }
        }
    }
    refused.sort();
    (running, refused)
}

/// Withhold from `running` each name whose namespace would change from `placed` (where it ran
/// until now); returns those names, which [`Namespaces::record`] then forgets, so the next
/// load places them afresh.
pub fn hand_over(running: &mut HashMap<String, String>, placed: &HashMap<String, String>) -> Vec<String> {
    let mut withheld: Vec<String> = running
        .iter()
        .filter(|(name, ns)| placed.get(*name).is_some_and(|before| before != *ns))
        .map(|(name, _)| name.clone())
        .collect();
    withheld.sort();
    for name in &withheld {
        running.remove(name);
    }
    withheld
}

/// See the module doc. Shared by the source (which fills it) and the writers (which ask it).
#[derive(Debug)]
pub struct Namespaces {
    watched: Watched,
    home: String,
    /// In all-namespaces mode: each running plan's namespace, as last loaded. A plan that
    /// disappears keeps its entry (its state may still be in force until it settles).
    plans: RwLock<HashMap<String, String>>,
    refused: RwLock<Vec<RefusedPlan>>,
}

impl Namespaces {
    /// Everything in `namespace`.
    pub fn one(namespace: &str) -> Self {
        Namespaces::new(Watched::One(namespace.to_string()), namespace)
    }

    /// Every namespace watched; the controller's own objects in `home`.
    pub fn all(home: &str) -> Self {
        Namespaces::new(Watched::All, home)
    }

    fn new(watched: Watched, home: &str) -> Self {
        Namespaces {
            watched,
            home: home.to_string(),
            plans: RwLock::new(HashMap::new()),
            refused: RwLock::new(Vec::new()),
        }
    }

    pub fn watched(&self) -> &Watched {
        &self.watched
    }

    /// Where the controller's own objects live (the Lease, the history, recorded approvals).
    pub fn home(&self) -> &str {
        &self.home
    }

    /// `namespace NS` or `all namespaces`.
    pub fn describe(&self) -> String {
        match &self.watched {
            Watched::One(ns) => format!("namespace {ns}"),
            Watched::All => "all namespaces".to_string(),
        }
    }

    /// The namespace of the running plan `plan`; `None` when no running plan has that name.
    pub fn of_plan(&self, plan: &str) -> Option<String> {
        match &self.watched {
            Watched::One(ns) => Some(ns.clone()),
            Watched::All => self.plans.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(plan).cloned(),
        }
    }

    /// Whether the object `namespace/name` is the plan that runs under `name`.
    pub fn is_running(&self, namespace: &str, name: &str) -> bool {
        self.of_plan(name).is_some_and(|ns| ns == namespace)
    }

    /// The plans refused as duplicates at the last load.
    pub fn refused(&self) -> Vec<RefusedPlan> {
        self.refused.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Where the plans were placed so far (all-namespaces mode; empty otherwise).
    pub fn placed(&self) -> HashMap<String, String> {
        match &self.watched {
            Watched::One(_) => HashMap::new(),
            Watched::All => self.plans.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
        }
    }

    /// Record what the source loaded; `withheld` names change hands (see [`hand_over`]).
    pub fn record(&self, running: HashMap<String, String>, refused: Vec<RefusedPlan>, withheld: &[String]) {
        let mut plans = self.plans.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        plans.extend(running);
        for name in withheld {
            plans.remove(name);
        }
        drop(plans);
        *self.refused.write().unwrap_or_else(std::sync::PoisonError::into_inner) = refused;
    }

    /// `K` in the watched namespace, or in all of them.
    pub fn watched_api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match &self.watched {
            Watched::One(ns) => Api::namespaced(client.clone(), ns),
            Watched::All => Api::all(client.clone()),
        }
    }

    /// `K` in the namespace of the plan `plan`, or `None` when no running plan has that name.
    pub fn plan_api<K>(&self, client: &Client, plan: &str) -> Option<(Api<K>, String)>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        self.of_plan(plan).map(|ns| (Api::namespaced(client.clone(), &ns), ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ns: &str, name: &str, at: i64) -> Listed {
        (ns.into(), name.into(), at)
    }

    #[test]
    fn the_first_created_of_a_name_runs_and_the_others_are_refused_naming_it() {
        let (running, refused) =
            resolve_plans(&[listed("b", "x", 2), listed("a", "x", 3), listed("a", "y", 1), listed("c", "x", 2)]);
        assert_eq!(running.get("x").map(String::as_str), Some("b"), "same age: by namespace");
        assert_eq!(running.get("y").map(String::as_str), Some("a"));
        assert_eq!(
            refused,
            vec![
                RefusedPlan { namespace: "a".into(), name: "x".into(), running_in: "b".into() },
                RefusedPlan { namespace: "c".into(), name: "x".into(), running_in: "b".into() },
            ]
        );
        let said = refused[0].message();
        assert!(said.contains("namespace \"b\"") && said.contains("namespace \"a\""), "{said}");
    }

    #[test]
    fn a_name_changes_namespace_only_through_a_load_without_it() {
        let placed = HashMap::from([("x".to_string(), "a".to_string()), ("y".to_string(), "a".to_string())]);
        let mut running = HashMap::from([("x".to_string(), "b".to_string()), ("y".to_string(), "a".to_string())]);
        assert_eq!(hand_over(&mut running, &placed), vec!["x".to_string()]);
        assert_eq!(running, HashMap::from([("y".to_string(), "a".to_string())]));
        // Next load: x is no longer placed, so b's x runs.
        let placed = HashMap::from([("y".to_string(), "a".to_string())]);
        let mut running = HashMap::from([("x".to_string(), "b".to_string())]);
        assert!(hand_over(&mut running, &placed).is_empty());
        assert_eq!(running.get("x").map(String::as_str), Some("b"));
    }

    #[test]
    fn one_namespace_places_every_plan_there_and_all_namespaces_only_the_loaded_ones() {
        assert_eq!(Namespaces::one("shop").of_plan("anything").as_deref(), Some("shop"));
        let all = Namespaces::all("meridian");
        assert_eq!(all.of_plan("x"), None);
        all.record(HashMap::from([("x".to_string(), "b".to_string())]), vec![], &[]);
        assert!(all.is_running("b", "x") && !all.is_running("a", "x"));
        // A plan gone from the next load keeps its place while its state may be in force.
        all.record(HashMap::new(), vec![], &[]);
        assert_eq!(all.of_plan("x").as_deref(), Some("b"));
        // A name that changes hands is forgotten, to be placed afresh.
        all.record(HashMap::new(), vec![], &["x".to_string()]);
        assert_eq!(all.of_plan("x"), None);
        assert_eq!(all.home(), "meridian");
    }
}
