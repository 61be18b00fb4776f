//! The in-process queue behind `memory://[name]`: the embedded mode's broker,
//! with the AMQP backend's semantics (confirmed publish, priorities, prefetch,
//! redelivery of unacked jobs when their consumer is dropped, delayed
//! retries, dead letters, topic-routed review events). Queues opened with the
//! same name and prefix in one process share one broker. Nothing survives the
//! process: the database is the source of truth and republishes what was lost.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::topology::{clip_error, topic_matches};
use super::{DeadLetter, DeadReason, Delivery, DeliveryHandle, QueueError, QueueOptions, ReviewEvent, broker_priority};
use crate::message::JobMessage;

/// One handle on a broker: like an AMQP connection, closing it returns what
/// its consumers held. Clones share the handle.
#[derive(Clone)]
pub struct MemoryQueue {
    broker: Arc<Broker>,
    handle: u64,
    name: String,
    options: QueueOptions,
}

struct Broker {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    ready: BinaryHeap<Ready>,
    delayed: Vec<(Instant, Entry)>,
    /// Delivery tag → (consumer, entry).
    unacked: HashMap<u64, (u64, Entry)>,
    /// Consumer → (handle it was opened on, deliveries it holds).
    consumers: HashMap<u64, (u64, usize)>,
    closed_handles: Vec<u64>,
    dead: VecDeque<DeadLetter>,
    /// Review subscribers: topic pattern and where to send `(routing key, payload)`.
    reviews: Vec<(String, ReviewSender)>,
    seq: u64,
    next_id: u64,
}

#[derive(Clone)]
struct Entry {
    payload: Vec<u8>,
    priority: u8,
    redelivered: bool,
    /// Order of first arrival; 0 until queued. A requeued message keeps it
    /// and so its place, as RabbitMQ puts requeued messages back where they were.
    seq: u64,
}

struct Ready {
    priority: u8,
    seq: u64,
    entry: Entry,
}

impl PartialEq for Ready {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ready {
    /// Higher priority first, then first in first out.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl State {
    fn push_ready(&mut self, mut entry: Entry) {
        if entry.seq == 0 {
            self.seq += 1;
            entry.seq = self.seq;
        }
        self.ready.push(Ready { priority: entry.priority, seq: entry.seq, entry });
    }

    /// Moves due retries to the ready queue; returns when the next one is due.
    fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, entry) = self.delayed.swap_remove(i);
                self.push_ready(entry);
            } else {
                i += 1;
            }
        }
        self.delayed.iter().map(|(due, _)| *due).min()
    }

    /// Puts what a consumer holds back on the queue, flagged redelivered,
    /// in its old place.
    fn return_held(&mut self, consumer: u64) {
        let tags: Vec<u64> = self.unacked.iter().filter(|(_, (c, _))| *c == consumer).map(|(t, _)| *t).collect();
        for tag in tags {
            if let Some((_, mut entry)) = self.unacked.remove(&tag) {
                entry.redelivered = true;
                self.push_ready(entry);
            }
        }
        self.consumers.remove(&consumer);
    }
}

type ReviewSender = mpsc::UnboundedSender<(String, Vec<u8>)>;

type Registry = Mutex<HashMap<String, Weak<Broker>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryQueue {
    pub(super) fn open(url: &str, options: QueueOptions) -> Result<MemoryQueue, QueueError> {
        let name = url.strip_prefix("memory://").unwrap_or_default();
        if name.contains(['/', '?', '#']) {
            return Err(QueueError::Url { url: url.into(), reason: "expected memory:// or memory://<name>".into() });
        }
        let key = format!("{name}|{}", options.prefix);
        let mut reg = lock(registry());
        reg.retain(|_, b| b.strong_count() > 0);
        let broker = match reg.get(&key).and_then(Weak::upgrade) {
            Some(b) => b,
            None => {
                let b = Arc::new(Broker { state: Mutex::new(State::default()), notify: Notify::new() });
                reg.insert(key, Arc::downgrade(&b));
                b
            }
        };
        drop(reg);
        let handle = {
            let mut st = lock(&broker.state);
            st.next_id += 1;
            st.next_id
        };
        Ok(MemoryQueue { broker, handle, name: format!("memory://{name}"), options })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn options(&self) -> &QueueOptions {
        &self.options
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.broker.state)
    }

    pub(super) fn publish_job(&self, job: &JobMessage, payload: Vec<u8>) -> Result<(), QueueError> {
        let mut st = self.state();
        if st.closed_handles.contains(&self.handle) {
            return Err(QueueError::Closed);
        }
        if let Some(max) = self.options.max_queued
            && st.ready.len() >= max as usize
        {
            return Err(QueueError::Nacked { exchange: format!("{}.jobs", self.options.prefix) });
        }
        st.push_ready(Entry { payload, priority: broker_priority(job.priority), redelivered: false, seq: 0 });
        drop(st);
        self.broker.notify.notify_waiters();
        Ok(())
    }

    pub(super) fn publish_review(&self, key: &str, payload: &[u8]) {
        let mut st = self.state();
        st.reviews.retain(|(_, tx)| !tx.is_closed());
        for (pattern, tx) in &st.reviews {
            if topic_matches(pattern, key) {
                // A closed receiver is removed on the next publish.
                let _ = tx.send((key.to_owned(), payload.to_vec()));
            }
        }
    }

    pub(super) fn subscribe_reviews(&self, pattern: &str) -> MemoryReviewSubscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state().reviews.push((pattern.to_owned(), tx));
        MemoryReviewSubscription { rx }
    }

    pub(super) fn consumer(&self, prefetch: u16) -> MemoryConsumer {
        let mut st = self.state();
        st.next_id += 1;
        let id = st.next_id;
        st.consumers.insert(id, (self.handle, 0));
        MemoryConsumer {
            channel: Arc::new(Channel { queue: self.clone(), id }),
            prefetch: usize::from(prefetch),
            cancelled: false,
        }
    }

    pub(super) fn pop_dead_letter(&self) -> Option<DeadLetter> {
        self.state().dead.pop_front()
    }

    pub(super) fn queued(&self) -> u32 {
        u32::try_from(self.state().ready.len()).unwrap_or(u32::MAX)
    }

    /// Closes this handle: its consumers stop and what they held goes back.
    pub(super) fn close(&self) {
        let mut st = self.state();
        st.closed_handles.push(self.handle);
        let mine: Vec<u64> = st.consumers.iter().filter(|(_, (h, _))| *h == self.handle).map(|(c, _)| *c).collect();
        for c in mine {
            st.return_held(c);
        }
        drop(st);
        self.broker.notify.notify_waiters();
    }

    pub(super) fn delete_topology(&self) {
        let mut st = self.state();
        st.ready.clear();
        st.delayed.clear();
        st.dead.clear();
        st.reviews.clear();
    }

    /// A job's message straight onto the dead-letter queue.
    pub(super) fn publish_dead_letter(
        &self,
        job: &JobMessage,
        payload: Vec<u8>,
        reason: DeadReason,
        error: &str,
    ) -> Result<(), QueueError> {
        if self.state().closed_handles.contains(&self.handle) {
            return Err(QueueError::Closed);
        }
        self.dead_letter_payload(payload, reason, error, job.attempt);
        Ok(())
    }

    fn dead_letter_payload(&self, payload: Vec<u8>, reason: DeadReason, error: &str, attempts: u32) {
        let message = JobMessage::from_json(&payload).ok();
        self.state().dead.push_back(DeadLetter {
            payload,
            message,
            reason: Some(reason),
            last_error: clip_error(error),
            attempts,
        });
    }
}

pub struct MemoryConsumer {
    channel: Arc<Channel>,
    prefetch: usize,
    cancelled: bool,
}

/// What an AMQP channel is to its consumer and deliveries: shared by both,
/// and when the last of them is gone, what it still holds goes back to the
/// queue (flagged redelivered, in its old place). So a stopped consumer's
/// in-flight jobs can still be acked, and a crashed one's come back.
struct Channel {
    queue: MemoryQueue,
    id: u64,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.queue.state().return_held(self.id);
        self.queue.broker.notify.notify_waiters();
    }
}

impl MemoryConsumer {
    pub(super) fn cancel(&mut self) {
        self.cancelled = true;
    }

    pub(super) async fn next(&mut self) -> Result<Delivery, QueueError> {
        if self.cancelled {
            return Err(QueueError::Closed);
        }
        loop {
            let queue = &self.channel.queue;
            let id = self.channel.id;
            let broker = Arc::clone(&queue.broker);
            let notified = broker.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut st = queue.state();
                if st.closed_handles.contains(&queue.handle) {
                    return Err(QueueError::Closed);
                }
                let next_due = st.promote_due(Instant::now());
                let held = st.consumers.get(&id).map_or(0, |(_, n)| *n);
                if held < self.prefetch
                    && let Some(Ready { entry, .. }) = st.ready.pop()
                {
                    st.next_id += 1;
                    let tag = st.next_id;
                    st.unacked.insert(tag, (id, entry.clone()));
                    if let Some((_, n)) = st.consumers.get_mut(&id) {
                        *n += 1;
                    }
                    drop(st);
                    match JobMessage::from_json(&entry.payload) {
                        Ok(message) => {
                            return Ok(Delivery {
                                message,
                                redelivered: entry.redelivered,
                                options: queue.options.clone(),
                                handle: DeliveryHandle::Memory(MemoryDelivery {
                                    channel: Arc::clone(&self.channel),
                                    tag,
                                }),
                            });
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "memory queue: malformed job message dead-lettered");
                            let d = MemoryDelivery { channel: Arc::clone(&self.channel), tag };
                            d.settle(0)?;
                            queue.dead_letter_payload(entry.payload, DeadReason::Malformed, &e.to_string(), 0);
                            continue;
                        }
                    }
                }
                next_due
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

pub struct MemoryDelivery {
    channel: Arc<Channel>,
    tag: u64,
}

impl std::fmt::Debug for MemoryDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryDelivery({}, tag {})", self.channel.queue.name, self.tag)
    }
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryQueue({})", self.name)
    }
}

impl MemoryDelivery {
    /// Removes the delivery from the unacked set; its entry, for re-use.
    fn settle_entry(&self, job_id: i64) -> Result<Entry, QueueError> {
        let mut st = self.channel.queue.state();
        let (_, entry) =
            st.unacked.remove(&self.tag).ok_or_else(|| QueueError::StaleDelivery { job_id: job_id.to_string() })?;
        if let Some((_, n)) = st.consumers.get_mut(&self.channel.id) {
            *n = n.saturating_sub(1);
        }
        drop(st);
        self.channel.queue.broker.notify.notify_waiters();
        Ok(entry)
    }

    fn settle(&self, job_id: i64) -> Result<(), QueueError> {
        self.settle_entry(job_id).map(|_| ())
    }

    pub(super) fn ack(self, job_id: i64) -> Result<(), QueueError> {
        self.settle(job_id)
    }

    pub(super) fn requeue(self, job_id: i64) -> Result<(), QueueError> {
        let mut entry = self.settle_entry(job_id)?;
        entry.redelivered = true;
        self.channel.queue.state().push_ready(entry);
        self.channel.queue.broker.notify.notify_waiters();
        Ok(())
    }

    pub(super) fn retry(
        self,
        job_id: i64,
        next: &JobMessage,
        payload: Vec<u8>,
        delay: Duration,
        _error: &str,
    ) -> Result<(), QueueError> {
        self.settle(job_id)?;
        let entry = Entry { payload, priority: broker_priority(next.priority), redelivered: false, seq: 0 };
        self.channel.queue.state().delayed.push((Instant::now() + delay, entry));
        self.channel.queue.broker.notify.notify_waiters();
        Ok(())
    }

    pub(super) fn dead_letter(
        self,
        job_id: i64,
        reason: DeadReason,
        error: &str,
        attempts: u32,
    ) -> Result<(), QueueError> {
        let entry = self.settle_entry(job_id)?;
        self.channel.queue.dead_letter_payload(entry.payload, reason, error, attempts);
        Ok(())
    }
}

pub struct MemoryReviewSubscription {
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl MemoryReviewSubscription {
    pub(super) async fn next(&mut self) -> Result<(String, ReviewEvent), QueueError> {
        let (key, payload) = self.rx.recv().await.ok_or(QueueError::Closed)?;
        Ok((key, ReviewEvent::from_json(&payload)?))
    }
}
