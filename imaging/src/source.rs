//! source: to be written.
