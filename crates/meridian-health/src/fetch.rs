//! One HTTP exchange with a bounded time and a bounded body, and what went wrong with it.
//!
//! Owns the transport rules every source shares: the per-request timeout, the body-size
//! cap, no redirects, credentials kept out of messages. It does not interpret bodies; a
//! non-2xx status is returned with its body so that the caller can explain it.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode, Url};

/// A failed HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("failed to build the http client")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    #[error("request to {url} timed out after {}ms", timeout.as_millis())]
    Timeout { url: String, timeout: Duration },
    #[error("failed to connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}{}", excerpt_suffix(body))]
    Status { url: String, status: StatusCode, body: String },
    #[error("response from {url} exceeds {limit} bytes")]
    BodyTooLarge { url: String, limit: usize },
}

impl FetchError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            FetchError::Client { .. } => "client",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect { .. } => "connect",
            FetchError::Request { .. } => "request",
            FetchError::Status { status, .. } if status.is_client_error() => "http_4xx",
            FetchError::Status { status, .. } if status.is_server_error() => "http_5xx",
            FetchError::Status { .. } => "http_status",
            FetchError::BodyTooLarge { .. } => "body_too_large",
        }
    }
}

fn excerpt_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() { String::new() } else { format!(": {}", excerpt(body, 300)) }
}

pub(crate) fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A client for all sources: no redirects (a redirect is answered as a non-2xx status, so a
/// login page never reads as data) and a connect timeout no longer than the request's.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|source| FetchError::Client { source })
}

/// The URL as it may appear in a message: without user info.
pub(crate) fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Send `request` (built for `url`), read at most `limit` bytes of body within `timeout`.
/// Returns the body of a 2xx answer; any other status is an error carrying the body.
pub(crate) async fn send(
    request: RequestBuilder,
    url: &Url,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let shown = display_url(url);
    let classify = |source: reqwest::Error| {
        // Our message names the URL without credentials; reqwest's would repeat it whole.
        let source = source.without_url();
        if source.is_timeout() {
            FetchError::Timeout { url: shown.clone(), timeout }
        } else if source.is_connect() {
            FetchError::Connect { url: shown.clone(), source }
        } else {
            FetchError::Request { url: shown.clone(), source }
        }
    };
    let mut response = request.timeout(timeout).send().await.map_err(classify)?;
    let status = response.status();
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::BodyTooLarge { url: shown, limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::BodyTooLarge { url: shown, limit });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(FetchError::Status { url: shown, status, body: String::from_utf8_lossy(&body).into_owned() });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hide_credentials_and_cut_long_bodies() {
        let url = Url::parse("http://user:secret@127.0.0.1:9/x").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1:9/x");
        let e = FetchError::Status { url: "u".into(), status: StatusCode::BAD_GATEWAY, body: "é".repeat(400) };
        let text = e.to_string();
        assert!(text.starts_with("u answered 502 Bad Gateway: é"), "{text}");
        assert!(text.ends_with('…') && text.len() < 340, "{text}");
        assert_eq!(e.metric_label(), "http_5xx");
    }
}
