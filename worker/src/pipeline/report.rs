//! `report.json`: what one study's processing found, in one serializable
//! struct. Field names are part of the interface (the daemon stores them, the
//! evaluation script and the review UI read them); add fields, never rename.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ood::OodAssessment;
use crate::quality::{QualityEstimate, QualityFeatures};
use crate::routing::RoutingDecision;
use crate::uncertainty::{ClassificationUncertainty, StructureUncertainty, StudyUncertainty};

/// Version of the report layout.
pub const REPORT_SCHEMA: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub schema: u32,
    pub input: InputSummary,
    pub model: ModelSummary,
    /// Label value (as a string key) → name.
    pub labels: BTreeMap<String, String>,
    /// The bias field divided out on the model grid, when the model corrects one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_field: Option<super::BiasFieldSummary>,
    /// One entry per label, background included.
    pub structures: Vec<StructureReport>,
    /// The study's uncertainty figures (model grid); `study.score` is routed on.
    pub study: StudyUncertainty,
    /// Image statistics against the model's training distribution; `None` when
    /// the model ships no reference.
    pub ood: Option<OodAssessment>,
    /// Every feature of `worker::quality`'s catalog for this study (`null` where undefined).
    pub quality_features: QualityFeatures,
    /// The learned per-structure Dice estimate, when the model ships an
    /// estimator for the profile that ran; routed on with `predicted_dice_min`.
    pub quality_estimate: Option<QualityEstimate>,
    /// The scan-quality classifier's verdict, when one ran.
    pub quality: Option<QualityReport>,
    /// Why the classifier could not run on this scan, when it failed (the segmentation stands).
    pub quality_error: Option<String>,
    /// accept | review with every reason, of the segmentation and the quality model together.
    pub routing: RoutingDecision,
    /// Wall-clock milliseconds per stage, in pipeline order.
    pub timings_ms: Vec<Timing>,
    /// The DICOM objects written for the PACS (SEG, SR), or why there are none;
    /// set by whoever writes the outputs (`None`: not asked, e.g. `process` on a NIfTI file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomOutputs>,
}

/// `report.json`'s `dicom`: the files written (`seg.dcm`, `sr.dcm`) with their
/// SOP Instance UIDs, or the reason none was.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DicomOutputs {
    pub objects: Vec<DicomObjectSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_written: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DicomObjectSummary {
    pub file: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_uid: String,
}

/// The scan the report is about (no patient data: `imaging::SourceMeta` has none).
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub source: String,
    pub format: String,
    pub series_uid: Option<String>,
    pub dims: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub orientation: String,
}

/// Which model ran, how, and on what.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub version: String,
    pub task: String,
    /// sha256 of manifest.toml.
    pub manifest_sha256: String,
    /// The members used (the profile may use the first few only).
    pub members: Vec<MemberSummary>,
    pub profile: String,
    /// The execution provider the sessions got.
    pub provider: String,
    /// Inference lanes (sessions per member run side by side) and windows per model call.
    pub lanes: usize,
    pub batch_size: usize,
    pub tta_axes: Vec<usize>,
    pub mc_dropout_passes: u32,
    /// Passes accumulated: members × flips × max(MC passes, 1).
    pub passes: usize,
    /// Segmentation: how each pass covered the model grid (`windows` or `whole`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiling: Option<String>,
    /// The manifest's `[calibration]` class weights applied before the argmax, when it has them.
    pub class_weights: Option<Vec<f64>>,
    /// The manifest's `[calibration] temperature` of the reported probabilities, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The model grid the engine ran on.
    pub grid_dims: [usize; 3],
    pub grid_spacing_mm: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberSummary {
    pub file: String,
    pub sha256: String,
    /// The member's bottleneck features pooled over the brain
    /// (`worker::inference::FeaturePool`), when the manifest names `output.features`
    /// and the member saw brain: what the feature-space OOD reference is fitted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<f64>>,
}

/// One label: its volume on the scan's grid, and the model-grid uncertainty figures.
#[derive(Debug, Clone, Serialize)]
pub struct StructureReport {
    pub label: u8,
    pub name: String,
    /// Voxels of `mask.nii.gz` with this label, and their volume in mL.
    pub voxels: u64,
    pub volume_ml: f64,
    /// The accumulator's figures on the model grid (volumes there, CV, agreement, entropy).
    pub uncertainty: StructureUncertainty,
}

/// The scan-quality classifier's output.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub model: ModelSummary,
    /// Label value → name.
    pub labels: BTreeMap<String, String>,
    /// The winning label's name.
    pub label: String,
    pub uncertainty: ClassificationUncertainty,
    pub ood: Option<OodAssessment>,
    pub routing: RoutingDecision,
}

/// One stage's duration.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub stage: &'static str,
    pub ms: f64,
}
