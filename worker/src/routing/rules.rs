//! The rules of the module docs, applied to one study.

use super::decision::{Reason, ReasonCode, RoutingDecision};
use super::policy::RoutingPolicy;
use crate::ood::OodAssessment;
use crate::quality::QualityEstimate;
use crate::uncertainty::{ClassificationUncertainty, UncertaintyReport};

#[derive(Clone, Copy)]
enum Bound {
    /// Crossed when the value is above it.
    Max,
    /// Crossed when the value is below it.
    Min,
}

/// Adds a reason when `threshold` is set and `value` crosses it or is unknown.
fn check(
    reasons: &mut Vec<Reason>,
    threshold: Option<f64>,
    bound: Bound,
    value: Option<f64>,
    code: ReasonCode,
    metric: &'static str,
    label: Option<u8>,
) {
    let Some(threshold) = threshold else { return };
    // NaN compares false both ways; ±inf is a known, extreme value.
    let value = value.filter(|v| !v.is_nan());
    let code = match (value, bound) {
        (None, _) => ReasonCode::UncertaintyUnknown,
        (Some(v), Bound::Max) if v > threshold => code,
        (Some(v), Bound::Min) if v < threshold => code,
        _ => return,
    };
    reasons.push(Reason { code, metric, label, value, threshold });
}

fn check_ood(reasons: &mut Vec<Reason>, policy: &RoutingPolicy, ood: Option<&OodAssessment>) {
    let score = ood.map(|a| a.score);
    check(reasons, policy.ood_score_max, Bound::Max, score, ReasonCode::OutOfDistribution, "ood_score", None);
}

impl RoutingPolicy {
    /// Routes a segmentation study (see the module docs for the rules);
    /// `estimate` is the profile's quality estimate, when one ran.
    pub fn decide(
        &self,
        seg: &UncertaintyReport,
        ood: Option<&OodAssessment>,
        estimate: Option<&QualityEstimate>,
    ) -> RoutingDecision {
        let mut reasons = Vec::new();
        check_ood(&mut reasons, self, ood);
        match estimate {
            Some(e) => {
                for s in &e.structures {
                    check(
                        &mut reasons,
                        self.predicted_dice_min,
                        Bound::Min,
                        s.predicted_dice,
                        ReasonCode::LowPredictedDice,
                        "predicted_dice",
                        Some(s.label),
                    );
                }
            }
            None => check(
                &mut reasons,
                self.predicted_dice_min,
                Bound::Min,
                None,
                ReasonCode::LowPredictedDice,
                "predicted_dice",
                None,
            ),
        }
        check(
            &mut reasons,
            self.study_uncertainty_max,
            Bound::Max,
            seg.study.score,
            ReasonCode::HighUncertainty,
            "study_uncertainty",
            None,
        );
        for s in seg.structures.iter().filter(|s| s.label != 0) {
            check(
                &mut reasons,
                self.structure_agreement_min,
                Bound::Min,
                s.pairwise_dice,
                ReasonCode::LowStructureAgreement,
                "pairwise_dice",
                Some(s.label),
            );
            check(
                &mut reasons,
                self.volume_cv_max,
                Bound::Max,
                s.pass_volume_cv,
                ReasonCode::UnstableVolume,
                "pass_volume_cv",
                Some(s.label),
            );
        }
        RoutingDecision::from_reasons(reasons)
    }

    /// Routes a classification study (see the module docs for the rules).
    pub fn decide_classification(&self, c: &ClassificationUncertainty, ood: Option<&OodAssessment>) -> RoutingDecision {
        let mut reasons = Vec::new();
        check_ood(&mut reasons, self, ood);
        check(
            &mut reasons,
            self.probability_min,
            Bound::Min,
            c.mean_probs.get(c.label).copied(),
            ReasonCode::LowConfidence,
            "mean_probability",
            None,
        );
        for (label, &p) in c.mean_probs.iter().enumerate().skip(1) {
            check(
                &mut reasons,
                self.flag_probability_max,
                Bound::Max,
                Some(p),
                ReasonCode::FlaggedClass,
                "flagged_probability",
                u8::try_from(label).ok(),
            );
        }
        RoutingDecision::from_reasons(reasons)
    }
}
