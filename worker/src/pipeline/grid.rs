//! The two geometric stages of a study: from the scan's own grid into the
//! model's (anti-aliasing when the model asks for it, closest-canonical axes
//! at the manifest's spacing, foreground mask,
//! bias-field correction when the model asks for it, harmonized intensities), and from the model grid back onto the scan's grid
//! (probabilities, label mask, uncertainty maps). Owns no inference.

use imaging::bias::{self, BiasFieldParams};
use imaging::harmonize::Harmonizer;
use imaging::orientation::{Reorientation, plan_canonical};
use imaging::resample::{self, GridLimits, ProbabilityMaps, TargetGrid};
use imaging::{Volume, mask, smooth};
use serde::Serialize;

use super::PipelineError;

/// Voxels of background kept around the foreground's bounding box when the
/// inference grid is cropped: 4 voxels (8 mm at 2 mm), more than the
/// members' 3×3×3 convolutions need to see the brain's edge as in training.
pub const CROP_MARGIN: usize = 4;

/// How a model wants its input prepared (from its manifest; see
/// [`crate::manifest::LoadedModel::input_prep`]).
#[derive(Debug, Clone, Copy)]
pub struct InputPrep<'a> {
    pub spacing_mm: [f64; 3],
    /// Gaussian anti-aliasing of a finer scan before resampling (`[input] anti_aliasing`).
    pub anti_aliasing: bool,
    pub bias_correction: Option<&'a BiasFieldParams>,
    pub harmonizer: &'a Harmonizer,
}

/// The bias field divided out of a study (`report.json`'s `bias_field`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BiasFieldSummary {
    /// Smallest and largest multiplicative field over the foreground.
    pub min: f64,
    pub max: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// A study on the model grid, ready for the engine.
#[derive(Debug, Clone)]
pub struct ModelGridInput {
    /// The model grid: the scan's closest-canonical (RAS) voxel axes, resampled
    /// to the model's spacing; direction cosines are the scan's, so an oblique
    /// or tilted head stays tilted (the models are trained with rotations).
    /// Covers the whole scan.
    pub full_grid: TargetGrid,
    /// Harmonized intensities on `full_grid` (every voxel, as the harmonizer maps them).
    pub full_image: Volume<f32>,
    /// Foreground mask (Otsu, largest component, holes filled) of the resampled
    /// intensities, before harmonization, on `full_grid`; the harmonizer's
    /// statistics and the OOD signals are taken inside it.
    pub foreground: Volume<u8>,
    /// The grid the engine runs on: `full_grid` cropped to the foreground's
    /// bounding box plus [`CROP_MARGIN`] voxels (nnU-Net crops to the non-zero
    /// region the same way). Windows that would see only background are not run;
    /// outside the crop the probabilities are background = 1.
    pub grid: TargetGrid,
    /// Harmonized intensities on `grid`.
    pub image: Volume<f32>,
    /// The field divided out before harmonization, when the model asks for one.
    pub bias_field: Option<BiasFieldSummary>,
}

/// Blurs `native` to the model's resolution when `prep.anti_aliasing`,
/// resamples it (trilinear, 0 outside) onto the model grid at
/// `prep.spacing_mm`, divides out its bias field (when asked), harmonizes it
/// within its foreground, and crops the inference grid to the foreground.
pub fn to_model_grid(
    native: &Volume<f32>,
    prep: &InputPrep<'_>,
    limits: &GridLimits,
) -> Result<ModelGridInput, PipelineError> {
    let InputPrep { spacing_mm, anti_aliasing, bias_correction, harmonizer } = *prep;
    let source = native.meta.source.clone();
    let canonical = plan_canonical(native).map_err(|e| PipelineError::geometry(&source, e))?;
    let full_grid =
        TargetGrid::with_spacing(canonical.canonical_dims(), &canonical.canonical_affine(), spacing_mm, limits)
            .map_err(|e| PipelineError::geometry(&source, e))?;
    let smoothed = if anti_aliasing { Some(anti_alias(native, &canonical, spacing_mm)?) } else { None };
    let resampled = resample::linear(smoothed.as_ref().unwrap_or(native), &full_grid, 0.0)
        .map_err(|e| PipelineError::geometry(&source, e))?;
    drop(smoothed);
    let foreground = mask::foreground(&resampled).map_err(|e| PipelineError::harmonize(&source, e))?.mask;
    let (resampled, bias_field) = match bias_correction {
        None => (resampled, None),
        Some(params) => {
            let field =
                bias::estimate(&resampled, &foreground, params).map_err(|e| PipelineError::harmonize(&source, e))?;
            let corrected = field.correct(&resampled).map_err(|e| PipelineError::harmonize(&source, e))?;
            let (min, max) = field.range();
            (
                corrected,
                Some(BiasFieldSummary { min, max, iterations: field.iterations(), converged: field.converged() }),
            )
        }
    };
    let full_image =
        harmonizer.apply(&resampled, Some(&foreground)).map_err(|e| PipelineError::harmonize(&source, e))?;
    let (start, dims) = foreground_box(&foreground, CROP_MARGIN)
        .ok_or_else(|| PipelineError::harmonize(&source, "the foreground mask is empty"))?;
    let origin = full_grid.affine().apply(start.map(|v| v as f64));
    let mut m = *full_grid.affine().matrix();
    for (r, o) in origin.iter().enumerate() {
        m[(r, 3)] = *o;
    }
    let grid = TargetGrid::new(dims, imaging::Affine::from_matrix(m), limits)
        .map_err(|e| PipelineError::geometry(&source, e))?;
    let image = crop(&full_image, start, dims, *grid.affine())
        .map_err(|e| PipelineError::Internal(format!("{source}: cropping the model grid: {e}")))?;
    Ok(ModelGridInput { full_grid, full_image, foreground, grid, image, bias_field })
}

/// `native` blurred to the model's resolution along each of its voxel axes:
/// the axis that becomes canonical axis `a` is compared with `spacing_mm[a]`.
/// An axis already as coarse as the model's is left alone.
fn anti_alias(
    native: &Volume<f32>,
    canonical: &Reorientation,
    spacing_mm: [f64; 3],
) -> Result<Volume<f32>, PipelineError> {
    let mut target = native.spacing();
    for (a, &src) in canonical.source_axis.iter().enumerate() {
        target[src] = spacing_mm[a];
    }
    let sigma = smooth::anti_aliasing_sigma(native.spacing(), target);
    smooth::gaussian(native, sigma).map_err(|e| PipelineError::harmonize(&native.meta.source, e))
}

/// First voxel and shape of the bounding box of `mask ≠ 0`, grown by `margin`
/// voxels on every side and clipped to the volume; `None` when the mask is empty.
fn foreground_box(mask: &Volume<u8>, margin: usize) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = mask.dims();
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    let mut any = false;
    for k in 0..nz {
        for j in 0..ny {
            let row = &mask.data()[nx * (j + ny * k)..nx * (j + ny * k + 1)];
            let (Some(first), Some(last)) = (row.iter().position(|&v| v != 0), row.iter().rposition(|&v| v != 0))
            else {
                continue;
            };
            any = true;
            for (a, v) in [(0, first), (1, j), (2, k)] {
                lo[a] = lo[a].min(v);
            }
            for (a, v) in [(0, last), (1, j), (2, k)] {
                hi[a] = hi[a].max(v);
            }
        }
    }
    if !any {
        return None;
    }
    let n = mask.dims();
    let start = [0, 1, 2].map(|a| lo[a].saturating_sub(margin));
    let end = [0, 1, 2].map(|a| (hi[a] + margin).min(n[a] - 1));
    Some((start, [0, 1, 2].map(|a| end[a] - start[a] + 1)))
}

/// The sub-block of `vol` starting at `start` with shape `dims`, with `affine`.
fn crop(
    vol: &Volume<f32>,
    start: [usize; 3],
    dims: [usize; 3],
    affine: imaging::Affine,
) -> Result<Volume<f32>, imaging::VolumeError> {
    let [nx, ny, _] = vol.dims();
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in start[2]..start[2] + dims[2] {
        for j in start[1]..start[1] + dims[1] {
            let at = start[0] + nx * (j + ny * k);
            data.extend_from_slice(&vol.data()[at..at + dims[0]]);
        }
    }
    Volume::new(dims, data, affine, vol.meta.clone())
}

/// The engine's results on the scan's own grid.
#[derive(Debug, Clone)]
pub struct NativeMaps {
    /// Argmax of the resampled mean probabilities (the lowest label on a tie).
    pub labels: Volume<u8>,
    /// Predictive entropy, nats.
    pub entropy: Volume<f32>,
    /// Mutual information (epistemic part), nats.
    pub mutual_information: Volume<f32>,
    /// The calibrated voxel probabilities, one volume per class, when asked for
    /// ([`NativeRequest::probabilities`]).
    pub probabilities: Option<Vec<Volume<f32>>>,
}

/// What [`to_native_grid`] takes from the manifest's `[calibration]` and
/// whether it also returns the probabilities.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeRequest<'a> {
    /// `w_c`: the labels are `argmax_c(w_c · p_c)`.
    pub class_weights: Option<&'a [f64]>,
    /// `T` of the reported probabilities `q_c ∝ (w_c · p_c)^(1/T)` (absent = 1).
    pub temperature: Option<f64>,
    /// Return the calibrated probabilities (memory: one f32 volume per class).
    pub probabilities: bool,
}

/// The model-grid maps on `model_grid`, taken back to the grid of `native`:
/// each class probability trilinearly (outside the model grid the background
/// is 1 and the rest 0, so every voxel keeps a distribution), the labels as
/// their argmax — of `class_weights[c] × p_c` when weights are given (the
/// manifest's `[calibration]`) — entropy and mutual information trilinearly (0
/// outside), and on request the calibrated probabilities ([`calibrate`]).
pub fn to_native_grid(
    native: &Volume<f32>,
    model_grid: &TargetGrid,
    mean_probs: &ProbabilityMaps,
    request: NativeRequest<'_>,
    entropy: &[f32],
    mutual_information: &[f32],
    limits: &GridLimits,
) -> Result<NativeMaps, PipelineError> {
    let source = native.meta.source.clone();
    let geometry = |e| PipelineError::geometry(&source, e);
    let target = TargetGrid::new(native.dims(), *native.affine(), limits).map_err(geometry)?;
    let on_model_grid = |data: Vec<f32>| {
        Volume::new(model_grid.dims(), data, *model_grid.affine(), native.meta.clone())
            .map_err(|e| PipelineError::Internal(format!("{source}: model-grid map: {e}")))
    };
    let classes = mean_probs.channels();
    let mut best: Vec<f32> = Vec::new();
    let mut labels: Vec<u8> = Vec::new();
    let mut kept: Vec<Vec<f32>> = Vec::new();
    for c in 0..classes {
        let fill = if c == 0 { 1.0 } else { 0.0 };
        let channel = on_model_grid(mean_probs.channel(c).to_vec())?;
        let mut p = resample::linear(&channel, &target, fill).map_err(geometry)?.into_data();
        if let Some(&w) = request.class_weights.and_then(|w| w.get(c)) {
            let w = w as f32;
            p.iter_mut().for_each(|v| *v *= w);
        }
        if c == 0 {
            labels = vec![0; p.len()];
            // Copied only when the channel is also returned; otherwise moved, as before.
            best = if request.probabilities { p.clone() } else { std::mem::take(&mut p) };
        } else {
            // Class count ≤ 256 is checked by the accumulator, so c fits a u8.
            let label = u8::try_from(c).map_err(|_| PipelineError::Internal(format!("{source}: label {c}")))?;
            for ((b, l), &v) in best.iter_mut().zip(labels.iter_mut()).zip(&p) {
                if v > *b {
                    *b = v;
                    *l = label;
                }
            }
        }
        if request.probabilities {
            kept.push(p);
        }
    }
    let probabilities = if request.probabilities {
        calibrate(&mut kept, request.temperature.unwrap_or(1.0));
        let volume = |data| native.with_data(data).map_err(|e| PipelineError::Internal(format!("{source}: {e}")));
        Some(kept.into_iter().map(volume).collect::<Result<Vec<_>, _>>()?)
    } else {
        None
    };
    let resample_map = |data: &[f32]| -> Result<Volume<f32>, PipelineError> {
        resample::linear(&on_model_grid(data.to_vec())?, &target, 0.0).map_err(geometry)
    };
    let labels = native.with_data(labels).map_err(|e| PipelineError::Internal(format!("{source}: labels: {e}")))?;
    Ok(NativeMaps {
        labels,
        entropy: resample_map(entropy)?,
        mutual_information: resample_map(mutual_information)?,
        probabilities,
    })
}

/// Turns weighted probabilities `w_c · p_c` (one vector per class) into the
/// calibrated distribution `q_c ∝ (w_c · p_c)^(1/T)` in place, voxel by voxel
/// (temperature scaling of `ln(w_c · p_c)`, Guo et al. 2017). The order of the
/// classes in a voxel, and so the argmax, is unchanged; a voxel whose weights
/// are all 0 is left as it is.
pub fn calibrate(channels: &mut [Vec<f32>], temperature: f64) {
    let voxels = channels.first().map_or(0, Vec::len);
    let exponent = 1.0 / temperature;
    let mut q = vec![0.0f64; channels.len()];
    for i in 0..voxels {
        let top = channels.iter().map(|ch| f64::from(ch[i])).fold(0.0, f64::max);
        if top <= 0.0 {
            continue;
        }
        // (p / top)^(1/T) keeps the largest at 1: no overflow, and a 0 stays 0.
        for (qc, ch) in q.iter_mut().zip(channels.iter()) {
            *qc = (f64::from(ch[i]).max(0.0) / top).powf(exponent);
        }
        let sum: f64 = q.iter().sum();
        for (qc, ch) in q.iter().zip(channels.iter_mut()) {
            ch[i] = (qc / sum) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imaging::{Affine, SourceMeta};

    fn volume<T: Clone>(dims: [usize; 3], fill: T) -> Volume<T> {
        Volume::new(dims, vec![fill; dims.iter().product()], Affine::identity(), SourceMeta::default()).expect("volume")
    }

    #[test]
    fn foreground_box_grows_by_the_margin_and_stays_inside() {
        let mut m = volume([10, 8, 6], 0u8);
        let at = m.index(2, 3, 1);
        m.data_mut()[at] = 1;
        let at = m.index(5, 4, 2);
        m.data_mut()[at] = 1;
        assert_eq!(foreground_box(&m, 0), Some(([2, 3, 1], [4, 2, 2])));
        // Margin 3: clipped at 0 below and at the last voxel above.
        assert_eq!(foreground_box(&m, 3), Some(([0, 0, 0], [9, 8, 6])));
        assert_eq!(foreground_box(&volume([4, 4, 4], 0u8), 2), None);
    }

    #[test]
    fn crop_copies_the_block_and_keeps_world_positions() {
        let dims = [5, 4, 3];
        let data: Vec<f32> = (0..60).map(|v| v as f32).collect();
        let affine = Affine::from_rows([
            [2.0, 0.0, 0.0, -10.0],
            [0.0, 2.0, 0.0, 4.0],
            [0.0, 0.0, 3.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let vol = Volume::new(dims, data, affine, SourceMeta::default()).expect("volume");
        let start = [1, 2, 1];
        let mut m = *affine.matrix();
        let origin = affine.apply([1.0, 2.0, 1.0]);
        for r in 0..3 {
            m[(r, 3)] = origin[r];
        }
        let out = crop(&vol, start, [3, 2, 2], Affine::from_matrix(m)).expect("crop");
        for (i, j, k) in [(0, 0, 0), (2, 1, 1), (1, 0, 1)] {
            let src = vol.get(i + 1, j + 2, k + 1).copied();
            assert_eq!(out.get(i, j, k).copied(), src);
            // The same voxel has the same world position in both volumes.
            let w_out = out.affine().apply([i as f64, j as f64, k as f64]);
            let w_src = vol.affine().apply([(i + 1) as f64, (j + 2) as f64, (k + 1) as f64]);
            assert_eq!(w_out, w_src);
        }
    }

    #[test]
    fn calibration_sharpens_or_softens_without_changing_the_order() {
        // Three voxels, three classes (w · p already applied): values worked out by hand.
        let mut ch = vec![vec![0.1f32, 0.5, 0.0], vec![0.6, 0.25, 0.0], vec![0.3, 0.25, 0.0]];
        calibrate(&mut ch, 2.0);
        // Voxel 0: q ∝ √(0.1, 0.6, 0.3) = (0.3162, 0.7746, 0.5477) / 1.6385.
        for (c, want) in [0.192_99f32, 0.472_74, 0.334_27].into_iter().enumerate() {
            assert!((ch[c][0] - want).abs() < 1e-4, "class {c}: {} vs {want}", ch[c][0]);
        }
        // Voxel 1: a tie stays a tie, and sums to 1.
        assert!((ch[1][1] - ch[2][1]).abs() < 1e-7);
        assert!((ch.iter().map(|c| c[1]).sum::<f32>() - 1.0).abs() < 1e-6);
        // A voxel with no mass is left alone rather than divided by 0.
        assert!(ch.iter().all(|c| c[2] == 0.0));
    }

    #[test]
    fn temperature_one_only_normalises_the_weighted_probabilities() {
        let mut ch = vec![vec![0.2f32], vec![0.3 * 0.8], vec![0.5 * 0.9]];
        calibrate(&mut ch, 1.0);
        let total = 0.2 + 0.24 + 0.45;
        for (c, v) in [0.2f32, 0.24, 0.45].into_iter().enumerate() {
            assert!((ch[c][0] - v / total).abs() < 1e-6);
        }
        // A large temperature flattens towards uniform; a small one towards the argmax.
        let mut soft = vec![vec![0.2f32], vec![0.3], vec![0.5]];
        calibrate(&mut soft, 50.0);
        assert!(soft.iter().all(|c| (c[0] - 1.0 / 3.0).abs() < 0.01));
        let mut sharp = vec![vec![0.2f32], vec![0.3], vec![0.5]];
        calibrate(&mut sharp, 0.05);
        assert!(sharp[2][0] > 0.99 && sharp[0][0] < 1e-4);
    }
}
