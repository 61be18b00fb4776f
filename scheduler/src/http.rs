//! The HTTP API (axum): `POST /v1/studies` submits a study, `GET
//! /v1/studies` lists studies, `GET /v1/studies/{id}` shows one with its
//! series, jobs, results and object keys, `GET /healthz` says the process is
//! up. Errors are JSON `{"error": "…", "code": "…"}` (`api_error`): 400 for
//! bad input, 404 for an unknown study, 503 when the database, store or queue fails.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use neurobatch_core::domain::{Priority, Role};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api_error::ApiError;
use crate::auth::Caller;
use crate::{Scheduler, SchedulerError, Submission};
use neurobatch_core::db::{StudyDetail, StudySummary};

/// The largest JSON request body (a submission, a decision, a comment): 413 beyond.
pub(crate) const JSON_BODY_LIMIT: usize = 64 << 10;
/// The largest corrected mask upload.
const CORRECTION_BODY_LIMIT: usize = 300 << 20;

/// Studies per page when `limit` is absent, and the most one page may hold.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    uri: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    limit: Option<u32>,
    offset: Option<u64>,
}

impl Scheduler {
    /// The API's routes, with this scheduler as their state.
    pub fn router(&self) -> Router {
        use crate::{admin, review, ui};
        use axum::routing::{post, put};
        Router::new()
            .merge(self.observe_routes())
            .route("/openapi.json", get(crate::openapi::document))
            .route("/v1/me", get(review::me))
            .route("/v1/studies", get(list).post(submit))
            .route("/v1/studies/{id}", get(study))
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
            .route("/dicomweb/studies", post(crate::dicomweb::stow))
            .route("/dicomweb/studies/{study}", post(crate::dicomweb::stow_study))
            .route("/review", get(ui::redirect))
            .route("/review/", get(ui::index))
            .route("/review/{*path}", get(ui::file))
            .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT))
            // No answer is to be sniffed into another type (an uploaded mask served as HTML, say).
            .layer(axum::middleware::map_response(|mut r: Response| async move {
                r.headers_mut().insert(
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    axum::http::HeaderValue::from_static("nosniff"),
                );
                r
            }))
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

/// An error answer with the status's default code ([`ApiError`]).
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    ApiError::new(status, message).into_response()
}

/// The answer to a failed operation ([`ApiError::from_failure`]).
pub(crate) fn failure(e: &SchedulerError) -> Response {
    ApiError::from_failure(e).into_response()
}

/// `POST /v1/studies`: 202 with the new job, 200 for an existing job or an
/// ineligible study, 409 for a source that is not a complete study yet.
#[utoipa::path(post, path = "/v1/studies", tag = "studies", request_body = SubmitRequest, security(("bearer" = [])),
    responses((status = 202, description = "a new job", body = Submission),
        (status = 200, description = "a known study (same job) or an ineligible one (reason recorded)", body = Submission),
        (status = 409, description = "not a complete study yet", body = Submission), (status = 400, description = "bad input, named", body = crate::openapi::ErrorBody), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not, or the source is not inside a configured source (scheduler.inbox, scheduler.allowed_roots, the storage bucket, scheduler.allowed_s3_prefixes)", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn submit(State(s): State<Scheduler>, caller: Caller, body: Bytes) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Service, Role::Admin]) {
        return r;
    }
    let req: SubmitRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "request body: expected {{\"uri\": \"…\", \"priority\": \"stat\"|\"routine\", \"force\": false}}: {e}"
                ),
            );
        }
    };
    let priority = match req.priority.as_deref().unwrap_or("routine") {
        "stat" => Priority::Stat,
        "routine" => Priority::Routine,
        other => return error(StatusCode::BAD_REQUEST, format!("priority `{other}`: expected stat or routine")),
    };
    match s.submit(&req.uri, priority, req.force).await {
        Ok(sub) => {
            let status = match sub {
                Submission::Enqueued { .. } => StatusCode::ACCEPTED,
                Submission::Existing { .. } | Submission::Ineligible { .. } => StatusCode::OK,
                Submission::NotReady { .. } => StatusCode::CONFLICT,
            };
            (status, Json(sub)).into_response()
        }
        Err(e) => failure(&e),
    }
}

/// `GET /v1/studies?limit=&offset=`: most recent first.
#[utoipa::path(get, path = "/v1/studies", tag = "studies", params(ListParams), security(("bearer" = [])),
    responses((status = 200, description = "studies, most recent first, with their latest job", body = [StudySummary]), (status = 400, description = "bad input, named", body = crate::openapi::ErrorBody), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    State(s): State<Scheduler>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Reviewer, Role::Admin]) {
        return r;
    }
    let Query(params) = match params {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("query: {}", e.body_text())),
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("limit {limit}: expected 1 to {MAX_LIMIT}"));
    }
    match s.inner.store.list_studies(limit, params.offset.unwrap_or(0)).await {
        Ok(studies) => Json(studies).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `GET /v1/studies/{id}`: 404 when there is no such study.
#[utoipa::path(get, path = "/v1/studies/{id}", tag = "studies", params(("id" = i64, Path, description = "study id")), security(("bearer" = [])),
    responses((status = 200, description = "the study, its series, jobs, results and object keys", body = StudyDetail), (status = 400, description = "bad input, named", body = crate::openapi::ErrorBody), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 404, description = "no such item", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn study(
    State(s): State<Scheduler>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Reviewer, Role::Admin]) {
        return r;
    }
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("study id: {}", e.body_text())),
    };
    match s.inner.store.study(id).await {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("study {id} does not exist")),
        Err(e) => failure(&e.into()),
    }
}
