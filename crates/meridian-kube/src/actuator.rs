//! The `kubernetes` actuator: a (region, service)'s traffic percent set and read back
//! through one object in a cluster, behind the core's `Actuator` port.
//!
//! ```text
//!  Routed ── target's actuator is kubernetes? ──yes──> KubeActuator ──> cluster client
//!     │                                                    │        (local, or one per kubeconfig
//!     └──no──> other (PlanActuators: http, dry run)        │         Secret, cached)
//!                                                          v
//!        ConfigMap data[key] = "P"  |  HTTPRoute backend weight P, stable 100 - P  |
//!        Deployment spec.replicas = ceil(replicas * P / 100)
//! ```
//!
//! Every write reads the object, changes only the fields that carry the percent (and the
//! annotations below), and replaces it guarded by the resourceVersion it read: nothing
//! else in the object is touched, a concurrent writer makes it read again (up to
//! [`CONFLICT_ATTEMPTS`] times), and an object that already says the percent is not
//! written at all, so sending the same percent twice is harmless. The write records the
//! actuation's idempotency key in the annotation [`IDEMPOTENCY_KEY_ANNOTATION`]; a
//! Deployment also records the percent in [`PERCENT_ANNOTATION`], since many percents
//! scale to the same replicas (see [`percent_for_replicas`]).
//!
//! Owns the mapping between a percent and each object, the cluster clients and the
//! classification of failures (retryable or not). It does not decide: no intent, drift or
//! retry policy lives here (the controller's, around these calls).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use meridian_core::plan::{ActuatorSettings, ClusterRef, KubeObject, KubernetesActuatorSettings, Plan};
use meridian_core::ports::{ActuationError, Actuator, BoxFuture, Target};
use serde_json::Value;

/// The annotation that records the idempotency key of the actuation that last wrote an object.
pub const IDEMPOTENCY_KEY_ANNOTATION: &str = "meridian.dev/idempotency-key";
/// The annotation that records the percent a Deployment was last scaled for.
pub const PERCENT_ANNOTATION: &str = "meridian.dev/percent";
/// Time allowed for one request to a cluster (reading a Secret, an object, or writing it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads and writes of one actuation before a run of resourceVersion conflicts is reported
/// (as retryable).
pub const CONFLICT_ATTEMPTS: u32 = 3;

/// The replicas a Deployment runs at `percent` when it runs `full` at 100 %:
/// `ceil(full * percent / 100)`, so any traffic at all runs at least one.
pub fn replicas_for_percent(percent: u32, full: u32) -> u32 {
    let scaled = (u64::from(full) * u64::from(percent.min(100))).div_ceil(100);
    u32::try_from(scaled).unwrap_or(u32::MAX)
}

/// The percent a Deployment running `observed` replicas serves, out of `full` at 100 %.
///
/// The rounding: many percents scale to the same replicas (of 10, every percent from 1 to 10
/// runs 1), so the read-back accepts the percent recorded at the last write (`recorded`,
/// from [`PERCENT_ANNOTATION`]) whenever it scales to exactly the observed replicas. Otherwise
/// (scaled by hand, or never written by Meridian) it is the smallest percent that scales to
/// them; more replicas than `full` (an autoscaler, a person) read as 100 %.
pub fn percent_for_replicas(observed: u32, full: u32, recorded: Option<u32>) -> u32 {
    if let Some(p) = recorded.filter(|p| *p <= 100 && replicas_for_percent(*p, full) == observed) {
        return p;
    }
    if observed == 0 || full == 0 {
        return 0;
    }
    if observed > full {
        return 100;
    }
    // The smallest p with ceil(full * p / 100) == observed, i.e. full * p > 100 * (observed - 1).
    let p = 100 * u64::from(observed - 1) / u64::from(full) + 1;
    u32::try_from(p).unwrap_or(100).min(100)
}

/// Why setting or reading traffic through Kubernetes failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeActuatorError {
    /// The object (or the kubeconfig Secret) does not exist.
    #[error("{object} does not exist; create it, or correct the plan's kubernetes actuator")]
    NotFound { object: String },

    /// Meridian's identity may not do this to the object.
    #[error(
        "{verb} {object} is forbidden: {message}; grant meridian's ServiceAccount {verb} on it (see \
         deploy/actuator-rbac.yaml)"
    )]
    Forbidden { verb: &'static str, object: String, message: String },

    /// The cluster did not accept the credentials (of a kubeconfig Secret: it is read again
    /// at the next attempt).
    #[error("{verb} {object}: the cluster refused the credentials: {message}; check the kubeconfig it is reached with")]
    Unauthorized { verb: &'static str, object: String, message: String },

    /// Another writer kept changing the object between read and write.
    #[error("{object} changed under every one of {attempts} writes (resourceVersion conflicts); trying again later")]
    Conflict { object: String, attempts: u32 },

    /// Any other answer of the API server.
    #[error("{verb} {object} answered {code}: {message}")]
    Api { verb: &'static str, object: String, code: u16, message: String },

    /// No answer within the time allowed.
    #[error("{verb} {object} timed out after {}ms", after.as_millis())]
    Timeout { verb: &'static str, object: String, after: Duration },

    /// The connection failed or broke.
    #[error("{verb} {object} failed: {reason}")]
    Transport { verb: &'static str, object: String, reason: String },

    /// The request could not be made (a client that could not be built, an unusable answer).
    #[error("{verb} {object} failed: {reason}")]
    Client { verb: &'static str, object: String, reason: String },

    /// The kubeconfig Secret holds nothing usable.
    #[error("{secret}: {reason}")]
    Kubeconfig { secret: String, reason: String },

    /// A name, once the target's names were filled in, is not a Kubernetes name.
    #[error(
        "{what} {name:?} (filled in for {target}) is not a valid Kubernetes name; rename it, or change the template"
    )]
    InvalidName { what: &'static str, name: String, target: String },

    /// A percent above 100 was asked for; nothing was sent.
    #[error("traffic percent {percent} is out of range; use 0 to 100")]
    InvalidPercent { percent: u32 },

    /// The object does not have the shape the actuator needs (a value that is not a percent,
    /// an HTTPRoute without the named backends).
    #[error("{object}: {reason}")]
    Unusable { object: String, reason: String },

    /// The target's actuator is not `kubernetes` (a wiring mistake: see [`Routed`]).
    #[error("plan {plan:?} in region {region:?} does not set traffic with the kubernetes actuator")]
    NotKubernetes { plan: String, region: String },
}

impl KubeActuatorError {
    /// Whether the same call may succeed later: timeouts, broken connections, 429, 5xx,
    /// conflicts and refused credentials of a kubeconfig Secret (read again next time).
    /// A missing object, RBAC and bad settings need a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            KubeActuatorError::Timeout { .. }
            | KubeActuatorError::Transport { .. }
            | KubeActuatorError::Conflict { .. }
            | KubeActuatorError::Unauthorized { .. } => true,
            KubeActuatorError::Api { code, .. } => *code == 429 || (500..=599).contains(code),
            KubeActuatorError::NotFound { .. }
            | KubeActuatorError::Forbidden { .. }
            | KubeActuatorError::Client { .. }
            | KubeActuatorError::Kubeconfig { .. }
            | KubeActuatorError::InvalidName { .. }
            | KubeActuatorError::InvalidPercent { .. }
            | KubeActuatorError::Unusable { .. }
            | KubeActuatorError::NotKubernetes { .. } => false,
        }
    }

    /// A short, stable label for the `reason` of an actuation-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            KubeActuatorError::NotFound { .. } => "kube_not_found",
            KubeActuatorError::Forbidden { .. } => "kube_forbidden",
            KubeActuatorError::Unauthorized { .. } => "kube_unauthorized",
            KubeActuatorError::Conflict { .. } => "kube_conflict",
            KubeActuatorError::Api { code: 429, .. } => "http_429",
            KubeActuatorError::Api { code: 500..=599, .. } => "http_5xx",
            KubeActuatorError::Api { .. } => "http_4xx",
            KubeActuatorError::Timeout { .. } => "timeout",
            KubeActuatorError::Transport { .. } => "transport",
            KubeActuatorError::Client { .. } => "client",
            KubeActuatorError::Kubeconfig { .. } => "kubeconfig",
            KubeActuatorError::InvalidName { .. } => "invalid_name",
            KubeActuatorError::InvalidPercent { .. } => "invalid_percent",
            KubeActuatorError::Unusable { .. } => "kube_unusable_object",
            KubeActuatorError::NotKubernetes { .. } => "not_kubernetes",
        }
    }
}

impl From<KubeActuatorError> for ActuationError {
    fn from(e: KubeActuatorError) -> Self {
        ActuationError { message: e.to_string(), retryable: e.is_retryable(), label: e.metric_label() }
    }
}

/// The kubernetes settings in force for `target`: its region's effective actuator (the
/// plan's unless the region replaces it; the plan's for an unknown region), when it is
/// `kubernetes`.
pub fn kube_settings<'p>(plan: &'p Plan, target: &Target) -> Option<&'p KubernetesActuatorSettings> {
    let settings = match plan.region_index(&target.region) {
        Some(r) => plan.regions[r].settings.actuator.as_ref(),
        None => plan.actuator.as_ref(),
    };
    match settings {
        Some(ActuatorSettings::Kubernetes(k)) => Some(k),
        _ => None,
    }
}

/// Sets and reads traffic through Kubernetes objects; see the module doc. Implements the
/// `Actuator` port for targets whose actuator is `kubernetes` (others are refused: put it
/// in a [`Routed`] beside the other actuators).
pub struct KubeActuator {
    /// The cluster meridian runs in; it also holds the kubeconfig Secrets.
    local: Client,
    /// Meridian's namespace, where kubeconfig Secrets are read.
    namespace: String,
    timeout: Duration,
    /// A client per (Secret name, key), built on first use; dropped when its cluster refuses
    /// the credentials, so a rotated Secret is read again.
    clusters: Mutex<HashMap<(String, String), Client>>,
}

/// The object of one actuation, with the names filled in, for calls and messages.
struct Located {
    client: Client,
    /// `(name, key)` of the Secret the client came from.
    secret: Option<(String, String)>,
    resource: ApiResource,
    namespace: String,
    name: String,
    /// `configmap "rollout" in namespace "shop"` and, from a Secret, its cluster.
    described: String,
}

impl KubeActuator {
    /// `local`: a client of the cluster meridian runs in; `namespace`: meridian's own, where
    /// kubeconfig Secrets are read.
    pub fn new(local: Client, namespace: impl Into<String>) -> Self {
        KubeActuator {
            local,
            namespace: namespace.into(),
            timeout: DEFAULT_TIMEOUT,
            clusters: Mutex::new(HashMap::new()),
        }
    }

    /// Time allowed for each request (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Make `target`'s object say `percent`; idempotent (an object that already says it is
    /// not written). `idempotency_key` is recorded on the object when it is written.
    pub async fn set(
        &self,
        settings: &KubernetesActuatorSettings,
        target: &Target,
        percent: u32,
        idempotency_key: &str,
    ) -> Result<(), KubeActuatorError> {
        if percent > 100 {
            return Err(KubeActuatorError::InvalidPercent { percent });
        }
        let at = self.locate(settings, target).await?;
        let names = Names::of(target);
        for _ in 0..CONFLICT_ATTEMPTS {
            let mut object = self.get(&at).await?;
            let changed = write_percent(&settings.object, &names, &mut object, percent)
                .map_err(|reason| KubeActuatorError::Unusable { object: at.described.clone(), reason })?;
            if !changed {
                return Ok(());
            }
            let annotations = object.metadata.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(IDEMPOTENCY_KEY_ANNOTATION.into(), idempotency_key.into());
            let api = Api::<DynamicObject>::namespaced_with(at.client.clone(), &at.namespace, &at.resource);
            let written = self.call("update", &at, api.replace(&at.name, &PostParams::default(), &object)).await;
            match written {
                Ok(_) => return Ok(()),
                Err(Failure::Conflict) => continue,
                Err(Failure::Error(e)) => return Err(e),
            }
        }
        Err(KubeActuatorError::Conflict { object: at.described, attempts: CONFLICT_ATTEMPTS })
    }

    /// The percent `target`'s object says now; `None` when a ConfigMap has no such key yet.
    pub async fn read(
        &self,
        settings: &KubernetesActuatorSettings,
        target: &Target,
    ) -> Result<Option<u32>, KubeActuatorError> {
        let at = self.locate(settings, target).await?;
        let object = self.get(&at).await?;
        read_percent(&settings.object, &Names::of(target), &object)
            .map_err(|reason| KubeActuatorError::Unusable { object: at.described, reason })
    }

    async fn get(&self, at: &Located) -> Result<DynamicObject, KubeActuatorError> {
        let api = Api::<DynamicObject>::namespaced_with(at.client.clone(), &at.namespace, &at.resource);
        self.call("get", at, api.get(&at.name)).await.map_err(|f| match f {
            Failure::Error(e) => e,
            Failure::Conflict => KubeActuatorError::Api {
                verb: "get",
                object: at.described.clone(),
                code: 409,
                message: "conflict".into(),
            },
        })
    }

    /// One request with the timeout, its failure classified.
    async fn call<T>(
        &self,
        verb: &'static str,
        at: &Located,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Failure> {
        let result = match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result,
            Err(_) => {
                return Err(Failure::Error(KubeActuatorError::Timeout {
                    verb,
                    object: at.described.clone(),
                    after: self.timeout,
                }));
            }
        };
        result.map_err(|e| {
            if matches!(&e, kube::Error::Api(s) if s.code == 409) {
                return Failure::Conflict;
            }
            if matches!(&e, kube::Error::Api(s) if s.code == 401)
                && let Some(secret) = &at.secret
            {
                self.forget(secret);
            }
            Failure::Error(classify(e, verb, &at.described))
        })
    }

    /// The client, kind and names of `target`'s object.
    async fn locate(
        &self,
        settings: &KubernetesActuatorSettings,
        target: &Target,
    ) -> Result<Located, KubeActuatorError> {
        let names = Names::of(target);
        let namespace = names.render(&settings.namespace);
        let name = names.render(settings.object.name());
        check_name(&namespace, "namespace", target)?;
        check_name(&name, "object name", target)?;
        let resource = match &settings.object {
            KubeObject::ConfigMap { .. } => ApiResource::erase::<ConfigMap>(&()),
            KubeObject::Deployment { .. } => ApiResource::erase::<Deployment>(&()),
            KubeObject::HttpRoute { .. } => http_route_resource(),
        };
        let mut described = format!("{} {name:?} in namespace {namespace:?}", settings.object.kind().to_lowercase());
        let (client, secret) = match &settings.cluster {
            ClusterRef::Local => (self.local.clone(), None),
            ClusterRef::Secret { name: secret, key } => {
                let secret = names.render(secret);
                check_name(&secret, "secret name", target)?;
                described.push_str(&format!(" of the cluster in secret {}/{secret}", self.namespace));
                let client = self.cluster_client(&secret, key).await?;
                (client, Some((secret, key.clone())))
            }
        };
        Ok(Located { client, secret, resource, namespace, name, described })
    }

    /// The client of the cluster whose kubeconfig is in Secret `name`, key `key`, of
    /// meridian's namespace: cached, or built from the Secret.
    async fn cluster_client(&self, name: &str, key: &str) -> Result<Client, KubeActuatorError> {
        let cache_key = (name.to_string(), key.to_string());
        if let Some(client) = self.clusters.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key) {
            return Ok(client.clone());
        }
        let described = format!("secret {name:?} in namespace {:?}", self.namespace);
        let api = Api::<Secret>::namespaced(self.local.clone(), &self.namespace);
        let secret = match tokio::time::timeout(self.timeout, api.get(name)).await {
            Ok(Ok(secret)) => secret,
            Ok(Err(e)) => return Err(classify(e, "get", &described)),
            Err(_) => return Err(KubeActuatorError::Timeout { verb: "get", object: described, after: self.timeout }),
        };
        let kubeconfig_error = |reason: String| KubeActuatorError::Kubeconfig { secret: described.clone(), reason };
        let bytes =
            secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone()).ok_or_else(|| {
                kubeconfig_error(format!("it has no key {key:?}; put the cluster's kubeconfig there"))
            })?;
        let text = String::from_utf8(bytes).map_err(|_| kubeconfig_error(format!("key {key:?} is not UTF-8 text")))?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .map_err(|e| kubeconfig_error(format!("key {key:?} is not a kubeconfig: {e}")))?;
        refuse_outside_references(&kubeconfig).map_err(kubeconfig_error)?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| kubeconfig_error(format!("the kubeconfig in key {key:?} is not usable: {e}")))?;
        config.read_timeout = Some(self.timeout);
        config.connect_timeout = Some(self.timeout);
        let client = Client::try_from(config)
            .map_err(|e| kubeconfig_error(format!("no client can be made from the kubeconfig in key {key:?}: {e}")))?;
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).insert(cache_key, client.clone());
        Ok(client)
    }

    fn forget(&self, secret: &(String, String)) {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).remove(secret);
    }
}

/// A failed request: a resourceVersion conflict (read again), or anything else.
enum Failure {
    Conflict,
    Error(KubeActuatorError),
}

/// A kube client error as one of ours.
fn classify(e: kube::Error, verb: &'static str, object: &str) -> KubeActuatorError {
    let object = object.to_string();
    match e {
        kube::Error::Api(s) => match s.code {
            404 => KubeActuatorError::NotFound { object },
            403 => KubeActuatorError::Forbidden { verb, object, message: s.message },
            401 => KubeActuatorError::Unauthorized { verb, object, message: s.message },
            409 => KubeActuatorError::Conflict { object, attempts: 1 },
            code => KubeActuatorError::Api { verb, object, code, message: s.message },
        },
        kube::Error::HyperError(e) => KubeActuatorError::Transport { verb, object, reason: error_chain(&e) },
        kube::Error::Service(e) => KubeActuatorError::Transport { verb, object, reason: error_chain(e.as_ref()) },
        kube::Error::Auth(e) => KubeActuatorError::Transport { verb, object, reason: error_chain(&e) },
        other => KubeActuatorError::Client { verb, object, reason: error_chain(&other) },
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A kubeconfig from a Secret may not make the controller run a program (`exec`, an auth
/// provider) or read its own files: everything it needs must be in the Secret.
fn refuse_outside_references(kubeconfig: &kube::config::Kubeconfig) -> Result<(), String> {
    for named in &kubeconfig.auth_infos {
        let Some(user) = &named.auth_info else { continue };
        let what = if user.exec.is_some() {
            Some("runs a program for its credentials (exec)")
        } else if user.auth_provider.is_some() {
            Some("uses an auth-provider plugin")
        } else if user.token_file.is_some() || user.client_certificate.is_some() || user.client_key.is_some() {
            Some("reads credentials from files")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(format!(
                "its user {:?} {what}, which meridian does not do for a Secret's kubeconfig; embed a token or \
                 client-certificate-data and client-key-data",
                named.name
            ));
        }
    }
    for named in &kubeconfig.clusters {
        if named.cluster.as_ref().is_some_and(|c| c.certificate_authority.is_some()) {
            return Err(format!(
                "its cluster {:?} reads its certificate authority from a file; embed certificate-authority-data",
                named.name
            ));
        }
    }
    Ok(())
}

/// gateway.networking.k8s.io/v1 HTTPRoute, as a dynamic resource (no Gateway API crate).
fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// A rendered name is sent in a URL path: only characters of Kubernetes names get there.
fn check_name(name: &str, what: &'static str, target: &Target) -> Result<(), KubeActuatorError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(KubeActuatorError::InvalidName {
            what,
            name: name.to_string(),
            target: format!("{}/{}/{}", target.plan, target.region, target.service),
        })
    }
}

/// The target's names, to fill the settings' templates with.
struct Names<'a> {
    plan: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Names<'a> {
    fn of(target: &'a Target) -> Self {
        Names { plan: &target.plan, region: &target.region, service: &target.service }
    }

    fn render(&self, template: &str) -> String {
        KubernetesActuatorSettings::render(template, self.plan, self.region, self.service)
    }
}

/// Put `percent` into `object` as `kind` says; `Ok(false)` when it already says so (nothing
/// to write). Touches nothing else but [`PERCENT_ANNOTATION`] on a Deployment.
fn write_percent(
    kind: &KubeObject,
    names: &Names<'_>,
    object: &mut DynamicObject,
    percent: u32,
) -> Result<bool, String> {
    match kind {
        KubeObject::ConfigMap { key, .. } => {
            let key = names.render(key);
            let value = percent.to_string();
            if object.data.pointer("/data").and_then(|d| d.get(&key)).and_then(Value::as_str) == Some(value.as_str()) {
                return Ok(false);
            }
            let root = object.data.as_object_mut().ok_or("the object is not a JSON object")?;
            let data = root.entry("data").or_insert_with(|| Value::Object(Default::default()));
            if data.is_null() {
                *data = Value::Object(Default::default());
            }
            data.as_object_mut().ok_or("its data is not a map")?.insert(key, Value::String(value));
            Ok(true)
        }
        KubeObject::HttpRoute { backend, stable, .. } => {
            let (backend, stable) = (names.render(backend), names.render(stable));
            set_route_weights(&mut object.data, &backend, &stable, percent)
        }
        KubeObject::Deployment { replicas, .. } => {
            let desired = replicas_for_percent(percent, *replicas);
            let current = object.data.pointer("/spec/replicas").and_then(Value::as_u64);
            let recorded = recorded_percent(object);
            if current == Some(u64::from(desired)) && recorded == Some(percent) {
                return Ok(false);
            }
            let spec =
                object.data.get_mut("spec").and_then(Value::as_object_mut).ok_or("the deployment has no spec")?;
            spec.insert("replicas".into(), Value::from(desired));
            object
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(PERCENT_ANNOTATION.into(), percent.to_string());
            Ok(true)
        }
    }
}

/// The percent `object` says as `kind` reads it.
fn read_percent(kind: &KubeObject, names: &Names<'_>, object: &DynamicObject) -> Result<Option<u32>, String> {
    match kind {
        KubeObject::ConfigMap { key, .. } => {
            let key = names.render(key);
            let Some(value) = object.data.pointer("/data").and_then(|d| d.get(&key)) else { return Ok(None) };
            let text = value.as_str().unwrap_or_default();
            match text.trim().parse::<u32>() {
                Ok(p) if p <= 100 => Ok(Some(p)),
                _ => Err(format!("key {key:?} holds {value}, not a percent from 0 to 100")),
            }
        }
        KubeObject::HttpRoute { backend, stable, .. } => {
            route_percent(&object.data, &names.render(backend), &names.render(stable)).map(Some)
        }
        KubeObject::Deployment { replicas, .. } => {
            // Absent, the API server's default is 1.
            let observed = object.data.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1);
            let observed = u32::try_from(observed).unwrap_or(u32::MAX);
            Ok(Some(percent_for_replicas(observed, *replicas, recorded_percent(object))))
        }
    }
}

fn recorded_percent(object: &DynamicObject) -> Option<u32> {
    object.metadata.annotations.as_ref()?.get(PERCENT_ANNOTATION)?.parse().ok()
}

/// The weight of a backendRef; Gateway API's default is 1.
fn weight(backend_ref: &Value) -> u64 {
    backend_ref.get("weight").and_then(Value::as_u64).unwrap_or(1)
}

fn ref_name(backend_ref: &Value) -> Option<&str> {
    backend_ref.get("name").and_then(Value::as_str)
}

/// In every rule of an HTTPRoute's `spec` naming `backend` or `stable`, give `backend` the
/// weight `percent` and `stable` the rest. Each such rule must name both. `Ok(false)`: they
/// already weigh that.
fn set_route_weights(data: &mut Value, backend: &str, stable: &str, percent: u32) -> Result<bool, String> {
    let rules = data.pointer_mut("/spec/rules").and_then(Value::as_array_mut).ok_or("it has no spec.rules")?;
    let mut matched = false;
    let mut changed = false;
    for (i, rule) in rules.iter_mut().enumerate() {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else { continue };
        let has = |name: &str| refs.iter().any(|r| ref_name(r) == Some(name));
        match (has(backend), has(stable)) {
            (false, false) => continue,
            (true, true) => matched = true,
            (true, false) | (false, true) => {
                return Err(format!(
                    "rule {i} names only one of the backends {backend:?} and {stable:?}; every rule that splits \
                     this traffic must name both"
                ));
            }
        }
        for r in refs.iter_mut() {
            let want = match ref_name(r) {
                Some(n) if n == backend => percent,
                Some(n) if n == stable => 100 - percent,
                _ => continue,
            };
            if r.get("weight").and_then(Value::as_u64) != Some(u64::from(want)) {
                if let Some(r) = r.as_object_mut() {
                    r.insert("weight".into(), Value::from(want));
                }
                changed = true;
            }
        }
    }
    if matched {
        Ok(changed)
    } else {
        Err(format!(
            "no rule has both backendRefs {backend:?} and {stable:?}; add them to the rule that routes this traffic"
        ))
    }
}

/// The percent an HTTPRoute gives `backend`: its weight's share of `backend` and `stable` in
/// the first rule naming both (Meridian writes weights that add up to 100, so it is the
/// weight itself), rounded to the nearest percent.
fn route_percent(data: &Value, backend: &str, stable: &str) -> Result<u32, String> {
    let rules = data.pointer("/spec/rules").and_then(Value::as_array).ok_or("it has no spec.rules")?;
    for rule in rules {
        let Some(refs) = rule.get("backendRefs").and_then(Value::as_array) else { continue };
        let find = |name: &str| refs.iter().find(|r| ref_name(r) == Some(name));
        if let (Some(b), Some(s)) = (find(backend), find(stable)) {
            let (b, s) = (weight(b), weight(s));
            let total = b.saturating_add(s);
            if total == 0 {
                return Ok(0);
            }
            let share = (b.saturating_mul(200) + total) / (2 * total);
            return Ok(u32::try_from(share.min(100)).unwrap_or(100));
        }
    }
    Err(format!(
        "no rule has both backendRefs {backend:?} and {stable:?}; add them to the rule that routes this traffic"
    ))
}

impl Actuator for KubeActuator {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
        percent: u32,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        Box::pin(async move {
            let settings = kube_settings(plan, target).ok_or_else(|| not_kubernetes(target))?;
            Ok(self.set(settings, target, percent, idempotency_key).await?)
        })
    }

    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        Box::pin(async move {
            let settings = kube_settings(plan, target).ok_or_else(|| not_kubernetes(target))?;
            Ok(self.read(settings, target).await?)
        })
    }
}

fn not_kubernetes(target: &Target) -> KubeActuatorError {
    KubeActuatorError::NotKubernetes { plan: target.plan.clone(), region: target.region.clone() }
}

/// The actuator of `meridian kube`: targets whose actuator is `kubernetes` go to `kube`,
/// every other one to `other` (the HTTP actuators and the dry run).
pub struct Routed {
    pub kube: KubeActuator,
    pub other: Arc<dyn Actuator>,
}

impl Actuator for Routed {
    fn set_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
        percent: u32,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<(), ActuationError>> {
        match kube_settings(plan, target) {
            Some(_) => self.kube.set_traffic(plan, target, percent, idempotency_key),
            None => self.other.set_traffic(plan, target, percent, idempotency_key),
        }
    }

    fn read_traffic<'a>(
        &'a self,
        plan: &'a Plan,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<u32>, ActuationError>> {
        match kube_settings(plan, target) {
            Some(_) => self.kube.read_traffic(plan, target),
            None => self.other.read_traffic(plan, target),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replicas_are_the_ceiling_of_the_share() {
        for (percent, full, replicas) in [
            (0, 10, 0),
            (1, 10, 1),
            (10, 10, 1),
            (11, 10, 2),
            (50, 10, 5),
            (51, 10, 6),
            (100, 10, 10),
            (1, 1, 1),
            (0, 1, 0),
            (100, 3, 3),
            (34, 3, 2),
            (150, 4, 4),
        ] {
            assert_eq!(replicas_for_percent(percent, full), replicas, "{percent}% of {full}");
        }
    }

    #[test]
    fn a_read_back_accepts_the_recorded_percent_when_it_scales_to_the_observed_replicas() {
        for full in 1..=40 {
            for p in 0..=100 {
                let r = replicas_for_percent(p, full);
                assert_eq!(percent_for_replicas(r, full, Some(p)), p, "{p}% of {full}");
                // Unrecorded (or stale): the smallest percent with those replicas.
                let guessed = percent_for_replicas(r, full, None);
                assert_eq!(replicas_for_percent(guessed, full), r, "{p}% of {full}");
                assert!(guessed <= p, "{p}% of {full} read as {guessed}");
                assert!(guessed == 0 || replicas_for_percent(guessed - 1, full) < r, "{p}% of {full}");
            }
        }
        // A recorded percent that no longer scales to the replicas (scaled by hand) is ignored.
        assert_eq!(percent_for_replicas(3, 10, Some(10)), 21);
        assert_eq!(percent_for_replicas(12, 10, Some(100)), 100, "more than full reads as 100");
        assert_eq!(percent_for_replicas(0, 10, Some(5)), 0);
    }

    fn names() -> Target {
        Target { plan: "p".into(), region: "jp".into(), service: "signin".into() }
    }

    fn object(data: Value) -> DynamicObject {
        let mut o = DynamicObject::new("x", &ApiResource::erase::<ConfigMap>(&()));
        o.data = data;
        o
    }

    #[test]
    fn a_configmap_key_holds_the_percent() {
        let t = names();
        let n = Names { plan: &t.plan, region: &t.region, service: &t.service };
        let kind = KubeObject::ConfigMap { name: "c".into(), key: "{{service}}".into() };
        let mut o = object(json!({}));
        assert_eq!(read_percent(&kind, &n, &o), Ok(None));
        assert_eq!(write_percent(&kind, &n, &mut o, 10), Ok(true));
        assert_eq!(o.data, json!({"data": {"signin": "10"}}));
        assert_eq!(write_percent(&kind, &n, &mut o, 10), Ok(false), "the same percent is not written again");
        assert_eq!(read_percent(&kind, &n, &o), Ok(Some(10)));
        let bad = object(json!({"data": {"signin": "lots"}}));
        assert!(read_percent(&kind, &n, &bad).unwrap_err().contains("not a percent"));
    }

    #[test]
    fn an_httproute_splits_between_backend_and_stable_in_every_rule_naming_them() {
        let mut data = json!({"spec": {"rules": [
            {"backendRefs": [{"name": "v1", "port": 80}, {"name": "v2", "port": 80, "weight": 0}]},
            {"backendRefs": [{"name": "other"}]},
            {"matches": [{"path": {"value": "/api"}}], "backendRefs": [{"name": "v2"}, {"name": "v1"}]},
        ]}});
        assert_eq!(route_percent(&data, "v2", "v1"), Ok(0));
        assert_eq!(set_route_weights(&mut data, "v2", "v1", 10), Ok(true));
        assert_eq!(
            data["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "v1", "port": 80, "weight": 90}, {"name": "v2", "port": 80, "weight": 10}])
        );
        assert_eq!(data["spec"]["rules"][1]["backendRefs"], json!([{"name": "other"}]), "other rules untouched");
        assert_eq!(
            data["spec"]["rules"][2]["backendRefs"],
            json!([{"name": "v2", "weight": 10}, {"name": "v1", "weight": 90}])
        );
        assert_eq!(set_route_weights(&mut data, "v2", "v1", 10), Ok(false));
        assert_eq!(route_percent(&data, "v2", "v1"), Ok(10));
        // Weights set by hand read as the backend's share.
        let by_hand =
            json!({"spec": {"rules": [{"backendRefs": [{"name": "v2", "weight": 1}, {"name": "v1", "weight": 3}]}]}});
        assert_eq!(route_percent(&by_hand, "v2", "v1"), Ok(25));
        let missing = json!({"spec": {"rules": [{"backendRefs": [{"name": "v2"}]}]}});
        assert!(route_percent(&missing, "v2", "v1").unwrap_err().contains("no rule has both"));
        assert!(set_route_weights(&mut missing.clone(), "v2", "v1", 5).unwrap_err().contains("names only one"));
    }

    #[test]
    fn a_deployment_records_the_percent_beside_its_replicas() {
        let t = names();
        let n = Names { plan: &t.plan, region: &t.region, service: &t.service };
        let kind = KubeObject::Deployment { name: "d".into(), replicas: 10 };
        let mut o = object(json!({"spec": {"replicas": 0, "template": {}}}));
        assert_eq!(read_percent(&kind, &n, &o), Ok(Some(0)));
        assert_eq!(write_percent(&kind, &n, &mut o, 5), Ok(true));
        assert_eq!(o.data["spec"]["replicas"], json!(1));
        assert_eq!(read_percent(&kind, &n, &o), Ok(Some(5)));
        // 8 % also runs 1 replica: only the recorded percent changes.
        assert_eq!(write_percent(&kind, &n, &mut o, 8), Ok(true));
        assert_eq!(read_percent(&kind, &n, &o), Ok(Some(8)));
        assert_eq!(write_percent(&kind, &n, &mut o, 8), Ok(false));
    }

    #[test]
    fn errors_say_whether_trying_again_may_help() {
        let object = "configmap \"rollout\" in namespace \"shop\"".to_string();
        let missing = KubeActuatorError::NotFound { object: object.clone() };
        assert!(!missing.is_retryable());
        assert_eq!(
            missing.to_string(),
            "configmap \"rollout\" in namespace \"shop\" does not exist; create it, or correct the plan's kubernetes \
             actuator"
        );
        let forbidden = KubeActuatorError::Forbidden { verb: "update", object: object.clone(), message: "no".into() };
        assert!(!forbidden.is_retryable());
        assert!(forbidden.to_string().contains("deploy/actuator-rbac.yaml"));
        for (code, retryable) in [(429, true), (500, true), (503, true), (400, false), (422, false)] {
            let e = KubeActuatorError::Api { verb: "get", object: object.clone(), code, message: String::new() };
            assert_eq!(e.is_retryable(), retryable, "{code}");
        }
        let timeout = KubeActuatorError::Timeout { verb: "get", object, after: Duration::from_secs(1) };
        assert!(timeout.is_retryable());
        let converted: ActuationError = timeout.into();
        assert_eq!(converted.label, "timeout");
    }
}
