//! Intensity harmonization: maps a scan's intensities onto a common scale
//! before inference, with the method and its parameters chosen in the config.
//!
//! Owns the method choice ([`HarmonizeMethod`], read from the `[harmonize]`
//! table of the config, see `config/harmonization.toml`), resolving the mask
//! the statistics are taken in, and applying the transform. The methods:
//!
//! | `method`        | statistics (within the mask)                          | output                                  |
//! |-----------------|-------------------------------------------------------|-----------------------------------------|
//! | `"zscore"`      | mean μ, population std σ                              | (x − μ) / σ                             |
//! | `"percentile"`  | p_lower, p_upper (numpy "linear"; 0.5 / 99.5)         | clip((x − p_l) / (p_u − p_l), 0, 1)     |
//! | `"whitestripe"` | μ, σ of the white stripe (Shinohara et al. 2014)      | (x − μ) / σ                             |
//! | `"nyul"`        | 11 landmarks (percentiles 1, 10 … 90, 99)             | piecewise-linear onto the learned scale |
//!
//! The statistics and the transforms match **intensity-normalization 3.0.1**
//! (`ZScoreNormalizer`, `WhiteStripeNormalizer`, `NyulNormalizer`) given the same
//! mask; see each submodule and `docs/harmonization.md`. Like that package, the
//! transform is applied to every voxel, inside and outside the mask.
//!
//! Masks: the caller's mask (non-zero = inside), or by default the foreground
//! mask of [`crate::mask`] (intensity-normalization's default is `data > 0`).
//! NaN/±Inf voxels are ignored by every statistic and copied unchanged to the output.
//!
//! Does not own reading volumes or the foreground-mask algorithm.

pub mod nyul;
pub mod percentile;
pub mod whitestripe;
pub mod zscore;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mask::{MaskError, foreground_mask};
use crate::stats::finite_values;
use crate::volume::Volume;

pub use nyul::{NyulParams, NyulScale};
pub use whitestripe::Contrast;

/// The `[harmonize]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarmonizeConfig {
    pub harmonize: HarmonizeMethod,
}

/// A harmonization method and its parameters, tagged by `method`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum HarmonizeMethod {
    /// (x − μ) / σ with μ and the population σ of the masked voxels
    /// (intensity-normalization's `ZScoreNormalizer`).
    #[serde(alias = "z_score")]
    ZScore,
    /// Clip to the `lower`/`upper` percentiles of the masked voxels (numpy
    /// "linear" definition) and rescale that range to [0, 1]. Defaults 0.5 / 99.5.
    Percentile {
        #[serde(default = "default_lower")]
        lower: f64,
        #[serde(default = "default_upper")]
        upper: f64,
    },
    /// WhiteStripe (Shinohara et al., NeuroImage: Clinical 2014): z-score by the
    /// normal-appearing white matter found around the WM mode of a kernel density
    /// estimate; `width` is the quantile half-width of the stripe (default 0.05).
    #[serde(alias = "white_stripe")]
    WhiteStripe {
        #[serde(default)]
        contrast: Contrast,
        #[serde(default = "default_width")]
        width: f64,
    },
    /// Nyúl–Udupa piecewise-linear histogram standardization onto a scale learned
    /// by [`nyul::fit`] and saved with [`NyulScale::save`].
    Nyul { scale_file: PathBuf },
}

fn default_lower() -> f64 {
    0.5
}
fn default_upper() -> f64 {
    99.5
}
fn default_width() -> f64 {
    0.05
}

/// Errors harmonizing a volume or handling a Nyúl scale.
#[derive(Debug, thiserror::Error)]
pub enum HarmonizeError {
    #[error("mask of volume {0:?} selects no finite voxels")]
    EmptyMask(String),
    #[error("intensities of volume {0:?} are constant within the mask")]
    ConstantIntensities(String),
    #[error("invalid harmonization parameter: {0}")]
    BadParameter(String),
    #[error("mask shape {mask:?} does not match volume {source_name:?} of shape {volume:?}")]
    MaskShape { source_name: String, mask: [usize; 3], volume: [usize; 3] },
    #[error("foreground mask failed: {0}")]
    Mask(#[from] MaskError),
    #[error("white stripe of volume {0:?} is empty")]
    EmptyStripe(String),
    #[error("nyul landmarks of volume {source_name:?} are not strictly increasing: {landmarks:?}")]
    DegenerateLandmarks { source_name: String, landmarks: Vec<f64> },
    #[error("harmonized volume: {0}")]
    Volume(#[from] crate::volume::VolumeError),
    #[error("nyul fit needs at least one volume")]
    NoTrainingVolumes,
    #[error("cannot read nyul scale file {path}: {reason}")]
    ScaleFileIo { path: PathBuf, reason: String },
    #[error("invalid nyul scale file {path}: {reason}")]
    InvalidScaleFile { path: PathBuf, reason: String },
}

impl HarmonizeMethod {
    /// Checks the parameters without touching any file.
    pub fn validate(&self) -> Result<(), HarmonizeError> {
        match *self {
            HarmonizeMethod::ZScore | HarmonizeMethod::Nyul { .. } => Ok(()),
            HarmonizeMethod::Percentile { lower, upper } => percentile::validate(lower, upper),
            HarmonizeMethod::WhiteStripe { width, .. } => whitestripe::validate(width),
        }
    }

    /// Validates the parameters and loads what the method needs (the Nyúl scale),
    /// once, for harmonizing many volumes.
    pub fn prepare(&self) -> Result<Harmonizer, HarmonizeError> {
        self.validate()?;
        Ok(match self {
            HarmonizeMethod::ZScore => Harmonizer::ZScore,
            &HarmonizeMethod::Percentile { lower, upper } => Harmonizer::Percentile { lower, upper },
            &HarmonizeMethod::WhiteStripe { contrast, width } => Harmonizer::WhiteStripe { contrast, width },
            HarmonizeMethod::Nyul { scale_file } => Harmonizer::Nyul(NyulScale::load(scale_file)?),
        })
    }
}

/// A validated method, ready to apply (the Nyúl scale already loaded).
#[derive(Debug, Clone, PartialEq)]
pub enum Harmonizer {
    ZScore,
    Percentile { lower: f64, upper: f64 },
    WhiteStripe { contrast: Contrast, width: f64 },
    Nyul(NyulScale),
}

impl Harmonizer {
    /// Harmonizes `vol` with statistics taken within `mask` (the foreground mask
    /// when `None`).
    pub fn apply(&self, vol: &Volume<f32>, mask: Option<&Volume<u8>>) -> Result<Volume<f32>, HarmonizeError> {
        let src = || vol.meta.source.clone();
        if let Harmonizer::ZScore = self {
            // Mean and σ need no copy of the masked voxels.
            let m = resolve_mask(vol, mask)?;
            let z = zscore::fit_masked(vol.data(), m.data()).map_err(|empty| {
                if empty { HarmonizeError::EmptyMask(src()) } else { HarmonizeError::ConstantIntensities(src()) }
            })?;
            return map_finite(vol, |x| z.apply(x));
        }
        let values = masked_values(vol, mask)?;
        match self {
            Harmonizer::ZScore => {
                let z = zscore::fit(&values).ok_or_else(|| HarmonizeError::ConstantIntensities(src()))?;
                map_finite(vol, |x| z.apply(x))
            }
            &Harmonizer::Percentile { lower, upper } => {
                let mut values = values;
                let p = percentile::fit(&mut values, lower, upper)
                    .ok_or_else(|| HarmonizeError::ConstantIntensities(src()))?;
                map_finite(vol, |x| p.apply(x))
            }
            &Harmonizer::WhiteStripe { contrast, width } => {
                let ws = whitestripe::fit(values, contrast, width, &vol.meta.source)?;
                map_finite(vol, |x| ws.apply(x))
            }
            Harmonizer::Nyul(scale) => {
                let mut values = values;
                let map = scale.mapping_for(&mut values, &vol.meta.source)?;
                map_finite(vol, |x| map.apply(x))
            }
        }
    }
}

/// Harmonizes `vol` with `method`, taking statistics within `mask` (the
/// foreground mask of [`crate::mask::foreground_mask`] when `None`).
pub fn apply(
    vol: &Volume<f32>,
    method: &HarmonizeMethod,
    mask: Option<&Volume<u8>>,
) -> Result<Volume<f32>, HarmonizeError> {
    method.prepare()?.apply(vol, mask)
}

/// The caller's mask after a shape check, or the foreground mask.
fn resolve_mask<'a>(
    vol: &Volume<f32>,
    mask: Option<&'a Volume<u8>>,
) -> Result<std::borrow::Cow<'a, Volume<u8>>, HarmonizeError> {
    match mask {
        Some(m) if m.dims() != vol.dims() => {
            Err(HarmonizeError::MaskShape { source_name: vol.meta.source.clone(), mask: m.dims(), volume: vol.dims() })
        }
        Some(m) => Ok(std::borrow::Cow::Borrowed(m)),
        None => Ok(std::borrow::Cow::Owned(foreground_mask(vol)?)),
    }
}

/// The finite voxels inside the resolved mask; an empty selection is an error.
pub(crate) fn masked_values(vol: &Volume<f32>, mask: Option<&Volume<u8>>) -> Result<Vec<f32>, HarmonizeError> {
    let m = resolve_mask(vol, mask)?;
    let values = finite_values(vol.data(), Some(m.data()));
    if values.is_empty() {
        return Err(HarmonizeError::EmptyMask(vol.meta.source.clone()));
    }
    Ok(values)
}

/// Applies `f` (in `f64`) to every finite voxel; NaN and ±Inf are copied unchanged.
pub(crate) fn map_finite(vol: &Volume<f32>, f: impl Fn(f64) -> f64 + Sync) -> Result<Volume<f32>, HarmonizeError> {
    // One parallel write of a fresh buffer: cheaper than cloning the input and
    // overwriting it.
    let data: Vec<f32> = vol
        .data()
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&x| if x.is_finite() { f(f64::from(x)) as f32 } else { x })
        .collect();
    Ok(vol.with_data(data)?)
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<String, HarmonizeError> {
    std::fs::read_to_string(path)
        .map_err(|e| HarmonizeError::ScaleFileIo { path: path.to_path_buf(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    fn vol(data: Vec<f32>) -> Volume<f32> {
        let n = data.len();
        Volume::new([n, 1, 1], data, Affine::identity(), SourceMeta::default()).expect("shape")
    }

    #[test]
    fn methods_deserialize_by_name_with_defaults() {
        let m: HarmonizeMethod = serde_json::from_str(r#"{"method": "percentile"}"#).expect("valid");
        assert_eq!(m, HarmonizeMethod::Percentile { lower: 0.5, upper: 99.5 });
        let m: HarmonizeMethod = serde_json::from_str(r#"{"method": "whitestripe"}"#).expect("valid");
        assert_eq!(m, HarmonizeMethod::WhiteStripe { contrast: Contrast::T1, width: 0.05 });
        let m: HarmonizeMethod =
            serde_json::from_str(r#"{"method": "whitestripe", "contrast": "t2", "width": 0.1}"#).expect("valid");
        assert_eq!(m, HarmonizeMethod::WhiteStripe { contrast: Contrast::T2, width: 0.1 });
        let m: HarmonizeMethod = serde_json::from_str(r#"{"method": "zscore"}"#).expect("valid");
        assert_eq!(m, HarmonizeMethod::ZScore);
        assert!(serde_json::from_str::<HarmonizeMethod>(r#"{"method": "nyul"}"#).is_err());
        assert!(serde_json::from_str::<HarmonizeMethod>(r#"{"method": "histogram"}"#).is_err());
    }

    #[test]
    fn bad_parameters_are_refused_before_any_work() {
        let v = vol(vec![1.0, 2.0, 3.0]);
        let bad = [
            HarmonizeMethod::Percentile { lower: 99.0, upper: 1.0 },
            HarmonizeMethod::Percentile { lower: -1.0, upper: 50.0 },
            HarmonizeMethod::Percentile { lower: 1.0, upper: 100.5 },
            HarmonizeMethod::WhiteStripe { contrast: Contrast::T1, width: 0.0 },
            HarmonizeMethod::WhiteStripe { contrast: Contrast::T1, width: f64::NAN },
        ];
        for m in bad {
            assert!(matches!(apply(&v, &m, None), Err(HarmonizeError::BadParameter(_))), "{m:?}");
        }
    }

    #[test]
    fn zscore_of_a_closed_form_case() {
        // Masked voxels 2, 4, 6: μ = 4, σ = sqrt(8/3); the unmasked voxel and NaN are still mapped / kept.
        let v = vol(vec![2.0, 4.0, 6.0, 10.0, f32::NAN]);
        let m = v.with_data(vec![1u8, 1, 1, 0, 1]).expect("shape");
        let out = apply(&v, &HarmonizeMethod::ZScore, Some(&m)).expect("harmonized");
        let s = (8.0f64 / 3.0).sqrt();
        let want = [-2.0 / s, 0.0, 2.0 / s, 6.0 / s];
        for (got, want) in out.data().iter().zip(want) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(out.data()[4].is_nan());
    }

    #[test]
    fn percentile_clips_and_rescales() {
        // 0..=100: p10 = 10, p90 = 90 exactly.
        let v = vol((0..=100).map(|i| i as f32).collect());
        let m = v.with_data(vec![1u8; 101]).expect("shape");
        let out = apply(&v, &HarmonizeMethod::Percentile { lower: 10.0, upper: 90.0 }, Some(&m)).expect("ok");
        assert_eq!(out.data()[0], 0.0);
        assert_eq!(out.data()[50], 0.5);
        assert_eq!(out.data()[100], 1.0);
    }

    #[test]
    fn empty_constant_and_mismatched_masks_are_errors() {
        let v = vol(vec![1.0, 2.0, 3.0]);
        let none = v.with_data(vec![0u8; 3]).expect("shape");
        assert!(matches!(apply(&v, &HarmonizeMethod::ZScore, Some(&none)), Err(HarmonizeError::EmptyMask(_))));
        let c = vol(vec![5.0; 3]);
        let all = c.with_data(vec![1u8; 3]).expect("shape");
        assert!(matches!(apply(&c, &HarmonizeMethod::ZScore, Some(&all)), Err(HarmonizeError::ConstantIntensities(_))));
        let pct = HarmonizeMethod::Percentile { lower: 0.5, upper: 99.5 };
        assert!(matches!(apply(&c, &pct, Some(&all)), Err(HarmonizeError::ConstantIntensities(_))));
        let wrong = Volume::new([1, 3, 1], vec![1u8; 3], Affine::identity(), SourceMeta::default()).expect("shape");
        assert!(matches!(apply(&v, &HarmonizeMethod::ZScore, Some(&wrong)), Err(HarmonizeError::MaskShape { .. })));
    }

    mod invariants {
        use super::*;
        use proptest::prelude::*;

        fn spread(values: &[f32]) -> bool {
            let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            hi - lo > 1e-2
        }

        proptest! {
            #[test]
            fn zscore_gives_masked_mean_0_and_std_1(values in prop::collection::vec(-1e3f32..1e3, 3..300)) {
                prop_assume!(spread(&values));
                let v = vol(values);
                let all = v.with_data(vec![1u8; v.len()]).expect("shape");
                let out = apply(&v, &HarmonizeMethod::ZScore, Some(&all)).expect("non-constant");
                let (mean, std) = crate::stats::mean_std(out.data());
                prop_assert!(mean.abs() < 1e-4, "mean {mean}");
                prop_assert!((std - 1.0).abs() < 1e-4, "std {std}");
            }

            #[test]
            fn percentile_output_lies_in_0_1(
                values in prop::collection::vec(-1e4f32..1e4, 3..300),
                lower in 0.0f64..50.0,
                upper in 50.5f64..=100.0,
            ) {
                prop_assume!(spread(&values));
                let v = vol(values);
                let all = v.with_data(vec![1u8; v.len()]).expect("shape");
                match apply(&v, &HarmonizeMethod::Percentile { lower, upper }, Some(&all)) {
                    Ok(out) => prop_assert!(out.data().iter().all(|x| (0.0..=1.0).contains(x))),
                    // Many ties can put both percentiles on one value.
                    Err(e) => prop_assert!(matches!(e, HarmonizeError::ConstantIntensities(_)), "{e}"),
                }
            }

            #[test]
            fn nyul_apply_is_monotone(
                train in prop::collection::vec(0f32..1e3, 50..300),
                target in prop::collection::vec(0f32..1e3, 50..300),
                mut probes in prop::collection::vec(-2e3f64..3e3, 2..100),
            ) {
                let t = vol(train);
                let scale = match nyul::fit(&[(t.clone(), Some(t.with_data(vec![1u8; t.len()]).expect("shape")))], &NyulParams::default()) {
                    Ok(s) => s,
                    Err(_) => return Ok(()), // ties: no strictly increasing scale to test
                };
                let mut values = target;
                if let Ok(map) = scale.mapping_for(&mut values, "target") {
                    probes.sort_by(f64::total_cmp);
                    let out: Vec<f64> = probes.iter().map(|&x| map.apply(x)).collect();
                    prop_assert!(out.windows(2).all(|w| w[0] <= w[1]), "{probes:?} -> {out:?}");
                }
            }

            #[test]
            fn non_finite_voxels_never_reach_statistics_and_pass_through(
                values in prop::collection::vec(-1e3f32..1e3, 3..200),
                holes in prop::collection::vec((0usize..200, 0u8..3), 1..20),
            ) {
                prop_assume!(spread(&values));
                let mut dirty_data = values;
                for &(at, kind) in &holes {
                    let n = dirty_data.len();
                    dirty_data[at % n] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][usize::from(kind)];
                }
                let dirty = vol(dirty_data.clone());
                let finite: Vec<f32> = dirty_data.iter().copied().filter(|v| v.is_finite()).collect();
                prop_assume!(finite.len() >= 2 && spread(&finite));
                let all = dirty.with_data(vec![1u8; dirty.len()]).expect("shape");
                let out = apply(&dirty, &HarmonizeMethod::ZScore, Some(&all)).expect("finite voxels vary");
                let z = zscore::fit(&finite).expect("non-constant");
                for (o, d) in out.data().iter().zip(&dirty_data) {
                    if d.is_finite() {
                        prop_assert!((f64::from(*o) - z.apply(f64::from(*d))).abs() < 1e-4);
                    } else {
                        prop_assert!(o.to_bits() == d.to_bits());
                    }
                }
                let s = crate::stats::summarize(&dirty, &[50.0]).expect("finite voxels");
                prop_assert!(s.mean.is_finite() && s.std.is_finite() && s.percentiles[0].1.is_finite());
                prop_assert_eq!(s.count, finite.len());
            }
        }
    }
}
