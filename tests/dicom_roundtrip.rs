//! The department's PACS end to end (issue 14): a real Orthanc holds a DICOM
//! study and C-STOREs it to `neurobatch serve`; the daemon processes it and
//! sends its results back as DICOM, by C-STORE and by STOW-RS — the SEG and
//! the SR appear in Orthanc under the same study, once, and again once after a
//! re-send (their UIDs are deterministic). A destination that does not answer keeps its sends
//! pending with a backoff and the reason, visible in `/v1/admin/stats`, while
//! the first one is served.

mod common;

use std::time::Duration;

use common::daemon::{Proc, embedded_settings, env, free_port, http_get, make_token, sqlite_jobs, wait_for};
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

#[test]
fn orthanc_sends_a_study_and_gets_its_seg_and_sr_back_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let db = root.join("data").join("nb.db");
    let (port, scp_port, dead_port) = (free_port(), free_port(), free_port());
    let orthanc = Orthanc::start(|c| {
        c["DicomModalities"] = serde_json::json!({ "neurobatch": ["NEUROBATCH", "127.0.0.1", scp_port] });
    });
    let mut settings = embedded_settings(root, &db, &inbox, port);
    settings.extend([
        ("dicom.listen", format!("127.0.0.1:{scp_port}")),
        ("dicom.allowed_callers", "ORTHANC@127.0.0.1".into()),
        ("dicom.destinations", format!("ORTHANC@127.0.0.1:{},DEAD@127.0.0.1:{dead_port}", orthanc.dicom_port)),
        // And by STOW-RS to Orthanc's DICOMweb plugin.
        ("pacs.stow_url", format!("http://{}/dicom-web", orthanc.http)),
        // Every case, routed or not: the policy itself is the scheduler's unit test.
        ("dicom.send", "all".into()),
    ]);
    let vars = env(&settings);
    let mut serve = Proc::start("serve", root, &["serve"], &vars);
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
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(common::testdata("daemon/studies/dicom_0"))
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
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("objects").join(&job.object_keys["report"])).expect("report"),
    )
    .expect("report json");
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
    let admin = make_token(root, &vars, "admin", "roundtrip-admin");
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
