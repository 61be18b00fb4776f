//! orientation: to be written.
