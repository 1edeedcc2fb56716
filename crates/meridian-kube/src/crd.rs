//! The custom resources, derived from the very structs a plan file is read into: a resource's
//! `spec` is the file's `spec`, so `kubectl apply -f config/network-restoration.yaml` takes the
//! same YAML. Doc comments on the core's manifest structs become the schema's descriptions
//! (`kubectl explain rolloutplan.spec.waves`).
//!
//! Owns the group, version, names, scope, printer columns and the status subresource; must not
//! redefine a field of a spec (the core's manifest module owns them).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::core::CustomResourceExt as _;
use meridian_core::manifest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::RolloutPlanStatus;

/// A phased regional rollout: the `spec` of a `RolloutPlan` file.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "RolloutPlan",
    doc = "A phased regional rollout: services enabled region by region, wave by wave, under approval gates and health checks.",
    root = "RolloutPlanResource",
    plural = "rolloutplans",
    shortname = "rollout",
    category = "meridian",
    namespaced,
    status = "RolloutPlanStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Wave","type":"string","jsonPath":".status.currentWave"}"#,
    printcolumn = r#"{"name":"Enabled","type":"string","jsonPath":".status.enabledUnits"}"#,
    printcolumn = r#"{"name":"Blocked","type":"string","jsonPath":".status.blocked","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct RolloutPlanSpec(pub manifest::RolloutPlanSpec);

/// One region of a plan, owned by a regional team: the `spec` of a `Region` file.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "Region",
    doc = "One region of a plan, in a resource of its own so that a regional team owns it.",
    root = "RegionResource",
    plural = "regions",
    category = "meridian",
    namespaced,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Time zone","type":"string","jsonPath":".spec.timezone"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct RegionSpec(pub manifest::RegionDocumentSpec);

/// A recorded permission (a regulator's sign-off, an operator's go, a CI promotion): the
/// `spec` of an `Approval` file.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "Approval",
    doc = "A recorded permission: a regulator's sign-off, an operator's go, a CI promotion.",
    root = "ApprovalResource",
    plural = "approvals",
    category = "meridian",
    namespaced,
    printcolumn = r#"{"name":"Flag","type":"string","jsonPath":".spec.flag"}"#,
    printcolumn = r#"{"name":"Granted by","type":"string","jsonPath":".spec.grantedBy"}"#,
    printcolumn = r#"{"name":"Reference","type":"string","jsonPath":".spec.reference"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expires"}"#
)]
#[serde(transparent)]
pub struct ApprovalSpec(pub manifest::ApprovalSpec);

/// The annotation on an `Approval` the controller wrote for a grant made through its HTTP API
/// (`meridian approve`), with its value. Only the controller's account may set it
/// (`deploy/admission.yaml`): in `--all-namespaces` mode such an Approval in the home namespace
/// is scoped as its grantor said rather than confined to that namespace's plans.
pub const GRANTED_VIA: (&str, &str) = ("meridian.dev/granted-via", "api");
/// The annotation naming who made that grant (the API token's name).
pub const GRANTED_BY_CALLER: &str = "meridian.dev/granted-by";

/// An operator command on a plan, as a resource: `kubectl create -f` one to pause, resume,
/// abort, promote, retry, freeze or unfreeze (the HTTP API's commands become these too). The
/// leader applies it exactly once (the commit that applies it names it) and then deletes it;
/// the audit log keeps it, with who issued it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "RolloutCommand",
    doc = "An operator command on a plan (pause, resume, abort, promote, retry, freeze, unfreeze), applied once by the leader and then deleted.",
    root = "RolloutCommandResource",
    plural = "rolloutcommands",
    shortname = "rcmd",
    category = "meridian",
    namespaced,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Command","type":"string","jsonPath":".spec.command"}"#,
    printcolumn = r#"{"name":"By","type":"string","jsonPath":".spec.by"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCommandSpec {
    /// The RolloutPlan (in this namespace) it applies to.
    pub plan: String,
    pub command: meridian_core::CommandKind,
    /// Limits it to one wave of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// Limits it to one region of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Who issues it, as the audit log will name them. The admission policy in `deploy/`
    /// requires it to be the requesting user (the controller's own account writes it for the
    /// API's authenticated callers).
    pub by: String,
    /// For `freeze`: what it declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<meridian_core::command::FreezeRequest>,
    /// For `unfreeze`: the run-time freeze to lift; absent lifts every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfreeze: Option<String>,
    /// For `promote`: promote the whole remaining scope (`promote --full`): every remaining
    /// step and wave bake in it is skipped until it completes. Only for `promote`; any other
    /// command ignores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// The CustomResourceDefinitions, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![RolloutPlanResource::crd(), RegionResource::crd(), ApprovalResource::crd(), RolloutCommandResource::crd()]
}

/// The CRDs as one YAML stream (`meridian crds`, `deploy/crds/meridian.yaml`).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from("# Generated by `meridian crds`; do not edit (a test fails when it drifts).\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every manifest in `config/` is a resource as it stands: its `spec` reads into the
    /// resource's spec, so `kubectl apply -f` takes the same file.
    #[test]
    fn every_example_manifest_reads_as_its_custom_resource() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let value = serde_yaml::Value::deserialize(doc).unwrap();
                    let kind = value["kind"].as_str().unwrap_or_default().to_string();
                    let read = match kind.as_str() {
                        "RolloutPlan" => serde_yaml::from_value::<RolloutPlanResource>(value).map(|_| ()),
                        "Region" => serde_yaml::from_value::<RegionResource>(value).map(|_| ()),
                        "Approval" => serde_yaml::from_value::<ApprovalResource>(value).map(|_| ()),
                        other => panic!("{}: unexpected kind {other:?}", path.display()),
                    };
                    read.unwrap_or_else(|e| panic!("{}: {kind}: {e}", path.display()));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 8, "only {seen} manifests under config/");
    }

    #[test]
    fn the_definitions_name_the_group_kinds_scope_and_status() {
        let crds = crds();
        let names: Vec<&str> = crds.iter().filter_map(|c| c.metadata.name.as_deref()).collect();
        assert_eq!(
            names,
            [
                "rolloutplans.meridian.dev",
                "regions.meridian.dev",
                "approvals.meridian.dev",
                "rolloutcommands.meridian.dev"
            ]
        );
        for crd in &crds {
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions.len(), 1);
            assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        }
        let plan = &crds[0].spec.versions[0];
        assert!(plan.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
        let columns: Vec<&str> = plan.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Phase", "Wave", "Enabled", "Blocked", "Age"]);
        // Descriptions come from the core's doc comments.
        let yaml = crds_yaml().unwrap();
        assert!(yaml.contains("Waves run strictly in order; every region belongs to exactly one wave."));
    }

    /// `deploy/crds/meridian.yaml` is exactly what `meridian crds` prints; regenerate it with
    /// `cargo run -p meridian-cli -- crds > deploy/crds/meridian.yaml`.
    #[test]
    fn the_committed_definitions_match_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/meridian.yaml");
        let committed = std::fs::read_to_string(&path).unwrap();
        assert!(
            committed == crds_yaml().unwrap(),
            "deploy/crds/meridian.yaml is stale: run `cargo run -p meridian-cli -- crds > deploy/crds/meridian.yaml`"
        );
    }
}
