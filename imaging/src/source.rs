//! "A file or a folder" → volumes: the one entry point the CLI and the
//! worker use to load a study, dispatching to [`crate::nifti`] for NIfTI
//! files and to [`crate::dicom`] for folders of DICOM instances.
//!
//! It owns the dispatch rules and the options both readers share; it does
//! not parse anything itself.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Volume, dicom, nifti};

/// How inputs are read, whatever their format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Most voxels one volume may have; checked before allocating.
    pub max_voxels: u64,
    /// Refuse 4-D NIfTI instead of taking the first volume with a warning.
    pub refuse_4d: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { max_voxels: 512 * 512 * 512, refuse_4d: false }
    }
}

impl OpenOptions {
    /// The NIfTI reader's options.
    pub fn nifti(&self) -> nifti::ReadOptions {
        nifti::ReadOptions {
            max_voxels: self.max_voxels,
            four_d: if self.refuse_4d { nifti::FourD::Refuse } else { nifti::FourD::FirstVolume },
            exact: false,
        }
    }

    /// The DICOM reader's options.
    pub fn dicom(&self) -> dicom::ScanOptions {
        dicom::ScanOptions {
            max_voxels: usize::try_from(self.max_voxels).unwrap_or(usize::MAX),
            ..dicom::ScanOptions::default()
        }
    }
}

/// Why an input could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    #[error("{0}: a single DICOM file; give the folder that holds its series")]
    SingleDicomFile(PathBuf),
    #[error("{0}: not a NIfTI file (.nii, .nii.gz) nor a folder of DICOM instances")]
    UnknownFormat(PathBuf),
    #[error(transparent)]
    Nifti(#[from] nifti::NiftiError),
    #[error(transparent)]
    Dicom(#[from] dicom::DicomError),
}

/// Every volume in `path`: one for a NIfTI file, one per series (or split
/// stack) for a DICOM folder.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Vec<Volume<f32>>, SourceError> {
    if path.is_dir() {
        return Ok(dicom::read_folder(path, &opts.dicom())?);
    }
    if !path.exists() {
        return Err(SourceError::NotFound(path.to_path_buf()));
    }
    match sniff(path) {
        Sniffed::Nifti => Ok(vec![nifti::read(path, &opts.nifti())?]),
        Sniffed::Dicom => Err(SourceError::SingleDicomFile(path.to_path_buf())),
        Sniffed::Unknown => Err(SourceError::UnknownFormat(path.to_path_buf())),
    }
}

enum Sniffed {
    Nifti,
    Dicom,
    Unknown,
}

/// The name decides for NIfTI (a corrupt `.nii.gz` must reach the NIfTI
/// reader to get its precise error); otherwise the DICOM preamble marker.
fn sniff(path: &Path) -> Sniffed {
    if nifti::is_nifti_path(path) {
        return Sniffed::Nifti;
    }
    let mut head = [0u8; 132];
    let is_dicom =
        std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM";
    if is_dicom { Sniffed::Dicom } else { Sniffed::Unknown }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_inputs_are_named() {
        let dir = std::env::temp_dir().join(format!("nb-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("nope.nii.gz");
        let err = open(&missing, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, SourceError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("nope.nii.gz"));

        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").expect("write");
        let err = open(&text, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, SourceError::UnknownFormat(_)), "{err}");

        let mut dcm = vec![0u8; 128];
        dcm.extend_from_slice(b"DICM");
        let single = dir.join("IM0001");
        std::fs::write(&single, &dcm).expect("write");
        assert!(matches!(open(&single, &OpenOptions::default()), Err(SourceError::SingleDicomFile(_))));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn options_reach_both_readers() {
        let o = OpenOptions { max_voxels: 1000, refuse_4d: true };
        assert_eq!(o.nifti().max_voxels, 1000);
        assert_eq!(o.nifti().four_d, nifti::FourD::Refuse);
        assert_eq!(o.dicom().max_voxels, 1000);
    }
}
