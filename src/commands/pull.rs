//! `neurobatch pull --since <date> [--until <date>]`: pulls the studies of
//! those dates from the PACS's DICOMweb service (`[pacs] url`) into the
//! inbox — what the scheduler does at the start of each nightly window — and
//! prints what it did. Series pulled before with as many instances are not
//! fetched again. A running scheduler (or `serve`) stages them from the inbox.

use chrono::NaiveDate;

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first study date, YYYY-MM-DD.
    #[arg(long)]
    pub since: NaiveDate,
    /// The last study date, YYYY-MM-DD (default: today).
    #[arg(long)]
    pub until: Option<NaiveDate>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let spec = daemon::pipeline_spec(&config)?;
    let until = args.until.unwrap_or_else(|| chrono::Local::now().date_naive());
    anyhow::ensure!(args.since <= until, "--since {} is after --until {until}", args.since);
    daemon::runtime()?.block_on(async {
        let backends = Backends::connect(&config, "pull").await?;
        let scheduler = daemon::scheduler(&config, &backends, spec).await?;
        let report = scheduler.pull_once(args.since, until).await;
        backends.close().await;
        let r = report?;
        println!(
            "pull {}..{until}: {} series found, {} chosen, {} already pulled, {} pulled: {} instances into the inbox, {} refused",
            args.since, r.series_found, r.series_chosen, r.series_known, r.series_pulled, r.instances, r.refused
        );
        Ok(())
    })
}
