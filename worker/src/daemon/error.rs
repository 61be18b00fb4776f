//! The daemon's errors: why a job failed (with whether retrying can help) and
//! why the worker itself stopped.

use neurobatch_core::db::DbError;
use neurobatch_core::queue::QueueError;
use neurobatch_core::storage::StorageError;

/// Why one job failed. The message names the study and the reason and
/// becomes the job's `last_error` and the dead letter's header; it never
/// holds patient fields (the readers below never put them in errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    /// Retrying may succeed (storage or database outage, timeout, runtime
    /// failure); `false` for input the pipeline will never accept.
    pub transient: bool,
}

impl JobError {
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError { message: message.into(), transient: false }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        JobError { message: message.into(), transient: true }
    }

    /// A storage error while reading the study or writing results: a missing
    /// object is permanent (the study is gone), everything else transient.
    pub fn storage(what: &str, e: &StorageError) -> Self {
        let message = format!("{what}: {e}");
        match e {
            StorageError::NotFound { .. } | StorageError::Key { .. } | StorageError::Url { .. } => {
                JobError::permanent(message)
            }
            _ => JobError::transient(message),
        }
    }

    pub fn db(what: &str, e: &DbError) -> Self {
        JobError { message: format!("{what}: {e}"), transient: e.is_transient() }
    }
}

/// Why the worker stopped other than by a requested shutdown.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("job queue: {0}")]
    Queue(#[from] QueueError),
    #[error("job store: {0}")]
    Db(#[from] DbError),
    /// `worker.listen` could not be bound or its server failed.
    #[error("worker.listen {addr}: {reason}")]
    Listen { addr: String, reason: String },
}
