//! What a finished study writes to the job store and the review exchange:
//! the report's figures as [`JobResults`] rows and, for a case routed to
//! review, the [`ReviewEvent`]. Pure mapping, no I/O.

use neurobatch_core::db::{ClassificationOutput, Job, JobResults, NewReviewItem, Routing, StructureMetric};
use neurobatch_core::message::{ModelRef, ReviewEvent, ReviewReason};

use super::study::StudyOutput;
use crate::pipeline::StudyReport;

/// The rows of one succeeded job.
pub fn job_results(output: &StudyOutput) -> JobResults {
    let report = &output.report;
    let review = !report.routing.is_accept();
    JobResults {
        decision: if review { Routing::Review } else { Routing::Accept },
        series_uid: output.series_uid.clone(),
        scanner: output.scanner.clone(),
        object_keys: output.object_keys.clone(),
        report: output.report_json.clone(),
        structures: report
            .structures
            .iter()
            .map(|s| StructureMetric {
                label: i64::from(s.label),
                structure: s.name.clone(),
                voxels: i64::try_from(s.voxels).unwrap_or(i64::MAX),
                volume_ml: s.volume_ml,
                volume_cv: s.uncertainty.pass_volume_cv,
                pairwise_dice: s.uncertainty.pairwise_dice,
                mean_entropy: s.uncertainty.mean_entropy,
                mean_mutual_information: s.uncertainty.mean_mutual_information,
            })
            .collect(),
        classifications: report.quality.iter().map(classification).collect(),
        review: review.then(|| NewReviewItem {
            reasons: review_reasons(report),
            uncertainty: report.study.score.filter(|s| s.is_finite()),
        }),
    }
}

fn classification(q: &crate::pipeline::QualityReport) -> ClassificationOutput {
    let u = &q.uncertainty;
    let probabilities = q
        .labels
        .iter()
        .filter_map(|(value, name)| {
            let p = value.parse::<usize>().ok().and_then(|i| u.mean_probs.get(i))?;
            Some((name.clone(), *p))
        })
        .collect();
    ClassificationOutput {
        model: q.model.name.clone(),
        label: q.label.clone(),
        probability: u.mean_probs.get(u.label).copied().unwrap_or(f64::NAN),
        predictive_entropy: Some(u.predictive_entropy),
        mutual_information: Some(u.mutual_information),
        probabilities,
    }
}

/// The report's routing reasons, as the job store and the review exchange carry them.
fn review_reasons(report: &StudyReport) -> Vec<ReviewReason> {
    report.routing.reasons().iter().map(ReviewReason::from).collect()
}

/// The event for the review exchange, when the report routes the case to review.
pub fn review_event(job: &Job, report: &StudyReport) -> Option<ReviewEvent> {
    if report.routing.is_accept() {
        return None;
    }
    Some(ReviewEvent {
        job_id: job.id,
        study_id: job.study_id,
        model: ModelRef { name: report.model.name.clone(), version: report.model.version.clone() },
        reasons: review_reasons(report),
        published_at: time::OffsetDateTime::now_utc(),
    })
}
