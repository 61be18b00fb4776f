//! A TID 1500 Measurement Report (PS3.16) as a Comprehensive SR (PS3.3 A.35.3).
//!
//! The tree: the report container (TID 1500) with its language, a device
//! observer (TID 1001/1004) and the procedure reported; then Imaging
//! Measurements, holding one Measurement Group per structure (TID 1411:
//! tracking identifiers, the finding, the referenced SEG segment, the source
//! series, the measured values) and a study-level group (TID 1501: values and
//! text evaluations such as the routing decision). Concepts in
//! [`LOCAL_SCHEME`](super::LOCAL_SCHEME) are declared in the Coding Scheme
//! Identification Sequence. The evidence sequence lists every instance the
//! report references (the source slices and the SEG).

use std::collections::BTreeSet;

use dicom_core::VR;
use dicom_dictionary_std::tags;

use super::elements::{Obj, code_item, code_seq, ds, item, seq, text, us};
use super::{
    COMPREHENSIVE_SR_STORAGE, Code, CopiedHeader, DerivedError, DerivedObject, Identification, LOCAL_SCHEME, Producer,
    SEGMENTATION_STORAGE,
};
use crate::dicom::SourceStack;

/// The segmentation the report's groups point into.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencedSegmentation {
    pub series_uid: String,
    pub sop_instance_uid: String,
}

/// One numeric measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub concept: Code,
    pub value: f64,
    /// A UCUM unit (`ml`, `1`, …).
    pub unit: Code,
}

/// One measurement group.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementGroup {
    pub tracking_id: String,
    pub tracking_uid: String,
    pub finding: Code,
    /// The SEG segment the group measures (a TID 1411 volumetric group);
    /// `None` for a study-level group (TID 1501).
    pub segment_number: Option<u16>,
    pub measurements: Vec<Measurement>,
    /// Text evaluations: (concept, text).
    pub evaluations: Vec<(Code, String)>,
}

/// What the report says.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementReportSpec {
    pub id: Identification,
    pub producer: Producer,
    /// Device Observer UID: the device that made the measurements.
    pub device_observer_uid: String,
    pub procedure_reported: Code,
    pub segmentation: ReferencedSegmentation,
    pub groups: Vec<MeasurementGroup>,
}

fn dcm(value: &str, meaning: &str) -> Code {
    Code::new(value, "DCM", meaning)
}

/// Builds the report of `spec` on the study and source series of `source`.
pub fn build_measurement_report(
    source: &SourceStack,
    header: &CopiedHeader,
    spec: &MeasurementReportSpec,
) -> Result<DerivedObject, DerivedError> {
    let refs: BTreeSet<(&str, &str)> = super::slice_references(source)?.into_iter().map(|(c, i, _)| (c, i)).collect();
    if spec.groups.is_empty() {
        return Err(DerivedError::Invalid("a measurement report needs at least one group".to_string()));
    }
    let mut obj = header.object();
    // The SR IOD has no Frame of Reference module.
    obj.remove_element(tags::FRAME_OF_REFERENCE_UID);
    obj.remove_element(tags::POSITION_REFERENCE_INDICATOR);
    super::put_identity(&mut obj, COMPREHENSIVE_SR_STORAGE, "SR", &spec.id, &spec.producer);
    obj.put(seq(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, Vec::new()));
    // SR Document General.
    obj.put(text(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"));
    obj.put(text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"));
    obj.put(seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new()));
    let study_uid = source.study_uid.clone().unwrap_or_default();
    let source_refs = refs.into_iter().map(|(class, instance)| sop_ref(class, instance)).collect::<Vec<_>>();
    obj.put(seq(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![item([
            seq(
                tags::REFERENCED_SERIES_SEQUENCE,
                vec![
                    series_ref(&source.series_uid, source_refs),
                    series_ref(
                        &spec.segmentation.series_uid,
                        vec![sop_ref(SEGMENTATION_STORAGE, &spec.segmentation.sop_instance_uid)],
                    ),
                ],
            ),
            text(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid),
        ])],
    ));
    // SR Document Content: the root container.
    obj.put(text(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
    obj.put(code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, &dcm("126000", "Imaging Measurement Report")));
    obj.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    obj.put(template(tags::CONTENT_TEMPLATE_SEQUENCE, "1500"));
    obj.put(seq(tags::CONTENT_SEQUENCE, root_content(source, spec)));
    if uses_local_scheme(spec) {
        obj.put(seq(
            tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
            vec![item([
                text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, LOCAL_SCHEME),
                text(tags::CODING_SCHEME_NAME, VR::ST, "neurobatch concepts"),
                text(tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION, VR::ST, "neurobatch"),
            ])],
        ));
    }
    super::with_meta(obj)
}

fn uses_local_scheme(spec: &MeasurementReportSpec) -> bool {
    spec.groups.iter().any(|g| {
        g.finding.scheme == LOCAL_SCHEME
            || g.measurements.iter().any(|m| m.concept.scheme == LOCAL_SCHEME)
            || g.evaluations.iter().any(|(c, _)| c.scheme == LOCAL_SCHEME)
    })
}

fn sop_ref(class: &str, instance: &str) -> Obj {
    item([
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance),
    ])
}

fn series_ref(series_uid: &str, sops: Vec<Obj>) -> Obj {
    item([seq(tags::REFERENCED_SOP_SEQUENCE, sops), text(tags::SERIES_INSTANCE_UID, VR::UI, series_uid)])
}

fn template(tag: dicom_core::Tag, id: &str) -> dicom_object::mem::InMemElement {
    seq(tag, vec![item([text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"), text(tags::TEMPLATE_IDENTIFIER, VR::CS, id)])])
}

/// A content item's relationship, value type and concept name.
fn content(relationship: &str, value_type: &str, concept: &Code) -> Obj {
    item([
        text(tags::RELATIONSHIP_TYPE, VR::CS, relationship),
        text(tags::VALUE_TYPE, VR::CS, value_type),
        code_seq(tags::CONCEPT_NAME_CODE_SEQUENCE, concept),
    ])
}

fn text_item(relationship: &str, concept: &Code, value: &str) -> Obj {
    let mut o = content(relationship, "TEXT", concept);
    o.put(text(tags::TEXT_VALUE, VR::UT, value));
    o
}

fn code_content(relationship: &str, concept: &Code, value: &Code) -> Obj {
    let mut o = content(relationship, "CODE", concept);
    o.put(seq(tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)]));
    o
}

fn uid_item(relationship: &str, concept: &Code, uid: &str) -> Obj {
    let mut o = content(relationship, "UIDREF", concept);
    o.put(text(tags::UID, VR::UI, uid));
    o
}

fn num_item(m: &Measurement) -> Obj {
    let mut o = content("CONTAINS", "NUM", &m.concept);
    o.put(seq(
        tags::MEASURED_VALUE_SEQUENCE,
        vec![item([code_seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, &m.unit), ds(tags::NUMERIC_VALUE, &[m.value])])],
    ));
    o
}

fn container(relationship: &str, concept: &Code, template_id: Option<&str>, children: Vec<Obj>) -> Obj {
    let mut o = content(relationship, "CONTAINER", concept);
    o.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    if let Some(t) = template_id {
        o.put(template(tags::CONTENT_TEMPLATE_SEQUENCE, t));
    }
    o.put(seq(tags::CONTENT_SEQUENCE, children));
    o
}

fn root_content(source: &SourceStack, spec: &MeasurementReportSpec) -> Vec<Obj> {
    let p = &spec.producer;
    let mut items = vec![
        code_content(
            "HAS CONCEPT MOD",
            &dcm("121049", "Language of Content Item and Descendants"),
            &Code::new("en-US", "RFC5646", "English (United States)"),
        ),
        code_content("HAS OBS CONTEXT", &dcm("121005", "Observer Type"), &dcm("121007", "Device")),
        uid_item("HAS OBS CONTEXT", &dcm("121012", "Device Observer UID"), &spec.device_observer_uid),
        text_item("HAS OBS CONTEXT", &dcm("121013", "Device Observer Name"), &p.model_name),
        text_item("HAS OBS CONTEXT", &dcm("121014", "Device Observer Manufacturer"), &p.manufacturer),
        text_item("HAS OBS CONTEXT", &dcm("121015", "Device Observer Model Name"), &p.model_name),
        code_content("HAS CONCEPT MOD", &dcm("121058", "Procedure reported"), &spec.procedure_reported),
    ];
    let groups = spec.groups.iter().map(|g| group(source, spec, g)).collect();
    items.push(container("CONTAINS", &dcm("126010", "Imaging Measurements"), None, groups));
    items
}

fn group(source: &SourceStack, spec: &MeasurementReportSpec, g: &MeasurementGroup) -> Obj {
    let mut children = vec![
        text_item("CONTAINS", &dcm("112039", "Tracking Identifier"), &g.tracking_id),
        uid_item("CONTAINS", &dcm("112040", "Tracking Unique Identifier"), &g.tracking_uid),
        code_content("CONTAINS", &dcm("121071", "Finding"), &g.finding),
    ];
    if let Some(segment) = g.segment_number {
        let mut image = content("CONTAINS", "IMAGE", &dcm("121191", "Referenced Segment"));
        image.put(seq(
            tags::REFERENCED_SOP_SEQUENCE,
            vec![item([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE),
                text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &spec.segmentation.sop_instance_uid),
                us(tags::REFERENCED_SEGMENT_NUMBER, segment),
            ])],
        ));
        children.push(image);
        children.push(uid_item("CONTAINS", &dcm("121232", "Source series for segmentation"), &source.series_uid));
    }
    children.extend(g.measurements.iter().map(num_item));
    children.extend(g.evaluations.iter().map(|(concept, value)| text_item("CONTAINS", concept, value)));
    let template_id = if g.segment_number.is_some() { "1411" } else { "1501" };
    container("CONTAINS", &dcm("125007", "Measurement Group"), Some(template_id), children)
}
