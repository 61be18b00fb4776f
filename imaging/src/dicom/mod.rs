//! DICOM folders → volumes.
//!
//! Owns reading a folder of DICOM Part 10 files (recursively) into one
//! [`Volume<f32>`] per stack: files are parsed (`scan`), grouped by
//! SeriesInstanceUID and split by orientation, image size and echo
//! (`series`), ordered and checked by slice position (`geometry`), and
//! decoded with the per-instance rescale applied (`pixels`). Acquisition and
//! equipment fields go to [`SourceMeta`] (`meta`); patient-identifying
//! attributes are never read. Each plane's source image is kept as a
//! [`SourceStack`] (`reference`) for the objects `derived` writes back (SEG,
//! SR), which copy the patient and study modules verbatim. It does not
//! resample (tilted stacks are refused), does not convert Siemens mosaics,
//! and does not build 4-D data.
//!
//! ```no_run
//! use imaging::dicom::{ScanOptions, read_folder, scan_folder};
//! let opts = ScanOptions::default();
//! let report = scan_folder("study/".as_ref(), &opts)?;
//! for s in &report.series {
//!     println!("{} echo {:?}: {} slices", s.series_uid, s.echo_number, s.slices);
//! }
//! let volumes = read_folder("study/".as_ref(), &opts)?;
//! # Ok::<(), imaging::dicom::DicomError>(())
//! ```

pub mod derived;
mod geometry;
mod guard;
mod meta;
mod pixels;
mod reference;
mod scan;
mod series;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

pub use geometry::{GeometryError, SliceGeometry, StackGeometry, assemble_stack};
pub use pixels::DECODABLE as DECODABLE_TRANSFER_SYNTAXES;
pub use reference::{SourceSlice, SourceStack};
pub use scan::{InstanceIdentity, SkipReason, SkippedFile, instance_identity, study_uid_of_file};
pub use series::SeriesSummary;

use crate::volume::{SourceMeta, Volume, voxel_count};

/// Limits and leniency of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOptions {
    /// Largest volume (voxels) a stack may become; larger ones are refused before decoding.
    pub max_voxels: usize,
    /// Files larger than this are refused unread (default 1 GiB: a 512³ volume
    /// of 32-bit voxels in one multi-frame file, and its header). A scan reads
    /// only headers; decoding a series reads its files whole.
    pub max_file_bytes: u64,
    /// Accept single images without ImagePositionPatient / ImageOrientationPatient /
    /// PixelSpacing (placed at the origin, axial, 1 mm, with a warning). Off by
    /// default: a volume with invented geometry is wrong for every later stage.
    pub allow_missing_geometry: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { max_voxels: 512 * 512 * 512, max_file_bytes: 1 << 30, allow_missing_geometry: false }
    }
}

/// What a folder holds: stacks that can become volumes, and skipped files with reasons.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub dir: PathBuf,
    /// Files looked at.
    pub files: usize,
    pub series: Vec<SeriesSummary>,
    pub skipped: Vec<SkippedFile>,
}

/// Errors reading a DICOM folder. Messages name the folder, file or series and
/// the reason, never a patient attribute.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("{}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: cannot read: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{}: the folder is empty", .0.display())]
    EmptyFolder(PathBuf),
    #[error("{}: none of the {files} files is DICOM", dir.display())]
    NoDicom { dir: PathBuf, files: usize },
    #[error("{}: no image series ({notes})", dir.display())]
    NoImageSeries { dir: PathBuf, notes: String },
    #[error("{}: no series {uid}", dir.display())]
    SeriesNotFound { dir: PathBuf, uid: String },
    #[error("{}: corrupt DICOM file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: unsupported transfer syntax {uid} ({name})", path.display())]
    UnsupportedTransferSyntax { path: PathBuf, uid: String, name: &'static str },
    #[error("{}: cannot decode pixel data: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    #[error("{}: pixel data has {actual} bytes, {expected} needed for {frames} frame(s) of {rows}x{cols}", path.display())]
    PixelDataTooShort { path: PathBuf, actual: usize, expected: usize, rows: u16, cols: u16, frames: usize },
    #[error("{}: multi-frame object without per-frame geometry (no {missing})", path.display())]
    NoPerFrameGeometry { path: PathBuf, missing: &'static str },
    #[error("{}: no {missing}, so the slice cannot be placed", path.display())]
    MissingGeometry { path: PathBuf, missing: &'static str },
    #[error("{}: siemens mosaic images are not supported", path.display())]
    Mosaic { path: PathBuf },
    #[error("series {series} in {}: {source}", dir.display())]
    Geometry { dir: PathBuf, series: String, source: GeometryError },
    #[error("series {series} in {}: {reason}", dir.display())]
    Inconsistent { dir: PathBuf, series: String, reason: String },
    #[error("series {series} in {}: {voxels} voxels exceed the limit of {max}", dir.display())]
    TooManyVoxels { dir: PathBuf, series: String, voxels: u128, max: usize },
}

/// Lists the stacks in `dir` (recursively) and the files skipped, without decoding pixels.
pub fn scan_folder(dir: &Path, opts: &ScanOptions) -> Result<ScanReport, DicomError> {
    let (instances, skipped, files) = scan::scan(dir, opts)?;
    let series = series::group(dir, instances);
    for s in &skipped {
        tracing::debug!(path = %s.path.display(), reason = %s.reason, "dicom file skipped");
    }
    tracing::debug!(dir = %dir.display(), files, series = series.len(), skipped = skipped.len(), "dicom folder scanned");
    Ok(ScanReport { dir: dir.to_path_buf(), files, series, skipped })
}

/// Every stack in `dir` as a volume. Fails on the first stack that cannot be
/// read, and on any file that looks like DICOM but is corrupt: a study with a
/// broken file is not silently read in part.
pub fn read_folder(dir: &Path, opts: &ScanOptions) -> Result<Vec<Volume<f32>>, DicomError> {
    let report = usable_report(dir, opts)?;
    report.series.iter().map(|s| read_series(s, opts)).collect()
}

/// The stacks of one SeriesInstanceUID (one per echo / orientation / size).
pub fn read_series_by_uid(dir: &Path, uid: &str, opts: &ScanOptions) -> Result<Vec<Volume<f32>>, DicomError> {
    let report = usable_report(dir, opts)?;
    let wanted: Vec<&SeriesSummary> = report.series.iter().filter(|s| s.series_uid == uid).collect();
    if wanted.is_empty() {
        return Err(DicomError::SeriesNotFound { dir: dir.to_path_buf(), uid: uid.to_string() });
    }
    wanted.into_iter().map(|s| read_series(s, opts)).collect()
}

/// The largest stack of one SeriesInstanceUID (a series split by echo or
/// orientation has several; the first of the largest wins), with its source
/// images plane by plane (`None` when a slice lacks geometry).
pub fn read_stack(dir: &Path, uid: &str, opts: &ScanOptions) -> Result<(Volume<f32>, Option<SourceStack>), DicomError> {
    let report = usable_report(dir, opts)?;
    let mut best: Option<&SeriesSummary> = None;
    for s in report.series.iter().filter(|s| s.series_uid == uid) {
        let size = |s: &SeriesSummary| usize::from(s.rows) * usize::from(s.cols) * s.slices;
        if best.is_none_or(|b| size(s) > size(b)) {
            best = Some(s);
        }
    }
    let series = best.ok_or_else(|| DicomError::SeriesNotFound { dir: dir.to_path_buf(), uid: uid.to_string() })?;
    read_series_with_source(series, opts)
}

/// Scans and turns "nothing usable" into the most specific error.
fn usable_report(dir: &Path, opts: &ScanOptions) -> Result<ScanReport, DicomError> {
    let report = scan_folder(dir, opts)?;
    if let Some(bad) = report.skipped.iter().find(|s| matches!(s.reason, SkipReason::Corrupt(_))) {
        let reason = match &bad.reason {
            SkipReason::Corrupt(r) => r.clone(),
            other => other.to_string(),
        };
        return Err(DicomError::Corrupt { path: bad.path.clone(), reason });
    }
    if report.series.is_empty() {
        let dicom: Vec<&SkippedFile> =
            report.skipped.iter().filter(|s| !matches!(s.reason, SkipReason::NotDicom)).collect();
        if dicom.is_empty() {
            return Err(DicomError::NoDicom { dir: dir.to_path_buf(), files: report.files });
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for s in dicom {
            let r = s.reason.to_string();
            match counts.iter_mut().find(|(k, _)| *k == r) {
                Some((_, n)) => *n += 1,
                None => counts.push((r, 1)),
            }
        }
        let notes = counts.iter().map(|(r, n)| format!("{n} x {r}")).collect::<Vec<_>>().join(", ");
        return Err(DicomError::NoImageSeries { dir: dir.to_path_buf(), notes });
    }
    Ok(report)
}

/// One stack → one volume: geometry checked, instances decoded in parallel,
/// per-frame rescale applied.
pub fn read_series(series: &SeriesSummary, opts: &ScanOptions) -> Result<Volume<f32>, DicomError> {
    read_series_with_source(series, opts).map(|(volume, _)| volume)
}

/// [`read_series`], and the source image of each voxel plane (`None` when the
/// geometry was assumed).
pub fn read_series_with_source(
    series: &SeriesSummary,
    opts: &ScanOptions,
) -> Result<(Volume<f32>, Option<SourceStack>), DicomError> {
    let err_series = |reason: String| DicomError::Inconsistent {
        dir: series.dir.clone(),
        series: series.series_uid.clone(),
        reason,
    };
    let first = series.parts.first().ok_or_else(|| err_series("no slices".to_string()))?;
    let (rows, cols) = (first.instance.rows, first.instance.cols);
    let voxels = u128::from(rows) * u128::from(cols) * series.parts.len() as u128;
    if voxels > opts.max_voxels as u128 {
        return Err(DicomError::TooManyVoxels {
            dir: series.dir.clone(),
            series: series.series_uid.clone(),
            voxels,
            max: opts.max_voxels,
        });
    }
    let mut warnings = Vec::new();
    let mut slices = Vec::with_capacity(series.parts.len());
    for (n, p) in series.parts.iter().enumerate() {
        let inst = &p.instance;
        if inst.mosaic {
            return Err(DicomError::Mosaic { path: inst.path.clone() });
        }
        if (inst.bits_allocated, inst.signed) != (first.instance.bits_allocated, first.instance.signed) {
            return Err(err_series(format!(
                "instances mix {} and {} samples",
                first.instance.meta.datatype, inst.meta.datatype
            )));
        }
        let frame = inst.frames.get(p.frame).ok_or_else(|| err_series("frame index out of range".to_string()))?;
        match frame.geometry {
            Some(g) => slices.push(g),
            None if inst.multi_frame && !opts.allow_missing_geometry => {
                return Err(DicomError::NoPerFrameGeometry { path: inst.path.clone(), missing: frame.missing });
            }
            None if opts.allow_missing_geometry => {
                if n == 0 {
                    warnings.push(format!("no {}: geometry assumed (axial, 1 mm, origin 0)", frame.missing));
                }
                slices.push(SliceGeometry {
                    position: [0.0, 0.0, n as f64],
                    orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    pixel_spacing: [1.0, 1.0],
                    thickness: Some(1.0),
                });
            }
            None => return Err(DicomError::MissingGeometry { path: inst.path.clone(), missing: frame.missing }),
        }
    }
    let stack = assemble_stack(&slices).map_err(|source| DicomError::Geometry {
        dir: series.dir.clone(),
        series: series.series_uid.clone(),
        source,
    })?;
    warnings.extend(stack.warnings.iter().cloned());

    let dims = [usize::from(cols), usize::from(rows), series.parts.len()];
    let total = voxel_count(dims).map_err(|e| err_series(e.to_string()))?;
    let plane = dims[0] * dims[1];
    // Multi-frame objects are decoded once and shared by their frames; single-frame
    // instances are decoded inside the parallel loop so only one plane per thread is alive.
    let mut shared: HashMap<usize, Arc<pixels::Decoded>> = HashMap::new();
    for p in &series.parts {
        if p.instance.multi_frame && !shared.contains_key(&(Arc::as_ptr(&p.instance) as usize)) {
            shared.insert(Arc::as_ptr(&p.instance) as usize, Arc::new(pixels::decode(&p.instance, opts)?));
        }
    }
    let mut data = vec![0f32; total];
    data.par_chunks_mut(plane).zip(stack.order.par_iter()).try_for_each(|(out, &idx)| {
        let p = series.parts.get(idx).ok_or_else(|| err_series("slice index out of range".to_string()))?;
        let frame = p.instance.frames.get(p.frame).ok_or_else(|| err_series("frame out of range".to_string()))?;
        let decoded = match shared.get(&(Arc::as_ptr(&p.instance) as usize)) {
            Some(d) => Arc::clone(d),
            None => Arc::new(pixels::decode(&p.instance, opts)?),
        };
        decoded.write_frame(frame.index as usize, frame.slope, frame.intercept, out);
        Ok::<(), DicomError>(())
    })?;

    let source = reference::source_stack(&series.series_uid, &series.parts, &stack.order, stack.slice_spacing);
    let meta = SourceMeta { warnings, ..series.meta.clone() };
    let volume = Volume::new(dims, data, stack.affine, meta).map_err(|e| err_series(e.to_string()))?;
    Ok((volume, source))
}
