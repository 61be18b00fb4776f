//! `neurobatch migrate`: applies the job store's migrations to the database
//! of the configuration (`[database] url`, `NEUROBATCH__DATABASE__URL`).
//! Safe to run while other processes migrate or run (PostgreSQL advisory
//! lock); running it again is a no-op.

use anyhow::Context;
use neurobatch_core::db::JobStore;

use super::ConfigArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let url = config.database.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let store = JobStore::connect_config(&config.database).await?;
        store.migrate().await?;
        let versions = store.applied_migrations().await?;
        store.close().await;
        tracing::info!(database = %url, ?versions, "migrated");
        let latest = versions.last().map_or("none".to_string(), |v| v.to_string());
        println!("{url}: schema up to date ({} migrations, latest {latest})", versions.len());
        Ok(())
    })
}
