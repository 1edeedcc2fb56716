//! Meridian's Kubernetes mode: the same manifests as custom resources.
//!
//! ```text
//!   meridian_core::manifest (the structs `meridian validate` and `meridian run` read)
//!          │ wrapped transparently, one per kind
//!          v
//!   crd: RolloutPlan, Region, Approval (kube's CustomResource derive) ──> `meridian crds`,
//!          │                                                               deploy/crds/
//!          v
//!   status: what the controller reports on a plan (phase, wave, counts, conditions),
//!           computed purely from (plan, state, generation, now)
//!
//!   lease: leader election on a coordination.k8s.io Lease ──> Leadership::acting() -> Term
//!          (decided purely from (observed Lease, since when, identity, now); the term is the
//!          fencing token state writes record)
//! ```
//!
//! `source`: the `ConfigSource` port on these resources (listed, watched, validated by the one
//! code path `meridian validate` uses), so the runtime of `meridian run` runs on them
//! unchanged. `scope`: one namespace or all (`--all-namespaces`), and where each plan's own
//! objects live; the source fills it, every writer asks it (plan names unique across the
//! cluster: of two alike, the first created runs and the other is refused). `store`: the `StateStore` port on the API server (the engine record in each
//! plan's `.status.engine`, audit and history in append-only ConfigMap segments), so any
//! replica that leads resumes where the last one stopped. `report`: the status a user reads
//! (`kubectl get rolloutplans`), written from the controller's snapshot; `events`: a
//! Kubernetes Event per transition and per rejected edit; `finalizer`: what deleting a plan
//! does (it waits until the rollout settles, or aborts it first). `actuator`: the
//! `kubernetes` actuator (a ConfigMap key, HTTPRoute weights or Deployment replicas, in this
//! cluster or one reached through a kubeconfig Secret) and `Routed`, which sends each target
//! to it or to the other actuators by the target's settings. `follower`: what a replica that
//! does not lead serves through the API (reads from the API server, durable commands).

pub mod actuator;
pub mod crd;
pub mod events;
pub mod fenced;
pub mod finalizer;
pub mod follower;
pub mod lease;
pub mod report;
pub mod scope;
pub mod source;
pub mod status;
pub mod store;
pub mod stray;

pub use crd::{ApprovalResource, RegionResource, RolloutPlanResource, crds, crds_yaml};
pub use source::KubeSource;
pub use status::RolloutPlanStatus;
pub use store::KubeStore;

/// A client from `kubeconfig`, or from the usual places ($KUBECONFIG, ~/.kube/config, the
/// in-cluster ServiceAccount); the error says what to do.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("the kubeconfig {} is not usable: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no Kubernetes configuration found ({e}); give --kubeconfig FILE, set KUBECONFIG, or run in a pod")
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("cannot make a Kubernetes client: {e}"))
}
pub use kube::Client;

/// Where this crate's log lines go: set once by the command that runs the controller (so they
/// come out in its `--log-format`); stderr as `meridian: MESSAGE` until then.
static LOG_SINK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Send this crate's log lines to `sink` (the first call wins).
pub fn set_log_sink(sink: fn(&str)) {
    let _ = LOG_SINK.set(sink);
}

/// One line in the controller's log, for what this crate recovers from or only reports: a
/// failed Event, a status write to retry, a store step the next commit repeats.
pub(crate) fn log_line(message: &str) {
    match LOG_SINK.get() {
        Some(sink) => sink(message),
        None => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "meridian: {message}");
        }
    }
}
