//! WhiteStripe (Shinohara et al., "Statistical normalization techniques for
//! magnetic resonance imaging", NeuroImage: Clinical 6, 2014), as
//! **intensity-normalization 3.0.1**'s `WhiteStripeNormalizer` computes it:
//!
//! 1. the white-matter mode, from a Gaussian KDE (`scipy.stats.gaussian_kde`,
//!    Scott's bandwidth: σ_kde = sd(ddof=1) · n^(−1/5)) evaluated on an 80-point
//!    grid from the minimum to the maximum of the masked voxels:
//!    - `t1`: voxels above the 96th percentile are dropped first, and the mode is
//!      the **last** strict local maximum of the 80 pdf values
//!      (`scipy.signal.argrelmax`; the global maximum if there is none);
//!    - `t2` (also `flair`): the grid point of the global maximum (`np.argmax`);
//! 2. q = fraction of masked voxels below the mode; the stripe is the voxels
//!    strictly between the `np.quantile` values at max(q − width, 0) and
//!    min(q + width, 1);
//! 3. output (x − μ) / σ with the stripe's mean and population std.
//!
//! Earlier intensity-normalization releases (2.x) smoothed a histogram instead
//! of an 80-point KDE grid and found modes differently; this module matches 3.0.1.
//! One deliberate difference: 3.0.1 thresholds `data * mask`, so when the lower
//! stripe bound is negative, voxels outside the mask (zeroed) join the stripe;
//! here the stripe is always inside the mask (identical whenever the bound is ≥ 0,
//! as for any magnitude image).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::HarmonizeError;
use crate::stats::{mean_std, percentile_sorted, quantile_sorted};

/// Which tissue mode is the white matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contrast {
    /// WM is the brightest tissue: last KDE mode below the 96th percentile.
    #[default]
    T1,
    /// WM is the largest tissue class: the highest KDE mode.
    #[serde(alias = "flair")]
    T2,
}

/// The fitted stripe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WhiteStripe {
    /// The white-matter mode (a KDE grid point).
    pub mode: f64,
    /// Intensity bounds of the stripe (exclusive).
    pub lower_value: f64,
    pub upper_value: f64,
    pub stripe_voxels: usize,
    pub mean: f64,
    pub std: f64,
}

impl WhiteStripe {
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.mean) / self.std
    }
}

/// intensity-normalization evaluates its KDE on 80 grid points.
const GRID: usize = 80;
/// exp(−z²/2) is exactly 0.0 in f64 beyond z ≈ 38.6: summing only within 40 σ
/// gives the same pdf as summing over every voxel.
const CUTOFF_SIGMAS: f64 = 40.0;

pub(crate) fn validate(width: f64) -> Result<(), HarmonizeError> {
    let in_range = width > 0.0 && width <= 1.0;
    if !in_range {
        return Err(HarmonizeError::BadParameter(format!("white stripe width {width} must be in (0, 1]")));
    }
    Ok(())
}

/// Fits the stripe to the finite masked voxels `values`.
pub fn fit(mut values: Vec<f32>, contrast: Contrast, width: f64, source: &str) -> Result<WhiteStripe, HarmonizeError> {
    validate(width)?;
    values.par_sort_unstable_by(f32::total_cmp);
    let sorted = values.as_slice();
    let constant = || HarmonizeError::ConstantIntensities(source.to_string());
    let mode = match contrast {
        Contrast::T1 => {
            let tail = percentile_sorted(sorted, 96.0);
            let kept = &sorted[..sorted.partition_point(|&v| f64::from(v) <= tail)];
            let pdf = Kde::new(kept).ok_or_else(constant)?;
            pdf.last_mode()
        }
        Contrast::T2 => Kde::new(sorted).ok_or_else(constant)?.largest_mode(),
    };
    let n = sorted.len() as f64;
    let q = sorted.partition_point(|&v| f64::from(v) < mode) as f64 / n;
    let lower_value = quantile_sorted(sorted, (q - width).max(0.0));
    let upper_value = quantile_sorted(sorted, (q + width).min(1.0));
    let start = sorted.partition_point(|&v| f64::from(v) <= lower_value);
    let end = sorted.partition_point(|&v| f64::from(v) < upper_value);
    let stripe = sorted.get(start..end).unwrap_or(&[]);
    if stripe.is_empty() {
        return Err(HarmonizeError::EmptyStripe(source.to_string()));
    }
    let (mean, std) = mean_std(stripe);
    let spread = std > 0.0;
    if !spread {
        return Err(constant());
    }
    Ok(WhiteStripe { mode, lower_value, upper_value, stripe_voxels: stripe.len(), mean, std })
}

/// `gaussian_kde(values)(np.linspace(min, max, 80))`, up to its constant factor.
struct Kde {
    grid: Vec<f64>,
    pdf: Vec<f64>,
}

impl Kde {
    /// `None` for fewer than two values or zero variance (scipy raises there).
    fn new(sorted: &[f32]) -> Option<Kde> {
        let (&first, &last) = (sorted.first()?, sorted.last()?);
        let n = sorted.len();
        if n < 2 || first == last {
            return None;
        }
        let (mean, _) = mean_std(sorted);
        let ss: f64 = sorted.par_iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
        // Scott's rule with neff = n; scipy's data covariance is unbiased (ddof = 1).
        let factor = (n as f64).powf(-1.0 / 5.0);
        let var = ss / (n as f64 - 1.0) * factor * factor;
        let sigma = var.sqrt();
        let (lo, hi) = (f64::from(first), f64::from(last));
        // np.linspace: i * step + start, last point = stop.
        let step = (hi - lo) / (GRID - 1) as f64;
        let grid: Vec<f64> = (0..GRID).map(|i| if i == GRID - 1 { hi } else { i as f64 * step + lo }).collect();
        // Equal values contribute identical kernels: sum each distinct value once,
        // weighted by its count (MRI intensities are often integers).
        let runs = distinct_runs(sorted);
        let pdf = grid
            .par_iter()
            .map(|&g| {
                let from = runs.partition_point(|r| r.0 < g - CUTOFF_SIGMAS * sigma);
                let to = runs.partition_point(|r| r.0 <= g + CUTOFF_SIGMAS * sigma);
                runs.get(from..to)
                    .unwrap_or(&[])
                    .iter()
                    .map(|&(x, count)| {
                        let d = g - x;
                        count * (-(d * d) / (2.0 * var)).exp()
                    })
                    .sum::<f64>()
            })
            .collect();
        Some(Kde { grid, pdf })
    }

    /// `grid[argrelmax(pdf)[-1]]`, or the global maximum when no strict interior
    /// local maximum exists.
    fn last_mode(&self) -> f64 {
        let last_peak = (1..GRID - 1).rev().find(|&i| self.pdf[i] > self.pdf[i - 1] && self.pdf[i] > self.pdf[i + 1]);
        match last_peak {
            Some(i) => self.grid[i],
            None => self.largest_mode(),
        }
    }

    /// `grid[np.argmax(pdf)]`: the first of equal maxima.
    fn largest_mode(&self) -> f64 {
        let mut best = 0;
        for (i, &p) in self.pdf.iter().enumerate() {
            if p > self.pdf[best] {
                best = i;
            }
        }
        self.grid[best]
    }
}

/// `(value, count)` for each distinct value of an ascending slice.
fn distinct_runs(sorted: &[f32]) -> Vec<(f64, f64)> {
    let mut runs: Vec<(f64, f64)> = Vec::new();
    for &v in sorted {
        let v = f64::from(v);
        match runs.last_mut() {
            Some((x, c)) if *x == v => *c += 1.0,
            _ => runs.push((v, 1.0)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated Gaussian-ish clusters (CSF 30, GM 80, WM 120) plus a
    /// bright 3 % tail the T1 variant must ignore.
    fn three_tissues() -> Vec<f32> {
        let mut v = Vec::new();
        for (centre, n) in [(30.0f32, 2000), (80.0, 5000), (120.0, 3000), (250.0, 300)] {
            for i in 0..n {
                // A deterministic triangular spread of ±6 around the centre.
                let u = ((i * 7919) % 1000) as f32 / 1000.0 + ((i * 104_729) % 1000) as f32 / 1000.0 - 1.0;
                v.push(centre + 6.0 * u);
            }
        }
        v
    }

    #[test]
    fn t1_takes_the_last_mode_and_t2_the_largest() {
        let t1 = fit(three_tissues(), Contrast::T1, 0.05, "synthetic").expect("fits");
        assert!((t1.mode - 120.0).abs() < 6.0, "{t1:?}");
        assert!((t1.mean - 120.0).abs() < 3.0, "{t1:?}");
        let t2 = fit(three_tissues(), Contrast::T2, 0.05, "synthetic").expect("fits");
        assert!((t2.mode - 80.0).abs() < 6.0, "{t2:?}");
        assert!(t1.lower_value < t1.upper_value && t1.stripe_voxels > 0);
    }

    #[test]
    fn constant_input_and_bad_width_are_errors() {
        assert!(matches!(fit(vec![7.0; 100], Contrast::T1, 0.05, "c"), Err(HarmonizeError::ConstantIntensities(_))));
        assert!(matches!(fit(three_tissues(), Contrast::T1, -0.1, "w"), Err(HarmonizeError::BadParameter(_))));
    }
}
