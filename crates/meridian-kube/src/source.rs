//! The Kubernetes `ConfigSource`: plans, regions and approvals are custom resources in one
//! namespace or in all of them (`crate::scope`), watched. The run loop is the same as
//! `meridian run`'s; it cannot tell this source from the files.
//!
//! Each resource is turned back into the manifest it is (`apiVersion`, `kind`, `metadata`,
//! `spec`) and validated by the one code path `meridian validate` uses, named
//! `KIND/NAMESPACE/NAME` in place of a file, so an edit that does not validate is rejected
//! whole with every located error and the last good configuration stays in force. An
//! approval's source is `kube:NAMESPACE/NAME`: one that is deleted is revoked, like a removed
//! approval file.
//!
//! All namespaces: each namespace is validated on its own, as if it were one directory of
//! files, so a plan's regions are the Regions of its namespace and a scope's plan names mean
//! plans of that namespace. An Approval counts only for the plans of its own namespace: the
//! source confines it to them (`scope.confinedToPlans`, which the engine applies and the
//! signature does not cover), so an Approval in namespace A never opens a plan in B, whatever
//! its flag. The exception is a grant made through the controller's HTTP API: the leader keeps
//! it as an Approval in its home namespace annotated `meridian.dev/granted-via: api` (which
//! only the controller's account may set, `deploy/admission.yaml`), scoped as its grantor said,
//! like the grant it is. Plan names are unique across the cluster (`scope::resolve_plans`: the first
//! created runs; a later one of the same name is refused with a warning here and
//! `Accepted=False` by the reporter); so are approval names (the store records approvals by
//! name): a later Approval of a name already used in another namespace is ignored with a
//! warning. Any invalid resource in any namespace rejects the edit as a whole, as a bad file
//! does in standalone mode. A plan name that moves to another namespace (the running plan
//! deleted, a same-named one left elsewhere) is left out of one configuration first
//! (`scope::hand_over`), and the source asks to be loaded again at once.
//!
//! Owns listing, watching and fingerprinting the resources; must not decide anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::{Client, Resource};
use meridian_core::approval::ApprovalRecord;
use meridian_core::diagnostics::{Diagnostic, Report, Severity};
use meridian_core::manifest::API_VERSION;
use meridian_core::ports::BoxFuture;
use meridian_core::ports::config::{Config, ConfigError, ConfigSource, LastSeen};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, mpsc};

use crate::crd::{ApprovalResource, GRANTED_VIA, RegionResource, RolloutPlanResource};
use crate::scope::{Listed, Namespaces, RefusedPlan, Watched, hand_over, resolve_plans};

/// Plans, regions and approvals from one namespace, or all, of an API server.
pub struct KubeSource {
    client: Client,
    namespaces: Arc<Namespaces>,
    watch: Mutex<Watch>,
    /// Wakes `changed` without a watch event (a name changing hands needs a second load).
    again: mpsc::UnboundedSender<()>,
}

struct Watch {
    events: mpsc::UnboundedReceiver<()>,
    /// What the resources were when last loaded or looked at.
    last_seen: LastSeen,
}

/// One resource as a manifest document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Doc {
    kind: &'static str,
    namespace: String,
    name: String,
    /// Creation time, ms since the epoch (which of two same-named plans came first).
    created: i64,
    /// The manifest, YAML.
    text: String,
    /// An Approval the controller wrote in its home namespace for a grant through its API
    /// (`crd::GRANTED_VIA`): scoped as its grantor said, not confined to that namespace.
    grantor_scoped: bool,
}

impl Doc {
    /// `KIND/NAMESPACE/NAME`: what its diagnostics are located by, in place of a file.
    fn key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl KubeSource {
    /// Watch the three kinds in `namespace` (each watcher re-lists and resumes on its own).
    pub fn new(client: Client, namespace: &str) -> Self {
        KubeSource::watching(client, Arc::new(Namespaces::one(namespace)))
    }

    /// Watch the three kinds where `namespaces` says; the source records in it where each
    /// loaded plan lives, for the writers.
    pub fn watching(client: Client, namespaces: Arc<Namespaces>) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        spawn_watch::<RolloutPlanResource>(namespaces.watched_api(&client), tx.clone());
        spawn_watch::<RegionResource>(namespaces.watched_api(&client), tx.clone());
        spawn_watch::<ApprovalResource>(namespaces.watched_api(&client), tx.clone());
        let watch = Mutex::new(Watch { events, last_seen: LastSeen::default() });
        KubeSource { client, namespaces, watch, again: tx }
    }

    /// Where the loaded plans live.
    pub fn namespaces(&self) -> &Arc<Namespaces> {
        &self.namespaces
    }

    /// Every resource as a manifest document, sorted.
    async fn documents(&self) -> Result<Vec<Doc>, ConfigError> {
        let mut docs = Vec::new();
        self.list::<RolloutPlanResource>("RolloutPlan", &mut docs).await?;
        self.list::<RegionResource>("Region", &mut docs).await?;
        self.list::<ApprovalResource>("Approval", &mut docs).await?;
        docs.sort();
        Ok(docs)
    }

    async fn list<K>(&self, kind: &'static str, docs: &mut Vec<Doc>) -> Result<(), ConfigError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Serialize,
    {
        let api: Api<K> = self.namespaces.watched_api(&self.client);
        let what = format!("{kind} resources in {}", self.namespaces.describe());
        // An API server that is still warming up (429 right after a CRD is installed) or
        // briefly failing (5xx) is asked again for up to 10 s; anything else is an error.
        let mut attempts = 0;
        let list = loop {
            match api.list(&ListParams::default()).await {
                Ok(list) => break list,
                Err(kube::Error::Api(status)) if (status.code == 429 || status.code >= 500) && attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(ConfigError::Read { path: what, reason: e.to_string() }),
            }
        };
        for object in list.items {
            let meta = object.meta();
            let name = meta.name.clone().unwrap_or_default();
            let namespace = meta.namespace.clone().unwrap_or_default();
            let created = meta.creation_timestamp.as_ref().map_or(0, |t| t.0.as_millisecond());
            let text =
                manifest_text(kind, &object).map_err(|reason| ConfigError::Read { path: what.clone(), reason })?;
            let grantor_scoped = kind == "Approval"
                && namespace == self.namespaces.home()
                && meta.annotations.as_ref().and_then(|a| a.get(GRANTED_VIA.0)).is_some_and(|v| v == GRANTED_VIA.1);
            docs.push(Doc { kind, namespace, name, created, text, grantor_scoped });
        }
        Ok(())
    }
}

/// A resource as the manifest a user wrote: `metadata` reduced to what a manifest carries.
fn manifest_text<K: Resource + Serialize>(kind: &str, object: &K) -> Result<String, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    let meta = object.meta();
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), meta.name.clone().unwrap_or_default().into());
    if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), serde_json::to_value(labels).map_err(|e| e.to_string())?);
    }
    let manifest = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": value.get("spec").cloned().unwrap_or(serde_json::Value::Null),
    });
    serde_yaml::to_string(&manifest).map_err(|e| e.to_string())
}

/// What the resources say (not when they were made): a change of it is an edit.
fn fingerprint(docs: &[Doc]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for doc in docs {
        (doc.key(), &doc.text).hash(&mut h);
    }
    h.finish()
}

/// One `()` per watch event of kind `K` (the watcher retries on its own after errors).
fn spawn_watch<K>(api: Api<K>, tx: mpsc::UnboundedSender<()>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            if event.is_err() {
                // Backs off inside the stream's re-list; a short pause keeps a dead server quiet.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
}

impl ConfigSource for KubeSource {
    fn load(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Config, ConfigError>> {
        Box::pin(async move {
            let placed = self.namespaces.placed();
            let loaded =
                self.documents().await.and_then(|docs| config_from(self.namespaces.watched(), &docs, &placed, now));
            self.watch
                .lock()
                .await
                .last_seen
                .record(loaded.as_ref().map(|c| c.config.fingerprint).map_err(|e| e.to_string()));
            let loaded = loaded?;
            self.namespaces.record(loaded.running, loaded.refused, &loaded.withheld);
            if !loaded.withheld.is_empty() {
                // Its fingerprint said "withheld", so the documents as they are read as a change.
                let _ = self.again.send(());
            }
            Ok(loaded.config)
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut watch = self.watch.lock().await;
            loop {
                if watch.events.recv().await.is_none() {
                    // Every watcher ended: nothing will change any more.
                    return std::future::pending().await;
                }
                // Let a burst (an apply of several resources) settle.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                while watch.events.try_recv().is_ok() {}
                let seen = self.documents().await.map(|d| fingerprint(&d)).map_err(|e| e.to_string());
                if watch.last_seen.record(seen) {
                    return;
                }
            }
        })
    }

    fn owns(&self, source: &str) -> bool {
        source.strip_prefix("kube:").is_some_and(|rest| match self.namespaces.watched() {
            Watched::One(ns) => rest.starts_with(&format!("{ns}/")),
            Watched::All => true,
        })
    }

    fn describe(&self) -> String {
        self.namespaces.describe()
    }
}

/// A configuration and where its plans live.
struct Loaded {
    config: Config,
    /// `name -> namespace` of the plans in `config`.
    running: HashMap<String, String>,
    /// Plans refused as duplicates.
    refused: Vec<RefusedPlan>,
    /// Names left out of this configuration because they change namespace.
    withheld: Vec<String>,
}

/// Validate the documents as `meridian validate` would, into the configuration: all of them
/// at once in one namespace, each namespace on its own in all of them (see the module doc).
/// `placed`: where each plan name ran until now.
fn config_from(
    watched: &Watched,
    docs: &[Doc],
    placed: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Loaded, ConfigError> {
    let mut by_namespace: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for doc in docs {
        by_namespace.entry(doc.namespace.as_str()).or_default().push((doc.key(), doc.text.clone()));
    }
    if let Watched::One(_) = watched {
        // One namespace is one bundle, whatever the objects say.
        let all: Vec<(String, String)> = by_namespace.into_values().flatten().collect();
        by_namespace = BTreeMap::from([("", all)]);
    }
    let listed: Vec<Listed> = docs
        .iter()
        .filter(|d| d.kind == "RolloutPlan")
        .map(|d| (d.namespace.clone(), d.name.clone(), d.created))
        .collect();
    let (running, refused) = match watched {
        Watched::One(ns) => (listed.iter().map(|(_, name, _)| (name.clone(), ns.clone())).collect(), Vec::new()),
        Watched::All => resolve_plans(&listed),
    };
    let mut running = running;
    let withheld = hand_over(&mut running, placed);
    let created: HashMap<(&str, &str), i64> = docs
        .iter()
        .filter(|d| d.kind == "Approval")
        .map(|d| ((d.namespace.as_str(), d.name.as_str()), d.created))
        .collect();
    let grantor_scoped: HashSet<(&str, &str)> =
        docs.iter().filter(|d| d.grantor_scoped).map(|d| (d.namespace.as_str(), d.name.as_str())).collect();
    let mut report = Report::default();
    let mut plans = Vec::new();
    // Approvals with the namespace each comes from.
    let mut approvals: Vec<(String, ApprovalRecord)> = Vec::new();
    for (namespace, files) in by_namespace {
        let bundle = meridian_core::validate::load(&files, Some(now));
        report.extend(bundle.report);
        let mine: Vec<String> = bundle
            .plans
            .iter()
            .filter(|p| matches!(watched, Watched::One(_)) || running.get(&p.name).is_some_and(|ns| ns == namespace))
            .map(|p| p.name.clone())
            .collect();
        plans.extend(bundle.plans.into_iter().filter(|p| mine.contains(&p.name)).map(std::sync::Arc::new));
        for mut approval in bundle.approvals {
            let home = match watched {
                Watched::One(ns) => ns.clone(),
                Watched::All => {
                    if !grantor_scoped.contains(&(namespace, approval.name.as_str())) {
                        approval.scope.confined_to_plans = Some(mine.clone());
                    }
                    namespace.to_string()
                }
            };
            approvals.push((home, approval));
        }
    }
    if report.has_errors() {
        report.sort();
        return Err(ConfigError::Invalid(report));
    }
    for r in &refused {
        report.push(located_warning("RolloutPlan", &r.namespace, &r.name, "duplicate-plan-name", r.message()));
    }
    // One approval per name (the store records them by name): the first created keeps it.
    approvals.sort_by_key(|(ns, a)| (created.get(&(ns.as_str(), a.name.as_str())).copied().unwrap_or(0), ns.clone()));
    let mut approval_sources: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::new();
    for (namespace, approval) in approvals {
        if let Some(first) = approval_sources.get(&approval.name) {
            let message = format!(
                "an Approval named {:?} is already recorded from {first}; this one is ignored: rename it",
                approval.name
            );
            report.push(located_warning("Approval", &namespace, &approval.name, "duplicate-approval-name", message));
            continue;
        }
        approval_sources.insert(approval.name.clone(), format!("kube:{namespace}/{}", approval.name));
        kept.push(approval);
    }
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    report.sort();
    // A namespace without plans is a state like any other here (the controller is deployed
    // before the plans, the last plan was deleted), not the mistake an empty file is.
    let mut fingerprint = fingerprint(docs);
    if !withheld.is_empty() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (fingerprint, &withheld).hash(&mut h);
        fingerprint = h.finish();
    }
    let config = Config {
        generation: 1,
        plans,
        approvals: kept,
        approval_sources,
        warnings: report,
        loaded_at: now,
        fingerprint,
    };
    Ok(Loaded { config, running, refused, withheld })
}

/// A warning located at the resource `KIND/NAMESPACE/NAME`.
fn located_warning(kind: &str, namespace: &str, name: &str, code: &'static str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        file: format!("{kind}/{namespace}/{name}"),
        line: 1,
        column: 1,
        path: "metadata.name".into(),
        code,
        message,
        hint: None,
    }
}

/// Call `wake` whenever a `RolloutCommand` appears or changes where `namespaces` watches (one
/// made with kubectl reaches the decision loop at once; the loop reads it from the store).
/// Runs until the task is dropped.
pub async fn wake_on_commands(client: Client, namespaces: Arc<Namespaces>, wake: Arc<dyn Fn() + Send + Sync>) {
    let api: Api<crate::crd::RolloutCommandResource> = namespaces.watched_api(&client);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        if matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::InitDone)) {
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: &'static str, namespace: &str, created: i64, yaml: &str) -> Doc {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        Doc { kind, namespace: namespace.into(), name, created, text: yaml.into(), grantor_scoped: false }
    }

    fn plan(name: &str, region_b: &str) -> String {
        format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n  services: [{{name: \
             signin}}]\n  regions: [{{name: a}}, {region_b}]\n  waves:\n    - {{name: one, regions: [a]}}\n    - {{name: \
             two, regions: [b]}}\n  steps: [100]\n"
        )
    }

    fn approval(name: &str, flag: &str) -> String {
        format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}}}\nspec: {{flag: {flag}, \
             grantedBy: someone}}\n"
        )
    }

    fn load_placed(watched: &Watched, docs: &[Doc], placed: &HashMap<String, String>) -> Loaded {
        let mut docs = docs.to_vec();
        docs.sort();
        config_from(watched, &docs, placed, chrono::DateTime::UNIX_EPOCH).unwrap()
    }

    fn load(watched: &Watched, docs: &[Doc]) -> (Config, HashMap<String, String>, Vec<RefusedPlan>) {
        let l = load_placed(watched, docs, &HashMap::new());
        (l.config, l.running, l.refused)
    }

    #[test]
    fn all_namespaces_confines_each_approval_to_the_plans_of_its_namespace() {
        let docs = [
            doc("RolloutPlan", "team-a", 1, &plan("alpha", "{name: b, approvals: [go]}")),
            doc("RolloutPlan", "team-b", 1, &plan("beta", "{name: b, approvals: [go]}")),
            doc("Approval", "team-a", 1, &approval("go-a", "go")),
            doc("Approval", "team-c", 1, &approval("go-c", "go")),
        ];
        let (config, running, refused) = load(&Watched::All, &docs);
        assert!(refused.is_empty());
        assert_eq!(running.get("alpha").map(String::as_str), Some("team-a"));
        assert_eq!(running.get("beta").map(String::as_str), Some("team-b"));
        let scope = |name: &str| config.approvals.iter().find(|a| a.name == name).unwrap().scope.clone();
        assert_eq!(scope("go-a").confined_to_plans, Some(vec!["alpha".to_string()]));
        // A namespace without plans: its approvals apply to no plan, not to every plan.
        assert_eq!(scope("go-c").confined_to_plans, Some(vec![]));
        assert!(!scope("go-a").admits_plan("beta") && !scope("go-c").admits_plan("beta"));
        assert_eq!(config.approval_sources.get("go-a").map(String::as_str), Some("kube:team-a/go-a"));
        // A grant the controller made through its API (in its home namespace, annotated) is
        // scoped as its grantor said; the same Approval without the mark is confined.
        let granted = Doc { grantor_scoped: true, ..doc("Approval", "meridian", 1, &approval("go-api", "go")) };
        let plain = doc("Approval", "meridian", 1, &approval("go-kubectl", "go"));
        let (config, _, _) = load(&Watched::All, &[docs.to_vec(), vec![granted, plain]].concat());
        let scope = |name: &str| config.approvals.iter().find(|a| a.name == name).unwrap().scope.clone();
        assert_eq!(scope("go-api").confined_to_plans, None);
        assert!(scope("go-api").admits_plan("alpha") && scope("go-api").admits_plan("beta"));
        assert_eq!(scope("go-kubectl").confined_to_plans, Some(vec![]));
        // One namespace: no confinement, as before.
        let (config, _, _) = load(&Watched::One("team-a".into()), &docs[..1]);
        assert!(config.plans.len() == 1 && config.warnings.errors() == 0);
    }

    #[test]
    fn all_namespaces_resolves_regions_within_the_plans_namespace() {
        let region = "apiVersion: meridian.dev/v1alpha1\nkind: Region\nmetadata: {name: b}\nspec: {plan: alpha}\n";
        let uses = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: alpha}\nspec:\n  services: \
                    [{name: signin}]\n  regions: [{name: a}]\n  waves:\n    - {name: one, regions: [a, b]}\n  \
                    steps: [100]\n";
        // The Region is in another namespace: the plan does not get it, and the edit is rejected.
        let mut docs = vec![doc("RolloutPlan", "team-a", 1, uses), doc("Region", "team-b", 1, region)];
        docs.sort();
        match config_from(&Watched::All, &docs, &HashMap::new(), chrono::DateTime::UNIX_EPOCH) {
            Err(ConfigError::Invalid(report)) => {
                let said: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
                assert!(said.iter().any(|d| d.starts_with("RolloutPlan/team-a/alpha:")), "{said:?}");
            }
            other => panic!("a Region of another namespace was used: {:?}", other.map(|l| l.config.plans.len())),
        }
        let docs = [doc("RolloutPlan", "team-a", 1, uses), doc("Region", "team-a", 1, region)];
        let (config, _, _) = load(&Watched::All, &docs);
        assert_eq!(config.plans[0].regions.len(), 2);
    }

    #[test]
    fn of_two_plans_named_alike_the_first_created_runs_and_the_other_is_refused_with_a_warning() {
        let docs = [
            doc("RolloutPlan", "team-b", 5, &plan("alpha", "{name: b}")),
            doc("RolloutPlan", "team-a", 9, &plan("alpha", "{name: b}")),
            doc("Approval", "team-a", 1, &approval("go", "go")),
            doc("Approval", "team-b", 2, &approval("go", "go")),
        ];
        let (config, running, refused) = load(&Watched::All, &docs);
        assert_eq!(config.plans.len(), 1);
        assert_eq!(running.get("alpha").map(String::as_str), Some("team-b"));
        assert_eq!(
            refused,
            vec![RefusedPlan { namespace: "team-a".into(), name: "alpha".into(), running_in: "team-b".into() }]
        );
        let said: Vec<String> = config.warnings.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            said.iter().any(|d| d.starts_with("RolloutPlan/team-a/alpha:") && d.contains("namespace \"team-b\"")),
            "{said:?}"
        );
        // The approval name is kept by the first created; the other is ignored, said.
        assert_eq!(config.approvals.len(), 1);
        assert_eq!(config.approval_sources.get("go").map(String::as_str), Some("kube:team-a/go"));
        assert!(said.iter().any(|d| d.starts_with("Approval/team-b/go:") && d.contains("kube:team-a/go")), "{said:?}");
        // team-a's approval is confined to team-a's running plans: none (its alpha is refused).
        assert_eq!(config.approvals[0].scope.confined_to_plans, Some(vec![]));
    }

    #[test]
    fn a_name_that_moves_namespace_is_left_out_of_one_configuration_first() {
        let docs = [doc("RolloutPlan", "team-b", 5, &plan("alpha", "{name: b}"))];
        let placed = HashMap::from([("alpha".to_string(), "team-a".to_string())]);
        let first = load_placed(&Watched::All, &docs, &placed);
        assert!(first.config.plans.is_empty() && first.running.is_empty());
        assert_eq!(first.withheld, vec!["alpha".to_string()]);
        let plain = load(&Watched::All, &docs);
        assert_ne!(first.config.fingerprint, plain.0.fingerprint, "the next look must read as a change");
        assert_eq!(plain.0.plans.len(), 1);
        assert_eq!(plain.1.get("alpha").map(String::as_str), Some("team-b"));
    }
}
