//! What goes into and comes out of the job store: plain data, no SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{JobKey, JobState, Priority, ReviewState};

/// A job's row id; also what the queue message carries.
pub type JobId = i64;
/// A study's row id.
pub type StudyId = i64;

/// A series of a study as the scheduler saw it (for the series table and per-scanner statistics).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewSeries {
    pub series_uid: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model: Option<String>,
    pub station_name: Option<String>,
    pub field_strength_t: Option<f64>,
    pub slices: Option<i64>,
}

/// A job to record (and later publish).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The idempotency key (`domain::JobKey`).
    pub key: JobKey,
    /// StudyInstanceUID, or the content id for inputs without one.
    pub study_key: String,
    /// Where the worker fetches the study (`file://…`, `s3://…`).
    pub source_uri: String,
    /// The series selected for the pipeline.
    pub series: Vec<NewSeries>,
    pub pipeline: String,
    pub model_version: String,
    pub harmonizer_version: String,
    pub priority: Priority,
    pub max_attempts: u32,
    /// Record a new version even when the key exists.
    pub force: bool,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job row (version 1, or the next version when forced).
    Created(JobId),
    /// The key already had a job: its latest version.
    Existing(JobId),
}

impl Enqueued {
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// A job row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub study_id: StudyId,
    pub key: JobKey,
    pub version: i64,
    pub source_uri: String,
    pub series_uids: Vec<String>,
    pub pipeline: String,
    pub model_version: String,
    pub harmonizer_version: String,
    pub priority: Priority,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job this worker now holds: state `running`, its lease, `attempts` already counting this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub job: Job,
    pub lease_expires_at: DateTime<Utc>,
}

/// The routing decision of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    Accept,
    Review,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Accept => "accept",
            Routing::Review => "review",
        }
    }
}

/// The scanner of the processed series, for per-scanner statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scanner {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub field_strength_t: Option<f64>,
}

/// Figures for one structure (label) of a segmentation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructureMetric {
    pub label: i64,
    pub structure: String,
    pub voxels: i64,
    pub volume_ml: f64,
    pub volume_cv: Option<f64>,
    pub pairwise_dice: Option<f64>,
    pub mean_entropy: Option<f64>,
    pub mean_mutual_information: Option<f64>,
}

/// One classifier's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationOutput {
    pub model: String,
    pub label: String,
    pub probability: f64,
    pub predictive_entropy: Option<f64>,
    pub mutual_information: Option<f64>,
    pub probabilities: BTreeMap<String, f64>,
}

/// A case for the review queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReviewItem {
    /// The routing reasons (stored as the report's JSON array, their codes in `review_reasons`).
    pub reasons: Vec<crate::message::ReviewReason>,
    /// The study's uncertainty score; orders the queue within a priority,
    /// highest first. `None` when the worker could not compute it: stored as
    /// NULL, and such cases come first (nothing is known about them).
    pub uncertainty: Option<f64>,
}

/// Everything a succeeded job writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResults {
    pub decision: Routing,
    pub series_uid: Option<String>,
    pub scanner: Scanner,
    /// Output name → object key in storage.
    pub object_keys: BTreeMap<String, String>,
    /// The job's report.json.
    pub report: serde_json::Value,
    pub structures: Vec<StructureMetric>,
    pub classifications: Vec<ClassificationOutput>,
    /// Present when the decision is review.
    pub review: Option<NewReviewItem>,
}

/// What `complete` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The results were written and the job is `succeeded`.
    Completed,
    /// The job had already succeeded (a redelivery): nothing was written.
    AlreadyCompleted,
}

/// What `fail` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Transient, with attempts left: `queued` again (the queue's retry delivers it).
    Retry { attempts: i64, max_attempts: i64 },
    /// Permanent: `failed`, no retry.
    Failed,
    /// Transient on the last allowed attempt: `dead`.
    Dead,
    /// This worker does not hold the job (another claimed it, or it is no longer running): nothing changed.
    NotHeld { state: JobState },
}

/// What a reaper pass did with the expired leases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Back to `queued` and unpublished, so the outbox sends them again.
    pub requeued: Vec<JobId>,
    /// Lost too many workers (poison, or the cap on lost workers), so `dead`.
    pub dead: Vec<JobId>,
}

/// A study in the status list, with its latest job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySummary {
    pub id: StudyId,
    pub study_key: String,
    pub source_uri: String,
    pub ineligible_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub latest_job_id: Option<JobId>,
    pub latest_job_state: Option<JobState>,
}

/// A series row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    pub id: i64,
    #[serde(flatten)]
    pub series: NewSeries,
}

/// A result as the status API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultSummary {
    pub id: i64,
    pub decision: Routing,
    pub object_keys: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub review_state: Option<ReviewState>,
}

/// A job with its result, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub result: Option<ResultSummary>,
}

/// One study with its series and every job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDetail {
    pub study: StudySummary,
    pub series: Vec<SeriesRow>,
    pub jobs: Vec<JobDetail>,
}
