//! The one error type of [`crate::inference`]: which plan, image, model or
//! pass was wrong and why, never a panic.

use std::path::PathBuf;

use thiserror::Error;

use crate::runtime::RuntimeError;
use crate::uncertainty::UncertaintyError;

/// Why inference could not run or finish.
#[derive(Debug, Error)]
pub enum InferenceError {
    #[error("inference plan: {reason}")]
    Plan { reason: String },
    #[error("inference input: image of {dims:?} voxels holds {actual} values, expected {expected}")]
    Image { dims: [usize; 3], actual: usize, expected: usize },
    #[error("inference: model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("inference: model {path} returned shape {actual:?}, expected {expected:?}")]
    OutputShape { path: PathBuf, expected: Vec<usize>, actual: Vec<usize> },
    #[error("inference: model {path} returned a non-finite value {value} (pass {pass})")]
    NonFinite { path: PathBuf, pass: usize, value: f32 },
    #[error(
        "inference: model {path} returned features of shape {actual:?}; [N, F, d, h, w] with each of d, h, w \
         dividing the window {patch:?} was expected"
    )]
    FeatureShape { path: PathBuf, patch: [usize; 3], actual: Vec<usize> },
    #[error("inference: model {path} returned a non-finite feature {value}")]
    NonFiniteFeatures { path: PathBuf, value: f32 },
    #[error("inference: cannot allocate {bytes} bytes for {what}")]
    OutOfMemory { what: &'static str, bytes: u128 },
    #[error("inference: pass {pass} was refused by its consumer: {source}")]
    Sink {
        pass: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("inference: lane {lane} failed on model call {unit}: {reason}")]
    Lane { lane: usize, unit: usize, reason: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("inference: {0}")]
    Uncertainty(#[from] UncertaintyError),
}
