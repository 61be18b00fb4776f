//! Ingesting one study: resolve and inspect it (`source.rs`, `stage.rs`),
//! compute its job key, decide between an existing job and a new version,
//! copy its snapshot into the object store, and record the job. What came
//! of it is a [`Submission`].

use chrono::Utc;
use neurobatch_core::db::{Enqueued, NewJob, NewSeries};
use neurobatch_core::domain::{JobKey, JobKeyInput, Priority, StudyIdentity};
use serde::Serialize;

use crate::stage::{Inspected, SnapshotFile, snapshot_prefix};
use crate::{Scheduler, SchedulerError, error::joined, source, stage};

/// What submitting a study did. Serialized with an `outcome` tag:
/// `{"outcome": "enqueued", "job_id": 7, …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Submission {
    /// A new job row: version 1 of its key, or a later version (`forced`:
    /// the study changed since the last version, or the caller forced it).
    Enqueued {
        job_id: i64,
        study_key: String,
        job_key: String,
        version: i64,
        forced: bool,
        source_uri: String,
        series: Vec<String>,
    },
    /// The key already has a job with this very snapshot: nothing was written.
    Existing { job_id: i64, study_key: String, job_key: String, source_uri: String },
    /// Nothing to process; recorded on the study with the reason.
    Ineligible { study_id: i64, study_key: String, reason: String },
    /// Not a complete study yet (an empty folder, an inbox entry inside its quiet period).
    NotReady { reason: String },
}

/// How a staged study decides between an existing job and a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versioning {
    /// A job of the key with another snapshot → a new version.
    BySnapshot,
    /// The caller knows the study changed (the S3 poller saw its listing change after staging it).
    Changed,
}

impl Scheduler {
    /// Stages `input` and records its job (see [`Scheduler::submit`]).
    pub(crate) async fn stage(
        &self,
        input: &str,
        priority: Priority,
        force: bool,
        versioning: Versioning,
    ) -> Result<Submission, SchedulerError> {
        let inner = &self.inner;
        let limits = neurobatch_core::storage::StudyLimits::from_config(&inner.config.storage);
        let local =
            source::resolve(input, &inner.objects, &inner.s3, &inner.confinement, limits, &inner.scratch).await?;
        let rules = inner.rules.clone();
        let path = local.path.clone();
        let inspected = joined("staging", tokio::task::spawn_blocking(move || stage::inspect(&path, &rules)).await)??;
        let (identity, study_key, series, files, is_nifti) = match inspected {
            Inspected::NotReady { reason } => return Ok(Submission::NotReady { reason }),
            Inspected::Ineligible { study_key, reason } => {
                let study_id = inner.store.record_ineligible(&study_key, &local.uri, &reason, Utc::now()).await?;
                tracing::info!(study_id, source = %local.uri, %reason, "study ineligible");
                return Ok(Submission::Ineligible { study_id, study_key, reason });
            }
            Inspected::Nifti { content_id, file } => {
                let series = NewSeries { series_uid: file.rel.clone(), ..NewSeries::default() };
                (StudyIdentity::Content(content_id.clone()), content_id, series, vec![file], true)
            }
            Inspected::Dicom { study_uid, series, files } => match study_uid {
                Some(uid) => {
                    let identity =
                        StudyIdentity::Dicom { study_uid: uid.clone(), series_uids: vec![series.series_uid.clone()] };
                    (identity, uid, series, files, false)
                }
                // No StudyInstanceUID: the study is known by the content of its selected series.
                None => {
                    let id = stage::content_id(&files);
                    (StudyIdentity::Content(id.clone()), id, series, files, false)
                }
            },
        };
        let p = &inner.pipeline;
        let key = JobKey::compute(&JobKeyInput {
            identity: &identity,
            pipeline: &p.name,
            model_version: &p.model_version,
            harmonizer_version: &p.harmonizer_version,
        })
        .map_err(|e| SchedulerError::bad(input, e.to_string()))?;
        let prefix = snapshot_prefix(&study_key, &files);
        let source_uri = local.in_store.clone().unwrap_or_else(|| inner.objects.url_of(&prefix));

        let latest = inner.store.jobs_by_key(&key).await?.pop();
        let new_version = match (&latest, versioning) {
            (None, _) => false,
            (Some(_), _) if force => true,
            (Some(_), Versioning::Changed) => true,
            // A NIfTI file's key is its content: the same key is the same bytes, whatever the name.
            (Some(_), Versioning::BySnapshot) if is_nifti => false,
            (Some(job), Versioning::BySnapshot) => job.source_uri != source_uri,
        };
        if let (Some(job), false) = (&latest, new_version) {
            return Ok(Submission::Existing {
                job_id: job.id,
                study_key,
                job_key: key.to_string(),
                source_uri: job.source_uri.clone(),
            });
        }
        if local.in_store.is_none() {
            self.upload(&prefix, &files).await?;
        }
        let new = NewJob {
            key: key.clone(),
            study_key: study_key.clone(),
            source_uri: source_uri.clone(),
            series: vec![series.clone()],
            pipeline: p.name.clone(),
            model_version: p.model_version.clone(),
            harmonizer_version: p.harmonizer_version.clone(),
            priority,
            max_attempts: inner.config.worker.max_attempts,
            force: new_version,
        };
        match inner.store.enqueue(&new, Utc::now()).await? {
            Enqueued::Created(job_id) => {
                let version = inner.store.job(job_id).await?.map_or(1, |j| j.version);
                tracing::info!(job_id, version, priority = priority.as_str(), source = %source_uri, "job enqueued");
                Ok(Submission::Enqueued {
                    job_id,
                    study_key,
                    job_key: key.to_string(),
                    version,
                    forced: new_version,
                    source_uri,
                    series: vec![series.series_uid],
                })
            }
            Enqueued::Existing(job_id) => {
                Ok(Submission::Existing { job_id, study_key, job_key: key.to_string(), source_uri })
            }
        }
    }

    /// Copies the snapshot's files under `prefix` (idempotent: `put` overwrites).
    async fn upload(&self, prefix: &str, files: &[SnapshotFile]) -> Result<(), SchedulerError> {
        for f in files {
            let bytes = tokio::fs::read(&f.path).await.map_err(|e| SchedulerError::read(f.path.display(), e))?;
            self.inner.objects.put(&format!("{prefix}/{}", f.rel), bytes).await?;
        }
        Ok(())
    }
}
