//! The DICOM attributes we read, by name, and nothing else.
//!
//! Owns the allow-list of acquisition and equipment attributes copied into
//! [`SourceMeta`] and the typed accessors the other submodules use to read a
//! parsed header. Patient-identifying attributes (PatientName, PatientID,
//! PatientBirthDate, AccessionNumber, …) have no accessor here and are never
//! read: what is not read cannot leak into a log or an error message.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::Tag;

use crate::volume::SourceMeta;

pub(crate) type Obj = InMemDicomObject;

/// A trimmed, non-empty string value.
pub(crate) fn string(obj: &Obj, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// A finite number (DS, IS, FL, FD, US, …).
pub(crate) fn float(obj: &Obj, tag: Tag) -> Option<f64> {
    obj.element_opt(tag).ok()??.to_float64().ok().filter(|v| v.is_finite())
}

/// All numbers of a multi-valued attribute (IPP, IOP, PixelSpacing).
pub(crate) fn floats(obj: &Obj, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok()??.to_multi_float64().ok()
}

pub(crate) fn int(obj: &Obj, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok()??.to_int::<i64>().ok()
}

/// Items of a sequence attribute (empty when absent).
pub(crate) fn items(obj: &Obj, tag: Tag) -> &[Obj] {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.items()).unwrap_or_default()
}

/// The first item of a functional-group macro: per-frame group first, then shared.
pub(crate) fn group_item<'a>(per_frame: Option<&'a Obj>, shared: Option<&'a Obj>, tag: Tag) -> Option<&'a Obj> {
    per_frame.and_then(|f| items(f, tag).first()).or_else(|| shared.and_then(|s| items(s, tag).first()))
}

/// `"int16"`, `"uint8"`, … from BitsAllocated and PixelRepresentation.
pub(crate) fn datatype(bits_allocated: u16, signed: bool) -> String {
    format!("{}int{}", if signed { "" } else { "u" }, bits_allocated)
}

/// Acquisition and equipment fields of one instance. Enhanced objects keep
/// TR / flip angle / TE in functional groups (PS3.3 C.8.13.5): those are
/// read from the shared group when the top level lacks them.
pub(crate) fn source_meta(obj: &Obj) -> SourceMeta {
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
    let first_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).first();
    let timing = group_item(first_frame, shared, tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE);
    let echo = group_item(first_frame, shared, tags::MR_ECHO_SEQUENCE);
    let or_group = |tag: Tag, g: Option<&Obj>| float(obj, tag).or_else(|| g.and_then(|g| float(g, tag)));
    SourceMeta {
        format: "dicom".to_string(),
        study_uid: string(obj, tags::STUDY_INSTANCE_UID),
        series_uid: string(obj, tags::SERIES_INSTANCE_UID),
        modality: string(obj, tags::MODALITY),
        series_description: string(obj, tags::SERIES_DESCRIPTION),
        manufacturer: string(obj, tags::MANUFACTURER),
        manufacturer_model: string(obj, tags::MANUFACTURER_MODEL_NAME),
        field_strength_t: float(obj, tags::MAGNETIC_FIELD_STRENGTH),
        station_name: string(obj, tags::STATION_NAME),
        institution_name: string(obj, tags::INSTITUTION_NAME),
        repetition_time_ms: or_group(tags::REPETITION_TIME, timing),
        echo_time_ms: float(obj, tags::ECHO_TIME).or_else(|| echo.and_then(|e| float(e, tags::EFFECTIVE_ECHO_TIME))),
        inversion_time_ms: float(obj, tags::INVERSION_TIME),
        flip_angle_deg: or_group(tags::FLIP_ANGLE, timing),
        slice_thickness_mm: float(obj, tags::SLICE_THICKNESS),
        echo_number: int(obj, tags::ECHO_NUMBERS).and_then(|e| i32::try_from(e).ok()),
        ..SourceMeta::default()
    }
}
