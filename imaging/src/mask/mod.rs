//! Foreground masks for statistics: which voxels are "the head" when
//! harmonization or `neurobatch inspect` computes intensity statistics.
//!
//! Owns the pipeline threshold → largest component → hole filling:
//! 1. Otsu's threshold on a 256-bin histogram of the finite voxels, exactly as
//!    `skimage.filters.threshold_otsu` computes it for a float image
//!    ([`otsu_threshold`]); foreground is `value > threshold` (skimage's convention);
//! 2. the largest **6-connected** component (`scipy.ndimage.label`'s default
//!    structure);
//! 3. 3-D hole filling with `scipy.ndimage.binary_fill_holes` semantics
//!    (6-connected background).
//!
//! Non-finite voxels are never foreground. Does not own brain extraction or
//! tissue segmentation: this is a robust head mask, nothing more.

mod components;
mod otsu;

pub use otsu::otsu_threshold;

use components::{Grid, filled_largest_component};

use rayon::prelude::*;

use crate::volume::Volume;

/// Errors computing a foreground mask.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error("volume {0:?} has no finite voxels to threshold")]
    NoFiniteValues(String),
    #[error("volume {0:?} is too large to pad for a foreground mask")]
    TooLarge(String),
    #[error("volume {source_name:?} has no voxel above the otsu threshold {threshold} (constant intensities?)")]
    NoForeground { source_name: String, threshold: f64 },
}

/// A foreground mask and the threshold that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreground {
    /// 1 inside, 0 outside; same geometry as the input.
    pub mask: Volume<u8>,
    /// Otsu's threshold: foreground voxels are strictly above it.
    pub threshold: f64,
}

/// The foreground mask of `vol` (see the module docs for the pipeline).
pub fn foreground_mask(vol: &Volume<f32>) -> Result<Volume<u8>, MaskError> {
    foreground(vol).map(|f| f.mask)
}

/// [`foreground_mask`] with the threshold it used.
pub fn foreground(vol: &Volume<f32>) -> Result<Foreground, MaskError> {
    let source_name = || vol.meta.source.clone();
    let threshold = otsu_threshold(vol.data()).ok_or_else(|| MaskError::NoFiniteValues(source_name()))?;
    // NaN > t is false, so non-finite voxels never seed the foreground.
    let above: Vec<bool> =
        vol.data().par_iter().with_min_len(1 << 16).map(|&v| f64::from(v) > threshold && v.is_finite()).collect();
    let grid = Grid::new(vol.dims()).ok_or_else(|| MaskError::TooLarge(source_name()))?;
    let mask = filled_largest_component(grid, &above)
        .ok_or_else(|| MaskError::NoForeground { source_name: source_name(), threshold })?;
    let mask = vol
        .with_data(mask.into_iter().map(u8::from).collect())
        .map_err(|_| MaskError::NoFiniteValues(source_name()))?;
    Ok(Foreground { mask, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, SourceMeta};

    #[test]
    fn bright_cube_with_a_dark_core_and_a_speck_gives_the_filled_cube() {
        let dims = [8, 8, 8];
        let mut data = vec![1.0f32; 512];
        let at = |i: usize, j: usize, k: usize| i + 8 * (j + 8 * k);
        for k in 2..6 {
            for j in 2..6 {
                for i in 2..6 {
                    data[at(i, j, k)] = 100.0;
                }
            }
        }
        data[at(3, 3, 3)] = 1.0; // a hole inside the cube
        data[at(0, 0, 7)] = 100.0; // a separate bright speck
        data[at(7, 7, 0)] = f32::NAN;
        let vol = Volume::new(dims, data, Affine::identity(), SourceMeta::default()).expect("shape");
        let f = foreground(&vol).expect("foreground exists");
        assert!(f.threshold > 1.0 && f.threshold < 100.0);
        assert_eq!(f.mask.data().iter().map(|&v| usize::from(v)).sum::<usize>(), 64);
        assert_eq!(f.mask.data()[at(3, 3, 3)], 1);
        assert_eq!(f.mask.data()[at(0, 0, 7)], 0);
    }

    #[test]
    fn constant_and_non_finite_volumes_are_errors() {
        let c = Volume::new([2, 2, 2], vec![5.0f32; 8], Affine::identity(), SourceMeta::default()).expect("shape");
        assert!(matches!(foreground_mask(&c), Err(MaskError::NoForeground { .. })));
        let n = c.map(|_| f32::NAN);
        assert!(matches!(foreground_mask(&n), Err(MaskError::NoFiniteValues(_))));
    }
}
