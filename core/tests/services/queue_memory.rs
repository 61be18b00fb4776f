//! The scenarios on the in-process queue (`memory://`).

use super::common::Env;
use super::scenarios;
use neurobatch_core::queue::{Queue, QueueError, QueueOptions};

#[tokio::test]
async fn publish_consume_ack() {
    scenarios::publish_consume_ack(&Env::memory("pca")).await;
}

#[tokio::test]
async fn requeue_redelivers() {
    scenarios::requeue_redelivers(&Env::memory("rq")).await;
}

#[tokio::test]
async fn retry_with_backoff_then_dead_letter() {
    scenarios::retry_with_backoff_then_dead_letter(&Env::memory("retry")).await;
}

#[tokio::test]
async fn permanent_failure_is_dead_lettered_at_once() {
    scenarios::permanent_failure_is_dead_lettered_at_once(&Env::memory("perm")).await;
}

#[tokio::test]
async fn a_job_without_a_delivery_is_dead_lettered_by_message() {
    scenarios::a_job_without_a_delivery_is_dead_lettered_by_message(&Env::memory("deadmsg")).await;
}

#[tokio::test]
async fn stat_before_routine() {
    scenarios::stat_before_routine(&Env::memory("prio")).await;
}

#[tokio::test]
async fn prefetch_limits_unacked() {
    scenarios::prefetch_limits_unacked(&Env::memory("prefetch")).await;
}

#[tokio::test]
async fn a_paused_consumer_gives_back_what_it_was_sent_ahead() {
    scenarios::a_paused_consumer_gives_back_what_it_was_sent_ahead(&Env::memory("pause")).await;
}

#[tokio::test]
async fn unacked_jobs_return_when_the_consumer_connection_closes() {
    scenarios::unacked_jobs_return_when_the_consumer_connection_closes(&Env::memory("close")).await;
}

#[tokio::test]
async fn publish_is_confirmed_or_refused() {
    scenarios::publish_is_confirmed_or_refused(&Env::memory("confirm").with(|o| o.max_queued = Some(2))).await;
}

#[tokio::test]
async fn review_events_route_by_reason_and_model() {
    scenarios::review_events_route_by_reason_and_model(&Env::memory("review")).await;
}

#[tokio::test]
async fn a_stopped_consumer_lets_in_flight_jobs_finish() {
    scenarios::a_stopped_consumer_lets_in_flight_jobs_finish(&Env::memory("stop")).await;
}

#[tokio::test]
async fn a_crashed_consumer_returns_what_it_held() {
    scenarios::a_crashed_consumer_returns_what_it_held(&Env::memory("crash")).await;
}

#[tokio::test]
async fn bad_urls_and_options_are_refused() {
    for url in ["memory://a/b", "redis://x", "amqps://u:secret@h/v", "nothing"] {
        let err = Queue::connect(url, QueueOptions::default()).await.unwrap_err();
        assert!(matches!(err, QueueError::Url { .. }), "{url}: {err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    let bad = QueueOptions { prefix: "has space".into(), ..QueueOptions::default() };
    assert!(matches!(Queue::connect("memory://", bad).await, Err(QueueError::Options(_))));
    let q = Queue::connect("memory://", QueueOptions::default()).await.unwrap();
    assert!(matches!(q.consume(0).await, Err(QueueError::Options(_))));
}
