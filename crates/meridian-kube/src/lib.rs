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
//! unchanged. The API-server `StateStore` comes next.

pub mod crd;
pub mod lease;
pub mod source;
pub mod status;

pub use crd::{ApprovalResource, RegionResource, RolloutPlanResource, crds, crds_yaml};
pub use source::KubeSource;
pub use status::RolloutPlanStatus;
