//! The scheduler's metrics and health: the process's [`Health`] (readiness
//! over the scheduler's database, broker and object store, and the
//! registry `/metrics` encodes), its own metrics listener, and the
//! gauges it samples every poll interval — the jobs queue's depth, the jobs
//! queued in the store, and the review backlog with its oldest item's age.

use chrono::Utc;
use neurobatch_core::health::Health;
use neurobatch_core::metrics::Metrics;

use crate::{Scheduler, SchedulerError};

impl Scheduler {
    /// The readiness checks and metrics of this scheduler (share them with an
    /// in-process worker so that one `/metrics` shows both).
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.health.metrics()
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` without a token on
    /// `scheduler.metrics_listen` until `shutdown`; `None` when it is empty.
    pub(crate) async fn bind_metrics_listener(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Option<impl std::future::Future<Output = Result<(), SchedulerError>> + use<>>, SchedulerError> {
        let addr = self.inner.config.scheduler.metrics_listen.clone();
        if addr.is_empty() {
            return Ok(None);
        }
        let health = self.inner.health.clone();
        let (shown, server) = probes::bind(&addr, health, async move { shutdown.cancelled().await })
            .await
            .map_err(|e| SchedulerError::Http { addr: addr.clone(), reason: e.to_string() })?;
        tracing::info!(addr = %shown, "scheduler health and metrics listening");
        Ok(Some(async move { server.await.map_err(|e| SchedulerError::Http { addr: shown, reason: e.to_string() }) }))
    }

    /// Samples the gauges once: `neurobatch_queue_depth{queue="jobs"}` from the
    /// broker, `{queue="database"}` and the review backlog from the job store.
    pub async fn record_gauges_once(&self) -> Result<(), SchedulerError> {
        let metrics = self.metrics();
        let broker = self.inner.queue.queued().await;
        let stats = self.inner.store.admin_stats(Utc::now()).await?;
        metrics.set_queue_depth("database", stats.jobs_by_state.get("queued").copied().unwrap_or(0));
        metrics.set_review_backlog(stats.review_backlog, stats.review_oldest_age_seconds);
        metrics.set_queue_depth("jobs", i64::from(broker?));
        Ok(())
    }
}

/// A health for a new scheduler: its backends attached, no models needed.
pub(crate) fn health_over(
    store: &neurobatch_core::db::JobStore,
    queue: &neurobatch_core::queue::Queue,
    objects: &neurobatch_core::storage::ObjectStore,
) -> Health {
    let health = Health::new(Metrics::new());
    health.attach(store.clone(), queue.clone(), objects.clone());
    health
}
