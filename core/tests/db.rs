//! The job store against the real databases: every test body runs twice,
//! on PostgreSQL (127.0.0.1:5432, or `NEUROBATCH_TEST_POSTGRES`) in a
//! database of its own that is dropped afterwards, and on SQLite in a
//! temporary file. Times are passed in, so leases expire by moving `now`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use neurobatch_core::db::{
    Backend, ClassificationOutput, Completion, DbError, Enqueued, FailOutcome, JobResults, JobStore, LeasePolicy,
    NewJob, NewReviewItem, NewSeries, ReviewFilter, ReviewOutcome, Routing, Scanner, StructureMetric,
};
use neurobatch_core::domain::{
    JobKey, JobKeyInput, JobState, Priority, ReviewAction, ReviewState, Role, StudyIdentity,
};
use neurobatch_core::message::ReviewReason;
use sqlx::Connection as _;
use tokio::sync::Barrier;

#[path = "support/silent_proxy.rs"]
mod silent_proxy;
use silent_proxy::SilentProxy;

/// The PostgreSQL server, without a database name.
fn postgres_server() -> String {
    std::env::var("NEUROBATCH_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// One test's database: its URL (and the folder of a SQLite file).
struct TestDb {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new connection pool on the database, migrated: what a process does at start-up.
    async fn open(&self) -> JobStore {
        let store = JobStore::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        store
    }

    /// Rows in a table, read with a connection of its own.
    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
                let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
                let _ = c.close().await;
                n
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
                let n: i64 = sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
                let _ = c.close().await;
                n
            }
        }
    }

    /// Runs one statement with a connection of its own (what an older release wrote).
    async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
                sqlx::query(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{e}"));
                sqlx::query(sql).execute(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
            }
        }
    }

    async fn counts(&self, tables: &[&str]) -> Vec<i64> {
        let mut out = Vec::new();
        for t in tables {
            out.push(self.count(t).await);
        }
        out
    }
}

/// Runs `body` on a fresh PostgreSQL database, dropped afterwards even when the body panics.
async fn on_postgres<F, Fut>(name: &str, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server = postgres_server();
    let nanos = Utc::now().timestamp_subsec_nanos();
    let mut short: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    short.truncate(30);
    let db = format!("nb_test_{short}_{}_{nanos}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server} (set NEUROBATCH_TEST_POSTGRES): {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{db}\"")).execute(&mut admin).await.unwrap_or_else(|e| panic!("{e}"));
    let test = TestDb { url: format!("{server}/{db}"), backend: Backend::Postgres, _dir: None };
    let outcome = tokio::spawn(body(test)).await;
    sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("dropping {db}: {e}"));
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs `body` on a SQLite file in a temporary folder.
async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A folder that does not exist yet: connect creates it.
    let url = format!("sqlite://{}/data/neurobatch.db", dir.path().display());
    body(TestDb { url, backend: Backend::Sqlite, _dir: Some(dir) }).await;
}

/// One test body, run on both backends.
macro_rules! on_both {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                on_postgres(stringify!($name), |$db: TestDb| async move $body).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                on_sqlite(|$db: TestDb| async move $body).await
            }
        }
    };
}

fn t0() -> DateTime<Utc> {
    // Nanoseconds on purpose: the store keeps microseconds on both backends.
    Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).single().unwrap_or_default()
        + chrono::Duration::nanoseconds(123_456_789)
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn ok<T>(r: Result<T, DbError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn new_job(study: &str, series: &[&str], model: &str) -> NewJob {
    let identity = StudyIdentity::Dicom {
        study_uid: study.to_string(),
        series_uids: series.iter().map(|s| s.to_string()).collect(),
    };
    let key = JobKey::compute(&JobKeyInput {
        identity: &identity,
        pipeline: "brain-tissue",
        model_version: model,
        harmonizer_version: "zscore-1",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    NewJob {
        key,
        study_key: study.to_string(),
        source_uri: format!("file:///inbox/{study}"),
        series: series
            .iter()
            .map(|uid| NewSeries {
                series_uid: uid.to_string(),
                modality: Some("MR".into()),
                description: Some("T1 MPRAGE".into()),
                manufacturer: Some("SIEMENS".into()),
                manufacturer_model: Some("Prisma".into()),
                station_name: None,
                field_strength_t: Some(3.0),
                slices: Some(176),
            })
            .collect(),
        pipeline: "brain-tissue".into(),
        model_version: model.into(),
        harmonizer_version: "zscore-1".into(),
        priority: Priority::Routine,
        max_attempts: 3,
        force: false,
    }
}

fn results(review: bool) -> JobResults {
    JobResults {
        decision: if review { Routing::Review } else { Routing::Accept },
        series_uid: Some("1.2.3.1".into()),
        scanner: Scanner {
            manufacturer: Some("SIEMENS".into()),
            model: Some("Prisma".into()),
            field_strength_t: Some(3.0),
        },
        object_keys: BTreeMap::from([
            ("mask".to_string(), "s/1.2.3/brain-tissue/1.0.0/mask.nii.gz".to_string()),
            ("report".to_string(), "s/1.2.3/brain-tissue/1.0.0/report.json".to_string()),
        ]),
        report: serde_json::json!({ "schema": 1, "routing": { "decision": if review { "review" } else { "accept" } } }),
        structures: vec![
            StructureMetric {
                label: 1,
                structure: "csf".into(),
                voxels: 1000,
                volume_ml: 1.0,
                volume_cv: Some(0.02),
                pairwise_dice: Some(0.95),
                mean_entropy: Some(0.1),
                mean_mutual_information: Some(0.01),
            },
            StructureMetric {
                label: 2,
                structure: "gray_matter".into(),
                voxels: 5000,
                volume_ml: 5.0,
                volume_cv: None,
                pairwise_dice: None,
                mean_entropy: None,
                mean_mutual_information: None,
            },
        ],
        classifications: vec![ClassificationOutput {
            model: "scan-quality".into(),
            label: "good".into(),
            probability: 0.9,
            predictive_entropy: Some(0.3),
            mutual_information: Some(0.05),
            probabilities: BTreeMap::from([("good".to_string(), 0.9), ("degraded".to_string(), 0.1)]),
        }],
        review: review.then(|| NewReviewItem {
            reasons: vec![reason("high_uncertainty", Some(0.4), 0.2)],
            uncertainty: Some(0.4),
        }),
    }
}

const LEASE: Duration = Duration::from_secs(30);
const RESULT_TABLES: [&str; 4] = ["results", "structure_metrics", "classification_outputs", "review_items"];

on_both!(migrations_run_twice_are_a_no_op, |db| {
    let store = db.open().await;
    ok(store.migrate().await);
    let again = db.open().await;
    ok(again.migrate().await);
    assert_eq!(ok(again.applied_migrations().await), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(db.count("jobs").await, 0);
});

on_both!(concurrent_migrations_apply_once, |db| {
    // Separate pools, as separate processes would have, all migrating at once.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(ok(JobStore::connect(&db.url).await));
    }
    let barrier = Arc::new(Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                s.migrate().await
            })
        })
        .collect();
    for t in tasks {
        ok(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(ok(stores[0].applied_migrations().await), vec![1, 2, 3, 4, 5, 6, 7]);
});

on_both!(enqueue_is_idempotent_on_the_job_key, |db| {
    let store = db.open().await;
    let job = new_job("1.2.3", &["1.2.3.1", "1.2.3.2"], "1.0.0");
    let first = ok(store.enqueue(&job, at(0)).await);
    let Enqueued::Created(id) = first else { panic!("first enqueue: {first:?}") };
    // The same study with its series found in another order: the same key.
    let reordered = new_job("1.2.3", &["1.2.3.2", "1.2.3.1"], "1.0.0");
    assert_eq!(reordered.key, job.key);
    assert_eq!(ok(store.enqueue(&reordered, at(1)).await), Enqueued::Existing(id));
    let stored = ok(store.job(id).await).unwrap_or_else(|| panic!("job {id}"));
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!((stored.version, stored.attempts, stored.max_attempts), (1, 0, 3));
    assert_eq!(stored.series_uids, vec!["1.2.3.1".to_string(), "1.2.3.2".to_string()]);
    assert_eq!(stored.created_at, at(0).trunc_subsecs_micros());
    assert_eq!(stored.published_at, None);
    // A new model version is new work.
    let upgraded = new_job("1.2.3", &["1.2.3.1", "1.2.3.2"], "1.1.0");
    let Enqueued::Created(other) = ok(store.enqueue(&upgraded, at(2)).await) else { panic!("new model version") };
    assert_ne!(other, id);
    assert_eq!(db.counts(&["jobs", "studies", "series"]).await, vec![2, 1, 2]);

    // Many schedulers submitting one new study at once: one job.
    let racing = new_job("7.7.7", &["7.7.7.1"], "1.0.0");
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, job, barrier) = (store.clone(), racing.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.enqueue(&job, at(10 + i)).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(ok(t.await.unwrap_or_else(|e| panic!("{e}"))));
    }
    let created: Vec<_> = outcomes.iter().filter(|o| matches!(o, Enqueued::Created(_))).collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.id() == created[0].id()), "{outcomes:?}");
    assert_eq!(ok(store.jobs_by_key(&racing.key).await).len(), 1);
});

on_both!(forced_enqueue_adds_a_version, |db| {
    let store = db.open().await;
    let mut job = new_job("1.2.3", &["1.2.3.1"], "1.0.0");
    let Enqueued::Created(v1) = ok(store.enqueue(&job, at(0)).await) else { panic!("v1") };
    job.force = true;
    let Enqueued::Created(v2) = ok(store.enqueue(&job, at(1)).await) else { panic!("v2") };
    job.force = false;
    assert_eq!(ok(store.enqueue(&job, at(2)).await), Enqueued::Existing(v2), "the latest version");
    // Concurrent forced submissions each get their own version.
    job.force = true;
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (store, job) = (store.clone(), job.clone());
            tokio::spawn(async move { store.enqueue(&job, at(3 + i)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(ok(t.await.unwrap_or_else(|e| panic!("{e}"))), Enqueued::Created(_)));
    }
    let versions: Vec<i64> = ok(store.jobs_by_key(&job.key).await).iter().map(|j| j.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    assert_ne!(v1, v2);
    assert_eq!(db.count("studies").await, 1);
    assert_eq!(db.count("audit_events").await, 6, "one job.enqueued and five job.forced");
});

on_both!(the_outbox_lists_unconfirmed_jobs_stat_first, |db| {
    let store = db.open().await;
    let a = ok(store.enqueue(&new_job("1.1", &["1.1.1"], "1"), at(0)).await).id();
    let mut stat = new_job("2.2", &["2.2.1"], "1");
    stat.priority = Priority::Stat;
    let b = ok(store.enqueue(&stat, at(1)).await).id();
    let c = ok(store.enqueue(&new_job("3.3", &["3.3.1"], "1"), at(2)).await).id();
    let ids = |jobs: Vec<neurobatch_core::db::Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(ok(store.unpublished(10, at(1000)).await)), vec![b, a, c]);
    assert_eq!(ids(ok(store.unpublished(1, at(1000)).await)), vec![b]);
    assert!(ok(store.mark_published(b, at(3)).await));
    assert!(!ok(store.mark_published(b, at(4)).await), "already marked");
    assert_eq!(ids(ok(store.unpublished(10, at(1000)).await)), vec![a, c]);
    assert_eq!(ok(store.job(b).await).and_then(|j| j.published_at), Some(at(3).trunc_subsecs_micros()));
    // A claimed job is not in the outbox even though it was never marked.
    assert!(ok(store.claim(a, "w1", LEASE, at(5)).await).is_some());
    assert_eq!(ids(ok(store.unpublished(10, at(1000)).await)), vec![c]);
    // After a restart of an in-memory queue every queued job is sent again.
    assert_eq!(ok(store.republish_queued().await), 1);
    assert_eq!(ids(ok(store.unpublished(10, at(1000)).await)), vec![b, c]);
});

on_both!(two_workers_claiming_one_job_one_wins, |db| {
    let store = db.open().await;
    for round in 0..5 {
        let id = ok(store.enqueue(&new_job(&format!("9.{round}"), &["9.9"], "1"), at(0)).await).id();
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = ["worker-a", "worker-b"]
            .into_iter()
            .map(|w| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.claim(id, w, LEASE, at(1)).await.map(|c| c.map(|c| c.job.lease_owner))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            if let Some(owner) = ok(t.await.unwrap_or_else(|e| panic!("{e}"))) {
                winners.push(owner);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let job = ok(store.job(id).await).unwrap_or_else(|| panic!("job {id}"));
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(Some(job.lease_owner), winners.pop());
        assert_eq!(job.lease_expires_at, Some((at(1) + chrono::Duration::seconds(30)).trunc_subsecs_micros()));
    }
});

on_both!(a_released_job_is_queued_again_without_spending_an_attempt, |db| {
    let store = db.open().await;
    let id = ok(store.enqueue(&new_job("5.6", &["5.6.1"], "1"), at(0)).await).id();
    ok(store.mark_published(id, at(0)).await);
    assert!(ok(store.claim(id, "w1", LEASE, at(1)).await).is_some());
    assert!(!ok(store.release(id, "w2", "worker shutting down", at(2)).await), "only the holder releases");
    assert!(ok(store.release(id, "w1", "worker shutting down", at(2)).await));
    assert!(!ok(store.release(id, "w1", "worker shutting down", at(3)).await), "released once");
    let job = ok(store.job(id).await).unwrap_or_else(|| panic!("job"));
    assert_eq!((job.state, job.attempts, job.lease_owner.clone()), (JobState::Queued, 0, None));
    // Unpublished until the worker confirms its message went back: else the outbox sends it.
    assert_eq!(job.published_at, None);
    assert_eq!(ok(store.unpublished(10, at(1000)).await).iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert!(ok(store.mark_published(id, at(2)).await), "the worker's requeue confirmed");
    assert!(ok(store.unpublished(10, at(1000)).await).is_empty());
    let again = ok(store.claim(id, "w2", LEASE, at(4)).await).unwrap_or_else(|| panic!("claim after release"));
    assert_eq!(again.job.attempts, 1);
});

/// The reaper's budget for lost workers in these tests: backoff 10 s, 20 s, then 40 s.
fn policy() -> LeasePolicy {
    LeasePolicy {
        poison_after: 3,
        max_expiries: 5,
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(40),
    }
}

on_both!(an_expired_lease_is_reaped_without_spending_an_attempt, |db| {
    // Issue 18: a worker that vanished spent the study's attempt, so a study on
    // nodes evicted three times was dead although nothing was wrong with it.
    let store = db.open().await;
    let p = policy();
    let id = ok(store.enqueue(&new_job("5.5", &["5.5.1"], "1"), at(0)).await).id();
    ok(store.mark_published(id, at(0)).await);
    let claimed = ok(store.claim(id, "w1", LEASE, at(0)).await).unwrap_or_else(|| panic!("claim"));
    assert_eq!(claimed.lease_expires_at, at(30).trunc_subsecs_micros());
    assert!(ok(store.claim(id, "w2", LEASE, at(10)).await).is_none(), "held by a live lease");
    assert_eq!(ok(store.renew_lease(id, "w1", LEASE, at(20)).await), Some(at(50).trunc_subsecs_micros()));
    assert_eq!(ok(store.renew_lease(id, "w2", LEASE, at(20)).await), None, "not w2's lease");
    assert_eq!(ok(store.reap_expired(&p, at(49)).await).requeued, Vec::<i64>::new(), "renewed lease still valid");
    let reaped = ok(store.reap_expired(&p, at(50)).await);
    assert_eq!((reaped.requeued, reaped.dead), (vec![id], vec![]));
    let job = ok(store.job(id).await).unwrap_or_else(|| panic!("job"));
    assert_eq!((job.state, job.attempts, job.lease_owner.clone(), job.published_at), (JobState::Queued, 0, None, None));
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.contains("lease expired (worker w1") && error.contains("not counted"), "{job:?}");
    // It waits out the backoff (10 s after the first loss) before the outbox sends it or a worker takes it.
    assert!(ok(store.unpublished(10, at(59)).await).is_empty());
    assert!(ok(store.claim(id, "w2", LEASE, at(59)).await).is_none(), "backing off");
    assert_eq!(ok(store.unpublished(10, at(60)).await).len(), 1, "the outbox sends it again");
    // The dead worker comes back: it holds nothing any more.
    assert_eq!(ok(store.renew_lease(id, "w1", LEASE, at(51)).await), None);
    assert_eq!(ok(store.fail(id, "w1", "late", true, at(51)).await), FailOutcome::NotHeld { state: JobState::Queued });
    // Its second worker vanishes too. A claim does not take an expired lease over: the reaper records the loss.
    let second = ok(store.claim(id, "w2", LEASE, at(60)).await).unwrap_or_else(|| panic!("second claim"));
    assert_eq!(second.job.attempts, 1);
    assert!(ok(store.claim(id, "w3", LEASE, at(91)).await).is_none(), "an expired lease is not taken over");
    assert_eq!(ok(store.reap_expired(&p, at(91)).await).requeued, vec![id]);
    assert!(ok(store.claim(id, "w3", LEASE, at(110)).await).is_none(), "20 s after the second loss");
    // The study's own errors still have every attempt: two transient failures leave it queued, the third is dead.
    for attempt in 1..=3 {
        let t = 111 + 2 * attempt;
        let c = ok(store.claim(id, "w3", LEASE, at(t)).await).unwrap_or_else(|| panic!("claim {attempt}"));
        assert_eq!(c.job.attempts, attempt);
        let outcome = ok(store.fail(id, "w3", "pipeline error", true, at(t + 1)).await);
        if attempt < 3 {
            assert_eq!(outcome, FailOutcome::Retry { attempts: attempt, max_attempts: 3 });
        } else {
            assert_eq!(outcome, FailOutcome::Dead);
        }
    }
});

on_both!(the_only_job_on_three_vanished_workers_is_poison, |db| {
    let store = db.open().await;
    let p = policy();
    let poison = ok(store.enqueue(&new_job("6.1", &["6.1.1"], "1"), at(0)).await).id();
    let other = ok(store.enqueue(&new_job("6.2", &["6.2.1"], "1"), at(0)).await).id();
    // w1 runs both when it vanishes: neither was alone on it, so neither counts towards poison.
    assert!(ok(store.claim(poison, "w1", LEASE, at(0)).await).is_some());
    assert!(ok(store.claim(other, "w1", LEASE, at(1)).await).is_some());
    assert_eq!(ok(store.reap_expired(&p, at(30)).await).requeued, vec![poison]);
    assert_eq!(ok(store.reap_expired(&p, at(31)).await).requeued, vec![other], "w1's other job, a pass later");
    // Then it is the only job on three workers in a row, each of which vanishes.
    let mut t = 40;
    for (n, worker) in ["w2", "w3", "w4"].into_iter().enumerate() {
        let c = ok(store.claim(poison, worker, LEASE, at(t)).await).unwrap_or_else(|| panic!("claim on {worker}"));
        assert_eq!(c.job.attempts, 1, "no attempt spent by the losses before");
        let reaped = ok(store.reap_expired(&p, at(t + 30)).await);
        if n < 2 {
            assert_eq!((reaped.requeued, reaped.dead), (vec![poison], vec![]), "{worker}");
            t += 30 + if n == 0 { 20 } else { 40 };
        } else {
            assert_eq!((reaped.requeued, reaped.dead), (vec![], vec![poison]), "{worker}");
        }
    }
    let job = ok(store.job(poison).await).unwrap_or_else(|| panic!("job"));
    assert_eq!(job.state, JobState::Dead);
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.starts_with("poison: the only job running on 3 workers that vanished (last w4)"), "{error}");
    assert!(error.contains("lease expired 4 times"), "{error}");
    assert!(job.finished_at.is_some());
    assert_eq!(ok(store.dead_unannounced(10).await).iter().map(|j| j.id).collect::<Vec<_>>(), vec![poison]);
    let beside = ok(store.job(other).await).unwrap_or_else(|| panic!("job"));
    assert_eq!((beside.state, beside.attempts), (JobState::Queued, 0), "lost one worker beside another job");
    assert_eq!(db.count("lease_expiries").await, 5);
});

on_both!(a_job_that_keeps_losing_workers_beside_others_has_a_cap, |db| {
    let store = db.open().await;
    let p = policy();
    let id = ok(store.enqueue(&new_job("6.3", &["6.3.1"], "1"), at(0)).await).id();
    let mut t = 0;
    for n in 1..=5 {
        // Each worker also runs a short job of its own, which finishes before the worker vanishes.
        let worker = format!("w{n}");
        let mate = ok(store.enqueue(&new_job(&format!("7.{n}"), &["7.7.1"], "1"), at(t)).await).id();
        assert!(ok(store.claim(mate, &worker, LEASE, at(t)).await).is_some());
        assert!(ok(store.claim(id, &worker, LEASE, at(t)).await).is_some());
        let reaped = ok(store.reap_expired(&p, at(t + 30)).await);
        let mut both = vec![id, mate];
        both.sort_unstable();
        if n < 5 {
            assert_eq!((reaped.requeued, reaped.dead), (both, vec![]), "loss {n}");
            t += 30 + p.backoff(n).as_secs() as i64;
        } else {
            assert_eq!(reaped.dead, vec![id], "loss {n}");
        }
    }
    let job = ok(store.job(id).await).unwrap_or_else(|| panic!("job"));
    assert!(job.last_error.unwrap_or_default().starts_with("lease expired 5 times (last worker w5)"));
    // An admin's retry starts over: the workers it lost before are forgotten.
    assert!(ok(store.retry_job(id, "admin", at(1000)).await));
    let c = ok(store.claim(id, "w9", LEASE, at(1001)).await).unwrap_or_else(|| panic!("claim after retry"));
    assert_eq!(c.job.attempts, 1);
    let reaped = ok(store.reap_expired(&p, at(1031)).await);
    assert_eq!(reaped.requeued, vec![id], "a fresh budget");
});

on_both!(completing_twice_writes_one_set_of_rows, |db| {
    let store = db.open().await;
    let id = ok(store.enqueue(&new_job("4.4", &["4.4.1"], "1"), at(0)).await).id();
    ok(store.claim(id, "w1", LEASE, at(1)).await).unwrap_or_else(|| panic!("claim"));
    let r = results(true);
    assert_eq!(ok(store.complete(id, "w1", &r, at(2)).await), Completion::Completed);
    assert_eq!(db.counts(&RESULT_TABLES).await, vec![1, 2, 1, 1]);
    // Redelivered to the same or another worker: nothing more is written.
    assert_eq!(ok(store.complete(id, "w1", &r, at(3)).await), Completion::AlreadyCompleted);
    assert_eq!(ok(store.complete(id, "w2", &r, at(4)).await), Completion::AlreadyCompleted);
    assert_eq!(db.counts(&RESULT_TABLES).await, vec![1, 2, 1, 1]);
    let job = ok(store.job(id).await).unwrap_or_else(|| panic!("job"));
    assert_eq!(
        (job.state, job.lease_owner, job.finished_at),
        (JobState::Succeeded, None, Some(at(2).trunc_subsecs_micros()))
    );
    assert!(ok(store.claim(id, "w3", LEASE, at(5)).await).is_none(), "a succeeded job is not claimable");
    assert_eq!(ok(store.fail(id, "w1", "x", true, at(5)).await), FailOutcome::NotHeld { state: JobState::Succeeded });

    // Two workers finishing one job at the same moment (a lease lost mid-job).
    let id2 = ok(store.enqueue(&new_job("4.5", &["4.5.1"], "1"), at(0)).await).id();
    ok(store.claim(id2, "w1", LEASE, at(1)).await).unwrap_or_else(|| panic!("claim"));
    let barrier = Arc::new(Barrier::new(2));
    let tasks: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.complete(id2, w, &results(false), at(2)).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(ok(t.await.unwrap_or_else(|e| panic!("{e}"))));
    }
    outcomes.sort_by_key(|c| *c == Completion::AlreadyCompleted);
    assert_eq!(outcomes, vec![Completion::Completed, Completion::AlreadyCompleted]);
    assert_eq!(db.counts(&RESULT_TABLES).await, vec![2, 4, 2, 1], "accepted results have no review item");

    // What the status API shows.
    let study = ok(store.list_studies(10, 0).await)
        .into_iter()
        .find(|s| s.study_key == "4.4")
        .unwrap_or_else(|| panic!("study"));
    let detail = ok(store.study(study.id).await).unwrap_or_else(|| panic!("detail"));
    let result = detail.jobs[0].result.clone().unwrap_or_else(|| panic!("result"));
    assert_eq!(result.decision, Routing::Review);
    assert_eq!(result.object_keys, r.object_keys);
    assert_eq!(result.review_state, Some(ReviewState::Pending));

    // A dead job refuses results.
    let id3 = ok(store.enqueue(&new_job("4.6", &["4.6.1"], "1"), at(0)).await).id();
    ok(store.claim(id3, "w1", LEASE, at(1)).await).unwrap_or_else(|| panic!("claim"));
    assert_eq!(ok(store.fail(id3, "w1", "corrupt input", false, at(2)).await), FailOutcome::Failed);
    assert!(matches!(store.complete(id3, "w1", &r, at(3)).await, Err(DbError::Closed { state: JobState::Failed, .. })));
    assert!(matches!(store.complete(999_999, "w1", &r, at(3)).await, Err(DbError::NoSuchJob(999_999))));
    assert_eq!(db.counts(&RESULT_TABLES).await, vec![2, 4, 2, 1]);
});

on_both!(failures_retry_fail_or_die_with_the_last_error, |db| {
    let store = db.open().await;
    // Transient then permanent.
    let a = ok(store.enqueue(&new_job("6.1", &["6.1.1"], "1"), at(0)).await).id();
    ok(store.claim(a, "w1", LEASE, at(1)).await).unwrap_or_else(|| panic!("claim"));
    assert_eq!(
        ok(store.fail(a, "w2", "not mine", true, at(2)).await),
        FailOutcome::NotHeld { state: JobState::Running }
    );
    assert_eq!(
        ok(store.fail(a, "w1", "connection reset", true, at(2)).await),
        FailOutcome::Retry { attempts: 1, max_attempts: 3 }
    );
    let job = ok(store.job(a).await).unwrap_or_else(|| panic!("job"));
    assert_eq!(
        (job.state, job.last_error.as_deref(), job.lease_owner),
        (JobState::Queued, Some("connection reset"), None)
    );
    assert_eq!(job.finished_at, None);
    ok(store.claim(a, "w1", LEASE, at(3)).await).unwrap_or_else(|| panic!("retry claim"));
    assert_eq!(ok(store.fail(a, "w1", "not a NIfTI file: bad magic", false, at(4)).await), FailOutcome::Failed);
    let job = ok(store.job(a).await).unwrap_or_else(|| panic!("job"));
    assert_eq!((job.state, job.attempts), (JobState::Failed, 2));
    assert_eq!(job.last_error.as_deref(), Some("not a NIfTI file: bad magic"));
    assert!(ok(store.claim(a, "w1", LEASE, at(5)).await).is_none(), "failed is final");

    // Transient on every attempt: dead with the last error.
    let b = ok(store.enqueue(&new_job("6.2", &["6.2.1"], "1"), at(0)).await).id();
    for attempt in 1..=3 {
        ok(store.claim(b, "w1", LEASE, at(10 * attempt)).await).unwrap_or_else(|| panic!("claim {attempt}"));
        let outcome =
            ok(store.fail(b, "w1", &format!("timeout on attempt {attempt}"), true, at(10 * attempt + 1)).await);
        if attempt < 3 {
            assert_eq!(outcome, FailOutcome::Retry { attempts: attempt, max_attempts: 3 });
        } else {
            assert_eq!(outcome, FailOutcome::Dead);
        }
    }
    let job = ok(store.job(b).await).unwrap_or_else(|| panic!("job"));
    assert_eq!((job.state, job.attempts), (JobState::Dead, 3));
    assert_eq!(job.last_error.as_deref(), Some("timeout on attempt 3"));
    assert_eq!(job.finished_at, Some(at(31).trunc_subsecs_micros()));
    assert!(ok(store.claim(b, "w1", LEASE, at(40)).await).is_none());
    assert!(matches!(store.fail(424_242, "w1", "x", true, at(1)).await, Err(DbError::NoSuchJob(424_242))));
    let counts: BTreeMap<JobState, i64> = ok(store.count_by_state().await).into_iter().collect();
    assert_eq!(counts, BTreeMap::from([(JobState::Failed, 1), (JobState::Dead, 1)]));
    // enqueue a, enqueue b, then a: retry + failed, b: retry, retry, dead.
    assert_eq!(db.count("audit_events").await, 2 + 2 + 3);
});

on_both!(a_restart_loses_nothing, |db| {
    let store = db.open().await;
    let queued = ok(store.enqueue(&new_job("8.1", &["8.1.1"], "1"), at(0)).await).id();
    let running = ok(store.enqueue(&new_job("8.2", &["8.2.1"], "1"), at(0)).await).id();
    let done = ok(store.enqueue(&new_job("8.3", &["8.3.1"], "1"), at(0)).await).id();
    let failed = ok(store.enqueue(&new_job("8.4", &["8.4.1"], "1"), at(0)).await).id();
    for id in [queued, running, done, failed] {
        ok(store.mark_published(id, at(1)).await);
    }
    for id in [running, done, failed] {
        ok(store.claim(id, "w1", LEASE, at(2)).await).unwrap_or_else(|| panic!("claim {id}"));
    }
    ok(store.complete(done, "w1", &results(true), at(3)).await);
    ok(store.fail(failed, "w1", "unsupported transfer syntax", false, at(3)).await);
    let ids = [queued, running, done, failed];
    let mut before = Vec::new();
    for id in ids {
        before.push(ok(store.job(id).await));
    }
    let studies_before = ok(store.list_studies(100, 0).await);
    let rows_before = db.counts(&["jobs", "studies", "series", "results", "review_items", "audit_events"]).await;
    store.close().await;
    drop(store);

    let reopened = db.open().await;
    let mut after = Vec::new();
    for id in ids {
        after.push(ok(reopened.job(id).await));
    }
    assert_eq!(after, before);
    assert_eq!(ok(reopened.list_studies(100, 0).await), studies_before);
    assert_eq!(db.counts(&["jobs", "studies", "series", "results", "review_items", "audit_events"]).await, rows_before);
    // The running job's worker died with the process: its lease expires and it runs again.
    assert_eq!(ok(reopened.reap_expired(&policy(), at(100)).await).requeued, vec![running]);
    // With an in-memory queue the messages are gone: every queued job is published again.
    assert_eq!(ok(reopened.republish_queued().await), 1);
    let outbox: Vec<i64> = ok(reopened.unpublished(10, at(1000)).await).iter().map(|j| j.id).collect();
    assert_eq!(outbox, vec![queued, running]);
});

on_both!(studies_are_listed_with_their_latest_job, |db| {
    let store = db.open().await;
    let a = ok(store.enqueue(&new_job("3.1", &["3.1.1", "3.1.2"], "1"), at(0)).await).id();
    let b = ok(store.enqueue(&new_job("3.1", &["3.1.1", "3.1.2"], "2"), at(1)).await).id();
    let c = ok(store.enqueue(&new_job("3.2", &["3.2.1"], "1"), at(2)).await).id();
    let empty = ok(store
        .record_ineligible("3.3", "file:///inbox/3.3", "no T1-weighted series with at least 100 slices", at(3))
        .await);
    let list = ok(store.list_studies(10, 0).await);
    let keys: Vec<&str> = list.iter().map(|s| s.study_key.as_str()).collect();
    assert_eq!(keys, vec!["3.3", "3.2", "3.1"]);
    assert_eq!(list[0].id, empty);
    assert_eq!(list[0].ineligible_reason.as_deref(), Some("no T1-weighted series with at least 100 slices"));
    assert_eq!((list[0].latest_job_id, list[0].latest_job_state), (None, None));
    assert_eq!((list[1].latest_job_id, list[1].latest_job_state), (Some(c), Some(JobState::Queued)));
    assert_eq!(list[2].latest_job_id, Some(b));
    assert_eq!(ok(store.list_studies(1, 1).await)[0].study_key, "3.2", "limit and offset");

    let detail = ok(store.study(list[2].id).await).unwrap_or_else(|| panic!("study"));
    let series: Vec<&str> = detail.series.iter().map(|s| s.series.series_uid.as_str()).collect();
    assert_eq!(series, vec!["3.1.1", "3.1.2"], "one row per series, not per job");
    assert_eq!(detail.series[0].series.manufacturer.as_deref(), Some("SIEMENS"));
    let jobs: Vec<(i64, String)> = detail.jobs.iter().map(|j| (j.job.id, j.job.model_version.clone())).collect();
    assert_eq!(jobs, vec![(a, "1".to_string()), (b, "2".to_string())]);
    assert!(detail.jobs.iter().all(|j| j.result.is_none()));
    assert!(ok(store.study(987_654).await).is_none());
});

#[tokio::test]
async fn connection_errors_name_the_database_without_its_password() {
    let err = JobStore::connect("postgres://app:hunter2@127.0.0.1:1/nb").await.err().map(|e| e.to_string());
    let text = err.unwrap_or_default();
    assert!(text.contains("postgres://app:***@127.0.0.1:1/nb"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let err = JobStore::connect("mysql://root:pw@db/nb").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("unsupported scheme") && !err.contains(":pw@"), "{err}");
}

/// A connection that goes silent fails its call at the store's deadline — a
/// transient error the worker's breaker and the scheduler's next pass handle —
/// instead of hanging until TCP gives up; once the peer answers again the
/// store works without a restart.
#[tokio::test]
async fn a_silent_connection_fails_at_the_deadline_instead_of_hanging() {
    on_postgres("silent_connection", |db| async move {
        let server = postgres_server();
        let host_port = server.rsplit('@').next().unwrap_or_default().to_string();
        let proxy = SilentProxy::start(host_port.clone()).await;
        let url = db.url.replacen(&host_port, &proxy.addr.to_string(), 1);
        let store = ok(JobStore::connect_with(&url, 1).await).with_call_deadline(Duration::from_secs(1));
        ok(store.ping().await);

        proxy.silence(true);
        let started = std::time::Instant::now();
        let err = store.ping().await.err();
        let waited = started.elapsed();
        assert!(matches!(err, Some(DbError::Deadline { secs: 1 })), "{err:?}");
        assert!(err.is_some_and(|e| e.is_transient()));
        assert!(waited < Duration::from_secs(5), "the call hung for {waited:?}");

        proxy.silence(false);
        let mut recovered = false;
        for _ in 0..50 {
            if store.ping().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(recovered, "the store answers again once the connection does");
        store.close().await;
    })
    .await;
}

/// `DateTime` truncated as the store keeps it.
trait Micros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl Micros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

// ---- The review queue and API tokens (issue 5) ----

/// `n` cases in the review queue, uncertainty 0.1 · (i + 1), the last one stat; their review item ids.
async fn review_cases(store: &JobStore, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let study = format!("9.{i}");
        let mut job = new_job(&study, &[&format!("9.{i}.1")], "1");
        if i + 1 == n {
            job.priority = Priority::Stat;
        }
        let id = ok(store.enqueue(&job, at(0)).await).id();
        assert!(ok(store.claim(id, "w", LEASE, at(1)).await).is_some());
        let mut rows = results(true);
        rows.review = Some(NewReviewItem {
            reasons: if i % 2 == 0 {
                vec![reason("high_uncertainty", Some(1.0), 0.5)]
            } else {
                // Two reasons of one code: the code is stored once, the item listed once.
                vec![reason("out_of_distribution", Some(1.0), 0.5), reason("out_of_distribution", None, 0.5)]
            },
            uncertainty: Some(0.1 * (i as f64 + 1.0)),
        });
        assert_eq!(ok(store.complete(id, "w", &rows, at(2)).await), Completion::Completed);
    }
    let all = ok(store.review_items(&ReviewFilter::default(), at(3)).await);
    for item in &all {
        ids.push(item.id);
    }
    ids
}

on_both!(twenty_reviewers_claiming_ten_cases_get_each_case_exactly_once, |db| {
    let store = Arc::new(db.open().await);
    let ids = review_cases(&store, 10).await;
    assert_eq!(ids.len(), 10);
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|r| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.claim_next_review(&format!("reviewer-{r}"), Duration::from_secs(900), at(10)).await
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(item) = ok(t.await.unwrap_or_else(|e| panic!("{e}"))) {
            assert_eq!(item.state, ReviewState::Claimed);
            got.push(item.id);
        }
    }
    got.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(got, want, "every case claimed exactly once, ten reviewers left empty-handed");
});

on_both!(an_unknown_uncertainty_is_null_sorts_first_and_keeps_the_averages_finite, |db| {
    // A case routed because its uncertainty could not be computed (issue 18:
    // stored as f64::MAX, it made PostgreSQL's AVG overflow and every
    // scheduler pass's metrics fail).
    let store = db.open().await;
    for (i, u) in [Some(0.2), None, Some(0.5)].into_iter().enumerate() {
        let id = ok(store.enqueue(&new_job(&format!("8.{i}"), &[&format!("8.{i}.1")], "1"), at(0)).await).id();
        assert!(ok(store.claim(id, "w", LEASE, at(1)).await).is_some());
        let mut rows = results(true);
        rows.review = Some(NewReviewItem { reasons: Vec::new(), uncertainty: u });
        assert_eq!(ok(store.complete(id, "w", &rows, at(2)).await), Completion::Completed);
    }
    let all = ok(store.review_items(&ReviewFilter::default(), at(3)).await);
    let order: Vec<Option<f64>> = all.iter().map(|i| i.uncertainty).collect();
    assert_eq!(order, vec![None, Some(0.5), Some(0.2)], "unknown first, then the most uncertain");
    assert_eq!(serde_json::to_value(&all[0]).unwrap_or_default()["uncertainty"], serde_json::Value::Null);
    let stats = ok(store.admin_stats(at(4)).await);
    assert_eq!(stats.review_backlog, 3);
    let mean = stats.routing.iter().find_map(|r| r.mean_uncertainty).unwrap_or(f64::NAN);
    assert!((mean - 0.35).abs() < 1e-12, "the mean of the known scores, {mean}");
    let first = ok(store.claim_next_review("ann", Duration::from_secs(60), at(5)).await);
    assert_eq!(first.map(|i| i.uncertainty), Some(None), "the unknown case is claimed first");
});

fn reason(code: &str, value: Option<f64>, threshold: f64) -> ReviewReason {
    ReviewReason { code: code.into(), metric: "m".into(), label: None, value, threshold }
}

on_both!(migration_6_lists_the_reason_codes_of_existing_review_items, |db| {
    // Review items written before `review_reasons` existed: their codes are only in the JSON.
    migrate_up_to(&db, 5).await;
    let store = JobStore::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 {
        let id = ok(store.enqueue(&new_job(&format!("6.{i}"), &[&format!("6.{i}.1")], "1"), at(0)).await).id();
        claim_before_migration_7(&db, id).await;
        let mut rows = results(true);
        rows.review = Some(NewReviewItem { reasons: Vec::new(), uncertainty: Some(0.1) });
        assert_eq!(ok(store.complete(id, "w", &rows, at(2)).await), Completion::Completed);
        let reasons = match i {
            0 => {
                r#"[{"code":"out_of_distribution","metric":"ood_score","value":9.0,"threshold":6.7},{"code":"out_of_distribution","metric":"x","value":null,"threshold":1.0}]"#
            }
            1 => r#"[{"code":"low_predicted_dice","metric":"predicted_dice","label":1,"value":0.8,"threshold":0.86}]"#,
            _ => "[]",
        };
        db.execute(&format!("UPDATE review_items SET reasons = '{reasons}' WHERE job_id = {id}")).await;
    }
    ok(store.migrate().await);
    assert_eq!(db.count("review_reasons").await, 2, "one row per item and distinct code");
    let by = |code: &str| ReviewFilter { reason: Some(code.into()), ..ReviewFilter::default() };
    let ood = ok(store.review_items(&by("out_of_distribution"), at(3)).await);
    assert_eq!(ood.len(), 1);
    assert_eq!(ood[0].reasons.len(), 2, "the stored reasons are read back whole");
    assert_eq!(ok(store.review_items(&by("low_predicted_dice"), at(3)).await)[0].reasons[0].label, Some(1));
    // Equality, not a substring: a prefix of a code matches nothing.
    assert!(ok(store.review_items(&by("out_of"), at(3)).await).is_empty());
    assert!(ok(store.review_items(&by("%"), at(3)).await).is_empty());
});

/// Applies the embedded migrations up to `version` only, as an older release left the database.
async fn migrate_up_to(db: &TestDb, version: i64) {
    use neurobatch_core::db::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    let files = ok_io(tempfile::tempdir());
    let embedded = match db.backend {
        Backend::Postgres => POSTGRES_MIGRATIONS,
        Backend::Sqlite => SQLITE_MIGRATIONS,
    };
    for (v, description, sql) in embedded.iter().filter(|m| m.0 <= version) {
        ok_io(std::fs::write(files.path().join(format!("{v:04}_{description}.sql")), sql));
    }
    let migrator = sqlx::migrate::Migrator::new(files.path()).await.unwrap_or_else(|e| panic!("{e}"));
    // Creates the SQLite file and its folder.
    JobStore::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}")).close().await;
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
            migrator.run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
            migrator.run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
            pool.close().await;
        }
    }
}

/// What `claim` did to a job before `jobs.not_before` existed (which today's `claim` reads), by worker `w`.
async fn claim_before_migration_7(db: &TestDb, id: i64) {
    db.execute(&format!("UPDATE jobs SET state = 'running', attempts = 1, lease_owner = 'w' WHERE id = {id}")).await;
}

fn ok_io<T>(r: std::io::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

on_both!(migration_3_turns_the_stored_sentinel_into_null, |db| {
    // A database written by a release that stored an unknown uncertainty as f64::MAX.
    migrate_up_to(&db, 2).await;
    let store = JobStore::connect(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok(store.applied_migrations().await), vec![1, 2]);
    for (i, u) in [f64::MAX, 0.3].into_iter().enumerate() {
        let id = ok(store.enqueue(&new_job(&format!("7.{i}"), &[&format!("7.{i}.1")], "1"), at(0)).await).id();
        claim_before_migration_7(&db, id).await;
        let mut rows = results(true);
        rows.review = Some(NewReviewItem { reasons: Vec::new(), uncertainty: Some(u) });
        assert_eq!(ok(store.complete(id, "w", &rows, at(2)).await), Completion::Completed);
    }
    // Comments and audit events reference the review items: the migration keeps them valid.
    let first = ok(store.claim_next_review("ann", Duration::from_secs(60), at(3)).await).map(|i| i.id);
    ok(store.migrate().await);
    assert_eq!(ok(store.applied_migrations().await), vec![1, 2, 3, 4, 5, 6, 7]);
    let all = ok(store.review_items(&ReviewFilter::default(), at(4)).await);
    assert_eq!(all.iter().map(|i| i.uncertainty).collect::<Vec<_>>(), vec![None, Some(0.3)]);
    assert_eq!(all[0].id, first.unwrap_or_default(), "ids survive");
    assert_eq!(all[0].claimed_by.as_deref(), Some("ann"), "the other columns survive");
    let stats = ok(store.admin_stats(at(4)).await);
    assert_eq!(stats.routing.iter().find_map(|r| r.mean_uncertainty), Some(0.3));
});

on_both!(pulled_series_are_remembered_with_their_instance_count, |db| {
    let store = db.open().await;
    assert_eq!(ok(store.pulled_instances("1.2", "1.2.3").await), None);
    ok(store.record_pull("1.2", "1.2.3", 40, at(0)).await);
    ok(store.record_pull("1.2", "1.2.4", 7, at(0)).await);
    assert_eq!(ok(store.pulled_instances("1.2", "1.2.3").await), Some(40));
    // Pulled again after it grew: one row, the new count.
    ok(store.record_pull("1.2", "1.2.3", 41, at(60)).await);
    assert_eq!(ok(store.pulled_instances("1.2", "1.2.3").await), Some(41));
    assert_eq!(db.count("pacs_pulls").await, 2);
});

on_both!(the_review_queue_orders_filters_leases_and_decides, |db| {
    let store = db.open().await;
    let ids = review_cases(&store, 4).await;
    let all = ok(store.review_items(&ReviewFilter::default(), at(3)).await);
    let order: Vec<(Priority, f64)> =
        all.iter().map(|i| (i.priority, (i.uncertainty.unwrap_or(f64::NAN) * 10.0).round())).collect();
    assert_eq!(
        order,
        vec![(Priority::Stat, 4.0), (Priority::Routine, 3.0), (Priority::Routine, 2.0), (Priority::Routine, 1.0)]
    );
    assert_eq!(all[0].model, "brain-tissue@1");
    assert_eq!(all[0].scanner.as_deref(), Some("SIEMENS Prisma"));
    let ood = ReviewFilter { reason: Some("out_of_distribution".into()), ..ReviewFilter::default() };
    assert_eq!(ok(store.review_items(&ood, at(3)).await).len(), 2);
    let stat = ReviewFilter { priority: Some(Priority::Stat), ..ReviewFilter::default() };
    assert_eq!(ok(store.review_items(&stat, at(3)).await).len(), 1);
    let other_model = ReviewFilter { model: Some("other".into()), ..ReviewFilter::default() };
    assert!(ok(store.review_items(&other_model, at(3)).await).is_empty());
    assert_eq!(ids.len(), 4);

    // Claim the first; only its holder may decide or release it.
    let lease = Duration::from_secs(60);
    let first = ok(store.claim_next_review("ann", lease, at(10)).await).unwrap_or_else(|| panic!("claim"));
    assert_eq!(first.id, all[0].id);
    let not_held = ok(store.decide_review(first.id, "bob", ReviewAction::Approve, None, None, at(11)).await);
    assert!(
        matches!(not_held, ReviewOutcome::NotHeld { state: ReviewState::Claimed, claimed_by: Some(ref who) } if who == "ann")
    );
    // The lease expires: the case is back in the queue, and ann's late decision is refused.
    let pending = ok(store
        .review_items(&ReviewFilter { state: Some(ReviewState::Pending), ..ReviewFilter::default() }, at(71))
        .await);
    assert_eq!(pending.len(), 4, "the expired claim returned to the queue");
    let late = ok(store.decide_review(first.id, "ann", ReviewAction::Approve, None, None, at(72)).await);
    assert!(matches!(late, ReviewOutcome::NotHeld { state: ReviewState::Pending, .. }), "{late:?}");

    // Escalate: back in the queue, stat, marked.
    let again = ok(store.claim_next_review("bob", lease, at(80)).await).unwrap_or_else(|| panic!("claim"));
    let ReviewOutcome::Done(esc) =
        ok(store.decide_review(again.id, "bob", ReviewAction::Escalate, None, Some("for a senior"), at(81)).await)
    else {
        panic!("escalate")
    };
    assert_eq!(
        (esc.state, esc.escalated, esc.priority, esc.decision),
        (ReviewState::Pending, true, Priority::Stat, None)
    );
    // Release, approve, correct.
    let c = ok(store.claim_next_review("cat", lease, at(90)).await).unwrap_or_else(|| panic!("claim"));
    assert!(
        matches!(ok(store.release_review(c.id, "cat", at(91)).await), ReviewOutcome::Done(ref i) if i.state == ReviewState::Pending)
    );
    let c = ok(store.claim_next_review("cat", lease, at(92)).await).unwrap_or_else(|| panic!("claim"));
    let ReviewOutcome::Done(approved) =
        ok(store.decide_review(c.id, "cat", ReviewAction::Approve, None, None, at(93)).await)
    else {
        panic!("approve")
    };
    assert_eq!(
        (approved.state, approved.decision, approved.decided_by.as_deref()),
        (ReviewState::Decided, Some(ReviewAction::Approve), Some("cat"))
    );
    let d = ok(store.claim_next_review("dan", lease, at(94)).await).unwrap_or_else(|| panic!("claim"));
    let key = "review/1/correction-1.nii.gz";
    assert!(matches!(
        ok(store.decide_review(d.id, "dan", ReviewAction::Correct, Some(key), Some("fixed the cortex"), at(95)).await),
        ReviewOutcome::Done(_)
    ));
    assert!(ok(store.comment_review(d.id, "eve", "agreed", at(96)).await));
    assert!(!ok(store.comment_review(999_999, "eve", "no such case", at(96)).await));
    let case = ok(store.review_case(d.id).await).unwrap_or_else(|| panic!("case"));
    assert_eq!(case.correction_key.as_deref(), Some(key));
    assert_eq!(case.comments.iter().map(|c| c.author.as_str()).collect::<Vec<_>>(), vec!["dan", "eve"]);
    assert_eq!(case.structures.len(), 2);
    assert_eq!(case.object_keys.get("mask").map(String::as_str), Some("s/1.2.3/brain-tissue/1.0.0/mask.nii.gz"));
    // The export sees the approved and the corrected case, not the escalated one.
    let decided = ok(store.decided_cases(at(0)).await);
    assert_eq!(decided.iter().map(|c| c.item.id).collect::<Vec<_>>(), vec![approved.id, d.id]);
    assert!(ok(store.decided_cases(at(94)).await).iter().all(|c| c.item.id == d.id));
    assert!(matches!(ok(store.release_review(123_456, "x", at(97)).await), ReviewOutcome::NoSuchItem));
    // Every action is audited with its actor.
    let actions = db.count("audit_events WHERE action LIKE 'review.%' AND action <> 'review.created'").await;
    assert_eq!(actions, 11, "claimed ×5, lease_expired, escalate, released, approve, correct, commented");
});

on_both!(api_tokens_are_stored_hashed_and_can_be_revoked, |db| {
    let store = db.open().await;
    let t = ok(store.create_token("night-shift-1", Role::Reviewer, "ab".repeat(32).as_str(), at(0)).await);
    assert_eq!((t.name.as_str(), t.role, t.revoked_at), ("night-shift-1", Role::Reviewer, None));
    assert!(
        store.create_token("night-shift-1", Role::Admin, "cd".repeat(32).as_str(), at(1)).await.is_err(),
        "names are unique"
    );
    let found = ok(store.token_by_sha256(&"ab".repeat(32)).await).unwrap_or_else(|| panic!("lookup"));
    assert_eq!(found.id, t.id);
    assert!(ok(store.token_by_sha256(&"ef".repeat(32)).await).is_none());
    assert!(ok(store.revoke_token("night-shift-1", at(2)).await));
    assert!(!ok(store.revoke_token("night-shift-1", at(3)).await), "revoked once");
    assert!(ok(store.token_by_sha256(&"ab".repeat(32)).await).is_none(), "a revoked token no longer authenticates");
    assert_eq!(ok(store.tokens().await).len(), 1);
});

on_both!(dicom_sends_are_decided_once_retried_with_backoff_and_reset_by_an_admin, |db| {
    let store = db.open().await;
    // A DICOM study's result (with a SEG and an SR) and a NIfTI-like one without.
    let mut ids = Vec::new();
    for (i, dicom) in [(0, true), (1, false)] {
        let id = ok(store.enqueue(&new_job(&format!("7.{i}"), &[&format!("7.{i}.1")], "1"), at(0)).await).id();
        claim_before_migration_7(&db, id).await;
        let mut rows = results(false);
        if dicom {
            rows.object_keys.insert("seg".into(), format!("s/7.{i}/seg.dcm"));
            rows.object_keys.insert("sr".into(), format!("s/7.{i}/sr.dcm"));
        }
        assert_eq!(ok(store.complete(id, "w", &rows, at(2)).await), Completion::Completed);
        ids.push(id);
    }
    // Results older than the look-back are not candidates.
    assert!(ok(store.undecided_dicom_results(at(3), 10).await).is_empty());
    let candidates = ok(store.undecided_dicom_results(at(0), 10).await);
    assert_eq!(candidates.iter().map(|c| c.job_id).collect::<Vec<_>>(), ids);
    assert!(candidates[0].object_keys.contains_key("seg") && !candidates[1].object_keys.contains_key("seg"));
    assert_eq!(candidates[0].decision, "accept");
    let sends: Vec<(String, String, String)> = ["seg", "sr"]
        .iter()
        .map(|o| ("PACS@10.0.0.1:104".to_string(), o.to_string(), format!("s/7.0/{o}.dcm")))
        .collect();
    ok(store.decide_dicom_sends(candidates[0].result_id, ids[0], &sends, None, at(3)).await);
    ok(store.decide_dicom_sends(candidates[1].result_id, ids[1], &[], None, at(3)).await);
    // Decided once: a second decision (a second scheduler, a restart) adds nothing.
    ok(store.decide_dicom_sends(candidates[0].result_id, ids[0], &sends, None, at(4)).await);
    assert!(ok(store.undecided_dicom_results(at(0), 10).await).is_empty());
    assert_eq!(db.count("dicom_sends").await, 2);

    let due = ok(store.due_dicom_sends(at(3), 10).await);
    assert_eq!(due.iter().map(|d| d.output.as_str()).collect::<Vec<_>>(), vec!["seg", "sr"], "the SEG first");
    // The SEG fails and waits; the SR goes through.
    ok(store
        .dicom_send_failed(due[0].id, "C-STORE to PACS@10.0.0.1:104: association: refused", at(5), Some(at(65)))
        .await);
    ok(store.dicom_send_succeeded(due[1].id, at(5)).await);
    assert!(ok(store.due_dicom_sends(at(64), 10).await).is_empty(), "not before its backoff");
    let again = ok(store.due_dicom_sends(at(65), 10).await);
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    ok(store.dicom_send_failed(again[0].id, "refused again", at(66), None).await);
    let counts = ok(store.dicom_send_counts().await);
    assert_eq!((counts.get("sent"), counts.get("failed"), counts.get("pending")), (Some(&1), Some(&1), None));
    assert_eq!(ok(store.admin_stats(at(66)).await).dicom_sends, counts);
    // A settled send is not changed by a late mark.
    ok(store.dicom_send_succeeded(again[0].id, at(67)).await);
    assert_eq!(ok(store.dicom_send_counts().await).get("failed"), Some(&1));
    // An admin puts the failed one back, from its first attempt.
    assert_eq!(ok(store.retry_failed_dicom_sends(at(70)).await), 1);
    let retried = ok(store.due_dicom_sends(at(70), 10).await);
    assert_eq!((retried.len(), retried[0].attempts, retried[0].output.as_str()), (1, 0, "seg"));
    let counts = ok(store.dicom_send_counts().await);
    assert_eq!((counts.get("pending"), counts.get("sent"), counts.get("failed")), (Some(&1), Some(&1), None));

    // An object that could not be made (a corrected SEG without its recipe): its sends are
    // decided as failed with the reason, for an admin to see, and are not due.
    let id = ok(store.enqueue(&new_job("7.2", &["7.2.1"], "1"), at(71)).await).id();
    claim_before_migration_7(&db, id).await;
    let mut rows = results(false);
    rows.object_keys.insert("seg".into(), "s/7.2/seg.dcm".into());
    assert_eq!(ok(store.complete(id, "w", &rows, at(72)).await), Completion::Completed);
    let candidate = ok(store.undecided_dicom_results(at(71), 10).await).pop().expect("the third result");
    assert_eq!(candidate.correction, None, "no review item, no correction");
    let refused = vec![("PACS@10.0.0.1:104".to_string(), "seg".to_string(), "s/7.2/seg-r1.dcm".to_string())];
    ok(store.decide_dicom_sends(candidate.result_id, id, &refused, Some("no seg_recipe"), at(73)).await);
    assert!(ok(store.due_dicom_sends(at(80), 10).await).iter().all(|d| d.job_id != id), "not due");
    assert_eq!(ok(store.dicom_send_counts().await).get("failed"), Some(&1));
});
