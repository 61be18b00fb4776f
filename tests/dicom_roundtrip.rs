//! The department's PACS end to end (issue 14): a real Orthanc holds a DICOM
//! study and C-STOREs it to `neurobatch serve`; the daemon processes it and
//! sends its results back as DICOM, by C-STORE and by STOW-RS — the SEG and
//! the SR appear in Orthanc under the same study, once, and again once after a
//! re-send (their UIDs are deterministic). A destination that does not answer keeps its sends
//! pending with a backoff and the reason, visible in `/v1/admin/stats`, while
//! the first one is served.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{JobRow, Proc, embedded_settings, env, free_port, http_get, make_token, sqlite_jobs, wait_for};
use common::orthanc::Orthanc;

/// The sends recorded in the job store: (destination, output, state, attempts, last error).
fn sends(db: &std::path::Path) -> Vec<(String, String, String, i64, Option<String>)> {
    use sqlx::Connection as _;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let Ok(mut c) = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await else {
            return Vec::new();
        };
        let rows = sqlx::query_as(
            "SELECT destination, output, state, attempts, last_error FROM dicom_sends ORDER BY destination, output",
        )
        .fetch_all(&mut c)
        .await
        .unwrap_or_default();
        let _ = c.close().await;
        rows
    })
}

fn sql(db: &std::path::Path, statement: &str) {
    use sqlx::Connection as _;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("sqlite");
        sqlx::query(statement).execute(&mut c).await.expect(statement);
        let _ = c.close().await;
    });
}

/// Orthanc's series of a study: (modality, instance ids).
fn orthanc_series(orthanc: &Orthanc, study: &str) -> Vec<(String, Vec<String>)> {
    let series = orthanc.get_json(&format!("/studies/{study}/series"));
    series
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| {
                    let modality = s["MainDicomTags"]["Modality"].as_str().unwrap_or_default().to_string();
                    let instances = s["Instances"]
                        .as_array()
                        .map(|i| i.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    (modality, instances)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `neurobatch serve` on the embedded backends with its Storage SCP, a real Orthanc that knows
/// it as a modality, and the test study held by Orthanc, C-STOREd to neurobatch and processed.
struct RoundTrip {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
    port: u16,
    vars: Vec<(String, String)>,
    orthanc: Orthanc,
    serve: Proc,
    /// Orthanc's id of the study.
    study: String,
    job: JobRow,
    report: serde_json::Value,
}

impl RoundTrip {
    /// `settings(root, orthanc)`: the test's own settings, beside the embedded ones and the SCP's.
    fn start(settings: impl FnOnce(&Path, &Orthanc) -> Vec<(&'static str, String)>) -> RoundTrip {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let inbox = root.join("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let db = root.join("data").join("nb.db");
        let (port, scp_port) = (free_port(), free_port());
        let orthanc = Orthanc::start(|c| {
            c["DicomModalities"] = serde_json::json!({ "neurobatch": ["NEUROBATCH", "127.0.0.1", scp_port] });
        });
        let mut all = embedded_settings(&root, &db, &inbox, port);
        all.extend([
            ("dicom.listen", format!("127.0.0.1:{scp_port}")),
            ("dicom.allowed_callers", "ORTHANC@127.0.0.1".into()),
        ]);
        all.extend(settings(&root, &orthanc));
        let vars = env(&all);
        let serve = Proc::start("serve", &root, &["serve"], &vars);
        // The Storage SCP listens once serve has loaded its models; a PACS would retry, the test waits.
        wait_for(
            "neurobatch's Storage SCP listening",
            Duration::from_secs(120),
            || {
                serve.assert_running();
                std::net::TcpStream::connect(("127.0.0.1", scp_port)).ok()
            },
            || serve.log_text(),
        );

        // The PACS holds a study and sends it to neurobatch, as a routing rule would.
        let mut files: Vec<PathBuf> = std::fs::read_dir(common::testdata("daemon/studies/dicom_0"))
            .expect("study")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let study = orthanc.upload(&files);
        let (status, text) = orthanc.request("POST", "/modalities/neurobatch/store", "text/plain", study.as_bytes());
        assert_eq!(status, 200, "C-STORE from Orthanc: {text}\n{}", serve.log_text());

        let job = wait_for(
            "the study processed",
            Duration::from_secs(300),
            || {
                serve.assert_running();
                sqlite_jobs(&db).into_iter().find(|r| r.state == "succeeded")
            },
            || format!("{:#?}\n{}", sqlite_jobs(&db), serve.log_text()),
        );
        let report = serde_json::from_str(
            &std::fs::read_to_string(root.join("objects").join(&job.object_keys["report"])).expect("report"),
        )
        .expect("report json");
        RoundTrip { _dir: dir, root, db, port, vars, orthanc, serve, study, job, report }
    }
}

#[test]
fn orthanc_sends_a_study_and_gets_its_seg_and_sr_back_once() {
    let dead_port = free_port();
    let RoundTrip { _dir, root, db, port, vars, orthanc, mut serve, study, report, .. } =
        RoundTrip::start(|_, orthanc| {
            vec![
                ("dicom.destinations", format!("ORTHANC@127.0.0.1:{},DEAD@127.0.0.1:{dead_port}", orthanc.dicom_port)),
                // And by STOW-RS to Orthanc's DICOMweb plugin.
                ("pacs.stow_url", format!("http://{}/dicom-web", orthanc.http)),
                // Every case, routed or not: the policy itself is the scheduler's unit test.
                ("dicom.send", "all".into()),
            ]
        });
    let uid_of = |file: &str| {
        report["dicom"]["objects"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["file"] == file))
            .and_then(|o| o["sop_instance_uid"].as_str())
            .unwrap_or_else(|| panic!("{file} in {}", report["dicom"]))
            .to_string()
    };

    // The SEG and the SR reach Orthanc under the same study.
    let arrived = |orthanc: &Orthanc| {
        let series = orthanc_series(orthanc, &study);
        let of = |m: &str| series.iter().find(|s| s.0 == m).map(|s| s.1.clone());
        match (of("SEG"), of("SR")) {
            (Some(seg), Some(sr)) => Some((seg, sr)),
            _ => None,
        }
    };
    let (seg, sr) = wait_for(
        "the SEG and the SR in Orthanc",
        Duration::from_secs(120),
        || arrived(&orthanc),
        || format!("{:?}\n{:#?}\n{}", orthanc_series(&orthanc, &study), sends(&db), serve.log_text()),
    );
    assert_eq!((seg.len(), sr.len()), (1, 1), "one instance each");
    for (instance, file) in [(&seg[0], "seg.dcm"), (&sr[0], "sr.dcm")] {
        let tags = orthanc.get_json(&format!("/instances/{instance}/simplified-tags"));
        assert_eq!(tags["SOPInstanceUID"].as_str(), Some(uid_of(file).as_str()), "{file}: {tags}");
    }
    let seg_tags = orthanc.get_json(&format!("/instances/{}/simplified-tags", seg[0]));
    assert_eq!(seg_tags["Modality"], "SEG");
    assert_eq!(seg_tags["SegmentSequence"].as_array().map(Vec::len), Some(2), "grey and white matter");

    // The peer that does not answer: pending, with a backoff and the reason; visible to an admin.
    // The outbox sends one row at a time: wait until the dead destination was tried and every other
    // row had its turn (the assertions below then say how each one ended).
    let rows = wait_for(
        "the dead destination tried and the other sends made",
        Duration::from_secs(120),
        || {
            let rows = sends(&db);
            let settled = rows.len() == 6
                && rows.iter().all(|r| if r.0.starts_with("DEAD@") { r.3 >= 1 } else { r.2 != "pending" });
            settled.then_some(rows)
        },
        || format!("{:#?}", sends(&db)),
    );
    assert_eq!(rows.len(), 6, "two objects to three destinations: {rows:#?}");
    for r in &rows {
        if r.0.starts_with("ORTHANC@") || r.0 == "stow-rs" {
            assert_eq!((r.2.as_str(), r.3), ("sent", 1), "{r:?}");
        } else {
            assert_eq!(r.2, "pending", "{r:?}");
            let reason = r.4.as_deref().unwrap_or_default();
            assert!(reason.contains(&format!("DEAD@127.0.0.1:{dead_port}")), "the reason names the peer: {reason}");
        }
    }
    let admin = make_token(&root, &vars, "admin", "roundtrip-admin");
    let (status, stats) = http_get(port, &admin, "/v1/admin/stats").expect("stats");
    assert_eq!(status, 200, "{stats}");
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats json");
    assert_eq!(stats["dicom_sends"]["sent"], 4, "{stats}");
    assert_eq!(stats["dicom_sends"]["pending"], 2, "{stats}");

    // Sent again (as after a crash between the C-STORE and its record): Orthanc still holds
    // one instance of each, since the UIDs are the same (the STOW-RS copies already were).
    sql(&db, "UPDATE dicom_sends SET state = 'pending', attempts = 0 WHERE destination LIKE 'ORTHANC@%'");
    wait_for(
        "the re-send",
        Duration::from_secs(60),
        || sends(&db).iter().filter(|r| r.0.starts_with("ORTHANC@")).all(|r| r.2 == "sent").then_some(()),
        || format!("{:#?}", sends(&db)),
    );
    let (seg_again, sr_again) = arrived(&orthanc).expect("still there");
    assert_eq!((seg_again, sr_again), (seg, sr), "replaced, not duplicated");

    let exit = serve.terminate(Duration::from_secs(60));
    assert!(exit.success(), "serve exited with {exit}:\n{}", serve.log_text());
    for secret in ["ZZLEAKNAME", "SECRETGIVEN", "PIDLEAK314159", "ACCLEAK271828"] {
        assert!(!serve.log_text().contains(secret), "{secret} reached a log line");
    }
}

/// The study's model folder with routing bounds that send every case to review: a copy of
/// `models/` whose segmentation manifest says `ood_score_max = 0`.
fn models_that_route_everything(root: &Path) -> PathBuf {
    let from = common::root().join("models");
    let to = root.join("models");
    common::daemon::copy_entry(&from, &to);
    let manifest = to.join("brain-tissue").join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let routed = with_line(&text, "ood_score_max = ", "0.0");
    assert_ne!(routed, text, "the manifest has an ood_score_max");
    std::fs::write(&manifest, routed).expect("manifest");
    to
}

/// `text` with the value after `key` (to the end of its line) replaced by `value`.
fn with_line(text: &str, key: &str, value: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with(key) { format!("{key}{value}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `dicom.send = "after_review"` with a routed case: nothing reaches the PACS while the case
/// waits; the reviewer's corrected mask then reaches Orthanc as a new instance of the model's
/// SEG series (and no SR, whose figures describe the model's mask), built by the scheduler
/// from what the result stored. highdicom reads the corrected labels back voxel for voxel and
/// dciodvfy finds no error in it.
#[test]
fn a_reviewers_corrected_mask_reaches_orthanc_as_a_new_seg_after_review() {
    let RoundTrip { _dir, root, db, port, vars, orthanc, mut serve, study, job, report } =
        RoundTrip::start(|root, orthanc| {
            vec![
                ("pipeline.models_dir", models_that_route_everything(root).display().to_string()),
                ("dicom.destinations", format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port)),
                ("dicom.send", "after_review".into()),
            ]
        });
    assert_eq!((job.decision.as_deref(), job.review_items), (Some("review"), 1), "{job:?}");
    let objects = root.join("objects");
    assert!(job.object_keys.contains_key("seg_recipe"), "the SEG's recipe is stored: {:?}", job.object_keys);

    // While the case waits, nothing is sent (the scheduler passes every second).
    std::thread::sleep(Duration::from_secs(4));
    assert!(sends(&db).is_empty(), "{:#?}", sends(&db));
    assert!(orthanc_series(&orthanc, &study).iter().all(|s| s.0 != "SEG"), "nothing in the PACS yet");

    // The reviewer moves the upper half of the grey matter to white matter and uploads it.
    let reviewer = make_token(&root, &vars, "reviewer", "roundtrip-reviewer");
    let (status, case) = common::daemon::http_post(port, &reviewer, "/v1/review/claim-next", "").expect("claim");
    assert_eq!(status, 200, "{case}");
    let id = serde_json::from_str::<serde_json::Value>(&case).expect("case")["id"].as_i64().expect("id");
    let mask = imaging::nifti::read_labels(&objects.join(&job.object_keys["mask"]), &Default::default())
        .expect("the stored mask");
    let mut corrected = mask.clone();
    let half = corrected.data().len() / 2;
    let moved = corrected.data_mut()[half..].iter_mut().filter(|v| **v == 1).map(|v| *v = 2).count();
    assert!(moved > 0, "the correction changes something");
    let corrected_path = root.join("corrected.nii.gz");
    imaging::nifti::write_u16(&corrected_path, &corrected).expect("write");
    let body = std::fs::read(&corrected_path).expect("read");
    let path = format!("/v1/review/items/{id}/correction");
    let (status, text) = common::daemon::http_put_bytes(port, &reviewer, &path, &body).expect("correction");
    assert_eq!(status, 200, "{text}");

    let seg = wait_for(
        "the corrected SEG in Orthanc",
        Duration::from_secs(120),
        || orthanc_series(&orthanc, &study).into_iter().find(|s| s.0 == "SEG").map(|s| s.1),
        || format!("{:?}\n{:#?}\n{}", orthanc_series(&orthanc, &study), sends(&db), serve.log_text()),
    );
    let rows = wait_for(
        "the send recorded",
        Duration::from_secs(30),
        || sends(&db).iter().all(|r| r.2 == "sent").then(|| sends(&db)),
        || format!("{:#?}", sends(&db)),
    );
    assert_eq!(rows.len(), 1, "the corrected SEG only, to the one destination: {rows:#?}");
    assert_eq!((rows[0].1.as_str(), rows[0].3), ("seg", 1), "{rows:#?}");
    assert!(orthanc_series(&orthanc, &study).iter().all(|s| s.0 != "SR"), "no SR for a corrected case");
    assert_eq!(seg.len(), 1, "one instance");

    // A new instance of the model's SEG series, said to be corrected.
    let first = report["dicom"]["objects"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["file"] == "seg.dcm"))
        .unwrap_or_else(|| panic!("seg.dcm in {}", report["dicom"]));
    let tags = orthanc.get_json(&format!("/instances/{}/simplified-tags", seg[0]));
    assert_eq!(tags["SeriesInstanceUID"], first["series_uid"], "{tags}");
    assert_ne!(tags["SOPInstanceUID"], first["sop_instance_uid"], "{tags}");
    assert!(tags["SeriesDescription"].as_str().is_some_and(|d| d.ends_with("(corrected)")), "{tags}");
    let kinds: Vec<&str> = tags["SegmentSequence"]
        .as_array()
        .map(|s| s.iter().filter_map(|i| i["SegmentAlgorithmType"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, vec!["SEMIAUTOMATIC"; 2], "{tags}");

    // What was sent is the stored revision, and it is the reviewer's mask.
    let stored = objects.join(
        job.object_keys["seg"].rsplit_once('/').map(|(d, _)| format!("{d}/corrections/seg-r1.dcm")).expect("key"),
    );
    let checked = common::check_dicom_results(&stored, None, &corrected_path);
    for name in ["grey_matter", "white_matter"] {
        let s = &checked["seg"]["per_segment"][name];
        assert_eq!(s["mismatched"], 0, "{name}: {s}");
        let value = if name == "grey_matter" { 1 } else { 2 };
        let voxels = corrected.data().iter().filter(|&&v| v == value).count();
        assert_eq!(s["compared"].as_u64(), Some(voxels as u64), "{name}: {s}");
    }
    assert_eq!(checked["dciodvfy"]["seg"]["errors"], serde_json::json!([]), "{}", checked["dciodvfy"]);

    let exit = serve.terminate(Duration::from_secs(60));
    assert!(exit.success(), "serve exited with {exit}:\n{}", serve.log_text());
}
