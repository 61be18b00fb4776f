//! The scheduler's metrics and health: the process's [`Health`] (readiness
//! over the scheduler's database, broker and object store, and the
//! registry `/metrics` encodes), its routes for the API's router, and the
//! gauges it samples every poll interval — the jobs queue's depth, the jobs
//! queued in the store, and the review backlog with its oldest item's age.

use axum::Router;
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

    /// `/healthz`, `/readyz`, `/metrics` (merged into the API's router).
    pub(crate) fn observe_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.inner.health.router()
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
