//! One study against the reference: the signals and the score.

use imaging::Volume;
use serde::Serialize;

use super::error::OodError;
use super::reference::{OodReference, ScalarReference};
use super::stats::{image_stats, js_distance};

/// One signal of the module docs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// `intensity_histogram`, `foreground_volume_ml` or `noise_ratio`.
    pub name: &'static str,
    /// The study's figure (for the histogram, its JS distance to the reference);
    /// `None` when undefined for this study.
    pub value: Option<f64>,
    /// The reference's figure (its mean; 0 for the histogram distance).
    pub reference: f64,
    /// Distance in units of the reference's spread; `None` when `value` is.
    pub distance: Option<f64>,
}

/// The signals and the score, the largest defined distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OodAssessment {
    pub score: f64,
    pub signals: Vec<Signal>,
}

fn scalar(name: &'static str, value: Option<f64>, r: &ScalarReference) -> Signal {
    Signal { name, value, reference: r.mean, distance: value.map(|v| (v - r.mean).abs() / r.spread) }
}

/// Compares a harmonized `volume` (foreground: `foreground` ≠ 0) with `reference`.
pub fn assess(
    volume: &Volume<f32>,
    foreground: &Volume<u8>,
    reference: &OodReference,
) -> Result<OodAssessment, OodError> {
    reference.validate()?;
    let stats = image_stats(volume, foreground, reference.bins()?)?;
    let js = js_distance(&stats.histogram, &reference.histogram.probabilities);
    let signals = vec![
        Signal {
            name: "intensity_histogram",
            value: Some(js),
            reference: 0.0,
            distance: Some(js / reference.histogram.spread),
        },
        scalar("foreground_volume_ml", Some(stats.foreground_volume_ml), &reference.foreground_volume_ml),
        scalar("noise_ratio", stats.noise_ratio, &reference.noise_ratio),
    ];
    // The histogram distance is always defined, so the score is too.
    let score = signals.iter().filter_map(|s| s.distance).fold(0.0, f64::max);
    Ok(OodAssessment { score, signals })
}
