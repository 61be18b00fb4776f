//! The review event: published on the review exchange for every case the
//! routing policy sends to review, so other systems can subscribe by reason
//! and model (schema version 1).
//!
//! ```json
//! {"schema": 1, "job_id": 42, "study_id": 7, "model": {"name": "brain-tissue", "version": "1.0.0"},
//!  "reasons": [{"code": "high_uncertainty", "metric": "study_uncertainty", "value": 0.4, "threshold": 0.2}],
//!  "published_at": "2026-11-27T02:00:00Z"}
//! ```
//! The routing key is `<reason code>.<model name>` (for example
//! `high_uncertainty.brain-tissue`); a case with several distinct reason
//! codes is published once per code (see [`ReviewEvent::routing_keys`]), each
//! copy carrying every reason.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MessageError, ModelRef, body, is_token, versioned_object};

/// The review event schema version this build writes and reads.
pub const REVIEW_SCHEMA_VERSION: u32 = 1;
const WHAT: &str = "review";

/// One crossed threshold, as the worker's routing policy reports it: the one
/// shape of a routing reason across the crates — in `report.json`'s
/// `routing.reasons`, on the review exchange, in `review_items.reasons` (the
/// codes also in `review_reasons`, which the review queue filters on) and in
/// the review API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewReason {
    /// Stable snake_case code (`out_of_distribution`, `high_uncertainty`, …).
    pub code: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// `None` when the figure was unknown or not finite.
    pub value: Option<f64>,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewEvent {
    /// The job's and the study's row ids in the job store.
    pub job_id: i64,
    pub study_id: i64,
    pub model: ModelRef,
    pub reasons: Vec<ReviewReason>,
    pub published_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    schema: u32,
    job_id: i64,
    study_id: i64,
    model: ModelRef,
    reasons: Vec<ReviewReason>,
    #[serde(with = "time::serde::rfc3339")]
    published_at: OffsetDateTime,
}

impl ReviewEvent {
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let w: Wire = body(WHAT, versioned_object(WHAT, bytes, REVIEW_SCHEMA_VERSION)?)?;
        let ev = ReviewEvent {
            job_id: w.job_id,
            study_id: w.study_id,
            model: w.model,
            reasons: w.reasons,
            published_at: w.published_at,
        };
        ev.validate()?;
        Ok(ev)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, MessageError> {
        self.validate()?;
        let w = Wire {
            schema: REVIEW_SCHEMA_VERSION,
            job_id: self.job_id,
            study_id: self.study_id,
            model: self.model.clone(),
            reasons: self.reasons.clone(),
            published_at: self.published_at,
        };
        serde_json::to_vec(&w).map_err(|e| MessageError::Json { what: WHAT, reason: e.to_string() })
    }

    pub fn validate(&self) -> Result<(), MessageError> {
        self.model.validate(WHAT)?;
        if self.reasons.is_empty() {
            return Err(MessageError::invalid(WHAT, "reasons", "a review event needs at least one reason"));
        }
        for r in &self.reasons {
            if !is_token(&r.code) {
                return Err(MessageError::invalid(
                    WHAT,
                    "reasons.code",
                    format!("`{}`: expected letters, digits, `_` or `-`", r.code),
                ));
            }
            if r.metric.is_empty() || r.metric.chars().any(char::is_control) {
                return Err(MessageError::invalid(WHAT, "reasons.metric", "empty or has control characters"));
            }
        }
        Ok(())
    }

    /// One routing key per distinct reason code, in the order the codes first
    /// appear: `<code>.<model name>`. Characters of the model name that would
    /// change a topic key's meaning (`.`, `*`, `#`, anything outside letters,
    /// digits, `_`, `-`) become `_`.
    pub fn routing_keys(&self) -> Vec<String> {
        let model: String = self
            .model
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .collect();
        let mut codes: Vec<&str> = Vec::new();
        for r in &self.reasons {
            if !codes.contains(&r.code.as_str()) {
                codes.push(&r.code);
            }
        }
        codes.into_iter().map(|c| format!("{c}.{model}")).collect()
    }
}
