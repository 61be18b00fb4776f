//! The HTTP API (axum): the router — which handler answers which route,
//! each route's body limit, the security headers every answer carries, the
//! JSON 404 of an unknown route — and serving it. One module per resource
//! (`studies`, `review`, `admin`, `stow` for STOW-RS, `ui` for the viewer,
//! `openapi` for the document); `error` is the one error answer, `extract`
//! the extractors that answer it, `auth` who is calling, `schema` what the
//! handlers return. Nothing outside this module imports from it but
//! [`Scheduler::router`] and the token helpers; inside, the imports go one
//! way: `error` ← `extract`, `auth`, `schema` ← resources ← `openapi` ← here.

mod admin;
mod auth;
mod error;
mod extract;
mod openapi;
mod review;
mod schema;
mod stow;
mod studies;
mod ui;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;

use crate::{Scheduler, SchedulerError};
pub use auth::{Caller, new_token, token_sha256};
pub use openapi::ApiDoc;

/// The largest JSON request body (a submission, a decision, a comment): 413 beyond.
pub(crate) const JSON_BODY_LIMIT: usize = 64 << 10;
/// The largest corrected mask upload.
const CORRECTION_BODY_LIMIT: usize = 300 << 20;

impl Scheduler {
    /// The API's routes, with this scheduler as their state.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(probes::probes_router(&self.inner.health))
            .route("/metrics", get(metrics_with_token))
            .route("/openapi.json", get(openapi::document))
            .route("/v1/me", get(review::me))
            .route("/v1/studies", get(studies::list).post(studies::submit))
            .route("/v1/studies/{id}", get(studies::study))
            .route("/v1/review/items", get(review::list))
            .route("/v1/review/claim-next", post(review::claim_next))
            .route("/v1/review/items/{id}", get(review::case))
            .route("/v1/review/items/{id}/objects/{name}", get(review::object))
            .route("/v1/review/items/{id}/release", post(review::release))
            .route("/v1/review/items/{id}/decision", post(review::decide))
            // Corrected masks are whole volumes; every other body is a small JSON document
            // (STOW-RS bodies are streamed part by part, each part bounded by dicom.max_instance_bytes).
            .route(
                "/v1/review/items/{id}/correction",
                put(review::correct).layer(axum::extract::DefaultBodyLimit::max(CORRECTION_BODY_LIMIT)),
            )
            .route("/v1/review/items/{id}/comments", post(review::comment))
            .route("/v1/admin/stats", get(admin::stats))
            .route("/v1/admin/jobs", get(admin::jobs))
            .route("/v1/admin/jobs/{id}/retry", post(admin::retry))
            .route("/v1/admin/dicom-sends/retry", post(admin::retry_dicom_sends))
            .route("/dicomweb/studies", post(stow::stow))
            .route("/dicomweb/studies/{study}", post(stow::stow_study))
            .route("/review", get(ui::redirect))
            .route("/review/", get(ui::index))
            .route("/review/{*path}", get(ui::file))
            .fallback(|| async { error::ApiError::new(StatusCode::NOT_FOUND, "no such route") })
            .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT))
            .layer(axum::middleware::from_fn(answer_headers))
            .with_state(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` is cancelled (requests in flight finish).
    pub async fn serve_http(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), SchedulerError> {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| SchedulerError::Http { addr, reason: e.to_string() })
    }
}

/// Headers on every answer. `X-Content-Type-Options: nosniff`: no answer is
/// to be sniffed into another type (an uploaded mask served as HTML, say).
/// `Connection: close` on an error answer to a request with a body: the
/// handler may have refused it unread (a role that may not upload, a path
/// that does not parse), and hyper does not reuse such a connection; saying
/// so keeps a client from sending its next request on a connection that is
/// going away (schemathesis saw "closed without response" on about 0.7 % of
/// such requests on kept-alive connections before).
async fn answer_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{HeaderValue, header};
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if has_body && (status.is_client_error() || status.is_server_error()) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `GET /metrics` on the API listener: any valid token (no role needed): the
/// listener may face a whole hospital network, and the metrics describe its
/// operation (`scheduler.metrics_listen` serves them without one).
async fn metrics_with_token(axum::extract::State(s): axum::extract::State<Scheduler>, _caller: Caller) -> Response {
    probes::metrics_response(&s.inner.health)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn error_answers_to_requests_with_a_body_close_the_connection() {
        let router = Router::new()
            .route("/refused", post(|| async { StatusCode::FORBIDDEN }))
            .route("/taken", post(|| async { StatusCode::OK }))
            .layer(axum::middleware::from_fn(answer_headers));
        let call = |uri: &str, body: &'static str| {
            let request = axum::http::Request::builder()
                .method("POST")
                .uri(uri)
                .header(axum::http::header::CONTENT_LENGTH, body.len())
                .body(Body::from(body))
                .expect("request");
            router.clone().oneshot(request)
        };
        for (uri, body, close) in [("/refused", "{}", true), ("/refused", "", false), ("/taken", "{}", false)] {
            let response = call(uri, body).await.expect("infallible");
            let connection = response.headers().get(axum::http::header::CONNECTION);
            assert_eq!(connection.is_some_and(|v| v == "close"), close, "{uri} with {} body bytes", body.len());
            assert_eq!(response.headers()[axum::http::header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }
}
