//! The one error answer of the HTTP API: [`ApiError`] — a status, a stable
//! machine-readable [`ErrorCode`] and a one-line message — as the JSON body
//! `{"error": "…", "code": "…"}` (plus `request_id` on 5xx answers).
//!
//! Owns which code a status gets by default and how a [`SchedulerError`]
//! becomes an answer: the caller's own mistakes (4xx) are named; a
//! server-side failure (5xx) answers a generic message and a request id, and
//! only the log (under that id) has the detail — SQL, the S3 SDK's text,
//! hosts and paths stay inside. Clients branch on `code`, never on `error`'s
//! wording.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::SchedulerError;

/// What went wrong, for a program: stable across releases (new codes may be
/// added; existing ones keep their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or names something invalid.
    BadRequest,
    /// 401: no bearer token, or an unknown or revoked one.
    Unauthorized,
    /// 403: the caller's role may not do this.
    Forbidden,
    /// 403: the source lies outside every configured place.
    SourceNotAllowed,
    /// 404: no such study, review item, object or file.
    NotFound,
    /// 409: the state does not allow it (a job that is not failed, a result without a mask, …).
    Conflict,
    /// 409: the review item is claimed by another reviewer (or not claimed by the caller).
    NotClaimedByCaller,
    /// 413: the body is larger than the route takes.
    PayloadTooLarge,
    /// 422: an upload (a corrected mask) that is not acceptable.
    InvalidUpload,
    /// 503: a backend (database, object store, queue, PACS) is unavailable.
    Unavailable,
    /// 500: the server's own failure.
    Internal,
}

impl ErrorCode {
    /// The code a status means when nothing more specific applies.
    pub fn of_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            409 => Self::Conflict,
            413 => Self::PayloadTooLarge,
            422 => Self::InvalidUpload,
            503 => Self::Unavailable,
            s if s >= 500 => Self::Internal,
            _ => Self::BadRequest,
        }
    }
}

/// The longest message an answer carries, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Set on 5xx answers: where the log has the detail.
    pub request_id: Option<String>,
}

/// Every error answer's body, as sent and as `/openapi.json` documents it:
/// one line naming the input and the reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// What went wrong, for a program: branch on this, not on `error`'s wording.
    pub code: ErrorCode,
    /// On 5xx answers only: the id under which the log has the detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// An answer with the status's default code. The message is cut at
    /// [`MAX_MESSAGE_CHARS`]: whatever of the input it quotes comes back as a short prefix.
    pub fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        let mut message = message.to_string();
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
            message.truncate(cut);
            message.push('…');
        }
        ApiError { status, code: ErrorCode::of_status(status), message, request_id: None }
    }

    /// The same answer with a more specific code.
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    /// A failed operation: named for the caller's own mistakes; for a
    /// server-side failure a generic message, a request id, and the detail in
    /// the log under that id.
    pub fn from_failure(e: &SchedulerError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if !status.is_server_error() {
            let error = ApiError::new(status, e);
            return match e {
                SchedulerError::NotAllowed { .. } => error.with_code(ErrorCode::SourceNotAllowed),
                _ => error,
            };
        }
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        tracing::warn!(%request_id, error = %e, "http request failed");
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "a backend (database, object store or queue) is unavailable; try again later"
        } else {
            "internal error"
        };
        ApiError { request_id: Some(request_id), ..ApiError::new(status, message) }
    }
}

/// An error answer with the status's default code ([`ApiError::new`]).
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    ApiError::new(status, message).into_response()
}

/// The answer to a failed operation ([`ApiError::from_failure`]).
pub(crate) fn failure(e: &SchedulerError) -> Response {
    ApiError::from_failure(e).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, code: self.code, request_id: self.request_id };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (u16, serde_json::Value) {
        let response = e.into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn answers_carry_a_stable_code_and_5xx_hide_their_detail() {
        let (status, body) = body_of(ApiError::new(StatusCode::NOT_FOUND, "review item 3 does not exist")).await;
        assert_eq!(
            (status, body["code"].as_str(), body["error"].as_str()),
            (404, Some("not_found"), Some("review item 3 does not exist"))
        );
        assert!(body.get("request_id").is_none(), "{body}");

        let (status, body) = body_of(ApiError::from_failure(&SchedulerError::not_allowed("file:///etc"))).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("source_not_allowed")));

        let secret = SchedulerError::Task { what: "x", reason: "postgres://admin:pw@db/secret failed".into() };
        let (status, body) = body_of(ApiError::from_failure(&secret)).await;
        assert_eq!(
            (status, body["code"].as_str(), body["error"].as_str()),
            (500, Some("internal"), Some("internal error"))
        );
        assert_eq!(body["request_id"].as_str().map(str::len), Some(32), "{body}");
        assert!(!body.to_string().contains("secret"), "{body}");

        let conflict = ApiError::new(StatusCode::CONFLICT, "claimed by bob").with_code(ErrorCode::NotClaimedByCaller);
        assert_eq!(body_of(conflict).await.1["code"], "not_claimed_by_caller");
        let (_, body) = body_of(ApiError::new(StatusCode::BAD_REQUEST, "é".repeat(10_000))).await;
        assert_eq!(
            body["error"].as_str().map(|m| m.chars().count()),
            Some(MAX_MESSAGE_CHARS + 1),
            "cut, with an ellipsis"
        );
        for (status, code) in [
            (400, "bad_request"),
            (401, "unauthorized"),
            (413, "payload_too_large"),
            (422, "invalid_upload"),
            (503, "unavailable"),
        ] {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(serde_json::to_value(ErrorCode::of_status(status)).expect("code"), code);
        }
    }
}
