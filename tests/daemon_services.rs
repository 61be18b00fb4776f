//! The distributed daemon against the real services: a scheduler and worker
//! processes on RabbitMQ, PostgreSQL and an S3 server (moto, started by
//! `scripts/test.sh`). Each test has its own database, queue prefix and
//! bucket, removed afterwards, and the three tests run one at a time (they
//! share the machine's two cores).
//!
//! - 20 studies (NIfTI and DICOM, degraded, out of distribution, one
//!   corrupted) through a scheduler and 2 workers: each good study processed
//!   exactly once with its objects in S3 and rows in PostgreSQL, the
//!   uncertain ones on the review exchange and in review items, the corrupted
//!   one failed and dead-lettered with its reason, nothing left on the queue;
//! - `kill -9` of a worker in the middle of a job: redelivered, completed once;
//! - the broker closes every connection mid-run: both roles reconnect and the
//!   run completes;
//! - the object store down (connections refused): the worker hands the job
//!   back without spending an attempt and pauses; once the store answers the
//!   job runs, on its first attempt.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::daemon::{
    JOBS_SQL, JobRow, Proc, env, fast_settings, free_port, http_post, job_row, make_token, sha256_hex, wait_for,
};
use neurobatch_core::queue::{DeadReason, Queue};
use neurobatch_core::storage::{ObjectStore, S3Settings};
use sqlx::Connection as _;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const ALL: [&str; 20] = [
    "t1_00.nii.gz",
    "t1_01.nii.gz",
    "t1_02.nii.gz",
    "t1_03.nii.gz",
    "t1_04.nii.gz",
    "t1_05.nii.gz",
    "t1_06.nii.gz",
    "t1_07.nii.gz",
    "t1_08.nii.gz",
    "t1_09.nii.gz",
    "t1_10.nii.gz",
    "t1_11.nii.gz",
    "t1_noisy.nii.gz",
    "phantom.nii.gz",
    "b0.nii.gz",
    "dicom_0",
    "dicom_1",
    "dicom_2",
    "dicom_3",
    "corrupt.nii.gz",
];

fn postgres_server() -> String {
    std::env::var("NEUROBATCH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn amqp_url() -> String {
    std::env::var("NEUROBATCH_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn s3_settings() -> S3Settings {
    S3Settings {
        endpoint: Some(s3_endpoint()),
        region: Some("us-east-1".into()),
        force_path_style: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
    }
}

fn s3_endpoint() -> String {
    std::env::var("NEUROBATCH_TEST_S3_ENDPOINT")
        .expect("NEUROBATCH_TEST_S3_ENDPOINT: run the tests through scripts/test.sh, which starts the S3 server")
}

/// One test's database, queue prefix and bucket; removed on drop.
struct Stack {
    rt: tokio::runtime::Runtime,
    name: String,
    db_url: String,
    bucket: ObjectStore,
    dir: tempfile::TempDir,
}

impl Stack {
    fn new(test: &str) -> Stack {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("nbd-{test}-{}-{nanos}", std::process::id());
        let db = name.replace('-', "_");
        let bucket = rt.block_on(async {
            let mut admin =
                sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server())).await.expect("postgres");
            sqlx::query(&format!("CREATE DATABASE \"{db}\"")).execute(&mut admin).await.expect("create database");
            let _ = admin.close().await;
            let store = ObjectStore::from_url(&format!("s3://{name}"), &s3_settings()).await.expect("s3 store");
            let ObjectStore::S3(s3) = &store else { panic!("s3") };
            s3.client().create_bucket().bucket(&name).send().await.expect("create the test bucket");
            store
        });
        Stack {
            db_url: format!("{}/{db}", postgres_server()),
            rt,
            name,
            bucket,
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn inbox(&self) -> std::path::PathBuf {
        self.root().join("inbox")
    }

    fn vars(&self, api_port: u16) -> Vec<(String, String)> {
        let mut settings = fast_settings();
        settings.extend([
            ("database.url", self.db_url.clone()),
            ("queue.url", amqp_url()),
            ("queue.prefix", self.name.clone()),
            ("storage.url", format!("s3://{}", self.name)),
            ("storage.endpoint", s3_endpoint()),
            ("storage.path_style", "true".into()),
            ("scheduler.inbox", self.inbox().display().to_string()),
            ("scheduler.listen", format!("127.0.0.1:{api_port}")),
        ]);
        let mut vars = env(&settings);
        vars.extend([
            ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ]);
        vars
    }

    fn drop_studies(&self, names: &[&str]) {
        std::fs::create_dir_all(self.inbox()).expect("inbox");
        for name in names {
            common::daemon::copy_entry(&common::testdata(&format!("daemon/studies/{name}")), &self.inbox().join(name));
        }
    }

    fn jobs(&self) -> Vec<JobRow> {
        self.rt.block_on(async {
            let Ok(mut c) = sqlx::PgConnection::connect(&self.db_url).await else { return Vec::new() };
            let rows = sqlx::query(JOBS_SQL).fetch_all(&mut c).await.unwrap_or_default();
            let _ = c.close().await;
            rows.iter().map(job_row).collect()
        })
    }

    fn count(&self, table: &str) -> i64 {
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&self.db_url).await.expect("postgres");
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut c).await.expect("count");
            let _ = c.close().await;
            n
        })
    }

    fn queue(&self) -> Queue {
        self.rt.block_on(Queue::connect(&amqp_url(), common::daemon::fast_queue_options(&self.name))).expect("queue")
    }

    fn objects(&self) -> Vec<String> {
        self.rt.block_on(self.bucket.list("study/")).expect("list")
    }

    /// Waits until `n` jobs exist and none is queued or running.
    fn wait_all_final(&self, n: usize, procs: &[&Proc], timeout: Duration) -> Vec<JobRow> {
        wait_for(
            &format!("{n} final jobs"),
            timeout,
            || {
                for p in procs {
                    p.assert_running();
                }
                let rows = self.jobs();
                let done = rows.len() == n && rows.iter().all(|r| !matches!(r.state.as_str(), "queued" | "running"));
                done.then_some(rows)
            },
            || {
                let logs: Vec<String> = procs.iter().map(|p| format!("--- {}\n{}", p.name, p.log_text())).collect();
                format!("{:#?}\n{}", self.jobs(), logs.join("\n"))
            },
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let db = self.name.replace('-', "_");
        let name = self.name.clone();
        let bucket = self.bucket.clone();
        self.rt.block_on(async {
            if let Ok(q) = Queue::connect(&amqp_url(), common::daemon::fast_queue_options(&name)).await {
                let _ = q.delete_topology().await;
                let _ = q.close().await;
            }
            if let Ok(keys) = bucket.list("").await {
                for k in keys {
                    let _ = bucket.delete(&k).await;
                }
            }
            if let ObjectStore::S3(s3) = &bucket {
                let _ = s3.client().delete_bucket().bucket(&name).send().await;
            }
            if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server())).await {
                let _ =
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).execute(&mut admin).await;
                let _ = admin.close().await;
            }
        });
    }
}

fn succeeded_once(rows: &[JobRow]) {
    for r in rows {
        assert_eq!(r.state, "succeeded", "{r:?}");
        assert_eq!(r.object_keys.len(), result_objects(std::slice::from_ref(r)), "{r:?}");
    }
    let keys: BTreeSet<&str> = rows.iter().map(|r| r.study_key.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "one job per study: {rows:#?}");
}

/// The result objects `rows` must have stored, one set per job: image, mask, entropy,
/// mutual information and report; and the SEG, the SR and the SEG's recipe of a DICOM study
/// (keyed by its StudyInstanceUID, where a NIfTI study is keyed by its SHA-256).
fn result_objects(rows: &[JobRow]) -> usize {
    rows.iter().map(|r| 5 + 3 * usize::from(r.study_key.contains('.'))).sum()
}

#[test]
fn twenty_studies_through_a_scheduler_and_two_workers() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("e2e");
    let port = free_port();
    let vars = stack.vars(port);
    let queue = stack.queue();
    let mut reviews = stack.rt.block_on(queue.subscribe_reviews("#")).expect("review subscription");

    let mut scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let mut w1 = Proc::start("worker-1", stack.root(), &["worker"], &vars);
    let mut w2 = Proc::start("worker-2", stack.root(), &["worker"], &vars);
    stack.drop_studies(&ALL);
    let rows = stack.wait_all_final(ALL.len(), &[&scheduler, &w1, &w2], Duration::from_secs(600));

    // Submitting a known study again through the API changes nothing.
    let again = format!(r#"{{"uri": "{}", "priority": "stat"}}"#, stack.inbox().join("t1_00.nii.gz").display());
    let service = make_token(stack.root(), &vars, "service", "pacs-hook");
    let (status, body) = http_post(port, &service, "/v1/studies", &again).expect("POST /v1/studies");
    assert!((200..300).contains(&status), "{status} {body}");

    for w in [&mut w1, &mut w2] {
        let exit = w.terminate(Duration::from_secs(60));
        assert!(exit.success(), "{} exited with {exit}:\n{}", w.name, w.log_text());
    }
    assert!(scheduler.terminate(Duration::from_secs(30)).success(), "{}", scheduler.log_text());

    let corrupt_key = sha256_hex(&stack.inbox().join("corrupt.nii.gz"));
    let (bad, good): (Vec<JobRow>, Vec<JobRow>) = rows.into_iter().partition(|r| r.study_key == corrupt_key);
    assert_eq!(good.len(), 19);
    succeeded_once(&good);
    assert_eq!(stack.count("results"), 19, "one result row per good study");
    assert_eq!(stack.objects().len(), result_objects(&good), "one set of objects per good study");
    let bad = &bad[0];
    assert_eq!((bad.state.as_str(), bad.attempts), ("failed", 1), "{bad:?}");

    // The dead-letter queue holds the corrupted study's job with its reason; nothing else is left.
    let dead = stack.rt.block_on(queue.pop_dead_letter()).expect("dead letters").expect("one dead letter");
    assert_eq!(dead.message.as_ref().map(|m| m.job_id), Some(bad.job_id));
    assert_eq!(dead.reason, Some(DeadReason::Permanent));
    assert_eq!(Some(dead.last_error.as_str()), bad.last_error.as_deref());
    assert!(stack.rt.block_on(queue.pop_dead_letter()).expect("dead letters").is_none());
    assert_eq!(stack.rt.block_on(queue.queued()).expect("depth"), 0, "nothing left on the jobs queue");

    // Every case routed to review is a review item and was announced on the review exchange.
    let routed: BTreeSet<i64> =
        good.iter().filter(|r| r.decision.as_deref() == Some("review")).map(|r| r.job_id).collect();
    for r in &good {
        assert_eq!(r.review_items, i64::from(routed.contains(&r.job_id)), "{r:?}");
    }
    for ood in ["phantom.nii.gz", "b0.nii.gz"] {
        let key = sha256_hex(&stack.inbox().join(ood));
        let r = good.iter().find(|r| r.study_key == key).unwrap_or_else(|| panic!("{ood}"));
        assert!(routed.contains(&r.job_id), "{ood} goes to review: {r:?}");
    }
    let mut announced = BTreeSet::new();
    while announced.len() < routed.len() {
        let next = stack.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), reviews.next()).await });
        let (_key, event) = next.expect("a review event for every routed case").expect("review event");
        announced.insert(event.job_id);
    }
    assert_eq!(announced, routed);
    stack.rt.block_on(queue.close()).expect("close");
}

#[test]
fn a_worker_killed_mid_job_loses_nothing_and_duplicates_nothing() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("kill");
    let mut vars = stack.vars(free_port());
    // The whole cpu ensemble: jobs long enough to be caught running.
    vars.retain(|(k, _)| k != "NEUROBATCH__PIPELINE__MEMBERS");
    // The processes' temporary directory, to see what a killed worker leaves there.
    let tmp = stack.root().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    vars.push(("TMPDIR".into(), tmp.display().to_string()));
    let worker_scratch = || -> Vec<std::path::PathBuf> {
        let entries = std::fs::read_dir(&tmp).expect("tmp").flatten();
        entries.map(|e| e.path()).filter(|p| p.display().to_string().contains("/neurobatch-worker-")).collect()
    };
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let mut victim = Proc::start("worker-victim", stack.root(), &["worker"], &vars);
    stack.drop_studies(&["t1_05.nii.gz", "t1_06.nii.gz", "dicom_2"]);
    let running = wait_for(
        "a job running on the victim",
        Duration::from_secs(240),
        || {
            victim.assert_running();
            stack.jobs().into_iter().find(|r| r.state == "running")
        },
        || victim.log_text(),
    );
    let left = worker_scratch();
    assert_eq!(left.len(), 1, "the victim's scratch folder: {left:?}");
    wait_for(
        "the running job's folder in the victim's scratch folder",
        Duration::from_secs(30),
        || std::fs::read_dir(&left[0]).expect("scratch").flatten().find(|e| e.path().is_dir()),
        || victim.log_text(),
    );
    victim.kill9();
    assert!(left[0].exists(), "SIGKILL runs no destructor");
    let mut rescuer = Proc::start("worker-rescuer", stack.root(), &["worker"], &vars);
    let rows = stack.wait_all_final(3, &[&scheduler, &rescuer], Duration::from_secs(400));
    succeeded_once(&rows);
    let redone = rows.iter().find(|r| r.job_id == running.job_id).expect("the killed job");
    assert_eq!(redone.attempts, 1, "a worker that vanished spends no attempt (issue 18): {redone:?}");
    assert_eq!(stack.count("results"), 3);
    assert_eq!(stack.objects().len(), result_objects(&rows), "no duplicate objects");
    // The rescuer removed what the killed worker left in the temporary directory, and works in its own.
    let now = worker_scratch();
    assert!(!left[0].exists() && now.len() == 1, "left by the victim {left:?}, now {now:?}");
    assert!(rescuer.log_text().contains("removed the scratch of workers that died"), "{}", rescuer.log_text());
    assert!(rescuer.terminate(Duration::from_secs(60)).success(), "{}", rescuer.log_text());
    let queue = stack.queue();
    assert_eq!(stack.rt.block_on(queue.queued()).expect("depth"), 0);
    stack.rt.block_on(queue.close()).expect("close");
}

/// Closes every connection of this test's processes from the broker's side.
fn close_connections(prefix: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--no-table-headers", "-q"])
        .output()
        .expect("rabbitmqctl must be installed to close connections from the broker's side");
    assert!(out.status.success(), "rabbitmqctl list_connections: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> =
        listing.lines().filter(|l| l.contains(prefix)).filter_map(|l| l.split_whitespace().next()).collect();
    for pid in &pids {
        let st = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: broker-side close"])
            .status();
        assert!(st.is_ok_and(|s| s.success()), "rabbitmqctl close_connection {pid}");
    }
    pids.len()
}

#[test]
fn scheduler_and_workers_ride_out_the_broker_closing_their_connections() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("cut");
    let vars = stack.vars(free_port());
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let mut worker = Proc::start("worker", stack.root(), &["worker"], &vars);
    let studies = ["t1_07.nii.gz", "t1_08.nii.gz", "t1_09.nii.gz", "t1_10.nii.gz", "t1_11.nii.gz", "dicom_3"];
    stack.drop_studies(&studies);
    wait_for(
        "the first study processed",
        Duration::from_secs(240),
        || {
            worker.assert_running();
            stack.jobs().iter().any(|r| r.state == "succeeded").then_some(())
        },
        || worker.log_text(),
    );
    let closed = close_connections(&stack.name);
    assert!(closed >= 2, "the scheduler's and the worker's connections were closed ({closed})");
    let rows = stack.wait_all_final(studies.len(), &[&scheduler, &worker], Duration::from_secs(400));
    succeeded_once(&rows);
    assert_eq!(stack.objects().len(), result_objects(&rows));
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_text());
}

#[test]
fn sigterm_finishes_the_job_in_flight_or_hands_it_back_after_the_grace_period() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("term");
    let mut vars = stack.vars(free_port());
    // The whole cpu ensemble, so a job is still running when the signal comes.
    vars.retain(|(k, _)| k != "NEUROBATCH__PIPELINE__MEMBERS");
    let with_grace = |secs: &str| {
        let mut v = vars.clone();
        v.retain(|(k, _)| k != "NEUROBATCH__WORKER__GRACE_PERIOD_SECS");
        v.push(("NEUROBATCH__WORKER__GRACE_PERIOD_SECS".into(), secs.into()));
        v
    };
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    stack.drop_studies(&["t1_01.nii.gz", "t1_02.nii.gz"]);
    let running_on = |w: &Proc| {
        wait_for(
            &format!("a job running on {}", w.name),
            Duration::from_secs(240),
            || {
                w.assert_running();
                stack.jobs().into_iter().find(|r| r.state == "running")
            },
            || w.log_text(),
        )
    };

    // A long grace period: the job in flight finishes, then the worker exits 0.
    let mut patient = Proc::start("worker-patient", stack.root(), &["worker"], &with_grace("120"));
    let first = running_on(&patient);
    let exit = patient.terminate(Duration::from_secs(120));
    assert!(exit.success(), "{exit}:\n{}", patient.log_text());
    let finished = stack.jobs().into_iter().find(|r| r.job_id == first.job_id).expect("job");
    assert_eq!((finished.state.as_str(), finished.attempts), ("succeeded", 1), "{finished:?}");

    // No grace: the job in flight is handed back at once (its attempt not counted) and another worker runs it.
    let mut hasty = Proc::start("worker-hasty", stack.root(), &["worker"], &with_grace("0"));
    let second = running_on(&hasty);
    let exit = hasty.terminate(Duration::from_secs(30));
    assert!(exit.success(), "{exit}:\n{}", hasty.log_text());
    let handed = stack.jobs().into_iter().find(|r| r.job_id == second.job_id).expect("job");
    assert_eq!((handed.state.as_str(), handed.attempts), ("queued", 0), "handed back: {handed:?}");
    assert!(hasty.log_text().contains("handed back"), "{}", hasty.log_text());
    let rescuer = Proc::start("worker-rescuer", stack.root(), &["worker"], &vars);
    let rows = stack.wait_all_final(2, &[&scheduler, &rescuer], Duration::from_secs(300));
    succeeded_once(&rows);
    let redone = rows.iter().find(|r| r.job_id == second.job_id).expect("job");
    assert_eq!(redone.attempts, 1, "{redone:?}");
    assert_eq!(stack.objects().len(), result_objects(&rows));
}

#[test]
fn studies_arrive_by_s3_prefix_and_by_backfill() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("s3in");
    let mut vars = stack.vars(free_port());
    vars.push(("NEUROBATCH__SCHEDULER__S3_PREFIX".into(), "incoming/".into()));
    // The archive folder backfilled below is a configured source (issue 15).
    vars.push(("NEUROBATCH__SCHEDULER__ALLOWED_ROOTS".into(), stack.root().join("archive").display().to_string()));
    // Two studies uploaded by a PACS-side process under incoming/: a NIfTI and a DICOM folder.
    stack.rt.block_on(async {
        let nifti = std::fs::read(common::testdata("daemon/studies/t1_03.nii.gz")).expect("read");
        stack.bucket.put("incoming/study-a/t1.nii.gz", nifti).await.expect("put");
        let dicom = common::testdata("daemon/studies/dicom_1");
        for e in std::fs::read_dir(&dicom).expect("read_dir").flatten() {
            let key = format!("incoming/study-b/{}", e.file_name().to_string_lossy());
            stack.bucket.put(&key, std::fs::read(e.path()).expect("read")).await.expect("put");
        }
    });
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let worker = Proc::start("worker", stack.root(), &["worker"], &vars);
    // And an archive folder backfilled at stat priority, twice (the second run finds it known).
    let archive = stack.root().join("archive");
    std::fs::create_dir_all(&archive).expect("archive");
    common::daemon::copy_entry(&common::testdata("daemon/studies/t1_04.nii.gz"), &archive.join("t1_04.nii.gz"));
    for (run, expect) in [(1, "1 new jobs"), (2, "1 already known")] {
        let mut backfill = Proc::start(
            &format!("backfill-{run}"),
            stack.root(),
            &["backfill", archive.to_str().expect("utf-8"), "--priority", "stat"],
            &vars,
        );
        let status = backfill.wait_exit(Duration::from_secs(120));
        assert!(status.success(), "{}", backfill.log_text());
        assert!(backfill.log_text().contains(expect), "{}", backfill.log_text());
    }
    // Places that are not configured sources are refused before anything is
    // listed or read: a folder beside the archive, and another bucket.
    let elsewhere = stack.root().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    common::daemon::copy_entry(&common::testdata("daemon/studies/t1_05.nii.gz"), &elsewhere.join("t1_05.nii.gz"));
    for (run, source) in [(3, elsewhere.display().to_string()), (4, "s3://some-other-bucket/studies".to_string())] {
        let mut refused = Proc::start(&format!("backfill-{run}"), stack.root(), &["backfill", &source], &vars);
        let status = refused.wait_exit(Duration::from_secs(120));
        assert!(!status.success(), "{}", refused.log_text());
        assert!(refused.log_text().contains("not inside a configured source"), "{}", refused.log_text());
    }
    let rows = stack.wait_all_final(3, &[&scheduler, &worker], Duration::from_secs(300));
    succeeded_once(&rows);
    assert_eq!(stack.objects().len(), result_objects(&rows));
}

#[test]
fn a_job_that_keeps_timing_out_is_retried_once_then_failed_for_good() {
    // Issue 15: a timeout was transient every time, so such a study held a worker for
    // max_attempts x the timeout; the second timeout in a row is now permanent.
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("tmo");
    let mut vars = stack.vars(free_port());
    vars.retain(|(k, _)| !k.ends_with("__MAX_ATTEMPTS") && k != "NEUROBATCH__PIPELINE__MEMBERS");
    vars.extend([
        ("NEUROBATCH__WORKER__MAX_ATTEMPTS".to_string(), "3".to_string()),
        ("NEUROBATCH__WORKER__JOB_TIMEOUT_SECS".to_string(), "1".to_string()),
    ]);
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let worker = Proc::start("worker", stack.root(), &["worker"], &vars);
    stack.drop_studies(&["t1_05.nii.gz"]);
    let rows = stack.wait_all_final(1, &[&scheduler, &worker], Duration::from_secs(300));
    let job = &rows[0];
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 2), "{job:?}");
    let error = job.last_error.as_deref().unwrap_or("");
    assert!(error.contains("timed out after 1 s, as its previous attempt did"), "{job:?}");
    let queue = stack.queue();
    let dead = stack.rt.block_on(queue.pop_dead_letter()).expect("dead letters").expect("the failed job");
    assert_eq!((dead.reason, dead.attempts), (Some(DeadReason::Permanent), 2));
    assert!(dead.last_error.contains("timed out"), "{}", dead.last_error);
    stack.rt.block_on(queue.close()).expect("close");
    worker.assert_running();
}

#[test]
fn a_worker_with_another_model_version_refuses_the_job_with_the_reason() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("ver");
    let vars = stack.vars(free_port());
    // The worker's models: the shipped ones under another version number.
    let models = stack.root().join("models-next");
    common::daemon::copy_entry(&common::root().join("models"), &models);
    let manifest = models.join("brain-tissue").join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let version = text.lines().find(|l| l.starts_with("version = ")).expect("a version line").to_string();
    std::fs::write(&manifest, text.replacen(&version, "version = \"9.9.9-next\"", 1)).expect("write");
    let mut worker_vars = vars.clone();
    worker_vars.push(("NEUROBATCH__PIPELINE__MODELS_DIR".into(), models.display().to_string()));
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let worker = Proc::start("worker-next", stack.root(), &["worker"], &worker_vars);
    stack.drop_studies(&["t1_06.nii.gz"]);
    let rows = stack.wait_all_final(1, &[&scheduler, &worker], Duration::from_secs(240));
    let job = &rows[0];
    assert_eq!((job.state.as_str(), job.attempts, job.object_keys.len()), ("failed", 1, 0), "{job:?}");
    let reason = job.last_error.as_deref().unwrap_or("");
    assert!(reason.contains("this worker runs 9.9.9-next"), "{reason}");
    assert!(stack.objects().is_empty(), "no results stored under the other version's key");
    worker.assert_running();
}

/// An object store that refuses connections is not the study's fault (issue 18): the job is
/// handed back with its attempt refunded, again and again, instead of going `dead` within the
/// outage, and the worker pauses; a worker that reaches the store then runs it on attempt 1.
#[test]
fn an_object_store_outage_spends_no_attempt() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stack = Stack::new("s3down");
    let vars = stack.vars(free_port());
    // The worker's store endpoint: a loopback port nothing listens on (connection refused).
    let mut down = vars.clone();
    down.retain(|(k, _)| k != "NEUROBATCH__STORAGE__ENDPOINT");
    down.push(("NEUROBATCH__STORAGE__ENDPOINT".into(), format!("http://127.0.0.1:{}", free_port())));
    let scheduler = Proc::start("scheduler", stack.root(), &["scheduler"], &vars);
    let cut_off = Proc::start("worker-cut-off", stack.root(), &["worker"], &down);
    stack.drop_studies(&["t1_07.nii.gz"]);
    wait_for(
        "the job handed back",
        Duration::from_secs(120),
        // The job exists first (the scheduler creates the schema at its start).
        || (!stack.jobs().is_empty() && stack.count("audit_events WHERE action = 'job.released'") >= 1).then_some(()),
        || format!("{:#?}\n{}", stack.jobs(), cut_off.log_text()),
    );
    // With 3 attempts 1-2 s apart, retries that spent attempts would have made the job dead by now.
    std::thread::sleep(Duration::from_secs(8));
    let rows = stack.jobs();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(matches!(rows[0].state.as_str(), "queued" | "running"), "not spent on the outage: {rows:#?}");
    assert_eq!(rows[0].attempts, 0, "every attempt refunded: {rows:#?}");
    cut_off.assert_running();
    assert!(cut_off.log_text().contains("pausing: taking no job"), "{}", cut_off.log_text());
    drop(cut_off);
    let worker = Proc::start("worker", stack.root(), &["worker"], &vars);
    let rows = stack.wait_all_final(1, &[&scheduler, &worker], Duration::from_secs(240));
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("succeeded", 1), "{rows:#?}");
    succeeded_once(&rows);
}

/// The broker's names (`list_exchanges` or `list_queues`) under `prefix`.
fn broker_names(what: &str, prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([what, "name", "--no-table-headers", "-q"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rabbitmqctl must be installed to list the broker's objects");
    assert!(out.status.success(), "rabbitmqctl {what}: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(&format!("{prefix}.")))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// `neurobatch queue delete-topology` removes every queue and exchange of its prefix — the
/// exchanges too, which RabbitMQ's own CLI cannot — and only with `--yes`.
#[test]
fn queue_delete_topology_leaves_nothing_of_the_prefix_on_the_broker() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let prefix = format!("nbd-teardown-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let q = Queue::connect(&amqp_url(), common::daemon::fast_queue_options(&prefix)).await.expect("declare");
        q.close().await.expect("close");
    });
    let exchanges = broker_names("list_exchanges", &prefix);
    assert_eq!(
        exchanges,
        ["dead", "jobs", "retry", "review"].map(|x| format!("{prefix}.{x}")).to_vec(),
        "what connecting declared"
    );
    assert!(broker_names("list_queues", &prefix).len() >= 3, "{:?}", broker_names("list_queues", &prefix));

    let mut settings = fast_settings();
    settings.extend([("queue.url", amqp_url()), ("queue.prefix", prefix.clone())]);
    let vars = env(&settings);
    let run = |extra: &[&str]| {
        let mut args = vec!["queue", "delete-topology"];
        args.extend(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_neurobatch"))
            .args(&args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("neurobatch")
    };
    let refused = run(&[]);
    assert!(!refused.status.success(), "refused without --yes");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(broker_names("list_exchanges", &prefix), exchanges, "nothing deleted without --yes");

    let done = run(&["--yes"]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(broker_names("list_exchanges", &prefix), Vec::<String>::new());
    assert_eq!(broker_names("list_queues", &prefix), Vec::<String>::new());
}
