//! Percentile clip and rescale: values at or below the `lower` percentile of the
//! masked voxels map to 0, at or above the `upper` one to 1, linearly between.
//! Percentiles use numpy's default "linear" definition. intensity-normalization
//! has no such method: the reference is `np.clip((x - p_l) / (p_u - p_l), 0, 1)`.

use serde::{Deserialize, Serialize};

use super::HarmonizeError;
use crate::stats::percentiles_in_place;

/// The learned bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentileClip {
    pub lower_value: f64,
    pub upper_value: f64,
}

pub(crate) fn validate(lower: f64, upper: f64) -> Result<(), HarmonizeError> {
    let ok = |p: f64| (0.0..=100.0).contains(&p);
    if !ok(lower) || !ok(upper) {
        return Err(HarmonizeError::BadParameter(format!("percentiles {lower} and {upper} must lie in 0..=100")));
    }
    if lower >= upper {
        return Err(HarmonizeError::BadParameter(format!("lower percentile {lower} must be below upper {upper}")));
    }
    Ok(())
}

/// The two percentiles of finite `values` (reordered in place); `None` when
/// they coincide, where the rescale would divide by zero.
pub fn fit(values: &mut [f32], lower: f64, upper: f64) -> Option<PercentileClip> {
    let p = percentiles_in_place(values, &[lower, upper]).ok()?;
    let (&lower_value, &upper_value) = (p.first()?, p.get(1)?);
    (upper_value > lower_value).then_some(PercentileClip { lower_value, upper_value })
}

impl PercentileClip {
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        ((x - self.lower_value) / (self.upper_value - self.lower_value)).clamp(0.0, 1.0)
    }
}
