//! `neurobatch worker`: one worker process (a pod in production). Loads the
//! pipeline's models once, consumes jobs until SIGTERM, drains within the
//! grace period and exits 0.

use std::sync::Arc;

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    // Models before connecting: a broken model folder fails the pod at once.
    let models = Arc::new(daemon::load_models(&config)?);
    let runtime = daemon::runtime()?;
    let result = runtime.block_on(async {
        let shutdown = daemon::shutdown_on_signals()?;
        let backends = Backends::connect(&config, "worker").await?;
        let worker = daemon::worker(&config, &backends, models, daemon::worker_id(None));
        tracing::info!(worker = worker.id(), queue = %config.queue.url, "worker started");
        eprintln!("worker {}: consuming from {}", worker.id(), config.queue.url);
        let result = worker.run(shutdown, None).await;
        backends.close().await;
        result?;
        eprintln!("worker: stopped");
        Ok(())
    });
    // Inference still running on a blocking thread (a job handed back) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
