//! The DICOM send outbox: which results go back to the PACS, and each
//! (job, destination, object) send with its attempts.
//!
//! A result's sends are decided once (`results.dicom_outbox`: NULL until then,
//! so a case waiting for a reviewer is looked at again on a later pass), and
//! the rows are written in the same transaction as that decision, so a crash
//! between the two loses or doubles nothing. Sending itself and the policy of
//! what to send live in the scheduler (`scheduler::send`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::rows::json;
use super::{BeginWrite as _, DbError, JobStore, stored};

/// A result whose sends are not decided yet.
#[derive(Debug, Clone, PartialEq)]
pub struct SendCandidate {
    pub result_id: i64,
    pub job_id: i64,
    /// `accept` or `review`: the pipeline's routing.
    pub decision: String,
    /// Output name → object key (`seg`, `sr` for a DICOM study).
    pub object_keys: BTreeMap<String, String>,
    /// The review item's state and decision, for a routed case.
    pub review_state: Option<String>,
    pub review_decision: Option<String>,
    /// The item's latest corrected mask: (correction version, object key).
    pub correction: Option<(i64, String)>,
}

/// One object to send to one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomSend {
    pub id: i64,
    pub job_id: i64,
    /// `AET@host:port`.
    pub destination: String,
    /// The output name (`seg`, `sr`).
    pub output: String,
    pub object_key: String,
    /// Attempts made so far.
    pub attempts: i64,
}

impl JobStore {
    /// Results created since `since` whose sends are not decided, oldest first.
    pub async fn undecided_dicom_results(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SendCandidate>, DbError> {
        let since = stored(since);
        dispatch!(self, |pool| {
            let rows = sqlx::query(
                "SELECT r.id, r.job_id, r.decision, r.object_keys, ri.state AS review_state, \
                 ri.decision AS review_decision, rc.version AS correction_version, rc.object_key AS correction_key \
                 FROM results r LEFT JOIN review_items ri ON ri.result_id = r.id \
                 LEFT JOIN review_corrections rc ON rc.review_item_id = ri.id AND rc.version = \
                 (SELECT MAX(version) FROM review_corrections WHERE review_item_id = ri.id) \
                 WHERE r.dicom_outbox IS NULL AND r.created_at >= $1 ORDER BY r.created_at, r.id LIMIT $2",
            )
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let result_id: i64 = row.try_get("id")?;
                    Ok(SendCandidate {
                        result_id,
                        job_id: row.try_get("job_id")?,
                        decision: row.try_get("decision")?,
                        object_keys: json(result_id, "object_keys", &row.try_get::<String, _>("object_keys")?)?,
                        review_state: row.try_get("review_state")?,
                        review_decision: row.try_get("review_decision")?,
                        correction: match (row.try_get("correction_version")?, row.try_get("correction_key")?) {
                            (Some(version), Some(key)) => Some((version, key)),
                            _ => None,
                        },
                    })
                })
                .collect()
        })
    }

    /// Decides a result's sends: the rows of `sends` (destination, output,
    /// object key) become pending now — or failed with the reason `refused`
    /// when the object to send could not be made —, or, with none, the result
    /// is marked as having nothing to send. A second call for the same result
    /// changes nothing.
    pub async fn decide_dicom_sends(
        &self,
        result_id: i64,
        job_id: i64,
        sends: &[(String, String, String)],
        refused: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let now = stored(now);
        let outcome = if sends.is_empty() { "none" } else { "queued" };
        let state = if refused.is_some() { "failed" } else { "pending" };
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let decided = sqlx::query("UPDATE results SET dicom_outbox = $2 WHERE id = $1 AND dicom_outbox IS NULL")
                .bind(result_id)
                .bind(outcome)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if decided == 1 {
                for (destination, output, key) in sends {
                    sqlx::query(
                        "INSERT INTO dicom_sends (job_id, destination, output, object_key, state, attempts, \
                         last_error, next_attempt_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7, $7) \
                         ON CONFLICT (job_id, destination, output) DO NOTHING",
                    )
                    .bind(job_id)
                    .bind(destination)
                    .bind(output)
                    .bind(key)
                    .bind(state)
                    .bind(refused)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Pending sends whose time has come, oldest first.
    pub async fn due_dicom_sends(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<DicomSend>, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let rows = sqlx::query(
                "SELECT id, job_id, destination, output, object_key, attempts FROM dicom_sends \
                 WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(DicomSend {
                        id: row.try_get("id")?,
                        job_id: row.try_get("job_id")?,
                        destination: row.try_get("destination")?,
                        output: row.try_get("output")?,
                        object_key: row.try_get("object_key")?,
                        attempts: row.try_get("attempts")?,
                    })
                })
                .collect()
        })
    }

    /// Records a send the peer confirmed.
    pub async fn dicom_send_succeeded(&self, id: i64, now: DateTime<Utc>) -> Result<(), DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            sqlx::query(
                "UPDATE dicom_sends SET state = 'sent', attempts = attempts + 1, last_error = NULL, updated_at = $2 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Records a failed attempt: pending again at `retry_at`, or failed for good when `None`.
    pub async fn dicom_send_failed(
        &self,
        id: i64,
        reason: &str,
        now: DateTime<Utc>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), DbError> {
        let now = stored(now);
        let (state, next) = match retry_at {
            Some(t) => ("pending", stored(t)),
            None => ("failed", now),
        };
        dispatch!(self, |pool| {
            sqlx::query(
                "UPDATE dicom_sends SET state = $2, attempts = attempts + 1, last_error = $3, next_attempt_at = $4, \
                 updated_at = $5 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(state)
            .bind(reason)
            .bind(next)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Puts every failed send back to pending with its attempts reset; returns how many.
    pub async fn retry_failed_dicom_sends(&self, now: DateTime<Utc>) -> Result<u64, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE dicom_sends SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1 \
                 WHERE state = 'failed'",
            )
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Sends by state (`pending`, `sent`, `failed`).
    pub async fn dicom_send_counts(&self) -> Result<BTreeMap<String, i64>, DbError> {
        dispatch!(self, |pool| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM dicom_sends GROUP BY state").fetch_all(pool).await?;
            Ok(rows.into_iter().collect())
        })
    }
}
