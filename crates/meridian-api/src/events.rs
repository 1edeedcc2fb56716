//! `GET /audit` (records on request) and `GET /events` (records as they are committed, as
//! server-sent events).

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use meridian_core::ports::control::{AuditFeed, FeedItem};
use serde_json::json;
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;

/// Most records one `GET /audit` returns.
pub const MAX_AUDIT_LIMIT: usize = 1000;
const DEFAULT_AUDIT_LIMIT: usize = 100;

fn check_params(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(ApiError::bad_request(format!("unknown parameter {k:?}"), format!("use {}", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

fn number<T: std::str::FromStr>(params: &HashMap<String, String>, key: &str, default: T) -> Result<T, ApiError> {
    match params.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer, not {text:?}"), "")),
    }
}

/// `after` (default 0) and `limit` (default 100, 1 to 1000) of a paged read.
fn page_params<T: std::str::FromStr + Default>(
    params: &HashMap<String, String>,
    hint: &str,
) -> Result<(T, usize), ApiError> {
    let after: T = number(params, "after", T::default())?;
    let limit: usize = number(params, "limit", DEFAULT_AUDIT_LIMIT)?;
    if limit == 0 || limit > MAX_AUDIT_LIMIT {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_AUDIT_LIMIT}"), hint));
    }
    Ok((after, limit))
}

/// `GET /audit?plan=P&after=SEQ&limit=N`: records with `seq > after`, oldest first.
pub(crate) async fn audit(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    check_params(&params, &["plan", "after", "limit"])?;
    let (after, limit) = page_params::<u64>(&params, "page with after=<the last seq you got>")?;
    let plan = params.get("plan").map(String::as_str).filter(|p| !p.is_empty());
    let records = state.control.audit(plan, after, limit).await?;
    Ok(Json(json!({ "records": records })))
}

/// `GET /history?kind=K&after=ID&limit=N`: the controller's own history (approvals
/// granted, updated, revoked and expired; configuration applied or rejected; requests
/// denied), oldest first. `next` is the last id read: pass it as `after` for the next page
/// (with `kind`, a page may hold fewer than `limit` events).
pub(crate) async fn history(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    check_params(&params, &["kind", "after", "limit"])?;
    let (after, limit) = page_params::<u64>(&params, "page with after=<the next you got>")?;
    let after = i64::try_from(after)
        .map_err(|_| ApiError::bad_request("after is out of range", "pass the next you got from the previous page"))?;
    let page = state.control.history(after, limit).await?;
    let next = page.last().map_or(after, |e| e.id);
    let kind = params.get("kind").filter(|k| !k.is_empty());
    let events: Vec<_> = page.into_iter().filter(|e| kind.is_none_or(|k| *k == e.event.kind)).collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// `GET /audit/chain?after=N&limit=M[&plan=P]`: a page of the tamper-evident audit chain,
/// each entry with the record content it covers, for `meridian audit verify --server` to
/// recompute every hash itself. `unchained` (on the page that reaches the end) lists records
/// no entry covers.
pub(crate) async fn chain(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    check_params(&params, &["plan", "after", "limit"])?;
    let (after, limit) = page_params::<u64>(&params, "page with after=<the last entry's n>")?;
    let plan = params.get("plan").map(String::as_str).filter(|p| !p.is_empty());
    Ok(Json(state.control.chain(plan, after, limit).await?))
}

/// Set by `serve` when the server shuts down, so open event streams end and a graceful
/// shutdown does not wait for them forever.
#[derive(Clone)]
pub(crate) struct Closing(pub watch::Receiver<bool>);

/// `GET /events?plan=P`: `event: audit` with each committed record as JSON (`id` is its
/// `seq`), `event: lagged` when this client fell behind and records were skipped (re-read
/// them with `GET /audit`), and a keep-alive comment on quiet streams.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    closing: Option<Extension<Closing>>,
) -> Result<impl IntoResponse, ApiError> {
    check_params(&params, &["plan"])?;
    let plan = params.get("plan").cloned().filter(|p| !p.is_empty());
    // Like `GET /plans/{name}`: a stream of a plan that does not exist would stay silent
    // forever, so a typo would look like a quiet rollout.
    if let Some(name) = &plan {
        let snapshot = state.control.snapshot();
        if !snapshot.plans.contains_key(name) {
            return Err(crate::plans::unknown_plan(&snapshot, name));
        }
    }
    let receiver = state.control.subscribe();
    let closing = closing.map(|Extension(c)| c.0);
    let keep_alive = KeepAlive::new().interval(state.limits.keep_alive).text("keep-alive");
    Ok(Sse::new(records(receiver, plan, closing)).keep_alive(keep_alive))
}

fn records(
    feed: Box<dyn AuditFeed>,
    plan: Option<String>,
    closing: Option<watch::Receiver<bool>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((feed, plan, closing), |(mut feed, plan, mut closing)| async move {
        loop {
            let received = match closing.as_mut() {
                Some(c) => tokio::select! {
                    r = feed.next() => r,
                    _ = c.wait_for(|closed| *closed) => return None,
                },
                None => feed.next().await,
            };
            let event = match received {
                FeedItem::Record(record) if plan.as_ref().is_some_and(|p| *p != record.plan) => continue,
                FeedItem::Record(record) => Event::default()
                    .event("audit")
                    .id(record.seq.to_string())
                    .json_data(&record)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
                FeedItem::Lagged(skipped) => Event::default().event("lagged").data(
                    json!({ "skipped": skipped, "hint": "records were skipped; re-read them with GET /api/v1/audit" })
                        .to_string(),
                ),
                FeedItem::Closed => return None,
            };
            return Some((Ok(event), (feed, plan, closing)));
        }
    })
}
