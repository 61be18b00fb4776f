//! What can go wrong with one study, each variant naming the input and the
//! reason in one line (the daemon stores it as the job's last error).

use std::path::PathBuf;

/// A study the pipeline could not finish. Never raised by a panic: bad input
/// (absurd geometry, a blank scan, a non-finite pass) ends here.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{input}: geometry: {reason}")]
    Geometry { input: String, reason: String },
    #[error("{input}: harmonization: {reason}")]
    Harmonize { input: String, reason: String },
    #[error("{input}: inference: {reason}")]
    Inference { input: String, reason: String },
    #[error("{input}: uncertainty: {reason}")]
    Uncertainty { input: String, reason: String },
    #[error("{input}: out-of-distribution check: {reason}")]
    Ood { input: String, reason: String },
    #[error("{input}: quality estimate: {reason}")]
    QualityEstimate { input: String, reason: String },
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    pub(crate) fn geometry(input: &str, e: impl std::fmt::Display) -> Self {
        PipelineError::Geometry { input: input.to_string(), reason: e.to_string() }
    }
    pub(crate) fn harmonize(input: &str, e: impl std::fmt::Display) -> Self {
        PipelineError::Harmonize { input: input.to_string(), reason: e.to_string() }
    }
    pub(crate) fn inference(input: &str, e: impl std::fmt::Display) -> Self {
        PipelineError::Inference { input: input.to_string(), reason: e.to_string() }
    }
    pub(crate) fn uncertainty(input: &str, e: impl std::fmt::Display) -> Self {
        PipelineError::Uncertainty { input: input.to_string(), reason: e.to_string() }
    }
    pub(crate) fn ood(input: &str, e: impl std::fmt::Display) -> Self {
        PipelineError::Ood { input: input.to_string(), reason: e.to_string() }
    }
}
