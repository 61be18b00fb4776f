//! What a derived object (a segmentation of a stack) must say about its source.
//!
//! Owns [`SourceStack`]: for each voxel plane `k` of a volume read from
//! DICOM, the instance (and frame) it came from and where it lies, plus the
//! stack's orientation, spacing and UIDs. Built by `read_series` from the same
//! ordering that placed the planes, so plane `k` of the volume and slice `k`
//! here are the same image. Holds UIDs and geometry only, never a patient
//! attribute.

use std::path::PathBuf;

use super::series::SliceRef;

/// One voxel plane's source image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceSlice {
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// 1-based frame number within a multi-frame instance; `None` for a single-frame one.
    pub frame_number: Option<u32>,
    /// ImagePositionPatient of the plane (DICOM LPS, mm).
    pub position: [f64; 3],
}

/// The source images of a volume, plane by plane. Serializable (without
/// `header_file`, a local path) so a later revision of a derived object can
/// be placed on the same slices (`derived::SegmentationRecipe`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceStack {
    pub study_uid: Option<String>,
    pub series_uid: String,
    pub frame_of_reference_uid: Option<String>,
    /// Rows and Columns of every slice: a plane's (row r, column c) is voxel (c, r, k).
    pub rows: u16,
    pub cols: u16,
    /// ImageOrientationPatient (row cosine, column cosine).
    pub orientation: [f64; 6],
    /// PixelSpacing `[between rows, between columns]`.
    pub pixel_spacing: [f64; 2],
    /// Distance between consecutive planes, mm.
    pub slice_spacing: f64,
    /// SliceThickness of the first slice, when it has one.
    pub slice_thickness: Option<f64>,
    /// `slices[k]` is the image of voxel plane `k`.
    pub slices: Vec<SourceSlice>,
    /// One source file of the stack (the first plane's): where a derived object
    /// copies the patient and study modules from. Not serialized.
    #[serde(skip)]
    pub header_file: PathBuf,
}

/// The stack's slices in plane order (`order[k]` indexes `parts`).
pub(crate) fn source_stack(
    series_uid: &str,
    parts: &[SliceRef],
    order: &[usize],
    slice_spacing: f64,
) -> Option<SourceStack> {
    let first = parts.get(*order.first()?)?;
    let geometry = first.instance.frames.get(first.frame)?.geometry?;
    let slices = order
        .iter()
        .map(|&i| {
            let p = parts.get(i)?;
            let frame = p.instance.frames.get(p.frame)?;
            Some(SourceSlice {
                sop_class_uid: p.instance.sop_class_uid.clone(),
                sop_instance_uid: p.instance.sop_instance_uid.clone(),
                frame_number: p.instance.multi_frame.then_some(frame.index + 1),
                position: frame.geometry?.position,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(SourceStack {
        study_uid: first.instance.meta.study_uid.clone(),
        series_uid: series_uid.to_string(),
        frame_of_reference_uid: first.instance.frame_of_reference_uid.clone(),
        rows: first.instance.rows,
        cols: first.instance.cols,
        orientation: geometry.orientation,
        pixel_spacing: geometry.pixel_spacing,
        slice_spacing,
        slice_thickness: first.instance.meta.slice_thickness_mm,
        slices,
        header_file: first.instance.path.clone(),
    })
}
