//! The queue's semantics, written once and run against both backends
//! (queue_amqp.rs and queue_memory.rs), so the embedded mode behaves like RabbitMQ.

use std::time::{Duration, Instant};

use neurobatch_core::message::{ModelRef, Priority, ReviewEvent, ReviewReason};
use neurobatch_core::queue::{DeadReason, QueueError, RetryOutcome, ReviewSubscription};
use time::OffsetDateTime;

use super::common::{Env, job, next, next_id, next_within};

pub async fn publish_consume_ack(env: &Env) {
    let q = env.open().await;
    let jobs: Vec<_> = (0..3).map(|n| job(n, Priority::Routine)).collect();
    for j in &jobs {
        q.publish(j).await.unwrap();
    }
    assert_eq!(q.queued().await.unwrap(), 3, "confirmed publishes are on the queue");
    let mut c = q.consume(3).await.unwrap();
    for j in &jobs {
        let d = next(&mut c).await;
        assert_eq!(d.message(), j, "same job, same order");
        assert!(!d.redelivered());
        d.ack().await.unwrap();
    }
    drop(c);
    let mut again = q.consume(1).await.unwrap();
    assert!(next_within(&mut again, 500).await.is_none(), "acked jobs do not come back");
    assert_eq!(q.queued().await.unwrap(), 0);
    drop(again);
    q.close().await.unwrap();
}

pub async fn requeue_redelivers(env: &Env) {
    let q = env.open().await;
    let j = job(1, Priority::Routine);
    q.publish(&j).await.unwrap();
    let mut c = q.consume(1).await.unwrap();
    let d = next(&mut c).await;
    assert!(!d.redelivered());
    d.requeue().await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.message(), &j, "a requeued job keeps its attempt");
    assert!(d.redelivered());
    d.ack().await.unwrap();
    drop(c);
    q.close().await.unwrap();
}

pub async fn retry_with_backoff_then_dead_letter(env: &Env) {
    assert_eq!(env.opts.max_attempts, 3);
    let q = env.open().await;
    let j = job(7, Priority::Stat);
    q.publish(&j).await.unwrap();
    let mut c = q.consume(1).await.unwrap();

    let d = next(&mut c).await;
    assert_eq!(d.message().attempt, 1);
    let first_delay = env.opts.retry_delay(1);
    let t = Instant::now();
    assert_eq!(d.retry("boom 1").await.unwrap(), RetryOutcome::Scheduled { attempt: 2, delay: first_delay });

    let d = next(&mut c).await;
    assert!(t.elapsed() >= first_delay, "came back after {:?}, before its delay {first_delay:?}", t.elapsed());
    assert_eq!(d.message().attempt, 2);
    assert_eq!(d.message().job_id, j.job_id);
    let second_delay = env.opts.retry_delay(2);
    assert!(second_delay > first_delay, "the delay grows");
    let t = Instant::now();
    assert_eq!(d.retry("boom 2").await.unwrap(), RetryOutcome::Scheduled { attempt: 3, delay: second_delay });

    let d = next(&mut c).await;
    assert!(t.elapsed() >= second_delay, "came back after {:?}, before its delay {second_delay:?}", t.elapsed());
    assert_eq!(d.message().attempt, 3);
    assert_eq!(d.retry("boom 3: the last").await.unwrap(), RetryOutcome::DeadLettered);

    assert!(next_within(&mut c, 1000).await.is_none(), "a dead job is not retried");
    let dead = q.pop_dead_letter().await.unwrap().expect("the job is on the dead-letter queue");
    assert_eq!(dead.reason, Some(DeadReason::Exhausted));
    assert_eq!(dead.last_error, "boom 3: the last");
    assert_eq!(dead.attempts, 3);
    let m = dead.message.expect("the dead letter is the job");
    assert_eq!((m.job_id, m.attempt), (j.job_id, 3));
    assert!(q.pop_dead_letter().await.unwrap().is_none());
    drop(c);
    q.close().await.unwrap();
}

pub async fn permanent_failure_is_dead_lettered_at_once(env: &Env) {
    let q = env.open().await;
    let j = job(3, Priority::Routine);
    q.publish(&j).await.unwrap();
    let mut c = q.consume(1).await.unwrap();
    next(&mut c).await.dead_letter("corrupt input: not a NIfTI file").await.unwrap();
    assert!(next_within(&mut c, 800).await.is_none());
    let dead = q.pop_dead_letter().await.unwrap().expect("dead-lettered");
    assert_eq!(dead.reason, Some(DeadReason::Permanent));
    assert_eq!(dead.last_error, "corrupt input: not a NIfTI file");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.message.as_ref(), Some(&j));
    drop(c);
    q.close().await.unwrap();
}

pub async fn a_job_without_a_delivery_is_dead_lettered_by_message(env: &Env) {
    // The reaper's case: the job's worker vanished on its last attempt, so no
    // delivery is in hand; its message goes straight onto the dead-letter queue.
    let q = env.open().await;
    let mut j = job(5, Priority::Routine);
    j.attempt = 3;
    q.publish_dead_letter(&j, DeadReason::LeaseExpired, "lease expired on the last attempt (worker w-1)")
        .await
        .unwrap();
    assert_eq!(q.queued().await.unwrap(), 0, "not on the jobs queue");
    let dead = q.pop_dead_letter().await.unwrap().expect("dead-lettered");
    assert_eq!(dead.reason, Some(DeadReason::LeaseExpired));
    assert_eq!(dead.last_error, "lease expired on the last attempt (worker w-1)");
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.message.as_ref(), Some(&j));
    assert!(q.pop_dead_letter().await.unwrap().is_none());
    q.close().await.unwrap();
}

pub async fn stat_before_routine(env: &Env) {
    let q = env.open().await;
    let routine: Vec<_> = (0..3).map(|n| job(n, Priority::Routine)).collect();
    let stat: Vec<_> = (10..12).map(|n| job(n, Priority::Stat)).collect();
    for j in routine.iter().chain(&stat) {
        q.publish(j).await.unwrap();
    }
    let mut c = q.consume(1).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = next(&mut c).await;
        got.push(d.message().job_id);
        d.ack().await.unwrap();
    }
    let want: Vec<i64> = stat.iter().chain(&routine).map(|j| j.job_id).collect();
    assert_eq!(got, want, "stat first, then routine, each in publish order");
    drop(c);
    q.close().await.unwrap();
}

pub async fn prefetch_limits_unacked(env: &Env) {
    let q = env.open().await;
    for n in 0..3 {
        q.publish(&job(n, Priority::Routine)).await.unwrap();
    }
    let mut c = q.consume(2).await.unwrap();
    let a = next(&mut c).await;
    let _b = next(&mut c).await;
    assert!(next_within(&mut c, 700).await.is_none(), "a third job while two are unacked");
    a.ack().await.unwrap();
    let third = next_within(&mut c, 5000).await.expect("the third job once one was acked");
    assert_eq!(third.message().job_key, "key-2");
    drop(c);
    q.close().await.unwrap();
}

/// A worker pausing (a service its jobs need is down) gives back what the
/// broker pushed to it ahead, so another worker takes it now; the job it
/// holds still settles, and it takes jobs again afterwards.
pub async fn a_paused_consumer_gives_back_what_it_was_sent_ahead(env: &Env) {
    let q = env.open().await;
    for n in 0..2 {
        q.publish(&job(n, Priority::Routine)).await.unwrap();
    }
    let mut paused = q.consume(2).await.unwrap();
    let held = next(&mut paused).await;
    assert_eq!(held.message().job_key, "key-0");
    paused.pause().await.unwrap();

    let other = env.open().await;
    let mut c = other.consume(1).await.unwrap();
    let taken = next_within(&mut c, 5000).await.expect("the job sent ahead to the paused consumer");
    assert_eq!(taken.message().job_key, "key-1");
    held.ack().await.unwrap();
    taken.ack().await.unwrap();

    q.publish(&job(2, Priority::Routine)).await.unwrap();
    drop(c);
    other.close().await.unwrap();
    let resumed = next(&mut paused).await;
    assert_eq!(resumed.message().job_key, "key-2", "the paused consumer takes jobs again");
    resumed.ack().await.unwrap();
    drop(paused);
    q.close().await.unwrap();
}

pub async fn unacked_jobs_return_when_the_consumer_connection_closes(env: &Env) {
    let q = env.open().await;
    let j = job(5, Priority::Routine);
    q.publish(&j).await.unwrap();

    // A second connection takes the job and goes away without settling it.
    let crashed = env.open().await;
    let mut c2 = crashed.consume(1).await.unwrap();
    let held = next(&mut c2).await;
    assert_eq!(held.message(), &j);
    let mut c1 = q.consume(1).await.unwrap();
    assert!(next_within(&mut c1, 500).await.is_none(), "the job is held by the other connection");
    crashed.close().await.unwrap();

    let d = next(&mut c1).await;
    assert_eq!(d.message(), &j);
    assert!(d.redelivered(), "flagged as redelivered");
    d.ack().await.unwrap();
    assert!(held.ack().await.is_err(), "the closed connection's delivery can no longer be acked");
    drop((c1, c2));
    q.close().await.unwrap();
}

/// Graceful shutdown: the consumer stops, the job in flight still acks, and
/// the next job waits on the queue for another worker.
pub async fn a_stopped_consumer_lets_in_flight_jobs_finish(env: &Env) {
    let q = env.open().await;
    let (first, second) = (job(1, Priority::Routine), job(2, Priority::Routine));
    q.publish(&first).await.unwrap();
    q.publish(&second).await.unwrap();
    let mut c = q.consume(1).await.unwrap();
    let d = next(&mut c).await;
    c.cancel().await.unwrap();
    assert!(matches!(c.next().await, Err(QueueError::Closed)));
    drop(c);
    assert_eq!(d.message(), &first);
    d.ack().await.unwrap();
    let mut other = q.consume(1).await.unwrap();
    let d = next(&mut other).await;
    assert_eq!(d.message(), &second);
    assert!(!d.redelivered(), "the second job never left the queue");
    d.ack().await.unwrap();
    assert!(next_within(&mut other, 500).await.is_none(), "the acked job does not come back");
    drop(other);
    q.close().await.unwrap();
}

/// A worker that dies (consumer and deliveries gone, nothing settled): its
/// job comes back, flagged redelivered.
pub async fn a_crashed_consumer_returns_what_it_held(env: &Env) {
    let q = env.open().await;
    let j = job(1, Priority::Stat);
    q.publish(&j).await.unwrap();
    let mut c = q.consume(1).await.unwrap();
    let held = next(&mut c).await;
    drop(held);
    drop(c);
    let mut other = q.consume(1).await.unwrap();
    let d = next(&mut other).await;
    assert_eq!(d.message(), &j);
    assert!(d.redelivered());
    d.ack().await.unwrap();
    drop(other);
    q.close().await.unwrap();
}

pub async fn publish_is_confirmed_or_refused(env: &Env) {
    assert_eq!(env.opts.max_queued, Some(2));
    let q = env.open().await;
    q.publish(&job(1, Priority::Routine)).await.unwrap();
    q.publish(&job(2, Priority::Routine)).await.unwrap();
    assert_eq!(q.queued().await.unwrap(), 2, "each publish returned after the broker had it");
    match q.publish(&job(3, Priority::Routine)).await {
        Err(QueueError::Nacked { exchange }) => assert!(exchange.ends_with(".jobs"), "{exchange}"),
        other => panic!("a publish beyond the bound must be refused, got {other:?}"),
    }
    assert_eq!(q.queued().await.unwrap(), 2);
    q.close().await.unwrap();
}

pub async fn review_events_route_by_reason_and_model(env: &Env) {
    let q = env.open().await;
    let mut all = q.subscribe_reviews("#").await.unwrap();
    let mut uncertain = q.subscribe_reviews("high_uncertainty.*").await.unwrap();
    let mut other_model = q.subscribe_reviews("*.other-model").await.unwrap();
    let reason = |code: &str| ReviewReason {
        code: code.into(),
        metric: "study_uncertainty".into(),
        label: None,
        value: Some(0.4),
        threshold: 0.2,
    };
    let ev = ReviewEvent {
        job_id: next_id(),
        study_id: next_id(),
        model: ModelRef { name: "brain-tissue".into(), version: "1.0.0".into() },
        reasons: vec![reason("out_of_distribution"), reason("high_uncertainty")],
        published_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    };
    q.publish_review(&ev).await.unwrap();
    let (k1, e1) = event(&mut all, 5000).await.expect("event");
    let (k2, _) = event(&mut all, 5000).await.expect("event");
    assert_eq!((k1.as_str(), k2.as_str()), ("out_of_distribution.brain-tissue", "high_uncertainty.brain-tissue"));
    assert_eq!(e1, ev);
    let (k, e) = event(&mut uncertain, 5000).await.expect("event");
    assert_eq!(k, "high_uncertainty.brain-tissue");
    assert_eq!(e.reasons.len(), 2, "each copy carries every reason");
    assert!(event(&mut uncertain, 500).await.is_none(), "one copy per matching reason");
    assert!(event(&mut other_model, 300).await.is_none());
    drop((all, uncertain, other_model));
    q.close().await.unwrap();
}

/// The next review event within `ms`, or `None`.
async fn event(s: &mut ReviewSubscription, ms: u64) -> Option<(String, ReviewEvent)> {
    match tokio::time::timeout(Duration::from_millis(ms), s.next()).await {
        Ok(Ok(ev)) => Some(ev),
        Ok(Err(e)) => panic!("review subscription failed: {e}"),
        Err(_) => None,
    }
}
