//! Choosing the voxel→RAS+ affine from a NIfTI header exactly as nibabel
//! does on load (`Nifti1Header.get_best_affine` after `check_fix`):
//! sform if `sform_code > 0`, else qform if `qform_code > 0`, else the
//! "base" affine of `get_base_affine` (x flipped, centred origin).
//!
//! Before choosing, the same header fixes nibabel applies when it loads a
//! file are applied here: codes outside 0..=5 become 0 (`_chk_xform_code`),
//! pixdim[1..4] of 0 become 1 and negative ones their absolute value
//! (`_chk_pixdims`), and a qfac (pixdim[0]) other than ±1 becomes 1
//! (`_chk_qfac`). Writing headers is not here (see `writer`).

use nalgebra::{Matrix3, Matrix4};
use serde::Serialize;

use super::header::{Format, Header};

/// Which header transform gave the affine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Xform {
    Sform,
    Qform,
    /// No valid code: nibabel's `get_base_affine` from dims and pixdim.
    Base,
}

impl Xform {
    pub fn as_str(self) -> &'static str {
        match self {
            Xform::Sform => "sform",
            Xform::Qform => "qform",
            Xform::Base => "base",
        }
    }
}

/// nibabel's `xform_codes` recoder knows 0..=5; others are reset to 0 on load.
fn valid_code(code: i32) -> i32 {
    if (0..=5).contains(&code) { code } else { 0 }
}

/// pixdim[1..4] after nibabel's `_chk_pixdims` fix.
fn fixed_zooms(h: &Header) -> [f64; 3] {
    [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(|z| if z == 0.0 { 1.0 } else { z.abs() })
}

/// The affine nibabel's `img.affine` reports, and where it came from.
/// Errors (as a reason) where nibabel raises: an impossible quaternion.
pub(crate) fn best_affine(h: &Header) -> Result<(Matrix4<f64>, Xform), String> {
    let (m, which) = if valid_code(h.sform_code) > 0 {
        (sform(h), Xform::Sform)
    } else if valid_code(h.qform_code) > 0 {
        (qform(h)?, Xform::Qform)
    } else {
        (base(h), Xform::Base)
    };
    if m.iter().all(|v| v.is_finite()) {
        Ok((m, which))
    } else {
        Err(format!("{} affine has non-finite entries", which.as_str()))
    }
}

fn sform(h: &Header) -> Matrix4<f64> {
    let mut m = Matrix4::identity();
    for (r, row) in h.srow.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            m[(r, c)] = v;
        }
    }
    m
}

/// nibabel `get_qform`: R from the quaternion (`fillpositive` + `quat2mat`),
/// times diag(pixdim[1], pixdim[2], qfac * pixdim[3]), plus the qoffsets.
fn qform(h: &Header) -> Result<Matrix4<f64>, String> {
    let [b, c, d] = h.quatern;
    // quaternion_threshold: 3 float32 eps for NIfTI-1, 3 float64 eps for NIfTI-2.
    let thresh = match h.format {
        Format::Nifti1 => 3.0 * f64::from(f32::EPSILON),
        Format::Nifti2 => 3.0 * f64::EPSILON,
    };
    let w2 = 1.0 - (b * b + c * c + d * d);
    let a = if w2.abs() < thresh {
        0.0
    } else if w2 < 0.0 {
        return Err(format!("qform quaternion ({b}, {c}, {d}) has norm above 1"));
    } else {
        w2.sqrt()
    };
    let r = quat_to_matrix(a, b, c, d);
    let qfac = if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
    let [zx, zy, zz] = fixed_zooms(h);
    let s = Matrix3::from_diagonal(&nalgebra::Vector3::new(zx, zy, zz * qfac));
    let lin = r * s;
    let mut m = Matrix4::identity();
    m.fixed_view_mut::<3, 3>(0, 0).copy_from(&lin);
    for (i, &o) in h.qoffset.iter().enumerate() {
        m[(i, 3)] = o;
    }
    Ok(m)
}

/// nibabel `quaternions.quat2mat` (allows non-unit quaternions; near-zero → identity).
fn quat_to_matrix(w: f64, x: f64, y: f64, z: f64) -> Matrix3<f64> {
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return Matrix3::identity();
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    Matrix3::new(
        1.0 - (yy + zz),
        xy - wz,
        xz + wy,
        xy + wz,
        1.0 - (xx + zz),
        yz - wx,
        xz - wy,
        yz + wx,
        1.0 - (xx + yy),
    )
}

/// nibabel `get_base_affine` → `shape_zoom_affine(dim[1:ndim+1], pixdim[1:ndim+1], x_flip=True)`:
/// fewer than 3 dims are padded with shape 1 and zoom 1.
fn base(h: &Header) -> Matrix4<f64> {
    let ndim = usize::try_from(h.dim[0]).unwrap_or(0);
    let zooms = fixed_zooms(h);
    let mut m = Matrix4::identity();
    for axis in 0..3 {
        let (n, zoom) = if axis < ndim { (h.dim[axis + 1] as f64, zooms[axis]) } else { (1.0, 1.0) };
        let zoom = if axis == 0 { -zoom } else { zoom };
        m[(axis, axis)] = zoom;
        m[(axis, 3)] = -((n - 1.0) / 2.0) * zoom;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nifti::datatype::Datatype;

    fn header() -> Header {
        Header {
            format: Format::Nifti1,
            big_endian: false,
            dim: [3, 3, 5, 7, 1, 1, 1, 1],
            datatype: Datatype::Uint8,
            pixdim: [1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            vox_offset: 352.0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            descrip: vec![],
        }
    }

    #[test]
    fn base_affine_matches_nibabel_docstring() {
        // nibabel AnalyzeHeader.get_base_affine docstring: shape (3, 5, 7), zooms (3, 2, 1).
        let (m, which) = best_affine(&header()).expect("finite");
        assert_eq!(which, Xform::Base);
        let want = Matrix4::new(-3.0, 0.0, 0.0, 3.0, 0.0, 2.0, 0.0, -4.0, 0.0, 0.0, 1.0, -3.0, 0.0, 0.0, 0.0, 1.0);
        assert_eq!(m, want);
    }

    #[test]
    fn qform_with_negative_qfac_flips_z_and_180_degree_quaternion_is_handled() {
        let mut h = header();
        h.qform_code = 1;
        h.pixdim[0] = -1.0;
        // b = 1: 180° about x (nibabel quat2mat([0, 1, 0, 0]) = diag(1, -1, -1)).
        h.quatern = [1.0, 0.0, 0.0];
        h.qoffset = [1.0, 2.0, 3.0];
        let (m, which) = best_affine(&h).expect("valid");
        assert_eq!(which, Xform::Qform);
        let want = Matrix4::new(3.0, 0.0, 0.0, 1.0, 0.0, -2.0, 0.0, 2.0, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 1.0);
        assert!((m - want).abs().max() < 1e-12, "{m}");
        h.quatern = [1.0, 1.0, 0.0];
        assert!(best_affine(&h).is_err());
    }

    #[test]
    fn invalid_sform_code_falls_back_like_nibabel() {
        let mut h = header();
        h.sform_code = 9;
        h.srow = [[f64::NAN; 4]; 3];
        assert_eq!(best_affine(&h).expect("base").1, Xform::Base);
        h.sform_code = 2;
        assert!(best_affine(&h).is_err());
    }
}
