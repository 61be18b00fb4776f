//! The outbox and the reaper. Dispatch publishes the job store's unpublished
//! jobs to the queue — stat at once, routine only inside the nightly window —
//! and marks each one published once the broker confirmed it; a job whose
//! publish failed stays in the outbox for the next pass. The reaper returns
//! jobs whose worker's lease expired to the outbox, or to `dead` on their last
//! attempt — and puts those on the dead-letter queue, with reason
//! `lease_expired`, through the same outbox rule (marked once confirmed), so
//! an operator watching the DLQ sees every dead job.

use chrono::{DateTime, Local, Timelike as _, Utc};
use neurobatch_core::db::{Job, Reaped};
use neurobatch_core::domain::Priority;
use neurobatch_core::message::{self, JobMessage, ModelRef};
use neurobatch_core::queue::{DeadReason, QueueError};

use crate::{Scheduler, SchedulerError};

/// Jobs read from the outbox per query.
const BATCH: u32 = 100;

impl Scheduler {
    /// One outbox pass at local time `now_local`; returns how many jobs were published.
    /// A broker that is down (or a full queue) ends the pass with the error; the
    /// jobs not published stay in the outbox.
    pub async fn dispatch_once(&self, now_local: DateTime<Local>) -> Result<usize, SchedulerError> {
        let inner = &self.inner;
        let minute = u16::try_from(now_local.hour() * 60 + now_local.minute()).unwrap_or(0);
        let routine_now = inner.window.is_none_or(|w| w.contains(minute));
        let mut published = 0;
        loop {
            let jobs = inner.store.unpublished(BATCH).await?;
            let full = jobs.len() == BATCH as usize;
            let mut sent = 0;
            for job in &jobs {
                if job.priority == Priority::Routine && !routine_now {
                    continue;
                }
                let msg = match self.message(job, job.attempts.saturating_add(1)) {
                    Ok(m) => m,
                    Err(reason) => {
                        tracing::warn!(job_id = job.id, %reason, "job not published: invalid message");
                        continue;
                    }
                };
                match inner.queue.publish(&msg).await {
                    Ok(()) => {}
                    Err(QueueError::Message(e)) => {
                        tracing::warn!(job_id = job.id, error = %e, "job not published: invalid message");
                        continue;
                    }
                    Err(e) => {
                        if published > 0 {
                            tracing::info!(published, "jobs published before the queue failed");
                        }
                        return Err(e.into());
                    }
                }
                inner.store.mark_published(job.id, Utc::now()).await?;
                tracing::debug!(job_id = job.id, priority = job.priority.as_str(), "job published");
                published += 1;
                sent += 1;
            }
            // A full batch wholly published may have more behind it.
            if !full || sent < jobs.len() {
                break;
            }
        }
        if published > 0 {
            tracing::info!(published, "jobs published");
        }
        Ok(published)
    }

    /// The queue message of a job row for its `attempt`.
    fn message(&self, job: &Job, attempt: i64) -> Result<JobMessage, String> {
        let attempt = u32::try_from(attempt.max(1)).map_err(|_| format!("attempt {attempt}"))?;
        let micros = i128::from(job.created_at.timestamp_micros());
        let enqueued_at = time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).map_err(|e| e.to_string())?;
        let msg = JobMessage {
            job_id: job.id,
            job_key: job.key.to_string(),
            study_uri: job.source_uri.clone(),
            series: job.series_uids.clone(),
            pipeline: job.pipeline.clone(),
            model: ModelRef { name: self.inner.pipeline.model_name.clone(), version: job.model_version.clone() },
            priority: match job.priority {
                Priority::Stat => message::Priority::Stat,
                Priority::Routine => message::Priority::Routine,
            },
            attempt,
            enqueued_at,
        };
        msg.validate().map_err(|e| e.to_string())?;
        Ok(msg)
    }

    /// One reaper pass: expired leases back to the outbox, or `dead` on their last attempt.
    pub async fn reap_once(&self) -> Result<Reaped, SchedulerError> {
        let reaped = self.inner.store.reap_expired(Utc::now()).await?;
        if !reaped.requeued.is_empty() {
            tracing::warn!(jobs = ?reaped.requeued, "expired leases: jobs requeued");
        }
        if !reaped.dead.is_empty() {
            tracing::warn!(jobs = ?reaped.dead, "expired leases on the last attempt: jobs dead");
        }
        Ok(reaped)
    }

    /// Puts the jobs the reaper declared dead on the dead-letter queue (their
    /// last attempt as the message's attempt, reason `lease_expired`, the
    /// store's last error); returns how many. A broker that is down ends the
    /// pass; the rest go on the next one.
    pub async fn announce_dead_once(&self) -> Result<usize, SchedulerError> {
        let inner = &self.inner;
        let mut announced = 0;
        loop {
            let jobs = inner.store.dead_unannounced(BATCH).await?;
            let full = jobs.len() == BATCH as usize;
            for job in &jobs {
                let error = job.last_error.as_deref().unwrap_or("dead");
                let sent = match self.message(job, job.attempts) {
                    Ok(msg) => match inner.queue.publish_dead_letter(&msg, DeadReason::LeaseExpired, error).await {
                        Ok(()) => Ok(()),
                        Err(QueueError::Message(e)) => Err(e.to_string()),
                        Err(e) => return Err(e.into()),
                    },
                    Err(reason) => Err(reason),
                };
                // Marked either way: a row that cannot make a message never will.
                inner.store.mark_published(job.id, Utc::now()).await?;
                match sent {
                    Ok(()) => {
                        tracing::info!(job_id = job.id, "dead job put on the dead-letter queue");
                        announced += 1;
                    }
                    Err(reason) => {
                        tracing::warn!(job_id = job.id, %reason, "dead job not dead-lettered: invalid message")
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(announced)
    }
}
