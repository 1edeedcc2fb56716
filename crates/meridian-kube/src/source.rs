//! The Kubernetes `ConfigSource`: plans, regions and approvals are custom resources in one
//! namespace, watched. The run loop is the same as `meridian run`'s; it cannot tell this
//! source from the files.
//!
//! Each resource is turned back into the manifest it is (`apiVersion`, `kind`, `metadata`,
//! `spec`) and validated by the one code path `meridian validate` uses, named
//! `KIND/NAMESPACE/NAME` in place of a file, so an edit that does not validate is rejected
//! whole with every located error and the last good configuration stays in force. An
//! approval's source is `kube:NAMESPACE/NAME`: one that is deleted is revoked, like a removed
//! approval file.
//!
//! Owns listing, watching and fingerprinting the resources; must not decide anything.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::{Client, Resource};
use meridian_core::manifest::API_VERSION;
use meridian_core::ports::BoxFuture;
use meridian_core::ports::config::{Config, ConfigError, ConfigSource, LastSeen};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, mpsc};

use crate::crd::{ApprovalResource, RegionResource, RolloutPlanResource};

/// Plans, regions and approvals from one namespace of an API server.
pub struct KubeSource {
    client: Client,
    namespace: String,
    watch: Mutex<Watch>,
}

struct Watch {
    events: mpsc::UnboundedReceiver<()>,
    /// What the resources were when last loaded or looked at.
    last_seen: LastSeen,
}

impl KubeSource {
    /// Watch the three kinds in `namespace` (each watcher re-lists and resumes on its own).
    pub fn new(client: Client, namespace: &str) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        spawn_watch::<RolloutPlanResource>(&client, namespace, tx.clone());
        spawn_watch::<RegionResource>(&client, namespace, tx.clone());
        spawn_watch::<ApprovalResource>(&client, namespace, tx);
        KubeSource {
            client,
            namespace: namespace.to_string(),
            watch: Mutex::new(Watch { events, last_seen: LastSeen::default() }),
        }
    }

    /// Every resource as a manifest document, `(KIND/NAMESPACE/NAME, YAML)`, sorted.
    async fn documents(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut docs = Vec::new();
        self.list::<RolloutPlanResource>("RolloutPlan", &mut docs).await?;
        self.list::<RegionResource>("Region", &mut docs).await?;
        self.list::<ApprovalResource>("Approval", &mut docs).await?;
        docs.sort();
        Ok(docs)
    }

    async fn list<K>(&self, kind: &str, docs: &mut Vec<(String, String)>) -> Result<(), ConfigError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Serialize,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("{kind} resources in namespace {}", self.namespace);
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
            let name = object.meta().name.clone().unwrap_or_default();
            let text =
                manifest_text(kind, &object).map_err(|reason| ConfigError::Read { path: what.clone(), reason })?;
            docs.push((format!("{kind}/{}/{name}", self.namespace), text));
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

fn fingerprint(docs: &[(String, String)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    docs.hash(&mut h);
    h.finish()
}

/// One `()` per watch event of kind `K` (the watcher retries on its own after errors).
fn spawn_watch<K>(client: &Client, namespace: &str, tx: mpsc::UnboundedSender<()>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
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
            let loaded = self.documents().await.and_then(|docs| config_from(&self.namespace, &docs, now));
            self.watch.lock().await.last_seen.record(loaded.as_ref().map(|c| c.fingerprint).map_err(|e| e.to_string()));
            loaded
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
        source.strip_prefix("kube:").is_some_and(|rest| rest.starts_with(&format!("{}/", self.namespace)))
    }

    fn describe(&self) -> String {
        format!("namespace {}", self.namespace)
    }
}

/// Validate the documents as `meridian validate` would, into the configuration.
fn config_from(namespace: &str, docs: &[(String, String)], now: DateTime<Utc>) -> Result<Config, ConfigError> {
    let bundle = meridian_core::validate::load(docs, Some(now));
    if bundle.report.has_errors() {
        return Err(ConfigError::Invalid(bundle.report));
    }
    // A namespace without plans is a state like any other here (the controller is deployed
    // before the plans, the last plan was deleted), not the mistake an empty file is.
    let approval_sources: HashMap<String, String> =
        bundle.approvals.iter().map(|a| (a.name.clone(), format!("kube:{namespace}/{}", a.name))).collect();
    Ok(Config {
        generation: 1,
        plans: bundle.plans.into_iter().map(std::sync::Arc::new).collect(),
        approvals: bundle.approvals,
        approval_sources,
        warnings: bundle.report,
        loaded_at: now,
        fingerprint: fingerprint(docs),
    })
}

/// Call `wake` whenever a `RolloutCommand` appears or changes in `namespace` (one made with
/// kubectl reaches the decision loop at once; the loop reads it from the store). Runs until
/// the task is dropped.
pub async fn wake_on_commands(client: Client, namespace: String, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
    let api: Api<crate::crd::RolloutCommandResource> = Api::namespaced(client, &namespace);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        if matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::InitDone)) {
            wake();
        }
    }
}
