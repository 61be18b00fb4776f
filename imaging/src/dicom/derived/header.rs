//! The modules a derived object copies from its source: Patient, General
//! Study and Frame of Reference (PS3.3 C.7.1.1, C.7.2.1, C.7.4.1), plus the
//! Specific Character Set their text is encoded in.
//!
//! The one place in neurobatch that touches patient attributes. They are
//! moved element by element into [`CopiedHeader`], whose `Debug` shows tags
//! only; nothing here converts them to strings, and errors name the file and
//! the reason, never a value. Type 2 attributes absent from the source are
//! added empty, as the IODs require.

use std::path::Path;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::DerivedError;
use super::elements::empty;
use crate::dicom::ScanOptions;
use crate::dicom::scan::{parse, read_dicom_header};

/// Copied as they are when present.
const COPIED: [Tag; 15] = [
    tags::SPECIFIC_CHARACTER_SET,
    // Patient
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    // General Study
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
    // Frame of Reference
    tags::FRAME_OF_REFERENCE_UID,
    tags::POSITION_REFERENCE_INDICATOR,
];

/// Type 2 attributes of those modules: present, empty when the source lacks them.
const TYPE_2: [(Tag, VR); 9] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

/// The copied modules of one source instance.
#[derive(Clone)]
pub struct CopiedHeader(InMemDicomObject);

impl std::fmt::Debug for CopiedHeader {
    /// Tags only: the values are patient data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CopiedHeader").field(&self.0.tags().map(|t| t.to_string()).collect::<Vec<_>>()).finish()
    }
}

impl CopiedHeader {
    /// Reads the modules from the Part 10 file at `path` (header only, with
    /// the same size limit and element-length check a scan uses). The file
    /// must carry a StudyInstanceUID.
    pub fn from_file(path: &Path, opts: &ScanOptions) -> Result<CopiedHeader, DerivedError> {
        let err = |reason: String| DerivedError::Header { path: path.to_path_buf(), reason };
        let (bytes, _) = read_dicom_header(path, opts).map_err(|s| err(s.reason.to_string()))?;
        let source = parse(&bytes, true).map_err(err)?;
        let mut copied = InMemDicomObject::new_empty();
        for tag in COPIED {
            if let Ok(Some(e)) = source.element_opt(tag) {
                copied.put(e.clone());
            }
        }
        if copied.element_opt(tags::STUDY_INSTANCE_UID).ok().flatten().is_none() {
            return Err(err("no StudyInstanceUID".to_string()));
        }
        for (tag, vr) in TYPE_2 {
            if copied.element_opt(tag).ok().flatten().is_none() {
                copied.put(empty(tag, vr));
            }
        }
        Ok(CopiedHeader(copied))
    }

    /// The copied elements, to start a derived object with.
    pub(super) fn object(&self) -> InMemDicomObject {
        self.0.clone()
    }

    /// Whether the source names a frame of reference.
    pub(super) fn has_frame_of_reference(&self) -> bool {
        self.0.element_opt(tags::FRAME_OF_REFERENCE_UID).ok().flatten().is_some()
    }
}
