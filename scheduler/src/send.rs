//! Results back to the PACS (issue 14, item 5): which results' DICOM objects
//! (the SEG and SR the worker wrote, or the SEG of a reviewer's corrected
//! mask, docs/dicom.md) go to which of `dicom.destinations` (and
//! `pacs.stow_url`) under `dicom.send`, and delivering them by C-STORE (or
//! STOW-RS).
//!
//! Deciding and delivering are two passes over the durable outbox in the
//! database (`core::db::sends`): a result's sends are decided once, in one
//! transaction with its rows; a due row is sent, then marked sent, or failed
//! with a backoff (30 s doubling, at most an hour) and, after
//! `dicom.send_max_attempts`, failed for good until an admin retries it. A
//! crash between a C-STORE and its mark sends the object again: the UIDs are
//! deterministic, so the PACS replaces it. Results older than a week when
//! first seen are left alone, so turning sending on does not replay history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use neurobatch_core::config::{DicomDestination, DicomSendPolicy};
use neurobatch_core::db::SendCandidate;

use crate::corrected_seg::{self, CorrectedSegError};
use crate::dicom::store_scu;
use crate::pull::Pacs;
use crate::{Scheduler, SchedulerError};

/// The objects sent, in order: the SEG before the SR that references it.
pub const OUTPUTS: [&str; 2] = ["seg", "sr"];
/// The destination recorded for `pacs.stow_url` (its URL, which may hold
/// credentials, stays in the configuration).
pub const STOW_DESTINATION: &str = "stow-rs";
/// Results created longer ago than this when first seen are not sent.
const LOOK_BACK_DAYS: i64 = 7;
/// Results decided, and sends attempted, per pass.
const BATCH: i64 = 100;
/// Each network step of a C-STORE may take this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a result gets under the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Its objects go to every destination.
    Send,
    /// A reviewer corrected the mask: the SEG of correction `revision` (stored
    /// at `mask_key`) goes to every destination, and nothing else — the SR's
    /// figures are the model's mask's.
    SendCorrected { revision: i64, mask_key: String },
    /// Nothing, ever (no DICOM objects, not accepted, rejected by a reviewer).
    Nothing,
    /// Not yet: a routed case waiting for a reviewer.
    Wait,
}

/// The plan for one result.
pub fn plan(policy: DicomSendPolicy, c: &SendCandidate) -> Plan {
    if !OUTPUTS.iter().all(|o| c.object_keys.contains_key(*o)) {
        return Plan::Nothing;
    }
    match (policy, c.decision.as_str()) {
        (_, "accept") | (DicomSendPolicy::All, _) => Plan::Send,
        (DicomSendPolicy::Accepted, _) => Plan::Nothing,
        (DicomSendPolicy::AfterReview, _) => match (c.review_state.as_deref(), c.review_decision.as_deref()) {
            (Some("decided"), Some("approve")) => Plan::Send,
            (Some("decided"), Some("correct")) => match &c.correction {
                Some((revision, key)) => Plan::SendCorrected { revision: *revision, mask_key: key.clone() },
                None => Plan::Nothing,
            },
            (Some("decided"), _) => Plan::Nothing,
            _ => Plan::Wait,
        },
    }
}

/// When a send that failed `attempts` times (this one included) is tried again.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 7)).unwrap_or(7);
    Duration::from_secs((30u64 << exp).min(3600))
}

/// Why a corrected SEG was not built: for now (storage, a temporary file),
/// or for good (what the result or the review stored cannot make one).
enum Unbuilt {
    Later(String),
    Never(String),
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl Scheduler {
    /// Every destination, as the outbox records it: `AET@host:port` for each
    /// C-STORE peer, then [`STOW_DESTINATION`] when `pacs.stow_url` is set.
    pub(crate) fn send_destinations(&self) -> Result<Vec<String>, SchedulerError> {
        let config = &self.inner.config;
        let mut all: Vec<String> = config
            .dicom
            .destinations()
            .map_err(|reason| SchedulerError::Config { key: "dicom.destinations", reason })?
            .iter()
            .map(ToString::to_string)
            .collect();
        if !config.pacs.stow_url.expose().is_empty() {
            all.push(STOW_DESTINATION.to_string());
        }
        Ok(all)
    }

    /// One object to one destination; `stow` is the pass's STOW-RS client.
    async fn deliver(&self, destination: &str, part10: Vec<u8>, stow: &Result<Pacs, String>) -> Result<(), String> {
        let config = &self.inner.config;
        if destination == STOW_DESTINATION {
            return stow.as_ref().map_err(Clone::clone)?.stow(part10).await;
        }
        let peer = DicomDestination::parse(destination).map_err(|reason| format!("destination: {reason}"))?;
        store_scu::c_store(&peer, &config.dicom.ae_title, &part10, STEP_TIMEOUT, config.dicom.max_pdu)
            .await
            .map_err(|e| e.to_string())
    }

    /// Decides the sends of the results not decided yet; returns how many
    /// results were decided (sent or not).
    pub async fn queue_dicom_sends_once(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let destinations = self.send_destinations()?;
        if destinations.is_empty() {
            return Ok(0);
        }
        let policy = self.inner.config.dicom.send;
        let since = now - chrono::TimeDelta::days(LOOK_BACK_DAYS);
        let mut decided = 0;
        for c in self.inner.store.undecided_dicom_results(since, BATCH).await? {
            let mut refused = None;
            let sends: Vec<(String, String, String)> = match plan(policy, &c) {
                Plan::Wait => continue,
                Plan::Nothing => Vec::new(),
                Plan::Send => destinations
                    .iter()
                    .flat_map(|d| {
                        OUTPUTS
                            .iter()
                            .filter_map(|o| c.object_keys.get(*o).map(|key| (d.clone(), (*o).to_string(), key.clone())))
                    })
                    .collect(),
                Plan::SendCorrected { revision, mask_key } => {
                    let revision = u32::try_from(revision).unwrap_or(u32::MAX);
                    let seg_key = corrected_seg::key(c.object_keys.get("seg").map_or("", String::as_str), revision);
                    match self.store_corrected_seg(&c, revision, &mask_key, &seg_key, now).await {
                        Ok(()) => {}
                        Err(Unbuilt::Later(reason)) => {
                            tracing::warn!(job_id = c.job_id, error = %reason, "corrected SEG not built yet; next pass");
                            continue;
                        }
                        Err(Unbuilt::Never(reason)) => {
                            tracing::warn!(job_id = c.job_id, error = %reason, "corrected SEG cannot be built");
                            refused = Some(format!("the corrected SEG cannot be built: {reason}"));
                        }
                    }
                    destinations.iter().map(|d| (d.clone(), "seg".to_string(), seg_key.clone())).collect()
                }
            };
            self.inner.store.decide_dicom_sends(c.result_id, c.job_id, &sends, refused.as_deref(), now).await?;
            decided += 1;
        }
        Ok(decided)
    }

    /// Builds the SEG of a reviewer's correction and stores it at `seg_key`.
    async fn store_corrected_seg(
        &self,
        c: &SendCandidate,
        revision: u32,
        mask_key: &str,
        seg_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Unbuilt> {
        let objects = &self.inner.objects;
        let (Some(first_key), Some(recipe_key)) =
            (c.object_keys.get("seg"), c.object_keys.get(corrected_seg::RECIPE_OUTPUT))
        else {
            return Err(Unbuilt::Never(
                "the result has no seg.dcm and seg_recipe.json (a worker older than corrected SEGs made it)".into(),
            ));
        };
        let read = async |key: &str| objects.get(key).await.map_err(|e| Unbuilt::Later(format!("reading {key}: {e}")));
        let (recipe, first, mask) = (read(recipe_key).await?, read(first_key).await?, read(mask_key).await?);
        let built = tokio::task::spawn_blocking(move || corrected_seg::build(&recipe, &first, &mask, revision, now))
            .await
            .map_err(|e| Unbuilt::Later(format!("the build task ended abnormally: {e}")))?;
        let part10 = built.map_err(|e| match e {
            CorrectedSegError::Io(_) => Unbuilt::Later(e.to_string()),
            other => Unbuilt::Never(other.to_string()),
        })?;
        objects.put(seg_key, part10).await.map_err(|e| Unbuilt::Later(format!("storing {seg_key}: {e}")))
    }

    /// Delivers the due sends, one C-STORE (or STOW-RS request) each.
    pub async fn send_dicom_once(&self, now: DateTime<Utc>) -> Result<SendReport, SchedulerError> {
        let dicom = &self.inner.config.dicom;
        let mut report = SendReport::default();
        let due = self.inner.store.due_dicom_sends(now, BATCH).await?;
        // One STOW-RS client for the pass, when a row needs it (an error when pacs.stow_url is
        // empty or unusable, recorded on each stow-rs row).
        let pacs = &self.inner.config.pacs;
        let stow = if due.iter().any(|d| d.destination == STOW_DESTINATION) {
            Pacs::new(pacs.stow_url.expose(), Duration::from_secs(pacs.timeout_secs), "pacs.stow_url")
                .map_err(|e| e.to_string())
        } else {
            Err("no STOW-RS send in this pass".to_string())
        };
        for send in due {
            let attempt = send.attempts + 1;
            let outcome = match self.inner.objects.get(&send.object_key).await {
                Err(e) => Err(format!("reading {}: {e}", send.object_key)),
                Ok(bytes) => self.deliver(&send.destination, bytes, &stow).await,
            };
            match outcome {
                Ok(()) => {
                    self.inner.store.dicom_send_succeeded(send.id, Utc::now()).await?;
                    tracing::info!(job_id = send.job_id, output = %send.output, destination = %send.destination, "dicom result sent");
                    report.sent += 1;
                }
                Err(reason) => {
                    let give_up = attempt >= i64::from(dicom.send_max_attempts);
                    let retry_at = (!give_up).then(|| {
                        now + chrono::TimeDelta::from_std(backoff(attempt)).unwrap_or(chrono::TimeDelta::hours(1))
                    });
                    self.inner.store.dicom_send_failed(send.id, &reason, Utc::now(), retry_at).await?;
                    tracing::warn!(
                        job_id = send.job_id, output = %send.output, destination = %send.destination,
                        attempt, gave_up = give_up, error = %reason, "dicom result not sent"
                    );
                    if give_up {
                        report.failed += 1;
                    } else {
                        report.retried += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(decision: &str, review: Option<(&str, Option<&str>)>, dicom: bool) -> SendCandidate {
        let correction = review.and_then(|r| r.1).filter(|d| *d == "correct").map(|_| (2, "k/corr.nii.gz".to_string()));
        let mut object_keys = std::collections::BTreeMap::new();
        object_keys.insert("mask".to_string(), "k/mask".to_string());
        if dicom {
            object_keys.insert("seg".to_string(), "k/seg".to_string());
            object_keys.insert("sr".to_string(), "k/sr".to_string());
        }
        SendCandidate {
            result_id: 1,
            job_id: 1,
            decision: decision.into(),
            object_keys,
            review_state: review.map(|r| r.0.to_string()),
            review_decision: review.and_then(|r| r.1.map(str::to_string)),
            correction,
        }
    }

    #[test]
    fn the_policy_sends_what_it_says() {
        use DicomSendPolicy::*;
        let accepted = candidate("accept", None, true);
        let waiting = candidate("review", Some(("pending", None)), true);
        let approved = candidate("review", Some(("decided", Some("approve"))), true);
        let rejected = candidate("review", Some(("decided", Some("reject"))), true);
        let corrected = candidate("review", Some(("decided", Some("correct"))), true);
        let nifti = candidate("accept", None, false);
        for policy in [Accepted, All, AfterReview] {
            assert_eq!(plan(policy, &accepted), Plan::Send);
            assert_eq!(plan(policy, &nifti), Plan::Nothing, "no DICOM objects");
        }
        assert_eq!(plan(Accepted, &waiting), Plan::Nothing);
        assert_eq!(plan(Accepted, &approved), Plan::Nothing);
        assert_eq!(plan(All, &waiting), Plan::Send);
        assert_eq!(plan(All, &rejected), Plan::Send);
        assert_eq!(plan(AfterReview, &waiting), Plan::Wait);
        assert_eq!(plan(AfterReview, &candidate("review", Some(("claimed", None)), true)), Plan::Wait);
        assert_eq!(plan(AfterReview, &approved), Plan::Send);
        assert_eq!(plan(AfterReview, &rejected), Plan::Nothing);
        // A correction is sent as its own SEG after review, and only then.
        let corrected_seg = Plan::SendCorrected { revision: 2, mask_key: "k/corr.nii.gz".into() };
        assert_eq!(plan(AfterReview, &corrected), corrected_seg);
        assert_eq!(plan(Accepted, &corrected), Plan::Nothing);
        let no_mask = SendCandidate { correction: None, ..corrected.clone() };
        assert_eq!(plan(AfterReview, &no_mask), Plan::Nothing, "`correct` without a stored mask");
        assert_eq!(
            plan(AfterReview, &SendCandidate { object_keys: nifti.object_keys.clone(), ..corrected }),
            Plan::Nothing
        );
    }

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_an_hour() {
        let secs: Vec<u64> = (1..=10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(0).as_secs(), 30);
    }
}
