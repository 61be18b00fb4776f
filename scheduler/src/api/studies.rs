//! The studies resource: `POST /v1/studies` submits a study (service,
//! admin), `GET /v1/studies` lists them and `GET /v1/studies/{id}` shows one
//! with its series, jobs, results and object keys (reviewer, admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use neurobatch_core::domain::{Priority, Role};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{error, failure};
use super::extract::{ApiBody, ApiPath, ApiQuery};
use super::schema::{ErrorBody, StudyDetail, StudySummary, Submission};
use crate::Scheduler;

/// Studies per page when `limit` is absent, and the most one page may hold.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    /// `file://…`, a path, or `s3://bucket/prefix`, inside a configured source.
    uri: String,
    /// `routine` when absent.
    #[serde(default)]
    #[schema(value_type = Option<super::schema::Priority>)]
    priority: Option<String>,
    #[serde(default)]
    force: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// 50 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    offset: Option<u64>,
}

/// `POST /v1/studies`: 202 with the new job, 200 for an existing job or an
/// ineligible study, 409 for a source that is not a complete study yet.
#[utoipa::path(post, path = "/v1/studies", tag = "studies", request_body = SubmitRequest, security(("bearer" = [])),
    responses((status = 202, description = "a new job", body = Submission),
        (status = 200, description = "a known study (same job) or an ineligible one (reason recorded)", body = Submission),
        (status = 409, description = "not a complete study yet", body = Submission),
        (status = 403, description = "the role may not, or the source is not inside a configured source (scheduler.inbox, scheduler.allowed_roots, the storage bucket, scheduler.allowed_s3_prefixes)", body = ErrorBody)))]
pub(crate) async fn submit(State(s): State<Scheduler>, caller: Caller, ApiBody(body): ApiBody) -> Response {
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
                crate::Submission::Enqueued { .. } => StatusCode::ACCEPTED,
                crate::Submission::Existing { .. } | crate::Submission::Ineligible { .. } => StatusCode::OK,
                crate::Submission::NotReady { .. } => StatusCode::CONFLICT,
            };
            (status, Json(Submission::from(sub))).into_response()
        }
        Err(e) => failure(&e),
    }
}

/// `GET /v1/studies?limit=&offset=`: most recent first.
#[utoipa::path(get, path = "/v1/studies", tag = "studies", params(ListParams), security(("bearer" = [])),
    responses((status = 200, description = "studies, most recent first, with their latest job", body = [StudySummary])))]
pub(crate) async fn list(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Reviewer, Role::Admin]) {
        return r;
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("limit {limit}: expected 1 to {MAX_LIMIT}"));
    }
    match s.inner.store.list_studies(limit, params.offset.unwrap_or(0)).await {
        Ok(studies) => Json(studies.into_iter().map(StudySummary::from).collect::<Vec<_>>()).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `GET /v1/studies/{id}`: 404 when there is no such study.
#[utoipa::path(get, path = "/v1/studies/{id}", tag = "studies", params(("id" = i64, Path, description = "study id")), security(("bearer" = [])),
    responses((status = 200, description = "the study, its series, jobs, results and object keys", body = StudyDetail),
        (status = 404, description = "no such study", body = ErrorBody)))]
pub(crate) async fn study(State(s): State<Scheduler>, caller: Caller, ApiPath(id): ApiPath<i64>) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Reviewer, Role::Admin]) {
        return r;
    }
    match s.inner.store.study(id).await {
        Ok(Some(detail)) => Json(StudyDetail::from(detail)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("study {id} does not exist")),
        Err(e) => failure(&e.into()),
    }
}
