//! The voxel-to-world transform of a volume.
//!
//! Owns the 4×4 affine that maps voxel indices `(i, j, k)` to RAS+ world
//! coordinates in millimetres (the NIfTI/nibabel convention: +x right,
//! +y anterior, +z superior), and the quantities derived from it: voxel
//! spacing and the orientation code (`"RAS"`, `"LPS"`, …) that nibabel's
//! `aff2axcodes` reports. It does not own resampling or reorientation.

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};
use serde::{Deserialize, Serialize};

/// Voxel `(i, j, k)` → RAS+ millimetres, as a 4×4 homogeneous matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(Matrix4<f64>);

/// The world axis each voxel axis points along most closely, with its sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxisCode {
    /// World axis index: 0 = x (left/right), 1 = y (posterior/anterior), 2 = z (inferior/superior).
    pub world_axis: usize,
    /// `true` when increasing the voxel index moves towards R, A or S.
    pub positive: bool,
}

impl AxisCode {
    /// The letter nibabel uses for where this axis points: R/L, A/P, S/I.
    pub fn letter(self) -> char {
        const POS: [char; 3] = ['R', 'A', 'S'];
        const NEG: [char; 3] = ['L', 'P', 'I'];
        if self.positive { POS[self.world_axis] } else { NEG[self.world_axis] }
    }
}

impl Affine {
    /// The identity: 1 mm isotropic voxels, RAS orientation, origin at voxel 0.
    pub fn identity() -> Self {
        Affine(Matrix4::identity())
    }

    /// Wraps a matrix. The last row should be `[0, 0, 0, 1]`.
    pub fn from_matrix(m: Matrix4<f64>) -> Self {
        Affine(m)
    }

    /// From 16 numbers in row-major order (the order of the JSON `affine` field).
    pub fn from_rows(rows: [[f64; 4]; 4]) -> Self {
        Affine(Matrix4::from_fn(|r, c| rows[r][c]))
    }

    /// Row-major 4×4, as written in JSON and compared with nibabel's `img.affine`.
    pub fn to_rows(&self) -> [[f64; 4]; 4] {
        let mut rows = [[0.0; 4]; 4];
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.0[(r, c)];
            }
        }
        rows
    }

    /// The underlying matrix.
    pub fn matrix(&self) -> &Matrix4<f64> {
        &self.0
    }

    /// The upper-left 3×3 block: direction cosines scaled by spacing.
    pub fn linear(&self) -> Matrix3<f64> {
        self.0.fixed_view::<3, 3>(0, 0).into_owned()
    }

    /// The world position of voxel (0, 0, 0).
    pub fn origin(&self) -> Vector3<f64> {
        self.0.fixed_view::<3, 1>(0, 3).into_owned()
    }

    /// Voxel spacing in mm: the length of each column of the linear block
    /// (nibabel's `voxel_sizes`).
    pub fn spacing(&self) -> [f64; 3] {
        let l = self.linear();
        [l.column(0).norm(), l.column(1).norm(), l.column(2).norm()]
    }

    /// World coordinates of a (possibly fractional) voxel index.
    pub fn apply(&self, ijk: [f64; 3]) -> [f64; 3] {
        let v = self.0 * Vector4::new(ijk[0], ijk[1], ijk[2], 1.0);
        [v[0], v[1], v[2]]
    }

    /// The inverse transform (world → voxel), or `None` for a singular affine.
    pub fn inverse(&self) -> Option<Affine> {
        self.0.try_inverse().map(Affine)
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub fn compose(&self, other: &Affine) -> Affine {
        Affine(self.0 * other.0)
    }

    /// Whether all entries are finite and the linear block is invertible.
    pub fn is_valid(&self) -> bool {
        self.0.iter().all(|v| v.is_finite()) && self.linear().determinant().abs() > 1e-12
    }

    /// For each voxel axis, the world axis it is closest to and its direction,
    /// following nibabel's `io_orientation`: the assignment maximizes the
    /// absolute direction cosines, each world axis used once.
    pub fn axis_codes(&self) -> [AxisCode; 3] {
        let l = self.linear();
        // Normalize columns so spacing does not bias the choice.
        let mut cos = Matrix3::zeros();
        for c in 0..3 {
            let n = l.column(c).norm();
            let col = if n > 0.0 { l.column(c) / n } else { l.column(c).into_owned() };
            cos.set_column(c, &col);
        }
        // Exhaustive search over the six permutations: exact and tiny.
        const PERMS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let mut best = PERMS[0];
        let mut best_score = f64::NEG_INFINITY;
        for p in PERMS {
            let score: f64 = (0..3).map(|c| cos[(p[c], c)].abs()).sum();
            if score > best_score + 1e-12 {
                best_score = score;
                best = p;
            }
        }
        [0, 1, 2].map(|c| AxisCode { world_axis: best[c], positive: cos[(best[c], c)] >= 0.0 })
    }

    /// Three-letter orientation code, e.g. `"RAS"` or `"LPS"` (nibabel's `aff2axcodes`).
    pub fn orientation_code(&self) -> String {
        self.axis_codes().iter().map(|a| a.letter()).collect()
    }
}

impl Serialize for Affine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_rows().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Affine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[[f64; 4]; 4]>::deserialize(d).map(Affine::from_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_code_of_a_scaled_lps_affine() {
        let a = Affine::from_rows([
            [-0.5, 0.0, 0.0, 10.0],
            [0.0, -2.0, 0.0, 20.0],
            [0.0, 0.0, 3.0, -5.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        assert_eq!(a.spacing(), [0.5, 2.0, 3.0]);
        assert_eq!(a.orientation_code(), "LPS");
        assert_eq!(a.apply([2.0, 1.0, 1.0]), [9.0, 18.0, -2.0]);
    }

    #[test]
    fn sagittal_permutation_is_detected() {
        // voxel i -> world -y (P), j -> world -z (I), k -> world +x (R)
        let a = Affine::from_rows([
            [0.0, 0.0, 1.0, 0.0],
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]);
        assert_eq!(a.orientation_code(), "PIR");
        let inv = a.inverse().expect("invertible");
        let back = inv.apply(a.apply([3.0, 4.0, 5.0]));
        for (x, y) in back.iter().zip([3.0, 4.0, 5.0]) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn singular_affine_is_invalid() {
        let mut rows = Affine::identity().to_rows();
        rows[2][2] = 0.0;
        assert!(!Affine::from_rows(rows).is_valid());
        rows[2][2] = f64::NAN;
        assert!(!Affine::from_rows(rows).is_valid());
    }
}
