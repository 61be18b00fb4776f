//! The HTTP face of `neurobatch_core::health`, the same on every process:
//! `GET /healthz` (the process answers: 200 `ok`), `GET /readyz` (200 when
//! every readiness check passes; 503 otherwise, with a JSON body naming what
//! is down) and `GET /metrics` (the process's metrics, Prometheus text
//! format). The worker serves all three on `worker.listen`, the scheduler on
//! `scheduler.metrics_listen` (both [`bind`]); the scheduler's API merges
//! [`probes_router`] and guards its own `/metrics` with a token
//! ([`metrics_response`]). A crate of its own so that `core` stays free of
//! HTTP.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use neurobatch_core::health::Health;
use neurobatch_core::metrics;

/// `/healthz`, `/readyz` and `/metrics`, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>(health: &Health) -> Router<S> {
    probes_router(health).merge(Router::new().route("/metrics", get(metrics_text)).with_state(health.clone()))
}

/// `/healthz` and `/readyz` only: for a listener whose `/metrics` is guarded.
pub fn probes_router<S: Clone + Send + Sync + 'static>(health: &Health) -> Router<S> {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz)).with_state(health.clone())
}

/// The `/metrics` answer: every metric of `health`, Prometheus text format.
pub fn metrics_response(health: &Health) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], health.metrics().encode()).into_response()
}

async fn readyz(State(health): State<Health>) -> Response {
    let readiness = health.check().await;
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !readiness.ready {
        tracing::debug!(down = ?readiness.down, "not ready");
    }
    (status, axum::Json(readiness)).into_response()
}

async fn metrics_text(State(health): State<Health>) -> Response {
    metrics_response(&health)
}

/// Binds `addr` for [`router`] (a worker's `worker.listen`, a scheduler's
/// `scheduler.metrics_listen`): the address actually bound, and the server,
/// which runs until `shutdown` resolves once awaited.
pub async fn bind<S: std::future::Future<Output = ()> + Send + 'static>(
    addr: &str,
    health: Health,
    shutdown: S,
) -> std::io::Result<(String, impl std::future::Future<Output = std::io::Result<()>> + Send + use<S>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
    let server = async move { axum::serve(listener, router::<()>(&health)).with_graceful_shutdown(shutdown).await };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use neurobatch_core::metrics::Metrics;
    use tower::ServiceExt as _;

    use super::*;

    async fn get_path(router: Router, path: &str) -> (u16, String, String) {
        let request = axum::http::Request::builder().uri(path).body(Body::empty()).expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let kind = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").into();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, kind, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn live_at_once_unready_without_backends_and_metrics_in_prometheus_text() {
        let health = Health::new(Metrics::new());
        assert_eq!(get_path(router(&health), "/healthz").await.0, 200);

        let (status, kind, body) = get_path(router(&health), "/readyz").await;
        assert_eq!((status, kind.as_str()), (503, "application/json"));
        assert!(body.contains("\"down\":[\"broker\",\"database\",\"storage\"]"), "{body}");

        let (status, kind, body) = get_path(router(&health), "/metrics").await;
        assert_eq!((status, kind.as_str()), (200, metrics::CONTENT_TYPE));
        assert!(body.contains("# TYPE neurobatch_review_backlog gauge"), "{body}");

        let (status, _, _) = get_path(probes_router(&health), "/metrics").await;
        assert_eq!(status, 404, "the probes alone do not answer /metrics");
    }
}
