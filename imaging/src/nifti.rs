//! nifti: to be written.
