//! STOW-RS (PS3.18 §10.5): `POST /dicomweb/studies` and
//! `/dicomweb/studies/{study}` with a `multipart/related;
//! type="application/dicom"` body, for a `service` (or `admin`) token. Each
//! part is a Part 10 file, streamed to disk as it arrives and kept exactly as
//! a C-STORE'd instance is (`dicom/instance.rs`: the same SOP classes,
//! transfer syntaxes, size limit and inbox folder per study). The answer is
//! the Store Instances Response Module as `application/dicom+json`:
//! ReferencedSOPSequence for what was stored, FailedSOPSequence with the
//! Failure Reason for what was not; 200 when every part was stored, 202 when
//! some were, 409 when none was, 415 for a body that is not
//! `multipart/related` of `application/dicom`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use neurobatch_core::domain::Role;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::error;
use super::extract::ApiPath;
use super::schema::ErrorBody;
use crate::Scheduler;
use crate::dicom::instance::{Incoming, InstanceError, Refused, Stored};

/// Parts read from one request; the rest of a larger one is not read.
const MAX_PARTS: usize = 10_000;

/// `POST /dicomweb/studies`: instances of any study.
#[utoipa::path(post, path = "/dicomweb/studies", tag = "dicomweb", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "multipart/related; type=\"application/dicom\"", description = "Part 10 files, one per part"),
    responses((status = 200, description = "every instance stored (the Store Instances Response Module)", content_type = "application/dicom+json", body = Object),
        (status = 202, description = "some instances stored, the others in FailedSOPSequence with their Failure Reason", content_type = "application/dicom+json", body = Object),
        (status = 409, description = "no instance stored", content_type = "application/dicom+json", body = Object),
        (status = 415, description = "not multipart/related of application/dicom", body = ErrorBody)))]
pub(crate) async fn stow(State(s): State<Scheduler>, caller: Caller, headers: HeaderMap, body: Body) -> Response {
    store(s, caller, None, headers, body).await
}

/// `POST /dicomweb/studies/{study}`: instances of that study only (others fail with 0x0110).
#[utoipa::path(post, path = "/dicomweb/studies/{study}", tag = "dicomweb", security(("bearer" = [])),
    params(("study" = String, Path, description = "StudyInstanceUID every instance must have")),
    request_body(content = Vec<u8>, content_type = "multipart/related; type=\"application/dicom\"", description = "Part 10 files, one per part"),
    responses((status = 200, description = "every instance stored", content_type = "application/dicom+json", body = Object),
        (status = 202, description = "some instances stored", content_type = "application/dicom+json", body = Object),
        (status = 409, description = "no instance stored (for example, all of another study)", content_type = "application/dicom+json", body = Object),
        (status = 415, description = "not multipart/related of application/dicom", body = ErrorBody)))]
pub(crate) async fn stow_study(
    State(s): State<Scheduler>,
    caller: Caller,
    ApiPath(study): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    store(s, caller, Some(study), headers, body).await
}

async fn store(s: Scheduler, caller: Caller, study: Option<String>, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = caller.refuse_unless(&[Role::Service, Role::Admin]) {
        return r;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) = related_dicom_boundary(content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: multipart/related; type=\"application/dicom\"; boundary=…",
        );
    };
    let inbox = s.inner.config.scheduler.inbox.clone();
    let limit = s.inner.config.dicom.max_instance_bytes;
    let mut parts = multer::Multipart::new(body.into_data_stream(), boundary);
    let (mut stored, mut failed): (Vec<Stored>, Vec<Refused>) = (Vec::new(), Vec::new());
    loop {
        let mut field = match parts.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                // A broken body: what was stored stays stored; the rest is one failure.
                tracing::info!(error = %e, "stow-rs: the multipart body ends badly");
                failed.push(InstanceError::Unreadable(format!("multipart body: {e}")).into());
                break;
            }
        };
        if stored.len() + failed.len() >= MAX_PARTS {
            failed.push(InstanceError::Unreadable(format!("more than {MAX_PARTS} parts in one request")).into());
            break;
        }
        let is_dicom = field.content_type().is_none_or(|m| m.essence_str() == "application/dicom");
        let mut incoming = match Incoming::for_part10(&inbox, limit) {
            Ok(i) => Some(i),
            Err(e) => {
                failed.push(e.into());
                None
            }
        };
        let mut broken = None;
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    if let Some(i) = incoming.as_mut()
                        && let Err(e) = i.append(&bytes)
                    {
                        broken = Some(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(InstanceError::Unreadable(format!("multipart body: {e}")));
                    break;
                }
            }
        }
        let Some(incoming) = incoming else { continue };
        if let Some(e) = broken {
            incoming.discard();
            failed.push(e.into());
            continue;
        }
        if !is_dicom {
            incoming.discard();
            failed.push(InstanceError::Unreadable("a part that is not application/dicom".into()).into());
            continue;
        }
        let (inbox, study) = (inbox.clone(), study.clone());
        match tokio::task::spawn_blocking(move || incoming.finish(&inbox, study.as_deref())).await {
            Ok(Ok(s)) => stored.push(s),
            Ok(Err(refused)) => failed.push(refused),
            Err(e) => failed.push(InstanceError::Unreadable(format!("writer task: {e}")).into()),
        }
    }
    tracing::info!(caller = %caller.name, stored = stored.len(), failed = failed.len(), "stow-rs request");
    let status = match (stored.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    let body = response_module(&stored, &failed);
    (status, [(header::CONTENT_TYPE, "application/dicom+json")], body.to_string()).into_response()
}

/// The boundary of a `multipart/related` body whose `type` is `application/dicom`.
fn related_dicom_boundary(content_type: &str) -> Option<String> {
    let mime: mime::Mime = content_type.parse().ok()?;
    if mime.type_() != mime::MULTIPART || mime.subtype().as_str() != "related" {
        return None;
    }
    let kind = mime.get_param("type").map(|t| t.as_str().to_ascii_lowercase());
    if kind.as_deref().is_some_and(|t| t != "application/dicom") {
        return None;
    }
    mime.get_param(mime::BOUNDARY).map(|b| b.as_str().to_string())
}

/// The Store Instances Response Module (PS3.18 Annex I) in the DICOM JSON model.
fn response_module(stored: &[Stored], failed: &[Refused]) -> Value {
    let uid = |v: Option<&str>| match v {
        Some(v) => json!({ "vr": "UI", "Value": [v] }),
        None => json!({ "vr": "UI" }),
    };
    let mut module = serde_json::Map::new();
    // Retrieve URL (type 2): this node does not serve WADO-RS.
    module.insert("00081190".into(), json!({ "vr": "UR" }));
    if !failed.is_empty() {
        let items: Vec<Value> = failed
            .iter()
            .map(|f| {
                json!({
                    "00081150": uid(f.sop_class_uid.as_deref()),
                    "00081155": uid(f.sop_instance_uid.as_deref()),
                    "00081197": { "vr": "US", "Value": [f.error.status()] },
                })
            })
            .collect();
        module.insert("00081198".into(), json!({ "vr": "SQ", "Value": items }));
    }
    if !stored.is_empty() {
        let items: Vec<Value> = stored
            .iter()
            .map(|s| {
                json!({
                    "00081150": uid(Some(&s.sop_class_uid)),
                    "00081155": uid(Some(&s.sop_instance_uid)),
                    "00081190": { "vr": "UR" },
                })
            })
            .collect();
        module.insert("00081199".into(), json!({ "vr": "SQ", "Value": items }));
    }
    Value::Object(module)
}

#[cfg(test)]
mod tests {
    use super::related_dicom_boundary;

    #[test]
    fn only_multipart_related_of_dicom_is_taken() {
        assert_eq!(
            related_dicom_boundary("multipart/related; type=\"application/dicom\"; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(related_dicom_boundary("Multipart/Related; boundary=\"x y\"").as_deref(), Some("x y"));
        for refused in [
            "multipart/form-data; boundary=abc",
            "multipart/related; type=\"application/dicom+xml\"; boundary=abc",
            "multipart/related; type=\"application/dicom\"",
            "application/dicom",
            "",
        ] {
            assert_eq!(related_dicom_boundary(refused), None, "{refused}");
        }
    }
}
