//! The decision and its reasons, shaped as `report.json`'s `routing` object:
//! `{"decision": "accept" | "review", "reasons": [{"code", "metric", "label"?, "value", "threshold"}]}`.

use serde::Serialize;

/// What happens to the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accept,
    Review,
}

/// Why a study goes to review; the codes are stable (they are matched on downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    OutOfDistribution,
    HighUncertainty,
    LowStructureAgreement,
    UnstableVolume,
    /// The quality estimator predicts a structure's Dice below the bound.
    LowPredictedDice,
    LowConfidence,
    /// A classifier gave a flagged class (label ≥ 1, e.g. "degraded") a mean
    /// probability above the bound.
    FlaggedClass,
    /// A set threshold needs a figure that is missing or not finite.
    UncertaintyUnknown,
}

impl ReasonCode {
    /// The code as `report.json` writes it (and the review exchange routes on).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OutOfDistribution => "out_of_distribution",
            ReasonCode::HighUncertainty => "high_uncertainty",
            ReasonCode::LowStructureAgreement => "low_structure_agreement",
            ReasonCode::UnstableVolume => "unstable_volume",
            ReasonCode::LowPredictedDice => "low_predicted_dice",
            ReasonCode::LowConfidence => "low_confidence",
            ReasonCode::FlaggedClass => "flagged_class",
            ReasonCode::UncertaintyUnknown => "uncertainty_unknown",
        }
    }
}

/// One crossed threshold (or one figure a threshold needed but did not get).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub code: ReasonCode,
    /// The figure compared (`study_uncertainty`, `pairwise_dice`, `pass_volume_cv`, `ood_score`, `predicted_dice`,
    /// `mean_probability`, `flagged_probability`).
    pub metric: &'static str,
    /// The structure's label, for per-structure figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<u8>,
    /// The figure; `None` (`null`) when unknown. serde_json also writes an
    /// infinite figure as `null`; its code still says it crossed the bound.
    pub value: Option<f64>,
    /// The bound it was compared with.
    pub threshold: f64,
}

/// The reason as every other crate knows it (the review exchange, the job
/// store, the review API): the code as its stable string, a non-finite figure
/// as unknown.
impl From<&Reason> for neurobatch_core::message::ReviewReason {
    fn from(r: &Reason) -> Self {
        neurobatch_core::message::ReviewReason {
            code: r.code.as_str().to_string(),
            metric: r.metric.to_string(),
            label: r.label,
            value: r.value.filter(|v| v.is_finite()),
            threshold: r.threshold,
        }
    }
}

/// `Review` exactly when there is a reason; built only from the reasons, so
/// the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingDecision {
    decision: Decision,
    reasons: Vec<Reason>,
}

impl RoutingDecision {
    pub fn from_reasons(reasons: Vec<Reason>) -> Self {
        let decision = if reasons.is_empty() { Decision::Accept } else { Decision::Review };
        RoutingDecision { decision, reasons }
    }

    /// One decision for a study several models looked at: review when any of
    /// them says so, with all their reasons, each prefixed by nothing (the
    /// caller keeps which model gave which in its own report).
    pub fn combine(decisions: impl IntoIterator<Item = RoutingDecision>) -> Self {
        RoutingDecision::from_reasons(decisions.into_iter().flat_map(|d| d.reasons).collect())
    }

    pub fn decision(&self) -> Decision {
        self.decision
    }

    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }

    pub fn is_accept(&self) -> bool {
        self.decision == Decision::Accept
    }
}
