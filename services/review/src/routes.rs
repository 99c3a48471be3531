//! The console's HTTP side: the page, the JSON API (a reviewer's token as
//! `Authorization: Bearer …` on every call) and the operator endpoints.
//!
//! * `GET /`: the console (plain HTML, CSS and JS, nothing from elsewhere; the script and
//!   style are `/console.js` and `/console.css`, so the Content-Security-Policy allows no
//!   inline code);
//! * `GET /api/queue?status=open|decided|all&tenant=&room=&kind=&limit=`: the first
//!   `limit` (200; at most 1000) items, members' reports first, then oldest first; the
//!   `X-Offpath-Total` header says how many matched;
//! * `POST /api/decide` `{"key", "decision", "note"}`: a decision on item `key`;
//! * `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Every response carries the security headers. A request without a valid token is
//! answered 401 with a fixed body; an address with too many failed logins is answered 429
//! before its token is checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offpath_ops::Readiness;
use offpath_protocol::{HumanReview, ReviewDecision, TextSource, now_ms};
use serde::Deserialize;
use tracing::{info, warn};

use crate::State;
use crate::metrics as m;
use crate::queue::{Entry, Filter};
use crate::reviewers::Reviewer;

/// Items a queue call returns unless it asks for another `limit`.
const DEFAULT_LIMIT: usize = 200;
/// Items a queue call returns at most.
const MAX_LIMIT: usize = 1000;
/// How many items matched the filter (the page shows the first `limit`).
const TOTAL_HEADER: &str = "x-offpath-total";

/// Longest note a reviewer may write, in characters.
const MAX_NOTE_CHARS: usize = 2000;

/// The console's routes and the operator endpoints, with the security headers; request
/// bodies of at most `max_body_bytes`.
pub(crate) fn router(state: Arc<State>, max_body_bytes: usize) -> Router {
    let console = Router::new()
        .route("/", get(|| async { Html(include_str!("console.html")) }))
        .route(
            "/console.js",
            get(|| async { asset(JS, include_str!("console.js")) }),
        )
        .route(
            "/console.css",
            get(|| async { asset(CSS, include_str!("console.css")) }),
        )
        .route("/api/queue", get(queue))
        .route("/api/decide", post(decide))
        .route("/api/sender", get(sender))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(Arc::clone(&state));
    let ready = move || Readiness {
        unready: state.behind(),
        detail: None,
    };
    let router = console.merge(offpath_ops::router(&m::PROMETHEUS, ready));
    offpath_ops::with_security_headers(router, offpath_ops::SAME_ORIGIN_CSP)
}

/// Content type of the console's script (with `nosniff` a browser runs nothing else).
const JS: &str = "text/javascript; charset=utf-8";
/// Content type of the console's style sheet.
const CSS: &str = "text/css; charset=utf-8";

/// A file of the page, as `content_type`.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Why a request gets no reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The address failed too many logins: 429, try again after this long.
    Throttled(Duration),
    /// A missing or wrong token: 401.
    Unauthorized,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Throttled(wait) => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed logins from this address; try again later",
                );
                let seconds = wait.as_secs().saturating_add(1);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
                response
            }
            // The one 401 body: why a token was not accepted is not told (missing,
            // malformed and wrong look the same).
            Refusal::Unauthorized => {
                error(StatusCode::UNAUTHORIZED, "a reviewer's token is needed")
            }
        }
    }
}

/// The reviewer whose token the request from `peer` carries, or why not (counted): an
/// address with too many failed logins is refused before its token is checked, and a
/// missing or wrong token takes one from the address's allowance.
fn reviewer(state: &State, headers: &HeaderMap, peer: SocketAddr) -> Result<Reviewer, Refusal> {
    let now = Instant::now();
    if let Err(wait) = state.throttle.check(peer.ip(), now) {
        metrics::counter!(m::REQUESTS_REFUSED, "reason" => m::AUTH_THROTTLED).increment(1);
        return Err(Refusal::Throttled(wait));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| state.reviewers.who(t)) {
        Some(reviewer) => Ok(reviewer.clone()),
        None => {
            metrics::counter!(m::AUTH_FAILURES).increment(1);
            state.throttle.failed(peer.ip(), now);
            Err(Refusal::Unauthorized)
        }
    }
}

/// A decision refused for `reason` (counted), answered `status` with `message`.
fn refused(reason: &'static str, status: StatusCode, message: &str) -> Response {
    metrics::counter!(m::DECISIONS_REFUSED, "reason" => reason).increment(1);
    error(status, message)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn queue(
    Shared(state): Shared<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let reviewer = match reviewer(&state, &headers, peer) {
        Ok(reviewer) => reviewer,
        Err(refusal) => return refusal.into_response(),
    };
    // After the token: who has none learns nothing, not even how filters are parsed.
    let Ok(Query(filter)) = filter else {
        return error(
            StatusCode::BAD_REQUEST,
            "the filters are status, kind, tenant, room, sender, order (queue or newest) and limit (a number), each once",
        );
    };
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let (entries, total) = {
        let queue = state.queue();
        let mut listed = queue.list(&filter);
        // Another tenant's items are not this reviewer's to see.
        listed.retain(|e| reviewer.serves(&e.item.verdict.tenant));
        let total = listed.len();
        let entries: Vec<_> = listed.into_iter().take(limit).cloned().collect();
        (entries, total)
    };
    let mut response = Json(entries).into_response();
    response.headers_mut().insert(TOTAL_HEADER, total.into());
    response
}

/// Whose record is asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderQuery {
    tenant: String,
    sender: String,
}

/// `GET /api/sender?tenant=&sender=`: the sender's recent verdicts, newest first
/// (`{"recent": [...], "kept": <whether the console keeps records>}`); another tenant's
/// sender is answered as unknown (an empty record).
async fn sender(
    Shared(state): Shared<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<SenderQuery>, QueryRejection>,
) -> Response {
    let reviewer = match reviewer(&state, &headers, peer) {
        Ok(reviewer) => reviewer,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the parameters are tenant and sender, each once",
        );
    };
    let senders = state.senders();
    let recent = match reviewer.serves(&query.tenant) {
        true => senders.recent(&query.tenant, &query.sender),
        false => Vec::new(),
    };
    Json(serde_json::json!({ "recent": recent, "kept": senders.enabled() })).into_response()
}

/// A decision as the console sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decide {
    key: String,
    decision: ReviewDecision,
    #[serde(default)]
    note: Option<String>,
}

async fn decide(
    Shared(state): Shared<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Decide>, JsonRejection>,
) -> Response {
    let reviewer = match reviewer(&state, &headers, peer) {
        Ok(reviewer) => reviewer,
        Err(refusal) => return refusal.into_response(),
    };
    let decide = match decision_of(body) {
        Ok(decide) => decide,
        Err(refusal) => return *refusal,
    };
    let entry = state.queue().get(&decide.key).cloned();
    // Another tenant's item is answered as if it did not exist.
    let Some(entry) = entry.filter(|e| reviewer.serves(&e.item.verdict.tenant)) else {
        return refused(
            "unknown_item",
            StatusCode::NOT_FOUND,
            "no such item in the queue",
        );
    };
    // The same reviewer's same decision again (a double click, a retry after a lost
    // answer): already in force, nothing is published or audited twice.
    let repeated = entry
        .decisions
        .last()
        .is_some_and(|d| d.reviewer == reviewer.name && d.decision == decide.decision);
    if repeated {
        return Json(Some(entry)).into_response();
    }
    let restore = decide.decision == ReviewDecision::Restore;
    let encrypted = entry
        .item
        .report
        .as_ref()
        .is_some_and(|r| r.text_source != TextSource::Gateway);
    if restore && encrypted {
        // The server never had this text: restoring it would publish a plaintext to the
        // room that its members only ever received encrypted.
        return refused(
            "e2e_restore",
            StatusCode::BAD_REQUEST,
            "a message of an end-to-end-encrypted room cannot be restored by the server",
        );
    }
    let review = HumanReview {
        reviewer: reviewer.name,
        decision: decide.decision,
        decided_at_ms: now_ms(),
        note: decide.note,
        text: restore.then(|| entry.item.text.clone()),
    };
    store_decision(&state, &entry, review).await
}

/// The decision in `body`, or the answer refusing it (boxed: a `Response` is large): not
/// JSON of a [`Decide`], too large, or a note longer than [`MAX_NOTE_CHARS`].
fn decision_of(body: Result<Json<Decide>, JsonRejection>) -> Result<Decide, Box<Response>> {
    let decide = match body {
        Ok(Json(decide)) => decide,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics::counter!(m::REQUESTS_REFUSED, "reason" => m::BODY_TOO_LARGE).increment(1);
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )));
        }
        Err(_) => {
            return Err(Box::new(refused(
                "malformed",
                StatusCode::BAD_REQUEST,
                "expected a JSON body (Content-Type: application/json): {\"key\": <an item's key>, \
             \"decision\": \"remove\"|\"restore\"|\"dismiss\"|\"escalate\", \"note\": <optional>}",
            )));
        }
    };
    if decide
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Box::new(refused(
            "note_too_long",
            StatusCode::BAD_REQUEST,
            "the note is longer than 2000 characters",
        )));
    }
    Ok(decide)
}

/// Publishes `review` of `entry` (the human verdict, if any, and the audit entry) and
/// answers with the entry as it now stands, or 503 when it could not be stored.
async fn store_decision(state: &Arc<State>, entry: &Entry, review: HumanReview) -> Response {
    let decision = review.decision.as_str();
    // In a task of its own: a client that goes away mid-way must not leave the verdict
    // published and the audit entry not.
    let item = entry.item.clone();
    let deciding = Arc::clone(state);
    let decided = tokio::spawn(async move { deciding.decide(&item, review).await })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match decided {
        Ok(()) => {
            metrics::counter!(m::DECISIONS, "decision" => decision).increment(1);
            info!(key = %entry.key, decision, "decided");
            let updated = state.queue().get(&entry.key).cloned();
            Json(updated).into_response()
        }
        Err(err) => {
            metrics::counter!(m::DECISION_FAILURES).increment(1);
            warn!(key = %entry.key, decision, "decision not stored: {err}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the decision could not be stored; try again",
            )
        }
    }
}
