//! The `actuator` section (the plan's, or a region's replacement) resolved into typed
//! [`ActuatorSettings`]: a checked URL template, method, token source, timeout, retries
//! and drift policy.
//!
//! Owns every rule about those settings, so the actuator adapter parses nothing. It does
//! not decide which region uses which section (`regions`).

use super::PlanChecker;
use crate::diagnostics::did_you_mean;
use crate::manifest::{ActuatorSpec, HttpActuatorSpec};
use crate::plan::{
    ActuatorSettings, DEFAULT_ACTUATOR_RETRIES, DEFAULT_ACTUATOR_TIMEOUT, DriftPolicy, HttpActuatorSettings, SetMethod,
    TokenSource,
};

impl<'d> PlanChecker<'d, '_> {
    /// An `actuator` section at `path` (the plan's, or a region's replacement), resolved;
    /// `None` when it has an error.
    pub(super) fn actuator(&mut self, path: &str, a: &ActuatorSpec) -> Option<ActuatorSettings> {
        let h = match (&a.http, &a.log) {
            (Some(h), None) => h,
            (None, Some(_)) => return Some(ActuatorSettings::Log),
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "actuator-kind",
                    "actuator has both http and log".into(),
                    Some("keep http to change traffic, or log for a dry run".into()),
                );
                // Still check the http section, so that fixing the kind reveals nothing new.
                let _ = self.http_actuator(path, a.http.as_ref()?);
                return None;
            }
            (None, None) => {
                self.error(
                    path,
                    "actuator-kind",
                    "actuator names no kind".into(),
                    Some("add http: {url: ...}, or log: {} for a dry run".into()),
                );
                return None;
            }
        };
        self.http_actuator(path, h).map(ActuatorSettings::Http)
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
        let on_drift = match h.on_drift.as_deref() {
            None | Some("reapply") => DriftPolicy::Reapply,
            Some("hold") => DriftPolicy::Hold,
            Some(d) => {
                let hint = did_you_mean(d, ["reapply", "hold"]).unwrap_or_else(|| "use reapply or hold".into());
                self.error(
                    &format!("{path}.http.onDrift"),
                    "invalid-on-drift",
                    format!("onDrift {d:?} is not supported"),
                    Some(hint),
                );
                DriftPolicy::Reapply
            }
        };
        let url = url.filter(|_| self.errors == before)?;
        Some(HttpActuatorSettings { url, method, token, timeout, retries, on_drift })
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
}
