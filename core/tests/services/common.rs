//! Test environments: a queue URL and options with a unique prefix, cleaned
//! up when the environment is dropped.

use std::time::Duration;

use neurobatch_core::message::{JobMessage, ModelRef, Priority};
use neurobatch_core::queue::{Consumer, Delivery, Queue, QueueOptions};
use time::OffsetDateTime;
use uuid::Uuid;

pub fn amqp_url() -> String {
    std::env::var("NEUROBATCH_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn unique(test: &str) -> String {
    format!("nbt-{test}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

pub struct Env {
    pub url: String,
    pub opts: QueueOptions,
    amqp: bool,
}

impl Env {
    fn options(prefix: String) -> QueueOptions {
        QueueOptions {
            connection_name: prefix.clone(),
            prefix,
            max_attempts: 3,
            retry_initial: Duration::from_millis(300),
            retry_max: Duration::from_millis(500),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            reconnect_timeout: Duration::from_secs(20),
            max_queued: None,
        }
    }

    pub fn amqp(test: &str) -> Env {
        Env { url: amqp_url(), opts: Self::options(unique(test)), amqp: true }
    }

    pub fn memory(test: &str) -> Env {
        let name = unique(test);
        Env { url: format!("memory://{name}"), opts: Self::options(name), amqp: false }
    }

    pub fn with(mut self, f: impl FnOnce(&mut QueueOptions)) -> Env {
        f(&mut self.opts);
        self
    }

    /// A new connection (AMQP) or handle (memory) on this environment's queues.
    pub async fn open(&self) -> Queue {
        match Queue::connect(&self.url, self.opts.clone()).await {
            Ok(q) => q,
            Err(e) => panic!("connecting to {}: {e} (RabbitMQ must run at 127.0.0.1:5672)", self.url),
        }
    }
}

impl Drop for Env {
    /// Deletes what the test declared, on a runtime of its own (drop is not async).
    fn drop(&mut self) {
        if !self.amqp {
            return;
        }
        let url = self.url.clone();
        let opts = QueueOptions { reconnect_timeout: Duration::from_secs(5), ..self.opts.clone() };
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let q = Queue::connect(&url, opts).await.map_err(|e| e.to_string())?;
                q.delete_topology().await.map_err(|e| e.to_string())?;
                q.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("cleaning up the test's exchanges and queues failed: {cleaned:?}");
        }
    }
}

/// A distinct job / study id per call (the queue tests have no database rows).
pub fn next_id() -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn job(n: u32, priority: Priority) -> JobMessage {
    JobMessage {
        job_id: next_id(),
        job_key: format!("key-{n}"),
        study_uri: format!("file:///studies/{n}"),
        series: vec![format!("1.2.840.{n}")],
        pipeline: "brain-tissue".into(),
        model: ModelRef { name: "brain-tissue".into(), version: "1.0.0".into() },
        priority,
        attempt: 1,
        enqueued_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

/// The next delivery, or `None` if none comes within `ms`.
pub async fn next_within(c: &mut Consumer, ms: u64) -> Option<Delivery> {
    match tokio::time::timeout(Duration::from_millis(ms), c.next()).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => panic!("consumer failed: {e}"),
        Err(_) => None,
    }
}

/// The next delivery; fails the test after 10 s.
pub async fn next(c: &mut Consumer) -> Delivery {
    match next_within(c, 10_000).await {
        Some(d) => d,
        None => panic!("no delivery within 10 s"),
    }
}
