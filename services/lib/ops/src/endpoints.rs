//! The operator's endpoints on their own port: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive: always `ok`) and `/readyz` (what the service's [`Readiness`] says).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::Prometheus;

/// How often the recorder's histograms are upkept (a scrape interval's order).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Operator connections served at once. Scrapers and probes need a handful; a flood of
/// half-sent requests must not take the process's file descriptors (sockets past the cap
/// are closed at once).
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one operator connection (one request: no keep-alive).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What `/readyz` answers: `200 ready` when nothing stands in the way, else
/// `503 not ready: <reasons, "; "-joined>`; either followed by `; <detail>` when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Why the service is not ready; empty when it is.
    pub unready: Vec<String>,
    /// Figures shown whether ready or not.
    pub detail: Option<String>,
}

impl Readiness {
    /// The status code and body of `/readyz`.
    fn response(&self) -> (StatusCode, String) {
        let (status, mut body) = if self.unready.is_empty() {
            (StatusCode::OK, "ready".to_string())
        } else {
            let reasons = self.unready.join("; ");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reasons}"),
            )
        };
        if let Some(detail) = &self.detail {
            body.push_str("; ");
            body.push_str(detail);
        }
        body.push('\n');
        (status, body)
    }
}

/// The header on every answer of these endpoints: the answering process's id. A launcher
/// that started a service checks it, so another process answering on the same port is
/// never taken for its child (issue 26: `offpath up` said it was up while its children had
/// failed to bind, because another stack's services answered their readiness checks).
pub const PID_HEADER: &str = "x-offpath-pid";

/// The operator's router: `/metrics` from `prometheus`, `/healthz`, and `/readyz` from
/// `readiness` (called at every request); every answer names this process
/// ([`PID_HEADER`]).
pub fn router<R>(prometheus: &'static Prometheus, readiness: R) -> Router
where
    R: Fn() -> Readiness + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(move || async move { prometheus.render() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move { readiness().response() }),
        )
        .layer(axum::middleware::map_response(name_the_process))
}

async fn name_the_process(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        PID_HEADER,
        axum::http::HeaderValue::from(std::process::id()),
    );
    response
}

/// The endpoints served on their own listener, until [`stop`](Self::stop).
pub struct Endpoints {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Endpoints {
    /// Installs `prometheus` (if not yet) and serves [`router`] on `listener`, keeping the
    /// recorder upkept meanwhile.
    pub fn spawn<R>(listener: TcpListener, prometheus: &'static Prometheus, readiness: R) -> Self
    where
        R: Fn() -> Readiness + Clone + Send + Sync + 'static,
    {
        let handle = prometheus.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(prometheus, readiness);
        let task = tokio::spawn(async move {
            let upkeep = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP_EVERY).await;
                    handle.run_upkeep();
                }
            });
            let result = serve(listener, app, async {
                let _ = stopped.await;
            })
            .await;
            upkeep.abort();
            result
        });
        Self { stop, task }
    }

    /// Stops serving (requests under way finish) and returns how serving ended.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)))
    }
}

/// Serves `app` on `listener` until `stopped`: at most [`MAX_CONNECTIONS`] at once, one
/// request per connection, headers within [`HEADER_TIMEOUT`], each connection closed after
/// [`CONNECTION_TIMEOUT`]. (`axum::serve` has neither a header timeout nor a cap: the
/// outside probe held 20,000 half-sent requests open on this port and the process ran out
/// of file descriptors.) Connections under way when `stopped` completes finish on their own.
async fn serve(
    listener: TcpListener,
    app: Router,
    stopped: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            // Out of file descriptors, or a connection reset before it was accepted: wait
            // a little instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(socket);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                app.clone().oneshot(request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(socket), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::{Readiness, router};
    use crate::{BUILD_INFO, Prometheus, Spec};

    static PROMETHEUS: Prometheus = Prometheus::new(Spec {
        seconds: &[0.1, 1.0],
        buckets: &[],
        describe: || metrics::describe_counter!("offpath_test_events_total", "Events"),
        register: || metrics::counter!("offpath_test_events_total").increment(0),
        version: "1.2.3",
        commit: "abc",
    });

    fn readiness(unready: &[&str], detail: Option<&str>) -> Readiness {
        Readiness {
            unready: unready.iter().map(|r| r.to_string()).collect(),
            detail: detail.map(String::from),
        }
    }

    /// (reasons, detail) → `/readyz` status and body, as both services answer.
    #[test]
    fn readyz_bodies() {
        let table = [
            ((&[][..], None), (StatusCode::OK, "ready\n")),
            (
                (&[][..], Some("held 2")),
                (StatusCode::OK, "ready; held 2\n"),
            ),
            (
                (&["models not loaded", "NATS not connected"][..], None),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: models not loaded; NATS not connected\n",
                ),
            ),
            (
                (&["shutting down"][..], Some("held 2")),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down; held 2\n",
                ),
            ),
        ];
        for ((unready, detail), (status, body)) in table {
            let response = readiness(unready, detail).response();
            assert_eq!(
                response,
                (status, body.to_string()),
                "{unready:?} {detail:?}"
            );
        }
    }

    async fn get(path: &str, unready: &'static [&'static str]) -> (StatusCode, String) {
        let app = router(&PROMETHEUS, move || readiness(unready, None));
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    /// `/healthz` is always ok, `/readyz` follows the readiness, and `/metrics` shows the
    /// service's series registered at 0, the build info and the process figures.
    #[tokio::test]
    async fn endpoints_answer() {
        assert_eq!(
            get("/healthz", &["x"]).await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get("/readyz", &[]).await,
            (StatusCode::OK, "ready\n".into())
        );
        let (status, body) = get("/readyz", &["x"]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: x\n")
        );
        let (status, text) = get("/metrics", &[]).await;
        assert_eq!(status, StatusCode::OK);
        for expected in [
            "offpath_test_events_total 0",
            &format!("{BUILD_INFO}{{version=\"1.2.3\",commit=\"abc\"}} 1"),
            "# HELP offpath_build_info",
            "process_",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
    }
}
