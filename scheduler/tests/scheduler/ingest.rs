//! Ingest: inbox entries, quiet period, idempotency, versions, selection,
//! ineligible studies, corrupt NIfTI, the S3 prefix poll.

use neurobatch_core::config::Config;
use neurobatch_core::domain::{JobKey, JobKeyInput, Priority, StudyIdentity};
use scheduler::Submission;
use sha2::{Digest, Sha256};

use crate::helpers::{App, Db, age, copy_files, ok, pipeline, testdata};

fn key(identity: &StudyIdentity) -> JobKey {
    let p = pipeline();
    ok(JobKey::compute(&JobKeyInput {
        identity,
        pipeline: &p.name,
        model_version: &p.model_version,
        harmonizer_version: &p.harmonizer_version,
    }))
}

fn enqueued(sub: &Submission) -> (i64, String, i64, bool, String, Vec<String>) {
    match sub {
        Submission::Enqueued { job_id, study_key, version, forced, source_uri, series, .. } => {
            (*job_id, study_key.clone(), *version, *forced, source_uri.clone(), series.clone())
        }
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// The study's StudyInstanceUID and the series the documented rule picks
/// (most slices, ties to the lowest UID), read independently with the DICOM reader.
fn expected_dicom(dir: &std::path::Path) -> (String, String, usize) {
    let report = ok(imaging::dicom::scan_folder(dir, &imaging::dicom::ScanOptions::default()));
    let best = report
        .series
        .iter()
        .max_by(|a, b| a.slices.cmp(&b.slices).then_with(|| b.series_uid.cmp(&a.series_uid)))
        .unwrap_or_else(|| panic!("no series in {}", dir.display()));
    let study = best.meta().study_uid.clone().unwrap_or_default();
    (study, best.series_uid.clone(), best.slices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nifti_file_and_a_dicom_folder_become_one_job_each() {
    let app = App::start(Db::Sqlite, "two", |_| {}).await;
    let nifti = testdata("nifti/anatomical.nii");
    ok(std::fs::create_dir_all(&app.inbox));
    ok(std::fs::copy(&nifti, app.inbox.join("anatomical.nii")));
    copy_files(&testdata("dicom/derived/two_series"), &app.inbox.join("study-a"), |_, _| true);
    // Hidden and partial entries are not studies.
    ok(std::fs::write(app.inbox.join(".hidden.nii"), b"x"));
    ok(std::fs::write(app.inbox.join("upload.nii.part"), b"x"));
    age(&app.inbox, 120);

    let subs = ok(app.sched.scan_inbox_once().await);
    assert_eq!(subs.len(), 2, "{subs:?}");

    // The NIfTI file: known by the SHA-256 of its bytes, its one "series" is its name.
    let bytes = ok(std::fs::read(&nifti));
    let sha = hex::encode(Sha256::digest(&bytes));
    let (job_id, study_key, version, forced, uri, series) = enqueued(&subs[0]);
    assert_eq!((study_key.as_str(), version, forced), (sha.as_str(), 1, false));
    assert_eq!(series, vec!["anatomical.nii".to_string()]);
    let job = ok(app.store.job(job_id).await).unwrap_or_else(|| panic!("job {job_id}"));
    assert_eq!(job.key, key(&StudyIdentity::Content(sha.clone())));
    assert_eq!(job.source_uri, uri);
    assert_eq!(job.priority, Priority::Routine);
    assert_eq!(job.max_attempts, i64::from(app.config.worker.max_attempts));
    // The snapshot is a copy in the object store that the worker reads.
    let prefix = uri.strip_prefix(&format!("{}/", app.objects.url_of(""))).unwrap_or_else(|| panic!("{uri}"));
    assert!(prefix.starts_with("studies/"), "{prefix}");
    let keys = ok(app.objects.list(&format!("{prefix}/")).await);
    assert_eq!(keys, vec![format!("{prefix}/anatomical.nii")]);
    assert_eq!(ok(app.objects.get(&keys[0]).await), bytes);

    // The DICOM folder: StudyInstanceUID + the selected series; only its files are copied.
    let (study_uid, series_uid, slices) = expected_dicom(&app.inbox.join("study-a"));
    let (job_id, study_key, _, _, uri, series) = enqueued(&subs[1]);
    assert_eq!(study_key, study_uid);
    assert_eq!(series, vec![series_uid.clone()]);
    let job = ok(app.store.job(job_id).await).unwrap_or_else(|| panic!("job {job_id}"));
    let identity = StudyIdentity::Dicom { study_uid: study_uid.clone(), series_uids: vec![series_uid.clone()] };
    assert_eq!(job.key, key(&identity));
    assert_eq!(job.series_uids, vec![series_uid.clone()]);
    let prefix = uri.strip_prefix(&format!("{}/", app.objects.url_of(""))).unwrap_or_else(|| panic!("{uri}"));
    let copied = ok(app.objects.list(&format!("{prefix}/")).await);
    assert_eq!(copied.len(), slices, "one object per instance of the selected series");
    // What was copied is exactly the selected series.
    let copy_dir = app.dir.path().join("objects").join(prefix);
    let (_, copied_series, copied_slices) = expected_dicom(&copy_dir);
    assert_eq!((copied_series, copied_slices), (series_uid.clone(), slices));
    // The series row carries the scanner fields, never patient ones.
    let detail = ok(app.store.study(job.study_id).await).unwrap_or_else(|| panic!("study"));
    assert_eq!(detail.series.len(), 1);
    let s = &detail.series[0].series;
    assert_eq!(s.modality.as_deref(), Some("MR"));
    assert_eq!(s.manufacturer.as_deref(), Some("NEUROBATCH"));
    assert_eq!(s.manufacturer_model.as_deref(), Some("MNI-SYNTH"));
    assert_eq!(s.station_name.as_deref(), Some("STATION1"));
    assert_eq!(s.field_strength_t, Some(3.0));
    assert_eq!(s.slices, Some(slices as i64));

    // Unchanged entries are not staged again …
    assert_eq!(ok(app.sched.scan_inbox_once().await), vec![]);
    // … and after a restart (empty cache) they are found to exist: no duplicate.
    let again = app.restarted().await;
    let subs = ok(again.scan_inbox_once().await);
    assert_eq!(subs.len(), 2);
    assert!(subs.iter().all(|s| matches!(s, Submission::Existing { .. })), "{subs:?}");
    let jobs: i64 = ok(app.store.count_by_state().await).iter().map(|(_, n)| n).sum();
    assert_eq!(jobs, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_waits_for_its_quiet_period() {
    let app = App::start(Db::Sqlite, "quiet", |c| c.scheduler.quiet_period_secs = 60).await;
    let study = app.inbox.join("axial");
    copy_files(&testdata("dicom/derived/axial"), &study, |_, _| true);
    let subs = ok(app.sched.scan_inbox_once().await);
    assert!(matches!(subs.as_slice(), [Submission::NotReady { reason }] if reason.contains("60 s")), "{subs:?}");
    assert!(ok(app.store.list_studies(10, 0).await).is_empty());
    // 30 s of quiet is not enough, 61 s is.
    age(&app.inbox, 30);
    assert!(matches!(ok(app.sched.scan_inbox_once().await).as_slice(), [Submission::NotReady { .. }]));
    age(&app.inbox, 61);
    let subs = ok(app.sched.scan_inbox_once().await);
    assert!(matches!(subs.as_slice(), [Submission::Enqueued { .. }]), "{subs:?}");
    // A file still being written keeps the entry waiting whatever its age.
    let other = app.inbox.join("other");
    copy_files(&testdata("dicom/derived/coronal"), &other, |_, _| true);
    ok(std::fs::write(other.join("incoming.dcm.part"), b"partial"));
    age(&other, 600);
    let subs = ok(app.sched.scan_inbox_once().await);
    assert!(
        matches!(subs.as_slice(), [Submission::NotReady { reason }] if reason.contains("still being written")),
        "{subs:?}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_study_twice_is_one_job_and_new_instances_make_a_new_version() {
    let app = App::start(Db::Sqlite, "versions", |c| c.pipeline.min_slices = 10).await;
    let src = testdata("dicom/derived/axial");
    let study = app.inbox.join("axial");
    assert_eq!(copy_files(&src, &study, |i, _| i < 20), 20);
    age(&app.inbox, 120);
    let subs = ok(app.sched.scan_inbox_once().await);
    let (first_id, _, version, _, first_uri, _) = enqueued(&subs[0]);
    assert_eq!(version, 1);

    // The same folder submitted again (HTTP, backfill): the same job.
    let sub = ok(app.sched.submit(&study.display().to_string(), Priority::Routine, false).await);
    assert!(matches!(&sub, Submission::Existing { job_id, .. } if *job_id == first_id), "{sub:?}");
    // The same study copied under another name is the same snapshot too.
    let copy = app.dir.path().join("copy-of-axial");
    copy_files(&study, &copy, |_, _| true);
    let sub = ok(app.sched.submit(&format!("file://{}", copy.display()), Priority::Stat, false).await);
    assert!(matches!(&sub, Submission::Existing { job_id, .. } if *job_id == first_id), "{sub:?}");

    // The rest of the instances arrive after the job was recorded: a new version of the same key.
    assert_eq!(copy_files(&src, &study, |i, _| i >= 20), 21);
    age(&app.inbox, 120);
    let subs = ok(app.sched.scan_inbox_once().await);
    let (second_id, _, version, forced, second_uri, _) = enqueued(&subs[0]);
    assert_eq!((version, forced), (2, true));
    assert_ne!(second_uri, first_uri);
    let first = ok(app.store.job(first_id).await).unwrap_or_else(|| panic!("job"));
    let second = ok(app.store.job(second_id).await).unwrap_or_else(|| panic!("job"));
    assert_eq!(first.key, second.key);
    assert_eq!(ok(app.store.jobs_by_key(&first.key).await).len(), 2);
    let detail = ok(app.store.study(second.study_id).await).unwrap_or_else(|| panic!("study"));
    assert_eq!(detail.study.source_uri, second_uri);

    // An explicit force makes a third version of unchanged content.
    let sub = ok(app.sched.submit(&study.display().to_string(), Priority::Stat, true).await);
    let (_, _, version, forced, uri, _) = enqueued(&sub);
    assert_eq!((version, forced, uri), (3, true, second_uri));
    app.finish().await;
}

/// The description of the series a two-series study's job got under the rule `configure` sets.
async fn selected_description(name: &str, configure: impl FnOnce(&mut Config)) -> Option<String> {
    let app = App::start(Db::Sqlite, name, configure).await;
    let study = app.dir.path().join("two");
    copy_files(&testdata("dicom/derived/two_series"), &study, |_, _| true);
    let sub = ok(app.sched.submit(&study.display().to_string(), Priority::Routine, false).await);
    let (job_id, ..) = enqueued(&sub);
    let job = ok(app.store.job(job_id).await).unwrap_or_else(|| panic!("job"));
    let detail = ok(app.store.study(job.study_id).await).unwrap_or_else(|| panic!("study"));
    app.finish().await;
    detail.series[0].series.description.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_selection_rules_pick_one_series_or_record_why_none() {
    // Only coronal stacks: of the two series, the coronal one.
    let picked = selected_description("select", |c| c.pipeline.orientations = vec!["coronal".into()]).await;
    assert_eq!(picked.as_deref(), Some("PAIR CORONAL"));
    // Description regex as written: case-sensitive unless (?i).
    let picked = selected_description("select2", |c| c.pipeline.series_description = "(?i)pair axial".into()).await;
    assert_eq!(picked.as_deref(), Some("PAIR AXIAL"));

    // Nothing eligible: recorded with every series' reason, no job, no patient field.
    let app = App::start(Db::Sqlite, "inelig", |c| {
        c.pipeline.min_slices = 1000;
        c.pipeline.modalities = vec!["MR".into()];
    })
    .await;
    let study = app.dir.path().join("two");
    copy_files(&testdata("dicom/derived/two_series"), &study, |_, _| true);
    let sub = ok(app.sched.submit(&study.display().to_string(), Priority::Routine, false).await);
    let Submission::Ineligible { study_id, study_key, reason } = &sub else { panic!("expected ineligible: {sub:?}") };
    let (study_uid, _, _) = expected_dicom(&study);
    assert_eq!(study_key, &study_uid);
    assert!(reason.contains("41 slices, fewer than 1000"), "{reason}");
    assert!(reason.contains("PAIR AXIAL") && reason.contains("PAIR CORONAL"), "{reason}");
    for leak in ["ZZLEAKNAME", "PIDLEAK314159", "19010203", "ACCLEAK271828"] {
        assert!(!reason.contains(leak), "{reason}");
    }
    let detail = ok(app.store.study(*study_id).await).unwrap_or_else(|| panic!("study"));
    assert_eq!(detail.study.ineligible_reason.as_deref(), Some(reason.as_str()));
    assert!(detail.jobs.is_empty());

    // A folder without any DICOM is ineligible too, with the reason.
    let sub =
        ok(app.sched.submit(&testdata("dicom/bad/not_dicom").display().to_string(), Priority::Routine, false).await);
    let Submission::Ineligible { reason, .. } = &sub else { panic!("expected ineligible: {sub:?}") };
    assert!(reason.contains("no DICOM image series in 2 files (2 x not a DICOM file)"), "{reason}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_nifti_file_is_enqueued_for_the_worker_to_fail() {
    let app = App::start(Db::Sqlite, "corrupt", |_| {}).await;
    ok(std::fs::create_dir_all(&app.inbox));
    let garbage = b"this is not gzip, nor a NIfTI header".to_vec();
    ok(std::fs::write(app.inbox.join("broken.nii.gz"), &garbage));
    age(&app.inbox, 10);
    let subs = ok(app.sched.scan_inbox_once().await);
    let (_, study_key, ..) = enqueued(&subs[0]);
    assert_eq!(study_key, hex::encode(Sha256::digest(&garbage)));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_are_refused_with_their_name() {
    let app = App::start(Db::Sqlite, "bad", |_| {}).await;
    let missing = app.dir.path().join("no/such/study").display().to_string();
    for (input, expect) in [
        ("ftp://host/study", "unknown scheme `ftp`"),
        (missing.as_str(), "no such file or folder"),
        ("file://relative/path", "expected file:///absolute/path"),
        ("", "empty"),
    ] {
        let err = app.sched.submit(input, Priority::Routine, false).await.map(|s| format!("{s:?}")).unwrap_err();
        assert_eq!(err.http_status(), 400, "{err}");
        let text = err.to_string();
        assert!(text.contains(input) && text.contains(expect), "{text}");
    }
    // A file that is neither NIfTI nor in a folder.
    let txt = app.dir.path().join("notes.txt");
    ok(std::fs::write(&txt, b"hello"));
    let err = app.sched.submit(&txt.display().to_string(), Priority::Routine, false).await.map(drop).unwrap_err();
    assert!(err.to_string().contains("not a NIfTI file"), "{err}");
    // An empty folder in the inbox is not ready (nothing arrived yet); the other entries are still staged.
    ok(std::fs::create_dir_all(app.inbox.join("empty-study")));
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), app.inbox.join("a.nii")));
    age(&app.inbox, 10);
    let subs = ok(app.sched.scan_inbox_once().await);
    assert!(matches!(subs.as_slice(), [Submission::Enqueued { .. }, Submission::NotReady { .. }]), "{subs:?}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studies_under_the_s3_prefix_are_read_in_place() {
    let app = App::start(Db::Sqlite, "s3poll", |c| c.scheduler.s3_prefix = "incoming".into()).await;
    let src = testdata("dicom/derived/axial");
    let mut names: Vec<String> =
        ok(std::fs::read_dir(&src)).map(|e| ok(e).file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in &names[..30] {
        ok(app.objects.put(&format!("incoming/study1/{name}"), ok(std::fs::read(src.join(name)))).await);
    }
    // A top-level object is not a study.
    ok(app.objects.put("incoming/readme.txt", b"hi".to_vec()).await);
    let subs = ok(app.sched.poll_s3_once().await);
    let (job_id, _, version, _, uri, _) = enqueued(&subs[0]);
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!((uri.as_str(), version), (app.objects.url_of("incoming/study1").as_str(), 1));
    assert!(ok(app.objects.list("studies/").await).is_empty(), "no copy of a study already in the store");
    // Unchanged: nothing to do.
    assert!(ok(app.sched.poll_s3_once().await).is_empty());
    // More instances: a new version of the same key, still in place.
    for name in &names[30..] {
        ok(app.objects.put(&format!("incoming/study1/{name}"), ok(std::fs::read(src.join(name)))).await);
    }
    let subs = ok(app.sched.poll_s3_once().await);
    let (second, _, version, forced, uri2, _) = enqueued(&subs[0]);
    assert_eq!((version, forced, uri2), (2, true, uri));
    let a = ok(app.store.job(job_id).await).unwrap_or_else(|| panic!("job"));
    let b = ok(app.store.job(second).await).unwrap_or_else(|| panic!("job"));
    assert_eq!(a.key, b.key);
    app.finish().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_entry_that_cannot_be_staged_is_recorded_once_and_names_are_escaped() {
    use std::os::unix::ffi::OsStrExt as _;
    // Issue 15: such entries were warned about on every poll, forever, and never recorded.
    let app = App::start(Db::Sqlite, "refused_entry", |_| {}).await;
    ok(std::fs::create_dir_all(&app.inbox));
    let latin1 = app.inbox.join(std::ffi::OsStr::from_bytes(b"caf\xe9-study"));
    ok(std::fs::create_dir_all(&latin1));
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), latin1.join("scan.nii")));
    age(&app.inbox, 10);
    let subs = ok(app.sched.scan_inbox_once().await);
    let [Submission::Ineligible { study_id, reason, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert!(reason.contains("not UTF-8"), "{reason}");
    let studies = ok(app.store.list_studies(10, 0).await);
    assert_eq!(studies.len(), 1);
    assert_eq!(studies[0].id, *study_id);
    // The next passes leave it alone until it changes.
    assert!(ok(app.sched.scan_inbox_once().await).is_empty());
    assert!(ok(app.sched.scan_inbox_once().await).is_empty());
    assert_eq!(ok(app.store.list_studies(10, 0).await).len(), 1, "recorded once");

    // A name with a newline (no object key may have one) is recorded once too, and the
    // reason carries it escaped: it cannot forge a log line.
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), app.inbox.join("evil\nERROR forged line.nii")));
    let subs = ok(app.sched.scan_inbox_once().await);
    let [Submission::Ineligible { reason, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert!(!reason.contains('\n') && reason.contains("evil\\nERROR"), "{reason}");
    assert!(ok(app.sched.scan_inbox_once().await).is_empty());
    app.finish().await;
}
