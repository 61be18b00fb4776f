//! The review API over HTTP (issue 5): who may call what, token revocation,
//! an expired claim, twenty reviewers racing for ten cases, corrected-mask
//! validation, and the nnU-Net export of the decided cases.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use neurobatch_core::db::{JobResults, NewReviewItem, Routing, Scanner, StructureMetric};
use neurobatch_core::domain::{Priority, Role};
use sqlx::Connection as _;

use crate::helpers::{App, Db, http_as, json, ok, serve, testdata};

/// `n` review cases whose mask is the MNI tissue labels (stored in the app's object store).
async fn cases(app: &App, n: usize) -> Vec<i64> {
    let scores: Vec<Option<f64>> = (0..n).map(|i| Some(0.1 * (i as f64 + 1.0))).collect();
    cases_scored(app, &scores).await
}

/// One review case per study uncertainty score (`None`: unknown).
async fn cases_scored(app: &App, scores: &[Option<f64>]) -> Vec<i64> {
    let mask = ok(std::fs::read(testdata("process/labels.nii.gz")));
    for (i, score) in scores.iter().enumerate() {
        let key = format!("study/s{i}/pipeline/brain-tissue/model/brain-tissue@1.0.0/v1");
        ok(app.objects.put(&format!("{key}/mask.nii.gz"), mask.clone()).await);
        ok(app.objects.put(&format!("{key}/image.nii.gz"), mask.clone()).await);
        let nifti = app.dir.path().join(format!("case{i}.nii"));
        ok(std::fs::write(&nifti, format!("case {i}")));
        let sub = ok(app.sched.submit(&nifti.display().to_string(), Priority::Routine, false).await);
        let scheduler::Submission::Enqueued { job_id, .. } = sub else { panic!("{sub:?}") };
        assert!(ok(app.store.claim(job_id, "w", std::time::Duration::from_secs(60), Utc::now()).await).is_some());
        let results = JobResults {
            decision: Routing::Review,
            series_uid: None,
            scanner: Scanner {
                manufacturer: Some("ACME".into()),
                model: Some("MR-1".into()),
                field_strength_t: Some(3.0),
            },
            object_keys: BTreeMap::from([
                ("mask".to_string(), format!("{key}/mask.nii.gz")),
                ("image".to_string(), format!("{key}/image.nii.gz")),
            ]),
            report: serde_json::json!({"schema": 1}),
            structures: vec![StructureMetric {
                label: 1,
                structure: "grey_matter".into(),
                voxels: 10,
                volume_ml: 1.0,
                volume_cv: Some(0.1),
                pairwise_dice: Some(0.7),
                mean_entropy: Some(0.2),
                mean_mutual_information: Some(0.01),
            }],
            classifications: vec![],
            review: Some(NewReviewItem {
                reasons: vec![neurobatch_core::message::ReviewReason {
                    code: "out_of_distribution".into(),
                    metric: "ood_score".into(),
                    label: None,
                    value: Some(12.0),
                    threshold: 9.7,
                }],
                uncertainty: *score,
            }),
        };
        ok(app.store.complete(job_id, "w", &results, Utc::now()).await);
    }
    let items = ok(app.store.review_items(&Default::default(), Utc::now()).await);
    items.iter().map(|i| i.id).collect()
}

async fn metrics_and_admin_stats_with_an_unknown_uncertainty(db: Db) {
    // Issue 18: a case routed for unknown uncertainty made PostgreSQL's AVG
    // overflow, so every scheduler pass failed to record the gauges.
    let s = serve(db, "unknown_uncertainty", |_| {}).await;
    let admin = s.app.token("root", Role::Admin).await;
    cases_scored(&s.app, &[None, Some(0.4), Some(0.2)]).await;
    ok(s.app.sched.record_gauges_once().await);
    let (status, text) = s.call(None, "GET", "/metrics", None).await;
    assert_eq!(status, 401, "the API's /metrics needs a token: {text}");
    let (status, metrics) = s.call(Some(&admin), "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.lines().any(|l| l == "neurobatch_review_backlog 3"), "{metrics}");
    let (status, stats) = s.call(Some(&admin), "GET", "/v1/admin/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    let mean = json(&stats)["routing"][0]["mean_uncertainty"].as_f64().unwrap_or(f64::NAN);
    assert!((mean - 0.3).abs() < 1e-9, "{stats}");
    let (_, queue) = s.call(Some(&admin), "GET", "/v1/review/items", None).await;
    assert_eq!(json(&queue)["items"][0]["uncertainty"], serde_json::Value::Null, "the unknown case first: {queue}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_admin_stats_with_an_unknown_uncertainty_postgres() {
    metrics_and_admin_stats_with_an_unknown_uncertainty(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_admin_stats_with_an_unknown_uncertainty_sqlite() {
    metrics_and_admin_stats_with_an_unknown_uncertainty(Db::Sqlite).await;
}

/// Method, path, body, and the status for: no token, reviewer, admin, service, a revoked token.
type Row<'a> = (&'a str, &'a str, Option<&'a [u8]>, [u16; 5]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_call_exactly_its_endpoints() {
    let s = serve(Db::Sqlite, "authz", |_| {}).await;
    let reviewer = s.app.token("rev", Role::Reviewer).await;
    let admin = s.app.token("adm", Role::Admin).await;
    let service = s.app.token("svc", Role::Service).await;
    let revoked = s.app.token("gone", Role::Admin).await;
    assert!(ok(s.app.store.revoke_token("gone", Utc::now()).await));
    // (method, path, body, [none, reviewer, admin, service, revoked]); the queue is empty.
    let bad_submit: &[u8] = br#"{"uri": "ftp://x/y"}"#;
    let matrix: [Row<'_>; 11] = [
        ("GET", "/v1/me", None, [401, 200, 200, 200, 401]),
        ("POST", "/v1/studies", Some(bad_submit), [401, 403, 400, 400, 401]),
        ("GET", "/v1/studies", None, [401, 200, 200, 403, 401]),
        ("GET", "/v1/studies/1", None, [401, 404, 404, 403, 401]),
        ("GET", "/v1/review/items", None, [401, 200, 200, 403, 401]),
        ("POST", "/v1/review/claim-next", None, [401, 204, 204, 403, 401]),
        ("POST", "/v1/review/items/1/decision", Some(br#"{"action": "approve"}"#), [401, 404, 404, 403, 401]),
        ("GET", "/v1/admin/stats", None, [401, 403, 200, 403, 401]),
        ("GET", "/v1/admin/jobs?state=dead", None, [401, 403, 200, 403, 401]),
        ("POST", "/v1/admin/jobs/1/retry", None, [401, 403, 409, 403, 401]),
        ("POST", "/v1/admin/dicom-sends/retry", None, [401, 403, 200, 403, 401]),
    ];
    for (method, path, body, want) in matrix {
        let tokens =
            [None, Some(reviewer.as_str()), Some(admin.as_str()), Some(service.as_str()), Some(revoked.as_str())];
        for (who, (token, want)) in
            ["none", "reviewer", "admin", "service", "revoked"].iter().zip(tokens.into_iter().zip(want))
        {
            let (status, text) = s.call(token, method, path, body).await;
            assert_eq!(status, want, "{who}: {method} {path}: {text}");
            if status >= 400 {
                assert!(json(&text)["error"].as_str().is_some_and(|e| !e.is_empty()), "{who} {method} {path}: {text}");
            }
        }
    }
    let (_, me) = s.call(Some(&reviewer), "GET", "/v1/me", None).await;
    assert_eq!((json(&me)["name"].as_str(), json(&me)["role"].as_str()), (Some("rev"), Some("reviewer")));
    s.finish().await;
}

async fn twenty_claimers(db: Db) {
    let s = serve(db, "race", |_| {}).await;
    let ids = cases(&s.app, 10).await;
    assert_eq!(ids.len(), 10);
    let mut tokens = Vec::new();
    for r in 0..20 {
        tokens.push(s.app.token(&format!("reviewer-{r}"), Role::Reviewer).await);
    }
    let addr = s.addr;
    let claims: Vec<_> = tokens
        .into_iter()
        .map(|t| tokio::spawn(async move { http_as(addr, Some(&t), "POST", "/v1/review/claim-next", None).await }))
        .collect();
    let mut got = Vec::new();
    for c in claims {
        let (status, text) = ok(c.await);
        match status {
            200 => got.push(json(&text)["id"].as_i64().unwrap_or_else(|| panic!("{text}"))),
            204 => {}
            other => panic!("claim-next answered {other}: {text}"),
        }
    }
    got.sort_unstable();
    let mut want = ids;
    want.sort_unstable();
    assert_eq!(got, want, "each case claimed exactly once");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reviewers_race_for_ten_cases_sqlite() {
    twenty_claimers(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reviewers_race_for_ten_cases_postgres() {
    twenty_claimers(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_claim_returns_the_case_and_the_late_decision_is_refused() {
    let s = serve(Db::Sqlite, "lease", |_| {}).await;
    let ids = cases(&s.app, 1).await;
    let ann = s.app.token("ann", Role::Reviewer).await;
    let bob = s.app.token("bob", Role::Reviewer).await;
    let (status, text) = s.call(Some(&ann), "POST", "/v1/review/claim-next", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["claimed_by"], "ann");
    let (status, _) = s.call(Some(&bob), "POST", "/v1/review/claim-next", None).await;
    assert_eq!(status, 204, "held by ann");
    // Fifteen minutes pass: the lease is moved into the past.
    let mut c = ok(sqlx::SqliteConnection::connect(&s.app.db_url()).await);
    ok(sqlx::query("UPDATE review_items SET lease_expires_at = '2000-01-01T00:00:00.000000Z'").execute(&mut c).await);
    let _ = c.close().await;
    let (status, text) = s.call(Some(&bob), "POST", "/v1/review/claim-next", None).await;
    assert_eq!((status, json(&text)["id"].as_i64()), (200, Some(ids[0])), "{text}");
    let path = format!("/v1/review/items/{}/decision", ids[0]);
    let (status, text) = s.call(Some(&ann), "POST", &path, Some(br#"{"action": "approve"}"#)).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("claimed by bob"), "{text}");
    assert_eq!(json(&text)["code"], "not_claimed_by_caller", "{text}");
    let (status, text) = s.call(Some(&bob), "POST", &path, Some(br#"{"action": "reject", "comment": "motion"}"#)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!((json(&text)["state"].as_str(), json(&text)["decision"].as_str()), (Some("decided"), Some("reject")));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_masks_are_validated_stored_and_exported() {
    let s = serve(Db::Sqlite, "correct", |_| {}).await;
    let ids = cases(&s.app, 2).await;
    let rev = s.app.token("rev", Role::Reviewer).await;
    let (status, text) = s.call(Some(&rev), "POST", "/v1/review/claim-next", None).await;
    assert_eq!(status, 200, "{text}");
    let case = json(&text);
    let id = case["id"].as_i64().unwrap_or_else(|| panic!("{text}"));
    assert_eq!(case["objects"]["mask"], format!("/v1/review/items/{id}/objects/mask"));
    assert_eq!(case["labels"][1]["name"], "grey_matter");
    assert_eq!(case["structures"][0]["pairwise_dice"], 0.7);
    let (status, bytes) = s.call(Some(&rev), "GET", &format!("/v1/review/items/{id}/objects/mask"), None).await;
    assert_eq!(status, 200);
    assert!(!bytes.is_empty());

    let path = format!("/v1/review/items/{id}/correction");
    let labels = testdata("process/labels.nii.gz");
    // Not NIfTI; another grid; a label the pipeline does not have: each refused with its reason.
    let small = imaging::Volume::new([10, 10, 10], vec![1u16; 1000], imaging::Affine::identity(), Default::default());
    let small_path = s.app.dir.path().join("small.nii.gz");
    ok(imaging::nifti::write_u16(&small_path, &ok(small)));
    let wrong_grid = ok(std::fs::read(&small_path));
    let mut vol = ok(imaging::nifti::read_labels(&labels, &Default::default()));
    vol.data_mut()[0] = 7;
    let seven = s.app.dir.path().join("seven.nii.gz");
    ok(imaging::nifti::write_u16(&seven, &vol));
    let seven = ok(std::fs::read(&seven));
    for (body, needle) in [
        (b"not a nifti file".to_vec(), "not a readable NIfTI"),
        (wrong_grid, "dimensions"),
        (seven, "labels 7 are not among the pipeline's (0, 1, 2)"),
    ] {
        let (status, text) = s.call(Some(&rev), "PUT", &path, Some(&body)).await;
        assert_eq!(status, 422, "{text}");
        assert!(json(&text)["error"].as_str().is_some_and(|e| e.contains(needle)), "{needle}: {text}");
    }
    let good = ok(std::fs::read(&labels));
    // The study's mask with 64 MiB of zeros behind it (under 100 KiB of gzip):
    // refused after one byte past the volume, nothing stored.
    let mut raw = Vec::new();
    ok(std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&good[..]), &mut raw));
    raw.resize(raw.len() + (64 << 20), 0);
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    ok(std::io::Write::write_all(&mut bomb, &raw));
    let bomb = ok(bomb.finish());
    drop(raw);
    let (status, text) = s.call(Some(&rev), "PUT", &path, Some(&bomb)).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("data after the volume"), "{text}");
    let (status, _) = s.call(Some(&rev), "GET", &format!("/v1/review/items/{id}/objects/correction"), None).await;
    assert_eq!(status, 404, "nothing stored");
    let other = s.app.token("other", Role::Reviewer).await;
    let (status, text) = s.call(Some(&other), "PUT", &path, Some(&good)).await;
    assert_eq!(status, 409, "only the holder corrects: {text}");
    let (status, text) = s.call(Some(&rev), "PUT", &path, Some(&good)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["decision"], "correct");
    let (status, stored) = s.call(Some(&rev), "GET", &format!("/v1/review/items/{id}/objects/correction"), None).await;
    assert_eq!(status, 200);
    // What is stored is re-encoded from the validated volume: the same voxels on the same grid.
    assert!(!stored.is_empty());
    let key = ok(s.app.store.review_case(id).await).and_then(|c| c.correction_key).expect("a correction key");
    let stored_path = s.app.dir.path().join("stored.nii.gz");
    ok(std::fs::write(&stored_path, ok(s.app.objects.get(&key).await)));
    let (a, b) = (
        ok(imaging::nifti::read_labels(&stored_path, &Default::default())),
        ok(imaging::nifti::read_labels(&labels, &Default::default())),
    );
    assert_eq!((a.dims(), a.data()), (b.dims(), b.data()));
    let (status, _) =
        s.call(Some(&rev), "POST", &format!("/v1/review/items/{id}/comments"), Some(br#"{"text": "fixed"}"#)).await;
    assert_eq!(status, 201);

    // The other case approved; both exported as an nnU-Net v2 dataset.
    let (_, text) = s.call(Some(&rev), "POST", "/v1/review/claim-next", None).await;
    let second = json(&text)["id"].as_i64().unwrap_or_else(|| panic!("{text}"));
    let decision = format!("/v1/review/items/{second}/decision");
    let (status, text) = s.call(Some(&rev), "POST", &decision, Some(br#"{"action": "approve"}"#)).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = s.call(Some(&rev), "POST", &decision, Some(br#"{"action": "bless"}"#)).await;
    assert_eq!(status, 400, "{text}");
    let out = s.app.dir.path().join("dataset");
    let summary = ok(scheduler::export::export_dataset(
        &s.app.store,
        &s.app.objects,
        &crate::helpers::pipeline(),
        Utc::now() - chrono::TimeDelta::hours(1),
        &out,
    )
    .await);
    assert_eq!((summary.cases, summary.corrected), (2, 1));
    let names: BTreeSet<String> =
        ok(std::fs::read_dir(out.join("labelsTr"))).map(|e| ok(e).file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, BTreeSet::from(["nb_0001.nii.gz".to_string(), "nb_0002.nii.gz".to_string()]));
    assert!(out.join("imagesTr/nb_0001_0000.nii.gz").is_file());
    let dataset = json(&ok(std::fs::read_to_string(out.join("dataset.json"))));
    assert_eq!(dataset["numTraining"], 2);
    assert_eq!(dataset["labels"]["white_matter"], 2);
    assert_eq!(dataset["file_ending"], ".nii.gz");
    let provenance = json(&ok(std::fs::read_to_string(out.join("provenance.json"))));
    let sources: Vec<&str> = provenance
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["label_source"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(sources, vec!["correction", "model"]);
    assert!(
        scheduler::export::export_dataset(&s.app.store, &s.app.objects, &crate::helpers::pipeline(), Utc::now(), &out)
            .await
            .is_err(),
        "a non-empty folder is refused"
    );
    assert!(ids.contains(&id) && ids.contains(&second));
    s.finish().await;
}
