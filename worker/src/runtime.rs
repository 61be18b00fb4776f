//! runtime: to be written.
