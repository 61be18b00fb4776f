//! The routing decision: `accept` or `review`, with every reason.
//!
//! Owns the typed policy a model's manifest thresholds become (with the
//! worker config's overrides applied and checked), and the rules that turn a
//! study's uncertainty figures and out-of-distribution assessment into a
//! [`RoutingDecision`]. It computes no figure itself ([`crate::uncertainty`]
//! and [`crate::ood`] do) and chooses no threshold (the model's evaluation
//! does; the manifest cites it).
//!
//! # Rules
//! Each threshold that is set is checked; every one that is crossed adds a
//! [`Reason`], so the report lists all of them, not only the first. A study is
//! accepted only when the list is empty.
//! - `ood_score_max`: OOD score `>` the bound → `out_of_distribution`. It is
//!   checked whatever the other figures say: a model can be confidently wrong
//!   outside its training distribution, so agreement between passes never
//!   excuses an out-of-distribution scan.
//! - `predicted_dice_min`: per structure the quality estimator predicts
//!   ([`crate::quality`]), predicted Dice `<` the bound → `low_predicted_dice`;
//!   no estimate (no estimator for the profile that ran, or a feature it needs
//!   undefined) → `uncertainty_unknown`.
//! - `study_uncertainty_max`: study score `>` the bound → `high_uncertainty`.
//! - `structure_agreement_min`: per structure (labels ≥ 1; the background is
//!   not a structure), pooled pairwise Dice `<` the bound → `low_structure_agreement`.
//! - `volume_cv_max`: per structure, volume CV across passes `>` the bound → `unstable_volume`.
//! - `probability_min` (classification): mean probability of the winning
//!   class `<` the bound → `low_confidence`.
//! - `flag_probability_max` (classification): per class ≥ 1 (label 0 is the
//!   negative class, e.g. "diagnostic"), mean probability `>` the bound →
//!   `flagged_class` (a scan-quality model calling a scan degraded).
//!
//! A value exactly at a bound passes. A figure a set threshold needs but that
//! is missing (`None`: a single pass, a label no pass produced, no OOD
//! assessment) or NaN gives `uncertainty_unknown` for that metric:
//! unknown is never read as certain. Thresholds that are not set are not
//! checked, so a model without thresholds accepts everything (the manifest
//! loader requires a cited source whenever one is set).
//!
//! Classification uses `ood_score_max`, `probability_min` and
//! `flag_probability_max`; the
//! segmentation-only bounds do not apply to it (and vice versa).

mod decision;
mod error;
mod policy;
mod rules;

pub use decision::{Decision, Reason, ReasonCode, RoutingDecision};
pub use error::RoutingError;
pub use policy::{RoutingOverrides, RoutingPolicy};

#[cfg(test)]
mod tests;
