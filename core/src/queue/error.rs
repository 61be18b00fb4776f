//! Why a queue operation failed.

use thiserror::Error;

use crate::message::MessageError;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("queue options: {0}")]
    Options(String),
    /// The broker could not be reached within the reconnect window.
    #[error("broker {target}: unreachable for {seconds} s (last error: {reason})")]
    Unavailable { target: String, seconds: u64, reason: String },
    /// The broker refused the connection (credentials, vhost) — retrying will not help.
    #[error("broker {target}: connection refused: {reason}")]
    Refused { target: String, reason: String },
    /// A declaration clashed with what exists (for example a queue declared
    /// earlier with other arguments): change the prefix or delete the old object.
    #[error("broker topology: {object}: {reason}")]
    Topology { object: String, reason: String },
    /// The broker answered a publish with a negative confirm (for example the
    /// jobs queue is at its length limit).
    #[error("publish to {exchange}: refused by the broker (queue full or unavailable)")]
    Nacked { exchange: String },
    /// The message matched no queue.
    #[error("publish to {exchange} with key `{routing_key}`: no queue is bound to it")]
    Unroutable { exchange: String, routing_key: String },
    #[error("acknowledging job {job_id}: {reason}")]
    Ack { job_id: String, reason: String },
    /// The delivery is no longer held by its consumer (the consumer was
    /// dropped and the message went back to the queue).
    #[error("job {job_id}: the delivery was already returned to the queue")]
    StaleDelivery { job_id: String },
    #[error("broker: {op}: {reason}")]
    Broker { op: &'static str, reason: String },
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("the queue was closed")]
    Closed,
}
