//! The review queue (issue 5): listing with filters, claiming the next case
//! with a lease (atomic: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single
//! writer of `BEGIN IMMEDIATE` on SQLite), releasing, deciding (approve,
//! reject, correct with a stored mask, escalate), comments, and the decided
//! cases an export reads. Every action writes an audit event with the actor
//! and the item's state before and after. An expired claim returns the case
//! to the queue before any list or claim.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::{self, Audit};
use super::rows::{corrupt, json, priority, review_state};
use super::{BeginWrite as _, DbError, JobStore, StructureMetric, later, stored};
use crate::domain::{Priority, ReviewAction, ReviewState};
use crate::message::ReviewReason;

/// One case in the review queue, with what a reviewer filters and sorts on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub job_id: i64,
    pub study_id: i64,
    pub study_key: String,
    pub state: ReviewState,
    /// The routing reasons as the worker's report wrote them.
    pub reasons: Vec<ReviewReason>,
    pub priority: Priority,
    /// The study's uncertainty score; `null` when the worker could not compute
    /// it (such cases sort first).
    pub uncertainty: Option<f64>,
    /// `<pipeline>@<model version>`.
    pub model: String,
    /// Manufacturer and model of the scanner, when the headers said.
    pub scanner: Option<String>,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub decision: Option<ReviewAction>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub escalated: bool,
    pub created_at: DateTime<Utc>,
}

/// Filters of the review queue; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewFilter {
    pub state: Option<ReviewState>,
    /// A reason code (`out_of_distribution`, …).
    pub reason: Option<String>,
    /// The pipeline name, or `<pipeline>@<model version>`.
    pub model: Option<String>,
    /// The scanner's manufacturer or model name.
    pub scanner: Option<String>,
    pub priority: Option<Priority>,
    pub limit: u32,
    pub offset: u64,
}

/// A comment on a case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewComment {
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// Everything a reviewer sees of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewCase {
    #[serde(flatten)]
    pub item: ReviewItem,
    /// Output name → object key (image, mask, entropy, mutual_information, report).
    pub object_keys: std::collections::BTreeMap<String, String>,
    pub report: serde_json::Value,
    pub structures: Vec<StructureMetric>,
    pub comments: Vec<ReviewComment>,
    /// The latest corrected mask's object key, when one was uploaded.
    pub correction_key: Option<String>,
}

/// What a review action did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewOutcome {
    Done(Box<ReviewItem>),
    NoSuchItem,
    /// The caller does not hold a live claim on the item.
    NotHeld {
        state: ReviewState,
        claimed_by: Option<String>,
    },
}

/// A `structure_metrics` row: label, structure, voxels, volume, CV, Dice, entropy, MI.
type StructureRow = (i64, String, i64, f64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

const ITEM_SQL: &str = "SELECT ri.id, ri.job_id, ri.study_id, s.study_key, ri.state, ri.reasons, ri.priority, \
     ri.uncertainty, j.pipeline || '@' || j.model_version AS model, \
     NULLIF(TRIM(COALESCE(r.scanner_manufacturer, '') || ' ' || COALESCE(r.scanner_model, '')), '') AS scanner, \
     ri.claimed_by, ri.lease_expires_at, ri.decision, ri.decided_by, ri.decided_at, ri.escalated, ri.created_at \
     FROM review_items ri JOIN jobs j ON j.id = ri.job_id JOIN studies s ON s.id = ri.study_id \
     JOIN results r ON r.id = ri.result_id";

macro_rules! item_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        (|| -> Result<ReviewItem, DbError> {
            let id: i64 = row.try_get("id")?;
            let decision: Option<String> = row.try_get("decision")?;
            Ok(ReviewItem {
                id,
                job_id: row.try_get("job_id")?,
                study_id: row.try_get("study_id")?,
                study_key: row.try_get("study_key")?,
                state: review_state(id, &row.try_get::<String, _>("state")?)?,
                reasons: json(id, "reasons", &row.try_get::<String, _>("reasons")?)?,
                priority: priority(id, row.try_get("priority")?)?,
                uncertainty: row.try_get("uncertainty")?,
                model: row.try_get("model")?,
                scanner: row.try_get("scanner")?,
                claimed_by: row.try_get("claimed_by")?,
                lease_expires_at: row.try_get("lease_expires_at")?,
                decision: decision
                    .map(|d| d.parse::<ReviewAction>().map_err(|e| corrupt(id, "decision", e)))
                    .transpose()?,
                decided_by: row.try_get("decided_by")?,
                decided_at: row.try_get("decided_at")?,
                escalated: row.try_get("escalated")?,
                created_at: row.try_get("created_at")?,
            })
        })()
    }};
}

impl JobStore {
    /// Claims whose lease expired go back to `pending` (audit `review.lease_expired`).
    async fn expire_review_claims(&self, now: DateTime<Utc>) -> Result<(), DbError> {
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let expired: Vec<(i64, i64, Option<String>)> = sqlx::query_as(
                "UPDATE review_items SET state = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = $1 \
                 WHERE state = 'claimed' AND lease_expires_at <= $1 RETURNING id, study_id, claimed_by",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (id, study_id, _) in &expired {
                audit::record(
                    &mut tx,
                    Audit::review(
                        now,
                        "reaper",
                        "review.lease_expired",
                        *study_id,
                        *id,
                        &serde_json::json!({
                            "before": {"state": "claimed"}, "after": {"state": "pending"},
                        }),
                    ),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The review queue: by priority (stat first), then uncertainty (unknown,
    /// then highest first), then age (oldest first).
    pub async fn review_items(&self, filter: &ReviewFilter, now: DateTime<Utc>) -> Result<Vec<ReviewItem>, DbError> {
        let now = stored(now);
        self.expire_review_claims(now).await?;
        let sql = format!(
            "{ITEM_SQL} WHERE (CAST($1 AS TEXT) IS NULL OR ri.state = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM review_reasons rr \
                  WHERE rr.review_item_id = ri.id AND rr.code = $2)) \
             AND (CAST($3 AS TEXT) IS NULL OR j.pipeline = $3 OR j.pipeline || '@' || j.model_version = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR r.scanner_manufacturer = $4 OR r.scanner_model = $4) \
             AND (CAST($5 AS BIGINT) IS NULL OR ri.priority = $5) \
             ORDER BY ri.priority, ri.uncertainty DESC NULLS FIRST, ri.created_at, ri.id LIMIT $6 OFFSET $7"
        );
        let limit = i64::from(if filter.limit == 0 { 100 } else { filter.limit.min(1000) });
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(filter.state.map(|s| s.as_str()))
                .bind(filter.reason.as_deref())
                .bind(filter.model.as_deref())
                .bind(filter.scanner.as_deref())
                .bind(filter.priority.map(|p| p.rank()))
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| item_from_row!(r)).collect()
        })
    }

    pub async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>, DbError> {
        let sql = format!("{ITEM_SQL} WHERE ri.id = $1");
        dispatch!(self, |pool| {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.map(|r| item_from_row!(r)).transpose()
        })
    }

    /// Claims the first pending case for `reviewer` until `now + lease`.
    /// Concurrent callers never get the same case.
    pub async fn claim_next_review(
        &self,
        reviewer: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ReviewItem>, DbError> {
        let now = stored(now);
        self.expire_review_claims(now).await?;
        let until = later(now, lease);
        let pick = match self.backend() {
            super::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // BEGIN IMMEDIATE: one writer at a time, so the pick and the update are atomic.
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE review_items SET state = 'claimed', claimed_by = $1, lease_expires_at = $2, updated_at = $3 \
             WHERE state = 'pending' AND id = (SELECT id FROM review_items WHERE state = 'pending' \
             ORDER BY priority, uncertainty DESC NULLS FIRST, created_at, id LIMIT 1 {pick}) RETURNING id, study_id"
        );
        let claimed: Option<(i64, i64)> =
            dispatch!(self, |pool| {
                let mut tx = pool.begin_write().await?;
                let row: Option<(i64, i64)> =
                    sqlx::query_as(&sql).bind(reviewer).bind(until).bind(now).fetch_optional(&mut *tx).await?;
                if let Some((id, study_id)) = row {
                    audit::record(
                    &mut tx,
                    Audit::review(now,
                    reviewer,
                    "review.claimed",
                    study_id,
                    id,
                    &serde_json::json!({
                        "before": {"state": "pending"}, "after": {"state": "claimed", "lease_expires_at": until},
                    })))
                .await?;
                }
                tx.commit().await?;
                Ok::<_, DbError>(row)
            })?;
        match claimed {
            Some((id, _)) => self.review_item(id).await,
            None => Ok(None),
        }
    }

    /// Gives a claimed case back to the queue (only its holder).
    pub async fn release_review(&self, id: i64, reviewer: &str, now: DateTime<Utc>) -> Result<ReviewOutcome, DbError> {
        let now = stored(now);
        let done: Option<i64> = dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let row: Option<i64> = sqlx::query_scalar(
                "UPDATE review_items SET state = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND state = 'claimed' AND claimed_by = $2 AND lease_expires_at > $3 RETURNING study_id",
            )
            .bind(id)
            .bind(reviewer)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(study_id) = row {
                audit::record(
                    &mut tx,
                    Audit::review(
                        now,
                        reviewer,
                        "review.released",
                        study_id,
                        id,
                        &serde_json::json!({
                            "before": {"state": "claimed", "claimed_by": reviewer}, "after": {"state": "pending"},
                        }),
                    ),
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, DbError>(row)
        })?;
        self.outcome(id, done.is_some()).await
    }

    /// Decides a case the reviewer holds. `approve`, `reject` and `correct`
    /// close it (`correct` records `correction_key`, the stored corrected
    /// mask, as the item's next correction version); `escalate` returns it
    /// to the queue as stat and marked escalated. `comment`, when given, is
    /// stored with the action.
    pub async fn decide_review(
        &self,
        id: i64,
        reviewer: &str,
        action: ReviewAction,
        correction_key: Option<&str>,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReviewOutcome, DbError> {
        let now = stored(now);
        let escalate = action == ReviewAction::Escalate;
        let done: Option<i64> = dispatch!(self, |pool| async {
            let mut tx = pool.begin_write().await?;
            let row: Option<(i64, Option<String>)> = sqlx::query_as(
                "UPDATE review_items SET \
                 state = CASE WHEN $4 = 1 THEN 'pending' ELSE 'decided' END, \
                 decision = CASE WHEN $4 = 1 THEN decision ELSE $5 END, \
                 decided_by = CASE WHEN $4 = 1 THEN decided_by ELSE $2 END, \
                 decided_at = CASE WHEN $4 = 1 THEN decided_at ELSE $3 END, \
                 escalated = CASE WHEN $4 = 1 THEN TRUE ELSE escalated END, \
                 priority = CASE WHEN $4 = 1 THEN 0 ELSE priority END, \
                 claimed_by = NULL, lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND state = 'claimed' AND claimed_by = $2 AND lease_expires_at > $3 \
                 RETURNING study_id, decision",
            )
            .bind(id)
            .bind(reviewer)
            .bind(now)
            .bind(i64::from(escalate))
            .bind(action.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((study_id, _)) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            let mut detail = serde_json::json!({
                "before": {"state": "claimed", "claimed_by": reviewer},
                "after": {"state": if escalate { "pending" } else { "decided" }, "decision": action.as_str()},
            });
            if let Some(key) = correction_key {
                let version: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM review_corrections WHERE review_item_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO review_corrections (review_item_id, version, object_key, author, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(version)
                .bind(key)
                .bind(reviewer)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                detail["after"]["correction"] = serde_json::json!({"version": version, "object_key": key});
            }
            if let Some(text) = comment.filter(|t| !t.trim().is_empty()) {
                insert_comment(&mut tx, id, reviewer, text, now).await?;
                detail["comment"] = serde_json::Value::String(text.to_string());
            }
            audit::record(
                &mut tx,
                Audit::review(now, reviewer, &format!("review.{}", action.as_str()), study_id, id, &detail),
            )
            .await?;
            tx.commit().await?;
            Ok::<_, DbError>(Some(study_id))
        }
        .await)?;
        self.outcome(id, done.is_some()).await
    }

    /// Adds a comment to a case (any reviewer, whoever holds it).
    pub async fn comment_review(&self, id: i64, author: &str, text: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let study: Option<i64> = sqlx::query_scalar("SELECT study_id FROM review_items WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(study_id) = study else { return Ok(false) };
            insert_comment(&mut tx, id, author, text, now).await?;
            audit::record(
                &mut tx,
                Audit::review(now, author, "review.commented", study_id, id, &serde_json::json!({"comment": text})),
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// One case with its result, structures, comments and latest correction.
    pub async fn review_case(&self, id: i64) -> Result<Option<ReviewCase>, DbError> {
        let Some(item) = self.review_item(id).await? else { return Ok(None) };
        dispatch!(self, |pool| {
            let (keys, report): (String, String) = sqlx::query_as(
                "SELECT r.object_keys, r.report FROM results r JOIN review_items ri ON ri.result_id = r.id WHERE ri.id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            let structures: Vec<StructureRow> =
                sqlx::query_as(
                    "SELECT m.label, m.structure, m.voxels, m.volume_ml, m.volume_cv, m.pairwise_dice, m.mean_entropy, \
                     m.mean_mutual_information FROM structure_metrics m JOIN review_items ri ON ri.result_id = m.result_id \
                     WHERE ri.id = $1 ORDER BY m.label",
                )
                .bind(id)
                .fetch_all(pool)
                .await?;
            let comments: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT author, body, created_at FROM review_comments WHERE review_item_id = $1 ORDER BY created_at, id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let correction_key: Option<String> = sqlx::query_scalar(
                "SELECT object_key FROM review_corrections WHERE review_item_id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(Some(ReviewCase {
                object_keys: json(id, "object_keys", &keys)?,
                report: json(id, "report", &report)?,
                structures: structures
                    .into_iter()
                    .map(|(label, structure, voxels, volume_ml, volume_cv, pairwise_dice, mean_entropy, mean_mi)| {
                        StructureMetric {
                            label,
                            structure,
                            voxels,
                            volume_ml,
                            volume_cv,
                            pairwise_dice,
                            mean_entropy,
                            mean_mutual_information: mean_mi,
                        }
                    })
                    .collect(),
                comments: comments
                    .into_iter()
                    .map(|(author, text, created_at)| ReviewComment { author, text, created_at })
                    .collect(),
                correction_key,
                item,
            }))
        })
    }

    /// Approved and corrected cases decided at or after `since`, oldest first (for dataset export).
    pub async fn decided_cases(&self, since: DateTime<Utc>) -> Result<Vec<ReviewCase>, DbError> {
        let since = stored(since);
        let ids: Vec<i64> = dispatch!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM review_items WHERE state = 'decided' AND decision IN ('approve', 'correct') \
                 AND decided_at >= $1 ORDER BY decided_at, id",
            )
            .bind(since)
            .fetch_all(pool)
            .await
            .map_err(DbError::from)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(case) = self.review_case(id).await? {
                out.push(case);
            }
        }
        Ok(out)
    }

    async fn outcome(&self, id: i64, done: bool) -> Result<ReviewOutcome, DbError> {
        match self.review_item(id).await? {
            None => Ok(ReviewOutcome::NoSuchItem),
            Some(item) if done => Ok(ReviewOutcome::Done(Box::new(item))),
            Some(item) => Ok(ReviewOutcome::NotHeld { state: item.state, claimed_by: item.claimed_by }),
        }
    }
}

async fn insert_comment<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    id: i64,
    author: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<(), DbError>
where
    DB: sqlx::Database,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'t> &'t mut <DB as sqlx::Database>::Connection: sqlx::Executor<'t, Database = DB>,
{
    sqlx::query("INSERT INTO review_comments (review_item_id, author, body, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(author)
        .bind(text)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
