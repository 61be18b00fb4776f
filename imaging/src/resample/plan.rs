//! The voxel transform of one resampling, decided once before any voxel is touched.
//!
//! Owns `A_in⁻¹ · A_out` (output voxel → input voxel) and the check that
//! picks the fast separable path: when every output axis moves along exactly
//! one input axis, coordinates along each axis depend on one output index
//! only and can be tabulated.

use crate::affine::Affine;

use super::{ResampleError, TargetGrid};

/// Off-axis terms smaller than this many voxels over the whole output axis
/// are dropped when deciding that a transform is axis-aligned (well inside
/// [`super::EDGE_EPSILON`], so the result cannot change).
const AXIS_ALIGNED_SLACK: f64 = 1e-10;

/// Output axis `d` samples input axis `src_axis` at `scale · o + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct AxisMap {
    pub src_axis: usize,
    pub scale: f64,
    pub offset: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Transform {
    /// One input axis per output axis (a scaled, possibly flipped permutation).
    Separable([AxisMap; 3]),
    /// Rows of the 3×4 voxel transform: input coordinate `r` = `t[r] · (i, j, k, 1)`.
    General([[f64; 4]; 3]),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Plan {
    pub in_dims: [usize; 3],
    pub out_dims: [usize; 3],
    pub transform: Transform,
}

impl Plan {
    pub fn new(in_affine: &Affine, in_dims: [usize; 3], grid: &TargetGrid, input: &str) -> Result<Self, ResampleError> {
        let invalid = || ResampleError::InvalidAffine { input: input.to_string() };
        if !in_affine.is_valid() {
            return Err(invalid());
        }
        let inv = in_affine.inverse().ok_or_else(invalid)?;
        let m = inv.compose(grid.affine()).to_rows();
        if !m.iter().flatten().all(|v| v.is_finite()) {
            return Err(invalid());
        }
        let t = [m[0], m[1], m[2]];
        let out_dims = grid.dims();
        let transform = separable(&t, out_dims).map_or(Transform::General(t), Transform::Separable);
        Ok(Plan { in_dims, out_dims, transform })
    }

    /// Input strides (Fortran order) of each input axis.
    pub fn in_strides(&self) -> [usize; 3] {
        [1, self.in_dims[0], self.in_dims[0] * self.in_dims[1]]
    }
}

fn separable(t: &[[f64; 4]; 3], out_dims: [usize; 3]) -> Option<[AxisMap; 3]> {
    let mut maps = [AxisMap { src_axis: 0, scale: 0.0, offset: 0.0 }; 3];
    let mut used = [false; 3];
    for (d, map) in maps.iter_mut().enumerate() {
        let col = [t[0][d], t[1][d], t[2][d]];
        let p = (0..3).max_by(|&a, &b| col[a].abs().total_cmp(&col[b].abs()))?;
        let reach = out_dims[d].saturating_sub(1).max(1) as f64;
        let off_axis_ok = (0..3).filter(|&r| r != p).all(|r| col[r].abs() * reach <= AXIS_ALIGNED_SLACK);
        if !off_axis_ok || used[p] {
            return None;
        }
        used[p] = true;
        *map = AxisMap { src_axis: p, scale: col[p], offset: t[p][3] };
    }
    Some(maps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::GridLimits;

    fn grid(rows: [[f64; 4]; 4]) -> TargetGrid {
        TargetGrid::new([10, 10, 10], Affine::from_rows(rows), &GridLimits::default()).expect("valid")
    }

    #[test]
    fn permuted_grid_is_separable_and_oblique_is_general() {
        let swapped = grid([[0.0, 2.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]);
        let plan = Plan::new(&Affine::identity(), [5, 5, 5], &swapped, "x").expect("valid");
        let Transform::Separable(maps) = plan.transform else { panic!("expected separable, got {plan:?}") };
        assert_eq!(maps[0], AxisMap { src_axis: 1, scale: 1.0, offset: 0.0 });
        assert_eq!(maps[1], AxisMap { src_axis: 0, scale: 2.0, offset: 1.0 });
        assert_eq!(maps[2], AxisMap { src_axis: 2, scale: -1.0, offset: 0.0 });
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let oblique = grid([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]);
        let plan = Plan::new(&Affine::identity(), [5, 5, 5], &oblique, "x").expect("valid");
        assert!(matches!(plan.transform, Transform::General(_)));
    }
}
