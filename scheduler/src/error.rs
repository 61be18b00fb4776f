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
    /// The source lies outside every configured place (the same answer
    /// whether or not it exists).
    #[error(
        "source `{input}`: not inside a configured source (scheduler.inbox, scheduler.allowed_roots, the storage \
         bucket, scheduler.allowed_s3_prefixes)"
    )]
    NotAllowed { input: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The HTTP API could not listen or serve.
    #[error("http api on {addr}: {reason}")]
    Http { addr: String, reason: String },
    /// The PACS's DICOMweb service failed or refused (its address without credentials).
    #[error("pacs {pacs}: {reason}")]
    Pacs { pacs: String, reason: String },
    /// The DICOM node could not listen.
    #[error("dicom listener on {addr}: {reason}")]
    Dicom { addr: String, reason: String },
    /// A background task of the scheduler panicked or was cancelled.
    #[error("scratch folder in {dir}: {reason}")]
    Scratch { dir: String, reason: String },
    #[error("scheduler task {what}: {reason}")]
    Task { what: &'static str, reason: String },
}

/// How much of a caller's input an error repeats.
const INPUT_SHOWN: usize = 256;

/// `input` cut to [`INPUT_SHOWN`] bytes (on a character boundary) with `…`,
/// control characters escaped (`\n`): a 64 MB string in a request is not
/// echoed back or logged whole, and a file name with a newline cannot forge
/// a log line.
fn shown(input: &str) -> String {
    let mut end = input.len().min(INPUT_SHOWN);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 8);
    for c in input.get(..end).unwrap_or_default().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < input.len() {
        out.push('…');
    }
    out
}

impl SchedulerError {
    pub(crate) fn bad(input: &str, reason: impl Into<String>) -> Self {
        SchedulerError::BadSource { input: shown(input), reason: reason.into() }
    }

    pub(crate) fn read(input: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        SchedulerError::Read { input: shown(&input.to_string()), reason: reason.to_string() }
    }

    pub(crate) fn not_allowed(input: &str) -> Self {
        SchedulerError::NotAllowed { input: shown(input) }
    }

    /// The HTTP status the API answers this error with: the caller's fault
    /// (400), a source outside the configured ones (403), a backend that is down or refused the operation (503), or the
    /// scheduler's own failure (500).
    pub fn http_status(&self) -> u16 {
        match self {
            SchedulerError::BadSource { .. } | SchedulerError::Read { .. } => 400,
            SchedulerError::NotAllowed { .. } => 403,
            SchedulerError::Db(_)
            | SchedulerError::Storage(_)
            | SchedulerError::Queue(_)
            | SchedulerError::Pacs { .. } => 503,
            SchedulerError::Config { .. }
            | SchedulerError::Http { .. }
            | SchedulerError::Dicom { .. }
            | SchedulerError::Scratch { .. }
            | SchedulerError::Task { .. } => 500,
        }
    }
}

/// A blocking task's join error as a scheduler error.
pub(crate) fn joined<T>(what: &'static str, r: Result<T, tokio::task::JoinError>) -> Result<T, SchedulerError> {
    r.map_err(|e| SchedulerError::Task { what, reason: e.to_string() })
}
