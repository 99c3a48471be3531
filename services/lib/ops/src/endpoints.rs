//! The operator's endpoints on their own port: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive: always `ok`) and `/readyz` (what the service's [`Readiness`] says).

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Prometheus;

/// How often the recorder's histograms are upkept (a scrape interval's order).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

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

/// The operator's router: `/metrics` from `prometheus`, `/healthz`, and `/readyz` from
/// `readiness` (called at every request).
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
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
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
