//! A reviewer's corrected mask as DICOM: the next instance of the result's
//! Segmentation series, sent to the PACS in place of the model's (docs/dicom.md).
//!
//! Owns turning what the result and the review stored — the worker's
//! `seg_recipe.json` (the first SEG's spec and source slices), the first
//! `seg.dcm` (whose patient and study modules the revision copies) and the
//! corrected mask as the review API re-encoded it — into a Part 10 SEG, and the
//! key it is stored under. The source files are not needed: they may be long
//! gone from the inbox by the time a reviewer decides. The same correction
//! always gives the same SOP Instance UID, so a rebuilt or re-sent object
//! replaces itself in the PACS.

use chrono::{DateTime, Utc};
use imaging::Volume;
use imaging::dicom::ScanOptions;
use imaging::dicom::derived::{CopiedHeader, DerivedError, SegmentationRecipe, write_part10};
use imaging::nifti::{self, FourD, ReadOptions};

/// The output name of the recipe in a result's object keys (`seg_recipe.json`).
pub(crate) const RECIPE_OUTPUT: &str = "seg_recipe";

/// Why a corrected SEG could not be built; none names a patient attribute.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorrectedSegError {
    /// The recipe does not parse.
    #[error("{0}")]
    Recipe(DerivedError),
    /// The first SEG's modules cannot be copied.
    #[error("the model's SEG: {0}")]
    FirstSeg(DerivedError),
    /// The stored correction is not a label volume of the SEG's grid.
    #[error("the corrected mask: {0}")]
    Mask(String),
    /// The segmentation itself.
    #[error("{0}")]
    Build(DerivedError),
    /// A temporary file: the server's fault.
    #[error("temporary file: {0}")]
    Io(String),
}

/// Where revision `revision` of the SEG stored at `seg_key` is stored: beside it.
pub(crate) fn key(seg_key: &str, revision: u32) -> String {
    let folder = seg_key.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{folder}/corrections/seg-r{revision}.dcm")
}

/// Builds revision `revision` of the segmentation from the stored `recipe`,
/// the `first` SEG and the `corrected` mask (`.nii.gz`); returns the Part 10 bytes.
pub(crate) fn build(
    recipe: &[u8],
    first: &[u8],
    corrected: &[u8],
    revision: u32,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, CorrectedSegError> {
    let recipe = SegmentationRecipe::from_json(recipe).map_err(CorrectedSegError::Recipe)?;
    let dir = tempfile::tempdir().map_err(|e| CorrectedSegError::Io(e.to_string()))?;
    let io = |e: std::io::Error| CorrectedSegError::Io(e.to_string());

    let first_path = dir.path().join("seg.dcm");
    std::fs::write(&first_path, first).map_err(io)?;
    let header = CopiedHeader::from_file(&first_path, &ScanOptions::default()).map_err(|e| match e {
        DerivedError::Header { reason, .. } => CorrectedSegError::FirstSeg(DerivedError::Invalid(reason)),
        other => CorrectedSegError::FirstSeg(other),
    })?;

    let stack = &recipe.stack;
    let voxels = u64::from(stack.rows) * u64::from(stack.cols) * stack.slices.len() as u64;
    let mask_path = dir.path().join("corrected.nii.gz");
    std::fs::write(&mask_path, corrected).map_err(io)?;
    let opts = ReadOptions { four_d: FourD::Refuse, max_voxels: voxels, exact: true };
    let wide = nifti::read_labels(&mask_path, &opts)
        .map_err(|e| CorrectedSegError::Mask(e.to_string().replace(&mask_path.display().to_string(), "mask")))?;
    let labels = narrow(&wide)?;

    let date = now.format("%Y%m%d").to_string();
    let time = now.format("%H%M%S").to_string();
    let object = recipe.build_revision(&labels, &header, revision, &date, &time).map_err(CorrectedSegError::Build)?;
    let out = dir.path().join("seg-revision.dcm");
    write_part10(&object, &out).map_err(CorrectedSegError::Build)?;
    std::fs::read(&out).map_err(io)
}

/// The corrected labels as a SEG's label values (at most 255).
fn narrow(labels: &Volume<u16>) -> Result<Volume<u8>, CorrectedSegError> {
    if let Some(v) = labels.data().iter().find(|&&v| v > u16::from(u8::MAX)) {
        return Err(CorrectedSegError::Mask(format!("label {v} is above 255")));
    }
    Ok(labels.map(|&v| u8::try_from(v).unwrap_or(u8::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_stored_beside_the_models_seg() {
        assert_eq!(key("study/ab/brain/1.0/v2/seg.dcm", 3), "study/ab/brain/1.0/v2/corrections/seg-r3.dcm");
    }

    #[test]
    fn what_is_not_a_recipe_or_a_seg_is_a_typed_error() {
        let now = Utc::now();
        let e = build(b"not json", b"", b"", 1, now).unwrap_err();
        assert!(matches!(e, CorrectedSegError::Recipe(_)), "{e}");
        assert!(e.to_string().contains("segmentation recipe"), "{e}");
    }
}
