//! One delivery, from claim to settlement: claim the job in the store (the
//! store decides who runs it), keep its lease alive while it runs, bound it
//! by the job timeout, then commit the results in one transaction and ack —
//! or record the failure and retry / dead-letter the message, or hand the
//! job back on shutdown. The message is settled only after the store knows
//! the outcome, so a crash at any point repeats work, never loses it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use neurobatch_core::db::{Completion, FailOutcome, Job};
use neurobatch_core::domain::JobState;
use neurobatch_core::metrics::Stage;
use neurobatch_core::queue::Delivery;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::Dependency;
use super::study::{StudyOutput, run_study};
use super::{Context, JobError, outage, results};

/// How a delivery ended, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Succeeded {
        job_id: i64,
        review: bool,
    },
    /// The job was already final, or another live worker holds it: acked, nothing run.
    Duplicate {
        job_id: i64,
        state: JobState,
    },
    Retrying {
        job_id: i64,
        error: String,
    },
    Failed {
        job_id: i64,
        error: String,
    },
    Dead {
        job_id: i64,
        error: String,
    },
    /// Shutdown before it finished: released in the store and requeued.
    HandedBack {
        job_id: i64,
    },
    /// A service the job needs was down (and still was when probed): handed
    /// back without spending an attempt; the worker pauses until it answers.
    Deferred {
        job_id: i64,
        error: String,
    },
    /// The lease was lost while running (another worker took over): acked.
    LeaseLost {
        job_id: i64,
    },
    /// The store or the queue could not be reached to settle it; the message
    /// returns to the queue and the lease (if any) expires.
    Unsettled {
        job_id: i64,
        error: String,
    },
}

impl Settled {
    /// The `state` and `outcome` labels of `neurobatch_jobs_total`: the state
    /// the job reached (`unknown` when the store could not be told) and how.
    pub fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Settled::Succeeded { review: true, .. } => ("succeeded", "review"),
            Settled::Succeeded { review: false, .. } => ("succeeded", "accept"),
            Settled::Duplicate { state, .. } => (state.as_str(), "duplicate"),
            Settled::Retrying { .. } => ("queued", "retry"),
            Settled::Failed { .. } => ("failed", "permanent"),
            Settled::Dead { .. } => ("dead", "exhausted"),
            Settled::HandedBack { .. } => ("queued", "handed_back"),
            Settled::Deferred { .. } => ("queued", "deferred"),
            Settled::LeaseLost { .. } => ("running", "lease_lost"),
            Settled::Unsettled { .. } => ("unknown", "unsettled"),
        }
    }
}

/// Runs one delivery to its end. `hand_back` is cancelled when the grace
/// period after SIGTERM is over. Every end is counted in `neurobatch_jobs_total`.
pub async fn handle(ctx: Arc<Context>, delivery: Delivery, hand_back: CancellationToken) -> Settled {
    let metrics = ctx.metrics.clone();
    let settled = settle(ctx, delivery, hand_back).await;
    let (state, outcome) = settled.labels();
    metrics.job_settled(state, outcome);
    settled
}

async fn settle(ctx: Arc<Context>, delivery: Delivery, hand_back: CancellationToken) -> Settled {
    let id = delivery.message().job_id;
    let claim = ctx.store.claim(id, &ctx.settings.id, ctx.settings.lease, Utc::now()).await;
    let claimed = match claim {
        Ok(Some(c)) => c,
        Ok(None) => return unclaimable(&ctx, delivery, id).await,
        Err(e) => {
            // The store is unreachable: give the message back after a pause, so a
            // store outage does not spin the queue.
            tracing::warn!(job_id = id, error = %e, "cannot claim the job; returning it to the queue");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = delivery.requeue().await;
            return Settled::Unsettled { job_id: id, error: e.to_string() };
        }
    };
    let job = claimed.job;
    let span = tracing::info_span!("job", job_id = job.id, study_id = job.study_id, attempt = job.attempts);
    run_claimed(ctx, delivery, job, hand_back).instrument(span).await
}

async fn run_claimed(ctx: Arc<Context>, delivery: Delivery, job: Job, hand_back: CancellationToken) -> Settled {
    tracing::info!(source = %job.source_uri, "job claimed");

    let lease_lost = CancellationToken::new();
    let renewer = tokio::spawn(renew_lease(ctx.clone(), job.id, lease_lost.clone()));
    let work = async {
        // A job keyed for another model version must not get this model's results under its key.
        let loaded = &ctx.models.segmentation.model().manifest().version;
        if &job.model_version != loaded {
            return Err(JobError::permanent(format!(
                "job {} is for model version {}, this worker runs {loaded}: run it on a worker with that \
                 version, or resubmit the study with --force for this one",
                job.id, job.model_version
            )));
        }
        let study_key = match ctx.store.study(job.study_id).await {
            Ok(Some(detail)) => detail.study.study_key,
            Ok(None) => return Err(JobError::permanent(format!("job {}: its study row is missing", job.id))),
            Err(e) => return Err(JobError::db("reading the study", &e)),
        };
        run_study(&job, &study_key, ctx.models.clone(), &ctx.objects, &ctx.s3, ctx.study_limits, &ctx.scratch).await
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(ctx.settings.job_timeout, work) => match r {
            Ok(r) => Outcome::Done(r.map(Box::new)),
            Err(_) => Outcome::Done(Err(JobError::timed_out(
                &job.source_uri, ctx.settings.job_timeout, job.last_error.as_deref()
            ))),
        },
        _ = lease_lost.cancelled() => Outcome::LeaseLost,
        _ = hand_back.cancelled() => Outcome::HandBack,
    };
    renewer.abort();
    match outcome {
        Outcome::Done(Ok(output)) => commit(&ctx, delivery, &job, *output).await,
        Outcome::Done(Err(error)) => fail(&ctx, delivery, job.id, error).await,
        Outcome::LeaseLost => {
            tracing::warn!("lease lost while running; another worker has the job");
            let _ = delivery.ack().await;
            Settled::LeaseLost { job_id: job.id }
        }
        Outcome::HandBack => {
            match ctx.store.release(job.id, &ctx.settings.id, "worker shutting down", Utc::now()).await {
                Ok(_) => {
                    tracing::info!("shutting down: job handed back");
                    requeue_released(&ctx, delivery, job.id).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shutting down: could not release the job; its lease will expire");
                    let _ = delivery.requeue().await;
                }
            }
            Settled::HandedBack { job_id: job.id }
        }
    }
}

/// One `neurobatch_routed_total` count per reason of a case routed to review.
fn record_routing(ctx: &Context, output: &StudyOutput) {
    let report = &output.report;
    if report.routing.is_accept() {
        return;
    }
    let scanner = [&output.scanner.manufacturer, &output.scanner.model]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let scanner = if scanner.is_empty() { "unknown" } else { scanner.as_str() };
    for reason in report.routing.reasons() {
        ctx.metrics.routed(reason.code.as_str(), &report.model.name, scanner);
    }
}

enum Outcome {
    Done(Result<Box<StudyOutput>, JobError>),
    LeaseLost,
    HandBack,
}

/// Renews the lease every third of its length until aborted; cancels
/// `lost` when the store says this worker no longer holds the job.
async fn renew_lease(ctx: Arc<Context>, id: i64, lost: CancellationToken) {
    let every = ctx.settings.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match ctx.store.renew_lease(id, &ctx.settings.id, ctx.settings.lease, Utc::now()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                lost.cancel();
                return;
            }
            // A store outage: keep trying; if it outlasts the lease the reaper takes the job.
            Err(e) => tracing::warn!(job_id = id, error = %e, "lease renewal failed"),
        }
    }
}

async fn commit(ctx: &Context, delivery: Delivery, job: &Job, output: StudyOutput) -> Settled {
    let rows = results::job_results(&output);
    let review = rows.review.is_some();
    let started = std::time::Instant::now();
    let completion = ctx.store.complete(job.id, &ctx.settings.id, &rows, Utc::now()).await;
    for (stage, seconds) in &output.stages {
        ctx.metrics.observe_stage(*stage, *seconds);
    }
    ctx.metrics.observe_stage(Stage::Database, started.elapsed().as_secs_f64());
    match completion {
        Ok(Completion::Completed) => {
            record_routing(ctx, &output);
            if let Some(event) = results::review_event(job, &output.report) {
                // The review item is committed; the event is for other subscribers.
                if let Err(e) = ctx.queue.publish_review(&event).await {
                    tracing::warn!(error = %e, "review event not published (the review item is stored)");
                }
            }
            tracing::info!(decision = if review { "review" } else { "accept" }, "job succeeded");
            ack(delivery, Settled::Succeeded { job_id: job.id, review }).await
        }
        Ok(Completion::AlreadyCompleted) => {
            ack(delivery, Settled::Duplicate { job_id: job.id, state: JobState::Succeeded }).await
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "results not committed (store unreachable); the job will run again");
            let _ = delivery.requeue().await;
            Settled::Unsettled { job_id: job.id, error: e.to_string() }
        }
        Err(e) => fail(ctx, delivery, job.id, JobError::permanent(format!("committing the results: {e}"))).await,
    }
}

async fn fail(ctx: &Context, delivery: Delivery, id: i64, error: JobError) -> Settled {
    let text = error.message.clone();
    // Not the study's fault when the service is still down a moment later: no attempt spent.
    if let Some(dependency) = error.unavailable
        && let Err(probe) = outage::probe(dependency, &ctx.objects, &ctx.store).await
    {
        return defer(ctx, delivery, id, dependency, &text, &probe).await;
    }
    match ctx.store.fail(id, &ctx.settings.id, &text, error.transient, Utc::now()).await {
        Ok(FailOutcome::Retry { attempts, max_attempts }) => {
            tracing::warn!(error = %text, attempts, max_attempts, "job failed; retrying later");
            match delivery.retry(&text).await {
                Ok(_) => Settled::Retrying { job_id: id, error: text },
                Err(e) => Settled::Unsettled { job_id: id, error: e.to_string() },
            }
        }
        Ok(FailOutcome::Failed) => {
            tracing::warn!(error = %text, "job failed");
            dead_letter(delivery, &text, Settled::Failed { job_id: id, error: text.clone() }).await
        }
        Ok(FailOutcome::Dead) => {
            tracing::warn!(error = %text, "job dead: no attempts left");
            if let Err(e) = delivery.exhausted(&text).await {
                tracing::warn!(error = %e, "dead-lettering failed; the message will be redelivered and found settled");
            }
            Settled::Dead { job_id: id, error: text }
        }
        Ok(FailOutcome::NotHeld { state }) => ack(delivery, Settled::Duplicate { job_id: id, state }).await,
        Err(e) => {
            tracing::warn!(error = %e, job_error = %text, "failure not recorded (store unreachable); the job will run again");
            let _ = delivery.requeue().await;
            Settled::Unsettled { job_id: id, error: e.to_string() }
        }
    }
}

/// Hands a job back because `dependency` is down: its attempt is refunded in
/// the store, the message returns to the queue, and the breaker stops this
/// worker taking jobs until the service answers again.
async fn defer(
    ctx: &Context,
    delivery: Delivery,
    id: i64,
    dependency: Dependency,
    error: &str,
    probe: &str,
) -> Settled {
    ctx.outage.trip(dependency);
    let reason = format!("{} unavailable", dependency.as_str());
    tracing::warn!(
        error,
        probe,
        service = dependency.as_str(),
        "a service the job needs is down; handing the job back"
    );
    match ctx.store.release(id, &ctx.settings.id, &reason, Utc::now()).await {
        Ok(_) => {
            requeue_released(ctx, delivery, id).await;
            Settled::Deferred { job_id: id, error: error.to_string() }
        }
        // The job store is the one down: the lease expires and the reaper requeues the job.
        Err(e) => {
            let _ = delivery.requeue().await;
            Settled::Unsettled { job_id: id, error: e.to_string() }
        }
    }
}

/// Returns a released job's message to the queue and, once the broker took
/// it, marks the job published. A message that cannot go back (its channel
/// died mid-job: the broker redelivered it already, maybe to a worker that
/// acked it as a duplicate) leaves the job unpublished, and the outbox sends it.
async fn requeue_released(ctx: &Context, delivery: Delivery, id: i64) {
    match delivery.requeue().await {
        Ok(()) => {
            if let Err(e) = ctx.store.mark_published(id, Utc::now()).await {
                tracing::warn!(error = %e, "job requeued but not marked published; the outbox may send it twice");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the job's message did not go back to the queue; the outbox sends it"),
    }
}

/// A message whose job this worker may not run.
async fn unclaimable(ctx: &Context, delivery: Delivery, id: i64) -> Settled {
    match ctx.store.job(id).await {
        Ok(None) => {
            let text = format!("job {id} is not in the job store");
            dead_letter(delivery, &text, Settled::Failed { job_id: id, error: text.clone() }).await
        }
        // Final, held by a live worker, or out of attempts (the reaper settles
        // those): this message is a duplicate of the job's real delivery.
        Ok(Some(job)) => {
            tracing::info!(job_id = id, state = %job.state.as_str(), "duplicate delivery acked");
            ack(delivery, Settled::Duplicate { job_id: id, state: job.state }).await
        }
        Err(e) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = delivery.requeue().await;
            Settled::Unsettled { job_id: id, error: e.to_string() }
        }
    }
}

async fn ack(delivery: Delivery, settled: Settled) -> Settled {
    match delivery.ack().await {
        Ok(()) => settled,
        // The channel closed under us: the broker redelivers; the store already knows.
        Err(e) => {
            tracing::warn!(error = %e, "ack failed; the message will be redelivered and found settled");
            settled
        }
    }
}

async fn dead_letter(delivery: Delivery, error: &str, settled: Settled) -> Settled {
    if let Err(e) = delivery.dead_letter(error).await {
        tracing::warn!(error = %e, "dead-lettering failed; the message will be redelivered and found settled");
    }
    settled
}
