//! Dispatch (outbox → queue, the nightly window), the messages workers
//! receive, the reaper, and `run()` end to end.

use std::time::Duration;

use chrono::{Local, TimeZone as _, Utc};
use neurobatch_core::domain::Priority;
use neurobatch_core::message::{self, JobMessage};
use neurobatch_core::queue::Consumer;
use scheduler::Submission;
use tokio_util::sync::CancellationToken;

use crate::helpers::{App, Db, age, ok, pipeline, testdata};

fn at(h: u32, m: u32) -> chrono::DateTime<Local> {
    Local.with_ymd_and_hms(2026, 3, 2, h, m, 0).single().unwrap_or_else(|| panic!("local time {h}:{m}"))
}

async fn next(consumer: &mut Consumer) -> neurobatch_core::queue::Delivery {
    ok(tokio::time::timeout(Duration::from_secs(20), consumer.next()).await.map_err(|_| "no message within 20 s"))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn nothing_queued(app: &App) {
    assert_eq!(ok(app.queue.queued().await), 0);
}

fn job_id(sub: &Submission) -> i64 {
    match sub {
        Submission::Enqueued { job_id, .. } => *job_id,
        other => panic!("expected a new job: {other:?}"),
    }
}

/// The message a worker gets carries exactly the job row.
async fn check_message(app: &App, msg: &JobMessage, id: i64, attempt: u32) {
    let job = ok(app.store.job(id).await).unwrap_or_else(|| panic!("job {id}"));
    assert_eq!(msg.job_id, id);
    assert_eq!(msg.job_key, job.key.as_str());
    assert_eq!(msg.study_uri, job.source_uri);
    assert_eq!(msg.series, job.series_uids);
    assert_eq!(msg.pipeline, pipeline().name);
    assert_eq!(msg.model.name, pipeline().model_name);
    assert_eq!(msg.model.version, pipeline().model_version);
    assert_eq!(msg.attempt, attempt);
    assert_eq!(msg.enqueued_at.unix_timestamp(), job.created_at.timestamp());
    let want = if job.priority == Priority::Stat { message::Priority::Stat } else { message::Priority::Routine };
    assert_eq!(msg.priority, want);
    assert!(job.published_at.is_some());
}

async fn dispatch_window_and_reaper(db: Db) {
    let app = App::start(db, "dispatch", |c| {
        c.scheduler.nightly_window = "19:00-07:00".into();
        c.queue.retry_initial_secs = 1;
    })
    .await;
    let dir = app.dir.path();
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), dir.join("stat.nii")));
    ok(std::fs::copy(testdata("nifti/standard.nii.gz"), dir.join("routine.nii.gz")));
    let stat = job_id(&ok(app.sched.submit(&dir.join("stat.nii").display().to_string(), Priority::Stat, false).await));
    let routine = job_id(&ok(app
        .sched
        .submit(&dir.join("routine.nii.gz").display().to_string(), Priority::Routine, false)
        .await));
    let mut consumer = ok(app.queue.consume(4).await);

    // Noon: stat goes at once, routine waits for the window.
    assert_eq!(ok(app.sched.dispatch_once(at(12, 0)).await), 1);
    let d = next(&mut consumer).await;
    check_message(&app, d.message(), stat, 1).await;
    ok(d.ack().await);
    assert_eq!(ok(app.sched.dispatch_once(at(18, 59)).await), 0);
    nothing_queued(&app).await;
    let waiting = ok(app.store.unpublished(10, Utc::now()).await);
    assert_eq!(waiting.iter().map(|j| j.id).collect::<Vec<_>>(), vec![routine]);

    // 23:00 is inside the window (it wraps midnight).
    assert_eq!(ok(app.sched.dispatch_once(at(23, 0)).await), 1);
    let d = next(&mut consumer).await;
    check_message(&app, d.message(), routine, 1).await;
    assert!(ok(app.store.unpublished(10, Utc::now()).await).is_empty());
    assert_eq!(ok(app.sched.dispatch_once(at(23, 1)).await), 0);

    // A worker claims the routine job and dies: its lease expires, the reaper
    // puts the job back in the outbox without spending the attempt, and
    // dispatch sends it again — as attempt 1 still — after the backoff (1 s).
    let long_ago = Utc::now() - chrono::TimeDelta::hours(1);
    let claimed = ok(app.store.claim(routine, "worker-1", Duration::from_secs(30), long_ago).await);
    assert!(claimed.is_some());
    ok(d.ack().await);
    let reaped = ok(app.sched.reap_once().await);
    assert_eq!(reaped.requeued, vec![routine]);
    assert!(reaped.dead.is_empty());
    assert_eq!(ok(app.sched.reap_once().await), scheduler::Reaped::default());
    assert_eq!(ok(app.sched.dispatch_once(at(2, 0)).await), 0, "backing off");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ok(app.sched.dispatch_once(at(2, 0)).await), 1);
    let d = next(&mut consumer).await;
    check_message(&app, d.message(), routine, 1).await;
    ok(d.ack().await);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_window_and_reaper_sqlite() {
    dispatch_window_and_reaper(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_window_and_reaper_postgres() {
    dispatch_window_and_reaper(Db::Postgres).await;
}

async fn a_job_dead_of_expired_leases_reaches_the_dead_letter_queue(db: Db) {
    // Issue 18: the reaper declared such a job dead and only logged it, so an
    // operator watching the DLQ never saw it.
    let app = App::start(db, "dead_lease", |_| {}).await;
    let scan = app.dir.path().join("scan.nii");
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), &scan));
    let id = job_id(&ok(app.sched.submit(&scan.display().to_string(), Priority::Stat, false).await));
    let crashes = app.config.worker.poison_after_crashes;
    let policy = app.config.worker.lease_policy(&app.config.queue);
    // It is the only job on each of its workers, and each vanishes (a poison
    // study): the reaper records the losses, then declares it dead.
    let start = Utc::now() - chrono::TimeDelta::days(1);
    for crash in 0..crashes {
        let t = start + chrono::TimeDelta::hours(2 * i64::from(crash));
        assert!(ok(app.store.claim(id, &format!("worker-{crash}"), Duration::from_secs(30), t).await).is_some());
        if crash + 1 < crashes {
            let reaped = ok(app.store.reap_expired(&policy, t + chrono::TimeDelta::minutes(1)).await);
            assert_eq!(reaped.requeued, vec![id]);
        }
    }
    let reaped = ok(app.sched.reap_once().await);
    assert_eq!(reaped.dead, vec![id]);
    assert_eq!(ok(app.sched.announce_dead_once().await), 1);
    assert_eq!(ok(app.sched.announce_dead_once().await), 0, "announced once");
    let dead = ok(app.queue.pop_dead_letter().await).unwrap_or_else(|| panic!("job {id} is not on the DLQ"));
    assert_eq!(dead.reason, Some(neurobatch_core::queue::DeadReason::LeaseExpired));
    assert_eq!(dead.attempts, 1, "the lost workers spent no attempt");
    assert!(dead.last_error.starts_with("poison: the only job running on 3 workers"), "{}", dead.last_error);
    let msg = dead.message.unwrap_or_else(|| panic!("the dead letter is the job's message"));
    check_message(&app, &msg, id, 1).await;
    assert!(ok(app.queue.pop_dead_letter().await).is_none());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dead_of_expired_leases_reaches_the_dead_letter_queue_sqlite() {
    a_job_dead_of_expired_leases_reaches_the_dead_letter_queue(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dead_of_expired_leases_reaches_the_dead_letter_queue_postgres() {
    a_job_dead_of_expired_leases_reaches_the_dead_letter_queue(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_queue_restart_publishes_queued_jobs_again() {
    let app = App::start(Db::Sqlite, "restart", |_| {}).await;
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), app.dir.path().join("a.nii")));
    let id =
        job_id(&ok(app.sched.submit(&app.dir.path().join("a.nii").display().to_string(), Priority::Stat, false).await));
    assert_eq!(ok(app.sched.dispatch_once(Local::now()).await), 1);
    assert!(ok(app.store.unpublished(10, Utc::now()).await).is_empty());
    // The process restarts: a memory queue lost its messages, so `new` puts the job back in the outbox.
    let again = app.restarted().await;
    assert_eq!(ok(app.store.unpublished(10, Utc::now()).await).iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(ok(again.dispatch_once(Local::now()).await), 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingests_dispatches_and_stops_on_shutdown() {
    let app = App::start(Db::Sqlite, "run", |c| c.scheduler.listen = "127.0.0.1:0".into()).await;
    ok(std::fs::create_dir_all(&app.inbox));
    ok(std::fs::copy(testdata("nifti/anatomical.nii"), app.inbox.join("a.nii")));
    age(&app.inbox, 10);
    let mut consumer = ok(app.queue.consume(1).await);
    let token = CancellationToken::new();
    let running = tokio::spawn({
        let s = app.sched.clone();
        let t = token.clone();
        async move { s.run(t).await }
    });
    let d = next(&mut consumer).await;
    assert_eq!(d.message().series, vec!["a.nii".to_string()]);
    ok(d.ack().await);
    token.cancel();
    let outcome = ok(tokio::time::timeout(Duration::from_secs(20), running).await.map_err(|_| "run did not stop"));
    ok(ok(outcome));
    app.finish().await;
}
