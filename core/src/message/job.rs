//! The job message: what a worker needs to process one study with one
//! pipeline and one model version (schema version 1).
//!
//! ```json
//! {"schema": 1, "job_id": 42, "job_key": "…", "study_uri": "s3://bucket/studies/abc",
//!  "series": ["1.2.840…"], "pipeline": "brain-tissue", "model": {"name": "brain-tissue", "version": "1.0.0"},
//!  "priority": "stat", "attempt": 1, "enqueued_at": "2026-11-27T02:00:00Z"}
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MessageError, body, is_token, versioned_object};

/// The job message schema version this build writes and reads.
pub const JOB_SCHEMA_VERSION: u32 = 1;
const WHAT: &str = "job";
/// Longest accepted text field (job key, URI, series id, model version).
const MAX_TEXT: usize = 4096;

/// How soon a job must run: `stat` goes first and at once, `routine` waits for
/// the nightly window and yields to stat work on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Stat,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Routine => "routine",
        }
    }
}

/// The model a job runs: the manifest's name and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

/// One job on the jobs queue. The database row is the truth; this is how it
/// travels. `attempt` starts at 1 and grows by one per retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    /// The job's row id in the job store (the database is the truth; this names the row).
    pub job_id: i64,
    /// The idempotency key (study content or StudyInstanceUID + selected
    /// series, pipeline, model version, harmonizer version).
    pub job_key: String,
    /// Where the study is: `s3://bucket/key-prefix` or `file:///path`.
    pub study_uri: String,
    /// The selected series (SeriesInstanceUIDs, or file names for NIfTI studies).
    pub series: Vec<String>,
    pub pipeline: String,
    pub model: ModelRef,
    pub priority: Priority,
    pub attempt: u32,
    pub enqueued_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    schema: u32,
    job_id: i64,
    job_key: String,
    study_uri: String,
    series: Vec<String>,
    pipeline: String,
    model: ModelRef,
    priority: Priority,
    attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    enqueued_at: OffsetDateTime,
}

impl JobMessage {
    /// Parses and checks a message; unknown versions and unknown fields are refused.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let w: Wire = body(WHAT, versioned_object(WHAT, bytes, JOB_SCHEMA_VERSION)?)?;
        let msg = JobMessage {
            job_id: w.job_id,
            job_key: w.job_key,
            study_uri: w.study_uri,
            series: w.series,
            pipeline: w.pipeline,
            model: w.model,
            priority: w.priority,
            attempt: w.attempt,
            enqueued_at: w.enqueued_at,
        };
        msg.validate()?;
        Ok(msg)
    }

    /// The wire form (checked first, so an invalid message is never sent).
    pub fn to_json(&self) -> Result<Vec<u8>, MessageError> {
        self.validate()?;
        let w = Wire {
            schema: JOB_SCHEMA_VERSION,
            job_id: self.job_id,
            job_key: self.job_key.clone(),
            study_uri: self.study_uri.clone(),
            series: self.series.clone(),
            pipeline: self.pipeline.clone(),
            model: self.model.clone(),
            priority: self.priority,
            attempt: self.attempt,
            enqueued_at: self.enqueued_at,
        };
        serde_json::to_vec(&w).map_err(|e| MessageError::Json { what: WHAT, reason: e.to_string() })
    }

    /// The same job for its next attempt.
    pub fn next_attempt(&self) -> JobMessage {
        JobMessage { attempt: self.attempt.saturating_add(1), ..self.clone() }
    }

    /// The rules beyond the types.
    pub fn validate(&self) -> Result<(), MessageError> {
        if self.job_id < 1 {
            return Err(MessageError::invalid(WHAT, "job_id", "job ids count from 1"));
        }
        text(&self.job_key, "job_key")?;
        text(&self.study_uri, "study_uri")?;
        if !self.study_uri.contains("://") {
            return Err(MessageError::invalid(
                WHAT,
                "study_uri",
                "expected a URI such as s3://bucket/key or file:///path",
            ));
        }
        if self.series.is_empty() {
            return Err(MessageError::invalid(WHAT, "series", "no series selected"));
        }
        for (i, s) in self.series.iter().enumerate() {
            text(s, "series")?;
            if self.series[..i].contains(s) {
                return Err(MessageError::invalid(WHAT, "series", format!("`{s}` is listed twice")));
            }
        }
        if !is_token(&self.pipeline) {
            return Err(MessageError::invalid(WHAT, "pipeline", "expected letters, digits, `_` or `-`"));
        }
        self.model.validate(WHAT)?;
        if self.attempt == 0 {
            return Err(MessageError::invalid(WHAT, "attempt", "attempts count from 1"));
        }
        Ok(())
    }
}

impl ModelRef {
    pub(crate) fn validate(&self, what: &'static str) -> Result<(), MessageError> {
        for (value, field) in [(&self.name, "model.name"), (&self.version, "model.version")] {
            if value.is_empty() || value.len() > 256 {
                return Err(MessageError::invalid(what, field, "expected 1 to 256 characters"));
            }
            if value == "."
                || value == ".."
                || value.chars().any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
            {
                return Err(MessageError::invalid(
                    what,
                    field,
                    "no `/`, `\\`, spaces, control characters, `.` or `..`",
                ));
            }
        }
        Ok(())
    }
}

fn text(value: &str, field: &'static str) -> Result<(), MessageError> {
    if value.is_empty() {
        return Err(MessageError::invalid(WHAT, field, "empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(MessageError::invalid(WHAT, field, format!("longer than {MAX_TEXT} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(MessageError::invalid(WHAT, field, "contains control characters"));
    }
    Ok(())
}
