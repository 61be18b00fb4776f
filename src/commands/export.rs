//! `neurobatch export-dataset --since <date> <dir>`: approved and corrected
//! review cases as an nnU-Net v2 raw dataset (`scheduler::export`).

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cases decided on or after this date (`YYYY-MM-DD`, UTC) or time (RFC 3339).
    #[arg(long)]
    pub since: String,
    /// The dataset folder (created; must be empty if it exists).
    pub dir: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
}

fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("--since `{text}`: expected YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let since = parse_since(&args.since)?;
    let spec = daemon::pipeline_spec(&config)?;
    daemon::runtime()?.block_on(async {
        let backends = Backends::connect(&config, "export").await?;
        let result = scheduler::export::export_dataset(&backends.store, &backends.objects, &spec, since, &args.dir).await;
        backends.close().await;
        let summary = result?;
        println!(
            "export-dataset: {} cases ({} corrected) since {} → {} (imagesTr/, labelsTr/, dataset.json, provenance.json)",
            summary.cases,
            summary.corrected,
            since.to_rfc3339(),
            summary.dir.display()
        );
        Ok(())
    })
}
