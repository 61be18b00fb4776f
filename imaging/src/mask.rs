//! mask: to be written.
