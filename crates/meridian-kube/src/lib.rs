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
//! ```
//!
//! This crate holds the resource types and pure helpers; it talks to no API server yet. The
//! API-server store and configuration source (the `StateStore` and `ConfigSource` ports on
//! custom resources) plug into the same runtime as `meridian run`.

pub mod crd;
pub mod status;

pub use crd::{ApprovalResource, RegionResource, RolloutPlanResource, crds, crds_yaml};
pub use status::RolloutPlanStatus;
