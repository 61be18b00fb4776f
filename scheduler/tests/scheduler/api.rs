//! The HTTP API on a real listener, with a hand-written HTTP/1.1 client.

use tokio_util::sync::CancellationToken;

use neurobatch_core::domain::Role;

use crate::helpers::{App, Db, http, http_as, json, ok, testdata};

async fn api(db: Db) {
    let app = App::start(db, "api", |c| c.pipeline.min_slices = 1000).await;
    let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let addr = ok(listener.local_addr());
    let token = CancellationToken::new();
    let server = tokio::spawn({
        let s = app.sched.clone();
        let t = token.clone();
        async move { s.serve_http(listener, t).await }
    });

    assert_eq!(http(addr, "GET", "/healthz", None).await, (200, "ok".to_string()));
    let admin = app.token("api-admin", Role::Admin).await;
    let http = |addr, method, path: &str, body: Option<&str>| {
        let (admin, path, body) = (admin.clone(), path.to_string(), body.map(|b| b.as_bytes().to_vec()));
        async move { http_as(addr, Some(&admin), method, &path, body.as_deref()).await }
    };

    let nifti = app.dir.path().join("a.nii");
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), &nifti));
    let body = format!(r#"{{"uri": "file://{}", "priority": "stat"}}"#, nifti.display());
    let (status, text) = http(addr, "POST", "/v1/studies", Some(&body)).await;
    assert_eq!(status, 202, "{text}");
    let created = json(&text);
    assert_eq!(created["outcome"], "enqueued");
    let job_id = created["job_id"].as_i64().unwrap_or_else(|| panic!("{text}"));
    let (status, text) = http(addr, "POST", "/v1/studies", Some(&body)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["outcome"], "existing");
    assert_eq!(json(&text)["job_id"], job_id);

    // An ineligible study (min_slices 1000) is recorded and visible with its reason.
    let dicom = app.dir.path().join("axial");
    crate::helpers::copy_files(&testdata("dicom/derived/axial"), &dicom, |_, _| true);
    let (status, text) = http(addr, "POST", "/v1/studies", Some(&format!(r#"{{"uri": "{}"}}"#, dicom.display()))).await;
    assert_eq!(status, 200, "{text}");
    let inelig = json(&text);
    assert_eq!(inelig["outcome"], "ineligible");
    let inelig_id = inelig["study_id"].as_i64().unwrap_or_else(|| panic!("{text}"));

    let (status, text) = http(addr, "GET", "/v1/studies?limit=10", None).await;
    assert_eq!(status, 200, "{text}");
    let list = json(&text);
    let list = list.as_array().unwrap_or_else(|| panic!("{text}"));
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], inelig_id, "most recent first");
    assert_eq!(list[1]["latest_job_id"], job_id);
    assert_eq!(list[1]["latest_job_state"], "queued");
    let (_, text) = http(addr, "GET", "/v1/studies?limit=1&offset=1", None).await;
    assert_eq!(json(&text).as_array().map(Vec::len), Some(1));
    assert_eq!(json(&text)[0]["latest_job_id"], job_id);

    let study_id = list[1]["id"].as_i64().unwrap_or_else(|| panic!("{text}"));
    let (status, text) = http(addr, "GET", &format!("/v1/studies/{study_id}"), None).await;
    assert_eq!(status, 200, "{text}");
    let detail = json(&text);
    assert_eq!(detail["jobs"][0]["id"], job_id);
    assert_eq!(detail["jobs"][0]["priority"], "stat");
    assert_eq!(detail["jobs"][0]["series_uids"][0], "a.nii");
    assert!(detail["jobs"][0]["result"].is_null());
    let (status, text) = http(addr, "GET", &format!("/v1/studies/{inelig_id}"), None).await;
    assert_eq!(status, 200, "{text}");
    let reason = json(&text)["study"]["ineligible_reason"].as_str().map(str::to_owned).unwrap_or_default();
    assert!(reason.contains("fewer than 1000"), "{text}");

    // Errors: JSON with a message naming the input.
    for (method, path, body, want, needle) in [
        ("GET", "/v1/studies/999999", None, 404, "study 999999 does not exist"),
        ("GET", "/v1/studies/abc", None, 400, "study id"),
        ("GET", "/v1/studies?limit=0", None, 400, "limit 0"),
        ("GET", "/v1/studies?limit=x", None, 400, "query"),
        ("POST", "/v1/studies", Some("not json"), 400, "request body"),
        ("POST", "/v1/studies", Some(r#"{"url": "x"}"#), 400, "request body"),
        ("POST", "/v1/studies", Some(r#"{"uri": "ftp://h/x"}"#), 400, "ftp://h/x"),
        ("POST", "/v1/studies", Some(r#"{"uri": "/no/such/study"}"#), 400, "/no/such/study"),
        ("POST", "/v1/studies", Some(r#"{"uri": "/tmp", "priority": "urgent"}"#), 400, "priority `urgent`"),
    ] {
        let (status, text) = http(addr, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {text}");
        let err = json(&text)["error"].as_str().map(str::to_owned).unwrap_or_default();
        assert!(err.contains(needle), "{method} {path}: {text}");
    }

    token.cancel();
    ok(ok(server.await));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_sqlite() {
    api(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_postgres() {
    api(Db::Postgres).await;
}
