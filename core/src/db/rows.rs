//! Column lists and row decoding shared by the queries. Decoding is a macro
//! because rows of the two drivers are different types; each expansion is
//! checked against its driver.

use std::str::FromStr;

use crate::domain::{JobKey, JobState, Priority, ReviewState};

use super::{DbError, Routing};

/// The columns `job_from_row!` reads, for `SELECT` and `RETURNING`.
pub(crate) const JOB_COLUMNS: &str = "id, study_id, job_key, version, source_uri, series_uids, pipeline, \
     model_version, harmonizer_version, priority, state, attempts, max_attempts, lease_owner, lease_expires_at, \
     last_error, published_at, created_at, updated_at, finished_at";

/// Decodes a row with [`JOB_COLUMNS`] into a `Job`, as `Result<Job, DbError>`.
macro_rules! job_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        (|| -> Result<$crate::db::Job, $crate::db::DbError> {
            let id: i64 = row.try_get("id")?;
            Ok($crate::db::Job {
                id,
                study_id: row.try_get("study_id")?,
                key: $crate::db::rows::key(id, row.try_get("job_key")?)?,
                version: row.try_get("version")?,
                source_uri: row.try_get("source_uri")?,
                series_uids: $crate::db::rows::json(id, "series_uids", &row.try_get::<String, _>("series_uids")?)?,
                pipeline: row.try_get("pipeline")?,
                model_version: row.try_get("model_version")?,
                harmonizer_version: row.try_get("harmonizer_version")?,
                priority: $crate::db::rows::priority(id, row.try_get("priority")?)?,
                state: $crate::db::rows::job_state(id, &row.try_get::<String, _>("state")?)?,
                attempts: row.try_get("attempts")?,
                max_attempts: row.try_get("max_attempts")?,
                lease_owner: row.try_get("lease_owner")?,
                lease_expires_at: row.try_get("lease_expires_at")?,
                last_error: row.try_get("last_error")?,
                published_at: row.try_get("published_at")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                finished_at: row.try_get("finished_at")?,
            })
        })()
    }};
}
pub(crate) use job_from_row;

pub(crate) fn corrupt(id: i64, column: &'static str, reason: impl ToString) -> DbError {
    DbError::Corrupt { id, column, reason: reason.to_string() }
}

pub(crate) fn job_state(id: i64, text: &str) -> Result<JobState, DbError> {
    JobState::from_str(text).map_err(|e| corrupt(id, "state", e))
}

pub(crate) fn review_state(id: i64, text: &str) -> Result<ReviewState, DbError> {
    ReviewState::from_str(text).map_err(|e| corrupt(id, "state", e))
}

pub(crate) fn priority(id: i64, rank: i64) -> Result<Priority, DbError> {
    Priority::from_rank(rank).map_err(|e| corrupt(id, "priority", e))
}

pub(crate) fn key(id: i64, text: String) -> Result<JobKey, DbError> {
    JobKey::from_hex(&text).map_err(|e| corrupt(id, "job_key", e))
}

pub(crate) fn routing(id: i64, text: &str) -> Result<Routing, DbError> {
    match text {
        "accept" => Ok(Routing::Accept),
        "review" => Ok(Routing::Review),
        other => Err(corrupt(id, "decision", format!("unknown decision \"{other}\""))),
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(id: i64, column: &'static str, text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| corrupt(id, column, e))
}

pub(crate) fn to_json(what: &'static str, value: &impl serde::Serialize) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|source| DbError::Json { what, source })
}
