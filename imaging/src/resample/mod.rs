//! Resampling volumes onto another grid: to a target spacing, or to any grid
//! given by its shape and affine.
//!
//! Owns interpolation — trilinear for intensities ([`linear`]), nearest
//! neighbour for label maps of any voxel type ([`nearest`]), trilinear for
//! multi-channel probability maps ([`linear_channels`], how model outputs go
//! back to the native grid) — and the choice of output grid
//! ([`TargetGrid::with_spacing`]). It does not reorder axes losslessly: that is
//! [`crate::orientation`].
//!
//! **Reference behaviour.** Output voxel `o` samples the input at voxel
//! coordinate `x = A_in⁻¹ · A_out · o`, exactly as
//! `scipy.ndimage.affine_transform(input, A_in⁻¹A_out, order=1|0,
//! mode="constant", cval=fill)` does in scipy 1.17: a sample is inside when
//! `0 ≤ x ≤ n − 1` on every axis and takes the fill value otherwise — there is
//! no partial blending with the fill in `[-1, 0)` or `(n − 1, n)` (that would be
//! `mode="grid-constant"`). Nearest neighbour picks `floor(x + 0.5)`, so exact
//! half-way ties round up, as scipy's order-0 spline does. One deliberate
//! difference: the inside test accepts coordinates up to [`EDGE_EPSILON`]
//! voxel outside `[0, n − 1]` (scipy compares exactly), so that rounding noise
//! from inverting an affine cannot blank a whole edge slice.
//!
//! **Output grid for a target spacing** ([`TargetGrid::with_spacing`]): the
//! direction cosines are kept (each affine column is rescaled to the new
//! spacing), the centre of voxel (0,0,0) stays where it was — MONAI
//! `Spacing`'s default (`scale_extent=False`) alignment, and where nibabel's
//! `vox2out_vox` puts voxel 0 for an axis-aligned input — and each axis has
//! `n_out = ceil((n_in − 1) · s_in / s_out − 1e-6) + 1` voxels, nibabel's
//! `vox2out_vox` rule: every input voxel centre is covered, and 1 mm → 2 mm →
//! 1 mm returns to the original grid.
//!
//! Work is split over output slices with rayon. When the voxel transform maps
//! each output axis onto one input axis (the usual case after
//! [`crate::orientation::to_canonical`]), per-axis index/weight tables replace
//! the per-voxel coordinate arithmetic; oblique transforms take a general path.

mod grid;
mod kernels;
mod plan;
mod probability;

pub use grid::{GridLimits, TargetGrid};
pub use probability::ProbabilityMaps;

use crate::volume::{Volume, VolumeError};
use plan::Plan;

/// How far (in voxels) outside `[0, n − 1]` a sample may fall and still count
/// as inside, clamped to the edge.
pub const EDGE_EPSILON: f64 = 1e-9;

/// Errors resampling a volume.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResampleError {
    #[error("{input}: affine is singular or not finite")]
    InvalidAffine { input: String },
    #[error("{input}: target spacing {spacing:?} must be finite and positive")]
    InvalidSpacing { input: String, spacing: [f64; 3] },
    #[error("{input}: output grid {dims:?} has {voxels} voxels, over the limit of {max_voxels}")]
    TooLarge { input: String, dims: [u64; 3], voxels: u128, max_voxels: usize },
    #[error("{input}: output grid {dims:?} has an empty axis")]
    EmptyGrid { input: String, dims: [usize; 3] },
    #[error("{input}: {channels} channels of shape {dims:?} need {expected} values but {actual} were given")]
    ChannelShape { input: String, channels: usize, dims: [usize; 3], expected: u128, actual: usize },
    #[error("{input}: {source}")]
    Volume { input: String, source: VolumeError },
}

/// Voxel count of a shape, saturating instead of overflowing (for size checks and messages).
pub(crate) fn saturating_count(dims: &[u64]) -> u128 {
    dims.iter().fold(1u128, |acc, &d| acc.saturating_mul(u128::from(d)))
}

pub(crate) fn input_name(source: &str) -> String {
    if source.is_empty() { "volume".to_string() } else { source.to_string() }
}

/// Trilinear interpolation of an intensity volume onto `grid`; samples outside
/// the input take `fill` (scipy `order=1, mode="constant", cval=fill`).
pub fn linear(volume: &Volume<f32>, grid: &TargetGrid, fill: f32) -> Result<Volume<f32>, ResampleError> {
    let input = input_name(&volume.meta.source);
    let plan = Plan::new(volume.affine(), volume.dims(), grid, &input)?;
    let mut data = vec![fill; grid.voxels()];
    kernels::linear(volume.data(), &plan, fill, &mut data);
    Volume::new(grid.dims(), data, *grid.affine(), volume.meta.clone())
        .map_err(|source| ResampleError::Volume { input, source })
}

/// Nearest-neighbour resampling of a label map (or any voxel type) onto
/// `grid`; samples outside the input take `fill` (scipy `order=0,
/// mode="constant", cval=fill`). Never produces a value that is not in the
/// input or `fill`.
pub fn nearest<T: Copy + Send + Sync>(
    volume: &Volume<T>,
    grid: &TargetGrid,
    fill: T,
) -> Result<Volume<T>, ResampleError> {
    let input = input_name(&volume.meta.source);
    let plan = Plan::new(volume.affine(), volume.dims(), grid, &input)?;
    let mut data = vec![fill; grid.voxels()];
    kernels::nearest(volume.data(), &plan, fill, &mut data);
    Volume::new(grid.dims(), data, *grid.affine(), volume.meta.clone())
        .map_err(|source| ResampleError::Volume { input, source })
}

/// Trilinear interpolation of every channel of `maps` onto `grid` (the same
/// sampling as [`linear`], planned once for all channels).
pub fn linear_channels(maps: &ProbabilityMaps, grid: &TargetGrid, fill: f32) -> Result<ProbabilityMaps, ResampleError> {
    let input = input_name(maps.source());
    let plan = Plan::new(maps.affine(), maps.dims(), grid, &input)?;
    let out_voxels = grid.voxels();
    let total = out_voxels.checked_mul(maps.channels()).ok_or(ResampleError::TooLarge {
        input,
        dims: grid.dims().map(|d| d as u64),
        voxels: saturating_count(&[out_voxels as u64, maps.channels() as u64]),
        max_voxels: usize::MAX,
    })?;
    let mut data = vec![fill; total];
    // Channel-major buffers: each channel is one contiguous output volume.
    for (c, out) in data.chunks_mut(out_voxels).enumerate() {
        kernels::linear(maps.channel(c), &plan, fill, out);
    }
    ProbabilityMaps::new(maps.channels(), grid.dims(), *grid.affine(), data, maps.source())
}
