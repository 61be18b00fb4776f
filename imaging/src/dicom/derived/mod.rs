//! DICOM objects derived from a stack: what neurobatch sends back to a PACS.
//!
//! Owns building a binary Segmentation (`seg`, the SEG IOD: one segment per
//! structure, frames on the source stack's planes) and a TID 1500 Measurement
//! Report (`sr`, Comprehensive SR) from a label volume read from DICOM, and the
//! deterministic UIDs that let a re-send replace an object instead of
//! duplicating it (`uid`), and what a later revision of a segmentation (a
//! reviewer's corrected mask) needs to be built without the source files
//! (`revision`). The patient, study and frame-of-reference modules
//! are copied verbatim from a source file (`header`): the one place that
//! touches patient attributes, which it moves without reading them into
//! strings, so they cannot reach a log or an error. It does not decide what
//! the codes of a structure are or which figures a report carries (the
//! worker's mapping from its report does), and it does not send anything.

mod elements;
mod header;
mod revision;
mod seg;
mod sr;
mod uid;

use std::path::PathBuf;

use dicom_object::{FileDicomObject, InMemDicomObject};

use crate::dicom::SourceStack;

pub use header::CopiedHeader;
pub use revision::{SegmentationRecipe, instance_number, result_instance_uid};
pub use seg::{AlgorithmType, Segment, SegmentationSpec, build_segmentation};
pub use sr::{Measurement, MeasurementGroup, MeasurementReportSpec, ReferencedSegmentation, build_measurement_report};
pub use uid::derived_uid;

/// SOP classes this module writes.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
pub const COMPREHENSIVE_SR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.88.33";
/// The transfer syntax of every written object (Explicit VR Little Endian).
pub const WRITTEN_TRANSFER_SYNTAX: &str = "1.2.840.10008.1.2.1";
/// The coding scheme of neurobatch's own concepts (uncertainty figures, the
/// routing decision), declared in every SR that uses it (PS3.3 C.12.1.1.2:
/// private schemes start with "99").
pub const LOCAL_SCHEME: &str = "99NEUROBATCH";

/// A coded concept: (value, scheme designator, meaning), as DICOM code sequences carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Code { value: value.to_string(), scheme: scheme.to_string(), meaning: meaning.to_string() }
    }
}

/// Who made the object: the General and Enhanced General Equipment modules,
/// and the SR's device observer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Producer {
    /// Manufacturer (e.g. `neurobatch`).
    pub manufacturer: String,
    /// Manufacturer's Model Name: the model (e.g. `brain-tissue`).
    pub model_name: String,
    /// Software Versions: the software and the model version.
    pub software_versions: Vec<String>,
    /// Device Serial Number: the worker's identity.
    pub device_serial_number: String,
}

/// Series, instance and content identification of one derived object.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identification {
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub series_number: u32,
    pub instance_number: u32,
    pub series_description: String,
    /// ContentDate (`YYYYMMDD`) and ContentTime (`HHMMSS`).
    pub content_date: String,
    pub content_time: String,
}

/// Why a derived object could not be built. Messages name the source file,
/// series or attribute and the reason, never a patient attribute's value.
#[derive(Debug, thiserror::Error)]
pub enum DerivedError {
    #[error("{}: cannot copy the patient and study modules: {reason}", path.display())]
    Header { path: PathBuf, reason: String },
    #[error("series {series}: {what} missing, so no derived object can reference it")]
    MissingReference { series: String, what: String },
    #[error("series {series}: the label volume is {labels:?} voxels, the source stack {stack:?}")]
    GridMismatch { series: String, labels: [usize; 3], stack: [usize; 3] },
    #[error("invalid derived object: {0}")]
    Invalid(String),
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// A built object, ready to write.
pub type DerivedObject = FileDicomObject<InMemDicomObject>;

/// Writes `obj` as a Part 10 file atomically (a hidden temporary name, then a rename).
pub fn write_part10(obj: &DerivedObject, path: &std::path::Path) -> Result<(), DerivedError> {
    let err = |reason: String| DerivedError::Write { path: path.to_path_buf(), reason };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    obj.write_to_file(&tmp).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// The file meta group for `obj` (Explicit VR Little Endian).
fn with_meta(obj: InMemDicomObject) -> Result<DerivedObject, DerivedError> {
    obj.with_meta(
        dicom_object::FileMetaTableBuilder::new()
            .transfer_syntax(WRITTEN_TRANSFER_SYNTAX)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name("NEUROBATCH"),
    )
    .map_err(|e| DerivedError::Invalid(e.to_string()))
}

/// The SOP Common, series and content identification and the equipment
/// attributes every derived object carries (`modality` SEG or SR).
fn put_identity(obj: &mut InMemDicomObject, sop_class: &str, modality: &str, id: &Identification, producer: &Producer) {
    use dicom_core::VR;
    use dicom_dictionary_std::tags;
    use elements::{is, text, texts};
    obj.put(text(tags::SOP_CLASS_UID, VR::UI, sop_class));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &id.sop_instance_uid));
    obj.put(text(tags::MODALITY, VR::CS, modality));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &id.series_uid));
    obj.put(is(tags::SERIES_NUMBER, id.series_number));
    obj.put(text(tags::SERIES_DESCRIPTION, VR::LO, &id.series_description));
    obj.put(is(tags::INSTANCE_NUMBER, id.instance_number));
    obj.put(text(tags::CONTENT_DATE, VR::DA, &id.content_date));
    obj.put(text(tags::CONTENT_TIME, VR::TM, &id.content_time));
    obj.put(text(tags::MANUFACTURER, VR::LO, &producer.manufacturer));
    obj.put(text(tags::MANUFACTURER_MODEL_NAME, VR::LO, &producer.model_name));
    obj.put(text(tags::DEVICE_SERIAL_NUMBER, VR::LO, &producer.device_serial_number));
    let versions: Vec<&str> = producer.software_versions.iter().map(String::as_str).collect();
    obj.put(texts(tags::SOFTWARE_VERSIONS, VR::LO, &versions));
}

/// One plane's source image: (SOP class, SOP instance, frame number).
type SliceReference<'a> = (&'a str, &'a str, Option<u32>);

/// Each plane's source image; an error when a slice lacks a UID.
fn slice_references(source: &SourceStack) -> Result<Vec<SliceReference<'_>>, DerivedError> {
    source
        .slices
        .iter()
        .map(|s| match (&s.sop_class_uid, &s.sop_instance_uid) {
            (Some(class), Some(instance)) => Ok((class.as_str(), instance.as_str(), s.frame_number)),
            _ => Err(DerivedError::MissingReference {
                series: source.series_uid.clone(),
                what: "a slice's SOPClassUID or SOPInstanceUID".to_string(),
            }),
        })
        .collect()
}

/// neurobatch's Implementation Class UID (PS3.7 D.3.3.2), derived once from its name.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.155777293516853301720642144376033312681";
