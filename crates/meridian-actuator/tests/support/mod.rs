//! A traffic endpoint on 127.0.0.1 that follows the wire contract, records every request it
//! receives and answers from a script when the test wants failures.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How long any one awaited step of a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Await `f`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(out) => out,
        Err(_) => panic!("step did not finish within {DEADLINE:?}"),
    }
}

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Option<Value>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// A scripted answer, used before the endpoint falls back to its normal behaviour.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    Json(u16, Value),
    /// Accept the request and never answer.
    Hang,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    script: Mutex<VecDeque<Reply>>,
    /// Percent by path, as set by PUT/POST.
    traffic: Mutex<HashMap<String, u32>>,
}

/// The running endpoint; stops when dropped.
pub struct Endpoint {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    pub async fn start() -> Endpoint {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Endpoint { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn traffic(&self, path: &str) -> Option<u32> {
        self.shared.traffic.lock().unwrap().get(path).copied()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers,
        body: parsed.clone(),
        at: Instant::now(),
    });
    let scripted = shared.script.lock().unwrap().pop_front();
    match scripted {
        Some(Reply::Status(code)) => return StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::Json(code, value)) => {
            return (StatusCode::from_u16(code).unwrap(), axum::Json(value)).into_response();
        }
        Some(Reply::Hang) => return std::future::pending::<Response>().await,
        None => {}
    }
    if method == Method::GET {
        return match shared.traffic.lock().unwrap().get(&path) {
            Some(p) => axum::Json(json!({ "percent": p })).into_response(),
            None => (StatusCode::NOT_FOUND, "never set").into_response(),
        };
    }
    let Some(percent) = parsed.as_ref().and_then(|b| b.get("percent")).and_then(Value::as_u64) else {
        return (StatusCode::BAD_REQUEST, "body needs an integer percent").into_response();
    };
    shared.traffic.lock().unwrap().insert(path, percent as u32);
    axum::Json(json!({ "percent": percent })).into_response()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}
