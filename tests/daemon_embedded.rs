//! The embedded mode end to end, as a newcomer runs it: `neurobatch serve`
//! with the in-process queue, SQLite and local files, on NIfTI and DICOM
//! studies (some degraded or not brains at all, one corrupted) dropped into
//! its inbox — killed with SIGKILL in the middle of the run and started
//! again. Every good study must be processed exactly once, the corrupted one
//! must fail with its reason, the out-of-distribution ones must wait for a
//! reviewer, and nothing may stay queued or running.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{
    JobRow, Proc, embedded_settings, env, free_port, http_get, make_token, sha256_hex, sqlite_jobs, wait_for,
};

const STUDIES: [&str; 11] = [
    "t1_00.nii.gz",
    "t1_01.nii.gz",
    "t1_02.nii.gz",
    "t1_03.nii.gz",
    "t1_04.nii.gz",
    "t1_noisy.nii.gz",
    "phantom.nii.gz",
    "b0.nii.gz",
    "dicom_0",
    "dicom_1",
    "corrupt.nii.gz",
];
const PLANTED: [&str; 4] = ["ZZLEAKNAME", "SECRETGIVEN", "PIDLEAK314159", "ACCLEAK271828"];

#[test]
fn serve_processes_an_inbox_exactly_once_across_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    for name in STUDIES {
        common::daemon::copy_entry(&common::testdata(&format!("daemon/studies/{name}")), &inbox.join(name));
    }
    let db = root.join("data").join("nb.db");
    let port = free_port();
    let settings = embedded_settings(root, &db, &inbox, port);
    let vars = env(&settings);

    let mut first = Proc::start("serve-1", root, &["serve"], &vars);
    let succeeded = |rows: &[JobRow]| rows.iter().filter(|r| r.state == "succeeded").count();
    wait_for(
        "three studies processed before the kill",
        Duration::from_secs(240),
        || {
            first.assert_running();
            (succeeded(&sqlite_jobs(&db)) >= 3).then_some(())
        },
        || first.log_text(),
    );
    first.kill9();
    let log1 = first.log_text();

    let mut second = Proc::start("serve-2", root, &["serve"], &vars);
    let rows = wait_for(
        "every job final after the restart",
        Duration::from_secs(300),
        || {
            second.assert_running();
            let rows = sqlite_jobs(&db);
            let done =
                rows.len() == STUDIES.len() && rows.iter().all(|r| !matches!(r.state.as_str(), "queued" | "running"));
            done.then_some(rows)
        },
        || format!("{:#?}\n{}", sqlite_jobs(&db), second.log_text()),
    );

    // The status API answers while it runs, to a token holder only.
    let admin = make_token(root, &vars, "admin", "e2e-admin");
    let (status, _) = http_get(port, "nbt_wrong", "/v1/studies").expect("GET /v1/studies");
    assert_eq!(status, 401);
    let (status, list) = http_get(port, &admin, "/v1/studies").expect("GET /v1/studies");
    assert_eq!(status, 200, "{list}");
    let (status, detail) = http_get(port, &admin, &format!("/v1/studies/{}", 1)).expect("GET /v1/studies/1");
    assert_eq!(status, 200, "{detail}");
    assert!(detail.contains("succeeded") || detail.contains("failed"), "{detail}");
    let (status, _) = http_get(port, &admin, "/v1/studies/999999").expect("GET missing");
    assert_eq!(status, 404);

    // SIGTERM: a clean exit.
    let exit = second.terminate(Duration::from_secs(60));
    assert!(exit.success(), "serve exited with {exit}:\n{}", second.log_text());
    let log2 = second.log_text();

    // One job per study, none repeated by the kill.
    let mut keys: Vec<&str> = rows.iter().map(|r| r.study_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), STUDIES.len(), "{rows:#?}");
    assert!(rows.iter().all(|r| r.version == 1), "{rows:#?}");

    let key_of = |name: &str| sha256_hex(&inbox.join(name));
    let row =
        |name: &str| rows.iter().find(|r| r.study_key == key_of(name)).unwrap_or_else(|| panic!("{name}: {rows:#?}"));
    let corrupt = row("corrupt.nii.gz");
    assert_eq!(corrupt.state, "failed", "{corrupt:?}");
    assert_eq!(corrupt.attempts, 1, "a broken input is not retried: {corrupt:?}");
    let reason = corrupt.last_error.as_deref().unwrap_or("");
    assert!(reason.contains("corrupt.nii.gz") || reason.contains("nii"), "names the input: {reason}");
    for name in ["phantom.nii.gz", "b0.nii.gz"] {
        let r = row(name);
        assert_eq!(
            (r.decision.as_deref(), r.review_items),
            (Some("review"), 1),
            "{name} is out of distribution: {r:?}"
        );
    }
    let good: Vec<&JobRow> = rows.iter().filter(|r| r.study_key != key_of("corrupt.nii.gz")).collect();
    for r in &good {
        assert_eq!(r.state, "succeeded", "{r:?}");
        for output in ["image", "mask", "entropy", "mutual_information", "report"] {
            let key = r.object_keys.get(output).unwrap_or_else(|| panic!("{output} of {r:?}"));
            assert!(root.join("objects").join(key).is_file(), "{key} stored");
        }
        assert_eq!(r.review_items, i64::from(r.decision.as_deref() == Some("review")), "{r:?}");
    }
    // DICOM studies also get a SEG and an SR (issue 14); NIfTI ones say why they do not.
    let objects = root.join("objects");
    let report_of = |r: &JobRow| -> serde_json::Value {
        let text = std::fs::read_to_string(objects.join(&r.object_keys["report"])).expect("stored report");
        serde_json::from_str(&text).expect("report json")
    };
    // A DICOM study is keyed by its StudyInstanceUID, not a file hash: found by its report.
    let dicom: Vec<&JobRow> = good.iter().copied().filter(|r| report_of(r)["input"]["format"] == "dicom").collect();
    assert_eq!(dicom.len(), 2, "the two DICOM studies: {rows:#?}");
    for r in &dicom {
        let report = report_of(r);
        let listed = report["dicom"]["objects"].as_array().unwrap_or_else(|| panic!("{r:?}: {}", report["dicom"]));
        assert_eq!(listed.len(), 2, "{r:?}: {}", report["dicom"]);
        for output in ["seg", "sr"] {
            let key = r.object_keys.get(output).unwrap_or_else(|| panic!("{output} of {r:?}"));
            assert!(objects.join(key).is_file(), "{key} stored");
        }
    }
    let nifti = report_of(row("t1_00.nii.gz"));
    assert!(nifti["dicom"]["not_written"].as_str().is_some_and(|w| w.contains("nifti")), "{}", nifti["dicom"]);
    // The stored SEG read back by highdicom equals the stored mask voxel for voxel in world
    // coordinates; the SR's volumes are the report's; dciodvfy finds no error in either.
    let r = dicom[0];
    let checked = common::check_dicom_results(
        &objects.join(&r.object_keys["seg"]),
        Some(&objects.join(&r.object_keys["sr"])),
        &objects.join(&r.object_keys["mask"]),
    );
    let report = report_of(r);
    for structure in report["structures"].as_array().expect("structures").iter().filter(|s| s["label"] != 0) {
        let name = structure["name"].as_str().expect("name");
        let seg = &checked["seg"]["per_segment"][name];
        assert_eq!(seg["mismatched"], 0, "{name}: {seg}");
        assert_eq!(seg["compared"], structure["voxels"], "{name}: {seg}");
        let group = checked["sr"]["volumetric_groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["tracking_id"] == name))
            .unwrap_or_else(|| panic!("{name} in {}", checked["sr"]));
        let ml = group["measurements"]["Volume"].as_f64().expect("volume");
        let want = structure["volume_ml"].as_f64().expect("volume_ml");
        assert!((ml - want).abs() <= 1e-6 * want, "{name}: SR {ml} ml, report {want} ml");
    }
    for kind in ["seg", "sr"] {
        assert_eq!(checked["dciodvfy"][kind]["errors"], serde_json::json!([]), "{kind}: {}", checked["dciodvfy"]);
    }
    for secret in PLANTED {
        assert!(!report.to_string().contains(secret), "{secret} reached report.json");
    }

    // Exactly one set of result objects per study: a rerun overwrites, never adds.
    let stored = walk(&root.join("objects").join("study"));
    assert_eq!(
        stored,
        good.len() * 5 + 2 * 3,
        "result objects (two DICOM studies with a SEG, an SR and the SEG's recipe each)"
    );

    for secret in PLANTED {
        assert!(!log1.contains(secret) && !log2.contains(secret), "{secret} reached a log line");
    }
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map_or(0, |entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
}
