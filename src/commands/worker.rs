//! `neurobatch worker`: one worker process (a pod in production). Serves
//! `/healthz`, `/readyz` and `/metrics` on `worker.listen` from the start,
//! loads the pipeline's models once (ready only after), consumes jobs until
//! SIGTERM, drains within the grace period and exits 0.

use std::sync::Arc;

use anyhow::Context as _;
use neurobatch_core::health::Health;
use neurobatch_core::metrics::Metrics;

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = daemon::runtime()?;
    let result = runtime.block_on(async {
        let shutdown = daemon::shutdown_on_signals()?;
        let metrics = Metrics::new();
        let health = Health::new(metrics.clone());
        health.expect_models();
        // The listener first: the kubelet sees the process alive while the models load.
        let listener = worker::daemon::listen::start(&config.worker.listen, health.clone(), shutdown.clone()).await?;
        // Models before connecting: a broken model folder fails the pod at once.
        let load = config.clone();
        let models = tokio::task::spawn_blocking(move || daemon::load_models(&load))
            .await
            .context("loading the models: the task ended abnormally")??;
        health.models_loaded();
        let backends = Backends::connect(&config, "worker").await?;
        health.attach(backends.store.clone(), backends.queue.clone(), backends.objects.clone());
        let worker = daemon::worker(&config, &backends, Arc::new(models), daemon::worker_id(None), metrics)?;
        tracing::info!(worker = worker.id(), queue = %config.queue.url, "worker started");
        crate::telemetry::status(&format!("worker {}: consuming from {}", worker.id(), config.queue.url));
        let result = worker.run(shutdown.clone(), None).await;
        // A worker that stopped on its own (the queue stayed away) takes its listener down too.
        shutdown.cancel();
        if let Some(task) = listener {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the health listener failed"),
                Err(e) => tracing::warn!(error = %e, "the health listener task ended abnormally"),
            }
        }
        backends.close().await;
        result?;
        crate::telemetry::status("worker: stopped");
        Ok(())
    });
    // Inference still running on a blocking thread (a job handed back) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
