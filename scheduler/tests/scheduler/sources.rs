//! What a service token may make the scheduler read (issue 15): only the
//! configured sources. Each probe below was accepted before — `file:///etc`
//! was walked and hashed, any NIfTI on the disk was copied into the store —
//! and is now a 403 that reads the same whether the place exists or not,
//! with nothing recorded.

use neurobatch_core::domain::Role;

use crate::helpers::{age, json, ok, serve, testdata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_reaches_only_the_configured_sources() {
    // No allowed_roots: the inbox and the object store's root only.
    let s = serve(crate::helpers::Db::Sqlite, "confine", |c| c.scheduler.allowed_roots.clear()).await;
    let service = s.app.token("pacs-bridge", Role::Service).await;
    let admin = s.app.token("root", Role::Admin).await;
    let inbox = s.app.inbox.clone();
    ok(std::fs::create_dir_all(&inbox));
    // A NIfTI outside the inbox, and a symlink in the inbox that leads to it.
    let outside = s.app.dir.path().join("outside");
    ok(std::fs::create_dir_all(&outside));
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), outside.join("scan.nii")));
    #[cfg(unix)]
    ok(std::os::unix::fs::symlink(&outside, inbox.join("link")));
    let escape = format!("{}/../outside/scan.nii", inbox.display());
    let probes = [
        "file:///etc".to_string(),
        "/etc".to_string(),
        "/no/such/place".to_string(),
        format!("file://{}/scan.nii", outside.display()),
        escape,
        format!("{}/link/scan.nii", inbox.display()),
        format!("{}/link", inbox.display()),
        "s3://another-bucket/study".to_string(),
    ];
    for uri in &probes {
        let body = serde_json::json!({ "uri": uri }).to_string();
        let (status, text) = s.call(Some(&service), "POST", "/v1/studies", Some(body.as_bytes())).await;
        assert_eq!(status, 403, "{uri}: {text}");
        assert_eq!(json(&text)["code"], "source_not_allowed", "{uri}: {text}");
        let error = json(&text)["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            error.replace(uri.as_str(), "<uri>"),
            "source `<uri>`: not inside a configured source (scheduler.inbox, scheduler.allowed_roots, the storage \
             bucket, scheduler.allowed_s3_prefixes)",
            "one answer, whether {uri} exists or not"
        );
    }
    let (_, studies) = s.call(Some(&admin), "GET", "/v1/studies", None).await;
    assert_eq!(json(&studies).as_array().map(Vec::len), Some(0), "nothing recorded: {studies}");
    assert!(ok(s.app.objects.list("").await).is_empty(), "nothing copied into the store");

    // The inbox itself is a configured source: a study in it is accepted, by path and by file:// URI.
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), inbox.join("a.nii")));
    age(&inbox.join("a.nii"), 10);
    let body = serde_json::json!({ "uri": format!("file://{}/a.nii", inbox.display()) }).to_string();
    let (status, text) = s.call(Some(&service), "POST", "/v1/studies", Some(body.as_bytes())).await;
    assert_eq!(status, 202, "{text}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_uri_is_not_echoed_back_and_a_huge_body_is_refused_unread() {
    let s = serve(crate::helpers::Db::Sqlite, "echo", |_| {}).await;
    let service = s.app.token("pacs-bridge", Role::Service).await;
    // 32 KiB of URI in a body under the JSON limit: refused, 256 bytes of it repeated at most.
    let uri = format!("/{}", "a".repeat(32 << 10));
    let body = serde_json::json!({ "uri": uri }).to_string();
    let (status, text) = s.call(Some(&service), "POST", "/v1/studies", Some(body.as_bytes())).await;
    assert_eq!(status, 403, "{}", text.chars().take(300).collect::<String>());
    assert!(text.len() < 1024, "a 32 KiB URI came back as a {} byte body", text.len());
    // A 1 MiB JSON body is over the 64 KiB limit of JSON routes (it was taken up to 300 MB).
    let uri = format!("/{}", "a".repeat(1 << 20));
    let body = serde_json::json!({ "uri": uri }).to_string();
    let (status, text) = s.call(Some(&service), "POST", "/v1/studies", Some(body.as_bytes())).await;
    assert_eq!(status, 413, "{}", text.chars().take(300).collect::<String>());
    assert!(text.len() < 1024, "{} bytes", text.len());
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(answer["code"], "payload_too_large", "the API's JSON error, not axum's text: {text}");
    s.finish().await;
}
