//! A study's results as DICOM for the PACS: a binary Segmentation of the mask
//! and a TID 1500 measurement report (volumes, uncertainty, the OOD score and
//! the routing decision with its reasons), for studies read from DICOM.
//!
//! Owns the mapping from a [`StudyReport`] and the manifest's coded labels to
//! `imaging::dicom::derived`'s specs, and which figures the report carries
//! under which concept. Every UID derives from (study key, model name, model
//! version, result version; revision 0 for an instance), so a re-send replaces
//! the object in the PACS. Beside the SEG it writes the recipe a reviewer's
//! corrected mask is later built from (`seg_recipe.json`: a new instance of
//! the same series, by the scheduler). It does not send anything.

use std::path::{Path, PathBuf};

use imaging::Volume;
use imaging::dicom::derived::{
    self, AlgorithmType, COMPREHENSIVE_SR_STORAGE, Code, CopiedHeader, DerivedError, Identification, LOCAL_SCHEME,
    Measurement, MeasurementGroup, MeasurementReportSpec, Producer, ReferencedSegmentation, SEGMENTATION_STORAGE,
    Segment, SegmentationRecipe, SegmentationSpec, derived_uid, instance_number, result_instance_uid,
};
use imaging::dicom::{ScanOptions, SourceStack};

use crate::manifest::Label;
use crate::pipeline::{DicomObjectSummary, DicomOutputs, StudyReport};

/// File names of the objects in a result folder.
pub const SEG_FILE: &str = "seg.dcm";
pub const SR_FILE: &str = "sr.dcm";
/// What a later revision of the SEG is built from ([`SegmentationRecipe`]).
pub const SEG_RECIPE_FILE: &str = "seg_recipe.json";
/// Series numbers of the derived series (arbitrary, high, fixed so they sort after the scanner's).
const SEG_SERIES_NUMBER: u32 = 9801;
const SR_SERIES_NUMBER: u32 = 9802;

/// Which result the objects carry.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultIdentity<'a> {
    /// The study's key (as in the result object keys).
    pub study_key: &'a str,
    /// The result version (the study version the job processed).
    pub version: u32,
    /// ContentDate (`YYYYMMDD`) and ContentTime (`HHMMSS`).
    pub date: String,
    pub time: String,
}

impl<'a> ResultIdentity<'a> {
    /// The identity of a result made now (UTC content date and time).
    pub fn now(study_key: &'a str, version: u32) -> Self {
        let now = chrono::Utc::now();
        ResultIdentity {
            study_key,
            version,
            date: now.format("%Y%m%d").to_string(),
            time: now.format("%H%M%S").to_string(),
        }
    }
}

/// The concepts of neurobatch's own figures ([`LOCAL_SCHEME`]).
fn local(value: &str, meaning: &str) -> Code {
    Code::new(value, LOCAL_SCHEME, meaning)
}

fn ml() -> Code {
    Code::new("ml", "UCUM", "milliliter")
}

fn no_units() -> Code {
    Code::new("1", "UCUM", "no units")
}

/// Writes `seg.dcm` and `sr.dcm` for `labels` (the mask on `source`'s grid) into
/// `dir`; returns what the report's `dicom` says. The objects are only as good
/// as the mask: routed cases say in their series description that they await review.
pub fn write(
    dir: &Path,
    report: &StudyReport,
    labels: &Volume<u8>,
    source: &SourceStack,
    manifest_labels: &[Label],
    result: &ResultIdentity<'_>,
) -> Result<(Vec<PathBuf>, DicomOutputs), DerivedError> {
    let model = &report.model;
    let tracking_uid = |name: &str| derived_uid(&["tracking", result.study_key, &model.name, &model.version, name]);
    // One segment per foreground label, each with both codes, or no objects at all.
    let segments: Option<Vec<Segment>> = manifest_labels
        .iter()
        .filter(|l| l.value > 0)
        .map(|l| {
            Some(Segment {
                label_value: u8::try_from(l.value).ok()?,
                label: l.name.clone(),
                category: l.category.clone()?,
                property: l.property.clone()?,
                tracking_uid: tracking_uid(&l.name),
            })
        })
        .collect();
    let Some(segments) = segments.filter(|s| !s.is_empty()) else {
        return Err(DerivedError::Invalid(format!(
            "model {} has foreground labels without a coded category and type in its manifest (or above 255)",
            model.name
        )));
    };
    let header = CopiedHeader::from_file(&source.header_file, &ScanOptions::default())?;
    let key = |kind: &str| derived_uid(&[kind, result.study_key, &model.name, &model.version]);
    let instance =
        |kind: &str| result_instance_uid(kind, result.study_key, &model.name, &model.version, result.version, 0);
    let producer = Producer {
        manufacturer: "neurobatch".to_string(),
        model_name: model.name.clone(),
        software_versions: vec![
            format!("neurobatch {}", env!("CARGO_PKG_VERSION")),
            format!("{} {}", model.name, model.version),
        ],
        device_serial_number: format!("{} {}", model.name, model.version),
    };
    let awaiting = if report.routing.is_accept() { "" } else { " - awaiting review" };
    let describe = |what: &str| truncate(&format!("{} {} {what}{awaiting}", model.name, model.version), 64);
    let id = |series: String, sop: String, number: u32, what: &str| Identification {
        series_uid: series,
        sop_instance_uid: sop,
        series_number: number,
        instance_number: instance_number(result.version, 0),
        series_description: describe(what),
        content_date: result.date.clone(),
        content_time: result.time.clone(),
    };

    let seg_spec = SegmentationSpec {
        id: id(key("seg-series"), instance("seg"), SEG_SERIES_NUMBER, "segmentation"),
        producer: producer.clone(),
        segments,
        algorithm_type: AlgorithmType::Automatic,
        algorithm_name: model.name.clone(),
        algorithm_version: model.version.clone(),
        content_label: content_label(&model.name),
        content_description: truncate(&format!("{} {} ({} passes)", model.name, model.version, model.passes), 64),
        dimension_organization_uid: key("dimension-organization"),
    };
    let seg = derived::build_segmentation(labels, source, &header, &seg_spec)?;

    let mut groups: Vec<MeasurementGroup> = seg_spec
        .segments
        .iter()
        .enumerate()
        .map(|(n, segment)| structure_group(report, segment, u16::try_from(n + 1).unwrap_or(u16::MAX)))
        .collect();
    groups.push(study_group(report, tracking_uid("study")));
    let sr_spec = MeasurementReportSpec {
        id: id(key("sr-series"), instance("sr"), SR_SERIES_NUMBER, "measurements"),
        producer,
        device_observer_uid: derived_uid(&["device", &model.name, &model.version]),
        procedure_reported: Code::new("363679005", "SCT", "Imaging procedure"),
        segmentation: ReferencedSegmentation {
            series_uid: seg_spec.id.series_uid.clone(),
            sop_instance_uid: seg_spec.id.sop_instance_uid.clone(),
        },
        groups,
    };
    let sr = derived::build_measurement_report(source, &header, &sr_spec)?;

    let mut files = Vec::new();
    let mut outputs = DicomOutputs::default();
    for (file, obj, class, spec_id) in
        [(SEG_FILE, &seg, SEGMENTATION_STORAGE, &seg_spec.id), (SR_FILE, &sr, COMPREHENSIVE_SR_STORAGE, &sr_spec.id)]
    {
        let path = dir.join(file);
        derived::write_part10(obj, &path)?;
        files.push(path);
        outputs.objects.push(DicomObjectSummary {
            file: file.to_string(),
            sop_class_uid: class.to_string(),
            sop_instance_uid: spec_id.sop_instance_uid.clone(),
            series_uid: spec_id.series_uid.clone(),
        });
    }
    let recipe = SegmentationRecipe {
        study_key: result.study_key.to_string(),
        result_version: result.version,
        spec: seg_spec,
        stack: source.clone(),
    };
    let path = dir.join(SEG_RECIPE_FILE);
    std::fs::write(&path, recipe.to_json()?)
        .map_err(|e| DerivedError::Write { path: path.clone(), reason: e.to_string() })?;
    files.push(path);
    Ok((files, outputs))
}

/// One structure's group: its volume and its uncertainty figures.
fn structure_group(report: &StudyReport, segment: &Segment, number: u16) -> MeasurementGroup {
    let value = segment.label_value;
    let structure = report.structures.iter().find(|s| s.label == value);
    let mut measurements = Vec::new();
    if let Some(s) = structure {
        measurements.push(Measurement {
            concept: Code::new("118565006", "SCT", "Volume"),
            value: s.volume_ml,
            unit: ml(),
        });
        let u = &s.uncertainty;
        let figures = [
            (u.pairwise_dice, local("NB-PAIR-DICE", "Pairwise Dice between ensemble passes")),
            (u.pass_volume_cv, local("NB-VOL-CV", "Coefficient of variation of pass volumes")),
            (u.mean_entropy, local("NB-ENTROPY", "Mean predictive entropy in nats")),
            (u.mean_mutual_information, local("NB-MI", "Mean mutual information in nats")),
        ];
        for (v, concept) in figures {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                measurements.push(Measurement { concept, value: v, unit: no_units() });
            }
        }
    }
    let predicted = report
        .quality_estimate
        .as_ref()
        .and_then(|q| q.structures.iter().find(|s| s.label == value))
        .and_then(|s| s.predicted_dice)
        .filter(|v| v.is_finite());
    if let Some(v) = predicted {
        measurements.push(Measurement { concept: local("NB-PRED-DICE", "Predicted Dice"), value: v, unit: no_units() });
    }
    MeasurementGroup {
        tracking_id: segment.label.clone(),
        tracking_uid: segment.tracking_uid.clone(),
        finding: segment.property.clone(),
        segment_number: Some(number),
        measurements,
        evaluations: Vec::new(),
    }
}

/// The study's group: the study uncertainty, the OOD score, and the routing decision with its reasons.
fn study_group(report: &StudyReport, tracking_uid: String) -> MeasurementGroup {
    let mut measurements = Vec::new();
    if let Some(v) = report.study.score.filter(|v| v.is_finite()) {
        measurements.push(Measurement {
            concept: local("NB-STUDY-UNC", "Study uncertainty score"),
            value: v,
            unit: no_units(),
        });
    }
    if let Some(ood) = report.ood.as_ref().filter(|o| o.score.is_finite()) {
        measurements.push(Measurement {
            concept: local("NB-OOD", "Out-of-distribution score"),
            value: ood.score,
            unit: no_units(),
        });
    }
    let decision = if report.routing.is_accept() { "accepted" } else { "routed to review" };
    let mut evaluations = vec![(local("NB-ROUTING", "Routing decision"), decision.to_string())];
    for r in report.routing.reasons() {
        let value = r.value.map_or_else(|| "unknown".to_string(), |v| format!("{v:.4}"));
        let structure = r
            .label
            .and_then(|l| report.labels.get(&l.to_string()))
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        evaluations.push((
            local("NB-REASON", "Routing reason"),
            format!("{}: {} {value}{structure}, bound {:.4}", r.code.as_str(), r.metric, r.threshold),
        ));
    }
    MeasurementGroup {
        tracking_id: "study".to_string(),
        tracking_uid,
        finding: Code::new("12738006", "SCT", "Brain"),
        segment_number: None,
        measurements,
        evaluations,
    }
}

/// A Content Label (CS): upper case letters, digits, space and underscore, at most 16 characters.
fn content_label(name: &str) -> String {
    let label: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).take(16).collect();
    if label.is_empty() { "NEUROBATCH".to_string() } else { label }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_labels_are_valid_code_strings() {
        assert_eq!(content_label("brain-tissue"), "BRAIN_TISSUE");
        assert_eq!(content_label("a very long model name indeed"), "A_VERY_LONG_MODE");
        assert_eq!(content_label(""), "NEUROBATCH");
    }
}
