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

/// Parses a JSON object (anything else is refused: a struct must not be
/// accepted in array form) and checks its `schema` field is the version this
/// build reads.
fn versioned_object(
    what: &'static str,
    bytes: &[u8],
    supported: u32,
) -> Result<serde_json::Map<String, serde_json::Value>, MessageError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| MessageError::Json { what, reason: e.to_string() })?;
    let serde_json::Value::Object(map) = value else {
        return Err(MessageError::Json { what, reason: "expected a json object".into() });
    };
    let found = map.get("schema").ok_or(MessageError::MissingVersion { what })?;
    if found.as_u64() == Some(u64::from(supported)) {
        Ok(map)
    } else {
        Err(MessageError::UnsupportedVersion { what, found: found.to_string(), supported })
    }
}

/// The typed body of a checked object; unknown fields are refused by the type.
fn body<T: serde::de::DeserializeOwned>(
    what: &'static str,
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<T, MessageError> {
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| MessageError::Json { what, reason: e.to_string() })
}

/// True for a segment that can stand in an AMQP topic routing key and in an
/// object key without quoting: ASCII letters, digits, `_` and `-`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
