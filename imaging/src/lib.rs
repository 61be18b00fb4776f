//! The pure imaging core of neurobatch.
//!
//! Reading NIfTI files and DICOM series into [`Volume`]s with exact geometry,
//! reorienting, smoothing and resampling them, computing foreground masks,
//! correcting bias fields and harmonizing intensities. Everything here is synchronous and does no
//! network or database I/O: the daemon calls it from blocking threads, and
//! the test suite checks it against nibabel, dcm2niix, pydicom, scipy and
//! intensity-normalization.
//!
//! ```
//! use imaging::{Affine, SourceMeta, Volume};
//! let v = Volume::new([2, 2, 1], vec![0.0f32, 1.0, 2.0, 3.0], Affine::identity(), SourceMeta::default()).unwrap();
//! assert_eq!(v.get(1, 1, 0), Some(&3.0));
//! assert_eq!(v.affine().orientation_code(), "RAS");
//! ```

pub mod affine;
pub mod bias;
pub mod dicom;
pub mod harmonize;
pub mod mask;
pub mod nifti;
pub mod orientation;
pub mod resample;
pub mod smooth;
pub mod source;
pub mod stats;
pub mod volume;

pub use affine::{Affine, AxisCode};
pub use volume::{SourceMeta, Volume, VolumeError};
