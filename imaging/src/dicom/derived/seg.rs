//! A binary DICOM Segmentation (PS3.3 A.51) of a label volume on its source
//! stack's grid.
//!
//! One segment per structure; one frame per (segment, plane) where the
//! segment has a voxel (empty frames are left out, as highdicom does; a
//! segmentation with no voxel at all keeps one empty frame, since a SEG needs
//! one). Frame pixel (row r, column c) of plane k is voxel (c, r, k) of the
//! volume, which `read_series` placed from the same slice; each frame lies on
//! its source slice's ImagePositionPatient and references that slice (and
//! frame) in its Derivation Image Sequence. Pixels are packed one bit each,
//! frames back to back (PS3.5 8.1.1).

use std::collections::BTreeSet;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::elements::{Obj, at, code_seq, ds, empty, is, item, seq, text, texts, ul_pair, us};
use super::{Code, CopiedHeader, DerivedError, DerivedObject, Identification, Producer, SEGMENTATION_STORAGE};
use crate::Volume;
use crate::dicom::SourceStack;

/// One structure of the label volume.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// The voxel value of the structure in the label volume.
    pub label_value: u8,
    /// Segment Label (e.g. `grey_matter`).
    pub label: String,
    /// Segmented Property Category and Type (e.g. Tissue / Gray matter, SNOMED CT).
    pub category: Code,
    pub property: Code,
    /// Tracking UID shared with the measurement report's group for this structure.
    pub tracking_uid: String,
}

/// How the segments were made (Segment Algorithm Type, PS3.3 C.8.20.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlgorithmType {
    /// By the model alone.
    #[default]
    Automatic,
    /// By the model, then corrected by a person.
    Semiautomatic,
}

impl AlgorithmType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmType::Automatic => "AUTOMATIC",
            AlgorithmType::Semiautomatic => "SEMIAUTOMATIC",
        }
    }
}

/// What the segmentation says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentationSpec {
    pub id: Identification,
    pub producer: Producer,
    /// Segments in order; their numbers are 1, 2, … as listed.
    pub segments: Vec<Segment>,
    /// Segment Algorithm Type of every segment.
    #[serde(default)]
    pub algorithm_type: AlgorithmType,
    /// Segment Algorithm Name and the algorithm's version (the model's).
    pub algorithm_name: String,
    pub algorithm_version: String,
    /// Content Label (a CS: upper case, at most 16 characters) and Content Description.
    pub content_label: String,
    pub content_description: String,
    /// Dimension Organization UID (deterministic, like the object's UIDs).
    pub dimension_organization_uid: String,
}

const SEGMENT_NUMBER: Tag = tags::REFERENCED_SEGMENT_NUMBER;

/// Builds the segmentation of `labels` (the label volume on `source`'s grid).
pub fn build_segmentation(
    labels: &Volume<u8>,
    source: &SourceStack,
    header: &CopiedHeader,
    spec: &SegmentationSpec,
) -> Result<DerivedObject, DerivedError> {
    let (rows, cols, planes) = (usize::from(source.rows), usize::from(source.cols), source.slices.len());
    if labels.dims() != [cols, rows, planes] {
        return Err(DerivedError::GridMismatch {
            series: source.series_uid.clone(),
            labels: labels.dims(),
            stack: [cols, rows, planes],
        });
    }
    let missing =
        |what: &str| DerivedError::MissingReference { series: source.series_uid.clone(), what: what.to_string() };
    if !header.has_frame_of_reference() || source.frame_of_reference_uid.is_none() {
        return Err(missing("FrameOfReferenceUID"));
    }
    let refs = super::slice_references(source)?;
    if spec.segments.is_empty() || spec.segments.len() > usize::from(u16::MAX) {
        return Err(DerivedError::Invalid(format!("{} segments", spec.segments.len())));
    }

    // Which (segment, plane) frames hold a voxel, in segment then plane order.
    let plane_len = rows * cols;
    let data = labels.data();
    let mut frames: Vec<(u16, usize)> = Vec::new();
    for (n, segment) in spec.segments.iter().enumerate() {
        let number = u16::try_from(n + 1).unwrap_or(u16::MAX);
        for (k, plane) in data.chunks_exact(plane_len).enumerate() {
            if plane.contains(&segment.label_value) {
                frames.push((number, k));
            }
        }
    }
    if frames.is_empty() {
        frames.push((1, 0));
    }
    let pixel_data = pack_frames(data, plane_len, &frames, &spec.segments);

    let mut obj = header.object();
    super::put_identity(&mut obj, SEGMENTATION_STORAGE, "SEG", &spec.id, &spec.producer);
    if obj.element_opt(tags::POSITION_REFERENCE_INDICATOR).ok().flatten().is_none() {
        obj.put(empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO));
    }
    // Segmentation Image.
    obj.put(texts(tags::IMAGE_TYPE, VR::CS, &["DERIVED", "PRIMARY"]));
    obj.put(text(tags::CONTENT_LABEL, VR::CS, &spec.content_label));
    obj.put(text(tags::CONTENT_DESCRIPTION, VR::LO, &spec.content_description));
    obj.put(empty(tags::CONTENT_CREATOR_NAME, VR::PN));
    obj.put(us(tags::SAMPLES_PER_PIXEL, 1));
    obj.put(text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    obj.put(us(tags::ROWS, source.rows));
    obj.put(us(tags::COLUMNS, source.cols));
    obj.put(us(tags::BITS_ALLOCATED, 1));
    obj.put(us(tags::BITS_STORED, 1));
    obj.put(us(tags::HIGH_BIT, 0));
    obj.put(us(tags::PIXEL_REPRESENTATION, 0));
    obj.put(text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"));
    obj.put(text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"));
    obj.put(seq(tags::SEGMENT_SEQUENCE, segment_items(spec)));
    // Multi-frame Functional Groups and Dimensions.
    obj.put(is(tags::NUMBER_OF_FRAMES, u32::try_from(frames.len()).unwrap_or(u32::MAX)));
    obj.put(seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared_groups(source)]));
    let per_frame = frames
        .iter()
        .filter_map(|&(segment, k)| {
            let (class, instance, frame_number) = *refs.get(k)?;
            let slice = source.slices.get(k)?;
            Some(frame_groups(segment, k, slice.position, class, instance, frame_number))
        })
        .collect();
    obj.put(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));
    obj.put(seq(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![item([text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &spec.dimension_organization_uid)])],
    ));
    obj.put(text(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D"));
    obj.put(seq(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dimension(spec, SEGMENT_NUMBER, tags::SEGMENT_IDENTIFICATION_SEQUENCE, "ReferencedSegmentNumber"),
            dimension(spec, tags::IMAGE_POSITION_PATIENT, tags::PLANE_POSITION_SEQUENCE, "ImagePositionPatient"),
        ],
    ));
    // Common Instance Reference: every source instance, once.
    let instances: BTreeSet<(&str, &str)> = refs.iter().map(|&(c, i, _)| (c, i)).collect();
    let referenced = instances
        .into_iter()
        .map(|(class, instance)| {
            item([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class),
                text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance),
            ])
        })
        .collect();
    obj.put(seq(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item([
            seq(tags::REFERENCED_INSTANCE_SEQUENCE, referenced),
            text(tags::SERIES_INSTANCE_UID, VR::UI, &source.series_uid),
        ])],
    ));
    obj.put(dicom_core::DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::value::PrimitiveValue::U8(pixel_data.into()),
    ));
    super::with_meta(obj)
}

/// One bit per pixel, least significant bit first, frames back to back, padded to an even length.
fn pack_frames(data: &[u8], plane_len: usize, frames: &[(u16, usize)], segments: &[Segment]) -> Vec<u8> {
    let bits = frames.len() * plane_len;
    let mut out = vec![0u8; bits.div_ceil(8).next_multiple_of(2)];
    for (f, &(segment, k)) in frames.iter().enumerate() {
        let Some(value) = segments.get(usize::from(segment) - 1).map(|s| s.label_value) else { continue };
        let Some(plane) = data.get(k * plane_len..(k + 1) * plane_len) else { continue };
        for (p, &v) in plane.iter().enumerate() {
            if v == value {
                let bit = f * plane_len + p;
                if let Some(byte) = out.get_mut(bit / 8) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
    }
    out
}

fn segment_items(spec: &SegmentationSpec) -> Vec<Obj> {
    spec.segments
        .iter()
        .enumerate()
        .map(|(n, s)| {
            item([
                us(tags::SEGMENT_NUMBER, u16::try_from(n + 1).unwrap_or(u16::MAX)),
                text(tags::SEGMENT_LABEL, VR::LO, &s.label),
                text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, spec.algorithm_type.as_str()),
                text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &spec.algorithm_name),
                seq(
                    tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
                    vec![item([
                        code_seq(
                            tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                            &Code::new("123110", "DCM", "Artificial Intelligence"),
                        ),
                        text(tags::ALGORITHM_NAME, VR::LO, &spec.algorithm_name),
                        text(tags::ALGORITHM_VERSION, VR::LO, &spec.algorithm_version),
                    ])],
                ),
                code_seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, &s.category),
                code_seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, &s.property),
                text(tags::TRACKING_ID, VR::UT, &s.label),
                text(tags::TRACKING_UID, VR::UI, &s.tracking_uid),
            ])
        })
        .collect()
}

/// Pixel Measures and Plane Orientation, the same for every frame.
fn shared_groups(source: &SourceStack) -> Obj {
    let thickness = source.slice_thickness.filter(|t| t.is_finite() && *t > 0.0).unwrap_or(source.slice_spacing);
    item([
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item([
                ds(tags::PIXEL_SPACING, &source.pixel_spacing),
                ds(tags::SLICE_THICKNESS, &[thickness]),
                ds(tags::SPACING_BETWEEN_SLICES, &[source.slice_spacing]),
            ])],
        ),
        seq(tags::PLANE_ORIENTATION_SEQUENCE, vec![item([ds(tags::IMAGE_ORIENTATION_PATIENT, &source.orientation)])]),
    ])
}

/// One frame's Derivation Image, Frame Content, Plane Position and Segment Identification.
fn frame_groups(
    segment: u16,
    k: usize,
    position: [f64; 3],
    class: &str,
    instance: &str,
    frame_number: Option<u32>,
) -> Obj {
    let mut source_image = item([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance),
        code_seq(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            &Code::new("121322", "DCM", "Source image for image processing operation"),
        ),
    ]);
    if let Some(f) = frame_number {
        source_image.put(is(tags::REFERENCED_FRAME_NUMBER, f));
    }
    item([
        seq(
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![item([
                code_seq(tags::DERIVATION_CODE_SEQUENCE, &Code::new("113076", "DCM", "Segmentation")),
                seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source_image]),
            ])],
        ),
        seq(
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item([ul_pair(
                tags::DIMENSION_INDEX_VALUES,
                u32::from(segment),
                u32::try_from(k + 1).unwrap_or(u32::MAX),
            )])],
        ),
        seq(tags::PLANE_POSITION_SEQUENCE, vec![item([ds(tags::IMAGE_POSITION_PATIENT, &position)])]),
        seq(tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![item([us(SEGMENT_NUMBER, segment)])]),
    ])
}

fn dimension(spec: &SegmentationSpec, pointer: Tag, group: Tag, label: &str) -> Obj {
    item([
        text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &spec.dimension_organization_uid),
        at(tags::DIMENSION_INDEX_POINTER, pointer),
        at(tags::FUNCTIONAL_GROUP_POINTER, group),
        text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
    ])
}
