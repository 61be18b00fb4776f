//! The job queue: one [`Queue`] type whose backend is chosen by URL —
//! `amqp://user:pass@host:port/vhost` (RabbitMQ through lapin) or
//! `memory://[name]` (in-process, for the embedded mode) — with the same
//! semantics on both:
//!
//! - publishing returns only once the broker confirmed the message (persistent,
//!   with its priority: stat before routine);
//! - a consumer holds at most `prefetch` unacknowledged jobs; the caller acks
//!   after its results are committed;
//! - a job that is neither acked nor settled goes back to the queue (flagged
//!   redelivered) when its consumer goes away;
//! - [`Delivery::retry`] sends a job back after an exponential delay until
//!   `max_attempts`, then to the dead-letter queue with its last error;
//!   [`Delivery::dead_letter`] does so at once (permanent errors); a message
//!   that is not a valid job is dead-lettered as `malformed` by the consumer;
//! - review events go to a topic exchange with key `<reason>.<model>`.
//!
//! The AMQP backend declares its topology idempotently at each (re)connect and
//! reconnects with exponential backoff; consumers are re-established. The
//! memory backend keeps everything in the process: it is lost on restart, which
//! is why the database, not the queue, holds job state. Topology, headers and the
//! retry schedule are described in docs/queue-and-storage.md.

mod amqp;
mod error;
mod memory;
pub mod topology;

use std::time::Duration;

pub use error::QueueError;

use crate::message::{JobMessage, Priority, ReviewEvent};

/// Settings shared by both backends (the config layer fills them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Prefix of every exchange and queue name (`<prefix>.jobs`, …).
    pub prefix: String,
    /// Attempts a job gets in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; it doubles per attempt…
    pub retry_initial: Duration,
    /// …up to this.
    pub retry_max: Duration,
    /// First wait before reconnecting to the broker; it doubles per try…
    pub reconnect_initial: Duration,
    /// …up to this.
    pub reconnect_max: Duration,
    /// How long an outage may last before publish / next give up with
    /// [`QueueError::Unavailable`].
    pub reconnect_timeout: Duration,
    /// Bound on the jobs queue: a publish beyond it is refused
    /// ([`QueueError::Nacked`]) and the job stays in the database's outbox.
    pub max_queued: Option<u32>,
    /// The name the broker shows for this process's connection.
    pub connection_name: String,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            prefix: "neurobatch".into(),
            max_attempts: 5,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(600),
            max_queued: None,
            connection_name: "neurobatch".into(),
        }
    }
}

/// The broker priority of a job.
pub fn broker_priority(p: Priority) -> u8 {
    match p {
        Priority::Stat => topology::MAX_PRIORITY,
        Priority::Routine => 1,
    }
}

/// A connection to the job queue; cheap to clone (clones share it).
#[derive(Clone)]
pub enum Queue {
    Amqp(amqp::AmqpQueue),
    Memory(memory::MemoryQueue),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Queue::Amqp(q) => write!(f, "Queue::Amqp({})", q.target()),
            Queue::Memory(q) => write!(f, "Queue::Memory({})", q.name()),
        }
    }
}

impl Queue {
    /// Connects (AMQP: with backoff, up to `reconnect_timeout`) and declares
    /// the topology.
    pub async fn connect(url: &str, options: QueueOptions) -> Result<Queue, QueueError> {
        options.validate()?;
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "amqp" => Ok(Queue::Amqp(amqp::AmqpQueue::connect(url, options).await?)),
            "memory" => Ok(Queue::Memory(memory::MemoryQueue::open(url, options)?)),
            "amqps" => Err(QueueError::Url {
                url: crate::config::redact(url),
                reason: "amqps (TLS) is not built in; use amqp:// inside the cluster or a TLS sidecar".into(),
            }),
            _ => Err(QueueError::Url {
                url: crate::config::redact(url),
                reason: "expected amqp://… or memory://…".into(),
            }),
        }
    }

    pub fn options(&self) -> &QueueOptions {
        match self {
            Queue::Amqp(q) => q.options(),
            Queue::Memory(q) => q.options(),
        }
    }

    /// Publishes a job; returns once the broker confirmed it.
    pub async fn publish(&self, job: &JobMessage) -> Result<(), QueueError> {
        let payload = job.to_json()?;
        match self {
            Queue::Amqp(q) => q.publish_job(job, payload).await,
            Queue::Memory(q) => q.publish_job(job, payload),
        }
    }

    /// Puts a job's message on the dead-letter queue with `reason` and the
    /// last error, its `attempt` counted as the attempts used: for a job that
    /// died without a delivery in hand (the reaper gave it up after it lost
    /// too many workers). Returns once the broker confirmed it.
    pub async fn publish_dead_letter(
        &self,
        job: &JobMessage,
        reason: DeadReason,
        error: &str,
    ) -> Result<(), QueueError> {
        let payload = job.to_json()?;
        match self {
            Queue::Amqp(q) => q.publish_dead_letter(job, payload, reason, error).await,
            Queue::Memory(q) => q.publish_dead_letter(job, payload, reason, error),
        }
    }

    /// Publishes a review event once per distinct reason code, with routing
    /// key `<reason>.<model>`; returns once the broker confirmed every copy.
    pub async fn publish_review(&self, event: &ReviewEvent) -> Result<(), QueueError> {
        let payload = event.to_json()?;
        for key in event.routing_keys() {
            match self {
                Queue::Amqp(q) => q.publish_review(&key, &payload).await?,
                Queue::Memory(q) => q.publish_review(&key, &payload),
            }
        }
        Ok(())
    }

    /// Subscribes to review events whose routing key matches a topic pattern
    /// (`#`, `high_uncertainty.*`, `*.brain-tissue`). The AMQP subscription is
    /// an exclusive, auto-deleted queue: it sees events published after this
    /// call, and it is not re-established after a lost connection (`next`
    /// then fails; subscribe again).
    pub async fn subscribe_reviews(&self, pattern: &str) -> Result<ReviewSubscription, QueueError> {
        match self {
            Queue::Amqp(q) => Ok(ReviewSubscription::Amqp(Box::new(q.subscribe_reviews(pattern).await?))),
            Queue::Memory(q) => Ok(ReviewSubscription::Memory(q.subscribe_reviews(pattern))),
        }
    }

    /// Starts consuming jobs, at most `prefetch` (the worker's concurrency) unacked at a time.
    pub async fn consume(&self, prefetch: u16) -> Result<Consumer, QueueError> {
        if prefetch == 0 {
            return Err(QueueError::Options("prefetch: at least 1".into()));
        }
        match self {
            Queue::Amqp(q) => Ok(Consumer::Amqp(Box::new(q.consumer(prefetch)))),
            Queue::Memory(q) => Ok(Consumer::Memory(q.consumer(prefetch))),
        }
    }

    /// Takes the oldest message off the dead-letter queue (for inspection or
    /// re-submission), or `None` when it is empty.
    pub async fn pop_dead_letter(&self) -> Result<Option<DeadLetter>, QueueError> {
        match self {
            Queue::Amqp(q) => q.pop_dead_letter().await,
            Queue::Memory(q) => Ok(q.pop_dead_letter()),
        }
    }

    /// Jobs waiting on the jobs queue (not counting unacked or delayed ones).
    pub async fn queued(&self) -> Result<u32, QueueError> {
        match self {
            Queue::Amqp(q) => q.queued().await,
            Queue::Memory(q) => Ok(q.queued()),
        }
    }

    /// Whether the broker answers within `within` (readiness): for AMQP a
    /// passive declaration of the jobs queue on the shared connection (no
    /// consumer is created; a lost connection is re-opened as for any call,
    /// but the answer does not wait past `within`); the memory queue always
    /// answers. Returns the jobs waiting, as [`Queue::queued`].
    pub async fn ping(&self, within: std::time::Duration) -> Result<u32, QueueError> {
        match self {
            Queue::Amqp(q) => match tokio::time::timeout(within, q.queued()).await {
                Ok(r) => r,
                Err(_) => Err(QueueError::Unavailable {
                    target: q.target().to_owned(),
                    seconds: within.as_secs(),
                    reason: "no answer (connecting)".into(),
                }),
            },
            Queue::Memory(q) => Ok(q.queued()),
        }
    }

    /// Closes the connection; unacked deliveries go back to the queue.
    pub async fn close(&self) -> Result<(), QueueError> {
        match self {
            Queue::Amqp(q) => q.close().await,
            Queue::Memory(q) => {
                q.close();
                Ok(())
            }
        }
    }

    /// Deletes every exchange and queue of this prefix (tests and teardown).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        match self {
            Queue::Amqp(q) => q.delete_topology().await,
            Queue::Memory(q) => {
                q.delete_topology();
                Ok(())
            }
        }
    }
}

/// A stream of job deliveries.
pub enum Consumer {
    Amqp(Box<amqp::AmqpConsumer>),
    Memory(memory::MemoryConsumer),
}

impl Consumer {
    /// The next job; waits for one. Re-establishes the AMQP consumer after a
    /// lost connection (unacked jobs of the old connection come back
    /// redelivered); fails with [`QueueError::Unavailable`] when the broker
    /// stays away longer than `reconnect_timeout`.
    pub async fn next(&mut self) -> Result<Delivery, QueueError> {
        match self {
            Consumer::Amqp(c) => c.next().await,
            Consumer::Memory(c) => c.next().await,
        }
    }

    /// Takes no job until the next [`Consumer::next`] (a worker pausing while
    /// a service its jobs need is down): the jobs the broker already pushed
    /// to this consumer within its prefetch go back to the queue, first in
    /// line for any consumer, instead of waiting here for the pause to end;
    /// the deliveries already handed out can still be settled. Returns how
    /// many went back (the in-process queue pushes nothing ahead: 0).
    pub async fn pause(&mut self) -> Result<usize, QueueError> {
        match self {
            Consumer::Amqp(c) => c.pause().await,
            Consumer::Memory(_) => Ok(0),
        }
    }

    /// Stops taking jobs (graceful shutdown): once this returns the broker
    /// sends this consumer nothing more, while the deliveries already handed
    /// out can still be settled. `next` then fails with [`QueueError::Closed`].
    pub async fn cancel(&mut self) -> Result<(), QueueError> {
        match self {
            Consumer::Amqp(c) => c.cancel().await,
            Consumer::Memory(c) => {
                c.cancel();
                Ok(())
            }
        }
    }
}

/// What [`Delivery::retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The job comes back as `attempt` after `delay`.
    Scheduled { attempt: u32, delay: Duration },
    /// The job had used its attempts and went to the dead-letter queue.
    DeadLettered,
}

/// Why a message is on the dead-letter queue (header `x-neurobatch-dead-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Failed `max_attempts` times with transient errors.
    Exhausted,
    /// Failed with an error that retrying cannot fix.
    Permanent,
    /// Not a job message this build can read.
    Malformed,
    /// Its workers kept vanishing while holding it (crashed, were killed or
    /// lost their connections): it was the only job on several of them (a
    /// poison study), or lost `worker.max_lease_expiries` workers in all.
    LeaseExpired,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Exhausted => "exhausted",
            DeadReason::Permanent => "permanent",
            DeadReason::Malformed => "malformed",
            DeadReason::LeaseExpired => "lease_expired",
        }
    }

    pub fn parse(s: &str) -> Option<DeadReason> {
        match s {
            "exhausted" => Some(DeadReason::Exhausted),
            "permanent" => Some(DeadReason::Permanent),
            "malformed" => Some(DeadReason::Malformed),
            "lease_expired" => Some(DeadReason::LeaseExpired),
            _ => None,
        }
    }
}

/// A message taken off the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message as it was on the jobs queue.
    pub payload: Vec<u8>,
    /// The job, when the payload is one.
    pub message: Option<JobMessage>,
    pub reason: Option<DeadReason>,
    pub last_error: String,
    pub attempts: u32,
}

/// One job handed to a consumer. Settle it with exactly one of
/// [`ack`](Delivery::ack), [`retry`](Delivery::retry),
/// [`dead_letter`](Delivery::dead_letter) or [`requeue`](Delivery::requeue);
/// one dropped unsettled stays unacked until its consumer goes away, then
/// comes back.
#[derive(Debug)]
pub struct Delivery {
    message: JobMessage,
    redelivered: bool,
    options: QueueOptions,
    handle: DeliveryHandle,
}

#[derive(Debug)]
enum DeliveryHandle {
    Amqp(amqp::AmqpDelivery),
    Memory(memory::MemoryDelivery),
}

impl Delivery {
    pub fn message(&self) -> &JobMessage {
        &self.message
    }

    /// Whether the broker handed this message out before (to a consumer that
    /// went away without settling it).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The job is done and its results committed.
    pub async fn ack(self) -> Result<(), QueueError> {
        let id = self.message.job_id;
        match self.handle {
            DeliveryHandle::Amqp(d) => d.ack(id).await,
            DeliveryHandle::Memory(d) => d.ack(id),
        }
    }

    /// Back to the queue now with the same attempt (for example on shutdown).
    pub async fn requeue(self) -> Result<(), QueueError> {
        let id = self.message.job_id;
        match self.handle {
            DeliveryHandle::Amqp(d) => d.requeue(id).await,
            DeliveryHandle::Memory(d) => d.requeue(id),
        }
    }

    /// A transient failure: the job comes back after the schedule's delay
    /// as its next attempt, or goes to the dead-letter queue when this was
    /// its last attempt. `error` travels in the `x-neurobatch-last-error` header.
    pub async fn retry(self, error: &str) -> Result<RetryOutcome, QueueError> {
        if self.message.attempt >= self.options.max_attempts {
            self.settle_dead(DeadReason::Exhausted, error).await?;
            return Ok(RetryOutcome::DeadLettered);
        }
        let delay = self.options.retry_delay(self.message.attempt);
        let next = self.message.next_attempt();
        let payload = next.to_json()?;
        let error = topology::clip_error(error);
        let id = self.message.job_id;
        match self.handle {
            DeliveryHandle::Amqp(d) => d.retry(id, &next, payload, delay, &error).await?,
            DeliveryHandle::Memory(d) => d.retry(id, &next, payload, delay, &error)?,
        }
        Ok(RetryOutcome::Scheduled { attempt: next.attempt, delay })
    }

    /// A transient failure on the job's last attempt as the job store counts
    /// them (it may count attempts this message did not carry, e.g. a worker
    /// that died): to the dead-letter queue with reason `exhausted`.
    pub async fn exhausted(self, error: &str) -> Result<(), QueueError> {
        self.settle_dead(DeadReason::Exhausted, error).await
    }

    /// A permanent failure: straight to the dead-letter queue with `error`.
    pub async fn dead_letter(self, error: &str) -> Result<(), QueueError> {
        self.settle_dead(DeadReason::Permanent, error).await
    }

    async fn settle_dead(self, reason: DeadReason, error: &str) -> Result<(), QueueError> {
        let error = topology::clip_error(error);
        let id = self.message.job_id;
        let attempts = self.message.attempt;
        match self.handle {
            DeliveryHandle::Amqp(d) => d.dead_letter(id, reason, &error, attempts).await,
            DeliveryHandle::Memory(d) => d.dead_letter(id, reason, &error, attempts),
        }
    }
}

/// A subscription to review events: `(routing key, event)` pairs.
pub enum ReviewSubscription {
    Amqp(Box<amqp::AmqpReviewSubscription>),
    Memory(memory::MemoryReviewSubscription),
}

impl ReviewSubscription {
    pub async fn next(&mut self) -> Result<(String, ReviewEvent), QueueError> {
        match self {
            ReviewSubscription::Amqp(s) => s.next().await,
            ReviewSubscription::Memory(s) => s.next().await,
        }
    }
}
