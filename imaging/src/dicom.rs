//! dicom: to be written.
