//! The `http` actuator: sets a (plan, region, service) traffic percent on a remote control
//! endpoint and reads it back.
//!
//! Owns the wire contract below, bearer tokens, timeouts and retries. Its settings arrive
//! resolved and checked by validation ([`HttpActuatorSettings`]); it reads no plan text. It
//! keeps no state of its own beyond the jitter generator: what a target serves is the
//! endpoint's business, and what it should serve is the controller's.
//!
//! # Wire contract
//!
//! The url comes from the plan's `actuator.http.url` with `{{plan}}`, `{{region}}` and
//! `{{service}}` replaced verbatim (names are validated to lowercase letters, digits, `-` and
//! `.`, so they are safe in a host or a path). Both calls send `Authorization: Bearer <token>`
//! when the plan names a `tokenFile` (read anew on every call, so a rotated file is picked up
//! without a restart) or a `tokenEnv`.
//!
//! **Set**: `PUT` (default) or `POST` to the url, with `Content-Type: application/json`, an
//! `Idempotency-Key: <key>` header that is the same on every retry of one call, and the body
//!
//! ```json
//! {"percent": 10, "plan": "network-restoration", "region": "jp", "service": "store"}
//! ```
//!
//! Any `2xx` means the endpoint now serves that percent (the answer's body is ignored).
//! The endpoint must treat a repeated key with the same body as a no-op.
//!
//! **Read-back**: `GET` on the same url. `200` with a JSON object whose `percent` is an integer
//! from 0 to 100 is what the target serves; `"percent": null` or a `404` means the target has
//! never been set. Anything else is an error.
//!
//! **Failures**: each request has its own timeout (`timeout`, default 10s). Connection
//! failures, timeouts, broken transfers, `429` and `5xx` are retried up to `retries` times
//! (default 3, so at most 4 requests) after a delay drawn uniformly from
//! `[0, min(cap, base * 2^n)]` before retry `n` (exponential backoff with full jitter). Other
//! `4xx`, `3xx` (redirects are not followed) and unusable read-backs fail at once.

use std::time::Duration;

use meridian_core::plan::{HttpActuatorSettings, SetMethod, TokenSource};
use meridian_core::ports::Target;
use reqwest::{Client, Method, StatusCode, Url};
use serde::Serialize;

use crate::backoff::Backoff;
use crate::error::ActuatorError;
use crate::{ActuatorOptions, Applied};

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Which controller replica sent a request (`ActuatorOptions::instance`).
pub const INSTANCE_HEADER: &str = "Meridian-Instance";
/// How much of an error answer's body is kept in the error.
const BODY_SNIPPET_CHARS: usize = 200;

fn http_method(method: SetMethod) -> Method {
    match method {
        SetMethod::Put => Method::PUT,
        SetMethod::Post => Method::POST,
    }
}

/// The body of a set.
#[derive(Serialize)]
struct SetTrafficBody<'a> {
    percent: u32,
    plan: &'a str,
    region: &'a str,
    service: &'a str,
}

/// One successful exchange.
struct Exchange {
    status: StatusCode,
    body: Vec<u8>,
    attempt: u32,
}

/// Sets traffic over HTTP. Cheap to share behind an `Arc`; its futures are `Send`.
#[derive(Debug)]
pub struct HttpActuator {
    client: Client,
    settings: HttpActuatorSettings,
    /// `settings.timeout`, as the client takes it.
    timeout: Duration,
    backoff: Backoff,
    instance: Option<String>,
}

impl HttpActuator {
    /// An actuator with its own HTTP client.
    pub fn new(settings: &HttpActuatorSettings, options: &ActuatorOptions) -> Result<Self, ActuatorError> {
        Ok(HttpActuator::with_client(settings, options, build_client()?))
    }

    /// An actuator on a shared client (one connection pool for many plans). The client should
    /// not follow redirects; [`build_client`] makes one that does not.
    pub fn with_client(settings: &HttpActuatorSettings, options: &ActuatorOptions, client: Client) -> Self {
        let backoff = match options.jitter_seed {
            Some(seed) => Backoff::new(options.backoff_base, options.backoff_cap, seed),
            None => Backoff::unseeded(options.backoff_base, options.backoff_cap),
        };
        let timeout = Duration::from_millis(settings.timeout.as_millis());
        HttpActuator { client, settings: settings.clone(), timeout, backoff, instance: options.instance.clone() }
    }

    /// What this actuator was built from.
    pub fn settings(&self) -> &HttpActuatorSettings {
        &self.settings
    }

    pub fn method(&self) -> SetMethod {
        self.settings.method
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Retries after the first request; a call sends at most `retries + 1` requests.
    pub fn retries(&self) -> u32 {
        self.settings.retries
    }

    pub fn token_source(&self) -> &TokenSource {
        &self.settings.token
    }

    /// The target's url. Validation checked the template; names that do not fit in a url
    /// can still fail here.
    pub fn url(&self, target: &Target) -> Result<Url, ActuatorError> {
        self.settings
            .url
            .render(&[("plan", &target.plan), ("region", &target.region), ("service", &target.service)])
            .map_err(|e| ActuatorError::InvalidUrl {
                url: self.settings.url.to_string(),
                reason: format!(
                    "for plan {:?}, region {:?}, service {:?}: {e}",
                    target.plan, target.region, target.service
                ),
            })
    }

    /// Make `target` serve `percent` % of its traffic. Every retry of this call carries the
    /// same `idempotency_key`.
    pub async fn set_traffic(
        &self,
        target: &Target,
        percent: u32,
        idempotency_key: &str,
    ) -> Result<Applied, ActuatorError> {
        if percent > 100 {
            return Err(ActuatorError::InvalidPercent { percent });
        }
        let url = self.url(target)?;
        if reqwest::header::HeaderValue::from_str(idempotency_key).is_err() {
            return Err(ActuatorError::InvalidRequest {
                method: self.method().as_str(),
                url: url.to_string(),
                reason: format!("idempotency key {idempotency_key:?} is not a valid http header value"),
            });
        }
        let token = self.bearer_token().await?;
        let body = SetTrafficBody { percent, plan: &target.plan, region: &target.region, service: &target.service };
        let exchange = self
            .exchange(
                http_method(self.method()),
                self.method().as_str(),
                &url,
                Some(&body),
                Some(idempotency_key),
                token,
                |s| s.is_success(),
            )
            .await?;
        Ok(Applied { attempts: exchange.attempt, dry_run: false })
    }

    /// The percent `target` serves now, or `None` when it has never been set.
    pub async fn read_traffic(&self, target: &Target) -> Result<Option<u32>, ActuatorError> {
        let url = self.url(target)?;
        let token = self.bearer_token().await?;
        let exchange = self
            .exchange(Method::GET, "GET", &url, None::<&SetTrafficBody>, None, token, |s| {
                s.is_success() || s == StatusCode::NOT_FOUND
            })
            .await?;
        if exchange.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        parse_read_back(&exchange.body).map_err(|reason| ActuatorError::InvalidResponse {
            url: url.to_string(),
            attempt: exchange.attempt,
            reason,
        })
    }

    async fn bearer_token(&self) -> Result<Option<String>, ActuatorError> {
        match &self.settings.token {
            TokenSource::None => Ok(None),
            TokenSource::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| ActuatorError::TokenFile { path: path.clone(), reason: e.to_string() })?;
                match text.trim() {
                    "" => Err(ActuatorError::EmptyTokenFile { path: path.clone() }),
                    token => Ok(Some(token.to_string())),
                }
            }
            TokenSource::Env(var) => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(Some(value.trim().to_string())),
                _ => Err(ActuatorError::TokenEnv { var: var.clone() }),
            },
        }
    }

    /// Send until an answer `accept`s, a failure is not retryable, or the retries run out.
    #[allow(clippy::too_many_arguments)]
    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        method_name: &'static str,
        url: &Url,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        token: Option<String>,
        accept: impl Fn(StatusCode) -> bool,
    ) -> Result<Exchange, ActuatorError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.request(method.clone(), url.clone()).timeout(self.timeout);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = idempotency_key {
                request = request.header(IDEMPOTENCY_KEY_HEADER, key);
                if let Some(instance) = &self.instance {
                    request = request.header(INSTANCE_HEADER, instance);
                }
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) if accept(status) => Ok(Exchange { status, body: bytes.to_vec(), attempt }),
                        Ok(bytes) => Err(ActuatorError::Status {
                            method: method_name,
                            url: url.to_string(),
                            attempt,
                            status: status.as_u16(),
                            body: snippet(&bytes),
                        }),
                        Err(e) => Err(self.classify(e, method_name, url, attempt)),
                    }
                }
                Err(e) => Err(self.classify(e, method_name, url, attempt)),
            };
            match outcome {
                Err(e) if e.is_retryable() && attempt <= self.settings.retries => {
                    tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    fn classify(&self, e: reqwest::Error, method: &'static str, url: &Url, attempt: u32) -> ActuatorError {
        let url = url.to_string();
        if e.is_timeout() {
            ActuatorError::Timeout { method, url, attempt, timeout: self.timeout }
        } else if e.is_connect() {
            ActuatorError::Connect { method, url, attempt, reason: cause(&e) }
        } else if e.is_builder() {
            ActuatorError::InvalidRequest { method, url, reason: cause(&e) }
        } else {
            ActuatorError::Transport { method, url, attempt, reason: cause(&e) }
        }
    }
}

/// A client for actuators: no redirects (an endpoint that moves is a configuration error, and
/// a redirect must not carry the token elsewhere), no system proxy (reqwest's `system-proxy`
/// feature is off).
pub fn build_client() -> Result<Client, ActuatorError> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("meridian-actuator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ActuatorError::Client { reason: cause(&e) })
}

/// The read-back body: `{"percent": 0..=100}` or `{"percent": null}`; other fields ignored.
fn parse_read_back(body: &[u8]) -> Result<Option<u32>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not json ({e}): {}", snippet(body)))?;
    let object = value.as_object().ok_or_else(|| format!("body is not a json object: {}", snippet(body)))?;
    match object.get("percent") {
        None => Err(format!("body has no percent field: {}", snippet(body))),
        Some(serde_json::Value::Null) => Ok(None),
        Some(p) => match p.as_u64() {
            Some(n) if n <= 100 => Ok(Some(n as u32)),
            _ => Err(format!("percent {p} is not an integer from 0 to 100")),
        },
    }
}

/// The error's causes, without the url that reqwest repeats at the top.
fn cause(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut next: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}

/// The first characters of a body, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use meridian_core::Span;
    use meridian_core::endpoint::UrlTemplate;
    use meridian_core::plan::{DEFAULT_ACTUATOR_RETRIES, DriftPolicy};

    use super::*;

    fn settings(url: &str) -> HttpActuatorSettings {
        HttpActuatorSettings::new(UrlTemplate::parse(url).unwrap())
    }

    fn target() -> Target {
        Target { plan: "restore".into(), region: "jp".into(), service: "store".into() }
    }

    #[test]
    fn defaults_and_rendered_url() {
        let a = HttpActuator::new(
            &settings("https://control.{{region}}.example.net/v1/{{plan}}/services/{{ service }}/traffic"),
            &ActuatorOptions::default(),
        )
        .unwrap();
        assert_eq!(a.method(), SetMethod::Put);
        assert_eq!(a.timeout(), Duration::from_secs(10));
        assert_eq!(a.retries(), DEFAULT_ACTUATOR_RETRIES);
        assert_eq!(a.token_source(), &TokenSource::None);
        assert_eq!(a.settings().on_drift, DriftPolicy::Reapply);
        assert_eq!(
            a.url(&target()).unwrap().as_str(),
            "https://control.jp.example.net/v1/restore/services/store/traffic"
        );
    }

    #[test]
    fn settings_are_used_as_resolved() {
        let s = HttpActuatorSettings {
            method: SetMethod::Post,
            token: TokenSource::File("/run/token".into()),
            timeout: Span::from_millis(1500),
            retries: 0,
            ..settings("http://127.0.0.1:9/{{region}}")
        };
        let a = HttpActuator::new(&s, &ActuatorOptions::default()).unwrap();
        assert_eq!(a.method(), SetMethod::Post);
        assert_eq!(a.timeout(), Duration::from_millis(1500));
        assert_eq!(a.retries(), 0);
        assert_eq!(a.token_source(), &TokenSource::File("/run/token".into()));
    }

    #[test]
    fn a_name_that_breaks_the_url_is_an_error_naming_the_target() {
        let a = HttpActuator::new(&settings("https://{{region}}.example.net/"), &ActuatorOptions::default()).unwrap();
        let t = Target { region: "eu west".into(), ..target() };
        let e = a.url(&t).unwrap_err();
        assert_eq!(e.metric_label(), "invalid_url");
        assert!(e.to_string().contains("region \"eu west\""), "{e}");
    }

    #[test]
    fn read_back_bodies() {
        assert_eq!(parse_read_back(br#"{"percent": 50}"#), Ok(Some(50)));
        assert_eq!(parse_read_back(br#"{"percent": 0, "region": "jp"}"#), Ok(Some(0)));
        assert_eq!(parse_read_back(br#"{"percent": null}"#), Ok(None));
        for bad in [&br#"{"percent": 101}"#[..], br#"{"percent": -1}"#, br#"{"percent": 2.5}"#, br#"{"percent": "5"}"#]
        {
            assert!(parse_read_back(bad).unwrap_err().contains("not an integer from 0 to 100"));
        }
        assert!(parse_read_back(br#"{"pct": 5}"#).unwrap_err().contains("no percent field"));
        assert!(parse_read_back(b"[5]").unwrap_err().contains("not a json object"));
        assert!(parse_read_back(b"<html>").unwrap_err().contains("not json"));
    }

    #[test]
    fn snippets_are_short_and_one_line() {
        assert_eq!(snippet(b"  service\n  unavailable "), "service unavailable");
        let long = "x".repeat(500);
        assert_eq!(snippet(long.as_bytes()).len(), BODY_SNIPPET_CHARS + 3);
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let a = HttpActuator::new(&settings("http://127.0.0.1:9/"), &ActuatorOptions::default()).unwrap();
        let t = target();
        assert_send(&a.set_traffic(&t, 1, "k"));
        assert_send(&a.read_traffic(&t));
    }
}
