//! `neurobatch scheduler`: ingest (inbox, S3 prefix, HTTP), dispatch within
//! the nightly window, reaper and outbox, the status API with `/healthz`,
//! `/readyz` and `/metrics` — until SIGTERM.

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let spec = daemon::pipeline_spec(&config)?;
    daemon::runtime()?.block_on(async {
        let shutdown = daemon::shutdown_on_signals()?;
        daemon::ensure_dir(&config.scheduler.inbox)?;
        let backends = Backends::connect(&config, "scheduler").await?;
        let scheduler = daemon::scheduler(&config, &backends, spec).await?;
        crate::telemetry::status(&format!(
            "scheduler: watching {}, API on http://{}/v1/studies (health on /healthz, /readyz, metrics on /metrics)",
            config.scheduler.inbox.display(),
            config.scheduler.listen
        ));
        let result = scheduler.run(shutdown).await;
        backends.close().await;
        Ok(result?)
    })
}
