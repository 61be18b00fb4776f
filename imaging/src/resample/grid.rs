//! The output grid of a resampling: shape and affine, validated once.
//!
//! Owns the size cap that keeps a bad header or a typo'd spacing from
//! allocating terabytes, and the rule that derives a grid from a target
//! spacing (see the module docs of [`crate::resample`]).

use crate::affine::Affine;

use super::ResampleError;

/// Caps on the grids a resampling may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLimits {
    /// Most voxels an output grid may have.
    pub max_voxels: usize,
}

impl Default for GridLimits {
    /// 512³ voxels (512 MiB as f32): far above any brain MRI at 0.5 mm.
    fn default() -> Self {
        GridLimits { max_voxels: 512 * 512 * 512 }
    }
}

/// A validated output grid: non-empty shape within the limits and an
/// invertible, finite affine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetGrid {
    dims: [usize; 3],
    affine: Affine,
}

/// Slack on `(n − 1) · s_in / s_out` before rounding up, so 196 / 2 = 98.000000001
/// from floating point does not add a voxel.
const COVER_SLACK: f64 = 1e-6;

impl TargetGrid {
    /// A grid of shape `dims` with voxel → RAS+ `affine`.
    pub fn new(dims: [usize; 3], affine: Affine, limits: &GridLimits) -> Result<Self, ResampleError> {
        let input = "target grid".to_string();
        if dims.contains(&0) {
            return Err(ResampleError::EmptyGrid { input, dims });
        }
        let voxels = super::saturating_count(&dims.map(|d| d as u64));
        if voxels > limits.max_voxels as u128 {
            return Err(ResampleError::TooLarge {
                input,
                dims: dims.map(|d| d as u64),
                voxels,
                max_voxels: limits.max_voxels,
            });
        }
        if !affine.is_valid() {
            return Err(ResampleError::InvalidAffine { input });
        }
        Ok(TargetGrid { dims, affine })
    }

    /// The grid covering a volume of shape `dims` and affine `affine` at
    /// `spacing` mm: same direction cosines, voxel (0,0,0) centred where the
    /// input's was, `ceil((n − 1) · s_in / s_out) + 1` voxels per axis.
    pub fn with_spacing(
        dims: [usize; 3],
        affine: &Affine,
        spacing: [f64; 3],
        limits: &GridLimits,
    ) -> Result<Self, ResampleError> {
        let input = "input grid".to_string();
        if !spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(ResampleError::InvalidSpacing { input, spacing });
        }
        if !affine.is_valid() {
            return Err(ResampleError::InvalidAffine { input });
        }
        if dims.contains(&0) {
            return Err(ResampleError::EmptyGrid { input, dims });
        }
        let current = affine.spacing();
        let mut m = *affine.matrix();
        let mut out = [0f64; 3];
        for a in 0..3 {
            let ratio = spacing[a] / current[a];
            for r in 0..3 {
                m[(r, a)] *= ratio;
            }
            // Saturating float → int casts below turn absurd values into a TooLarge error.
            out[a] = ((dims[a] - 1) as f64 / ratio - COVER_SLACK).ceil().max(0.0) + 1.0;
        }
        let as_u64 = out.map(|v| v as u64);
        let voxels = super::saturating_count(&as_u64);
        if voxels > limits.max_voxels as u128 || !out.iter().all(|v| v.is_finite()) {
            return Err(ResampleError::TooLarge { input, dims: as_u64, voxels, max_voxels: limits.max_voxels });
        }
        // Within max_voxels, so each axis fits usize.
        TargetGrid::new(as_u64.map(|d| d as usize), Affine::from_matrix(m), limits)
    }

    /// Shape `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Voxel → RAS+ mm.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mm_grid_of_mni_matches_the_documented_rule() {
        let mni = Affine::from_rows([
            [1.0, 0.0, 0.0, -98.0],
            [0.0, 1.0, 0.0, -134.0],
            [0.0, 0.0, 1.0, -72.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        let g = TargetGrid::with_spacing([197, 233, 189], &mni, [2.0, 2.0, 2.0], &GridLimits::default()).expect("ok");
        assert_eq!(g.dims(), [99, 117, 95]);
        assert_eq!(g.affine().spacing(), [2.0, 2.0, 2.0]);
        assert_eq!(g.affine().origin(), mni.origin());
        let back = TargetGrid::with_spacing(g.dims(), g.affine(), [1.0; 3], &GridLimits::default()).expect("ok");
        assert_eq!((back.dims(), *back.affine()), ([197, 233, 189], mni));
    }

    #[test]
    fn bad_spacing_sizes_and_affines_are_refused() {
        let lim = GridLimits::default();
        let id = Affine::identity();
        for s in [[0.0, 1.0, 1.0], [-1.0, 1.0, 1.0], [f64::NAN, 1.0, 1.0], [1.0, f64::INFINITY, 1.0]] {
            assert!(matches!(
                TargetGrid::with_spacing([4; 3], &id, s, &lim),
                Err(ResampleError::InvalidSpacing { .. })
            ));
        }
        let tiny = TargetGrid::with_spacing([256; 3], &id, [1e-300; 3], &lim);
        assert!(matches!(tiny, Err(ResampleError::TooLarge { .. })), "{tiny:?}");
        let small = GridLimits { max_voxels: 1000 };
        assert!(matches!(TargetGrid::new([11, 10, 10], id, &small), Err(ResampleError::TooLarge { .. })));
        assert!(TargetGrid::new([10, 10, 10], id, &small).is_ok());
        assert!(matches!(TargetGrid::new([0, 10, 10], id, &small), Err(ResampleError::EmptyGrid { .. })));
        let mut rows = id.to_rows();
        rows[0][3] = f64::NAN;
        assert!(matches!(
            TargetGrid::new([2; 3], Affine::from_rows(rows), &lim),
            Err(ResampleError::InvalidAffine { .. })
        ));
    }
}
