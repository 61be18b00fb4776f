//! Job lifecycle in the store: idempotent enqueue, the outbox, claims and
//! leases, failure, and the reaper. `complete` is in `complete.rs`.
//!
//! Every transition is one conditional `UPDATE … WHERE <expected state>`, so
//! concurrent callers (two workers claiming one job, a worker failing a job
//! the reaper just took back) resolve in the database: exactly one of them
//! changes the row, the others see nothing changed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::audit::{self, Audit};
use super::rows::{JOB_COLUMNS, job_from_row, job_state, to_json};
use super::{
    BeginWrite as _, Claimed, DbError, Enqueued, FailOutcome, Job, JobId, JobStore, LeasePolicy, LeaseVerdict, NewJob,
    Reaped, later, stored,
};
use crate::domain::JobState;

/// Forced enqueues that race for the next version retry this often.
const VERSION_TRIES: u32 = 8;

impl JobStore {
    /// Records a job for `new.key`, with its study and series, in `queued`
    /// state and unpublished. Without `force`, a key that already has a job
    /// returns that job (its latest version) and writes nothing; with
    /// `force`, a new version of the job is created.
    pub async fn enqueue(&self, new: &NewJob, now: DateTime<Utc>) -> Result<Enqueued, DbError> {
        let now = stored(now);
        let series_uids = to_json("series uids", &new.series.iter().map(|s| &s.series_uid).collect::<Vec<_>>())?;
        let key = new.key.as_str();
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let latest: Option<(i64, i64)> =
                sqlx::query_as("SELECT id, version FROM jobs WHERE job_key = $1 ORDER BY version DESC LIMIT 1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let (Some((id, _)), false) = (latest, new.force) {
                return Ok(Enqueued::Existing(id));
            }
            let study_id: i64 = sqlx::query_scalar(
                "INSERT INTO studies (study_key, source_uri, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (study_key) DO UPDATE SET source_uri = excluded.source_uri, \
                 updated_at = excluded.updated_at, ineligible_reason = NULL RETURNING id",
            )
            .bind(&new.study_key)
            .bind(&new.source_uri)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for s in &new.series {
                sqlx::query(
                    "INSERT INTO series (study_id, series_uid, modality, description, manufacturer, \
                     manufacturer_model, station_name, field_strength_t, slices, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (study_id, series_uid) DO NOTHING",
                )
                .bind(study_id)
                .bind(&s.series_uid)
                .bind(&s.modality)
                .bind(&s.description)
                .bind(&s.manufacturer)
                .bind(&s.manufacturer_model)
                .bind(&s.station_name)
                .bind(s.field_strength_t)
                .bind(s.slices)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut version = latest.map_or(1, |(_, v)| v + 1);
            for _ in 0..VERSION_TRIES {
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO jobs (study_id, job_key, version, source_uri, series_uids, pipeline, model_version, \
                     harmonizer_version, priority, state, attempts, max_attempts, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $11) \
                     ON CONFLICT (job_key, version) DO NOTHING RETURNING id",
                )
                .bind(study_id)
                .bind(key)
                .bind(version)
                .bind(&new.source_uri)
                .bind(&series_uids)
                .bind(&new.pipeline)
                .bind(&new.model_version)
                .bind(&new.harmonizer_version)
                .bind(new.priority.rank())
                .bind(i64::from(new.max_attempts.max(1)))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = inserted {
                    let action = if version == 1 { "job.enqueued" } else { "job.forced" };
                    let detail = serde_json::json!({ "version": version, "priority": new.priority.as_str() });
                    audit::record(&mut tx, Audit::job(now, "scheduler", action, study_id, id, &detail)).await?;
                    tx.commit().await?;
                    return Ok(Enqueued::Created(id));
                }
                // Another enqueue took this version first (it commits before our insert returns).
                let existing: Option<(i64, i64)> =
                    sqlx::query_as("SELECT id, version FROM jobs WHERE job_key = $1 ORDER BY version DESC LIMIT 1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                match existing {
                    Some((id, _)) if !new.force => {
                        tx.commit().await?;
                        return Ok(Enqueued::Existing(id));
                    }
                    Some((_, v)) => version = v + 1,
                    None => {}
                }
            }
            Err(DbError::VersionRace { key: key.to_string(), tries: VERSION_TRIES })
        })
    }

    /// Queued jobs whose message has not been confirmed by the queue and
    /// that may run at `now` (a job whose worker vanished waits out its
    /// backoff), stat first, oldest first.
    pub async fn unpublished(&self, limit: u32, now: DateTime<Utc>) -> Result<Vec<Job>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE published_at IS NULL AND state = 'queued' \
             AND (not_before IS NULL OR not_before <= $2) ORDER BY priority, id LIMIT $1"
        );
        let now = stored(now);
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql).bind(i64::from(limit)).bind(now).fetch_all(pool).await?;
            rows.iter().map(|row| job_from_row!(row)).collect()
        })
    }

    /// Dead jobs whose message is not on the dead-letter queue yet (those the
    /// reaper declared dead), oldest first. [`mark_published`](Self::mark_published)
    /// records the broker's confirmation.
    pub async fn dead_unannounced(&self, limit: u32) -> Result<Vec<Job>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE published_at IS NULL AND state = 'dead' ORDER BY id LIMIT $1"
        );
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter().map(|row| job_from_row!(row)).collect()
        })
    }

    /// Records that the queue confirmed the job's message (to the jobs queue,
    /// or for a dead job to the dead-letter queue). False when it was already marked.
    pub async fn mark_published(&self, id: JobId, now: DateTime<Utc>) -> Result<bool, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let done = sqlx::query("UPDATE jobs SET published_at = $2 WHERE id = $1 AND published_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Marks every queued job unpublished, so the outbox sends them again.
    /// For a queue that does not survive a restart (`memory://`): called at
    /// start-up, it puts back every message the restart lost. Returns how many.
    pub async fn republish_queued(&self) -> Result<u64, DbError> {
        dispatch!(self, |pool| {
            let done =
                sqlx::query("UPDATE jobs SET published_at = NULL WHERE state = 'queued' AND published_at IS NOT NULL")
                    .execute(pool)
                    .await?;
            Ok(done.rows_affected())
        })
    }

    /// Takes the job for `worker` until `now + lease`: only a `queued` job
    /// past its backoff, and only while attempts remain. Counts the attempt.
    /// `None` when the job is not claimable (held by a worker, final, out of
    /// attempts, waiting out a backoff, or unknown). A job whose worker
    /// vanished is not taken over here: the reaper first records the loss
    /// (which spends no attempt, [`reap_expired`](Self::reap_expired)).
    pub async fn claim(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claimed>, DbError> {
        let now = stored(now);
        let until = later(now, lease);
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $2, lease_expires_at = $3, attempts = attempts + 1, \
             updated_at = $4 \
             WHERE id = $1 AND attempts < max_attempts AND state = 'queued' \
             AND (not_before IS NULL OR not_before <= $4) \
             RETURNING {JOB_COLUMNS}"
        );
        dispatch!(self, |pool| {
            let row = sqlx::query(&sql).bind(id).bind(worker).bind(until).bind(now).fetch_optional(pool).await?;
            match row {
                Some(row) => Ok(Some(Claimed { job: job_from_row!(row)?, lease_expires_at: until })),
                None => Ok(None),
            }
        })
    }

    /// Extends `worker`'s lease to `now + lease`. `None` when the worker no
    /// longer holds the job (it was reclaimed, reaped, or finished).
    pub async fn renew_lease(
        &self,
        id: JobId,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DbError> {
        let now = stored(now);
        let until = later(now, lease);
        dispatch!(self, |pool| {
            let done = sqlx::query(
                "UPDATE jobs SET lease_expires_at = $3, updated_at = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
            )
            .bind(id)
            .bind(worker)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?;
            Ok((done.rows_affected() == 1).then_some(until))
        })
    }

    /// Hands a job `worker` holds back without counting the attempt (a
    /// worker shutting down before it could finish, a service the job needs
    /// down): `queued` again and *unpublished*, so the outbox sends it unless
    /// the caller confirms with [`mark_published`](Self::mark_published) that
    /// it returned the message to the queue. A message cannot always go back:
    /// when its channel died mid-job, the broker redelivered it and another
    /// worker acked it as a duplicate of the running job — marking the job
    /// published here lost it (a chaos campaign found one study stuck
    /// `queued` that way). Each failure now costs at most a duplicate message,
    /// which the claim settles. `reason` goes into the `job.released` audit
    /// event. `false` when the worker no longer holds it.
    pub async fn release(&self, id: JobId, worker: &str, reason: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let study: Option<i64> = sqlx::query_scalar(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                 lease_expires_at = NULL, published_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 RETURNING study_id",
            )
            .bind(id)
            .bind(worker)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(study_id) = study else { return Ok(false) };
            let detail = serde_json::json!({ "reason": reason });
            audit::record(&mut tx, Audit::job(now, worker, "job.released", study_id, id, &detail)).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Records a failed attempt by `worker`. A transient error with attempts
    /// left puts the job back to `queued` (the queue's retry delivers it
    /// again); a permanent error makes it `failed`; a transient error on the
    /// last attempt makes it `dead`. The error is kept as `last_error`.
    pub async fn fail(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        transient: bool,
        now: DateTime<Utc>,
    ) -> Result<FailOutcome, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query(
                "UPDATE jobs SET \
                 state = CASE WHEN $3 = 0 THEN 'failed' WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                 finished_at = CASE WHEN $3 = 0 OR attempts >= max_attempts THEN $5 ELSE NULL END, \
                 last_error = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 \
                 RETURNING state, attempts, max_attempts, study_id",
            )
            .bind(id)
            .bind(worker)
            .bind(i64::from(transient))
            .bind(error)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let state = state.ok_or(DbError::NoSuchJob(id))?;
                return Ok(FailOutcome::NotHeld { state: job_state(id, &state)? });
            };
            let state = job_state(id, &row.try_get::<String, _>("state")?)?;
            let attempts: i64 = row.try_get("attempts")?;
            let max_attempts: i64 = row.try_get("max_attempts")?;
            let study_id: i64 = row.try_get("study_id")?;
            let (outcome, action) = match state {
                JobState::Queued => (FailOutcome::Retry { attempts, max_attempts }, "job.retry"),
                JobState::Dead => (FailOutcome::Dead, "job.dead"),
                _ => (FailOutcome::Failed, "job.failed"),
            };
            let detail = serde_json::json!({
                "error": error, "transient": transient, "attempts": attempts, "max_attempts": max_attempts,
            });
            audit::record(&mut tx, Audit::job(now, worker, action, study_id, id, &detail)).await?;
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// One reaper pass: running jobs whose lease expired at `now` lost their
    /// worker (it crashed, was evicted or killed, or lost its connections
    /// for longer than the lease). That is not the study's fault, so the
    /// attempt is given back: the job returns to `queued`, unpublished (the
    /// outbox sends it again once `policy`'s backoff has passed; a duplicate
    /// message is harmless because `claim` decides). Each loss is recorded
    /// with whether the job was the only one its worker was running; a job
    /// that was the only one on `policy.poison_after` vanished workers (a
    /// study that crashes its worker), or that lost `policy.max_expiries`
    /// workers in all, is `dead` instead — unpublished, so that
    /// [`dead_unannounced`](Self::dead_unannounced) hands it to the
    /// dead-letter queue (no worker holds a delivery to dead-letter).
    pub async fn reap_expired(&self, policy: &LeasePolicy, now: DateTime<Utc>) -> Result<Reaped, DbError> {
        let now = stored(now);
        dispatch!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let expired: Vec<(i64, i64, Option<String>)> = sqlx::query_as(
                "SELECT id, study_id, lease_owner FROM jobs WHERE state = 'running' AND lease_expires_at <= $1 \
                 ORDER BY id",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut reaped = Reaped::default();
            for (id, study_id, owner) in expired {
                let worker = owner.unwrap_or_else(|| "?".into());
                // Every job the worker held when it vanished is either still
                // `running` under its name or already recorded as lost.
                let others: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner = $1 AND id <> $2) \
                     + (SELECT COUNT(*) FROM lease_expiries WHERE worker = $1 AND job_id <> $2)",
                )
                .bind(&worker)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                let solo = others == 0;
                let (lost_before, alone_before): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN solo THEN 1 ELSE 0 END), 0) FROM lease_expiries \
                     WHERE job_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                let (lost, lost_alone) = (lost_before + 1, alone_before + i64::from(solo));
                let verdict = policy.verdict(&worker, lost, lost_alone, now);
                let (state, refund, not_before, error) = match &verdict {
                    LeaseVerdict::Requeue { not_before, error } => ("queued", 1_i64, Some(*not_before), error),
                    LeaseVerdict::Dead { error } => ("dead", 0, None, error),
                };
                // The loss is recorded only when the lease is still expired: a
                // worker that renewed it meanwhile has not vanished.
                let changed = sqlx::query(
                    "UPDATE jobs SET state = $3, attempts = attempts - $4, not_before = $5, last_error = $6, \
                     finished_at = CASE WHEN $3 = 'dead' THEN $2 ELSE finished_at END, published_at = NULL, \
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
                     WHERE id = $1 AND state = 'running' AND lease_expires_at <= $2",
                )
                .bind(id)
                .bind(now)
                .bind(state)
                .bind(refund)
                .bind(not_before)
                .bind(error)
                .execute(&mut *tx)
                .await?;
                if changed.rows_affected() != 1 {
                    continue;
                }
                // A worker that lost this job once before (cut off, then took it again) is one row.
                sqlx::query(
                    "INSERT INTO lease_expiries (job_id, worker, solo, expired_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (job_id, worker) DO NOTHING",
                )
                .bind(id)
                .bind(&worker)
                .bind(solo)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let action = match verdict {
                    LeaseVerdict::Requeue { .. } => {
                        reaped.requeued.push(id);
                        "job.requeued"
                    }
                    LeaseVerdict::Dead { .. } => {
                        reaped.dead.push(id);
                        "job.dead"
                    }
                };
                let detail = serde_json::json!({
                    "error": error, "worker": worker, "solo": solo,
                    "workers_lost": lost, "workers_lost_alone": lost_alone,
                });
                audit::record(&mut tx, Audit::job(now, "reaper", action, study_id, id, &detail)).await?;
            }
            tx.commit().await?;
            Ok(reaped)
        })
    }

    /// One job.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, DbError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        dispatch!(self, |pool| {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(job_from_row!(row)?)),
                None => Ok(None),
            }
        })
    }

    /// Every version of the job with this key, oldest first.
    pub async fn jobs_by_key(&self, key: &crate::domain::JobKey) -> Result<Vec<Job>, DbError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_key = $1 ORDER BY version");
        dispatch!(self, |pool| {
            let rows = sqlx::query(&sql).bind(key.as_str()).fetch_all(pool).await?;
            rows.iter().map(|row| job_from_row!(row)).collect()
        })
    }

    /// How many jobs are in each state (for status and tests).
    pub async fn count_by_state(&self) -> Result<Vec<(JobState, i64)>, DbError> {
        dispatch!(self, |pool| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
                    .fetch_all(pool)
                    .await?;
            rows.into_iter().map(|(s, n)| Ok((job_state(0, &s)?, n))).collect()
        })
    }
}
