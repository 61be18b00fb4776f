//! The scenarios on RabbitMQ, plus what only a real broker has: persistent
//! properties, malformed messages, idempotent topology, refused and
//! unreachable brokers, and reconnection after the broker closes the connection.

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use neurobatch_core::message::Priority;
use neurobatch_core::queue::{DeadReason, Queue, QueueError, QueueOptions};

use super::common::{self, Env, amqp_url, job, next, next_within};
use super::scenarios;
use crate::silent_proxy::SilentProxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_ack() {
    scenarios::publish_consume_ack(&Env::amqp("pca")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_redelivers() {
    scenarios::requeue_redelivers(&Env::amqp("rq")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_backoff_then_dead_letter() {
    scenarios::retry_with_backoff_then_dead_letter(&Env::amqp("retry")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_is_dead_lettered_at_once() {
    scenarios::permanent_failure_is_dead_lettered_at_once(&Env::amqp("perm")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_delivery_is_dead_lettered_by_message() {
    scenarios::a_job_without_a_delivery_is_dead_lettered_by_message(&Env::amqp("deadmsg")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_before_routine() {
    scenarios::stat_before_routine(&Env::amqp("prio")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_limits_unacked() {
    scenarios::prefetch_limits_unacked(&Env::amqp("prefetch")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_gives_back_what_it_was_sent_ahead() {
    scenarios::a_paused_consumer_gives_back_what_it_was_sent_ahead(&Env::amqp("pause")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_jobs_return_when_the_consumer_connection_closes() {
    scenarios::unacked_jobs_return_when_the_consumer_connection_closes(&Env::amqp("close")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_confirmed_or_refused() {
    scenarios::publish_is_confirmed_or_refused(&Env::amqp("confirm").with(|o| o.max_queued = Some(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_events_route_by_reason_and_model() {
    scenarios::review_events_route_by_reason_and_model(&Env::amqp("review")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_consumer_lets_in_flight_jobs_finish() {
    scenarios::a_stopped_consumer_lets_in_flight_jobs_finish(&Env::amqp("stop")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_consumer_returns_what_it_held() {
    scenarios::a_crashed_consumer_returns_what_it_held(&Env::amqp("crash")).await;
}

/// A raw connection, to look at what the adapter put on the broker.
async fn raw() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_persistent_json_with_their_priority() {
    let env = Env::amqp("props");
    let q = env.open().await;
    let j = job(1, Priority::Stat);
    q.publish(&j).await.unwrap();
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(format!("{}.jobs", env.opts.prefix).into(), lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the job is on the durable jobs queue");
    let p = &got.delivery.properties;
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert_eq!(*p.priority(), Some(2), "stat = 2");
    assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
    assert_eq!(p.message_id().as_ref().map(|s| s.to_string()), Some(j.job_id.to_string()));
    assert_eq!(neurobatch_core::message::JobMessage::from_json(&got.delivery.data).unwrap(), j);
    conn.close(200, "done".into()).await.unwrap();
    q.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_not_fatal() {
    let env = Env::amqp("malformed");
    let q = env.open().await;
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    for body in [&b"not json"[..], br#"{"schema": 99, "job_id": "x"}"#] {
        ch.basic_publish(
            format!("{}.jobs", env.opts.prefix).into(),
            "job".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let good = job(2, Priority::Routine);
    q.publish(&good).await.unwrap();
    let mut c = q.consume(1).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.message(), &good, "the consumer skips what it cannot read");
    d.ack().await.unwrap();
    // The unreadable ones (priority 0, behind the job) are dead-lettered while waiting for more.
    assert!(next_within(&mut c, 1500).await.is_none());
    let first = q.pop_dead_letter().await.unwrap().expect("first malformed message");
    assert_eq!(first.payload, b"not json");
    assert_eq!(first.reason, Some(DeadReason::Malformed));
    assert!(first.last_error.contains("not valid json"), "{}", first.last_error);
    let second = q.pop_dead_letter().await.unwrap().expect("second malformed message");
    assert!(second.last_error.contains("schema version 99"), "{}", second.last_error);
    assert!(second.message.is_none());
    drop(c);
    conn.close(200, "done".into()).await.unwrap();
    q.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_idempotent_and_a_clash_is_a_typed_error() {
    let env = Env::amqp("topo");
    let a = env.open().await;
    let b = env.open().await; // the same declarations again: accepted
    a.publish(&job(1, Priority::Routine)).await.unwrap();
    assert_eq!(b.queued().await.unwrap(), 1, "both connections see one queue");
    let clash = QueueOptions { max_queued: Some(5), ..env.opts.clone() };
    match Queue::connect(&env.url, clash).await {
        Err(QueueError::Topology { object, .. }) => assert_eq!(object, format!("{}.jobs", env.opts.prefix)),
        other => panic!("expected a topology clash, got {other:?}"),
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_refusing_brokers_are_typed_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens there now
    let opts = QueueOptions {
        prefix: super::common::unique("unreach"),
        reconnect_initial: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        reconnect_timeout: Duration::from_secs(1),
        ..QueueOptions::default()
    };
    let started = std::time::Instant::now();
    match Queue::connect(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"), opts.clone()).await {
        Err(QueueError::Unavailable { target, .. }) => assert!(target.contains("***"), "{target}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "it retried for the whole window");

    match Queue::connect("amqp://guest:wrong-secret@127.0.0.1:5672/%2f", opts).await {
        Err(e @ QueueError::Refused { .. }) => assert!(!e.to_string().contains("wrong-secret"), "{e}"),
        other => panic!("expected refused, got {other:?}"),
    }
}

/// Closes, from the broker's side, every connection whose client name is `name`.
fn broker_closes_connections(name: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--no-table-headers", "-q"])
        .output()
        .expect("rabbitmqctl must be installed to close a connection from the broker's side");
    assert!(out.status.success(), "rabbitmqctl list_connections: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> =
        listing.lines().filter(|l| l.contains(name)).filter_map(|l| l.split_whitespace().next()).collect();
    for pid in &pids {
        let st = Command::new("rabbitmqctl").args(["close_connection", pid, "test: broker-side close"]).status();
        assert!(st.is_ok_and(|s| s.success()), "rabbitmqctl close_connection {pid}");
    }
    pids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_closes_the_connection() {
    let env = Env::amqp("reconnect");
    let q = env.open().await;
    let before = job(1, Priority::Routine);
    q.publish(&before).await.unwrap();
    let mut c = q.consume(2).await.unwrap();
    let held = next(&mut c).await;
    assert_eq!(held.message(), &before);

    assert!(broker_closes_connections(&env.opts.prefix) >= 1, "the test's connection was found and closed");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The delivery of the dead connection cannot be acked: the broker requeued it.
    assert!(held.ack().await.is_err());
    // Publishing reconnects (backoff) and redeclares; the consumer is re-established.
    let after = job(2, Priority::Routine);
    q.publish(&after).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = next(&mut c).await;
        got.push((d.message().job_key.clone(), d.redelivered()));
        d.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, vec![("key-1".to_owned(), true), ("key-2".to_owned(), false)]);
    assert!(next_within(&mut c, 500).await.is_none(), "nothing left unacked or duplicated");
    assert_eq!(q.queued().await.unwrap(), 0);
    drop(c);
    q.close().await.unwrap();
}

/// A stopping worker cancels its consumer and closes its connection; a broker
/// that went quiet (socket open, no reply) must not hold either for ever: each
/// gives up after its reply timeout with a typed error, and the process can exit
/// (the broker returns what the connection held once it notices it is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_gone_quiet_does_not_hold_up_a_shutdown() {
    let env = Env::amqp("quiet");
    let host_port = env.url.rsplit('@').next().and_then(|r| r.split('/').next()).unwrap_or_default().to_string();
    let proxy = SilentProxy::start(host_port.clone()).await;
    let url = env.url.replacen(&host_port, &proxy.addr.to_string(), 1);
    let q = Queue::connect(&url, env.opts.clone()).await.expect("connected through the proxy");
    let mut c = q.consume(1).await.unwrap();
    // The consumer's channel opens on its first wait for a job.
    assert!(next_within(&mut c, 500).await.is_none(), "nothing queued");

    proxy.silence(true);
    let started = std::time::Instant::now();
    let cancelled = tokio::time::timeout(Duration::from_secs(30), c.cancel())
        .await
        .expect("cancel still waiting after 30 s for a broker that never answers");
    assert!(matches!(&cancelled, Err(QueueError::Broker { op: "cancel", .. })), "{cancelled:?}");
    let closed = tokio::time::timeout(Duration::from_secs(30), q.close())
        .await
        .expect("close still waiting after 30 s for the close-ok");
    assert!(matches!(&closed, Err(QueueError::Broker { op: "close", .. })), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "both gave up after their reply timeout: {:?}",
        started.elapsed()
    );
}

/// Review events reach a plain AMQP subscriber that binds its own queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_systems_can_subscribe_to_review_events() {
    let env = Env::amqp("review-raw");
    let q = env.open().await;
    let conn = raw().await;
    let ch = conn.create_channel().await.unwrap();
    let sub = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions { exclusive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        sub.name().clone(),
        format!("{}.review", env.opts.prefix).into(),
        "out_of_distribution.#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            sub.name().clone(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ev = neurobatch_core::message::ReviewEvent {
        job_id: common::next_id(),
        study_id: common::next_id(),
        model: neurobatch_core::message::ModelRef { name: "qc".into(), version: "2".into() },
        reasons: vec![neurobatch_core::message::ReviewReason {
            code: "out_of_distribution".into(),
            metric: "ood_score".into(),
            label: None,
            value: None,
            threshold: 0.5,
        }],
        published_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    q.publish_review(&ev).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("event").unwrap().unwrap();
    assert_eq!(d.routing_key.as_str(), "out_of_distribution.qc");
    assert_eq!(*d.properties.delivery_mode(), Some(2));
    assert_eq!(neurobatch_core::message::ReviewEvent::from_json(&d.data).unwrap(), ev);
    conn.close(200, "done".into()).await.unwrap();
    q.close().await.unwrap();
}
