//! Later revisions of a result's segmentation — a reviewer's corrected mask —
//! built where the source files are no longer at hand.
//!
//! The worker stores, beside the first `seg.dcm`, the [`SegmentationRecipe`] it
//! built it from: the spec and the source stack (UIDs and geometry only, no
//! patient attribute). A revision takes its patient, study and frame of
//! reference modules from that first SEG (which copied them from the source)
//! and places the corrected labels on the same slices.
//!
//! Owns the identity rules of a result's derived objects: the SOP Instance UID
//! and Instance Number of (kind, study key, model, result version, revision).
//! A revision stays in the first SEG's series, so the PACS shows the corrected
//! mask beside the model's; it has its own instance UID (the same one every
//! time it is rebuilt, so a re-send replaces it), says `SEMIAUTOMATIC` in each
//! segment, and "(corrected)" in its series description.

use super::{AlgorithmType, CopiedHeader, DerivedError, DerivedObject, SegmentationSpec, build_segmentation};
use crate::Volume;
use crate::dicom::SourceStack;

/// What a segmentation was built from, as the worker stores it (`seg_recipe.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentationRecipe {
    /// The study's key (as in the result object keys).
    pub study_key: String,
    /// The result version (the study version the job processed).
    pub result_version: u32,
    /// The first segmentation's spec (revision 0).
    pub spec: SegmentationSpec,
    /// The source slices the segmentation lies on.
    pub stack: SourceStack,
}

/// The SOP Instance UID of a result's derived object `kind` (`seg`, `sr`).
pub fn result_instance_uid(
    kind: &str,
    study_key: &str,
    model_name: &str,
    model_version: &str,
    result_version: u32,
    revision: u32,
) -> String {
    super::derived_uid(&[
        kind,
        study_key,
        model_name,
        model_version,
        &result_version.to_string(),
        &revision.to_string(),
    ])
}

/// The Instance Number of a result's derived object: later versions and revisions sort later.
pub fn instance_number(result_version: u32, revision: u32) -> u32 {
    result_version.saturating_mul(100).saturating_add(revision).saturating_add(1)
}

impl SegmentationRecipe {
    /// The recipe as stored.
    pub fn to_json(&self) -> Result<Vec<u8>, DerivedError> {
        serde_json::to_vec(self).map_err(|e| DerivedError::Invalid(format!("segmentation recipe: {e}")))
    }

    /// A stored recipe.
    pub fn from_json(bytes: &[u8]) -> Result<SegmentationRecipe, DerivedError> {
        serde_json::from_slice(bytes).map_err(|e| DerivedError::Invalid(format!("segmentation recipe: {e}")))
    }

    /// The spec of revision `revision` (1, 2, …), made on `date` (`YYYYMMDD`) at `time` (`HHMMSS`).
    pub fn revised(&self, revision: u32, date: &str, time: &str) -> SegmentationSpec {
        let mut spec = self.spec.clone();
        spec.id.sop_instance_uid = result_instance_uid(
            "seg",
            &self.study_key,
            &spec.algorithm_name,
            &spec.algorithm_version,
            self.result_version,
            revision,
        );
        spec.id.instance_number = instance_number(self.result_version, revision);
        spec.id.series_description =
            format!("{} {} segmentation (corrected)", spec.algorithm_name, spec.algorithm_version)
                .chars()
                .take(64)
                .collect();
        spec.id.content_date = date.to_string();
        spec.id.content_time = time.to_string();
        spec.algorithm_type = AlgorithmType::Semiautomatic;
        spec
    }

    /// Revision `revision` of the segmentation: `labels` (on the stack's grid,
    /// as the first segmentation's were) with `first`'s copied modules.
    pub fn build_revision(
        &self,
        labels: &Volume<u8>,
        first: &CopiedHeader,
        revision: u32,
        date: &str,
        time: &str,
    ) -> Result<DerivedObject, DerivedError> {
        if revision == 0 {
            return Err(DerivedError::Invalid("revision 0 is the model's own segmentation".to_string()));
        }
        build_segmentation(labels, &self.stack, first, &self.revised(revision, date, time))
    }
}
