//! The DICOM node (issue 14, receiving) against a real peer: dcmtk's
//! `echoscu` and `storescu` (Debian `dcmtk`, installed by scripts/setup.sh)
//! associate with the Storage SCP on a loopback port. Received studies land
//! in the inbox, one folder per study, and the inbox scan stages them with
//! their StudyInstanceUID; unknown callers and wrong called titles are
//! rejected at association; garbage on the port and unsupported SOP classes
//! end only their own association.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dicom_ul::ClientAssociationOptions;
use scheduler::Submission;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::helpers::{App, Db, age, ok, testdata};
use crate::orthanc::Orthanc;

/// A scheduler with its DICOM node on a free loopback port.
struct Node {
    app: App,
    port: u16,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), scheduler::SchedulerError>>,
}

impl Node {
    async fn start(name: &str) -> Node {
        Node::start_with(name, |_| {}).await
    }

    /// A node whose `[dicom]` settings `edit` adjusts after the tests' defaults.
    async fn start_with(name: &str, edit: impl FnOnce(&mut neurobatch_core::config::DicomConfig)) -> Node {
        let app = App::start(Db::Sqlite, name, |c| {
            c.dicom.listen = "127.0.0.1:0".into();
            c.dicom.allowed_callers = vec!["TESTSCU".into(), "HOSTBOUND@10.99.99.99".into()];
            c.dicom.idle_timeout_secs = 5;
            edit(&mut c.dicom);
        })
        .await;
        let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
        let port = ok(listener.local_addr()).port();
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let (s, t) = (app.sched.clone(), stop.clone());
            async move { s.serve_dicom(listener, t).await }
        });
        Node { app, port, stop, server }
    }

    async fn finish(self) {
        self.stop.cancel();
        ok(ok(self.server.await));
        self.app.finish().await;
    }

    /// Runs a dcmtk tool against the node (`tool options peer port files`): its success and its output.
    async fn dcmtk(&self, tool: &str, options: &[&str], files: &[String]) -> (bool, String) {
        let mut cmd = Command::new(tool);
        cmd.args(options).arg("127.0.0.1").arg(self.port.to_string()).args(files);
        let out = ok(ok(tokio::task::spawn_blocking(move || cmd.output()).await));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The study folders the node wrote into the inbox, with their file counts.
    fn study_folders(&self) -> Vec<(PathBuf, usize)> {
        study_folders(&self.app.inbox)
    }

    fn incoming_leftovers(&self) -> usize {
        std::fs::read_dir(self.app.inbox.join(".dicom-incoming")).map(|rd| rd.count()).unwrap_or(0)
    }
}

/// The study folders the DICOM node wrote into `inbox`, sorted, with their file counts.
fn study_folders(inbox: &Path) -> Vec<(PathBuf, usize)> {
    let mut out: Vec<(PathBuf, usize)> = std::fs::read_dir(inbox)
        .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dicom-")))
        .map(|p| {
            let n = ok(std::fs::read_dir(&p)).count();
            (p, n)
        })
        .collect();
    out.sort();
    out
}

/// The file counts of [`study_folders`].
fn folder_sizes(inbox: &Path) -> Vec<usize> {
    study_folders(inbox).into_iter().map(|(_, n)| n).collect()
}

fn files_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = ok(std::fs::read_dir(dir)).map(|e| ok(e).path().display().to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_echoes_and_stores_a_study_that_the_inbox_then_stages() {
    let node = Node::start("scp_store").await;
    let (ok_echo, text) = node.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH"], &[]).await;
    assert!(ok_echo, "C-ECHO: {text}");

    let study = testdata("dicom/derived/axial");
    let files = files_of(&study);
    let args = ["-aet", "TESTSCU", "-aec", "NEUROBATCH"];
    let (stored, text) = node.dcmtk("storescu", &args, &files).await;
    assert!(stored, "C-STORE: {text}");
    let folders = node.study_folders();
    assert_eq!(folders.len(), 1, "one folder per study: {folders:?}");
    assert_eq!(folders[0].1, files.len(), "every instance, once");
    assert_eq!(node.incoming_leftovers(), 0, "no partial file left");
    let uid = imaging::dicom::study_uid_of_file(Path::new(&files[0]), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the test study has a StudyInstanceUID"));
    assert!(!folders[0].0.display().to_string().contains(&uid), "no UID in a file name");

    // The quiet period over, the inbox stages the received study like any DICOM folder.
    age(&node.app.inbox, 120);
    let subs = ok(node.app.sched.scan_inbox_once().await);
    let [Submission::Enqueued { study_key, series, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert_eq!(study_key, &uid);
    assert_eq!(series.len(), 1);

    // Sent again: the same instances replace themselves, and the study is the same job.
    let (stored, text) = node.dcmtk("storescu", &args, &files).await;
    assert!(stored, "{text}");
    assert_eq!(node.study_folders().iter().map(|f| f.1).collect::<Vec<_>>(), vec![files.len()]);
    age(&node.app.inbox, 120);
    let subs = ok(node.app.sched.scan_inbox_once().await);
    assert!(matches!(subs.as_slice(), [Submission::Existing { .. }] | []), "{subs:?}");

    // Late instances of the same study (another series, sent in implicit VR only) join its folder.
    let implicit = files_of(&testdata("dicom/derived/implicit"));
    let same_study = imaging::dicom::study_uid_of_file(Path::new(&implicit[0]), &Default::default());
    assert_eq!(same_study.ok().flatten().as_deref(), Some(uid.as_str()), "the test data: one study, two series");
    let (stored, text) = node.dcmtk("storescu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH", "-xi"], &implicit).await;
    assert!(stored, "implicit VR: {text}");
    let folders = node.study_folders();
    assert_eq!(folders.iter().map(|f| f.1).collect::<Vec<_>>(), vec![files.len() + implicit.len()], "{folders:?}");
    assert_eq!(node.incoming_leftovers(), 0);
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_callers_and_wrong_called_titles_are_rejected_at_association() {
    let node = Node::start("scp_reject").await;
    for (aet, aec, why) in [
        ("INTRUDER", "NEUROBATCH", "a caller not in allowed_callers"),
        ("HOSTBOUND", "NEUROBATCH", "a caller allowed only from another host"),
        ("TESTSCU", "SOMEONE", "a called title that is not this node's"),
    ] {
        let (accepted, text) = node.dcmtk("echoscu", &["-aet", aet, "-aec", aec], &[]).await;
        assert!(!accepted, "{why}: {text}");
        assert!(text.to_ascii_lowercase().contains("reject"), "{why}: {text}");
    }
    let (accepted, text) = node.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH"], &[]).await;
    assert!(accepted, "the allowed caller still gets in: {text}");
    assert!(node.study_folders().is_empty());
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unsupported_contexts_end_only_their_own_association() {
    let node = Node::start("scp_garbage").await;
    // Random bytes, a truncated PDU header, and an absurd PDU length.
    let absurd = [0x01u8, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01];
    for bytes in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0x01, 0x00, 0x00], absurd.to_vec()] {
        let mut s = ok(tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await);
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
    }
    // An association proposing Verification and a SOP class the node does not store.
    let addr = format!("NEUROBATCH@127.0.0.1:{}", node.port);
    let sr = "1.2.840.10008.5.1.4.1.1.88.11";
    let assoc = ok(tokio::task::spawn_blocking(move || {
        ClientAssociationOptions::new()
            .calling_ae_title("TESTSCU")
            .with_abstract_syntax("1.2.840.10008.1.1")
            .with_abstract_syntax(sr)
            .establish_with(&addr)
    })
    .await);
    let assoc = assoc.unwrap_or_else(|e| panic!("association: {e}"));
    // dicom-ul's client keeps only the accepted contexts: the SR one is not among them.
    let accepted: Vec<&str> =
        assoc.presentation_contexts().iter().map(|pc| pc.abstract_syntax.trim_end_matches('\0')).collect();
    assert_eq!(accepted, vec!["1.2.840.10008.1.1"], "{sr} is refused at negotiation");
    ok(tokio::task::spawn_blocking(move || assoc.release()).await).unwrap_or_else(|e| panic!("release: {e}"));
    // The node keeps serving.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (accepted, text) = node.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH"], &[]).await;
    assert!(accepted, "{text}");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_over_the_size_limit_is_refused_and_nothing_of_it_kept() {
    // The test instances are about 24 KiB each; the limit is 16 KiB.
    let node = Node::start_with("scp_limit", |d| d.max_instance_bytes = 16 * 1024).await;
    let files = files_of(&testdata("dicom/derived/axial"));
    let (_, text) = node.dcmtk("storescu", &["-v", "-aet", "TESTSCU", "-aec", "NEUROBATCH"], &files[..2]).await;
    assert!(text.contains("Received Store Response (Refused: OutOfResources)"), "status 0xA700: {text}");
    assert!(node.study_folders().is_empty(), "{:?}", node.study_folders());
    assert_eq!(node.incoming_leftovers(), 0, "the partial file is removed");
    node.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_beyond_the_limit_are_closed_and_the_node_recovers() {
    let node = Node::start_with("scp_many", |d| d.max_associations = 2).await;
    // Two silent connections hold both slots (until the 5 s idle timeout at the latest).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(ok(tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (accepted, text) = node.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH"], &[]).await;
    assert!(!accepted, "a third association is refused while two are held: {text}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (accepted, text) = node.dcmtk("echoscu", &["-aet", "TESTSCU", "-aec", "NEUROBATCH"], &[]).await;
    assert!(accepted, "the slots are free again: {text}");
    node.finish().await;
}

/// The test PACS with neurobatch (`NEUROBATCH` on 127.0.0.1:`scp_port`) registered as a
/// modality and, with `stow` = (DICOMweb root URL, bearer token), as a DICOMweb server of
/// its DICOMweb plugin.
fn orthanc(scp_port: u16, stow: Option<(String, String)>) -> Orthanc {
    Orthanc::start(|config| {
        config["DicomModalities"] = serde_json::json!({ "neurobatch": ["NEUROBATCH", "127.0.0.1", scp_port] });
        if let Some((url, token)) = stow {
            config["DicomWeb"]["Servers"] = serde_json::json!({
                "neurobatch": { "Url": url, "HttpHeaders": { "Authorization": format!("Bearer {token}") } }
            });
        }
    })
}

fn paths(files: &[String]) -> Vec<PathBuf> {
    files.iter().map(PathBuf::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orthanc_sends_a_study_by_c_store_and_the_inbox_stages_it() {
    let node = Node::start_with("scp_orthanc", |d| d.allowed_callers = vec!["ORTHANC@127.0.0.1".into()]).await;
    let orthanc = orthanc(node.port, None);
    // The PACS holds a study (uploaded through its REST API) …
    let files = files_of(&testdata("dicom/derived/axial"));
    let study_id = orthanc.upload(&paths(&files));
    // … and is asked to send it to neurobatch, as an operator or a routing rule would.
    let (status, text) =
        crate::helpers::http_as(orthanc.http, None, "POST", "/modalities/neurobatch/store", Some(study_id.as_bytes()))
            .await;
    assert_eq!(status, 200, "C-STORE from Orthanc: {text}");
    let folders = node.study_folders();
    assert_eq!(folders.iter().map(|f| f.1).collect::<Vec<_>>(), vec![files.len()], "{folders:?}");
    age(&node.app.inbox, 120);
    let subs = ok(node.app.sched.scan_inbox_once().await);
    let uid = imaging::dicom::study_uid_of_file(Path::new(&files[0]), &Default::default()).ok().flatten();
    let [Submission::Enqueued { study_key, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert_eq!(Some(study_key), uid.as_ref());
    // Orthanc's C-ECHO to neurobatch works too.
    let (status, text) =
        crate::helpers::http_as(orthanc.http, None, "POST", "/modalities/neurobatch/echo", Some(b"{}")).await;
    assert_eq!(status, 200, "C-ECHO from Orthanc: {text}");
    drop(orthanc);
    node.finish().await;
}

/// A `multipart/related; type="application/dicom"` body of `parts` (content type, bytes).
fn multipart_related(boundary: &str, parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The SOP instance UIDs of a response module sequence (`00081199` stored, `00081198` failed),
/// with the failure reasons of the latter.
fn sequence(module: &serde_json::Value, tag: &str) -> Vec<(String, Option<u64>)> {
    module[tag]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    let uid = i["00081155"]["Value"][0].as_str().unwrap_or("").to_string();
                    (uid, i["00081197"]["Value"][0].as_u64())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_rs_stores_instances_into_the_inbox_and_answers_the_response_module() {
    use crate::helpers::{http_typed, json};
    use neurobatch_core::domain::Role;
    let s = crate::helpers::serve(Db::Sqlite, "stow", |_| {}).await;
    let service = s.app.token("pacs-bridge", Role::Service).await;
    let reviewer = s.app.token("reader", Role::Reviewer).await;
    let files = files_of(&testdata("dicom/derived/axial"));
    let uids: Vec<String> = files[..5]
        .iter()
        .map(|f| {
            imaging::dicom::instance_identity(Path::new(f), &Default::default())
                .ok()
                .and_then(|i| i.sop_instance_uid)
                .unwrap_or_default()
        })
        .collect();
    let study = imaging::dicom::study_uid_of_file(Path::new(&files[0]), &Default::default()).ok().flatten();
    let study = study.unwrap_or_else(|| panic!("a study UID"));
    let mut parts: Vec<(&str, Vec<u8>)> =
        files[..5].iter().map(|f| ("application/dicom", ok(std::fs::read(f)))).collect();
    parts.push(("application/dicom", b"not a DICOM file at all".to_vec()));
    parts.push(("text/plain", b"hello".to_vec()));
    let body = multipart_related("nb-boundary-1", &parts);
    let ct = "multipart/related; type=\"application/dicom\"; boundary=nb-boundary-1";

    let (status, text) = http_typed(s.addr, Some(&reviewer), "POST", "/dicomweb/studies", ct, &body).await;
    assert_eq!(status, 403, "a reviewer may not store: {text}");
    let (status, text) =
        http_typed(s.addr, Some(&service), "POST", "/dicomweb/studies", "application/dicom", &body).await;
    assert_eq!(status, 415, "{text}");

    let (status, text) = http_typed(s.addr, Some(&service), "POST", "/dicomweb/studies", ct, &body).await;
    assert_eq!(status, 202, "some stored, some failed: {text}");
    let module = json(&text);
    let stored: Vec<String> = sequence(&module, "00081199").into_iter().map(|(u, _)| u).collect();
    assert_eq!(stored, uids);
    let failed = sequence(&module, "00081198");
    assert_eq!(failed.iter().map(|f| f.1).collect::<Vec<_>>(), vec![Some(0xC000), Some(0xC000)], "{text}");
    let folders = folder_sizes(&s.app.inbox);
    assert_eq!(folders, vec![5], "one study folder with the five instances");
    assert_eq!(std::fs::read_dir(s.app.inbox.join(".dicom-incoming")).map(|r| r.count()).unwrap_or(0), 0);

    // To a named study: instances of another study fail with 0x0110 and their UIDs; nothing is stored.
    let body = multipart_related("b2", &parts[..2]);
    let ct2 = "multipart/related; type=\"application/dicom\"; boundary=b2";
    let (status, text) = http_typed(s.addr, Some(&service), "POST", "/dicomweb/studies/1.2.3.4", ct2, &body).await;
    assert_eq!(status, 409, "{text}");
    let failed = sequence(&json(&text), "00081198");
    assert_eq!(failed, vec![(uids[0].clone(), Some(0x0110)), (uids[1].clone(), Some(0x0110))]);
    // And to its own study: stored (again: the same files).
    let (status, text) =
        http_typed(s.addr, Some(&service), "POST", &format!("/dicomweb/studies/{study}"), ct2, &body).await;
    assert_eq!(status, 200, "{text}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orthanc_sends_a_study_by_stow_rs_and_the_inbox_stages_it() {
    use neurobatch_core::domain::Role;
    let s = crate::helpers::serve(Db::Sqlite, "stow_orthanc", |_| {}).await;
    let token = s.app.token("orthanc", Role::Service).await;
    let url = format!("http://{}/dicomweb/", s.addr);
    let orthanc = orthanc(1, Some((url, token)));
    let files = files_of(&testdata("dicom/derived/axial"));
    let study_id = orthanc.upload(&paths(&files));
    let request = serde_json::json!({ "Resources": [study_id] }).to_string();
    let (status, text) = crate::helpers::http_as(
        orthanc.http,
        None,
        "POST",
        "/dicom-web/servers/neurobatch/stow",
        Some(request.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "STOW-RS from Orthanc: {text}");
    let folders = folder_sizes(&s.app.inbox);
    assert_eq!(folders, vec![files.len()]);
    age(&s.app.inbox, 120);
    let subs = ok(s.app.sched.scan_inbox_once().await);
    let uid = imaging::dicom::study_uid_of_file(Path::new(&files[0]), &Default::default()).ok().flatten();
    let [Submission::Enqueued { study_key, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert_eq!(Some(study_key), uid.as_ref());
    drop(orthanc);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_queries_orthanc_and_retrieves_the_chosen_series_once() {
    let orthanc = orthanc(1, None);
    let axial = files_of(&testdata("dicom/derived/axial"));
    let implicit = files_of(&testdata("dicom/derived/implicit"));
    orthanc.upload(&paths(&axial));
    orthanc.upload(&paths(&implicit));
    let url = format!("http://{}/dicom-web/", orthanc.http);
    let app = App::start(Db::Sqlite, "pull", |c| c.pacs.url = neurobatch_core::config::SecretUrl::new(&url)).await;
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap_or_else(|e| panic!("{e}"));

    // The test studies are dated 2024-01-01: another range finds nothing.
    let none = ok(app.sched.pull_once(day("2023-12-01"), day("2023-12-31")).await);
    assert_eq!(none, scheduler::PullReport::default());

    // One study with two 41-instance MR series: the rules choose one, and only it is retrieved.
    let first = ok(app.sched.pull_once(day("2024-01-01"), day("2024-01-01")).await);
    assert_eq!(
        (
            first.series_found,
            first.series_chosen,
            first.series_known,
            first.series_pulled,
            first.instances,
            first.refused
        ),
        (2, 1, 0, 1, 41, 0),
        "{first:?}"
    );
    let folders = folder_sizes(&app.inbox);
    assert_eq!(folders, vec![41]);
    age(&app.inbox, 120);
    let subs = ok(app.sched.scan_inbox_once().await);
    let uid = imaging::dicom::study_uid_of_file(Path::new(&axial[0]), &Default::default()).ok().flatten();
    let [Submission::Enqueued { study_key, .. }] = subs.as_slice() else { panic!("{subs:?}") };
    assert_eq!(Some(study_key), uid.as_ref());

    // The second night finds the same series and fetches nothing.
    let second = ok(app.sched.pull_once(day("2024-01-01"), day("2024-01-01")).await);
    assert_eq!((second.series_found, second.series_known, second.series_pulled, second.instances), (2, 1, 0, 0));
    drop(orthanc);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_that_cannot_be_reached_is_an_error_naming_it_without_credentials() {
    let port = ok(ok(std::net::TcpListener::bind("127.0.0.1:0")).local_addr()).port();
    let url = format!("http://bridge:s3cret@127.0.0.1:{port}/dicom-web");
    let app = App::start(Db::Sqlite, "pull_down", |c| c.pacs.url = neurobatch_core::config::SecretUrl::new(&url)).await;
    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default();
    let err = app.sched.pull_once(day, day).await.map(drop).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&format!("pacs http://127.0.0.1:{port}/dicom-web: QIDO-RS series query")), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("bridge"), "{text}");
    assert_eq!(err.http_status(), 503);
    app.finish().await;
}
