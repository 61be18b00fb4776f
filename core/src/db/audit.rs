//! The audit log's one writer: every job transition and review action is an
//! `audit_events` row, written in the transaction that makes the change.

use chrono::{DateTime, Utc};

use super::DbError;

/// One audit event.
pub(crate) struct Audit<'a> {
    pub at: DateTime<Utc>,
    /// `scheduler`, `reaper`, a worker id, or the token name of a person or service.
    pub actor: &'a str,
    /// `job.enqueued`, `review.claimed`, … (docs/daemon.md lists them).
    pub action: &'a str,
    pub study_id: i64,
    pub job_id: Option<i64>,
    pub review_item_id: Option<i64>,
    /// A JSON object, as text.
    pub detail: String,
}

impl<'a> Audit<'a> {
    /// An event of job `job_id` (`job.enqueued`, `job.failed`, …).
    pub fn job(
        at: DateTime<Utc>,
        actor: &'a str,
        action: &'a str,
        study_id: i64,
        job_id: i64,
        detail: &serde_json::Value,
    ) -> Self {
        Audit { at, actor, action, study_id, job_id: Some(job_id), review_item_id: None, detail: detail.to_string() }
    }

    /// An action on review item `review_item_id` (`review.claimed`, …).
    pub fn review(
        at: DateTime<Utc>,
        actor: &'a str,
        action: &'a str,
        study_id: i64,
        review_item_id: i64,
        detail: &serde_json::Value,
    ) -> Self {
        Audit {
            at,
            actor,
            action,
            study_id,
            job_id: None,
            review_item_id: Some(review_item_id),
            detail: detail.to_string(),
        }
    }
}

/// Writes `event` in `tx`.
pub(crate) async fn record<'c, DB>(tx: &mut sqlx::Transaction<'c, DB>, event: Audit<'_>) -> Result<(), DbError>
where
    DB: sqlx::Database,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'t> &'t mut <DB as sqlx::Database>::Connection: sqlx::Executor<'t, Database = DB>,
{
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, study_id, job_id, review_item_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.at)
    .bind(event.actor)
    .bind(event.action)
    .bind(event.study_id)
    .bind(event.job_id)
    .bind(event.review_item_id)
    .bind(event.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
