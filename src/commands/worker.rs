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
    daemon::runtime()?.block_on(async {
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
    })
}
