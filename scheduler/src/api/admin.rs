//! Admin endpoints: queue depths (job states and the broker's jobs queue),
//! throughput, the review backlog and its age, review and uncertainty rates
//! per scanner and model; failed and dead jobs, and retrying one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use neurobatch_core::domain::{JobState, Role};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{error, failure};
use super::extract::{ApiPath, ApiQuery};
use super::schema::{AdminStats, ErrorBody, Job, Jobs, Retried, RetriedSends};
use crate::Scheduler;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobsParams {
    /// `failed` when absent.
    #[param(value_type = Option<super::schema::JobState>)]
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/admin/stats`.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "throughput, review backlog and age, review rates per scanner and model; broker depth", body = AdminStats)))]
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
    Json(AdminStats::new(stats, broker_queued)).into_response()
}

/// `GET /v1/admin/jobs?state=failed|dead&limit=`.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "admin", params(JobsParams), security(("bearer" = [])),
    responses((status = 200, description = "jobs in the state, most recently updated first", body = Jobs)))]
pub(crate) async fn jobs(State(s): State<Scheduler>, caller: Caller, ApiQuery(q): ApiQuery<JobsParams>) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    let state = match q.state.as_deref().unwrap_or("failed").parse::<JobState>() {
        Ok(st) => st,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("state: {e}")),
    };
    match s.inner.store.jobs_in_state(state, q.limit.unwrap_or(100).min(1000)).await {
        Ok(jobs) => Json(Jobs { jobs: jobs.into_iter().map(Job::from).collect() }).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/admin/jobs/{id}/retry`: a failed or dead job gets a fresh set of attempts.
#[utoipa::path(post, path = "/v1/admin/jobs/{id}/retry", tag = "admin", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 202, description = "queued again with a fresh set of attempts", body = Retried), (status = 409, description = "the job is not failed or dead, or does not exist", body = ErrorBody)))]
pub(crate) async fn retry(State(s): State<Scheduler>, caller: Caller, ApiPath(id): ApiPath<i64>) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    match s.inner.store.retry_job(id, &caller.name, Utc::now()).await {
        Ok(true) => {
            (StatusCode::ACCEPTED, Json(Retried { job_id: id, state: JobState::Queued.into() })).into_response()
        }
        Ok(false) => error(StatusCode::CONFLICT, format!("job {id} is not failed or dead (or does not exist)")),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/admin/dicom-sends/retry`: every failed DICOM send is tried again from its first attempt.
#[utoipa::path(post, path = "/v1/admin/dicom-sends/retry", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "how many failed sends are pending again", body = RetriedSends)))]
pub(crate) async fn retry_dicom_sends(State(s): State<Scheduler>, caller: Caller) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Admin]) {
        return r;
    }
    match s.inner.store.retry_failed_dicom_sends(Utc::now()).await {
        Ok(n) => {
            tracing::info!(actor = %caller.name, sends = n, "failed dicom sends retried");
            Json(RetriedSends { retried: n }).into_response()
        }
        Err(e) => failure(&e.into()),
    }
}
