//! Security headers on every response of a page-serving port (the transport's chat page,
//! the review console): a Content-Security-Policy, no framing by other sites, no MIME
//! sniffing, no referrer. Before, the console loaded inside another site's iframe.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::Response;

/// The policy of a page whose script and style are files of its own origin (no inline
/// code), which talks only to its own origin (`fetch`, and websockets: CSP 3 lets `'self'`
/// match `ws:`/`wss:` of the same host) and which no other site may frame.
pub const SAME_ORIGIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `router` with the security headers, `csp` as its Content-Security-Policy, on every
/// response (its fallback's included).
pub fn with_security_headers(router: Router, csp: &'static str) -> Router {
    router.layer(axum::middleware::map_response(
        move |mut response: Response| async move {
            let headers = response.headers_mut();
            headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
            // For browsers without CSP's frame-ancestors.
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            response
        },
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A route's answer and the fallback's 404 both carry every header.
    #[tokio::test]
    async fn every_response_carries_the_headers() {
        let router = with_security_headers(
            Router::new().route("/", get(|| async { "hi" })),
            SAME_ORIGIN_CSP,
        );
        for (path, status) in [("/", StatusCode::OK), ("/nope", StatusCode::NOT_FOUND)] {
            let request = Request::get(path).body(Body::empty()).expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), status);
            let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
            assert_eq!(header(CONTENT_SECURITY_POLICY), Some(SAME_ORIGIN_CSP));
            assert_eq!(header(X_FRAME_OPTIONS), Some("DENY"));
            assert_eq!(header(X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
            assert_eq!(header(REFERRER_POLICY), Some("no-referrer"));
        }
    }
}
