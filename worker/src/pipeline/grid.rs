//! The two geometric stages of a study: from the scan's own grid into the
//! model's (closest-canonical axes at the manifest's spacing, foreground mask,
//! harmonized intensities), and from the model grid back onto the scan's grid
//! (probabilities, label mask, uncertainty maps). Owns no inference.

use imaging::harmonize::Harmonizer;
use imaging::orientation::plan_canonical;
use imaging::resample::{self, GridLimits, ProbabilityMaps, TargetGrid};
use imaging::{Volume, mask};

use super::PipelineError;

/// A study on the model grid, ready for the engine.
#[derive(Debug, Clone)]
pub struct ModelGridInput {
    /// The model grid: the scan's closest-canonical (RAS) voxel axes, resampled
    /// to the model's spacing; direction cosines are the scan's, so an oblique
    /// or tilted head stays tilted (the models are trained with rotations).
    pub grid: TargetGrid,
    /// Harmonized intensities on `grid`.
    pub image: Volume<f32>,
    /// Foreground mask (Otsu, largest component, holes filled) of the resampled
    /// intensities, before harmonization; the harmonizer's statistics and the
    /// OOD signals are taken inside it.
    pub foreground: Volume<u8>,
}

/// Resamples `native` (trilinear, 0 outside) onto the model grid at
/// `spacing_mm` and harmonizes it within its foreground.
pub fn to_model_grid(
    native: &Volume<f32>,
    spacing_mm: [f64; 3],
    harmonizer: &Harmonizer,
    limits: &GridLimits,
) -> Result<ModelGridInput, PipelineError> {
    let source = native.meta.source.clone();
    let canonical = plan_canonical(native).map_err(|e| PipelineError::geometry(&source, e))?;
    let grid = TargetGrid::with_spacing(canonical.canonical_dims(), &canonical.canonical_affine(), spacing_mm, limits)
        .map_err(|e| PipelineError::geometry(&source, e))?;
    let resampled = resample::linear(native, &grid, 0.0).map_err(|e| PipelineError::geometry(&source, e))?;
    let foreground = mask::foreground(&resampled).map_err(|e| PipelineError::harmonize(&source, e))?.mask;
    let image = harmonizer.apply(&resampled, Some(&foreground)).map_err(|e| PipelineError::harmonize(&source, e))?;
    Ok(ModelGridInput { grid, image, foreground })
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
}

/// The model-grid maps on `model_grid`, taken back to the grid of `native`:
/// each class probability trilinearly (outside the model grid the background
/// is 1 and the rest 0, so every voxel keeps a distribution), the labels as
/// their argmax, entropy and mutual information trilinearly (0 outside).
pub fn to_native_grid(
    native: &Volume<f32>,
    model_grid: &TargetGrid,
    mean_probs: &ProbabilityMaps,
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
    for c in 0..classes {
        let fill = if c == 0 { 1.0 } else { 0.0 };
        let channel = on_model_grid(mean_probs.channel(c).to_vec())?;
        let p = resample::linear(&channel, &target, fill).map_err(geometry)?.into_data();
        if c == 0 {
            labels = vec![0; p.len()];
            best = p;
        } else {
            // Class count ≤ 256 is checked by the accumulator, so c fits a u8.
            let label = u8::try_from(c).map_err(|_| PipelineError::Internal(format!("{source}: label {c}")))?;
            for ((b, l), v) in best.iter_mut().zip(labels.iter_mut()).zip(p) {
                if v > *b {
                    *b = v;
                    *l = label;
                }
            }
        }
    }
    let resample_map = |data: &[f32]| -> Result<Volume<f32>, PipelineError> {
        resample::linear(&on_model_grid(data.to_vec())?, &target, 0.0).map_err(geometry)
    };
    let labels = native.with_data(labels).map_err(|e| PipelineError::Internal(format!("{source}: labels: {e}")))?;
    Ok(NativeMaps { labels, entropy: resample_map(entropy)?, mutual_information: resample_map(mutual_information)? })
}
