//! `neurobatch serve`: the whole daemon in one process — scheduler, workers
//! and the status API — on the configured backends, which default to the
//! embedded ones (`memory://` queue, SQLite and files under `./data`, inbox
//! `./inbox`). The database holds job state, so stopping and starting again
//! loses nothing: queued jobs are published again and expired leases reaped.
//!
//! `--until-idle` exits once everything that arrived has been processed
//! (the README's first command uses it on the bundled samples).
//!
//! One metrics registry for the process: the worker records into the
//! scheduler's, and `/healthz`, `/readyz` (models included) and `/metrics`
//! answer on `scheduler.listen` (`worker.listen` is not used).

use std::sync::Arc;
use std::time::Duration;

use neurobatch_core::domain::JobState;
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;
use super::daemon::{self, Backends};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Exit once the inbox has been scanned and no job is queued or running.
    #[arg(long)]
    pub until_idle: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let spec = daemon::pipeline_spec(&config)?;
    let models = Arc::new(daemon::load_models(&config)?);
    let runtime = daemon::runtime()?;
    let result = runtime.block_on(async {
        let shutdown = daemon::shutdown_on_signals()?;
        daemon::ensure_dir(&config.scheduler.inbox)?;
        let backends = Backends::connect(&config, "serve").await?;
        let scheduler = daemon::scheduler(&config, &backends, spec).await?;
        let health = scheduler.health().clone();
        health.expect_models();
        let worker = daemon::worker(&config, &backends, models, daemon::worker_id(None), scheduler.metrics().clone())?;
        health.models_loaded();
        crate::telemetry::status(&format!(
            "serve: watching {} (ready after {} s quiet); database {}; results in {}; status on http://{}/v1/studies",
            config.scheduler.inbox.display(),
            config.scheduler.quiet_period_secs,
            config.database.url,
            config.storage.url,
            config.scheduler.listen,
        ));
        let sched_task = tokio::spawn({
            let s = scheduler.clone();
            let t = shutdown.clone();
            async move { s.run(t).await }
        });
        let worker_task = tokio::spawn({
            let t = shutdown.clone();
            async move { worker.run(t, None).await }
        });
        if args.until_idle {
            wait_until_idle(&scheduler, &backends, &config, &shutdown).await?;
            shutdown.cancel();
        }
        let sched = sched_task.await;
        let work = worker_task.await;
        print_summary(&backends).await;
        backends.close().await;
        sched??;
        work??;
        Ok(())
    });
    // Inference still running on a blocking thread (a job handed back) must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Waits for the inbox's entries to become ready and be ingested, then for
/// every job to be final (or held back by the nightly window).
async fn wait_until_idle(
    scheduler: &scheduler::Scheduler,
    backends: &Backends,
    config: &neurobatch_core::config::Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Entries copied in just before start become ready after the quiet period.
    tokio::select! {
        () = tokio::time::sleep(config.scheduler.quiet_period() + Duration::from_millis(500)) => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    scheduler.scan_inbox_once().await?;
    loop {
        let counts = backends.store.count_by_state().await?;
        let open: i64 =
            counts.iter().filter(|(s, _)| matches!(s, JobState::Queued | JobState::Running)).map(|(_, n)| n).sum();
        if open == 0 {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// One line per study (state, decision, where its results are), then the job counts.
async fn print_summary(backends: &Backends) {
    let studies = match backends.store.list_studies(1000, 0).await {
        Ok(s) => s,
        Err(e) => return crate::telemetry::status(&format!("serve: cannot list studies: {e}")),
    };
    let mut review = 0;
    for summary in &studies {
        let short: String = summary.study_key.chars().take(16).collect();
        if let Some(reason) = &summary.ineligible_reason {
            println!("study {short}: not eligible: {reason}");
            continue;
        }
        let Ok(Some(detail)) = backends.store.study(summary.id).await else { continue };
        let Some(latest) = detail.jobs.last() else { continue };
        let job = &latest.job;
        match &latest.result {
            Some(result) => {
                if result.review_state.is_some() {
                    review += 1;
                }
                let folder = result
                    .object_keys
                    .get("report")
                    .and_then(|k| k.rsplit_once('/'))
                    .map_or(String::new(), |(dir, _)| backends.objects.url_of(dir));
                println!("study {short}: {} {}, results in {folder}", job.state.as_str(), result.decision.as_str());
            }
            None => println!(
                "study {short}: {}{}",
                job.state.as_str(),
                job.last_error.as_deref().map_or(String::new(), |e| format!(": {e}"))
            ),
        }
    }
    match backends.store.count_by_state().await {
        Ok(counts) => {
            let text: Vec<String> = counts.iter().map(|(s, n)| format!("{} {n}", s.as_str())).collect();
            println!(
                "serve: {} studies; jobs: {}; {review} cases routed to the review queue",
                studies.len(),
                if text.is_empty() { "none".into() } else { text.join(", ") }
            );
        }
        Err(e) => crate::telemetry::status(&format!("serve: cannot count jobs: {e}")),
    }
}
