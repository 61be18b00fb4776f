//! The API's OpenAPI 3 document, served at `/openapi.json`: generated from
//! the handlers' `#[utoipa::path]` annotations and the types' `ToSchema`
//! derives, so it cannot drift from the code. Authentication is a bearer
//! token (`neurobatch token create`).

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::schema::{
    AdminStats, Case, ErrorBody, Job, JobDetail, Jobs, Me, PipelineLabel, ResultSummary, Retried, RetriedSends,
    ReviewComment, ReviewItem, ReviewItems, ReviewReason, RoutingRate, Series, StructureMetric, StudyDetail,
    StudySummary, Submission,
};
use super::{admin, review, stow, studies};

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

/// The error answers any operation can give, added where its annotation
/// does not already say more: every operation may fail on the server (500,
/// 503); one that takes a token may answer 401 and 403; one with path or
/// query parameters or a body 400; one with a body 413 (the route's limit;
/// not the streamed STOW-RS bodies).
/// Said once here, so an annotation lists only what is its own.
struct CommonErrors;

impl CommonErrors {
    fn add(op: &mut Operation) {
        let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let params = op
            .parameters
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)));
        let body = op.request_body.is_some();
        // STOW-RS bodies are streamed part by part (each bounded by dicom.max_instance_bytes, a
        // failed part answered in the response module), never refused whole for their size.
        let streamed = op.request_body.as_ref().is_some_and(|b| b.content.keys().any(|k| k.starts_with("multipart/")));
        let errors: [(bool, &str, &str); 6] = [
            (params || body, "400", "bad input, named"),
            (secured, "401", "no token, or an unknown or revoked one"),
            (secured, "403", "the role may not"),
            (body && !streamed, "413", "the body is larger than the route takes"),
            (true, "500", "the server's own failure (the log has the detail under request_id)"),
            (true, "503", "a backend (database, object store, queue) is unavailable"),
        ];
        for (applies, status, description) in errors {
            if applies && !op.responses.responses.contains_key(status) {
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                    .build();
                op.responses.responses.insert(status.to_string(), response.into());
            }
        }
    }
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch] {
                if let Some(op) = op.as_mut() {
                    CommonErrors::add(op);
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "neurobatch", description = "Study submission and status, STOW-RS, the review queue, and administration."),
    paths(
        studies::submit, studies::list, studies::study,
        review::me, review::list, review::claim_next, review::case, review::object,
        review::release, review::decide, review::correct, review::comment,
        admin::stats, admin::jobs, admin::retry, admin::retry_dicom_sends,
        stow::stow, stow::stow_study,
    ),
    components(schemas(
        ErrorBody, Me, ReviewItems, Jobs, Retried, RetriedSends, Case, Submission, PipelineLabel,
        StudySummary, StudyDetail, Series, JobDetail, Job, ResultSummary, ReviewReason,
        ReviewItem, ReviewComment, StructureMetric, AdminStats, RoutingRate,
    )),
    modifiers(&BearerAuth, &CommonErrors),
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
