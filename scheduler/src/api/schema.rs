//! What the API answers: every response body, as a type that is both
//! `Serialize` (what the handler returns) and `ToSchema` (what
//! `/openapi.json` documents) — one type for both, so a field cannot be
//! returned without being documented. The job store's rows
//! (`neurobatch_core::db`) map into them with `From`: the database's read
//! model is not the public contract, and `core` knows nothing of HTTP or
//! OpenAPI. Enums mirror the domain's with exhaustive `From` matches, so a
//! new state in `core` does not compile until the API says how it shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use neurobatch_core::{db, domain, message};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error answer's body: the one `ApiError` serializes.
pub use super::error::ErrorBody;

/// Mirrors of the domain's enums: the same names and the same text.
macro_rules! api_enum {
    ($(#[$doc:meta])* $name:ident from $from:ty { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl From<$from> for $name {
            fn from(v: $from) -> Self {
                match v {
                    $(<$from>::$variant => $name::$variant),+
                }
            }
        }
    };
}

api_enum!(
    /// `queued → running → succeeded | failed`, `→ dead` when attempts are exhausted.
    JobState from domain::JobState { Queued, Running, Succeeded, Failed, Dead }
);
api_enum!(
    /// `pending → claimed → decided`.
    ReviewState from domain::ReviewState { Pending, Claimed, Decided }
);
api_enum!(
    /// `stat` goes at once; `routine` waits for the nightly window.
    Priority from domain::Priority { Stat, Routine }
);
api_enum!(
    /// `service` submits studies, `reviewer` works the review queue, `admin` both and more.
    Role from domain::Role { Reviewer, Admin, Service }
);
api_enum!(
    /// A reviewer's decision.
    ReviewAction from domain::ReviewAction { Approve, Reject, Correct, Escalate }
);
api_enum!(
    /// The pipeline's routing decision of a result.
    Routing from db::Routing { Accept, Review }
);

/// What `POST /v1/review/items/{id}/decision` decides (a correction is the
/// mask's upload, `PUT …/correction`). Documents the request; the handler parses
/// the text into the domain's `ReviewAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // never built: it documents the request body (a test ties it to ReviewAction)
pub enum Decision {
    Approve,
    Reject,
    Escalate,
}

/// `GET /v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
}

/// What `POST /v1/studies` did, tagged by `outcome`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Submission {
    /// A new job: version 1 of its key, or a later version (`forced`: the
    /// study changed since the last version, or the caller forced it).
    Enqueued {
        job_id: i64,
        study_key: String,
        job_key: String,
        version: i64,
        forced: bool,
        source_uri: String,
        /// The selected series.
        series: Vec<String>,
    },
    /// The key already has a job with this very snapshot: nothing was written.
    Existing { job_id: i64, study_key: String, job_key: String, source_uri: String },
    /// Nothing to process; recorded on the study with the reason.
    Ineligible { study_id: i64, study_key: String, reason: String },
    /// Not a complete study yet (an empty folder, an inbox entry inside its quiet period).
    NotReady { reason: String },
}

impl From<crate::Submission> for Submission {
    fn from(s: crate::Submission) -> Self {
        use crate::Submission as S;
        match s {
            S::Enqueued { job_id, study_key, job_key, version, forced, source_uri, series } => {
                Submission::Enqueued { job_id, study_key, job_key, version, forced, source_uri, series }
            }
            S::Existing { job_id, study_key, job_key, source_uri } => {
                Submission::Existing { job_id, study_key, job_key, source_uri }
            }
            S::Ineligible { study_id, study_key, reason } => Submission::Ineligible { study_id, study_key, reason },
            S::NotReady { reason } => Submission::NotReady { reason },
        }
    }
}

/// A study in the status list, with its latest job.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudySummary {
    pub id: i64,
    /// The StudyInstanceUID, or the content id of an input without one.
    pub study_key: String,
    pub source_uri: String,
    pub ineligible_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub latest_job_id: Option<i64>,
    pub latest_job_state: Option<JobState>,
}

impl From<db::StudySummary> for StudySummary {
    fn from(s: db::StudySummary) -> Self {
        StudySummary {
            id: s.id,
            study_key: s.study_key,
            source_uri: s.source_uri,
            ineligible_reason: s.ineligible_reason,
            created_at: s.created_at,
            updated_at: s.updated_at,
            latest_job_id: s.latest_job_id,
            latest_job_state: s.latest_job_state.map(Into::into),
        }
    }
}

/// A series of a study as the scheduler saw it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub id: i64,
    pub series_uid: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model: Option<String>,
    pub station_name: Option<String>,
    pub field_strength_t: Option<f64>,
    pub slices: Option<i64>,
}

impl From<db::SeriesRow> for Series {
    fn from(r: db::SeriesRow) -> Self {
        let s = r.series;
        Series {
            id: r.id,
            series_uid: s.series_uid,
            modality: s.modality,
            description: s.description,
            manufacturer: s.manufacturer,
            manufacturer_model: s.manufacturer_model,
            station_name: s.station_name,
            field_strength_t: s.field_strength_t,
            slices: s.slices,
        }
    }
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub study_id: i64,
    /// The idempotency key: 64 lowercase hex digits.
    pub key: String,
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

impl From<db::Job> for Job {
    fn from(j: db::Job) -> Self {
        Job {
            id: j.id,
            study_id: j.study_id,
            key: j.key.as_str().to_string(),
            version: j.version,
            source_uri: j.source_uri,
            series_uids: j.series_uids,
            pipeline: j.pipeline,
            model_version: j.model_version,
            harmonizer_version: j.harmonizer_version,
            priority: j.priority.into(),
            state: j.state.into(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            lease_owner: j.lease_owner,
            lease_expires_at: j.lease_expires_at,
            last_error: j.last_error,
            published_at: j.published_at,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

/// A job's result as the status API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultSummary {
    pub id: i64,
    pub decision: Routing,
    /// Output name → object key in storage.
    pub object_keys: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub review_state: Option<ReviewState>,
}

/// A job with its result, if any.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub result: Option<ResultSummary>,
}

impl From<db::JobDetail> for JobDetail {
    fn from(d: db::JobDetail) -> Self {
        JobDetail {
            job: d.job.into(),
            result: d.result.map(|r| ResultSummary {
                id: r.id,
                decision: r.decision.into(),
                object_keys: r.object_keys,
                created_at: r.created_at,
                review_state: r.review_state.map(Into::into),
            }),
        }
    }
}

/// One study with its series and every job.
#[derive(Debug, Serialize, ToSchema)]
pub struct StudyDetail {
    pub study: StudySummary,
    pub series: Vec<Series>,
    pub jobs: Vec<JobDetail>,
}

impl From<db::StudyDetail> for StudyDetail {
    fn from(d: db::StudyDetail) -> Self {
        StudyDetail {
            study: d.study.into(),
            series: d.series.into_iter().map(Into::into).collect(),
            jobs: d.jobs.into_iter().map(Into::into).collect(),
        }
    }
}

/// One crossed threshold of the routing policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewReason {
    /// Stable snake_case code (`out_of_distribution`, `high_uncertainty`, …).
    pub code: String,
    pub metric: String,
    /// The structure's label, for a per-structure reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// `null` when the figure was unknown or not finite.
    pub value: Option<f64>,
    pub threshold: f64,
}

impl From<message::ReviewReason> for ReviewReason {
    fn from(r: message::ReviewReason) -> Self {
        ReviewReason { code: r.code, metric: r.metric, label: r.label, value: r.value, threshold: r.threshold }
    }
}

/// One case in the review queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewItem {
    pub id: i64,
    pub job_id: i64,
    pub study_id: i64,
    pub study_key: String,
    pub state: ReviewState,
    /// The routing reasons as the worker's report wrote them.
    pub reasons: Vec<ReviewReason>,
    pub priority: Priority,
    /// The study's uncertainty score; `null` when the worker could not compute it (such cases sort first).
    pub uncertainty: Option<f64>,
    /// `<pipeline>@<model version>`.
    pub model: String,
    /// Manufacturer and model of the scanner, when the headers said.
    pub scanner: Option<String>,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub decision: Option<ReviewAction>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub escalated: bool,
    pub created_at: DateTime<Utc>,
}

impl From<db::ReviewItem> for ReviewItem {
    fn from(i: db::ReviewItem) -> Self {
        ReviewItem {
            id: i.id,
            job_id: i.job_id,
            study_id: i.study_id,
            study_key: i.study_key,
            state: i.state.into(),
            reasons: i.reasons.into_iter().map(Into::into).collect(),
            priority: i.priority.into(),
            uncertainty: i.uncertainty,
            model: i.model,
            scanner: i.scanner,
            claimed_by: i.claimed_by,
            lease_expires_at: i.lease_expires_at,
            decision: i.decision.map(Into::into),
            decided_by: i.decided_by,
            decided_at: i.decided_at,
            escalated: i.escalated,
            created_at: i.created_at,
        }
    }
}

/// `GET /v1/review/items`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewItems {
    pub items: Vec<ReviewItem>,
}

/// Figures for one structure (label) of a segmentation.
#[derive(Debug, Serialize, ToSchema)]
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

impl From<db::StructureMetric> for StructureMetric {
    fn from(m: db::StructureMetric) -> Self {
        StructureMetric {
            label: m.label,
            structure: m.structure,
            voxels: m.voxels,
            volume_ml: m.volume_ml,
            volume_cv: m.volume_cv,
            pairwise_dice: m.pairwise_dice,
            mean_entropy: m.mean_entropy,
            mean_mutual_information: m.mean_mutual_information,
        }
    }
}

/// A comment on a case.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewComment {
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// One label of the pipeline's segmentation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineLabel {
    pub value: u32,
    pub name: String,
    /// Display colour, RGB.
    pub color: [u8; 3],
}

impl From<&domain::PipelineLabel> for PipelineLabel {
    fn from(l: &domain::PipelineLabel) -> Self {
        PipelineLabel { value: l.value, name: l.name.clone(), color: l.color }
    }
}

/// A case as the viewer gets it: the item, its result's figures and objects.
#[derive(Debug, Serialize, ToSchema)]
pub struct Case {
    #[serde(flatten)]
    pub item: ReviewItem,
    /// Output name → object key (image, mask, entropy, mutual_information, report).
    pub object_keys: BTreeMap<String, String>,
    /// The job's report.json.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
    pub structures: Vec<StructureMetric>,
    pub comments: Vec<ReviewComment>,
    /// The latest corrected mask's object key, when one was uploaded.
    pub correction_key: Option<String>,
    /// Output name → URL of `GET /v1/review/items/{id}/objects/{name}`.
    pub objects: BTreeMap<String, String>,
    /// The pipeline's labels: value, name, display colour.
    pub labels: Vec<PipelineLabel>,
    /// The routing reasons (thresholds crossed); the same as `reasons`.
    pub thresholds_crossed: Vec<ReviewReason>,
}

impl Case {
    /// The case `c` with the viewer's object URLs (`objects`: name → URL) and
    /// the pipeline's `labels`.
    pub fn new(c: db::ReviewCase, objects: BTreeMap<String, String>, labels: &[domain::PipelineLabel]) -> Case {
        let thresholds_crossed = c.item.reasons.iter().cloned().map(Into::into).collect();
        Case {
            item: c.item.into(),
            object_keys: c.object_keys,
            report: c.report,
            structures: c.structures.into_iter().map(Into::into).collect(),
            comments: c
                .comments
                .into_iter()
                .map(|m| ReviewComment { author: m.author, text: m.text, created_at: m.created_at })
                .collect(),
            correction_key: c.correction_key,
            objects,
            labels: labels.iter().map(Into::into).collect(),
            thresholds_crossed,
        }
    }
}

/// Review and uncertainty figures of one scanner and model.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingRate {
    pub scanner: Option<String>,
    pub model: String,
    pub results: i64,
    pub reviewed: i64,
    pub review_rate: f64,
    pub mean_uncertainty: Option<f64>,
}

/// `GET /v1/admin/stats`: the figures of the admin page.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminStats {
    /// Job state → jobs in it.
    pub jobs_by_state: BTreeMap<String, i64>,
    pub succeeded_last_hour: i64,
    pub succeeded_last_day: i64,
    /// Pending or claimed review items.
    pub review_backlog: i64,
    pub review_oldest_age_seconds: Option<f64>,
    pub routing: Vec<RoutingRate>,
    /// DICOM sends to the PACS by state (`pending`, `sent`, `failed`; docs/dicom.md).
    pub dicom_sends: BTreeMap<String, i64>,
    /// Messages ready in the broker's jobs queue; `null` when the broker did not answer.
    pub broker_jobs_queued: Option<u32>,
}

impl AdminStats {
    pub fn new(s: db::AdminStats, broker_jobs_queued: Option<u32>) -> AdminStats {
        AdminStats {
            jobs_by_state: s.jobs_by_state,
            succeeded_last_hour: s.succeeded_last_hour,
            succeeded_last_day: s.succeeded_last_day,
            review_backlog: s.review_backlog,
            review_oldest_age_seconds: s.review_oldest_age_seconds,
            routing: s
                .routing
                .into_iter()
                .map(|r| RoutingRate {
                    scanner: r.scanner,
                    model: r.model,
                    results: r.results,
                    reviewed: r.reviewed,
                    review_rate: r.review_rate,
                    mean_uncertainty: r.mean_uncertainty,
                })
                .collect(),
            dicom_sends: s.dicom_sends,
            broker_jobs_queued,
        }
    }
}

/// `GET /v1/admin/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jobs {
    pub jobs: Vec<Job>,
}

/// `POST /v1/admin/jobs/{id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub job_id: i64,
    /// Always `queued`.
    pub state: JobState,
}

/// `POST /v1/admin/dicom-sends/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedSends {
    /// Failed sends now pending again.
    pub retried: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mirrors say what the domain's own serialization says.
    #[test]
    fn the_enums_serialize_as_the_domains_do() {
        fn same<C: Serialize + Copy, A: Serialize + From<C>>(all: &[C]) {
            for v in all {
                let core = serde_json::to_value(v).expect("core");
                assert_eq!(serde_json::to_value(A::from(*v)).expect("api"), core);
            }
        }
        same::<domain::JobState, JobState>(domain::JobState::ALL);
        same::<domain::Role, Role>(domain::Role::ALL);
        same::<domain::ReviewAction, ReviewAction>(domain::ReviewAction::ALL);
        same::<domain::ReviewState, ReviewState>(domain::ReviewState::ALL);
        same::<domain::Priority, Priority>(domain::Priority::ALL);
        same::<db::Routing, Routing>(&[db::Routing::Accept, db::Routing::Review]);
        // The decisions are the review actions but `correct` (an upload of its own).
        let decisions: Vec<_> = [Decision::Approve, Decision::Reject, Decision::Escalate]
            .iter()
            .map(|d| serde_json::to_value(d).expect("decision"))
            .collect();
        let actions: Vec<_> = domain::ReviewAction::ALL
            .iter()
            .filter(|a| **a != domain::ReviewAction::Correct)
            .map(|a| serde_json::Value::from(a.as_str()))
            .collect();
        assert_eq!(decisions, actions);
    }

    #[test]
    fn a_submission_answers_as_the_scheduler_serializes_it() {
        use crate::Submission as S;
        let all = [
            S::Enqueued {
                job_id: 1,
                study_key: "k".into(),
                job_key: "j".into(),
                version: 2,
                forced: true,
                source_uri: "file:///in/a".into(),
                series: vec!["1.2".into()],
            },
            S::Existing { job_id: 1, study_key: "k".into(), job_key: "j".into(), source_uri: "u".into() },
            S::Ineligible { study_id: 3, study_key: "k".into(), reason: "no series".into() },
            S::NotReady { reason: "quiet period".into() },
        ];
        for s in all {
            let scheduler = serde_json::to_value(&s).expect("scheduler");
            assert_eq!(serde_json::to_value(Submission::from(s)).expect("api"), scheduler);
        }
    }
}
