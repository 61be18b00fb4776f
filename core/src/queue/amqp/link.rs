//! One AMQP connection with its confirm-mode publishing channel, opened with
//! exponential backoff, and the idempotent declaration of the topology on it.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use tokio::time::Instant;

use super::super::topology::{JOB_ROUTING_KEY, MAX_PRIORITY, Names};
use super::super::{QueueError, QueueOptions};

/// A live connection and its publishing channel. `generation` tells links
/// apart, so a caller that saw one fail replaces only that one.
#[derive(Clone)]
pub(super) struct Link {
    pub conn: Arc<Connection>,
    pub publish: Channel,
    pub generation: u64,
}

impl Link {
    pub fn healthy(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected()
    }
}

pub(super) fn short(s: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(s).map_err(|e| QueueError::Options(format!("`{s}`: {e}")))
}

/// Whether an error from the broker means "try again on a new connection"
/// (network, closed channel or connection) rather than a refusal.
pub(super) fn is_transient(e: &lapin::Error) -> bool {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => {
            // 320 connection-forced (closed by an operator or a restarting broker),
            // 541 internal-error, 505/501 frame errors: all come back after a reconnect.
            matches!(amqp.get_id(), 320 | 541 | 501 | 505)
        }
        ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(..)
        | ErrorKind::InvalidChannel(..)
        | ErrorKind::IOError(..)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::ParsingError(..)
        | ErrorKind::SerialisationError(..) => true,
        _ => false,
    }
}

/// Opens a connection, retrying transient failures with doubling delays
/// until `reconnect_timeout`; declares the topology on it.
pub(super) async fn open(
    url: &str,
    target: &str,
    options: &QueueOptions,
    names: &Names,
    generation: u64,
) -> Result<Link, QueueError> {
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        match open_once(url, options, names).await {
            Ok((conn, publish)) => {
                if tries > 0 {
                    tracing::info!(broker = %target, tries, "broker connection re-established");
                }
                return Ok(Link { conn: Arc::new(conn), publish, generation });
            }
            Err(OpenError::Fatal(e)) => return Err(e),
            Err(OpenError::Transient(reason)) => {
                let waited = started.elapsed();
                if waited >= options.reconnect_timeout {
                    return Err(QueueError::Unavailable {
                        target: target.to_owned(),
                        seconds: waited.as_secs(),
                        reason,
                    });
                }
                let delay = options.reconnect_delay(tries).min(options.reconnect_timeout - waited);
                tracing::warn!(broker = %target, error = %reason, retry_in_ms = delay.as_millis() as u64, "broker connection failed");
                tokio::time::sleep(delay).await;
                tries += 1;
            }
        }
    }
}

enum OpenError {
    Transient(String),
    Fatal(QueueError),
}

async fn open_once(url: &str, options: &QueueOptions, names: &Names) -> Result<(Connection, Channel), OpenError> {
    let props = ConnectionProperties::default().with_connection_name(options.connection_name.clone().into());
    let conn = Connection::connect(url, props).await.map_err(|e| match e.kind() {
        ErrorKind::ProtocolError(_) | ErrorKind::AuthProviderError(_) => {
            OpenError::Fatal(QueueError::Refused { target: crate::config::redact(url), reason: e.to_string() })
        }
        _ => OpenError::Transient(e.to_string()),
    })?;
    let ch = conn.create_channel().await.map_err(|e| OpenError::Transient(e.to_string()))?;
    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| OpenError::Transient(e.to_string()))?;
    declare(&ch, options, names).await.map_err(|e| match e {
        QueueError::Broker { reason, .. } => OpenError::Transient(reason),
        fatal => OpenError::Fatal(fatal),
    })?;
    Ok((conn, ch))
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

/// A failed declaration: a clash with an existing object is fatal
/// (406 precondition-failed), anything else is transient.
fn declare_error(object: &str, e: lapin::Error) -> QueueError {
    if let ErrorKind::ProtocolError(amqp) = e.kind()
        && amqp.get_id() == 406
    {
        return QueueError::Topology {
            object: object.to_owned(),
            reason: format!("{e} (declared before with other arguments: change the prefix or delete it)"),
        };
    }
    QueueError::Broker { op: "declare", reason: format!("{object}: {e}") }
}

/// Declares every exchange, queue and binding (idempotent: re-declaring
/// with the same arguments is a no-op on the broker).
pub(super) async fn declare(ch: &Channel, options: &QueueOptions, names: &Names) -> Result<(), QueueError> {
    let exchange = |name: String, kind: ExchangeKind| async move {
        ch.exchange_declare(short(&name)?, kind, durable_exchange(), FieldTable::default())
            .await
            .map_err(|e| declare_error(&name, e))
    };
    let queue = |name: String, args: FieldTable| async move {
        ch.queue_declare(short(&name)?, durable_queue(), args).await.map_err(|e| declare_error(&name, e)).map(|_| ())
    };
    let bind = |q: String, x: String, key: String| async move {
        ch.queue_bind(short(&q)?, short(&x)?, short(&key)?, QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(|e| declare_error(&q, e))
    };

    exchange(names.jobs_exchange.clone(), ExchangeKind::Direct).await?;
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(MAX_PRIORITY));
    if let Some(max) = options.max_queued {
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(i64::from(max)));
        args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    }
    queue(names.jobs_queue.clone(), args).await?;
    bind(names.jobs_queue.clone(), names.jobs_exchange.clone(), JOB_ROUTING_KEY.into()).await?;

    exchange(names.retry_exchange.clone(), ExchangeKind::Direct).await?;
    for delay in options.retry_delays() {
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms(delay)));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(names.jobs_exchange.clone().into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(JOB_ROUTING_KEY.into()));
        queue(names.retry_queue(delay), args).await?;
        bind(names.retry_queue(delay), names.retry_exchange.clone(), Names::retry_routing_key(delay)).await?;
    }

    exchange(names.dead_exchange.clone(), ExchangeKind::Fanout).await?;
    queue(names.dead_queue.clone(), FieldTable::default()).await?;
    bind(names.dead_queue.clone(), names.dead_exchange.clone(), String::new()).await?;

    exchange(names.review_exchange.clone(), ExchangeKind::Topic).await?;
    Ok(())
}

fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Deletes what [`declare`] declared.
pub(super) async fn delete(ch: &Channel, options: &QueueOptions, names: &Names) -> Result<(), QueueError> {
    let err = |e: lapin::Error| QueueError::Broker { op: "delete", reason: e.to_string() };
    let mut queues = vec![names.jobs_queue.clone(), names.dead_queue.clone()];
    queues.extend(options.retry_delays().into_iter().map(|d| names.retry_queue(d)));
    for q in queues {
        ch.queue_delete(short(&q)?, QueueDeleteOptions::default()).await.map_err(err)?;
    }
    for x in [&names.jobs_exchange, &names.retry_exchange, &names.dead_exchange, &names.review_exchange] {
        ch.exchange_delete(short(x)?, ExchangeDeleteOptions::default()).await.map_err(err)?;
    }
    Ok(())
}
