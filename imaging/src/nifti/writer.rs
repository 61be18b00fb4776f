//! Writing 3-D volumes as `.nii` or `.nii.gz` (chosen by extension) with the
//! `nifti` crate's `WriterOptions`. The header carries the geometry the way
//! nibabel writes it: sform = the affine (code 2, aligned), qform from the
//! same affine (code 1, scanner, when its columns are orthogonal so a
//! quaternion represents it exactly; else code 0), pixdim = column norms,
//! xyzt_units = mm. Reading is in `reader`.

use std::path::Path;

use ::nifti::writer::WriterOptions;
use ::nifti::{NiftiHeader, XForm};
use ndarray::{ArrayView3, ShapeBuilder};

use super::error::NiftiError;
use crate::Volume;

/// NIFTI_UNITS_MM (nifti1.h); time units left unknown.
const UNITS_MM: u8 = 2;

/// Columns whose cosines deviate from orthogonal by more than this have
/// shear a qform cannot hold (nibabel strips it with a polar decomposition).
const ORTHOGONAL_TOL: f64 = 1e-6;

fn write_error(path: &Path, reason: impl Into<String>) -> NiftiError {
    NiftiError::Write { path: path.to_path_buf(), reason: reason.into() }
}

fn reference_header<T>(path: &Path, vol: &Volume<T>) -> Result<NiftiHeader, NiftiError> {
    let affine = vol.affine();
    if !affine.is_valid() {
        return Err(write_error(path, "affine is singular or not finite"));
    }
    // NIfTI-1 stores srow/quaternion as float32.
    if affine.matrix().iter().any(|v| v.abs() > f64::from(f32::MAX)) {
        return Err(write_error(path, "affine entries exceed the float32 range of a nifti1 header"));
    }
    let m = *affine.matrix();
    let lin = affine.linear();
    let cols = [0, 1, 2].map(|c| lin.column(c).normalize());
    let orthogonal = (0..3).all(|a| ((a + 1)..3).all(|b| cols[a].dot(&cols[b]).abs() < ORTHOGONAL_TOL));
    let mut h = NiftiHeader::default();
    h.set_sform(&m, XForm::AlignedAnat);
    // set_qform also sets pixdim[0] = qfac and pixdim[1..4] = the column norms.
    h.set_qform(&m, if orthogonal { XForm::ScannerAnat } else { XForm::Unknown });
    h.xyzt_units = UNITS_MM;
    Ok(h)
}

fn check_name(path: &Path) -> Result<(), NiftiError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Ok(())
    } else {
        Err(write_error(path, "file name must end in .nii or .nii.gz"))
    }
}

fn fortran_view<'a, T>(path: &Path, vol: &'a Volume<T>) -> Result<ArrayView3<'a, T>, NiftiError> {
    let [nx, ny, nz] = vol.dims();
    ArrayView3::from_shape((nx, ny, nz).f(), vol.data()).map_err(|e| write_error(path, e.to_string()))
}

fn finish(path: &Path, result: Result<(), ::nifti::NiftiError>) -> Result<(), NiftiError> {
    result.map_err(|e| match e {
        ::nifti::NiftiError::Io(io) => write_error(path, io.to_string()),
        other => write_error(path, other.to_string()),
    })
}

// One function per element type: the crate's writer bound (`bytemuck::Pod`)
// is not nameable here without another dependency.
macro_rules! writer_for {
    ($name:ident, $t:ty) => {
        pub(crate) fn $name(path: &Path, vol: &Volume<$t>) -> Result<(), NiftiError> {
            check_name(path)?;
            let header = reference_header(path, vol)?;
            let view = fortran_view(path, vol)?;
            finish(path, WriterOptions::new(path).reference_header(&header).write_nifti(&view))
        }
    };
}
writer_for!(write_f32, f32);
writer_for!(write_u8, u8);
writer_for!(write_u16, u16);
