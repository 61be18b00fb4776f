//! Z-score: (x − μ) / σ with the mean and population standard deviation of the
//! masked voxels, as intensity-normalization 3.0.1's `ZScoreNormalizer`
//! (`np.mean`, `np.std` with `ddof=0`).

use serde::{Deserialize, Serialize};

use crate::stats::{masked_mean_std, mean_std};

/// The learned statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    pub mean: f64,
    pub std: f64,
}

/// μ and σ of finite `values`; `None` when σ is 0 (or there are no values),
/// where intensity-normalization raises "standard deviation is zero".
pub fn fit(values: &[f32]) -> Option<ZScore> {
    let (mean, std) = mean_std(values);
    (std > 0.0 && std.is_finite()).then_some(ZScore { mean, std })
}

/// [`fit`] over the finite voxels of `data` where `mask` is non-zero, without
/// collecting them. `Err(true)` when no voxel qualifies, `Err(false)` when σ is 0.
pub fn fit_masked(data: &[f32], mask: &[u8]) -> Result<ZScore, bool> {
    let (_, mean, std) = masked_mean_std(data, mask).ok_or(true)?;
    if std > 0.0 && std.is_finite() { Ok(ZScore { mean, std }) } else { Err(false) }
}

impl ZScore {
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.mean) / self.std
    }
}
