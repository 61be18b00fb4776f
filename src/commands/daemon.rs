//! What the daemon's roles (`serve`, `scheduler`, `worker`, `backfill`)
//! share: connecting the job store (migrated), the queue and the object
//! store from the configuration; the pipeline's model folders, the models
//! loaded for workers (on `pipeline.providers`) and the spec the scheduler
//! keys jobs with; worker names; and the shutdown signal (SIGTERM or Ctrl-C).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use neurobatch_core::config::Config;
use neurobatch_core::db::JobStore;
use neurobatch_core::metrics::Metrics;
use neurobatch_core::queue::Queue;
use neurobatch_core::storage::{ObjectStore, S3Settings};
use scheduler::PipelineSpec;
use tokio_util::sync::CancellationToken;
use worker::daemon::{Context as WorkerContext, Models, Worker, WorkerSettings};
use worker::manifest::{MANIFEST_FILE, parse_manifest};
use worker::pipeline::ProfileChoice;
use worker::runtime::{Provider, RuntimeConfig};

use super::process;

/// The job store, queue and object store of one process.
pub struct Backends {
    pub store: JobStore,
    pub queue: Queue,
    pub objects: ObjectStore,
}

impl Backends {
    /// Connects all three (the store migrated: every role may start first).
    pub async fn connect(config: &Config, role: &str) -> anyhow::Result<Backends> {
        let store = JobStore::connect_config(&config.database)
            .await
            .with_context(|| format!("job store {}", config.database.url))?;
        store.migrate().await.with_context(|| format!("migrating {}", config.database.url))?;
        let name = format!("{}:{role}@{}", config.queue.prefix, host_name());
        let queue = Queue::connect(config.queue.url.expose(), config.queue.options(&config.worker, &name))
            .await
            .with_context(|| format!("job queue {}", config.queue.url))?;
        let objects = ObjectStore::from_config(&config.storage)
            .await
            .with_context(|| format!("object storage {}", config.storage.url))?;
        Ok(Backends { store, queue, objects })
    }

    pub async fn close(self) {
        if let Err(e) = self.queue.close().await {
            tracing::warn!(error = %e, "closing the queue");
        }
        self.store.close().await;
    }
}

/// The scheduler over `backends`, keying jobs with `spec`.
pub async fn scheduler(
    config: &Config,
    backends: &Backends,
    spec: PipelineSpec,
) -> anyhow::Result<scheduler::Scheduler> {
    let objects = backends.objects.clone();
    Ok(scheduler::Scheduler::new(config, backends.store.clone(), backends.queue.clone(), objects, spec).await?)
}

/// A model folder of the pipeline: `[pipeline] models_dir/<name>`, or the
/// shipped models found as `neurobatch process` finds them.
pub fn model_dir(config: &Config, name: &str) -> anyhow::Result<PathBuf> {
    if config.pipeline.models_dir.as_os_str().is_empty() {
        process::default_model(name)
    } else {
        let dir = config.pipeline.models_dir.join(name);
        anyhow::ensure!(
            worker::pipeline::is_model_folder(&dir),
            "pipeline model `{name}`: {} is not a model folder (no {MANIFEST_FILE})",
            dir.display()
        );
        Ok(dir)
    }
}

/// What the scheduler keys jobs with: the pipeline, the model's name and
/// version and the harmonizer version (read from the manifest; no model is loaded).
pub fn pipeline_spec(config: &Config) -> anyhow::Result<PipelineSpec> {
    let dir = model_dir(config, &config.pipeline.model)?;
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_manifest(&text, &path)?.pipeline_spec(&config.pipeline.name))
}

/// The pipeline's models, loaded once (ONNX Runtime sessions).
pub fn load_models(config: &Config) -> anyhow::Result<Models> {
    let p = &config.pipeline;
    let runtime = RuntimeConfig {
        dylib_path: None,
        intra_op_threads: usize::try_from(p.threads).unwrap_or(0),
        lanes: usize::try_from(p.lanes).unwrap_or(0),
        providers: providers(&p.providers)?,
    };
    let choice = ProfileChoice {
        name: (!p.profile.is_empty()).then(|| p.profile.clone()),
        members: (p.members > 0).then(|| usize::try_from(p.members).unwrap_or(usize::MAX)),
        ..ProfileChoice::default()
    };
    let segmentation = process::load(&model_dir(config, &p.model)?, &runtime, &choice, 0)?;
    let quality = if p.quality_model.is_empty() {
        None
    } else {
        Some(process::load(&model_dir(config, &p.quality_model)?, &runtime, &ProfileChoice::default(), 1)?)
    };
    Ok(Models { segmentation, quality })
}

/// `pipeline.providers` as ONNX Runtime execution providers, in order.
pub fn providers(names: &[String]) -> anyhow::Result<Vec<Provider>> {
    names.iter().map(|p| p.parse::<Provider>().map_err(|e| anyhow::anyhow!("pipeline.providers: {e}"))).collect()
}

/// A worker over `backends` with the loaded `models`, recording into
/// `metrics`, working in a scratch folder of its own (after removing those
/// that killed workers left behind).
pub fn worker(
    config: &Config,
    backends: &Backends,
    models: Arc<Models>,
    id: String,
    metrics: Metrics,
) -> anyhow::Result<Worker> {
    let (scratch, swept) = neurobatch_core::scratch::Scratch::open(None, "neurobatch-worker")
        .map_err(|e| anyhow::anyhow!("no scratch folder in {}: {e}", std::env::temp_dir().display()))?;
    if swept.folders > 0 {
        tracing::info!(folders = swept.folders, bytes = swept.bytes, "removed the scratch of workers that died");
    }
    Ok(Worker::new(WorkerContext {
        settings: WorkerSettings::from_config(&config.worker, id),
        store: backends.store.clone(),
        queue: backends.queue.clone(),
        objects: backends.objects.clone(),
        s3: S3Settings::from_config(&config.storage),
        study_limits: neurobatch_core::storage::StudyLimits::from_config(&config.storage),
        models,
        metrics,
        outage: worker::daemon::Outage::default(),
        scratch,
    }))
}

/// `host:pid:start`, or `host:pid:start:n` for the n-th worker of one
/// process; `start` (the start time in milliseconds, hex) tells apart two
/// lives of a container that restarted in the same pod with the same pid,
/// so the reaper counts each vanished worker once (`core::db::LeasePolicy`).
pub fn worker_id(n: Option<usize>) -> String {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
    });
    let base = format!("{}:{}:{start:x}", host_name(), std::process::id());
    match n {
        Some(n) => format!("{base}:{n}"),
        None => base,
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Cancelled on SIGTERM or Ctrl-C (SIGINT).
pub fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        t.cancel();
    });
    Ok(token)
}

/// A multi-threaded runtime for the daemon's roles.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Creates `dir` when missing (the embedded mode's inbox and data folders).
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
