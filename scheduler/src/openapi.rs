//! The API's OpenAPI 3 document, served at `/openapi.json`: generated from
//! the handlers' `#[utoipa::path]` annotations and the types' `ToSchema`
//! derives, so it cannot drift from the code. Authentication is a bearer
//! token (`neurobatch token create`).

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use neurobatch_core::db::{
    AdminStats, Job, JobDetail, ResultSummary, ReviewCase, ReviewComment, ReviewItem, RoutingRate, SeriesRow,
    StructureMetric, StudyDetail, StudySummary,
};

/// Every error answer: one line naming the input and the reason.
#[derive(Debug, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// What went wrong, for a program: branch on this, not on `error`'s wording.
    pub code: crate::api_error::ErrorCode,
    /// On 5xx answers only: the id under which the log has the detail.
    pub request_id: Option<String>,
}

/// `GET /v1/me`.
#[derive(Debug, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: neurobatch_core::domain::Role,
}

/// `GET /v1/review/items`.
#[derive(Debug, ToSchema)]
pub struct ReviewItems {
    pub items: Vec<ReviewItem>,
}

/// `GET /v1/admin/jobs`.
#[derive(Debug, ToSchema)]
pub struct Jobs {
    pub jobs: Vec<Job>,
}

/// `POST /v1/admin/dicom-sends/retry`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct RetriedSends {
    /// Failed sends now pending again.
    pub retried: u64,
}

/// A case as the viewer gets it: the item, its result's figures and objects.
#[derive(Debug, ToSchema)]
pub struct Case {
    #[serde(flatten)]
    pub case: ReviewCase,
    /// Output name → URL of `GET /v1/review/items/{id}/objects/{name}`.
    pub objects: std::collections::BTreeMap<String, String>,
    /// The pipeline's labels: value, name, display colour.
    pub labels: Vec<crate::PipelineLabel>,
    /// The routing reasons (thresholds crossed).
    #[schema(value_type = Vec<Object>)]
    pub thresholds_crossed: Vec<serde_json::Value>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("nbt_…").build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "neurobatch", description = "Study submission and status, STOW-RS, the review queue, and administration."),
    paths(
        crate::http::submit, crate::http::list, crate::http::study,
        crate::review::me, crate::review::list, crate::review::claim_next, crate::review::case, crate::review::object,
        crate::review::release, crate::review::decide, crate::review::correct, crate::review::comment,
        crate::admin::stats, crate::admin::jobs, crate::admin::retry, crate::admin::retry_dicom_sends,
        crate::dicomweb::stow, crate::dicomweb::stow_study,
    ),
    components(schemas(
        ErrorBody, Me, ReviewItems, Jobs, RetriedSends, Case, crate::Submission, crate::PipelineLabel,
        StudySummary, StudyDetail, SeriesRow, JobDetail, Job, ResultSummary,
        ReviewItem, ReviewCase, ReviewComment, StructureMetric, AdminStats, RoutingRate,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "studies", description = "Submitting studies (service, admin) and their status (reviewer, admin)"),
        (name = "review", description = "The review queue (reviewer, admin)"),
        (name = "admin", description = "Jobs and figures (admin)"),
        (name = "dicomweb", description = "STOW-RS: DICOM instances into the inbox (service, admin); docs/dicom.md"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json` (public: it describes, it does not reveal).
pub(crate) async fn document() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
