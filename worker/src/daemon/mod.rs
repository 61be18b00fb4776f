//! The worker daemon (`neurobatch worker`, and the workers inside
//! `neurobatch serve`): consume jobs from the queue, run each through the
//! pipeline with the models loaded once at start-up, store the outputs and
//! the results, then acknowledge. Owns the consume loop, concurrency and the
//! graceful shutdown; one delivery's life is [`job`], one study's work
//! [`study`], the rows it writes [`results`].
//!
//! Shutdown (SIGTERM in `neurobatch worker`): stop taking deliveries
//! (`basic.cancel`), let the jobs in flight finish for `grace`, then hand the
//! rest back (released in the store, requeued on the broker) and return.
//!
//! Metrics: every settled delivery, stage durations and review routing are
//! recorded by [`job`]; the models, their execution providers and the
//! concurrency when the worker is made. [`listen`] serves `/healthz`,
//! `/readyz` and `/metrics` on `worker.listen`.

mod error;
pub mod job;
pub mod listen;
mod outage;
mod results;
pub mod study;

use std::sync::Arc;
use std::time::Duration;

use neurobatch_core::db::JobStore;
use neurobatch_core::metrics::Metrics;
use neurobatch_core::queue::{Queue, QueueError};
use neurobatch_core::storage::{ObjectStore, S3Settings};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::{Dependency, JobError, WorkerError};
pub use job::Settled;
pub use outage::Outage;
pub use results::{job_results, review_event};
pub use study::{Models, StudyOutput};

/// How a worker runs jobs (from `[worker]`).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This worker's name in leases and the audit log (host and process id by default).
    pub id: String,
    /// Jobs at once; also the broker prefetch.
    pub concurrency: usize,
    pub lease: Duration,
    pub job_timeout: Duration,
    /// After shutdown is requested, how long jobs in flight may still take.
    pub grace: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &neurobatch_core::config::WorkerConfig, id: String) -> Self {
        WorkerSettings {
            id,
            concurrency: usize::try_from(config.concurrency).unwrap_or(1).max(1),
            lease: config.lease(),
            job_timeout: config.job_timeout(),
            grace: config.grace_period(),
        }
    }
}

/// What every job of this worker shares.
pub struct Context {
    pub settings: WorkerSettings,
    pub store: JobStore,
    pub queue: Queue,
    /// Where results go.
    pub objects: ObjectStore,
    /// How `s3://` study sources are reached, and how large they may be.
    pub s3: S3Settings,
    pub study_limits: neurobatch_core::storage::StudyLimits,
    pub models: Arc<Models>,
    /// The process's metrics (shared with the scheduler's in `neurobatch serve`).
    pub metrics: Metrics,
    /// The services found down: while any is, the worker takes no job.
    pub outage: Outage,
    /// This process's scratch folder: each job's temporary folder is made in it.
    pub scratch: neurobatch_core::scratch::Scratch,
}

/// A worker: [`Worker::run`] until shutdown.
pub struct Worker {
    ctx: Arc<Context>,
}

impl Worker {
    /// A worker; records its concurrency, models and execution providers in its metrics.
    pub fn new(ctx: Context) -> Self {
        ctx.metrics.set_worker_concurrency(i64::try_from(ctx.settings.concurrency).unwrap_or(i64::MAX));
        record_models(&ctx.metrics, &ctx.models);
        Worker { ctx: Arc::new(ctx) }
    }

    pub fn id(&self) -> &str {
        &self.ctx.settings.id
    }

    /// Consumes until `shutdown` is cancelled, then drains (see the module
    /// docs). `settled` receives every delivery's end (tests and logs).
    /// Returns an error only when the queue stays unreachable past its
    /// reconnect window (the process should exit and be restarted).
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        settled: Option<tokio::sync::mpsc::UnboundedSender<Settled>>,
    ) -> Result<(), WorkerError> {
        let ctx = &self.ctx;
        let prefetch = u16::try_from(ctx.settings.concurrency).unwrap_or(u16::MAX);
        let mut consumer = tokio::select! {
            c = ctx.queue.consume(prefetch) => c?,
            () = shutdown.cancelled() => return Ok(()),
        };
        tracing::info!(worker = %ctx.settings.id, concurrency = ctx.settings.concurrency, "worker consuming");
        let hand_back = CancellationToken::new();
        let mut running: JoinSet<Settled> = JoinSet::new();
        let mut failure = None;
        loop {
            // Keep at most `concurrency` jobs; the broker's prefetch bounds deliveries the same way.
            while running.len() >= ctx.settings.concurrency {
                tokio::select! {
                    done = running.join_next() => report(done, settled.as_ref()),
                    () = shutdown.cancelled() => break,
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            // A service the jobs need is down: take no job until it answers again. Jobs the broker
            // already pushed within the prefetch go back to the queue for a worker that can run
            // them; the jobs in flight keep running.
            let down = ctx.outage.down();
            if !down.is_empty() {
                let names: Vec<&str> = down.iter().map(|d| d.as_str()).collect();
                tracing::warn!(services = ?names, "pausing: taking no job until the services answer");
                match consumer.pause().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "jobs sent ahead to this worker went back to the queue"),
                    Err(e) => tracing::warn!(error = %e, "giving back the jobs sent ahead failed; they wait here"),
                }
                if !ctx.outage.wait_until_up(&ctx.objects, &ctx.store, &shutdown).await {
                    break;
                }
                tracing::info!("resuming: taking jobs again");
                continue;
            }
            tokio::select! {
                next = consumer.next() => match next {
                    Ok(delivery) => {
                        running.spawn(job::handle(ctx.clone(), delivery, hand_back.clone()));
                    }
                    Err(e @ QueueError::Unavailable { .. }) => {
                        tracing::error!(error = %e, "the queue stayed unreachable; stopping");
                        failure = Some(e);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "receiving a job failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                done = running.join_next(), if !running.is_empty() => report(done, settled.as_ref()),
                () = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = consumer.cancel().await {
            tracing::warn!(error = %e, "cancelling the consumer failed; unsettled deliveries return when the channel closes");
        }
        if !running.is_empty() {
            tracing::info!(jobs = running.len(), grace_s = ctx.settings.grace.as_secs(), "draining jobs in flight");
            let drained = tokio::time::timeout(ctx.settings.grace, async {
                while let Some(done) = running.join_next().await {
                    report(Some(done), settled.as_ref());
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(jobs = running.len(), "grace period over: handing jobs back");
                hand_back.cancel();
                while let Some(done) = running.join_next().await {
                    report(Some(done), settled.as_ref());
                }
            }
        }
        drop(consumer);
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn report(
    done: Option<Result<Settled, tokio::task::JoinError>>,
    settled: Option<&tokio::sync::mpsc::UnboundedSender<Settled>>,
) {
    match done {
        Some(Ok(s)) => {
            if let Some(tx) = settled {
                let _ = tx.send(s);
            }
        }
        Some(Err(e)) => tracing::error!(error = %e, "a job task ended abnormally"),
        None => {}
    }
}

/// `neurobatch_model_info` for each loaded model and
/// `neurobatch_execution_provider_info` for each provider its sessions got.
pub fn record_models(metrics: &Metrics, models: &Models) {
    for runner in std::iter::once(&models.segmentation).chain(models.quality.as_ref()) {
        let loaded = runner.model();
        let manifest = loaded.manifest();
        metrics.model_loaded(&manifest.name, &manifest.version);
        for member in loaded.members() {
            metrics.execution_provider(&member.model().provider().to_string());
        }
    }
}
