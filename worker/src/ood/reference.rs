//! The training distribution of the signals, and fitting it on training volumes.

use imaging::Volume;
use serde::{Deserialize, Serialize};

use super::error::OodError;
use super::stats::{Bins, ImageStats, image_stats, js_distance};

/// Training distribution of one scalar signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarReference {
    pub mean: f64,
    /// One unit of distance: the training standard deviation, floored (module docs).
    pub spread: f64,
}

/// The pooled training histogram on fixed bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramReference {
    /// First and last bin edge, harmonized intensity units; bins are equal-width.
    pub lo: f64,
    pub hi: f64,
    /// Mean of the training volumes' normalized histograms; sums to 1.
    pub probabilities: Vec<f64>,
    /// One unit of distance: the RMS JS distance of the training histograms to `probabilities`, floored.
    pub spread: f64,
}

/// What "in distribution" means for a model (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodReference {
    pub histogram: HistogramReference,
    /// The foreground's volume in mL: the brain's size, whatever field of view holds it.
    pub foreground_volume_ml: ScalarReference,
    pub noise_ratio: ScalarReference,
    /// Training volumes the reference was fitted on.
    pub volumes: usize,
}

/// Bins and spread floors for [`OodReference::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub lo: f64,
    pub hi: f64,
    pub bins: usize,
    /// Smallest spreads; defaults 0.05 (JS distance), 0.1 × the mean (foreground volume: adult
    /// brains differ by about that much), 0.02 (noise ratio).
    /// Measured on the MNI T1 z-scored, 40 bins on [−5, 5], against a reference
    /// fitted on it alone: 1 % Gaussian noise and a 1.1 gain move the JS
    /// distance by 0.026, the noise ratio by 0.0056 and the fraction by 0.00015,
    /// all within one unit (tests/ood.rs prints them). Bins must be wider than
    /// the training data's intensity quantization: at 100 bins (0.1 sd) the same
    /// change gives a JS distance of 0.060, the template's quantization spikes
    /// being smoothed away by the noise.
    pub min_histogram_spread: f64,
    /// Relative to the mean foreground volume.
    pub min_volume_spread_fraction: f64,
    pub min_noise_spread: f64,
}

impl FitOptions {
    /// `bins` equal-width bins on `[lo, hi]` and the default spread floors.
    pub fn new(lo: f64, hi: f64, bins: usize) -> Self {
        FitOptions { lo, hi, bins, min_histogram_spread: 0.05, min_volume_spread_fraction: 0.1, min_noise_spread: 0.02 }
    }
}

/// Most bins a reference may have (refused before allocating).
const MAX_BINS: usize = 1 << 16;

fn check_positive(name: &str, v: f64) -> Result<(), OodError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(OodError::InvalidReference(format!("{name} is {v}, not a positive finite number")))
    }
}

fn check_bins(lo: f64, hi: f64, bins: usize) -> Result<Bins, OodError> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(OodError::InvalidReference(format!("bin range [{lo}, {hi}] is empty or not finite")));
    }
    if !(1..=MAX_BINS).contains(&bins) {
        return Err(OodError::InvalidReference(format!("{bins} bins, not in 1..={MAX_BINS}")));
    }
    Ok(Bins { lo, hi, count: bins })
}

/// Population mean and standard deviation (a spread, not an estimate of one).
fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

impl OodReference {
    /// Checks a reference read from a file: bins, probabilities summing to 1
    /// (within 1e-6), positive finite spreads, finite means.
    pub fn validate(&self) -> Result<(), OodError> {
        let h = &self.histogram;
        check_bins(h.lo, h.hi, h.probabilities.len())?;
        if h.probabilities.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(OodError::InvalidReference("histogram probabilities must be finite and ≥ 0".into()));
        }
        let sum: f64 = h.probabilities.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(OodError::InvalidReference(format!("histogram probabilities sum to {sum}, not 1")));
        }
        check_positive("histogram.spread", h.spread)?;
        for (name, s) in [("foreground_volume_ml", &self.foreground_volume_ml), ("noise_ratio", &self.noise_ratio)] {
            if !s.mean.is_finite() {
                return Err(OodError::InvalidReference(format!("{name}.mean is {}", s.mean)));
            }
            check_positive(&format!("{name}.spread"), s.spread)?;
        }
        Ok(())
    }

    pub(crate) fn bins(&self) -> Result<Bins, OodError> {
        check_bins(self.histogram.lo, self.histogram.hi, self.histogram.probabilities.len())
    }

    /// Fits the reference on harmonized training volumes and their foreground masks.
    pub fn fit(samples: &[(&Volume<f32>, &Volume<u8>)], options: &FitOptions) -> Result<Self, OodError> {
        if samples.is_empty() {
            return Err(OodError::NoTrainingVolumes);
        }
        let bins = check_bins(options.lo, options.hi, options.bins)?;
        for (name, v) in [
            ("min_histogram_spread", options.min_histogram_spread),
            ("min_volume_spread_fraction", options.min_volume_spread_fraction),
            ("min_noise_spread", options.min_noise_spread),
        ] {
            check_positive(name, v)?;
        }
        let stats: Vec<ImageStats> = samples.iter().map(|(v, m)| image_stats(v, m, bins)).collect::<Result<_, _>>()?;
        let n = stats.len() as f64;
        let mut pooled = vec![0.0; options.bins];
        for s in &stats {
            pooled.iter_mut().zip(&s.histogram).for_each(|(p, h)| *p += h / n);
        }
        let js_rms = (stats.iter().map(|s| js_distance(&s.histogram, &pooled).powi(2)).sum::<f64>() / n).sqrt();
        let (volume_mean, volume_std) = mean_std(stats.iter().map(|s| s.foreground_volume_ml));
        let noise: Vec<f64> = stats.iter().filter_map(|s| s.noise_ratio).collect();
        if noise.is_empty() {
            return Err(OodError::InvalidReference("no training volume has a defined noise ratio".into()));
        }
        let (noise_mean, noise_std) = mean_std(noise.iter().copied());
        Ok(OodReference {
            histogram: HistogramReference {
                lo: options.lo,
                hi: options.hi,
                probabilities: pooled,
                spread: js_rms.max(options.min_histogram_spread),
            },
            foreground_volume_ml: ScalarReference {
                mean: volume_mean,
                spread: volume_std.max(options.min_volume_spread_fraction * volume_mean.abs()).max(f64::MIN_POSITIVE),
            },
            noise_ratio: ScalarReference { mean: noise_mean, spread: noise_std.max(options.min_noise_spread) },
            volumes: samples.len(),
        })
    }
}
