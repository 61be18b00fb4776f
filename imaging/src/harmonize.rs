//! harmonize: to be written.
