//! The outbox and the reaper. Dispatch publishes the job store's unpublished
//! jobs to the queue — stat at once, routine only inside the nightly window —
//! and marks each one published once the broker confirmed it; a job whose
//! publish failed stays in the outbox for the next pass. The reaper returns
//! jobs whose worker's lease expired to the outbox after a backoff, without
//! spending their attempt, or to `dead` when they lost too many workers
//! (`core::db::LeasePolicy`) — and puts those on the dead-letter queue, with
//! reason `lease_expired`, through the same outbox rule (marked once
//! confirmed), so an operator watching the DLQ sees every dead job.

use std::time::{Duration, Instant};

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
            let jobs = inner.store.unpublished(BATCH, Utc::now()).await?;
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

    /// One reaper pass: expired leases back to the outbox without spending the
    /// attempt, or `dead` when the job lost too many workers (poison).
    pub async fn reap_once(&self) -> Result<Reaped, SchedulerError> {
        let config = &self.inner.config;
        let policy = config.worker.lease_policy(&config.queue);
        let reaped = self.inner.store.reap_expired(&policy, Utc::now()).await?;
        if !reaped.requeued.is_empty() {
            tracing::warn!(jobs = ?reaped.requeued, "expired leases: workers vanished, jobs requeued without spending an attempt");
        }
        if !reaped.dead.is_empty() {
            tracing::warn!(jobs = ?reaped.dead, "expired leases: jobs that lost too many workers are dead");
        }
        Ok(reaped)
    }

    /// The reaper task's pass: reap and announce the dead, unless the job
    /// store was unreachable within the last lease (`grace`).
    pub(crate) async fn reap_pass(&self, grace: &std::sync::Mutex<ReaperGrace>) -> Result<(), SchedulerError> {
        let open = grace.lock().map(|g| g.open(Instant::now())).unwrap_or(true);
        if !open {
            return Ok(());
        }
        let pass = async {
            self.reap_once().await?;
            self.announce_dead_once().await.map(drop)
        };
        let result = pass.await;
        if let Err(SchedulerError::Db(e)) = &result
            && e.is_transient()
            && let Ok(mut g) = grace.lock()
        {
            g.store_failed(Instant::now());
        }
        result
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

/// When the reaper may judge expired leases. While the job store is
/// unreachable no worker can renew its lease either, so right after an outage
/// every running job's lease looks expired although its worker is alive: the
/// reaper waits one lease after its own last failure to reach the store, which
/// gives the live workers time to renew (they do every third of a lease), and
/// only the leases of workers that really vanished stay expired.
#[derive(Debug)]
pub(crate) struct ReaperGrace {
    lease: Duration,
    store_failed_at: Option<Instant>,
}

impl ReaperGrace {
    pub(crate) fn new(lease: Duration) -> Self {
        ReaperGrace { lease, store_failed_at: None }
    }

    pub(crate) fn store_failed(&mut self, now: Instant) {
        self.store_failed_at = Some(now);
    }

    /// Whether a pass may reap at `now`.
    pub(crate) fn open(&self, now: Instant) -> bool {
        self.store_failed_at.is_none_or(|t| now.saturating_duration_since(t) >= self.lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_waits_one_lease_after_the_store_was_unreachable() {
        let t0 = Instant::now();
        let mut grace = ReaperGrace::new(Duration::from_secs(8));
        assert!(grace.open(t0), "no outage seen");
        grace.store_failed(t0);
        assert!(!grace.open(t0 + Duration::from_secs(7)), "live workers have not renewed yet");
        assert!(grace.open(t0 + Duration::from_secs(8)));
        grace.store_failed(t0 + Duration::from_secs(20));
        assert!(!grace.open(t0 + Duration::from_secs(21)), "a second outage starts the wait again");
    }
}
