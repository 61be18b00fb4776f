//! The versioned JSON messages that travel on the broker: the job message
//! (scheduler → workers, on the jobs exchange) and the review event (worker →
//! whoever subscribes, on the review exchange).
//!
//! Parsing is strict: the `schema` field is read first and an unknown version
//! is a typed error ([`MessageError::UnsupportedVersion`]), then the body is
//! parsed with unknown fields refused and the values checked, so a message a
//! newer scheduler wrote is never half-understood by an older worker.

mod error;
mod job;
mod review;
#[cfg(test)]
mod tests;

pub use error::MessageError;
pub use job::{JOB_SCHEMA_VERSION, JobMessage, ModelRef, Priority};
pub use review::{REVIEW_SCHEMA_VERSION, ReviewEvent, ReviewReason};

/// Reads the `schema` field of a JSON object without parsing the rest and
/// checks it is the version this build reads.
fn check_version(what: &'static str, bytes: &[u8], supported: u32) -> Result<(), MessageError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        schema: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| MessageError::Json { what, reason: e.to_string() })?;
    let found = probe.schema.ok_or(MessageError::MissingVersion { what })?;
    if found.as_u64() == Some(u64::from(supported)) {
        Ok(())
    } else {
        Err(MessageError::UnsupportedVersion { what, found: found.to_string(), supported })
    }
}

/// True for a segment that can stand in an AMQP topic routing key and in an
/// object key without quoting: ASCII letters, digits, `_` and `-`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
