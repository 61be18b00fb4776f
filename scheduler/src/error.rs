//! Why a scheduler operation failed, and how the HTTP API shows it.

use neurobatch_core::db::DbError;
use neurobatch_core::queue::QueueError;
use neurobatch_core::storage::StorageError;

/// Errors of the scheduler. Messages name the input (a path or URI) and the
/// reason; they never carry patient-identifying DICOM attributes.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The configuration cannot drive a scheduler (a selection rule that does not compile, …).
    #[error("configuration key {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// The caller's input is wrong: unknown scheme, missing path, not a study.
    #[error("source `{input}`: {reason}")]
    BadSource { input: String, reason: String },
    /// The source exists but could not be read.
    #[error("source `{input}`: cannot read: {reason}")]
    Read { input: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The HTTP API could not listen or serve.
    #[error("http api on {addr}: {reason}")]
    Http { addr: String, reason: String },
    /// A background task of the scheduler panicked or was cancelled.
    #[error("scheduler task {what}: {reason}")]
    Task { what: &'static str, reason: String },
}

impl SchedulerError {
    pub(crate) fn bad(input: &str, reason: impl Into<String>) -> Self {
        SchedulerError::BadSource { input: input.to_string(), reason: reason.into() }
    }

    pub(crate) fn read(input: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        SchedulerError::Read { input: input.to_string(), reason: reason.to_string() }
    }

    /// The HTTP status the API answers this error with: the caller's fault
    /// (400), a backend that is down or refused the operation (503), or the
    /// scheduler's own failure (500).
    pub fn http_status(&self) -> u16 {
        match self {
            SchedulerError::BadSource { .. } | SchedulerError::Read { .. } => 400,
            SchedulerError::Db(_) | SchedulerError::Storage(_) | SchedulerError::Queue(_) => 503,
            SchedulerError::Config { .. } | SchedulerError::Http { .. } | SchedulerError::Task { .. } => 500,
        }
    }
}

/// A blocking task's join error as a scheduler error.
pub(crate) fn joined<T>(what: &'static str, r: Result<T, tokio::task::JoinError>) -> Result<T, SchedulerError> {
    r.map_err(|e| SchedulerError::Task { what, reason: e.to_string() })
}
