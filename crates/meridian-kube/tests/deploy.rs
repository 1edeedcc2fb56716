//! The kustomize base in `deploy/` against a real Kubernetes API server (`kube-apiserver` and
//! `etcd` on 127.0.0.1, see `common`): it renders and applies as the README says, its pod
//! passes Pod Security `restricted`, the controller's ServiceAccount may do exactly what
//! `deploy/rbac.yaml` grants, and the admission policy in `deploy/admission.yaml` lets each
//! approver group grant its own flags only. There is no kubelet, scheduler or
//! controller-manager: the objects are accepted, no pod runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ControlPlane, repo_root, text};
use serde_json::{Value, json};

const NAMESPACE: &str = "meridian";
const CONTROLLER: &str = "system:serviceaccount:meridian:meridian";

/// What the controller's code uses, as `(API group, resource[/subresource], verbs)`: the Role in
/// `deploy/rbac.yaml` must grant exactly this, and the API server must answer accordingly.
const CONTROLLER_USES: &[(&str, &str, &[&str])] = &[
    ("meridian.dev", "rolloutplans", &["get", "list", "watch", "patch"]),
    ("meridian.dev", "rolloutplans/status", &["update", "patch"]),
    ("meridian.dev", "regions", &["get", "list", "watch"]),
    ("meridian.dev", "approvals", &["get", "list", "watch", "create", "delete"]),
    ("", "configmaps", &["get", "list", "create", "update"]),
    ("meridian.dev", "rolloutcommands", &["get", "list", "watch", "create", "delete"]),
    ("coordination.k8s.io", "leases", &["get", "create", "update"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// Every verb RBAC knows for a resource: each one not in `CONTROLLER_USES` must be refused.
const ALL_VERBS: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

/// The Prometheus operator's CRD reduced to its name and an open schema: the test API server
/// has no Prometheus operator, and `servicemonitor.yaml` needs the kind to exist.
const SERVICEMONITOR_STAND_IN: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// Install the stand-in ServiceMonitor CRD, then `kubectl apply -k deploy/` as README says, in
/// one go (the base's own CRDs have no instances in it, so nothing waits on them).
fn apply_base(plane: &ControlPlane) -> Output {
    let out = plane.kubectl(&["apply", "-f", "-"], Some(SERVICEMONITOR_STAND_IN));
    assert!(out.status.success(), "stand-in ServiceMonitor CRD: {}", text(&out));
    let out = plane.kubectl(
        &["wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com"],
        None,
    );
    assert!(out.status.success(), "stand-in ServiceMonitor CRD not established: {}", text(&out));
    let out = plane.kubectl(&["apply", "-k", "deploy/"], None);
    assert!(out.status.success(), "kubectl apply -k deploy/ failed: {}", text(&out));
    out
}

fn rendered_base(plane: &ControlPlane) -> Vec<Value> {
    let out = plane.kubectl(&["kustomize", "deploy/"], None);
    assert!(out.status.success(), "kubectl kustomize deploy/ failed: {}", text(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

#[test]
fn the_base_renders_applies_and_its_pod_meets_pod_security_restricted() {
    let plane = ControlPlane::start();
    let objects = rendered_base(&plane);
    let kinds: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("Namespace", "meridian"),
        ("CustomResourceDefinition", "rolloutplans.meridian.dev"),
        ("CustomResourceDefinition", "regions.meridian.dev"),
        ("CustomResourceDefinition", "approvals.meridian.dev"),
        ("CustomResourceDefinition", "rolloutcommands.meridian.dev"),
        ("ServiceAccount", "meridian"),
        ("Role", "meridian"),
        ("RoleBinding", "meridian"),
        ("Deployment", "meridian"),
        ("Service", "meridian"),
        ("ServiceMonitor", "meridian"),
        ("PodDisruptionBudget", "meridian"),
        ("ValidatingAdmissionPolicy", "meridian-approval-grantors"),
        ("ValidatingAdmissionPolicyBinding", "meridian-approval-grantors"),
        ("ValidatingAdmissionPolicy", "meridian-command-issuer"),
        ("ValidatingAdmissionPolicyBinding", "meridian-command-issuer"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(kinds, expected);

    // What Pod Security does not check: the rest of the Deployment's contract.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "meridian:latest");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..3], ["kube", "--namespace", NAMESPACE]);
    assert_eq!(container["env"][0]["name"], "POD_NAME");
    assert_eq!(container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["resources"]["requests"].is_object() && container["resources"]["limits"].is_object());

    let applied = apply_base(&plane);
    assert!(!text(&applied).contains("PodSecurity"), "the Deployment would violate Pod Security: {}", text(&applied));
    let out = plane.kubectl(&["get", "-k", "deploy/", "-o", "name"], None);
    assert!(out.status.success(), "not every object of the base is there: {}", text(&out));
    assert_eq!(text(&out).lines().count(), expected.len(), "{}", text(&out));

    // The namespace enforces `restricted`, so the API server admits the Deployment's pod only
    // if it meets it: create one from the template, dry run (nothing would schedule it anyway).
    let out = plane.kubectl(&["get", "deployment", "meridian", "-n", NAMESPACE, "-o", "json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let deployment: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pod_with = |spec: &Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "meridian-template", "namespace": NAMESPACE},
            "spec": spec,
        })
        .to_string()
    };
    let spec = deployment["spec"]["template"]["spec"].clone();
    let out = plane.kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&pod_with(&spec)));
    assert!(out.status.success(), "the Deployment's pod is refused in namespace {NAMESPACE}: {}", text(&out));
    // The control: without its security context the same pod is refused, so the check bites.
    let mut bare = spec;
    bare.as_object_mut().unwrap().remove("securityContext");
    bare["containers"][0].as_object_mut().unwrap().remove("securityContext");
    let out = plane.kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&pod_with(&bare)));
    assert!(
        !out.status.success() && text(&out).contains("violates PodSecurity \"restricted:latest\""),
        "namespace {NAMESPACE} does not enforce Pod Security restricted: {}",
        text(&out)
    );
}

/// `kubectl auth can-i VERB RESOURCE --as=ACCOUNT`: true for "yes", false for "no".
fn can_i(plane: &ControlPlane, account: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = resource.split_once('/').map_or((resource, None), |(r, s)| (r, Some(s)));
    let mut args = vec!["auth", "can-i", verb, resource];
    let as_arg = format!("--as={account}");
    args.push(&as_arg);
    let sub_arg;
    if let Some(sub) = subresource {
        sub_arg = format!("--subresource={sub}");
        args.push(&sub_arg);
    }
    if let Some(ns) = namespace {
        args.extend(["--namespace", ns]);
    }
    let out = plane.kubectl(&args, None);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl {}: no yes or no: {}", args.join(" "), text(&out)),
    }
}

/// `resource.group` as kubectl names it (a core resource has no group).
fn qualified(group: &str, resource: &str) -> String {
    let (plural, sub) = resource.split_once('/').map_or((resource, None), |(r, s)| (r, Some(s)));
    let name = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
    sub.map_or(name.clone(), |s| format!("{name}/{s}"))
}

#[test]
fn the_controller_account_may_do_exactly_what_rbac_yaml_grants() {
    let uses: BTreeSet<(String, String, String)> = CONTROLLER_USES
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(|v| (group.to_string(), resource.to_string(), v.to_string()))
        })
        .collect();

    // The Role grants exactly the list above (read from the file, so either one's change
    // without the other fails here).
    let file = std::fs::read_to_string(repo_root().join("deploy/rbac.yaml")).unwrap();
    let role: Value = serde_yaml::Deserializer::from_str(&file)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .find(|doc: &Value| doc["kind"] == "Role")
        .expect("deploy/rbac.yaml has no Role");
    let granted = rules_of(&role);
    assert_eq!(granted, uses, "deploy/rbac.yaml's Role and the controller's uses differ");

    let plane = ControlPlane::start();
    apply_base(&plane);
    let started = Instant::now();
    // Every verb on every resource the controller touches: yes where it uses it, no elsewhere.
    for (group, resource, _) in CONTROLLER_USES {
        for verb in ALL_VERBS {
            let wanted = uses.contains(&(group.to_string(), resource.to_string(), verb.to_string()));
            let name = qualified(group, resource);
            // The RoleBinding is picked up by the authorizer's cache a moment after it is
            // created: wait for the first yes, not a fixed time.
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut answer = can_i(&plane, CONTROLLER, verb, &name, Some(NAMESPACE));
            while wanted && !answer && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                answer = can_i(&plane, CONTROLLER, verb, &name, Some(NAMESPACE));
            }
            assert_eq!(answer, wanted, "can the controller {verb} {name} in {NAMESPACE}?");
        }
    }
    // What it must never have.
    let forbidden = [
        ("get", "secrets", Some(NAMESPACE)),
        ("list", "secrets", Some(NAMESPACE)),
        ("delete", "pods", Some(NAMESPACE)),
        ("create", "pods", Some(NAMESPACE)),
        ("update", "deployments.apps", Some(NAMESPACE)),
        ("create", "roles.rbac.authorization.k8s.io", Some(NAMESPACE)),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
        ("create", "validatingadmissionpolicies.admissionregistration.k8s.io", None),
        ("get", "configmaps", Some("default")),
        ("get", "configmaps", Some("kube-system")),
        ("create", "approvals.meridian.dev", Some("default")),
        ("list", "rolloutplans.meridian.dev", Some("default")),
        ("update", "leases.coordination.k8s.io", Some("kube-system")),
    ];
    for (verb, resource, namespace) in forbidden {
        assert!(
            !can_i(&plane, CONTROLLER, verb, resource, namespace),
            "the controller may {verb} {resource} in {}",
            namespace.unwrap_or("the cluster")
        );
    }
    eprintln!("{} can-i checks in {:?}", CONTROLLER_USES.len() * ALL_VERBS.len() + forbidden.len(), started.elapsed());
}

const JP_APPROVER: (&str, &str, &[&str]) =
    ("jp-approver-token-0123456789", "jp-approver", &["meridian:approvers:jp-regulator"]);
const ANY_APPROVER: (&str, &str, &[&str]) = ("any-approver-token-0123456789", "any-approver", &["meridian:approvers"]);
/// In no approver group; `meridian:approvers:jp` is a prefix of the flag's group, not it.
const NOBODY: (&str, &str, &[&str]) =
    ("nobody-token-0123456789", "nobody", &["meridian:viewers", "meridian:approvers:jp"]);

/// RBAC for the test identities: the policy only narrows what RBAC allows.
const APPROVAL_WRITERS: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: approval-writers, namespace: meridian}
rules:
  - apiGroups: [meridian.dev]
    resources: [approvals]
    verbs: [get, list, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approval-writers, namespace: meridian}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: approval-writers}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: jp-approver}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: any-approver}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: nobody}
";

/// Who writes: a static token's kubeconfig, or the admin impersonating someone.
enum Writer<'a> {
    Token(&'a Path),
    As(&'a str),
}

/// `kubectl create` an Approval of `flag` as `writer` (a dry run on the server when `dry_run`).
fn create_approval(plane: &ControlPlane, writer: &Writer, name: &str, flag: &str, dry_run: bool) -> Output {
    create_approval_marked(plane, writer, name, flag, dry_run, false)
}

/// The same, with the controller's mark for a grant through its API when `marked`.
fn create_approval_marked(
    plane: &ControlPlane,
    writer: &Writer,
    name: &str,
    flag: &str,
    dry_run: bool,
    marked: bool,
) -> Output {
    let mut metadata = json!({"name": name, "namespace": NAMESPACE});
    if marked {
        metadata["annotations"] = json!({"meridian.dev/granted-via": "api", "meridian.dev/granted-by": "alice"});
    }
    let manifest = json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Approval",
        "metadata": metadata,
        "spec": {"flag": flag, "grantedBy": "the tests", "reference": "crates/meridian-kube/tests/deploy.rs"},
    })
    .to_string();
    let mut args = vec!["create", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    let identity = match writer {
        Writer::Token(kubeconfig) => format!("--kubeconfig={}", kubeconfig.display()),
        Writer::As(user) => format!("--as={user}"),
    };
    args.push(&identity);
    plane.kubectl(&args, Some(&manifest))
}

fn assert_refused(out: &Output, message: &str) {
    let said = text(out);
    assert!(!out.status.success(), "accepted, but should have been refused with {message:?}: {said}");
    assert!(
        said.contains("ValidatingAdmissionPolicy 'meridian-approval-grantors'") && said.contains(message),
        "refused, but not by the policy with {message:?}: {said}"
    );
}

#[test]
fn the_admission_policy_lets_each_approver_group_grant_its_own_flags_only() {
    let plane = ControlPlane::start_with_tokens(&[JP_APPROVER, ANY_APPROVER, NOBODY]);
    apply_base(&plane);
    let out = plane.kubectl(&["apply", "-f", "-"], Some(APPROVAL_WRITERS));
    assert!(out.status.success(), "{}", text(&out));
    let (jp_config, any_config, nobody_config) =
        (plane.kubeconfig_for(JP_APPROVER.0), plane.kubeconfig_for(ANY_APPROVER.0), plane.kubeconfig_for(NOBODY.0));
    let (jp, any, nobody) = (Writer::Token(&jp_config), Writer::Token(&any_config), Writer::Token(&nobody_config));

    // The policy and the RoleBinding take effect a moment after they are created. Ready means:
    // a create the policy must refuse is refused by the policy (not by RBAC, not accepted).
    // Dry runs, so that an early acceptance leaves nothing behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = create_approval(&plane, &nobody, "probe", "jp-regulator", true);
        if !out.status.success() && text(&out).contains("ValidatingAdmissionPolicy 'meridian-approval-grantors'") {
            break;
        }
        assert!(Instant::now() < deadline, "the admission policy was not in force within 30 s: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = create_approval(&plane, &jp, "jp-by-jp-approver", "jp-regulator", false);
    assert!(out.status.success(), "meridian:approvers:jp-regulator may grant jp-regulator: {}", text(&out));
    assert_refused(
        &create_approval(&plane, &jp, "other-by-jp-approver", "other-flag", false),
        "jp-approver may not grant approvals of flag other-flag: that needs the group meridian:approvers:other-flag \
         (or meridian:approvers, for every flag)",
    );
    assert_refused(
        &create_approval(&plane, &nobody, "jp-by-nobody", "jp-regulator", false),
        "nobody may not grant approvals of flag jp-regulator: that needs the group meridian:approvers:jp-regulator",
    );
    assert_refused(
        &create_approval(&plane, &nobody, "other-by-nobody", "other-flag", false),
        "nobody may not grant approvals of flag other-flag",
    );
    for flag in ["jp-regulator", "other-flag"] {
        let out = create_approval(&plane, &any, &format!("{flag}-by-any-approver"), flag, false);
        assert!(out.status.success(), "meridian:approvers may grant {flag}: {}", text(&out));
    }
    // The controller writes the Approvals its HTTP API grants, of any flag: its own roles and
    // token flags judged the caller (README, "Roles"); only it may mark one as such.
    let out =
        create_approval_marked(&plane, &Writer::As(CONTROLLER), "other-flag-by-controller", "other-flag", false, true);
    assert!(out.status.success(), "the controller records its API's grants: {}", text(&out));
    assert_refused(
        &create_approval_marked(&plane, &any, "marked-by-any-approver", "other-flag", false, true),
        "only the Meridian controller may set the annotation meridian.dev/granted-via",
    );

    // Updates: the flag before and after must both be the writer's.
    let patch = |writer: &Path, name: &str, spec: &str| {
        plane.kubectl(
            &[
                "patch",
                "approval",
                name,
                "--namespace",
                NAMESPACE,
                "--type=merge",
                &format!("--patch={{\"spec\": {spec}}}"),
                &format!("--kubeconfig={}", writer.display()),
            ],
            None,
        )
    };
    let out = patch(&jp_config, "jp-by-jp-approver", r#"{"reference": "letter 2026-0528-17, amended"}"#);
    assert!(out.status.success(), "jp-approver may amend its own flag's approval: {}", text(&out));
    assert_refused(
        &patch(&jp_config, "other-flag-by-any-approver", r#"{"flag": "jp-regulator"}"#),
        "jp-approver may not change an approval of flag other-flag: that needs the group meridian:approvers:other-flag",
    );
    assert_refused(
        &patch(&jp_config, "jp-by-jp-approver", r#"{"flag": "other-flag"}"#),
        "jp-approver may not grant approvals of flag other-flag",
    );

    // Only the accepted ones exist, unchanged where the update was refused.
    let out = plane.kubectl(&["get", "approvals", "--namespace", NAMESPACE, "-o", "name"], None);
    let names: BTreeSet<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let expected: BTreeSet<&str> = [
        "approval.meridian.dev/jp-by-jp-approver",
        "approval.meridian.dev/jp-regulator-by-any-approver",
        "approval.meridian.dev/other-flag-by-any-approver",
        "approval.meridian.dev/other-flag-by-controller",
    ]
    .into();
    assert_eq!(names, expected);
    let out = plane.kubectl(
        &["get", "approval", "other-flag-by-any-approver", "--namespace", NAMESPACE, "-o", "jsonpath={.spec.flag}"],
        None,
    );
    assert_eq!(text(&out), "other-flag");
}

/// `kubectl create` a RolloutCommand issued `by` someone, as `user` (impersonated).
fn create_command(plane: &ControlPlane, user: &str, by: &str, dry_run: bool) -> Output {
    let manifest = json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "RolloutCommand",
        "metadata": {"generateName": "pause-", "namespace": NAMESPACE},
        "spec": {"plan": "network-restoration", "command": "pause", "by": by},
    })
    .to_string();
    let mut args = vec!["create", "-f", "-", "--as", user];
    if dry_run {
        args.push("--dry-run=server");
    }
    plane.kubectl(&args, Some(&manifest))
}

#[test]
fn a_command_names_its_issuer_truthfully() {
    let plane = ControlPlane::start();
    apply_base(&plane);
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: operators, namespace: {NAMESPACE}}}\n\
         rules: [{{apiGroups: [meridian.dev], resources: [rolloutcommands], verbs: [create]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: operators, namespace: \
         {NAMESPACE}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: operators}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]\n"
    );
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&role));
    assert!(out.status.success(), "{}", text(&out));
    // In force once a create it must refuse is refused by it (dry runs leave nothing behind).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = create_command(&plane, "alice", "bob", true);
        if !out.status.success() && text(&out).contains("ValidatingAdmissionPolicy 'meridian-command-issuer'") {
            assert!(text(&out).contains("spec.by must be the requesting user (alice), not bob"), "{}", text(&out));
            break;
        }
        assert!(Instant::now() < deadline, "the command policy was not in force within 30 s: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = create_command(&plane, "alice", "alice", false);
    assert!(out.status.success(), "alice issuing as alice: {}", text(&out));
    // The controller writes the name of the API caller its own tokens authenticated.
    let out = create_command(&plane, CONTROLLER, "bob (API token)", false);
    assert!(out.status.success(), "the controller issuing for an API caller: {}", text(&out));
}

/// The base with the all-namespaces component (`deploy/cluster/`), rendered from an overlay in
/// a temporary directory as deploy/cluster's comment shows (kustomize refuses a base that
/// contains its overlay, so the overlay lives outside `deploy/`).
fn rendered_cluster(plane: &ControlPlane) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let up = "../".repeat(dir.path().components().count() - 1);
    let deploy = format!("{up}{}", repo_root().join("deploy").display().to_string().trim_start_matches('/'));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{deploy}]\ncomponents: \
             [{deploy}/cluster]\n"
        ),
    )
    .unwrap();
    let out = plane.kubectl(&["kustomize", &dir.path().display().to_string()], None);
    assert!(out.status.success(), "kubectl kustomize of the all-namespaces overlay failed: {}", text(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// `(group, resource, verb)` of every rule of `role`.
fn rules_of(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let strings = |key: &str| -> Vec<String> {
            rule[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        assert!(rule.get("resourceNames").is_none(), "the test does not model resourceNames: {rule}");
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    assert_ne!(verb, "*", "a wildcard verb: {rule}");
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

#[test]
fn the_all_namespaces_component_grants_exactly_what_that_mode_uses_and_its_deployment_runs_that_mode() {
    let plane = ControlPlane::start();
    plane.install_crds();
    let docs = rendered_cluster(&plane);
    let find = |kind: &str, name: &str| docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name);
    assert!(find("Role", "meridian").is_none(), "the base's namespaced Role is still there");
    assert!(find("RoleBinding", "meridian").is_none(), "the base's RoleBinding is still there");
    let deployment = find("Deployment", "meridian").expect("no Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(args.iter().any(|a| a == "--all-namespaces"), "{args:?}");
    assert!(args.windows(2).any(|w| w[0] == "--namespace" && w[1] == NAMESPACE), "{args:?}");

    // The ClusterRole is everything the controller uses but its own objects in its home
    // namespace (the Lease, the Approvals its API grants); the Role in namespace meridian is
    // only those.
    let uses: BTreeSet<(String, String, String)> = CONTROLLER_USES
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(|v| (group.to_string(), resource.to_string(), v.to_string()))
        })
        .collect();
    let (lease, cluster_wide): (BTreeSet<_>, BTreeSet<_>) = uses.iter().cloned().partition(|(g, r, v)| {
        g == "coordination.k8s.io" || (r == "approvals" && ["create", "delete"].contains(&v.as_str()))
    });
    assert_eq!(rules_of(find("ClusterRole", "meridian-all-namespaces").expect("no ClusterRole")), cluster_wide);
    let lease_role = find("Role", "meridian-lease").expect("no Lease Role");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rules_of(lease_role), lease);

    // Applied, the API server answers so: in any namespace for the watched kinds, the Lease and
    // the API's Approvals in meridian only.
    let rbac: Vec<String> = docs
        .iter()
        .filter(|d| {
            ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
                .contains(&d["kind"].as_str().unwrap_or_default())
        })
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&rbac.join("---\n")));
    assert!(out.status.success(), "{}", text(&out));
    for (group, resource, _) in CONTROLLER_USES {
        for verb in ALL_VERBS {
            let key = (group.to_string(), resource.to_string(), verb.to_string());
            let name = qualified(group, resource);
            for ns in [NAMESPACE, "team-x"] {
                let wanted = cluster_wide.contains(&key) || (ns == NAMESPACE && lease.contains(&key));
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut answer = can_i(&plane, CONTROLLER, verb, &name, Some(ns));
                while wanted && !answer && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                    answer = can_i(&plane, CONTROLLER, verb, &name, Some(ns));
                }
                assert_eq!(answer, wanted, "can the controller {verb} {name} in {ns}?");
            }
        }
    }
    for (verb, resource, namespace) in [
        ("get", "secrets", Some("team-x")),
        ("get", "secrets", Some(NAMESPACE)),
        ("create", "pods", Some("team-x")),
        ("update", "deployments.apps", Some("team-x")),
        ("create", "roles.rbac.authorization.k8s.io", Some("team-x")),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
        ("create", "approvals.meridian.dev", Some("team-x")),
        ("delete", "rolloutplans.meridian.dev", Some("team-x")),
        ("delete", "configmaps", Some("team-x")),
    ] {
        assert!(
            !can_i(&plane, CONTROLLER, verb, resource, namespace),
            "the controller may {verb} {resource} in {}",
            namespace.unwrap_or("the cluster")
        );
    }
}
