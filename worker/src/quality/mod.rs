//! The learned quality estimate: each structure's Dice predicted from what the
//! pipeline already measured, so routing can send a study to review for the
//! failure it predicts rather than for one raw figure crossing a bound.
//!
//! Owns the feature catalog ([`QualityFeatures`]: named numbers taken from the
//! uncertainty report, the OOD assessment, the bias field, the scan's
//! geometry and the harmonized image inside the predicted structures
//! ([`ImageMetrics`]) — every one invariant to padding or cropping the background of the
//! field of view), the estimator a model folder ships
//! ([`QualityEstimatorSpec`] in the manifest, [`QualityEstimator`] loaded) and
//! the estimate ([`QualityEstimate`], `report.json`'s `quality_estimate`). It
//! computes none of the input figures and decides nothing ([`crate::routing`]
//! compares the estimate with `predicted_dice_min`).
//!
//! The estimator is a small ONNX model on the feature vector (gradient-boosted
//! trees from `training/fit_quality.py`, in the spirit of SynthSeg 2.0's QC
//! estimate and of the failure-prediction literature: Jungo & Reyes 2019,
//! Mehrtash et al. 2020). It was fitted on the figures of one pass set, the
//! **base passes**: the first `members` members, unflipped and deterministic.
//! The features of a study are always those of its base passes, whatever else
//! the profile runs: a profile that adds mirror flips (the GPU `full` profile)
//! gets its mask from all its passes and the same estimate as the profile
//! without them, so one estimator and one calibrated bound serve both, and the
//! figures that fitted them stay the figures it is judged on. A run whose base
//! pass set differs (fewer members, MC dropout on) gets no estimate, and
//! routing reads that as unknown.
//!
//! `report.json` always carries every catalog feature (`quality_features`),
//! whether or not an estimator runs: the training script reads them from
//! there, so the estimator is fitted on exactly the numbers it later receives.

mod estimator;
mod features;
mod image_metrics;

pub use estimator::{QualityEstimate, QualityEstimator, QualityEstimatorSpec, StructureEstimate};
pub use features::{FeatureInputs, QualityFeatures, feature_names};
pub use image_metrics::{ImageMetrics, PairContrast, StructureIntensity};
