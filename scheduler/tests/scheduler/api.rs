//! The HTTP API on a real listener, with a hand-written HTTP/1.1 client.

use neurobatch_core::domain::Role;

use crate::helpers::{Db, http, http_as, http_raw, json, ok, serve, testdata};

async fn api(db: Db) {
    let served = serve(db, "api", |c| c.pipeline.min_slices = 1000).await;
    let (app, addr) = (&served.app, served.addr);
    assert_eq!(http(addr, "GET", "/healthz", None).await, (200, "ok".to_string()));
    // The OpenAPI document describes exactly the API's routes, each behind the bearer token.
    let (status, text) = http(addr, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200, "{text}");
    let doc = json(&text);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{text}");
    let paths: std::collections::BTreeSet<&str> =
        doc["paths"].as_object().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
    let want = [
        "/dicomweb/studies",
        "/dicomweb/studies/{study}",
        "/v1/admin/dicom-sends/retry",
        "/v1/admin/jobs",
        "/v1/admin/jobs/{id}/retry",
        "/v1/admin/stats",
        "/v1/me",
        "/v1/review/claim-next",
        "/v1/review/items",
        "/v1/review/items/{id}",
        "/v1/review/items/{id}/comments",
        "/v1/review/items/{id}/correction",
        "/v1/review/items/{id}/decision",
        "/v1/review/items/{id}/objects/{name}",
        "/v1/review/items/{id}/release",
        "/v1/studies",
        "/v1/studies/{id}",
    ];
    assert_eq!(paths, want.into_iter().collect());
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in ops.as_object().into_iter().flatten() {
            assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents 401");
            // A path parameter that does not parse is a documented 400 with the JSON error body.
            if path.contains('{') {
                let error = &op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(error, "#/components/schemas/ErrorBody", "{method} {path} documents 400");
            }
            let bounded = op["requestBody"].is_object() && !path.starts_with("/dicomweb/");
            assert_eq!(op["responses"]["413"].is_object(), bounded, "{method} {path}: 413 where a body limit applies");
        }
    }
    // What the handlers return is what the document says, field for field (no patched-in extras).
    let stats = &doc["components"]["schemas"]["AdminStats"]["properties"];
    assert!(stats["broker_jobs_queued"].is_object() && stats["dicom_sends"].is_object(), "{stats}");
    let case = &doc["components"]["schemas"]["Case"];
    assert!(case.to_string().contains("\"thresholds_crossed\"") && case.to_string().contains("\"objects\""), "{case}");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["ReviewItem"]["properties"]["uncertainty"].is_object());
    // Every error answer carries a stable machine-readable code, and the document lists them.
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().cloned().unwrap_or_default();
    for code in ["unauthorized", "source_not_allowed", "not_claimed_by_caller", "unavailable"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    assert!(
        doc["components"]["schemas"]["ErrorBody"]["required"].as_array().is_some_and(|r| r.iter().any(|f| f == "code"))
    );
    let (status, text) = http(addr, "GET", "/v1/me", None).await;
    assert_eq!((status, json(&text)["code"].as_str()), (401, Some("unauthorized")), "{text}");
    let admin = app.token("api-admin", Role::Admin).await;
    // Axum's own rejections answer the API's JSON error too: an id past i64, a query that does not
    // parse, an unknown route.
    for (path, status, code) in [
        ("/v1/studies/9223372036854775808", 400, "bad_request"),
        ("/v1/review/items/x/objects/mask", 400, "bad_request"),
        ("/v1/admin/jobs?limit=-1", 400, "bad_request"),
        ("/v1/nothing-here", 404, "not_found"),
    ] {
        let (got, text) = http_as(addr, Some(&admin), "GET", path, None).await;
        assert_eq!((got, json(&text)["code"].as_str()), (status, Some(code)), "{path}: {text}");
    }
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
        ("GET", "/v1/studies/abc", None, 400, "path: Invalid URL: Cannot parse `abc`"),
        ("GET", "/v1/studies?limit=0", None, 400, "limit 0"),
        ("GET", "/v1/studies?limit=x", None, 400, "query"),
        ("POST", "/v1/studies", Some("not json"), 400, "request body"),
        ("POST", "/v1/studies", Some(r#"{"url": "x"}"#), 400, "request body"),
        ("POST", "/v1/studies", Some(r#"{"uri": "ftp://h/x"}"#), 400, "ftp://h/x"),
        ("POST", "/v1/studies", Some(r#"{"uri": "/no/such/study"}"#), 403, "not inside a configured source"),
        ("POST", "/v1/studies", Some(r#"{"uri": "/tmp", "priority": "urgent"}"#), 400, "priority `urgent`"),
    ] {
        let (status, text) = http(addr, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {text}");
        let err = json(&text)["error"].as_str().map(str::to_owned).unwrap_or_default();
        assert!(err.contains(needle), "{method} {path}: {text}");
    }

    served.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_sqlite() {
    api(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_postgres() {
    api(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_answers_503_without_its_internals() {
    // Issue 15: a 503 forwarded the full SQL or S3 SDK error text.
    let s = serve(Db::Sqlite, "internals", |_| {}).await;
    let admin = s.app.token("root", Role::Admin).await;
    let db_file = s.app.dir.path().join("nb.db").display().to_string();
    s.app.store.close().await;
    let (status, text) = s.call(Some(&admin), "GET", "/v1/studies", None).await;
    assert_eq!(status, 503, "{text}");
    let body = json(&text);
    assert_eq!(body["error"], "a backend (database, object store or queue) is unavailable; try again later");
    assert_eq!(body["request_id"].as_str().map(str::len), Some(32), "{text}");
    for internal in ["pool", "sqlx", "closed", "database:", db_file.as_str()] {
        assert!(!text.contains(internal), "{internal:?} in {text}");
    }
    // An unknown token cannot be told from a known one while the database is down.
    let (status, text) = s.call(Some("nbt_unknown"), "GET", "/v1/studies", None).await;
    assert_eq!(status, 503, "{text}");
    assert!(!text.contains("pool"), "{text}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = serve(Db::Sqlite, "bearer", |_| {}).await;
    let admin = s.app.token("root", Role::Admin).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, text) = http_raw(
            s.addr,
            &format!("GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {scheme} {admin}\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {text}");
    }
    s.finish().await;
}
