//! `neurobatch backfill <folder-or-prefix>`: submits every study under a
//! local folder (each NIfTI file and each first-level folder) or an
//! `s3://bucket/prefix` (each first-level "folder" and NIfTI object) through
//! the scheduler's ingest, with a progress bar, then publishes what the
//! nightly window allows (a running scheduler publishes the rest).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use neurobatch_core::domain::Priority;
use neurobatch_core::storage::{ObjectStore, S3Settings};
use scheduler::Submission;

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A local folder, or `s3://bucket/prefix`.
    pub source: String,
    /// `routine` (waits for the nightly window) or `stat`.
    #[arg(long, default_value = "routine", value_parser = ["routine", "stat"])]
    pub priority: String,
    /// Process again even studies that already have a job for this model version.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let spec = daemon::pipeline_spec(&config)?;
    let priority = if args.priority == "stat" { Priority::Stat } else { Priority::Routine };
    daemon::runtime()?.block_on(async {
        let backends = Backends::connect(&config, "backfill").await?;
        let scheduler = daemon::scheduler(&config, &backends, spec).await?;
        // Only a configured source is listed at all (scheduler.allowed_roots, …).
        scheduler.check_source(&args.source).await?;
        let sources = list_sources(&args.source, &S3Settings::from_config(&config.storage)).await?;
        let bar = ProgressBar::new(sources.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut new, mut existing, mut ineligible, mut errors) = (0, 0, 0, 0);
        for source in &sources {
            bar.set_message(short(source));
            match scheduler.submit(source, priority, args.force).await {
                Ok(Submission::Enqueued { .. }) => new += 1,
                Ok(Submission::Existing { .. }) => existing += 1,
                Ok(Submission::Ineligible { reason, .. }) => {
                    ineligible += 1;
                    bar.println(format!("{source}: not eligible: {reason}"));
                }
                Ok(other) => bar.println(format!("{source}: {other:?}")),
                Err(e) => {
                    errors += 1;
                    bar.println(format!("{source}: {e}"));
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        // An in-process queue is this process's own: the running `serve` publishes from the outbox.
        let published = if config.queue.url.scheme() == "memory" {
            0
        } else {
            scheduler.dispatch_once(chrono::Local::now()).await?
        };
        backends.close().await;
        println!(
            "backfill {}: {} studies: {new} new jobs, {existing} already known, {ineligible} not eligible, \
             {errors} errors; {published} published now",
            args.source,
            sources.len()
        );
        anyhow::ensure!(errors == 0, "{errors} of {} studies could not be submitted", sources.len());
        Ok(())
    })
}

fn short(source: &str) -> String {
    source.rsplit('/').find(|s| !s.is_empty()).unwrap_or(source).to_string()
}

/// The studies under `source`, as sources `Scheduler::submit` takes.
async fn list_sources(source: &str, s3: &S3Settings) -> anyhow::Result<Vec<String>> {
    if source.starts_with("s3://") {
        let store = ObjectStore::from_url(source, s3).await?;
        let keys = store.list("").await.with_context(|| format!("listing {source}"))?;
        let base = source.trim_end_matches('/');
        let studies: BTreeSet<String> = keys
            .iter()
            .map(|k| match k.split_once('/') {
                Some((folder, _)) => format!("{base}/{folder}"),
                None => format!("{base}/{k}"),
            })
            .collect();
        return Ok(studies.into_iter().collect());
    }
    let dir = Path::new(source.strip_prefix("file://").unwrap_or(source));
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && (path.is_dir() || imaging::nifti::is_nifti_path(&path)) {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    Ok(out)
}
