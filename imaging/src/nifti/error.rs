//! The one error type of the NIfTI module: every variant names the file and
//! the reason in one lowercase line, so a failed job's reason is actionable.

use std::io;
use std::path::PathBuf;

/// Why a NIfTI file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    #[error("cannot open {}: {source}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: corrupt gzip stream: {reason}", .path.display())]
    Gzip { path: PathBuf, reason: String },
    #[error("{}: truncated: {reason}", .path.display())]
    Truncated { path: PathBuf, reason: String },
    #[error("{}: not a NIfTI file: {reason}", .path.display())]
    NotNifti { path: PathBuf, reason: String },
    #[error("{}: invalid dimensions: {reason}", .path.display())]
    BadDims { path: PathBuf, reason: String },
    #[error("{}: {voxels} voxels per volume exceed the limit of {max}", .path.display())]
    TooLarge { path: PathBuf, voxels: u128, max: u64 },
    #[error("{}: {ndim}-d input with dims {dims:?} refused (read options ask for 3-d only)", .path.display())]
    NotThreeD { path: PathBuf, ndim: usize, dims: Vec<i64> },
    #[error("{}: unsupported datatype {name} (code {code})", .path.display())]
    UnsupportedDatatype { path: PathBuf, code: i16, name: &'static str },
    #[error("{}: invalid vox_offset {offset}: {reason}", .path.display())]
    VoxOffset { path: PathBuf, offset: f64, reason: String },
    #[error("{}: invalid header: {reason}", .path.display())]
    BadHeader { path: PathBuf, reason: String },
    #[error("{}: data after the volume: {reason}", .path.display())]
    TrailingData { path: PathBuf, reason: String },
    #[error("{}: not an integer label map: {reason}", .path.display())]
    NotLabels { path: PathBuf, reason: String },
    #[error("cannot write {}: {reason}", .path.display())]
    Write { path: PathBuf, reason: String },
}

impl NiftiError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            NiftiError::Open { path, .. }
            | NiftiError::Io { path, .. }
            | NiftiError::Gzip { path, .. }
            | NiftiError::Truncated { path, .. }
            | NiftiError::NotNifti { path, .. }
            | NiftiError::BadDims { path, .. }
            | NiftiError::TooLarge { path, .. }
            | NiftiError::NotThreeD { path, .. }
            | NiftiError::UnsupportedDatatype { path, .. }
            | NiftiError::VoxOffset { path, .. }
            | NiftiError::BadHeader { path, .. }
            | NiftiError::TrailingData { path, .. }
            | NiftiError::NotLabels { path, .. }
            | NiftiError::Write { path, .. } => path,
        }
    }
}

/// Classifies an I/O error met while reading `what` from a (possibly gzip) stream.
pub(crate) fn read_error(path: &std::path::Path, gz: bool, what: &str, e: io::Error) -> NiftiError {
    let path = path.to_path_buf();
    match e.kind() {
        io::ErrorKind::UnexpectedEof => NiftiError::Truncated { path, reason: format!("{what} ends early") },
        // flate2 reports bad headers, corrupt deflate data and CRC mismatches as InvalidInput/InvalidData.
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData if gz => {
            NiftiError::Gzip { path, reason: format!("{e} (while reading {what})") }
        }
        _ => NiftiError::Io { path, source: e },
    }
}
