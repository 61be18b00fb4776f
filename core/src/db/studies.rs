//! Studies for the status API (`GET /v1/studies`, `GET /v1/studies/{id}`)
//! and recording studies that had nothing to process.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::rows::{JOB_COLUMNS, job_from_row, job_state, json, review_state, routing};
use super::{
    DbError, JobDetail, JobStore, NewSeries, ResultSummary, SeriesRow, StudyDetail, StudyId, StudySummary, stored,
};

/// The study columns with the latest job's id and state (`s` = studies).
const STUDY_SELECT: &str = "SELECT s.id, s.study_key, s.source_uri, s.ineligible_reason, s.created_at, s.updated_at, \
     j.id AS job_id, j.state AS job_state FROM studies s \
     LEFT JOIN jobs j ON j.id = (SELECT MAX(id) FROM jobs WHERE study_id = s.id)";

macro_rules! study_from_row {
    ($row:expr) => {{
        let row = &$row;
        (|| -> Result<StudySummary, DbError> {
            let id: i64 = row.try_get("id")?;
            let state: Option<String> = row.try_get("job_state")?;
            Ok(StudySummary {
                id,
                study_key: row.try_get("study_key")?,
                source_uri: row.try_get("source_uri")?,
                ineligible_reason: row.try_get("ineligible_reason")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                latest_job_id: row.try_get("job_id")?,
                latest_job_state: state.map(|s| job_state(id, &s)).transpose()?,
            })
        })()
    }};
}

impl JobStore {
    /// Studies, most recent first (by id), `limit` from `offset`.
    pub async fn list_studies(&self, limit: u32, offset: u64) -> Result<Vec<StudySummary>, DbError> {
        let sql = format!("{STUDY_SELECT} ORDER BY s.id DESC LIMIT $1 OFFSET $2");
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql).bind(i64::from(limit)).bind(offset).fetch_all(pool).await?;
            rows.iter().map(|row| study_from_row!(row)).collect()
        })
    }

    /// One study with its series, and every job with its result and review state.
    pub async fn study(&self, id: StudyId) -> Result<Option<StudyDetail>, DbError> {
        let study_sql = format!("{STUDY_SELECT} WHERE s.id = $1");
        let jobs_sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE study_id = $1 ORDER BY id");
        dispatch!(self, |pool| {
            let Some(row) = sqlx::query(&study_sql).bind(id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let study = study_from_row!(row)?;
            let series_rows = sqlx::query(
                "SELECT id, series_uid, modality, description, manufacturer, manufacturer_model, station_name, \
                 field_strength_t, slices FROM series WHERE study_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let mut series = Vec::with_capacity(series_rows.len());
            for row in &series_rows {
                series.push(SeriesRow {
                    id: row.try_get("id")?,
                    series: NewSeries {
                        series_uid: row.try_get("series_uid")?,
                        modality: row.try_get("modality")?,
                        description: row.try_get("description")?,
                        manufacturer: row.try_get("manufacturer")?,
                        manufacturer_model: row.try_get("manufacturer_model")?,
                        station_name: row.try_get("station_name")?,
                        field_strength_t: row.try_get("field_strength_t")?,
                        slices: row.try_get("slices")?,
                    },
                });
            }
            let job_rows = sqlx::query(&jobs_sql).bind(id).fetch_all(pool).await?;
            let result_rows = sqlx::query(
                "SELECT r.id, r.job_id, r.decision, r.object_keys, r.created_at, v.state AS review_state \
                 FROM results r LEFT JOIN review_items v ON v.result_id = r.id WHERE r.study_id = $1",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let mut results = BTreeMap::new();
            for row in &result_rows {
                let result_id: i64 = row.try_get("id")?;
                let review: Option<String> = row.try_get("review_state")?;
                let summary = ResultSummary {
                    id: result_id,
                    decision: routing(result_id, &row.try_get::<String, _>("decision")?)?,
                    object_keys: json(result_id, "object_keys", &row.try_get::<String, _>("object_keys")?)?,
                    created_at: row.try_get("created_at")?,
                    review_state: review.map(|s| review_state(result_id, &s)).transpose()?,
                };
                results.insert(row.try_get::<i64, _>("job_id")?, summary);
            }
            let mut jobs = Vec::with_capacity(job_rows.len());
            for row in &job_rows {
                let job = job_from_row!(row)?;
                let result = results.remove(&job.id);
                jobs.push(JobDetail { job, result });
            }
            Ok(Some(StudyDetail { study, series, jobs }))
        })
    }

    /// Records a study that had no series eligible for processing, with the
    /// reason, so that it is visible in the status API. Returns its id.
    pub async fn record_ineligible(
        &self,
        study_key: &str,
        source_uri: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<StudyId, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO studies (study_key, source_uri, ineligible_reason, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (study_key) DO UPDATE SET \
                 source_uri = excluded.source_uri, ineligible_reason = excluded.ineligible_reason, \
                 updated_at = excluded.updated_at RETURNING id",
            )
            .bind(study_key)
            .bind(source_uri)
            .bind(reason)
            .bind(now)
            .fetch_one(pool)
            .await?;
            Ok(id)
        })
    }
}
