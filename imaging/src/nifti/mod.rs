//! NIfTI-1 and NIfTI-2 files in and out: `.nii` and `.nii.gz` → [`Volume`]
//! with nibabel's geometry and intensities, and [`Volume`] → `.nii[.gz]`.
//!
//! Owns header parsing (NIfTI-1 through the `nifti` crate, NIfTI-2 here, both
//! byte orders), the affine choice (sform, else qform, else nibabel's base
//! affine), voxel decoding for every integer and float datatype with
//! `scl_slope`/`scl_inter` applied as nibabel applies them, and writing.
//! It does not reorient, resample or harmonize: NaN/Inf voxels are kept and
//! only counted (a warning in [`SourceMeta::warnings`](crate::SourceMeta)).
//! `.hdr/.img` pairs, complex, RGB and float128 data are refused with a
//! typed error.
//!
//! Reading streams: the header is parsed from the (gzip-)decoding stream,
//! validated, and only then is the output allocated and exactly the bytes of
//! one 3-D volume read. Inputs with more than three non-singleton
//! dimensions follow [`ReadOptions::four_d`]: [`FourD::FirstVolume`] (the
//! default) reads volume 0 and records a warning, [`FourD::Refuse`] fails
//! with [`NiftiError::NotThreeD`]. `dim[0]` outside 1..=7, a dimension below
//! 1, or more than [`ReadOptions::max_voxels`] voxels *per 3-D volume* fail
//! before any allocation. For uncompressed files the file length is checked
//! against the header first; for `.nii.gz` the decompressed length is only
//! known at the end, so a lying header costs at most `max_voxels` floats.
//!
//! ```no_run
//! use std::path::Path;
//! use imaging::nifti::{self, ReadOptions};
//! let vol = nifti::read(Path::new("t1.nii.gz"), &ReadOptions::default())?;
//! println!("{:?} {}", vol.dims(), vol.affine().orientation_code());
//! nifti::write_f32(Path::new("/tmp/copy.nii.gz"), &vol)?;
//! # Ok::<(), nifti::NiftiError>(())
//! ```

mod datatype;
mod decode;
mod error;
mod header;
mod reader;
mod writer;
mod xform;

use std::path::Path;

use serde::Serialize;

pub use datatype::Datatype;
pub use error::NiftiError;
pub use header::Format;
pub use xform::Xform;

use crate::{Affine, Volume};

/// What to do with 4-D (and higher) inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FourD {
    /// Read volume 0 and add a warning to `SourceMeta::warnings`.
    #[default]
    FirstVolume,
    /// Fail with [`NiftiError::NotThreeD`].
    Refuse,
}

/// How [`read`] and [`read_labels`] treat large and 4-D inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub four_d: FourD,
    /// Most voxels one 3-D volume may have (default 512³); checked before allocating.
    pub max_voxels: u64,
    /// Nothing may follow the first volume: no further volume and no trailing
    /// byte, in the file or (for `.nii.gz`) in the decompressed stream. For
    /// uploads whose size must be what the header says (a corrected mask): a
    /// gzip stream that goes on is refused after one extra byte, not inflated.
    pub exact: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { four_d: FourD::FirstVolume, max_voxels: 512 * 512 * 512, exact: false }
    }
}

/// The header of a file as `inspect` shows it: no voxels read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderInfo {
    pub format: Format,
    pub big_endian: bool,
    /// `dim[1..=dim[0]]`.
    pub dims: Vec<usize>,
    pub datatype: Datatype,
    /// `pixdim[1..=dim[0]]` as stored.
    pub pixdim: Vec<f64>,
    /// The affine nibabel's `img.affine` reports.
    pub affine: Affine,
    /// Which transform gave [`HeaderInfo::affine`].
    pub xform: Xform,
    pub qform_code: i32,
    pub sform_code: i32,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub vox_offset: f64,
    pub description: Option<String>,
}

/// Reads the first 3-D volume of a `.nii` / `.nii.gz` as `f32` intensities
/// (`scl_slope`/`scl_inter` applied), with nibabel's affine.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume<f32>, NiftiError> {
    reader::read(path, opts)
}

/// Reads an integer label map. Float or scaled data are accepted only when
/// every value is an integer in `0..=65535`; anything else is
/// [`NiftiError::NotLabels`].
pub fn read_labels(path: &Path, opts: &ReadOptions) -> Result<Volume<u16>, NiftiError> {
    reader::read_labels(path, opts)
}

/// Parses and checks the header only.
pub fn read_header_info(path: &Path) -> Result<HeaderInfo, NiftiError> {
    reader::read_header_info(path)
}

/// Writes intensities as float32 (`.nii.gz` compressed, `.nii` not).
pub fn write_f32(path: &Path, vol: &Volume<f32>) -> Result<(), NiftiError> {
    writer::write_f32(path, vol)
}

/// Writes a uint8 volume (masks).
pub fn write_u8(path: &Path, vol: &Volume<u8>) -> Result<(), NiftiError> {
    writer::write_u8(path, vol)
}

/// Writes a uint16 label map.
pub fn write_u16(path: &Path, vol: &Volume<u16>) -> Result<(), NiftiError> {
    writer::write_u16(path, vol)
}

/// Whether the name says NIfTI (`.nii`, `.nii.gz`, any case).
pub fn is_nifti_path(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nifti_paths_are_recognised_by_extension() {
        assert!(is_nifti_path(Path::new("/a/b/T1.nii.gz")));
        assert!(is_nifti_path(Path::new("x.NII")));
        assert!(!is_nifti_path(Path::new("x.hdr")));
        assert!(!is_nifti_path(Path::new("x.nii.gz.tmp")));
    }
}
