//! The typed policy: the manifest's thresholds, the config's overrides on
//! top (an override wins per field), every bound checked once here.

use serde::Serialize;

use super::error::RoutingError;
use crate::manifest::RoutingThresholds;

/// The worker config's `[routing]` overrides for one model: the manifest's
/// own table, each field optional; a field that is set replaces the
/// manifest's, and `source` says why the site overrides the shipped values.
pub type RoutingOverrides = RoutingThresholds;

/// Checked bounds; `None` means the rule is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoutingPolicy {
    pub(super) study_uncertainty_max: Option<f64>,
    pub(super) structure_agreement_min: Option<f64>,
    pub(super) volume_cv_max: Option<f64>,
    pub(super) ood_score_max: Option<f64>,
    pub(super) predicted_dice_min: Option<f64>,
    pub(super) probability_min: Option<f64>,
    pub(super) flag_probability_max: Option<f64>,
    /// The manifest's source, then the override's when one is given.
    pub(super) sources: Vec<String>,
}

#[derive(Clone, Copy)]
enum Range {
    NonNegative,
    Unit,
}

const MANIFEST: &str = "manifest";
const CONFIG: &str = "config";

/// `over` when set (from the config), else `base` (from the manifest), checked.
fn pick(field: &'static str, base: Option<f64>, over: Option<f64>, range: Range) -> Result<Option<f64>, RoutingError> {
    let (value, origin) = match (over, base) {
        (Some(v), _) => (v, CONFIG),
        (None, Some(v)) => (v, MANIFEST),
        (None, None) => return Ok(None),
    };
    if !value.is_finite() {
        return Err(RoutingError::NotFinite { field, origin, value });
    }
    let ok = match range {
        Range::NonNegative => value >= 0.0,
        Range::Unit => (0.0..=1.0).contains(&value),
    };
    if !ok {
        let range = match range {
            Range::NonNegative => "[0, inf)",
            Range::Unit => "[0, 1]",
        };
        return Err(RoutingError::OutOfRange { field, origin, value, range });
    }
    Ok(Some(value))
}

impl RoutingPolicy {
    /// The manifest's thresholds with `overrides` applied; every resulting bound
    /// must be finite, maxima ≥ 0 and `*_min` in [0, 1].
    pub fn new(manifest: &RoutingThresholds, overrides: Option<&RoutingOverrides>) -> Result<Self, RoutingError> {
        let o = overrides.cloned().unwrap_or_default();
        let m = manifest;
        let sources = [&m.source, &o.source].into_iter().flatten().cloned().collect();
        Ok(RoutingPolicy {
            study_uncertainty_max: pick(
                "study_uncertainty_max",
                m.study_uncertainty_max,
                o.study_uncertainty_max,
                Range::NonNegative,
            )?,
            structure_agreement_min: pick(
                "structure_agreement_min",
                m.structure_agreement_min,
                o.structure_agreement_min,
                Range::Unit,
            )?,
            volume_cv_max: pick("volume_cv_max", m.volume_cv_max, o.volume_cv_max, Range::NonNegative)?,
            ood_score_max: pick("ood_score_max", m.ood_score_max, o.ood_score_max, Range::NonNegative)?,
            predicted_dice_min: pick("predicted_dice_min", m.predicted_dice_min, o.predicted_dice_min, Range::Unit)?,
            probability_min: pick("probability_min", m.probability_min, o.probability_min, Range::Unit)?,
            flag_probability_max: pick(
                "flag_probability_max",
                m.flag_probability_max,
                o.flag_probability_max,
                Range::Unit,
            )?,
            sources,
        })
    }

    pub fn study_uncertainty_max(&self) -> Option<f64> {
        self.study_uncertainty_max
    }
    pub fn structure_agreement_min(&self) -> Option<f64> {
        self.structure_agreement_min
    }
    pub fn volume_cv_max(&self) -> Option<f64> {
        self.volume_cv_max
    }
    pub fn ood_score_max(&self) -> Option<f64> {
        self.ood_score_max
    }
    pub fn predicted_dice_min(&self) -> Option<f64> {
        self.predicted_dice_min
    }
    pub fn probability_min(&self) -> Option<f64> {
        self.probability_min
    }
    pub fn flag_probability_max(&self) -> Option<f64> {
        self.flag_probability_max
    }
    /// Where the bounds come from: the manifest's source, then the config's.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}
