//! What the nightly DICOMweb pull fetched from the PACS: one row per series
//! with its instance count, so a series is fetched again only when it is new
//! or grew.

use chrono::{DateTime, Utc};

use super::{DbError, JobStore, stored};

impl JobStore {
    /// The instance count recorded for a series, `None` when it was never pulled.
    pub async fn pulled_instances(&self, study_uid: &str, series_uid: &str) -> Result<Option<i64>, DbError> {
        dispatch!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT instances FROM pacs_pulls WHERE study_uid = $1 AND series_uid = $2")
                .bind(study_uid)
                .bind(series_uid)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Records that a series was pulled with `instances` instances.
    pub async fn record_pull(
        &self,
        study_uid: &str,
        series_uid: &str,
        instances: i64,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            sqlx::query(
                "INSERT INTO pacs_pulls (study_uid, series_uid, instances, pulled_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (study_uid, series_uid) DO UPDATE SET instances = $3, pulled_at = $4",
            )
            .bind(study_uid)
            .bind(series_uid)
            .bind(instances)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
