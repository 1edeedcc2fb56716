//! The `actuator` section (the plan's, or a region's replacement) resolved into typed
//! [`ActuatorSettings`]: for `http`, a checked URL template, method, token source, timeout,
//! retries and drift policy; for `kubernetes`, the cluster, the one object and names that
//! are valid Kubernetes names once their placeholders are filled.
//!
//! Owns every rule about those settings, so the actuator adapter parses nothing. It does
//! not decide which region uses which section (`regions`).

use super::PlanChecker;
use super::values::is_object_name;
use crate::diagnostics::did_you_mean;
use crate::manifest::{ActuatorSpec, HttpActuatorSpec, KubernetesActuatorSpec};
use crate::plan::{
    ActuatorSettings, ClusterRef, DEFAULT_ACTUATOR_RETRIES, DEFAULT_ACTUATOR_TIMEOUT, DEFAULT_KUBECONFIG_KEY,
    DriftPolicy, HttpActuatorSettings, KubeObject, KubernetesActuatorSettings, SetMethod, TokenSource, render_template,
    template_placeholders,
};

impl<'d> PlanChecker<'d, '_> {
    /// An `actuator` section at `path` (the plan's, or a region's replacement), resolved;
    /// `None` when it has an error.
    pub(super) fn actuator(&mut self, path: &str, a: &ActuatorSpec) -> Option<ActuatorSettings> {
        let kinds: Vec<&str> =
            [("http", a.http.is_some()), ("kubernetes", a.kubernetes.is_some()), ("log", a.log.is_some())]
                .into_iter()
                .filter_map(|(kind, set)| set.then_some(kind))
                .collect();
        match kinds.as_slice() {
            [] => {
                self.error(
                    path,
                    "actuator-kind",
                    "actuator names no kind".into(),
                    Some(
                        "add http: {url: ...}, kubernetes: {namespace: ..., configMap: ...}, or log: {} for a dry run"
                            .into(),
                    ),
                );
                None
            }
            [_] => {
                if let Some(h) = &a.http {
                    self.http_actuator(path, h).map(ActuatorSettings::Http)
                } else if let Some(k) = &a.kubernetes {
                    self.kubernetes_actuator(&format!("{path}.kubernetes"), k).map(ActuatorSettings::Kubernetes)
                } else {
                    Some(ActuatorSettings::Log)
                }
            }
            several => {
                let listed = match several {
                    [a, b] => format!("both {a} and {b}"),
                    _ => "http, kubernetes and log".into(),
                };
                let hint = if a.log.is_some() && several.len() == 2 {
                    let other = several.iter().find(|k| **k != "log").copied().unwrap_or("http");
                    format!("keep {other} to change traffic, or log for a dry run")
                } else {
                    "keep one: http or kubernetes to change traffic, log for a dry run".into()
                };
                self.error(path, "actuator-kind", format!("actuator has {listed}"), Some(hint));
                // Still check each section, so that fixing the kind reveals nothing new.
                if let Some(h) = &a.http {
                    let _ = self.http_actuator(path, h);
                }
                if let Some(k) = &a.kubernetes {
                    let _ = self.kubernetes_actuator(&format!("{path}.kubernetes"), k);
                }
                None
            }
        }
    }

    /// An `actuator.kubernetes` section at `path`, resolved; `None` when it has an error.
    pub(super) fn kubernetes_actuator(
        &mut self,
        path: &str,
        k: &KubernetesActuatorSpec,
    ) -> Option<KubernetesActuatorSettings> {
        let before = self.errors;
        let cluster = match &k.cluster {
            None => ClusterRef::Local,
            Some(c) => {
                let name_path = format!("{path}.cluster.secret.name");
                self.kube_name(&name_path, "secret name", &c.secret.name, NameRule::Object);
                let key = c.secret.key.clone().unwrap_or_else(|| DEFAULT_KUBECONFIG_KEY.into());
                if c.secret.key.is_some() {
                    self.kube_name(&format!("{path}.cluster.secret.key"), "secret key", &key, NameRule::DataKey);
                }
                ClusterRef::Secret { name: c.secret.name.trim().to_string(), key: key.trim().to_string() }
            }
        };
        self.kube_name(&format!("{path}.namespace"), "namespace", &k.namespace, NameRule::Label);
        // Each object written is checked, so that dropping the extra ones reveals nothing new.
        let mut written: Vec<(&str, KubeObject)> = Vec::new();
        if let Some(c) = &k.config_map {
            self.kube_name(&format!("{path}.configMap.name"), "configMap name", &c.name, NameRule::Object);
            self.kube_name(&format!("{path}.configMap.key"), "configMap key", &c.key, NameRule::DataKey);
            written.push(("configMap", KubeObject::ConfigMap { name: c.name.trim().into(), key: c.key.trim().into() }));
        }
        if let Some(h) = &k.http_route {
            self.kube_name(&format!("{path}.httpRoute.name"), "httpRoute name", &h.name, NameRule::Object);
            let backend =
                self.kube_name(&format!("{path}.httpRoute.backend"), "backend", &h.backend, NameRule::Service);
            let stable =
                self.kube_name(&format!("{path}.httpRoute.stable"), "stable backend", &h.stable, NameRule::Service);
            if backend && stable && h.backend.trim() == h.stable.trim() {
                self.error(
                    &format!("{path}.httpRoute.stable"),
                    "same-backend",
                    format!("backend and stable are both {:?}", h.backend.trim()),
                    Some("name the new version's Service as backend and the current one as stable".into()),
                );
            }
            written.push((
                "httpRoute",
                KubeObject::HttpRoute {
                    name: h.name.trim().into(),
                    backend: h.backend.trim().into(),
                    stable: h.stable.trim().into(),
                },
            ));
        }
        if let Some(d) = &k.deployment {
            self.kube_name(&format!("{path}.deployment.name"), "deployment name", &d.name, NameRule::Object);
            let replicas = match u32::try_from(d.replicas) {
                Ok(r) if r >= 1 => r,
                _ => {
                    self.error(
                        &format!("{path}.deployment.replicas"),
                        "invalid-replicas",
                        format!("replicas is {}; it must be at least 1", d.replicas),
                        Some("give the replicas the Deployment runs at 100 %, e.g. replicas: 10".into()),
                    );
                    1
                }
            };
            written.push(("deployment", KubeObject::Deployment { name: d.name.trim().into(), replicas }));
        }
        let object = match written.len() {
            0 => {
                self.error(
                    path,
                    "kubernetes-object",
                    "kubernetes actuator names no object to set".into(),
                    Some(
                        "add one of configMap: {name, key}, httpRoute: {name, backend, stable} or \
                         deployment: {name, replicas}"
                            .into(),
                    ),
                );
                None
            }
            1 => written.pop().map(|(_, object)| object),
            _ => {
                let fields: Vec<&str> = written.iter().map(|(field, _)| *field).collect();
                self.error(
                    &format!("{path}.{}", fields[1]),
                    "kubernetes-object",
                    format!("kubernetes actuator names both {} and {}", fields[0], fields[1..].join(" and ")),
                    Some("keep one: each sets the percent its own way, and two would fight over it".into()),
                );
                None
            }
        };
        let on_drift = self.on_drift(&format!("{path}.onDrift"), k.on_drift.as_deref());
        let object = object.filter(|_| self.errors == before)?;
        Some(KubernetesActuatorSettings { cluster, namespace: k.namespace.trim().to_string(), object, on_drift })
    }

    /// A name that may hold placeholders: they must be known and closed, and with sample names
    /// filled in it must be a valid name of its `rule`. `true` when it is.
    fn kube_name(&mut self, path: &str, what: &str, text: &str, rule: NameRule) -> bool {
        if !self.template(path, what, text, &ACTUATOR_URL_VARS) {
            return false;
        }
        let sample = render_template(text.trim(), &[("region", "x"), ("service", "x"), ("plan", "x")]);
        if rule.accepts(&sample) {
            return true;
        }
        let placeholders = if template_placeholders(text).is_empty() {
            ""
        } else {
            " (placeholders are filled with the plan's, region's and service's names)"
        };
        self.error(
            path,
            "invalid-kubernetes-name",
            format!("{what} {text:?} is not a valid {}", rule.noun()),
            Some(format!("{}{placeholders}", rule.hint())),
        );
        false
    }

    /// `onDrift`: `reapply` (default) or `hold`.
    fn on_drift(&mut self, path: &str, text: Option<&str>) -> DriftPolicy {
        match text {
            None | Some("reapply") => DriftPolicy::Reapply,
            Some("hold") => DriftPolicy::Hold,
            Some(d) => {
                let hint = did_you_mean(d, ["reapply", "hold"]).unwrap_or_else(|| "use reapply or hold".into());
                self.error(path, "invalid-on-drift", format!("onDrift {d:?} is not supported"), Some(hint));
                DriftPolicy::Reapply
            }
        }
    }

    pub(super) fn http_actuator(&mut self, path: &str, h: &HttpActuatorSpec) -> Option<HttpActuatorSettings> {
        let before = self.errors;
        let url_path = format!("{path}.http.url");
        let url = if self.template(&url_path, "url", &h.url, &ACTUATOR_URL_VARS) {
            self.url_template(&url_path, "actuator url", &h.url, ACTUATOR_URL_EXAMPLE)
        } else {
            None
        };
        let token = match (&h.token_file, &h.token_env) {
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{path}.http.tokenEnv"),
                    "token-source",
                    "http actuator has both tokenFile and tokenEnv".into(),
                    Some(
                        "keep one: the token is read from a file (tokenFile) or from an environment variable (tokenEnv)"
                            .into(),
                    ),
                );
                TokenSource::None
            }
            (Some(file), None) => TokenSource::File(file.into()),
            (None, Some(var)) => TokenSource::Env(var.clone()),
            (None, None) => TokenSource::None,
        };
        let method = match h.method.as_deref() {
            None | Some("PUT") => SetMethod::Put,
            Some("POST") => SetMethod::Post,
            Some(m) => {
                let hint = if m.eq_ignore_ascii_case("put") || m.eq_ignore_ascii_case("post") {
                    format!("write it in capitals: {}", m.to_ascii_uppercase())
                } else {
                    "use PUT or POST".into()
                };
                self.error(
                    &format!("{path}.http.method"),
                    "invalid-method",
                    format!("method {m:?} is not supported"),
                    Some(hint),
                );
                SetMethod::Put
            }
        };
        let timeout = self.span(&format!("{path}.http.timeout"), h.timeout.as_deref(), DEFAULT_ACTUATOR_TIMEOUT);
        let retries = match h.retries {
            None => DEFAULT_ACTUATOR_RETRIES,
            Some(r) if r < 0 => {
                self.error(
                    &format!("{path}.http.retries"),
                    "invalid-retries",
                    format!("retries is {r}; it cannot be negative"),
                    Some("use 0 for a single attempt".into()),
                );
                DEFAULT_ACTUATOR_RETRIES
            }
            Some(r) => match u32::try_from(r) {
                Ok(r) => r,
                Err(_) => {
                    self.error(
                        &format!("{path}.http.retries"),
                        "invalid-retries",
                        format!("retries is {r}; it is too many"),
                        Some(format!("use at most {}; a few (e.g. 3) is usual", u32::MAX)),
                    );
                    DEFAULT_ACTUATOR_RETRIES
                }
            },
        };
        let on_drift = self.on_drift(&format!("{path}.http.onDrift"), h.on_drift.as_deref());
        let url = url.filter(|_| self.errors == before)?;
        Some(HttpActuatorSettings { url, method, token, timeout, retries, on_drift })
    }
}

/// What a Kubernetes name must look like.
#[derive(Debug, Clone, Copy)]
enum NameRule {
    /// Most objects' names: a DNS subdomain (RFC 1123).
    Object,
    /// A namespace: a DNS label (RFC 1123).
    Label,
    /// A Service (a backendRef): a DNS label starting with a letter (RFC 1035).
    Service,
    /// A key of a ConfigMap's or Secret's data.
    DataKey,
}

impl NameRule {
    fn accepts(self, name: &str) -> bool {
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && l.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && l.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
        };
        match self {
            NameRule::Object => is_object_name(name),
            NameRule::Label => label(name),
            NameRule::Service => label(name) && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase),
            NameRule::DataKey => {
                !name.is_empty()
                    && name.len() <= 253
                    && name != "."
                    && name != ".."
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            }
        }
    }

    fn noun(self) -> &'static str {
        match self {
            NameRule::Object => "Kubernetes object name",
            NameRule::Label => "Kubernetes namespace name",
            NameRule::Service => "Service name",
            NameRule::DataKey => "data key",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            NameRule::Object => {
                "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253"
            }
            NameRule::Label => {
                "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            }
            NameRule::Service => {
                "use at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
            }
            NameRule::DataKey => "use letters, digits, '-', '_' and '.'",
        }
    }
}

/// Placeholders an actuator URL may use.
pub(super) const ACTUATOR_URL_VARS: [&str; 3] = ["region", "service", "plan"];
/// Good URLs, for hints.
pub(super) const ACTUATOR_URL_EXAMPLE: &str = "https://control.{{region}}.example.net/v1/services/{{service}}/traffic";

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, plan_with_actuator};
    use super::*;
    use crate::duration::Span;
    use crate::endpoint::UrlTemplate;

    #[test]
    fn actuator_sections_resolve_to_typed_settings() {
        let url = "https://control.{{region}}.example.net/{{service}}";
        let cases: Vec<(String, Option<ActuatorSettings>)> = vec![
            ("    log: {}\n".into(), Some(ActuatorSettings::Log)),
            (
                format!("    http: {{url: '{url}'}}\n"),
                Some(ActuatorSettings::Http(HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap()))),
            ),
            (
                format!(
                    "    http: {{url: '{url}', method: POST, tokenFile: /run/token, timeout: 1500ms, retries: 0, onDrift: hold}}\n"
                ),
                Some(ActuatorSettings::Http(HttpActuatorSettings {
                    method: SetMethod::Post,
                    token: TokenSource::File("/run/token".into()),
                    timeout: Span::from_millis(1500),
                    retries: 0,
                    on_drift: DriftPolicy::Hold,
                    ..HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap())
                })),
            ),
            (
                format!("    http: {{url: '{url}', method: PUT, tokenEnv: TOKEN, onDrift: reapply}}\n"),
                Some(ActuatorSettings::Http(HttpActuatorSettings {
                    token: TokenSource::Env("TOKEN".into()),
                    ..HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap())
                })),
            ),
        ];
        for (section, expected) in cases {
            let bundle = plan_with_actuator(&section);
            assert_eq!(errors(&bundle), vec![], "{section}");
            let plan = bundle.plan("p").unwrap();
            assert_eq!(plan.actuator, expected, "{section}");
            assert_eq!(plan.regions[0].settings.actuator, expected, "{section}");
        }
    }

    #[test]
    fn bad_actuator_settings_are_located_errors() {
        let url = "http://h/{{region}}";
        let cases = [
            (format!("    http: {{url: '{url}', method: PATCH}}\n"), "spec.actuator.http.method", "invalid-method"),
            (format!("    http: {{url: '{url}', method: post}}\n"), "spec.actuator.http.method", "invalid-method"),
            (format!("    http: {{url: '{url}', timeout: soon}}\n"), "spec.actuator.http.timeout", "invalid-duration"),
            (format!("    http: {{url: '{url}', timeout: 0s}}\n"), "spec.actuator.http.timeout", "zero-duration"),
            (format!("    http: {{url: '{url}', retries: -1}}\n"), "spec.actuator.http.retries", "invalid-retries"),
            (
                format!("    http: {{url: '{url}', retries: 5000000000}}\n"),
                "spec.actuator.http.retries",
                "invalid-retries",
            ),
            (format!("    http: {{url: '{url}', onDrift: holds}}\n"), "spec.actuator.http.onDrift", "invalid-on-drift"),
            (
                format!("    http: {{url: '{url}', tokenFile: /t, tokenEnv: T}}\n"),
                "spec.actuator.http.tokenEnv",
                "token-source",
            ),
            (format!("    http: {{url: '{url}'}}\n    log: {{}}\n"), "spec.actuator", "actuator-kind"),
            ("    {}\n".to_string(), "spec.actuator", "actuator-kind"),
            ("    http: {url: 'ftp://h/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
            ("    http: {url: 'control/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
            ("    http: {url: 'http://h:99999/{{region}}'}\n".to_string(), "spec.actuator.http.url", "invalid-url"),
        ];
        for (section, path, code) in cases {
            let bundle = plan_with_actuator(&section);
            assert_eq!(errors(&bundle), vec![(path.to_string(), code)], "{section}");
            assert!(bundle.plan("p").is_none(), "{section}");
        }
    }

    #[test]
    fn kubernetes_sections_resolve_to_typed_settings() {
        let local = |object: KubeObject| KubernetesActuatorSettings {
            cluster: ClusterRef::Local,
            namespace: "{{region}}".into(),
            object,
            on_drift: DriftPolicy::Reapply,
        };
        let cases = [
            (
                "    kubernetes: {namespace: '{{region}}', configMap: {name: '{{service}}-rollout', key: percent}}\n",
                local(KubeObject::ConfigMap { name: "{{service}}-rollout".into(), key: "percent".into() }),
            ),
            (
                "    kubernetes: {namespace: '{{region}}', httpRoute: {name: '{{service}}', backend: '{{service}}-v2', \
                 stable: '{{service}}-v1'}}\n",
                local(KubeObject::HttpRoute {
                    name: "{{service}}".into(),
                    backend: "{{service}}-v2".into(),
                    stable: "{{service}}-v1".into(),
                }),
            ),
            (
                "    kubernetes: {namespace: '{{region}}', deployment: {name: '{{service}}-v2', replicas: 10}}\n",
                local(KubeObject::Deployment { name: "{{service}}-v2".into(), replicas: 10 }),
            ),
            (
                "    kubernetes:\n      cluster: {secret: {name: '{{region}}-kubeconfig'}}\n      namespace: shop\n      \
                 configMap: {name: rollout, key: '{{service}}'}\n      onDrift: hold\n",
                KubernetesActuatorSettings {
                    cluster: ClusterRef::Secret { name: "{{region}}-kubeconfig".into(), key: "kubeconfig".into() },
                    namespace: "shop".into(),
                    object: KubeObject::ConfigMap { name: "rollout".into(), key: "{{service}}".into() },
                    on_drift: DriftPolicy::Hold,
                },
            ),
        ];
        for (section, expected) in cases {
            let bundle = plan_with_actuator(section);
            assert_eq!(errors(&bundle), vec![], "{section}");
            let plan = bundle.plan("p").unwrap();
            assert_eq!(plan.actuator, Some(ActuatorSettings::Kubernetes(expected.clone())), "{section}");
            assert_eq!(plan.regions[0].settings.on_drift(), expected.on_drift, "{section}");
        }
    }

    #[test]
    fn bad_kubernetes_settings_are_located_errors() {
        let base = "spec.actuator.kubernetes";
        let cm = "configMap: {name: rollout, key: percent}";
        let cases: Vec<(String, Vec<(String, &str)>)> = vec![
            ("    kubernetes: {namespace: shop}\n".into(), vec![(base.into(), "kubernetes-object")]),
            (
                format!("    kubernetes: {{namespace: shop, {cm}, deployment: {{name: d, replicas: 3}}}}\n"),
                vec![(format!("{base}.deployment"), "kubernetes-object")],
            ),
            (
                format!("    kubernetes: {{namespace: Shop_EU, {cm}}}\n"),
                vec![(format!("{base}.namespace"), "invalid-kubernetes-name")],
            ),
            (
                format!("    kubernetes: {{namespace: '{{{{zone}}}}', {cm}}}\n"),
                vec![(format!("{base}.namespace"), "unknown-placeholder")],
            ),
            (
                format!("    kubernetes: {{namespace: '', {cm}}}\n"),
                vec![(format!("{base}.namespace"), "empty-template")],
            ),
            (
                "    kubernetes: {namespace: shop, configMap: {name: '{{service}}/x', key: 'per cent'}}\n".into(),
                vec![
                    (format!("{base}.configMap.name"), "invalid-kubernetes-name"),
                    (format!("{base}.configMap.key"), "invalid-kubernetes-name"),
                ],
            ),
            (
                "    kubernetes: {namespace: shop, httpRoute: {name: r, backend: '1-v2', stable: v1}}\n".into(),
                vec![(format!("{base}.httpRoute.backend"), "invalid-kubernetes-name")],
            ),
            (
                "    kubernetes: {namespace: shop, httpRoute: {name: r, backend: v1, stable: v1}}\n".into(),
                vec![(format!("{base}.httpRoute.stable"), "same-backend")],
            ),
            (
                "    kubernetes: {namespace: shop, deployment: {name: d, replicas: 0}}\n".into(),
                vec![(format!("{base}.deployment.replicas"), "invalid-replicas")],
            ),
            (
                "    kubernetes: {namespace: shop, deployment: {name: d, replicas: 5000000000}}\n".into(),
                vec![(format!("{base}.deployment.replicas"), "invalid-replicas")],
            ),
            (
                format!("    kubernetes: {{cluster: {{secret: {{name: 'EU', key: 'a/b'}}}}, namespace: shop, {cm}}}\n"),
                vec![
                    (format!("{base}.cluster.secret.name"), "invalid-kubernetes-name"),
                    (format!("{base}.cluster.secret.key"), "invalid-kubernetes-name"),
                ],
            ),
            (
                format!("    kubernetes: {{namespace: shop, {cm}, onDrift: keep}}\n"),
                vec![(format!("{base}.onDrift"), "invalid-on-drift")],
            ),
            (
                format!("    kubernetes: {{namespace: shop, {cm}}}\n    log: {{}}\n"),
                vec![("spec.actuator".into(), "actuator-kind")],
            ),
            (
                format!("    http: {{url: 'http://h/{{{{region}}}}'}}\n    kubernetes: {{namespace: shop, {cm}}}\n"),
                vec![("spec.actuator".into(), "actuator-kind")],
            ),
        ];
        for (section, expected) in cases {
            let bundle = plan_with_actuator(&section);
            let mut actual = errors(&bundle);
            actual.sort();
            let mut expected = expected;
            expected.sort();
            assert_eq!(actual, expected, "{section}");
            assert!(bundle.plan("p").is_none(), "{section}");
        }
    }

    #[test]
    fn kubernetes_name_errors_say_what_a_name_may_hold() {
        let bundle =
            plan_with_actuator("    kubernetes: {namespace: 'team_{{region}}', configMap: {name: c, key: k}}\n");
        let d = bundle.report.diagnostics.iter().find(|d| d.code == "invalid-kubernetes-name").unwrap();
        assert_eq!(d.message, "namespace \"team_{{region}}\" is not a valid Kubernetes namespace name");
        assert_eq!(
            d.hint.as_deref(),
            Some(
                "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit \
                 (placeholders are filled with the plan's, region's and service's names)"
            )
        );
    }
}
