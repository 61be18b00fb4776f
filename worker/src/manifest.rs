//! manifest: to be written.
