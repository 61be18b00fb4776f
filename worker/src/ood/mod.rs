//! Out-of-distribution indicators: how far a study's image statistics are
//! from those of the model's training data.
//!
//! Owns the reference (the training distribution of a few image statistics,
//! an independent serde struct), fitting it on training volumes, and
//! comparing one study with it. It does not harmonize, mask or resample (the
//! caller passes the harmonized volume and its foreground, in the grid the
//! reference was fitted in) and does not decide routing ([`crate::routing`]
//! compares the score with the model's `ood_score_max`). A model folder
//! carries its reference as the manifest's `[ood]` table, required whenever
//! `routing.ood_score_max` is set.
//!
//! # Signals
//! All over the foreground voxels (mask ≠ 0) with finite intensities:
//! - `intensity_histogram`: the Jensen–Shannon distance (the square root of the
//!   base-2 JS divergence; a metric in [0, 1], Endres & Schindelin 2003,
//!   `scipy.spatial.distance.jensenshannon(p, q, base=2)`) between the
//!   harmonized intensity histogram and the reference's, on the reference's
//!   fixed equal-width bins; values below the first edge count in the first bin
//!   and values above the last in the last, so a shifted scan piles its mass
//!   into an end bin instead of vanishing. JS rather than Wasserstein-1 because
//!   it is bounded and needs no ground metric, so one spread fits every
//!   harmonization range; it is finite even where one histogram is zero,
//!   unlike Kullback–Leibler.
//! - `foreground_volume_ml`: the foreground's volume in millilitres (a
//!   non-brain scan, a partial brain or a child's head changes it). A volume,
//!   not a fraction of the field of view: padding or cropping the background
//!   around the same head must not move the score (an earlier fraction-of-grid
//!   signal sent a zero-padded clean scan to review).
//! - `noise_ratio`: `sqrt(δ² / (2 s²))` with `δ²` the mean squared difference
//!   between foreground voxels adjacent along the first axis and `s²` the
//!   foreground variance: von Neumann's (1941) successive-difference ratio,
//!   the difference-based noise estimate. About 1 for white noise, near 0 for
//!   a smooth image; invariant to any affine intensity change, so it measures
//!   noise relative to contrast whatever the harmonization. Undefined (null,
//!   left out of the score) when the foreground has no variance or no adjacent pair.
//!
//! # Score
//! Each signal gets a distance in units of the reference's spread: scalars
//! `|value − mean| / spread`, the histogram `JS distance / spread`, where the
//! spread is the training set's standard deviation (for the histogram, the RMS
//! JS distance of the training histograms to their pooled histogram), floored
//! by [`FitOptions`] so that a reference fitted on one or a few volumes does
//! not make every small difference infinite. [`OodAssessment::score`] is the
//! largest distance: one signal far outside the training data is enough.

mod assess;
mod error;
mod reference;
mod stats;

pub use assess::{OodAssessment, Signal, assess};
pub use error::OodError;
pub use reference::{FitOptions, HistogramReference, OodReference, ScalarReference};

#[cfg(test)]
mod tests;
