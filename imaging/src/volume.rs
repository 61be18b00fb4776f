//! The 3-D volume every stage passes around.
//!
//! Owns the voxel buffer, its shape, its affine and the metadata of where it
//! came from. Memory order is **Fortran order** (the NIfTI on-disk order):
//! the voxel `(i, j, k)` lives at `i + nx * (j + ny * k)`, so `i` varies
//! fastest. Intensities are `f32`; label maps are `u8` or `u16`.
//!
//! [`SourceMeta`] deliberately has no field for patient-identifying DICOM
//! attributes (name, ID, birth date, accession number): what is not stored
//! cannot leak into logs, metrics or error messages.

use serde::{Deserialize, Serialize};

use crate::affine::Affine;

/// A volume of voxels of type `T` with its geometry and provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    dims: [usize; 3],
    data: Vec<T>,
    affine: Affine,
    /// Where the volume came from (never patient-identifying).
    pub meta: SourceMeta,
}

/// Errors building a volume from parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    #[error("volume shape {dims:?} needs {expected} voxels but {actual} were given")]
    ShapeMismatch { dims: [usize; 3], expected: usize, actual: usize },
    #[error("volume shape {0:?} has a zero-length axis")]
    EmptyAxis([usize; 3]),
    #[error("volume shape {0:?} overflows the address space")]
    TooLarge([usize; 3]),
}

/// Where a volume came from and what later stages need to know about it.
/// Only acquisition and equipment fields: nothing that identifies a patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMeta {
    /// The file or folder read.
    pub source: String,
    /// `"nifti1"`, `"nifti2"` or `"dicom"`.
    pub format: String,
    /// On-disk data type before scaling, e.g. `"int16"`, `"float32"`.
    pub datatype: String,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub modality: Option<String>,
    pub series_description: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model: Option<String>,
    pub field_strength_t: Option<f64>,
    pub station_name: Option<String>,
    pub institution_name: Option<String>,
    pub repetition_time_ms: Option<f64>,
    pub echo_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    pub flip_angle_deg: Option<f64>,
    pub slice_thickness_mm: Option<f64>,
    pub echo_number: Option<i32>,
    /// NIfTI `descrip` or DICOM-derived free text that is not patient data.
    pub description: Option<String>,
    /// Non-fatal findings while reading (4-D input truncated, NaN voxels, …).
    pub warnings: Vec<String>,
}

/// Checks a shape and returns its voxel count.
pub fn voxel_count(dims: [usize; 3]) -> Result<usize, VolumeError> {
    if dims.contains(&0) {
        return Err(VolumeError::EmptyAxis(dims));
    }
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(VolumeError::TooLarge(dims))
}

impl<T> Volume<T> {
    /// Builds a volume from a Fortran-ordered buffer.
    pub fn new(dims: [usize; 3], data: Vec<T>, affine: Affine, meta: SourceMeta) -> Result<Self, VolumeError> {
        let expected = voxel_count(dims)?;
        if data.len() != expected {
            return Err(VolumeError::ShapeMismatch { dims, expected, actual: data.len() });
        }
        Ok(Volume { dims, data, affine, meta })
    }

    /// Shape `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Never true: a volume has at least one voxel.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Voxel → RAS+ mm.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Replaces the affine (the caller keeps it consistent with the data).
    pub fn set_affine(&mut self, affine: Affine) {
        self.affine = affine;
    }

    /// Voxel spacing in mm.
    pub fn spacing(&self) -> [f64; 3] {
        self.affine.spacing()
    }

    /// The Fortran-ordered voxels.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The Fortran-ordered voxels, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Takes the buffer out.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// The voxel at `(i, j, k)`, or `None` outside the grid.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<&T> {
        if i < self.dims[0] && j < self.dims[1] && k < self.dims[2] { self.data.get(self.index(i, j, k)) } else { None }
    }

    /// A volume with the same geometry and metadata and new voxels.
    pub fn with_data<U>(&self, data: Vec<U>) -> Result<Volume<U>, VolumeError> {
        Volume::new(self.dims, data, self.affine, self.meta.clone())
    }

    /// Applies `f` to every voxel, keeping geometry and metadata.
    pub fn map<U, F: Fn(&T) -> U>(&self, f: F) -> Volume<U> {
        Volume {
            dims: self.dims,
            data: self.data.iter().map(f).collect(),
            affine: self.affine,
            meta: self.meta.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_puts_i_fastest() {
        let v = Volume::new([2, 3, 4], (0..24).collect::<Vec<u16>>(), Affine::identity(), SourceMeta::default())
            .expect("valid shape");
        assert_eq!(v.get(1, 0, 0), Some(&1));
        assert_eq!(v.get(0, 1, 0), Some(&2));
        assert_eq!(v.get(0, 0, 1), Some(&6));
        assert_eq!(v.get(1, 2, 3), Some(&23));
        assert_eq!(v.get(2, 0, 0), None);
    }

    #[test]
    fn wrong_length_and_empty_axes_are_refused() {
        let err = Volume::new([2, 2, 2], vec![0f32; 7], Affine::identity(), SourceMeta::default()).unwrap_err();
        assert_eq!(err, VolumeError::ShapeMismatch { dims: [2, 2, 2], expected: 8, actual: 7 });
        assert_eq!(voxel_count([3, 0, 1]), Err(VolumeError::EmptyAxis([3, 0, 1])));
        assert_eq!(voxel_count([usize::MAX, 2, 1]), Err(VolumeError::TooLarge([usize::MAX, 2, 1])));
    }
}
