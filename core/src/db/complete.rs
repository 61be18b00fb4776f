//! `complete`: everything a succeeded job produced, written in one
//! transaction, exactly once however often it is called.

use chrono::{DateTime, Utc};

use super::audit::{self, Audit};
use super::rows::{job_state, to_json};
use super::{BeginWrite as _, Completion, DbError, JobId, JobResults, JobStore, stored};
use crate::domain::JobState;

impl JobStore {
    /// Writes the result, its structure metrics, classification outputs and
    /// review item (when there is one) and sets the job `succeeded`, all in
    /// one transaction. A job that already succeeded is left alone
    /// ([`Completion::AlreadyCompleted`]): a redelivered job never duplicates
    /// rows. Results are accepted from `worker` while the job is not final —
    /// also when its lease expired and the reaper took it back, since the
    /// results depend only on the job key; a `failed` or `dead` job refuses
    /// them ([`DbError::Closed`]).
    pub async fn complete(
        &self,
        id: JobId,
        worker: &str,
        results: &JobResults,
        now: DateTime<Utc>,
    ) -> Result<Completion, DbError> {
        let now = stored(now);
        let object_keys = to_json("object keys", &results.object_keys)?;
        let report = to_json("report", &results.report)?;
        let review_reasons = results.review.as_ref().map(|r| to_json("review reasons", &r.reasons)).transpose()?;
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // The state change comes first: it takes the row lock, so a
            // concurrent second `complete` waits here and then sees `succeeded`.
            let claimed: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, \
                 last_error = NULL, finished_at = $2, updated_at = $2 \
                 WHERE id = $1 AND state IN ('queued', 'running') RETURNING study_id, priority",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((study_id, priority)) = claimed else {
                let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let state = job_state(id, &state.ok_or(DbError::NoSuchJob(id))?)?;
                return match state {
                    JobState::Succeeded => Ok(Completion::AlreadyCompleted),
                    state => Err(DbError::Closed { id, state }),
                };
            };
            let result_id: i64 = sqlx::query_scalar(
                "INSERT INTO results (job_id, study_id, decision, series_uid, scanner_manufacturer, scanner_model, \
                 field_strength_t, object_keys, report, worker_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(id)
            .bind(study_id)
            .bind(results.decision.as_str())
            .bind(&results.series_uid)
            .bind(&results.scanner.manufacturer)
            .bind(&results.scanner.model)
            .bind(results.scanner.field_strength_t)
            .bind(&object_keys)
            .bind(&report)
            .bind(worker)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for m in &results.structures {
                sqlx::query(
                    "INSERT INTO structure_metrics (result_id, label, structure, voxels, volume_ml, volume_cv, \
                     pairwise_dice, mean_entropy, mean_mutual_information) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(result_id)
                .bind(m.label)
                .bind(&m.structure)
                .bind(m.voxels)
                .bind(m.volume_ml)
                .bind(m.volume_cv)
                .bind(m.pairwise_dice)
                .bind(m.mean_entropy)
                .bind(m.mean_mutual_information)
                .execute(&mut *tx)
                .await?;
            }
            for c in &results.classifications {
                sqlx::query(
                    "INSERT INTO classification_outputs (result_id, model, label, probability, predictive_entropy, \
                     mutual_information, probabilities) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(result_id)
                .bind(&c.model)
                .bind(&c.label)
                .bind(c.probability)
                .bind(c.predictive_entropy)
                .bind(c.mutual_information)
                .bind(to_json("class probabilities", &c.probabilities)?)
                .execute(&mut *tx)
                .await?;
            }
            if let (Some(review), Some(reasons)) = (&results.review, &review_reasons) {
                let review_id: i64 = sqlx::query_scalar(
                    "INSERT INTO review_items (job_id, result_id, study_id, state, reasons, priority, uncertainty, \
                     created_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $7) RETURNING id",
                )
                .bind(id)
                .bind(result_id)
                .bind(study_id)
                .bind(reasons)
                .bind(priority)
                .bind(review.uncertainty)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let codes: std::collections::BTreeSet<&str> = review.reasons.iter().map(|r| r.code.as_str()).collect();
                for code in codes {
                    sqlx::query("INSERT INTO review_reasons (review_item_id, code) VALUES ($1, $2)")
                        .bind(review_id)
                        .bind(code)
                        .execute(&mut *tx)
                        .await?;
                }
                let event = Audit {
                    at: now,
                    actor: worker,
                    action: "review.created",
                    study_id,
                    job_id: Some(id),
                    review_item_id: Some(review_id),
                    detail: reasons.clone(),
                };
                audit::record(&mut tx, event).await?;
            }
            let detail = serde_json::json!({ "decision": results.decision.as_str(), "result_id": result_id });
            audit::record(&mut tx, Audit::job(now, worker, "job.succeeded", study_id, id, &detail)).await?;
            tx.commit().await?;
            Ok(Completion::Completed)
        })
    }
}
