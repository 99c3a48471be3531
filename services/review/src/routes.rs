//! The console's HTTP side: the page, the JSON API (a reviewer's token as
//! `Authorization: Bearer …` on every call) and the operator endpoints.
//!
//! * `GET /`: the console (plain HTML, CSS and JS, nothing from elsewhere);
//! * `GET /api/queue?status=open|decided|all&tenant=&room=&kind=&limit=`: the first
//!   `limit` (200; at most 1000) items, members' reports first, then oldest first; the
//!   `X-Offpath-Total` header says how many matched;
//! * `POST /api/decide` `{"key", "decision", "note"}`: a decision on item `key`;
//! * `GET /metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::extract::{Query, State as Shared};
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
use crate::queue::Filter;
use crate::reviewers::Reviewer;

/// Items a queue call returns unless it asks for another `limit`.
const DEFAULT_LIMIT: usize = 200;
/// Items a queue call returns at most.
const MAX_LIMIT: usize = 1000;
/// How many items matched the filter (the page shows the first `limit`).
const TOTAL_HEADER: &str = "x-offpath-total";

/// Longest note a reviewer may write, in characters.
const MAX_NOTE_CHARS: usize = 2000;

pub(crate) fn router(state: Arc<State>) -> Router {
    let console = Router::new()
        .route("/", get(|| async { Html(include_str!("console.html")) }))
        .route("/api/queue", get(queue))
        .route("/api/decide", post(decide))
        // A decision is a key, a word and a note of at most 2,000 characters.
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(Arc::clone(&state));
    let ready = move || Readiness {
        unready: state.behind(),
        detail: None,
    };
    console.merge(offpath_ops::router(&m::PROMETHEUS, ready))
}

/// The reviewer whose token the request carries; `None` (counted): answer [`unauthorized`].
fn reviewer(state: &State, headers: &HeaderMap) -> Option<Reviewer> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let reviewer = token.and_then(|t| state.reviewers.who(t)).cloned();
    if reviewer.is_none() {
        metrics::counter!(m::AUTH_FAILURES).increment(1);
    }
    reviewer
}

/// A decision refused for `reason` (counted), answered `status` with `message`.
fn refused(reason: &'static str, status: StatusCode, message: &str) -> Response {
    metrics::counter!(m::DECISIONS_REFUSED, "reason" => reason).increment(1);
    error(status, message)
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "a reviewer's token is needed")
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn queue(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let Some(reviewer) = reviewer(&state, &headers) else {
        return unauthorized();
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
    headers: HeaderMap,
    body: Result<Json<Decide>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(reviewer) = reviewer(&state, &headers) else {
        return unauthorized();
    };
    let Ok(Json(decide)) = body else {
        return refused(
            "malformed",
            StatusCode::BAD_REQUEST,
            "expected a JSON body (Content-Type: application/json): {\"key\": <an item's key>, \
             \"decision\": \"remove\"|\"restore\"|\"dismiss\"|\"escalate\", \"note\": <optional>}",
        );
    };
    if decide
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return refused(
            "note_too_long",
            StatusCode::BAD_REQUEST,
            "the note is longer than 2000 characters",
        );
    }
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
    let decision = review.decision.as_str();
    // In a task of its own: a client that goes away mid-way must not leave the verdict
    // published and the audit entry not.
    let item = entry.item.clone();
    let deciding = Arc::clone(&state);
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
