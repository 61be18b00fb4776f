//! uncertainty: to be written.
