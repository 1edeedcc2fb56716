//! Approvals granted through the HTTP API, kept as `Approval` resources like any other: the
//! leader writes one in the home namespace (annotated [`GRANTED_VIA`], with the caller in
//! [`GRANTED_BY_CALLER`]) before it records the grant, so `kubectl get approvals` lists every
//! approval in force, and deleting that resource revokes the grant like any Approval's
//! deletion. The record names the resource as its source (`kube:HOME/NAME`), which is what the
//! configuration source reports for it, so the source's next load finds nothing to change.
//!
//! A revocation through the API is recorded first (it is what counts); the resource the API
//! made is then deleted. A resource made with kubectl is left for its owner (GitOps would
//! bring it back anyway); its revocation holds, whatever the resource says.

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use meridian_core::approval::ApprovalRecord;
use meridian_core::ports::store::{StoreFailure, StoreResult};

use super::{KubeStore, failure, labels};
use crate::crd::{ApprovalResource, ApprovalSpec, GRANTED_BY_CALLER, GRANTED_VIA};

/// Whether the controller wrote `resource` for a grant through its API.
pub fn granted_via_api(resource: &ApprovalResource) -> bool {
    resource.metadata.annotations.as_ref().and_then(|a| a.get(GRANTED_VIA.0)).is_some_and(|v| v == GRANTED_VIA.1)
}

impl KubeStore {
    fn approvals_api(&self) -> Api<ApprovalResource> {
        Api::namespaced(self.client.clone(), self.namespaces.home())
    }

    /// Write the `Approval` resource for a grant made through the API by `by`; returns the
    /// source to record it under. A retry of the same grant finds its resource and goes on.
    pub(super) fn create_api_approval(&self, approval: &ApprovalRecord, by: &str) -> StoreResult<String> {
        let home = self.namespaces.home().to_string();
        let source = format!("kube:{home}/{}", approval.name);
        let resource = ApprovalResource {
            metadata: ObjectMeta {
                name: Some(approval.name.clone()),
                namespace: Some(home.clone()),
                labels: Some(labels("approval", None)),
                annotations: Some(BTreeMap::from([
                    (GRANTED_VIA.0.to_string(), GRANTED_VIA.1.to_string()),
                    (GRANTED_BY_CALLER.to_string(), by.to_string()),
                ])),
                ..ObjectMeta::default()
            },
            spec: ApprovalSpec(approval.to_spec()),
        };
        let api = self.approvals_api();
        match self.block_on(api.create(&PostParams::default(), &resource)) {
            Ok(_) => Ok(source),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self
                    .block_on(api.get(&approval.name))
                    .map_err(|e| failure(&format!("read the Approval {}", approval.name), e))?;
                if granted_via_api(&existing) && existing.spec == resource.spec {
                    Ok(source)
                } else {
                    Err(StoreFailure {
                        message: format!(
                            "an Approval named {} already exists in namespace {home}; grant under another name",
                            approval.name
                        ),
                    })
                }
            }
            Err(e) => Err(failure(&format!("create the Approval {} in namespace {home}", approval.name), e)),
        }
    }

    /// Delete the `Approval` resource the API made for `name`, if there is one.
    pub(super) fn delete_api_approval(&self, name: &str) -> StoreResult<()> {
        let api = self.approvals_api();
        let existing = match self.block_on(api.get_opt(name)) {
            Ok(found) => found,
            Err(e) => return Err(failure(&format!("read the Approval {name}"), e)),
        };
        if !existing.as_ref().is_some_and(granted_via_api) {
            return Ok(());
        }
        match self.block_on(api.delete(name, &DeleteParams::default())) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(failure(
                &format!(
                    "approval {name} is revoked, but its Approval resource could not be deleted (retry the revoke)"
                ),
                e,
            )),
        }
    }
}
