//! Folder walk and header parsing.
//!
//! Owns turning a folder (recursively) into parsed instance headers: which
//! files are DICOM, which are skipped and why, and for each image instance its
//! frames' geometry and rescale. It reads headers only: the bytes before
//! PixelData, not the rest of the file (`read_dicom_header`); grouping into
//! series is `series.rs`, decoding (which reads whole files) is `pixels.rs`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use rayon::prelude::*;

use super::geometry::SliceGeometry;
use super::guard;
use super::meta::{self, Obj, float, floats, group_item, int, items, string};
use super::{DicomError, ScanOptions};
use crate::volume::SourceMeta;

/// Why a file in the folder did not become part of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// No "DICM" magic after a 128-byte preamble.
    NotDicom,
    /// A DICOM object without pixel data (SR, presentation state, DICOMDIR, …).
    NoPixelData,
    /// SamplesPerPixel above 1: colour images are not brain volumes.
    Colour(u16),
    /// The file has the DICOM magic but cannot be parsed safely.
    Corrupt(String),
    /// No top-level PixelData within the first [`MAX_HEADER_BYTES`]: a large
    /// non-image object (raw data, spectroscopy) or an image whose header a
    /// scan will not read that far into. Skipped, not corrupt: it does not
    /// fail the study's other series.
    HeaderTooLarge,
    /// The file could not be read at all.
    Unreadable(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotDicom => write!(f, "not a DICOM file"),
            SkipReason::NoPixelData => write!(f, "DICOM object without pixel data"),
            SkipReason::Colour(n) => write!(f, "colour image ({n} samples per pixel)"),
            SkipReason::Corrupt(r) => write!(f, "corrupt DICOM file: {r}"),
            SkipReason::HeaderTooLarge => {
                write!(f, "no pixel data within the first {} MiB (the most a scan reads)", MAX_HEADER_BYTES >> 20)
            }
            SkipReason::Unreadable(r) => write!(f, "unreadable: {r}"),
        }
    }
}

/// A file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// One frame of an instance as a slice candidate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub index: u32,
    pub geometry: Option<SliceGeometry>,
    /// Which attribute was missing when `geometry` is `None`.
    pub missing: &'static str,
    pub slope: f64,
    pub intercept: f64,
}

/// The parsed header of one image instance.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub path: PathBuf,
    pub transfer_syntax: String,
    pub series_uid: Option<String>,
    /// SOPClassUID, SOPInstanceUID and FrameOfReferenceUID: what a derived
    /// object (a segmentation of this stack) references.
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub rows: u16,
    pub cols: u16,
    pub bits_allocated: u16,
    pub signed: bool,
    pub multi_frame: bool,
    pub mosaic: bool,
    pub frames: Vec<Frame>,
    pub meta: SourceMeta,
}

/// Every file under `dir`, sorted, parsed in parallel.
pub(crate) fn scan(dir: &Path, opts: &ScanOptions) -> Result<(Vec<Instance>, Vec<SkippedFile>, usize), DicomError> {
    if !dir.is_dir() {
        return Err(DicomError::NotAFolder(dir.to_path_buf()));
    }
    let mut paths = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| DicomError::Io { path: dir.to_path_buf(), reason: e.to_string() })?;
        if entry.file_type().is_file() {
            paths.push(entry.into_path());
        }
    }
    if paths.is_empty() {
        return Err(DicomError::EmptyFolder(dir.to_path_buf()));
    }
    let results: Vec<Result<Instance, SkippedFile>> = paths.par_iter().map(|p| read_instance(p, opts)).collect();
    let (mut instances, mut skipped) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(i) => instances.push(i),
            Err(s) => skipped.push(s),
        }
    }
    Ok((instances, skipped, paths.len()))
}

fn skip(path: &Path, reason: SkipReason) -> SkippedFile {
    SkippedFile { path: path.to_path_buf(), reason }
}

/// The first read of a header; doubled while the header goes on.
const FIRST_HEADER_READ: u64 = 256 << 10;

/// The most a scan reads of one file before its pixel data: a file whose
/// header (per-frame functional groups, private tags) runs longer is skipped
/// ([`SkipReason::HeaderTooLarge`]).
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Opens a file that starts like DICOM and is within the size limit; returns
/// it (positioned after the 132-byte preamble and magic), its length and those bytes.
fn open_dicom(path: &Path, opts: &ScanOptions) -> Result<(File, u64, Vec<u8>), SkippedFile> {
    let unreadable = |e: std::io::Error| skip(path, SkipReason::Unreadable(e.to_string()));
    let mut f = File::open(path).map_err(unreadable)?;
    let len = f.metadata().map_err(unreadable)?.len();
    let mut head = [0u8; 132];
    if len < 132 || f.read_exact(&mut head).is_err() || !guard::has_preamble(&head) {
        return Err(skip(path, SkipReason::NotDicom));
    }
    if len > opts.max_file_bytes {
        return Err(skip(
            path,
            SkipReason::Corrupt(format!("file of {len} bytes exceeds the limit of {}", opts.max_file_bytes)),
        ));
    }
    Ok((f, len, head.to_vec()))
}

/// Reads a whole file after checking it starts like DICOM and is not absurdly large.
pub(crate) fn read_dicom_bytes(path: &Path, opts: &ScanOptions) -> Result<Vec<u8>, SkippedFile> {
    let (mut f, _, mut bytes) = open_dicom(path, opts)?;
    f.read_to_end(&mut bytes).map_err(|e| skip(path, SkipReason::Unreadable(e.to_string())))?;
    Ok(bytes)
}

/// Reads a file's header only — the bytes before its top-level PixelData,
/// every element length checked ([`guard::check_header`]) — starting with
/// 256 KiB and doubling up to [`MAX_HEADER_BYTES`]. Deflated files are read
/// whole (their data set is one deflate stream). [`parse`] with
/// `header_only` reads the returned bytes.
pub(crate) fn read_dicom_header(path: &Path, opts: &ScanOptions) -> Result<(Vec<u8>, guard::Checked), SkippedFile> {
    let unreadable = |e: std::io::Error| skip(path, SkipReason::Unreadable(e.to_string()));
    let corrupt = |r: String| skip(path, SkipReason::Corrupt(r));
    let (mut f, len, mut bytes) = open_dicom(path, opts)?;
    let mut want = FIRST_HEADER_READ.min(len);
    loop {
        let have = bytes.len() as u64;
        (&mut f).take(want.saturating_sub(have)).read_to_end(&mut bytes).map_err(unreadable)?;
        let total = usize::try_from(len).unwrap_or(usize::MAX);
        match guard::check_header(&bytes, total).map_err(corrupt)? {
            guard::HeaderWalk::Done(checked) => return Ok((bytes, checked)),
            guard::HeaderWalk::Deflated => {
                f.read_to_end(&mut bytes).map_err(unreadable)?;
                let checked = guard::check_lengths(&bytes).map_err(corrupt)?;
                return Ok((bytes, checked));
            }
            guard::HeaderWalk::NeedMore if (bytes.len() as u64) < len.min(MAX_HEADER_BYTES) => {
                want = want.saturating_mul(2).min(len).min(MAX_HEADER_BYTES);
            }
            guard::HeaderWalk::NeedMore => return Err(skip(path, SkipReason::HeaderTooLarge)),
        }
    }
}

/// Parses a checked byte buffer; `header_only` stops before PixelData.
pub(crate) fn parse(bytes: &[u8], header_only: bool) -> Result<DefaultDicomObject, String> {
    let opts = OpenFileOptions::new().read_preamble(ReadPreamble::Always);
    let opts = if header_only { opts.read_until(tags::PIXEL_DATA) } else { opts };
    opts.from_reader(bytes).map_err(|e| e.to_string())
}

/// What names one Part 10 file: its study, SOP class and instance (blank
/// values are `None`), and its transfer syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub study_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub transfer_syntax: String,
}

/// The identity of one Part 10 file, read as the scan reads a file (the
/// preamble, the size limit and the element-length check first, the header
/// only). The error is the reason the file is not readable DICOM.
pub fn instance_identity(path: &Path, opts: &ScanOptions) -> Result<InstanceIdentity, SkipReason> {
    let (bytes, checked) = read_dicom_header(path, opts).map_err(|s| s.reason)?;
    let obj = parse(&bytes, true).map_err(SkipReason::Corrupt)?;
    let uid = |tag: Tag| string(&obj, tag).filter(|u| !u.trim().is_empty());
    Ok(InstanceIdentity {
        study_uid: uid(tags::STUDY_INSTANCE_UID),
        sop_class_uid: uid(tags::SOP_CLASS_UID),
        sop_instance_uid: uid(tags::SOP_INSTANCE_UID),
        transfer_syntax: checked.transfer_syntax,
    })
}

/// The StudyInstanceUID of one Part 10 file ([`instance_identity`]).
pub fn study_uid_of_file(path: &Path, opts: &ScanOptions) -> Result<Option<String>, SkipReason> {
    instance_identity(path, opts).map(|i| i.study_uid)
}

fn read_instance(path: &Path, opts: &ScanOptions) -> Result<Instance, SkippedFile> {
    let (bytes, checked) = read_dicom_header(path, opts)?;
    let corrupt = |r: String| skip(path, SkipReason::Corrupt(r));
    let obj = parse(&bytes, true).map_err(corrupt)?.into_inner();
    if !checked.has_pixel_data {
        return Err(skip(path, SkipReason::NoPixelData));
    }
    let spp = int(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if spp != 1 {
        return Err(skip(path, SkipReason::Colour(u16::try_from(spp).unwrap_or(u16::MAX))));
    }
    let dim = |tag: Tag| int(&obj, tag).and_then(|v| u16::try_from(v).ok()).filter(|&v| v > 0);
    let (Some(rows), Some(cols)) = (dim(tags::ROWS), dim(tags::COLUMNS)) else {
        return Err(corrupt("missing or invalid Rows/Columns".to_string()));
    };
    let bits_allocated = match int(&obj, tags::BITS_ALLOCATED) {
        Some(b @ (8 | 16 | 32)) => b as u16,
        other => return Err(corrupt(format!("unsupported BitsAllocated {other:?}"))),
    };
    let n_frames = int(&obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    // A corrupt NumberOfFrames must not size a huge frame list: no more frames than the voxel cap allows.
    let plane = usize::from(rows) * usize::from(cols);
    let n_frames = usize::try_from(n_frames)
        .ok()
        .filter(|&n| n.checked_mul(plane).is_some_and(|v| v <= opts.max_voxels))
        .ok_or_else(|| corrupt(format!("{n_frames} frames of {rows}x{cols} exceed the voxel limit")))?;
    let has_groups = obj.element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).ok().flatten().is_some();
    let multi_frame = n_frames > 1 || has_groups;
    let frames = if multi_frame { enhanced_frames(&obj, n_frames) } else { vec![classic_frame(&obj)] };
    let mosaic = string(&obj, tags::IMAGE_TYPE).is_some_and(|t| t.to_ascii_uppercase().contains("MOSAIC"));
    let mut meta = meta::source_meta(&obj);
    let signed = int(&obj, tags::PIXEL_REPRESENTATION) == Some(1);
    meta.datatype = meta::datatype(bits_allocated, signed);
    Ok(Instance {
        path: path.to_path_buf(),
        transfer_syntax: checked.transfer_syntax,
        series_uid: meta.series_uid.clone(),
        sop_class_uid: string(&obj, tags::SOP_CLASS_UID),
        sop_instance_uid: string(&obj, tags::SOP_INSTANCE_UID),
        frame_of_reference_uid: string(&obj, tags::FRAME_OF_REFERENCE_UID),
        rows,
        cols,
        bits_allocated,
        signed,
        multi_frame,
        mosaic,
        frames,
        meta,
    })
}

fn slice_geometry(
    pos_obj: Option<&Obj>,
    orient_obj: Option<&Obj>,
    spacing_obj: Option<&Obj>,
) -> Result<SliceGeometry, &'static str> {
    let three = |v: Vec<f64>| <[f64; 3]>::try_from(v).ok();
    let position = pos_obj.and_then(|o| floats(o, tags::IMAGE_POSITION_PATIENT)).and_then(three);
    let orientation =
        orient_obj.and_then(|o| floats(o, tags::IMAGE_ORIENTATION_PATIENT)).and_then(|v| <[f64; 6]>::try_from(v).ok());
    let spacing = spacing_obj.and_then(|o| floats(o, tags::PIXEL_SPACING)).and_then(|v| <[f64; 2]>::try_from(v).ok());
    let thickness = spacing_obj.and_then(|o| {
        float(o, tags::SPACING_BETWEEN_SLICES).filter(|v| *v > 0.0).or_else(|| float(o, tags::SLICE_THICKNESS))
    });
    match (position, orientation, spacing) {
        (Some(position), Some(orientation), Some(pixel_spacing)) => {
            Ok(SliceGeometry { position, orientation, pixel_spacing, thickness })
        }
        (None, ..) => Err("ImagePositionPatient"),
        (_, None, _) => Err("ImageOrientationPatient"),
        (.., None) => Err("PixelSpacing"),
    }
}

fn rescale(obj: Option<&Obj>) -> Option<(f64, f64)> {
    let o = obj?;
    let slope = float(o, tags::RESCALE_SLOPE);
    let intercept = float(o, tags::RESCALE_INTERCEPT);
    (slope.is_some() || intercept.is_some()).then(|| (slope.unwrap_or(1.0), intercept.unwrap_or(0.0)))
}

fn frame(index: u32, geometry: Result<SliceGeometry, &'static str>, scale: Option<(f64, f64)>) -> Frame {
    let (slope, intercept) = scale.unwrap_or((1.0, 0.0));
    match geometry {
        Ok(g) => Frame { index, geometry: Some(g), missing: "", slope, intercept },
        Err(missing) => Frame { index, geometry: None, missing, slope, intercept },
    }
}

fn classic_frame(obj: &Obj) -> Frame {
    frame(0, slice_geometry(Some(obj), Some(obj), Some(obj)), rescale(Some(obj)))
}

/// Per-frame geometry and rescale from the functional groups (PS3.3 C.7.6.16):
/// a per-frame item overrides the shared one.
fn enhanced_frames(obj: &Obj, n_frames: usize) -> Vec<Frame> {
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    (0..n_frames)
        .map(|f| {
            let pf = per_frame.get(f);
            let geometry = if pf.is_none() && shared.is_none() {
                Err("PerFrameFunctionalGroupsSequence")
            } else {
                slice_geometry(
                    group_item(pf, shared, tags::PLANE_POSITION_SEQUENCE),
                    group_item(pf, shared, tags::PLANE_ORIENTATION_SEQUENCE),
                    group_item(pf, shared, tags::PIXEL_MEASURES_SEQUENCE),
                )
                .map_err(|m| match m {
                    "ImagePositionPatient" => "PlanePositionSequence",
                    "ImageOrientationPatient" => "PlaneOrientationSequence",
                    _ => "PixelMeasuresSequence",
                })
            };
            let scale =
                rescale(group_item(pf, shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)).or(rescale(Some(obj)));
            frame(u32::try_from(f).unwrap_or(u32::MAX), geometry, scale)
        })
        .collect()
}
