//! The reviewers' web viewer, served at `/review/` from the folder
//! `scripts/build-web.sh` builds (`web/dist/`): `scheduler.ui_dir`, or
//! `web/dist` under the working directory or above the executable. Files
//! only, no listing, no path outside the folder; a missing build is a 503
//! that says how to make it. Every file carries a Content-Security-Policy
//! that allows scripts from this origin only (no inline script, no eval),
//! `X-Frame-Options: DENY` and `X-Content-Type-Options: nosniff`.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::error;
use super::extract::ApiPath;
use crate::Scheduler;

/// The viewer's policy: its own scripts only; styles may be inline (the
/// legend's colour swatches); images, volumes and NiiVue's workers may come
/// from `data:`/`blob:` URLs it makes itself; nothing may frame it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self' data: blob:; worker-src 'self' blob:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the built viewer is.
pub(crate) fn ui_dir(configured: &Path) -> Option<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return Some(configured.to_path_buf());
    }
    neurobatch_core::install::find_shipped(Path::new("web/dist"), |c| c.join("index.html").is_file())
}

pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/review/")
}

pub(crate) async fn index(State(s): State<Scheduler>) -> Response {
    serve(&s, "index.html").await
}

pub(crate) async fn file(State(s): State<Scheduler>, ApiPath(path): ApiPath<String>) -> Response {
    serve(&s, &path).await
}

async fn serve(s: &Scheduler, rel: &str) -> Response {
    let Some(dir) = ui_dir(&s.inner.config.scheduler.ui_dir) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the review viewer is not built: run `bash scripts/build-web.sh`",
        );
    };
    if rel.split('/').any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.contains('\\')) {
        return error(StatusCode::NOT_FOUND, format!("/review/{rel}: no such file"));
    }
    let path = rel.split('/').fold(dir, |p, seg| p.join(seg));
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(rel)),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("/review/{rel}: no such file")),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}
