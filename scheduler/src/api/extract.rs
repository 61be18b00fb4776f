//! Axum's extractors, answering the API's own error: a path parameter or a
//! query string that does not parse is a 400, and a body over the route's
//! limit a 413, with the JSON [`ApiError`] body and its code — not axum's
//! `text/plain` rejection — like every other failure the OpenAPI document
//! describes. Handlers take [`ApiPath`], [`ApiQuery`] and [`ApiBody`]
//! instead of `Path`, `Query` and `Bytes`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The path's parameters (`Path<T>`); 400 when one does not parse.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

/// The query string (`Query<T>`); 400 when it does not parse.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

/// The whole body (`Bytes`), bounded by the route's `DefaultBodyLimit`: 413 beyond it.
#[derive(Debug)]
pub(crate) struct ApiBody(pub Bytes);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("path: {}", e.body_text()))),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("query: {}", e.body_text()))),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(ApiBody(bytes)),
            Err(e) => Err(ApiError::new(e.status(), format!("request body: {}", e.body_text()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Page {
        #[allow(dead_code)]
        limit: u32,
    }

    async fn answer(router: Router, request: axum::http::Request<Body>) -> (u16, String, serde_json::Value) {
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, kind, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn request(method: &str, uri: &str, body: Vec<u8>) -> axum::http::Request<Body> {
        axum::http::Request::builder().method(method).uri(uri).body(Body::from(body)).expect("request")
    }

    #[tokio::test]
    async fn rejections_are_the_apis_json_errors() {
        let router = Router::new()
            .route("/items/{id}", get(|ApiPath(id): ApiPath<i64>| async move { id.to_string() }))
            .route("/list", get(|ApiQuery(_): ApiQuery<Page>| async { "ok" }))
            .route("/upload", post(|ApiBody(b): ApiBody| async move { b.len().to_string() }))
            .layer(DefaultBodyLimit::max(16));

        for (uri, field) in [("/items/9223372036854775808", "path"), ("/items/x", "path"), ("/list?limit=-1", "query")]
        {
            let (status, kind, body) = answer(router.clone(), request("GET", uri, vec![])).await;
            assert_eq!((status, kind.as_str(), body["code"].as_str()), (400, "application/json", Some("bad_request")));
            assert!(body["error"].as_str().is_some_and(|m| m.starts_with(field)), "{uri}: {body}");
        }
        let (status, kind, body) = answer(router.clone(), request("POST", "/upload", vec![0; 17])).await;
        assert_eq!(
            (status, kind.as_str(), body["code"].as_str()),
            (413, "application/json", Some("payload_too_large"))
        );
        let (status, _, _) = answer(router, request("POST", "/upload", vec![0; 16])).await;
        assert_eq!(status, 200, "at the limit");
    }
}
