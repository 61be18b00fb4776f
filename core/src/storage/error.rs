//! Why an object-store operation failed.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("object store url `{url}`: {reason}")]
    Url { url: String, reason: String },
    /// The key is shown with control characters escaped (it may come from a file name).
    #[error("object key `{}`: {reason}", key.escape_debug())]
    Key { key: String, reason: String },
    #[error("object `{key}`: not found")]
    NotFound { key: String },
    #[error("object `{key}`: {op}: {source}")]
    Io {
        key: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("s3 {op} `{key}`: {reason}")]
    S3 { op: &'static str, key: String, reason: String },
    /// A download over its limits (objects under a prefix, or bytes in all).
    #[error("`{key}`: {what} exceeds the limit of {limit}")]
    TooLarge { key: String, what: &'static str, limit: u64 },
}
