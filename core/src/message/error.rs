//! Why a message could not be read or built.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("{what} message: not valid json: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("{what} message: no \"schema\" field (not a neurobatch message?)")]
    MissingVersion { what: &'static str },
    #[error("{what} message: schema version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { what: &'static str, found: String, supported: u32 },
    #[error("{what} message: field {field}: {reason}")]
    Invalid { what: &'static str, field: &'static str, reason: String },
}

impl MessageError {
    pub(crate) fn invalid(what: &'static str, field: &'static str, reason: impl Into<String>) -> Self {
        MessageError::Invalid { what, field, reason: reason.into() }
    }
}
