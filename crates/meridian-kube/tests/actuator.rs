//! The `kubernetes` actuator against a real API server (etcd and kube-apiserver, see
//! `common`), through the core's `Actuator` port as the controller calls it: a ConfigMap key,
//! HTTPRoute weights and Deployment replicas set and read back, a missing object refused
//! without retry, a plan's other regions routed to the other actuator, and a second cluster
//! reached through a kubeconfig Secret with its own identity and RBAC.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ControlPlane, Recorder, text};
use meridian_core::plan::Plan;
use meridian_core::ports::{Actuator, Target};
use meridian_kube::actuator::{IDEMPOTENCY_KEY_ANNOTATION, KubeActuator, PERCENT_ANNOTATION, Routed};

/// Where the tests put meridian itself (and the kubeconfig Secrets).
const MERIDIAN_NS: &str = "meridian";

/// A stand-in for the Gateway API's HTTPRoute CRD: the real group, version, kind and plural,
/// with an open schema (`x-kubernetes-preserve-unknown-fields`) instead of the upstream one,
/// which is enough for an actuator that reads and writes `spec.rules[].backendRefs[].weight`.
const HTTPROUTE_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  # *.k8s.io groups need it; the upstream CRDs carry the same.
  annotations: {api-approved.kubernetes.io: 'https://github.com/kubernetes-sigs/gateway-api/pull/2466'}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, listKind: HTTPRouteList, plural: httproutes, singular: httproute}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
";

/// Plan `shop` of service `signin` with these region entries, all in one wave.
fn plan(yaml_regions: &str, names: &[&str]) -> Plan {
    let yaml = format!(
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: shop}}
spec:
  services: [{{name: signin}}]
  regions:
{yaml_regions}  waves: [{{name: all, regions: [{}]}}]
",
        names.join(", ")
    );
    let bundle = meridian_core::validate::load(&[("shop.yaml".into(), yaml)], None);
    assert_eq!(bundle.report.errors(), 0, "{:?}", bundle.report);
    bundle.plan("shop").expect("the plan validates").clone()
}

fn target(region: &str) -> Target {
    Target { plan: "shop".into(), region: region.into(), service: "signin".into() }
}

fn apply(plane: &ControlPlane, yaml: &str) {
    let out = plane.kubectl(&["apply", "-f", "-"], Some(yaml));
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
}

fn get(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl(args, None);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn annotation(plane: &ControlPlane, kind_name: &str, namespace: &str, annotation: &str) -> String {
    let path = format!("jsonpath={{.metadata.annotations.{}}}", annotation.replace('.', "\\."));
    get(plane, &["-n", namespace, "get", kind_name, "-o", &path])
}

/// Retry `f` until it returns `Some`, for up to `within` (RBAC changes take a moment).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_httproute_and_deployment_are_set_and_read_back_in_the_local_cluster() {
    let plane = ControlPlane::start();
    apply(&plane, HTTPROUTE_CRD);
    let out = plane.kubectl(
        &["wait", "--for=condition=Established", "--timeout=30s", "crd/httproutes.gateway.networking.k8s.io"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    for ns in ["cm", "route", "deploy", MERIDIAN_NS] {
        get(&plane, &["create", "namespace", ns]);
    }
    apply(
        &plane,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: signin-rollout, namespace: cm}\ndata: {other: keep}\n",
    );
    apply(
        &plane,
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: signin, namespace: route}
spec:
  parentRefs: [{name: gateway}]
  rules:
    - backendRefs: [{name: signin-v1, port: 80, weight: 100}, {name: signin-v2, port: 80, weight: 0}]
    - matches: [{path: {type: PathPrefix, value: /static}}]
      backendRefs: [{name: cdn, port: 80}]
",
    );
    apply(
        &plane,
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: signin-v2, namespace: deploy}
spec:
  replicas: 0
  selector: {matchLabels: {app: signin-v2}}
  template:
    metadata: {labels: {app: signin-v2}}
    spec: {containers: [{name: app, image: example.invalid/signin:2}]}
",
    );
    let p = plan(
        "    - {name: cm, actuator: {kubernetes: {namespace: '{{region}}', configMap: {name: '{{service}}-rollout', key: percent}}}}
    - {name: route, actuator: {kubernetes: {namespace: '{{region}}', httpRoute: {name: '{{service}}', backend: '{{service}}-v2', stable: '{{service}}-v1'}}}}
    - {name: deploy, actuator: {kubernetes: {namespace: '{{region}}', deployment: {name: '{{service}}-v2', replicas: 10}}}}
    - {name: gone, actuator: {kubernetes: {namespace: cm, configMap: {name: '{{region}}', key: percent}}}}
    - {name: plain}
",
        &["cm", "route", "deploy", "gone", "plain"],
    );
    let other = Arc::new(Recorder::default());
    let actuator = Routed { kube: KubeActuator::new(plane.client().await, MERIDIAN_NS), other: other.clone() };

    // ConfigMap: the key is absent, then holds the percent; other keys stay.
    assert_eq!(actuator.read_traffic(&p, &target("cm")).await, Ok(None));
    actuator.set_traffic(&p, &target("cm"), 10, "key-cm-10").await.unwrap();
    assert_eq!(actuator.read_traffic(&p, &target("cm")).await, Ok(Some(10)));
    assert_eq!(
        get(&plane, &["-n", "cm", "get", "cm/signin-rollout", "-o", "jsonpath={.data}"]),
        r#"{"other":"keep","percent":"10"}"#
    );
    assert_eq!(annotation(&plane, "cm/signin-rollout", "cm", IDEMPOTENCY_KEY_ANNOTATION), "key-cm-10");
    // The same percent again (a retry, another key) writes nothing.
    let version =
        || get(&plane, &["-n", "cm", "get", "cm/signin-rollout", "-o", "jsonpath={.metadata.resourceVersion}"]);
    let before = version();
    actuator.set_traffic(&p, &target("cm"), 10, "key-cm-10-again").await.unwrap();
    assert_eq!(version(), before, "an object that already says the percent is not written");
    // Changed by hand: the read-back sees it.
    get(&plane, &["-n", "cm", "patch", "cm/signin-rollout", "--type=merge", "-p", r#"{"data":{"percent":"50"}}"#]);
    assert_eq!(actuator.read_traffic(&p, &target("cm")).await, Ok(Some(50)));

    // HTTPRoute: the backend weighs the percent and stable the rest; other rules untouched.
    assert_eq!(actuator.read_traffic(&p, &target("route")).await, Ok(Some(0)));
    actuator.set_traffic(&p, &target("route"), 25, "key-route-25").await.unwrap();
    assert_eq!(
        get(
            &plane,
            &["-n", "route", "get", "httproute/signin", "-o", "jsonpath={.spec.rules[0].backendRefs[*].weight}"]
        ),
        "75 25"
    );
    assert_eq!(
        get(&plane, &["-n", "route", "get", "httproute/signin", "-o", "jsonpath={.spec.rules[1].backendRefs}"]),
        r#"[{"name":"cdn","port":80}]"#
    );
    assert_eq!(actuator.read_traffic(&p, &target("route")).await, Ok(Some(25)));
    assert_eq!(annotation(&plane, "httproute/signin", "route", IDEMPOTENCY_KEY_ANNOTATION), "key-route-25");

    // Deployment: ceil(10 * p / 100) replicas, the percent recorded beside them.
    assert_eq!(actuator.read_traffic(&p, &target("deploy")).await, Ok(Some(0)));
    let replicas = || get(&plane, &["-n", "deploy", "get", "deployment/signin-v2", "-o", "jsonpath={.spec.replicas}"]);
    for (percent, expected) in [(1, "1"), (35, "4"), (100, "10"), (0, "0")] {
        actuator.set_traffic(&p, &target("deploy"), percent, &format!("key-deploy-{percent}")).await.unwrap();
        assert_eq!(replicas(), expected, "{percent}%");
        assert_eq!(actuator.read_traffic(&p, &target("deploy")).await, Ok(Some(percent)), "{percent}%");
    }
    assert_eq!(annotation(&plane, "deployment/signin-v2", "deploy", PERCENT_ANNOTATION), "0");
    // Scaled by hand to 3: the smallest percent that runs 3 of 10.
    get(&plane, &["-n", "deploy", "scale", "deployment/signin-v2", "--replicas=3"]);
    assert_eq!(actuator.read_traffic(&p, &target("deploy")).await, Ok(Some(21)));

    // A missing object: not retried, and the message names it and its namespace.
    let err = actuator.set_traffic(&p, &target("gone"), 10, "key-gone").await.unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert_eq!(err.label, "kube_not_found");
    assert!(err.message.contains(r#"configmap "gone" in namespace "cm" does not exist"#), "{}", err.message);
    assert_eq!(actuator.read_traffic(&p, &target("gone")).await.unwrap_err().label, "kube_not_found");

    // A region without a kubernetes actuator goes to the other actuator, and only it does.
    actuator.set_traffic(&p, &target("plain"), 50, "key-plain").await.unwrap();
    assert_eq!(actuator.read_traffic(&p, &target("plain")).await, Ok(Some(50)));
    assert_eq!(*other.sent.lock().unwrap(), vec![("plain".to_string(), "signin".to_string(), 50)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cluster_is_reached_through_a_kubeconfig_secret_with_its_own_identity() {
    let plane = ControlPlane::start_with_tokens(&[("remote-token", "remote-operator", &["remote-ops"])]);
    for ns in ["eu-west", MERIDIAN_NS] {
        get(&plane, &["create", "namespace", ns]);
    }
    apply(&plane, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rollout, namespace: eu-west}\n");
    // The "remote" identity may read ConfigMaps in eu-west, but not yet write them.
    apply(
        &plane,
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: eu-west}
rules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: eu-west}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: User, name: remote-operator, apiGroup: rbac.authorization.k8s.io}]
",
    );
    let kubeconfig = plane.kubeconfig_for("remote-token");
    get(
        &plane,
        &[
            "-n",
            MERIDIAN_NS,
            "create",
            "secret",
            "generic",
            "eu-west-kubeconfig",
            &format!("--from-file=kubeconfig={}", kubeconfig.display()),
        ],
    );
    let p = plan(
        "    - name: eu-west
      actuator:
        kubernetes:
          cluster: {secret: {name: '{{region}}-kubeconfig'}}
          namespace: '{{region}}'
          configMap: {name: rollout, key: '{{service}}'}
    - name: no-secret
      actuator:
        kubernetes:
          cluster: {secret: {name: '{{region}}-kubeconfig'}}
          namespace: eu-west
          configMap: {name: rollout, key: '{{service}}'}
",
        &["eu-west", "no-secret"],
    );
    let actuator = KubeActuator::new(plane.client().await, MERIDIAN_NS);

    // Read as the remote identity; a write it may not do is refused with the RBAC hint.
    assert_eq!(actuator.read_traffic(&p, &target("eu-west")).await, Ok(None));
    let err = actuator.set_traffic(&p, &target("eu-west"), 10, "key-eu-10").await.unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert_eq!(err.label, "kube_forbidden");
    assert!(err.message.contains("remote-operator"), "the identity is named: {}", err.message);
    assert!(err.message.contains("deploy/actuator-rbac.yaml"), "{}", err.message);
    assert!(err.message.contains("of the cluster in secret meridian/eu-west-kubeconfig"), "{}", err.message);

    // Granted with the ClusterRole of deploy/actuator-rbac.yaml, bound in eu-west: the write
    // goes through as that identity.
    let example = std::fs::read_to_string(common::repo_root().join("deploy/actuator-rbac.yaml")).unwrap();
    let cluster_role = example.split("\n---\n").find(|d| d.contains("\nkind: ClusterRole\n")).unwrap();
    apply(&plane, cluster_role);
    apply(
        &plane,
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: meridian-actuator, namespace: eu-west}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: meridian-actuator}
subjects: [{kind: User, name: remote-operator, apiGroup: rbac.authorization.k8s.io}]
",
    );
    eventually("the remote identity may update the ConfigMap", Duration::from_secs(20), || async {
        actuator.set_traffic(&p, &target("eu-west"), 10, "key-eu-10").await.ok()
    })
    .await;
    assert_eq!(get(&plane, &["-n", "eu-west", "get", "cm/rollout", "-o", "jsonpath={.data.signin}"]), "10");
    assert_eq!(annotation(&plane, "cm/rollout", "eu-west", IDEMPOTENCY_KEY_ANNOTATION), "key-eu-10");
    assert_eq!(actuator.read_traffic(&p, &target("eu-west")).await, Ok(Some(10)));

    // A region whose Secret does not exist: not retried, the Secret and namespace named.
    let err = actuator.set_traffic(&p, &target("no-secret"), 10, "key-none").await.unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert!(
        err.message.contains(r#"secret "no-secret-kubeconfig" in namespace "meridian" does not exist"#),
        "{}",
        err.message
    );

    // A Secret whose kubeconfig would run a program is refused.
    let exec = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/true}}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), exec).unwrap();
    get(
        &plane,
        &[
            "-n",
            MERIDIAN_NS,
            "create",
            "secret",
            "generic",
            "no-secret-kubeconfig",
            &format!("--from-file=kubeconfig={}", file.path().display()),
        ],
    );
    let err = actuator.set_traffic(&p, &target("no-secret"), 10, "key-exec").await.unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert_eq!(err.label, "kubeconfig");
    assert!(err.message.contains("runs a program for its credentials (exec)"), "{}", err.message);
}
