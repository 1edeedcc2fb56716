//! Delivery: one bounded queue and one worker per sink, so a slow or broken receiver delays
//! only its own notices and never the controller.
//!
//! A notice is POSTed as JSON (`payload::render`). 2xx is delivered. 5xx, 408, 429 and
//! network errors are retried up to the sink's `retries`, waiting `backoff`, then twice as
//! long each time, at most a minute (a `Retry-After` in seconds is honoured, within that
//! minute). Any other answer is final: the receiver refused the notice. Each notice ends as
//! `sent`, `failed` or (queue full) `dropped` in `meridian_notifications_total{sink, result}`,
//! and every failure and the first drop of a burst is logged with the sink's name and the
//! reason, never its URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meridian_core::notify::Notice;
use meridian_core::ports::Notifier;
use prometheus::{IntCounterVec, Opts};
use tokio::sync::mpsc;

use crate::payload::render;
use crate::sinks::SinkSpec;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The configured sinks, running.
pub struct Webhooks {
    sinks: Vec<Sink>,
    counts: IntCounterVec,
}

struct Sink {
    spec: Arc<SinkSpec>,
    queue: mpsc::Sender<Notice>,
    /// Set by a drop, cleared by the next notice queued: one log line per burst of drops.
    dropping: Arc<AtomicBool>,
}

impl Webhooks {
    /// Start a worker per sink on the current tokio runtime.
    pub fn start(specs: Vec<SinkSpec>) -> Result<Self, String> {
        let counts = IntCounterVec::new(
            Opts::new(
                "meridian_notifications_total",
                "Notices per sink by how they ended: sent (2xx), failed (refused, or retries used up) or dropped (queue full).",
            ),
            &["sink", "result"],
        )
        .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the notification HTTP client: {}", e.without_url()))?;
        let mut sinks = Vec::new();
        for spec in specs {
            for result in ["sent", "failed", "dropped"] {
                counts.with_label_values(&[spec.name.as_str(), result]);
            }
            let spec = Arc::new(spec);
            let (tx, rx) = mpsc::channel(spec.queue);
            tokio::spawn(deliver(spec.clone(), client.clone(), rx, counts.clone()));
            sinks.push(Sink { spec, queue: tx, dropping: Arc::new(AtomicBool::new(false)) });
        }
        Ok(Webhooks { sinks, counts })
    }

    /// The delivery counters, to register with the controller's `/metrics`.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.counts.clone())
    }

    /// The sinks' names, in the file's order.
    pub fn names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.spec.name.clone()).collect()
    }
}

impl Notifier for Webhooks {
    fn notify(&self, notices: Vec<Notice>) {
        for notice in &notices {
            for sink in self.sinks.iter().filter(|s| s.spec.wants(notice)) {
                match sink.queue.try_send(notice.clone()) {
                    Ok(()) => sink.dropping.store(false, Ordering::Relaxed),
                    Err(_) => {
                        self.counts.with_label_values(&[sink.spec.name.as_str(), "dropped"]).inc();
                        if !sink.dropping.swap(true, Ordering::Relaxed) {
                            crate::warn(&format!(
                                "notifications: sink {} is behind ({} notices queued): dropping notices until it \
                                 catches up (counted in meridian_notifications_total{{result=\"dropped\"}})",
                                sink.spec.name, sink.spec.queue
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// The worker of one sink: deliver its notices in order, each with its retries.
async fn deliver(spec: Arc<SinkSpec>, client: reqwest::Client, mut rx: mpsc::Receiver<Notice>, counts: IntCounterVec) {
    while let Some(notice) = rx.recv().await {
        let body = render(spec.format, &notice);
        let result = match send_with_retries(&spec, &client, &body).await {
            Ok(()) => "sent",
            Err((attempts, why)) => {
                crate::warn(&format!(
                    "notifications: sink {} did not take a notice after {attempts} attempt{}: {why} (dropped: {})",
                    spec.name,
                    if attempts == 1 { "" } else { "s" },
                    notice.summary
                ));
                "failed"
            }
        };
        counts.with_label_values(&[spec.name.as_str(), result]).inc();
    }
}

/// What one attempt came to.
enum Attempt {
    Done,
    /// Worth another try, after at least this long (`Retry-After`).
    Retry(String, Option<Duration>),
    Refused(String),
}

async fn send_with_retries(
    spec: &SinkSpec,
    client: &reqwest::Client,
    body: &serde_json::Value,
) -> Result<(), (u32, String)> {
    let mut wait = spec.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let why = match attempt(spec, client, body).await {
            Attempt::Done => return Ok(()),
            Attempt::Refused(why) => return Err((attempts, why)),
            Attempt::Retry(why, after) => {
                if attempts > spec.retries {
                    return Err((attempts, why));
                }
                after
            }
        };
        let pause = why.map_or(wait, |after| after.max(wait)).min(MAX_BACKOFF);
        tokio::time::sleep(pause).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

async fn attempt(spec: &SinkSpec, client: &reqwest::Client, body: &serde_json::Value) -> Attempt {
    let mut request = client.post(spec.url.expose()).timeout(spec.timeout).json(body);
    if let Some(token) = &spec.bearer_token {
        request = request.bearer_auth(token.expose());
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            if status.is_success() {
                return Attempt::Done;
            }
            let after = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let why = format!("HTTP {status}");
            if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                Attempt::Retry(why, after)
            } else {
                Attempt::Refused(why)
            }
        }
        // Without the URL: it is the sink's secret.
        Err(e) if e.is_timeout() => Attempt::Retry(format!("no answer within {:?}", spec.timeout), None),
        Err(e) => Attempt::Retry(error_chain(&e.without_url()), None),
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
