//! The scheduler (issue 4): finds studies (inbox folder, S3 prefix, HTTP),
//! selects their series, records idempotent jobs in the job store, publishes
//! them to the queue (stat at once, routine inside the nightly window), and
//! returns jobs whose worker died to the queue. docs/scheduler.md describes
//! the rules; docs/daemon.md the job store underneath.
//!
//! One stage per module: `confine` (which sources may be read), `source`
//! (where a study is), `stage` (what it is, its series and snapshot),
//! `select` (the series rules), `submit` (key, versions, snapshot copy,
//! enqueue), `inbox`, `s3poll` and `pull` (finding studies: the inbox, an S3
//! prefix, the PACS's DICOMweb), `dicom` (receiving DICOM by
//! C-STORE; STOW-RS is a route of `api`), `send` (results back to the PACS by
//! C-STORE, through a durable outbox), `dispatch` (outbox, reaper, dead jobs
//! to the DLQ), `correction` (checking a corrected mask), `api` (the HTTP
//! API, its own folder). This file holds the
//! [`Scheduler`] handle and its loops.

mod api;
mod confine;
mod corrected_seg;
mod correction;
mod dicom;
mod dispatch;
mod error;
pub mod export;
mod inbox;
mod observe;
mod pull;
mod s3poll;
pub mod select;
mod send;
mod source;
mod stage;
mod submit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neurobatch_core::config::{Config, NightlyWindow};
use neurobatch_core::db::JobStore;
use neurobatch_core::domain::Priority;
use neurobatch_core::queue::Queue;
use neurobatch_core::storage::{ObjectStore, S3Settings};
use tokio_util::sync::CancellationToken;

pub use api::{ApiDoc, Caller, new_token, token_sha256};
pub use error::SchedulerError;
pub use neurobatch_core::db::Reaped;
pub use pull::PullReport;
pub use send::SendReport;
pub use submit::Submission;

/// What every job runs and the labels it segments (defined in core: the worker
/// builds it from the model manifest).
pub use neurobatch_core::domain::{PipelineLabel, PipelineSpec};

/// The scheduler; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// Corrected masks validated at the same time; more wait their turn.
const CONCURRENT_CORRECTIONS: usize = 2;

struct Inner {
    config: Config,
    store: JobStore,
    queue: Queue,
    objects: ObjectStore,
    s3: S3Settings,
    confinement: confine::Confinement,
    /// Where S3 studies are downloaded for staging.
    scratch: neurobatch_core::scratch::Scratch,
    pipeline: PipelineSpec,
    rules: select::Rules,
    window: Option<NightlyWindow>,
    inbox_seen: Mutex<HashMap<PathBuf, inbox::Cheap>>,
    /// Inbox entries recorded as ineligible, with what they looked like then.
    inbox_refused: Mutex<HashMap<PathBuf, String>>,
    s3_seen: Mutex<HashMap<String, s3poll::Tracked>>,
    pull_state: Mutex<pull::PullState>,
    health: neurobatch_core::health::Health,
    /// Corrected masks decoded at once: each costs its study's grid in memory.
    corrections: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("pipeline", &self.inner.pipeline).field("queue", &self.inner.queue).finish()
    }
}

impl Scheduler {
    /// Checks the selection rules and the nightly window. With a `memory://`
    /// queue (embedded mode) every queued job is marked unpublished, because a
    /// restart lost the queue's messages and the outbox must send them again.
    pub async fn new(
        config: &Config,
        store: JobStore,
        queue: Queue,
        objects: ObjectStore,
        pipeline: PipelineSpec,
    ) -> Result<Scheduler, SchedulerError> {
        let rules = select::Rules::new(&config.pipeline)?;
        let window = config
            .scheduler
            .window()
            .map_err(|reason| SchedulerError::Config { key: "scheduler.nightly_window", reason })?;
        if config.scheduler.poll_interval_secs == 0 {
            return Err(SchedulerError::Config {
                key: "scheduler.poll_interval_secs",
                reason: "must be at least 1".into(),
            });
        }
        let confinement = confine::Confinement::from_config(config, &objects)?;
        // S3 studies are staged in it; a scheduler killed mid-download left its folder, removed here.
        let (scratch, swept) = neurobatch_core::scratch::Scratch::open(None, "neurobatch-scheduler").map_err(|e| {
            SchedulerError::Scratch { dir: std::env::temp_dir().display().to_string(), reason: e.to_string() }
        })?;
        if swept.folders > 0 {
            tracing::info!(folders = swept.folders, bytes = swept.bytes, "removed the scratch of schedulers that died");
        }
        if matches!(queue, Queue::Memory(_)) {
            let n = store.republish_queued().await?;
            if n > 0 {
                tracing::info!(jobs = n, "memory queue: queued jobs marked for publishing again");
            }
        }
        Ok(Scheduler {
            inner: Arc::new(Inner {
                s3: S3Settings::from_config(&config.storage),
                confinement,
                scratch,
                health: observe::health_over(&store, &queue, &objects),
                config: config.clone(),
                store,
                queue,
                objects,
                pipeline,
                rules,
                window,
                inbox_seen: Mutex::new(HashMap::new()),
                inbox_refused: Mutex::new(HashMap::new()),
                s3_seen: Mutex::new(HashMap::new()),
                pull_state: Mutex::new(pull::PullState::default()),
                corrections: tokio::sync::Semaphore::new(CONCURRENT_CORRECTIONS),
            }),
        })
    }

    /// Ingests one source now: a local path (a NIfTI file or a DICOM folder),
    /// `file:///abs/path`, or `s3://bucket/prefix` (a study folder). `force`
    /// records a new version even when the study's job exists.
    pub async fn submit(&self, source: &str, priority: Priority, force: bool) -> Result<Submission, SchedulerError> {
        self.stage(source, priority, force, submit::Versioning::BySnapshot).await
    }

    /// Whether `source` (a path, `file://` or `s3://` URI) lies inside the
    /// configured sources — what [`submit`](Self::submit) checks first; for a
    /// caller that lists a place before submitting what is under it (`backfill`).
    pub async fn check_source(&self, source: &str) -> Result<(), SchedulerError> {
        source::check(source.trim(), &self.inner.confinement).await
    }

    /// Serves the DICOM Storage SCP (`[dicom]`) on `listener` until
    /// `shutdown`: received studies land in the inbox, one folder per study
    /// (docs/dicom.md). An error when `dicom.listen` is empty.
    pub async fn serve_dicom(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), SchedulerError> {
        let node = dicom::Node::from_config(&self.inner.config)?
            .ok_or(SchedulerError::Config { key: "dicom.listen", reason: "empty: the DICOM node is off".into() })?;
        node.serve(listener, shutdown).await
    }

    /// Runs every loop until `shutdown` is cancelled: inbox scan, S3 prefix
    /// poll (when configured), dispatch and reaper, each every
    /// `poll_interval`, and the HTTP API on `scheduler.listen`. A pass that
    /// fails is logged and the loop goes on. Ok after a clean shutdown; an
    /// error when the API cannot listen or a loop task dies.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        let addr = self.inner.config.scheduler.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| SchedulerError::Http { addr: addr.clone(), reason: e.to_string() })?;
        let shown = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!(addr = %shown, "scheduler http api listening");
        let token = shutdown.child_token();
        let interval = self.inner.config.scheduler.poll_interval();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(serve_metrics) = self.bind_metrics_listener(token.clone()).await? {
            tasks.spawn(serve_metrics);
        }
        if let Some((node, dicom_listener)) = dicom::bind(&self.inner.config).await? {
            let t = token.clone();
            tasks.spawn(async move { node.serve(dicom_listener, t).await });
        }
        let s = self.clone();
        tasks.spawn(every("inbox", token.clone(), interval, move || {
            let s = s.clone();
            async move { s.scan_inbox_once().await.map(drop) }
        }));
        if !self.inner.config.scheduler.s3_prefix.trim_matches('/').is_empty() {
            let s = self.clone();
            tasks.spawn(every("s3 poll", token.clone(), interval, move || {
                let s = s.clone();
                async move { s.poll_s3_once().await.map(drop) }
            }));
        }
        if !self.inner.config.pacs.url.expose().is_empty() {
            let s = self.clone();
            tasks.spawn(every("pacs pull", token.clone(), interval, move || {
                let s = s.clone();
                async move { s.pull_nightly_once(chrono::Local::now()).await.map(drop) }
            }));
        }
        if !self.send_destinations()?.is_empty() {
            let s = self.clone();
            tasks.spawn(every("dicom send", token.clone(), interval, move || {
                let s = s.clone();
                async move {
                    s.queue_dicom_sends_once(chrono::Utc::now()).await?;
                    s.send_dicom_once(chrono::Utc::now()).await.map(drop)
                }
            }));
        }
        let s = self.clone();
        tasks.spawn(every("dispatch", token.clone(), interval, move || {
            let s = s.clone();
            async move { s.dispatch_once(chrono::Local::now()).await.map(drop) }
        }));
        let s = self.clone();
        let grace = Arc::new(Mutex::new(dispatch::ReaperGrace::new(self.inner.config.worker.lease())));
        tasks.spawn(every("reaper", token.clone(), interval, move || {
            let (s, grace) = (s.clone(), grace.clone());
            async move { s.reap_pass(&grace).await }
        }));
        let s = self.clone();
        tasks.spawn(every("metrics", token.clone(), interval, move || {
            let s = s.clone();
            async move { s.record_gauges_once().await }
        }));
        let s = self.clone();
        let http_token = token.clone();
        tasks.spawn(async move { s.serve_http(listener, http_token).await });
        let mut outcome = Ok(());
        while let Some(done) = tasks.join_next().await {
            let result = done.map_err(|e| SchedulerError::Task { what: "loop", reason: e.to_string() }).and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "scheduler stopping");
                token.cancel();
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            } else if !token.is_cancelled() {
                // A task only ends on its own when it failed or shutdown began.
                token.cancel();
            }
        }
        outcome
    }
}

/// Runs `pass` every `interval` until `token` is cancelled; a failed pass is logged.
async fn every<F, Fut>(
    what: &'static str,
    token: CancellationToken,
    interval: Duration,
    mut pass: F,
) -> Result<(), SchedulerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SchedulerError>>,
{
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = pass() => if let Err(e) = r {
                tracing::warn!(loop_name = what, error = %e, "scheduler pass failed");
            },
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
