//! resample: to be written.
