//! The daemon's errors: why a job failed (with whether retrying can help, and
//! whether the study is to blame at all) and why the worker itself stopped.

use neurobatch_core::db::DbError;
use neurobatch_core::queue::QueueError;
use neurobatch_core::storage::StorageError;

/// The words of a timed-out attempt's error, by which the next attempt knows.
const TIMED_OUT: &str = "timed out after";

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
    /// A service the worker needs (the object store, the job store) could not
    /// be reached or refused the request: not the study's fault, so no
    /// attempt of its budget is spent (the job is handed back and the worker
    /// pauses until the service answers again; docs/daemon.md).
    pub unavailable: Option<Dependency>,
}

/// A service a job depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    ObjectStore,
    JobStore,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::ObjectStore => "object store",
            Dependency::JobStore => "job store",
        }
    }
}

impl JobError {
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError { message: message.into(), transient: false, unavailable: None }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        JobError { message: message.into(), transient: true, unavailable: None }
    }

    fn unavailable(message: String, dependency: Dependency) -> Self {
        JobError { message, transient: true, unavailable: Some(dependency) }
    }

    /// A storage error while reading the study or writing results: a missing
    /// object, a bad key or a study over its limits are permanent (the study
    /// is to blame); an S3 request that failed or a file store that cannot be
    /// written means the store is unavailable.
    pub fn storage(what: &str, e: &StorageError) -> Self {
        let message = format!("{what}: {e}");
        match e {
            StorageError::NotFound { .. }
            | StorageError::Key { .. }
            | StorageError::Url { .. }
            | StorageError::TooLarge { .. } => JobError::permanent(message),
            StorageError::S3 { .. } | StorageError::Io { .. } => {
                JobError::unavailable(message, Dependency::ObjectStore)
            }
        }
    }

    /// An attempt that ran past the job timeout (`limit`). The first time it
    /// is transient (a slow or busy node); when the job's previous attempt
    /// (`previous_error`) timed out too it is permanent, so one study does not
    /// hold a worker for `max_attempts` × the timeout.
    pub fn timed_out(source: &str, limit: std::time::Duration, previous_error: Option<&str>) -> Self {
        let message = format!("{source}: {TIMED_OUT} {} s", limit.as_secs());
        if previous_error.is_some_and(|e| e.contains(TIMED_OUT)) {
            JobError::permanent(format!("{message}, as its previous attempt did"))
        } else {
            JobError::transient(message)
        }
    }

    /// A job-store error: one that retrying may cure (a connection refused,
    /// closed or timed out) means the store is unavailable.
    pub fn db(what: &str, e: &DbError) -> Self {
        let message = format!("{what}: {e}");
        if e.is_transient() {
            JobError::unavailable(message, Dependency::JobStore)
        } else {
            JobError::permanent(message)
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_second_timeout_in_a_row_is_permanent() {
        let limit = Duration::from_secs(3600);
        let first = JobError::timed_out("s3://b/study/", limit, None);
        assert!(first.transient && first.unavailable.is_none());
        assert_eq!(first.message, "s3://b/study/: timed out after 3600 s");
        let after_other = JobError::timed_out("s3://b/study/", limit, Some("lease expired (worker w)"));
        assert!(after_other.transient, "the previous attempt ended otherwise");
        let second = JobError::timed_out("s3://b/study/", limit, Some(&first.message));
        assert!(!second.transient, "{second:?}");
        assert_eq!(second.message, "s3://b/study/: timed out after 3600 s, as its previous attempt did");
    }
}
