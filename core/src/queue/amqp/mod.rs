//! The RabbitMQ backend (lapin on tokio): a shared connection with a
//! confirm-mode publishing channel, one channel per consumer with
//! `basic.qos(prefetch)`, manual acks, reconnection with backoff.

mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::Mutex;
use tokio::time::Instant;

use self::link::{Link, is_transient, short};
use super::topology::{HEADER_ATTEMPTS, HEADER_DEAD_REASON, HEADER_LAST_ERROR, JOB_ROUTING_KEY, Names};
use super::{DeadLetter, DeadReason, Delivery, DeliveryHandle, QueueError, QueueOptions, broker_priority};
use crate::config::redact;
use crate::message::{JobMessage, ReviewEvent};

/// How long a shutdown step (`basic.cancel`, `connection.close`) waits for
/// the broker's reply: a broker or a network that went quiet must not keep a
/// stopping process alive past its grace period.
const SHUTDOWN_REPLY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    target: String,
    options: QueueOptions,
    names: Names,
    link: Mutex<Option<Link>>,
    generations: AtomicU64,
    closed: AtomicBool,
}

/// What a publish needs from the broker besides a positive confirm.
struct Publish<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    payload: &'a [u8],
    properties: BasicProperties,
    mandatory: bool,
}

impl AmqpQueue {
    pub(super) async fn connect(url: &str, options: QueueOptions) -> Result<AmqpQueue, QueueError> {
        let target = redact(url);
        let names = Names::new(&options.prefix);
        let link = link::open(url, &target, &options, &names, 1).await?;
        tracing::info!(broker = %target, prefix = %options.prefix, "broker connected, topology declared");
        Ok(AmqpQueue {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                target,
                options,
                names,
                link: Mutex::new(Some(link)),
                generations: AtomicU64::new(1),
                closed: AtomicBool::new(false),
            }),
        })
    }

    pub(super) fn target(&self) -> &str {
        &self.inner.target
    }

    pub(super) fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    pub(super) async fn publish_job(&self, job: &JobMessage, payload: Vec<u8>) -> Result<(), QueueError> {
        let names = &self.inner.names;
        self.inner
            .publish(Publish {
                exchange: &names.jobs_exchange,
                routing_key: JOB_ROUTING_KEY,
                payload: &payload,
                properties: job_properties(job, FieldTable::default()),
                mandatory: true,
            })
            .await
    }

    /// A job's message straight onto the dead-letter queue (the job died
    /// without a delivery to dead-letter: its worker vanished on the last attempt).
    pub(super) async fn publish_dead_letter(
        &self,
        job: &JobMessage,
        payload: Vec<u8>,
        reason: DeadReason,
        error: &str,
    ) -> Result<(), QueueError> {
        self.inner.publish_dead_letter(&payload, job.job_id, reason, error, job.attempt).await
    }

    pub(super) async fn publish_review(&self, key: &str, payload: &[u8]) -> Result<(), QueueError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type("neurobatch.review.v1".into())
            .with_timestamp(unix_now());
        self.inner
            .publish(Publish {
                exchange: &self.inner.names.review_exchange,
                routing_key: key,
                payload,
                properties,
                mandatory: false,
            })
            .await
    }

    pub(super) async fn subscribe_reviews(&self, pattern: &str) -> Result<AmqpReviewSubscription, QueueError> {
        let link = self.inner.link().await?;
        let err = |op| move |e: lapin::Error| QueueError::Broker { op, reason: e.to_string() };
        let ch = link.conn.create_channel().await.map_err(err("channel"))?;
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(err("declare"))?;
        ch.queue_bind(
            q.name().clone(),
            short(&self.inner.names.review_exchange)?,
            short(pattern)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("bind"))?;
        let consumer = ch
            .basic_consume(
                q.name().clone(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(err("consume"))?;
        Ok(AmqpReviewSubscription { _channel: ch, consumer })
    }

    pub(super) fn consumer(&self, prefetch: u16) -> AmqpConsumer {
        AmqpConsumer { inner: Arc::clone(&self.inner), prefetch, current: None, cancelled: false }
    }

    pub(super) async fn pop_dead_letter(&self) -> Result<Option<DeadLetter>, QueueError> {
        let err = |e: lapin::Error| QueueError::Broker { op: "get", reason: e.to_string() };
        let link = self.inner.link().await?;
        let got = link
            .publish
            .basic_get(short(&self.inner.names.dead_queue)?, BasicGetOptions::default())
            .await
            .map_err(err)?;
        let Some(msg) = got else { return Ok(None) };
        let d = msg.delivery;
        let headers = d.properties.headers().clone().unwrap_or_default();
        let text = |k: &str| match headers.inner().get(k) {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            _ => None,
        };
        let attempts = match headers.inner().get(HEADER_ATTEMPTS) {
            Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
            Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let letter = DeadLetter {
            message: JobMessage::from_json(&d.data).ok(),
            reason: text(HEADER_DEAD_REASON).as_deref().and_then(DeadReason::parse),
            last_error: text(HEADER_LAST_ERROR).unwrap_or_default(),
            attempts,
            payload: d.data,
        };
        d.acker.ack(BasicAckOptions::default()).await.map_err(err)?;
        Ok(Some(letter))
    }

    pub(super) async fn queued(&self) -> Result<u32, QueueError> {
        let link = self.inner.link().await?;
        let q = link
            .publish
            .queue_declare(
                short(&self.inner.names.jobs_queue)?,
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|e| QueueError::Broker { op: "declare", reason: e.to_string() })?;
        Ok(q.message_count())
    }

    pub(super) async fn close(&self) -> Result<(), QueueError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let link = self.inner.link.lock().await.take();
        let Some(link) = link else { return Ok(()) };
        match tokio::time::timeout(SHUTDOWN_REPLY, link.conn.close(200, "closing".into())).await {
            Ok(Ok(())) => Ok(()),
            // An error from a connection that is closed anyway (the broker or
            // the network got there first) is not one.
            Ok(Err(_)) if !link.conn.status().connected() => Ok(()),
            Ok(Err(e)) => Err(QueueError::Broker { op: "close", reason: e.to_string() }),
            // The socket goes when the connection is dropped; the broker then
            // returns whatever this connection still held.
            Err(_) => Err(QueueError::Broker { op: "close", reason: no_reply("connection.close-ok") }),
        }
    }

    pub(super) async fn delete_topology(&self) -> Result<(), QueueError> {
        let link = self.inner.link().await?;
        link::delete(&link.publish, &self.inner.options, &self.inner.names).await
    }
}

impl Inner {
    /// The current link, or a new one (with backoff) when it is gone.
    async fn link(&self) -> Result<Link, QueueError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref()
            && link.healthy()
        {
            return Ok(link.clone());
        }
        if let Some(old) = guard.take() {
            tracing::warn!(broker = %self.target, "broker connection lost; reconnecting");
            drop(old);
        }
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let link = link::open(&self.url, &self.target, &self.options, &self.names, generation).await?;
        *guard = Some(link.clone());
        Ok(link)
    }

    /// Forgets a link that failed (unless another caller replaced it already).
    async fn discard(&self, generation: u64) {
        let mut guard = self.link.lock().await;
        if guard.as_ref().is_some_and(|l| l.generation == generation) {
            *guard = None;
        }
    }

    /// Publishes and waits for the confirm; transient failures are retried
    /// on a new connection until `reconnect_timeout`.
    async fn publish(&self, p: Publish<'_>) -> Result<(), QueueError> {
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            let link = self.link().await?;
            match publish_once(&link.publish, &p).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Transient(e)) => {
                    self.discard(link.generation).await;
                    let waited = started.elapsed();
                    if waited >= self.options.reconnect_timeout {
                        return Err(QueueError::Unavailable {
                            target: self.target.clone(),
                            seconds: waited.as_secs(),
                            reason: e.to_string(),
                        });
                    }
                    let delay = self.options.reconnect_delay(tries);
                    tracing::warn!(broker = %self.target, exchange = p.exchange, error = %e, "publish failed; retrying on a new connection");
                    tokio::time::sleep(delay).await;
                    tries += 1;
                }
            }
        }
    }
}

enum Attempt {
    Transient(lapin::Error),
    Final(QueueError),
}

async fn publish_once(ch: &Channel, p: &Publish<'_>) -> Result<(), Attempt> {
    let classify = |e: lapin::Error| {
        if is_transient(&e) || !ch.status().connected() {
            Attempt::Transient(e)
        } else {
            Attempt::Final(QueueError::Broker { op: "publish", reason: e.to_string() })
        }
    };
    let confirm = ch
        .basic_publish(
            short(p.exchange).map_err(Attempt::Final)?,
            short(p.routing_key).map_err(Attempt::Final)?,
            BasicPublishOptions { mandatory: p.mandatory, ..BasicPublishOptions::default() },
            p.payload,
            p.properties.clone(),
        )
        .await
        .map_err(classify)?;
    match confirm.await.map_err(classify)? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(Attempt::Final(QueueError::Unroutable {
            exchange: p.exchange.to_owned(),
            routing_key: p.routing_key.to_owned(),
        })),
        Confirmation::Nack(_) => Err(Attempt::Final(QueueError::Nacked { exchange: p.exchange.to_owned() })),
        Confirmation::NotRequested => Err(Attempt::Final(QueueError::Broker {
            op: "publish",
            reason: "the channel is not in confirm mode".into(),
        })),
    }
}

fn no_reply(what: &str) -> String {
    format!("no {what} from the broker within {} s", SHUTDOWN_REPLY.as_secs())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn job_properties(job: &JobMessage, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_priority(broker_priority(job.priority))
        .with_message_id(job.job_id.to_string().into())
        .with_type("neurobatch.job.v1".into())
        .with_app_id("neurobatch".into())
        .with_timestamp(unix_now())
        .with_headers(headers)
}

impl Inner {
    /// A job's message onto the dead-letter exchange with its reason, last
    /// error and attempts; returns once the broker confirmed it.
    async fn publish_dead_letter(
        &self,
        payload: &[u8],
        job_id: i64,
        reason: DeadReason,
        error: &str,
        attempts: u32,
    ) -> Result<(), QueueError> {
        self.publish(Publish {
            exchange: &self.names.dead_exchange,
            routing_key: "",
            payload,
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(job_id.to_string().into())
                .with_headers(error_headers(error, Some(reason), attempts)),
            mandatory: true,
        })
        .await
    }
}

fn error_headers(error: &str, reason: Option<DeadReason>, attempts: u32) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert(HEADER_LAST_ERROR.into(), AMQPValue::LongString(error.into()));
    h.insert(HEADER_ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
    if let Some(r) = reason {
        h.insert(HEADER_DEAD_REASON.into(), AMQPValue::LongString(r.as_str().into()));
    }
    h
}

pub struct AmqpConsumer {
    inner: Arc<Inner>,
    prefetch: u16,
    current: Option<(Channel, lapin::Consumer)>,
    cancelled: bool,
}

impl AmqpConsumer {
    async fn open(&self) -> Result<(Channel, lapin::Consumer), OpenFail> {
        let link = self.inner.link().await.map_err(OpenFail::Final)?;
        let step = |op: &'static str| {
            let generation = link.generation;
            move |e: lapin::Error| OpenFail::Transient { generation, reason: format!("{op}: {e}") }
        };
        let ch = link.conn.create_channel().await.map_err(step("channel"))?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(step("qos"))?;
        // Someone may have deleted the queue while the connection stayed up.
        link::declare(&ch, &self.inner.options, &self.inner.names).await.map_err(OpenFail::Final)?;
        let consumer = ch
            .basic_consume(
                short(&self.inner.names.jobs_queue).map_err(OpenFail::Final)?,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(step("consume"))?;
        Ok((ch, consumer))
    }

    /// `basic.cancel` of the current consumer, waiting for the broker's
    /// cancel-ok: its channel and stream (holding what the broker pushed
    /// before the cancel-ok), or `None` when there was none or its channel is
    /// gone (the broker then returned its deliveries itself).
    async fn cancel_current(&mut self) -> Result<Option<(Channel, lapin::Consumer)>, QueueError> {
        let Some((ch, consumer)) = self.current.take() else { return Ok(None) };
        match tokio::time::timeout(SHUTDOWN_REPLY, ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())).await
        {
            Ok(Ok(())) => Ok(Some((ch, consumer))),
            Ok(Err(_)) if !ch.status().connected() => Ok(None),
            Ok(Err(e)) => Err(QueueError::Broker { op: "cancel", reason: e.to_string() }),
            Err(_) => Err(QueueError::Broker { op: "cancel", reason: no_reply("basic.cancel-ok") }),
        }
    }

    /// Stops for good; the channel stays open as long as deliveries hold it,
    /// so they can still be settled.
    pub(super) async fn cancel(&mut self) -> Result<(), QueueError> {
        self.cancelled = true;
        self.cancel_current().await.map(drop)
    }

    /// Every delivery the broker pushed before the cancel-ok (they arrive in
    /// order on the channel, so all are buffered by then) is nacked back to
    /// the queue; the next [`AmqpConsumer::next`] consumes again on a new
    /// channel.
    pub(super) async fn pause(&mut self) -> Result<usize, QueueError> {
        // The channel is kept until the nacks are sent.
        let Some((_ch, mut consumer)) = self.cancel_current().await? else { return Ok(0) };
        let mut returned = 0;
        while let Some(Some(Ok(d))) = futures_util::FutureExt::now_or_never(consumer.next()) {
            d.acker
                .nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
                .await
                .map_err(|e| QueueError::Broker { op: "nack", reason: e.to_string() })?;
            returned += 1;
        }
        Ok(returned)
    }

    pub(super) async fn next(&mut self) -> Result<Delivery, QueueError> {
        if self.cancelled {
            return Err(QueueError::Closed);
        }
        let mut outage: Option<(Instant, u32)> = None;
        let mut lost = 0u32;
        loop {
            if self.current.is_none() {
                match self.open().await {
                    Ok(c) => self.current = Some(c),
                    Err(OpenFail::Final(e)) => return Err(e),
                    Err(OpenFail::Transient { generation, reason }) => {
                        self.inner.discard(generation).await;
                        let (since, tries) = outage.get_or_insert((Instant::now(), 0));
                        if since.elapsed() >= self.inner.options.reconnect_timeout {
                            return Err(QueueError::Unavailable {
                                target: self.inner.target.clone(),
                                seconds: since.elapsed().as_secs(),
                                reason,
                            });
                        }
                        let delay = self.inner.options.reconnect_delay(*tries);
                        *tries += 1;
                        tracing::warn!(broker = %self.inner.target, error = %reason, "consumer could not start; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            let Some((ch, consumer)) = self.current.as_mut() else { continue };
            match consumer.next().await {
                Some(Ok(d)) => {
                    lost = 0;
                    let ch = ch.clone();
                    match JobMessage::from_json(&d.data) {
                        Ok(message) => {
                            return Ok(Delivery {
                                message,
                                redelivered: d.redelivered,
                                options: self.inner.options.clone(),
                                handle: DeliveryHandle::Amqp(AmqpDelivery {
                                    inner: Arc::clone(&self.inner),
                                    acker: d.acker,
                                    payload: d.data,
                                    _channel: ch,
                                }),
                            });
                        }
                        Err(e) => {
                            self.dead_letter_malformed(d, &e.to_string()).await;
                            continue;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(broker = %self.inner.target, error = %e, "consumer lost its channel; re-establishing");
                    self.current = None;
                }
                None => {
                    tracing::warn!(broker = %self.inner.target, "consumer was cancelled by the broker; re-establishing");
                    self.current = None;
                }
            }
            // Back off when streams keep ending without delivering anything.
            tokio::time::sleep(self.inner.options.reconnect_delay(lost)).await;
            lost = lost.saturating_add(1);
        }
    }

    /// A message that is not a job this build reads: to the dead-letter
    /// queue with the parse error, then acked; rejected (dropped) if even that fails.
    async fn dead_letter_malformed(&self, d: lapin::message::Delivery, error: &str) {
        tracing::error!(error, "malformed job message; dead-lettering it");
        let properties = BasicProperties::default().with_delivery_mode(2).with_headers(error_headers(
            error,
            Some(DeadReason::Malformed),
            0,
        ));
        let published = self
            .inner
            .publish(Publish {
                exchange: &self.inner.names.dead_exchange,
                routing_key: "",
                payload: &d.data,
                properties,
                mandatory: true,
            })
            .await;
        let settled = match published {
            Ok(()) => d.acker.ack(BasicAckOptions::default()).await,
            Err(e) => {
                tracing::error!(error = %e, "could not dead-letter a malformed message; dropping it");
                d.acker.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "could not settle a malformed message");
        }
    }
}

enum OpenFail {
    Transient { generation: u64, reason: String },
    Final(QueueError),
}

pub struct AmqpDelivery {
    inner: Arc<Inner>,
    acker: lapin::Acker,
    /// The message as consumed: what goes to the dead-letter queue.
    payload: Vec<u8>,
    /// Keeps the consumer's channel open while the delivery is unsettled.
    _channel: Channel,
}

impl std::fmt::Debug for AmqpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmqpDelivery({})", self.inner.target)
    }
}

impl AmqpDelivery {
    fn ack_error(job_id: i64, e: impl std::fmt::Display) -> QueueError {
        QueueError::Ack { job_id: job_id.to_string(), reason: e.to_string() }
    }

    pub(super) async fn ack(self, job_id: i64) -> Result<(), QueueError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueError::StaleDelivery { job_id: job_id.to_string() }),
            Err(e) => Err(Self::ack_error(job_id, e)),
        }
    }

    pub(super) async fn requeue(self, job_id: i64) -> Result<(), QueueError> {
        match self.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueError::StaleDelivery { job_id: job_id.to_string() }),
            Err(e) => Err(Self::ack_error(job_id, e)),
        }
    }

    /// Publishes the next attempt to the delay queue (confirmed), then acks
    /// this one: a crash in between repeats the job, never loses it.
    pub(super) async fn retry(
        self,
        job_id: i64,
        next: &JobMessage,
        payload: Vec<u8>,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        let key = Names::retry_routing_key(delay);
        self.inner
            .publish(Publish {
                exchange: &self.inner.names.retry_exchange,
                routing_key: &key,
                payload: &payload,
                properties: job_properties(next, error_headers(error, None, next.attempt - 1)),
                mandatory: true,
            })
            .await?;
        self.ack(job_id).await
    }

    pub(super) async fn dead_letter(
        self,
        job_id: i64,
        reason: DeadReason,
        error: &str,
        attempts: u32,
    ) -> Result<(), QueueError> {
        self.inner.publish_dead_letter(&self.payload, job_id, reason, error, attempts).await?;
        self.ack(job_id).await
    }
}

pub struct AmqpReviewSubscription {
    _channel: Channel,
    consumer: lapin::Consumer,
}

impl AmqpReviewSubscription {
    pub(super) async fn next(&mut self) -> Result<(String, ReviewEvent), QueueError> {
        match self.consumer.next().await {
            Some(Ok(d)) => Ok((d.routing_key.to_string(), ReviewEvent::from_json(&d.data)?)),
            Some(Err(e)) => Err(QueueError::Broker { op: "consume", reason: e.to_string() }),
            None => Err(QueueError::Closed),
        }
    }
}
