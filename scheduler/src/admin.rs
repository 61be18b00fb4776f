//! Admin endpoints: queue depths (job states and the broker's jobs queue),
//! throughput, the review backlog and its age, review and uncertainty rates
//! per scanner and model; failed and dead jobs, and retrying one.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use neurobatch_core::db::AdminStats;
use neurobatch_core::domain::{JobState, Role};
use serde::Deserialize;

use crate::Scheduler;
use crate::auth::Caller;
use crate::http::{error, failure};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobsParams {
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/admin/stats`.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "throughput, review backlog and age, review rates per scanner and model; broker depth", body = AdminStats), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn stats(State(s): State<Scheduler>, caller: Caller) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    let stats = match s.inner.store.admin_stats(Utc::now()).await {
        Ok(v) => v,
        Err(e) => return failure(&e.into()),
    };
    // The broker's depth is shown when the broker answers; the store's figures stand without it.
    let broker_queued = s.inner.queue.queued().await.ok();
    let mut body = serde_json::to_value(&stats).unwrap_or_default();
    body["broker_jobs_queued"] = serde_json::to_value(broker_queued).unwrap_or_default();
    Json(body).into_response()
}

/// `GET /v1/admin/jobs?state=failed|dead&limit=`.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin", params(JobsParams), security(("bearer" = [])),
    responses((status = 200, description = "jobs in the state, most recently updated first", body = crate::openapi::Jobs), (status = 400, description = "bad input, named", body = crate::openapi::ErrorBody), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn jobs(State(s): State<Scheduler>, caller: Caller, Query(q): Query<JobsParams>) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    let state = match q.state.as_deref().unwrap_or("failed").parse::<JobState>() {
        Ok(st) => st,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("state: {e}")),
    };
    match s.inner.store.jobs_in_state(state, q.limit.unwrap_or(100).min(1000)).await {
        Ok(jobs) => Json(serde_json::json!({ "jobs": jobs })).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/admin/jobs/{id}/retry`: a failed or dead job gets a fresh set of attempts.
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 202, description = "queued again with a fresh set of attempts"), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 409, description = "the caller does not hold the claim", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn retry(State(s): State<Scheduler>, caller: Caller, Path(id): Path<i64>) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    match s.inner.store.retry_job(id, &caller.name, Utc::now()).await {
        Ok(true) => (StatusCode::ACCEPTED, Json(serde_json::json!({"job_id": id, "state": "queued"}))).into_response(),
        Ok(false) => error(StatusCode::CONFLICT, format!("job {id} is not failed or dead (or does not exist)")),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/admin/dicom-sends/retry`: every failed DICOM send is tried again from its first attempt.
#[utoipa::path(post, path = "/v1/admin/dicom-sends/retry", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "how many failed sends are pending again", body = crate::openapi::RetriedSends), (status = 401, description = "no or a revoked token", body = crate::openapi::ErrorBody), (status = 403, description = "the role may not", body = crate::openapi::ErrorBody), (status = 503, description = "the database, storage or queue failed", body = crate::openapi::ErrorBody)))]
pub(crate) async fn retry_dicom_sends(State(s): State<Scheduler>, caller: Caller) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    match s.inner.store.retry_failed_dicom_sends(Utc::now()).await {
        Ok(n) => {
            tracing::info!(actor = %caller.name, sends = n, "failed dicom sends retried");
            Json(crate::openapi::RetriedSends { retried: n }).into_response()
        }
        Err(e) => failure(&e.into()),
    }
}
