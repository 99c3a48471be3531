//! Synchronous classification for callers that must have an answer now (a username check;
//! the coupled baseline of the load scenarios): the NATS micro service `offpath-moderator`
//! (`$SRV.PING/INFO/STATS`, stats with batch and queue figures) with the endpoint
//! `offpath.classify`, answering a `ModerationRequest` with a `Verdict`. Calls share the
//! batcher and the in-flight bound with the stream.
//!
//! The call path is a tower stack: load shedding outside a timeout outside a concurrency
//! limit ("layers added first see the request first"): when the limit is reached a call is
//! refused at once as overloaded instead of queueing, and the timeout covers the call only.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::service::ServiceExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use offpath_protocol::{
    DecodeError, Limits, ModerationRequest, Verdict, decode_request_body, encode,
};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt as _};
use tracing::warn;

use crate::metrics as m;
use crate::readiness::Health;
use crate::screen::Screen;
use crate::work::{Origin, Pending, Screened};

use offpath_protocol::permissions::{classify_reply_allowed, classify_reply_inbox};
use offpath_protocol::subject::CLASSIFY_SUBJECT;

/// The innermost service: hands the request to the batcher and waits for its verdict.
#[derive(Clone)]
pub(crate) struct Classify {
    batches: mpsc::Sender<Pending>,
    permits: Arc<Semaphore>,
    health: Arc<Health>,
    screen: Arc<Screen>,
}

impl Service<ModerationRequest> for Classify {
    type Response = Verdict;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Verdict, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ModerationRequest) -> Self::Future {
        // A text rule that decides answers at once: no batch, no model.
        let note = match self.screen.check(&request, false) {
            Screened::Decided(verdict) => return Box::pin(async move { Ok(*verdict) }),
            Screened::Noted(note) => Some(note),
            Screened::Passed => None,
        };
        let (batches, permits) = (self.batches.clone(), Arc::clone(&self.permits));
        let health = Arc::clone(&self.health);
        Box::pin(async move {
            // The stream's in-flight bound applies here too: full means overloaded.
            let permit = permits.try_acquire_owned().map_err(|_| Overloaded::new())?;
            let (reply, answer) = oneshot::channel();
            let pending = Pending {
                origin: Origin::Direct(reply),
                request,
                deliveries: 1,
                note,
                _held: health.hold(permit),
            };
            batches
                .send(pending)
                .await
                .map_err(|_| "moderator shutting down")?;
            Ok(answer.await.map_err(|_| "moderator shutting down")?)
        })
    }
}

/// Runs the micro service until `stop` turns true.
pub(crate) async fn serve(
    client: async_nats::Client,
    classify: Classify,
    health: Arc<Health>,
    limits: Limits,
    (timeout, concurrency): (Duration, usize),
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::ModeratorError> {
    let nats = |e: &dyn std::fmt::Display| crate::ModeratorError::Nats(e.to_string());
    let stats = Arc::clone(&health);
    let service = client
        .service_builder()
        .description("offpath moderator: classifies chat messages (offpath.classify)")
        .stats_handler(move |_, _| stats.stats())
        .start("offpath-moderator", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| nats(&e))?;
    let mut endpoint = service
        .endpoint(CLASSIFY_SUBJECT)
        .await
        .map_err(|e| nats(&e))?;
    let stack = ServiceBuilder::new()
        .load_shed()
        .timeout(timeout)
        .concurrency_limit(concurrency)
        .service(classify);
    loop {
        let request = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            request = endpoint.next() => match request { Some(r) => r, None => break },
        };
        let decoded = decode_request_body(&request.message.payload, &limits);
        if let Some(why) = unanswerable(&request.message, &decoded) {
            metrics::counter!(m::REQUESTS, "outcome" => "bad_reply").increment(1);
            warn!("offpath.classify {why}: not answered");
            continue;
        }
        tokio::spawn(answer(stack.clone(), request, decoded));
    }
    drop(stack);
    service.stop().await.map_err(|e| nats(&e))?;
    Ok(())
}

/// The stack of limits a call goes through: shed when full, a deadline, a bound on calls.
type Stack = LoadShed<Timeout<ConcurrencyLimit<Classify>>>;

/// Answers one call: its verdict, or its error.
async fn answer(
    stack: Stack,
    request: async_nats::service::Request,
    decoded: Result<ModerationRequest, DecodeError>,
) {
    let response = match decoded {
        Err(err) => Err(error(400, &format!("{}: {err}", err.reason()))),
        Ok(req) => match stack.oneshot(req).await {
            Ok(verdict) => Ok(encode(&verdict).into()),
            Err(err) => Err(classify_error(&err)),
        },
    };
    if let Err(err) = request.respond(response).await {
        metrics::counter!(m::NATS_ERRORS, "operation" => "respond").increment(1);
        warn!("answering offpath.classify failed: {err}");
    }
}

/// Why the call in `message` gets no answer, if it does not.
fn unanswerable(
    message: &async_nats::Message,
    decoded: &Result<ModerationRequest, DecodeError>,
) -> Option<&'static str> {
    if !replies_to_an_inbox(message) {
        // The caller chose where the answer goes, and a moderator may publish verdicts and
        // dead letters (a reply on `offpath.verdict.<tenant>.<room>` would be a verdict
        // nobody asked for).
        return Some("with a reply subject that is not an inbox");
    }
    let tenant = &decoded.as_ref().ok()?.tenant;
    // An inbox, but not an anonymous one nor one of the request's tenant: another tenant's
    // or another role's (a reviewer's pending pull, say). Unanswered, so a call is judged
    // under the policy of the tenant that reads the answer.
    let allowed = message
        .reply
        .as_ref()
        .is_some_and(|reply| classify_reply_allowed(reply, tenant));
    (!allowed).then_some("whose reply subject is not an inbox of its tenant")
}

/// Whether `message` asks for its answer on an inbox a moderator may answer on at all
/// (anonymous, or some tenant's integration or transport inbox); whose it may be is checked
/// once the request names its tenant ([`classify_reply_allowed`]). A request that cannot
/// be decoded is answered (with its error) on any such inbox.
fn replies_to_an_inbox(message: &async_nats::Message) -> bool {
    message
        .reply
        .as_ref()
        .is_some_and(|reply| classify_reply_inbox(reply).is_some())
}

fn classify_error(err: &BoxError) -> async_nats::service::error::Error {
    let reason = if err.is::<Overloaded>() {
        "overloaded"
    } else if err.is::<Elapsed>() {
        "timeout"
    } else {
        "unavailable"
    };
    metrics::counter!(m::REQUESTS, "outcome" => reason).increment(1);
    match reason {
        "overloaded" => error(503, "overloaded: try again later"),
        "timeout" => error(504, "timeout: no verdict in time"),
        _ => error(503, &format!("unavailable: {err}")),
    }
}

/// A service error whose text becomes the `Nats-Service-Error` header: printable ASCII
/// only and at most [`MAX_ERROR_TEXT`] bytes, because a decode error quotes the caller's
/// input and async-nats panics on a header value with a control character (a request
/// with `"priority":"\n"` got no answer and a panic in the log).
fn error(code: usize, status: &str) -> async_nats::service::error::Error {
    let mut text: String = status
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    text.truncate(MAX_ERROR_TEXT);
    async_nats::service::error::Error { code, status: text }
}

/// The longest `Nats-Service-Error` text.
const MAX_ERROR_TEXT: usize = 200;

impl Classify {
    /// The service feeding `batches`, bounded by `permits`; calls count as held in `health`;
    /// `screen`'s text rules answer first.
    pub(crate) fn new(
        batches: mpsc::Sender<Pending>,
        permits: Arc<Semaphore>,
        health: Arc<Health>,
        screen: Arc<Screen>,
    ) -> Self {
        Self {
            batches,
            permits,
            health,
            screen,
        }
    }
}
