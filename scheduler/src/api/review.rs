//! The review API (issue 5): the queue with filters, claim-next with a
//! lease, a case with its structures and objects, release, decisions
//! (approve, reject, escalate), corrected masks (validated against the
//! study's grid and the pipeline's labels, stored as a new version),
//! comments. Reviewers and admins work the queue; the admin endpoints (jobs,
//! retry, figures) are `admin.rs`. Every state change is the job store's
//! (audited there).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use neurobatch_core::db::{ReviewCase, ReviewFilter, ReviewOutcome};
use neurobatch_core::domain::{Priority, ReviewAction, ReviewState, Role};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, error, failure};
use super::extract::{ApiBody, ApiPath, ApiQuery};
use super::schema::{Case, ErrorBody, Me, ReviewItem, ReviewItems};
use crate::error::joined;
use crate::{Scheduler, SchedulerError, correction};

/// How long a claimed case stays with its reviewer.
pub const REVIEW_LEASE: Duration = Duration::from_secs(15 * 60);
const REVIEWERS: &[Role] = &[Role::Reviewer, Role::Admin];
/// The largest corrected mask accepted (a 512³ uint16 volume, uncompressed).
const MAX_CORRECTION_BYTES: usize = 512 * 512 * 512 * 2 + 4096;
/// The case objects the viewer may fetch.
const OBJECTS: [&str; 5] = ["image", "mask", "entropy", "mutual_information", "correction"];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueParams {
    state: Option<String>,
    reason: Option<String>,
    model: Option<String>,
    scanner: Option<String>,
    priority: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionRequest {
    #[schema(value_type = super::schema::Decision)]
    action: String,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommentRequest {
    /// Not blank.
    #[schema(min_length = 1, max_length = 10000)]
    text: String,
}

fn bad(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// The object key of a case's viewer object `name`: the latest correction,
/// or one of the result's outputs.
fn object_key<'a>(case: &'a ReviewCase, name: &str) -> Option<&'a str> {
    if name == "correction" { case.correction_key.as_deref() } else { case.object_keys.get(name).map(String::as_str) }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// `GET /v1/me`.
#[utoipa::path(get, path = "/v1/me", tag = "review", security(("bearer" = [])),
    responses((status = 200, description = "the caller's name and role", body = Me)))]
pub(crate) async fn me(caller: Caller) -> Response {
    Json(Me { name: caller.name, role: caller.role.into() }).into_response()
}

/// `GET /v1/review/items`: the queue, by priority, uncertainty, age.
#[utoipa::path(get, path = "/v1/review/items", tag = "review", params(QueueParams), security(("bearer" = [])),
    responses((status = 200, description = "the queue: priority, then uncertainty, then age", body = ReviewItems)))]
pub(crate) async fn list(State(s): State<Scheduler>, caller: Caller, ApiQuery(q): ApiQuery<QueueParams>) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    let state = match nonempty(q.state).map(|t| t.parse::<ReviewState>()).transpose() {
        Ok(v) => v,
        Err(e) => return bad(format!("state: {e}")),
    };
    let priority = match nonempty(q.priority).map(|t| t.parse::<Priority>()).transpose() {
        Ok(v) => v,
        Err(e) => return bad(format!("priority: {e}")),
    };
    let filter = ReviewFilter {
        state,
        reason: nonempty(q.reason),
        model: nonempty(q.model),
        scanner: nonempty(q.scanner),
        priority,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    match s.inner.store.review_items(&filter, Utc::now()).await {
        Ok(items) => Json(ReviewItems { items: items.into_iter().map(ReviewItem::from).collect() }).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/review/claim-next`: 200 with the case, 204 when the queue is empty.
#[utoipa::path(post, path = "/v1/review/claim-next", tag = "review", security(("bearer" = [])),
    responses((status = 200, description = "the case, now claimed by the caller for 15 minutes", body = Case),
        (status = 204, description = "nothing pending")))]
pub(crate) async fn claim_next(State(s): State<Scheduler>, caller: Caller) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    match s.inner.store.claim_next_review(&caller.name, REVIEW_LEASE, Utc::now()).await {
        Ok(Some(item)) => case_response(&s, item.id).await,
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `GET /v1/review/items/{id}`.
#[utoipa::path(get, path = "/v1/review/items/{id}", tag = "review", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the case with structures, labels, objects and comments", body = Case), (status = 404, description = "no such item", body = ErrorBody)))]
pub(crate) async fn case(State(s): State<Scheduler>, caller: Caller, ApiPath(id): ApiPath<i64>) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    case_response(&s, id).await
}

async fn case_response(s: &Scheduler, id: i64) -> Response {
    let case = match s.inner.store.review_case(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("review item {id} does not exist")),
        Err(e) => return failure(&e.into()),
    };
    let objects = OBJECTS
        .iter()
        .filter(|name| object_key(&case, name).is_some())
        .map(|name| (name.to_string(), format!("/v1/review/items/{id}/objects/{name}")))
        .collect();
    Json(Case::new(case, objects, &s.inner.pipeline.labels)).into_response()
}

/// `GET /v1/review/items/{id}/objects/{name}`: the NIfTI bytes for the viewer.
#[utoipa::path(get, path = "/v1/review/items/{id}/objects/{name}", tag = "review",
    params(("id" = i64, Path), ("name" = String, Path, description = "image, mask, entropy, mutual_information or correction")), security(("bearer" = [])),
    responses((status = 200, description = "the NIfTI (gzip)", content_type = "application/gzip", body = Vec<u8>), (status = 404, description = "no such item", body = ErrorBody)))]
pub(crate) async fn object(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiPath((id, name)): ApiPath<(i64, String)>,
) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    if !OBJECTS.contains(&name.as_str()) {
        return error(StatusCode::NOT_FOUND, format!("no object `{name}` (one of {})", OBJECTS.join(", ")));
    }
    let case = match s.inner.store.review_case(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("review item {id} does not exist")),
        Err(e) => return failure(&e.into()),
    };
    let Some(key) = object_key(&case, &name) else {
        return error(StatusCode::NOT_FOUND, format!("review item {id} has no {name}"));
    };
    match s.inner.objects.get(key).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/gzip")], bytes).into_response(),
        Err(e) => failure(&e.into()),
    }
}

/// `POST /v1/review/items/{id}/release`.
#[utoipa::path(post, path = "/v1/review/items/{id}/release", tag = "review", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, description = "back in the queue", body = ReviewItem), (status = 404, description = "no such item", body = ErrorBody), (status = 409, description = "the caller does not hold the claim", body = ErrorBody)))]
pub(crate) async fn release(State(s): State<Scheduler>, caller: Caller, ApiPath(id): ApiPath<i64>) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    outcome(s.inner.store.release_review(id, &caller.name, Utc::now()).await, id)
}

/// `POST /v1/review/items/{id}/decision` with `{"action": "approve"|"reject"|"escalate", "comment"?}`.
#[utoipa::path(post, path = "/v1/review/items/{id}/decision", tag = "review", params(("id" = i64, Path)), request_body = DecisionRequest, security(("bearer" = [])),
    responses((status = 200, description = "decided (or escalated back to the queue)", body = ReviewItem), (status = 404, description = "no such item", body = ErrorBody), (status = 409, description = "the caller does not hold the claim", body = ErrorBody)))]
pub(crate) async fn decide(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiBody(body): ApiBody,
) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    let req: DecisionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "request body: expected {{\"action\": \"approve\"|\"reject\"|\"escalate\", \"comment\": \"…\"}}: {e}"
            ));
        }
    };
    let action = match req.action.parse::<ReviewAction>() {
        Ok(ReviewAction::Correct) => {
            return bad("action `correct`: upload the corrected mask with PUT /v1/review/items/{id}/correction");
        }
        Ok(a) => a,
        Err(e) => return bad(format!("action: {e}")),
    };
    let result = s.inner.store.decide_review(id, &caller.name, action, None, req.comment.as_deref(), Utc::now()).await;
    outcome(result, id)
}

/// `PUT /v1/review/items/{id}/correction` with a NIfTI mask as the body.
#[utoipa::path(put, path = "/v1/review/items/{id}/correction", tag = "review", params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the corrected mask as NIfTI (.nii or .nii.gz)"), security(("bearer" = [])),
    responses((status = 200, description = "stored as the next correction version; decision correct", body = ReviewItem),
        (status = 422, description = "not NIfTI, another grid, or labels the pipeline does not have", body = ErrorBody), (status = 404, description = "no such item", body = ErrorBody), (status = 409, description = "the caller does not hold the claim", body = ErrorBody)))]
pub(crate) async fn correct(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiBody(body): ApiBody,
) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    let case = match s.inner.store.review_case(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("review item {id} does not exist")),
        Err(e) => return failure(&e.into()),
    };
    if case.item.state != ReviewState::Claimed || case.item.claimed_by.as_deref() != Some(caller.name.as_str()) {
        return ApiError::new(
            StatusCode::CONFLICT,
            format!("review item {id}: claim it before uploading a correction"),
        )
        .with_code(ErrorCode::NotClaimedByCaller)
        .into_response();
    }
    if body.len() > MAX_CORRECTION_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("corrected mask: {} bytes is more than a mask can be", body.len()),
        );
    }
    let Some(mask_key) = case.object_keys.get("mask") else {
        return error(StatusCode::CONFLICT, format!("review item {id}: the result has no mask to correct"));
    };
    let reference = match s.inner.objects.get(mask_key).await {
        Ok(b) => b,
        Err(e) => return failure(&e.into()),
    };
    let labels: BTreeSet<u32> = s.inner.pipeline.labels.iter().map(|l| l.value).collect();
    // Closed only on shutdown; then the request fails like any other.
    let Ok(_permit) = s.inner.corrections.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let checked = tokio::task::spawn_blocking(move || {
        let grid = correction::grid_of_mask(&reference)?;
        correction::validate(&body, &grid, &labels)
    })
    .await;
    let bytes = match joined("corrected mask", checked) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.is_the_uploads() => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, format!("corrected mask: {e}"));
        }
        Ok(Err(e)) => {
            return failure(&SchedulerError::Task { what: "corrected mask", reason: format!("item {id}: {e}") });
        }
        Err(e) => return failure(&e),
    };
    let folder = mask_key.rsplit_once('/').map_or("review", |(dir, _)| dir);
    let key = format!("{folder}/corrections/review-{id}-{}.nii.gz", Utc::now().format("%Y%m%dT%H%M%S%.6fZ"));
    if let Err(e) = s.inner.objects.put(&key, bytes).await {
        return failure(&e.into());
    }
    let result =
        s.inner.store.decide_review(id, &caller.name, ReviewAction::Correct, Some(&key), None, Utc::now()).await;
    outcome(result, id)
}

/// `POST /v1/review/items/{id}/comments` with `{"text": "…"}`.
#[utoipa::path(post, path = "/v1/review/items/{id}/comments", tag = "review", params(("id" = i64, Path)), request_body = CommentRequest, security(("bearer" = [])),
    responses((status = 201, description = "stored"), (status = 404, description = "no such item", body = ErrorBody)))]
pub(crate) async fn comment(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiBody(body): ApiBody,
) -> Response {
    if let Some(r) = caller.refuse_unless(REVIEWERS) {
        return r;
    }
    let req: CommentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("request body: expected {{\"text\": \"…\"}}: {e}")),
    };
    if req.text.trim().is_empty() || req.text.len() > 10_000 {
        return bad("text: 1 to 10000 characters");
    }
    match s.inner.store.comment_review(id, &caller.name, &req.text, Utc::now()).await {
        Ok(true) => StatusCode::CREATED.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("review item {id} does not exist")),
        Err(e) => failure(&e.into()),
    }
}

fn outcome(result: Result<ReviewOutcome, neurobatch_core::db::DbError>, id: i64) -> Response {
    match result {
        Ok(ReviewOutcome::Done(item)) => Json(ReviewItem::from(*item)).into_response(),
        Ok(ReviewOutcome::NoSuchItem) => error(StatusCode::NOT_FOUND, format!("review item {id} does not exist")),
        Ok(ReviewOutcome::NotHeld { state, claimed_by }) => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "review item {id} is {}{}: claim it first",
                state.as_str(),
                claimed_by.map_or(String::new(), |w| format!(" by {w}"))
            ),
        )
        .with_code(ErrorCode::NotClaimedByCaller)
        .into_response(),
        Err(e) => failure(&e.into()),
    }
}
