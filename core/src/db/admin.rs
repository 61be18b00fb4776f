//! What administrators see and do: throughput, the review backlog and its
//! age, review rates and uncertainty per scanner and model, the failed and
//! dead jobs, and retrying one of them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::{self, Audit};
use super::rows::JOB_COLUMNS;
use super::{BeginWrite as _, DbError, Job, JobStore, stored};
use crate::domain::JobState;

/// scanner, model, results, reviewed, mean uncertainty.
type RateRow = (Option<String>, String, i64, i64, Option<f64>);

/// Review and uncertainty figures of one scanner and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingRate {
    pub scanner: Option<String>,
    pub model: String,
    pub results: i64,
    pub reviewed: i64,
    pub review_rate: f64,
    pub mean_uncertainty: Option<f64>,
}

/// The figures of the admin page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminStats {
    pub jobs_by_state: std::collections::BTreeMap<String, i64>,
    pub succeeded_last_hour: i64,
    pub succeeded_last_day: i64,
    /// Pending or claimed review items.
    pub review_backlog: i64,
    pub review_oldest_age_seconds: Option<f64>,
    pub routing: Vec<RoutingRate>,
    /// DICOM sends to the PACS by state (`pending`, `sent`, `failed`; docs/dicom.md).
    pub dicom_sends: std::collections::BTreeMap<String, i64>,
}

impl JobStore {
    pub async fn admin_stats(&self, now: DateTime<Utc>) -> Result<AdminStats, DbError> {
        let now = stored(now);
        let jobs_by_state =
            self.count_by_state().await?.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect();
        let dicom_sends = self.dicom_send_counts().await?;
        let hour = now - chrono::TimeDelta::hours(1);
        let day = now - chrono::TimeDelta::days(1);
        dispatch!(self, |pool| {
            let succeeded = |since: DateTime<Utc>| {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded' AND finished_at >= $1",
                )
                .bind(since)
                .fetch_one(pool)
            };
            let succeeded_last_hour = succeeded(hour).await?;
            let succeeded_last_day = succeeded(day).await?;
            let (review_backlog, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM review_items WHERE state IN ('pending', 'claimed')",
            )
            .fetch_one(pool)
            .await?;
            let rows: Vec<RateRow> = sqlx::query_as(
                "SELECT NULLIF(TRIM(COALESCE(r.scanner_manufacturer, '') || ' ' || COALESCE(r.scanner_model, '')), '') AS scanner, \
                 j.pipeline || '@' || j.model_version AS model, COUNT(*) AS results, \
                 SUM(CASE WHEN r.decision = 'review' THEN 1 ELSE 0 END) AS reviewed, AVG(ri.uncertainty) AS mean_uncertainty \
                 FROM results r JOIN jobs j ON j.id = r.job_id LEFT JOIN review_items ri ON ri.result_id = r.id \
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .fetch_all(pool)
            .await?;
            Ok(AdminStats {
                jobs_by_state,
                succeeded_last_hour,
                succeeded_last_day,
                review_backlog,
                review_oldest_age_seconds: oldest.map(|t| (now - t).as_seconds_f64().max(0.0)),
                routing: rows
                    .into_iter()
                    .map(|(scanner, model, results, reviewed, mean_uncertainty)| RoutingRate {
                        scanner,
                        model,
                        results,
                        reviewed,
                        review_rate: if results > 0 { reviewed as f64 / results as f64 } else { 0.0 },
                        mean_uncertainty,
                    })
                    .collect(),
                dicom_sends,
            })
        })
    }

    /// Jobs in `state`, most recently updated first.
    pub async fn jobs_in_state(&self, state: JobState, limit: u32) -> Result<Vec<Job>, DbError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY updated_at DESC, id DESC LIMIT $2");
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql).bind(state.as_str()).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter().map(|r| super::rows::job_from_row!(r)).collect()
        })
    }

    /// A failed or dead job queued again with a fresh set of attempts and no
    /// lost workers on its record (the outbox publishes it); `false` when it
    /// is not failed or dead.
    pub async fn retry_job(&self, id: i64, actor: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let row: Option<(i64, String)> = sqlx::query_as(
                "UPDATE jobs SET state = 'queued', attempts = 0, published_at = NULL, finished_at = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL, not_before = NULL, updated_at = $2 \
                 WHERE id = $1 AND state IN ('failed', 'dead') RETURNING study_id, COALESCE(last_error, '')",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((study_id, last_error)) = row else { return Ok(false) };
            // A fresh start: the workers it lost before do not count towards poison.
            sqlx::query("DELETE FROM lease_expiries WHERE job_id = $1").bind(id).execute(&mut *tx).await?;
            let detail = serde_json::json!({"last_error": last_error});
            audit::record(&mut tx, Audit::job(now, actor, "job.retried", study_id, id, &detail)).await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
